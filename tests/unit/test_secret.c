/* Unit tests for lib/engines/secret: values (length, alphabet, randomness),
 * the [secret] settings and their errors, --list, and result fields that
 * never carry a value. The staged rotation itself runs against real
 * servers in tests/integration/t50*. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "engines/history.h"
#include "engines/secret.h"
#include "system/fs.h"

static void test_generate_encodings(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *a = NULL, *b = NULL;
	unsigned char raw[64];
	(void)state;

	assert_int_equal(sec_generate(32, SEC_BASE64, &a, &err), 0);
	assert_int_equal(strlen(a), 44);
	assert_int_equal(EVP_DecodeBlock(raw, (const unsigned char *)a, 44), 33); /* 32 + one padding byte */
	assert_non_null(strchr(a, '='));
	sec_wipe_free(a);

	assert_int_equal(sec_generate(32, SEC_BASE64URL, &a, &err), 0);
	assert_int_equal(strlen(a), 43);
	assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
	sec_wipe_free(a);

	assert_int_equal(sec_generate(20, SEC_HEX, &a, &err), 0);
	assert_int_equal(strlen(a), 40);
	assert_int_equal(strspn(a, "0123456789abcdef"), 40);
	assert_int_equal(sec_generate(20, SEC_HEX, &b, &err), 0);
	assert_string_not_equal(a, b);
	sec_wipe_free(a);
	sec_wipe_free(b);
	ops_error_release(&err);
}

/* 1024 bytes: every byte value shows up, so the bytes are not, say, text. */
static void test_generate_spread(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	int seen[16] = { 0 }, kinds = 0;
	char *v = NULL;
	(void)state;

	assert_int_equal(sec_generate(1024, SEC_HEX, &v, &err), 0);
	for (size_t i = 0; v[i]; i++)
		seen[v[i] <= '9' ? v[i] - '0' : v[i] - 'a' + 10]++;
	for (int i = 0; i < 16; i++)
		kinds += seen[i] > 0;
	assert_int_equal(kinds, 16);
	sec_wipe_free(v);
	ops_error_release(&err);
}

static int load(const char *text, const char *name, struct sec_settings *s, struct config *cfg,
		struct ops_error *err)
{
	config_init(cfg);
	assert_int_equal(config_load_string(cfg, "test.conf", text, NULL, err), 0);
	sec_settings_init(s);
	return sec_settings_load(s, cfg, name, err);
}

static void expect_config_error(const char *text, const char *name, const char *needle)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct sec_settings s;
	struct config cfg;
	int ret = load(text, name, &s, &cfg, &err);

	if (ret != -OPS_EXIT_CONFIG || !strstr(err.msg.buf, needle))
		fail_msg("config:\n%s\nexpected an error with '%s', got %d '%s'", text, needle, ret, err.msg.buf);
	sec_settings_release(&s);
	config_release(&cfg);
	ops_error_release(&err);
}

static void test_settings_defaults(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct sec_settings s;
	struct config cfg;
	(void)state;

	assert_int_equal(load("[service]\nrestart = true\n[secret \"jwt\"]\nenv = JWT_SECRET\n", "jwt", &s, &cfg, &err), 0);
	assert_int_equal(s.kind, SEC_RANDOM);
	assert_int_equal(s.bytes, 32);
	assert_int_equal(s.encoding, SEC_BASE64);
	assert_string_equal(s.restart, "true");
	assert_null(s.previous_env);
	sec_settings_release(&s);
	config_release(&cfg);

	assert_int_equal(load("[service]\nrestart = true\n[deploy]\nchecks = api db\n"
			      "[secret \"db\"]\nenv = DB_PASSWORD\nkind = postgres-password\nstrategy = alternating\n"
			      "role_a = a\nrole_b = b\nrestart = no\n",
			      "db", &s, &cfg, &err),
			 0);
	assert_int_equal(s.kind, SEC_POSTGRES_PASSWORD);
	assert_int_equal(s.bytes, 24);
	assert_int_equal(s.encoding, SEC_BASE64URL);
	assert_int_equal(s.strategy, SEC_ALTERNATING);
	assert_string_equal(s.user_env, "DB_USER");
	assert_null(s.restart);
	assert_int_equal(s.nchecks, 2);
	assert_string_equal(s.checks[1], "db");
	sec_settings_release(&s);
	config_release(&cfg);
	ops_error_release(&err);
}

static void test_settings_errors(void **state)
{
	(void)state;
	expect_config_error("[secret \"a\"]\nenv = A\n", "b", "no [secret \"b\"]");
	expect_config_error("[secret \"a\"]\nkind = random\n", "a", "needs env = KEY");
	expect_config_error("[secret \"a\"]\nenv = A B\n", "a", "not an env file key");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = ssh-key\n", "a", "unknown kind 'ssh-key'");
	expect_config_error("[secret \"a\"]\nenv = A\nencoding = base32\n", "a", "unknown encoding 'base32'");
	expect_config_error("[secret \"a\"]\nenv = A\nbytes = 4\n", "a", "bytes");
	expect_config_error("[secret \"a\"]\nenv = A\nbytes = 4096\n", "a", "bytes");
	expect_config_error("[secret \"a\"]\nenv = A\nprevious_env = A\n", "a", "different keys");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = postgres-password\nrole = r\nprevious_env = B\n", "a",
			    "previous_env is for kind = random");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = postgres-password\n", "a", "needs role = NAME");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = postgres-password\nstrategy = rolling\nrole = r\n", "a",
			    "unknown strategy 'rolling'");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = postgres-password\nstrategy = alternating\nrole_a = x\n",
			    "a", "role_a and role_b");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = postgres-password\nstrategy = alternating\n"
			    "role_a = x\nrole_b = x\n",
			    "a", "two different roles");
	expect_config_error("[secret \"a\"]\nenv = A\nkind = postgres-password\nstrategy = alternating\n"
			    "role_a = x\nrole_b = y\nuser_env = A\n",
			    "a", "different keys");
	expect_config_error("[secret \"a\"]\nenv = A\nrestart = maybe\n", "a", "restart");
}

static void test_list(void **state)
{
	char dir[] = "/tmp/opsctl-test-secret-XXXXXX";
	struct ops_error err = OPS_ERROR_INIT;
	struct config cfg;
	struct envfile env;
	char *sub, *path, fp[20];
	cJSON *list = NULL, *jwt, *db, *gone;
	(void)state;

	assert_non_null(mkdtemp(dir));
	sub = xstrfmt("%s/secrets", dir);
	assert_int_equal(fs_mkdir_p(sub, 0700, &err), 0);
	path = xstrfmt("%s/jwt.json", sub);
	assert_int_equal(fs_write_atomic(path, "{\"rotated_at\": \"2020-01-01T00:00:00Z\"}", 38, 0600, &err), 0);
	free(path);
	path = xstrfmt("%s/db.pending.json", sub);
	assert_int_equal(fs_write_atomic(path, "{}", 2, 0600, &err), 0);
	free(path);
	path = xstrfmt("%s/old.json", sub);
	assert_int_equal(fs_write_atomic(path, "{\"kind\": \"random\", \"env\": \"OLD\"}", 32, 0600, &err), 0);
	free(path);

	config_init(&cfg);
	assert_int_equal(config_load_string(&cfg, "t.conf",
					    "[secret \"jwt\"]\nenv = JWT\n[secret \"db\"]\nenv = PW\nkind = postgres-password\nrole = r\n",
					    NULL, &err),
			 0);
	envfile_init(&env);
	assert_int_equal(envfile_parse(&env, ".env", "JWT=abc\n", 8, &err), 0);
	assert_int_equal(sec_list(&cfg, &env, dir, &list, &err), 0);
	assert_int_equal(cJSON_GetArraySize(list), 3);
	jwt = cJSON_GetArrayItem(list, 0);
	db = cJSON_GetArrayItem(list, 1);
	gone = cJSON_GetArrayItem(list, 2);
	history_fingerprint("abc", 3, fp);
	assert_string_equal(cJSON_GetObjectItem(jwt, "fingerprint")->valuestring, fp);
	assert_string_equal(cJSON_GetObjectItem(jwt, "kind")->valuestring, "random");
	assert_true(cJSON_GetObjectItem(jwt, "age_s")->valuedouble > 86400.0 * 365);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(jwt, "pending")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(db, "pending")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(db, "fingerprint")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(db, "rotated_at")));
	assert_string_equal(cJSON_GetObjectItem(gone, "name")->valuestring, "old");
	assert_string_equal(cJSON_GetObjectItem(gone, "env")->valuestring, "OLD");
	cJSON_Delete(list);
	envfile_release(&env);
	config_release(&cfg);
	assert_int_equal(fs_remove_tree(dir, &err), 0);
	free(sub);
	ops_error_release(&err);
}

/* The result's fields name the secret by fingerprint only, even with
 * --show (the value is kept apart for the terminal). */
static void test_fields_without_value(void **state)
{
	struct sec_result r;
	cJSON *f;
	char *text;
	(void)state;

	sec_result_init(&r);
	r.name = xstrdup("jwt");
	r.shown = xstrdup("the-secret-value");
	history_fingerprint("the-secret-value", 16, r.fingerprint);
	f = sec_result_fields(&r, 1, "boom");
	text = cJSON_PrintUnformatted(f);
	assert_null(strstr(text, "the-secret-value"));
	assert_non_null(strstr(text, r.fingerprint));
	assert_non_null(strstr(text, "\"error\":\"boom\""));
	free(text);
	cJSON_Delete(f);
	sec_result_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate_encodings),
		cmocka_unit_test(test_generate_spread),
		cmocka_unit_test(test_settings_defaults),
		cmocka_unit_test(test_settings_errors),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_fields_without_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
