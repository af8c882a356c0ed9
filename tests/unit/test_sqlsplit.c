/* Unit tests for lib/base/sqlsplit.c: where statements end, their bodies and
 * lines, the errors users see, and the position helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sqlsplit.h"
#include "base/exitcode.h"

/* One expected piece: its exact text, how many bytes of it come before the
 * body (0 when the body is empty), the body and its line. The input is the
 * concatenation of the pieces, so start and len follow from them. */
struct piece {
	const char *text;
	size_t lead;
	const char *body;
	int line;
};

/* The properties every split must have, whatever the input. */
static void assert_well_formed(const char *text, size_t len, const struct sql_script *s)
{
	size_t i, next = 0;

	for (i = 0; i < s->nr; i++) {
		const struct sql_stmt *st = &s->stmts[i];

		assert_int_equal(st->start, next);
		assert_true(st->len > 0);
		next = st->start + st->len;
		assert_true(st->body_start >= st->start);
		assert_true(st->body_start + st->body_len <= next);
		if (!st->body_len)
			assert_int_equal(st->body_start, st->start);
		assert_int_equal(st->line, sql_line_at(text, len, st->body_start));
	}
	assert_int_equal(next, len);
}

static void check_split_len(const char *text, size_t len, const struct piece *want, size_t nr)
{
	struct sql_script s;
	struct ops_error err = OPS_ERROR_INIT;
	size_t i, start = 0, count = 0;

	if (sql_split(text, len, &s, &err) != 0)
		fail_msg("unexpected error: %s", err.msg.buf);
	assert_well_formed(text, len, &s);
	if (s.nr != nr) {
		for (i = 0; i < s.nr; i++)
			print_message("piece %zu: [%.*s]\n", i, (int)s.stmts[i].len, text + s.stmts[i].start);
		fail_msg("%zu pieces, want %zu", s.nr, nr);
	}
	for (i = 0; i < nr; i++) {
		const struct sql_stmt *st = &s.stmts[i];
		size_t plen = strlen(want[i].text);

		assert_int_equal(st->start, start);
		assert_int_equal(st->len, plen);
		assert_memory_equal(text + start, want[i].text, plen);
		assert_int_equal(st->body_start, start + want[i].lead);
		assert_int_equal(st->body_len, strlen(want[i].body));
		if (st->body_len)
			assert_memory_equal(text + st->body_start, want[i].body, st->body_len);
		assert_int_equal(st->line, want[i].line);
		if (st->body_len)
			count++;
		start += plen;
	}
	assert_int_equal(sql_count_statements(&s), count);
	sql_script_release(&s);
	assert_null(s.stmts);
	assert_int_equal(s.nr, 0);
	ops_error_release(&err);
}

/* The input is built from the pieces, so an expectation cannot drift from it. */
static void check_pieces(const struct piece *want, size_t nr)
{
	struct strbuf in = STRBUF_INIT;
	size_t i;

	for (i = 0; i < nr; i++)
		strbuf_addstr(&in, want[i].text);
	check_split_len(in.buf, in.len, want, nr);
	strbuf_release(&in);
}

#define CHECK(...) do { \
		const struct piece want_[] = { __VA_ARGS__ }; \
		check_pieces(want_, sizeof(want_) / sizeof(want_[0])); \
	} while (0)

static void assert_split_error(const char *text, const char *msg)
{
	struct sql_script s = { (struct sql_stmt *)&s, 7, 7 };
	struct ops_error err = OPS_ERROR_INIT;

	assert_int_equal(sql_split(text, strlen(text), &s, &err), -OPS_EXIT_CONFIG);
	assert_int_equal(err.code, OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, msg);
	assert_null(s.stmts);
	assert_int_equal(s.nr, 0);
	sql_script_release(&s);
	ops_error_release(&err);
}

static void test_empty_input(void **state)
{
	struct sql_script s = SQL_SCRIPT_INIT;
	struct ops_error err = OPS_ERROR_INIT;

	(void)state;
	assert_int_equal(sql_split("", 0, &s, &err), 0);
	assert_int_equal(s.nr, 0);
	assert_int_equal(sql_count_statements(&s), 0);
	sql_script_release(&s);
	assert_int_equal(sql_split(NULL, 0, &s, &err), 0);
	assert_int_equal(s.nr, 0);
	sql_script_release(&s);
	assert_int_equal(err.code, 0);
	ops_error_release(&err);
}

static void test_simple_statements(void **state)
{
	(void)state;
	CHECK({ "SELECT 1;", 0, "SELECT 1", 1 },
	      { "\nSELECT 2;", 1, "SELECT 2", 2 },
	      { "\n", 0, "", 2 });
	/* a statement without ';' at the end owns the rest, trailing blanks trimmed */
	CHECK({ "SELECT 1;", 0, "SELECT 1", 1 },
	      { "\n  SELECT 2 \t\n\n", 3, "SELECT 2", 2 });
	CHECK({ "SELECT 1", 0, "SELECT 1", 1 });
	CHECK({ "  \n\t", 0, "", 1 });
	/* empty statements have no body and do not count */
	CHECK({ "SELECT 1;", 0, "SELECT 1", 1 },
	      { ";", 0, "", 1 },
	      { " \n ;", 0, "", 1 },
	      { "SELECT 2;", 0, "SELECT 2", 2 });
}

static void test_only_comments(void **state)
{
	(void)state;
	CHECK({ "-- nothing; here\n/* nor ; here */\n", 0, "", 1 });
	CHECK({ "SELECT 1;", 0, "SELECT 1", 1 },
	      { " -- done;\n/* really; */", 0, "", 1 });
}

static void test_single_quotes(void **state)
{
	(void)state;
	CHECK({ "INSERT INTO t VALUES ('it''s; fine', ';');", 0,
		"INSERT INTO t VALUES ('it''s; fine', ';')", 1 },
	      { "\nSELECT '';", 1, "SELECT ''", 2 },
	      { "SELECT 'a\\';", 0, "SELECT 'a\\'", 2 },   /* no backslash escapes in '' */
	      { "SELECT '\n;\n'", 0, "SELECT '\n;\n'", 2 });
	/* B'', X'' and N'' are plain literals */
	CHECK({ "SELECT B'01;', X'1F;', n'x;''y';", 0, "SELECT B'01;', X'1F;', n'x;''y'", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
}

static void test_escape_strings(void **state)
{
	(void)state;
	CHECK({ "SELECT E'it\\'s; ok', e'\\\\';", 0, "SELECT E'it\\'s; ok', e'\\\\'", 1 },
	      { "SELECT E'\\'';", 0, "SELECT E'\\''", 1 },
	      { "SELECT 'a\\';", 0, "SELECT 'a\\'", 1 },
	      { "SELECT E'a''\\';''';", 0, "SELECT E'a''\\';'''", 1 },
	      { "SELECT E'line\\\nbreak;'", 0, "SELECT E'line\\\nbreak;'", 1 });
	/* the E must start a token: in note'\' and 1e'\' the quote is a plain one */
	CHECK({ "SELECT note'\\';", 0, "SELECT note'\\'", 1 },
	      { "SELECT 1e'\\';", 0, "SELECT 1e'\\'", 1 },
	      { "SELECT $1e'\\';", 0, "SELECT $1e'\\'", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
}

static void test_string_continuation(void **state)
{
	(void)state;
	/* 'a' newline 'b' is one literal, and an E'' keeps its escapes in the
	 * continued part */
	CHECK({ "SELECT E'a'\n'\\';x';", 0, "SELECT E'a'\n'\\';x'", 1 },
	      { "SELECT E'a' -- note\n  '\\';x';", 0, "SELECT E'a' -- note\n  '\\';x'", 2 },
	      { "SELECT 2", 0, "SELECT 2", 3 });
	/* without a newline between them they are two literals */
	CHECK({ "SELECT E'a' '\\';", 0, "SELECT E'a' '\\'", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
	/* a block comment does not continue a literal */
	CHECK({ "SELECT E'a'\n/* c */ '\\';", 0, "SELECT E'a'\n/* c */ '\\'", 1 },
	      { "SELECT 2", 0, "SELECT 2", 2 });
}

static void test_unicode_strings(void **state)
{
	(void)state;
	/* U&'' has no backslash-quote escape: the backslash is a plain byte here */
	CHECK({ "SELECT U&'d\\0061t\\+000061; x', u&'a\\';", 0,
		"SELECT U&'d\\0061t\\+000061; x', u&'a\\'", 1 },
	      { "SELECT U&\"d;\"\"x\" UESCAPE '!';", 0, "SELECT U&\"d;\"\"x\" UESCAPE '!'", 1 },
	      { "SELECT u&x;", 0, "SELECT u&x", 1 });
}

static void test_quoted_identifiers(void **state)
{
	(void)state;
	CHECK({ "CREATE TABLE \"we;ird\"\"name\" (\"a;b\" int, \"it's\" text);", 0,
		"CREATE TABLE \"we;ird\"\"name\" (\"a;b\" int, \"it's\" text)", 1 },
	      { "SELECT \"$$\";", 0, "SELECT \"$$\"", 1 },
	      { "SELECT \"\"\"\";", 0, "SELECT \"\"\"\"", 1 });
}

static void test_dollar_quotes(void **state)
{
	(void)state;
	CHECK({ "SELECT $$a;b$$;", 0, "SELECT $$a;b$$", 1 },
	      { "SELECT $a$x;$b$;$$;$a$;", 0, "SELECT $a$x;$b$;$$;$a$", 1 },
	      /* $tag$...$tagx$...$tag$: a near miss does not close */
	      { "SELECT $fn$ $fnx$; $f$; $fn $fn$;", 0, "SELECT $fn$ $fnx$; $f$; $fn $fn$", 1 },
	      /* $junk$tag$: the closing delimiter may share a '$' with junk */
	      { "SELECT $t$ ;$x$t$;", 0, "SELECT $t$ ;$x$t$", 1 },
	      { "SELECT $_1$;$_1$;", 0, "SELECT $_1$;$_1$", 1 },
	      { "SELECT $é$;$é$;", 0, "SELECT $é$;$é$", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
	/* $1 is a parameter, $1x$ is a parameter with junk, never a quote */
	CHECK({ "PREPARE p AS SELECT $1;", 0, "PREPARE p AS SELECT $1", 1 },
	      { "SELECT $1x$ ;", 0, "SELECT $1x$", 1 },
	      { "SELECT $1$$;$$;", 0, "SELECT $1$$;$$", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
	/* a '$' inside an identifier or after a number junk is no quote */
	CHECK({ "SELECT a$b$c;", 0, "SELECT a$b$c", 1 },
	      { "SELECT a$$ FROM t;", 0, "SELECT a$$ FROM t", 1 },
	      { "SELECT 1a$$;", 0, "SELECT 1a$$", 1 },
	      /* $ before a non-tag character, or $tag without its closing $ */
	      { "SELECT $ ;", 0, "SELECT $", 1 },
	      { "SELECT $abc ;", 0, "SELECT $abc", 1 },
	      { "SELECT $", 0, "SELECT $", 1 });
}

static void test_line_comments(void **state)
{
	(void)state;
	CHECK({ "SELECT 1 -- not; split\n;", 0, "SELECT 1 -- not; split", 1 },
	      { "\n-- lead; in\nSELECT 2 --x", 13, "SELECT 2 --x", 4 });
	/* a lone CR ends a -- comment */
	CHECK({ "SELECT 1 -- c\r;", 0, "SELECT 1 -- c", 1 },
	      { "SELECT 2;", 0, "SELECT 2", 2 });
	/* -- inside an operator still starts a comment; quotes in it do not count */
	CHECK({ "SELECT 1 +-- it's\n1;", 0, "SELECT 1 +-- it's\n1", 1 });
}

static void test_block_comments(void **state)
{
	(void)state;
	CHECK({ "/* a /* b; */ still; */ SELECT 1;", 24, "SELECT 1", 1 },
	      { " /* x */", 0, "", 1 });
	CHECK({ "/*/ x; */ SELECT /* it's */ 1 /**/;", 10, "SELECT /* it's */ 1 /**/", 1 },
	      { "SELECT 2*/* c; */3;", 0, "SELECT 2*/* c; */3", 1 },
	      { "SELECT 3 /* trailing */  \n", 0, "SELECT 3 /* trailing */", 1 });
	CHECK({ "/**/SELECT 1/***/;", 4, "SELECT 1/***/", 1 },
	      { "/* -- ; */ /* '; */ SELECT '/*';", 20, "SELECT '/*'", 1 });
}

static void test_parentheses(void **state)
{
	(void)state;
	CHECK({ "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); "
		"INSERT INTO b VALUES (2));", 0,
		"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); "
		"INSERT INTO b VALUES (2))", 1 },
	      { "\nSELECT 2;", 1, "SELECT 2", 2 });
	/* a stray ')' leaves the depth at 0 */
	CHECK({ "SELECT 1);", 0, "SELECT 1)", 1 },
	      /* a ')' in a literal does not close */
	      { "SELECT (')'; SELECT 3);", 0, "SELECT (')'; SELECT 3)", 1 },
	      { "SELECT 4;", 0, "SELECT 4", 1 });
	/* an unclosed '(' holds the rest */
	CHECK({ "SELECT (1; SELECT 2;\n", 0, "SELECT (1; SELECT 2;", 1 });
}

static void test_begin_atomic(void **state)
{
	(void)state;
	CHECK({ "CREATE OR REPLACE FUNCTION sign_name(x int) RETURNS text\n"
		"LANGUAGE sql\n"
		"BEGIN ATOMIC\n"
		"  SELECT CASE WHEN x > 0 THEN 'pos; itive' ELSE 'neg' END;\n"
		"  SELECT CASE x WHEN 0 THEN 'zero' END;\n"
		"END;", 0,
		"CREATE OR REPLACE FUNCTION sign_name(x int) RETURNS text\n"
		"LANGUAGE sql\n"
		"BEGIN ATOMIC\n"
		"  SELECT CASE WHEN x > 0 THEN 'pos; itive' ELSE 'neg' END;\n"
		"  SELECT CASE x WHEN 0 THEN 'zero' END;\n"
		"END", 1 },
	      { "\nSELECT 1;", 1, "SELECT 1", 7 },
	      { "\n", 0, "", 7 });
	CHECK({ "create procedure ins() language sql begin atomic insert into t values (1); end;", 0,
		"create procedure ins() language sql begin atomic insert into t values (1); end", 1 },
	      { "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT 1; END;", 0,
		"CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT 1; END", 1 },
	      { "SELECT 2;", 0, "SELECT 2", 1 });
	/* nested BEGIN ... END inside the body */
	CHECK({ "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; BEGIN END; END;", 0,
		"CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; BEGIN END; END", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
}

static void test_begin_atomic_heuristic_limits(void **state)
{
	(void)state;
	/* whole words only: begin_work and "begin" are not BEGIN */
	CHECK({ "CREATE FUNCTION begin_work() RETURNS int LANGUAGE sql RETURN 1;", 0,
		"CREATE FUNCTION begin_work() RETURNS int LANGUAGE sql RETURN 1", 1 },
	      { "CREATE FUNCTION \"begin\"() RETURNS int LANGUAGE sql RETURN 1;", 0,
		"CREATE FUNCTION \"begin\"() RETURNS int LANGUAGE sql RETURN 1", 1 },
	      { "SELECT 2;", 0, "SELECT 2", 1 });
	/* quoted bodies, parentheses and other statements hide BEGIN */
	CHECK({ "CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;", 0,
		"CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", 1 },
	      { "CREATE FUNCTION h(begin int) RETURNS TABLE (begin int) LANGUAGE sql RETURN 1;", 0,
		"CREATE FUNCTION h(begin int) RETURNS TABLE (begin int) LANGUAGE sql RETURN 1", 1 },
	      { "CREATE TABLE begin (x int);", 0, "CREATE TABLE begin (x int)", 1 },
	      { "SELECT 'CREATE FUNCTION' begin;", 0, "SELECT 'CREATE FUNCTION' begin", 1 },
	      { "SELECT 2", 0, "SELECT 2", 1 });
	/* CASE outside a BEGIN block opens nothing; U& is no identifier */
	CHECK({ "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1 CASE;", 0,
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1 CASE", 1 },
	      { "CREATE U&FUNCTION f() BEGIN ATOMIC SELECT 1; END;", 0,
		"CREATE U&FUNCTION f() BEGIN ATOMIC SELECT 1; END", 1 },
	      { "SELECT 2;", 0, "SELECT 2", 1 });
	/* CASE ... END outside a BEGIN block neither opens nor closes one */
	CHECK({ "CREATE FUNCTION s(x int) RETURNS int LANGUAGE sql "
		"RETURN CASE WHEN x > 0 THEN 1 ELSE 0 END;", 0,
		"CREATE FUNCTION s(x int) RETURNS int LANGUAGE sql "
		"RETURN CASE WHEN x > 0 THEN 1 ELSE 0 END", 1 },
	      { "SELECT 2;", 0, "SELECT 2", 1 });
	/* the CREATE FUNCTION state ends with its statement */
	CHECK({ "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1;", 0,
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1", 1 },
	      { "\nBEGIN;", 1, "BEGIN", 2 },
	      { "\nSELECT 1;", 1, "SELECT 1", 3 },
	      { "\nCOMMIT;", 1, "COMMIT", 4 });
}

static void test_realistic_migration(void **state)
{
	(void)state;
	CHECK({ "-- opsctl:no-transaction\n"
		"-- 0042_add_audit.sql\n"
		"CREATE TABLE audit_log (\n"
		"    id bigserial PRIMARY KEY,\n"
		"    note text NOT NULL DEFAULT 'n/a; none',\n"
		"    created_at timestamptz NOT NULL DEFAULT now()\n"
		");", 47,
		"CREATE TABLE audit_log (\n"
		"    id bigserial PRIMARY KEY,\n"
		"    note text NOT NULL DEFAULT 'n/a; none',\n"
		"    created_at timestamptz NOT NULL DEFAULT now()\n"
		")", 3 },
	      { "\n\n"
		"CREATE OR REPLACE FUNCTION audit_note() RETURNS trigger\n"
		"LANGUAGE plpgsql AS $$\n"
		"BEGIN\n"
		"    EXECUTE $inner$INSERT INTO audit_log(note) VALUES ('x; y')$inner$;\n"
		"    NEW.note := E'it\\'s; fine' || $q$'$q$;\n"
		"    RETURN NEW; -- ';\n"
		"END;\n"
		"$$;", 2,
		"CREATE OR REPLACE FUNCTION audit_note() RETURNS trigger\n"
		"LANGUAGE plpgsql AS $$\n"
		"BEGIN\n"
		"    EXECUTE $inner$INSERT INTO audit_log(note) VALUES ('x; y')$inner$;\n"
		"    NEW.note := E'it\\'s; fine' || $q$'$q$;\n"
		"    RETURN NEW; -- ';\n"
		"END;\n"
		"$$", 9 },
	      { "\n\n"
		"CREATE INDEX CONCURRENTLY audit_log_created_idx ON audit_log (created_at);", 2,
		"CREATE INDEX CONCURRENTLY audit_log_created_idx ON audit_log (created_at)", 18 },
	      { "\n/* trailing; comment */\n", 0, "", 18 });
}

static void test_crlf(void **state)
{
	(void)state;
	CHECK({ "SELECT 1;", 0, "SELECT 1", 1 },
	      { "\r\nSELECT\r\n  2;", 2, "SELECT\r\n  2", 2 },
	      { "\r\n-- end;\r\n\r\nSELECT 'a\r\nb';", 13, "SELECT 'a\r\nb'", 6 },
	      { "\r\n", 0, "", 7 });
	/* old Mac line ends count as well */
	CHECK({ "SELECT 1;", 0, "SELECT 1", 1 },
	      { "\r\rSELECT 2;", 2, "SELECT 2", 3 });
}

static void test_numbers(void **state)
{
	(void)state;
	/* a number never hides a quote, comment or ';' that follows it */
	CHECK({ "SELECT 1.5e+3, .5, 1..2, 1_000, 0x1F, 1e-3--c;\n;", 0,
		"SELECT 1.5e+3, .5, 1..2, 1_000, 0x1F, 1e-3--c;", 1 },
	      { "SELECT 0x'a;b';", 0, "SELECT 0x'a;b'", 2 },
	      { "SELECT 1.'x;';", 0, "SELECT 1.'x;'", 2 },
	      /* 1e- is one (bad) token, so no comment starts after it; 1e+ takes no '-' */
	      { "\nSELECT 1e--x;", 1, "SELECT 1e--x", 3 },
	      { "\nSELECT 1.e--x;", 1, "SELECT 1.e--x", 4 },
	      { "\nSELECT 1e+--x;\nSELECT 2;", 1, "SELECT 1e+--x;\nSELECT 2", 5 },
	      /* after 1.5 (unlike after 1a) a $$ opens a dollar quote */
	      { "SELECT 1.5$$;$$;", 0, "SELECT 1.5$$;$$", 6 });
}

static void test_nul_bytes(void **state)
{
	static const char text[] = "SELECT 1;\0SELECT '\0;';";
	struct sql_script s;
	struct ops_error err = OPS_ERROR_INIT;

	(void)state;
	assert_int_equal(sql_split(text, sizeof(text) - 1, &s, &err), 0);
	assert_well_formed(text, sizeof(text) - 1, &s);
	assert_int_equal(s.nr, 2);
	assert_int_equal(s.stmts[1].start, 9);
	assert_int_equal(s.stmts[1].len, 13);
	assert_int_equal(s.stmts[1].body_start, 9);
	assert_int_equal(s.stmts[1].body_len, 12);
	sql_script_release(&s);
	ops_error_release(&err);
}

static void test_errors(void **state)
{
	(void)state;
	assert_split_error("SELECT 1;\nSELECT 'abc;\n", "unterminated quoted string starting at line 2");
	assert_split_error("SELECT E'abc\\'\n;", "unterminated quoted string starting at line 1");
	assert_split_error("SELECT E'\\", "unterminated quoted string starting at line 1");
	assert_split_error("SELECT B'0101", "unterminated quoted string starting at line 1");
	assert_split_error("SELECT U&'x", "unterminated quoted string starting at line 1");
	assert_split_error("SELECT 'a'\n\n'b;", "unterminated quoted string starting at line 3");
	assert_split_error("SELECT 1;\n\nCREATE FUNCTION f() AS $body$ x;\n$$;\n",
			   "unterminated dollar-quoted string starting at line 3");
	assert_split_error("SELECT $a$ $A$", "unterminated dollar-quoted string starting at line 1");
	assert_split_error("SELECT 1;\r\n\r\nSELECT $$x$", "unterminated dollar-quoted string starting at line 3");
	assert_split_error("SELECT 1;\n/* a /* b */\nSELECT 1;", "unterminated comment starting at line 2");
	assert_split_error("/*/", "unterminated comment starting at line 1");
	assert_split_error("SELECT 1;\n\n\nSELECT \"abc;\n", "unterminated quoted identifier starting at line 4");
	assert_split_error("SELECT \"a\"\"", "unterminated quoted identifier starting at line 1");
	assert_split_error("SELECT U&\"x", "unterminated quoted identifier starting at line 1");
	/* an error with no error record still fails */
	{
		struct sql_script s;
		assert_int_equal(sql_split("'", 1, &s, NULL), -OPS_EXIT_CONFIG);
		assert_int_equal(s.nr, 0);
	}
}

static void test_line_at(void **state)
{
	static const char text[] = "a\nb\r\nc\rd";
	const size_t len = sizeof(text) - 1;

	(void)state;
	assert_int_equal(sql_line_at(text, len, 0), 1);
	assert_int_equal(sql_line_at(text, len, 1), 1);
	assert_int_equal(sql_line_at(text, len, 2), 2);
	assert_int_equal(sql_line_at(text, len, 3), 2);
	assert_int_equal(sql_line_at(text, len, 4), 2);
	assert_int_equal(sql_line_at(text, len, 5), 3);
	assert_int_equal(sql_line_at(text, len, 7), 4);
	assert_int_equal(sql_line_at(text, len, 8), 4);
	assert_int_equal(sql_line_at(text, len, 1000), 4);
	assert_int_equal(sql_line_at("x\r", 2, 2), 2);
	assert_int_equal(sql_line_at("", 0, 0), 1);
}

static void test_char_to_byte(void **state)
{
	/* a é € 𝄞 b: 1, 2, 3, 4 and 1 bytes */
	static const char text[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9D\x84\x9E" "b";
	const size_t len = sizeof(text) - 1;
	static const char stmt[] = "SELECT 'é' + x";

	(void)state;
	assert_int_equal(sql_char_to_byte(text, len, 0), 0);
	assert_int_equal(sql_char_to_byte(text, len, 1), 0);
	assert_int_equal(sql_char_to_byte(text, len, 2), 1);
	assert_int_equal(sql_char_to_byte(text, len, 3), 3);
	assert_int_equal(sql_char_to_byte(text, len, 4), 6);
	assert_int_equal(sql_char_to_byte(text, len, 5), 10);
	assert_int_equal(sql_char_to_byte(text, len, 6), 11);
	assert_int_equal(sql_char_to_byte(text, len, 1000), 11);
	/* PostgreSQL's position 14 is the "x" after the two-byte é */
	assert_int_equal(sql_char_to_byte(stmt, strlen(stmt), 14), 14);
	assert_int_equal(stmt[sql_char_to_byte(stmt, strlen(stmt), 14)], 'x');
	/* invalid bytes are one character each */
	assert_int_equal(sql_char_to_byte("a\x80" "b", 3, 3), 2);
	assert_int_equal(sql_char_to_byte("\xC3\xA9\xA9x", 4, 3), 3);
	assert_int_equal(sql_char_to_byte("\xE2\x82x", 3, 2), 2);
	assert_int_equal(sql_char_to_byte("\xFF\xC0\x80x", 4, 4), 3);
	assert_int_equal(sql_char_to_byte("\xE2\x82", 2, 2), 2);
	assert_int_equal(sql_char_to_byte("", 0, 5), 0);
}

static int is_tc(const char *body)
{
	return sql_is_transaction_control(body, strlen(body));
}

static void test_transaction_control(void **state)
{
	(void)state;
	assert_true(is_tc("BEGIN"));
	assert_true(is_tc("begin work"));
	assert_true(is_tc("Begin Transaction"));
	assert_true(is_tc("BEGIN ISOLATION LEVEL SERIALIZABLE"));
	assert_true(is_tc("START TRANSACTION READ ONLY"));
	assert_true(is_tc("COMMIT"));
	assert_true(is_tc("commit and chain"));
	assert_true(is_tc("COMMIT PREPARED 'tx1'"));
	assert_true(is_tc("END"));
	assert_true(is_tc("end transaction"));
	assert_true(is_tc("ROLLBACK"));
	assert_true(is_tc("ROLLBACK WORK"));
	assert_true(is_tc("rollback and no chain"));
	assert_true(is_tc("ROLLBACK PREPARED 'tx1'"));
	assert_true(is_tc("ABORT"));
	assert_true(is_tc("PREPARE TRANSACTION 'tx1'"));
	assert_true(is_tc("-- first\n/* then /* nested */ */ BEGIN"));
	assert_true(is_tc("\r\n\tCOMMIT"));
	assert_true(is_tc("BEGIN/* c */"));

	assert_false(is_tc("BEGIN ATOMIC SELECT 1; END"));
	assert_false(is_tc("begin /* x */ atomic"));
	assert_false(is_tc("ROLLBACK TO SAVEPOINT s1"));
	assert_false(is_tc("rollback to s1"));
	assert_false(is_tc("ROLLBACK WORK TO SAVEPOINT s1"));
	assert_false(is_tc("ROLLBACK TRANSACTION TO s1"));
	assert_false(is_tc("SAVEPOINT s1"));
	assert_false(is_tc("RELEASE SAVEPOINT s1"));
	assert_false(is_tc("START"));
	assert_false(is_tc("PREPARE q AS SELECT 1"));
	assert_false(is_tc("SELECT 1"));
	assert_false(is_tc("begin_date"));
	assert_false(is_tc("BEGINNING"));
	assert_false(is_tc("commits"));
	assert_false(is_tc("\"BEGIN\""));
	assert_false(is_tc("-- BEGIN\nSELECT 1"));
	assert_false(is_tc("/* BEGIN"));
	assert_false(is_tc(""));
	assert_false(sql_is_transaction_control("BEGIN", 3));
}

static void test_split_then_classify(void **state)
{
	static const char text[] =
		"-- opsctl:no-transaction\n"
		"BEGIN;\n"
		"CREATE INDEX CONCURRENTLY i ON t (x);\n"
		"SAVEPOINT a; ROLLBACK TO a;\n"
		"COMMIT;\n";
	struct sql_script s;
	struct ops_error err = OPS_ERROR_INIT;
	int want[] = { 1, 0, 0, 0, 1 };
	size_t i;

	(void)state;
	assert_int_equal(sql_split(text, strlen(text), &s, &err), 0);
	assert_int_equal(s.nr, 6);
	assert_int_equal(sql_count_statements(&s), 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(sql_is_transaction_control(text + s.stmts[i].body_start,
							     s.stmts[i].body_len), want[i]);
	assert_int_equal(s.stmts[0].line, 2);
	assert_int_equal(s.stmts[3].line, 4);
	assert_int_equal(s.stmts[4].line, 5);
	sql_script_release(&s);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_input),
		cmocka_unit_test(test_simple_statements),
		cmocka_unit_test(test_only_comments),
		cmocka_unit_test(test_single_quotes),
		cmocka_unit_test(test_escape_strings),
		cmocka_unit_test(test_string_continuation),
		cmocka_unit_test(test_unicode_strings),
		cmocka_unit_test(test_quoted_identifiers),
		cmocka_unit_test(test_dollar_quotes),
		cmocka_unit_test(test_line_comments),
		cmocka_unit_test(test_block_comments),
		cmocka_unit_test(test_parentheses),
		cmocka_unit_test(test_begin_atomic),
		cmocka_unit_test(test_begin_atomic_heuristic_limits),
		cmocka_unit_test(test_realistic_migration),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_line_at),
		cmocka_unit_test(test_char_to_byte),
		cmocka_unit_test(test_transaction_control),
		cmocka_unit_test(test_split_then_classify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
