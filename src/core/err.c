/* Error detail helpers and the code → text table. */
#include "core/err.h"
#include "core/assert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fl_err_set(struct fl_err *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	return code;
}

int fl_err_prefix(struct fl_err *err, const char *fmt, ...)
{
	if (!err)
		return 0;
	char prefix[256], old[sizeof err->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
	return err->code;
}

void fl_err_clear(struct fl_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

const char *fl_strerror(int code)
{
	switch (code) {
	case 0: return "success";
	case FL_EINVAL: return "invalid input";
	case FL_ECONFIG: return "invalid configuration";
	case FL_EPROTO: return "protocol error";
	case FL_ENOTFOUND: return "not found";
	case FL_ECONFLICT: return "conflict";
	case FL_ETIMEOUT: return "timed out";
	case FL_EREDIS: return "redis error";
	case FL_EDB: return "database error";
	case FL_EJS: return "script error";
	case FL_EDENIED: return "denied by policy";
	case FL_EUNSUPPORTED: return "not supported on this host";
	case FL_EIO: return "i/o error";
	case FL_ELIMIT: return "limit exceeded";
	}
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

_Noreturn void fl_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"assertion failed: %s\",\"file\":\"%s\",\"line\":%d}\n",
		expr, file, line);
	abort();
}
