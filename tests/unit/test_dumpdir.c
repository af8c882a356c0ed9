/* Unit tests for lib/engines/dumpdir: following a directory while another
 * process writes it (as pg_dump -Fd does) and compressing each data file,
 * the listing with sizes and SHA-256, and the way back (dd_unpack) with its
 * checksum and corruption checks. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adapters/hash.h"
#include "adapters/zstream.h"
#include "base/exitcode.h"
#include "base/strbuf.h"
#include "engines/dumpdir.h"
#include "system/fs.h"

#define CHUNK 65536
#define CHUNKS 40

static char *scratch;

static int setup(void **state)
{
	char tmpl[] = "/tmp/opsctl-test-dumpdir-XXXXXX";
	(void)state;
	assert_non_null(mkdtemp(tmpl));
	scratch = strdup(tmpl);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!getenv("KEEP_SCRATCH"))
		fs_remove_tree(scratch, NULL);
	free(scratch);
	return 0;
}

/* The bytes of chunk i of a table: text-like, so it compresses. */
static void chunk(char *buf, int table, int i)
{
	for (int j = 0; j < CHUNK; j++)
		buf[j] = (j % 64 == 63) ? '\n' : (char)('a' + (table * 7 + i + j / 64) % 26);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* What pg_dump -Fd does, in a child: data files written slowly, one of
 * them empty, two at once, then toc.dat. */
static pid_t start_writer(const char *dir)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char buf[CHUNK], path[4096];
		int a, b, e, t;
		snprintf(path, sizeof(path), "%s/3001.dat", dir);
		a = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		snprintf(path, sizeof(path), "%s/3002.dat", dir);
		b = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (a < 0 || b < 0)
			_exit(1);
		for (int i = 0; i < CHUNKS; i++) {
			chunk(buf, 1, i);
			if (write(a, buf, CHUNK) != CHUNK)
				_exit(1);
			if (i % 4 == 0) {
				chunk(buf, 2, i);
				if (write(b, buf, CHUNK) != CHUNK)
					_exit(1);
			}
			msleep(2);
		}
		close(a);
		close(b);
		snprintf(path, sizeof(path), "%s/3003.dat", dir);
		e = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (e < 0)
			_exit(1);
		close(e);
		snprintf(path, sizeof(path), "%s/toc.dat", dir);
		t = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (t < 0 || write(t, "PGDMP-toc", 9) != 9)
			_exit(1);
		close(t);
		_exit(0);
	}
	return pid;
}

static int child_done(pid_t pid)
{
	int status;
	pid_t r = waitpid(pid, &status, WNOHANG);
	if (r == pid)
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return r == pid;
}

static void follow_all(const char *dir, enum zs_codec codec, struct dd_file **files, size_t *n, uint64_t *plain)
{
	struct dd_follow *f = NULL;
	struct ops_error err = OPS_ERROR_INIT;
	pid_t pid;

	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(dd_follow_start(&f, dir, codec, 0, 2, 1, &err), 0);
	pid = start_writer(dir);
	while (!child_done(pid))
		assert_int_equal(dd_follow_poll(f, 20, &err), 0);
	assert_int_equal(dd_follow_finish(f, files, n, plain, &err), 0);
	ops_error_release(&err);
}

static void test_data_names(void **state)
{
	(void)state;
	assert_true(dd_is_data_name("3021.dat"));
	assert_true(dd_is_data_name("blob_16400.dat"));
	assert_false(dd_is_data_name("toc.dat"));
	assert_false(dd_is_data_name("blobs.toc"));
	assert_false(dd_is_data_name(".dat"));
	assert_false(dd_is_data_name("blob_.dat"));
	assert_false(dd_is_data_name("3021.dat.zst"));
	assert_false(dd_is_data_name("30a1.dat"));
}

static void test_follow_compresses_while_written(void **state)
{
	char *dir = xstrfmt("%s/db", scratch), *path;
	struct dd_file *files = NULL;
	size_t n = 0;
	uint64_t plain = 0;
	(void)state;

	follow_all(dir, ZS_ZSTD, &files, &n, &plain);
	/* sorted; every data file compressed, the originals gone, toc.dat as it was */
	assert_int_equal(n, 4);
	assert_string_equal(files[0].name, "3001.dat.zst");
	assert_string_equal(files[1].name, "3002.dat.zst");
	assert_string_equal(files[2].name, "3003.dat.zst");
	assert_string_equal(files[3].name, "toc.dat");
	assert_int_equal(plain, (uint64_t)CHUNK * CHUNKS + (uint64_t)CHUNK * (CHUNKS / 4) + 9);
	for (size_t i = 0; i < n; i++) {
		char hex[65];
		uint64_t size = 0;
		struct ops_error err = OPS_ERROR_INIT;
		path = xstrfmt("%s/%s", dir, files[i].name);
		assert_int_equal(hash_sha256_file(path, hex, &size, &err), 0);
		assert_string_equal(hex, files[i].sha256);
		assert_int_equal(size, files[i].size);
		free(path);
	}
	assert_true(files[0].size < (uint64_t)CHUNK * CHUNKS / 10); /* it compressed */
	path = xstrfmt("%s/3001.dat", dir);
	assert_false(fs_exists(path));
	free(path);
	dd_files_release(files, n);
	free(dir);
}

static void read_all(const char *path, struct strbuf *sb)
{
	struct ops_error err = OPS_ERROR_INIT;
	strbuf_reset(sb);
	assert_int_equal(fs_read_file(path, sb, (size_t)1 << 30, &err), 0);
}

static void test_unpack_round_trip_and_damage(void **state)
{
	char *dir = xstrfmt("%s/db2", scratch), *out = xstrfmt("%s/out", scratch), *path;
	struct dd_file *files = NULL;
	size_t n = 0;
	uint64_t plain = 0;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	char buf[CHUNK];
	int fd;
	(void)state;

	follow_all(dir, ZS_ZSTD, &files, &n, &plain);
	assert_int_equal(mkdir(out, 0700), 0);
	if (dd_unpack(dir, files, n, out, 2, &err) != 0)
		fail_msg("%s", err.msg.buf);
	path = xstrfmt("%s/3001.dat", out);
	read_all(path, &sb);
	assert_int_equal(sb.len, (size_t)CHUNK * CHUNKS);
	for (int i = 0; i < CHUNKS; i++) {
		chunk(buf, 1, i);
		assert_memory_equal(sb.buf + (size_t)i * CHUNK, buf, CHUNK);
	}
	free(path);
	path = xstrfmt("%s/3003.dat", out);
	read_all(path, &sb);
	assert_int_equal(sb.len, 0);
	free(path);
	path = xstrfmt("%s/toc.dat", out);
	read_all(path, &sb);
	assert_string_equal(sb.buf, "PGDMP-toc");
	free(path);
	fs_remove_tree(out, NULL);

	/* a checksum that differs from the list: the file changed since verify */
	assert_int_equal(mkdir(out, 0700), 0);
	files[1].sha256[0] = files[1].sha256[0] == '0' ? '1' : '0';
	assert_int_equal(dd_unpack(dir, files, n, out, 2, &err), -OPS_EXIT_INTEGRITY);
	assert_non_null(strstr(err.msg.buf, "3002.dat.zst' changed since it was verified"));
	files[1].sha256[0] = files[1].sha256[0] == '0' ? '1' : '0';
	fs_remove_tree(out, NULL);

	/* a damaged zstd frame is bad data, not an I/O failure */
	path = xstrfmt("%s/3001.dat.zst", dir);
	read_all(path, &sb); /* the good bytes, put back below */
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "XXXX", 4, 40), 4);
	close(fd);
	free(path);
	assert_int_equal(mkdir(out, 0700), 0);
	assert_int_equal(dd_unpack(dir, files, n, out, 1, &err), -OPS_EXIT_INTEGRITY);
	assert_non_null(strstr(err.msg.buf, "3001.dat.zst"));

	/* a missing file */
	path = xstrfmt("%s/3001.dat.zst", dir);
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, sb.buf, sb.len), (ssize_t)sb.len);
	close(fd);
	free(path);
	fs_remove_tree(out, NULL);
	assert_int_equal(mkdir(out, 0700), 0);
	path = xstrfmt("%s/3002.dat.zst", dir);
	unlink(path);
	free(path);
	assert_int_equal(dd_unpack(dir, files, n, out, 2, &err), -OPS_EXIT_INTEGRITY);
	assert_non_null(strstr(err.msg.buf, "cannot read"));

	ops_error_release(&err);
	strbuf_release(&sb);
	dd_files_release(files, n);
	free(dir);
	free(out);
}

static void test_none_leaves_files(void **state)
{
	char *dir = xstrfmt("%s/db3", scratch);
	struct dd_file *files = NULL;
	size_t n = 0;
	uint64_t plain = 0;
	(void)state;

	follow_all(dir, ZS_NONE, &files, &n, &plain);
	assert_int_equal(n, 4);
	assert_string_equal(files[0].name, "3001.dat");
	assert_int_equal(files[0].size, (uint64_t)CHUNK * CHUNKS);
	assert_string_equal(files[3].name, "toc.dat");
	dd_files_release(files, n);
	free(dir);
}

static void test_gzip_names(void **state)
{
	char *dir = xstrfmt("%s/db4", scratch), *out = xstrfmt("%s/out4", scratch), *path;
	struct dd_file *files = NULL;
	size_t n = 0;
	uint64_t plain = 0;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	(void)state;

	follow_all(dir, ZS_GZIP, &files, &n, &plain);
	assert_string_equal(files[0].name, "3001.dat.gz");
	assert_int_equal(mkdir(out, 0700), 0);
	assert_int_equal(dd_unpack(dir, files, n, out, 2, &err), 0);
	path = xstrfmt("%s/3001.dat", out);
	read_all(path, &sb);
	assert_int_equal(sb.len, (size_t)CHUNK * CHUNKS);
	free(path);
	strbuf_release(&sb);
	ops_error_release(&err);
	dd_files_release(files, n);
	free(dir);
	free(out);
}

/* A compressed file that cannot be created stops the follower with the
 * reason; the caller then stops pg_dump. */
static void test_follow_failure_is_reported(void **state)
{
	char *dir = xstrfmt("%s/db5", scratch), *path;
	struct dd_follow *f = NULL;
	struct ops_error err = OPS_ERROR_INIT;
	int ret = 0;
	pid_t pid;
	(void)state;

	assert_int_equal(mkdir(dir, 0700), 0);
	path = xstrfmt("%s/3001.dat.zst", dir);
	assert_int_equal(mkdir(path, 0700), 0); /* in the way */
	assert_int_equal(dd_follow_start(&f, dir, ZS_ZSTD, 0, 1, 1, &err), 0);
	pid = start_writer(dir);
	for (int i = 0; i < 500 && ret == 0; i++)
		ret = dd_follow_poll(f, 20, &err);
	assert_int_equal(ret, -OPS_EXIT_FAILED);
	assert_non_null(strstr(err.msg.buf, "cannot create"));
	assert_non_null(strstr(err.msg.buf, "3001.dat.zst"));
	dd_follow_abort(f);
	while (!child_done(pid))
		msleep(5);
	ops_error_release(&err);
	free(path);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_names),
		cmocka_unit_test(test_follow_compresses_while_written),
		cmocka_unit_test(test_unpack_round_trip_and_damage),
		cmocka_unit_test(test_none_leaves_files),
		cmocka_unit_test(test_gzip_names),
		cmocka_unit_test(test_follow_failure_is_reported),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
