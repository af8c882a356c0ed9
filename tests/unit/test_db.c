/* Unit tests for the libpq adapter: where opsctl connects, and that a
 * password never reaches a message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapters/db.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"

static void clear_env(void)
{
	static const char *const vars[] = { "DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE",
		"PGUSER", "PGSERVICE", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", NULL };
	for (size_t i = 0; vars[i]; i++)
		unsetenv(vars[i]);
}

static void test_redact(void **state)
{
	char *s;
	(void)state;
	s = db_redact("postgresql://app:s3cret@db:5432/app");
	assert_string_equal(s, "postgresql://app:***@db:5432/app");
	free(s);
	s = db_redact("postgresql://db/app?user=x&password=s3cret&sslmode=require");
	assert_string_equal(s, "postgresql://db/app?user=x&password=***&sslmode=require");
	free(s);
	s = db_redact("host=db password='a b\\'c' user=x");
	assert_string_equal(s, "host=db password=*** user=x");
	free(s);
	s = db_redact("postgresql://app@db/app");
	assert_string_equal(s, "postgresql://app@db/app");
	free(s);
	s = db_redact("host=db password s3cret user=x"); /* the '=' forgotten */
	assert_string_equal(s, "host=db password *** user=x");
	free(s);
}

static void test_resolution_order(void **state)
{
	struct db_target t;
	struct ops_error err = OPS_ERROR_INIT;
	struct config cfg;
	struct envfile env;
	const char *envtext = "DB_HOST=envhost\nDB_PORT=6543\nDB_NAME=seeddb\nDB_USER=seeduser\nDB_PASSWORD=pw\n";
	(void)state;

	clear_env();
	config_init(&cfg);
	envfile_init(&env);
	assert_int_equal(envfile_parse(&env, ".env", envtext, strlen(envtext), &err), 0);
	assert_int_equal(config_load_string(&cfg, "t.conf", "[database]\nurl = postgresql://cfg@cfghost/cfgdb\n", NULL, &err), 0);

	assert_int_equal(db_resolve(&t, "postgresql://flag:pw@flaghost:1/flagdb", &cfg, &env, &err), 0);
	assert_string_equal(t.source, "--db");
	assert_string_equal(t.display, "flag@flaghost:1/flagdb");
	db_target_release(&t);

	setenv("DATABASE_URL", "postgresql://envurl@urlhost/urldb", 1);
	assert_int_equal(db_resolve(&t, NULL, &cfg, &env, &err), 0);
	assert_string_equal(t.source, "[database] url");
	assert_string_equal(t.display, "cfg@cfghost:5432/cfgdb");
	db_target_release(&t);

	assert_int_equal(db_resolve(&t, NULL, NULL, &env, &err), 0);
	assert_string_equal(t.source, "DATABASE_URL");
	db_target_release(&t);
	unsetenv("DATABASE_URL");

	setenv("PGHOST", "pghost", 1);
	assert_int_equal(db_resolve(&t, NULL, NULL, &env, &err), 0);
	assert_string_equal(t.source, "libpq environment");
	assert_non_null(strstr(t.display, "pghost"));
	db_target_release(&t);
	unsetenv("PGHOST");

	assert_int_equal(db_resolve(&t, NULL, NULL, &env, &err), 0);
	assert_string_equal(t.source, "DB_* variables");
	assert_string_equal(t.display, "seeduser@envhost:6543/seeddb");
	assert_null(strstr(t.display, "pw"));
	db_target_release(&t);

	assert_int_equal(db_resolve(&t, "postgresql://x:secretpw@h/db?bogus=1", NULL, NULL, &err), -OPS_EXIT_CONFIG);
	assert_null(strstr(err.msg.buf, "secretpw"));
	/* libpq's complaint quotes the URL, or the bad piece of the password */
	assert_int_equal(db_resolve(&t, "postgres://x:secretpw@[::1:1/db", NULL, NULL, &err), -OPS_EXIT_CONFIG);
	assert_null(strstr(err.msg.buf, "secretpw"));
	assert_non_null(strstr(err.msg.buf, "\"postgres://x:***@[::1:1/db\""));
	assert_int_equal(db_resolve(&t, "postgres://x:secret%ZZpw@h/db", NULL, NULL, &err), -OPS_EXIT_CONFIG);
	assert_null(strstr(err.msg.buf, "secret"));

	config_release(&cfg);
	envfile_release(&env);
	ops_error_release(&err);
}

static void test_connect_refused(void **state)
{
	struct db_target t;
	struct ops_error err = OPS_ERROR_INIT;
	PGconn *c = NULL;
	(void)state;
	/* port 1 on loopback: nothing listens there */
	assert_int_equal(db_target_from_url(&t, "postgresql://u:pw@127.0.0.1:1/db", "test", &err), 0);
	assert_int_equal(db_connect(&c, &t, "test", 2000, &err), -OPS_EXIT_UNREACHABLE);
	assert_null(c);
	assert_string_equal(err.msg.buf, "cannot connect to 'u@127.0.0.1:1/db': connection refused");
	db_target_release(&t);
	ops_error_release(&err);
}

/* The password reaches pg_dump & co. through a private passfile, never
 * PGPASSWORD (a process's environment is readable in /proc/PID/environ). */
static void test_target_env_passfile(void **state)
{
	struct db_target t;
	struct ops_error err = OPS_ERROR_INIT;
	char **env, buf[128];
	const char *passfile = NULL;
	struct stat st;
	FILE *f;
	int fd;
	(void)state;

	clear_env();
	assert_int_equal(db_target_from_url(&t, "postgresql://u:a%3Ab%5Cc@h:1/db", "test", &err), 0);
	env = db_target_env(&t, "other");
	for (size_t i = 0; env[i]; i++) {
		if (!strncmp(env[i], "PGPASSWORD=", 11))
			assert_string_equal(env[i], "PGPASSWORD="); /* empty: none from our environment */
		if (!strncmp(env[i], "PGPASSFILE=", 11))
			passfile = env[i] + 11;
		assert_null(strstr(env[i], "a:b"));
	}
	assert_non_null(passfile);
	assert_int_equal(stat(passfile, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	f = fopen(passfile, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "*:*:*:*:a\\:b\\\\c\n");
	fd = atoi(strrchr(passfile, '/') + 1);
	db_env_free(env);
	assert_int_equal(fcntl(fd, F_GETFD), -1); /* closed */
	db_target_release(&t);

	/* no password: no passfile, libpq's own rules */
	assert_int_equal(db_target_from_url(&t, "postgresql://u@h:1/db", "test", &err), 0);
	env = db_target_env(&t, NULL);
	for (size_t i = 0; env[i]; i++)
		assert_int_not_equal(strncmp(env[i], "PGPASSFILE=/proc/", 17), 0);
	db_env_free(env);
	db_target_release(&t);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_resolution_order),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_target_env_passfile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
