/* Unit tests for lib/system/fs: atomic writes, appends, reads, mkdir -p and
 * flock(2) locks held by other processes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/exitcode.h"
#include "system/fs.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup_dir(void **state)
{
	char *dir = xstrdup("/tmp/opsctl-test-fs-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

static int teardown_dir(void **state)
{
	nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	return 0;
}

static void write_plain(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	assert_int_equal(fs_read_file(path, &sb, 0, &err), 0);
	ops_error_release(&err);
	return strbuf_detach(&sb, NULL);
}

/* Number of directory entries other than . and .. (no temp files left). */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_write_atomic_new_file(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/new.conf", (char *)*state);
	char *path2 = xstrfmt("%s/secret", (char *)*state);
	char *text;
	struct stat st;

	assert_int_equal(fs_write_atomic(path, "a=1\n", 4, -1, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	text = slurp(path);
	assert_string_equal(text, "a=1\n");
	free(text);

	assert_int_equal(fs_write_atomic(path, "", 0, 0600, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644); /* existing file keeps its mode */
	assert_int_equal(st.st_size, 0);

	assert_int_equal(fs_write_atomic(path2, "s", 1, 0600, &err), 0);
	assert_int_equal(stat(path2, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(count_entries(*state), 2);
	free(path2);
	free(path);
	ops_error_release(&err);
}

static void test_write_atomic_keeps_mode_and_owner(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/app.env", (char *)*state);
	char *text;
	struct stat st;
	int root = geteuid() == 0;

	write_plain(path, "OLD=1\n");
	assert_int_equal(chmod(path, 0640), 0);
	if (root)
		assert_int_equal(chown(path, 4321, 4322), 0);

	assert_int_equal(fs_write_atomic(path, "NEW=2\n", 6, 0600, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	if (root) {
		assert_int_equal(st.st_uid, 4321);
		assert_int_equal(st.st_gid, 4322);
	}
	text = slurp(path);
	assert_string_equal(text, "NEW=2\n");
	free(text);
	assert_int_equal(count_entries(*state), 1);
	free(path);
	ops_error_release(&err);
}

static void test_write_atomic_missing_dir(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/no/such/dir/f", (char *)*state);
	char *want = xstrfmt("cannot write '%s': no such file or directory", path);

	assert_int_equal(fs_write_atomic(path, "x", 1, -1, &err), -OPS_EXIT_FAILED);
	assert_int_equal(err.code, OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, want);
	assert_int_equal(count_entries(*state), 0);
	free(want);
	free(path);
	ops_error_release(&err);
}

/* A write that fails half-way (file size limit, like a full disk) leaves the
 * original as it was and no temporary file behind. Works as root too. */
static void test_write_atomic_failure_keeps_original(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/keep.env", (char *)*state);
	char *want = xstrfmt("cannot write '%s': file too large", path);
	char big[4096], *text;
	struct rlimit old, small;
	void (*old_handler)(int);
	int ret;

	write_plain(path, "ORIGINAL=1\n");
	memset(big, 'x', sizeof(big));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 100;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	ret = fs_write_atomic(path, big, sizeof(big), -1, &err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);

	assert_int_equal(ret, -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, want);
	text = slurp(path);
	assert_string_equal(text, "ORIGINAL=1\n");
	free(text);
	assert_int_equal(count_entries(*state), 1);
	free(want);
	free(path);
	ops_error_release(&err);
}

static void test_write_atomic_onto_directory(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/sub", (char *)*state);
	char *want = xstrfmt("cannot write '%s': not a regular file", path);

	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(fs_write_atomic(path, "x", 1, -1, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, want);
	assert_int_equal(count_entries(*state), 1);
	free(want);
	free(path);
	ops_error_release(&err);
}

static void test_append_line(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/log.jsonl", (char *)*state);
	char *text;
	struct stat st;

	assert_int_equal(fs_append_line(path, "{\"a\":1}", 0600, &err), 0);
	assert_int_equal(fs_append_line(path, "{\"b\":2}\n", 0600, &err), 0);
	text = slurp(path);
	assert_string_equal(text, "{\"a\":1}\n{\"b\":2}\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(text);
	free(path);
	ops_error_release(&err);
}

/* What a write killed between mkostemp and rename leaves goes; files that
 * only look alike stay. */
static void test_remove_stale_tmp(void **state)
{
	const char *dir = *state;
	char *path = xstrfmt("%s/journal.json", dir);
	char *stale = xstrfmt("%s/journal.json.tmp-AbC123", dir);
	char *other = xstrfmt("%s/journal.json.tmp-AbC1234", dir);
	char *unrelated = xstrfmt("%s/other.json.tmp-AbC123", dir);
	struct stat st;

	write_plain(path, "{}");
	write_plain(stale, "{\"secret\": \"half written");
	write_plain(other, "x");
	write_plain(unrelated, "x");
	assert_int_equal(fs_remove_stale_tmp(path, 1), 1);
	assert_int_not_equal(stat(stale, &st), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(stat(other, &st), 0);
	assert_int_equal(stat(unrelated, &st), 0);
	assert_int_equal(fs_remove_stale_tmp(path, 0), 0);
	free(path);
	free(stale);
	free(other);
	free(unrelated);
}

/* A line torn by a writer killed mid-write is cut off before the next one. */
static void test_append_line_after_torn(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/history.jsonl", (char *)*state);
	char *text;

	write_plain(path, "{\"a\":1}\n{\"b\":");
	assert_int_equal(fs_append_line(path, "{\"c\":3}", 0600, &err), 0);
	text = slurp(path);
	assert_string_equal(text, "{\"a\":1}\n{\"c\":3}\n");
	free(text);
	write_plain(path, "{\"torn\":");
	assert_int_equal(fs_append_line(path, "{\"d\":4}", 0600, &err), 0);
	text = slurp(path);
	assert_string_equal(text, "{\"d\":4}\n");
	free(text);
	free(path);
	ops_error_release(&err);
}

static void test_read_file_limit(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	char *path = xstrfmt("%s/f", (char *)*state);
	char *want = xstrfmt("file '%s' is larger than 4 bytes", path);

	write_plain(path, "hello");
	strbuf_addstr(&sb, "keep:");
	assert_int_equal(fs_read_file(path, &sb, 4, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, want);
	assert_string_equal(sb.buf, "keep:");
	assert_int_equal(fs_read_file(path, &sb, 5, &err), 0);
	assert_string_equal(sb.buf, "keep:hello");
	free(want);
	free(path);
	strbuf_release(&sb);
	ops_error_release(&err);
}

static void test_mkdir_p(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *deep = xstrfmt("%s/a//b/c/", (char *)*state);
	char *c = xstrfmt("%s/a/b/c", (char *)*state);
	char *file = xstrfmt("%s/a/file", (char *)*state);
	char *under = xstrfmt("%s/a/file/x", (char *)*state);
	char *want = xstrfmt("cannot create directory '%s': not a directory", file);
	struct stat st;

	assert_int_equal(fs_mkdir_p(deep, 0700, &err), 0);
	assert_int_equal(stat(c, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(fs_mkdir_p(c, 0700, &err), 0); /* exists: fine */
	assert_true(fs_exists(c));

	write_plain(file, "");
	assert_int_equal(fs_mkdir_p(under, 0700, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, want);
	assert_int_equal(fs_fsync_dir(c, &err), 0);
	free(deep);
	free(c);
	free(file);
	free(under);
	free(want);
	ops_error_release(&err);
}

/* Forks a child that takes the lock and holds it for hold_ms (-1: until
 * killed). Returns its pid once it holds the lock. */
static pid_t hold_lock_in_child(const char *state_dir, int64_t hold_ms)
{
	int p[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fs_lock lock = FS_LOCK_INIT;
		struct ops_error err = OPS_ERROR_INIT;
		close(p[0]);
		if (fs_lock_acquire(&lock, state_dir, "backup", "opsctl backup", 0, &err))
			_exit(1);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		alarm(30); /* never outlive a failed test */
		if (hold_ms < 0)
			for (;;)
				pause();
		usleep((useconds_t)hold_ms * 1000);
		fs_lock_release(&lock);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

static void test_lock_held_by_child(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct fs_lock lock = FS_LOCK_INIT;
	char *state_dir = xstrfmt("%s/state", (char *)*state);
	char *lock_path = xstrfmt("%s/locks/backup.lock", state_dir);
	char host[HOST_NAME_MAX + 1] = "";
	char *note_text, *want;
	cJSON *note;
	pid_t pid;
	struct stat st;

	gethostname(host, sizeof(host) - 1);
	pid = hold_lock_in_child(state_dir, -1);

	note_text = slurp(lock_path);
	note = cJSON_Parse(note_text);
	assert_non_null(note);
	assert_int_equal(cJSON_GetObjectItem(note, "pid")->valuedouble, pid);
	assert_string_equal(cJSON_GetObjectItem(note, "command")->valuestring, "opsctl backup");
	assert_string_equal(cJSON_GetObjectItem(note, "host")->valuestring, host);
	assert_true(cJSON_IsString(cJSON_GetObjectItem(note, "user")));
	assert_int_equal(strlen(cJSON_GetObjectItem(note, "since")->valuestring), 20);
	want = xstrfmt("lock 'backup' is held by pid %d (opsctl backup) on %s since %s", (int)pid,
		       host, cJSON_GetObjectItem(note, "since")->valuestring);

	assert_int_equal(fs_lock_acquire(&lock, state_dir, "backup", "opsctl deploy", 0, &err),
			 -OPS_EXIT_LOCKED);
	assert_int_equal(err.code, OPS_EXIT_LOCKED);
	assert_string_equal(err.msg.buf, want);
	assert_string_equal(err.hint.buf,
			    "wait for it to finish, or queue behind it with --lock-wait DURATION");
	assert_int_equal(lock.fd, -1);
	assert_int_equal(stat(state_dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	/* A different lock name is independent. */
	assert_int_equal(fs_lock_acquire(&lock, state_dir, "deploy", "opsctl deploy", 0, &err), 0);
	fs_lock_release(&lock);

	/* The kernel frees the lock when the holder dies: never stale. */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	ops_error_clear(&err);
	assert_int_equal(fs_lock_acquire(&lock, state_dir, "backup", "opsctl deploy", 0, &err), 0);
	assert_true(lock.fd >= 0);
	cJSON_Delete(note);
	free(note_text);
	note_text = slurp(lock_path);
	note = cJSON_Parse(note_text);
	assert_int_equal(cJSON_GetObjectItem(note, "pid")->valuedouble, getpid());
	assert_string_equal(cJSON_GetObjectItem(note, "command")->valuestring, "opsctl deploy");
	fs_lock_release(&lock);
	assert_int_equal(lock.fd, -1);
	assert_true(fs_exists(lock_path)); /* released, not deleted */

	cJSON_Delete(note);
	free(note_text);
	free(want);
	free(lock_path);
	free(state_dir);
	ops_error_release(&err);
}

static void test_lock_wait_polls(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct fs_lock lock = FS_LOCK_INIT;
	char *state_dir = xstrfmt("%s/state", (char *)*state);
	int64_t t0, took;
	pid_t pid;

	/* Gives up after wait_ms while the holder keeps it. */
	pid = hold_lock_in_child(state_dir, 1500);
	t0 = now_ms();
	assert_int_equal(fs_lock_acquire(&lock, state_dir, "backup", "opsctl backup", 250, &err),
			 -OPS_EXIT_LOCKED);
	took = now_ms() - t0;
	assert_true(took >= 240 && took < 1000);

	/* Queues behind the holder and gets it once it is released. */
	assert_int_equal(fs_lock_acquire(&lock, state_dir, "backup", "opsctl backup", 10000, &err),
			 0);
	took = now_ms() - t0;
	assert_true(took >= 1400 && took < 3000);
	fs_lock_release(&lock);
	assert_int_equal(waitpid(pid, NULL, 0), pid);

	/* wait forever (< 0) returns at once when free. */
	assert_int_equal(fs_lock_acquire(&lock, state_dir, "backup", NULL, -1, &err), 0);
	fs_lock_release(&lock);
	free(state_dir);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_atomic_new_file, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_atomic_keeps_mode_and_owner, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_atomic_missing_dir, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_atomic_failure_keeps_original, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_atomic_onto_directory, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_append_line, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_remove_stale_tmp, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_append_line_after_torn, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_read_file_limit, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_mkdir_p, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_lock_held_by_child, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_lock_wait_polls, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
