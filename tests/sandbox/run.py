#!/usr/bin/env python3
"""The sandbox escape suite (issue: AP_EXECUTION_MODE). sb_escape tries to get out with direct
system calls; this script runs it in each sandboxed mode through sb_run (which plays the worker)
and asserts that every attempt fails, that each bomb is stopped by its limit with the run
reporting it, that sandboxes never outlive their worker, and that a thousand of them leave
nothing behind. JavaScript-level escapes join once the engine and the worker exist: they can run
the same attempts through a code step.

Needs root (or a host with unprivileged user namespaces and a delegated cgroup); on a host that
cannot sandbox, it checks that the refusal says why and skips the rest (exit 77)."""
import json
import re
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("FLOWD_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
HERE = os.path.join(BUILD, "tests", "sandbox")
SB_RUN = os.path.join(HERE, "sb_run")
ESCAPE = os.path.join(HERE, "sb_escape")
ZYGOTE = os.path.join(HERE, "sb_zygote_helper")
CODE_ONLY = os.path.join(HERE, "sb_code_only_helper")

# Attempts that must fail with EPERM: the seccomp filter, not a missing capability, stops them.
SECCOMP_DENIED = {
    "ptrace(PTRACE_TRACEME)", "mount tmpfs", "mount --bind / on /tmp", "remount / read-write",
    "umount /proc", "fsopen", "open_tree", "pivot_root", "chroot", "unshare(CLONE_NEWUSER)",
    "unshare(CLONE_NEWNS)", "unshare(CLONE_NEWNET)", "setns", "bpf(BPF_MAP_CREATE)",
    "io_uring_setup", "io_uring_enter", "keyctl", "add_key", "request_key", "perf_event_open",
    "userfaultfd", "init_module", "finit_module", "delete_module", "kexec_load", "swapon",
    "reboot", "name_to_handle_at", "open_by_handle_at", "process_vm_readv", "ioctl(TIOCSTI)",
    "ioctl(TIOCSTI) with high bits", "personality(ADDR_NO_RANDOMIZE)",
}
# In SANDBOX_CODE_ONLY there are no namespaces: these are about the host view and are not
# asserted there (the engine sees the host's /proc, its parent, public files).
HOST_VIEW = {
    "read /etc/passwd", "see other processes in /proc", "see the parent",
    "signal every other process (kill -1)", "open a host device or /sys", "write outside /tmp",
    "mkdir outside /tmp", "execute from /tmp", "create a device node",
}

failures = []
passes = 0


def check(cond, what):
    global passes
    if cond:
        passes += 1
    else:
        failures.append(what)
        print("FAIL: " + what, flush=True)


def sb_run(args, payload, env=None, timeout=120):
    """Runs sb_run; returns (attempt lines, result object, completed process)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([SB_RUN] + args + ["--"] + payload, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=timeout, text=True)
    lines, result = [], None
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if "attempt" in obj:
            lines.append(obj)
        else:
            result = obj
    return lines, result, p


def assert_probe(mode, lines, result, code_only=False, extra=""):
    check(result is not None and result.get("ok"), "%s: the run finished (%s)" % (mode, result))
    check(len(lines) > 60, "%s: the probe ran its attempts (%d)" % (mode, len(lines)))
    for a in lines:
        name = a["attempt"]
        if name.endswith("(information)") or name.endswith("(expected to work)"):
            continue
        if code_only and name in HOST_VIEW:
            continue
        if "skipped" in a.get("detail", ""):
            # Only in the code filter, where fork itself is denied.
            check(a["errname"] == "EPERM", "%s: %s skipped for a reason other than seccomp" % (mode, name))
            continue
        check(not a["escaped"], "%s: escape attempt succeeded: %s %s%s" % (mode, name, a.get("detail", ""), extra))
        if name in SECCOMP_DENIED:
            check(a["errname"] == "EPERM", "%s: %s failed with %s, not EPERM from seccomp" % (mode, name, a["errname"]))
        if name.startswith("i386") or name.startswith("x32"):
            check(a["detail"] == "killed by signal %d" % signal.SIGSYS,
                  "%s: %s was not killed by SIGSYS (%s)" % (mode, name, a["detail"]))


class Listener:
    """A TCP server on every host address, to show that the sandbox cannot reach it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                c.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def host_address():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.255", 1))
        addr = s.getsockname()[0]
        return None if addr.startswith("127.") else addr
    except OSError:
        return None
    finally:
        s.close()


def test_probe_modes(tmp, listener, host_addr):
    secret_value = "fake-jwt-" + secrets.token_hex(16)
    config_dir = os.path.join(tmp, "config")
    os.makedirs(config_dir)
    with open(os.path.join(config_dir, "api_key"), "w") as f:
        f.write(secret_value)
    env = {"AP_JWT_SECRET": secret_value, "AP_CONFIG_PATH": config_dir}
    probe = ["probe", "--secret", "AP_JWT_SECRET", "--forbidden", os.path.join(config_dir, "api_key"),
             "--forbidden", config_dir, "--forbidden", "/etc/shadow", "--worker-pid", str(os.getpid()),
             "--cpus", str(len(os.sched_getaffinity(0)))]
    modes = [
        ("SANDBOX_PROCESS", [], ESCAPE, probe),
        ("SANDBOX_PROCESS, root bound by the sandbox", ["--no-mount-tree"], ESCAPE, probe),
        ("SANDBOX_PROCESS pre-started, root bound by the sandbox", ["--prestart", "--no-mount-tree"],
         ESCAPE, probe),
        ("SANDBOX_PROCESS+STRICT", ["--net", "--deny-inet"], ESCAPE, probe),
        ("SANDBOX_PROCESS via zygote exec", ["--zygote", ZYGOTE], ESCAPE, probe),
        ("SANDBOX_PROCESS via zygote entry", ["--zygote-entry", ZYGOTE, "--exec", ZYGOTE], "sb_escape", probe),
        ("SANDBOX_CODE_AND_PROCESS via zygote entry", ["--zygote-entry", ZYGOTE, "--exec", ZYGOTE,
                                                      "--code-filter", "--net"], "sb_escape", probe),
        ("SANDBOX_PROCESS pre-started", ["--prestart"], ESCAPE, probe),
        ("SANDBOX_PROCESS pre-started via zygote entry", ["--prestart", "--zygote-entry", ZYGOTE,
                                                         "--exec", ZYGOTE, "--net", "--deny-inet"],
         "sb_escape", probe),
    ]
    for mode, args, payload, pargs in modes:
        lines, result, p = sb_run(args, [payload] + pargs, env=env)
        assert_probe(mode, lines, result)
        check(secret_value not in p.stdout, "%s: the secret's value reached the sandbox" % mode)
        if "--prestart" in args:
            check(result and result.get("pendingHeldFd") is False,
                  "%s: the waiting sandbox kept one of the worker's fds open" % mode)
        names = {a["attempt"] for a in lines}
        check("read a path outside the sandbox" in names, "%s: the config dir was probed" % mode)

    # SANDBOX_CODE_ONLY: the engine applies the filter to itself; no namespaces. The worker
    # starts it with an empty environment; what is checked is that it cannot read the
    # worker's (this process holds the secret).
    p = subprocess.run([CODE_ONLY, "--", "sb_escape"] + probe, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env={}, text=True, timeout=60)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    assert_probe("SANDBOX_CODE_ONLY", lines, {"ok": p.returncode == 0}, code_only=True)
    check(any(a["attempt"] == "signal the worker by its host pid" and not a["escaped"] for a in lines),
          "SANDBOX_CODE_ONLY: the worker could be signalled")


def test_network(listener, host_addr):
    targets = ["127.0.0.1:%d" % listener.port]
    if host_addr:
        targets.append("%s:%d" % (host_addr, listener.port))
    tcp = []
    for t in targets:
        tcp += ["--tcp", t]
    # The control: without a network namespace the listener answers, so the denials below mean
    # something.
    lines, result, _ = sb_run([], [ESCAPE, "probe"] + tcp)
    conn = [a for a in lines if a["attempt"] == "connect over TCP"]
    check(len(conn) == len(targets) and all(a["escaped"] for a in conn),
          "network control: the listener is reachable without a namespace (%s)" % conn)
    for mode, args in [("new netns", ["--net"]), ("slot netns", ["--netns-reuse"])]:
        lines, result, _ = sb_run(args, [ESCAPE, "probe"] + tcp)
        conn = [a for a in lines if a["attempt"] == "connect over TCP"]
        check(len(conn) == len(targets), "network %s: every target was tried" % mode)
        for a in conn:
            check(not a["escaped"] and a["errname"] in ("ENETUNREACH", "EHOSTUNREACH", "EADDRNOTAVAIL"),
                  "network %s: connect to %s: %s" % (mode, a["detail"], a["errname"]))
    lines, result, _ = sb_run(["--net", "--deny-inet"], [ESCAPE, "probe"] + tcp)
    conn = [a for a in lines if a["attempt"] == "connect over TCP"]
    check(conn and all(not a["escaped"] and a["errname"] == "EPERM" for a in conn),
          "network STRICT: socket(AF_INET) is refused by seccomp (%s)" % conn)


def test_tmp_isolation(tmp):
    # Another job's /tmp, while it runs.
    marker = "/tmp/job-a-" + secrets.token_hex(4)
    holder = subprocess.Popen([SB_RUN, "--", ESCAPE, "hold-file", marker, "5"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    first = holder.stdout.readline()
    check("leave a file behind" in first and '"errno":0' in first, "tmp: job A wrote its file (%s)" % first)
    lines, result, _ = sb_run([], [ESCAPE, "probe", "--forbidden", marker])
    hit = [a for a in lines if a["attempt"] == "read a path outside the sandbox"]
    check(hit and not hit[0]["escaped"], "tmp: job B read job A's /tmp file (%s)" % hit)
    check(not os.path.exists(marker), "tmp: job A's /tmp file reached the host's /tmp")
    holder.kill()
    holder.wait()
    # The next job of the same slot, directly and through a zygote.
    for args in ([], ["--zygote", ZYGOTE]):
        left = "/tmp/left-" + secrets.token_hex(4)
        sb_run(args, [ESCAPE, "leave-file", left])
        lines, result, _ = sb_run(args, [ESCAPE, "probe", "--forbidden", left])
        hit = [a for a in lines if a["attempt"] == "read a path outside the sandbox"]
        check(hit and not hit[0]["escaped"] and hit[0]["errname"] == "ENOENT",
              "tmp %s: the next job saw the file the previous one left (%s)" % (args, hit))


def count_result(lines, attempt):
    for a in lines:
        if a["attempt"] == attempt and "count" in a:
            return a
    return None


def test_bombs():
    for via in ([], ["--zygote", ZYGOTE]):
        tag = "zygote " if via else ""
        lines, result, _ = sb_run(via + ["--procs", "32"], [ESCAPE, "forkbomb"], timeout=60)
        a = count_result(lines, "fork bomb")
        check(a and a["count"] < 32 and a["errname"] == "EAGAIN", "%sfork bomb stopped by the pids limit (%s)" % (tag, a))
        check(result and result["ok"], "%sfork bomb: the worker is fine (%s)" % (tag, result))
        lines, result, _ = sb_run(via + ["--procs", "32"], [ESCAPE, "threadbomb"], timeout=60)
        a = count_result(lines, "thread bomb")
        check(a and a["count"] < 32 and a["errname"] == "EAGAIN", "%sthread bomb stopped by the pids limit (%s)" % (tag, a))

    limit = 64 << 20
    for via in ([], ["--zygote-entry", ZYGOTE, "--exec", ZYGOTE]):
        payload = [ESCAPE if not via else "sb_escape", "membomb"]
        lines, result, _ = sb_run(via + ["--memory", str(limit)], payload, timeout=60)
        check(result and result["oomKilled"] and not result["exited"],
              "memory bomb %s: killed by the cgroup OOM killer, reported as such (%s)" % (via, result))
        check(result and limit * 0.9 <= result["peakMemory"] <= limit * 1.02,
              "memory bomb %s: peak reported near the limit (%s)" % (via, result and result["peakMemory"]))

    tmp_size = 8 << 20
    lines, result, _ = sb_run(["--tmp", str(tmp_size), "--fsize", str(3 << 20)], [ESCAPE, "diskbomb"])
    a = count_result(lines, "disk bomb")
    check(a and a["count"] <= tmp_size and a["errname"] == "ENOSPC", "disk bomb stopped by the /tmp size (%s)" % a)
    lines, result, _ = sb_run(["--tmp", str(1 << 20)], [ESCAPE, "inodebomb"])
    a = count_result(lines, "inode bomb")
    check(a and a["count"] < 1000 and a["errname"] == "ENOSPC", "inode bomb stopped by the /tmp inodes (%s)" % a)

    lines, result, _ = sb_run(["--cpu", "1"], [ESCAPE, "cpuspin"], timeout=60)
    check(result and result["cpuLimit"] and result["signal"] == signal.SIGKILL and 500000 <= result["cpuUs"] < 3000000,
          "CPU spin stopped by RLIMIT_CPU and reported (%s)" % result)
    t0 = time.monotonic()
    lines, result, _ = sb_run(["--timeout-ms", "400"], [ESCAPE, "cpuspin"], timeout=60)
    check(result and result["timedOut"] and result["signal"] == signal.SIGKILL and not result["cpuLimit"],
          "CPU spin stopped by the caller's timeout (%s)" % result)
    check(time.monotonic() - t0 < 10, "the timeout kill was prompt")

    # SANDBOX_CODE_ONLY: no new processes at all, threads bounded by RLIMIT_NPROC.
    p = subprocess.run([CODE_ONLY, "--procs", "16", "--", "sb_escape", "forkbomb"], stdout=subprocess.PIPE, text=True)
    a = json.loads(p.stdout.splitlines()[0])
    check(a["count"] == 0 and a["errname"] == "EPERM", "code-only fork bomb: fork denied (%s)" % a)
    p = subprocess.run([CODE_ONLY, "--procs", "16", "--", "sb_escape", "threadbomb"], stdout=subprocess.PIPE, text=True)
    a = json.loads(p.stdout.splitlines()[0])
    check(a["count"] < 16 and a["errname"] == "EAGAIN", "code-only thread bomb stopped (%s)" % a)
    p = subprocess.run([CODE_ONLY, "--cpu", "1", "--", "sb_escape", "cpuspin"], timeout=60)
    check(p.returncode in (-signal.SIGXCPU, -signal.SIGKILL), "code-only CPU spin stopped (%d)" % p.returncode)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def read_pid_file(path, deadline, n):
    """The first n words of a pid file sb_run writes, once they are all there: the file exists
    a moment before its content does."""
    words = []
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                words = f.read().split()
        except FileNotFoundError:
            pass
        if len(words) >= n:
            return words
        time.sleep(0.02)
    raise RuntimeError("no pids in %s: %r" % (path, words))


def test_orphans(tmp):
    killed = []
    for via in ([], ["--zygote", ZYGOTE], ["--zygote-entry", ZYGOTE, "--exec", ZYGOTE]):
        pid_file = os.path.join(tmp, "pids-%d" % len(via))
        payload = [ESCAPE if "--zygote-entry" not in via else "sb_escape", "sleep", "60"]
        worker = subprocess.Popen([SB_RUN, "--pid-file", pid_file] + via + ["--"] + payload,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        sandbox_pid, zygote_pid = (int(x) for x in read_pid_file(pid_file, deadline, 2))
        check(alive(sandbox_pid), "orphans %s: the sandbox runs" % via)
        killed.append(worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 5
        while (alive(sandbox_pid) or (zygote_pid and alive(zygote_pid))) and time.monotonic() < deadline:
            time.sleep(0.02)
        check(not alive(sandbox_pid), "orphans %s: the sandbox outlived its worker" % via)
        if zygote_pid:
            check(not alive(zygote_pid), "orphans %s: the zygote outlived its worker" % via)
    # A pre-started sandbox that never got its job dies with its worker too.
    for via in ([], ["--zygote-entry", ZYGOTE, "--exec", ZYGOTE]):
        pid_file = os.path.join(tmp, "pending-%d" % len(via))
        payload = [ESCAPE if not via else "sb_escape", "true"]
        worker = subprocess.Popen([SB_RUN, "--prestart", "--hold-pending", "60", "--pid-file", pid_file] + via +
                                  ["--"] + payload, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        pending_pid = int(read_pid_file(pid_file, deadline, 1)[0])
        check(alive(pending_pid), "orphans pre-started %s: the sandbox waits" % via)
        killed.append(worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 5
        while alive(pending_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        check(not alive(pending_pid), "orphans pre-started %s: the waiting sandbox outlived its worker" % via)
    # The killed workers' cgroups are swept by the next probe. Only theirs are looked at: other
    # flowd workers on this host (other tests among them) keep theirs in the same directory.
    probe = json.loads(subprocess.run([SB_RUN, "--probe"], stdout=subprocess.PIPE, text=True).stdout)
    if probe["cgroup"]:
        left = [d for d in os.listdir(probe["cgroupDir"])
                if d.split("-")[0] in {str(p) for p in killed}]
        check(not left, "cgroups of killed workers were swept (%s)" % left)


def test_leaks():
    lines, result, _ = sb_run(["--repeat", "1000", "--quiet"], [ESCAPE, "true"], timeout=600)
    check(result and result["ok"] and result["exited"] and result["code"] == 0, "1000 runs: all succeeded (%s)" % result)
    check(result and result["fdsLeaked"] == 0 and result["cgroupsLeaked"] == 0 and result["mountsLeaked"] == 0,
          "1000 runs leave no fds, cgroups or mounts (%s)" % result)
    lines, result, _ = sb_run(["--repeat", "200", "--quiet", "--zygote", ZYGOTE, "--netns-reuse"], [ESCAPE, "true"], timeout=600)
    check(result and result["fdsLeaked"] == 0 and result["cgroupsLeaked"] == 0 and result["mountsLeaked"] == 0,
          "200 zygote runs leave nothing (%s)" % result)
    lines, result, _ = sb_run(["--repeat", "200", "--quiet", "--prestart"], [ESCAPE, "true"], timeout=600)
    check(result and result["fdsLeaked"] == 0 and result["cgroupsLeaked"] == 0 and result["mountsLeaked"] == 0,
          "200 pre-started runs leave nothing (%s)" % result)
    out = subprocess.run(["ps", "-eo", "args"], stdout=subprocess.PIPE, text=True).stdout
    check(ESCAPE + " true" not in out, "no sandbox process is left")


def test_step_errors(tmp):
    lines, result, _ = sb_run(["--files", str(1 << 30)], [ESCAPE, "true"])
    err = (result or {}).get("error", {})
    check(not result["ok"] and "sandbox step 'rlimits' failed" in err.get("message", "") and err.get("code") == -1,
          "a failing rlimits step is reported with its name and EPERM (%s)" % err)
    vanishing = os.path.join(tmp, "vanishing")
    open(vanishing, "w").close()
    lines, result, _ = sb_run(["--bind", vanishing + ":/vanishing", "--unlink-before-spawn", vanishing], [ESCAPE, "true"])
    err = (result or {}).get("error", {})
    check(not result["ok"] and "sandbox step 'mounts' failed" in err.get("message", "") and err.get("code") == -2,
          "a failing mounts step is reported with its name and ENOENT (%s)" % err)
    lines, result, _ = sb_run(["--exec", "/bin/true"], ["/usr/bin/no-such-payload"])
    err = (result or {}).get("error", {})
    check(not result["ok"] and "sandbox step 'exec' failed" in err.get("message", "") and err.get("code") == -2,
          "a failing exec is reported with its name and ENOENT (%s)" % err)
    for via in (["--zygote", ZYGOTE], ["--prestart"], ["--prestart", "--zygote", ZYGOTE]):
        lines, result, _ = sb_run(via + ["--files", str(1 << 30)], [ESCAPE, "true"])
        err = (result or {}).get("error", {})
        check(not result["ok"] and "sandbox step 'rlimits' failed" in err.get("message", ""),
              "%s: a failing step is reported the same way (%s)" % (via, err))


def test_refusal():
    """An unprivileged user here has user namespaces but no cgroup to put a sandbox in: the
    process modes must be refused at start, saying so, never run without a memory limit."""
    flowd = os.environ.get("FLOWD")
    if not flowd or os.geteuid() != 0:
        return
    env = dict(os.environ, AP_EXECUTION_MODE="SANDBOX_PROCESS")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", flowd, "sandbox", "check"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = [l for l in p.stdout.splitlines() if l.startswith("SANDBOX_PROCESS/UNRESTRICTED")]
    check(p.returncode == 1 and line and "cannot run on this host" in line[0] and "cgroup" in line[0],
          "an unprivileged worker without a delegated cgroup is refused with a reason (%d %s)" % (p.returncode, line))
    code_only = [l for l in p.stdout.splitlines() if l.startswith("SANDBOX_CODE_ONLY/STRICT")]
    check(code_only and code_only[0].endswith(" ok"), "SANDBOX_CODE_ONLY works unprivileged (%s)" % code_only)


def main():
    probe = subprocess.run([SB_RUN, "--probe"], stdout=subprocess.PIPE, text=True)
    host = json.loads(probe.stdout)
    print("host: " + json.dumps(host), flush=True)
    check_out = subprocess.run([SB_RUN, "--check", "SANDBOX_PROCESS", "STRICT"], stdout=subprocess.PIPE, text=True)
    if not host["sandbox"]:
        check("cannot run on this host" in check_out.stdout and len(check_out.stdout) > 60,
              "an unusable host is refused with a reason (%s)" % check_out.stdout)
        print("sandbox unavailable here: %s; %d checks passed" % (check_out.stdout.strip(), passes))
        sys.exit(1 if failures else 77)
    check(check_out.stdout.strip() == "ok", "the host accepts SANDBOX_PROCESS with STRICT (%s)" % check_out.stdout)
    # A root worker on a kernel that can copy a detached mount tree (6.15) must use one: the
    # fallback is silent, so this is what notices a tree that stopped working.
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if host["root"] and release >= (6, 15):
        check(host.get("mountTree") is True, "a root worker on Linux %d.%d copies its root from a mount tree" % release)
    host_addr = host_address()
    listener = Listener()
    with tempfile.TemporaryDirectory(prefix="sb-escape-") as tmp:
        tests = [
            ("probe in every mode", lambda: test_probe_modes(tmp, listener, host_addr)),
            ("network", lambda: test_network(listener, host_addr)),
            ("tmp isolation", lambda: test_tmp_isolation(tmp)),
            ("bombs", test_bombs),
            ("orphans", lambda: test_orphans(tmp)),
            ("step errors", lambda: test_step_errors(tmp)),
            ("refusal", test_refusal),
            ("leaks", test_leaks),
        ]
        for name, fn in tests:
            t0 = time.monotonic()
            before = len(failures)
            fn()
            print("%-22s %s (%.1f s)" % (name, "ok" if len(failures) == before else "FAILED",
                                         time.monotonic() - t0), flush=True)
    listener.close()
    print("%d checks passed, %d failed" % (passes, len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
