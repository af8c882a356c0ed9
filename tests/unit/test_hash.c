/* Unit tests for lib/adapters/hash: SHA-256 and HMAC-SHA256 known vectors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/hash.h"
#include "base/exitcode.h"

static void hex_of(const unsigned char d[32], char out[65])
{
	hash_hex(d, 32, out);
}

static void test_sha256_vectors(void **state)
{
	unsigned char d[32];
	char hex[65];
	(void)state;

	hash_sha256("", 0, d);
	hex_of(d, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hash_sha256("abc", 3, d);
	hex_of(d, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_sha256_streaming(void **state)
{
	struct hash_sha256_ctx ctx = HASH_SHA256_CTX_INIT;
	unsigned char d[32];
	char chunk[1000], hex[65];
	int i;
	(void)state;

	hash_sha256_init(&ctx);
	hash_sha256_update(&ctx, "a", 1);
	hash_sha256_update(&ctx, "bc", 2);
	hash_sha256_final(&ctx, d);
	assert_null(ctx.md);
	hex_of(d, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	/* FIPS 180-2: one million 'a'. */
	memset(chunk, 'a', sizeof(chunk));
	hash_sha256_init(&ctx);
	for (i = 0; i < 1000; i++)
		hash_sha256_update(&ctx, chunk, sizeof(chunk));
	hash_sha256_final(&ctx, d);
	hex_of(d, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

	/* An abandoned stream is released without leaking; release is idempotent. */
	hash_sha256_init(&ctx);
	hash_sha256_update(&ctx, "x", 1);
	hash_sha256_release(&ctx);
	hash_sha256_release(&ctx);
	assert_null(ctx.md);
}

static void test_hmac_rfc4231_case2(void **state)
{
	const char *data = "what do ya want for nothing?";
	unsigned char d[32];
	char hex[65];
	(void)state;

	hash_hmac_sha256("Jefe", 4, data, strlen(data), d);
	hex_of(d, hex);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_hex(void **state)
{
	const unsigned char bin[] = { 0x00, 0x0f, 0xa5, 0xff };
	char out[9];
	(void)state;

	hash_hex(bin, sizeof(bin), out);
	assert_string_equal(out, "000fa5ff");
	hash_hex(bin, 0, out);
	assert_string_equal(out, "");
}

static void test_sha256_file(void **state)
{
	char dir[] = "/tmp/opsctl-test-hash-XXXXXX";
	struct ops_error err = OPS_ERROR_INIT;
	char hex[65], *path, *missing;
	uint64_t size = 0;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	path = xstrfmt("%s/f", dir);
	missing = xstrfmt("%s/missing", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("abc", f);
	fclose(f);

	assert_int_equal(hash_sha256_file(path, hex, &size, &err), 0);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(size, 3);

	assert_int_equal(hash_sha256_file(missing, hex, NULL, &err), -OPS_EXIT_FAILED);
	assert_int_equal(err.code, OPS_EXIT_FAILED);
	{
		char *want = xstrfmt("cannot read '%s': no such file or directory", missing);
		assert_string_equal(err.msg.buf, want);
		free(want);
	}

	unlink(path);
	rmdir(dir);
	free(path);
	free(missing);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_sha256_streaming),
		cmocka_unit_test(test_hmac_rfc4231_case2),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_sha256_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
