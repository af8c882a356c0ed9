/* Unit tests for lib/system/proc: argv execution, captured output, exit
 * status, deadlines, stdin, environment, and no zombies left behind. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "base/exitcode.h"
#include "system/proc.h"

/* Every child we started has been waited for. */
static void assert_no_children(void)
{
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_captures_stdout_stderr_and_status(void **state)
{
	const char *argv[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
	struct strbuf out = STRBUF_INIT, errout = STRBUF_INIT;
	struct proc_opts opts = { .out = &out, .errout = &errout };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.status, 3);
	assert_int_equal(res.timed_out, 0);
	assert_string_equal(out.buf, "out\n");
	assert_string_equal(errout.buf, "err\n");
	assert_no_children();

	/* No capture at all: output goes to /dev/null, status still reported. */
	assert_int_equal(proc_run(argv, NULL, &res, &err), 0);
	assert_int_equal(res.status, 3);
	assert_no_children();
	strbuf_release(&out);
	strbuf_release(&errout);
	ops_error_release(&err);
}

static void test_missing_program(void **state)
{
	const char *argv[] = { "opsctl-no-such-program", "--version", NULL };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(proc_run(argv, NULL, &res, &err), -OPS_EXIT_FAILED);
	assert_int_equal(err.code, OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf,
			    "cannot run 'opsctl-no-such-program': no such file or directory");
	assert_no_children();

	assert_int_equal(proc_run_checked(argv, NULL, NULL, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf,
			    "cannot run 'opsctl-no-such-program': no such file or directory");
	assert_no_children();
	ops_error_release(&err);
}

static void test_cwd(void **state)
{
	const char *argv[] = { "pwd", NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts opts = { .out = &out, .cwd = "/tmp" };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_string_equal(out.buf, "/tmp\n");
	opts.cwd = "/nonexistent-opsctl-dir";
	assert_int_equal(proc_run(argv, &opts, &res, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf,
			    "cannot run 'pwd' in '/nonexistent-opsctl-dir': no such file or directory");
	assert_no_children();
	strbuf_release(&out);
	ops_error_release(&err);
}

static void test_timeout_kills_child(void **state)
{
	const char *argv[] = { "sleep", "10", NULL };
	struct proc_opts opts = { .timeout_ms = 300 };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(proc_run(argv, &opts, &res, &err), -OPS_EXIT_UNREACHABLE);
	assert_int_equal(err.code, OPS_EXIT_UNREACHABLE);
	assert_string_equal(err.msg.buf, "'sleep' did not finish within 300ms");
	assert_int_equal(res.timed_out, 1);
	assert_int_equal(res.exited, 0);
	assert_int_equal(res.status, SIGTERM);
	assert_true(res.elapsed_ms >= 290 && res.elapsed_ms < 1500);
	assert_no_children();
	ops_error_release(&err);
}

/* A child that ignores SIGTERM gets SIGKILL 2 s later; its grandchild keeps
 * the pipes open, which must not keep us waiting. */
static void test_timeout_escalates_to_sigkill(void **state)
{
	const char *argv[] = { "sh", "-c", "trap '' TERM; sleep 4; echo late", NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts opts = { .timeout_ms = 1000, .out = &out };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(proc_run(argv, &opts, &res, &err), -OPS_EXIT_UNREACHABLE);
	assert_string_equal(err.msg.buf, "'sh' did not finish within 1s");
	assert_int_equal(res.exited, 0);
	assert_int_equal(res.status, SIGKILL);
	assert_true(res.elapsed_ms >= 2900 && res.elapsed_ms < 3800);
	assert_string_equal(out.buf, "");
	assert_no_children();
	strbuf_release(&out);
	ops_error_release(&err);
}

static void test_output_capped(void **state)
{
	const char *argv[] = { "head", "-c", "3000000", "/dev/zero", NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts opts = { .out = &out, .capture_max = 1000 };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	/* The rest is drained, so the child finishes instead of blocking. */
	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.status, 0);
	assert_int_equal(out.len, 1000);

	strbuf_reset(&out);
	opts.capture_max = 0;
	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(out.len, 1024 * 1024);
	assert_no_children();
	strbuf_release(&out);
	ops_error_release(&err);
}

static void test_stdin_through_cat(void **state)
{
	const char *argv[] = { "cat", NULL };
	size_t len = 300000, i; /* larger than a pipe buffer both ways */
	char *data = malloc(len);
	struct strbuf out = STRBUF_INIT;
	struct proc_opts opts = { .out = &out };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	for (i = 0; i < len; i++)
		data[i] = (char)('a' + i % 26);
	opts.stdin_data = data;
	opts.stdin_len = len;
	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(res.status, 0);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.buf, data, len);

	/* Empty stdin data: EOF at once. */
	strbuf_reset(&out);
	opts.stdin_len = 0;
	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(out.len, 0);

	/* Default stdin is /dev/null, not ours. */
	opts.stdin_data = NULL;
	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(out.len, 0);
	assert_no_children();
	free(data);
	strbuf_release(&out);
	ops_error_release(&err);
}

/* A child that exits without reading its stdin must not deadlock or kill us
 * with SIGPIPE. */
static void test_stdin_not_read(void **state)
{
	const char *argv[] = { "true", NULL };
	size_t len = 4 * 1024 * 1024;
	char *data = calloc(1, len);
	struct proc_opts opts = { .stdin_data = data, .stdin_len = len, .timeout_ms = 10000 };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	sigset_t pending;
	(void)state;

	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.status, 0);
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGPIPE));
	assert_no_children();
	free(data);
	ops_error_release(&err);
}

static void test_env_add(void **state)
{
	const char *env[] = { "OPSCTL_TEST_X=hello world", "OPSCTL_TEST_Y=new", NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts opts = { .out = &out, .env_add = env };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	setenv("OPSCTL_TEST_Y", "old", 1);
	assert_int_equal(proc_run_shell("echo \"$OPSCTL_TEST_X\"; env | grep -c '^OPSCTL_TEST_Y='; "
					"echo $OPSCTL_TEST_Y",
					&opts, &res, &err),
			 0);
	assert_string_equal(out.buf, "hello world\n1\nnew\n");
	assert_string_equal(getenv("OPSCTL_TEST_Y"), "old"); /* ours is untouched */
	assert_null(getenv("OPSCTL_TEST_X"));
	unsetenv("OPSCTL_TEST_Y");
	assert_no_children();
	strbuf_release(&out);
	ops_error_release(&err);
}

static void test_checked_messages(void **state)
{
	const char *fails[] = { "sh", "-c",
				"echo first >&2; echo 'pg_dump: error: boom' >&2; echo >&2; exit 1",
				NULL };
	const char *killed[] = { "sh", "-c", "kill -9 $$", NULL };
	const char *ok[] = { "true", NULL };
	struct strbuf errout = STRBUF_INIT;
	struct proc_opts opts = { .errout = &errout };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(proc_run_checked(ok, NULL, &res, &err), 0);
	assert_int_equal(proc_run_checked(fails, NULL, &res, &err), -OPS_EXIT_FAILED);
	assert_int_equal(err.code, OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "'sh' failed with exit status 1: pg_dump: error: boom");
	/* The caller's own capture still gets all of it. */
	assert_int_equal(proc_run_checked(fails, &opts, NULL, &err), -OPS_EXIT_FAILED);
	assert_string_equal(errout.buf, "first\npg_dump: error: boom\n\n");
	assert_string_equal(err.msg.buf, "'sh' failed with exit status 1: pg_dump: error: boom");

	assert_int_equal(proc_run_checked(killed, NULL, &res, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "'sh' was killed by signal 9 (Killed)");

	assert_int_equal(proc_run_shell_checked("exit 2", NULL, &res, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "'exit 2' failed with exit status 2");
	assert_int_equal(proc_run_shell_checked("false # a comment that makes the line long", NULL,
						&res, &err),
			 -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "'false' failed with exit status 1");
	assert_no_children();
	strbuf_release(&errout);
	ops_error_release(&err);
}

static void test_inherit_stdio(void **state)
{
	char path[] = "/tmp/opsctl-test-proc-XXXXXX";
	const char *argv[] = { "echo", "inherited", NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts opts = { .inherit_stdio = 1, .out = &out };
	struct proc_result res;
	struct ops_error err = OPS_ERROR_INIT;
	char buf[64] = "";
	int fd = mkstemp(path), saved;
	(void)state;

	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(1);
	dup2(fd, 1);
	assert_int_equal(proc_run(argv, &opts, &res, &err), 0);
	dup2(saved, 1);
	close(saved);
	assert_true(pread(fd, buf, sizeof(buf) - 1, 0) > 0);
	assert_string_equal(buf, "inherited\n");
	assert_string_equal(out.buf, "");
	close(fd);
	unlink(path);
	strbuf_release(&out);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captures_stdout_stderr_and_status),
		cmocka_unit_test(test_missing_program),
		cmocka_unit_test(test_cwd),
		cmocka_unit_test(test_timeout_kills_child),
		cmocka_unit_test(test_timeout_escalates_to_sigkill),
		cmocka_unit_test(test_output_capped),
		cmocka_unit_test(test_stdin_through_cat),
		cmocka_unit_test(test_stdin_not_read),
		cmocka_unit_test(test_env_add),
		cmocka_unit_test(test_checked_messages),
		cmocka_unit_test(test_inherit_stdio),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
