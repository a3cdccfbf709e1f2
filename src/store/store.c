/* The store's logic, written once over the backend vtable (store_int.h): a connection pool,
 * migrations, and each operation of store.h as one transaction. State changes of a run are
 * guarded by the conditions store.h documents, and every guard is re-checked by the UPDATE that
 * applies the change (WHERE status = ... AND attempt = ...), which is what makes concurrent
 * callers on PostgreSQL's READ COMMITTED agree: the second UPDATE waits for the first's row lock,
 * re-reads the row and changes nothing. */
#include "store/store.h"
#include "store/store_int.h"
#include "core/alloc.h"
#include "core/embed.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/time.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct fl_embed store_migrations[];

#define VERSION_CACHE 64

struct store {
	const struct store_driver *drv;
	pthread_mutex_t cache_mu;
	struct store_version versions[VERSION_CACHE];
	unsigned next_version;
	enum store_backend backend;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_conns;
	struct store_conn **conns;
	int *busy;
};

#define P(...)                                      \
	((const struct store_val[]){ __VA_ARGS__ }), \
		(int)(sizeof((const struct store_val[]){ __VA_ARGS__ }) / sizeof(struct store_val))
#define T(x) store_v_text(x)
#define I(x) store_v_int(x)
#define I0(x) store_v_int0(x)

/* ---- statuses ---- */

static const char *const run_status_names[STORE_RUN_STATUS_COUNT] = {
	"QUEUED",	   "RUNNING",		    "PAUSED",
	"SUCCEEDED",	   "FAILED",		    "TIMEOUT",
	"INTERNAL_ERROR", "MEMORY_LIMIT_EXCEEDED", "LOG_SIZE_EXCEEDED",
	"CANCELED",
};

const char *store_run_status_name(enum store_run_status s)
{
	return (unsigned)s < STORE_RUN_STATUS_COUNT ? run_status_names[s] : "UNKNOWN";
}

int store_run_status_parse(const char *name, enum store_run_status *out)
{
	for (int i = 0; i < STORE_RUN_STATUS_COUNT; i++) {
		if (name && !strcmp(name, run_status_names[i])) {
			*out = (enum store_run_status)i;
			return 0;
		}
	}
	return FL_EINVAL;
}

int store_run_status_is_final(enum store_run_status s)
{
	return s != STORE_RUN_QUEUED && s != STORE_RUN_RUNNING && s != STORE_RUN_PAUSED;
}

static int is_failure(enum store_run_status s)
{
	return store_run_status_is_final(s) && s != STORE_RUN_SUCCEEDED && s != STORE_RUN_CANCELED;
}

/* ---- pool and transactions ---- */

static struct store_conn *acquire(struct store *s)
{
	pthread_mutex_lock(&s->mu);
	for (;;) {
		for (int i = 0; i < s->n_conns; i++) {
			if (!s->busy[i]) {
				s->busy[i] = 1;
				pthread_mutex_unlock(&s->mu);
				return s->conns[i];
			}
		}
		pthread_cond_wait(&s->cv, &s->mu);
	}
}

static void release(struct store *s, struct store_conn *c)
{
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->n_conns; i++)
		if (s->conns[i] == c)
			s->busy[i] = 0;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static int tx_begin(struct store *s, struct store_conn **c, struct fl_err *err)
{
	*c = acquire(s);
	int rc = s->drv->exec(*c, s->drv->begin_sql, NULL, 0, NULL, err);
	if (rc) {
		release(s, *c);
		*c = NULL;
	}
	return rc;
}

static int tx_commit(struct store *s, struct store_conn *c, struct fl_err *err)
{
	int rc = s->drv->exec(c, "COMMIT", NULL, 0, NULL, err);
	if (rc)
		s->drv->exec(c, "ROLLBACK", NULL, 0, NULL, NULL);
	release(s, c);
	return rc;
}

static void tx_rollback(struct store *s, struct store_conn *c)
{
	s->drv->exec(c, "ROLLBACK", NULL, 0, NULL, NULL);
	release(s, c);
}

/* Ends a transaction: commits when rc is 0, else rolls back; returns the final code. */
static int tx_end(struct store *s, struct store_conn *c, int rc, struct fl_err *err)
{
	if (rc) {
		tx_rollback(s, c);
		return rc;
	}
	return tx_commit(s, c, err);
}

/* One statement outside any explicit transaction. */
static int exec1(struct store *s, const char *sql, const struct store_val *p, int n,
		 int64_t *changes, struct fl_err *err)
{
	struct store_conn *c = acquire(s);
	int rc = s->drv->exec(c, sql, p, n, changes, err);
	release(s, c);
	return rc;
}

static int query1(struct store *s, const char *sql, const struct store_val *p, int n,
		  store_row_fn fn, void *ud, struct fl_err *err)
{
	struct store_conn *c = acquire(s);
	int rc = s->drv->query(c, sql, p, n, fn, ud, err);
	release(s, c);
	return rc;
}

/* ---- row helpers ---- */

static char *dup(const char *s)
{
	return s ? fl_strdup(s) : NULL;
}

static int64_t num(const char *s)
{
	return s ? strtoll(s, NULL, 10) : 0;
}

/* Collects rows into a growing array of structs. */
struct collect {
	void *items;
	size_t n, cap, size;
	void (*read)(void *item, const struct store_row *row);
	void (*release)(void *item);
};

static int collect_row(void *ud, const struct store_row *row)
{
	struct collect *c = ud;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->items = fl_realloc(c->items, c->cap * c->size);
	}
	void *item = (char *)c->items + c->n * c->size;
	memset(item, 0, c->size);
	c->read(item, row);
	c->n++;
	return 0;
}

/* The collected items for the caller when rc is 0; when the query failed, frees what was read
 * and returns NULL with *n 0. */
static void free_items(void *items, size_t n, size_t size, void (*release)(void *item))
{
	for (size_t i = 0; i < n; i++)
		release((char *)items + i * size);
	fl_free(items);
}

static void *collect_take(struct collect *c, int rc, size_t *n)
{
	if (rc) {
		free_items(c->items, c->n, c->size, c->release);
		c->items = NULL;
		c->n = 0;
	}
	*n = c->n;
	return c->items;
}

struct one {
	void *item;
	int found;
	void (*read)(void *item, const struct store_row *row);
};

static int one_row(void *ud, const struct store_row *row)
{
	struct one *o = ud;
	o->read(o->item, row);
	o->found = 1;
	return 1;
}

static int int_row(void *ud, const struct store_row *row)
{
	int64_t *v = ud;
	*v = num(row->col[0]);
	return 1;
}

static int text_row(void *ud, const struct store_row *row)
{
	char **v = ud;
	fl_free(*v);
	*v = dup(row->col[0]);
	return 1;
}

/* ---- open, close, migrate ---- */

struct store *store_open(const struct store_opts *opts, struct fl_err *err)
{
	struct store *s = fl_calloc(1, sizeof *s);
	s->backend = opts->backend;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->cache_mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if (opts->backend == STORE_SQLITE) {
		s->drv = &store_sqlite_driver;
		s->n_conns = 1;
	} else {
		s->drv = &store_postgres_driver;
		s->n_conns = opts->pool_size > 0 ? opts->pool_size : 4;
	}
	s->conns = fl_calloc((size_t)s->n_conns, sizeof *s->conns);
	s->busy = fl_calloc((size_t)s->n_conns, sizeof *s->busy);
	for (int i = 0; i < s->n_conns; i++) {
		if (opts->backend == STORE_SQLITE)
			s->conns[i] = store_sqlite_connect(opts->sqlite_path ? opts->sqlite_path
									 : ":memory:",
							   opts->busy_timeout_ms > 0
								   ? opts->busy_timeout_ms
								   : 5000,
							   err);
		else
			s->conns[i] = store_postgres_connect(opts->postgres_url ? opts->postgres_url
										: "",
							     err);
		if (!s->conns[i]) {
			store_free(s);
			return NULL;
		}
	}
	return s;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_conns; i++)
		if (s->conns[i])
			s->drv->close(s->conns[i]);
	fl_free(s->conns);
	fl_free(s->busy);
	for (int i = 0; i < VERSION_CACHE; i++)
		store_version_release(&s->versions[i]);
	pthread_mutex_destroy(&s->cache_mu);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	fl_free(s);
}

const char *store_backend_name(const struct store *s)
{
	return s->backend == STORE_SQLITE ? "sqlite" : "postgres";
}

int store_ping(struct store *s, struct fl_err *err)
{
	int64_t one = 0;
	int rc = query1(s, "SELECT 1", NULL, 0, int_row, &one, err);
	if (!rc && one != 1)
		rc = fl_err_set(err, FL_EDB, "the database answered SELECT 1 with %lld",
				(long long)one);
	return rc;
}

int store_schema_version(struct store *s, struct fl_err *err)
{
	int64_t v = 0;
	int rc = query1(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", NULL, 0,
			int_row, &v, err);
	return rc ? rc : (int)v;
}

int store_migrate(struct store *s, struct fl_err *err)
{
	int rc = exec1(s,
		       "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
		       "name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
		       NULL, 0, NULL, err);
	/* Two replicas creating the table at once: the loser's error is harmless. */
	if (rc == FL_ECONFLICT)
		rc = 0;
	if (rc)
		return fl_err_prefix(err, "cannot create schema_migrations");
	for (const struct fl_embed *m = store_migrations; m->name; m++) {
		int version = atoi(m->name);
		if (version <= 0)
			return fl_err_set(err, FL_EDB, "migration '%s' has no version number",
					  m->name);
		struct store_conn *c;
		if ((rc = tx_begin(s, &c, err)))
			return rc;
		if (s->drv->migration_lock_sql)
			rc = s->drv->exec(c, s->drv->migration_lock_sql, NULL, 0, NULL, err);
		int64_t applied = 0;
		if (!rc)
			rc = s->drv->query(c, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?",
					   P(I(version)), int_row, &applied, err);
		if (!rc && !applied) {
			rc = s->drv->script(c, m->data, err);
			if (!rc)
				rc = s->drv->exec(c,
						  "INSERT INTO schema_migrations (version, name, "
						  "applied_at) VALUES (?, ?, ?)",
						  P(I(version), T(m->name), I(fl_now_ms())),
						  NULL, err);
			if (!rc)
				fl_info("store", "applied migration '%s' (%s)", m->name,
					store_backend_name(s));
		}
		if ((rc = tx_end(s, c, rc, err)))
			return fl_err_prefix(err, "migration '%s'", m->name);
	}
	return 0;
}

/* ---- flows ---- */

void store_flow_release(struct store_flow *f)
{
	if (!f)
		return;
	fl_free(f->id);
	fl_free(f->display_name);
	fl_free(f->version_id);
	fl_free(f->definition);
	fl_free(f->schedule_cron);
	fl_free(f->schedule_tz);
	fl_free(f->schedule_output);
	memset(f, 0, sizeof *f);
}

static void release_flow(void *item)
{
	store_flow_release(item);
}

void store_flow_list_free(struct store_flow *flows, size_t n)
{
	free_items(flows, n, sizeof *flows, release_flow);
}

#define FLOW_COLS                                                                      \
	"f.id, f.display_name, f.version_id, f.version_number, v.definition, "         \
	"f.schedule_cron, f.schedule_tz, f.schedule_output, f.created_at, f.updated_at " \
	"FROM flows f JOIN flow_versions v ON v.id = f.version_id "

static void read_flow(void *item, const struct store_row *r)
{
	struct store_flow *f = item;
	f->id = dup(r->col[0]);
	f->display_name = dup(r->col[1]);
	f->version_id = dup(r->col[2]);
	f->version_number = (int)num(r->col[3]);
	f->definition = dup(r->col[4]);
	f->schedule_cron = dup(r->col[5]);
	f->schedule_tz = dup(r->col[6]);
	f->schedule_output = dup(r->col[7]);
	f->created_at = num(r->col[8]);
	f->updated_at = num(r->col[9]);
}

int store_flow_create(struct store *s, const struct store_flow *f, struct fl_err *err)
{
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	rc = s->drv->exec(c,
			  "INSERT INTO flows (id, display_name, version_id, version_number, "
			  "schedule_cron, schedule_tz, schedule_output, created_at, updated_at) "
			  "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
			  P(T(f->id), T(f->display_name), T(f->version_id), T(f->schedule_cron),
			    T(f->schedule_tz), T(f->schedule_output), I(f->created_at),
			    I(f->created_at)),
			  NULL, err);
	if (!rc)
		rc = s->drv->exec(c,
				  "INSERT INTO flow_versions (id, flow_id, number, display_name, "
				  "definition, created_at) VALUES (?, ?, 1, ?, ?, ?)",
				  P(T(f->version_id), T(f->id), T(f->display_name), T(f->definition),
				    I(f->created_at)),
				  NULL, err);
	return tx_end(s, c, rc, err);
}

int store_flow_update(struct store *s, const struct store_flow *f, int *number,
		      struct fl_err *err)
{
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	int64_t n = 0;
	rc = s->drv->query(c,
			   "UPDATE flows SET version_number = version_number + 1, version_id = ?, "
			   "display_name = ?, schedule_cron = ?, schedule_tz = ?, schedule_output = ?, "
			   "updated_at = ? WHERE id = ? AND deleted_at IS NULL RETURNING version_number",
			   P(T(f->version_id), T(f->display_name), T(f->schedule_cron),
			     T(f->schedule_tz), T(f->schedule_output), I(f->updated_at), T(f->id)),
			   int_row, &n, err);
	if (!rc && !n)
		rc = fl_err_set(err, FL_ENOTFOUND, "flow '%s' not found", f->id);
	if (!rc)
		rc = s->drv->exec(c,
				  "INSERT INTO flow_versions (id, flow_id, number, display_name, "
				  "definition, created_at) VALUES (?, ?, ?, ?, ?, ?)",
				  P(T(f->version_id), T(f->id), I(n), T(f->display_name),
				    T(f->definition), I(f->updated_at)),
				  NULL, err);
	if (!rc && number)
		*number = (int)n;
	return tx_end(s, c, rc, err);
}

int store_flow_delete(struct store *s, const char *flow_id, int64_t now, struct fl_err *err)
{
	int64_t changes = 0;
	int rc = exec1(s, "UPDATE flows SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
		       P(I(now), T(flow_id)), &changes, err);
	if (!rc && !changes)
		rc = fl_err_set(err, FL_ENOTFOUND, "flow '%s' not found", flow_id);
	return rc;
}

int store_flow_get(struct store *s, const char *flow_id, struct store_flow *out,
		   struct fl_err *err)
{
	memset(out, 0, sizeof *out);
	struct one o = { out, 0, read_flow };
	int rc = query1(s, "SELECT " FLOW_COLS "WHERE f.id = ? AND f.deleted_at IS NULL",
			P(T(flow_id)), one_row, &o, err);
	if (!rc && !o.found)
		rc = fl_err_set(err, FL_ENOTFOUND, "flow '%s' not found", flow_id);
	return rc;
}

/* Cursors are "<created_at>_<id>" of the last item of the previous page. */
static int parse_cursor(const char *cursor, int64_t *at, const char **id)
{
	char *end;
	errno = 0;
	long long v = strtoll(cursor, &end, 10);
	if (errno || end == cursor || *end != '_' || !end[1])
		return FL_EINVAL;
	*at = v;
	*id = end + 1;
	return 0;
}

int store_flow_list(struct store *s, const char *cursor, int limit, struct store_flow **out,
		    size_t *n, char **next, struct fl_err *err)
{
	int64_t at = -1;
	const char *after = "";
	*out = NULL;
	*n = 0;
	*next = NULL;
	if (cursor && parse_cursor(cursor, &at, &after))
		return fl_err_set(err, FL_EINVAL, "invalid cursor '%s'", cursor);
	struct collect col = { NULL, 0, 0, sizeof(struct store_flow), read_flow, release_flow };
	int rc = query1(s,
			"SELECT " FLOW_COLS "WHERE f.deleted_at IS NULL AND (f.created_at > ? OR "
			"(f.created_at = ? AND f.id > ?)) ORDER BY f.created_at, f.id LIMIT ?",
			P(I(at), I(at), T(after), I(limit + 1)), collect_row, &col, err);
	if (rc) {
		store_flow_list_free(col.items, col.n);
		return rc;
	}
	struct store_flow *flows = col.items;
	if (col.n > (size_t)limit) {
		store_flow_release(&flows[limit]);
		col.n = (size_t)limit;
		*next = fl_asprintf("%lld_%s", (long long)flows[limit - 1].created_at,
				    flows[limit - 1].id);
	}
	*out = flows;
	*n = col.n;
	return 0;
}

int store_flow_list_scheduled(struct store *s, struct store_flow **out, size_t *n,
			      struct fl_err *err)
{
	struct collect col = { NULL, 0, 0, sizeof(struct store_flow), read_flow, release_flow };
	int rc = query1(s,
			"SELECT " FLOW_COLS "WHERE f.deleted_at IS NULL AND f.schedule_cron IS NOT NULL "
			"ORDER BY f.created_at, f.id",
			NULL, 0, collect_row, &col, err);
	*out = collect_take(&col, rc, n);
	return rc;
}

void store_version_release(struct store_version *v)
{
	if (!v)
		return;
	fl_free(v->id);
	fl_free(v->flow_id);
	fl_free(v->display_name);
	fl_free(v->definition);
	memset(v, 0, sizeof *v);
}

static void read_version(void *item, const struct store_row *r)
{
	struct store_version *v = item;
	v->id = dup(r->col[0]);
	v->flow_id = dup(r->col[1]);
	v->number = (int)num(r->col[2]);
	v->display_name = dup(r->col[3]);
	v->definition = dup(r->col[4]);
	v->created_at = num(r->col[5]);
}

static void version_copy(struct store_version *dst, const struct store_version *src)
{
	dst->id = dup(src->id);
	dst->flow_id = dup(src->flow_id);
	dst->number = src->number;
	dst->display_name = dup(src->display_name);
	dst->definition = dup(src->definition);
	dst->created_at = src->created_at;
}

int store_version_get(struct store *s, const char *version_id, struct store_version *out,
		      struct fl_err *err)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->cache_mu);
	for (int i = 0; i < VERSION_CACHE; i++) {
		if (s->versions[i].id && !strcmp(s->versions[i].id, version_id)) {
			version_copy(out, &s->versions[i]);
			pthread_mutex_unlock(&s->cache_mu);
			return 0;
		}
	}
	pthread_mutex_unlock(&s->cache_mu);
	struct one o = { out, 0, read_version };
	int rc = query1(s,
			"SELECT id, flow_id, number, display_name, definition, created_at "
			"FROM flow_versions WHERE id = ?",
			P(T(version_id)), one_row, &o, err);
	if (!rc && !o.found)
		rc = fl_err_set(err, FL_ENOTFOUND, "flow version '%s' not found", version_id);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->cache_mu);
	struct store_version *slot = &s->versions[s->next_version++ % VERSION_CACHE];
	store_version_release(slot);
	version_copy(slot, out);
	pthread_mutex_unlock(&s->cache_mu);
	return 0;
}

/* ---- runs ---- */

void store_run_release(struct store_run *r)
{
	if (!r)
		return;
	fl_free(r->id);
	fl_free(r->flow_id);
	fl_free(r->flow_version_id);
	fl_free(r->trigger_output);
	fl_free(r->job_id);
	fl_free(r->steps);
	fl_free(r->failed_step);
	fl_free(r->response);
	fl_free(r->waitpoint_id);
	fl_free(r->resume_payload);
	fl_free(r->retry_of);
	memset(r, 0, sizeof *r);
}

static void release_run(void *item)
{
	store_run_release(item);
}

void store_run_list_free(struct store_run *runs, size_t n)
{
	free_items(runs, n, sizeof *runs, release_run);
}

#define RUN_COLS                                                                             \
	"id, flow_id, flow_version_id, status, synchronous, trigger_output, job_id, attempt, " \
	"created_at, updated_at, start_time, finish_time, steps, failed_step, response, "     \
	"waitpoint_id, resume_payload, retry_of, retries, requeues, peak_memory_kb "
/* The same columns without the large JSON ones, for listings. */
#define RUN_COLS_LIGHT                                                                     \
	"id, flow_id, flow_version_id, status, synchronous, NULL, job_id, attempt, "        \
	"created_at, updated_at, start_time, finish_time, NULL, failed_step, NULL, "        \
	"waitpoint_id, NULL, retry_of, retries, requeues, peak_memory_kb "

static void read_run(void *item, const struct store_row *r)
{
	struct store_run *run = item;
	run->id = dup(r->col[0]);
	run->flow_id = dup(r->col[1]);
	run->flow_version_id = dup(r->col[2]);
	if (store_run_status_parse(r->col[3], &run->status))
		run->status = STORE_RUN_INTERNAL_ERROR;
	run->synchronous = (int)num(r->col[4]);
	run->trigger_output = dup(r->col[5]);
	run->job_id = dup(r->col[6]);
	run->attempt = (int)num(r->col[7]);
	run->created_at = num(r->col[8]);
	run->updated_at = num(r->col[9]);
	run->start_time = num(r->col[10]);
	run->finish_time = num(r->col[11]);
	run->steps = dup(r->col[12]);
	run->failed_step = dup(r->col[13]);
	run->response = dup(r->col[14]);
	run->waitpoint_id = dup(r->col[15]);
	run->resume_payload = dup(r->col[16]);
	run->retry_of = dup(r->col[17]);
	run->retries = (int)num(r->col[18]);
	run->requeues = (int)num(r->col[19]);
	run->peak_memory_kb = num(r->col[20]);
}

static int get_run(struct store *s, struct store_conn *c, const char *run_id,
		   struct store_run *out, struct fl_err *err)
{
	memset(out, 0, sizeof *out);
	struct one o = { out, 0, read_run };
	int rc = s->drv->query(c, "SELECT " RUN_COLS "FROM runs WHERE id = ?", P(T(run_id)),
			       one_row, &o, err);
	if (!rc && !o.found)
		rc = fl_err_set(err, FL_ENOTFOUND, "run '%s' not found", run_id);
	return rc;
}

static int insert_run(struct store *s, struct store_conn *c, const struct store_run *r,
		      struct fl_err *err)
{
	return s->drv->exec(c,
			    "INSERT INTO runs (id, flow_id, flow_version_id, status, synchronous, "
			    "trigger_output, job_id, created_at, updated_at, retry_of) "
			    "VALUES (?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?)",
			    P(T(r->id), T(r->flow_id), T(r->flow_version_id), I(r->synchronous),
			      T(r->trigger_output ? r->trigger_output : "{}"), T(r->job_id),
			      I(r->created_at), I(r->created_at), T(r->retry_of)),
			    NULL, err);
}

int store_run_create(struct store *s, const struct store_run *r, struct fl_err *err)
{
	struct store_conn *c = acquire(s);
	int rc = insert_run(s, c, r, err);
	release(s, c);
	return rc;
}

int store_run_get(struct store *s, const char *run_id, struct store_run *out, struct fl_err *err)
{
	struct store_conn *c = acquire(s);
	int rc = get_run(s, c, run_id, out, err);
	release(s, c);
	if (rc)
		store_run_release(out);
	return rc;
}

int store_run_list(struct store *s, const struct store_run_filter *f, struct store_run **out,
		   size_t *n, char **next, struct fl_err *err)
{
	*out = NULL;
	*n = 0;
	*next = NULL;
	int64_t at = INT64_MAX;
	const char *before = "~"; /* sorts after every id character */
	if (f->cursor && parse_cursor(f->cursor, &at, &before))
		return fl_err_set(err, FL_EINVAL, "invalid cursor '%s'", f->cursor);
	int limit = f->limit < 1 ? 1 : f->limit > 1000 ? 1000 : f->limit;
	/* A fixed IN list padded with NULLs (which match nothing) keeps the SQL text constant, so
	 * that the statement is prepared once. */
	struct store_val st[STORE_RUN_STATUS_COUNT];
	for (int i = 0; i < STORE_RUN_STATUS_COUNT; i++)
		st[i] = i < f->n_statuses ? T(store_run_status_name(f->statuses[i])) : T(NULL);
	struct collect col = { NULL, 0, 0, sizeof(struct store_run), read_run, release_run };
	int rc;
	if (f->flow_id)
		rc = query1(s,
			    "SELECT " RUN_COLS_LIGHT "FROM runs WHERE flow_id = ? AND "
			    "(? = 0 OR status IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)) AND "
			    "(created_at < ? OR (created_at = ? AND id < ?)) "
			    "ORDER BY created_at DESC, id DESC LIMIT ?",
			    P(T(f->flow_id), I(f->n_statuses), st[0], st[1], st[2], st[3], st[4],
			      st[5], st[6], st[7], st[8], st[9], I(at), I(at), T(before),
			      I(limit + 1)),
			    collect_row, &col, err);
	else
		rc = query1(s,
			    "SELECT " RUN_COLS_LIGHT "FROM runs WHERE "
			    "(? = 0 OR status IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)) AND "
			    "(created_at < ? OR (created_at = ? AND id < ?)) "
			    "ORDER BY created_at DESC, id DESC LIMIT ?",
			    P(I(f->n_statuses), st[0], st[1], st[2], st[3], st[4], st[5], st[6],
			      st[7], st[8], st[9], I(at), I(at), T(before), I(limit + 1)),
			    collect_row, &col, err);
	if (rc) {
		store_run_list_free(col.items, col.n);
		return rc;
	}
	struct store_run *runs = col.items;
	if (col.n > (size_t)limit) {
		store_run_release(&runs[limit]);
		col.n = (size_t)limit;
		*next = fl_asprintf("%lld_%s", (long long)runs[limit - 1].created_at,
				    runs[limit - 1].id);
	}
	*out = runs;
	*n = col.n;
	return 0;
}

static int count_row(void *ud, const struct store_row *row)
{
	int64_t *counts = ud;
	enum store_run_status st;
	if (!store_run_status_parse(row->col[0], &st))
		counts[st] = num(row->col[1]);
	return 0;
}

int store_run_count_by_status(struct store *s, int64_t counts[STORE_RUN_STATUS_COUNT],
			      struct fl_err *err)
{
	memset(counts, 0, sizeof(int64_t) * STORE_RUN_STATUS_COUNT);
	return query1(s, "SELECT status, COUNT(*) FROM runs GROUP BY status", NULL, 0, count_row,
		      counts, err);
}

int store_run_list_stale(struct store *s, enum store_run_status status, int64_t before, int limit,
			 struct store_run **out, size_t *n, struct fl_err *err)
{
	struct collect col = { NULL, 0, 0, sizeof(struct store_run), read_run, release_run };
	int rc = query1(s,
			"SELECT " RUN_COLS_LIGHT "FROM runs WHERE status = ? AND updated_at < ? "
			"ORDER BY updated_at LIMIT ?",
			P(T(store_run_status_name(status)), I(before), I(limit)), collect_row, &col,
			err);
	*out = collect_take(&col, rc, n);
	return rc;
}

/* ---- attempts ---- */

static void release_attempt(void *item)
{
	struct store_attempt *a = item;
	fl_free(a->job_id);
	fl_free(a->worker);
	fl_free(a->execution_type);
	fl_free(a->status);
}

void store_attempt_list_free(struct store_attempt *a, size_t n)
{
	free_items(a, n, sizeof *a, release_attempt);
}

static void read_attempt(void *item, const struct store_row *r)
{
	struct store_attempt *a = item;
	a->attempt = (int)num(r->col[0]);
	a->job_id = dup(r->col[1]);
	a->worker = dup(r->col[2]);
	a->execution_type = dup(r->col[3]);
	a->started_at = num(r->col[4]);
	a->finished_at = num(r->col[5]);
	a->status = dup(r->col[6]);
	a->replayed = (int)num(r->col[7]);
}

int store_attempt_list(struct store *s, const char *run_id, struct store_attempt **out, size_t *n,
		       struct fl_err *err)
{
	struct collect col = { NULL, 0, 0, sizeof(struct store_attempt), read_attempt,
			       release_attempt };
	int rc = query1(s,
			"SELECT attempt, job_id, worker, execution_type, started_at, finished_at, "
			"status, (SELECT COUNT(*) FROM step_replays p WHERE p.run_id = a.run_id AND "
			"p.attempt = a.attempt) FROM run_attempts a WHERE run_id = ? ORDER BY attempt",
			P(T(run_id)), collect_row, &col, err);
	*out = collect_take(&col, rc, n);
	return rc;
}

/* Closes the run's open attempt row with status (a run status name, or ABANDONED). */
static int close_attempt(struct store *s, struct store_conn *c, const char *run_id,
			 const char *status, int64_t now, struct fl_err *err)
{
	return s->drv->exec(c,
			    "UPDATE run_attempts SET finished_at = ?, status = ? "
			    "WHERE run_id = ? AND finished_at IS NULL",
			    P(I(now), T(status), T(run_id)), NULL, err);
}

static int start_locked(struct store *s, struct store_conn *c, const struct store_start *st,
			struct store_run *run, int *attempt, struct fl_err *err)
{
	int rc;
	if (st->delivery) {
		int64_t same = 0;
		rc = s->drv->query(c,
				   "SELECT a.attempt FROM run_attempts a JOIN runs r ON r.id = a.run_id "
				   "WHERE a.run_id = ? AND a.delivery = ? AND r.attempt = a.attempt "
				   "AND r.status = 'RUNNING'",
				   P(T(st->run_id), T(st->delivery)), int_row, &same, err);
		if (rc)
			return rc;
		if (same) {
			*attempt = (int)same;
			return get_run(s, c, st->run_id, run, err);
		}
	}
	if ((rc = get_run(s, c, st->run_id, run, err)))
		return rc;
	if (store_run_status_is_final(run->status))
		return fl_err_set(err, FL_ECONFLICT, "run '%s' is %s", st->run_id,
				  store_run_status_name(run->status));
	/* A job that is not the run's current one is a leftover (a delayed resume overtaken by a
	 * call, a retry's predecessor): running it would supersede the real attempt. */
	if (st->job_id && run->job_id && strcmp(st->job_id, run->job_id))
		return fl_err_set(err, FL_ECONFLICT, "job '%s' is not the current job '%s' of run '%s'",
				  st->job_id, run->job_id, st->run_id);
	int resume_delay = 0;
	if (run->status == STORE_RUN_PAUSED) {
		int64_t changes = 0;
		if (st->execution_type && !strcmp(st->execution_type, "RESUME") && run->waitpoint_id)
			rc = s->drv->exec(c,
					  "UPDATE waitpoints SET state = 'USED', used_at = ? WHERE id = ? "
					  "AND run_id = ? AND state = 'OPEN' AND type = 'DELAY'",
					  P(I(st->now), T(run->waitpoint_id), T(st->run_id)), &changes,
					  err);
		if (rc)
			return rc;
		if (!changes)
			return fl_err_set(err, FL_ECONFLICT, "run '%s' is paused", st->run_id);
		resume_delay = 1;
	}
	/* One statement moves the run on and gives back its row as it now is: on PostgreSQL the
	 * first read locked nothing, and a writer may since have changed a column that the
	 * guard does not look at. */
	int next = run->attempt + 1;
	struct store_run now;
	memset(&now, 0, sizeof now);
	struct one o = { &now, 0, read_run };
	rc = s->drv->query(c,
			   "UPDATE runs SET status = 'RUNNING', attempt = attempt + 1, "
			   "start_time = COALESCE(start_time, ?), updated_at = ?, "
			   "job_id = COALESCE(?, job_id), "
			   "resume_payload = CASE WHEN ? = 1 THEN NULL ELSE resume_payload END "
			   "WHERE id = ? AND attempt = ? AND status = ? RETURNING " RUN_COLS,
			   P(I(st->now), I(st->now), T(st->job_id), I(resume_delay), T(st->run_id),
			     I(run->attempt), T(store_run_status_name(run->status))),
			   one_row, &o, err);
	if (!rc && !o.found)
		rc = fl_err_set(err, FL_ECONFLICT, "run '%s' changed while starting", st->run_id);
	if (!rc)
		rc = close_attempt(s, c, st->run_id, "ABANDONED", st->now, err);
	if (!rc)
		rc = s->drv->exec(c,
				  "INSERT INTO run_attempts (run_id, attempt, job_id, delivery, worker, "
				  "execution_type, started_at, replayed) VALUES (?, ?, ?, ?, ?, ?, ?, "
				  "(SELECT COUNT(*) FROM steps WHERE run_id = ?))",
				  P(T(st->run_id), I(next), T(st->job_id), T(st->delivery),
				    T(st->worker), T(st->execution_type), I(st->now), T(st->run_id)),
				  NULL, err);
	if (rc) {
		store_run_release(&now);
		return rc;
	}
	store_run_release(run);
	*run = now;
	*attempt = run->attempt;
	return 0;
}

static int list_steps(struct store *s, struct store_conn *c, const char *run_id,
		      struct store_step **out, size_t *n, struct fl_err *err);

int store_run_start_with_steps(struct store *s, const struct store_start *st,
			       struct store_run *out, int *attempt, struct store_step **steps,
			       size_t *n_steps, struct fl_err *err)
{
	struct store_conn *c;
	memset(out, 0, sizeof *out);
	if (steps) {
		*steps = NULL;
		*n_steps = 0;
	}
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	rc = start_locked(s, c, st, out, attempt, err);
	if (!rc && steps)
		rc = list_steps(s, c, st->run_id, steps, n_steps, err);
	rc = tx_end(s, c, rc, err);
	if (rc) {
		store_run_release(out);
		if (steps) {
			store_step_list_free(*steps, *n_steps);
			*steps = NULL;
			*n_steps = 0;
		}
	}
	return rc;
}

int store_run_start(struct store *s, const struct store_start *st, struct store_run *out,
		    int *attempt, struct fl_err *err)
{
	return store_run_start_with_steps(s, st, out, attempt, NULL, NULL, err);
}

/* Checks that attempt is the run's current, running attempt: every write on behalf of an
 * attempt starts here, so a superseded attempt can write nothing. It reads rather than writes
 * the run (a checkpoint costs no write of the run's row); on PostgreSQL the share lock makes a
 * concurrent start (which updates the row) wait for this transaction, or this one for it. */
struct attempt_row {
	int64_t attempt;
	char status[32];
	int found;
};

static int attempt_row(void *ud, const struct store_row *row)
{
	struct attempt_row *a = ud;
	a->attempt = num(row->col[0]);
	snprintf(a->status, sizeof a->status, "%s", row->col[1] ? row->col[1] : "");
	a->found = 1;
	return 1;
}

static int check_attempt(struct store *s, struct store_conn *c, const char *run_id, int attempt,
			 struct fl_err *err)
{
	struct attempt_row a = { 0 };
	int rc = s->drv->query(c,
			       s->drv->row_locks
				       ? "SELECT attempt, status FROM runs WHERE id = ? FOR SHARE"
				       : "SELECT attempt, status FROM runs WHERE id = ?",
			       P(T(run_id)), attempt_row, &a, err);
	if (rc)
		return rc;
	if (!a.found)
		return fl_err_set(err, FL_ENOTFOUND, "run '%s' not found", run_id);
	if (a.attempt != attempt)
		return fl_err_set(err, FL_ECONFLICT,
				  "attempt %d of run '%s' was superseded by attempt %lld", attempt,
				  run_id, (long long)a.attempt);
	if (strcmp(a.status, "RUNNING"))
		return fl_err_set(err, FL_ECONFLICT, "run '%s' is %s, not RUNNING", run_id,
				  a.status);
	return 0;
}

int store_attempt_replayed(struct store *s, const char *run_id, int attempt,
			   const char *const *paths, size_t n, int64_t now, struct fl_err *err)
{
	if (!n)
		return 0;
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	rc = check_attempt(s, c, run_id, attempt, err);
	for (size_t i = 0; !rc && i < n; i++)
		rc = s->drv->exec(c,
				  "INSERT INTO step_replays (run_id, attempt, path) VALUES (?, ?, ?) "
				  "ON CONFLICT DO NOTHING",
				  P(T(run_id), I(attempt), T(paths[i])), NULL, err);
	return tx_end(s, c, rc, err);
}

static void read_replay(void *item, const struct store_row *r)
{
	struct store_replay *p = item;
	p->attempt = (int)num(r->col[0]);
	p->path = dup(r->col[1]);
}

static void release_replay(void *item)
{
	fl_free(((struct store_replay *)item)->path);
}

void store_replay_list_free(struct store_replay *r, size_t n)
{
	free_items(r, n, sizeof *r, release_replay);
}

int store_replay_list(struct store *s, const char *run_id, struct store_replay **out, size_t *n,
		      struct fl_err *err)
{
	struct collect col = { NULL, 0, 0, sizeof(struct store_replay), read_replay, release_replay };
	int rc = query1(s,
			"SELECT attempt, path FROM step_replays WHERE run_id = ? ORDER BY attempt, path",
			P(T(run_id)), collect_row, &col, err);
	*out = collect_take(&col, rc, n);
	return rc;
}

/* ---- steps ---- */

static void release_step(void *item)
{
	struct store_step *st = item;
	fl_free(st->path);
	fl_free(st->name);
	fl_free(st->type);
	fl_free(st->status);
	fl_free(st->record);
}

void store_step_list_free(struct store_step *steps, size_t n)
{
	free_items(steps, n, sizeof *steps, release_step);
}

int store_steps_put(struct store *s, const char *run_id, int attempt,
		    const struct store_step *steps, size_t n, int64_t now, struct fl_err *err)
{
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	int64_t last = 0;
	rc = check_attempt(s, c, run_id, attempt, err);
	if (!rc)
		rc = s->drv->query(c, "SELECT COALESCE(MAX(seq), 0) FROM steps WHERE run_id = ?",
				   P(T(run_id)), int_row, &last, err);
	for (size_t i = 0; !rc && i < n; i++) {
		const struct store_step *st = &steps[i];
		if (!st->path || !*st->path || !st->status || !st->record) {
			rc = fl_err_set(err, FL_EINVAL, "step %zu has no path, status or record", i);
			break;
		}
		/* An update keeps the first seq: a loop keeps its place while its record grows. */
		rc = s->drv->exec(c,
				  "INSERT INTO steps (run_id, path, seq, name, type, status, record, "
				  "duration_ms, attempt, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
				  "ON CONFLICT (run_id, path) DO UPDATE SET name = excluded.name, "
				  "type = excluded.type, status = excluded.status, "
				  "record = excluded.record, duration_ms = excluded.duration_ms, "
				  "attempt = excluded.attempt, updated_at = excluded.updated_at",
				  P(T(run_id), T(st->path), I(last + 1 + (int64_t)i),
				    T(st->name ? st->name : st->path), T(st->type), T(st->status),
				    T(st->record), I(st->duration_ms), I(attempt), I(now)),
				  NULL, err);
	}
	return tx_end(s, c, rc, err);
}

static void read_step(void *item, const struct store_row *r)
{
	struct store_step *st = item;
	st->path = dup(r->col[0]);
	st->name = dup(r->col[1]);
	st->type = dup(r->col[2]);
	st->status = dup(r->col[3]);
	st->record = dup(r->col[4]);
	st->duration_ms = num(r->col[5]);
	st->attempt = (int)num(r->col[6]);
	st->seq = num(r->col[7]);
	st->updated_at = num(r->col[8]);
}

static int list_steps(struct store *s, struct store_conn *c, const char *run_id,
		      struct store_step **out, size_t *n, struct fl_err *err)
{
	struct collect col = { NULL, 0, 0, sizeof(struct store_step), read_step, release_step };
	int rc = s->drv->query(c,
			       "SELECT path, name, type, status, record, duration_ms, attempt, seq, "
			       "updated_at FROM steps WHERE run_id = ? ORDER BY seq",
			       P(T(run_id)), collect_row, &col, err);
	*out = collect_take(&col, rc, n);
	return rc;
}

int store_steps_list(struct store *s, const char *run_id, struct store_step **out, size_t *n,
		     struct fl_err *err)
{
	struct store_conn *c = acquire(s);
	int rc = list_steps(s, c, run_id, out, n, err);
	release(s, c);
	return rc;
}

int store_run_respond(struct store *s, const char *run_id, int attempt, const char *response,
		      int64_t now, int *stored, struct fl_err *err)
{
	*stored = 0;
	int64_t changes = 0;
	/* One guarded statement in the common case; only a refusal needs a second look. */
	int rc = exec1(s,
		       "UPDATE runs SET response = ? WHERE id = ? AND attempt = ? "
		       "AND status = 'RUNNING' AND response IS NULL",
		       P(T(response), T(run_id), I(attempt)), &changes, err);
	if (rc || changes) {
		*stored = changes > 0;
		return rc;
	}
	struct store_conn *c = acquire(s);
	rc = check_attempt(s, c, run_id, attempt, err);
	release(s, c);
	return rc; /* 0: a response was stored already */
}

/* ---- results ---- */

void store_job_release(struct store_job *j)
{
	if (!j)
		return;
	fl_free(j->job_id);
	memset(j, 0, sizeof *j);
}

static void set_job(struct store_job *job, const char *execution_type, int64_t delay_ms,
		    const char *fmt, const char *a, const char *b)
{
	job->needed = 1;
	job->execution_type = execution_type;
	job->delay_ms = delay_ms > 0 ? delay_ms : 0;
	fl_free(job->job_id);
	job->job_id = b ? fl_asprintf(fmt, a, b) : fl_asprintf(fmt, a);
}

void store_waitpoint_release(struct store_waitpoint *w)
{
	if (!w)
		return;
	fl_free(w->id);
	fl_free(w->run_id);
	fl_free(w->step_path);
	fl_free(w->payload);
	memset(w, 0, sizeof *w);
}

static void read_waitpoint(void *item, const struct store_row *r)
{
	struct store_waitpoint *w = item;
	w->id = dup(r->col[0]);
	w->run_id = dup(r->col[1]);
	w->step_path = dup(r->col[2]);
	w->type = r->col[3] && !strcmp(r->col[3], "DELAY") ? STORE_WAITPOINT_DELAY
							    : STORE_WAITPOINT_WEBHOOK;
	w->resume_at = num(r->col[4]);
	w->state = !r->col[5] || !strcmp(r->col[5], "USED")	? STORE_WAITPOINT_USED
		   : !strcmp(r->col[5], "EARLY")		? STORE_WAITPOINT_EARLY
								: STORE_WAITPOINT_OPEN;
	w->payload = dup(r->col[6]);
	w->created_at = num(r->col[7]);
	w->used_at = num(r->col[8]);
}

static int get_waitpoint(struct store *s, struct store_conn *c, const char *id,
			 struct store_waitpoint *out, struct fl_err *err)
{
	memset(out, 0, sizeof *out);
	struct one o = { out, 0, read_waitpoint };
	int rc = s->drv->query(c,
			       "SELECT id, run_id, step_path, type, resume_at, state, payload, "
			       "created_at, used_at FROM waitpoints WHERE id = ?",
			       P(T(id)), one_row, &o, err);
	if (!rc && !o.found)
		rc = fl_err_set(err, FL_ENOTFOUND, "waitpoint '%s' not found", id);
	return rc;
}

int store_waitpoint_get(struct store *s, const char *waitpoint_id, struct store_waitpoint *out,
			struct fl_err *err)
{
	struct store_conn *c = acquire(s);
	int rc = get_waitpoint(s, c, waitpoint_id, out, err);
	release(s, c);
	if (rc)
		store_waitpoint_release(out);
	return rc;
}

static const char *waitpoint_type_name(enum store_waitpoint_type t)
{
	return t == STORE_WAITPOINT_DELAY ? "DELAY" : "WEBHOOK";
}

static int finish_paused(struct store *s, struct store_conn *c, const struct store_finish *f,
			 struct store_job *job, struct fl_err *err)
{
	const struct store_pause *p = f->pause;
	if (!p || !p->waitpoint_id || !*p->waitpoint_id)
		return fl_err_set(err, FL_EINVAL, "a PAUSED result needs its waitpoint");
	struct store_waitpoint wp;
	int rc = get_waitpoint(s, c, p->waitpoint_id, &wp, err);
	int exists = rc == 0;
	if (rc == FL_ENOTFOUND)
		rc = 0;
	if (!rc && exists && strcmp(wp.run_id, f->run_id))
		rc = fl_err_set(err, FL_ECONFLICT, "waitpoint '%s' belongs to another run",
				p->waitpoint_id);
	if (rc) {
		store_waitpoint_release(&wp);
		return rc;
	}
	const char *type = waitpoint_type_name(p->type);
	int64_t resume_at = p->type == STORE_WAITPOINT_DELAY ? p->resume_at : 0;
	if (exists && wp.state == STORE_WAITPOINT_EARLY && p->type == STORE_WAITPOINT_WEBHOOK) {
		/* The resume came first: apply it now instead of pausing. */
		set_job(job, "RESUME", 0, "%s_%s", f->run_id, p->waitpoint_id);
		rc = s->drv->exec(c,
				  "UPDATE waitpoints SET state = 'USED', used_at = ?, step_path = ?, "
				  "type = ?, resume_at = NULL WHERE id = ?",
				  P(I(f->now), T(p->step_path), T(type), T(p->waitpoint_id)), NULL, err);
		if (!rc)
			rc = s->drv->exec(c,
					  "UPDATE runs SET status = 'QUEUED', waitpoint_id = ?, "
					  "resume_payload = ?, job_id = ?, steps = COALESCE(?, steps), "
					  "response = COALESCE(response, ?), updated_at = ? WHERE id = ?",
					  P(T(p->waitpoint_id), T(wp.payload), T(job->job_id), T(f->steps),
					    T(f->response), I(f->now), T(f->run_id)),
					  NULL, err);
		store_waitpoint_release(&wp);
		return rc;
	}
	/* Otherwise the waitpoint opens: new, or opened again when the same step pauses once more
	 * (a retried run), or an early call to a delay, which only its delayed job resumes. */
	if (exists)
		rc = s->drv->exec(c,
				  "UPDATE waitpoints SET state = 'OPEN', payload = NULL, used_at = NULL, "
				  "step_path = ?, type = ?, resume_at = ? WHERE id = ?",
				  P(T(p->step_path), T(type), I0(resume_at), T(p->waitpoint_id)), NULL,
				  err);
	else
		rc = s->drv->exec(c,
				  "INSERT INTO waitpoints (id, run_id, step_path, type, resume_at, state, "
				  "created_at) VALUES (?, ?, ?, ?, ?, 'OPEN', ?)",
				  P(T(p->waitpoint_id), T(f->run_id), T(p->step_path), T(type),
				    I0(resume_at), I(f->now)),
				  NULL, err);
	const char *job_id = NULL;
	if (!rc && p->type == STORE_WAITPOINT_DELAY) {
		set_job(job, "RESUME", resume_at - f->now, "%s_%s", f->run_id, p->waitpoint_id);
		job_id = job->job_id;
	}
	if (!rc)
		rc = s->drv->exec(c,
				  "UPDATE runs SET status = 'PAUSED', waitpoint_id = ?, "
				  "resume_payload = NULL, job_id = COALESCE(?, job_id), "
				  "steps = COALESCE(?, steps), response = COALESCE(response, ?), "
				  "updated_at = ? WHERE id = ?",
				  P(T(p->waitpoint_id), T(job_id), T(f->steps), T(f->response),
				    I(f->now), T(f->run_id)),
				  NULL, err);
	store_waitpoint_release(&wp);
	return rc;
}

static int finish_locked(struct store *s, struct store_conn *c, const struct store_finish *f,
			 struct store_job *job, struct fl_err *err)
{
	if (f->status == STORE_RUN_QUEUED || f->status == STORE_RUN_RUNNING ||
	    (unsigned)f->status >= STORE_RUN_STATUS_COUNT)
		return fl_err_set(err, FL_EINVAL, "a run result cannot be %s",
				  store_run_status_name(f->status));
	struct store_run run;
	int rc = get_run(s, c, f->run_id, &run, err);
	if (rc)
		return rc;
	const char *status = store_run_status_name(f->status);
	if (run.attempt != f->attempt || run.status != STORE_RUN_RUNNING) {
		/* The same result posted twice (a retried request, or /pause then /result) succeeds
		 * and changes nothing, even if a later attempt has started since; anything else
		 * means the run moved on without this attempt. */
		char *ended = NULL;
		rc = s->drv->query(c,
				   "SELECT status FROM run_attempts WHERE run_id = ? AND attempt = ?",
				   P(T(f->run_id), I(f->attempt)), text_row, &ended, err);
		if (!rc && !(ended && !strcmp(ended, status))) {
			if (run.attempt != f->attempt)
				rc = fl_err_set(err, FL_ECONFLICT,
						"attempt %d of run '%s' was superseded by attempt %d",
						f->attempt, f->run_id, run.attempt);
			else
				rc = fl_err_set(err, FL_ECONFLICT, "run '%s' is already %s",
						f->run_id, store_run_status_name(run.status));
		}
		fl_free(ended);
		store_run_release(&run);
		return rc;
	} else if (f->status == STORE_RUN_PAUSED) {
		rc = finish_paused(s, c, f, job, err);
	} else {
		rc = s->drv->exec(c,
				  "UPDATE runs SET status = ?, finish_time = ?, updated_at = ?, "
				  "steps = COALESCE(?, steps), failed_step = ?, "
				  "response = COALESCE(response, ?), resume_payload = NULL, "
				  "peak_memory_kb = ? WHERE id = ? AND status = 'RUNNING'",
				  P(T(status), I(f->now), I(f->now), T(f->steps), T(f->failed_step),
				    T(f->response), store_v_int0(f->peak_memory_kb > 0 ? f->peak_memory_kb : 0),
				    T(f->run_id)),
				  NULL, err);
		if (!rc)
			rc = s->drv->exec(c,
					  "UPDATE waitpoints SET state = 'USED', used_at = ? "
				     "WHERE run_id = ? AND state <> 'USED'",
					  P(I(f->now), T(f->run_id)), NULL, err);
	}
	if (!rc)
		rc = close_attempt(s, c, f->run_id, status, f->now, err);
	store_run_release(&run);
	return rc;
}

int store_run_finish_get(struct store *s, const struct store_finish *f, struct store_job *job,
			 struct store_run *after, struct fl_err *err)
{
	memset(job, 0, sizeof *job);
	if (after)
		memset(after, 0, sizeof *after);
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	rc = finish_locked(s, c, f, job, err);
	if (!rc && after)
		rc = get_run(s, c, f->run_id, after, err);
	rc = tx_end(s, c, rc, err);
	if (rc) {
		store_job_release(job);
		if (after)
			store_run_release(after);
	}
	return rc;
}

int store_run_finish(struct store *s, const struct store_finish *f, struct store_job *job,
		     struct fl_err *err)
{
	return store_run_finish_get(s, f, job, NULL, err);
}

int store_run_retry_pending(struct store *s, const char *run_id, int attempt,
			    enum store_run_status status, int64_t now, struct fl_err *err)
{
	if (!is_failure(status))
		return fl_err_set(err, FL_EINVAL, "%s is not a failure",
				  store_run_status_name(status));
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	struct store_run run;
	rc = get_run(s, c, run_id, &run, err);
	if (!rc && run.attempt != attempt) {
		rc = fl_err_set(err, FL_ECONFLICT,
				"attempt %d of run '%s' was superseded by attempt %d", attempt, run_id,
				run.attempt);
	} else if (!rc && run.status == STORE_RUN_QUEUED) {
		char *ended = NULL;
		rc = s->drv->query(c,
				   "SELECT status FROM run_attempts WHERE run_id = ? AND attempt = ?",
				   P(T(run_id), I(attempt)), text_row, &ended, err);
		if (!rc && !(ended && !strcmp(ended, store_run_status_name(status))))
			rc = fl_err_set(err, FL_ECONFLICT, "run '%s' is QUEUED", run_id);
		fl_free(ended);
	} else if (!rc && run.status != STORE_RUN_RUNNING) {
		rc = fl_err_set(err, FL_ECONFLICT, "run '%s' is %s", run_id,
				store_run_status_name(run.status));
	} else if (!rc) {
		rc = s->drv->exec(c,
				  "UPDATE runs SET status = 'QUEUED', updated_at = ? WHERE id = ? "
				  "AND status = 'RUNNING' AND attempt = ?",
				  P(I(now), T(run_id), I(attempt)), NULL, err);
		if (!rc)
			rc = close_attempt(s, c, run_id, store_run_status_name(status), now, err);
	}
	if (run.id)
		store_run_release(&run);
	return tx_end(s, c, rc, err);
}

static char *failed_step_json(const char *message)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "name", "", "displayName", "", "message",
			      message ? message : "");
	char *text = fl_json_dump(o);
	json_decref(o);
	char *out = fl_strdup(text);
	free(text);
	return out;
}

int store_run_abandon(struct store *s, const char *run_id, enum store_run_status expect,
		      int expect_attempt, enum store_run_status status, const char *message,
		      int64_t now, struct fl_err *err)
{
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	char *failed = failed_step_json(message);
	int64_t changes = 0;
	rc = s->drv->exec(c,
			  "UPDATE runs SET status = ?, finish_time = ?, updated_at = ?, "
			  "failed_step = COALESCE(failed_step, ?) WHERE id = ? AND status = ? "
			  "AND attempt = ?",
			  P(T(store_run_status_name(status)), I(now), I(now), T(failed), T(run_id),
			    T(store_run_status_name(expect)), I(expect_attempt)),
			  &changes, err);
	fl_free(failed);
	if (!rc && !changes)
		rc = fl_err_set(err, FL_ECONFLICT, "run '%s' changed meanwhile", run_id);
	if (!rc)
		rc = close_attempt(s, c, run_id, store_run_status_name(status), now, err);
	if (!rc)
		rc = s->drv->exec(c, "UPDATE waitpoints SET state = 'USED', used_at = ? "
				     "WHERE run_id = ? AND state <> 'USED'",
				  P(I(now), T(run_id)), NULL, err);
	return tx_end(s, c, rc, err);
}

int store_run_requeued(struct store *s, const char *run_id, enum store_run_status expect,
		       int64_t now, struct fl_err *err)
{
	int64_t changes = 0;
	int rc = exec1(s,
		       "UPDATE runs SET requeues = requeues + 1, updated_at = ? WHERE id = ? "
		       "AND status = ?",
		       P(I(now), T(run_id), T(store_run_status_name(expect))), &changes, err);
	if (!rc && !changes)
		rc = fl_err_set(err, FL_ECONFLICT, "run '%s' changed meanwhile", run_id);
	return rc;
}

int store_run_cancel(struct store *s, const char *run_id, int64_t now, struct fl_err *err)
{
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	int64_t changes = 0;
	rc = s->drv->exec(c,
			  "UPDATE runs SET status = 'CANCELED', finish_time = ?, updated_at = ? "
			  "WHERE id = ? AND status IN ('QUEUED', 'PAUSED')",
			  P(I(now), I(now), T(run_id)), &changes, err);
	if (!rc && !changes) {
		struct store_run run;
		rc = get_run(s, c, run_id, &run, err);
		if (!rc)
			rc = fl_err_set(err, FL_ECONFLICT,
					"run '%s' is %s: only QUEUED or PAUSED runs can be canceled",
					run_id, store_run_status_name(run.status));
		store_run_release(&run);
	}
	if (!rc)
		rc = s->drv->exec(c, "UPDATE waitpoints SET state = 'USED', used_at = ? "
				     "WHERE run_id = ? AND state <> 'USED'",
				  P(I(now), T(run_id)), NULL, err);
	if (!rc)
		rc = close_attempt(s, c, run_id, "CANCELED", now, err);
	return tx_end(s, c, rc, err);
}

int store_run_retry_from_failed(struct store *s, const char *run_id, int64_t now,
				struct store_job *job, struct fl_err *err)
{
	memset(job, 0, sizeof *job);
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	struct store_run run;
	rc = get_run(s, c, run_id, &run, err);
	if (!rc && !is_failure(run.status))
		rc = fl_err_set(err, FL_ECONFLICT,
				"run '%s' is %s: only a failed run can be retried from its failed step",
				run_id, store_run_status_name(run.status));
	if (!rc) {
		char n[16];
		snprintf(n, sizeof n, "%d", run.retries + 1);
		set_job(job, "BEGIN", 0, "%s_retry%s", run_id, n);
		rc = s->drv->exec(c, "DELETE FROM steps WHERE run_id = ? AND status <> 'SUCCEEDED'",
				  P(T(run_id)), NULL, err);
	}
	int64_t changes = 0;
	if (!rc)
		rc = s->drv->exec(c,
				  "UPDATE runs SET status = 'QUEUED', retries = retries + 1, job_id = ?, "
				  "finish_time = NULL, failed_step = NULL, response = NULL, steps = NULL, "
				  "waitpoint_id = NULL, resume_payload = NULL, peak_memory_kb = NULL, "
				  "updated_at = ? WHERE id = ? AND status = ?",
				  P(T(job->job_id), I(now), T(run_id),
				    T(store_run_status_name(run.status))),
				  &changes, err);
	if (!rc && !changes)
		rc = fl_err_set(err, FL_ECONFLICT, "run '%s' changed meanwhile", run_id);
	store_run_release(&run);
	rc = tx_end(s, c, rc, err);
	if (rc)
		store_job_release(job);
	return rc;
}

/* ---- waitpoints ---- */

static int resume_locked(struct store *s, struct store_conn *c, const char *run_id,
			 const char *waitpoint_id, const char *payload, int64_t now,
			 enum store_resume_outcome *outcome, struct store_job *job,
			 struct fl_err *err)
{
	struct store_waitpoint wp;
	struct store_run run;
	memset(&run, 0, sizeof run);
	int rc = get_waitpoint(s, c, waitpoint_id, &wp, err);
	int exists = rc == 0;
	if (rc == FL_ENOTFOUND)
		rc = 0;
	if (!rc && exists && strcmp(wp.run_id, run_id))
		rc = fl_err_set(err, FL_ENOTFOUND, "waitpoint '%s' not found", waitpoint_id);
	else if (!rc && exists && wp.state != STORE_WAITPOINT_OPEN)
		rc = fl_err_set(err, FL_ECONFLICT, "waitpoint '%s' was already used", waitpoint_id);
	else if (!rc && exists && wp.type == STORE_WAITPOINT_DELAY)
		rc = fl_err_set(err, FL_EINVAL, "waitpoint '%s' is a delay: it resumes by itself",
				waitpoint_id);
	if (!rc)
		rc = get_run(s, c, run_id, &run, err);
	if (rc == FL_ENOTFOUND)
		fl_err_set(err, FL_ENOTFOUND, "waitpoint '%s' not found", waitpoint_id);
	if (!rc && store_run_status_is_final(run.status))
		rc = fl_err_set(err, FL_ECONFLICT, "run '%s' is %s", run_id,
				store_run_status_name(run.status));
	if (!rc && run.status == STORE_RUN_PAUSED &&
	    !(exists && run.waitpoint_id && !strcmp(run.waitpoint_id, waitpoint_id)))
		rc = fl_err_set(err, FL_ENOTFOUND, "run '%s' is not paused on waitpoint '%s'", run_id,
				waitpoint_id);
	int64_t changes = 0;
	if (!rc && run.status == STORE_RUN_PAUSED) {
		/* The guard on state = 'OPEN' is what makes two concurrent calls resume once. */
		rc = s->drv->exec(c,
				  "UPDATE waitpoints SET state = 'USED', used_at = ?, payload = ? "
				  "WHERE id = ? AND state = 'OPEN'",
				  P(I(now), T(payload), T(waitpoint_id)), &changes, err);
		if (!rc && !changes)
			rc = fl_err_set(err, FL_ECONFLICT, "waitpoint '%s' was already used",
					waitpoint_id);
		if (!rc) {
			set_job(job, "RESUME", 0, "%s_%s", run_id, waitpoint_id);
			*outcome = STORE_RESUME_ENQUEUE;
			rc = s->drv->exec(c,
					  "UPDATE waitpoints SET state = 'USED', used_at = ? "
					  "WHERE run_id = ? AND state = 'OPEN'",
					  P(I(now), T(run_id)), NULL, err);
		}
		if (!rc)
			rc = s->drv->exec(c,
					  "UPDATE runs SET status = 'QUEUED', resume_payload = ?, "
					  "job_id = ?, updated_at = ? WHERE id = ? AND status = 'PAUSED'",
					  P(T(payload), T(job->job_id), I(now), T(run_id)), &changes,
					  err);
		if (!rc && !changes)
			rc = fl_err_set(err, FL_ECONFLICT, "run '%s' changed meanwhile", run_id);
	} else if (!rc) {
		/* The pause has not landed: keep the call. A concurrent second call loses on the
		 * primary key or on the state guard. */
		*outcome = STORE_RESUME_KEPT;
		if (exists)
			rc = s->drv->exec(c,
					  "UPDATE waitpoints SET state = 'EARLY', used_at = ?, payload = ? "
					  "WHERE id = ? AND state = 'OPEN'",
					  P(I(now), T(payload), T(waitpoint_id)), &changes, err);
		else
			rc = s->drv->exec(c,
					  "INSERT INTO waitpoints (id, run_id, state, payload, created_at, "
					  "used_at) VALUES (?, ?, 'EARLY', ?, ?, ?)",
					  P(T(waitpoint_id), T(run_id), T(payload), I(now), I(now)),
					  &changes, err);
		if (!rc && !changes)
			rc = fl_err_set(err, FL_ECONFLICT, "waitpoint '%s' was already used",
					waitpoint_id);
	}
	store_waitpoint_release(&wp);
	store_run_release(&run);
	return rc;
}

int store_waitpoint_resume(struct store *s, const char *run_id, const char *waitpoint_id,
			   const char *payload, int64_t now, enum store_resume_outcome *outcome,
			   struct store_job *job, struct fl_err *err)
{
	memset(job, 0, sizeof *job);
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	rc = resume_locked(s, c, run_id, waitpoint_id, payload, now, outcome, job, err);
	rc = tx_end(s, c, rc, err);
	if (rc)
		store_job_release(job);
	return rc;
}

/* ---- piece store ---- */

int store_kv_get(struct store *s, const char *key, char **value, struct fl_err *err)
{
	*value = NULL;
	int rc = query1(s, "SELECT value FROM store_entries WHERE key = ?", P(T(key)), text_row,
			value, err);
	if (!rc && !*value)
		rc = fl_err_set(err, FL_ENOTFOUND, "no store entry '%s'", key);
	return rc;
}

int store_kv_put(struct store *s, const char *key, const char *value, int64_t now,
		 struct fl_err *err)
{
	return exec1(s,
		     "INSERT INTO store_entries (key, value, updated_at) VALUES (?, ?, ?) "
		     "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
		     "updated_at = excluded.updated_at",
		     P(T(key), T(value), I(now)), NULL, err);
}

int store_kv_delete(struct store *s, const char *key, int *deleted, struct fl_err *err)
{
	int64_t changes = 0;
	int rc = exec1(s, "DELETE FROM store_entries WHERE key = ?", P(T(key)), &changes, err);
	if (deleted)
		*deleted = changes > 0;
	return rc;
}

/* ---- schedules ---- */

int store_schedule_claim(struct store *s, const char *flow_id, int64_t tick,
			 const struct store_run *run, struct fl_err *err)
{
	struct store_conn *c;
	int rc = tx_begin(s, &c, err);
	if (rc)
		return rc;
	int64_t changes = 0;
	rc = s->drv->exec(c,
			  "INSERT INTO schedule_ticks (flow_id, tick, run_id, created_at) "
			  "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
			  P(T(flow_id), I(tick), T(run->id), I(run->created_at)), &changes, err);
	if (!rc && !changes)
		rc = fl_err_set(err, FL_ECONFLICT, "tick %lld of flow '%s' was already claimed",
				(long long)tick, flow_id);
	if (!rc)
		rc = insert_run(s, c, run, err);
	return tx_end(s, c, rc, err);
}

int store_schedule_last_tick(struct store *s, const char *flow_id, int64_t *tick,
			     struct fl_err *err)
{
	*tick = 0;
	return query1(s, "SELECT COALESCE(MAX(tick), 0) FROM schedule_ticks WHERE flow_id = ?",
		      P(T(flow_id)), int_row, tick, err);
}

int store_schedule_prune(struct store *s, int64_t before, struct fl_err *err)
{
	return exec1(s, "DELETE FROM schedule_ticks WHERE tick < ?", P(I(before)), NULL, err);
}
