/* Unit tests for lib/base/envfile.c: byte-for-byte round trips, set, append, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/envfile.h"
#include "base/exitcode.h"

static void parse_ok(struct envfile *env, const char *text)
{
	struct ops_error err = OPS_ERROR_INIT;

	envfile_init(env);
	if (envfile_parse(env, ".env", text, strlen(text), &err) != 0)
		fail_msg("unexpected error: %s", err.msg.buf);
	ops_error_release(&err);
}

static void assert_serialized(const struct envfile *env, const char *want)
{
	struct strbuf out = STRBUF_INIT;

	envfile_serialize(env, &out);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.buf, want, out.len);
	strbuf_release(&out);
}

static void assert_parse_error(const char *text, const char *msg)
{
	struct envfile env;
	struct ops_error err = OPS_ERROR_INIT;

	envfile_init(&env);
	assert_int_equal(envfile_parse(&env, "app.env", text, strlen(text), &err), -OPS_EXIT_CONFIG);
	assert_int_equal(err.code, OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, msg);
	assert_int_equal(env.nr, 0);
	envfile_release(&env);
	ops_error_release(&err);
}

static const char tricky[] =
	"# app secrets\n"
	"\n"
	"export DB_PASSWORD=\"p@ss \\\"word\\\" \\\\ end\"  # rotated\n"
	"JWT_SECRET='abc$def\"ghi'\n"
	"  SPACED = some value with spaces   # trailing comment\n"
	"HASH=ab#cd\n"
	"EMPTY=\n"
	"EMPTY_COMMENT= # nothing here\n"
	"ESCAPES=\"line1\\nline2\\tkept\"\n"
	"PEM=\"-----BEGIN-----\n"
	"abc\n"
	"-----END-----\"\n"
	"dotted.key=1\n"
	"\t# indented comment\n"
	"   \n"
	"export\tTABBED=x\n"
	"export=not-a-prefix\n"
	"URL=postgres://u@h:5432/db?x=1&y=2\n"
	"LAST=final";

static void test_round_trip_tricky(void **state)
{
	struct envfile env;
	(void)state;

	parse_ok(&env, tricky);
	assert_serialized(&env, tricky);
	assert_string_equal(envfile_get(&env, "DB_PASSWORD"), "p@ss \"word\" \\ end");
	assert_string_equal(envfile_get(&env, "JWT_SECRET"), "abc$def\"ghi");
	assert_string_equal(envfile_get(&env, "SPACED"), "some value with spaces");
	assert_string_equal(envfile_get(&env, "HASH"), "ab#cd");
	assert_string_equal(envfile_get(&env, "EMPTY"), "");
	assert_string_equal(envfile_get(&env, "EMPTY_COMMENT"), "");
	/* \n is an escape; other backslash pairs are kept as written */
	assert_string_equal(envfile_get(&env, "ESCAPES"), "line1\nline2\\tkept");
	assert_string_equal(envfile_get(&env, "PEM"), "-----BEGIN-----\nabc\n-----END-----");
	assert_string_equal(envfile_get(&env, "dotted.key"), "1");
	assert_string_equal(envfile_get(&env, "TABBED"), "x");
	assert_string_equal(envfile_get(&env, "export"), "not-a-prefix");
	assert_string_equal(envfile_get(&env, "URL"), "postgres://u@h:5432/db?x=1&y=2");
	assert_string_equal(envfile_get(&env, "LAST"), "final");
	assert_null(envfile_get(&env, "MISSING"));
	assert_null(envfile_get(&env, "abc")); /* a continuation line is not a key */
	/* one record per logical line: the PEM value's three lines are one */
	assert_int_equal(env.nr, 17);
	assert_null(env.lines[0].key);
	assert_string_equal(env.lines[9].raw, "PEM=\"-----BEGIN-----\nabc\n-----END-----\"\n");
	envfile_release(&env);
}

static void test_set_exported_quoted(void **state)
{
	struct envfile env;
	(void)state;

	parse_ok(&env, "# db\n"
		       "export DB_PASSWORD=\"old \\\"pw\\\"\"  # rotated 2024-01-01\n"
		       "OTHER=1\n");
	envfile_set(&env, "DB_PASSWORD", "n3w-s3cret");
	assert_serialized(&env, "# db\n"
				"export DB_PASSWORD=\"n3w-s3cret\"  # rotated 2024-01-01\n"
				"OTHER=1\n");
	assert_string_equal(envfile_get(&env, "DB_PASSWORD"), "n3w-s3cret");

	envfile_set(&env, "DB_PASSWORD", "has \"quotes\" and \\ and\nnewline");
	assert_serialized(&env, "# db\n"
				"export DB_PASSWORD=\"has \\\"quotes\\\" and \\\\ and\\nnewline\"  # rotated 2024-01-01\n"
				"OTHER=1\n");
	envfile_release(&env);
}

static void test_set_keeps_style(void **state)
{
	struct envfile env;
	(void)state;

	parse_ok(&env, "A='single'\n"
		       "B=plain # note\n"
		       "C = spaced\n"
		       "D= # empty with comment\n"
		       "E=\"\"\n");
	envfile_set(&env, "A", "still single $x");
	envfile_set(&env, "B", "no-quotes-needed");
	envfile_set(&env, "C", "two words");
	envfile_set(&env, "D", "v");
	envfile_set(&env, "E", "");
	assert_serialized(&env, "A='still single $x'\n"
				"B=no-quotes-needed # note\n"
				"C = \"two words\"\n"
				"D= v # empty with comment\n"
				"E=\"\"\n");
	/* a single-quoted value that cannot stay single-quoted */
	envfile_set(&env, "A", "it's");
	envfile_set(&env, "B", "#hash");
	envfile_set(&env, "D", "");
	assert_serialized(&env, "A=\"it's\"\n"
				"B=\"#hash\" # note\n"
				"C = \"two words\"\n"
				"D=  # empty with comment\n"
				"E=\"\"\n");
	assert_string_equal(envfile_get(&env, "D"), "");
	envfile_release(&env);
}

/* A key assigned twice gets the new value in both places: whichever one
 * the app's loader reads, and no old secret left behind in the file. */
static void test_set_every_assignment(void **state)
{
	struct envfile env;
	(void)state;

	parse_ok(&env, "K=first\nX=1\nexport K='second' # c\n");
	assert_string_equal(envfile_get(&env, "K"), "second");
	envfile_set(&env, "K", "third");
	assert_serialized(&env, "K=third\nX=1\nexport K='third' # c\n");
	assert_string_equal(envfile_get(&env, "K"), "third");
	envfile_release(&env);
}

static void test_append_without_final_newline(void **state)
{
	struct envfile env;
	(void)state;

	parse_ok(&env, "# x\nA=1");
	envfile_set(&env, "NEW_KEY", "value with space");
	envfile_set(&env, "PLAIN", "abc");
	assert_serialized(&env, "# x\nA=1\nNEW_KEY=\"value with space\"\nPLAIN=abc\n");
	assert_string_equal(envfile_get(&env, "NEW_KEY"), "value with space");
	envfile_release(&env);

	parse_ok(&env, "A=1\n");
	envfile_set(&env, "B", "2");
	assert_serialized(&env, "A=1\nB=2\n");
	envfile_release(&env);

	/* a file cut after the "\r" of its last CRLF gets the "\n", not a second line ending */
	parse_ok(&env, "A=1\r\nB=2\r");
	assert_string_equal(envfile_get(&env, "B"), "2");
	envfile_set(&env, "C", "3");
	assert_serialized(&env, "A=1\r\nB=2\r\nC=3\r\n");
	envfile_release(&env);

	parse_ok(&env, "");
	assert_int_equal(env.nr, 0);
	envfile_set(&env, "B", "2");
	assert_serialized(&env, "B=2\n");
	envfile_release(&env);
}

static void test_crlf(void **state)
{
	static const char text[] = "# win\r\nexport A=\"q\"\r\nB=plain  # c\r\nC='s'\r\nD=last";
	struct envfile env;
	(void)state;

	parse_ok(&env, text);
	assert_serialized(&env, text);
	assert_string_equal(envfile_get(&env, "A"), "q");
	assert_string_equal(envfile_get(&env, "B"), "plain");
	assert_string_equal(envfile_get(&env, "C"), "s");
	assert_string_equal(envfile_get(&env, "D"), "last");

	envfile_set(&env, "A", "new");
	envfile_set(&env, "D", "d2");
	envfile_set(&env, "E", "e");
	assert_serialized(&env, "# win\r\nexport A=\"new\"\r\nB=plain  # c\r\nC='s'\r\nD=d2\r\nE=e\r\n");
	envfile_release(&env);
}

static void test_errors(void **state)
{
	(void)state;
	assert_parse_error("A=1\nnot a line\n",
			   "app.env:2: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("A=1\nB\n", "app.env:2: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("1A=x\n", "app.env:1: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("A-B=x\n", "app.env:1: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("=x\n", "app.env:1: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("export A\n", "app.env:1: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("A=\"x\" junk\n",
			   "app.env:1: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("A='x'y\n", "app.env:1: invalid line in env file (expected KEY=VALUE)");
	/* an unterminated quote is reported where it starts */
	assert_parse_error("A=1\nB=\"open\nC=2\n",
			   "app.env:2: invalid line in env file (expected KEY=VALUE)");
	/* line numbers count the physical lines of multi-line values */
	assert_parse_error("P=\"a\nb\nc\"\nbad line\n",
			   "app.env:4: invalid line in env file (expected KEY=VALUE)");
	assert_parse_error("A=1\r\nB C=2\r\n",
			   "app.env:2: invalid line in env file (expected KEY=VALUE)");
}

static void test_nul_byte_rejected(void **state)
{
	static const char text[] = "A=1\nB=x\0y\n";
	struct envfile env;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	envfile_init(&env);
	assert_int_equal(envfile_parse(&env, ".env", text, sizeof(text) - 1, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, ".env:2: invalid line in env file (expected KEY=VALUE)");
	envfile_release(&env);
	ops_error_release(&err);
}

static void test_set_round_trips_values(void **state)
{
	static const char *const values[] = {
		"", "plain", "two words", " lead", "trail ", "a#b", "a #b", "#x", "q\"uote",
		"it's", "back\\slash", "multi\nline", "cr\rlf", "\\n literal", "$HOME", "tab\there",
		"both ' and \"",
	};
	static const char *const starts[] = { "K=old\n", "export K='old'\n", "K=\"old\" # c\n",
					       "K= # c\n", "X=1" };
	size_t i, j;
	(void)state;

	for (j = 0; j < sizeof(starts) / sizeof(starts[0]); j++) {
		for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
			struct envfile env, again;
			struct strbuf out = STRBUF_INIT;

			parse_ok(&env, starts[j]);
			envfile_set(&env, "K", values[i]);
			assert_string_equal(envfile_get(&env, "K"), values[i]);
			envfile_serialize(&env, &out);
			parse_ok(&again, out.buf);
			assert_string_equal(envfile_get(&again, "K"), values[i]);
			envfile_release(&env);
			envfile_release(&again);
			strbuf_release(&out);
		}
	}
}

static void test_invalid_key_is_ignored(void **state)
{
	struct envfile env;
	(void)state;

	assert_true(envfile_key_valid("DB_PASSWORD"));
	assert_true(envfile_key_valid("_x.y9"));
	assert_false(envfile_key_valid(""));
	assert_false(envfile_key_valid("9A"));
	assert_false(envfile_key_valid("A B"));
	assert_false(envfile_key_valid("A=B"));
	parse_ok(&env, "A=1\n");
	envfile_set(&env, "BAD KEY", "x");
	assert_serialized(&env, "A=1\n");
	envfile_release(&env);
}

static void test_load(void **state)
{
	char dir[] = "/tmp/opsctl-envfile-XXXXXX";
	struct strbuf path = STRBUF_INIT;
	struct envfile env;
	struct ops_error err = OPS_ERROR_INIT;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	strbuf_addf(&path, "%s/.env", dir);
	envfile_init(&env);
	assert_int_equal(envfile_load(&env, path.buf, &err), -OPS_EXIT_CONFIG);
	assert_int_equal(err.code, OPS_EXIT_CONFIG);
	{
		struct strbuf want = STRBUF_INIT;
		strbuf_addf(&want, "cannot read env file '%s': no such file or directory", path.buf);
		assert_string_equal(err.msg.buf, want.buf);
		strbuf_release(&want);
	}

	f = fopen(path.buf, "w");
	assert_non_null(f);
	fputs(tricky, f);
	fclose(f);
	assert_int_equal(envfile_load(&env, path.buf, &err), 0);
	assert_string_equal(env.path, path.buf);
	assert_string_equal(envfile_get(&env, "LAST"), "final");
	assert_serialized(&env, tricky);

	f = fopen(path.buf, "w");
	assert_non_null(f);
	fputs("A=1\n\nB\n", f);
	fclose(f);
	assert_int_equal(envfile_load(&env, path.buf, &err), -OPS_EXIT_CONFIG);
	{
		struct strbuf want = STRBUF_INIT;
		strbuf_addf(&want, "%s:3: invalid line in env file (expected KEY=VALUE)", path.buf);
		assert_string_equal(err.msg.buf, want.buf);
		strbuf_release(&want);
	}

	envfile_release(&env);
	unlink(path.buf);
	rmdir(dir);
	strbuf_release(&path);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_tricky),
		cmocka_unit_test(test_set_exported_quoted),
		cmocka_unit_test(test_set_keeps_style),
		cmocka_unit_test(test_set_every_assignment),
		cmocka_unit_test(test_append_without_final_newline),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nul_byte_rejected),
		cmocka_unit_test(test_set_round_trips_values),
		cmocka_unit_test(test_invalid_key_is_ignored),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
