/* SHA-256 and HMAC-SHA256 through OpenSSL's EVP interface. */
#include "adapters/hash.h"
#include "base/exitcode.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

/* EVP only fails here when memory runs out; like xmalloc, give up loudly. */
static void hash_fatal(void)
{
	fputs("opsctl: fatal: libcrypto SHA-256 failed\n", stderr);
	abort();
}

void hash_sha256(const void *data, size_t len, unsigned char out[32])
{
	if (!EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL))
		hash_fatal();
}

/* EVP_sha256() in EVP_DigestInit_ex looks the algorithm up on every call
 * (OpenSSL 3); fetched once it costs nothing, which a status over 10,000
 * migration files notices. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void hash_sha256_init(struct hash_sha256_ctx *ctx)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	pthread_once(&sha256_once, fetch_sha256);
	if (!md || !sha256_md || !EVP_DigestInit_ex2(md, sha256_md, NULL))
		hash_fatal();
	ctx->md = md;
}

void hash_sha256_update(struct hash_sha256_ctx *ctx, const void *data, size_t len)
{
	if (!EVP_DigestUpdate(ctx->md, data, len))
		hash_fatal();
}

void hash_sha256_final(struct hash_sha256_ctx *ctx, unsigned char out[32])
{
	if (!EVP_DigestFinal_ex(ctx->md, out, NULL))
		hash_fatal();
	hash_sha256_release(ctx);
}

void hash_sha256_release(struct hash_sha256_ctx *ctx)
{
	EVP_MD_CTX_free(ctx->md);
	ctx->md = NULL;
}

int hash_sha256_file(const char *path, char hex_out[65], uint64_t *size, struct ops_error *err)
{
	struct hash_sha256_ctx ctx = HASH_SHA256_CTX_INIT;
	unsigned char buf[65536], digest[32];
	uint64_t total = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	hash_sha256_init(&ctx);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", path,
					    ops_strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		hash_sha256_update(&ctx, buf, (size_t)n);
		total += (uint64_t)n;
	}
	hash_sha256_final(&ctx, digest);
	hash_hex(digest, sizeof(digest), hex_out);
	if (size)
		*size = total;
out:
	hash_sha256_release(&ctx);
	if (fd >= 0)
		close(fd);
	return ret;
}

void hash_hex(const unsigned char *bin, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;
	for (i = 0; i < len; i++) {
		out[2 * i] = digits[bin[i] >> 4];
		out[2 * i + 1] = digits[bin[i] & 0xf];
	}
	out[2 * len] = '\0';
}

void hash_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
		      unsigned char out[32])
{
	unsigned int outlen = 0;
	/* HMAC() takes an int key length; a longer key is not a real secret. */
	if (klen > INT32_MAX ||
	    !HMAC(EVP_sha256(), key, (int)klen, data, len, out, &outlen) || outlen != 32)
		hash_fatal();
}
