/* Unit tests for lib/adapters/zstream: gzip/zstd/none round trips, output
 * the real gunzip and zstd read, SHA-256 equal to sha256sum's, magic
 * detection, truncated and corrupted input, write errors, and the pg_dump /
 * psql shapes through lib/system/proc streams. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adapters/hash.h"
#include "adapters/zstream.h"
#include "system/clock.h"
#include "base/exitcode.h"
#include "system/proc.h"

struct fixture {
	char *dir;
	unsigned char *random;    /* incompressible */
	size_t random_len;
	unsigned char *text;      /* compressible, like a plain SQL dump */
	size_t text_len;
};

static void fill_pattern(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	size_t i;
	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)x;
	}
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/opsctl-test-zstream-XXXXXX";
	struct strbuf sb = STRBUF_INIT;
	unsigned i = 0;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	f->random_len = (size_t)3 * 1024 * 1024 + 12345;
	f->random = xmalloc(f->random_len);
	fill_pattern(f->random, f->random_len, 7);
	while (sb.len < (size_t)6 * 1024 * 1024)
		strbuf_addf(&sb, "INSERT INTO orders VALUES (%u, 'customer-%u', %u.%02u, now());\n",
			    i, i % 977, i * 37 % 10000, i % 100), i++;
	f->text = (unsigned char *)strbuf_detach(&sb, &f->text_len);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	const char *argv[] = { "rm", "-rf", f->dir, NULL };
	assert_int_equal(proc_run(argv, NULL, NULL, NULL), 0);
	free(f->dir);
	free(f->random);
	free(f->text);
	free(f);
	return 0;
}

static int slurp(const char *path, struct strbuf *sb)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	strbuf_reset(sb);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		strbuf_add(sb, buf, (size_t)n);
	close(fd);
	return n < 0 ? -1 : 0;
}

/* Compresses data into path in uneven pieces (as pipe reads arrive). */
static void compress_to(const char *path, enum zs_codec codec, int level, int threads,
			const unsigned char *data, size_t len, char hex[65])
{
	struct zs_writer w = ZS_WRITER_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	size_t off = 0, piece = 1;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(zs_writer_open(&w, fd, path, codec, level, threads, &err), 0);
	while (off < len) {
		size_t take = len - off < piece ? len - off : piece;
		assert_int_equal(zs_write(&w, data + off, take, &err), 0);
		off += take;
		piece = piece * 7 % 300007 + 1;
	}
	assert_int_equal(zs_writer_close(&w, hex, &err), 0);
	assert_int_equal(w.in_bytes, len);
	assert_null(w.impl);
	assert_int_equal(close(fd), 0);
	ops_error_release(&err);
}

static void decompress_file(const char *in, const char *out, struct zs_decompress_stats *st,
			    int want_ret, struct ops_error *err)
{
	struct zs_decompress_opts o = { .in_name = in, .out_name = out };
	int ifd = open(in, O_RDONLY | O_CLOEXEC);
	int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(ifd >= 0 && ofd >= 0);
	assert_int_equal(zs_decompress(ifd, ofd, &o, st, err), want_ret);
	close(ifd);
	assert_int_equal(close(ofd), 0);
}

/* The real CLI reads what we wrote: byte-identical output. */
static void assert_cli_reads(const char *tool, const char *path, const unsigned char *data,
			     size_t len)
{
	const char *argv[] = { tool, "-dc", path, NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts o = { .out = &out, .capture_max = len + 1 };
	struct ops_error err = OPS_ERROR_INIT;

	if (!strcmp(tool, "gunzip"))
		argv[1] = "-c";
	assert_int_equal(proc_run_checked(argv, &o, NULL, &err), 0);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.buf, data, len);
	strbuf_release(&out);
	ops_error_release(&err);
}

static void assert_sha256sum(const char *path, const char *hex)
{
	const char *argv[] = { "sha256sum", path, NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts o = { .out = &out };
	struct ops_error err = OPS_ERROR_INIT;

	assert_int_equal(proc_run_checked(argv, &o, NULL, &err), 0);
	assert_true(out.len > 64);
	out.buf[64] = '\0';
	assert_string_equal(out.buf, hex);
	strbuf_release(&out);
	ops_error_release(&err);
}

static void round_trip(struct fixture *f, enum zs_codec codec, int level, int threads,
		       const unsigned char *data, size_t len)
{
	char *zpath = xstrfmt("%s/data%s", f->dir, zs_codec_suffix(codec));
	char *back = xstrfmt("%s/back", f->dir);
	struct zs_decompress_stats st;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	struct stat sbuf;
	char hex[65];

	compress_to(zpath, codec, level, threads, data, len, hex);
	assert_sha256sum(zpath, hex);
	if (codec == ZS_GZIP)
		assert_cli_reads("gunzip", zpath, data, len);
	else if (codec == ZS_ZSTD)
		assert_cli_reads("zstd", zpath, data, len);

	decompress_file(zpath, back, &st, 0, &err);
	assert_int_equal(st.codec, codec);
	assert_int_equal(st.out_bytes, len);
	assert_int_equal(stat(zpath, &sbuf), 0);
	assert_int_equal(st.in_bytes, (uint64_t)sbuf.st_size);
	assert_string_equal(st.in_sha256, hex);
	assert_int_equal(slurp(back, &sb), 0);
	assert_int_equal(sb.len, len);
	assert_memory_equal(sb.buf, data, len);
	strbuf_release(&sb);
	free(zpath);
	free(back);
	ops_error_release(&err);
}

static void test_round_trips(void **state)
{
	struct fixture *f = *state;
	static const enum zs_codec codecs[] = { ZS_NONE, ZS_GZIP, ZS_ZSTD };
	size_t i;

	for (i = 0; i < 3; i++) {
		round_trip(f, codecs[i], 0, 1, f->text, f->text_len);
		round_trip(f, codecs[i], 0, 3, f->text, f->text_len);
		round_trip(f, codecs[i], 0, 0, f->random, f->random_len);
		round_trip(f, codecs[i], 1, 2, (const unsigned char *)"", 0);
		round_trip(f, codecs[i], 0, 4, (const unsigned char *)"x", 1);
	}
	round_trip(f, ZS_GZIP, 9, 2, f->text, f->text_len);
	round_trip(f, ZS_ZSTD, 19, 1, f->text, 200000);
	round_trip(f, ZS_ZSTD, -5, 2, f->text, f->text_len);
}

/* Parallel gzip compresses about as well as plain deflate, and its output
 * does not depend on the number of threads. */
static void test_parallel_gzip_ratio_and_determinism(void **state)
{
	struct fixture *f = *state;
	char *a = xstrfmt("%s/a.gz", f->dir), *b = xstrfmt("%s/b.gz", f->dir);
	char *c = xstrfmt("%s/c.gz", f->dir);
	char ha[65], hb[65], hc[65];
	struct stat sa, sc;

	compress_to(a, ZS_GZIP, 6, 2, f->text, f->text_len, ha);
	compress_to(b, ZS_GZIP, 6, 5, f->text, f->text_len, hb);
	compress_to(c, ZS_GZIP, 6, 1, f->text, f->text_len, hc);
	assert_string_equal(ha, hb);
	assert_int_equal(stat(a, &sa), 0);
	assert_int_equal(stat(c, &sc), 0);
	assert_true(sa.st_size < sc.st_size + sc.st_size / 50);
	assert_true(sa.st_size < (off_t)f->text_len / 4);
	free(a);
	free(b);
	free(c);
}

static void write_bytes(const char *path, const void *data, size_t len, int append)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* gzip -c a > x; gzip -c b >> x, and zstd frames alike: read whole. */
static void test_concatenated_members_and_frames(void **state)
{
	struct fixture *f = *state;
	static const enum zs_codec codecs[] = { ZS_GZIP, ZS_ZSTD };
	char *part = xstrfmt("%s/part", f->dir), *cat = xstrfmt("%s/cat", f->dir);
	char *back = xstrfmt("%s/back", f->dir), hex[65];
	struct zs_decompress_stats st;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT, whole = STRBUF_INIT;
	size_t i;
	int k;

	for (i = 0; i < 2; i++) {
		unlink(cat);
		strbuf_reset(&whole);
		for (k = 0; k < 3; k++) {
			const unsigned char *d = k == 1 ? f->random : f->text;
			size_t len = k == 1 ? 100000 : 70000 + (size_t)k;
			compress_to(part, codecs[i], 0, k + 1, d, len, hex);
			assert_int_equal(slurp(part, &sb), 0);
			write_bytes(cat, sb.buf, sb.len, 1);
			strbuf_add(&whole, d, len);
		}
		decompress_file(cat, back, &st, 0, &err);
		assert_int_equal(st.codec, codecs[i]);
		assert_int_equal(slurp(back, &sb), 0);
		assert_int_equal(sb.len, whole.len);
		assert_memory_equal(sb.buf, whole.buf, whole.len);
	}
	strbuf_release(&sb);
	strbuf_release(&whole);
	free(part);
	free(cat);
	free(back);
	ops_error_release(&err);
}

/* A frame whose plain size is an exact multiple of the output buffer
 * (256 KiB) ends just as the buffer fills: that is the end of the stream,
 * not "unexpected end of file" (once seen on a 2.5 MiB table). */
static void test_frame_ending_with_a_full_buffer(void **state)
{
	struct fixture *f = *state;
	char *z = xstrfmt("%s/exact.zst", f->dir), *back = xstrfmt("%s/exact", f->dir), hex[65];
	size_t len = (size_t)10 * 256 * 1024;
	unsigned char *data = xmalloc(len);
	struct zs_decompress_stats st;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;

	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)('a' + (i / 64) % 26); /* compresses ~3000:1 */
	for (int threads = 1; threads <= 2; threads++) {
		compress_to(z, ZS_ZSTD, 0, threads, data, len, hex);
		decompress_file(z, back, &st, 0, &err);
		assert_int_equal(slurp(back, &sb), 0);
		assert_int_equal(sb.len, len);
		assert_memory_equal(sb.buf, data, len);
	}
	strbuf_release(&sb);
	ops_error_release(&err);
	free(data);
	free(z);
	free(back);
}

/* Files made by the CLIs, detected by magic, whatever their name. */
static void test_detects_codec_by_magic(void **state)
{
	struct fixture *f = *state;
	char *plain = xstrfmt("%s/plain", f->dir), *back = xstrfmt("%s/back", f->dir);
	char *gz = xstrfmt("%s/made-by-gzip", f->dir), *zst = xstrfmt("%s/made-by-zstd", f->dir);
	char *sh_gz = xstrfmt("gzip -c '%s' > '%s' && zstd -q -c '%s' > '%s'", plain, gz, plain, zst);
	struct zs_decompress_stats st;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;

	write_bytes(plain, f->text, 300000, 0);
	assert_int_equal(proc_run_shell_checked(sh_gz, NULL, NULL, &err), 0);
	decompress_file(gz, back, &st, 0, &err);
	assert_int_equal(st.codec, ZS_GZIP);
	assert_int_equal(slurp(back, &sb), 0);
	assert_memory_equal(sb.buf, f->text, 300000);
	decompress_file(zst, back, &st, 0, &err);
	assert_int_equal(st.codec, ZS_ZSTD);
	assert_int_equal(slurp(back, &sb), 0);
	assert_memory_equal(sb.buf, f->text, 300000);
	decompress_file(plain, back, &st, 0, &err);
	assert_int_equal(st.codec, ZS_NONE);
	assert_int_equal(st.out_bytes, 300000);
	/* Shorter than any magic. */
	write_bytes(plain, "\x1f", 1, 0);
	decompress_file(plain, back, &st, 0, &err);
	assert_int_equal(st.codec, ZS_NONE);
	assert_int_equal(st.out_bytes, 1);
	write_bytes(plain, "", 0, 0);
	decompress_file(plain, back, &st, 0, &err);
	assert_int_equal(st.codec, ZS_NONE);
	assert_int_equal(st.in_bytes, 0);
	assert_string_equal(st.in_sha256,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	strbuf_release(&sb);
	free(sh_gz);
	free(plain);
	free(back);
	free(gz);
	free(zst);
	ops_error_release(&err);
}

/* Bad data is an integrity error that names the file. */
static void expect_corrupt(struct fixture *f, const char *path, const void *data, size_t len,
			   const char *why)
{
	char *back = xstrfmt("%s/back", f->dir);
	char *want = xstrfmt("cannot decompress '%s': %s", path, why);
	struct ops_error err = OPS_ERROR_INIT;

	write_bytes(path, data, len, 0);
	decompress_file(path, back, NULL, -OPS_EXIT_INTEGRITY, &err);
	assert_int_equal(err.code, OPS_EXIT_INTEGRITY);
	assert_string_equal(err.msg.buf, want);
	free(want);
	free(back);
	ops_error_release(&err);
}

static void test_truncated_and_corrupted(void **state)
{
	struct fixture *f = *state;
	char *gz = xstrfmt("%s/d.sql.gz", f->dir), *zst = xstrfmt("%s/d.sql.zst", f->dir);
	char *pgz = xstrfmt("%s/p.sql.gz", f->dir), *bad = xstrfmt("%s/bad", f->dir), hex[65];
	struct strbuf g = STRBUF_INIT, z = STRBUF_INIT, p = STRBUF_INIT, junk = STRBUF_INIT;

	compress_to(gz, ZS_GZIP, 6, 1, f->text, 1000000, hex);
	compress_to(pgz, ZS_GZIP, 6, 2, f->text, 1000000, hex);
	compress_to(zst, ZS_ZSTD, 3, 2, f->text, 1000000, hex);
	assert_int_equal(slurp(gz, &g), 0);
	assert_int_equal(slurp(zst, &z), 0);
	assert_int_equal(slurp(pgz, &p), 0);

	/* Cut anywhere: in the data, in the trailer, after the header. */
	expect_corrupt(f, bad, g.buf, g.len / 2, "unexpected end of file");
	expect_corrupt(f, bad, g.buf, g.len - 1, "unexpected end of file");
	expect_corrupt(f, bad, p.buf, p.len - 4, "unexpected end of file");
	expect_corrupt(f, bad, g.buf, 10, "unexpected end of file");
	expect_corrupt(f, bad, z.buf, z.len / 2, "unexpected end of file");
	expect_corrupt(f, bad, z.buf, z.len - 1, "unexpected end of file");
	expect_corrupt(f, bad, z.buf, 4, "unexpected end of file");

	/* A flipped checksum byte. */
	g.buf[g.len - 6] ^= 0x55;
	expect_corrupt(f, bad, g.buf, g.len, "incorrect data check");
	g.buf[g.len - 6] ^= 0x55;
	p.buf[p.len - 3] ^= 0x55;
	expect_corrupt(f, bad, p.buf, p.len, "incorrect length check");
	z.buf[z.len - 2] ^= 0x55;
	expect_corrupt(f, bad, z.buf, z.len, "restored data doesn't match checksum");
	z.buf[z.len - 2] ^= 0x55;

	/* Garbage in the middle: zlib's or zstd's own words, still exit 5. */
	memset(g.buf + g.len / 2, 0xff, 64);
	write_bytes(bad, g.buf, g.len, 0);
	{
		struct ops_error err = OPS_ERROR_INIT;
		char *back = xstrfmt("%s/back", f->dir);
		decompress_file(bad, back, NULL, -OPS_EXIT_INTEGRITY, &err);
		assert_true(starts_with(err.msg.buf, "cannot decompress '"));
		memset(z.buf + z.len / 2, 0xff, 64);
		write_bytes(bad, z.buf, z.len, 0);
		decompress_file(bad, back, NULL, -OPS_EXIT_INTEGRITY, &err);
		assert_true(starts_with(err.msg.buf, "cannot decompress '"));
		free(back);
		ops_error_release(&err);
	}

	/* Something after the end. */
	assert_int_equal(slurp(gz, &g), 0);
	assert_int_equal(slurp(zst, &z), 0);
	strbuf_addbuf(&junk, &g);
	strbuf_addstr(&junk, "junk");
	expect_corrupt(f, bad, junk.buf, junk.len, "trailing data after the end of the gzip stream");
	strbuf_reset(&junk);
	strbuf_addbuf(&junk, &g);
	strbuf_addch(&junk, 0x1f);
	expect_corrupt(f, bad, junk.buf, junk.len, "trailing data after the end of the gzip stream");
	strbuf_reset(&junk);
	strbuf_addbuf(&junk, &z);
	strbuf_addstr(&junk, "junk");
	expect_corrupt(f, bad, junk.buf, junk.len, "trailing data after the end of the zstd stream");

	strbuf_release(&g);
	strbuf_release(&z);
	strbuf_release(&p);
	strbuf_release(&junk);
	free(gz);
	free(zst);
	free(pgz);
	free(bad);
}

/* A full disk (RLIMIT_FSIZE stands in for ENOSPC, which needs root to fake):
 * a clear error naming the file, the writer still released cleanly. */
static void test_write_error_is_reported(void **state)
{
	struct fixture *f = *state;
	static const enum zs_codec codecs[] = { ZS_NONE, ZS_GZIP, ZS_ZSTD };
	struct ops_error err = OPS_ERROR_INIT;
	struct rlimit old, small;
	void (*old_handler)(int);
	size_t i;

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 100000;
	for (i = 0; i < 3; i++) {
		struct zs_writer w = ZS_WRITER_INIT;
		char *path = xstrfmt("%s/full%s", f->dir, zs_codec_suffix(codecs[i]));
		char *want = xstrfmt("cannot write '%s': file too large", path);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int ret;

		assert_true(fd >= 0);
		assert_int_equal(zs_writer_open(&w, fd, path, codecs[i], 0, 2, &err), 0);
		old_handler = signal(SIGXFSZ, SIG_IGN);
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
		ret = zs_write(&w, f->random, f->random_len, &err);
		if (!ret)
			ret = zs_writer_close(&w, NULL, &err);
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
		signal(SIGXFSZ, old_handler);
		assert_int_equal(ret, -OPS_EXIT_FAILED);
		assert_string_equal(err.msg.buf, want);
		/* Once failed, always failed; closing frees it and fails again. */
		assert_int_equal(zs_write(&w, "x", 1, &err), -OPS_EXIT_FAILED);
		assert_int_equal(zs_writer_close(&w, NULL, &err), -OPS_EXIT_FAILED);
		assert_null(w.impl);
		zs_writer_release(&w);
		close(fd);
		free(path);
		free(want);
	}
	ops_error_release(&err);
}

static void test_names_levels_and_misuse(void **state)
{
	struct fixture *f = *state;
	struct zs_writer w = ZS_WRITER_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	enum zs_codec c;
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	(void)f;

	assert_string_equal(zs_codec_name(ZS_NONE), "none");
	assert_string_equal(zs_codec_name(ZS_GZIP), "gzip");
	assert_string_equal(zs_codec_name(ZS_ZSTD), "zstd");
	assert_string_equal(zs_codec_suffix(ZS_NONE), "");
	assert_string_equal(zs_codec_suffix(ZS_GZIP), ".gz");
	assert_string_equal(zs_codec_suffix(ZS_ZSTD), ".zst");
	assert_int_equal(zs_codec_parse("zstd", &c, &err), 0);
	assert_int_equal(c, ZS_ZSTD);
	assert_int_equal(zs_codec_parse("gzip", &c, &err), 0);
	assert_int_equal(c, ZS_GZIP);
	assert_int_equal(zs_codec_parse("none", &c, &err), 0);
	assert_int_equal(c, ZS_NONE);
	assert_int_equal(zs_codec_parse("lz4", &c, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "unknown compression 'lz4' (expected none, gzip or zstd)");

	assert_int_equal(zs_writer_open(&w, fd, "x", ZS_GZIP, 12, 1, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid gzip level 12 (expected 1-9)");
	assert_null(w.impl);
	assert_int_equal(zs_writer_open(&w, fd, "x", ZS_ZSTD, 40, 1, &err), -OPS_EXIT_USAGE);
	assert_true(starts_with(err.msg.buf, "invalid zstd level 40 (expected -"));
	zs_writer_release(&w);
	assert_int_equal(zs_write(&w, "x", 1, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "cannot write: the stream is closed");

	/* Abandoned mid-stream: release frees it (ASan checks the leak). */
	assert_int_equal(zs_writer_open(&w, fd, "x", ZS_GZIP, 0, 3, &err), 0);
	assert_int_equal(zs_write(&w, f->text, 3000000, &err), 0);
	zs_writer_release(&w);
	zs_writer_release(&w);
	assert_int_equal(zs_writer_open(&w, fd, "x", ZS_ZSTD, 0, 2, &err), 0);
	assert_int_equal(zs_write(&w, f->text, 3000000, &err), 0);
	zs_writer_release(&w);
	close(fd);
	ops_error_release(&err);
}

struct progress_log {
	int calls;
	int stop_after;
	uint64_t last_in, last_out;
};

static int on_progress(uint64_t in, uint64_t out, void *arg)
{
	struct progress_log *p = arg;
	assert_true(in >= p->last_in && out >= p->last_out);
	p->last_in = in;
	p->last_out = out;
	return ++p->calls == p->stop_after;
}

/* The backup shape: pg_dump's stdout (here cat) pumped into a compressed
 * file; then the restore shape: the file decompressed into psql's stdin
 * (here a shell writing a file). Progress seen, and able to stop it. */
static void test_pump_from_child_and_restore_into_child(void **state)
{
	struct fixture *f = *state;
	char *src = xstrfmt("%s/dump.sql", f->dir), *zpath = xstrfmt("%s/dump.sql.zst", f->dir);
	char *restored = xstrfmt("%s/restored.sql", f->dir), *env_out = xstrfmt("OUT=%s", restored);
	const char *dump[] = { "cat", src, NULL };
	const char *psql[] = { "sh", "-c", "cat > \"$OUT\"", NULL };
	const char *env[] = { env_out, NULL };
	struct proc_stream_opts out_opts = { .pipes = PROC_PIPE_STDOUT };
	struct proc_stream_opts in_opts = { .pipes = PROC_PIPE_STDIN, .env_add = env };
	struct zs_decompress_opts dopts = { .in_name = zpath, .out_name = "psql" };
	struct zs_decompress_stats st;
	struct progress_log log = { 0, 0, 0, 0 };
	struct zs_writer w = ZS_WRITER_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	struct proc_child c;
	struct strbuf sb = STRBUF_INIT;
	char hex[65];
	int fd, zfd;

	write_bytes(src, f->text, f->text_len, 0);
	zfd = open(zpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(zfd >= 0);
	assert_int_equal(proc_start(dump, &out_opts, &c, &err), 0);
	assert_int_equal(zs_writer_open(&w, zfd, zpath, ZS_ZSTD, 0, 0, &err), 0);
	assert_int_equal(zs_pump(c.out_fd, "cat", 0, &w, on_progress, &log, &err), 0);
	assert_int_equal(proc_finish(&c, 5000, NULL, &err), 0);
	assert_int_equal(zs_writer_close(&w, hex, &err), 0);
	assert_int_equal(close(zfd), 0);
	assert_true(log.calls > 1);
	assert_int_equal(log.last_in, f->text_len);
	assert_int_equal(w.in_bytes, f->text_len);
	assert_sha256sum(zpath, hex);

	fd = open(zpath, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(proc_start(psql, &in_opts, &c, &err), 0);
	assert_int_equal(zs_decompress(fd, c.in_fd, &dopts, &st, &err), 0);
	assert_int_equal(proc_finish(&c, 5000, NULL, &err), 0);
	close(fd);
	assert_string_equal(st.in_sha256, hex);
	assert_int_equal(st.out_bytes, f->text_len);
	assert_int_equal(slurp(restored, &sb), 0);
	assert_int_equal(sb.len, f->text_len);
	assert_memory_equal(sb.buf, f->text, f->text_len);

	/* The progress callback stops a restore (Ctrl-C seen). */
	log = (struct progress_log){ 0, 2, 0, 0 };
	dopts.progress = on_progress;
	dopts.progress_arg = &log;
	fd = open(zpath, O_RDONLY | O_CLOEXEC);
	assert_int_equal(proc_start(psql, &in_opts, &c, &err), 0);
	assert_int_equal(zs_decompress(fd, c.in_fd, &dopts, &st, &err), -OPS_EXIT_ABORTED);
	assert_string_equal(err.msg.buf, "interrupted");
	proc_kill(&c);
	close(fd);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

	strbuf_release(&sb);
	free(src);
	free(zpath);
	free(restored);
	free(env_out);
	ops_error_release(&err);
}

/* pg_dump writes a little, then nothing (a frozen database, a lock wait):
 * given up stall_ms after the last byte, as "wrote nothing for"; with the
 * bytes it had, progress called while waiting, and Ctrl-C seen there. */
static void test_pump_stall(void **state)
{
	struct fixture *f = *state;
	char *zpath = xstrfmt("%s/stall.zst", f->dir);
	struct progress_log log = { 0, 0, 0, 0 };
	struct zs_writer w = ZS_WRITER_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	int p[2], zfd;
	int64_t start;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "COPY items", 10), 10);
	zfd = open(zpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(zfd >= 0);
	assert_int_equal(zs_writer_open(&w, zfd, zpath, ZS_ZSTD, 0, 0, &err), 0);
	start = clock_now_ms();
	assert_int_equal(zs_pump(p[0], "pg_dump", 1500, &w, on_progress, &log, &err), -OPS_EXIT_UNREACHABLE);
	assert_string_equal(err.msg.buf, "'pg_dump' wrote nothing for 1.5s");
	assert_true(clock_now_ms() - start >= 1500);
	assert_true(clock_now_ms() - start < 4000);
	assert_int_equal(w.in_bytes, 10);
	assert_true(log.calls >= 2); /* after the read, and at least once in the wait */
	zs_writer_release(&w);

	/* stopped while waiting */
	log = (struct progress_log){ 0, 1, 0, 0 };
	assert_int_equal(zs_writer_open(&w, zfd, zpath, ZS_ZSTD, 0, 0, &err), 0);
	start = clock_now_ms();
	assert_int_equal(zs_pump(p[0], "pg_dump", 60000, &w, on_progress, &log, &err), -OPS_EXIT_ABORTED);
	assert_string_equal(err.msg.buf, "interrupted");
	assert_true(clock_now_ms() - start < 3000);
	zs_writer_release(&w);

	close(p[0]);
	close(p[1]);
	close(zfd);
	free(zpath);
	ops_error_release(&err);
}

/* psql dies (bad credentials) while we decompress into it: "broken pipe",
 * not a SIGPIPE death, and proc_finish has the real cause. */
static void test_restore_into_child_that_dies(void **state)
{
	struct fixture *f = *state;
	char *zpath = xstrfmt("%s/big.gz", f->dir), hex[65];
	const char *psql[] = { "sh", "-c",
			       "echo 'psql: error: password authentication failed' >&2; exit 2",
			       NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN };
	struct zs_decompress_opts dopts = { .in_name = zpath, .out_name = "psql" };
	struct ops_error err = OPS_ERROR_INIT, child_err = OPS_ERROR_INIT;
	struct proc_child c;
	sigset_t pending;
	int fd;

	compress_to(zpath, ZS_GZIP, 1, 0, f->text, f->text_len, hex);
	fd = open(zpath, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(proc_start(psql, &o, &c, &err), 0);
	assert_int_equal(zs_decompress(fd, c.in_fd, &dopts, NULL, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "cannot write 'psql': broken pipe");
	assert_int_equal(proc_finish(&c, 5000, NULL, &child_err), -OPS_EXIT_FAILED);
	assert_string_equal(child_err.msg.buf,
			    "'sh' failed with exit status 2: psql: error: password authentication failed");
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGPIPE));
	close(fd);

	/* Without proc_start's guard (another thread's pipe, say), the
	 * decompressor still turns SIGPIPE into an error. */
	{
		int p[2];
		assert_int_equal(pipe(p), 0);
		close(p[0]);
		fd = open(zpath, O_RDONLY | O_CLOEXEC);
		assert_int_equal(zs_decompress(fd, p[1], &dopts, NULL, &err), -OPS_EXIT_FAILED);
		assert_string_equal(err.msg.buf, "cannot write 'psql': broken pipe");
		sigpending(&pending);
		assert_false(sigismember(&pending, SIGPIPE));
		close(p[1]);
		close(fd);
	}
	free(zpath);
	ops_error_release(&err);
	ops_error_release(&child_err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_parallel_gzip_ratio_and_determinism),
		cmocka_unit_test(test_concatenated_members_and_frames),
		cmocka_unit_test(test_detects_codec_by_magic),
		cmocka_unit_test(test_truncated_and_corrupted),
		cmocka_unit_test(test_frame_ending_with_a_full_buffer),
		cmocka_unit_test(test_write_error_is_reported),
		cmocka_unit_test(test_names_levels_and_misuse),
		cmocka_unit_test(test_pump_from_child_and_restore_into_child),
		cmocka_unit_test(test_pump_stall),
		cmocka_unit_test(test_restore_into_child_that_dies),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
