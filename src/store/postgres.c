/* The PostgreSQL backend (libpq). Statements are prepared once per connection and keyed by the
 * address of their SQL text; `?` placeholders become $1..$n. A connection found broken is reset
 * before its next use, which also forgets its prepared statements. */
#include "store/store_int.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#define STMT_CACHE 96

struct store_conn {
	PGconn *pg;
	struct {
		const char *sql;
		char name[16];
	} cache[STMT_CACHE];
	int n_cache;
	int next_name;
};

static void quiet(void *arg, const char *message) {}

static int pg_error(struct store_conn *c, PGresult *res, const char *sql, struct fl_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	/* Class 23 is integrity constraint violation: the caller treats it as a lost race. */
	int code = state && !strncmp(state, "23", 2) ? FL_ECONFLICT : FL_EDB;
	const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg);
	char head[64];
	snprintf(head, sizeof head, "%.60s", sql);
	size_t len = strlen(msg);
	while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	fl_err_set(err, code, "postgres: %.*s (in '%s')", (int)len, msg, head);
	return code;
}

/* Puts the connection back in a usable state after a failure: a broken one is reset, and the
 * server's prepared statements go with it. */
static void recover(struct store_conn *c)
{
	if (PQstatus(c->pg) != CONNECTION_BAD)
		return;
	PQreset(c->pg);
	c->n_cache = 0;
}

static char *rewrite_placeholders(const char *sql)
{
	struct fl_buf b = FL_BUF_INIT;
	int n = 0;
	for (const char *p = sql; *p; p++) {
		if (*p == '?')
			fl_buf_addf(&b, "$%d", ++n);
		else
			fl_buf_addch(&b, *p);
	}
	return fl_buf_detach(&b, NULL);
}

static int prepare(struct store_conn *c, const char *sql, const char **name, struct fl_err *err)
{
	for (int i = 0; i < c->n_cache; i++) {
		if (c->cache[i].sql == sql) {
			*name = c->cache[i].name;
			return 0;
		}
	}
	if (c->n_cache == STMT_CACHE) {
		/* Full: forget the oldest (the server keeps it; names are never reused). */
		memmove(&c->cache[0], &c->cache[1], sizeof c->cache[0] * (STMT_CACHE - 1));
		c->n_cache--;
	}
	char *text = rewrite_placeholders(sql);
	int slot = c->n_cache;
	snprintf(c->cache[slot].name, sizeof c->cache[slot].name, "s%d", c->next_name++);
	PGresult *res = PQprepare(c->pg, c->cache[slot].name, text, 0, NULL);
	fl_free(text);
	int rc = 0;
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = pg_error(c, res, sql, err);
	PQclear(res);
	if (rc) {
		recover(c);
		return rc;
	}
	c->cache[slot].sql = sql;
	c->n_cache++;
	*name = c->cache[slot].name;
	return 0;
}

static int run(struct store_conn *c, const char *sql, const struct store_val *p, int n,
	       store_row_fn fn, void *ud, int64_t *changes, struct fl_err *err)
{
	recover(c);
	const char *name;
	int rc = prepare(c, sql, &name, err);
	if (rc)
		return rc;
	const char *values[32];
	char nums[32][24];
	if (n > 32)
		return fl_err_set(err, FL_EDB, "postgres: too many parameters");
	for (int i = 0; i < n; i++) {
		switch (p[i].type) {
		case STORE_V_TEXT:
			values[i] = p[i].text;
			break;
		case STORE_V_INT:
			snprintf(nums[i], sizeof nums[i], "%lld", (long long)p[i].i);
			values[i] = nums[i];
			break;
		default:
			values[i] = NULL;
		}
	}
	PGresult *res = PQexecPrepared(c->pg, name, n, values, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		rc = pg_error(c, res, sql, err);
		PQclear(res);
		recover(c);
		return rc;
	}
	if (fn) {
		int rows = PQntuples(res), cols = PQnfields(res);
		const char *col[64];
		if (cols > 64)
			cols = 64;
		for (int r = 0; r < rows; r++) {
			for (int i = 0; i < cols; i++)
				col[i] = PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i);
			struct store_row row = { cols, col };
			if (fn(ud, &row))
				break;
		}
	}
	if (changes) {
		const char *t = PQcmdTuples(res);
		*changes = t && *t ? atoll(t) : 0;
	}
	PQclear(res);
	return 0;
}

static int pg_exec(struct store_conn *c, const char *sql, const struct store_val *p, int n,
		   int64_t *changes, struct fl_err *err)
{
	return run(c, sql, p, n, NULL, NULL, changes, err);
}

static int pg_query(struct store_conn *c, const char *sql, const struct store_val *p, int n,
		    store_row_fn fn, void *ud, struct fl_err *err)
{
	return run(c, sql, p, n, fn, ud, NULL, err);
}

static int pg_script(struct store_conn *c, const char *sql, struct fl_err *err)
{
	recover(c);
	PGresult *res = PQexec(c->pg, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = pg_error(c, res, "script", err);
	PQclear(res);
	if (rc)
		recover(c);
	return rc;
}

static void pg_close(struct store_conn *c)
{
	if (!c)
		return;
	PQfinish(c->pg);
	fl_free(c);
}

struct store_conn *store_postgres_connect(const char *url, struct fl_err *err)
{
	struct store_conn *c = fl_calloc(1, sizeof *c);
	c->pg = PQconnectdb(url);
	if (PQstatus(c->pg) != CONNECTION_OK) {
		const char *msg = PQerrorMessage(c->pg);
		size_t len = strlen(msg);
		while (len && msg[len - 1] == '\n')
			len--;
		fl_err_set(err, FL_EDB, "cannot connect to PostgreSQL: %.*s", (int)len, msg);
		pg_close(c);
		return NULL;
	}
	PQsetNoticeProcessor(c->pg, quiet, NULL);
	return c;
}

const struct store_driver store_postgres_driver = {
	.name = "postgres",
	.begin_sql = "BEGIN",
	.row_locks = 1,
	.migration_lock_sql = "LOCK TABLE schema_migrations IN EXCLUSIVE MODE",
	.exec = pg_exec,
	.query = pg_query,
	.script = pg_script,
	.close = pg_close,
};
