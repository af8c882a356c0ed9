/* Streaming gzip/zstd/none compression to a descriptor with SHA-256 of the
 * written bytes, parallel gzip blocks like pigz, and magic-detected
 * decompression that hashes what it reads. */
#include "adapters/zstream.h"
#include "adapters/hash.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "system/clock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define IO_CHUNK ((size_t)256 * 1024)
#define GZ_OUT_CHUNK ((size_t)256 * 1024)
#define PGZ_BLOCK ((size_t)512 * 1024)
#define PGZ_DICT ((size_t)32 * 1024)
#define MAX_THREADS 64
#define GZIP_DEFAULT_LEVEL 6
#define ZSTD_DEFAULT_LEVEL 3

/* One block of a parallel gzip batch, deflated by its own thread. */
struct pgz_job {
	const unsigned char *in;
	size_t len;
	const unsigned char *dict;
	size_t dict_len;
	int last;
	int level;
	unsigned char *out;   /* reused between batches */
	size_t out_len, out_alloc;
	uLong crc;
	int zret;             /* Z_OK, or what deflate said */
	pthread_t thread;
	int threaded;
};

struct zs_impl {
	int fd;
	char *name;
	enum zs_codec codec;
	int level;
	int threads;
	int failed;
	struct hash_sha256_ctx sha;
	unsigned char *out;  /* gzip (single) and zstd output staging */
	size_t out_cap;
	/* gzip, one thread */
	z_stream zs;
	int zs_ready;
	/* gzip, parallel */
	unsigned char *batch;  /* threads * PGZ_BLOCK of input */
	size_t batch_len;
	unsigned char dict[PGZ_DICT];
	size_t dict_len;
	struct pgz_job *jobs;
	uLong crc;
	uint64_t total_in;
	/* zstd */
	ZSTD_CCtx *cctx;
};

const char *zs_codec_name(enum zs_codec codec)
{
	switch (codec) {
	case ZS_GZIP:
		return "gzip";
	case ZS_ZSTD:
		return "zstd";
	case ZS_NONE:
		break;
	}
	return "none";
}

const char *zs_codec_suffix(enum zs_codec codec)
{
	switch (codec) {
	case ZS_GZIP:
		return ".gz";
	case ZS_ZSTD:
		return ".zst";
	case ZS_NONE:
		break;
	}
	return "";
}

int zs_codec_parse(const char *name, enum zs_codec *codec, struct ops_error *err)
{
	if (!strcmp(name, "none"))
		*codec = ZS_NONE;
	else if (!strcmp(name, "gzip"))
		*codec = ZS_GZIP;
	else if (!strcmp(name, "zstd"))
		*codec = ZS_ZSTD;
	else
		return ops_error_set(err, OPS_EXIT_CONFIG,
				     "unknown compression '%s' (expected none, gzip or zstd)", name);
	return 0;
}

static int cpu_count(void)
{
	cpu_set_t set;
	long n;

	if (!sched_getaffinity(0, sizeof(set), &set) && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static int interrupted(struct ops_error *err)
{
	return ops_error_set(err, OPS_EXIT_ABORTED, "interrupted");
}

/* Writes all of buf. A pipe whose reader is gone gives EPIPE, not a SIGPIPE
 * that would kill us: SIGPIPE is blocked around the write and one it raised
 * is discarded. */
static int write_all(int fd, const char *name, const void *buf, size_t len,
		     zs_progress_fn progress, void *progress_arg, uint64_t in_bytes,
		     uint64_t out_bytes, struct ops_error *err)
{
	const char *p = buf;
	sigset_t pipe_set, old_mask, pending;
	struct timespec zero = { 0, 0 };
	int was_pending, saved = 0, ret = 0;
	ssize_t n;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR) {
			if (progress && progress(in_bytes, out_bytes, progress_arg)) {
				ret = interrupted(err);
				goto out;
			}
			continue;
		}
		if (n <= 0) {
			saved = n < 0 ? errno : EIO;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (saved)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", name,
				    ops_strerror(saved));
out:
	if (saved == EPIPE && !was_pending) {
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE))
			sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	return ret;
}

/* Reads up to cap bytes: the count, 0 at EOF, or an error. */
static ssize_t read_some(int fd, const char *name, void *buf, size_t cap,
			 zs_progress_fn progress, void *progress_arg, uint64_t in_bytes,
			 uint64_t out_bytes, struct ops_error *err)
{
	ssize_t n;

	for (;;) {
		n = read(fd, buf, cap);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", name,
					     ops_strerror(errno));
		if (progress && progress(in_bytes, out_bytes, progress_arg))
			return interrupted(err);
	}
}

/* Writer output: to fd, into the hash, counted. */
static int emit(struct zs_writer *w, const void *buf, size_t len, struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	int ret;

	if (!len)
		return 0;
	ret = write_all(z->fd, z->name, buf, len, NULL, NULL, 0, 0, err);
	if (ret) {
		z->failed = 1;
		return ret;
	}
	hash_sha256_update(&z->sha, buf, len);
	w->out_bytes += len;
	return 0;
}

static int check_level(enum zs_codec codec, int level, int *out, struct ops_error *err)
{
	if (codec == ZS_GZIP) {
		if (!level)
			level = GZIP_DEFAULT_LEVEL;
		if (level < 1 || level > 9)
			return ops_error_set(err, OPS_EXIT_USAGE,
					     "invalid gzip level %d (expected 1-9)", level);
	} else if (codec == ZS_ZSTD) {
		if (!level)
			level = ZSTD_DEFAULT_LEVEL;
		if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
			return ops_error_set(err, OPS_EXIT_USAGE,
					     "invalid zstd level %d (expected %d-%d)", level,
					     ZSTD_minCLevel(), ZSTD_maxCLevel());
	}
	*out = level;
	return 0;
}

int zs_writer_open(struct zs_writer *w, int fd, const char *name, enum zs_codec codec,
		   int level, int threads, struct ops_error *err)
{
	struct zs_impl *z = NULL;
	size_t r;
	int ret = 0;

	w->in_bytes = w->out_bytes = 0;
	w->impl = NULL;
	if ((ret = check_level(codec, level, &level, err)))
		goto out;
	if (threads <= 0)
		threads = cpu_count();
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;

	z = xcalloc(1, sizeof(*z));
	z->fd = fd;
	z->name = xstrdup(name ? name : "output");
	z->codec = codec;
	z->level = level;
	z->threads = threads;
	hash_sha256_init(&z->sha);

	if (codec == ZS_GZIP && threads == 1) {
		if (deflateInit2(&z->zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot compress '%s': %s",
					    z->name, "zlib could not be initialised");
			goto out;
		}
		z->zs_ready = 1;
		z->out_cap = GZ_OUT_CHUNK;
		z->out = xmalloc(z->out_cap);
	} else if (codec == ZS_GZIP) {
		/* RFC 1952 header: deflate, no name, no time, OS unix. */
		static const unsigned char header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
		z->batch = xmalloc((size_t)threads * PGZ_BLOCK);
		z->jobs = xcalloc((size_t)threads, sizeof(*z->jobs));
		z->crc = crc32(0L, Z_NULL, 0);
		w->impl = z;
		if ((ret = emit(w, header, sizeof(header), err)))
			goto out;
	} else if (codec == ZS_ZSTD) {
		z->cctx = ZSTD_createCCtx();
		if (!z->cctx) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot compress '%s': %s",
					    z->name, "zstd could not be initialised");
			goto out;
		}
		r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
		if (!ZSTD_isError(r))
			r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
		if (ZSTD_isError(r)) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot compress '%s': %s",
					    z->name, ZSTD_getErrorName(r));
			goto out;
		}
		/* A libzstd built without threads refuses: it then runs single-threaded. */
		if (threads > 1)
			ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, threads);
		z->out_cap = ZSTD_CStreamOutSize();
		z->out = xmalloc(z->out_cap);
	}
	w->impl = z;
	z = NULL;
out:
	if (z) {
		w->impl = z;
		zs_writer_release(w);
	}
	return ret;
}

static int gzip_write(struct zs_writer *w, const unsigned char *buf, size_t len, int flush,
		      struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	int zret;

	for (;;) {
		uInt take = len > (1u << 30) ? 1u << 30 : (uInt)len;
		int last_piece = take == len;
		z->zs.next_in = (Bytef *)buf;
		z->zs.avail_in = take;
		do {
			z->zs.next_out = z->out;
			z->zs.avail_out = (uInt)z->out_cap;
			zret = deflate(&z->zs, last_piece ? flush : Z_NO_FLUSH);
			if (zret == Z_STREAM_ERROR) {
				z->failed = 1;
				return ops_error_set(err, OPS_EXIT_FAILED, "cannot compress '%s': %s",
						     z->name, "zlib stream error");
			}
			if (emit(w, z->out, z->out_cap - z->zs.avail_out, err))
				return -OPS_EXIT_FAILED;
		} while (z->zs.avail_out == 0 || (flush == Z_FINISH && last_piece && zret != Z_STREAM_END));
		buf += take;
		len -= take;
		if (!len)
			return 0;
	}
}

static void *pgz_deflate(void *arg)
{
	struct pgz_job *j = arg;
	z_stream s;
	int zret;

	memset(&s, 0, sizeof(s));
	j->crc = crc32(crc32(0L, Z_NULL, 0), j->in, (uInt)j->len);
	j->out_len = 0;
	j->zret = deflateInit2(&s, j->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
	if (j->zret != Z_OK)
		return NULL;
	if (j->dict_len)
		deflateSetDictionary(&s, j->dict, (uInt)j->dict_len);
	s.next_in = (Bytef *)j->in;
	s.avail_in = (uInt)j->len;
	for (;;) {
		if (j->out_alloc - j->out_len < 4096) {
			j->out_alloc = j->out_alloc ? 2 * j->out_alloc : deflateBound(&s, (uLong)j->len) + 64;
			j->out = xrealloc(j->out, j->out_alloc);
		}
		s.next_out = j->out + j->out_len;
		s.avail_out = (uInt)(j->out_alloc - j->out_len);
		zret = deflate(&s, j->last ? Z_FINISH : Z_SYNC_FLUSH);
		j->out_len = j->out_alloc - s.avail_out;
		if (zret == Z_STREAM_ERROR) {
			j->zret = zret;
			break;
		}
		if (j->last ? zret == Z_STREAM_END : s.avail_out != 0)
			break;
	}
	deflateEnd(&s);
	return NULL;
}

/* Deflates the batch's blocks in parallel and writes them in order. last:
 * the final block ends the deflate stream (even when it is empty). */
static int pgz_flush_batch(struct zs_writer *w, int last, struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	size_t nblocks = (z->batch_len + PGZ_BLOCK - 1) / PGZ_BLOCK, i;
	int ret = 0;

	if (!nblocks && !last)
		return 0;
	if (!nblocks)
		nblocks = 1;
	for (i = 0; i < nblocks; i++) {
		struct pgz_job *j = &z->jobs[i];
		size_t off = i * PGZ_BLOCK;
		j->in = z->batch + off;
		j->len = z->batch_len - off < PGZ_BLOCK ? z->batch_len - off : PGZ_BLOCK;
		if (z->batch_len == 0)
			j->len = 0;
		j->dict = i ? j->in - PGZ_DICT : z->dict;
		j->dict_len = i ? PGZ_DICT : z->dict_len;
		j->last = last && i == nblocks - 1;
		j->level = z->level;
		j->threaded = 0;
		if (i > 0 && !pthread_create(&j->thread, NULL, pgz_deflate, j))
			j->threaded = 1;
	}
	for (i = 0; i < nblocks; i++)
		if (!z->jobs[i].threaded)
			pgz_deflate(&z->jobs[i]);
	for (i = 0; i < nblocks; i++)
		if (z->jobs[i].threaded)
			pthread_join(z->jobs[i].thread, NULL);
	for (i = 0; i < nblocks; i++) {
		struct pgz_job *j = &z->jobs[i];
		if (j->zret != Z_OK) {
			z->failed = 1;
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot compress '%s': %s",
					    z->name, "zlib could not compress a block");
			goto out;
		}
		z->crc = crc32_combine(z->crc, j->crc, (z_off_t)j->len);
		if ((ret = emit(w, j->out, j->out_len, err)))
			goto out;
	}
	if (z->batch_len >= PGZ_DICT) {
		memcpy(z->dict, z->batch + z->batch_len - PGZ_DICT, PGZ_DICT);
		z->dict_len = PGZ_DICT;
	}
	z->batch_len = 0;
out:
	return ret;
}

static int pgz_write(struct zs_writer *w, const unsigned char *buf, size_t len,
		     struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	size_t cap = (size_t)z->threads * PGZ_BLOCK;

	while (len) {
		size_t take = cap - z->batch_len < len ? cap - z->batch_len : len;
		memcpy(z->batch + z->batch_len, buf, take);
		z->batch_len += take;
		z->total_in += take;
		buf += take;
		len -= take;
		if (z->batch_len == cap && pgz_flush_batch(w, 0, err))
			return -OPS_EXIT_FAILED;
	}
	return 0;
}

static int zstd_write(struct zs_writer *w, const void *buf, size_t len, ZSTD_EndDirective end,
		      struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	ZSTD_inBuffer in = { buf, len, 0 };
	size_t left;

	for (;;) {
		ZSTD_outBuffer out = { z->out, z->out_cap, 0 };
		left = ZSTD_compressStream2(z->cctx, &out, &in, end);
		if (ZSTD_isError(left)) {
			z->failed = 1;
			return ops_error_set(err, OPS_EXIT_FAILED, "cannot compress '%s': %s",
					     z->name, ZSTD_getErrorName(left));
		}
		if (emit(w, z->out, out.pos, err))
			return -OPS_EXIT_FAILED;
		if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
			return 0;
	}
}

static int check_usable(struct zs_writer *w, struct ops_error *err)
{
	if (!w->impl)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot write: the stream is closed");
	if (w->impl->failed)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': an earlier write failed",
				     w->impl->name);
	return 0;
}

int zs_write(struct zs_writer *w, const void *buf, size_t len, struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	int ret;

	if ((ret = check_usable(w, err)))
		return ret;
	if (!len)
		return 0;
	switch (z->codec) {
	case ZS_GZIP:
		ret = z->zs_ready ? gzip_write(w, buf, len, Z_NO_FLUSH, err) : pgz_write(w, buf, len, err);
		break;
	case ZS_ZSTD:
		ret = zstd_write(w, buf, len, ZSTD_e_continue, err);
		break;
	case ZS_NONE:
		ret = emit(w, buf, len, err);
		break;
	}
	if (!ret)
		w->in_bytes += len;
	return ret;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

int zs_writer_close(struct zs_writer *w, char sha256_hex[65], struct ops_error *err)
{
	struct zs_impl *z = w->impl;
	unsigned char digest[HASH_SHA256_LEN], trailer[8];
	int ret;

	if ((ret = check_usable(w, err)))
		goto out;
	switch (z->codec) {
	case ZS_GZIP:
		if (z->zs_ready) {
			ret = gzip_write(w, (const unsigned char *)"", 0, Z_FINISH, err);
		} else if (!(ret = pgz_flush_batch(w, 1, err))) {
			put_le32(trailer, (uint32_t)z->crc);
			put_le32(trailer + 4, (uint32_t)z->total_in);
			ret = emit(w, trailer, sizeof(trailer), err);
		}
		break;
	case ZS_ZSTD:
		ret = zstd_write(w, "", 0, ZSTD_e_end, err);
		break;
	case ZS_NONE:
		break;
	}
	if (ret)
		goto out;
	hash_sha256_final(&z->sha, digest);
	if (sha256_hex)
		hash_hex(digest, sizeof(digest), sha256_hex);
out:
	zs_writer_release(w);
	return ret;
}

void zs_writer_release(struct zs_writer *w)
{
	struct zs_impl *z = w->impl;
	int i;

	if (!z)
		return;
	if (z->zs_ready)
		deflateEnd(&z->zs);
	if (z->jobs)
		for (i = 0; i < z->threads; i++)
			free(z->jobs[i].out);
	free(z->jobs);
	free(z->batch);
	ZSTD_freeCCtx(z->cctx);
	hash_sha256_release(&z->sha);
	free(z->out);
	free(z->name);
	free(z);
	w->impl = NULL;
}

/* Waits until fd has something to read, at most stall_ms, calling progress
 * each second. */
static int wait_input(int fd, const char *name, int64_t stall_ms, struct zs_writer *w,
		      zs_progress_fn progress, void *progress_arg, struct ops_error *err)
{
	int64_t deadline = clock_now_ms() + stall_ms;
	struct strbuf limit = STRBUF_INIT;
	int ret = 0;

	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int64_t left = deadline - clock_now_ms();
		int rc;

		if (left <= 0) {
			format_duration_ms(&limit, stall_ms);
			ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "'%s' wrote nothing for %s", name, limit.buf);
			break;
		}
		rc = poll(&pfd, 1, (int)(left < 1000 ? left : 1000));
		if (rc > 0)
			break;
		if (rc < 0 && errno != EINTR) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", name, ops_strerror(errno));
			break;
		}
		if (progress && progress(w->in_bytes, w->out_bytes, progress_arg)) {
			ret = interrupted(err);
			break;
		}
	}
	strbuf_release(&limit);
	return ret;
}

int zs_pump(int in_fd, const char *in_name, int64_t stall_ms, struct zs_writer *w,
	    zs_progress_fn progress, void *progress_arg, struct ops_error *err)
{
	char *buf = xmalloc(IO_CHUNK);
	ssize_t n;
	int ret = 0;

	for (;;) {
		if (stall_ms > 0 && (ret = wait_input(in_fd, in_name, stall_ms, w, progress, progress_arg, err)))
			break;
		n = read_some(in_fd, in_name, buf, IO_CHUNK, progress, progress_arg, w->in_bytes,
			      w->out_bytes, err);
		if (n <= 0) {
			ret = (int)n;
			break;
		}
		if ((ret = zs_write(w, buf, (size_t)n, err)))
			break;
		if (progress && progress(w->in_bytes, w->out_bytes, progress_arg)) {
			ret = interrupted(err);
			break;
		}
	}
	free(buf);
	return ret;
}

/* Decompression */

struct zs_reader {
	int in_fd, out_fd;
	const struct zs_decompress_opts *o;
	struct zs_decompress_stats *st;
	struct hash_sha256_ctx sha;
	unsigned char *in;   /* IO_CHUNK */
	size_t in_pos, in_len;
	int eof;
	unsigned char *out;  /* IO_CHUNK */
};

/* Reads the next chunk, keeping the unread bytes [in_pos, in_len) at the
 * front. Returns 1 with more data, 0 at EOF, or an error. */
static int reader_fill(struct zs_reader *r, struct ops_error *err)
{
	ssize_t n;

	if (r->eof)
		return 0;
	if (r->in_pos) {
		memmove(r->in, r->in + r->in_pos, r->in_len - r->in_pos);
		r->in_len -= r->in_pos;
		r->in_pos = 0;
	}
	n = read_some(r->in_fd, r->o->in_name, r->in + r->in_len, IO_CHUNK - r->in_len,
		      r->o->progress, r->o->progress_arg, r->st->in_bytes, r->st->out_bytes, err);
	if (n < 0)
		return (int)n;
	if (n == 0) {
		r->eof = 1;
		return 0;
	}
	hash_sha256_update(&r->sha, r->in + r->in_len, (size_t)n);
	r->in_len += (size_t)n;
	r->st->in_bytes += (uint64_t)n;
	return 1;
}

static int reader_emit(struct zs_reader *r, const void *buf, size_t len, struct ops_error *err)
{
	int ret;

	if (!len)
		return 0;
	if (r->o->sink)
		ret = r->o->sink(buf, len, r->o->sink_arg, err);
	else
		ret = write_all(r->out_fd, r->o->out_name, buf, len, r->o->progress, r->o->progress_arg,
				r->st->in_bytes, r->st->out_bytes, err);
	if (ret)
		return ret;
	r->st->out_bytes += len;
	if (r->o->progress && r->o->progress(r->st->in_bytes, r->st->out_bytes, r->o->progress_arg))
		return interrupted(err);
	return 0;
}

static int corrupt(struct zs_reader *r, const char *what, struct ops_error *err)
{
	return ops_error_set(err, OPS_EXIT_INTEGRITY, "cannot decompress '%s': %s", r->o->in_name,
			     what);
}

static int copy_plain(struct zs_reader *r, struct ops_error *err)
{
	int more, ret;

	for (;;) {
		if ((ret = reader_emit(r, r->in + r->in_pos, r->in_len - r->in_pos, err)))
			return ret;
		r->in_pos = r->in_len;
		more = reader_fill(r, err);
		if (more <= 0)
			return more;
	}
}

static int inflate_gzip(struct zs_reader *r, struct ops_error *err)
{
	z_stream s;
	int zret = Z_OK, more, ret = 0, ready = 0;

	memset(&s, 0, sizeof(s));
	if (inflateInit2(&s, 15 + 16) != Z_OK) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot decompress '%s': %s", r->o->in_name,
				    "zlib could not be initialised");
		goto out;
	}
	ready = 1;
	for (;;) {
		if (r->in_pos == r->in_len) {
			more = reader_fill(r, err);
			if (more < 0) {
				ret = more;
				goto out;
			}
			if (!more) {
				ret = corrupt(r, "unexpected end of file", err);
				goto out;
			}
		}
		s.next_in = r->in + r->in_pos;
		s.avail_in = (uInt)(r->in_len - r->in_pos);
		s.next_out = r->out;
		s.avail_out = (uInt)IO_CHUNK;
		zret = inflate(&s, Z_NO_FLUSH);
		r->in_pos = r->in_len - s.avail_in;
		if (zret == Z_DATA_ERROR || zret == Z_NEED_DICT) {
			ret = corrupt(r, s.msg ? s.msg : "invalid data", err);
			goto out;
		}
		if (zret == Z_MEM_ERROR || zret == Z_STREAM_ERROR) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot decompress '%s': %s",
					    r->o->in_name, zret == Z_MEM_ERROR ? "out of memory" : "zlib stream error");
			goto out;
		}
		if ((ret = reader_emit(r, r->out, IO_CHUNK - s.avail_out, err)))
			goto out;
		if (zret != Z_STREAM_END)
			continue;
		/* A member ended: EOF, another member (gzip -c a >x; gzip -c b >>x), or junk. */
		more = 1;
		while (r->in_len - r->in_pos < 2 && (more = reader_fill(r, err)) > 0)
			;
		if (more < 0) {
			ret = more;
			goto out;
		}
		if (r->in_pos == r->in_len)
			break;
		if (r->in_len - r->in_pos < 2 || r->in[r->in_pos] != 0x1f || r->in[r->in_pos + 1] != 0x8b) {
			ret = corrupt(r, "trailing data after the end of the gzip stream", err);
			goto out;
		}
		inflateReset(&s);
	}
out:
	if (ready)
		inflateEnd(&s);
	return ret;
}

/* "Data corruption detected" -> "data corruption detected" */
static int zstd_corrupt(struct zs_reader *r, size_t code, struct ops_error *err)
{
	char *msg = xstrdup(ZSTD_getErrorName(code));
	int ret;

	if (msg[0] >= 'A' && msg[0] <= 'Z')
		msg[0] = (char)(msg[0] - 'A' + 'a');
	ret = corrupt(r, msg, err);
	free(msg);
	return ret;
}

static int decompress_zstd(struct zs_reader *r, struct ops_error *err)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	size_t hint = 1, h; /* hint nonzero: inside a frame */
	int frames = 0, more, ret = 0, out_full = 0;

	if (!d) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot decompress '%s': %s", r->o->in_name,
				    "zstd could not be initialised");
		goto out;
	}
	for (;;) {
		ZSTD_inBuffer in;
		ZSTD_outBuffer out = { r->out, IO_CHUNK, 0 };

		if (r->in_pos == r->in_len && !out_full) {
			more = reader_fill(r, err);
			if (more < 0) {
				ret = more;
				goto out;
			}
			if (!more)
				break;
		}
		in = (ZSTD_inBuffer){ r->in + r->in_pos, r->in_len - r->in_pos, 0 };
		h = ZSTD_decompressStream(d, &out, &in);
		r->in_pos += in.pos;
		if (ZSTD_isError(h)) {
			if (frames && ZSTD_getErrorCode(h) == ZSTD_error_prefix_unknown)
				ret = corrupt(r, "trailing data after the end of the zstd stream", err);
			else
				ret = zstd_corrupt(r, h, err);
			goto out;
		}
		/* a call that read and wrote nothing (the one after a frame that
		 * ended exactly as the output buffer filled) opens no new frame */
		if (in.pos || out.pos || h == 0)
			hint = h;
		if (h == 0)
			frames++;
		out_full = out.pos == out.size;
		if ((ret = reader_emit(r, r->out, out.pos, err)))
			goto out;
	}
	if (hint != 0)
		ret = corrupt(r, "unexpected end of file", err);
out:
	ZSTD_freeDCtx(d);
	return ret;
}

int zs_decompress(int in_fd, int out_fd, const struct zs_decompress_opts *opts,
		  struct zs_decompress_stats *stats, struct ops_error *err)
{
	static const struct zs_decompress_opts no_opts;
	struct zs_decompress_opts o = opts ? *opts : no_opts;
	struct zs_decompress_stats local;
	struct zs_reader r;
	unsigned char digest[HASH_SHA256_LEN];
	int more = 1, ret = 0;

	if (!o.in_name)
		o.in_name = "input";
	if (!o.out_name)
		o.out_name = "output";
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	memset(&r, 0, sizeof(r));
	r.in_fd = in_fd;
	r.out_fd = out_fd;
	r.o = &o;
	r.st = stats;
	r.in = xmalloc(IO_CHUNK);
	r.out = xmalloc(IO_CHUNK);
	hash_sha256_init(&r.sha);

	while (r.in_len < 4 && (more = reader_fill(&r, err)) > 0)
		;
	if (more < 0) {
		ret = more;
		goto out;
	}
	if (r.in_len >= 2 && r.in[0] == 0x1f && r.in[1] == 0x8b)
		stats->codec = ZS_GZIP;
	else if (r.in_len >= 4 && r.in[0] == 0x28 && r.in[1] == 0xb5 && r.in[2] == 0x2f &&
		 r.in[3] == 0xfd)
		stats->codec = ZS_ZSTD;
	else
		stats->codec = ZS_NONE;

	switch (stats->codec) {
	case ZS_GZIP:
		ret = inflate_gzip(&r, err);
		break;
	case ZS_ZSTD:
		ret = decompress_zstd(&r, err);
		break;
	case ZS_NONE:
		ret = copy_plain(&r, err);
		break;
	}
out:
	hash_sha256_final(&r.sha, digest);
	hash_hex(digest, sizeof(digest), stats->in_sha256);
	free(r.in);
	free(r.out);
	return ret < 0 ? ret : 0;
}
