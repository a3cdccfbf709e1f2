/* Clock helpers: see time.h. */
#include "core/time.h"
#include "core/err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t fl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fl_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t fl_mono_ms(void)
{
	return fl_mono_us() / 1000;
}

void fl_sleep_ms(int64_t ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

char *fl_iso8601(int64_t ms, char *out, size_t size)
{
	time_t secs = (time_t)(ms / 1000);
	int frac = (int)(ms % 1000);
	if (frac < 0) {
		frac += 1000;
		secs -= 1;
	}
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
	return out;
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return 0;
}

int fl_parse_iso8601(const char *s, int64_t *ms)
{
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0, frac_ms = 0;
	while (isspace((unsigned char)*p))
		p++;
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
		return FL_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31)
		return FL_EINVAL;
	long offset_min = 0;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
			return FL_EINVAL;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec))
				return FL_EINVAL;
			if (*p == '.' || *p == ',') {
				p++;
				int scale = 100, any = 0;
				while (isdigit((unsigned char)*p)) {
					frac_ms += (*p - '0') * scale;
					scale /= 10;
					p++;
					any = 1;
				}
				if (!any)
					return FL_EINVAL;
			}
		}
		if (h > 24 || mi > 59 || sec > 60)
			return FL_EINVAL;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
			if (digits(&p, 2, &oh))
				return FL_EINVAL;
			if (*p == ':')
				p++;
			if (isdigit((unsigned char)*p) && digits(&p, 2, &om))
				return FL_EINVAL;
			offset_min = sign * (oh * 60 + om);
		}
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p)
		return FL_EINVAL;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = sec };
	time_t t = timegm(&tm);
	/* timegm normalises 31 February into March: such a date is invalid, not a different day. */
	struct tm back;
	gmtime_r(&t, &back);
	if (back.tm_mday != d && !(h == 24))
		return FL_EINVAL;
	*ms = ((int64_t)t - offset_min * 60) * 1000 + frac_ms;
	return 0;
}
