/* Logging. One JSON object per line on stderr ({"ts","level","component","msg",...fields}), or a
 * human-readable line when AP_LOG_PRETTY is set. Messages follow the house style: lowercase,
 * what failed first, subjects in quotes, no final period. */
#ifndef FL_LOG_H
#define FL_LOG_H

#include <jansson.h>

enum fl_log_level { FL_LOG_DEBUG, FL_LOG_INFO, FL_LOG_WARN, FL_LOG_ERROR, FL_LOG_FATAL };

/* Sets the threshold and format; before this is called the defaults are info and JSON. */
void fl_log_setup(enum fl_log_level level, int pretty);
int fl_log_enabled(enum fl_log_level level);
/* Parses "debug", "info", "warn"/"warning", "error", "fatal". Returns 0 or FL_EINVAL. */
int fl_log_parse_level(const char *s, enum fl_log_level *level);

void fl_log(enum fl_log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like fl_log, with extra fields merged into the line. Takes ownership of fields (may be NULL). */
void fl_log_fields(enum fl_log_level level, const char *component, json_t *fields, const char *fmt,
		   ...) __attribute__((format(printf, 4, 5)));

#define fl_debug(comp, ...) fl_log(FL_LOG_DEBUG, comp, __VA_ARGS__)
#define fl_info(comp, ...) fl_log(FL_LOG_INFO, comp, __VA_ARGS__)
#define fl_warn(comp, ...) fl_log(FL_LOG_WARN, comp, __VA_ARGS__)
#define fl_error(comp, ...) fl_log(FL_LOG_ERROR, comp, __VA_ARGS__)

/* Logs at fatal and exits 1. Only before a daemon starts serving (bad config, port taken). */
_Noreturn void fl_die(const char *component, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
