/* Unit tests for lib/engines/history: the JSON line, its file and the
 * fingerprint format. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/exitcode.h"
#include "engines/history.h"
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
	char *dir = xstrdup("/tmp/opsctl-test-history-XXXXXX");
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

static const char *str_field(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static double num_field(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static void test_append_lines(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf text = STRBUF_INIT;
	char *state_dir = xstrfmt("%s/var/lib/opsctl", (char *)*state);
	char *path = xstrfmt("%s/history.jsonl", state_dir);
	char host[HOST_NAME_MAX + 1] = "";
	struct passwd *pw = getpwuid(geteuid());
	cJSON *fields = cJSON_CreateObject(), *line;
	char *nl, *first;
	struct stat st;
	int n;
	const char *t;

	gethostname(host, sizeof(host) - 1);
	cJSON_AddStringToObject(fields, "backup_id", "20261121T210000Z");
	cJSON_AddStringToObject(fields, "note", "two\nlines");
	cJSON_AddStringToObject(fields, "outcome", "forged"); /* standard field wins */
	cJSON_AddNumberToObject(fields, "duration_ms", 1234);
	assert_int_equal(history_append(state_dir, "backup", OPS_EXIT_OK, fields, &err), 0);
	assert_int_equal(history_append(state_dir, "deploy", OPS_EXIT_ROLLED_BACK, NULL, &err), 0);

	assert_int_equal(fs_read_file(path, &text, 0, &err), 0);
	for (n = 0, nl = text.buf; (nl = strchr(nl, '\n')); nl++)
		n++;
	assert_int_equal(n, 2);

	nl = strchr(text.buf, '\n');
	first = xstrndup(text.buf, (size_t)(nl - text.buf));
	line = cJSON_Parse(first);
	assert_non_null(line);
	t = str_field(line, "time");
	assert_int_equal(strlen(t), 20);
	assert_true(t[4] == '-' && t[10] == 'T' && t[13] == ':' && t[19] == 'Z');
	assert_string_equal(str_field(line, "user"), pw->pw_name);
	assert_string_equal(str_field(line, "host"), host);
	assert_int_equal(num_field(line, "pid"), getpid());
	assert_string_equal(str_field(line, "command"), "backup");
	assert_string_equal(str_field(line, "outcome"), "ok");
	assert_int_equal(num_field(line, "exit"), 0);
	assert_string_equal(str_field(line, "backup_id"), "20261121T210000Z");
	assert_string_equal(str_field(line, "note"), "two\nlines");
	assert_int_equal(num_field(line, "duration_ms"), 1234);
	assert_int_equal(cJSON_GetArraySize(line), 10); /* the forged outcome was dropped */
	/* Standard fields come first. */
	assert_string_equal(line->child->string, "time");
	cJSON_Delete(line);
	free(first);

	line = cJSON_Parse(nl + 1);
	assert_non_null(line);
	assert_string_equal(str_field(line, "command"), "deploy");
	assert_string_equal(str_field(line, "outcome"), "rolled-back");
	assert_int_equal(num_field(line, "exit"), 7);
	cJSON_Delete(line);

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(state_dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	strbuf_release(&text);
	free(path);
	free(state_dir);
	ops_error_release(&err);
}

static void test_append_error(void **state)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *file = xstrfmt("%s/file", (char *)*state);
	char *state_dir = xstrfmt("%s/file/state", (char *)*state);
	char *want = xstrfmt("cannot create directory '%s': not a directory", file);
	FILE *f = fopen(file, "w");
	cJSON *fields = cJSON_CreateObject();

	assert_non_null(f);
	fclose(f);
	cJSON_AddStringToObject(fields, "x", "y");
	/* fields is freed on failure too (ASan would report the leak). */
	assert_int_equal(history_append(state_dir, "backup", OPS_EXIT_FAILED, fields, &err),
			 -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, want);
	free(want);
	free(state_dir);
	free(file);
	ops_error_release(&err);
}

static void test_fingerprint(void **state)
{
	char fp[20];
	(void)state;

	history_fingerprint("abc", 3, fp);
	assert_string_equal(fp, "sha256:ba7816bf8f01");
	history_fingerprint("", 0, fp);
	assert_string_equal(fp, "sha256:e3b0c44298fc");
	assert_int_equal(strlen(fp), 19);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_lines, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_append_error, setup_dir, teardown_dir),
		cmocka_unit_test(test_fingerprint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
