"""The side-effect server of the chaos suite: a local HTTP server that stands for the outside
world a flow acts on. It counts every request per Idempotency-Key, so that a test can tell how
often each step really acted, and it can hold requests (a gate) so that a test kills a process
while a chosen request is in flight.

Python 3 standard library only. The server runs in a thread of the test process.

Paths it understands (any method):
  /effect/...?ms=N     answers 200 {"ok":true,"key","n"} after N ms (default 0)
  /fail/<name>/...     answers 500 while failing(name) is set, else like /effect
"""
import http.server
import json
import socketserver
import threading
import time
import urllib.parse


class Request:
    def __init__(self, method, path, key, at, body):
        self.method = method
        self.path = path
        self.key = key      # the Idempotency-Key header, or None
        self.at = at        # time.monotonic() when it arrived
        self.body = body    # the request body (bytes)

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "<%s %s key=%s>" % (self.method, self.path, self.key)


class Gate:
    """Holds every request whose path contains `match` until released (or until timeout)."""

    def __init__(self, match, timeout):
        self.match = match
        self.timeout = timeout
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.held = []

    def release(self):
        self.released.set()


class SideEffectServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.gates = []
        self.failing = set()
        # Called with each Request as it arrives, before it is answered (from the server's
        # thread for that request): a test looks at the rest of the world at that moment.
        self.on_request = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                key = self.headers.get("Idempotency-Key")
                url = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(url.query)
                req = Request(self.command, url.path, key, time.monotonic(), body)
                with outer.lock:
                    outer.requests.append(req)
                    count = sum(1 for r in outer.requests if r.key == key)
                    gates = [g for g in outer.gates if g.match in url.path]
                hook = outer.on_request
                if hook:
                    hook(req)
                for g in gates:
                    g.held.append(req)
                    g.arrived.set()
                    g.released.wait(g.timeout)
                ms = int(q.get("ms", ["0"])[0])
                if ms:
                    time.sleep(ms / 1000.0)
                parts = url.path.split("/")
                status = 200
                if len(parts) > 2 and parts[1] == "fail" and parts[2] in outer.failing:
                    status = 500
                body = json.dumps({"ok": status == 200, "key": key, "n": count,
                                   "path": url.path}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    # The caller was killed while its request was held: that is the point.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a peer that died mid-request (a killed worker's engine) is expected

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        for g in list(self.gates):
            g.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- test controls --

    def gate(self, match, timeout=60):
        """Holds requests whose path contains match; returns the Gate."""
        g = Gate(match, timeout)
        with self.lock:
            self.gates.append(g)
        return g

    def ungate(self, g):
        g.release()
        with self.lock:
            if g in self.gates:
                self.gates.remove(g)

    def fail(self, name, on=True):
        with self.lock:
            (self.failing.add if on else self.failing.discard)(name)

    def seen(self, contains=None):
        """The requests so far (those whose path contains `contains`, if given)."""
        with self.lock:
            return [r for r in self.requests if contains is None or contains in r.path]

    def counts(self, contains=None):
        """{Idempotency-Key: number of requests}, None counting the requests without one."""
        out = {}
        for r in self.seen(contains):
            out[r.key] = out.get(r.key, 0) + 1
        return out
