/* @activepieces/piece-delay: short delays sleep in place; longer ones pause the run with a DELAY
 * waitpoint, so that no worker slot is held while nothing happens. */
#include "core/err.h"
#include "core/time.h"
#include "engine/pieces/pieces.h"

#include <math.h>
#include <string.h>

/* Up to these, the step sleeps in place (FLOWS.md §4). */
#define DELAY_FOR_SLEEP_MS 10000
#define DELAY_UNTIL_SLEEP_MS 60000

static json_t *pause_until(int64_t at_ms)
{
	char iso[32];
	return json_pack("{s:s, s:I, s:s}", "type", "DELAY", "resumeAt", (json_int_t)at_ms,
			 "resumeAtIso", fl_iso8601(at_ms, iso, sizeof iso));
}

int pc_delay_for(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err)
{
	const char *unit;
	double amount;
	int rc = pc_input_string(input, "unit", "seconds", &unit, err);
	if (!rc)
		rc = pc_input_number(input, "delayFor", 0, &amount, err);
	if (rc)
		return rc;
	double unit_ms = !strcmp(unit, "seconds") ? 1e3
			 : !strcmp(unit, "minutes") ? 60e3
			 : !strcmp(unit, "hours")   ? 3600e3
			 : !strcmp(unit, "days")    ? 86400e3
						    : 0;
	if (!unit_ms)
		return fl_err_set(err, FL_EINVAL, "unit '%s' is not seconds, minutes, hours or days",
				  unit);
	if (amount < 0 || !isfinite(amount))
		return fl_err_set(err, FL_EINVAL, "delayFor must be a number >= 0");
	double ms = amount * unit_ms;
	if (ms > 9e15)
		return fl_err_set(err, FL_EINVAL, "delayFor is too large");
	json_t *done = json_pack("{s:I, s:b}", "delayForInMs", (json_int_t)ms, "success", 1);
	if (ctx->resume) {
		*output = done;
		return 0;
	}
	if (ms <= DELAY_FOR_SLEEP_MS) {
		pc_sleep_ms(ctx, (int64_t)ms);
		*output = done;
		return 0;
	}
	json_decref(done);
	ctx->pause = pause_until(pc_now_ms(ctx) + (int64_t)ms);
	*output = json_object();
	return 0;
}

int pc_delay_until(struct pc_ctx *ctx, const json_t *input, json_t **output, struct fl_err *err)
{
	const char *ts;
	int rc = pc_input_string(input, "delayUntilTimestamp", NULL, &ts, err);
	if (rc)
		return rc;
	int64_t at;
	if (!ts || fl_parse_iso8601(ts, &at))
		return fl_err_set(err, FL_EINVAL, "delayUntilTimestamp '%s' is not an ISO 8601 time",
				  ts ? ts : "");
	char iso[32];
	json_t *done = json_pack("{s:s, s:b}", "delayTill", fl_iso8601(at, iso, sizeof iso),
				 "success", 1);
	int64_t left = at - pc_now_ms(ctx);
	if (ctx->resume || left <= 0) {
		*output = done;
		return 0;
	}
	if (left <= DELAY_UNTIL_SLEEP_MS) {
		pc_sleep_ms(ctx, left);
		*output = done;
		return 0;
	}
	json_decref(done);
	ctx->pause = pause_until(at);
	*output = json_object();
	return 0;
}
