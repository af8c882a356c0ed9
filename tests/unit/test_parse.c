/* Unit tests for lib/base/parse.c: durations, sizes, percentages, numbers, booleans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/exitcode.h"
#include "base/parse.h"

static void assert_duration(const char *s, int64_t want)
{
	struct ops_error err = OPS_ERROR_INIT;
	int64_t got = -1;

	assert_int_equal(parse_duration_ms(s, &got, &err), 0);
	assert_int_equal(got, want);
	assert_int_equal(err.code, 0);
	ops_error_release(&err);
}

static void assert_bad_duration(const char *s, const char *msg)
{
	struct ops_error err = OPS_ERROR_INIT;
	int64_t got = 42;

	assert_int_equal(parse_duration_ms(s, &got, &err), -OPS_EXIT_USAGE);
	assert_int_equal(err.code, OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, msg);
	assert_int_equal(got, 42); /* untouched on error */
	ops_error_release(&err);
}

static void test_duration_units(void **state)
{
	(void)state;
	assert_duration("500ms", 500);
	assert_duration("30s", 30000);
	assert_duration("5m", 300000);
	assert_duration("2h", 7200000);
	assert_duration("1d", 86400000);
	assert_duration("0", 0);
	assert_duration("0s", 0);
	assert_duration("90", 90000);      /* bare number = seconds */
	assert_duration("1.5s", 1500);
	assert_duration("1.5", 1500);
	assert_duration("0.25h", 900000);
	assert_duration("1m30s", 90000);
	assert_duration("1h2m3s4ms", 3723004);
	assert_duration("2d12h", 216000000);
}

static void test_duration_errors(void **state)
{
	(void)state;
	assert_bad_duration("abc", "invalid duration 'abc' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("", "invalid duration '' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration(NULL, "invalid duration '' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("-5s", "invalid duration '-5s' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("5s ", "invalid duration '5s ' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration(" 5s", "invalid duration ' 5s' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("5x", "invalid duration '5x' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("5sec", "invalid duration '5sec' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("s", "invalid duration 's' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("1.s", "invalid duration '1.s' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration(".5s", "invalid duration '.5s' (expected e.g. 500ms, 30s, 5m, 2h)");
	/* units must go from large to small, each once */
	assert_bad_duration("30s1m", "invalid duration '30s1m' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("1s1s", "invalid duration '1s1s' (expected e.g. 500ms, 30s, 5m, 2h)");
	/* a trailing bare number in a compound is junk, not seconds */
	assert_bad_duration("1m30", "invalid duration '1m30' (expected e.g. 500ms, 30s, 5m, 2h)");
	/* less than a millisecond cannot be represented */
	assert_bad_duration("1.5ms", "invalid duration '1.5ms' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_bad_duration("99999999999999999999s", "duration '99999999999999999999s' is too large");
	assert_bad_duration("9223372036854776d", "duration '9223372036854776d' is too large");
	assert_bad_duration("106751991168d", "duration '106751991168d' is too large");
}

static void test_duration_limits(void **state)
{
	(void)state;
	assert_duration("9223372036854775807ms", INT64_MAX);
	assert_duration("106751991167d", 106751991167LL * 86400000LL);
}

static void assert_size(const char *s, uint64_t want)
{
	struct ops_error err = OPS_ERROR_INIT;
	uint64_t got = 1;

	assert_int_equal(parse_size(s, &got, &err), 0);
	assert_int_equal(got, want);
	ops_error_release(&err);
}

static void assert_bad_size(const char *s, const char *msg)
{
	struct ops_error err = OPS_ERROR_INIT;
	uint64_t got = 42;

	assert_int_equal(parse_size(s, &got, &err), -OPS_EXIT_USAGE);
	assert_int_equal(err.code, OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, msg);
	assert_int_equal(got, 42);
	ops_error_release(&err);
}

static void test_size(void **state)
{
	(void)state;
	assert_size("0", 0);
	assert_size("512", 512);
	assert_size("512B", 512);
	assert_size("512b", 512);
	assert_size("512K", 512 * 1024);
	assert_size("512k", 512 * 1024);
	assert_size("512KB", 512 * 1024);
	assert_size("512kb", 512 * 1024);
	assert_size("512KiB", 512 * 1024);
	assert_size("512kib", 512 * 1024);
	assert_size("10M", 10ULL << 20);
	assert_size("2G", 2ULL << 30);
	assert_size("2gib", 2ULL << 30);
	assert_size("1T", 1ULL << 40);
	assert_size("1.5K", 1536);
	assert_size("0.1K", 102); /* rounded down to whole bytes */
	assert_size("15E", 15ULL << 60);

	assert_bad_size("", "invalid size '' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("abc", "invalid size 'abc' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("-1K", "invalid size '-1K' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("10 M", "invalid size '10 M' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("10Mx", "invalid size '10Mx' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("10Ki", "invalid size '10Ki' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("10X", "invalid size '10X' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("M", "invalid size 'M' (expected e.g. 512K, 10M, 2G)");
	assert_bad_size("16E", "size '16E' is too large");
	assert_bad_size("18446744073709551616", "size '18446744073709551616' is too large");
	assert_size("18446744073709551615", UINT64_MAX);
}

static void test_percent(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	double v = -1;
	(void)state;

	assert_int_equal(parse_percent("85%", &v, &err), 0);
	assert_true(v == 85.0);
	assert_int_equal(parse_percent("85", &v, &err), 0);
	assert_true(v == 85.0);
	assert_int_equal(parse_percent("85.5%", &v, &err), 0);
	assert_true(v == 85.5);
	assert_int_equal(parse_percent("0", &v, &err), 0);
	assert_true(v == 0.0);
	assert_int_equal(parse_percent("100%", &v, &err), 0);
	assert_true(v == 100.0);

	v = 7;
	assert_int_equal(parse_percent("100.1%", &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "percentage '100.1%' is out of range (expected 0% to 100%)");
	assert_int_equal(parse_percent("150", &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "percentage '150' is out of range (expected 0% to 100%)");
	assert_int_equal(parse_percent("-5%", &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid percentage '-5%' (expected e.g. 85%)");
	assert_int_equal(parse_percent("85%%", &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid percentage '85%%' (expected e.g. 85%)");
	assert_int_equal(parse_percent("", &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid percentage '' (expected e.g. 85%)");
	assert_int_equal(parse_percent("1e2", &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(parse_percent("nan", &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(parse_percent("99999999999999999999999", &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf,
			    "percentage '99999999999999999999999' is out of range (expected 0% to 100%)");
	assert_true(v == 7);
	ops_error_release(&err);
}

static void test_int(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	long v = -1;
	(void)state;

	assert_int_equal(parse_int("5", 0, 10, &v, &err), 0);
	assert_int_equal(v, 5);
	assert_int_equal(parse_int("-3", -5, 5, &v, &err), 0);
	assert_int_equal(v, -3);
	assert_int_equal(parse_int("007", 0, 10, &v, &err), 0);
	assert_int_equal(v, 7);

	v = 99;
	assert_int_equal(parse_int("11", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "number '11' is out of range (expected 0 to 10)");
	assert_int_equal(parse_int("-1", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "number '-1' is out of range (expected 0 to 10)");
	assert_int_equal(parse_int("99999999999999999999", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf,
			    "number '99999999999999999999' is out of range (expected 0 to 10)");
	assert_int_equal(parse_int("5x", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid number '5x'");
	assert_int_equal(parse_int(" 5", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid number ' 5'");
	assert_int_equal(parse_int("+5", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(parse_int("", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid number ''");
	assert_int_equal(parse_int("-", 0, 10, &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(v, 99);
	ops_error_release(&err);
}

static void test_bool(void **state)
{
	static const char *const yes[] = { "yes", "YES", "true", "True", "on", "1" };
	static const char *const no[] = { "no", "No", "false", "FALSE", "off", "0" };
	struct ops_error err = OPS_ERROR_INIT;
	size_t i;
	int v;
	(void)state;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		v = -1;
		assert_int_equal(parse_bool(yes[i], &v, &err), 0);
		assert_int_equal(v, 1);
		assert_int_equal(parse_bool(no[i], &v, &err), 0);
		assert_int_equal(v, 0);
	}
	v = 5;
	assert_int_equal(parse_bool("maybe", &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(err.code, OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf,
			    "invalid boolean 'maybe' (expected yes/no, true/false, on/off, 1/0)");
	assert_int_equal(parse_bool("", &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(parse_bool("yes ", &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(parse_bool("2", &v, &err), -OPS_EXIT_USAGE);
	assert_int_equal(v, 5);
	ops_error_release(&err);
}

static void assert_format_duration(int64_t ms, const char *want)
{
	struct strbuf sb = STRBUF_INIT;

	format_duration_ms(&sb, ms);
	assert_string_equal(sb.buf, want);
	strbuf_release(&sb);
}

static void test_format_duration(void **state)
{
	(void)state;
	assert_format_duration(0, "0ms");
	assert_format_duration(320, "320ms");
	assert_format_duration(999, "999ms");
	assert_format_duration(1000, "1s");
	assert_format_duration(1500, "1.5s");
	assert_format_duration(1999, "1.9s");
	assert_format_duration(59999, "59.9s");
	assert_format_duration(60000, "1m00s");
	assert_format_duration(125000, "2m05s");
	assert_format_duration(3599999, "59m59s");
	assert_format_duration(3600000, "1h00m");
	assert_format_duration(3720000, "1h02m");
	assert_format_duration(86400000, "1d00h");
	assert_format_duration(93600000, "1d02h");
	assert_format_duration(-1500, "-1.5s");
	assert_format_duration(INT64_MIN, "-106751991167d07h");
}

static void test_format_duration_appends(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	(void)state;

	strbuf_addstr(&sb, "took ");
	format_duration_ms(&sb, 320);
	assert_string_equal(sb.buf, "took 320ms");
	strbuf_release(&sb);
}

static void assert_format_size(uint64_t bytes, const char *want)
{
	struct strbuf sb = STRBUF_INIT;

	format_size(&sb, bytes);
	assert_string_equal(sb.buf, want);
	strbuf_release(&sb);
}

static void test_format_size(void **state)
{
	(void)state;
	assert_format_size(0, "0 B");
	assert_format_size(512, "512 B");
	assert_format_size(1023, "1023 B");
	assert_format_size(1024, "1.0 KiB");
	assert_format_size(1229, "1.2 KiB");
	assert_format_size(1536, "1.5 KiB");
	assert_format_size(3565158, "3.4 MiB");
	assert_format_size(1048575, "1.0 MiB"); /* not "1024.0 KiB" */
	assert_format_size(2ULL << 30, "2.0 GiB");
	assert_format_size(1ULL << 40, "1.0 TiB");
	assert_format_size(UINT64_MAX, "16.0 EiB");
}

static void test_round_trip(void **state)
{
	static const int64_t cases[] = { 0, 320, 1000, 1500, 60000, 125000, 3720000, 86400000 };
	size_t i;
	(void)state;

	/* what format_duration_ms prints, parse_duration_ms reads back (at its precision) */
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb = STRBUF_INIT;
		int64_t back = -1;

		format_duration_ms(&sb, cases[i]);
		assert_int_equal(parse_duration_ms(sb.buf, &back, NULL), 0);
		assert_int_equal(back, cases[i]);
		strbuf_release(&sb);
	}
}

static void test_null_error_slot(void **state)
{
	int64_t ms;
	(void)state;
	/* err may be NULL: the code still comes back */
	assert_int_equal(parse_duration_ms("x", &ms, NULL), -OPS_EXIT_USAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_units),
		cmocka_unit_test(test_duration_errors),
		cmocka_unit_test(test_duration_limits),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_percent),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_format_duration_appends),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_null_error_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
