/* Steps "users" and "credentials". The spawner maps one host uid and gid into the sandbox's new
 * user namespace (the identity map on that id: the sandbox runs as the same uid inside and out,
 * never as host root, so RLIMIT_NPROC applies and host files keep their meaning). The child
 * waits for the maps, does its privileged setup with the capabilities it holds in its own
 * namespace, then switches to the mapped ids and drops every capability. */
#include "sandbox/sb_int.h"

#include "core/err.h"
#include "sandbox/sb_sys.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int sb__write_id_maps(pid_t pid, uid_t uid, gid_t gid, int privileged, struct fl_err *err)
{
	char path[64], map[64];
	int rc;
	/* Unprivileged, the kernel wants setgroups denied before a gid map is written. */
	if (!privileged) {
		snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
		if ((rc = sb__write_file(path, "deny", 4)) && rc != -ENOENT)
			return fl_err_set(err, rc, "cannot write '%s': %s", path, strerror(-rc));
	}
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
	int n = snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	if ((rc = sb__write_file(path, map, (size_t)n)))
		return fl_err_set(err, rc, "cannot write '%s': %s", path, strerror(-rc));
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
	n = snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	if ((rc = sb__write_file(path, map, (size_t)n)))
		return fl_err_set(err, rc, "cannot write '%s': %s", path, strerror(-rc));
	return 0;
}

SB_CHILD void sb__child_users(struct sb_launch *l)
{
	char go;
	long n;
	while ((n = sb_sys3(SYS_read, l->go_fd, &go, 1)) == -EINTR)
		;
	/* No byte: the spawner failed or died before finishing the maps; it reports itself. */
	if (n != 1)
		sb__child_exit(126);
	long r = sb_sys2(SYS_sethostname, l->hostname, strlen(l->hostname));
	if (r)
		sb__child_fail(l, SB_STEP_USERS, (int)-r, "cannot set the hostname", NULL);
}

SB_CHILD int sb__drop_caps(int cap_last_cap)
{
	/* Securebits first: they need CAP_SETPCAP, and they stop a later exec of a uid-0 or
	 * file-capability program from regaining anything. EPERM means we had no caps to lose. */
	long r = sb_sys5(SYS_prctl, PR_SET_SECUREBITS,
			 SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
				 SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
				 SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
			 0, 0, 0);
	if (r && r != -EPERM)
		return (int)r;
	for (int cap = 0; cap <= cap_last_cap; cap++) {
		r = sb_sys5(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
		if (r && r != -EINVAL && r != -EPERM)
			return (int)r;
	}
	r = sb_sys5(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (r && r != -EINVAL)
		return (int)r;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	if ((r = sb_sys2(SYS_capset, &hdr, data)))
		return (int)r;
	/* Verify: a security step never assumes it worked. */
	if ((r = sb_sys2(SYS_capget, &hdr, data)))
		return (int)r;
	for (int i = 0; i < 2; i++)
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return -EPERM;
	return 0;
}

SB_CHILD void sb__child_credentials(struct sb_launch *l)
{
	long r;
	if (l->setgroups_allowed && (r = sb_sys2(SYS_setgroups, 0, NULL)))
		sb__child_fail(l, SB_STEP_CREDENTIALS, (int)-r, "cannot drop supplementary groups", NULL);
	if ((r = sb_sys3(SYS_setresgid, l->gid, l->gid, l->gid)))
		sb__child_fail(l, SB_STEP_CREDENTIALS, (int)-r, "cannot set the gid", NULL);
	if ((r = sb_sys3(SYS_setresuid, l->uid, l->uid, l->uid)))
		sb__child_fail(l, SB_STEP_CREDENTIALS, (int)-r, "cannot set the uid", NULL);
	/* The uid change above would not drop capabilities here (uid 0 of this namespace is not
	 * mapped), so they are dropped explicitly. */
	int rc = sb__drop_caps(l->cap_last_cap);
	if (rc)
		sb__child_fail(l, SB_STEP_CREDENTIALS, -rc, "cannot drop capabilities", NULL);
	/* The kernel clears the parent-death signal on a uid change: set it now, then check the
	 * parent did not die before it was set, since then it would never fire. */
	if ((r = sb_sys5(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)))
		sb__child_fail(l, SB_STEP_CREDENTIALS, (int)-r, "cannot set the parent-death signal", NULL);
	if (l->parent_pidfd >= 0) {
		struct pollfd pfd = { .fd = l->parent_pidfd, .events = POLLIN };
		struct timespec zero = { 0, 0 };
		if (sb_sys5(SYS_ppoll, &pfd, 1, &zero, NULL, 0) != 0)
			sb__child_exit(126);
	}
}
