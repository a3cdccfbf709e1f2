/* The file system a sandbox sees: a list of host paths bound read-only into an otherwise empty
 * root, to which every sandbox adds the device nodes /dev/{null,zero,full,random,urandom}, a
 * private /tmp and a fresh /proc. Built once at start and shared, read-only, by every spawn: the
 * first spawn freezes it. */
#ifndef SB_ROOT_H
#define SB_ROOT_H

struct fl_err;
struct sb_root;

enum sb_path_flags {
	SB_PATH_OPTIONAL = 1u << 0, /* skip when the host path does not exist */
};

struct sb_root *sb_root_new(void);
void sb_root_free(struct sb_root *root);

/* Binds host path src (a file or a directory, symlinks followed) at dst inside the sandbox
 * (NULL: the same path). dst must be absolute and normalised, must not be /, /tmp, /proc or
 * /dev or under them, and must not lie inside a directory that is itself bound (creating its
 * mount point would write to the host). 0, or FL_EINVAL / -errno with err saying why;
 * FL_EINVAL too once the root is frozen. */
int sb_root_add(struct sb_root *root, const char *src, const char *dst, unsigned flags,
		struct fl_err *err);

/* Binds an executable and every shared library the dynamic loader resolves for it (the
 * loader's own --list, so ld.so.cache, RUNPATH and hwcaps subdirectories are honoured), plus
 * /etc/ld.so.cache, each at its host path. */
int sb_root_add_exec(struct sb_root *root, const char *path, struct fl_err *err);

/* Binds what name resolution and TLS need, each when present: /etc/resolv.conf, /etc/hosts,
 * /etc/nsswitch.conf, /etc/ssl/certs, /etc/ssl/openssl.cnf, /usr/lib/ssl/openssl.cnf. */
int sb_root_add_net_files(struct sb_root *root, struct fl_err *err);

/* Number of host paths bound (device nodes excluded), and the i-th of them (src, dst). */
int sb_root_count(const struct sb_root *root);
int sb_root_get(const struct sb_root *root, int i, const char **src, const char **dst);

#endif
