/* The action table, trigger outputs, waitpoint ids and input helpers shared by the pieces: see
 * pieces.h. */
#include "engine/pieces/pieces.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "engine/engine.h"

#include <math.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOK "@activepieces/piece-webhook"
#define HTTP "@activepieces/piece-http"
#define DELAY "@activepieces/piece-delay"
#define APPROVAL "@activepieces/piece-approval"
#define MAPPER "@activepieces/piece-data-mapper"
#define STORE "@activepieces/piece-store"

static const struct pc_action actions[] = {
	{ WEBHOOK, "return_response", pc_webhook_return_response, 1 },
	{ HTTP, "send_request", pc_http_send_request, 1 },
	{ DELAY, "delayFor", pc_delay_for, 1 },
	{ DELAY, "delay_until", pc_delay_until, 1 },
	{ APPROVAL, "create_approval_links", pc_approval_create_links, 0 },
	{ APPROVAL, "wait_for_approval", pc_approval_wait, 1 },
	{ MAPPER, "advanced_mapping", pc_data_mapper, 0 },
	{ STORE, "put", pc_store_put, 1 },
	{ STORE, "get", pc_store_get, 1 },
	{ STORE, "append", pc_store_append, 1 },
	{ STORE, "remove_value", pc_store_remove_value, 1 },
	{ STORE, "add_to_list", pc_store_add_to_list, 1 },
	{ STORE, "remove_from_list", pc_store_remove_from_list, 1 },
};

/* Pieces that have triggers but no actions are installed too. */
static const char *const trigger_pieces[] = {
	"@activepieces/piece-schedule",
	"@activepieces/piece-manual-trigger",
	NULL,
};

int pc_find_action(const char *piece, const char *action, const struct pc_action **out,
		   struct fl_err *err)
{
	int known = 0;
	for (size_t i = 0; i < sizeof actions / sizeof *actions; i++) {
		if (strcmp(actions[i].piece, piece))
			continue;
		known = 1;
		if (!strcmp(actions[i].name, action)) {
			*out = &actions[i];
			return 0;
		}
	}
	for (int i = 0; !known && trigger_pieces[i]; i++)
		known = !strcmp(trigger_pieces[i], piece);
	*out = NULL;
	if (!known)
		return fl_err_set(err, FL_ENOTFOUND, "piece %s is not installed", piece);
	return fl_err_set(err, FL_ENOTFOUND, "action %s not found in %s", action, piece);
}

json_t *pc_trigger_output(const char *piece, const char *trigger, const json_t *input,
			  const json_t *payload)
{
	if (payload)
		return json_incref((json_t *)payload);
	if (!strcmp(piece, "@activepieces/piece-schedule")) {
		if (!strcmp(trigger, "cron_expression"))
			return json_object();
		char *cron = NULL, *tz = NULL;
		if (!pc_schedule_spec(trigger, input, &cron, &tz, NULL)) {
			json_t *o = json_pack("{s:s, s:s}", "cron_expression", cron, "timezone", tz);
			fl_free(cron);
			fl_free(tz);
			return o;
		}
	}
	return json_object();
}

void pc_waitpoint_id(const char *run_id, const char *step_path, char out[22])
{
	static const char alphabet[] =
		"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char *text = fl_asprintf("flowd-waitpoint:%s:%s", run_id, step_path);
	SHA256((const unsigned char *)text, strlen(text), digest);
	fl_free(text);
	for (int i = 0; i < 21; i++)
		out[i] = alphabet[digest[i] % 62];
	/* BullMQ refuses ids that are all digits; a leading letter rules that out. */
	out[0] = alphabet[10 + digest[21] % 52];
	out[21] = '\0';
}

int64_t pc_now_ms(const struct pc_ctx *ctx)
{
	if (ctx->host && ctx->host->now_ms)
		return ctx->host->now_ms(ctx->host->ctx);
	return fl_now_ms();
}

void pc_sleep_ms(const struct pc_ctx *ctx, int64_t ms)
{
	if (ms <= 0)
		return;
	if (ctx->host && ctx->host->sleep_ms)
		ctx->host->sleep_ms(ctx->host->ctx, ms);
	else
		fl_sleep_ms(ms);
}

int pc_input_string(const json_t *input, const char *key, const char *def, const char **out,
		    struct fl_err *err)
{
	const json_t *v = json_object_get(input, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_string(v))
		return fl_err_set(err, FL_EINVAL, "input '%s' must be a string, got %s", key,
				  fl_json_type_name(v));
	*out = json_string_value(v);
	return 0;
}

int pc_input_number(const json_t *input, const char *key, double def, double *out,
		    struct fl_err *err)
{
	const json_t *v = json_object_get(input, key);
	if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v))) {
		*out = def;
		return 0;
	}
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		char *end;
		const char *s = json_string_value(v);
		double d = strtod(s, &end);
		while (*end == ' ')
			end++;
		if (end != s && !*end && isfinite(d)) {
			*out = d;
			return 0;
		}
	}
	return fl_err_set(err, FL_EINVAL, "input '%s' must be a number", key);
}

int pc_input_bool(const json_t *input, const char *key, int def, int *out, struct fl_err *err)
{
	const json_t *v = json_object_get(input, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if (json_is_string(v) && (!strcmp(json_string_value(v), "true") ||
				  !strcmp(json_string_value(v), "false"))) {
		*out = !strcmp(json_string_value(v), "true");
		return 0;
	}
	return fl_err_set(err, FL_EINVAL, "input '%s' must be a boolean", key);
}

/* The text an item is compared as: a string as it is, anything else as JSON. */
static char *loose_text(const json_t *v)
{
	if (json_is_string(v))
		return fl_strndup(json_string_value(v), json_string_length(v));
	return fl_json_dump(v);
}

int pc_loose_equal(const json_t *a, const json_t *b)
{
	if (json_equal((json_t *)a, (json_t *)b))
		return 1;
	if (json_is_object(a) || json_is_array(a) || json_is_object(b) || json_is_array(b))
		return 0;
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	char *x = loose_text(a), *y = loose_text(b);
	int eq = !strcmp(x, y);
	fl_free(x);
	fl_free(y);
	return eq;
}
