/* Internals shared by the sandbox modules. A kernel sandbox is set up by a child process that
 * runs an ordered list of steps (users, network, mounts, cgroup, credentials, fds, rlimits,
 * seccomp, exec). Everything a step needs is computed by the spawner before the clone, in a
 * struct sb_launch, because the child of a multithreaded worker may only make raw system calls:
 * no malloc, no stdio, no locks, not even errno (sb_sys.h). A step that fails writes a struct sb_report ({step, errno, detail})
 * to a close-on-exec pipe and exits; the spawner reads the pipe until EOF, which exec (or, in a
 * zygote, the start of the entry function) produces. */
#ifndef SB_INT_H
#define SB_INT_H

#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/types.h>

struct fl_err;
struct sb_host;

/* Functions that run in the sandbox child, on a stack the instrumentation knows nothing of and
 * in memory shared with the spawner: no sanitizer bookkeeping there. */
#define SB_CHILD __attribute__((no_sanitize("address", "undefined")))

/* Setup steps, in the order the child runs them. The names are what errors report. */
enum sb_step {
	SB_STEP_READY = 0, /* not a failure: a pre-started sandbox is set up and waits for its job */
	SB_STEP_USERS = 1, /* wait for the uid/gid maps, hostname */
	SB_STEP_NETWORK,   /* verify the network namespace is not the host's */
	SB_STEP_MOUNTS,    /* read-only root, /tmp, /proc, pivot_root */
	SB_STEP_CGROUP,    /* wait until placed in the sandbox's cgroup; cgroup namespace there */
	SB_STEP_CREDENTIALS, /* ids, capabilities, parent-death signal */
	SB_STEP_FDS,     /* before rlimits: RLIMIT_NOFILE may be below the fds being moved */
	SB_STEP_RLIMITS,
	SB_STEP_SECCOMP, /* no_new_privs and the filter: last, it would deny the steps above */
	SB_STEP_JOB,     /* a pre-started sandbox receives its job */
	SB_STEP_EXEC,
	SB_STEP_SPAWN, /* clone, the child's namespaces, and spawner-side failures (maps, cgroup
			* placement) */
};

const char *sb__step_name(int step);

/* What the child reports when a step fails. Written with one write(2), well under PIPE_BUF. */
struct sb_report {
	int32_t step;
	int32_t err; /* positive errno */
	char detail[248];
};

/* Kinds of root-building operations. */
enum sb_op_kind {
	SB_OP_MKDIR,   /* directory in the new root */
	SB_OP_SYMLINK, /* src is the link target */
	SB_OP_BIND,    /* read-only bind of a host file or directory */
	SB_OP_BIND_DEV /* bind of a host device node: read-only, but device access kept */
};

enum { SB_MAX_BINDS = 1024 }; /* operations in a plan */

struct sb_op {
	int kind;
	int is_dir;       /* for binds: the source is a directory */
	const char *src;  /* host path (bind) or link target (symlink) */
	const char *dst;  /* absolute path under the scratch mount point */
	const char *show; /* the path as the sandbox sees it, for error messages */
};

/* The root a struct sb_root turns into, computed once and then read-only (shared by spawns and
 * by their children). */
struct sb_plan {
	const char *scratch;  /* an existing host directory the new root is mounted on */
	const char *tmp_dir;  /* scratch + "/tmp" */
	const char *proc_dir; /* scratch + "/proc" */
	/* A host directory holding the root's directories, links and mount points (all but those
	 * under /tmp), which each sandbox binds as its root; NULL: each builds them in a tmpfs. */
	const char *skeleton;
	/* The whole read-only root, built once from the skeleton and the binds as a detached
	 * mount tree (a privileged spawner on Linux 6.15 or later, which can copy a detached
	 * tree): each sandbox gets a copy and moves it into place in one step. -1: each sandbox
	 * binds the skeleton and the plan's sources itself. */
	int tree;
	struct sb_op *ops;
	size_t n_ops;
	char **owned; /* every string above */
	size_t n_owned;
};

/* open_tree flags for a sandbox's copy of a plan's tree. */
#define SB_TREE_COPY (OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH)

struct sb_rlimit {
	int resource;
	struct rlimit lim;
};

typedef int (*sb_entry_fn)(int argc, char **argv, void *arg);

/* Everything the child needs, prepared by the spawner. */
struct sb_launch {
	const struct sb_plan *plan;
	unsigned flags;
	int unshare_flags;   /* the namespaces the child makes itself (all but user and PID) */
	int check_netns;     /* verify the network namespace differs from host_netns */
	ino_t host_netns_ino;
	dev_t host_netns_dev;
	int use_mount_setattr;
	int root_fd;         /* a copy of the plan's tree for this sandbox, or -1 */
	int setgroups_allowed; /* the maps were written by a privileged spawner */
	int cap_last_cap;
	uid_t uid;
	gid_t gid;
	const char *hostname;
	const char *cwd;
	char tmp_opts[96];  /* mount options of /tmp */
	char root_opts[96]; /* mount options of the root tmpfs */
	struct sb_rlimit rlimits[8];
	int n_rlimits;
	const struct sock_fprog *filter;
	const int *fds;
	int n_fds;
	int err_fd;       /* write end of the report pipe, O_CLOEXEC; the child moves it */
	int go_fd;        /* one byte once the maps are written, a second once the child is in
			   * its cgroup; the child moves it too */
	int wait_cgroup;  /* the spawner sends the second byte */
	int parent_pidfd; /* the process whose death must kill us, checked after PDEATHSIG is set */
	int fd_limit;     /* RLIMIT_NOFILE of the spawner, to close fds without close_range */
	char *const *argv;
	char *const *envp;
	sb_entry_fn entry; /* zygote: run this instead of execve */
	void *entry_arg;
	/* Pre-started: after seccomp, report SB_STEP_READY, then take argv, envp and fds from a
	 * message on go_fd (a SOCK_SEQPACKET socket). */
	int pending;
	struct sb_job *job;
};

/* A pre-started sandbox's job as it arrives: a struct sb_job_hdr, then argv and envp as
 * NUL-terminated strings, with the fds attached. */
enum { SB_JOB_MAX = 64 * 1024, SB_JOB_STRINGS = 512 };
struct sb_job_hdr {
	uint32_t magic;
	int32_t n_fds;
	uint32_t n_argv;
	uint32_t n_envp;
};
#define SB_JOB_MAGIC 0x53424a31u
struct sb_job {
	char buf[SB_JOB_MAX];
	char *argv[SB_JOB_STRINGS + 1];
	char *envp[SB_JOB_STRINGS + 1];
	int fds[64];
};

/* A sandbox set up up to seccomp, waiting for its job (sb_prestart). */
struct sb_pending {
	pid_t pid;
	int pidfd;
	int report_fd; /* read end of the report pipe */
	int job_fd;    /* the job goes here */
	int cpu_seconds;
	int entry;     /* a zygote's: argv goes to the entry function, not execve */
	struct sb_cgroup cg;
	struct sb_ctx *ctx;
};

SB_CHILD _Noreturn void sb__child_main(struct sb_launch *l);
/* Reports a failed step (err: a positive errno) to the spawner and exits. what and path may be
 * NULL. */
SB_CHILD _Noreturn void sb__child_fail(struct sb_launch *l, int step, int err, const char *what,
			      const char *path);
SB_CHILD _Noreturn void sb__child_exit(int code);
/* One recvmsg on fd into buf[0..len), EINTR retried. Passed fds are counted in *n_fds (which may
 * exceed max_fds by one) and at most max_fds (<= 64) of them copied into fds; *truncated when
 * the data or the fds did not fit.
 * Returns the bytes received (0 at EOF) or -errno. Raw system calls only. */
SB_CHILD long sb__child_recv(int fd, void *buf, size_t len, int *fds, int max_fds, int *n_fds,
			     int *truncated);

/* root.c: the list behind struct sb_root. */
struct sb_bind {
	char *src; /* canonical host path (symlinks resolved) */
	char *dst; /* path inside the sandbox */
	int is_dir;
};

struct sb_root {
	pthread_mutex_t lock; /* guards plan creation: spawns may come from several threads */
	struct sb_bind *binds;
	int n_binds, cap_binds;
	struct sb_plan *plan; /* set on first use; the root is frozen from then on */
};

/* mounts.c */
int sb__plan_build(const struct sb_root *root, struct sb_plan **out, struct fl_err *err);
void sb__plan_free(struct sb_plan *plan);
SB_CHILD void sb__child_mounts(struct sb_launch *l);
/* root.c: the plan, built on first use and kept. */
int sb__root_plan(struct sb_root *root, const struct sb_plan **out, struct fl_err *err);

/* users.c */
int sb__write_id_maps(pid_t pid, uid_t uid, gid_t gid, int privileged, struct fl_err *err);
SB_CHILD void sb__child_users(struct sb_launch *l);
SB_CHILD void sb__child_credentials(struct sb_launch *l);
/* Drops every capability (bounding, ambient, effective, permitted, inheritable), with raw
 * system calls. 0 or -errno. */
SB_CHILD int sb__drop_caps(int cap_last_cap);

/* cgroup.c: struct sb_cgroup (sandbox.h) is created by the spawner before the clone. */
void sb__cgroup_init(struct sb_cgroup *cg);
/* Creates a cgroup for one sandbox (nothing when the host has none and no memory limit is
 * asked), named after owner, the worker. */
int sb__cgroup_create(const struct sb_host *host, const struct sb_limits *lim, pid_t owner,
		      struct sb_cgroup *cg, struct fl_err *err);
/* Moves pid into the cgroup. 0 or -errno. */
int sb__cgroup_place(const struct sb_cgroup *cg, pid_t pid);
int sb__cgroup_peak(const struct sb_cgroup *cg, int64_t *bytes);
/* Number of OOM kills in the cgroup so far, or -1 when the kernel does not count them. */
int64_t sb__cgroup_oom_kills(const struct sb_cgroup *cg);
/* Kills what is left in the cgroup, removes it and closes its fds. 0 or -errno (the directory
 * could not be removed). */
int sb__cgroup_destroy(struct sb_cgroup *cg);
/* Closes the cgroup's fds and forgets it without removing it (the zygote, whose worker owns
 * the cgroup). */
void sb__cgroup_forget(struct sb_cgroup *cg);
SB_CHILD void sb__child_cgroup(struct sb_launch *l);
/* Removes cgroups left by spawners that died (their pid no longer exists). */
void sb__cgroup_sweep(const char *parent_dir, int version);

/* network.c */
SB_CHILD void sb__child_network(struct sb_launch *l);
int sb__netns_ino(int fd, ino_t *ino, dev_t *dev);

/* rlimits.c */
int sb__rlimits_prepare(const struct sb_limits *lim, struct sb_rlimit *out, int max);
SB_CHILD void sb__child_rlimits(struct sb_launch *l);

/* seccomp.c: filters are built once per process and kept. */
enum { SB_FILTER_INET = 1, SB_FILTER_CODE = 2 };
int sb__filter_get(unsigned kind, const struct sock_fprog **out, struct fl_err *err);
SB_CHILD void sb__child_seccomp(struct sb_launch *l);

/* spawn.c: the common spawner of sb_spawn and the zygote. */
struct sb_spawn_req {
	const struct sb_host *host;
	const struct sb_plan *plan;
	unsigned flags;
	int netns_fd;
	struct sb_limits limits;
	uid_t uid;
	gid_t gid;
	const char *hostname;
	const char *cwd;
	char *const *argv;
	char *const *envp;
	const int *fds;
	int n_fds;
	int err_fd;       /* write end of the report pipe */
	int clone_parent; /* zygote: the new process is a child of the zygote's parent */
	int pending;      /* pre-start: stop after seccomp and wait for the job */
	pid_t cgroup_owner; /* the process whose pid names the cgroup (the worker) */
	int parent_pidfd; /* the process the sandbox must not outlive */
	sb_entry_fn entry;
	void *entry_arg;
};
/* sb__clone's result when the child died during its setup (its report says why). */
enum { SB__GONE = 1 };

/* Memory the child of a CLONE_VM spawn runs on (its launch and stack); freed once it has
 * exec'd or died. NULL when the child has its own copy of memory. */
struct sb_ctx;
void sb__ctx_free(struct sb_ctx *ctx);
/* Clones the sandbox, writes its maps, lets it set up, creates its cgroup and places it there
 * meanwhile, then lets it go on to seccomp and exec. On success *pid, *pidfd, *cg and *ctx are
 * the caller's; setup errors are then read from the report pipe. On failure after the clone,
 * the child is killed and *pidfd (>= 0) must still be reaped; *cg is empty. SB__GONE: the
 * child failed a step on its own; pass gone = 1 to sb__spawn_finish, which reports it. */
int sb__clone(const struct sb_spawn_req *req, pid_t *pid, int *pidfd, struct sb_cgroup *cg,
	      struct sb_ctx **ctx, int *job_fd, struct fl_err *err);
/* The common start of sb_spawn and sb_prestart: checks opts, plans the root and sb__clones a
 * sandbox for opts, running argv with fds (sb_spawn) or pre-started when job_fd is given. Returns
 * 0 or SB__GONE with *pid, *pidfd, *cg, *ctx, *report_fd (and *job_fd) for the matching finish;
 * any other code once everything is cleaned up. */
int sb__clone_opts(const struct sb_opts *opts, char *const argv[], const int *fds, int n_fds,
		   pid_t *pid, int *pidfd, struct sb_cgroup *cg, struct sb_ctx **ctx,
		   int *report_fd, int *job_fd, struct fl_err *err);
/* After sb__clone: reads the report, and on success hands pid, pidfd and cg (moved) to child;
 * on failure reaps the child and destroys cg. Closes report_fd. */
int sb__spawn_finish(const struct sb_opts *opts, struct sb_cgroup *cg, struct sb_ctx *ctx,
		     pid_t pid, int pidfd, int report_fd, int gone, struct sb_child *child,
		     struct fl_err *err);
/* A new pidfd of this process (the caller closes it): the sandbox's check that its parent is
 * alive. */
int sb__self_pidfd(void);
/* SIGKILLs, reaps and closes a child that failed during setup, so that no zombie is left. */
void sb__reap(int pidfd);
/* Reads the report pipe until EOF. 0 when the payload started, or -errno with the step in err;
 * SB__READY when a pre-started sandbox says it is set up. */
int sb__read_report(int fd, struct fl_err *err);
enum { SB__READY = 2 };
/* After sb__clone of a pre-started sandbox: waits for its SB_STEP_READY and fills *out (moving
 * cg, ctx and the fds in); on failure reaps and cleans up, and closes the fds. */
int sb__pending_finish(const struct sb_opts *opts, struct sb_cgroup *cg, struct sb_ctx *ctx,
		       pid_t pid, int pidfd, int report_fd, int job_fd, int gone, int entry,
		       struct sb_pending **out, struct fl_err *err);

/* Small helpers usable in the child (no allocation, no errno). */
SB_CHILD size_t sb__strlcpy(char *dst, const char *src, size_t size);
SB_CHILD size_t sb__strlcat(char *dst, const char *src, size_t size);
/* Spawner side (they set errno). */
int sb__write_file(const char *path, const char *data, size_t len);
int sb__write_fd(int fd, const char *data, size_t len);
/* Reads a whole small file into buf (NUL-terminated). Returns its length or -errno. */
ssize_t sb__read_file(const char *path, char *buf, size_t size);

#endif
