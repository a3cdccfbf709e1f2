/* One Redis connection: AP_REDIS_URL parsing, connect with AUTH/SELECT/client name, commands
 * with drop-and-reconnect on I/O errors, and the scripts (a function library called with FCALL,
 * or SCRIPT LOAD and EVALSHA; loaded again when Redis has lost them). Every other file of the
 * queue module talks to Redis through this one. */
#include "queue/bq_int.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/embed.h"
#include "core/err.h"
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

extern const struct fl_embed bq_lua_files[];

static const char *const script_names[BQ_LUA_COUNT_] = {
	[BQ_LUA_ADD] = "add",
	[BQ_LUA_FETCH] = "fetch",
	[BQ_LUA_FINISH] = "finish",
	[BQ_LUA_RETRY] = "retry",
	[BQ_LUA_RELEASE] = "release",
	[BQ_LUA_EXTEND_LOCKS] = "extend_locks",
	[BQ_LUA_STALLED] = "stalled",
	[BQ_LUA_PAUSE] = "pause",
	[BQ_LUA_COUNTS] = "counts",
	[BQ_LUA_RETRY_FAILED] = "retry_failed",
	[BQ_LUA_CLEAN] = "clean",
	[BQ_LUA_PROGRESS] = "progress",
	[BQ_LUA_LOG] = "log",
};

const char *bq_script_name(enum bq_script s)
{
	return s >= 0 && s < BQ_LUA_COUNT_ ? script_names[s] : NULL;
}

/* Built once, never freed: for EVALSHA, each script's full text (lib.lua, begin(KEYS), the
 * script); for FCALL, one library holding lib.lua and every script as a function. The library's
 * name carries a hash of its text, so that processes running different versions of the scripts
 * against one server each find their own. */
static char *script_text[BQ_LUA_COUNT_];
static size_t script_len[BQ_LUA_COUNT_];
static char *library_text;
static size_t library_len;
static char function_name[BQ_LUA_COUNT_][64];
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

#define FNV_BASIS 14695981039346656037ULL

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

static void build_scripts(void)
{
	const struct fl_embed *lib = fl_embed_find(bq_lua_files, "lib");
	const struct fl_embed *src[BQ_LUA_COUNT_];
	uint64_t hash = lib ? fnv1a(FNV_BASIS, lib->data, lib->len) : 0;
	for (int i = 0; i < BQ_LUA_COUNT_; i++) {
		src[i] = fl_embed_find(bq_lua_files, script_names[i]);
		if (!lib || !src[i]) {
			fl_error("queue", "script '%s' is not embedded", script_names[i]);
			abort();
		}
		hash = fnv1a(hash, src[i]->data, src[i]->len);
	}
	char lib_name[32];
	snprintf(lib_name, sizeof(lib_name), "flowd_%016" PRIx64, hash);
	struct fl_buf funcs = FL_BUF_INIT;
	fl_buf_addf(&funcs, "#!lua name=%s\n", lib_name);
	fl_buf_add(&funcs, lib->data, lib->len);
	for (int i = 0; i < BQ_LUA_COUNT_; i++) {
		struct fl_buf b = FL_BUF_INIT;
		fl_buf_add(&b, lib->data, lib->len);
		fl_buf_adds(&b, "\nbegin(KEYS)\n");
		fl_buf_add(&b, src[i]->data, src[i]->len);
		script_text[i] = fl_buf_detach(&b, &script_len[i]);
		snprintf(function_name[i], sizeof(function_name[i]), "%s_%s", lib_name,
			 script_names[i]);
		fl_buf_addf(&funcs,
			    "\nredis.register_function('%s', function(KEYS, ARGV)\nbegin(KEYS)\n",
			    function_name[i]);
		fl_buf_add(&funcs, src[i]->data, src[i]->len);
		fl_buf_adds(&funcs, "\nend)\n");
	}
	library_text = fl_buf_detach(&funcs, &library_len);
}

/* ---- URL ---------------------------------------------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static char *pct_decode(const char *s, size_t n)
{
	char *out = fl_malloc(n + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			*o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = 0;
	return out;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
	if (n == 0 || n > 9)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

void bq_redis_addr_release(struct bq_redis_addr *a)
{
	fl_free(a->host);
	fl_free(a->path);
	fl_free(a->username);
	fl_free(a->password);
	memset(a, 0, sizeof(*a));
}

int bq_redis_addr_parse(const char *url, struct bq_redis_addr *a, struct fl_err *err)
{
	memset(a, 0, sizeof(*a));
	a->port = 6379;
	if (!url || !*url)
		return fl_err_set(err, FL_ECONFIG, "empty Redis URL");
	if (!strncmp(url, "unix://", 7)) {
		const char *p = url + 7;
		const char *q = strchr(p, '?');
		size_t n = q ? (size_t)(q - p) : strlen(p);
		if (n == 0 || p[0] != '/')
			return fl_err_set(err, FL_ECONFIG,
					  "bad Redis URL '%s': expected unix:///path/to/socket", url);
		a->path = fl_strndup(p, n);
		if (q) {
			if (strncmp(q, "?db=", 4) ||
			    parse_int(q + 4, strlen(q + 4), 0, 1000000, &a->db)) {
				bq_redis_addr_release(a);
				return fl_err_set(err, FL_ECONFIG,
						  "bad Redis URL '%s': the only query is ?db=N", url);
			}
		}
		return 0;
	}
	if (strncmp(url, "redis://", 8))
		return fl_err_set(err, FL_ECONFIG,
				  "bad Redis URL: expected redis://[:password@]host:port[/db] or "
				  "unix:///path");
	const char *p = url + 8;
	const char *end = p + strcspn(p, "/");
	const char *at = NULL;
	for (const char *s = p; s < end; s++)
		if (*s == '@')
			at = s;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon) {
			if (colon > p)
				a->username = pct_decode(p, (size_t)(colon - p));
			a->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
		} else if (at > p) {
			/* redis://secret@host: a bare userinfo is the password, as in ioredis */
			a->password = pct_decode(p, (size_t)(at - p));
		}
		p = at + 1;
		/* "redis://:@host": no password, not an empty one (ioredis sends no AUTH either) */
		if (a->password && !a->password[0]) {
			fl_free(a->password);
			a->password = NULL;
		}
	}
	const char *hend = end;
	const char *colon = NULL;
	if (*p == '[') { /* [::1]:6379 */
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (!rb)
			goto bad;
		a->host = fl_strndup(p + 1, (size_t)(rb - p - 1));
		if (rb + 1 < end) {
			if (rb[1] != ':')
				goto bad;
			colon = rb + 1;
		}
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		if (colon)
			hend = colon;
		a->host = fl_strndup(p, (size_t)(hend - p));
	}
	if (!a->host[0]) {
		fl_free(a->host);
		a->host = fl_strdup("127.0.0.1");
	}
	if (colon && parse_int(colon + 1, (size_t)(end - colon - 1), 1, 65535, &a->port))
		goto bad;
	if (*end == '/' && end[1] && parse_int(end + 1, strlen(end + 1), 0, 1000000, &a->db))
		goto bad;
	return 0;
bad:
	bq_redis_addr_release(a);
	{
		/* name the URL without its password */
		const char *atp = strrchr(url, '@');
		return fl_err_set(err, FL_ECONFIG,
				  "bad Redis URL 'redis://%s': expected redis://[:password@]host:port[/db]",
				  atp ? atp + 1 : url + 8);
	}
}

/* ---- connection ---------------------------------------------------------------------------- */

/* A write to a Redis that went away raises SIGPIPE, whose default action would end a daemon
 * over one dropped connection; hiredis then sees EPIPE instead. A handler set by the program
 * is left alone. */
static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void ignore_sigpipe(void)
{
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

int bq_conn_init(struct bq_conn *c, const char *url, const char *client_name, int timeout_ms,
		 struct fl_err *err)
{
	memset(c, 0, sizeof(*c));
	pthread_once(&scripts_once, build_scripts);
	pthread_once(&sigpipe_once, ignore_sigpipe);
	int rc = bq_redis_addr_parse(url, &c->addr, err);
	if (rc)
		return rc;
	c->client_name = client_name ? fl_strdup(client_name) : NULL;
	c->timeout_ms = timeout_ms;
	rc = bq_conn_ensure(c, err);
	if (rc)
		bq_conn_release(c);
	return rc;
}

void bq_conn_release(struct bq_conn *c)
{
	bq_conn_drop(c);
	bq_redis_addr_release(&c->addr);
	fl_free(c->client_name);
	c->client_name = NULL;
}

void bq_conn_drop(struct bq_conn *c)
{
	if (c->ctx)
		redisFree(c->ctx);
	c->ctx = NULL;
	c->mode = BQ_CALL_UNKNOWN;
	memset(c->loaded, 0, sizeof(c->loaded));
}

static const char *where(const struct bq_conn *c, char *buf, size_t size)
{
	if (c->addr.path)
		snprintf(buf, size, "unix:%s", c->addr.path);
	else
		snprintf(buf, size, "%s:%d", c->addr.host, c->addr.port);
	return buf;
}

static int setup_cmd(struct bq_conn *c, struct fl_err *err, const char *what, int argc,
		     const char **argv)
{
	redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
	char w[300];
	if (!r) {
		fl_err_set(err, FL_EREDIS, "cannot reach Redis at '%s': %s", where(c, w, sizeof(w)),
			   c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
		bq_conn_drop(c);
		return FL_EREDIS;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		fl_err_set(err, FL_EREDIS, "Redis at '%s' refused %s: %s", where(c, w, sizeof(w)),
			   what, r->str);
		freeReplyObject(r);
		bq_conn_drop(c);
		return FL_EREDIS;
	}
	freeReplyObject(r);
	return 0;
}

/* Whether the server closed the connection while it sat idle (a Redis restart): nothing is
 * owed to us between commands, so anything readable is the EOF or the reset. Sending over such
 * a connection would fail a command that a fresh connection would run. */
static bool conn_closed_by_server(const struct bq_conn *c)
{
	struct pollfd p = { .fd = c->ctx->fd, .events = POLLIN };
	return c->ctx->fd >= 0 && poll(&p, 1, 0) > 0;
}

int bq_conn_ensure(struct bq_conn *c, struct fl_err *err)
{
	if (c->ctx && conn_closed_by_server(c))
		bq_conn_drop(c);
	if (c->ctx)
		return 0;
	/* a server that cannot be reached now may be reachable later */
	c->transient = true;
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	if (c->addr.path)
		c->ctx = redisConnectUnixWithTimeout(c->addr.path, tv);
	else
		c->ctx = redisConnectWithTimeout(c->addr.host, c->addr.port, tv);
	char w[300];
	if (!c->ctx)
		return fl_err_set(err, FL_EREDIS, "cannot reach Redis at '%s': out of memory",
				  where(c, w, sizeof(w)));
	if (c->ctx->err) {
		fl_err_set(err, FL_EREDIS, "cannot reach Redis at '%s': %s", where(c, w, sizeof(w)),
			   c->ctx->errstr);
		bq_conn_drop(c);
		return FL_EREDIS;
	}
	/* Every fd is close-on-exec: engines forked by the worker must not inherit Redis. */
	int fd = c->ctx->fd;
	int fl = fcntl(fd, F_GETFD);
	if (fl >= 0)
		fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	if (c->timeout_ms > 0) {
		struct timeval t = { .tv_sec = c->timeout_ms / 1000,
				     .tv_usec = (c->timeout_ms % 1000) * 1000 };
		redisSetTimeout(c->ctx, t);
	}
	if (c->addr.password) {
		const char *av[3] = { "AUTH", c->addr.username ? c->addr.username : c->addr.password,
				      c->addr.password };
		if (setup_cmd(c, err, "AUTH", c->addr.username ? 3 : 2, av))
			return FL_EREDIS;
	}
	if (c->addr.db) {
		char db[16];
		snprintf(db, sizeof(db), "%d", c->addr.db);
		const char *av[2] = { "SELECT", db };
		if (setup_cmd(c, err, "SELECT", 2, av))
			return FL_EREDIS;
	}
	if (c->client_name) {
		const char *av[3] = { "CLIENT", "SETNAME", c->client_name };
		if (setup_cmd(c, err, "CLIENT SETNAME", 3, av))
			return FL_EREDIS;
	}
	return 0;
}

bool bq_reply_transient(const char *text)
{
	/* A restarted server answers LOADING until its data is read back; BUSY while another
	 * script runs past busy-reply-threshold; READONLY from a replica that was the primary
	 * before a failover; OOM under noeviction until memory is freed. None of these is an
	 * answer about the command itself. */
	static const char *const prefixes[] = { "LOADING",     "BUSY ",    "TRYAGAIN",
						"MASTERDOWN",  "CLUSTERDOWN", "READONLY",
						"OOM",         NULL };
	for (const char *const *p = prefixes; *p; p++)
		if (!strncmp(text, *p, strlen(*p)))
			return true;
	return false;
}

int bq_conn_cmd(struct bq_conn *c, int argc, const char **argv, const size_t *argvlen,
		redisReply **reply, struct fl_err *err)
{
	*reply = NULL;
	c->transient = true;
	int rc = bq_conn_ensure(c, err);
	if (rc)
		return rc;
	redisReply *r = redisCommandArgv(c->ctx, argc, argv, argvlen);
	if (!r) {
		char w[300];
		fl_err_set(err, FL_EREDIS, "lost Redis at '%s': %s", where(c, w, sizeof(w)),
			   c->ctx->errstr[0] ? c->ctx->errstr : "connection closed");
		bq_conn_drop(c);
		return FL_EREDIS;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		fl_err_set(err, FL_EREDIS, "Redis error: %s", r->str);
		c->transient = bq_reply_transient(r->str);
		/* a replica will not become writable: find the primary again */
		if (!strncmp(r->str, "READONLY", 8))
			bq_conn_drop(c);
		*reply = r; /* the caller may want to look at it (NOSCRIPT) */
		return FL_EREDIS;
	}
	c->transient = false;
	*reply = r;
	return 0;
}

static int load_script(struct bq_conn *c, enum bq_script s, struct fl_err *err)
{
	const char *av[3] = { "SCRIPT", "LOAD", script_text[s] };
	size_t al[3] = { 6, 4, script_len[s] };
	redisReply *r;
	int rc = bq_conn_cmd(c, 3, av, al, &r, err);
	if (rc) {
		if (r)
			fl_err_prefix(err, "cannot load script '%s'", script_names[s]);
		freeReplyObject(r);
		return rc;
	}
	if (r->type != REDIS_REPLY_STRING || r->len != 40) {
		freeReplyObject(r);
		return fl_err_set(err, FL_EPROTO, "SCRIPT LOAD of '%s' gave no sha", script_names[s]);
	}
	memcpy(c->sha[s], r->str, 40);
	c->sha[s][40] = 0;
	c->loaded[s] = true;
	freeReplyObject(r);
	return 0;
}

/* Loads the function library, or settles on EVALSHA when this server has no functions (before
 * Redis 7) or forbids them (an ACL). */
static int load_library(struct bq_conn *c, struct fl_err *err)
{
	const char *av[3] = { "FUNCTION", "LOAD", library_text };
	size_t al[3] = { 8, 4, library_len };
	redisReply *r;
	struct fl_err e = { 0 };
	int rc = bq_conn_cmd(c, 3, av, al, &r, &e);
	if (!rc || (r && strstr(r->str, "already exists"))) {
		c->mode = BQ_CALL_FUNCTIONS;
	} else if (r && !c->transient) {
		c->mode = BQ_CALL_SCRIPTS;
		fl_debug("queue", "running scripts with EVALSHA: FUNCTION LOAD: %s", e.msg);
	} else {
		*err = e;
		freeReplyObject(r);
		return rc;
	}
	freeReplyObject(r);
	return 0;
}

int bq_conn_eval(struct bq_conn *c, enum bq_script s, const char *key_prefix, int argc,
		 const char **argv, const size_t *argvlen, redisReply **reply, struct fl_err *err)
{
	*reply = NULL;
	/* FCALL and name or EVALSHA and sha, numkeys and the key prefix come before the script's own
	 * arguments */
	/* STACK_ARGS holds a worker's biggest call, a shared finish of 32 jobs (326 arguments):
	 * the hot calls need no allocation */
	enum { HEAD = 4, STACK_ARGS = 336 };
	const char *stack_av[STACK_ARGS];
	size_t stack_al[STACK_ARGS];
	bool on_stack = argc + HEAD <= STACK_ARGS;
	const char **av = on_stack ? stack_av : fl_malloc(sizeof(*av) * (size_t)(argc + HEAD));
	size_t *al = on_stack ? stack_al : fl_malloc(sizeof(*al) * (size_t)(argc + HEAD));
	int rc = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = bq_conn_ensure(c, err)))
			break;
		if (c->mode == BQ_CALL_UNKNOWN && (rc = load_library(c, err)))
			break;
		bool fcall = c->mode == BQ_CALL_FUNCTIONS;
		if (!fcall && !c->loaded[s] && (rc = load_script(c, s, err)))
			break;
		av[0] = fcall ? "FCALL" : "EVALSHA";
		al[0] = strlen(av[0]);
		av[1] = fcall ? function_name[s] : c->sha[s];
		al[1] = strlen(av[1]);
		av[2] = "1";
		al[2] = 1;
		av[3] = key_prefix;
		al[3] = strlen(key_prefix);
		for (int i = 0; i < argc; i++) {
			av[HEAD + i] = argv[i];
			al[HEAD + i] = argvlen ? argvlen[i] : strlen(argv[i]);
		}
		rc = bq_conn_cmd(c, argc + HEAD, av, al, reply, err);
		if (rc && *reply &&
		    (fcall ? !strcmp((*reply)->str, "ERR Function not found")
			   : !strncmp((*reply)->str, "NOSCRIPT", 8))) {
			/* Redis restarted, or FUNCTION FLUSH / SCRIPT FLUSH: load again, retry once */
			freeReplyObject(*reply);
			*reply = NULL;
			c->mode = BQ_CALL_UNKNOWN;
			c->loaded[s] = false;
			continue;
		}
		if (rc && *reply)
			fl_err_prefix(err, "script '%s'", script_names[s]);
		break;
	}
	if (!on_stack) {
		fl_free(av);
		fl_free(al);
	}
	if (rc && *reply) {
		freeReplyObject(*reply);
		*reply = NULL;
	}
	return rc;
}

/* ---- server checks ------------------------------------------------------------------------- */

static atomic_int server_checked;

static const char *info_field(const char *info, const char *name, char *out, size_t size)
{
	size_t n = strlen(name);
	for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, name, n) && p[n] == ':') {
			size_t len = strcspn(p + n + 1, "\r\n");
			if (len >= size)
				len = size - 1;
			memcpy(out, p + n + 1, len);
			out[len] = 0;
			return out;
		}
	}
	return NULL;
}

void bq_conn_check_server(struct bq_conn *c)
{
	if (atomic_exchange(&server_checked, 1))
		return;
	const char *av[1] = { "INFO" };
	redisReply *r;
	if (bq_conn_cmd(c, 1, av, NULL, &r, NULL)) {
		freeReplyObject(r);
		return;
	}
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
		char version[64], policy[64];
		if (info_field(r->str, "redis_version", version, sizeof(version))) {
			int major = 0, minor = 0;
			sscanf(version, "%d.%d", &major, &minor);
			if (major < 6 || (major == 6 && minor < 2))
				fl_warn("queue",
					"Redis %s is older than 6.2; BullMQ's layout needs 6.2 or newer",
					version);
		}
		if (info_field(r->str, "maxmemory_policy", policy, sizeof(policy)) &&
		    strcmp(policy, "noeviction"))
			fl_warn("queue",
				"Redis maxmemory-policy is '%s', not 'noeviction': Redis may evict "
				"queue keys and lose jobs",
				policy);
	}
	freeReplyObject(r);
}
