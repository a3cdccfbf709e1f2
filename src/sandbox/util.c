/* Small helpers of the sandbox modules. Those used by the sandbox child before exec make only
 * system calls: they neither allocate nor lock. */
#include "sandbox/sb_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const char *const step_names[] = {
	[SB_STEP_USERS] = "users",
	[SB_STEP_NETWORK] = "network",
	[SB_STEP_MOUNTS] = "mounts",
	[SB_STEP_CGROUP] = "cgroup",
	[SB_STEP_CREDENTIALS] = "credentials",
	[SB_STEP_FDS] = "fds",
	[SB_STEP_RLIMITS] = "rlimits",
	[SB_STEP_SECCOMP] = "seccomp",
	[SB_STEP_JOB] = "job",
	[SB_STEP_EXEC] = "exec",
	[SB_STEP_SPAWN] = "spawn",
};

const char *sb__step_name(int step)
{
	if (step > 0 && step < (int)(sizeof step_names / sizeof step_names[0]) && step_names[step])
		return step_names[step];
	return "unknown";
}

SB_CHILD size_t sb__strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);
	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

SB_CHILD size_t sb__strlcat(char *dst, const char *src, size_t size)
{
	size_t used = strnlen(dst, size);
	if (used == size)
		return used + strlen(src);
	return used + sb__strlcpy(dst + used, src, size - used);
}

int sb__write_fd(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int sb__write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = sb__write_fd(fd, data, len);
	if (close(fd) && !rc)
		rc = -errno;
	return rc;
}

ssize_t sb__read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return (ssize_t)len;
}
