/* @activepieces/piece-store: key-value entries kept by the host (the app's store through the
 * worker, or memory for `flowd run`). Keys are scoped by flow or run with a prefix, as
 * Activepieces does, so that entries written by either stay readable by the other. */
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "engine/engine.h"
#include "engine/pieces/pieces.h"

#include <string.h>

#define MAX_KEY 128
#define MAX_VALUE (512 * 1024)

/* The scoped key for input's key and store_scope, a new heap string. */
static int scoped_key(const struct pc_ctx *ctx, const json_t *input, char **out,
		      struct fl_err *err)
{
	const json_t *kv = json_object_get(input, "key");
	const char *key, *scope;
	char num[64];
	if (json_is_number(kv)) {
		/* Templates often produce numbers where an id is meant. */
		char *t = fl_json_dump(kv);
		snprintf(num, sizeof num, "%s", t);
		fl_free(t);
		key = num;
	} else {
		int rc = pc_input_string(input, "key", NULL, &key, err);
		if (rc)
			return rc;
	}
	int rc = pc_input_string(input, "store_scope", "COLLECTION", &scope, err);
	if (rc)
		return rc;
	size_t n = key ? strlen(key) : 0;
	if (n < 1 || n > MAX_KEY)
		return fl_err_set(err, FL_EINVAL, "the key must be 1 to %d characters, got %zu",
				  MAX_KEY, n);
	if (!strcmp(scope, "COLLECTION") || !strcmp(scope, "PROJECT"))
		*out = fl_strdup(key);
	else if (!strcmp(scope, "FLOW"))
		*out = fl_asprintf("flow_%s/%s", ctx->flow_id, key);
	else if (!strcmp(scope, "RUN"))
		*out = fl_asprintf("flow_%s/run_%s/%s", ctx->flow_id, ctx->run_id, key);
	else
		return fl_err_set(err, FL_EINVAL, "store_scope '%s' is not COLLECTION, FLOW or RUN",
				  scope);
	return 0;
}

static int have_store(const struct pc_ctx *ctx, struct fl_err *err)
{
	const struct eng_host *h = ctx->host;
	if (!h || !h->store_get || !h->store_put || !h->store_delete)
		return fl_err_set(err, FL_EUNSUPPORTED, "the store is not available to this run");
	return 0;
}

static int get(const struct pc_ctx *ctx, const char *key, json_t **value, struct fl_err *err)
{
	*value = NULL;
	return ctx->host->store_get(ctx->host->ctx, key, value, err);
}

static int put(const struct pc_ctx *ctx, const char *key, const json_t *value,
	       struct fl_err *err)
{
	struct fl_buf text = FL_BUF_INIT;
	fl_json_dump_buf(&text, value);
	int64_t size = (int64_t)text.len;
	fl_buf_release(&text);
	if (size > MAX_VALUE)
		return fl_err_set(err, FL_ELIMIT, "the value is %lld bytes, more than the %d allowed",
				  (long long)size, MAX_VALUE);
	return ctx->host->store_put(ctx->host->ctx, key, value, err);
}

/* Ends an action that writes: unless rc already failed, stores value (taken) under key (taken)
 * and makes it the step's output. */
static int put_output(const struct pc_ctx *ctx, char *key, int rc, json_t *value,
		      json_t **output, struct fl_err *err)
{
	if (!rc)
		rc = put(ctx, key, value, err);
	fl_free(key);
	if (rc) {
		json_decref(value);
		return rc;
	}
	*output = value;
	return 0;
}

/* Prepares an action: checks the store and computes the key. */
static int begin(const struct pc_ctx *ctx, const json_t *input, char **key, struct fl_err *err)
{
	*key = NULL;
	int rc = have_store(ctx, err);
	return rc ? rc : scoped_key(ctx, input, key, err);
}

int pc_store_put(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err)
{
	char *key;
	int rc = begin(ctx, input, &key, err);
	if (rc)
		return rc;
	json_t *value = json_object_get(input, "value");
	if (!value)
		value = json_null();
	else
		json_incref(value);
	return put_output(ctx, key, 0, value, output, err);
}

int pc_store_get(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err)
{
	char *key;
	int rc = begin(ctx, input, &key, err);
	if (rc)
		return rc;
	json_t *value;
	rc = get(ctx, key, &value, err);
	fl_free(key);
	if (rc)
		return rc;
	if (!value) {
		const json_t *def = json_object_get(input, "defaultValue");
		value = def ? json_incref((json_t *)def) : json_null();
	}
	*output = value;
	return 0;
}

int pc_store_append(struct pc_ctx *ctx, const json_t *input, json_t **output,
		    struct fl_err *err)
{
	char *key;
	int rc = begin(ctx, input, &key, err);
	if (rc)
		return rc;
	const char *sep;
	rc = pc_input_string(input, "separator", "", &sep, err);
	json_t *old = NULL;
	if (!rc)
		rc = get(ctx, key, &old, err);
	if (rc) {
		fl_free(key);
		return rc;
	}
	struct fl_buf b = FL_BUF_INIT;
	const json_t *add = json_object_get(input, "value");
	if (old && !json_is_null(old)) {
		if (json_is_string(old))
			fl_buf_add(&b, json_string_value(old), json_string_length(old));
		else
			fl_json_dump_buf(&b, old);
		fl_buf_adds(&b, sep);
	}
	if (json_is_string(add))
		fl_buf_add(&b, json_string_value(add), json_string_length(add));
	else if (add && !json_is_null(add))
		fl_json_dump_buf(&b, add);
	json_t *value = json_stringn(b.data, b.len);
	fl_buf_release(&b);
	json_decref(old);
	if (!value) {
		fl_free(key);
		return fl_err_set(err, FL_EINVAL, "the appended value is not valid text");
	}
	return put_output(ctx, key, 0, value, output, err);
}

int pc_store_remove_value(struct pc_ctx *ctx, const json_t *input, json_t **output,
			  struct fl_err *err)
{
	char *key;
	int rc = begin(ctx, input, &key, err);
	if (rc)
		return rc;
	rc = ctx->host->store_delete(ctx->host->ctx, key, err);
	fl_free(key);
	if (!rc)
		*output = json_pack("{s:b}", "success", 1);
	return rc;
}

/* The list stored under key ([] when absent), as a new reference. */
static int get_list(const struct pc_ctx *ctx, const char *key, json_t **list, struct fl_err *err)
{
	int rc = get(ctx, key, list, err);
	if (rc)
		return rc;
	if (!*list || json_is_null(*list)) {
		json_decref(*list);
		*list = json_array();
		return 0;
	}
	if (!json_is_array(*list)) {
		json_t *copy = NULL;
		/* A list written by another tool as JSON text is still a list. */
		if (json_is_string(*list))
			copy = json_loads(json_string_value(*list), 0, NULL);
		json_decref(*list);
		*list = copy;
		if (!json_is_array(copy)) {
			json_decref(copy);
			*list = NULL;
			return fl_err_set(err, FL_EINVAL, "the value under '%s' is not a list", key);
		}
	}
	return 0;
}

static int list_has(const json_t *list, const json_t *item)
{
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
		if (pc_loose_equal(e, item))
			return 1;
	return 0;
}

/* The items a list action's value stands for: each element of an array, or the value itself. */
static json_t *items_of(const json_t *value)
{
	if (json_is_array(value))
		return json_incref((json_t *)value);
	return json_pack("[O]", value ? value : json_null());
}

int pc_store_add_to_list(struct pc_ctx *ctx, const json_t *input, json_t **output,
			 struct fl_err *err)
{
	char *key;
	int rc = begin(ctx, input, &key, err);
	if (rc)
		return rc;
	int ignore;
	json_t *list = NULL;
	rc = pc_input_bool(input, "ignore_if_exists", 0, &ignore, err);
	if (!rc)
		rc = get_list(ctx, key, &list, err);
	if (!rc) {
		json_t *items = items_of(json_object_get(input, "value"));
		size_t i;
		json_t *e;
		json_array_foreach(items, i, e)
			if (!ignore || !list_has(list, e))
				json_array_append(list, e);
		json_decref(items);
	}
	return put_output(ctx, key, rc, list, output, err);
}

int pc_store_remove_from_list(struct pc_ctx *ctx, const json_t *input, json_t **output,
			      struct fl_err *err)
{
	char *key;
	int rc = begin(ctx, input, &key, err);
	if (rc)
		return rc;
	json_t *list = NULL;
	rc = get_list(ctx, key, &list, err);
	if (!rc) {
		json_t *items = items_of(json_object_get(input, "value"));
		json_t *kept = json_array();
		size_t i;
		json_t *e;
		json_array_foreach(list, i, e)
			if (!list_has(items, e))
				json_array_append(kept, e);
		json_decref(items);
		json_decref(list);
		list = kept;
	}
	return put_output(ctx, key, rc, list, output, err);
}
