/* Unit tests for lib/base/config.c: sections, line numbers, ${VAR}, errors, getters, lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"

static void load_ok(struct config *cfg, const char *text, const struct envfile *env)
{
	struct ops_error err = OPS_ERROR_INIT;

	config_init(cfg);
	if (config_load_string(cfg, "test.conf", text, env, &err) != 0)
		fail_msg("unexpected error: %s", err.msg.buf);
	ops_error_release(&err);
}

/* Loads text expecting failure; checks message and hint ("" = no hint). */
static void assert_load_error(const char *text, const struct envfile *env, const char *msg,
			      const char *hint)
{
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;

	config_init(&cfg);
	assert_int_equal(config_load_string(&cfg, "test.conf", text, env, &err), -OPS_EXIT_CONFIG);
	assert_int_equal(err.code, OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, msg);
	assert_string_equal(err.hint.buf, hint);
	assert_int_equal(cfg.nr, 0);
	assert_null(cfg.path);
	config_release(&cfg);
	ops_error_release(&err);
}

static const char sample[] =
	"; opsctl.conf for ai-chat\n"                                  /* 1 */
	"[app]\n"                                                      /* 2 */
	"name = ai-chat\n"                                             /* 3 */
	"state_dir = /var/lib/opsctl/ai-chat     ; trailing comment\n" /* 4 */
	"\n"                                                           /* 5 */
	"# hash comment\n"                                             /* 6 */
	"[Health]\n"                                                   /* 7 */
	"Timeout = 5s   # inline hash comment\n"                       /* 8 */
	"wait=90s\n"                                                   /* 9 */
	"[check \"api\"]\n"                                            /* 10 */
	"url = http://localhost:8080/actuator/health#frag\n"           /* 11 */
	"require = db redis\n"                                         /* 12 */
	"[check \"DB\"]   ; the database\n"                            /* 13 */
	"type = postgres\n"                                            /* 14 */
	"  [ check   \"api\" ]\n"                                      /* 15 */
	"timeout = 2s\n"                                               /* 16 */
	"[deploy \"blue-green\"]\n"                                    /* 17 */
	"upstream_template = server 127.0.0.1:{port};\n"               /* 18 */
	"empty =\n";                                                   /* 19 */

static void test_sections_and_lines(void **state)
{
	struct config cfg;
	const struct config_entry *e;
	(void)state;

	load_ok(&cfg, sample, NULL);
	assert_string_equal(cfg.path, "test.conf");
	assert_int_equal(cfg.nr, 10);

	e = config_find_entry(&cfg, "app", NULL, "name");
	assert_non_null(e);
	assert_string_equal(e->section, "app");
	assert_null(e->subsection);
	assert_string_equal(e->value, "ai-chat");
	assert_int_equal(e->line, 3);
	assert_string_equal(config_get(&cfg, "app", NULL, "state_dir"), "/var/lib/opsctl/ai-chat");

	/* section and key names are lowercased */
	e = config_find_entry(&cfg, "health", NULL, "timeout");
	assert_non_null(e);
	assert_string_equal(e->section, "health");
	assert_string_equal(e->key, "timeout");
	assert_string_equal(e->value, "5s");
	assert_int_equal(e->line, 8);
	assert_int_equal(config_find_entry(&cfg, "health", NULL, "wait")->line, 9);

	e = config_find_entry(&cfg, "check", "api", "url");
	assert_non_null(e);
	assert_string_equal(e->section, "check");
	assert_string_equal(e->subsection, "api");
	/* '#' not preceded by whitespace is part of the value */
	assert_string_equal(e->value, "http://localhost:8080/actuator/health#frag");
	assert_int_equal(e->line, 11);
	assert_string_equal(config_get(&cfg, "check", "api", "require"), "db redis");
	/* subsection names keep their case */
	assert_string_equal(config_get(&cfg, "check", "DB", "type"), "postgres");
	assert_null(config_get(&cfg, "check", "db", "type"));
	assert_int_equal(config_find_entry(&cfg, "check", "api", "timeout")->line, 16);
	/* ';' not preceded by whitespace is part of the value */
	assert_string_equal(config_get(&cfg, "deploy", "blue-green", "upstream_template"),
			    "server 127.0.0.1:{port};");
	assert_string_equal(config_get(&cfg, "deploy", "blue-green", "empty"), "");
	assert_int_equal(config_find_entry(&cfg, "deploy", "blue-green", "empty")->line, 19);

	/* plain and sub sections do not mix */
	assert_null(config_get(&cfg, "check", NULL, "url"));
	assert_null(config_get(&cfg, "app", "x", "name"));
	assert_null(config_get(&cfg, "nope", NULL, "name"));
	config_release(&cfg);
}

static void test_subsections(void **state)
{
	struct config cfg;
	const char **names = NULL;
	size_t n;
	(void)state;

	load_ok(&cfg, sample, NULL);
	n = config_subsections(&cfg, "check", &names);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "api");
	assert_string_equal(names[1], "DB");
	free(names);

	n = config_subsections(&cfg, "storage", &names);
	assert_int_equal(n, 0);
	free(names);
	config_release(&cfg);
}

static void test_long_names_and_lines(void **state)
{
	struct strbuf text = STRBUF_INIT, longval = STRBUF_INIT, sub = STRBUF_INIT;
	struct config cfg;
	size_t i;
	(void)state;

	/* inih itself stops at 49 bytes of section name and 200 bytes of line */
	for (i = 0; i < 80; i++)
		strbuf_addch(&sub, 'a' + (char)(i % 26));
	for (i = 0; i < 20000; i++)
		strbuf_addch(&longval, 'x');
	strbuf_addf(&text, "[check \"%s\"]\nurl = %s\n[app]\nname = after\n", sub.buf, longval.buf);
	load_ok(&cfg, text.buf, NULL);
	assert_string_equal(config_get(&cfg, "check", sub.buf, "url"), longval.buf);
	assert_int_equal(config_find_entry(&cfg, "app", NULL, "name")->line, 4);
	config_release(&cfg);
	strbuf_release(&text);
	strbuf_release(&longval);
	strbuf_release(&sub);
}

static void test_line_too_long(void **state)
{
	struct strbuf text = STRBUF_INIT;
	size_t i;
	(void)state;

	strbuf_addstr(&text, "[app]\nname = ");
	for (i = 0; i < 70000; i++)
		strbuf_addch(&text, 'x');
	strbuf_addstr(&text, "\n");
	assert_load_error(text.buf, NULL, "test.conf:2: line too long (over 65533 bytes)", "");
	strbuf_release(&text);
}

static void test_crlf_and_bom(void **state)
{
	struct config cfg;
	(void)state;

	load_ok(&cfg, "\xEF\xBB\xBF[app]\r\nname = x\r\n\r\n[check \"a\"]\r\nurl = u ; c\r\n", NULL);
	assert_string_equal(config_get(&cfg, "app", NULL, "name"), "x");
	assert_string_equal(config_get(&cfg, "check", "a", "url"), "u");
	assert_int_equal(config_find_entry(&cfg, "check", "a", "url")->line, 5);
	config_release(&cfg);
}

static void test_expansion(void **state)
{
	static const char env_text[] = "DB_PASSWORD=from-file\nSHADOWED=file\n";
	struct envfile env;
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	envfile_init(&env);
	assert_int_equal(envfile_parse(&env, ".env", env_text, strlen(env_text), &err), 0);
	setenv("OPSCTL_TEST_HOST", "db.internal", 1);
	setenv("SHADOWED", "process", 1);
	unsetenv("DB_PASSWORD");

	load_ok(&cfg, "[database]\n"
		      "url = postgresql://app:${DB_PASSWORD}@${OPSCTL_TEST_HOST}:5432/app\n"
		      "[x]\n"
		      "who = ${SHADOWED}\n"
		      "cost = $$5 and $HOME and a lone $\n"
		      "both = ${OPSCTL_TEST_HOST}${OPSCTL_TEST_HOST}\n",
		&env);
	assert_string_equal(config_get(&cfg, "database", NULL, "url"),
			    "postgresql://app:from-file@db.internal:5432/app");
	/* the process environment comes first */
	assert_string_equal(config_get(&cfg, "x", NULL, "who"), "process");
	assert_string_equal(config_get(&cfg, "x", NULL, "cost"), "$5 and $HOME and a lone $");
	assert_string_equal(config_get(&cfg, "x", NULL, "both"), "db.internaldb.internal");
	config_release(&cfg);

	/* without the env file the same variable is unknown */
	assert_load_error("[database]\n\nurl = postgresql://app:${DB_PASSWORD}@h/app\n", NULL,
			  "test.conf:3: undefined variable 'DB_PASSWORD' in 'database.url'",
			  "set DB_PASSWORD in the environment or in the env file, or write $$ for a literal '$'");
	assert_load_error("[check \"api\"]\nurl = ${NOPE_OPSCTL_X}\n", &env,
			  "test.conf:2: undefined variable 'NOPE_OPSCTL_X' in 'check.api.url'",
			  "set NOPE_OPSCTL_X in the environment or in the env file, or write $$ for a literal '$'");
	assert_load_error("[a]\nb = ${OPEN\n", NULL, "test.conf:2: unterminated '${' in 'a.b'",
			  "write $$ for a literal '$'");
	assert_load_error("[a]\nb = ${}\n", NULL, "test.conf:2: invalid variable name '' in 'a.b'",
			  "write $$ for a literal '$'");
	assert_load_error("[a]\nb = ${1X}\n", NULL, "test.conf:2: invalid variable name '1X' in 'a.b'",
			  "write $$ for a literal '$'");

	unsetenv("OPSCTL_TEST_HOST");
	unsetenv("SHADOWED");
	envfile_release(&env);
	ops_error_release(&err);
}

static void test_duplicates(void **state)
{
	struct config cfg;
	(void)state;

	assert_load_error("[health]\ntimeout = 5s\n; c\nwait = 1s\nTimeout = 6s\n", NULL,
			  "test.conf:5: duplicate key 'health.timeout' (first set on line 2)",
			  "remove one of the two lines");
	assert_load_error("[check \"api\"]\nurl = a\nurl = b\n", NULL,
			  "test.conf:3: duplicate key 'check.api.url' (first set on line 2)",
			  "remove one of the two lines");

	/* a later block of the same section may override: the last value wins */
	load_ok(&cfg, "[health]\ntimeout = 5s\n[app]\nname = x\n[health]\ntimeout = 7s\n", NULL);
	assert_string_equal(config_get(&cfg, "health", NULL, "timeout"), "7s");
	assert_int_equal(config_find_entry(&cfg, "health", NULL, "timeout")->line, 6);
	config_release(&cfg);

	/* the same key in different subsections is no duplicate */
	load_ok(&cfg, "[check \"a\"]\nurl = 1\n[check \"b\"]\nurl = 2\n", NULL);
	assert_string_equal(config_get(&cfg, "check", "a", "url"), "1");
	assert_string_equal(config_get(&cfg, "check", "b", "url"), "2");
	config_release(&cfg);
}

static void test_syntax_errors(void **state)
{
	static const char syntax_hint[] = "expected 'key = value', '[section]' or '[section \"name\"]'";
	static const char header_msg[] =
		" (expected [section] or [section \"name\"])";
	struct strbuf msg = STRBUF_INIT;
	(void)state;

	assert_load_error("[app]\nname = x\njust words\n", NULL, "test.conf:3: syntax error",
			  syntax_hint);
	assert_load_error("[app]\n\n[health\nx = 1\n", NULL, "test.conf:3: syntax error", syntax_hint);
	assert_load_error("name = x\n", NULL, "test.conf:1: key 'name' outside of any section",
			  "put it under a [section] header");
	assert_load_error("[app]\nbad key = 1\n", NULL, "test.conf:2: invalid key name 'bad key'",
			  "key names use letters, digits, '_' and '-'");
	assert_load_error("[app]\n = 1\n", NULL, "test.conf:2: invalid key name ''",
			  "key names use letters, digits, '_' and '-'");

	strbuf_addf(&msg, "test.conf:2: invalid section header '[check api]'%s", header_msg);
	assert_load_error("[app]\n[check api]\nx = 1\n", NULL, msg.buf, "");
	strbuf_reset(&msg);
	strbuf_addf(&msg, "test.conf:1: invalid section header '[check \"api\" x]'%s", header_msg);
	assert_load_error("[check \"api\" x]\n", NULL, msg.buf, "");
	strbuf_reset(&msg);
	strbuf_addf(&msg, "test.conf:1: invalid section header '[check \"\"]'%s", header_msg);
	assert_load_error("[check \"\"]\n", NULL, msg.buf, "");
	strbuf_reset(&msg);
	strbuf_addf(&msg, "test.conf:1: invalid section header '[check \"api]'%s", header_msg);
	assert_load_error("[check \"api]\n", NULL, msg.buf, "");
	strbuf_reset(&msg);
	strbuf_addf(&msg, "test.conf:1: invalid section header '[]'%s", header_msg);
	assert_load_error("[]\n", NULL, msg.buf, "");
	strbuf_reset(&msg);
	strbuf_addf(&msg, "test.conf:1: invalid section header '[app]'%s", header_msg);
	assert_load_error("[app] junk\n", NULL, msg.buf, "");
	strbuf_reset(&msg);
	strbuf_addf(&msg, "test.conf:1: invalid section header '[\"api\"]'%s", header_msg);
	assert_load_error("[\"api\"]\n", NULL, msg.buf, "");
	strbuf_release(&msg);
}

static void test_failed_load_keeps_old_config(void **state)
{
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	load_ok(&cfg, "[app]\nname = old\n", NULL);
	assert_int_equal(config_load_string(&cfg, "new.conf", "[app]\nname = ${NOPE_OPSCTL_Y}\n",
					    NULL, &err),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(cfg.path, "test.conf");
	assert_string_equal(config_get(&cfg, "app", NULL, "name"), "old");
	config_release(&cfg);
	ops_error_release(&err);
}

static void test_typed_getters(void **state)
{
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;
	int64_t ms = -1;
	uint64_t bytes = 0;
	double pct = -1;
	long n = -1;
	int b = -1;
	(void)state;

	load_ok(&cfg, "[health]\n"
		      "timeout = 5s\n"
		      "wait = soon\n"
		      "[backup]\n"
		      "keep_last = 3\n"
		      "keep_daily = -1\n"
		      "max = 2G\n"
		      "migrate = yes\n"
		      "[check \"disk\"]\n"
		      "warn = 70%\n"
		      "crit = 185%\n"
		      "timeout = x\n",
		NULL);
	assert_int_equal(config_get_duration_ms(&cfg, "health", NULL, "timeout", &ms, &err), 0);
	assert_int_equal(ms, 5000);
	assert_int_equal(config_get_size(&cfg, "backup", NULL, "max", &bytes, &err), 0);
	assert_int_equal(bytes, 2ULL << 30);
	assert_int_equal(config_get_percent(&cfg, "check", "disk", "warn", &pct, &err), 0);
	assert_true(pct == 70.0);
	assert_int_equal(config_get_int(&cfg, "backup", NULL, "keep_last", 0, 1000, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(config_get_bool(&cfg, "backup", NULL, "migrate", &b, &err), 0);
	assert_int_equal(b, 1);
	assert_int_equal(err.code, 0);

	/* absent: 0 and *out untouched */
	ms = 123;
	assert_int_equal(config_get_duration_ms(&cfg, "health", NULL, "interval", &ms, &err), 0);
	assert_int_equal(ms, 123);
	b = 7;
	assert_int_equal(config_get_bool(&cfg, "deploy", NULL, "backup", &b, &err), 0);
	assert_int_equal(b, 7);

	assert_int_equal(config_get_duration_ms(&cfg, "health", NULL, "wait", &ms, &err),
			 -OPS_EXIT_CONFIG);
	assert_int_equal(err.code, OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:3: invalid value for 'health.wait': "
					 "invalid duration 'soon' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_int_equal(ms, 123);
	assert_int_equal(config_get_duration_ms(&cfg, "check", "disk", "timeout", &ms, &err),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:12: invalid value for 'check.disk.timeout': "
					 "invalid duration 'x' (expected e.g. 500ms, 30s, 5m, 2h)");
	assert_int_equal(config_get_percent(&cfg, "check", "disk", "crit", &pct, &err),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:11: invalid value for 'check.disk.crit': "
					 "percentage '185%' is out of range (expected 0% to 100%)");
	assert_int_equal(config_get_int(&cfg, "backup", NULL, "keep_daily", 0, 1000, &n, &err),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:6: invalid value for 'backup.keep_daily': "
					 "number '-1' is out of range (expected 0 to 1000)");
	assert_int_equal(config_get_bool(&cfg, "health", NULL, "timeout", &b, &err),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:2: invalid value for 'health.timeout': "
					 "invalid boolean '5s' (expected yes/no, true/false, on/off, 1/0)");
	assert_int_equal(config_get_size(&cfg, "health", NULL, "timeout", &bytes, &err),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:2: invalid value for 'health.timeout': "
					 "invalid size '5s' (expected e.g. 512K, 10M, 2G)");

	assert_int_equal(config_error(&cfg, config_find_entry(&cfg, "backup", NULL, "max"), &err,
				      "'%s' is not writable", "/x"),
			 -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "test.conf:7: '/x' is not writable");
	config_release(&cfg);
	ops_error_release(&err);
}

struct tmpdir {
	char path[64];
	char cwd[4096];
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void test_load_and_find(void **state)
{
	struct tmpdir t;
	struct strbuf file = STRBUF_INIT, missing = STRBUF_INIT, want = STRBUF_INIT;
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;
	char *found = NULL;
	(void)state;

	strlcpy_s(t.path, "/tmp/opsctl-config-XXXXXX", sizeof(t.path));
	assert_non_null(mkdtemp(t.path));
	assert_non_null(getcwd(t.cwd, sizeof(t.cwd)));
	strbuf_addf(&file, "%s/custom.conf", t.path);
	strbuf_addf(&missing, "%s/missing.conf", t.path);
	write_file(file.buf, "[app]\n\nname = from-file\n");
	unsetenv("OPSCTL_CONFIG");

	config_init(&cfg);
	assert_int_equal(config_load(&cfg, file.buf, NULL, &err), 0);
	assert_string_equal(cfg.path, file.buf);
	assert_string_equal(config_get(&cfg, "app", NULL, "name"), "from-file");
	assert_int_equal(config_find_entry(&cfg, "app", NULL, "name")->line, 3);
	config_release(&cfg);

	assert_int_equal(config_load(&cfg, missing.buf, NULL, &err), -OPS_EXIT_CONFIG);
	strbuf_addf(&want, "cannot read config file '%s': no such file or directory", missing.buf);
	assert_string_equal(err.msg.buf, want.buf);
	assert_int_equal(config_load(&cfg, t.path, NULL, &err), -OPS_EXIT_CONFIG);
	strbuf_reset(&want);
	strbuf_addf(&want, "cannot read config file '%s': is a directory", t.path);
	assert_string_equal(err.msg.buf, want.buf);

	/* explicit path: must exist */
	assert_int_equal(config_find(file.buf, &found, &err), 0);
	assert_string_equal(found, file.buf);
	free(found);
	assert_int_equal(config_find(missing.buf, &found, &err), -OPS_EXIT_CONFIG);
	assert_null(found);
	strbuf_reset(&want);
	strbuf_addf(&want, "cannot read config file '%s': no such file or directory", missing.buf);
	assert_string_equal(err.msg.buf, want.buf);

	/* $OPSCTL_CONFIG beats ./opsctl.conf, and must exist too */
	assert_int_equal(chdir(t.path), 0);
	write_file("opsctl.conf", "[app]\nname = cwd\n");
	setenv("OPSCTL_CONFIG", file.buf, 1);
	assert_int_equal(config_find(NULL, &found, &err), 0);
	assert_string_equal(found, file.buf);
	free(found);
	setenv("OPSCTL_CONFIG", missing.buf, 1);
	assert_int_equal(config_find(NULL, &found, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, want.buf);
	assert_string_equal(err.hint.buf, "$OPSCTL_CONFIG names it; unset it or fix the path");
	/* the explicit path beats $OPSCTL_CONFIG */
	assert_int_equal(config_find(file.buf, &found, &err), 0);
	assert_string_equal(found, file.buf);
	free(found);
	unsetenv("OPSCTL_CONFIG");

	assert_int_equal(config_find(NULL, &found, &err), 0);
	assert_string_equal(found, "opsctl.conf");
	free(found);
	unlink("opsctl.conf");
	assert_int_equal(config_find(NULL, &found, &err), 0);
	if (access("/etc/opsctl/opsctl.conf", F_OK) == 0)
		assert_string_equal(found, "/etc/opsctl/opsctl.conf");
	else
		assert_null(found);
	free(found);

	assert_int_equal(chdir(t.cwd), 0);
	unlink(file.buf);
	rmdir(t.path);
	strbuf_release(&file);
	strbuf_release(&missing);
	strbuf_release(&want);
	ops_error_release(&err);
}

static void test_nul_byte_in_file(void **state)
{
	char dir[] = "/tmp/opsctl-config-XXXXXX";
	struct strbuf path = STRBUF_INIT;
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	strbuf_addf(&path, "%s/nul.conf", dir);
	f = fopen(path.buf, "w");
	assert_non_null(f);
	fwrite("[app]\nname = a\0b\n", 1, 17, f);
	fclose(f);
	config_init(&cfg);
	assert_int_equal(config_load(&cfg, path.buf, NULL, &err), -OPS_EXIT_CONFIG);
	assert_true(ends_with(err.msg.buf, "/nul.conf:2: NUL byte in config file"));
	config_release(&cfg);
	unlink(path.buf);
	rmdir(dir);
	strbuf_release(&path);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sections_and_lines),
		cmocka_unit_test(test_subsections),
		cmocka_unit_test(test_long_names_and_lines),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_crlf_and_bom),
		cmocka_unit_test(test_expansion),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_failed_load_keeps_old_config),
		cmocka_unit_test(test_typed_getters),
		cmocka_unit_test(test_load_and_find),
		cmocka_unit_test(test_nul_byte_in_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
