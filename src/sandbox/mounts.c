/* Step "mounts": the sandbox's root file system. The spawner turns a struct sb_root into a plan
 * once (directories, bind mounts, device nodes, symlinks, all as absolute paths), and makes the
 * root's directories, links and mount points once in a host directory, the skeleton; the child
 * then only makes system calls: it binds the skeleton (or, without one, a small tmpfs it fills
 * from the plan) on a scratch directory of the host, binds the plan's files and directories
 * onto it, makes the whole tree read-only, mounts a private /tmp and a fresh /proc, and pivots
 * into it. All of that happens in the child's own mount namespace, so nothing of a sandbox is
 * left on the host when it dies, however it dies. */
#include "sandbox/sb_int.h"
#include "sandbox/root.h"

#include "core/alloc.h"
#include "core/err.h"
#include "sandbox/sb_sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const dev_nodes[] = {
	"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
};

static const char *const dev_links[][2] = {
	{ "/dev/fd", "/proc/self/fd" },
	{ "/dev/stdin", "/proc/self/fd/0" },
	{ "/dev/stdout", "/proc/self/fd/1" },
	{ "/dev/stderr", "/proc/self/fd/2" },
};

/* Host directories the new root may be mounted on, in order of preference. */
static const char *const scratch_candidates[] = {
	"/tmp", "/mnt", "/media", "/srv", "/opt", "/run", "/var/tmp", "/home",
};

SB_CHILD static int under_tmp(const struct sb_op *op);
SB_CHILD static int is_bind(const struct sb_op *op);

static char *own(struct sb_plan *p, char *s)
{
	p->owned = fl_realloc(p->owned, (p->n_owned + 1) * sizeof *p->owned);
	p->owned[p->n_owned++] = s;
	return s;
}

static void add_op(struct sb_plan *p, size_t *cap, int kind, int is_dir, const char *src,
		   const char *show)
{
	if (p->n_ops == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		p->ops = fl_realloc(p->ops, *cap * sizeof *p->ops);
	}
	p->ops[p->n_ops++] = (struct sb_op){
		.kind = kind,
		.is_dir = is_dir,
		.src = src ? own(p, fl_strdup(src)) : NULL,
		.dst = own(p, fl_asprintf("%s%s", p->scratch, show)),
		.show = own(p, fl_strdup(show)),
	};
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int within(const char *b, const char *a)
{
	size_t n = strlen(a);
	return !strncmp(a, b, n) && (b[n] == '\0' || b[n] == '/');
}

/* Adds every proper ancestor of path (except /) to dirs. */
static void add_ancestors(char ***dirs, size_t *n, const char *path)
{
	for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
		*dirs = fl_realloc(*dirs, (*n + 1) * sizeof **dirs);
		(*dirs)[(*n)++] = fl_strndup(path, (size_t)(s - path));
	}
}

/* The skeleton: a sandbox used to make its root's directories, links and mount points one by
 * one in a fresh tmpfs, which took it about as long as all its binds. They are now made once per
 * plan, in a host directory that each sandbox binds (read-only, like the rest) as its root. The
 * directory is named after the process, so that a later process can remove what a dead one
 * left; removing it under a live one fails its sandboxes' mounts step. */
static const char skeleton_prefix[] = "flowd-sandbox-root-";

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes the skeletons in base of processes that no longer exist. */
static void skeleton_sweep(const char *base)
{
	DIR *d = opendir(base);
	if (!d)
		return;
	size_t n = strlen(skeleton_prefix);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, skeleton_prefix, n))
			continue;
		char *end;
		long pid = strtol(e->d_name + n, &end, 10);
		struct stat st;
		if (end == e->d_name + n || *end != '-' || pid <= 0 || pid == getpid() ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		/* Only a directory of ours: never follow what someone else put there. */
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISDIR(st.st_mode) ||
		    st.st_uid != geteuid())
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/%s", base, e->d_name);
		remove_tree(path);
	}
	closedir(d);
}

/* Makes p's skeleton, or leaves p->skeleton NULL. */
static void skeleton_build(struct sb_plan *p)
{
	static const char *const bases[] = { "/run", "/tmp", "/var/tmp" };
	char path[PATH_MAX];
	int made = 0;
	for (size_t i = 0; i < sizeof bases / sizeof bases[0] && !made; i++) {
		if (access(bases[i], W_OK | X_OK))
			continue;
		skeleton_sweep(bases[i]);
		snprintf(path, sizeof path, "%s/%s%d-XXXXXX", bases[i], skeleton_prefix, (int)getpid());
		made = mkdtemp(path) != NULL;
	}
	if (!made)
		return;
	/* Modes are set, not left to the umask: the sandbox's ids must be able to search them. */
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ok = dfd >= 0 && !fchmod(dfd, 0755);
	for (size_t i = 0; ok && i < p->n_ops; i++) {
		const struct sb_op *op = &p->ops[i];
		const char *rel = op->show + 1;
		if (under_tmp(op))
			continue;
		switch (op->kind) {
		case SB_OP_MKDIR:
			ok = !mkdirat(dfd, rel, 0755) && !fchmodat(dfd, rel, 0755, 0);
			break;
		case SB_OP_SYMLINK:
			ok = !symlinkat(op->src, dfd, rel);
			break;
		default:
			ok = op->is_dir || !mknodat(dfd, rel, S_IFREG | 0644, 0);
			break;
		}
	}
	if (dfd >= 0)
		close(dfd);
	if (ok)
		p->skeleton = own(p, fl_strdup(path));
	else
		remove_tree(path);
}

/* Makes p's tree from its skeleton, or leaves p->tree at -1: done as the child would do it
 * (sources cloned without the mounts below them, the whole tree read-only, device nodes
 * usable), but once. Private: nothing mounted later on the host shows up in a sandbox. The
 * kernel checks that a copy of a detached tree can be made (Linux 6.15 and later) and the
 * spawner's right to mount (a root worker) for us. */
static void tree_build(struct sb_plan *p)
{
	if (!p->skeleton)
		return;
	/* Each mount gets its attributes before it joins the tree: the kernel changes the
	 * mounts inside a detached tree only all at once. */
	struct mount_attr ro = {.attr_set =
				    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
				.propagation = MS_PRIVATE};
	struct mount_attr dev = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
				 .attr_clr = MOUNT_ATTR_NODEV,
				 .propagation = MS_PRIVATE};
	int t =
	    (int)syscall(SYS_open_tree, AT_FDCWD, p->skeleton, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	int ok = t >= 0 && !syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH, &ro, sizeof ro);
	for (size_t i = 0; ok && i < p->n_ops; i++) {
		const struct sb_op *op = &p->ops[i];
		if (!is_bind(op) || under_tmp(op))
			continue;
		const struct mount_attr *a = op->kind == SB_OP_BIND_DEV ? &dev : &ro;
		int s = (int)syscall(SYS_open_tree, AT_FDCWD, op->src,
				     OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		ok = s >= 0 && !syscall(SYS_mount_setattr, s, "", AT_EMPTY_PATH, a, sizeof *a) &&
		     !syscall(SYS_move_mount, s, "", t, op->show + 1, MOVE_MOUNT_F_EMPTY_PATH);
		if (s >= 0)
			close(s);
	}
	if (ok) {
		int copy = (int)syscall(SYS_open_tree, t, "", SB_TREE_COPY);
		ok = copy >= 0;
		if (ok)
			close(copy);
	}
	if (ok)
		p->tree = t;
	else if (t >= 0)
		close(t);
}

int sb__plan_build(const struct sb_root *root, struct sb_plan **out, struct fl_err *err)
{
	struct sb_plan *p = fl_calloc(1, sizeof *p);
	p->tree = -1;
	/* The scratch directory must not hide a bind source: sources are looked up after the
	 * new root is mounted over it. */
	for (size_t i = 0; i < sizeof scratch_candidates / sizeof scratch_candidates[0] && !p->scratch; i++) {
		const char *c = scratch_candidates[i];
		struct stat st;
		if (lstat(c, &st) || !S_ISDIR(st.st_mode))
			continue;
		int hides = 0;
		for (int b = 0; b < root->n_binds && !hides; b++)
			hides = within(root->binds[b].src, c);
		if (!hides)
			p->scratch = own(p, fl_strdup(c));
	}
	if (!p->scratch) {
		sb__plan_free(p);
		return fl_err_set(err, FL_EUNSUPPORTED,
				  "no host directory to build the sandbox root on (tried /tmp, /mnt, ...)");
	}
	p->tmp_dir = own(p, fl_asprintf("%s/tmp", p->scratch));
	p->proc_dir = own(p, fl_asprintf("%s/proc", p->scratch));

	char **dirs = NULL;
	size_t n_dirs = 0;
	static const char *const fixed[] = { "/dev", "/proc", "/tmp" };
	for (size_t i = 0; i < 3; i++) {
		dirs = fl_realloc(dirs, (n_dirs + 1) * sizeof *dirs);
		dirs[n_dirs++] = fl_strdup(fixed[i]);
	}
	for (int b = 0; b < root->n_binds; b++) {
		add_ancestors(&dirs, &n_dirs, root->binds[b].dst);
		if (root->binds[b].is_dir) {
			dirs = fl_realloc(dirs, (n_dirs + 1) * sizeof *dirs);
			dirs[n_dirs++] = fl_strdup(root->binds[b].dst);
		}
	}
	/* Sorted, a directory comes before everything under it. */
	qsort(dirs, n_dirs, sizeof *dirs, cmp_str);
	size_t cap = 0;
	for (size_t i = 0; i < n_dirs; i++) {
		if (!i || strcmp(dirs[i], dirs[i - 1]))
			add_op(p, &cap, SB_OP_MKDIR, 1, NULL, dirs[i]);
	}
	for (size_t i = 0; i < n_dirs; i++)
		fl_free(dirs[i]);
	fl_free(dirs);

	for (size_t i = 0; i < sizeof dev_links / sizeof dev_links[0]; i++)
		add_op(p, &cap, SB_OP_SYMLINK, 0, dev_links[i][1], dev_links[i][0]);
	for (int b = 0; b < root->n_binds; b++)
		add_op(p, &cap, SB_OP_BIND, root->binds[b].is_dir, root->binds[b].src, root->binds[b].dst);
	for (size_t i = 0; i < sizeof dev_nodes / sizeof dev_nodes[0]; i++) {
		struct stat st;
		if (!stat(dev_nodes[i], &st) && S_ISCHR(st.st_mode))
			add_op(p, &cap, SB_OP_BIND_DEV, 0, dev_nodes[i], dev_nodes[i]);
	}
	if (p->n_ops > SB_MAX_BINDS) {
		sb__plan_free(p);
		return fl_err_set(err, FL_ELIMIT, "the sandbox root has more than %d entries", SB_MAX_BINDS);
	}
	skeleton_build(p);
	tree_build(p);
	*out = p;
	return 0;
}

void sb__plan_free(struct sb_plan *p)
{
	if (!p)
		return;
	if (p->tree >= 0)
		close(p->tree);
	if (p->skeleton)
		remove_tree(p->skeleton);
	for (size_t i = 0; i < p->n_owned; i++)
		fl_free(p->owned[i]);
	fl_free(p->owned);
	fl_free(p->ops);
	fl_free(p);
}

/* Without mount_setattr (before Linux 5.12): one bind remount per mount. Flags the host mount
 * already has (nodev, noexec, ...) are locked in a user namespace and must be repeated. */
SB_CHILD static long remount_ro(const char *path, int keep_dev)
{
	struct statfs sf;
	long r = sb_sys2(SYS_statfs, path, &sf);
	if (r)
		return r;
	unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID;
	if (!keep_dev || (sf.f_flags & ST_NODEV))
		flags |= MS_NODEV;
	if (sf.f_flags & ST_NOEXEC)
		flags |= MS_NOEXEC;
	if (sf.f_flags & ST_NOATIME)
		flags |= MS_NOATIME;
	if (sf.f_flags & ST_NODIRATIME)
		flags |= MS_NODIRATIME;
	if (sf.f_flags & ST_RELATIME)
		flags |= MS_RELATIME;
	return sb_sys5(SYS_mount, NULL, path, NULL, flags, NULL);
}

/* "/proc/self/fd/N" without snprintf. */
SB_CHILD static void fd_path(char *out, int fd)
{
	char digits[12];
	int n = 0;
	do {
		digits[n++] = (char)('0' + fd % 10);
		fd /= 10;
	} while (fd);
	memcpy(out, "/proc/self/fd/", 14);
	for (int i = 0; i < n; i++)
		out[14 + i] = digits[n - 1 - i];
	out[14 + n] = '\0';
}

#define FAIL(r, what, path) sb__child_fail(l, SB_STEP_MOUNTS, (int)-(r), what, path)

/* True for entries inside the private /tmp (a flowd built under /tmp): they are made after
 * the tmpfs is mounted there, which would otherwise hide them. */
SB_CHILD static int under_tmp(const struct sb_op *op)
{
	const char *t = op->show;
	return t[0] == '/' && t[1] == 't' && t[2] == 'm' && t[3] == 'p' && t[4] == '/';
}

SB_CHILD static int is_bind(const struct sb_op *op)
{
	return op->kind == SB_OP_BIND || op->kind == SB_OP_BIND_DEV;
}

/* Whether the child opens op's source itself: every bind's, except with a copy of the plan's
 * tree, which holds all but those under /tmp. */
SB_CHILD static int child_opens(const struct sb_launch *l, const struct sb_op *op)
{
	return is_bind(op) && (l->root_fd < 0 || under_tmp(op));
}

/* Runs in the new root (the working directory), on the path relative to it. source_fd: for a
 * bind, a detached clone of the source (open_tree) when tree is set, else an O_PATH fd of it.
 * made: the root is the plan's skeleton, which has the directories, links and mount points. */
SB_CHILD static void apply_op(struct sb_launch *l, const struct sb_op *op, int source_fd, int tree,
			      int made)
{
	const char *dst = op->show + 1;
	long r;
	if (made && !is_bind(op))
		return;
	switch (op->kind) {
	case SB_OP_MKDIR:
		if ((r = sb_sys3(SYS_mkdirat, AT_FDCWD, dst, 0755)) && r != -EEXIST)
			FAIL(r, "cannot create directory", op->show);
		break;
	case SB_OP_SYMLINK:
		if ((r = sb_sys3(SYS_symlinkat, op->src, AT_FDCWD, dst)))
			FAIL(r, "cannot create symlink", op->show);
		break;
	case SB_OP_BIND:
	case SB_OP_BIND_DEV: {
		/* An empty regular file, made without opening it (mknod needs no privilege for
		 * one, and like O_CREAT | O_EXCL it neither follows nor reuses what is there). */
		if (!made && !op->is_dir && (r = sb_sys4(SYS_mknodat, AT_FDCWD, dst, S_IFREG | 0644, 0)))
			FAIL(r, "cannot create mount point", op->show);
		if (tree) {
			r = sb_sys5(SYS_move_mount, source_fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH);
		} else {
			/* Not MS_REC: mounts below a bound host directory stay hidden. */
			char src[32];
			fd_path(src, source_fd);
			r = sb_sys5(SYS_mount, src, dst, NULL, MS_BIND, NULL);
		}
		if (r)
			FAIL(r, "cannot bind", op->src);
		sb_sys1(SYS_close, source_fd);
		break;
	}
	}
}

/* Opens the source of every bind into fds (indexed like the plan's ops): with trees, each as a
 * detached clone (open_tree; not AT_RECURSIVE, so mounts below a bound host directory stay
 * hidden) that apply_op moves into place, which spares every mount a walk through
 * /proc/self/fd; else as an O_PATH fd. Returns 0, or, with trees, the error of an open_tree that
 * a container's filter refused (then nothing is left open). */
SB_CHILD static long open_sources(struct sb_launch *l, int *fds, int trees)
{
	const struct sb_plan *p = l->plan;
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct sb_op *op = &p->ops[i];
		if (!child_opens(l, op))
			continue;
		long r = trees ? sb_sys3(SYS_open_tree, AT_FDCWD, op->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
			       : sb_sys4(SYS_openat, AT_FDCWD, op->src, O_PATH | O_CLOEXEC, 0);
		if (trees && (r == -ENOSYS || r == -EPERM)) {
			for (size_t j = 0; j < i; j++)
				if (child_opens(l, &p->ops[j]))
					sb_sys1(SYS_close, fds[j]);
			return r;
		}
		if (r < 0)
			FAIL(r, "cannot bind", op->src);
		fds[i] = (int)r;
	}
	return 0;
}

/* The read-only pass over a root the child bound itself. */
SB_CHILD static void make_read_only(struct sb_launch *l)
{
	const struct sb_plan *p = l->plan;
	long r;
	if (l->use_mount_setattr) {
		struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
		if ((r = sb_sys5(SYS_mount_setattr, AT_FDCWD, p->scratch, AT_RECURSIVE, &ro, sizeof ro)))
			FAIL(r, "cannot make the root read-only", NULL);
		/* Device nodes work only where nodev is clear; they stay read-only mounts, which
		 * does not stop writes to /dev/null itself. */
		struct mount_attr dev = { .attr_clr = MOUNT_ATTR_NODEV };
		for (size_t i = 0; i < p->n_ops; i++)
			if (p->ops[i].kind == SB_OP_BIND_DEV &&
			    (r = sb_sys5(SYS_mount_setattr, AT_FDCWD, p->ops[i].dst, 0, &dev, sizeof dev)))
				FAIL(r, "cannot allow device", p->ops[i].show);
	} else {
		for (size_t i = 0; i < p->n_ops; i++) {
			const struct sb_op *op = &p->ops[i];
			if (!is_bind(op) || under_tmp(op))
				continue;
			if ((r = remount_ro(op->dst, op->kind == SB_OP_BIND_DEV)))
				FAIL(r, "cannot make read-only", op->show);
		}
		if ((r = remount_ro(p->scratch, 0)))
			FAIL(r, "cannot make the root read-only", NULL);
	}
}

SB_CHILD void sb__child_mounts(struct sb_launch *l)
{
	const struct sb_plan *p = l->plan;
	long r;
	/* Private first: nothing mounted below may propagate to the host. */
	if ((r = sb_sys5(SYS_mount, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)))
		FAIL(r, "cannot make the mount tree private", NULL);
	/* Sources are opened with the spawner's host ids, so that a binary under a directory
	 * only its owner may search can still be bound... */
	int source_fds[SB_MAX_BINDS];
	int trees = l->use_mount_setattr;
	if (trees && open_sources(l, source_fds, 1))
		trees = 0;
	if (!trees)
		open_sources(l, source_fds, 0);
	/* The root to move onto the scratch directory: the copy of the plan's tree, or a clone of
	 * its skeleton; -1: a tmpfs. */
	long root = l->root_fd;
	if (root < 0 && trees && p->skeleton &&
	    (root = sb_sys3(SYS_open_tree, AT_FDCWD, p->skeleton, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)) < 0)
		FAIL(root, "cannot bind the root from", p->skeleton);
	/* ...while files are created with the sandbox's ids: a file system of this user
	 * namespace refuses to create inodes owned by an id it does not map (host root). */
	sb_sys1(SYS_setfsgid, l->gid);
	sb_sys1(SYS_setfsuid, l->uid);
	if (sb_sys1(SYS_setfsgid, -1) != (long)l->gid || sb_sys1(SYS_setfsuid, -1) != (long)l->uid)
		FAIL(-EPERM, "cannot switch file system ids", NULL);
	if (root >= 0) {
		if ((r = sb_sys5(SYS_move_mount, root, "", AT_FDCWD, p->scratch, MOVE_MOUNT_F_EMPTY_PATH)))
			FAIL(r, "cannot bind the root on", p->scratch);
		sb_sys1(SYS_close, root);
	} else if ((r = sb_sys5(SYS_mount, "tmpfs", p->scratch, "tmpfs", MS_NOSUID | MS_NODEV,
				l->root_opts))) {
		FAIL(r, "cannot mount the root tmpfs on", p->scratch);
	}
	/* In the new root from here on: the entries are made relative to it, without walking to
	 * it and across its mount point each time, and pivot_root takes ".". */
	if ((r = sb_sys1(SYS_chdir, p->scratch)))
		FAIL(r, "cannot enter", p->scratch);

	/* A copy of the plan's tree comes with its binds, read-only. */
	if (l->root_fd < 0) {
		for (size_t i = 0; i < p->n_ops; i++)
			if (!under_tmp(&p->ops[i]))
				apply_op(l, &p->ops[i], source_fds[i], trees, root >= 0);
		make_read_only(l);
	}

	/* After the read-only pass, which would otherwise catch them too. */
	if ((r = sb_sys5(SYS_mount, "tmpfs", p->tmp_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			 l->tmp_opts)))
		FAIL(r, "cannot mount", "/tmp");
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct sb_op *op = &p->ops[i];
		if (!under_tmp(op))
			continue;
		apply_op(l, op, source_fds[i], trees, 0);
		if (is_bind(op) && (r = remount_ro(op->dst, 0)))
			FAIL(r, "cannot make read-only", op->show);
	}
	/* Mounted while the host's /proc is still visible: the kernel only lets a user namespace
	 * mount proc where a full proc is already visible. */
	if ((r = sb_sys5(SYS_mount, "proc", p->proc_dir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)))
		FAIL(r, "cannot mount", "/proc");

	/* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
	 * new root, with no path back to the host's. */
	if ((r = sb_sys2(SYS_pivot_root, ".", ".")))
		FAIL(r, "pivot_root failed on", p->scratch);
	if ((r = sb_sys2(SYS_umount2, ".", MNT_DETACH)))
		FAIL(r, "cannot detach the host root", NULL);
	if ((r = sb_sys1(SYS_chdir, "/")) || (r = sb_sys1(SYS_chdir, l->cwd)))
		FAIL(r, "cannot enter", l->cwd);
}
