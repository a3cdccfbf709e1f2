/* @activepieces/piece-schedule: turns a schedule trigger's settings into the 5-field cron
 * expression and time zone that the app's scheduler runs, the way Activepieces' own triggers do. */
#include "core/alloc.h"
#include "core/err.h"
#include "engine/pieces/pieces.h"

#include <math.h>
#include <string.h>

static int int_in(const json_t *input, const char *key, int def, int lo, int hi, int *out,
		  struct fl_err *err)
{
	double d;
	int rc = pc_input_number(input, key, def, &d, err);
	if (rc)
		return rc;
	if (d != floor(d) || d < lo || d > hi)
		return fl_err_set(err, FL_EINVAL, "input '%s' must be a whole number from %d to %d",
				  key, lo, hi);
	*out = (int)d;
	return 0;
}

/* Five space-separated fields of cron characters. */
static int valid_cron(const char *s)
{
	int fields = 0, in_field = 0;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t') {
			in_field = 0;
			continue;
		}
		if (!strchr("0123456789*/,-?LW#ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
			    *s))
			return 0;
		if (!in_field)
			fields++;
		in_field = 1;
	}
	return fields == 5;
}

int pc_schedule_spec(const char *trigger, const json_t *input, char **cron, char **timezone,
		     struct fl_err *err)
{
	*cron = *timezone = NULL;
	const char *tz;
	int rc = pc_input_string(input, "timezone", "UTC", &tz, err);
	if (rc)
		return rc;
	if (!*tz)
		tz = "UTC";
	int weekends = 0, minutes = 0, hour = 0, day = 0;
	if (!strcmp(trigger, "every_x_minutes")) {
		rc = int_in(input, "minutes", 1, 1, 59, &minutes, err);
		if (rc)
			return rc;
		*cron = fl_asprintf("*/%d * * * *", minutes);
		tz = "UTC";
	} else if (!strcmp(trigger, "every_hour")) {
		rc = pc_input_bool(input, "run_on_weekends", 0, &weekends, err);
		if (rc)
			return rc;
		*cron = fl_strdup(weekends ? "0 * * * *" : "0 * * * 1-5");
		tz = "UTC";
	} else if (!strcmp(trigger, "every_day")) {
		rc = int_in(input, "hour_of_the_day", 0, 0, 23, &hour, err);
		if (!rc)
			rc = pc_input_bool(input, "run_on_weekends", 0, &weekends, err);
		if (rc)
			return rc;
		*cron = fl_asprintf("0 %d * * %s", hour, weekends ? "*" : "1-5");
	} else if (!strcmp(trigger, "every_week")) {
		rc = int_in(input, "day_of_the_week", 1, 0, 6, &day, err);
		if (!rc)
			rc = int_in(input, "hour_of_the_day", 0, 0, 23, &hour, err);
		if (rc)
			return rc;
		*cron = fl_asprintf("0 %d * * %d", hour, day);
	} else if (!strcmp(trigger, "every_month")) {
		rc = int_in(input, "day_of_the_month", 1, 1, 31, &day, err);
		if (!rc)
			rc = int_in(input, "hour_of_the_day", 0, 0, 23, &hour, err);
		if (rc)
			return rc;
		*cron = fl_asprintf("0 %d %d * *", hour, day);
	} else if (!strcmp(trigger, "cron_expression")) {
		const char *expr;
		rc = pc_input_string(input, "cronExpression", NULL, &expr, err);
		if (rc)
			return rc;
		if (!expr || !valid_cron(expr))
			return fl_err_set(err, FL_EINVAL,
					  "cronExpression '%s' is not a cron expression of 5 fields",
					  expr ? expr : "");
		*cron = fl_strdup(expr);
	} else {
		return fl_err_set(err, FL_ENOTFOUND, "trigger %s not found in "
						     "@activepieces/piece-schedule",
				  trigger);
	}
	*timezone = fl_strdup(tz);
	return 0;
}
