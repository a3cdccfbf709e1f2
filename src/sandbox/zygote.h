/* A zygote: a small process, exec'd once with an empty environment, that has loaded the
 * engine's libraries (it is the flowd binary) but started no VM and no threads, and forks each
 * new sandbox from itself. The child runs an entry function in place of execve, so a sandboxed
 * engine skips loading JavaScriptCore (about 8 ms). The child is created with CLONE_PARENT: it is
 * the worker's child, as with sb_spawn, and the worker gets the same struct sb_child (pidfd,
 * waitid, cgroup, peak memory). The worker owns the cgroup; the zygote only clones.
 *
 * Memory: every sandbox starts as a copy of the zygote, which never sees a secret (empty
 * environment; requests are wiped after each fork). Sandboxes of one zygote share its address
 * layout. */
#ifndef SB_ZYGOTE_H
#define SB_ZYGOTE_H

#include "sandbox/sandbox.h"

struct fl_err;
struct sb_zygote;

/* The function a zygote's sandbox runs instead of exec: argv is the spawn's argv, environ is
 * the spawn's envp, fds 0..n_fds-1 are the spawn's fds. Its return value is the exit code. It
 * runs as PID 1 of the sandbox, under seccomp; it must not expect threads started before the
 * fork (there are none). */
typedef int (*sb_zygote_entry_fn)(int argc, char **argv, void *arg);

/* Worker side. Starts argv (e.g. {"/usr/bin/flowd", "engine", "--zygote", NULL}) with an empty
 * environment and the control socket as fd 3, sends it host and root, and waits for it to be
 * ready. The zygote dies with the calling thread (PR_SET_PDEATHSIG) and when *out is freed.
 * root is frozen. */
int sb_zygote_new(char *const argv[], const struct sb_host *host, struct sb_root *root,
		  struct sb_zygote **out, struct fl_err *err);

/* Like sb_spawn, through the zygote (opts->host and opts->root must be the zygote's). With an
 * entry function in the zygote, argv is passed to it; without one, argv[0] is exec'd. Several
 * threads may share a zygote; their requests are served one after the other. The sandbox is a
 * child of the worker process, of the thread that created the zygote: it dies when that thread
 * exits (PR_SET_PDEATHSIG), and any thread of the worker may wait for it. */
int sb_zygote_spawn(struct sb_zygote *z, const struct sb_opts *opts, char *const argv[],
		    const int *fds, int n_fds, struct sb_child *child, struct fl_err *err);

/* Like sb_prestart, through the zygote: a sandbox forked from the zygote, set up and waiting;
 * sb_pending_run then passes argv to the entry function (or execs it without one). */
int sb_zygote_prestart(struct sb_zygote *z, const struct sb_opts *opts, struct sb_pending **out,
		       struct fl_err *err);

/* Pid of the zygote process (for tests). */
pid_t sb_zygote_pid(const struct sb_zygote *z);

/* Stops the zygote. Sandboxes already spawned keep running (they are the caller's children). */
void sb_zygote_free(struct sb_zygote *z);

/* Zygote side: serves spawn requests on sock (fd 3 from sb_zygote_new) until the worker goes
 * away, then returns 0. entry may be NULL (exec mode). Call it first thing in main, before any
 * thread is created; it reads nothing from the environment. */
int sb_zygote_serve(int sock, sb_zygote_entry_fn entry, void *arg);

#endif
