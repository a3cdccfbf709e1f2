#!/usr/bin/env python3
"""The sandbox through the service (issues 6 and 7): a real `flowd app` and `flowd worker` in one
AP_EXECUTION_MODE, with flows whose code steps try to get out, and the test looking at the real
engine processes the worker started, from the host, while they run.

  escape      code steps (and the http piece) try to read /etc/shadow, the worker's config dir
              (api-key, jwt-secret, flowd.db), its environment and AP_JWT_SECRET through every
              door JavaScriptCore might offer: each run FAILS, says why, and leaks nothing, and
              the next run succeeds
  engine      the engine's environment holds no secret (/proc/<pid>/environ, and no page of its
              memory holds the API key or the JWT secret); it holds no fd of the worker's; its
              credentials, seccomp and no_new_privs; in the process modes its own namespaces,
              a root without /etc/shadow or the config dir, and a /proc that shows only itself
  tmp         process modes: two jobs' /tmp are apart while they run, and a file left in one
              job's /tmp is not there for the next job; every mode: nothing a step leaves in
              its JavaScript globals reaches the next job
  memory      a memory bomb is MEMORY_LIMIT_EXCEEDED, with the peak in GET /v1/flow-runs/:id
              and in `flowd runs show`
  timeout     a CPU spin is TIMEOUT
  network     STRICT (issue 7): http steps and code fetch reach the allowed 127.0.0.2 through
              the egress broker, not 127.0.0.1 nor the app's port; inside the engine's network
              namespace raw TCP and UDP reach nothing. UNRESTRICTED: the same server on
              127.0.0.1 is reached
  leaks       N sequential runs leave no fds in the worker, no cgroups under the sandbox parent,
              no mounts, no processes (--runs; `make bench` runs 1,000)
  orphans     the worker SIGKILLed mid-run takes its engines and zygote with it; the next worker
              sweeps its cgroups and finishes the run

The raw-socket proof inside a sandbox with its seccomp filter (socket(AF_INET) refused) is the
module's own: tests/sandbox/run.py (test_network) and tests/unit/test_egress.c
(test_engine_in_netns); here the same is shown of the namespace the worker made for a real job.

usage: run.py --mode SANDBOX_PROCESS [--net STRICT] [--runs N] [--only CASE,...]
"""
import argparse
import ctypes
import errno
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
from harness import (FLOWD, Client, Failure, Harness, check, code_step, flow, log,  # noqa: E402
                     main, piece_step, wait_for)

FINAL = ("SUCCEEDED", "FAILED", "TIMEOUT", "INTERNAL_ERROR", "MEMORY_LIMIT_EXCEEDED",
         "LOG_SIZE_EXCEEDED")
PROCESS_MODES = ("SANDBOX_PROCESS", "SANDBOX_CODE_AND_PROCESS")
FLOW_TIMEOUT_S = 8
MEMORY_LIMIT_KB = 96 * 1024
# What the worker may hand an engine in its environment; nothing else.
# A flowd built under /tmp is laid read-only inside each sandbox's /tmp at its own path: that
# entry is the binary, not a job's leftover.
_flowd_real = os.path.realpath(FLOWD)
LAID_IN_TMP = {_flowd_real.split("/")[2]} if _flowd_real.startswith("/tmp/") else set()

ENGINE_ENV_KEYS = {"LANG", "PATH", "AP_LOG_LEVEL", "AP_LOG_PRETTY", "FLOWD_EGRESS_FD"}
HTTP = "@activepieces/piece-http"
try:
    with open("/etc/shadow") as _f:
        SHADOW_LINE = _f.readline().strip() or "\0"
except OSError:
    SHADOW_LINE = "\0"


# ---- processes as the host sees them ---------------------------------------------------------

def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def status_fields(pid):
    out = {}
    for line in read("/proc/%d/status" % pid).splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def start_time(pid):
    """Field 22 of /proc/pid/stat: tells a pid from a later process that reuses it."""
    try:
        stat = read("/proc/%d/stat" % pid)
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid, started):
    try:
        stat = read("/proc/%d/stat" % pid)
    except OSError:
        return False
    rest = stat.rsplit(")", 1)[1].split()
    return rest[0] != "Z" and int(rest[19]) == started


def ns(pid, kind):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def argv_of(pid):
    try:
        return read("/proc/%d/cmdline" % pid, "rb").split(b"\0")
    except OSError:
        return []


class Engines:
    """The worker's engine processes, its zygote and its pre-started sandboxes, told apart by
    what they are: a sandbox is in a PID namespace of its own, the zygote shares the worker's;
    an engine speaks to the worker over pipes, a sandbox waiting for its job has none."""

    def __init__(self, worker, mode):
        self.worker = worker
        self.mode = mode

    def scan(self):
        """(engines, zygotes, waiting sandboxes)"""
        engines, zygotes, waiting = [], [], []
        for pid in self.worker.children():
            argv = argv_of(pid)
            if len(argv) < 2 or argv[1] != b"engine":
                continue
            try:
                own_pidns = ns(pid, "pid") != ns(self.worker.pid, "pid")
                piped = os.readlink("/proc/%d/fd/1" % pid).startswith("pipe:")
            except OSError:
                continue
            if b"--zygote" in argv and not own_pidns:
                zygotes.append(pid)
            elif piped:
                engines.append(pid)
            else:
                waiting.append(pid)
        return engines, zygotes, waiting

    def engines(self):
        return self.scan()[0]

    def zygotes(self):
        return self.scan()[1]


def memory_holds(pid, needles):
    """Which of needles (bytes) appear in a resident page of the process, reading its memory as
    root through /proc/pid/mem. Only regions with resident pages (smaps), and in them only the
    present pages (pagemap), are read, so that reading faults in none of the large ranges
    JavaScriptCore reserves; read-only mappings of shared libraries are skipped: they are the
    files' contents, the same for every process. Returns (found, bytes scanned)."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = set()
    scanned = 0
    regions = []
    try:
        cur = None
        for line in read("/proc/%d/smaps" % pid).splitlines():
            head = line.split(None, 5)
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = [lo, hi, head[1], head[5] if len(head) > 5 else "", 0]
                regions.append(cur)
            elif head[0] == "Rss:" and cur:
                cur[4] = int(head[1])
        mem = open("/proc/%d/mem" % pid, "rb", buffering=0)
        pagemap = open("/proc/%d/pagemap" % pid, "rb", buffering=0)
    except OSError as e:
        raise Failure("cannot read the memory of engine %d: %s" % (pid, e))
    with mem, pagemap:
        for lo, hi, perms, path, rss in regions:
            if not rss or "r" not in perms or path in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            if path.startswith("/") and ".so" in path and "w" not in perms:
                continue
            try:
                pagemap.seek(lo // page * 8)
                entries = pagemap.read((hi - lo) // page * 8)
            except OSError:
                continue
            # Bit 63 of each little-endian entry: the page is present.
            for run in re.finditer(rb"[\x80-\xff]+", entries[7::8]):
                try:
                    mem.seek(lo + run.start() * page)
                    chunk = mem.read((run.end() - run.start()) * page)
                except OSError:
                    chunk = b""
                scanned += len(chunk)
                for nd in needles:
                    if nd in chunk:
                        found.add(nd)
    return found, scanned


def fd_targets(pid):
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


WRITE_AS = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
# Files the host's root creates in a sandbox's tmpfs must belong to an id mapped in the
# sandbox's user namespace: the sandbox's own. The fs ids change, the capabilities that let
# root reach the sandbox's root through /proc stay.
libc.setfsgid(65534)
libc.setfsuid(65534)
with open(sys.argv[1], "w") as f:
    f.write(sys.argv[2])
"""


def write_in_sandbox(pid, path, data):
    """Writes a file inside a running sandbox's filesystem (e.g. its /tmp), from the host."""
    r = subprocess.run([sys.executable, "-c", WRITE_AS, "/proc/%d/root%s" % (pid, path), data],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "cannot write %s in sandbox %d: %s", path, pid, r.stderr[-300:])


def mount_count(pid="self"):
    return len(read("/proc/%s/mountinfo" % pid).splitlines())


def sandbox_cgroups(cgroup_dir, owner):
    """The cgroups of owner's sandboxes (named <owner>-<spawner>-<seq> by src/sandbox)."""
    if not cgroup_dir or not os.path.isdir(cgroup_dir):
        return []
    return [d for d in os.listdir(cgroup_dir) if d.startswith("%d-" % owner)]


# ---- local servers ---------------------------------------------------------------------------

class CountingServer:
    """HTTP on one address; counts the connections that reach it; answers {"server": name}.
    GET /hold/<id> answers only once the test releases id: a job whose code step calls it stays
    running, engine and all, for as long as the test looks at it."""

    def __init__(self, name, host):
        self.name = name
        self.connections = 0
        self.lock = threading.Lock()
        self.waiting = set()
        self.client_ports = {}
        self.released = set()
        self.cond = threading.Condition(self.lock)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/hold/"):
                    hold = self.path[len("/hold/"):]
                    with outer.cond:
                        outer.client_ports[hold] = self.client_address[1]
                        outer.waiting.add(hold)
                        outer.cond.notify_all()
                        outer.cond.wait_for(lambda: hold in outer.released, 60)
                        outer.waiting.discard(hold)
                body = json.dumps({"server": outer.name}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # a killed engine's held request

            def log_message(self, *a):
                pass

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

            def get_request(self):
                conn = super().get_request()
                outer.connections += 1
                return conn
        self.srv = Srv((host, 0), Handler)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def wait_held(self, hold, timeout=20):
        with self.cond:
            if not self.cond.wait_for(lambda: hold in self.waiting, timeout):
                raise Failure("the job holding on %r never called the server" % hold)

    def release(self, hold):
        with self.cond:
            self.released.add(hold)
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.released.update(self.waiting)
            self.cond.notify_all()
        self.srv.shutdown()
        self.srv.server_close()


class UdpSink:
    """Counts datagrams that arrive on one address."""

    def __init__(self, host):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping:
            try:
                self.sock.recv(2048)
                self.count += 1
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()


def host_addresses():
    """This host's IPv4 addresses other than loopback."""
    out = set()
    try:
        text = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                              text=True, timeout=10).stdout
        for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", text):
            if not m.group(1).startswith("127."):
                out.add(m.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    return sorted(out)


# ---- the service -----------------------------------------------------------------------------

class Service:
    """redis-server, `flowd app` and `flowd worker` sharing one AP_CONFIG_PATH that flowd
    creates itself (0700), with a generated API key and JWT secret in it, as an operator's
    first start leaves it. The worker also gets both secrets in its environment."""

    def __init__(self, h, mode, net, concurrency, extra=None, holder=None):
        self.h = h
        self.holder = holder
        self.holds = 0
        self.mode = mode
        self.net = net
        self.config_dir = h.path("var")  # not created here: flowd makes it 0700
        self.redis_url = h.redis()
        self.app_port = None
        common = {"AP_REDIS_URL": self.redis_url, "AP_FLOW_TIMEOUT_SECONDS": FLOW_TIMEOUT_S,
                  "AP_SANDBOX_MEMORY_LIMIT": MEMORY_LIMIT_KB, "AP_LOG_LEVEL": "info",
                  "AP_WORKER_LOCK_DURATION_SECONDS": 4, "AP_WORKER_STALLED_INTERVAL_SECONDS": 2}
        common.update(extra or {})
        self.app = self._start("app", "app", dict(common, AP_API_KEY=None, AP_JWT_SECRET=None))
        self.api_key = read(os.path.join(self.config_dir, "api-key")).strip()
        self.jwt_secret = read(os.path.join(self.config_dir, "jwt-secret")).strip()
        self.client = Client(self.app.port, key=self.api_key)
        self.worker_env = dict(common, AP_API_KEY=self.api_key, AP_JWT_SECRET=self.jwt_secret,
                               AP_EXECUTION_MODE=mode, AP_NETWORK_MODE=net,
                               AP_WORKER_CONCURRENCY=concurrency,
                               AP_APP_URL="http://127.0.0.1:%d" % self.app.port)
        self.worker = self._start("worker", "worker", self.worker_env)
        self.engines = Engines(self.worker, mode)
        check(os.stat(self.config_dir).st_mode & 0o777 == 0o700,
              "flowd created AP_CONFIG_PATH with mode %o", os.stat(self.config_dir).st_mode)
        for name in ("api-key", "jwt-secret", "flowd.db"):
            check(os.path.exists(os.path.join(self.config_dir, name)), "no %s in %s", name,
                  self.config_dir)

    def _start(self, name, role, env):
        from harness import free_port
        port = free_port()
        e = self.h.flowd_env(self.config_dir, port, env)
        proc = self.h.spawn(name, [FLOWD, role], env=e, port=port)
        proc.env, proc.role, proc.args, proc.config_dir = e, role, [], self.config_dir
        self.h.wait_ready(proc)
        return proc

    def restart_worker(self):
        self.worker = self._start("worker", "worker", self.worker_env)
        self.engines = Engines(self.worker, self.mode)
        return self.worker

    @property
    def secrets(self):
        return {"api key": self.api_key, "JWT secret": self.jwt_secret}

    def forbidden_paths(self):
        return ["/etc/shadow", self.config_dir] + [
            os.path.join(self.config_dir, n) for n in ("api-key", "jwt-secret", "flowd.db")]

    def push(self, name, first):
        return self.client.push_flow(flow(name, first))

    def start_run(self, fl, body=None):
        r = self.client.post("/v1/webhooks/%s" % fl["id"], body or {}, auth=False)
        check(r.status == 200, "webhook of %s: %r", fl["displayName"], r)
        return r.json()["runId"]

    def run(self, fl, body=None, timeout=30):
        return self.client.wait_run(self.start_run(fl, body), FINAL, timeout)

    def sync(self, fl, body=None, timeout=30):
        r = self.client.post("/v1/webhooks/%s/sync" % fl["id"], body or {}, auth=False,
                             timeout=timeout)
        check(r.status in (200, 204), "sync webhook of %s: %r", fl["displayName"], r)
        return r

    def metrics(self):
        r = Client(self.worker.port).get("/metrics", auth=False)
        check(r.status == 200, "worker /metrics: %r", r)
        from harness import parse_metrics
        return parse_metrics(r.body.decode())

    def check_healthy(self, what):
        """The worker is alive and runs the next flow."""
        check(self.worker.alive(), "the worker died after %s", what)
        run = self.run(self.ok_flow)
        check(run["status"] == "SUCCEEDED" and run["steps"]["step_1"]["output"] == {"fine": 1},
              "the run after %s: %s %s", what, run["status"], run.get("failedStep"))

    def setup_flows(self):
        self.ok_flow = self.push("ok", code_step(
            "step_1", "export const code = async () => ({ fine: 1 })"))
        if self.holder:
            self.hold_flow = self.push("hold", code_step(
                "step_1", "export const code = async (inputs) => { const r = await fetch("
                "'http://127.0.0.2:%d/hold/' + inputs.hold); return await r.json(); }"
                % self.holder.port, {"hold": "{{trigger.body.hold}}"}))

    def hold(self):
        """Starts a run that stays in its code step until release(); returns (run id, hold)."""
        self.holds += 1
        hold = "h%d" % self.holds
        run_id = self.start_run(self.hold_flow, {"hold": hold})
        self.holder.wait_held(hold)
        return run_id, hold

    def engine_of(self, hold):
        """The engine process that runs the held job: the one that holds the client end of
        the held request's connection (in the process modes under STRICT, the socket the egress
        broker connected and passed to it)."""
        port = self.holder.client_ports[hold]

        def find():
            inodes = set()
            for line in read("/proc/self/net/tcp").splitlines()[1:]:
                f = line.split()
                if (int(f[1].split(":")[1], 16) == port and
                        int(f[2].split(":")[1], 16) == self.holder.port):
                    inodes.add("socket:[%s]" % f[9])
            for pid in self.engines.engines():
                try:
                    if inodes & set(fd_targets(pid).values()):
                        return pid
                except OSError:
                    pass
            return None
        return wait_for(find, 10, "the engine of held job %s" % hold, interval=0.02)

    def release(self, run_id, hold, status="SUCCEEDED"):
        self.holder.release(hold)
        run = self.client.wait_run(run_id, FINAL, 20)
        check(run["status"] == status, "held run %s: %s %s", run_id, run["status"],
              run.get("failedStep"))
        return run


def step_error(run):
    fs = run.get("failedStep") or {}
    return fs.get("message", "")


def no_secret_in(svc, what, text):
    for name, value in svc.secrets.items():
        check(value not in text, "%s: the %s reached it", what, name)
    check("SQLite format 3" not in text, "%s: flowd.db's content reached it", what)
    check(SHADOW_LINE not in text, "%s: /etc/shadow's content reached it", what)


# ---- cases -----------------------------------------------------------------------------------

def case_escape(svc):
    """Every door a code step might try, each its own run that must FAIL and say why."""
    cfg = svc.config_dir
    wpid = svc.worker.pid
    attempts = [
        ("fetch file:///etc/shadow", "return await (await fetch('file:///etc/shadow')).text();"),
        ("fetch the API key file", "return await (await fetch('file://%s/api-key')).text();" % cfg),
        ("fetch the JWT secret file",
         "return await (await fetch('file://%s/jwt-secret')).text();" % cfg),
        ("fetch flowd.db", "return await (await fetch('file://%s/flowd.db')).text();" % cfg),
        ("fetch its own environ", "return await (await fetch('file:///proc/self/environ')).text();"),
        ("fetch the worker's environ",
         "return await (await fetch('file:///proc/%d/environ')).text();" % wpid),
        ("fetch an upper-case, slash-less FILE: URL",
         "return await (await fetch('FILE:/etc/shadow')).text();"),
        ("import /etc/shadow", "return await import('/etc/shadow');"),
        ("import the JWT secret as a module", "return await import('file://%s/jwt-secret');" % cfg),
        ("require('fs')", "return require('fs').readFileSync('/etc/shadow', 'utf8');"),
        ("process.env", "return process.env.AP_JWT_SECRET;"),
        ("the jsc shell's read()", "return read('/etc/shadow');"),
        ("the jsc shell's readFile()", "return readFile('/etc/shadow');"),
        ("the jsc shell's load()", "return load('/etc/shadow');"),
        ("the jsc shell's $vm", "return $vm.crash();"),
        ("Deno", "return Deno.readTextFileSync('/etc/shadow');"),
        ("Bun", "return Bun.file('/etc/shadow').text();"),
        ("std/os modules", "return std.loadFile('/etc/shadow') + os.getenv('AP_JWT_SECRET');"),
        ("a Worker", "return new Worker('data:text/javascript,postMessage(1)');"),
        ("XMLHttpRequest to a file",
         "const x = new XMLHttpRequest(); x.open('GET', 'file:///etc/shadow', false); x.send();"
         " return x.responseText;"),
        ("a code step's globals for anything file-like",
         "const names = Object.getOwnPropertyNames(globalThis).filter(n => "
         "/^(read|load|open|file|fs|process|require|env|exec|spawn|system|Deno|Bun|os|std|"
         "\\$vm|\\$262|print|quit|gc|Worker)$/i.test(n)); throw new Error('file-like globals: ' "
         "+ JSON.stringify(names));"),
    ]
    flows = {}
    for what, body in attempts:
        code = "export const code = async (inputs) => { %s }" % body
        flows[what] = svc.push("escape " + what, code_step("step_1", code))
    http_file = svc.push("escape http piece file URL", piece_step(
        "step_1", HTTP, "send_request", {"method": "GET", "url": "file:///etc/shadow",
                                         "headers": {}, "queryParams": {}}))
    results = {}
    for what, fl in flows.items():
        run = svc.run(fl)
        text = json.dumps(run)
        no_secret_in(svc, what, text)
        msg = step_error(run)
        check(run["status"] == "FAILED" and msg and
              (run.get("failedStep") or {}).get("name") == "step_1",
              "%s: want a FAILED run that says why, got %s %s", what, run["status"], msg)
        results[what] = msg
    check(results["a code step's globals for anything file-like"].endswith("file-like globals: []"),
          "file-like globals exist: %s", results["a code step's globals for anything file-like"])
    run = svc.run(http_file)
    no_secret_in(svc, "http piece", json.dumps(run))
    check(run["status"] == "FAILED" and step_error(run),
          "http piece with a file URL: %s %s", run["status"], run.get("failedStep"))
    results["http piece file:///etc/shadow"] = step_error(run)
    for what, msg in results.items():
        log("  %-45s FAILED: %s", what, msg[:110])
    svc.check_healthy("the escape attempts")
    log("escape: %d attempts, each run FAILED saying why, nothing leaked; the worker is fine",
        len(results))


_libc = ctypes.CDLL(None, use_errno=True)
SYS_KCMP, KCMP_FILE = 312, 0  # x86_64


def same_open_file(pid1, fd1, pid2, fd2):
    """Whether two fds are the same open file description (kcmp), as after an inheritance;
    None when the kernel cannot tell."""
    r = _libc.syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2)
    return None if r < 0 else r == 0


def check_no_fd_of_theirs(svc, pid, fds, what, skip):
    """pid holds none of the worker's or the app's open files (their sockets, the store, a
    config file): not every library opens fds close-on-exec."""
    for owner, name in ((svc.worker.pid, "worker"), (svc.app.pid, "app")):
        theirs = fd_targets(owner)
        for fd, target in fds.items():
            if fd in skip:
                continue
            check(not target.startswith(svc.config_dir), "%s %d fd %d is %s", what, pid, fd,
                  target)
            for ofd, otarget in theirs.items():
                same = same_open_file(pid, fd, owner, ofd)
                if same is None:  # no kcmp: compare what they point at
                    same = target == otarget and not target.startswith(
                        ("anon_inode:", "/dev/", "/proc/"))
                check(not same, "%s %d fd %d is the %s's fd %d (%s)", what, pid, fd, name, ofd,
                      target)


def check_engine_process(svc, pid, strict):
    """What the host sees of one running engine."""
    mode = svc.mode
    env = read("/proc/%d/environ" % pid, "rb").split(b"\0")
    keys = {e.split(b"=", 1)[0].decode() for e in env if e}
    check(keys <= ENGINE_ENV_KEYS, "engine %d has environment variables %s", pid,
          sorted(keys - ENGINE_ENV_KEYS))
    envtext = b"\0".join(env).decode(errors="replace")
    no_secret_in(svc, "engine %d's environment" % pid, envtext)
    found, scanned = memory_holds(pid, [v.encode() for v in svc.secrets.values()])
    check(not found, "engine %d holds %s in its memory", pid, found)
    st = status_fields(pid)
    check(st.get("NoNewPrivs") == "1", "engine %d: NoNewPrivs %s", pid, st.get("NoNewPrivs"))
    check(st.get("Seccomp") == "2", "engine %d: Seccomp %s (want 2, a filter)", pid,
          st.get("Seccomp"))
    check(int(st.get("CapEff", "1"), 16) == 0 and int(st.get("CapPrm", "1"), 16) == 0,
          "engine %d has capabilities: %s %s", pid, st.get("CapEff"), st.get("CapPrm"))
    uids = set(st["Uid"].split())
    check(uids == {"65534"}, "engine %d runs as uid %s, want 65534 (nobody)", pid, uids)
    check(st.get("Groups", "") == "", "engine %d keeps groups %s", pid, st.get("Groups"))
    # Its fds: the three pipes, the broker under STRICT in the process modes, and what it
    # opened itself; none of the worker's or the app's (a socket, the store, a config file).
    fds = fd_targets(pid)
    for fd in (0, 1, 2):
        check(fds.get(fd, "").startswith("pipe:"), "engine %d fd %d is %s", pid, fd, fds.get(fd))
    if strict and mode in PROCESS_MODES:
        check(fds.get(3, "").startswith("socket:"), "engine %d: fd 3 (the egress broker) is %s",
              pid, fds.get(3))
    check_no_fd_of_theirs(svc, pid, fds, "engine", (0, 1, 2))
    view = {"env": "empty" if not keys else "only " + ",".join(sorted(keys))}
    if mode in PROCESS_MODES:
        kinds = ["pid", "mnt", "user", "ipc", "uts", "cgroup"] + (["net"] if strict else [])
        for kind in kinds:
            check(ns(pid, kind) != ns(svc.worker.pid, kind),
                  "engine %d shares the worker's %s namespace", pid, kind)
        check(st["NSpid"].split()[-1] == "1", "engine %d is not PID 1 of its namespace: %s",
              pid, st["NSpid"])
        root = "/proc/%d/root" % pid
        for path in svc.forbidden_paths() + [svc.h.dir, "/etc/passwd", "/root", "/home"]:
            check(not os.path.lexists(root + path), "engine %d's root has %s", pid, path)
        procs = sorted(d for d in os.listdir(root + "/proc") if d.isdigit())
        check(procs == ["1"], "engine %d's /proc shows processes %s", pid, procs)
        tmp = [l for l in read("/proc/%d/mountinfo" % pid).splitlines() if l.split()[4] == "/tmp"]
        check(tmp and " - tmpfs " in tmp[-1], "engine %d's /tmp is not a tmpfs of its own: %s",
              pid, tmp)
        rw = [l.split()[4] for l in read("/proc/%d/mountinfo" % pid).splitlines()
              if l.split()[5].split(",")[0] == "rw" and l.split()[4] not in ("/tmp", "/proc")]
        check(not rw, "engine %d has writable mounts outside /tmp: %s", pid, rw)
        if strict:
            ifaces = [l.split(":")[0].strip() for l in read("/proc/%d/net/dev" % pid)
                      .splitlines()[2:]]
            check(ifaces == ["lo"], "engine %d's network namespace has %s", pid, ifaces)
        view.update(namespaces=len(kinds), proc=procs)
    else:
        # No namespaces: what keeps it from the files is who it is. As that user, with no
        # groups, none of them opens.
        for path in svc.forbidden_paths():
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "--", "cat", path], capture_output=True, timeout=10)
            check(r.returncode != 0 and not r.stdout, "uid 65534 can read %s", path)
    return scanned, view


def case_engine(svc, strict):
    run_id, hold = svc.hold()
    running = svc.engine_of(hold)
    # Every engine: the one running the job, and those idle between jobs (reused ones, or in
    # the process modes the ones started ahead of their slot's next job).
    pids = svc.engines.engines()
    check(running in pids, "engine %d is not among %s", running, pids)
    views = [check_engine_process(svc, pid, strict) for pid in pids]
    zygotes = svc.engines.zygotes()
    for z in zygotes:
        zenv = read("/proc/%d/environ" % z, "rb")
        check(zenv.strip(b"\0") == b"", "the zygote %d has an environment: %r", z, zenv[:200])
        found, _ = memory_holds(z, [v.encode() for v in svc.secrets.values()])
        check(not found, "the zygote %d holds %s in its memory", z, found)
        # Its stderr is the worker's, on purpose (the zygote's own messages).
        check_no_fd_of_theirs(svc, z, fd_targets(z), "the zygote", (2,))
    # The sandboxes set up ahead of the slots' next jobs: already confined, nothing of ours.
    waiting = svc.engines.scan()[2]
    for pid in waiting:
        st = status_fields(pid)
        check(st.get("Seccomp") == "2" and st.get("NoNewPrivs") == "1" and
              int(st.get("CapEff", "1"), 16) == 0,
              "waiting sandbox %d: Seccomp %s NoNewPrivs %s CapEff %s", pid, st.get("Seccomp"),
              st.get("NoNewPrivs"), st.get("CapEff"))
        check(ns(pid, "pid") != ns(svc.worker.pid, "pid"), "waiting sandbox %d: no pid ns", pid)
        check_no_fd_of_theirs(svc, pid, fd_targets(pid), "waiting sandbox", ())
    svc.release(run_id, hold)
    if waiting:
        log("waiting sandboxes %s: seccomp, no_new_privs, no capabilities, no worker fd",
            waiting)
    for pid, (scanned, view) in zip(pids, views):
        log("engine %d: environment %s, no secret in %.1f MB of its memory, no worker fd, "
            "uid 65534, no capabilities, seccomp filter, no_new_privs%s", pid,
            view["env"], scanned / 1e6,
            ", %d namespaces of its own, /proc shows %s, no /etc/shadow or config dir in its "
            "root" % (view["namespaces"], view["proc"]) if "proc" in view
            else "; uid 65534 cannot open the files")
    if zygotes:
        log("zygote %s: empty environment, no secret in its memory, no worker fd", zygotes)


def case_tmp(svc):
    # Globals do not carry from one job to the next, in any mode.
    leave = svc.push("leave globals", code_step("step_1", (
        "export const code = async () => { globalThis.leftover = 'job-a'; "
        "Object.prototype.leftover = 'job-a'; Array.prototype.push = () => 'hijacked'; "
        "JSON.stringify = () => 'hijacked'; return { left: true }; }")))
    look = svc.push("look for globals", code_step("step_1", (
        "export const code = async () => { const a = []; a.push(1); return { global: "
        "typeof globalThis.leftover, proto: typeof ({}).leftover, push: a.length, "
        "json: JSON.stringify({x: 1}) }; }")))
    before = set(svc.engines.engines())
    for _ in range(2):
        run = svc.run(leave)
        check(run["status"] == "SUCCEEDED", "leave globals: %s", run.get("failedStep"))
        run = svc.run(look)
        check(run["status"] == "SUCCEEDED" and run["steps"]["step_1"]["output"] ==
              {"global": "undefined", "proto": "undefined", "push": 1, "json": '{"x":1}'},
              "the next job saw the previous job's globals: %s", run["steps"]["step_1"])
    reused = set(svc.engines.engines()) & before
    log("tmp: globals, prototypes and builtins changed by one job are pristine in the next "
        "(engine %s)", "reused" if reused else "fresh per job")
    if svc.mode not in PROCESS_MODES:
        return
    # Two jobs at once: each engine's /tmp is its own.
    a, hold_a = svc.hold()
    pa = svc.engine_of(hold_a)
    b, hold_b = svc.hold()
    pb = svc.engine_of(hold_b)
    check(pa != pb, "two jobs share engine %d", pa)
    marker = "left-by-job-a-%d" % pa
    write_in_sandbox(pa, "/tmp/" + marker, "job a's data")
    check(os.path.exists("/proc/%d/root/tmp/%s" % (pa, marker)), "the marker is in job a's /tmp")
    check(not os.path.exists("/proc/%d/root/tmp/%s" % (pb, marker)),
          "job b sees job a's /tmp file")
    check(not os.path.exists("/tmp/" + marker), "job a's /tmp file is in the host's /tmp")
    # A flowd built under /tmp is laid read-only inside each sandbox's /tmp at its own path;
    # that entry is the binary, not a job's leftover.
    left = set(os.listdir("/proc/%d/root/tmp" % pb)) - LAID_IN_TMP
    check(not left, "job b's /tmp is not empty: %s", sorted(left))
    svc.release(a, hold_a)
    svc.release(b, hold_b)
    # The next jobs, in whichever slot, start with an empty /tmp.
    seen = set()
    for _ in range(3):
        c, hold_c = svc.hold()
        pc = svc.engine_of(hold_c)
        seen.add(pc)
        check(not set(os.listdir("/proc/%d/root/tmp" % pc)) - LAID_IN_TMP,
              "the next job's /tmp holds %s", os.listdir("/proc/%d/root/tmp" % pc))
        svc.release(c, hold_c)
    check(pa not in seen and pb not in seen, "an engine was reused across jobs")
    log("tmp: two jobs' /tmp apart while they run; a file left in one is in no later job's "
        "/tmp (3 next jobs, fresh engines %s)", sorted(seen))


def case_memory(svc):
    hog = ("export const code = async () => { const keep = []; "
           "for (let i = 0; i < 1000; i++) { const a = new Float64Array(1 << 20); "
           "a.fill(i + 1); keep.push(a); } return { kept: keep.length }; }")
    fl = svc.push("memory bomb", code_step("step_1", hog))
    t0 = time.monotonic()
    run = svc.run(fl, timeout=40)
    took = time.monotonic() - t0
    check(run["status"] == "MEMORY_LIMIT_EXCEEDED", "memory bomb: %s %s", run["status"],
          run.get("failedStep"))
    check("AP_SANDBOX_MEMORY_LIMIT" in step_error(run), "memory bomb message: %s",
          run.get("failedStep"))
    peak = run.get("peakMemoryKb")
    check(isinstance(peak, int), "no peakMemoryKb in the run: %s", sorted(run))
    if svc.mode in PROCESS_MODES:
        # The cgroup's own peak: at its limit, never past it.
        check(MEMORY_LIMIT_KB * 0.85 <= peak <= MEMORY_LIMIT_KB * 1.01,
              "peak %d KiB, limit %d KiB", peak, MEMORY_LIMIT_KB)
    else:
        # The resident size the worker saw before it killed the engine: past the limit.
        check(MEMORY_LIMIT_KB < peak <= MEMORY_LIMIT_KB * 2, "peak %d KiB, limit %d KiB", peak,
              MEMORY_LIMIT_KB)
    listed = [r for r in svc.client.runs(flowId=fl["id"]) if r["id"] == run["id"]]
    check(listed and listed[0].get("peakMemoryKb") == peak, "the run listing: %s", listed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AP_")}
    env.update(AP_APP_URL="http://127.0.0.1:%d" % svc.app.port, AP_API_KEY=svc.api_key)
    out = subprocess.run([FLOWD, "runs", "show", run["id"]], capture_output=True, text=True,
                         env=env, timeout=30)
    check(out.returncode == 0 and "MEMORY_LIMIT_EXCEEDED" in out.stdout and
          ("peak memory %d KiB" % peak) in out.stdout, "flowd runs show: %d %s %s",
          out.returncode, out.stdout[:800], out.stderr[:300])
    ok = svc.run(svc.ok_flow)
    check(ok["status"] == "SUCCEEDED" and isinstance(ok.get("peakMemoryKb"), int) and
          0 < ok["peakMemoryKb"] < MEMORY_LIMIT_KB, "a normal run's peak: %s",
          ok.get("peakMemoryKb"))
    svc.check_healthy("the memory bomb")
    log("memory: MEMORY_LIMIT_EXCEEDED after %.2fs, peak %d KiB of %d (run, listing and "
        "`flowd runs show`); a plain run's peak %d KiB", took, peak, MEMORY_LIMIT_KB,
        ok["peakMemoryKb"])


def case_timeout(svc):
    fl = svc.push("cpu spin", code_step("step_1", "export const code = async () => "
                                                  "{ let x = 0; for (;;) { x++; } }"))
    t0 = time.monotonic()
    run = svc.run(fl, timeout=FLOW_TIMEOUT_S + 15)
    took = time.monotonic() - t0
    check(run["status"] == "TIMEOUT", "CPU spin: %s %s", run["status"], run.get("failedStep"))
    check(took <= FLOW_TIMEOUT_S + 3, "TIMEOUT after %.2fs, limit %ds", took, FLOW_TIMEOUT_S)
    check("AP_FLOW_TIMEOUT_SECONDS" in step_error(run), "timeout message: %s",
          run.get("failedStep"))
    svc.check_healthy("the CPU spin")
    log("timeout: CPU spin TIMEOUT after %.2fs (AP_FLOW_TIMEOUT_SECONDS=%d)", took,
        FLOW_TIMEOUT_S)


NETNS_PROBE = r"""
import json, socket, sys
out = []
for kind, host, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        if kind == "tcp":
            s.connect((host, port))
        else:
            s.sendto(b"x", (host, port))
        out.append([kind, host, port, "reached"])
    except OSError as e:
        out.append([kind, host, port, e.errno])
    finally:
        s.close()
print(json.dumps(out))
"""


def http_flow(url):
    return piece_step("step_1", HTTP, "send_request",
                      {"method": "GET", "url": url, "headers": {}, "queryParams": {}})


def fetch_flow(url):
    return code_step("step_1", "export const code = async () => { const r = await fetch(%s); "
                               "return { status: r.status, body: await r.json() }; }"
                     % json.dumps(url))


def case_network(svc, one, two, udp):
    strict = svc.net == "STRICT"
    app = "http://127.0.0.1:%d/v1/health" % svc.app.port
    for kind, make in (("http", http_flow), ("fetch", fetch_flow)):
        before = two.connections
        run = svc.run(svc.push("%s to 127.0.0.2" % kind, make(
            "http://127.0.0.2:%d/" % two.port)))
        out = json.dumps(run["steps"].get("step_1", {}).get("output"))
        check(run["status"] == "SUCCEEDED" and '"two"' in out and two.connections > before,
              "%s to the allowed 127.0.0.2: %s %s %s", kind, run["status"], out[:300],
              run.get("failedStep"))
        for url, server in (("http://127.0.0.1:%d/" % one.port, one), (app, None)):
            before = one.connections
            run = svc.run(svc.push("%s to %s" % (kind, url), make(url)))
            if strict:
                check(run["status"] == "FAILED" and
                      "blocked address 127.0.0.1" in step_error(run) and
                      one.connections == before,
                      "%s to %s under STRICT: %s %s", kind, url, run["status"],
                      step_error(run))
            else:
                check(run["status"] == "SUCCEEDED", "%s to %s under UNRESTRICTED: %s %s",
                      kind, url, run["status"], step_error(run))
                if server:
                    check(one.connections > before, "%s: 127.0.0.1 was not reached", kind)
    if not strict:
        log("network UNRESTRICTED: http and fetch reach 127.0.0.1, 127.0.0.2 and the app's "
            "port, as before")
        return
    log("network STRICT: http and fetch reach 127.0.0.2 (%d connections) and are refused "
        "127.0.0.1 and the app's port before any connection (127.0.0.1 server: %d)",
        two.connections, one.connections)
    if svc.mode not in PROCESS_MODES:
        return
    # Raw sockets from inside the network namespace the worker made for a running job.
    run_id, hold = svc.hold()
    pid = svc.engine_of(hold)
    targets = [["tcp", "127.0.0.1", one.port], ["tcp", "127.0.0.2", two.port],
               ["tcp", "127.0.0.1", svc.app.port], ["udp", "127.0.0.2", udp.port],
               ["udp", "127.0.0.1", udp.port]]
    for addr in host_addresses():
        targets += [["tcp", addr, one.port], ["udp", addr, udp.port]]
    c1, c2, u = one.connections, two.connections, udp.count
    r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid, "--", sys.executable, "-c",
                        NETNS_PROBE, json.dumps(targets)], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, "nsenter into the engine's namespace: %s", r.stderr[-500:])
    results = json.loads(r.stdout)
    time.sleep(0.3)
    for kind, host, port, res in results:
        check(res in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL),
              "raw %s to %s:%d from the engine's namespace: %s", kind, host, port,
              "reached" if res == "reached" else errno.errorcode.get(res, res))
    check(one.connections == c1 and two.connections == c2 and udp.count == u,
          "a raw socket reached a server: tcp %d->%d %d->%d udp %d->%d", c1, one.connections,
          c2, two.connections, u, udp.count)
    svc.release(run_id, hold)
    # The same job's flows still get out through the broker (checked above); its fd 3 is it.
    log("network STRICT: in the engine's own namespace (lo only) raw TCP/UDP to %d targets "
        "(127.0.0.1, 127.0.0.2, the app, %s) reach nothing: %s", len(results),
        ", ".join(host_addresses()) or "no other host address",
        sorted({errno.errorcode.get(x[3], x[3]) for x in results}))


def case_leaks(svc, runs):
    fl = svc.push("noop", code_step("step_1", "export const code = async (i) => ({ n: i.n })",
                                    {"n": 1}))
    cgroup_dir = json.loads(subprocess.run([FLOWD, "sandbox", "check", "--json"],
                                           capture_output=True, text=True).stdout)["cgroupDir"]
    w = svc.worker.pid

    def snapshot():
        children = svc.worker.children()
        engines, zygotes, waiting = svc.engines.scan()
        return {"fds": len(os.listdir("/proc/%d/fd" % w)),
                "threads": len(os.listdir("/proc/%d/task" % w)),
                "cgroups": len(sandbox_cgroups(cgroup_dir, w)),
                "host mounts": mount_count(), "worker mounts": mount_count(w),
                "children": len(children), "engines": len(engines), "zygotes": len(zygotes),
                "waiting sandboxes": len(waiting)}
    for _ in range(5):
        svc.sync(fl)
    # Settle: the last job's engine is dropped after its result is posted.
    time.sleep(0.3)
    before = snapshot()
    t0 = time.monotonic()
    for i in range(runs):
        svc.sync(fl)
    took = time.monotonic() - t0
    seen = {}

    def settled():
        seen["after"] = snapshot()
        return seen["after"] == before
    try:
        wait_for(settled, 5, "the worker to be back to its state before the runs", interval=0.2)
    except Failure:
        raise Failure("after %d runs: %s, before: %s" % (runs, seen["after"], before))
    after = seen["after"]
    m = svc.metrics()
    ok = m.get('flowd_worker_runs_total{status="SUCCEEDED"}', 0)
    check(ok >= runs + 5, "runs succeeded: %s of %d", ok, runs + 5)
    log("leaks: %d sequential runs in %.1fs (%.1f/s): before %s, after %s", runs, took,
        runs / took, before, after)


def case_orphans(svc):
    run_id, hold = svc.hold()
    svc.engine_of(hold)
    engines, zygotes, waiting = svc.engines.scan()
    procs = {p: start_time(p) for p in engines + zygotes + waiting}
    check(engines, "no engine to orphan")
    old = svc.worker.pid
    cgroup_dir = json.loads(subprocess.run([FLOWD, "sandbox", "check", "--json"],
                                           capture_output=True, text=True).stdout)["cgroupDir"]
    had_cgroups = sandbox_cgroups(cgroup_dir, old)
    svc.worker.kill()
    left = wait_for(lambda: not any(alive(p, t) for p, t in procs.items()) or None, 5,
                    "the engines and zygote of the killed worker to die")
    check(left, "orphans")
    log("orphans: worker %d SIGKILLed mid-run; its engines %s, zygote %s and waiting "
        "sandboxes %s died with it", old, engines, zygotes, waiting)
    svc.restart_worker()
    # The next worker runs the job again once its lock expires: let that delivery through.
    svc.holder.release(hold)
    check(not sandbox_cgroups(cgroup_dir, old), "the dead worker's cgroups are still there: %s",
          sandbox_cgroups(cgroup_dir, old))
    run = svc.client.wait_run(run_id, FINAL, 30)
    check(run["status"] == "SUCCEEDED", "the interrupted run after a new worker: %s %s",
          run["status"], run.get("failedStep"))
    svc.check_healthy("the worker SIGKILL")
    log("orphans: the next worker swept %d cgroups of the dead one and finished the run "
        "(attempts %s)", len(had_cgroups), [a["status"] for a in run["attemptHistory"]])


CASES = ["escape", "engine", "tmp", "memory", "timeout", "network", "leaks", "orphans"]


def test(args):
    only = args.only.split(",") if args.only else CASES
    if os.geteuid() != 0:
        # The test reads engines' memory and enters their namespaces from the host.
        log("skipped: the sandbox suite looks into engines from the host and needs root")
        sys.exit(77)
    r = subprocess.run([FLOWD, "sandbox", "check"], capture_output=True, text=True,
                       env=dict(os.environ, AP_EXECUTION_MODE=args.mode, AP_NETWORK_MODE=args.net))
    if r.returncode != 0:
        log("this host cannot run %s/%s:\n%s", args.mode, args.net, r.stdout)
        sys.exit(77)
    with Harness("sandbox-e2e") as h:
        one = CountingServer("one", "127.0.0.1")
        two = CountingServer("two", "127.0.0.2")
        udp = UdpSink("127.0.0.2")
        try:
            svc = Service(h, args.mode, args.net, 2, {"AP_SSRF_ALLOW_LIST": "127.0.0.2"},
                          holder=two)
            svc.setup_flows()
            log("%s/%s: app %d, worker %d (2 slots), config dir %s", args.mode, args.net,
                svc.app.pid, svc.worker.pid, svc.config_dir)
            for name in CASES:
                if name not in only:
                    continue
                t0 = time.monotonic()
                if name == "escape":
                    case_escape(svc)
                elif name == "engine":
                    case_engine(svc, args.net == "STRICT")
                elif name == "tmp":
                    case_tmp(svc)
                elif name == "memory":
                    case_memory(svc)
                elif name == "timeout":
                    case_timeout(svc)
                elif name == "network":
                    case_network(svc, one, two, udp)
                elif name == "leaks":
                    case_leaks(svc, args.runs)
                elif name == "orphans":
                    case_orphans(svc)
                log("-- %s ok (%.1fs)", name, time.monotonic() - t0)
        finally:
            one.stop()
            two.stop()
            udp.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["SANDBOX_CODE_ONLY", "SANDBOX_PROCESS",
                                                      "SANDBOX_CODE_AND_PROCESS"])
    ap.add_argument("--net", default="UNRESTRICTED", choices=["UNRESTRICTED", "STRICT"])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    main(lambda: test(a))
