/* What this host lets a sandbox use, found by trying it: user namespaces, a network namespace,
 * seccomp, a cgroup (v2, else v1) where a child cgroup with a memory limit can be created, and
 * the whole setup chain run once for real. sb_host_check then refuses an execution mode the host
 * cannot provide, with a message saying what is missing: a sandbox mode never quietly runs
 * unsandboxed. */
#ifndef SB_HOST_H
#define SB_HOST_H

#include <jansson.h>

struct fl_err;

struct sb_host {
	int root;          /* the spawner has CAP_SETUID/CAP_SYS_ADMIN: it may map any uid */
	int userns;        /* user, PID, mount, IPC, UTS and cgroup namespaces can be created */
	int netns;         /* a network namespace can be added */
	int sandbox;       /* a whole sandbox ran here: every setup step, then a payload */
	int seccomp;       /* seccomp filters can be loaded */
	int mount_setattr; /* recursive read-only in one call (Linux 5.12); else per-mount remounts */
	int mount_tree;    /* a sandbox's root is a copy of one built once per root (a root worker,
			    * Linux 6.15); else each sandbox binds its root's sources itself */
	int cgroup;        /* 0: no usable cgroup, 1: v1 memory hierarchy, 2: v2 */
	int cgroup_pids;   /* v2: the pids controller is enabled for sandboxes */
	int memory_peak;   /* the cgroup records peak usage (v2 memory.peak, v1 max_usage_in_bytes) */
	int oom_count;     /* the cgroup counts OOM kills (memory.events / memory.oom_control) */
	int cap_last_cap;
	char cgroup_dir[512]; /* parent directory of the sandboxes' cgroups */
	/* Why a feature is missing, for messages; empty when it is there. */
	char userns_why[256];
	char netns_why[512];
	char sandbox_why[512];
	char seccomp_why[256];
	char cgroup_why[512];
};

enum sb_probe_flags {
	/* cgroup v2: when our cgroup holds our process and nothing else, move ourselves into a
	 * leaf child ("flowd-worker") so that the memory controller can be enabled for sandbox
	 * cgroups (the no-internal-processes rule). Without it, such a host reports no cgroup. */
	SB_PROBE_MOVE_SELF = 1u << 0,
	/* Skip the trial sandboxes (for tests of the probe itself). */
	SB_PROBE_NO_TRIAL = 1u << 1,
};

/* Fills host. Creates the sandboxes' parent cgroup and removes the cgroups that spawners which
 * died left behind. Returns 0 even when features are missing (they are recorded in host); a
 * negative code only when probing itself failed. */
int sb_host_probe(struct sb_host *host, unsigned flags, struct fl_err *err);

/* Whether host can run execution_mode (enum fl_execution_mode) with network_mode (enum
 * fl_network_mode). 0, or FL_EUNSUPPORTED with a message naming the mode and what the host
 * lacks, e.g. "AP_EXECUTION_MODE=SANDBOX_PROCESS needs user namespaces: ...". */
int sb_host_check(const struct sb_host *host, int execution_mode, int network_mode,
		  struct fl_err *err);

/* The probe's findings as a JSON object (for `flowd sandbox check` and logs). New reference. */
json_t *sb_host_json(const struct sb_host *host);

#endif
