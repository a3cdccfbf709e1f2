/* struct sb_root: the host paths a sandbox sees, validated when added so that a spawn never
 * discovers a bad path in the child. An executable's libraries are found by asking its own
 * dynamic loader (--list), which applies ld.so.cache, RUNPATH and hwcaps exactly as it will
 * inside the sandbox, where the same ld.so.cache is bound. */
#include "sandbox/root.h"
#include "sandbox/sb_int.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct sb_root *sb_root_new(void)
{
	struct sb_root *root = fl_calloc(1, sizeof *root);
	pthread_mutex_init(&root->lock, NULL);
	return root;
}

void sb_root_free(struct sb_root *root)
{
	if (!root)
		return;
	for (int i = 0; i < root->n_binds; i++) {
		fl_free(root->binds[i].src);
		fl_free(root->binds[i].dst);
	}
	fl_free(root->binds);
	sb__plan_free(root->plan);
	pthread_mutex_destroy(&root->lock);
	fl_free(root);
}

int sb_root_count(const struct sb_root *root)
{
	return root->n_binds;
}

int sb_root_get(const struct sb_root *root, int i, const char **src, const char **dst)
{
	if (i < 0 || i >= root->n_binds)
		return FL_EINVAL;
	*src = root->binds[i].src;
	*dst = root->binds[i].dst;
	return 0;
}

/* Absolute, no empty, "." or ".." components, no trailing slash. */
static int path_is_normal(const char *p)
{
	if (p[0] != '/' || !p[1])
		return 0;
	for (const char *c = p; *c;) {
		if (*c != '/')
			return 0;
		const char *seg = c + 1;
		const char *end = strchr(seg, '/');
		size_t len = end ? (size_t)(end - seg) : strlen(seg);
		if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		c = seg + len;
	}
	return 1;
}

/* a is b or an ancestor of b, component-wise. */
static int path_within(const char *b, const char *a)
{
	size_t n = strlen(a);
	return !strncmp(a, b, n) && (b[n] == '\0' || b[n] == '/');
}

static const char *const reserved[] = { "/proc", "/dev" };

int sb_root_add(struct sb_root *root, const char *src, const char *dst, unsigned flags,
		struct fl_err *err)
{
	if (!dst)
		dst = src;
	if (!src || !path_is_normal(dst))
		return fl_err_set(err, FL_EINVAL, "sandbox path '%s' is not an absolute normalised path",
				  dst ? dst : "(null)");
	/* Below /tmp is allowed (a flowd built there): such entries are laid read-only inside
	 * the sandbox's private /tmp. /tmp itself, /proc and /dev are the sandbox's own. */
	if (!strcmp(dst, "/tmp"))
		return fl_err_set(err, FL_EINVAL, "sandbox path '/tmp' is reserved: each sandbox gets "
				  "its own /tmp");
	for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
		if (path_within(dst, reserved[i]))
			return fl_err_set(err, FL_EINVAL,
					  "sandbox path '%s' is reserved: each sandbox gets its own %s", dst,
					  reserved[i]);
	pthread_mutex_lock(&root->lock);
	int frozen = root->plan != NULL;
	pthread_mutex_unlock(&root->lock);
	if (frozen)
		return fl_err_set(err, FL_EINVAL, "cannot add '%s': the sandbox root is already in use", dst);

	struct stat st;
	if (stat(src, &st)) {
		int e = errno;
		if (flags & SB_PATH_OPTIONAL)
			return 0;
		return fl_err_set(err, -e, "cannot bind '%s' into the sandbox: %s", src, strerror(e));
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISSOCK(st.st_mode))
		return fl_err_set(err, FL_EINVAL,
				  "cannot bind '%s' into the sandbox: only files, directories and sockets", src);
	char real[PATH_MAX];
	if (!realpath(src, real)) {
		int e = errno;
		return fl_err_set(err, -e, "cannot resolve '%s': %s", src, strerror(e));
	}
	int is_dir = S_ISDIR(st.st_mode);

	for (int i = 0; i < root->n_binds; i++) {
		const struct sb_bind *b = &root->binds[i];
		if (!strcmp(b->dst, dst)) {
			if (!strcmp(b->src, real))
				return 0;
			return fl_err_set(err, FL_EINVAL, "sandbox path '%s' is bound twice ('%s' and '%s')",
					  dst, b->src, real);
		}
		/* A mount point inside a bound directory would be created on the host; one under a
		 * file cannot exist. */
		if (path_within(dst, b->dst) || (is_dir && path_within(b->dst, dst)) ||
		    (!b->is_dir && path_within(dst, b->dst)))
			return fl_err_set(err, FL_EINVAL, "sandbox paths '%s' and '%s' overlap", b->dst, dst);
	}
	if (root->n_binds == root->cap_binds) {
		root->cap_binds = root->cap_binds ? root->cap_binds * 2 : 32;
		root->binds = fl_realloc(root->binds, (size_t)root->cap_binds * sizeof *root->binds);
	}
	root->binds[root->n_binds++] = (struct sb_bind){
		.src = fl_strdup(real), .dst = fl_strdup(dst), .is_dir = is_dir
	};
	return 0;
}

/* The PT_INTERP of an ELF file, or "" for a static executable. */
static int elf_interp(const char *path, char *interp, size_t size, struct fl_err *err)
{
	interp[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return fl_err_set(err, -e, "cannot open '%s': %s", path, strerror(e));
	}
	Elf64_Ehdr eh;
	int rc = 0;
	if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
		rc = fl_err_set(err, FL_EINVAL, "'%s' is not a 64-bit ELF executable", path);
		goto out;
	}
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph) {
			rc = fl_err_set(err, FL_EINVAL, "'%s': truncated program headers", path);
			goto out;
		}
		if (ph.p_type != PT_INTERP)
			continue;
		if (ph.p_filesz == 0 || ph.p_filesz >= size ||
		    pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz) {
			rc = fl_err_set(err, FL_EINVAL, "'%s': bad PT_INTERP", path);
			goto out;
		}
		interp[ph.p_filesz - 1] = '\0';
		break;
	}
out:
	close(fd);
	return rc;
}

/* Runs `interp --list path` with an empty environment and collects its output. */
static int loader_list(const char *interp, const char *path, struct fl_buf *out, struct fl_err *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC)) {
		int e = errno;
		return fl_err_set(err, -e, "pipe: %s", strerror(e));
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	char *argv[] = { (char *)interp, "--list", (char *)path, NULL };
	char *envp[] = { NULL };
	pid_t pid;
	int rc = posix_spawn(&pid, interp, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (rc) {
		close(p[0]);
		return fl_err_set(err, -rc, "cannot run '%s --list': %s", interp, strerror(rc));
	}
	char buf[4096];
	for (;;) {
		ssize_t n = read(p[0], buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fl_buf_add(out, buf, (size_t)n);
	}
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return fl_err_set(err, FL_EINVAL, "'%s --list %s' failed: %s", interp, path, out->data);
	return 0;
}

int sb_root_add_exec(struct sb_root *root, const char *path, struct fl_err *err)
{
	char interp[PATH_MAX];
	int rc = elf_interp(path, interp, sizeof interp, err);
	if (rc)
		return rc;
	if ((rc = sb_root_add(root, path, NULL, 0, err)))
		return rc;
	if (!interp[0])
		return 0;
	if ((rc = sb_root_add(root, interp, NULL, 0, err)))
		return rc;
	struct fl_buf out = FL_BUF_INIT;
	if ((rc = loader_list(interp, path, &out, err))) {
		fl_buf_release(&out);
		return rc;
	}
	/* Lines are "\tname => /path (0x...)", "\t/path (0x...)", or "\tname (0x...)" for the
	 * vDSO, which has no file. */
	char *save = NULL;
	for (char *line = strtok_r(out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "not found")) {
			rc = fl_err_set(err, FL_EINVAL, "'%s' needs a library the loader cannot find:%s", path, line);
			break;
		}
		char *lib = strstr(line, "=> ");
		lib = lib ? lib + 3 : line + strspn(line, " \t");
		if (*lib != '/')
			continue;
		char *end = strstr(lib, " (");
		if (end)
			*end = '\0';
		if ((rc = sb_root_add(root, lib, NULL, 0, err)))
			break;
	}
	fl_buf_release(&out);
	if (!rc)
		rc = sb_root_add(root, "/etc/ld.so.cache", NULL, SB_PATH_OPTIONAL, err);
	return rc;
}

int sb_root_add_net_files(struct sb_root *root, struct fl_err *err)
{
	static const char *const files[] = {
		"/etc/resolv.conf",    "/etc/hosts",          "/etc/nsswitch.conf",
		"/etc/ssl/certs",      "/etc/ssl/openssl.cnf", "/usr/lib/ssl/openssl.cnf",
		"/usr/share/ca-certificates",
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		int rc = sb_root_add(root, files[i], NULL, SB_PATH_OPTIONAL, err);
		if (rc)
			return rc;
	}
	return 0;
}

int sb__root_plan(struct sb_root *root, const struct sb_plan **out, struct fl_err *err)
{
	int rc = 0;
	pthread_mutex_lock(&root->lock);
	if (!root->plan)
		rc = sb__plan_build(root, &root->plan, err);
	*out = root->plan;
	pthread_mutex_unlock(&root->lock);
	return rc;
}
