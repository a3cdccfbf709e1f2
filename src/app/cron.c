/* Cron parsing and matching, and a reader for TZif time zone files (RFC 8536) with their POSIX
 * TZ footer rule. Written here rather than borrowed from libc because setenv("TZ") + localtime
 * is process-global and the app is threaded. See cron.h. */
#include "app/cron.h"
#include "core/alloc.h"
#include "core/err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- cron ---- */

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
					   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" };
static const char *const day_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT" };

static int parse_value(const char **p, int field, int *out)
{
	const char *s = *p;
	if (isdigit((unsigned char)*s)) {
		long v = 0;
		while (isdigit((unsigned char)*s) && v < 1000)
			v = v * 10 + (*s++ - '0');
		*out = (int)v;
		*p = s;
		return 0;
	}
	const char *const *names = field == 3 ? month_names : field == 4 ? day_names : NULL;
	int n = field == 3 ? 12 : 7;
	if (names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
	    isalpha((unsigned char)s[2])) {
		for (int i = 0; i < n; i++) {
			if (!strncasecmp(s, names[i], 3)) {
				*out = field == 3 ? i + 1 : i;
				*p = s + 3;
				return 0;
			}
		}
	}
	return -1;
}

/* Parses one field into bits; lo/hi is its range. field: 0 min, 1 hour, 2 dom, 3 month, 4 dow,
 * 5 seconds. */
static int parse_field(const char *text, int field, int lo, int hi, uint64_t *bits, int *any,
		       struct fl_err *err)
{
	static const char *const field_names[] = { "minute", "hour", "day-of-month", "month",
						   "day-of-week", "second" };
	const char *p = text;
	*bits = 0;
	*any = 0;
	for (;;) {
		int a, b, step = 1, star = 0;
		if (*p == '*' || *p == '?') {
			star = 1;
			a = lo;
			b = hi;
			p++;
		} else {
			if (parse_value(&p, field, &a))
				goto bad;
			b = a;
			if (*p == '-') {
				p++;
				if (parse_value(&p, field, &b))
					goto bad;
			}
		}
		if (*p == '/') {
			p++;
			if (!isdigit((unsigned char)*p))
				goto bad;
			long v = 0;
			while (isdigit((unsigned char)*p) && v < 1000)
				v = v * 10 + (*p++ - '0');
			step = (int)v;
			if (step < 1)
				goto bad;
			if (!star && b == a)
				b = hi; /* "a/n" means from a to the end, every n */
		}
		if (field == 4 && a == 7 && b == 7) {
			a = b = 0;
		} else if (field == 4 && b == 7) {
			/* "5-7" is Friday to Sunday. */
			*bits |= 1;
			b = 6;
		}
		if (a < lo || b > hi || a > b)
			return fl_err_set(err, FL_EINVAL, "%s field '%s': %d-%d is outside %d-%d",
					  field_names[field], text, a, b, lo, hi);
		for (int v = a; v <= b; v += step)
			*bits |= (uint64_t)1 << v;
		if (star && step == 1)
			*any = 1;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '\0')
			return 0;
		goto bad;
	}
bad:
	return fl_err_set(err, FL_EINVAL, "invalid %s field '%s'", field_names[field], text);
}

int app_cron_parse(const char *expr, struct app_cron *out, struct fl_err *err)
{
	memset(out, 0, sizeof *out);
	if (!expr)
		return fl_err_set(err, FL_EINVAL, "empty cron expression");
	static const struct {
		const char *name, *expr;
	} macros[] = { { "@yearly", "0 0 1 1 *" },  { "@annually", "0 0 1 1 *" },
		       { "@monthly", "0 0 1 * *" }, { "@weekly", "0 0 * * 0" },
		       { "@daily", "0 0 * * *" },   { "@midnight", "0 0 * * *" },
		       { "@hourly", "0 * * * *" } };
	while (isspace((unsigned char)*expr))
		expr++;
	for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
		if (!strcasecmp(expr, macros[i].name))
			expr = macros[i].expr;

	char buf[256];
	if (strlen(expr) >= sizeof buf)
		return fl_err_set(err, FL_EINVAL, "cron expression is too long");
	snprintf(buf, sizeof buf, "%s", expr);
	char *fields[7];
	int n = 0;
	for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (n == 7)
			break;
		fields[n++] = tok;
	}
	if (n != 5 && n != 6)
		return fl_err_set(err, FL_EINVAL,
				  "cron expression '%s' has %d fields: expected 5 (or 6 with seconds)",
				  expr, n);
	int off = n == 6;
	uint64_t bits;
	int any;
	int rc;
	if (off) {
		if ((rc = parse_field(fields[0], 5, 0, 59, &bits, &any, err)))
			return rc;
		out->seconds = bits;
		out->has_seconds = 1;
	} else {
		out->seconds = 1; /* second 0 */
	}
	if ((rc = parse_field(fields[off + 0], 0, 0, 59, &bits, &any, err)))
		return rc;
	out->minutes = bits;
	if ((rc = parse_field(fields[off + 1], 1, 0, 23, &bits, &any, err)))
		return rc;
	out->hours = (uint32_t)bits;
	if ((rc = parse_field(fields[off + 2], 2, 1, 31, &bits, &any, err)))
		return rc;
	out->days = (uint32_t)bits;
	out->days_any = any;
	if ((rc = parse_field(fields[off + 3], 3, 1, 12, &bits, &any, err)))
		return rc;
	out->months = (uint16_t)bits;
	if ((rc = parse_field(fields[off + 4], 4, 0, 7, &bits, &any, err)))
		return rc;
	out->weekdays = (uint8_t)bits;
	out->weekdays_any = any;
	return 0;
}

static int day_matches(const struct app_cron *c, const struct tm *t)
{
	int dom = (c->days >> t->tm_mday) & 1;
	int dow = (c->weekdays >> t->tm_wday) & 1;
	if (c->days_any && c->weekdays_any)
		return 1;
	if (c->days_any)
		return dow;
	if (c->weekdays_any)
		return dom;
	return dom || dow;
}

int64_t app_cron_next(const struct app_cron *c, const struct app_tz *tz, int64_t after_ms)
{
	int64_t t = (after_ms >= 0 ? after_ms / 1000 : (after_ms - 999) / 1000) + 1;
	int64_t limit = t + 5LL * 366 * 86400;
	while (t < limit) {
		int32_t off = app_tz_offset(tz, t);
		time_t local = (time_t)(t + off);
		struct tm tm;
		gmtime_r(&local, &tm);
		int64_t next_local;
		if (!((c->months >> (tm.tm_mon + 1)) & 1)) {
			struct tm n = { .tm_year = tm.tm_year, .tm_mon = tm.tm_mon + 1, .tm_mday = 1 };
			next_local = (int64_t)timegm(&n);
		} else if (!day_matches(c, &tm)) {
			struct tm n = { .tm_year = tm.tm_year, .tm_mon = tm.tm_mon,
					.tm_mday = tm.tm_mday + 1 };
			next_local = (int64_t)timegm(&n);
		} else if (!((c->hours >> tm.tm_hour) & 1)) {
			next_local = local - tm.tm_min * 60 - tm.tm_sec + 3600;
		} else if (!((c->minutes >> tm.tm_min) & 1)) {
			next_local = local - tm.tm_sec + 60;
		} else if (!((c->seconds >> tm.tm_sec) & 1)) {
			next_local = local + 1;
			/* Without a seconds field only second 0 matches: go to the next minute. */
			if (!c->has_seconds)
				next_local = local - tm.tm_sec + 60;
		} else {
			return t * 1000;
		}
		int64_t next = next_local - off;
		/* An offset change can map the boundary behind us; always move forward. */
		t = next > t ? next : t + 1;
	}
	return -1;
}

/* ---- time zones ---- */

struct tz_rule_date {
	char kind; /* 'J': Julian 1..365 without Feb 29, 'D': 0..365, 'M': month.week.day */
	int day, week, month;
	int32_t time; /* seconds after local midnight (may be negative or past 24 h) */
};

struct app_tz {
	int64_t *times;   /* transitions, ascending */
	uint8_t *idx;     /* type index per transition */
	int32_t *offsets; /* utoff per type */
	uint8_t *isdst;
	size_t n_times, n_types;
	/* The POSIX footer, for times after the last transition. */
	int has_rule;
	int32_t std_off, dst_off; /* seconds east of UTC */
	int has_dst;
	struct tz_rule_date start, end;
};

void app_tz_free(struct app_tz *tz)
{
	if (!tz)
		return;
	fl_free(tz->times);
	fl_free(tz->idx);
	fl_free(tz->offsets);
	fl_free(tz->isdst);
	fl_free(tz);
}

static int64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	if (n == 4)
		return (int32_t)(uint32_t)v;
	return (int64_t)v;
}

/* POSIX offset "[+-]hh[:mm[:ss]]", where positive means west of UTC. */
static int posix_offset(const char **p, int32_t *out)
{
	const char *s = *p;
	int sign = 1;
	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	if (!isdigit((unsigned char)*s))
		return -1;
	int h = 0, m = 0, sec = 0;
	while (isdigit((unsigned char)*s))
		h = h * 10 + (*s++ - '0');
	if (*s == ':') {
		s++;
		while (isdigit((unsigned char)*s))
			m = m * 10 + (*s++ - '0');
		if (*s == ':') {
			s++;
			while (isdigit((unsigned char)*s))
				sec = sec * 10 + (*s++ - '0');
		}
	}
	if (h > 167 || m > 59 || sec > 59)
		return -1;
	*out = sign * (h * 3600 + m * 60 + sec);
	*p = s;
	return 0;
}

static int posix_name(const char **p)
{
	const char *s = *p;
	if (*s == '<') {
		while (*s && *s != '>')
			s++;
		if (*s != '>')
			return -1;
		*p = s + 1;
		return 0;
	}
	int n = 0;
	while (isalpha((unsigned char)s[n]))
		n++;
	if (n < 3)
		return -1;
	*p = s + n;
	return 0;
}

static int posix_date(const char **p, struct tz_rule_date *d)
{
	const char *s = *p;
	memset(d, 0, sizeof *d);
	if (*s == 'M') {
		d->kind = 'M';
		s++;
		d->month = (int)strtol(s, (char **)&s, 10);
		if (*s++ != '.')
			return -1;
		d->week = (int)strtol(s, (char **)&s, 10);
		if (*s++ != '.')
			return -1;
		d->day = (int)strtol(s, (char **)&s, 10);
		if (d->month < 1 || d->month > 12 || d->week < 1 || d->week > 5 || d->day < 0 ||
		    d->day > 6)
			return -1;
	} else if (*s == 'J') {
		d->kind = 'J';
		s++;
		d->day = (int)strtol(s, (char **)&s, 10);
		if (d->day < 1 || d->day > 365)
			return -1;
	} else if (isdigit((unsigned char)*s)) {
		d->kind = 'D';
		d->day = (int)strtol(s, (char **)&s, 10);
		if (d->day > 365)
			return -1;
	} else {
		return -1;
	}
	d->time = 7200;
	if (*s == '/') {
		s++;
		/* The time here is not inverted: "/3" is 03:00, "/-1" is 23:00 the day before. */
		int32_t t;
		if (posix_offset(&s, &t))
			return -1;
		d->time = t;
	}
	*p = s;
	return 0;
}

static int parse_posix(struct app_tz *tz, const char *s)
{
	int32_t off;
	if (posix_name(&s) || posix_offset(&s, &off))
		return -1;
	tz->std_off = -off;
	tz->has_rule = 1;
	if (!*s)
		return 0;
	if (posix_name(&s))
		return -1;
	tz->has_dst = 1;
	tz->dst_off = tz->std_off + 3600;
	if (*s && *s != ',') {
		if (posix_offset(&s, &off))
			return -1;
		tz->dst_off = -off;
	}
	if (*s != ',') {
		/* No rule given: POSIX's default is the US rule. */
		tz->start = (struct tz_rule_date){ 'M', 0, 2, 3, 7200 };
		tz->end = (struct tz_rule_date){ 'M', 0, 1, 11, 7200 };
		return *s ? -1 : 0;
	}
	s++;
	if (posix_date(&s, &tz->start) || *s++ != ',' || posix_date(&s, &tz->end) || *s)
		return -1;
	return 0;
}

static int is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Seconds since the epoch (as if UTC) of local midnight starting the rule's day in year. */
static int64_t rule_day(const struct tz_rule_date *d, int year)
{
	struct tm jan1 = { .tm_year = year - 1900, .tm_mday = 1 };
	int64_t base = (int64_t)timegm(&jan1);
	if (d->kind == 'J') {
		int day = d->day - 1; /* 0-based, Feb 29 never counted */
		if (is_leap(year) && d->day >= 60)
			day++;
		return base + (int64_t)day * 86400;
	}
	if (d->kind == 'D')
		return base + (int64_t)d->day * 86400;
	struct tm first = { .tm_year = year - 1900, .tm_mon = d->month - 1, .tm_mday = 1 };
	int64_t t = (int64_t)timegm(&first);
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	int mday = 1 + (d->day - tm.tm_wday + 7) % 7 + (d->week - 1) * 7;
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int last = mdays[d->month - 1] + (d->month == 2 && is_leap(year));
	while (mday > last)
		mday -= 7;
	return t + (int64_t)(mday - 1) * 86400;
}

static int32_t rule_offset(const struct app_tz *tz, int64_t t)
{
	if (!tz->has_dst)
		return tz->std_off;
	time_t local = (time_t)(t + tz->std_off);
	struct tm tm;
	gmtime_r(&local, &tm);
	int year = tm.tm_year + 1900;
	/* The start is given in standard time, the end in daylight time. */
	int64_t start = rule_day(&tz->start, year) + tz->start.time - tz->std_off;
	int64_t end = rule_day(&tz->end, year) + tz->end.time - tz->dst_off;
	int dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? tz->dst_off : tz->std_off;
}

int32_t app_tz_offset(const struct app_tz *tz, int64_t utc_s)
{
	if (!tz)
		return 0;
	if (tz->n_times == 0 || utc_s >= tz->times[tz->n_times - 1]) {
		if (tz->has_rule)
			return rule_offset(tz, utc_s);
		if (tz->n_times)
			return tz->offsets[tz->idx[tz->n_times - 1]];
		return tz->n_types ? tz->offsets[0] : 0;
	}
	if (utc_s < tz->times[0]) {
		for (size_t i = 0; i < tz->n_types; i++)
			if (!tz->isdst[i])
				return tz->offsets[i];
		return tz->offsets[0];
	}
	size_t lo = 0, hi = tz->n_times - 1; /* times[lo] <= t < times[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (tz->times[mid] <= utc_s)
			lo = mid;
		else
			hi = mid;
	}
	return tz->offsets[tz->idx[lo]];
}

static int valid_zone_name(const char *name)
{
	if (!*name || name[0] == '/' || strlen(name) > 128)
		return 0;
	for (const char *p = name; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr("/_-+", *p))
			return 0;
		if (p[0] == '/' && p[1] == '/')
			return 0;
	}
	return !strstr(name, "..");
}

static int parse_tzif(struct app_tz *tz, const unsigned char *d, size_t len)
{
	if (len < 44 || memcmp(d, "TZif", 4))
		return -1;
	int version = d[4];
	size_t cnt[6];
	for (int i = 0; i < 6; i++)
		cnt[i] = (size_t)be(d + 20 + 4 * i, 4);
	/* isutcnt isstdcnt leapcnt timecnt typecnt charcnt */
	size_t v1 = cnt[3] * 5 + cnt[4] * 6 + cnt[5] + cnt[2] * 8 + cnt[1] + cnt[0];
	int tsize = 4;
	const unsigned char *p = d + 44;
	if (version >= '2') {
		if (44 + v1 + 44 > len || memcmp(d + 44 + v1, "TZif", 4))
			return -1;
		p = d + 44 + v1 + 44;
		for (int i = 0; i < 6; i++)
			cnt[i] = (size_t)be(d + 44 + v1 + 20 + 4 * i, 4);
		tsize = 8;
	}
	size_t need = cnt[3] * (size_t)(tsize + 1) + cnt[4] * 6 + cnt[5] +
		      cnt[2] * (size_t)(tsize + 4) + cnt[1] + cnt[0];
	if ((size_t)(p - d) + need > len || cnt[4] == 0 || cnt[4] > 256)
		return -1;
	tz->n_times = cnt[3];
	tz->n_types = cnt[4];
	tz->times = fl_calloc(cnt[3] + 1, sizeof *tz->times);
	tz->idx = fl_calloc(cnt[3] + 1, 1);
	tz->offsets = fl_calloc(cnt[4], sizeof *tz->offsets);
	tz->isdst = fl_calloc(cnt[4], 1);
	for (size_t i = 0; i < cnt[3]; i++)
		tz->times[i] = be(p + i * (size_t)tsize, tsize);
	p += cnt[3] * (size_t)tsize;
	for (size_t i = 0; i < cnt[3]; i++) {
		tz->idx[i] = p[i];
		if (p[i] >= cnt[4])
			return -1;
	}
	p += cnt[3];
	for (size_t i = 0; i < cnt[4]; i++) {
		tz->offsets[i] = (int32_t)be(p + i * 6, 4);
		tz->isdst[i] = p[i * 6 + 4];
	}
	p += cnt[4] * 6 + cnt[5] + cnt[2] * (size_t)(tsize + 4) + cnt[1] + cnt[0];
	if (version >= '2' && (size_t)(p - d) < len && *p == '\n') {
		const char *f = (const char *)p + 1;
		const char *nl = memchr(f, '\n', len - (size_t)(p + 1 - d));
		if (nl && nl > f) {
			char footer[128];
			snprintf(footer, sizeof footer, "%.*s", (int)(nl - f), f);
			if (parse_posix(tz, footer))
				tz->has_rule = 0;
		}
	}
	return 0;
}

struct app_tz *app_tz_load(const char *name, struct fl_err *err)
{
	struct app_tz *tz = fl_calloc(1, sizeof *tz);
	if (!name || !*name || !strcmp(name, "UTC") || !strcmp(name, "Etc/UTC") ||
	    !strcmp(name, "GMT") || !strcmp(name, "Z")) {
		tz->has_rule = 1; /* std_off 0, no dst */
		return tz;
	}
	if (!valid_zone_name(name)) {
		fl_err_set(err, FL_EINVAL, "unknown time zone '%s'", name);
		app_tz_free(tz);
		return NULL;
	}
	const char *dir = getenv("TZDIR");
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
	FILE *f = fopen(path, "rbe");
	unsigned char *data = NULL;
	size_t len = 0;
	if (f) {
		data = fl_malloc(1 << 20);
		len = fread(data, 1, 1 << 20, f);
		fclose(f);
	}
	if (!data || parse_tzif(tz, data, len)) {
		fl_err_set(err, FL_EINVAL, "unknown time zone '%s'", name);
		fl_free(data);
		app_tz_free(tz);
		return NULL;
	}
	fl_free(data);
	return tz;
}
