/* The SQLite backend: one connection in WAL mode with a busy timeout, so that several processes
 * (app replicas on one host) can share the file. Prepared statements are cached per connection,
 * keyed by the address of their SQL text, which is a literal in store.c. */
#include "store/store_int.h"
#include "core/alloc.h"
#include "core/err.h"

#include <sqlite3.h>
#include <stdio.h>

#define STMT_CACHE 96

struct store_conn {
	sqlite3 *db;
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} cache[STMT_CACHE];
	int n_cache;
};

static int db_error(struct store_conn *c, int rc, const char *sql, struct fl_err *err)
{
	int code = (rc & 0xff) == SQLITE_CONSTRAINT ? FL_ECONFLICT : FL_EDB;
	char head[64];
	snprintf(head, sizeof head, "%.60s", sql);
	return fl_err_set(err, code, "sqlite: %s (in '%s')", sqlite3_errmsg(c->db), head);
}

static int prepare(struct store_conn *c, const char *sql, sqlite3_stmt **out, struct fl_err *err)
{
	for (int i = 0; i < c->n_cache; i++) {
		if (c->cache[i].sql == sql) {
			*out = c->cache[i].stmt;
			return 0;
		}
	}
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(c, rc, sql, err);
	if (c->n_cache == STMT_CACHE) {
		/* Full: evict the oldest. Only a caller passing non-literal SQL can get here. */
		sqlite3_finalize(c->cache[0].stmt);
		memmove(&c->cache[0], &c->cache[1], sizeof c->cache[0] * (STMT_CACHE - 1));
		c->n_cache--;
	}
	c->cache[c->n_cache].sql = sql;
	c->cache[c->n_cache].stmt = st;
	c->n_cache++;
	*out = st;
	return 0;
}

static int bind(struct store_conn *c, sqlite3_stmt *st, const struct store_val *p, int n,
		const char *sql, struct fl_err *err)
{
	for (int i = 0; i < n; i++) {
		int rc;
		switch (p[i].type) {
		case STORE_V_TEXT:
			rc = sqlite3_bind_text(st, i + 1, p[i].text, -1, SQLITE_STATIC);
			break;
		case STORE_V_INT:
			rc = sqlite3_bind_int64(st, i + 1, p[i].i);
			break;
		default:
			rc = sqlite3_bind_null(st, i + 1);
		}
		if (rc != SQLITE_OK)
			return db_error(c, rc, sql, err);
	}
	return 0;
}

static int run(struct store_conn *c, const char *sql, const struct store_val *p, int n,
	       store_row_fn fn, void *ud, int64_t *changes, struct fl_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(c, sql, &st, err);
	if (rc)
		return rc;
	rc = bind(c, st, p, n, sql, err);
	int stopped = 0;
	while (!rc) {
		int s = sqlite3_step(st);
		if (s == SQLITE_DONE)
			break;
		if (s != SQLITE_ROW) {
			rc = db_error(c, s, sql, err);
			break;
		}
		if (!fn || stopped)
			continue;
		int cols = sqlite3_column_count(st);
		const char *col[64];
		if (cols > 64)
			cols = 64;
		for (int i = 0; i < cols; i++)
			col[i] = (const char *)sqlite3_column_text(st, i);
		struct store_row row = { cols, col };
		if (fn(ud, &row)) {
			stopped = 1;
			/* Stepping to the end keeps RETURNING writes complete; a SELECT may stop. */
			if (sqlite3_stmt_readonly(st))
				break;
		}
	}
	if (!rc && changes)
		*changes = sqlite3_changes64(c->db);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static int sq_exec(struct store_conn *c, const char *sql, const struct store_val *p, int n,
		   int64_t *changes, struct fl_err *err)
{
	return run(c, sql, p, n, NULL, NULL, changes, err);
}

static int sq_query(struct store_conn *c, const char *sql, const struct store_val *p, int n,
		    store_row_fn fn, void *ud, struct fl_err *err)
{
	return run(c, sql, p, n, fn, ud, NULL, err);
}

static int sq_script(struct store_conn *c, const char *sql, struct fl_err *err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		fl_err_set(err, FL_EDB, "sqlite: %s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return FL_EDB;
	}
	return 0;
}

static void sq_close(struct store_conn *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n_cache; i++)
		sqlite3_finalize(c->cache[i].stmt);
	sqlite3_close(c->db);
	fl_free(c);
}

struct store_conn *store_sqlite_connect(const char *path, int busy_timeout_ms, struct fl_err *err)
{
	struct store_conn *c = fl_calloc(1, sizeof *c);
	int rc = sqlite3_open_v2(path, &c->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		fl_err_set(err, FL_EDB, "cannot open '%s': %s", path,
			   c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		sq_close(c);
		return NULL;
	}
	sqlite3_busy_timeout(c->db, busy_timeout_ms);
	/* WAL lets readers in other processes go on while one writes; NORMAL sync keeps each commit
	 * durable against a process crash, and against power loss up to the last checkpoint. The
	 * hot pages of runs and steps are rewritten by every run, so checkpointing every 4000
	 * pages rather than 1000 copies each of them to the database file a quarter as often. */
	if (sq_script(c,
		      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
		      "PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=4000;"
		      "PRAGMA mmap_size=268435456;",
		      err)) {
		fl_err_prefix(err, "cannot set up '%s'", path);
		sq_close(c);
		return NULL;
	}
	return c;
}

const struct store_driver store_sqlite_driver = {
	.name = "sqlite",
	.begin_sql = "BEGIN IMMEDIATE",
	.migration_lock_sql = NULL,
	.exec = sq_exec,
	.query = sq_query,
	.script = sq_script,
	.close = sq_close,
};
