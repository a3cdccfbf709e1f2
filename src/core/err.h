/* Error codes and error detail. A fallible function returns 0 or a negative code: -errno for
 * system errors, or one of the FL_E* codes below. Human detail goes into an optional
 * struct fl_err out-parameter, which may be NULL when the caller only wants the code. */
#ifndef FL_ERR_H
#define FL_ERR_H

enum {
	FL_EINVAL = -1000, /* bad input: a flow, a payload, a request */
	FL_ECONFIG,        /* bad configuration */
	FL_EPROTO,         /* a peer spoke something we cannot parse */
	FL_ENOTFOUND,      /* the thing named does not exist */
	FL_ECONFLICT,      /* state changed under us: lost lock, used waitpoint */
	FL_ETIMEOUT,       /* a deadline passed */
	FL_EREDIS,         /* Redis answered with an error or went away */
	FL_EDB,            /* the store failed */
	FL_EJS,            /* a script threw */
	FL_EDENIED,        /* a policy refused: network, sandbox, auth */
	FL_EUNSUPPORTED,   /* the host or build lacks a capability */
	FL_EIO,            /* a peer or file failed in a way errno does not name */
	FL_ELIMIT,         /* a size or count limit was crossed */
};

struct fl_err {
	int code;
	char msg[512];
};

/* Sets code and a printf-formatted message on err (a no-op when err is NULL) and returns code,
 * so that callers can write `return fl_err_set(err, FL_EINVAL, "...")`. */
int fl_err_set(struct fl_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes err's message with a printf-formatted context and ": ". Returns err->code. */
int fl_err_prefix(struct fl_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void fl_err_clear(struct fl_err *err);

/* A static description of a code: strerror for -errno, a phrase for FL_E*. */
const char *fl_strerror(int code);

#endif
