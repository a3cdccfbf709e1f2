/* Unit tests for src/queue: the parts that need no Redis (AP_REDIS_URL parsing, job options in
 * BullMQ's JSON forms, backoff, retention, the embedded Lua table, state names, error classes),
 * then the transitions against a redis-server this test starts on a unix socket in a temp dir
 * (bq_server_start, which dies with the test): add/fetch/finish round trips, lock tokens, calls
 * repeated after a lost reply, the stalled checker's mutex, a worker with many slots, and
 * reconnection after the server restarts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "json_assert.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/embed.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"
#include "queue/bq.h"
#include "queue/bq_int.h"
#include "queue/server.h"

#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const struct fl_embed bq_lua_files[];

/* ---- AP_REDIS_URL -------------------------------------------------------------------------- */

struct url_case {
	const char *url;
	const char *host, *path, *username, *password;
	int port, db;
};

static void test_url_forms(void **state)
{
	(void)state;
	static const struct url_case cases[] = {
		{ "redis://localhost", "localhost", NULL, NULL, NULL, 6379, 0 },
		{ "redis://127.0.0.1:6380/2", "127.0.0.1", NULL, NULL, NULL, 6380, 2 },
		{ "redis://redis.internal:6379/", "redis.internal", NULL, NULL, NULL, 6379, 0 },
		{ "redis://:secret@host:1/3", "host", NULL, NULL, "secret", 1, 3 },
		{ "redis://user:p%40ss%3a%2F@host", "host", NULL, "user", "p@ss:/", 6379, 0 },
		/* a bare userinfo is the password, as ioredis reads it */
		{ "redis://secret@host", "host", NULL, NULL, "secret", 6379, 0 },
		/* the last '@' ends the userinfo */
		{ "redis://:p@w@host:7", "host", NULL, NULL, "p@w", 7, 0 },
		/* an empty password is none: no AUTH is sent */
		{ "redis://:@host", "host", NULL, NULL, NULL, 6379, 0 },
		{ "redis://[::1]:7000/1", "::1", NULL, NULL, NULL, 7000, 1 },
		{ "redis://[::1]", "::1", NULL, NULL, NULL, 6379, 0 },
		{ "redis://", "127.0.0.1", NULL, NULL, NULL, 6379, 0 },
		{ "redis://:pw@:6390", "127.0.0.1", NULL, NULL, "pw", 6390, 0 },
		{ "redis://h:65535/1000000", "h", NULL, NULL, NULL, 65535, 1000000 },
		{ "unix:///tmp/r.sock", NULL, "/tmp/r.sock", NULL, NULL, 6379, 0 },
		{ "unix:///var/run/redis/redis.sock?db=4", NULL, "/var/run/redis/redis.sock", NULL,
		  NULL, 6379, 4 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct url_case *c = &cases[i];
		struct bq_redis_addr a;
		struct fl_err err = { 0 };
		if (bq_redis_addr_parse(c->url, &a, &err))
			fail_msg("'%s': %s", c->url, err.msg);
#define SAME(field)                                                                          \
	do {                                                                                     \
		if (c->field)                                                                    \
			assert_non_null(a.field), assert_string_equal(a.field, c->field);        \
		else if (a.field)                                                                \
			fail_msg("'%s': " #field " '%s', want none", c->url, a.field);           \
	} while (0)
		SAME(host);
		SAME(path);
		SAME(username);
		SAME(password);
#undef SAME
		assert_int_equal(a.port, c->port);
		assert_int_equal(a.db, c->db);
		bq_redis_addr_release(&a);
		assert_null(a.host);
	}
}

static void test_url_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"http://host:6379",
		"rediss://host:6379",
		"host:6379",
		"unix://",
		"unix://relative/redis.sock",
		"unix:///p?db=x",
		"unix:///p?db=",
		"unix:///p?timeout=1",
		"redis://host:0",
		"redis://host:65536",
		"redis://host:abc",
		"redis://host:",
		"redis://host/x",
		"redis://host/0?x=1",
		"redis://host/-1",
		"redis://host/1000001",
		"redis://[::1",
		"redis://[::1]x",
		"redis://[::1]:",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bq_redis_addr a;
		struct fl_err err = { 0 };
		int rc = bq_redis_addr_parse(bad[i], &a, &err);
		if (rc != FL_ECONFIG)
			fail_msg("'%s' parsed (rc %d)", bad[i], rc);
		assert_true(err.msg[0] != 0);
		/* nothing is left allocated on failure */
		assert_null(a.host);
		assert_null(a.path);
		assert_null(a.password);
	}
	struct bq_redis_addr a;
	struct fl_err err = { 0 };
	assert_int_equal(bq_redis_addr_parse(NULL, &a, &err), FL_ECONFIG);

	/* a message names the URL, never its password */
	assert_int_equal(bq_redis_addr_parse("redis://admin:hunter2@cache:99999", &a, &err),
			 FL_ECONFIG);
	assert_null(strstr(err.msg, "hunter2"));
	assert_non_null(strstr(err.msg, "cache:99999"));
}

/* ---- job options --------------------------------------------------------------------------- */

static void test_job_id_rules(void **state)
{
	(void)state;
	/* BullMQ refuses an id equal to String(parseInt(id, 10)), and ':' (it builds keys) */
	static const char *const good[] = { "abc", "run_1", "007", "-0", "-05", "1e3", " 1",
					    "1.5",  "0x10",  "V1StGXR8_Z5jdHi6B-myT", "é" };
	static const char *const bad[] = { "", "0", "1", "42", "-5", "1234567890", "a:b", ":",
					   "run:1" };
	struct fl_err err = { 0 };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (bq_check_job_id(good[i], &err))
			fail_msg("'%s' refused: %s", good[i], err.msg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = 0;
		if (bq_check_job_id(bad[i], &err) != FL_EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_true(err.msg[0] != 0);
	}
}

static json_t *opts_json(const struct bq_job_opts *o)
{
	struct fl_buf b = FL_BUF_INIT;
	bq_opts_json(&b, o);
	json_error_t je;
	json_t *v = json_loads(b.data, 0, &je);
	if (!v)
		fail_msg("opts '%s' is not JSON: %s", b.data, je.text);
	fl_buf_release(&b);
	return v;
}

static struct bq_keep keep(enum bq_keep_kind kind, int64_t count, int64_t age_s)
{
	struct bq_keep k = { kind, count, age_s };
	return k;
}

static void test_opts_normalised(void **state)
{
	(void)state;
	/* attempts is always present, as BullMQ writes it; nothing else unless set */
	struct bq_job_opts o = { 0 };
	json_t *v = opts_json(&o);
	assert_json_text(v, "{\"attempts\":0}");
	json_decref(v);

	o.job_id = "run \"A\"\\1";
	o.delay_ms = 1500;
	o.priority = 7;
	o.attempts = 3;
	o.backoff_type = BQ_BACKOFF_EXPONENTIAL;
	o.backoff_delay_ms = 250;
	o.remove_on_complete = keep(BQ_KEEP_NONE, -1, -1);
	o.remove_on_fail = keep(BQ_KEEP_LIMITS, 10, 3600);
	o.keep_logs = 20;
	v = opts_json(&o);
	assert_json_text(
	    v, "{\"attempts\":3,\"delay\":1500,\"priority\":7,\"jobId\":\"run \\\"A\\\"\\\\1\","
	       "\"backoff\":{\"type\":\"exponential\",\"delay\":250},"
	       "\"removeOnComplete\":true,\"removeOnFail\":{\"count\":10,\"age\":3600},"
	       "\"kl\":20}");
	json_decref(v);

	struct bq_job_opts l = { 0 };
	l.lifo = true;
	l.backoff_type = BQ_BACKOFF_FIXED;
	l.backoff_delay_ms = 100;
	l.remove_on_complete = keep(BQ_KEEP_ALL, -1, -1);
	l.remove_on_fail = keep(BQ_KEEP_COUNT, 5, -1);
	v = opts_json(&l);
	assert_json_text(
	    v, "{\"attempts\":0,\"lifo\":true,\"backoff\":{\"type\":\"fixed\",\"delay\":100},"
	       "\"removeOnComplete\":false,\"removeOnFail\":5}");
	json_decref(v);
}

static void test_keep_forms(void **state)
{
	(void)state;
	struct {
		const char *json; /* NULL: option absent */
		enum bq_keep_kind kind;
		int64_t count, age;
		int64_t resolved_count, resolved_age; /* with no worker setting */
	} cases[] = {
		{ NULL, BQ_KEEP_DEFAULT, -1, -1, -1, -1 },
		{ "null", BQ_KEEP_DEFAULT, -1, -1, -1, -1 },
		{ "false", BQ_KEEP_ALL, -1, -1, -1, -1 },
		{ "true", BQ_KEEP_NONE, -1, -1, 0, -1 },
		{ "5", BQ_KEEP_COUNT, 5, -1, 5, -1 },
		{ "0", BQ_KEEP_COUNT, 0, -1, 0, -1 },
		{ "-3", BQ_KEEP_COUNT, -3, -1, -1, -1 },
		{ "{\"count\":3}", BQ_KEEP_LIMITS, 3, -1, 3, -1 },
		{ "{\"age\":60}", BQ_KEEP_LIMITS, -1, 60, -1, 60 },
		{ "{\"count\":2,\"age\":10}", BQ_KEEP_LIMITS, 2, 10, 2, 10 },
		{ "{}", BQ_KEEP_LIMITS, -1, -1, -1, -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *v = cases[i].json ? json_loads(cases[i].json, JSON_DECODE_ANY, NULL) : NULL;
		struct bq_keep k;
		bq_keep_from_json(v, &k);
		assert_int_equal(k.kind, cases[i].kind);
		assert_int_equal(k.count, cases[i].count);
		assert_int_equal(k.age_s, cases[i].age);
		int64_t count, age;
		bq_keep_resolve(&k, NULL, &count, &age);
		assert_int_equal(count, cases[i].resolved_count);
		assert_int_equal(age, cases[i].resolved_age);

		/* what we write reads back as the same option */
		if (k.kind != BQ_KEEP_DEFAULT && (k.kind != BQ_KEEP_COUNT || k.count >= 0)) {
			struct bq_job_opts o = { 0 };
			o.remove_on_complete = k;
			json_t *written = opts_json(&o);
			struct bq_keep back;
			bq_keep_from_json(json_object_get(written, "removeOnComplete"), &back);
			assert_int_equal(back.kind, k.kind);
			assert_int_equal(back.count, k.count);
			assert_int_equal(back.age_s, k.age_s);
			json_decref(written);
		}
		json_decref(v);
	}

	/* BullMQ's getKeepJobs: the job's own option wins; absent, the worker's applies */
	struct bq_keep job_default = keep(BQ_KEEP_DEFAULT, -1, -1), job_all = keep(BQ_KEEP_ALL, -1, -1);
	struct bq_keep worker_none = keep(BQ_KEEP_NONE, -1, -1);
	int64_t count, age;
	bq_keep_resolve(&job_default, &worker_none, &count, &age);
	assert_int_equal(count, 0);
	bq_keep_resolve(&job_all, &worker_none, &count, &age);
	assert_int_equal(count, -1);
	assert_int_equal(age, -1);
	bq_keep_resolve(NULL, NULL, &count, &age);
	assert_int_equal(count, -1);
}

static void test_backoff(void **state)
{
	(void)state;
	struct {
		const char *json;
		enum bq_backoff_type type;
		int64_t delay;
	} forms[] = {
		{ NULL, BQ_BACKOFF_NONE, 0 },
		{ "null", BQ_BACKOFF_NONE, 0 },
		{ "500", BQ_BACKOFF_FIXED, 500 },
		{ "{\"type\":\"fixed\",\"delay\":300}", BQ_BACKOFF_FIXED, 300 },
		{ "{\"type\":\"exponential\",\"delay\":100}", BQ_BACKOFF_EXPONENTIAL, 100 },
		{ "{\"type\":\"exponential\"}", BQ_BACKOFF_EXPONENTIAL, 0 },
		{ "{\"type\":\"custom\",\"delay\":7}", BQ_BACKOFF_FIXED, 7 },
		{ "-5", BQ_BACKOFF_FIXED, 0 },
		{ "\"soon\"", BQ_BACKOFF_NONE, 0 },
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		json_t *v = forms[i].json ? json_loads(forms[i].json, JSON_DECODE_ANY, NULL) : NULL;
		enum bq_backoff_type type;
		int64_t delay;
		bq_backoff_from_json(v, &type, &delay);
		assert_int_equal(type, forms[i].type);
		assert_int_equal(delay, forms[i].delay);
		json_decref(v);
	}
	/* fixed waits the same each time; exponential doubles from the first retry on */
	for (int retry = 1; retry <= 4; retry++)
		assert_int_equal(bq_backoff_delay(BQ_BACKOFF_FIXED, 300, retry), 300);
	assert_int_equal(bq_backoff_delay(BQ_BACKOFF_EXPONENTIAL, 100, 1), 100);
	assert_int_equal(bq_backoff_delay(BQ_BACKOFF_EXPONENTIAL, 100, 2), 200);
	assert_int_equal(bq_backoff_delay(BQ_BACKOFF_EXPONENTIAL, 100, 3), 400);
	assert_int_equal(bq_backoff_delay(BQ_BACKOFF_NONE, 100, 3), 0);
	/* huge retry counts stay a positive int64 */
	int64_t far = bq_backoff_delay(BQ_BACKOFF_EXPONENTIAL, 60000, 500);
	assert_true(far > 0);

	/* the written form reads back the same */
	struct bq_job_opts o = { 0 };
	o.backoff_type = BQ_BACKOFF_EXPONENTIAL;
	o.backoff_delay_ms = 125;
	json_t *written = opts_json(&o);
	enum bq_backoff_type type;
	int64_t delay;
	bq_backoff_from_json(json_object_get(written, "backoff"), &type, &delay);
	assert_int_equal(type, BQ_BACKOFF_EXPONENTIAL);
	assert_int_equal(delay, 125);
	json_decref(written);
}

/* ---- names and tables ---------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct fl_buf b = FL_BUF_INIT;
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fl_buf_add(&b, chunk, n);
	fclose(f);
	return fl_buf_detach(&b, len);
}

static void test_lua_table(void **state)
{
	(void)state;
	/* every script the code names is embedded, and no two share a name */
	assert_non_null(fl_embed_find(bq_lua_files, "lib"));
	for (int i = 0; i < BQ_LUA_COUNT_; i++) {
		const char *name = bq_script_name((enum bq_script)i);
		assert_non_null(name);
		const struct fl_embed *e = fl_embed_find(bq_lua_files, name);
		if (!e || e->len == 0)
			fail_msg("script '%s' is not embedded", name);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(name, bq_script_name((enum bq_script)j));
	}
	assert_null(bq_script_name(BQ_LUA_COUNT_));
	/* every embedded file is lib or a script the code can run */
	int embedded = 0;
	for (const struct fl_embed *e = bq_lua_files; e->name; e++, embedded++) {
		bool named = !strcmp(e->name, "lib");
		for (int i = 0; i < BQ_LUA_COUNT_; i++)
			named |= !strcmp(e->name, bq_script_name((enum bq_script)i));
		if (!named)
			fail_msg("embedded '%s' is no script", e->name);
	}
	assert_int_equal(embedded, BQ_LUA_COUNT_ + 1);

	/* every file in src/queue/lua is embedded, byte for byte (meson.build lists them) */
	const char *src = getenv("FLOWD_SRC");
	if (!src) {
		fprintf(stderr, "# FLOWD_SRC unset: not comparing with src/queue/lua\n");
		return;
	}
	char *dir = fl_asprintf("%s/src/queue/lua", src);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int files = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 4, ".lua"))
			continue;
		files++;
		char *name = fl_strndup(de->d_name, n - 4);
		char *path = fl_asprintf("%s/%s", dir, de->d_name);
		size_t len;
		char *text = read_file(path, &len);
		assert_non_null(text);
		const struct fl_embed *e = fl_embed_find(bq_lua_files, name);
		if (!e)
			fail_msg("'%s' is not embedded: add it to src/queue/meson.build", path);
		assert_int_equal(e->len, len);
		assert_memory_equal(e->data, text, len);
		fl_free(text);
		fl_free(path);
		fl_free(name);
	}
	closedir(d);
	assert_int_equal(files, embedded);
	fl_free(dir);
}

static void test_states_and_names(void **state)
{
	(void)state;
	static const char *const states[] = { "waiting",   "active", "delayed", "prioritized",
					      "completed", "failed", "paused" };
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		assert_true(bq_state_valid(states[i]));
	static const char *const not_states[] = { "", "wait", "Completed", "waiting-children",
						  "stalled", "done" };
	for (size_t i = 0; i < sizeof(not_states) / sizeof(not_states[0]); i++)
		assert_false(bq_state_valid(not_states[i]));

	char *s = bq_key_prefix(NULL, "workerJobs");
	assert_string_equal(s, "bull:workerJobs:");
	fl_free(s);
	s = bq_key_prefix("{bull}", "q");
	assert_string_equal(s, "{bull}:q:");
	fl_free(s);
	/* getWorkers() recognises "<prefix>:<base64(queue)>", padding included */
	s = bq_client_name(NULL, "workerJobs");
	assert_string_equal(s, "bull:d29ya2VySm9icw==");
	fl_free(s);
	s = bq_client_name("p", "abc");
	assert_string_equal(s, "p:YWJj");
	fl_free(s);
	s = bq_client_name("p", "ab");
	assert_string_equal(s, "p:YWI=");
	fl_free(s);
	s = bq_embedded_redis_url("/srv/flowd");
	assert_string_equal(s, "unix:///srv/flowd/redis/redis.sock");
	fl_free(s);
}

static void test_transient_replies(void **state)
{
	(void)state;
	static const char *const transient[] = {
		"LOADING Redis is loading the dataset in memory",
		"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
		"TRYAGAIN Multiple keys request during rehashing of slot",
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
		"CLUSTERDOWN The cluster is down",
		"READONLY You can't write against a read only replica.",
		"OOM command not allowed when used memory > 'maxmemory'.",
	};
	static const char *const permanent[] = {
		"ERR unknown command 'EVALSHA'",
		"NOSCRIPT No matching script. Please use EVAL.",
		"WRONGTYPE Operation against a key holding the wrong kind of value",
		"BUSYKEY Target key name already exists.",
		"ERR Error running script (call to f_x): @user_script:1: oops",
		"NOPERM this user has no permissions",
		"",
	};
	for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
		assert_true(bq_reply_transient(transient[i]));
	for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
		assert_false(bq_reply_transient(permanent[i]));
}

/* ---- against a real redis-server ------------------------------------------------------------ */

static char base_dir[] = "/tmp/flowd-bq-XXXXXX";
static char *server_dir;
static struct bq_server server;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static int redis_setup(void **state)
{
	(void)state;
	if (!mkdtemp(base_dir)) {
		perror("mkdtemp");
		return -1;
	}
	server_dir = fl_asprintf("%s/redis", base_dir);
	struct fl_err err = { 0 };
	if (bq_server_start(&server, server_dir, &err)) {
		fprintf(stderr, "cannot start redis-server: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int redis_teardown(void **state)
{
	(void)state;
	bq_server_stop(&server);
	nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	fl_free(server_dir);
	return 0;
}

static const char *url(void)
{
	return server.url;
}

/* A raw connection for driving the scripts one call at a time, as a worker would. */
struct raw {
	struct bq_conn conn;
	char *kp;
};

static void raw_open(struct raw *r, const char *queue)
{
	struct fl_err err = { 0 };
	if (bq_conn_init(&r->conn, url(), NULL, 10000, &err))
		fail_msg("connect: %s", err.msg);
	r->kp = bq_key_prefix(NULL, queue);
}

static void raw_close(struct raw *r)
{
	bq_conn_release(&r->conn);
	fl_free(r->kp);
}

static redisReply *eval(struct raw *r, enum bq_script s, int argc, const char **argv)
{
	redisReply *reply;
	struct fl_err err = { 0 };
	if (bq_conn_eval(&r->conn, s, r->kp, argc, argv, NULL, &reply, &err))
		fail_msg("script '%s': %s", bq_script_name(s), err.msg);
	return reply;
}

static redisReply *cmd(struct raw *r, const char *fmt, const char *key_suffix, const char *arg)
{
	char *key = fl_asprintf("%s%s", r->kp, key_suffix);
	redisReply *reply = redisCommand(r->conn.ctx, fmt, key, arg);
	fl_free(key);
	assert_non_null(reply);
	return reply;
}

static long long cmd_int(struct raw *r, const char *fmt, const char *key_suffix, const char *arg)
{
	redisReply *reply = cmd(r, fmt, key_suffix, arg);
	assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
	long long v = reply->integer;
	freeReplyObject(reply);
	return v;
}

/* The string value of a command, or NULL for nil; heap. */
static char *cmd_str(struct raw *r, const char *fmt, const char *key_suffix, const char *arg)
{
	redisReply *reply = cmd(r, fmt, key_suffix, arg);
	char *v = reply->type == REDIS_REPLY_STRING ? fl_strndup(reply->str, reply->len) : NULL;
	assert_true(reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_NIL);
	freeReplyObject(reply);
	return v;
}

static char *hget(struct raw *r, const char *id, const char *field)
{
	return cmd_str(r, "HGET %s %s", id, field);
}

static void assert_hget(struct raw *r, const char *id, const char *field, const char *want)
{
	char *v = hget(r, id, field);
	if (!want && v)
		fail_msg("job '%s' %s is '%s', want none", id, field, v);
	if (want && (!v || strcmp(v, want)))
		fail_msg("job '%s' %s is '%s', want '%s'", id, field, v ? v : "(nil)", want);
	fl_free(v);
}

static char *add(struct bq_queue *q, const char *data, const struct bq_job_opts *o)
{
	char *id;
	struct fl_err err = { 0 };
	if (bq_job_add(q, "EXECUTE_FLOW", data, o, &id, NULL, &err))
		fail_msg("add: %s", err.msg);
	return id;
}

/* A job as fetch.lua replies with it: its id and ten fields (lib.lua, job_reply). */
#define JOB_REPLY_LEN 11
#define FINISH_HEAD 6
#define FINISH_ARGS 10

/* fetch.lua with a token; returns the job id taken (heap) or NULL. */
static char *fetch(struct raw *r, const char *token, bool repeat)
{
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	const char *av[5] = { now, token, "30000", "test-worker", repeat ? "1" : "0" };
	redisReply *reply = eval(r, BQ_LUA_FETCH, 5, av);
	char *id = NULL;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == JOB_REPLY_LEN &&
	    reply->element[0]->type == REDIS_REPLY_STRING)
		id = fl_strdup(reply->element[0]->str);
	freeReplyObject(reply);
	return id;
}

/* finish.lua's arguments for a call of n jobs, into av[FINISH_HEAD]; count holds n. */
static void finish_head(const char **av, char count[8], int n, const char *now, bool take_next,
			bool repeat)
{
	snprintf(count, 8, "%d", n);
	const char *a[FINISH_HEAD] = { count, now, "30000", "test-worker", take_next ? "1" : "0",
				       repeat ? "1" : "0" };
	memcpy(av, a, sizeof(a));
}

/* One job's arguments to finish.lua, completed with {"ok":1}, into av[FINISH_ARGS]. */
static void finish_args(const char **av, const char *id, const char *token,
			const char *keep_count, const char *next_token)
{
	const char *a[FINISH_ARGS] = { id,  token,	"completed", "{\"ok\":1}", "[]", keep_count,
				       "-1", "0", next_token ? next_token : "", "1" };
	memcpy(av, a, sizeof(a));
}

/* One job's part of finish.lua's reply: its code, and in *next the id fetched (heap) if any. */
static long long finish_result(const redisReply *item, char **next)
{
	assert_int_equal(item->type, REDIS_REPLY_ARRAY);
	assert_true(item->elements >= 1);
	if (next) {
		*next = NULL;
		if (item->elements == 2 && item->element[1]->type == REDIS_REPLY_ARRAY &&
		    item->element[1]->elements == JOB_REPLY_LEN &&
		    item->element[1]->element[0]->type == REDIS_REPLY_STRING)
			*next = fl_strdup(item->element[1]->element[0]->str);
	}
	return item->element[0]->integer;
}

/* finish.lua for one job; returns its code, and in *next the id fetched with next_token (heap)
 * if any. */
static long long finish(struct raw *r, const char *id, const char *token, const char *now,
			const char *keep_count, const char *next_token, bool repeat, char **next)
{
	const char *av[FINISH_HEAD + FINISH_ARGS];
	char count[8];
	finish_head(av, count, 1, now, next_token != NULL, repeat);
	finish_args(av + FINISH_HEAD, id, token, keep_count, next_token);
	redisReply *reply = eval(r, BQ_LUA_FINISH, FINISH_HEAD + FINISH_ARGS, av);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 1);
	long long code = finish_result(reply->element[0], next);
	freeReplyObject(reply);
	return code;
}

static struct bq_queue *queue(const char *name)
{
	struct bq_queue *q;
	struct fl_err err = { 0 };
	if (bq_queue_new(url(), NULL, name, &q, &err))
		fail_msg("queue: %s", err.msg);
	return q;
}

static void counts(struct bq_queue *q, struct bq_counts *c)
{
	struct fl_err err = { 0 };
	if (bq_queue_counts(q, c, &err))
		fail_msg("counts: %s", err.msg);
}

/* The scripts run as a function library where Redis has functions, with EVALSHA where an ACL
 * forbids them, and either way survive Redis losing them. */
static void test_script_modes(void **state)
{
	(void)state;
	struct raw r;
	raw_open(&r, "modes");
	const char *av[5] = { "0", "tok:1", "30000", "", "0" };
	redisReply *reply = eval(&r, BQ_LUA_FETCH, 5, av); /* nothing to fetch */
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	freeReplyObject(reply);
	assert_int_equal(r.conn.mode, BQ_CALL_FUNCTIONS);
	reply = redisCommand(r.conn.ctx, "FUNCTION LIST LIBRARYNAME flowd_*");
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 1);
	freeReplyObject(reply);

	freeReplyObject(redisCommand(r.conn.ctx, "FUNCTION FLUSH"));
	reply = eval(&r, BQ_LUA_FETCH, 5, av);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	freeReplyObject(reply);
	assert_int_equal(r.conn.mode, BQ_CALL_FUNCTIONS);

	reply = redisCommand(r.conn.ctx, "ACL SETUSER default -function -fcall");
	assert_int_equal(reply->type, REDIS_REPLY_STATUS);
	freeReplyObject(reply);
	bq_conn_drop(&r.conn);
	reply = eval(&r, BQ_LUA_FETCH, 5, av);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	freeReplyObject(reply);
	assert_int_equal(r.conn.mode, BQ_CALL_SCRIPTS);
	freeReplyObject(redisCommand(r.conn.ctx, "SCRIPT FLUSH"));
	reply = eval(&r, BQ_LUA_FETCH, 5, av);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	freeReplyObject(reply);
	reply = redisCommand(r.conn.ctx, "ACL SETUSER default +@all");
	assert_int_equal(reply->type, REDIS_REPLY_STATUS);
	freeReplyObject(reply);
	raw_close(&r);
}

static void test_add_fetch_finish(void **state)
{
	(void)state;
	struct bq_queue *q = queue("rt");
	struct raw r;
	raw_open(&r, "rt");

	/* bad input is refused before Redis sees it */
	struct fl_err err = { 0 };
	struct bq_job_opts bad = { 0 };
	assert_int_equal(bq_job_add(q, "x", "{not json", NULL, NULL, NULL, &err), FL_EINVAL);
	assert_int_equal(bq_job_add(q, "", "{}", NULL, NULL, NULL, &err), FL_EINVAL);
	bad.job_id = "12";
	assert_int_equal(bq_job_add(q, "x", "{}", &bad, NULL, NULL, &err), FL_EINVAL);
	bad.job_id = NULL;
	bad.priority = 2097152;
	assert_int_equal(bq_job_add(q, "x", "{}", &bad, NULL, NULL, &err), FL_EINVAL);
	bad.priority = 1;
	bad.lifo = true;
	assert_int_equal(bq_job_add(q, "x", "{}", &bad, NULL, NULL, &err), FL_EINVAL);
	bad = (struct bq_job_opts){ .delay_ms = -1 };
	assert_int_equal(bq_job_add(q, "x", "{}", &bad, NULL, NULL, &err), FL_EINVAL);
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.waiting + c.delayed + c.prioritized, 0);

	struct bq_job_opts o = { 0 };
	o.attempts = 2;
	o.timestamp_ms = 1700000000000;
	char *id = add(q, "{\"runId\":\"r1\"}", &o);
	assert_string_equal(id, "1"); /* the first integer id */
	o.job_id = "custom-1";
	char *custom = add(q, NULL, &o);
	assert_string_equal(custom, "custom-1");
	/* a custom id that exists adds nothing */
	char *again;
	bool dup = false;
	assert_int_equal(bq_job_add(q, "EXECUTE_FLOW", "{\"other\":1}", &o, &again, &dup, &err), 0);
	assert_true(dup);
	assert_string_equal(again, "custom-1");
	assert_hget(&r, "custom-1", "data", "{}");
	counts(q, &c);
	assert_int_equal(c.waiting, 2);

	json_t *job;
	assert_int_equal(bq_job_get(q, id, &job, &err), 0);
	assert_string_equal(json_string_value(json_object_get(job, "name")), "EXECUTE_FLOW");
	assert_string_equal(json_string_value(json_object_get(json_object_get(job, "data"), "runId")),
			    "r1");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "opts"), "attempts")),
			 2);
	assert_int_equal(json_integer_value(json_object_get(job, "timestamp")), 1700000000000);
	json_decref(job);
	assert_int_equal(bq_job_get(q, "nope", &job, &err), FL_ENOTFOUND);

	/* fetch: the first job added is the head of wait */
	char *got = fetch(&r, "tok-a:1", false);
	assert_non_null(got);
	assert_string_equal(got, id);
	assert_hget(&r, id, "ats", "1");
	assert_hget(&r, id, "pb", "test-worker");
	char *lock = cmd_str(&r, "GET %s%s", id, ":lock");
	assert_string_equal(lock, "tok-a:1");
	fl_free(lock);
	counts(q, &c);
	assert_int_equal(c.active, 1);
	assert_int_equal(c.waiting, 1);

	/* finish: only the token that fetched it may; -1 for a job that does not exist */
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	assert_int_equal(finish(&r, "nope", "tok-a:1", now, "-1", NULL, false, NULL), -1);
	assert_int_equal(finish(&r, id, "tok-b:1", now, "-1", NULL, false, NULL), -6);
	assert_hget(&r, id, "finishedOn", NULL);
	char *next;
	assert_int_equal(finish(&r, id, "tok-a:1", now, "-1", "tok-a:2", false, &next), 0);
	/* ... and takes the next job in the same call */
	assert_non_null(next);
	assert_string_equal(next, "custom-1");
	assert_hget(&r, id, "returnvalue", "{\"ok\":1}");
	assert_hget(&r, id, "finishedOn", now);
	assert_hget(&r, id, "atm", "1");
	counts(q, &c);
	assert_int_equal(c.completed, 1);
	assert_int_equal(c.active, 1);
	/* a second finish of a finished job is refused: its lock is gone */
	assert_int_equal(finish(&r, id, "tok-a:1", now, "-1", NULL, false, NULL), -2);
	/* removeOnComplete true deletes the job as it finishes */
	assert_int_equal(finish(&r, "custom-1", "tok-a:2", now, "0", NULL, false, NULL), 0);
	assert_int_equal(cmd_int(&r, "EXISTS %s%s", "custom-1", ""), 0);
	counts(q, &c);
	assert_int_equal(c.active + c.waiting, 0);
	assert_int_equal(c.completed, 1);

	fl_free(next);
	fl_free(got);
	fl_free(again);
	fl_free(custom);
	fl_free(id);
	raw_close(&r);
	bq_queue_free(q);
}

static void test_lock_tokens(void **state)
{
	(void)state;
	struct bq_queue *q = queue("locks");
	struct raw r;
	raw_open(&r, "locks");
	struct bq_job_opts o = { .attempts = 3 };
	char *id = add(q, "{}", &o);
	char *got = fetch(&r, "mine:1", false);
	assert_string_equal(got, id);

	/* renewal: a wrong token is reported lost and leaves the lock alone */
	const char *ext[5] = { "30000", id, "theirs:9", id, "mine:1" };
	redisReply *reply = eval(&r, BQ_LUA_EXTEND_LOCKS, 5, ext);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 1);
	assert_string_equal(reply->element[0]->str, id);
	freeReplyObject(reply);
	reply = eval(&r, BQ_LUA_EXTEND_LOCKS, 3, (const char *[]){ "30000", id, "mine:1" });
	assert_int_equal(reply->elements, 0);
	freeReplyObject(reply);

	/* retry, release, progress-free transitions: a wrong token changes nothing */
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	const char *retry_wrong[9] = { id, "theirs:9", now, "0", "boom", "[]", "0", "0", "1" };
	reply = eval(&r, BQ_LUA_RETRY, 9, retry_wrong);
	assert_int_equal(reply->integer, -6);
	freeReplyObject(reply);
	reply = eval(&r, BQ_LUA_RELEASE, 2, (const char *[]){ id, "theirs:9" });
	assert_int_equal(reply->elements, 0);
	freeReplyObject(reply);
	assert_hget(&r, id, "atm", NULL);
	char *lock = cmd_str(&r, "GET %s%s", id, ":lock");
	assert_string_equal(lock, "mine:1");
	fl_free(lock);

	/* the owner retries; a lock that is gone is -2 */
	const char *retry_ok[9] = { id, "mine:1", now, "0", "boom", "[]", "0", "0", "1" };
	reply = eval(&r, BQ_LUA_RETRY, 9, retry_ok);
	assert_int_equal(reply->integer, 0);
	freeReplyObject(reply);
	assert_hget(&r, id, "atm", "1");
	assert_hget(&r, id, "failedReason", "boom");
	reply = eval(&r, BQ_LUA_RETRY, 9, retry_ok);
	assert_int_equal(reply->integer, -2);
	freeReplyObject(reply);
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.waiting, 1);
	assert_int_equal(c.active, 0);

	/* release at shutdown hands the job back to the head of wait, for the owner only */
	fl_free(got);
	got = fetch(&r, "mine:2", false);
	assert_string_equal(got, id);
	reply = eval(&r, BQ_LUA_RELEASE, 2, (const char *[]){ id, "mine:2" });
	assert_int_equal(reply->elements, 1);
	freeReplyObject(reply);
	counts(q, &c);
	assert_int_equal(c.waiting, 1);
	assert_int_equal(c.active, 0);

	fl_free(got);
	fl_free(id);
	raw_close(&r);
	bq_queue_free(q);
}

/* A call whose reply was lost is sent again marked as a repeat: the scripts must recognise
 * what the first one did, neither taking a second job nor refusing a recorded outcome. */
static void test_repeated_calls(void **state)
{
	(void)state;
	struct bq_queue *q = queue("repeat");
	struct raw r;
	raw_open(&r, "repeat");
	struct bq_job_opts o = { .attempts = 3 };
	char *ids[4];
	for (int i = 0; i < 4; i++)
		ids[i] = add(q, "{}", &o);

	/* fetch repeated with its token: the same job, started once */
	char *a = fetch(&r, "w:1", false);
	assert_string_equal(a, ids[0]);
	char *a2 = fetch(&r, "w:1", true);
	assert_string_equal(a2, ids[0]);
	assert_hget(&r, ids[0], "ats", "1");
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.active, 1);
	/* a repeat whose first call took nothing fetches normally */
	char *b = fetch(&r, "w:2", true);
	assert_string_equal(b, ids[1]);

	/* finish with fetch-next, repeated: recognised (1), and the same next job comes back */
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	char *next = NULL, *next2 = NULL;
	assert_int_equal(finish(&r, ids[0], "w:1", now, "-1", "w:3", false, &next), 0);
	assert_string_equal(next, ids[2]);
	assert_int_equal(finish(&r, ids[0], "w:1", now, "-1", "w:3", true, &next2), 1);
	assert_non_null(next2);
	assert_string_equal(next2, ids[2]);
	assert_hget(&r, ids[0], "atm", "1");
	assert_hget(&r, ids[2], "ats", "1");
	/* without the repeat mark the same call is refused, as another worker's would be */
	assert_int_equal(finish(&r, ids[0], "w:1", now, "-1", NULL, false, NULL), -2);
	/* a repeat with another time is not ours either */
	assert_int_equal(finish(&r, ids[0], "w:1", "1", "-1", NULL, true, NULL), -2);
	counts(q, &c);
	assert_int_equal(c.completed, 1);
	assert_int_equal(c.active, 2);
	assert_int_equal(c.waiting, 1);
	/* the stream holds one completed event for the job */
	char *events_key = fl_asprintf("%sevents", r.kp);
	redisReply *ev = redisCommand(r.conn.ctx, "XRANGE %s - +", events_key);
	int completed_events = 0;
	for (size_t i = 0; i < ev->elements; i++) {
		redisReply *fields = ev->element[i]->element[1];
		if (fields->elements >= 4 && !strcmp(fields->element[1]->str, "completed") &&
		    !strcmp(fields->element[3]->str, ids[0]))
			completed_events++;
	}
	freeReplyObject(ev);
	fl_free(events_key);
	assert_int_equal(completed_events, 1);

	/* a removal repeated: the job is gone because we removed it */
	assert_int_equal(finish(&r, ids[1], "w:2", now, "0", NULL, false, NULL), 0);
	assert_int_equal(finish(&r, ids[1], "w:2", now, "0", NULL, true, NULL), 1);

	/* retry repeated: the attempt is counted once */
	const char *retry[9] = { ids[2], "w:3", now, "0", "boom", "[]", "0", "0", "1" };
	redisReply *reply = eval(&r, BQ_LUA_RETRY, 9, retry);
	assert_int_equal(reply->integer, 0);
	freeReplyObject(reply);
	retry[7] = "1";
	reply = eval(&r, BQ_LUA_RETRY, 9, retry);
	assert_int_equal(reply->integer, 1);
	freeReplyObject(reply);
	assert_hget(&r, ids[2], "atm", "1");
	counts(q, &c);
	assert_int_equal(c.waiting, 2);
	assert_int_equal(c.active, 0);

	fl_free(next);
	fl_free(next2);
	fl_free(a);
	fl_free(a2);
	fl_free(b);
	for (int i = 0; i < 4; i++)
		fl_free(ids[i]);
	raw_close(&r);
	bq_queue_free(q);
}

static redisReply *stalled_check(struct raw *r, const char *max_stalled)
{
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	/* a long interval: the mutex stays held until the test deletes it */
	return eval(r, BQ_LUA_STALLED, 3, (const char *[]){ now, max_stalled, "60000" });
}

/* Several jobs finished in one call of finish.lua: each is judged on its own lock, each fetches
 * its own next job under its own token, and the reply keeps their order. */
static void test_finish_batch(void **state)
{
	(void)state;
	struct bq_queue *q = queue("batch");
	struct raw r;
	raw_open(&r, "batch");
	struct bq_job_opts o = { .attempts = 1 };
	char *ids[4];
	for (int i = 0; i < 4; i++)
		ids[i] = add(q, "{\"n\":1}", &o);
	char *a = fetch(&r, "w:1", false), *b = fetch(&r, "w:2", false);
	assert_string_equal(a, ids[0]);
	assert_string_equal(b, ids[1]);

	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, fl_now_ms());
	const char *av[FINISH_HEAD + 3 * FINISH_ARGS];
	char count[8];
	finish_head(av, count, 3, now, true, false);
	finish_args(av + FINISH_HEAD, a, "w:1", "-1", "w:3");
	finish_args(av + FINISH_HEAD + FINISH_ARGS, b, "theirs:9", "-1", "w:4");
	finish_args(av + FINISH_HEAD + 2 * FINISH_ARGS, b, "w:2", "-1", "w:5");
	redisReply *reply = eval(&r, BQ_LUA_FINISH, FINISH_HEAD + 3 * FINISH_ARGS, av);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 3);
	char *next[3];
	assert_int_equal(finish_result(reply->element[0], &next[0]), 0);
	assert_int_equal(finish_result(reply->element[1], &next[1]), -6);
	assert_int_equal(finish_result(reply->element[2], &next[2]), 0);
	assert_string_equal(next[0], ids[2]);
	assert_null(next[1]);
	assert_string_equal(next[2], ids[3]);

	/* the fetched job's fields carry the writes of its own fetch */
	const redisReply *job = reply->element[0]->element[1];
	assert_string_equal(job->element[1]->str, "EXECUTE_FLOW");      /* name */
	assert_string_equal(job->element[2]->str, "{\"n\":1}");        /* data */
	assert_int_equal(job->element[4]->type, REDIS_REPLY_NIL);        /* defa */
	assert_int_equal(job->element[5]->type, REDIS_REPLY_NIL);        /* atm */
	assert_string_equal(job->element[6]->str, "1");                  /* ats */
	assert_string_equal(job->element[10]->str, now);                 /* processedOn */
	freeReplyObject(reply);

	for (int i = 0; i < 2; i++) {
		assert_hget(&r, ids[i], "atm", "1");
		assert_hget(&r, ids[i], "returnvalue", "{\"ok\":1}");
		assert_hget(&r, ids[i], "finishedOn", now);
	}
	char *lock = cmd_str(&r, "GET %s%s", ids[2], ":lock");
	assert_string_equal(lock, "w:3");
	fl_free(lock);
	lock = cmd_str(&r, "GET %s%s", ids[3], ":lock");
	assert_string_equal(lock, "w:5");
	fl_free(lock);
	assert_hget(&r, ids[3], "ats", "1");
	assert_hget(&r, ids[3], "processedOn", now);
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.completed, 2);
	assert_int_equal(c.active, 2);
	assert_int_equal(c.waiting, 0);

	for (int i = 0; i < 3; i++)
		fl_free(next[i]);
	fl_free(a);
	fl_free(b);
	for (int i = 0; i < 4; i++)
		fl_free(ids[i]);
	raw_close(&r);
	bq_queue_free(q);
}

static void test_stalled_mutex(void **state)
{
	(void)state;
	struct bq_queue *q = queue("stall");
	struct raw a, b;
	raw_open(&a, "stall");
	raw_open(&b, "stall");
	char *id = add(q, "{}", NULL);
	char *got = fetch(&a, "dead:1", false);
	assert_string_equal(got, id);

	/* first check: the job holds its lock, so it is only noted as active */
	redisReply *reply = stalled_check(&a, "1");
	assert_int_equal(reply->elements, 0);
	freeReplyObject(reply);
	assert_int_equal(cmd_int(&a, "SISMEMBER %s %s", "stalled", id), 1);

	/* its worker dies: the lock is gone. Within the interval no other checker runs, from
	 * this worker or any other */
	cmd_int(&a, "DEL %s%s", id, ":lock");
	reply = stalled_check(&b, "1");
	assert_int_equal(reply->elements, 0);
	freeReplyObject(reply);
	reply = stalled_check(&a, "1");
	assert_int_equal(reply->elements, 0);
	freeReplyObject(reply);
	assert_hget(&a, id, "stc", NULL);
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.active, 1);
	long long ttl = cmd_int(&a, "PTTL %s%s", "stalled-check", "");
	assert_true(ttl > 0 && ttl <= 60000);

	/* the next interval: one checker moves it back to the head of wait */
	cmd_int(&a, "DEL %s%s", "stalled-check", "");
	reply = stalled_check(&b, "1");
	assert_int_equal(reply->elements, 1);
	assert_string_equal(reply->element[0]->str, id);
	freeReplyObject(reply);
	assert_hget(&a, id, "stc", "1");
	assert_hget(&a, id, "defa", NULL);
	counts(q, &c);
	assert_int_equal(c.active, 0);
	assert_int_equal(c.waiting, 1);

	/* past maxStalledCount the job carries its failure for the next fetch */
	fl_free(got);
	got = fetch(&a, "dead:2", false);
	assert_string_equal(got, id);
	cmd_int(&a, "DEL %s%s", "stalled-check", "");
	reply = stalled_check(&a, "1"); /* notes it */
	freeReplyObject(reply);
	cmd_int(&a, "DEL %s%s", id, ":lock");
	cmd_int(&a, "DEL %s%s", "stalled-check", "");
	reply = stalled_check(&a, "1");
	assert_int_equal(reply->elements, 1);
	freeReplyObject(reply);
	assert_hget(&a, id, "stc", "2");
	assert_hget(&a, id, "defa", "job stalled more than allowable limit");

	fl_free(got);
	fl_free(id);
	raw_close(&a);
	raw_close(&b);
	bq_queue_free(q);
}

/* ---- the worker ---------------------------------------------------------------------------- */

struct seen {
	pthread_mutex_t mu;
	int calls;
	int max_busy, busy;
	char ids[64][32];
	int sleep_ms;
	int barrier;          /* when set, no job returns before this many have started */
	pthread_cond_t cv;    /* with barrier */
	atomic_int lost;
};

static void process(void *arg, const struct bq_job *job, struct bq_result *res)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->mu);
	if (s->calls < 64)
		snprintf(s->ids[s->calls], sizeof(s->ids[0]), "%s", job->id);
	s->calls++;
	if (++s->busy > s->max_busy)
		s->max_busy = s->busy;
	pthread_mutex_unlock(&s->mu);
	if (s->barrier) {
		pthread_mutex_lock(&s->mu);
		pthread_cond_broadcast(&s->cv);
		while (s->calls < s->barrier)
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
	}
	if (s->sleep_ms)
		fl_sleep_ms(s->sleep_ms);
	json_t *fail = json_object_get(job->data, "fail");
	if (json_is_string(fail)) {
		res->outcome = BQ_FAILED;
		res->failed_reason = fl_strdup(json_string_value(fail));
	} else {
		res->outcome = BQ_COMPLETED;
		res->returnvalue = json_pack("{s:s}", "id", job->id);
	}
	pthread_mutex_lock(&s->mu);
	s->busy--;
	pthread_mutex_unlock(&s->mu);
}

static void lock_lost(void *arg, const struct bq_job *job)
{
	(void)job;
	struct seen *s = arg;
	atomic_fetch_add(&s->lost, 1);
}

static struct bq_worker *worker(const char *queue_name, struct seen *s, int concurrency,
				int lock_ms)
{
	struct bq_worker_opts o;
	bq_worker_opts_init(&o);
	o.redis_url = url();
	o.queue = queue_name;
	o.concurrency = concurrency;
	o.lock_duration_ms = lock_ms;
	o.stalled_interval_ms = 1000;
	o.max_stalled_count = 1;
	o.drain_delay_ms = 500;
	o.process = process;
	o.lock_lost = lock_lost;
	o.arg = s;
	struct bq_worker *w;
	struct fl_err err = { 0 };
	if (bq_worker_new(&o, &w, &err))
		fail_msg("worker: %s", err.msg);
	return w;
}

/* Waits up to ms for completed + failed finishes to reach n. */
static bool wait_finished(struct bq_worker *w, uint64_t n, int ms)
{
	int64_t end = fl_mono_ms() + ms;
	struct bq_worker_stats st;
	do {
		bq_worker_get_stats(w, &st);
		if (st.completed + st.failed >= n)
			return true;
		fl_sleep_ms(10);
	} while (fl_mono_ms() < end);
	return false;
}

/* Slots that finish at the same moment share calls to Redis, and each job's outcome still lands
 * on its own job. */
static void test_worker_shares_finishes(void **state)
{
	(void)state;
	struct bq_queue *q = queue("shared");
	struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
			  .barrier = 8 };
	char *ids[8];
	for (int i = 0; i < 8; i++)
		ids[i] = add(q, "{}", NULL);
	struct bq_worker *w = worker("shared", &s, 8, 5000);
	assert_true(wait_finished(w, 8, 30000));
	bq_worker_stop(w, 5000);
	struct bq_worker_stats st;
	bq_worker_get_stats(w, &st);
	bq_worker_free(w);
	assert_int_equal(st.completed, 8);
	assert_int_equal(st.lost, 0);
	/* eight finishes released together: at most two calls go out before the rest queue up */
	assert_true(st.finish_calls < 8);
	for (int i = 0; i < 8; i++) {
		json_t *job;
		struct fl_err err = { 0 };
		assert_int_equal(bq_job_get(q, ids[i], &job, &err), 0);
		json_t *rv = json_object_get(job, "returnvalue");
		assert_string_equal(json_string_value(json_object_get(rv, "id")), ids[i]);
		assert_int_equal(json_integer_value(json_object_get(job, "attemptsMade")), 1);
		json_decref(job);
		fl_free(ids[i]);
	}
	bq_queue_free(q);
}

/* Many slots at once: the renewal sends 1 + 2 * 12 arguments, more than fit the eval's stack
 * vector (an overrun ASan would catch); every job runs once, with the renewal keeping locks
 * that are shorter than the jobs (1 s, renewed every 500 ms, for jobs of 1.2 s). */
static void test_worker_many_slots(void **state)
{
	(void)state;
	struct bq_queue *q = queue("many");
	struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER, .sleep_ms = 1200 };
	for (int i = 0; i < 22; i++) {
		char *id = add(q, "{}", NULL);
		fl_free(id);
	}
	struct bq_job_opts f = { .attempts = 2 };
	char *failing = add(q, "{\"fail\":\"no good\"}", &f);
	struct bq_worker *w = worker("many", &s, 12, 1000);
	assert_true(wait_finished(w, 23, 30000));
	bq_worker_stop(w, 5000);
	struct bq_worker_stats st;
	bq_worker_get_stats(w, &st);
	bq_worker_free(w);
	assert_int_equal(st.completed, 22);
	assert_int_equal(st.failed, 1);
	assert_int_equal(st.retried, 1);
	assert_int_equal(st.lost, 0);
	assert_int_equal(atomic_load(&s.lost), 0);
	assert_int_equal(s.calls, 24); /* 22 + the failing job twice */
	assert_true(s.max_busy > 1 && s.max_busy <= 12);
	for (int i = 0; i < s.calls && i < 64; i++)
		for (int j = 0; j < i; j++)
			if (!strcmp(s.ids[i], s.ids[j]) && strcmp(s.ids[i], failing))
				fail_msg("job '%s' ran twice", s.ids[i]);
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.completed, 22);
	assert_int_equal(c.failed, 1);
	assert_int_equal(c.active + c.waiting, 0);
	json_t *job;
	struct fl_err err = { 0 };
	assert_int_equal(bq_job_get(q, failing, &job, &err), 0);
	assert_string_equal(json_string_value(json_object_get(job, "failedReason")), "no good");
	assert_int_equal(json_integer_value(json_object_get(job, "attemptsMade")), 2);
	json_decref(job);
	fl_free(failing);
	bq_queue_free(q);
}

/* A processor that holds its job until the test lets it go. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool in, go;
	int calls;
};

static void process_gated(void *arg, const struct bq_job *job, struct bq_result *res)
{
	(void)job;
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->calls++;
	g->in = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->go)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	res->outcome = BQ_COMPLETED;
}

static void *busy_script(void *arg)
{
	(void)arg;
	redisContext *c = redisConnectUnix(server.url + strlen("unix://"));
	/* A read-only script that spins for 700 ms: past busy-reply-threshold, other clients get
	 * -BUSY. Plain Lua between the TIME calls lets Redis's instruction-count hook notice the
	 * threshold early. */
	redisReply *r = redisCommand(c, "EVAL %s 0",
				     "local s = redis.call('TIME') local x = 0 "
				     "repeat for i = 1, 20000 do x = x + i end "
				     "local n = redis.call('TIME') "
				     "until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 700000 "
				     "return 1");
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return NULL;
}

/* A job's outcome meets a server that answers -BUSY (a long script, like -LOADING after a
 * restart): it is sent again until Redis takes it, not dropped to be requeued by the stalled
 * check and run a second time. */
static void test_outcome_waits_out_busy_server(void **state)
{
	(void)state;
	struct raw r;
	raw_open(&r, "busy");
	redisReply *reply = redisCommand(r.conn.ctx, "CONFIG SET busy-reply-threshold 20");
	assert_int_equal(reply->type, REDIS_REPLY_STATUS);
	freeReplyObject(reply);
	struct bq_queue *q = queue("busy");
	struct gate g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct bq_worker_opts o;
	bq_worker_opts_init(&o);
	o.redis_url = url();
	o.queue = "busy";
	o.lock_duration_ms = 3000;
	o.stalled_interval_ms = 500;
	o.max_stalled_count = 5;
	o.process = process_gated;
	o.arg = &g;
	struct bq_worker *w;
	struct fl_err err = { 0 };
	assert_int_equal(bq_worker_new(&o, &w, &err), 0);
	char *id = add(q, "{}", NULL);

	pthread_mutex_lock(&g.mu);
	while (!g.in)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	pthread_t busy;
	assert_int_equal(pthread_create(&busy, NULL, busy_script, NULL), 0);
	/* wait until the server refuses commands, then let the job finish into that */
	bool refusing = false;
	int64_t end = fl_mono_ms() + 5000;
	while (!refusing && fl_mono_ms() < end) {
		reply = redisCommand(r.conn.ctx, "PING");
		assert_non_null(reply);
		refusing = reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "BUSY", 4);
		freeReplyObject(reply);
	}
	assert_true(refusing);
	pthread_mutex_lock(&g.mu);
	g.go = true;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	pthread_join(busy, NULL);

	assert_true(wait_finished(w, 1, 15000));
	/* a stall would show within a lock duration and two checks */
	fl_sleep_ms(500);
	struct bq_worker_stats st;
	bq_worker_get_stats(w, &st);
	bq_worker_free(w);
	assert_int_equal(st.completed, 1);
	assert_int_equal(st.lost, 0);
	assert_int_equal(g.calls, 1);
	struct bq_counts c;
	counts(q, &c);
	assert_int_equal(c.completed, 1);
	assert_int_equal(c.active + c.waiting, 0);
	assert_hget(&r, id, "stc", NULL);

	reply = redisCommand(r.conn.ctx, "CONFIG SET busy-reply-threshold 5000");
	freeReplyObject(reply);
	fl_free(id);
	raw_close(&r);
	bq_queue_free(q);
}

/* The server goes away and comes back on the same socket with its data: the queue handle
 * reconnects on its next call, the worker on its own, and nothing added before is lost. */
static void test_reconnect_after_restart(void **state)
{
	(void)state;
	struct bq_queue *q = queue("restart");
	struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct bq_worker *w = worker("restart", &s, 2, 5000);
	char *first = add(q, "{}", NULL);
	assert_true(wait_finished(w, 1, 10000));
	fl_free(first);

	bq_server_stop(&server); /* SIGTERM: Redis writes its append-only file and exits */
	struct fl_err err = { 0 };
	char *id = NULL;
	assert_int_equal(bq_job_add(q, "EXECUTE_FLOW", "{}", NULL, &id, NULL, &err), FL_EREDIS);
	assert_null(id);
	assert_true(err.msg[0] != 0);

	if (bq_server_start(&server, server_dir, &err))
		fail_msg("restart: %s", err.msg);
	struct bq_counts c;
	counts(q, &c); /* reconnects */
	assert_int_equal(c.completed, 1);
	for (int i = 0; i < 3; i++) {
		char *after = add(q, "{}", NULL);
		fl_free(after);
	}
	/* the worker's connections come back with backoff (at most 3 s between attempts) */
	assert_true(wait_finished(w, 4, 20000));
	struct bq_worker_stats st;
	int64_t end = fl_mono_ms() + 5000;
	do {
		bq_worker_get_stats(w, &st);
		if (st.connected)
			break;
		fl_sleep_ms(20);
	} while (fl_mono_ms() < end);
	assert_true(st.connected);
	bq_worker_free(w);
	counts(q, &c);
	assert_int_equal(c.completed, 4);
	assert_int_equal(c.active + c.waiting, 0);
	assert_int_equal(s.calls, 4);
	bq_queue_free(q);
}

int main(void)
{
	fl_alloc_init();
	fl_log_setup(FL_LOG_ERROR, 0);
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_url_forms),
		cmocka_unit_test(test_url_errors),
		cmocka_unit_test(test_job_id_rules),
		cmocka_unit_test(test_opts_normalised),
		cmocka_unit_test(test_keep_forms),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_lua_table),
		cmocka_unit_test(test_states_and_names),
		cmocka_unit_test(test_transient_replies),
	};
	const struct CMUnitTest with_redis[] = {
		cmocka_unit_test(test_script_modes),
		cmocka_unit_test(test_add_fetch_finish),
		cmocka_unit_test(test_lock_tokens),
		cmocka_unit_test(test_repeated_calls),
		cmocka_unit_test(test_finish_batch),
		cmocka_unit_test(test_stalled_mutex),
		cmocka_unit_test(test_worker_many_slots),
		cmocka_unit_test(test_worker_shares_finishes),
		cmocka_unit_test(test_outcome_waits_out_busy_server),
		cmocka_unit_test(test_reconnect_after_restart),
	};
	int failed = cmocka_run_group_tests_name("queue", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("queue-redis", with_redis, redis_setup,
					      redis_teardown);
	return failed ? 1 : 0;
}
