/* Unit tests for the shared option parser and the strbuf/error basics. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/exitcode.h"
#include "base/opts.h"

struct vals {
	int flag, count, neg;
	const char *str, *choice;
	long num;
	int64_t dur;
	struct opt_list list;
};

static int parse(struct vals *v, int argc, const char **argv, int flags, struct ops_error *err)
{
	const struct opt opts[] = {
		{ OPT_BOOL, 'f', "flag", &v->flag, NULL, "a flag", 0, NULL },
		{ OPT_COUNT, 'v', "verbose", &v->count, NULL, "more", 0, NULL },
		{ OPT_BOOL, 0, "backup", &v->neg, NULL, "negatable", OPTF_NEG, NULL },
		{ OPT_STRING, 'c', "config", &v->str, "FILE", "a file", 0, NULL },
		{ OPT_CHOICE, 'o', "output", &v->choice, "FMT", "format", 0, "text|json" },
		{ OPT_INT, 0, "jobs", &v->num, "N", "jobs", 0, NULL },
		{ OPT_DURATION, 0, "wait", &v->dur, "DURATION", "wait", 0, NULL },
		{ OPT_LIST, 0, "tag", &v->list, "TAG", "tags", 0, NULL },
		OPT_END_MARK,
	};
	return opts_parse(opts, argc, argv, flags, err);
}

static void test_mixed(void **state)
{
	struct vals v;
	struct ops_error err = OPS_ERROR_INIT;
	const char *argv[] = { "cmd", "-fvv", "a", "--config=x.conf", "--wait", "30s", "b", "--jobs", "4",
			       "--tag", "t1", "--tag=t2", "--no-backup", "-ojson", "--", "-c", NULL };
	(void)state;
	memset(&v, 0, sizeof(v));
	v.neg = 1;
	assert_int_equal(parse(&v, 16, argv, 0, &err), 3);
	assert_string_equal(argv[0], "a");
	assert_string_equal(argv[1], "b");
	assert_string_equal(argv[2], "-c");
	assert_null(argv[3]);
	assert_int_equal(v.flag, 1);
	assert_int_equal(v.count, 2);
	assert_int_equal(v.neg, 0);
	assert_string_equal(v.str, "x.conf");
	assert_string_equal(v.choice, "json");
	assert_int_equal(v.num, 4);
	assert_int_equal(v.dur, 30000);
	assert_int_equal(v.list.nr, 2);
	assert_string_equal(v.list.items[1], "t2");
	opt_list_release(&v.list);
	ops_error_release(&err);
}

static void test_errors(void **state)
{
	struct vals v;
	struct ops_error err = OPS_ERROR_INIT;
	const char *a1[] = { "cmd", "--bogus", NULL };
	const char *a2[] = { "cmd", "--config", NULL };
	const char *a3[] = { "cmd", "-o", "yaml", NULL };
	const char *a4[] = { "cmd", "--flag=1", NULL };
	const char *a5[] = { "cmd", "-x", NULL };
	const char *a6[] = { "cmd", "--wait", "soon", NULL };
	const char *a7[] = { "cmd", "-h", NULL };
	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(parse(&v, 2, a1, 0, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "unknown option '--bogus'");
	assert_int_equal(parse(&v, 2, a2, 0, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "option '--config' needs a value");
	assert_int_equal(parse(&v, 3, a3, 0, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid value 'yaml' for '-o' (expected text|json)");
	assert_int_equal(parse(&v, 2, a4, 0, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "option '--flag' takes no value");
	assert_int_equal(parse(&v, 2, a5, 0, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "unknown option '-x'");
	assert_int_equal(parse(&v, 3, a6, 0, &err), -OPS_EXIT_USAGE);
	assert_true(strncmp(err.msg.buf, "option '--wait': invalid duration 'soon'", 40) == 0);
	assert_int_equal(parse(&v, 2, a7, 0, &err), OPTS_HELP);
	ops_error_release(&err);
}

static void test_stop_at_command(void **state)
{
	struct vals v;
	struct ops_error err = OPS_ERROR_INIT;
	const char *argv[] = { "opsctl", "-f", "health", "--flag", "x", NULL };
	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(parse(&v, 5, argv, OPTS_STOP_AT_NON_OPTION, &err), 3);
	assert_string_equal(argv[0], "health");
	assert_string_equal(argv[1], "--flag");
	ops_error_release(&err);
}

static void test_error_record(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;
	assert_int_equal(ops_error_set(&err, OPS_EXIT_CONFIG, "bad '%s'", "x"), -3);
	ops_error_hint(&err, "fix %d", 1);
	ops_error_prefix(&err, "f.conf:%d", 4);
	assert_string_equal(err.msg.buf, "f.conf:4: bad 'x'");
	assert_string_equal(err.hint.buf, "fix 1");
	assert_string_equal(ops_exit_name(75), "locked");
	assert_string_equal(ops_exit_name(4), "unreachable");
	ops_error_release(&err);
}

static void test_strbuf(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	char *s;
	size_t len;
	(void)state;
	assert_string_equal(sb.buf, "");
	strbuf_addf(&sb, "%s-%d", "a", 1);
	for (int i = 0; i < 1000; i++)
		strbuf_addch(&sb, 'x');
	assert_int_equal(sb.len, 1003);
	strbuf_setlen(&sb, 3);
	assert_string_equal(sb.buf, "a-1");
	strbuf_reset(&sb);
	strbuf_addstr(&sb, "  pad \n");
	strbuf_trim(&sb);
	assert_string_equal(sb.buf, "pad");
	strbuf_reset(&sb);
	strbuf_addquoted(&sb, "it's");
	assert_string_equal(sb.buf, "'it'\\''s'");
	s = strbuf_detach(&sb, &len);
	assert_int_equal(len, 9);
	assert_string_equal(sb.buf, "");
	free(s);
	strbuf_release(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_stop_at_command),
		cmocka_unit_test(test_error_record),
		cmocka_unit_test(test_strbuf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
