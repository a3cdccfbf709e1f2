/* Kernel sandboxes for engine processes (shared/DESIGN.md §6). sb_spawn starts a payload in new
 * user, PID, mount, IPC, UTS and cgroup namespaces (plus a network namespace with SB_NET), on a
 * read-only root made of bind mounts (struct sb_root), with a private tmpfs /tmp, a fresh /proc,
 * no capabilities, no_new_privs, rlimits, a cgroup memory limit and a seccomp filter installed
 * last. The sandbox dies with the thread that spawned it (PR_SET_PDEATHSIG, checked through a
 * pidfd), and sb_child_release removes its cgroup even when it was SIGKILLed. Mounts live only in
 * the sandbox's mount namespace and vanish with it.
 *
 * Typical use by a worker:
 *
 *	struct sb_host host;            // once, at start
 *	sb_host_probe(&host, 0, &err);
 *	sb_host_check(&host, cfg.execution_mode, cfg.network_mode, &err);  // refuse, never degrade
 *	struct sb_root *root = sb_root_new();
 *	sb_root_add_exec(root, "/usr/bin/flowd", &err);
 *	sb_root_add_net_files(root, &err);
 *
 *	struct sb_opts opts;            // per job
 *	sb_opts_init(&opts, &host, root);
 *	opts.limits.memory_bytes = cfg.sandbox_memory_limit_kb * 1024;
 *	int fds[3] = { to_engine[0], from_engine[1], log_pipe[1] };
 *	struct sb_child child;
 *	sb_spawn(&opts, argv, fds, 3, &child, &err);
 *	...poll child.pidfd with the pipes; on timeout sb_child_kill(&child)...
 *	struct sb_exit ex;
 *	sb_child_wait(&child, -1, &ex);  // ex.oom_killed → MEMORY_LIMIT_EXCEEDED, ex.peak_memory_bytes
 *	sb_child_release(&child);
 *
 * sb_prestart does the set-up ahead of the job (keep one per slot), and a zygote (zygote.h)
 * gives the same struct sb_child without exec'ing the engine. */
#ifndef SB_SANDBOX_H
#define SB_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

struct fl_err;
struct sb_host;
struct sb_root;

enum sb_flags {
	/* A network namespace of its own: no interface but a loopback that is down, so nothing
	 * is reachable, 127.0.0.1 included (AP_NETWORK_MODE=STRICT). */
	SB_NET = 1u << 0,
	/* The seccomp filter refuses socket() for every family but AF_UNIX, so the only way out
	 * is a unix socket the worker passes (the egress broker). */
	SB_DENY_INET = 1u << 1,
	/* Zygote entry mode only: the child is also under the code-only filter (no execve, no new
	 * processes), as in SANDBOX_CODE_AND_PROCESS. An exec'd engine calls
	 * sb_code_only_enter on itself instead. */
	SB_CODE_FILTER = 1u << 2,
};

/* Smallest memory limit a sandbox accepts (see cgroup.c). */
#define SB_MIN_MEMORY (16 << 20)

struct sb_limits {
	int64_t memory_bytes;    /* cgroup memory limit (v2 memory.max, v1 limit_in_bytes), at least
				  * SB_MIN_MEMORY; 0: none */
	int64_t tmp_bytes;       /* size of the private /tmp (tmpfs size=); also bounds its inodes */
	int64_t file_size_bytes; /* RLIMIT_FSIZE; 0: none */
	int cpu_seconds;         /* RLIMIT_CPU (soft = hard: SIGKILL at the limit); 0: none */
	int procs;               /* RLIMIT_NPROC, threads included (and pids.max on cgroup v2); 0: none */
	int open_files;          /* RLIMIT_NOFILE; 0: keep the spawner's */
};

struct sb_opts {
	const struct sb_host *host; /* what the host provides (sb_host_probe); required */
	struct sb_root *root;       /* what the sandbox sees; required, shared by many spawns */
	unsigned flags;             /* enum sb_flags */
	/* With SB_NET: join this network namespace (sb_netns_new) instead of creating a new one,
	 * which saves about a millisecond per spawn. A namespace may be reused by the sandboxes of
	 * one slot one after the other, never by two live sandboxes. -1: none. */
	int netns_fd;
	struct sb_limits limits;
	/* Host uid/gid the sandbox runs as (also inside: the map is the identity on that one id).
	 * Only a root spawner can choose; otherwise the spawner's own ids are used. Give each
	 * concurrent slot its own uid if processes of different slots must not signal each other
	 * in SANDBOX_CODE_ONLY; in process modes the PID namespace already hides them. */
	uid_t uid;
	gid_t gid;
	char *const *envp;    /* environment of the payload; NULL: empty. Never the worker's. */
	const char *cwd;      /* inside the sandbox; NULL: "/tmp" */
	const char *hostname; /* NULL: "sandbox" */
};

/* Defaults: no flags, netns_fd -1, uid/gid 65534, 1 GiB memory, 64 MiB /tmp and file size,
 * 64 processes, 256 open files, no CPU limit, empty environment. */
void sb_opts_init(struct sb_opts *opts, const struct sb_host *host, struct sb_root *root);

/* How a sandbox ended, from sb_child_wait. */
struct sb_exit {
	int exited;  /* 1: exited with code; 0: killed by signal */
	int code;    /* exit code when exited */
	int signal;  /* signal number when killed */
	int oom_killed; /* the cgroup's OOM killer killed a process of the sandbox */
	int cpu_limit;  /* RLIMIT_CPU stopped it (SIGXCPU, or SIGKILL at the hard limit) */
	int64_t peak_memory_bytes; /* peak of the sandbox's cgroup; -1 when unknown */
	int64_t cpu_us;            /* user + system CPU time of the sandbox's init process tree */
};

/* One sandbox's cgroup; private, embedded in struct sb_child. */
struct sb_cgroup {
	int version;   /* 0: none, 1, 2 */
	char *path;    /* the cgroup directory */
	int procs_fd;  /* cgroup.procs opened for writing by the spawner; else -1 */
	int64_t oom_kills_before;
	/* The OOM-kill count and the peak, opened when the cgroup is made so that reading them
	 * once the sandbox has exited is one pread each; -1: read by path. */
	int events_fd;
	int peak_fd;
};

/* A running (or finished, not yet released) sandbox. pid and pidfd are for the caller to read;
 * the rest is private. The spawning thread is the sandbox's parent: it must stay alive as long
 * as the sandbox (PR_SET_PDEATHSIG fires when that thread exits), and SIGCHLD must not be set to
 * SIG_IGN. */
struct sb_child {
	pid_t pid;  /* host pid of the sandbox's init (PID 1 inside) */
	int pidfd;  /* readable (POLLIN) once it has exited; owned, closed by sb_child_release */
	/* private */
	int state; /* 0: released/empty, 1: running, 2: reaped */
	int killed; /* sb_child_kill sent SIGKILL */
	int cpu_seconds;
	int mntns_fd; /* its mount namespace, held until release; -1: none */
	struct sb_exit exit;
	struct sb_cgroup cgroup;
};

/* Starts argv[0] (an absolute path inside the sandbox, i.e. one of root's paths) in a new
 * sandbox, as PID 1 of its PID namespace: when it exits, every other process of the sandbox is
 * killed, and signals it has no handler for are ignored unless they come from outside (the
 * worker's SIGKILL always works). fds[i] becomes fd i of the payload (n_fds of them, typically stdin, stdout, stderr,
 * plus e.g. an egress socket); every other fd is closed. Returns once the payload has been
 * exec'd: 0, or a negative code with err naming the failed step and the errno, e.g.
 * "sandbox step 'mounts' failed: cannot bind '/etc/resolv.conf': No such file or directory"
 * (code -ENOENT). On failure nothing is left behind. The child is written only on success. */
int sb_spawn(const struct sb_opts *opts, char *const argv[], const int *fds, int n_fds,
	     struct sb_child *child, struct fl_err *err);

/* Waits up to timeout_ms (-1: forever, 0: poll) for the sandbox to exit and reaps it. Returns 0
 * and fills *out (which may be NULL), FL_ETIMEOUT while it still runs, or -errno. Once reaped,
 * later calls return the same result. */
int sb_child_wait(struct sb_child *child, int timeout_ms, struct sb_exit *out);

/* SIGKILLs the sandbox's init, which takes every process of the sandbox with it. 0 or -errno;
 * 0 when it has already exited. */
int sb_child_kill(struct sb_child *child);

/* Peak memory of the sandbox's cgroup so far (running or exited, until released). 0, or
 * FL_EUNSUPPORTED when the host does not record a peak or there is no cgroup. */
int sb_child_peak_memory(const struct sb_child *child, int64_t *bytes);

/* Kills the sandbox if it still runs, reaps it, removes its cgroup and closes its fds. Safe to
 * call twice and on a zeroed struct. */
void sb_child_release(struct sb_child *child);

/* A pre-started sandbox: set up now, up to and including seccomp, in its cgroup, waiting for
 * its job. A worker keeps one ready per slot so that a job pays none of the set-up: the
 * pool of shared/DESIGN.md §6. It holds none of the worker's fds while it waits. Its parent is
 * the calling thread, as with sb_spawn. */
struct sb_pending;

/* Starts a sandbox with opts (envp is not used: the job brings its own) and returns once it
 * waits for its job. 0, or a negative code with err naming the failed step, as sb_spawn. */
int sb_prestart(const struct sb_opts *opts, struct sb_pending **out, struct fl_err *err);

/* Hands p its job: argv[0] is exec'd (a zygote's pre-started sandbox passes argv to its entry
 * function instead), envp is its environment, fds[i] its fd i. p is consumed whatever the
 * result. Returns like sb_spawn and fills child the same way. */
int sb_pending_run(struct sb_pending *p, char *const argv[], char *const envp[], const int *fds,
		   int n_fds, struct sb_child *child, struct fl_err *err);

/* Kills a pre-started sandbox that will get no job, reaps it and removes its cgroup. NULL: no-op. */
void sb_pending_free(struct sb_pending *p);

/* Host pid of its init, for tests. */
pid_t sb_pending_pid(const struct sb_pending *p);

/* A network namespace with nothing in it (loopback down), for SB_NET reuse across one slot's
 * sandboxes. *fd is O_CLOEXEC and owned by the caller. Needs CAP_SYS_ADMIN (root). */
int sb_netns_new(int *fd, struct fl_err *err);

/* SANDBOX_CODE_ONLY: what the engine applies to itself, without namespaces. */
struct sb_code_only_opts {
	struct sb_limits limits; /* rlimits only; memory_bytes and tmp_bytes are not used */
	uid_t uid;               /* when running as root, switch to these ids first */
	gid_t gid;
	unsigned flags;          /* SB_DENY_INET */
};

/* Defaults as sb_opts_init, with uid/gid 65534. */
void sb_code_only_opts_init(struct sb_code_only_opts *opts);

/* Applies rlimits, drops root (to opts->uid/gid) and every capability, sets no_new_privs and
 * loads the code-only seccomp filter on all threads of the calling process: the sandbox filter
 * plus no execve and no new processes (threads stay allowed). Works unprivileged. Irreversible.
 * 0, or a negative code with err naming what failed; on failure the caller must not go on. */
int sb_code_only_enter(const struct sb_code_only_opts *opts, struct fl_err *err);

#endif
