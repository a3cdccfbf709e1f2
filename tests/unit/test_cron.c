/* Unit tests for cron expressions and time zones (app/cron.h). Expected instants were computed
 * independently (Python's zoneinfo); they cover DST gaps and overlaps, a +05:45 zone, the
 * southern hemisphere, and dates past the zone files' transition tables (the POSIX rule). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/cron.h"
#include "core/err.h"

#include <string.h>

static const struct {
	const char *expr, *tz;
	int64_t after, want;
} cases[] = {
	{ "*/5 * * * *", "UTC", 1704067350000LL, 1704067500000LL },
	{ "0 9 * * 1-5", "America/New_York", 1709910000000LL, 1710162000000LL },
	{ "30 2 * * *", "America/New_York", 1709985600000LL, 1710138600000LL },
	{ "30 1 * * *", "America/New_York", 1730606400000LL, 1730611800000LL },
	{ "30 1 * * *", "America/New_York", 1730611800000LL, 1730615400000LL },
	{ "*/2 * * * * *", "UTC", 1704067201500LL, 1704067202000LL },
	{ "0 0 13 * 5", "UTC", 1725148800000LL, 1725580800000LL },
	{ "0 0 13 * 5", "UTC", 1725580800000LL, 1726185600000LL },
	{ "0 0 * * *", "Asia/Kathmandu", 1704067200000LL, 1704132900000LL },
	{ "0 12 * * *", "Europe/Paris", 2540246400000LL, 2540282400000LL },
	{ "0 12 * * *", "Europe/Paris", 2525817600000LL, 2525857200000LL },
	{ "0 12 * * *", "Australia/Sydney", 2525774400000LL, 2525821200000LL },
	{ "0 12 * * *", "Australia/Sydney", 2541412800000LL, 2541463200000LL },
	{ "@daily", "UTC", 1709114400000LL, 1709164800000LL },
	{ "0 0 29 2 *", "UTC", 1709251200000LL, 1835395200000LL },
	{ "15 10 * JAN,jul SUN", "UTC", 1704067200000LL, 1704622500000LL },
	{ "0 8 * * 7", "UTC", 1704067200000LL, 1704614400000LL },
	{ "0 0 1 */3 *", "UTC", 1704067200000LL, 1711929600000LL },
};

static void test_next(void **state)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct app_cron c;
		struct fl_err err = { 0 };
		if (app_cron_parse(cases[i].expr, &c, &err))
			fail_msg("parse '%s': %s", cases[i].expr, err.msg);
		struct app_tz *tz = app_tz_load(cases[i].tz, &err);
		if (!tz)
			fail_msg("tz '%s': %s", cases[i].tz, err.msg);
		int64_t got = app_cron_next(&c, tz, cases[i].after);
		if (got != cases[i].want)
			fail_msg("'%s' in %s after %lld: got %lld, want %lld", cases[i].expr,
				 cases[i].tz, (long long)cases[i].after, (long long)got,
				 (long long)cases[i].want);
		app_tz_free(tz);
	}
}

static void test_parse_errors(void **state)
{
	static const char *const bad[] = { "* * *", "60 * * * *", "*/0 * * * *", "a b c d e",
					   "1-70 * * * *", "* * 0 * *", "* * * 13 *",
					   "* * * * 8", "5-1 * * * *", "* * * * * * *", "1,,2 * * * *",
					   "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct app_cron c;
		struct fl_err err = { 0 };
		if (app_cron_parse(bad[i], &c, &err) != FL_EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(strlen(err.msg) > 0);
	}
	struct app_cron c;
	assert_int_equal(app_cron_parse(NULL, &c, NULL), FL_EINVAL);
}

static void test_never(void **state)
{
	struct app_cron c;
	assert_int_equal(app_cron_parse("0 0 30 2 *", &c, NULL), 0);
	assert_int_equal(app_cron_next(&c, NULL, 0), -1);
}

static void test_zones(void **state)
{
	struct fl_err err;
	assert_null(app_tz_load("Not/AZone", &err));
	assert_null(app_tz_load("../../etc/passwd", &err));
	assert_null(app_tz_load("/etc/localtime", &err));
	struct app_tz *utc = app_tz_load(NULL, &err);
	assert_int_equal(app_tz_offset(utc, 1700000000), 0);
	app_tz_free(utc);
	struct app_tz *k = app_tz_load("Asia/Kolkata", &err);
	assert_int_equal(app_tz_offset(k, 1700000000), 19800);
	app_tz_free(k);
	app_tz_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_never),
		cmocka_unit_test(test_zones),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
