"""Shared harness of the service end-to-end tests: starts redis-server, PostgreSQL and flowd
processes on a temp dir and free ports, waits until each is ready, talks HTTP to them, and always
cleans up. Cleanup runs on a normal exit, on an exception, on SIGTERM/SIGINT (meson's timeout),
and even when the test itself is SIGKILLed: a guard process in its own session watches a pipe
from the test and, when it closes, kills what the test registered and removes the temp dir.

Python 3 standard library only.
"""
import ctypes
import glob
import hashlib
import hmac
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

FLOWD = os.environ.get("FLOWD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "build", "flowd")
API_KEY = "test-api-key-0123456789abcdef"
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
WEBHOOK = "@activepieces/piece-webhook"

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # A child started by the test dies with it even if the guard is late.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Failure(Exception):
    pass


def log(msg, *args):
    sys.stderr.write(("[%7.2f] " % (time.monotonic() - _T0)) + (msg % args if args else msg) + "\n")
    sys.stderr.flush()


_T0 = time.monotonic()


def check(cond, msg, *args):
    if not cond:
        raise Failure(msg % args if args else msg)


def wait_for(pred, timeout, what, interval=0.05):
    """Calls pred until it returns something true; returns that. Raises Failure at timeout."""
    end = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, http.client.HTTPException) as e:
            last_exc = e
        if time.monotonic() >= end:
            raise Failure("timed out after %.1fs waiting for %s%s" % (
                timeout, what, " (last error: %s)" % last_exc if last_exc else ""))
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin():
    env = os.environ.get("FLOWD_PG_BIN")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise Failure("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    return os.path.dirname(found[-1])


# ---- HTTP ------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self):
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            raise Failure("expected JSON, got %d %r" % (self.status, self.body[:300]))

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


class Client:
    """One app (or worker health port) on 127.0.0.1. A connection per request: simple, and the
    threads of a load test each get their own."""

    def __init__(self, port, key=API_KEY):
        self.port = port
        self.key = key

    def request(self, method, path, body=None, headers=None, timeout=30, auth=True):
        h = {}
        if auth and self.key:
            h["Authorization"] = "Bearer " + self.key
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def push_flow(self, flow):
        r = self.post("/v1/flows", flow)
        check(r.status == 201, "pushing flow %r: %r", flow.get("displayName"), r)
        return r.json()

    def run(self, run_id):
        r = self.get("/v1/flow-runs/" + run_id)
        check(r.status == 200, "GET run %s: %r", run_id, r)
        return r.json()

    def wait_run(self, run_id, statuses, timeout):
        """Waits until the run's status is one of statuses; returns the run."""
        if isinstance(statuses, str):
            statuses = (statuses,)
        seen = {}

        def done():
            run = self.run(run_id)
            seen["run"] = run
            return run if run["status"] in statuses else None
        try:
            return wait_for(done, timeout, "run %s to be %s" % (run_id, "/".join(statuses)),
                            interval=0.1)
        except Failure as e:
            raise Failure("%s; last seen: %s" % (e, json.dumps(seen.get("run"))[:2000]))

    def runs(self, **query):
        """Every run matching the query (following the cursor)."""
        out = []
        q = dict(query)
        q.setdefault("limit", 1000)
        while True:
            r = self.get("/v1/flow-runs?" + urllib.parse.urlencode(q))
            check(r.status == 200, "listing runs: %r", r)
            page = r.json()
            out.extend(page["data"])
            if not page.get("next"):
                return out
            q["cursor"] = page["next"]

    def metrics(self):
        r = self.get("/metrics", auth=False)
        check(r.status == 200, "GET /metrics: %r", r)
        return parse_metrics(r.body.decode())


def parse_metrics(text):
    """Prometheus text to {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def parallel(n_threads, items, fn):
    """Runs fn(item) over items on n_threads threads; returns results in order. The first
    exception is raised after all threads end."""
    items = list(items)
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    it = iter(range(len(items)))

    def worker():
        while True:
            with lock:
                i = next(it, None)
            if i is None or errors:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
                return
    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def engine_token(run_id, secret=JWT_SECRET, iat=None, exp=None):
    """A per-run token as core/token.h makes it (JWT HS256)."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now = int(time.time())
    iat = now if iat is None else iat
    exp = now + 3600 if exp is None else exp
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps({"sub": run_id, "iat": iat, "exp": exp},
                          separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64(mac)


# ---- flows -----------------------------------------------------------------------------------

def webhook_trigger(next_action=None):
    t = {"name": "trigger", "type": "PIECE_TRIGGER", "displayName": "Catch Webhook", "valid": True,
         "settings": {"pieceName": WEBHOOK, "pieceVersion": "~0.1.0",
                      "triggerName": "catch_webhook", "input": {"authType": "none"}}}
    if next_action:
        t["nextAction"] = next_action
    return t


def code_step(name, code, inputs=None, next_action=None):
    s = {"name": name, "type": "CODE", "displayName": "Code " + name, "valid": True,
         "settings": {"input": inputs or {},
                      "sourceCode": {"code": code, "packageJson": "{}"}}}
    if next_action:
        s["nextAction"] = next_action
    return s


def piece_step(name, piece, action, inputs, next_action=None):
    s = {"name": name, "type": "PIECE", "displayName": "Piece " + name, "valid": True,
         "settings": {"pieceName": piece, "pieceVersion": "~0.1.0", "actionName": action,
                      "input": inputs}}
    if next_action:
        s["nextAction"] = next_action
    return s


def return_response(name, status, headers, body, next_action=None):
    return piece_step(name, WEBHOOK, "return_response",
                      {"responseType": "json", "respond": "stop",
                       "fields": {"status": status, "headers": headers, "body": body}},
                      next_action)


def flow(display, first_action):
    return {"displayName": display, "trigger": webhook_trigger(first_action)}


def sleep_code(ms, result="{slept: true}"):
    """A code step body that waits ms on a timer (not a busy loop) and returns result."""
    return ("export const code = async (inputs) => { await new Promise(r => setTimeout(r, %d)); "
            "return %s; }" % (ms, result))


# ---- processes -------------------------------------------------------------------------------

class Proc:
    def __init__(self, name, popen, log_path, port=None):
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.port = port

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def send(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the process and waits; SIGKILL if it does not end in time. Returns the exit
        status."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s did not stop in %ss after %s: killing it", self.name, timeout, sig)
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self):
        return self.stop(signal.SIGKILL, 5)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def children(self):
        """Pids of the direct children (the engines of a worker), whichever thread forked
        them."""
        out = []
        for path in glob.glob("/proc/%d/task/*/children" % self.pid):
            try:
                with open(path) as f:
                    out.extend(int(p) for p in f.read().split())
            except OSError:
                pass
        return out

    def engine_pids(self):
        out = []
        for pid in self.children():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[1] == b"engine":
                out.append(pid)
        return out


class Harness:
    """Use as a context manager: everything started through it is stopped on exit."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="flowd-%s-" % name)
        # PostgreSQL runs as another user and must reach its directory under this one.
        os.chmod(self.dir, 0o711)
        self.procs = []
        self.pg = []
        self._cleaned = False
        self._guard_file = os.path.join(self.dir, ".guard")
        open(self._guard_file, "w").close()
        self._guard = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--guard", self.dir],
            stdin=subprocess.PIPE, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, sig, frame):
        raise Failure("received signal %d" % sig)

    def _register(self, line):
        with open(self._guard_file, "a") as f:
            f.write(line + "\n")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            self.dump_logs()
        self.cleanup()
        return False

    def dump_logs(self, tail=60):
        for p in self.procs:
            text = p.log_text().splitlines()
            sys.stderr.write("---- last %d lines of %s (%s) ----\n" % (tail, p.name, p.log_path))
            for line in text[-tail:]:
                sys.stderr.write(line[:2000] + "\n")
        sys.stderr.flush()

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def spawn(self, name, argv, env=None, cwd=None, port=None):
        log_path = self.path("%s.log" % name)
        logf = open(log_path, "ab")
        p = subprocess.Popen(argv, env=env, cwd=cwd or self.dir, stdin=subprocess.DEVNULL,
                             stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        logf.close()
        self._register("pid %d" % p.pid)
        proc = Proc(name, p, log_path, port)
        self.procs.append(proc)
        return proc

    # -- redis --

    def redis(self, name="redis"):
        """Starts redis-server on a unix socket; returns its AP_REDIS_URL."""
        sock = self.path("%s.sock" % name)
        d = self.path(name)
        os.makedirs(d, exist_ok=True)
        proc = self.spawn(name, ["redis-server", "--port", "0", "--unixsocket", sock,
                                 "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                                 "--dir", d, "--daemonize", "no"])
        wait_for(lambda: self.redis_cli(sock, "PING") == "PONG", 10, "redis-server to answer")
        proc.socket = sock
        return "unix://" + sock

    @staticmethod
    def redis_cli(sock, *args):
        r = subprocess.run(["redis-cli", "-s", sock] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=10)
        if r.returncode:
            raise OSError("redis-cli %s: %s" % (" ".join(map(str, args)), r.stderr.strip()))
        return r.stdout.strip()

    # -- postgres --

    def postgres(self):
        """initdb + pg_ctl -w as the postgres user (when root) on a temp dir, fsync off, unix
        socket only; returns the libpq connection string."""
        bindir = pg_bin()
        base = self.path("pg")
        data = os.path.join(base, "data")
        os.makedirs(base)
        kw = {}
        if os.getuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        os.chmod(base, 0o700)
        logp = os.path.join(base, "server.log")

        self._register("pg %s %s" % (bindir, data))

        def run(argv):
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, cwd=base, **kw)
            self._register("pid %d" % p.pid)
            out, _ = p.communicate(timeout=120)
            if p.returncode:
                raise Failure("%s failed: %s" % (argv[0], out[-3000:]))
        run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--locale=C"])
        self.pg.append((bindir, data, kw))
        opts = ("-F -k %s -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200" % base)
        run([os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-t", "60", "-l", logp,
             "-o", opts, "start"])
        return "host=%s port=5432 user=postgres dbname=postgres" % base

    # -- flowd --

    def flowd_env(self, config_dir, port, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AP_")}
        env.update({
            "AP_CONFIG_PATH": config_dir,
            "AP_PORT": str(port),
            "AP_API_KEY": API_KEY,
            "AP_JWT_SECRET": JWT_SECRET,
            "AP_LOG_LEVEL": "info",
            "AP_FRONTEND_URL": "http://127.0.0.1:%d" % port,
        })
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def flowd(self, name, role, env=None, port=None, args=(), config_dir=None, ready=True):
        """Starts `flowd <role>` (serve, app, worker) with its own AP_CONFIG_PATH and AP_PORT,
        and waits for /v1/health (the app's, or the worker's health port) unless ready=False."""
        port = port or free_port()
        config_dir = config_dir or self.path(name + "-var")
        # A relative config_dir is taken as flowd takes it: from its working dir, ours.
        os.makedirs(os.path.join(self.dir, config_dir), exist_ok=True)
        e = self.flowd_env(config_dir, port, env)
        proc = self.spawn(name, [FLOWD, role] + list(args), env=e, port=port)
        proc.env = e
        proc.role = role
        proc.args = list(args)
        proc.config_dir = config_dir
        if ready:
            self.wait_ready(proc)
        return proc

    def restart(self, proc, ready=True):
        """Starts the same command again, with the same name, port and configuration."""
        new = self.spawn(proc.name, [FLOWD, proc.role] + proc.args, env=proc.env, port=proc.port)
        new.env, new.role, new.args, new.config_dir = proc.env, proc.role, proc.args, \
            proc.config_dir
        if ready:
            self.wait_ready(new)
        return new

    def wait_ready(self, proc, timeout=30):
        c = Client(proc.port)

        def ok():
            if not proc.alive():
                raise Failure("%s exited with %s before it was ready:\n%s" % (
                    proc.name, proc.popen.returncode, proc.log_text()[-3000:]))
            return c.get("/v1/health", auth=False, timeout=2).status == 200
        wait_for(ok, timeout, "%s to be ready" % proc.name, interval=0.05)

    # -- cleanup --

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        for sig, old in self._old.items():
            signal.signal(sig, old)
        for p in reversed(self.procs):
            try:
                p.stop(signal.SIGTERM, 10)
            except Exception as e:  # noqa: BLE001 - keep cleaning
                log("stopping %s: %s", p.name, e)
        for bindir, data, kw in self.pg:
            subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w",
                            "stop"], capture_output=True, timeout=60, **kw)
        if os.environ.get("FLOWD_KEEP_TMP"):
            log("kept %s", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self._guard.stdin.close()
            self._guard.wait(30)
        except Exception:  # noqa: BLE001
            pass


def _guard_main(directory):
    """Waits for the test to go away (EOF on stdin), then kills and removes what it left."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdin.buffer.read()
    except Exception:  # noqa: BLE001
        pass
    path = os.path.join(directory, ".guard")
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    for parts in lines:
        if parts[0] == "pid":
            try:
                os.kill(int(parts[1]), signal.SIGKILL)
            except OSError:
                pass
    # A postmaster that pg_ctl had just forked writes its pid file late: look twice.
    for _ in range(2):
        for parts in lines:
            if parts[0] == "pg" and os.path.exists(os.path.join(parts[2], "postmaster.pid")):
                kw = {}
                if os.getuid() == 0:
                    import pwd
                    pw = pwd.getpwnam("postgres")
                    kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
                subprocess.run([os.path.join(parts[1], "pg_ctl"), "-D", parts[2], "-m",
                                "immediate", "-w", "stop"], capture_output=True, timeout=60,
                               **kw)
        time.sleep(1)
    if not os.environ.get("FLOWD_KEEP_TMP"):
        shutil.rmtree(directory, ignore_errors=True)
        time.sleep(1)  # anything that was still exiting may have written one last file
        shutil.rmtree(directory, ignore_errors=True)


def main(test):
    """Runs test() and turns the outcome into an exit status and a last line."""
    try:
        test()
    except Failure as e:
        log("FAIL: %s", e)
        sys.exit(1)
    log("PASS")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--guard":
    _guard_main(sys.argv[2])
