/* One engine process as the worker sees it: a child speaking newline-delimited JSON over a pair
 * of pipes (engine/proto.h), with its stderr forwarded to the worker's log. The child is either a
 * plain process (UNSANDBOXED, SANDBOX_CODE_ONLY) or a kernel sandbox (sandbox/sandbox.h); either
 * way it dies with the slot thread that started it, and the way it ended is classified for the
 * run: killed at the deadline, over its memory limit, or something else. */
#ifndef WK_ENGINE_PROC_H
#define WK_ENGINE_PROC_H

#include "core/buf.h"
#include "sandbox/sandbox.h"

#include <stdint.h>
#include <sys/types.h>

struct fl_err;
struct sb_zygote;

struct wk_proc {
	pid_t pid;
	int to_engine;   /* write end of the engine's stdin */
	int from_engine; /* read end of the engine's stdout */
	int engine_log;  /* read end of the engine's stderr */
	int64_t memory_limit_kb; /* plain processes: RSS past this kills the engine; 0: none */
	int killed_for_memory;
	int sandboxed;
	struct sb_child child; /* when sandboxed */
	int64_t peak_rss_kb;
	int statm_fd;          /* /proc/<pid>/statm, kept open for the memory watch; -1: none */
	int64_t next_watch_ms; /* monotonic: when the memory watch looks next */
	struct fl_buf out;     /* bytes of stdout not yet returned as lines */
	struct fl_buf log;     /* bytes of stderr not yet logged */
	char run_id[64];       /* for log lines; may be empty */
};

/* How the engine process ended. */
struct wk_exit {
	int exited, code, signal;
	int memory_exceeded;   /* the cgroup OOM killer or our RSS watch killed it */
	int64_t peak_memory_kb; /* -1: unknown */
};

/* Starts argv (argv[0] an absolute path) as a plain child with fresh pipes and PR_SET_PDEATHSIG.
 * envp is its whole environment (never the worker's secrets). 0 or -errno with err set. */
int wk_proc_spawn(struct wk_proc *p, char *const argv[], char *const envp[],
		  int64_t memory_limit_kb, struct fl_err *err);

/* The same in a kernel sandbox: through zygote when it is not NULL (the caller serialises
 * spawns on one zygote), else by sb_spawn. extra_fd, when >= 0, becomes fd 3 of the engine (the
 * egress broker connection). The cgroup, not an RSS watch, enforces the memory limit. */
int wk_proc_spawn_sandboxed(struct wk_proc *p, const struct sb_opts *opts, struct sb_zygote *zygote,
			    char *const argv[], int extra_fd, struct fl_err *err);

/* Writes line plus "\n" to the engine. 0, or -EPIPE when it is gone. */
int wk_proc_send(struct wk_proc *p, const char *line, size_t len);

/* Waits for the engine's next line until deadline (monotonic ms; 0: none), logging its stderr
 * meanwhile. *line is a heap string without the newline, the caller frees it. Returns 0,
 * FL_ETIMEOUT at the deadline, FL_ELIMIT when the memory watch killed it, or FL_EIO when its
 * stdout closed (it exited or crashed). */
int wk_proc_recv(struct wk_proc *p, int64_t deadline_ms, char **line);

/* The engine's peak memory in KiB, or -1 when unknown: for a sandbox, its cgroup's peak (the
 * sandbox lives for one job); for a plain engine, the largest resident size sampled since the
 * last wk_proc_peak_reset (the worker resets it when a job starts, since plain engines are
 * reused). Sampling happens while wk_proc_recv waits, at least every 50 ms. */
int64_t wk_proc_peak_kb(const struct wk_proc *p);
void wk_proc_peak_reset(struct wk_proc *p);

/* SIGKILLs the engine (and, when sandboxed, its whole sandbox). */
void wk_proc_kill(struct wk_proc *p);

/* Reaps the engine (killing it first when kill_first is set), fills *ex, closes everything and
 * leaves p empty. Safe on an empty p (pid 0). */
void wk_proc_finish(struct wk_proc *p, int kill_first, struct wk_exit *ex);

/* True while p holds a process that has not been finished. */
int wk_proc_alive(const struct wk_proc *p);

#endif
