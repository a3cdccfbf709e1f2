"""Servers and clients for the app's integration tests, Python stdlib only.

Every server runs on a temp dir and a free port (or a unix socket) and is stopped at exit, even
when a test fails: redis-server, a PostgreSQL cluster (initdb + pg_ctl as the `postgres` user
when run as root), and `flowd app` processes. Also a minimal Redis client (RESP) to inspect
BullMQ keys, and HS256 engine tokens minted as a worker would.
"""
import atexit
import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

FLOWD = os.environ.get("FLOWD", "build/flowd")
_cleanups = []

# A guard process, in its own session so that killing the test's process group spares it,
# reads cleanup actions (JSON lines) on its stdin and runs them all when that closes: when this
# script exits, however it exits (SIGKILL included). Actions: ["kill", pid], ["run", argv,
# uid_or_null], ["rmtree", path].
_GUARD = r"""
import json, os, shutil, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
actions = [json.loads(l) for l in sys.stdin]
for a in reversed(actions):
    try:
        if a[0] == "kill":
            os.kill(a[1], signal.SIGKILL)
        elif a[0] == "run":
            def demote(uid=a[2]):
                if uid is not None:
                    import pwd
                    pw = pwd.getpwuid(uid)
                    os.setgid(pw.pw_gid)
                    os.setuid(uid)
            # A server caught starting has no pid file yet: try again for a while.
            for _ in range(10):
                if subprocess.call(a[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=demote) == 0:
                    break
                import time
                time.sleep(1)
        elif a[0] == "rmtree":
            shutil.rmtree(a[1], ignore_errors=True)
    except Exception:
        pass
"""
_guard = subprocess.Popen([sys.executable, "-c", _GUARD], stdin=subprocess.PIPE,
                          start_new_session=True, text=True)


def _guard_add(*action):
    _guard.stdin.write(json.dumps(list(action)) + "\n")
    _guard.stdin.flush()


def _cleanup_all():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass


atexit.register(_cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda *_: (_cleanup_all(), os._exit(1)))


def temp_dir(prefix):
    """A temp dir removed at exit."""
    d = tempfile.mkdtemp(prefix=prefix)
    _cleanups.insert(0, lambda: shutil.rmtree(d, ignore_errors=True))
    _guard_add("rmtree", d)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout=10.0, step=0.05, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


# ---- Redis ----

class Redis:
    """A blocking RESP2 client, enough to look at BullMQ's keys."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError("bad RESP line %r" % line)

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def hgetall(self, key):
        flat = self("HGETALL", key) or []
        return dict(zip(flat[::2], flat[1::2]))


def start_redis():
    d = tempfile.mkdtemp(prefix="flowd-redis-")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", d],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _guard_add("rmtree", d)
    _guard_add("kill", proc.pid)

    def stop():
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)

    _cleanups.append(stop)

    def up():
        try:
            return Redis(port)("PING") == "PONG"
        except OSError:
            return False

    wait_until(up, what="redis-server")
    return port


# ---- PostgreSQL ----

def pg_bin():
    if os.environ.get("FLOWD_PG_BIN"):
        return os.environ["FLOWD_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        return None
    return os.path.dirname(found[-1])


def start_postgres():
    """Returns a libpq connection string of a fresh server on a unix socket."""
    bindir = pg_bin()
    if not bindir:
        raise RuntimeError("no PostgreSQL binaries (set FLOWD_PG_BIN)")
    d = tempfile.mkdtemp(prefix="flowd-pg-")
    demote = None
    if os.getuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)

        def demote():
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
    data = os.path.join(d, "data")
    log = open(os.path.join(d, "setup.log"), "wb")
    subprocess.check_call([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A",
                           "trust", "-E", "UTF8", "--no-sync"], stdout=log, stderr=log,
                          preexec_fn=demote)
    opts = ("-k %s -c listen_addresses= -p 5432 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=60" % d)
    ctl = os.path.join(bindir, "pg_ctl")

    def stop():
        subprocess.call([ctl, "-D", data, "-m", "immediate", "-w", "stop"], stdout=log,
                        stderr=log, preexec_fn=demote)
        shutil.rmtree(d, ignore_errors=True)

    _cleanups.append(stop)
    _guard_add("rmtree", d)
    _guard_add("run", [ctl, "-D", data, "-m", "immediate", "-w", "stop"],
               pwd.getpwnam("postgres").pw_uid if os.getuid() == 0 else None)
    subprocess.check_call([ctl, "-D", data, "-o", opts, "-l", os.path.join(d, "server.log"),
                           "-w", "-t", "60", "start"], stdout=log, stderr=log, preexec_fn=demote)
    return "host=%s port=5432 user=postgres dbname=postgres" % d


# ---- flowd app ----

class App:
    """One `flowd app` process."""

    def __init__(self, redis_port, db, config_path=None, env=None, port=None):
        self.port = port or free_port()
        self.dir = config_path or temp_dir("flowd-app-")
        self.redis_port = redis_port
        e = {k: v for k, v in os.environ.items() if not k.startswith("AP_")}
        e.update({
            "AP_PORT": str(self.port),
            "AP_CONFIG_PATH": self.dir,
            "AP_REDIS_URL": "redis://127.0.0.1:%d" % redis_port,
            "AP_LOG_LEVEL": "warn",
        })
        if db != "sqlite":
            e.update({"AP_DB_TYPE": "POSTGRES", "AP_POSTGRES_URL": db})
        e.update(env or {})
        self.env = e
        self.log = open(os.path.join(self.dir, "app.log"), "ab")
        self.out = open(os.path.join(self.dir, "app.out"), "ab")
        self.proc = subprocess.Popen([FLOWD, "app"], env=e, stdout=self.out, stderr=self.log)
        _cleanups.append(self.kill)
        _guard_add("kill", self.proc.pid)
        wait_until(self._up, what="flowd app on port %d" % self.port)
        self.api_key = e.get("AP_API_KEY") or open(os.path.join(self.dir, "api-key")).read().strip()
        self.jwt_secret = (e.get("AP_JWT_SECRET")
                           or open(os.path.join(self.dir, "jwt-secret")).read().strip())

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("flowd app exited with %s; log:\n%s" % (
                self.proc.returncode, open(os.path.join(self.dir, "app.log")).read()))
        try:
            return request(self.port, "GET", "/v1/health")[0] == 200
        except OSError:
            return False

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=15):
        """SIGTERM; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    # API helpers
    def api(self, method, path, body=None, key=None, headers=None):
        h = {"Authorization": "Bearer " + (key if key is not None else self.api_key)}
        h.update(headers or {})
        return request(self.port, method, path, body, h)

    def engine(self, method, path, body=None, token=None, run_id=None):
        tok = token or mint_token(self.jwt_secret, run_id)
        return request(self.port, method, path, body, {"Authorization": "Bearer " + tok})


def request(port, method, path, body=None, headers=None, raw=None, timeout=60):
    """Returns (status, parsed JSON or text or None, headers dict)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    data = raw
    if body is not None and raw is None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    payload = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    parsed = None
    if payload:
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = payload.decode(errors="replace")
    return resp.status, parsed, hdrs


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_token(secret, run_id, exp=None, iat=None):
    """An engine token as a worker mints it (core/token.h)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": run_id, "iat": iat or now, "exp": exp or now + 600}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(secret.encode(), (header + "." + payload).encode(),
                        hashlib.sha256).digest())
    return header + "." + payload + "." + sig


def quote(s):
    return urllib.parse.quote(s, safe="")
