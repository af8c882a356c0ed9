/* Unit tests for lib/system/proc streaming children: 50 MB through pipes,
 * a child dying while we write, a chatty stderr, deadlines, aborts, and no
 * zombie, descriptor or pending SIGPIPE left behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adapters/hash.h"
#include "base/exitcode.h"
#include "system/proc.h"

#define BIG ((size_t)50 * 1000 * 1000)

static void assert_no_children(void)
{
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own */
}

/* SIGPIPE is neither blocked nor pending once every stream is finished. */
static void assert_sigpipe_clean(void)
{
	sigset_t mask, pending;
	assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
	assert_false(sigismember(&mask, SIGPIPE));
	assert_int_equal(sigpending(&pending), 0);
	assert_false(sigismember(&pending, SIGPIPE));
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deterministic, incompressible-looking bytes (xorshift). */
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

static int write_all_fd(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len > 65536 ? 65536 : len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static char *make_tmpdir(void)
{
	char tmpl[] = "/tmp/opsctl-test-stream-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	return xstrdup(tmpl);
}

static void remove_tree(const char *dir)
{
	const char *argv[] = { "rm", "-rf", dir, NULL };
	assert_int_equal(proc_run(argv, NULL, NULL, NULL), 0);
}

static void write_file(const char *path, const unsigned char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write_all_fd(fd, data, len), 0);
	assert_int_equal(close(fd), 0);
}

/* pg_dump's shape: we read the child's stdout as a stream. */
static void test_stdout_stream_50mb(void **state)
{
	unsigned char *data = xmalloc(BIG), want[32], got[32];
	char *dir = make_tmpdir(), *path = xstrfmt("%s/in", dir);
	const char *argv[] = { "cat", path, NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDOUT, .timeout_ms = 50000 };
	struct hash_sha256_ctx sha = HASH_SHA256_CTX_INIT;
	struct proc_child c;
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	char buf[65536];
	size_t total = 0;
	int fds;
	ssize_t n;
	(void)state;

	fill_pattern(data, BIG, 1);
	hash_sha256(data, BIG, want);
	write_file(path, data, BIG);
	fds = count_fds();

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	assert_true(c.out_fd >= 0);
	assert_int_equal(c.in_fd, -1);
	assert_true(c.pid > 0);
	assert_true(fcntl(c.out_fd, F_GETFD) & FD_CLOEXEC);
	hash_sha256_init(&sha);
	while ((n = read(c.out_fd, buf, sizeof(buf))) > 0) {
		hash_sha256_update(&sha, buf, (size_t)n);
		total += (size_t)n;
	}
	assert_int_equal(n, 0);
	hash_sha256_final(&sha, got);
	assert_int_equal(proc_finish(&c, 5000, &res, &err), 0);
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.status, 0);
	assert_int_equal(total, BIG);
	assert_memory_equal(got, want, 32);
	assert_null(c.priv);
	assert_int_equal(c.out_fd, -1);
	assert_int_equal(count_fds(), fds);
	assert_no_children();

	/* Finishing again, or killing a finished child, is a no-op. */
	assert_int_equal(proc_finish(&c, 0, NULL, &err), 0);
	proc_kill(&c);
	remove_tree(dir);
	free(path);
	free(dir);
	free(data);
	ops_error_release(&err);
}

/* psql's shape: we feed the child's stdin as a stream. */
static void test_stdin_stream_50mb(void **state)
{
	unsigned char *data = xmalloc(BIG), want[32];
	char *dir = make_tmpdir(), *path = xstrfmt("%s/out", dir), hex[65], want_hex[65];
	const char *argv[] = { "sh", "-c", "cat > \"$OUT\"", NULL };
	char *env_out = xstrfmt("OUT=%s", path);
	const char *env[] = { env_out, NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN, .env_add = env };
	struct proc_child c;
	struct ops_error err = OPS_ERROR_INIT;
	uint64_t size;
	int fds;
	(void)state;

	fill_pattern(data, BIG, 2);
	hash_sha256(data, BIG, want);
	hash_hex(want, 32, want_hex);
	fds = count_fds();

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	assert_true(c.in_fd >= 0);
	assert_int_equal(c.out_fd, -1);
	assert_int_equal(write_all_fd(c.in_fd, data, BIG), 0);
	assert_int_equal(proc_finish(&c, 10000, NULL, &err), 0);
	assert_int_equal(hash_sha256_file(path, hex, &size, &err), 0);
	assert_int_equal(size, BIG);
	assert_string_equal(hex, want_hex);
	assert_int_equal(count_fds(), fds);
	assert_no_children();
	assert_sigpipe_clean();
	remove_tree(dir);
	free(env_out);
	free(path);
	free(dir);
	free(data);
	ops_error_release(&err);
}

struct feeder {
	int fd;
	const unsigned char *data;
	size_t len;
	int ret;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	f->ret = write_all_fd(f->fd, f->data, f->len);
	close(f->fd);
	return NULL;
}

/* Both pipes at once: `cat` between a feeding thread and our reads. */
static void test_both_pipes_through_cat(void **state)
{
	unsigned char *data = xmalloc(BIG), *back = xmalloc(BIG);
	const char *argv[] = { "cat", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN | PROC_PIPE_STDOUT };
	struct proc_child c;
	struct ops_error err = OPS_ERROR_INIT;
	struct feeder f;
	pthread_t t;
	size_t total = 0;
	ssize_t n;
	int fds;
	(void)state;

	fill_pattern(data, BIG, 3);
	fds = count_fds();
	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	f = (struct feeder){ c.in_fd, data, BIG, 0 };
	c.in_fd = -1; /* the feeder closes it */
	assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
	while (total < BIG && (n = read(c.out_fd, back + total, BIG - total)) > 0)
		total += (size_t)n;
	assert_int_equal(read(c.out_fd, &n, 1), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(f.ret, 0);
	assert_int_equal(proc_finish(&c, 5000, NULL, &err), 0);
	assert_int_equal(total, BIG);
	assert_memory_equal(back, data, BIG);
	assert_int_equal(count_fds(), fds);
	assert_no_children();
	assert_sigpipe_clean();
	free(data);
	free(back);
	ops_error_release(&err);
}

/* psql refusing the connection while we still have most of the dump to send:
 * EPIPE for us (no SIGPIPE death), the child's own error from proc_finish. */
static void test_child_exits_early_while_we_write(void **state)
{
	const char *argv[] = { "sh", "-c",
			       "echo 'psql: error: connection to server failed' >&2; exit 2", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN };
	unsigned char *data = xcalloc(1, 8 << 20);
	struct proc_child c;
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	int fds = count_fds();
	(void)state;

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	/* More than a pipe holds, so the write must meet the dead reader. */
	assert_int_equal(write_all_fd(c.in_fd, data, 8 << 20), -EPIPE);
	assert_int_equal(proc_finish(&c, 5000, &res, &err), -OPS_EXIT_FAILED);
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.status, 2);
	assert_string_equal(err.msg.buf,
			    "'sh' failed with exit status 2: psql: error: connection to server failed");
	assert_int_equal(count_fds(), fds);
	assert_no_children();
	assert_sigpipe_clean();
	free(data);
	ops_error_release(&err);
}

/* 1 MB of stderr before any stdout: without a concurrent drain the child
 * blocks on stderr while we block on its stdout. The whole-run deadline turns
 * a regression into a failure instead of a hang. */
static void test_chatty_stderr_does_not_deadlock(void **state)
{
	const char *argv[] = { "sh", "-c",
			       "head -c 1048576 /dev/zero | tr '\\0' 'w' >&2; echo >&2;"
			       " echo payload; echo 'pg_dump: error: the last word' >&2; exit 1",
			       NULL };
	struct strbuf errout = STRBUF_INIT;
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDOUT, .timeout_ms = 20000,
				      .errout = &errout, .capture_max = 4096 };
	struct proc_child c;
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	char buf[64];
	ssize_t n;
	size_t got = 0;
	(void)state;

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	while ((n = read(c.out_fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	assert_string_equal(buf, "payload\n");
	assert_int_equal(proc_finish(&c, 5000, &res, &err), -OPS_EXIT_FAILED);
	assert_int_equal(res.timed_out, 0);
	assert_string_equal(err.msg.buf,
			    "'sh' failed with exit status 1: pg_dump: error: the last word");
	assert_int_equal(errout.len, 4096);
	assert_int_equal(errout.buf[0], 'w');
	assert_no_children();
	strbuf_release(&errout);
	ops_error_release(&err);
}

/* A child that does not exit after its stdin closed is killed at the
 * proc_finish deadline. */
static void test_finish_deadline_kills(void **state)
{
	const char *argv[] = { "sleep", "30", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN };
	struct proc_child c;
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	int64_t t0 = now_ms();
	(void)state;

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	assert_int_equal(proc_finish(&c, 200, &res, &err), -OPS_EXIT_UNREACHABLE);
	assert_string_equal(err.msg.buf, "'sleep' did not finish within 200ms after the stream ended");
	assert_int_equal(res.timed_out, 1);
	assert_int_equal(res.exited, 0);
	assert_int_equal(res.status, SIGTERM);
	assert_true(now_ms() - t0 < 2000);
	assert_no_children();
	assert_sigpipe_clean();
	ops_error_release(&err);
}

/* The whole-run deadline fires while we are blocked reading: the read sees
 * EOF, proc_finish reports the timeout. SIGTERM ignored: SIGKILL 2 s later. */
static void test_run_deadline_escalates(void **state)
{
	const char *argv[] = { "sh", "-c", "trap '' TERM; exec sleep 30", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDOUT, .timeout_ms = 300 };
	struct proc_child c;
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	int64_t t0 = now_ms(), took;
	char b;
	(void)state;

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	assert_int_equal(read(c.out_fd, &b, 1), 0);
	took = now_ms() - t0;
	assert_true(took >= 2000 && took < 6000);
	assert_int_equal(proc_finish(&c, 0, &res, &err), -OPS_EXIT_UNREACHABLE);
	assert_string_equal(err.msg.buf, "'sh' did not finish within 300ms");
	assert_int_equal(res.timed_out, 1);
	assert_int_equal(res.exited, 0);
	assert_int_equal(res.status, SIGKILL);
	assert_no_children();
	ops_error_release(&err);
}

/* proc_wait_exit: at most the wait while the child runs, at once when it
 * exits (a restore step must not lose a polling tick), the child left for
 * proc_finish to reap. */
static void test_wait_exit(void **state)
{
	const char *slow[] = { "sleep", "30", NULL }, *quick[] = { "sleep", "0.2", NULL };
	struct proc_stream_opts o = { 0 };
	struct proc_child c, zero;
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	int64_t t0, took;
	(void)state;

	memset(&zero, 0, sizeof(zero));
	assert_int_equal(proc_wait_exit(&zero, 1000), 1);

	assert_int_equal(proc_start(slow, &o, &c, &err), 0);
	t0 = now_ms();
	assert_int_equal(proc_wait_exit(&c, 100), 0);
	took = now_ms() - t0;
	assert_true(took >= 90 && took < 1000);
	proc_kill(&c);

	assert_int_equal(proc_start(quick, &o, &c, &err), 0);
	t0 = now_ms();
	while (!proc_wait_exit(&c, 10000))
		;
	took = now_ms() - t0;
	assert_true(took >= 150 && took < 1500); /* not the 10 s asked for */
	assert_int_equal(proc_finish(&c, 0, &res, &err), 0);
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.status, 0);
	assert_no_children();
	ops_error_release(&err);
}

/* Aborting (Ctrl-C, a failed reader): quick, nothing left. */
static void test_kill_aborts(void **state)
{
	const char *argv[] = { "sleep", "30", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN | PROC_PIPE_STDOUT };
	struct proc_child c, zero;
	struct ops_error err = OPS_ERROR_INIT;
	int fds = count_fds();
	int64_t t0 = now_ms();
	(void)state;

	memset(&zero, 0, sizeof(zero));
	proc_kill(&zero); /* a zeroed struct: nothing to do, fd 0 not closed */
	assert_int_equal(count_fds(), fds);

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	proc_kill(&c);
	assert_true(now_ms() - t0 < 2000);
	assert_null(c.priv);
	assert_int_equal(c.in_fd, -1);
	assert_int_equal(c.out_fd, -1);
	assert_int_equal(count_fds(), fds);
	assert_no_children();
	assert_sigpipe_clean();
	ops_error_release(&err);
}

static void test_start_failures(void **state)
{
	const char *missing[] = { "opsctl-no-such-program", NULL };
	const char *pwd[] = { "pwd", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN | PROC_PIPE_STDOUT };
	struct proc_stream_opts bad_cwd = { .cwd = "/nonexistent-opsctl" };
	struct proc_child c;
	struct ops_error err = OPS_ERROR_INIT;
	int fds = count_fds();
	(void)state;

	assert_int_equal(proc_start(missing, &o, &c, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf,
			    "cannot run 'opsctl-no-such-program': no such file or directory");
	assert_null(c.priv);
	assert_int_equal(c.in_fd, -1);
	assert_int_equal(c.out_fd, -1);
	proc_kill(&c);
	assert_int_equal(proc_start(pwd, &bad_cwd, &c, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf,
			    "cannot run 'pwd' in '/nonexistent-opsctl': no such file or directory");
	assert_int_equal(count_fds(), fds);
	assert_no_children();
	assert_sigpipe_clean();
	ops_error_release(&err);
}

static void test_env_cwd_and_signal_exit(void **state)
{
	const char *argv[] = { "sh", "-c", "echo \"$PGDATABASE\"; pwd", NULL };
	const char *env[] = { "PGDATABASE=shop", NULL };
	const char *killer[] = { "sh", "-c", "kill -9 $$", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDOUT, .env_add = env, .cwd = "/tmp" };
	struct proc_child c;
	struct ops_error err = OPS_ERROR_INIT;
	char buf[128];
	size_t got = 0;
	ssize_t n;
	(void)state;

	assert_int_equal(proc_start(argv, &o, &c, &err), 0);
	while ((n = read(c.out_fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	assert_int_equal(proc_finish(&c, 5000, NULL, &err), 0);
	assert_string_equal(buf, "shop\n/tmp\n");

	assert_int_equal(proc_start(killer, NULL, &c, &err), 0);
	assert_int_equal(proc_finish(&c, 5000, NULL, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "'sh' was killed by signal 9 (Killed)");
	assert_no_children();
	ops_error_release(&err);
}

/* Two streams open at once in one thread: SIGPIPE stays blocked until the
 * last one is finished, whatever the order. */
static void test_nested_streams_keep_sigpipe_blocked(void **state)
{
	const char *argv[] = { "sh", "-c", "exit 0", NULL };
	struct proc_stream_opts o = { .pipes = PROC_PIPE_STDIN };
	struct proc_child a, b;
	struct ops_error err = OPS_ERROR_INIT;
	unsigned char *data = xcalloc(1, 1 << 20);
	sigset_t mask;
	(void)state;

	assert_int_equal(proc_start(argv, &o, &a, &err), 0);
	assert_int_equal(proc_start(argv, &o, &b, &err), 0);
	assert_int_equal(proc_finish(&a, 5000, NULL, &err), 0);
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	assert_true(sigismember(&mask, SIGPIPE));
	assert_int_equal(write_all_fd(b.in_fd, data, 1 << 20), -EPIPE);
	assert_int_equal(proc_finish(&b, 5000, NULL, &err), 0);
	assert_sigpipe_clean();
	assert_no_children();
	free(data);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stdout_stream_50mb),
		cmocka_unit_test(test_stdin_stream_50mb),
		cmocka_unit_test(test_both_pipes_through_cat),
		cmocka_unit_test(test_child_exits_early_while_we_write),
		cmocka_unit_test(test_chatty_stderr_does_not_deadlock),
		cmocka_unit_test(test_finish_deadline_kills),
		cmocka_unit_test(test_run_deadline_escalates),
		cmocka_unit_test(test_wait_exit),
		cmocka_unit_test(test_kill_aborts),
		cmocka_unit_test(test_start_failures),
		cmocka_unit_test(test_env_cwd_and_signal_exit),
		cmocka_unit_test(test_nested_streams_keep_sigpipe_blocked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
