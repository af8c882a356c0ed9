/* SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto: checksums of backups and
 * migrations, fingerprints of secrets. No hand-written crypto. */
#ifndef OPSCTL_HASH_H
#define OPSCTL_HASH_H

#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

#define HASH_SHA256_LEN 32
#define HASH_SHA256_HEX_LEN 64

/* One-shot SHA-256 of data into out (caller's buffer). */
void hash_sha256(const void *data, size_t len, unsigned char out[32]);

/* Streaming SHA-256. init allocates the digest state, final writes the digest
 * and frees it; release frees it without a digest (an abandoned stream) and is
 * a no-op after final, so a `goto out` path can always call it. Allocation
 * failure aborts, like xmalloc. */
struct hash_sha256_ctx {
	void *md; /* EVP_MD_CTX *, owned; NULL when not in use */
};
#define HASH_SHA256_CTX_INIT { NULL }
void hash_sha256_init(struct hash_sha256_ctx *ctx);
void hash_sha256_update(struct hash_sha256_ctx *ctx, const void *data, size_t len);
void hash_sha256_final(struct hash_sha256_ctx *ctx, unsigned char out[32]);
void hash_sha256_release(struct hash_sha256_ctx *ctx);

/* SHA-256 of a file as 64 lowercase hex digits (+ NUL) in hex_out; its size
 * in *size when size is not NULL. Returns 0, or -OPS_EXIT_FAILED with
 * "cannot read 'PATH': ..." in err. */
int hash_sha256_file(const char *path, char hex_out[65], uint64_t *size, struct ops_error *err);

/* Lowercase hex of len bytes into out, which must hold 2 * len + 1 bytes. */
void hash_hex(const unsigned char *bin, size_t len, char *out);

/* HMAC-SHA256(key, data) into out (caller's buffer). */
void hash_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
		      unsigned char out[32]);

#endif
