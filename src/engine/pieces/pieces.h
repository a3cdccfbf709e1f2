/* Pieces implemented natively (shared/FLOWS.md §4): the table of actions the walker can run, the
 * context an action gets, and the helpers the app needs for triggers (webhook trigger output and
 * authentication, schedule specs). Actions never see the walker: what they need of the run comes
 * in struct pc_ctx, and what they want done to it (pause, respond, stop) goes back through it. */
#ifndef PC_PIECES_H
#define PC_PIECES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct eng_host;
struct fl_err;
struct net_policy;

struct pc_ctx {
	/* In: borrowed for the call. */
	const char *run_id;
	const char *flow_id;
	const char *step_name;
	const char *step_path;     /* as in Idempotency-Key: <run_id>:<step_path>:<n> */
	const char *frontend_url;  /* base of resume URLs, without a trailing slash */
	const char *waitpoint_id;  /* the id this step pauses with, and its resume URL's */
	const struct eng_host *host;
	const struct net_policy *policy;
	/* Non-NULL when the step is re-entered after its pause: the resume payload
	 * {"body","headers","queryParams"} ({} for a delay), and the PAUSED record it left. */
	const json_t *resume;
	const json_t *paused_record;
	int request_count;         /* outbound requests so far, for Idempotency-Keys */

	/* Out: set by the action. */
	json_t *pause;             /* {"type":"DELAY"|"WEBHOOK","resumeAt"?}: the step pauses */
	json_t *response;          /* return_response: {"status","headers","body"} */
	int stop;                  /* end the run SUCCEEDED after this step */
	int made_approval_links;   /* create_approval_links: later approvals resume on these links */
};

/* An action runs with its resolved input (borrowed). On success it returns 0 and sets *output to
 * a new reference (the step's output). On failure it returns a negative code with err set, and
 * may still set *output (an http error object, say). */
typedef int (*pc_action_fn)(struct pc_ctx *ctx, const json_t *input, json_t **output,
			    struct fl_err *err);

struct pc_action {
	const char *piece;   /* "@activepieces/piece-http" */
	const char *name;    /* "send_request" */
	pc_action_fn run;
	int effects;         /* it acts on the world: checkpointed before the next step */
};

/* Finds an action. Returns 0, or FL_ENOTFOUND with err "piece <piece> is not installed" or
 * "action <action> not found in <piece>". */
int pc_find_action(const char *piece, const char *action, const struct pc_action **out,
		   struct fl_err *err);

/* The output of a trigger for a run started with payload (borrowed; NULL when none was given):
 * manual_trigger and catch_webhook give the payload ({} when none); a schedule trigger gives the
 * payload, or without one what its next tick would give ({"cron_expression","timezone"}, {} for
 * cron_expression). An unknown trigger gives the payload. New reference. */
json_t *pc_trigger_output(const char *piece, const char *trigger, const json_t *input,
			  const json_t *payload);

/* The schedule of a schedule trigger (piece-schedule): its 5-field cron expression and time
 * zone, both new heap strings. Returns 0, or FL_EINVAL with err naming the bad input; an
 * unknown trigger is FL_ENOTFOUND. */
int pc_schedule_spec(const char *trigger, const json_t *input, char **cron, char **timezone,
		     struct fl_err *err);

/* The catch_webhook trigger output for a request: {"method","headers" (names lower-cased),
 * "body","queryParams","rawBody"}. A JSON body (by Content-Type) is parsed, a form body becomes
 * an object, anything else stays a string. headers and query are objects (borrowed). Returns a
 * new reference, or NULL with err set (FL_EINVAL) when a JSON body does not parse: the caller
 * answers 400 and starts no run. */
json_t *pc_webhook_trigger_output(const char *method, const json_t *headers, const json_t *query,
				  const char *body, size_t body_len, struct fl_err *err);

/* Checks a webhook request against the trigger's authType input (none, basic, header, hmac;
 * FLOWS.md §4). headers has lower-cased names. Returns 0 when the request may start a run,
 * FL_EDENIED otherwise (the caller answers 401). Secrets are compared in constant time. */
int pc_webhook_check_auth(const json_t *trigger_input, const json_t *headers, const char *body,
			  size_t body_len, struct fl_err *err);

/* A waitpoint id for a step of a run: 21 alphanumeric characters derived from both, so that
 * every replay of the run computes the same id. out must hold 22 bytes. */
void pc_waitpoint_id(const char *run_id, const char *step_path, char out[22]);

/* Actions, by piece (one file each). */
int pc_webhook_return_response(struct pc_ctx *ctx, const json_t *input, json_t **output,
			       struct fl_err *err);
int pc_http_send_request(struct pc_ctx *ctx, const json_t *input, json_t **output,
			 struct fl_err *err);
int pc_delay_for(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err);
int pc_delay_until(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err);
int pc_approval_create_links(struct pc_ctx *ctx, const json_t *input, json_t **output,
			     struct fl_err *err);
int pc_approval_wait(struct pc_ctx *ctx, const json_t *input, json_t **output,
		     struct fl_err *err);
int pc_data_mapper(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err);
int pc_store_put(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err);
int pc_store_get(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err);
int pc_store_append(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err);
int pc_store_remove_value(struct pc_ctx *ctx, const json_t *input, json_t **output,
			  struct fl_err *err);
int pc_store_add_to_list(struct pc_ctx *ctx, const json_t *input, json_t **output,
			 struct fl_err *err);
int pc_store_remove_from_list(struct pc_ctx *ctx, const json_t *input, json_t **output,
			      struct fl_err *err);


/* Loose equality of list items in the store piece and router lists: "1" equals 1. */
int pc_loose_equal(const json_t *a, const json_t *b);

/* Shared by the actions: the host's clock and sleep (or the real ones). */
int64_t pc_now_ms(const struct pc_ctx *ctx);
void pc_sleep_ms(const struct pc_ctx *ctx, int64_t ms);

/* Input helpers: the value of key in input as a type, or def when absent or null. A value of
 * the wrong type is an error naming the key. */
int pc_input_string(const json_t *input, const char *key, const char *def, const char **out,
		    struct fl_err *err);
int pc_input_number(const json_t *input, const char *key, double def, double *out,
		    struct fl_err *err);
int pc_input_bool(const json_t *input, const char *key, int def, int *out, struct fl_err *err);

#endif
