/* Streaming compression for backups: gzip (zlib), zstd (libzstd) or none,
 * written to a descriptor while the SHA-256 of the written bytes is computed,
 * and the reverse, with the codec told by its magic bytes. */
#ifndef OPSCTL_ZSTREAM_H
#define OPSCTL_ZSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

enum zs_codec {
	ZS_NONE = 0,
	ZS_GZIP,
	ZS_ZSTD,
};

/* "none", "gzip", "zstd" (the config's `compression` values). */
const char *zs_codec_name(enum zs_codec codec);
/* The file suffix: "", ".gz", ".zst". */
const char *zs_codec_suffix(enum zs_codec codec);
/* Parses a name of zs_codec_name into *codec. Returns 0, or -OPS_EXIT_CONFIG
 * with "unknown compression 'lz4' (expected none, gzip or zstd)". */
int zs_codec_parse(const char *name, enum zs_codec *codec, struct ops_error *err);

/* Called after each chunk with the running totals (plain bytes in, bytes
 * out). Nonzero stops the operation with OPS_EXIT_ABORTED "interrupted".
 * Also called when a read or write was interrupted by a signal (EINTR), so a
 * flag set by a SIGINT handler is seen while blocked on a pipe. */
typedef int (*zs_progress_fn)(uint64_t in_bytes, uint64_t out_bytes, void *arg);

/* A compressing writer. Output:
 *  - gzip, threads == 1: one ordinary gzip member from zlib's deflate.
 *  - gzip, threads > 1: still one ordinary gzip member (gunzip, zcat, Python,
 *    Java read it), made like pigz: 512 KiB blocks deflated in parallel, each
 *    primed with the 32 KiB before it, joined with sync flushes, the CRC
 *    combined. The output depends on the level, not the thread count.
 *  - zstd: one frame with a content checksum, compressed by libzstd's own
 *    workers (ZSTD_c_nbWorkers = threads; threads == 1 means none).
 *  - none: the bytes as they are.
 * The fd is borrowed: the writer never closes or fsyncs it. name is what
 * messages call the output ("cannot write '/backup/x.sql.gz': no space left on
 * device"); it is copied. After an error every call fails; close or release
 * the writer. */
struct zs_writer {
	uint64_t in_bytes;      /* plain bytes accepted so far */
	uint64_t out_bytes;     /* bytes written to fd so far */
	struct zs_impl *impl;   /* private; NULL when closed */
};
#define ZS_WRITER_INIT { 0, 0, NULL }

/* level 0 = the codec's default (gzip 6, zstd 3); gzip takes 1-9, zstd
 * 1-19 (and the negative fast levels). threads 0 = the CPUs we may run on.
 * Errors: OPS_EXIT_USAGE "invalid gzip level 12 (expected 1-9)". The writer
 * is usable by zs_writer_release even when open fails. */
int zs_writer_open(struct zs_writer *w, int fd, const char *name, enum zs_codec codec,
		   int level, int threads, struct ops_error *err);
int zs_write(struct zs_writer *w, const void *buf, size_t len, struct ops_error *err);
/* Finishes the stream, writes what is left, and frees the writer. On success
 * sha256_hex (may be NULL) holds the SHA-256 of every byte written to fd,
 * lowercase hex; in_bytes/out_bytes stay readable. */
int zs_writer_close(struct zs_writer *w, char sha256_hex[65], struct ops_error *err);
/* Frees an unfinished writer (the output is incomplete); a no-op after close
 * or on ZS_WRITER_INIT, so a `goto out` path can always call it. */
void zs_writer_release(struct zs_writer *w);

/* Reads in_fd to EOF into w (pg_dump's stdout into the dump file). in_name
 * names the source in messages ("cannot read 'pg_dump': ..."). When nothing
 * arrives for stall_ms (0 = no limit): OPS_EXIT_UNREACHABLE "'pg_dump' wrote
 * nothing for 10m". progress may be NULL; it is also called each second of
 * a wait. Does not close w. */
int zs_pump(int in_fd, const char *in_name, int64_t stall_ms, struct zs_writer *w,
	    zs_progress_fn progress, void *progress_arg, struct ops_error *err);

struct zs_decompress_opts {
	const char *in_name;    /* for messages: the file being read */
	const char *out_name;   /* for messages: where the plain bytes go ("psql") */
	zs_progress_fn progress; /* may be NULL */
	void *progress_arg;
	/* instead of writing out_fd (which is then ignored): the plain bytes
	 * are given to sink, which returns 0 or an error it has set in err */
	int (*sink)(const void *buf, size_t len, void *arg, struct ops_error *err);
	void *sink_arg;
};

struct zs_decompress_stats {
	enum zs_codec codec;    /* as detected */
	uint64_t in_bytes;      /* compressed bytes read */
	uint64_t out_bytes;     /* plain bytes written */
	char in_sha256[65];     /* SHA-256 of every byte read from in_fd */
};

/* Reads in_fd to EOF, detects the codec by its magic bytes (1f 8b: gzip,
 * members concatenated as gunzip reads them; 28 b5 2f fd: zstd, frames
 * concatenated; anything else, or an empty file: none) and writes the plain
 * bytes to out_fd. A write to a pipe whose reader is gone fails with "broken
 * pipe" instead of raising SIGPIPE. Errors:
 *  - OPS_EXIT_INTEGRITY for bad data: "cannot decompress 'x.sql.gz':
 *    unexpected end of file", "...: incorrect data check", "...: trailing
 *    data after the end of the gzip stream";
 *  - OPS_EXIT_FAILED for I/O: "cannot read 'x'...", "cannot write 'psql':
 *    broken pipe".
 * stats may be NULL; it is filled as far as the stream got, also on error. */
int zs_decompress(int in_fd, int out_fd, const struct zs_decompress_opts *opts,
		  struct zs_decompress_stats *stats, struct ops_error *err);

#endif
