/* Cron expressions and time zones for schedule triggers (shared/FLOWS.md §4 piece-schedule).
 * An expression has 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading
 * seconds field; each field takes `*`, `?`, numbers, ranges `a-b`, steps `*\/n` and `a-b/n`,
 * lists, and names (JAN..DEC, SUN..SAT; 7 is Sunday too). @yearly, @monthly, @weekly, @daily and
 * @hourly are accepted. When both day fields are restricted a day matches either, as in Vixie
 * cron. Times are matched in the schedule's time zone, read from the system's TZif files
 * (/usr/share/zoneinfo, or $TZDIR) including the POSIX rule that extends them: in a spring-forward
 * gap a local time does not exist and does not fire; in a fall-back hour it fires twice. */
#ifndef APP_CRON_H
#define APP_CRON_H

#include <stdint.h>

struct fl_err;

struct app_cron {
	uint64_t seconds; /* bit n: second n matches */
	uint64_t minutes;
	uint32_t hours;
	uint32_t days;    /* bit 1..31 */
	uint16_t months;  /* bit 1..12 */
	uint8_t weekdays; /* bit 0..6, 0 = Sunday */
	int days_any;     /* day-of-month was * */
	int weekdays_any; /* day-of-week was * */
	int has_seconds;
};

/* Parses expr. Returns 0, or FL_EINVAL with a message that names the bad field. */
int app_cron_parse(const char *expr, struct app_cron *out, struct fl_err *err);

struct app_tz;

/* Loads the zone called name ("UTC", "Europe/Paris"); NULL or "" is UTC. Returns NULL and sets
 * err (FL_EINVAL) for a name that is not a zone. */
struct app_tz *app_tz_load(const char *name, struct fl_err *err);
void app_tz_free(struct app_tz *tz);
/* Seconds east of UTC in force at utc_s (seconds since the epoch). */
int32_t app_tz_offset(const struct app_tz *tz, int64_t utc_s);

/* The first time strictly after after_ms (ms since the epoch) at which cron fires in tz, in ms,
 * or -1 when there is none within the next five years (a 30th of February). */
int64_t app_cron_next(const struct app_cron *cron, const struct app_tz *tz, int64_t after_ms);

#endif
