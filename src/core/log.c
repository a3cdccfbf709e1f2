/* JSON-lines logger: see log.h. Each line is built in memory and written with one write(2), so
 * lines from concurrent processes sharing stderr do not interleave. */
#include "core/log.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static enum fl_log_level threshold = FL_LOG_INFO;
static int pretty;

static const char *const level_names[] = { "debug", "info", "warn", "error", "fatal" };

void fl_log_setup(enum fl_log_level level, int pretty_)
{
	threshold = level;
	pretty = pretty_;
}

int fl_log_enabled(enum fl_log_level level)
{
	return level >= threshold;
}

int fl_log_parse_level(const char *s, enum fl_log_level *level)
{
	for (int i = 0; i <= FL_LOG_FATAL; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*level = (enum fl_log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*level = FL_LOG_WARN;
		return 0;
	}
	return FL_EINVAL;
}

static void emit(enum fl_log_level level, const char *component, json_t *fields, const char *fmt,
		 va_list ap)
{
	struct fl_buf msg = FL_BUF_INIT, line = FL_BUF_INIT;
	char ts[32];
	fl_buf_vaddf(&msg, fmt, ap);
	fl_iso8601(fl_now_ms(), ts, sizeof ts);
	if (pretty) {
		fl_buf_addf(&line, "%s %-5s %s: %s", ts + 11, level_names[level], component, msg.data);
		const char *key;
		json_t *value;
		json_object_foreach(fields, key, value) {
			fl_buf_addf(&line, " %s=", key);
			fl_json_dump_buf(&line, value);
		}
	} else {
		fl_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
			    level_names[level]);
		fl_buf_add_json_escaped(&line, component, strlen(component));
		fl_buf_adds(&line, "\",\"msg\":\"");
		fl_buf_add_json_escaped(&line, msg.data, msg.len);
		fl_buf_addch(&line, '"');
		const char *key;
		json_t *value;
		json_object_foreach(fields, key, value) {
			fl_buf_adds(&line, ",\"");
			fl_buf_add_json_escaped(&line, key, strlen(key));
			fl_buf_adds(&line, "\":");
			fl_json_dump_buf(&line, value);
		}
		fl_buf_addch(&line, '}');
	}
	fl_buf_addch(&line, '\n');
	(void)!write(2, line.data, line.len);
	fl_buf_release(&msg);
	fl_buf_release(&line);
}

void fl_log(enum fl_log_level level, const char *component, const char *fmt, ...)
{
	if (level < threshold)
		return;
	va_list ap;
	va_start(ap, fmt);
	emit(level, component, NULL, fmt, ap);
	va_end(ap);
}

void fl_log_fields(enum fl_log_level level, const char *component, json_t *fields, const char *fmt,
		   ...)
{
	if (level >= threshold) {
		va_list ap;
		va_start(ap, fmt);
		emit(level, component, fields, fmt, ap);
		va_end(ap);
	}
	json_decref(fields);
}

_Noreturn void fl_die(const char *component, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(FL_LOG_FATAL, component, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
