/* What store.c shares with its backends. A backend is a vtable of a few SQL primitives (run a
 * statement, run a query row by row, run a script); all of the store's logic and SQL is written
 * once in store.c against it. SQL uses `?` placeholders and the common subset of SQLite and
 * PostgreSQL (ON CONFLICT, RETURNING, BIGINT, TEXT); the PostgreSQL backend rewrites `?` to $n. */
#ifndef STORE_INT_H
#define STORE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fl_err;

enum store_val_type { STORE_V_NULL, STORE_V_TEXT, STORE_V_INT };

/* A bound parameter. Text is borrowed for the length of the call. */
struct store_val {
	enum store_val_type type;
	const char *text;
	int64_t i;
};

static inline struct store_val store_v_text(const char *s)
{
	struct store_val v = { s ? STORE_V_TEXT : STORE_V_NULL, s, 0 };
	return v;
}

static inline struct store_val store_v_int(int64_t i)
{
	struct store_val v = { STORE_V_INT, NULL, i };
	return v;
}

/* A nullable int: 0 is stored as NULL (times and counts where 0 means "none"). */
static inline struct store_val store_v_int0(int64_t i)
{
	struct store_val v = { i ? STORE_V_INT : STORE_V_NULL, NULL, i };
	return v;
}

/* A result row: every column as NUL-terminated text, NULL for SQL NULL. Valid only during the
 * row callback. */
struct store_row {
	int n;
	const char *const *col;
};

/* Returns 0 to continue, non-zero to stop early (then query returns 0). */
typedef int (*store_row_fn)(void *ud, const struct store_row *row);

struct store_conn;

struct store_driver {
	const char *name;
	/* Statement opening a write transaction: SQLite takes the write lock at once so that two
	 * processes never deadlock on a lock upgrade. */
	const char *begin_sql;
	/* Run inside the migration transaction before reading the applied versions, so that
	 * replicas starting together migrate one at a time; NULL when begin_sql already does. */
	const char *migration_lock_sql;
	/* Whether SELECT ... FOR SHARE exists. SQLite has no row locks: its write transaction
	 * already excludes every other writer. */
	int row_locks;
	/* sql must be a string literal or otherwise live for the process: backends cache prepared
	 * statements by its address. *changes (may be NULL) receives the affected row count. */
	int (*exec)(struct store_conn *c, const char *sql, const struct store_val *params, int n,
		    int64_t *changes, struct fl_err *err);
	int (*query)(struct store_conn *c, const char *sql, const struct store_val *params, int n,
		     store_row_fn fn, void *ud, struct fl_err *err);
	/* Several ;-separated statements with no parameters (migrations). */
	int (*script)(struct store_conn *c, const char *sql, struct fl_err *err);
	void (*close)(struct store_conn *c);
};

extern const struct store_driver store_sqlite_driver;
extern const struct store_driver store_postgres_driver;

struct store_conn *store_sqlite_connect(const char *path, int busy_timeout_ms, struct fl_err *err);
struct store_conn *store_postgres_connect(const char *url, struct fl_err *err);

#endif
