/* Generated secrets under AP_CONFIG_PATH: see secret.h. */
#include "core/secret.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/rand.h"
#include "core/time.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fl_secret_read(const char *dir, const char *name, char **out, struct fl_err *err)
{
	char *path = fl_asprintf("%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		int rc = e == ENOENT ? FL_ENOTFOUND : -e;
		fl_err_set(err, rc, "cannot open '%s': %s", path, strerror(e));
		fl_free(path);
		return rc;
	}
	char buf[512];
	ssize_t n;
	size_t len = 0;
	while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		len--;
	buf[len] = '\0';
	if (!len) {
		fl_err_set(err, FL_EINVAL, "'%s' is empty", path);
		fl_free(path);
		return FL_EINVAL;
	}
	fl_free(path);
	*out = fl_strndup(buf, len);
	return 0;
}

int fl_secret_load_or_create(const char *dir, const char *name, char **out, int *created,
			     struct fl_err *err)
{
	*created = 0;
	*out = NULL;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		int e = errno;
		return fl_err_set(err, -e, "cannot create '%s': %s", dir, strerror(e));
	}
	char *path = fl_asprintf("%s/%s", dir, name);
	for (int tries = 0; tries < 50; tries++) {
		int rc = fl_secret_read(dir, name, out, NULL);
		if (rc == 0)
			break;
		if (rc != FL_ENOTFOUND && rc != FL_EINVAL) {
			fl_free(path);
			return fl_secret_read(dir, name, out, err);
		}
		/* Written to a temp name then linked into place, so that a reader never sees a
		 * half-written file and two first starts cannot both win. */
		char value[65];
		fl_random_hex(value, 32);
		char *tmp = fl_asprintf("%s.%d.tmp", path, (int)getpid());
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			int e = errno;
			fl_err_set(err, -e, "cannot create '%s': %s", tmp, strerror(e));
			fl_free(tmp);
			fl_free(path);
			return -e;
		}
		ssize_t w = write(fd, value, 64);
		(void)!write(fd, "\n", 1);
		int sync_rc = fsync(fd);
		close(fd);
		if (w != 64 || sync_rc) {
			unlink(tmp);
			fl_free(tmp);
			fl_free(path);
			return fl_err_set(err, FL_EIO, "cannot write '%s'", path);
		}
		int linked = link(tmp, path);
		int e = errno;
		unlink(tmp);
		fl_free(tmp);
		if (linked == 0) {
			*out = fl_strdup(value);
			*created = 1;
			break;
		}
		if (e != EEXIST) {
			fl_free(path);
			return fl_err_set(err, -e, "cannot create '%s': %s", path, strerror(e));
		}
		fl_sleep_ms(10); /* someone else won; read theirs */
	}
	fl_free(path);
	if (!*out)
		return fl_err_set(err, FL_EIO, "cannot read or create the secret '%s'", name);
	return 0;
}
