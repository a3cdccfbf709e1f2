/* Step "network": under SB_NET the sandbox lives in a network namespace with no interface but a
 * loopback that is down, so no address answers, 127.0.0.1 included; the only way out is a unix
 * socket the worker hands in (the egress broker). The namespace is either new (CLONE_NEWNET,
 * about a millisecond) or one made by sb_netns_new and reused by one slot's sandboxes in turn:
 * it belongs to the host's user namespace, so a sandbox cannot change it, and nothing of one
 * sandbox (sockets die with their processes) is left for the next. The child checks it is not in
 * the host's namespace before going on. */
#include "sandbox/sb_int.h"

#include "core/assert.h"
#include "core/err.h"
#include "sandbox/sb_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sb__netns_ino(int fd, ino_t *ino, dev_t *dev)
{
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	*ino = st.st_ino;
	*dev = st.st_dev;
	return 0;
}

int sb_netns_new(int *out, struct fl_err *err)
{
	*out = -1;
	/* Namespaces are per thread: create it on this thread, keep a handle, and come back. */
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		int e = errno;
		return fl_err_set(err, -e, "cannot open '/proc/thread-self/ns/net': %s", strerror(e));
	}
	if (unshare(CLONE_NEWNET)) {
		int e = errno;
		close(self);
		return fl_err_set(err, -e, "cannot create a network namespace: %s", strerror(e));
	}
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int open_errno = errno;
	if (setns(self, CLONE_NEWNET)) {
		/* Stuck in the new namespace, this thread can no longer reach anything. */
		int e = errno;
		fl_err_set(err, -e, "cannot return to the host network namespace: %s", strerror(e));
		FL_ASSERT(!"thread left in a private network namespace");
	}
	close(self);
	if (fd < 0)
		return fl_err_set(err, -open_errno, "cannot open the new network namespace: %s",
				  strerror(open_errno));
	*out = fd;
	return 0;
}

SB_CHILD void sb__child_network(struct sb_launch *l)
{
	if (!l->check_netns)
		return;
	struct stat st;
	long r = sb_sys4(SYS_newfstatat, AT_FDCWD, "/proc/self/ns/net", &st, 0);
	if (r)
		sb__child_fail(l, SB_STEP_NETWORK, (int)-r, "cannot inspect", "/proc/self/ns/net");
	if (st.st_ino == l->host_netns_ino && st.st_dev == l->host_netns_dev)
		sb__child_fail(l, SB_STEP_NETWORK, EPERM, "still in the host's network namespace", NULL);
}
