/* S3-compatible object storage (AWS S3, MinIO, s3rver) for offsite backups:
 * libcurl with its own SigV4 signing (CURLOPT_AWS_SIGV4), S3's XML answers
 * read with libxml2. A file above the part size goes up in parts, several at
 * a time over curl multi, each with its Content-MD5 sent and the ETag that
 * comes back checked; an upload cut short (the process killed) resumes from a
 * state file the caller names. Every request has deadlines and is retried
 * with backoff on timeouts, connection errors, 429 and 5xx, never on another
 * 4xx. Nothing here prints; errors are struct ops_error:
 *   refused credentials (403 InvalidAccessKeyId, SignatureDoesNotMatch,
 *   AccessDenied), no such bucket, unreachable or timed out after the
 *   retries, 5xx after the retries          OPS_EXIT_UNREACHABLE
 *   a checksum that does not match          OPS_EXIT_INTEGRITY
 *   a missing object                        S3_NOT_FOUND (err->code OPS_EXIT_FAILED)
 *   a bad [storage] section                 OPS_EXIT_CONFIG, naming file and line
 *   anything else (other 4xx, local I/O)    OPS_EXIT_FAILED
 * Keys given to and returned by the operations are below the storage's
 * prefix: with prefix = ai-chat, key "APP-1/manifest.json" is the object
 * "ai-chat/APP-1/manifest.json". */
#ifndef OPSCTL_S3_H
#define OPSCTL_S3_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "base/error.h"
#include "base/strbuf.h"

struct config;
struct envfile;

#define S3_MIB (1024ULL * 1024)
#define S3_DEFAULT_PART_SIZE (8 * S3_MIB)
#define S3_MIN_PART_SIZE (5 * S3_MIB)       /* S3's minimum for every part but the last */
#define S3_MAX_PART_SIZE (5 * 1024 * S3_MIB)
#define S3_PART_SPREAD 9000                 /* parts a file is cut into at most (S3 allows 10,000) */
#define S3_DEFAULT_CONCURRENCY 4
#define S3_MAX_CONCURRENCY 32
#define S3_DEFAULT_TIMEOUT_MS 30000
#define S3_DEFAULT_ATTEMPTS 5
#define S3_DEFAULT_BACKOFF_MS 500
#define S3_ETAG_MAX 80

/* Returned (instead of 0) by s3_head and s3_get_file when the object does
 * not exist; err then says "no object 'KEY' in storage 'NAME'" with code
 * OPS_EXIT_FAILED. It is below every -OPS_EXIT_* value, so `ret < 0` still
 * means "failed" to a caller that does not care why. */
#define S3_NOT_FOUND (-404)

/* ---- [storage "NAME"] ---------------------------------------------------- */

/* Strings are owned; s3_settings_release frees them and wipes the keys. */
struct s3_settings {
	char *name;              /* "minio" */
	char *endpoint;          /* "http://localhost:9000": scheme://host[:port][/path], no trailing '/' */
	char *bucket;
	char *prefix;            /* "ai-chat": no leading or trailing '/'; "" for none */
	char *region;            /* default us-east-1 */
	int path_style;          /* 1: ENDPOINT/BUCKET/KEY (MinIO); 0: scheme://BUCKET.host/KEY */
	char *access_key_env;    /* the names of the variables ... */
	char *secret_key_env;
	char *access_key;        /* ... and their values (never from the config file) */
	char *secret_key;
	char *credentials_from;  /* "'/opt/app/.env'" or "the environment", for messages */
	char *ca_file;           /* NULL: the system's CA bundle */
	int verify_tls;          /* default 1 */
	uint64_t part_size;      /* the smallest part, and the single-PUT limit; 0: 8 MiB */
	long concurrency;        /* parts in flight; default 4 */
	int64_t timeout_ms;      /* connect deadline, and the longest a transfer may stall */
};

void s3_settings_init(struct s3_settings *s);
void s3_settings_release(struct s3_settings *s);

/* Fills s from [storage "name"] of cfg: type = s3, endpoint, bucket, prefix,
 * region, path_style, access_key_env, secret_key_env, ca_file, verify_tls,
 * part_size, concurrency, timeout. The two keys are looked up in env (the
 * app's env file; may be NULL), then in the process environment. A literal
 * key in the config (access_key = ..., secret_key = ...), an unknown key, a
 * missing endpoint/bucket/key variable or a bad value is OPS_EXIT_CONFIG
 * "FILE:LINE: ..." (or "[storage \"NAME\"] in 'FILE' needs ..."). */
int s3_settings_load(struct s3_settings *s, const struct config *cfg, const char *name,
		     const struct envfile *env, struct ops_error *err);

/* ---- the client ---------------------------------------------------------- */

/* done of total bytes sent (uploads) or received (downloads); called at most
 * every 200 ms, and once more at the end. */
typedef void s3_progress_fn(void *data, uint64_t done, uint64_t total);

/* The caller sets the public fields after s3_client_init; set is borrowed
 * and must outlive the client. Not for use by two threads at once. */
struct s3_client {
	const struct s3_settings *set;
	uint64_t rate_limit;        /* upload bytes/s, shared by the parts in flight; 0: none */
	int max_attempts;           /* tries per request (default 5) */
	int64_t backoff_ms;         /* wait before the first retry, doubling (default 500 ms) */
	s3_progress_fn *progress;   /* may be NULL */
	void *progress_data;
	unsigned list_page_size;    /* max-keys of a ListObjectsV2 page; 0: the server's (1000) */
	/* May be NULL. Non-zero once the operation must stop (a signal): the
	 * transfers under way are broken off within a second, no request is
	 * retried, and the call fails with OPS_EXIT_ABORTED ("interrupted");
	 * a multipart upload keeps its state for the next call. Called from
	 * the thread that runs the operation. */
	int (*stop)(void *data);
	void *stop_data;
	/* private */
	void *curl;                 /* CURL *, reused (with its connections) for one-at-a-time requests */
	int64_t progress_at_ms;     /* when progress was last called */
	unsigned retries;           /* requests repeated since the operation began */
};

void s3_client_init(struct s3_client *c, const struct s3_settings *set);
void s3_client_release(struct s3_client *c);

struct s3_put_result {
	uint64_t size;
	char etag[S3_ETAG_MAX];     /* of the object, without quotes */
	unsigned parts;             /* 0: one PUT */
	unsigned parts_resumed;     /* parts an earlier run had sent, not sent again */
	unsigned retries;           /* requests that had to be repeated */
	int source_damaged;         /* failed: the file is not want_sha256 */
};

/* Uploads the file at path as key. Up to the part size (s3_part_size) it is
 * one PUT; above it a multipart upload whose UploadId and finished parts
 * (with their ETags) are written to state_path (JSON, replaced atomically
 * after every part) so that the next call with the same file,
 * key and state_path resumes it: a recorded part whose local bytes still
 * have the recorded MD5 is not sent again. state_path is removed when the
 * object is complete; state_path NULL uploads without resume. With
 * want_sha256 (hex; may be NULL) the file is checked in the same pass that
 * computes the parts' MD5s (on a thread beside the transfers): a single PUT
 * is not sent, and a multipart upload is not completed but aborted, when
 * the file's SHA-256 is another (OPS_EXIT_INTEGRITY, res->source_damaged).
 * res may be NULL. */
int s3_put_file(struct s3_client *c, const char *key, const char *path, const char *state_path,
		const char *want_sha256, struct s3_put_result *res, struct ops_error *err);

/* Gives up a resumable upload: aborts the multipart upload named in
 * state_path on the server (one gone already, or a server that cannot abort
 * uploads, like s3rver, is fine) and removes state_path. A missing
 * state_path is success. */
int s3_put_abandon(struct s3_client *c, const char *state_path, struct ops_error *err);

struct s3_object {
	char *key;                  /* below the prefix; owned */
	uint64_t size;
	char etag[S3_ETAG_MAX];     /* without quotes */
	int etag_opaque;            /* SSE-KMS or SSE-C: the ETag is no MD5 of the bytes */
	time_t last_modified;       /* 0 when the server did not say */
};

/* size, ETag and time of key into *out (whose key is set to a copy of key).
 * S3_NOT_FOUND when there is none. */
int s3_head(struct s3_client *c, const char *key, struct s3_object *out, struct ops_error *err);
void s3_object_release(struct s3_object *o);

/* Streams key into path, computing SHA-256 on the way (into sha256_hex, and
 * the size into *size; either may be NULL). The bytes go to a temporary file
 * beside path that is fsynced and renamed over path only when the download
 * is complete and, when expect_sha256 (64 hex digits) is given, matches it;
 * a mismatch is OPS_EXIT_INTEGRITY and leaves path as it was. path NULL
 * only hashes (verify --deep). S3_NOT_FOUND when there is no such object. */
int s3_get_file(struct s3_client *c, const char *key, const char *path, const char *expect_sha256,
		char sha256_hex[65], uint64_t *size, struct ops_error *err);

struct s3_list {
	struct s3_object *items;
	size_t nr, alloc;
};
#define S3_LIST_INIT { NULL, 0, 0 }
void s3_list_init(struct s3_list *l);
void s3_list_release(struct s3_list *l);

/* Every object whose key (below the prefix) starts with prefix ("" or NULL:
 * all), in the server's order (by key), following continuation tokens;
 * appended to out. */
int s3_list(struct s3_client *c, const char *prefix, struct s3_list *out, struct ops_error *err);

/* Deletes key; a key that does not exist is success (as S3 answers it). */
int s3_delete(struct s3_client *c, const char *key, struct ops_error *err);
/* Deletes each of n keys; stops at the first failure. */
int s3_delete_many(struct s3_client *c, const char *const *keys, size_t n, struct ops_error *err);

/* ---- the pieces, for tests and fuzzing ----------------------------------- */

/* The part size for a file of file_size bytes: min_part (0: 8 MiB), or
 * file_size / S3_PART_SPREAD rounded up to a whole MiB when that is more, at
 * most S3_MAX_PART_SIZE. The file is one PUT when file_size <= the result. */
uint64_t s3_part_size(uint64_t file_size, uint64_t min_part);

/* The URL of key (below the prefix; "" for the bucket itself) with query
 * (already encoded and sorted by name, as SigV4 wants it; NULL for none),
 * path- or virtual-host-style, into out. */
void s3_url(const struct s3_settings *s, const char *key, const char *query, struct strbuf *out);
/* key with every byte but A-Za-z0-9 - . _ ~ (and '/' when keep_slash)
 * percent-encoded, as SigV4's canonical request has it. */
void s3_uri_encode(struct strbuf *out, const char *key, int keep_slash);

/* <Error><Code>..</Code><Message>..</Message></Error>: code and message (either
 * may be left empty). Returns 0, or -1 when xml is not such a document. */
int s3_parse_error(const char *xml, size_t len, struct strbuf *code, struct strbuf *message);
/* <InitiateMultipartUploadResult>: the UploadId into upload_id. */
int s3_parse_initiate(const char *xml, size_t len, struct strbuf *upload_id, struct ops_error *err);
/* <ListBucketResult> of ListObjectsV2: the objects are appended to out with
 * strip (the storage prefix and its '/') removed from each key (keys not
 * starting with it are skipped); next_token is set to the
 * NextContinuationToken when IsTruncated is true, else emptied. */
int s3_parse_list(const char *xml, size_t len, const char *strip, struct s3_list *out,
		  struct strbuf *next_token, struct ops_error *err);

/* The resume state of one multipart upload (the JSON of state_path). */
struct s3_upload_state {
	char *endpoint, *bucket, *key;  /* the object (full key, with the prefix) */
	char *upload_id;
	uint64_t size;                  /* of the local file ... */
	int64_t mtime_ns;               /* ... and its modification time, to notice a changed file */
	uint64_t part_size;
	unsigned nparts;
	char **etags;                   /* [nparts]; NULL for a part not done; without quotes */
	char **md5s;                    /* [nparts]; hex MD5 of the part sent, NULL when unknown */
};
void s3_upload_state_init(struct s3_upload_state *st);
void s3_upload_state_release(struct s3_upload_state *st);
/* Reads path into st (which is released first). Returns 1 when there is no
 * such file, 0 when read; a file that is not a state file is OPS_EXIT_FAILED. */
int s3_upload_state_load(struct s3_upload_state *st, const char *path, struct ops_error *err);
/* Writes st to path atomically (temporary file, rename), mode 0600, without
 * waiting for the disk: it is written after every part, and a state lost to
 * a power cut only means those parts are sent again. */
int s3_upload_state_save(const struct s3_upload_state *st, const char *path, struct ops_error *err);

#endif
