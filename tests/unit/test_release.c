/* Unit tests for lib/engines/release: ids, links switched atomically,
 * staging (complete or absent), shared links, pruning, and the journal's
 * recovery decisions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/exitcode.h"
#include "engines/release.h"
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
	char *dir = xstrdup("/tmp/opsctl-test-release-XXXXXX");
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

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(rel_is_archive("app.tar.gz"));
	assert_true(rel_is_archive("/x/app.tgz"));
	assert_true(rel_is_archive("app.tar.zst"));
	assert_true(rel_is_archive("app.zip"));
	assert_false(rel_is_archive("app.jar"));
	assert_false(rel_is_archive("server"));
	assert_true(rel_valid_id("20261121T221734Z"));
	assert_true(rel_valid_id("20261121T221734Z-2"));
	assert_false(rel_valid_id(""));
	assert_false(rel_valid_id(NULL));
	assert_false(rel_valid_id(".tmp-x"));
	assert_false(rel_valid_id("a/b"));
	assert_false(rel_valid_id(".."));
	assert_false(rel_valid_id("a b"));
	assert_true(rel_id_cmp("20261121T221734Z", "20261121T221734Z-2") < 0);
	assert_true(rel_id_cmp("20261121T221734Z-2", "20261121T221734Z-10") < 0);
	assert_true(rel_id_cmp("20261121T221734Z-10", "20261121T221735Z") < 0);
}

static cJSON *journal(const char *kind, const char *step)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "kind", kind);
	cJSON_AddStringToObject(j, "step", step);
	return j;
}

static void test_recovery_decisions(void **state)
{
	static const struct {
		const char *kind, *step;
		enum rel_recovery want;
	} cases[] = {
		{ "deploy", "lock", REL_RECOVER_DISCARD },
		{ "deploy", "preflight", REL_RECOVER_DISCARD },
		{ "deploy", "backup", REL_RECOVER_DISCARD },
		{ "deploy", "unpack", REL_RECOVER_DISCARD },
		{ "deploy", "migrate", REL_RECOVER_DISCARD },
		{ "deploy", "start", REL_RECOVER_DISCARD },
		{ "deploy", "before_switch", REL_RECOVER_DISCARD },
		{ "deploy", "switch", REL_RECOVER_ROLLBACK },
		{ "deploy", "restart", REL_RECOVER_ROLLBACK },
		{ "deploy", "after_switch", REL_RECOVER_ROLLBACK },
		{ "deploy", "gate", REL_RECOVER_ROLLBACK },
		{ "deploy", "rollback", REL_RECOVER_ROLLBACK },
		{ "deploy", "record", REL_RECOVER_FINISH },
		{ "deploy", "prune", REL_RECOVER_FINISH },
		{ "rollback", "lock", REL_RECOVER_DISCARD },
		{ "rollback", "switch", REL_RECOVER_FINISH },
		{ "rollback", "gate", REL_RECOVER_FINISH },
		{ "deploy", "nonsense", REL_RECOVER_NONE },
		{ "party", "switch", REL_RECOVER_NONE },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = journal(cases[i].kind, cases[i].step);
		assert_int_equal(rel_recovery_for(j), cases[i].want);
		cJSON_Delete(j);
	}
	assert_int_equal(rel_recovery_for(NULL), REL_RECOVER_NONE);
	for (int s = 0; s < REL_STEP_COUNT; s++)
		assert_int_equal(rel_step_parse(rel_step_name((enum rel_step)s)), s);
}

static void test_links(void **state)
{
	const char *root = *state;
	struct ops_error err = OPS_ERROR_INIT;
	char *path = xstrfmt("%s/releases/A", root), *id = NULL, buf[256];
	ssize_t n;

	assert_int_equal(rel_read_link(root, "current", &id, &err), 0);
	assert_null(id);
	assert_int_equal(fs_mkdir_p(path, 0755, &err), 0);
	assert_int_equal(rel_switch(root, "current", "A", &err), 0);
	{
		char *link = xstrfmt("%s/current", root);
		n = readlink(link, buf, sizeof(buf) - 1);
		free(link);
	}
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "releases/A");
	assert_int_equal(rel_read_link(root, "current", &id, &err), 0);
	assert_string_equal(id, "A");
	free(id);
	assert_int_equal(rel_switch(root, "slots/blue", "A", &err), 0);
	assert_int_equal(rel_read_link(root, "slots/blue", &id, &err), 0);
	assert_string_equal(id, "A");
	free(id);
	/* a link elsewhere is not a release */
	assert_int_equal(rel_switch_to(root, "current", "/etc", &err), 0);
	assert_int_equal(rel_read_link(root, "current", &id, &err), -OPS_EXIT_FAILED);
	assert_non_null(strstr(err.msg.buf, "points to '/etc', not to a release"));
	/* a real directory is never replaced */
	free(path);
	path = xstrfmt("%s/real", root);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(rel_switch(root, "real", "A", &err), -OPS_EXIT_FAILED);
	assert_non_null(strstr(err.msg.buf, "is not a symlink"));
	assert_int_equal(rel_switch(root, "current", "../x", &err), -OPS_EXIT_USAGE);
	free(path);
	ops_error_release(&err);
}

static void test_stage_single_file_and_shared(void **state)
{
	const char *root = *state;
	struct ops_error err = OPS_ERROR_INIT;
	char *artifact = xstrfmt("%s/app.jar", root), *shared = xstrfmt("%s/shared", root);
	char *p = NULL, buf[256];
	const char *names[] = { ".env", "var/logs" };
	struct rel_stage_opts o;
	struct stat st;
	ssize_t n;

	memset(&o, 0, sizeof(o));
	write_file(artifact, "jar bytes");
	chmod(artifact, 0750);
	o.shared = names;
	o.nshared = 2;
	/* a missing shared entry: nothing is left */
	assert_int_equal(rel_stage(root, "R1", artifact, &o, NULL, &err), -OPS_EXIT_CONFIG);
	assert_non_null(strstr(err.msg.buf, "shared/.env' does not exist"));
	p = xstrfmt("%s/releases/R1", root);
	assert_false(fs_exists(p));
	free(p);
	p = xstrfmt("%s/releases/.tmp-R1", root);
	assert_false(fs_exists(p));
	free(p);

	p = xstrfmt("%s/var/logs", shared);
	assert_int_equal(fs_mkdir_p(p, 0755, &err), 0);
	free(p);
	p = xstrfmt("%s/.env", shared);
	write_file(p, "X=1\n");
	free(p);
	assert_int_equal(rel_stage(root, "R1", artifact, &o, NULL, &err), 0);
	p = xstrfmt("%s/releases/R1/app.jar", root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750);
	assert_int_equal(st.st_size, 9);
	free(p);
	p = xstrfmt("%s/releases/R1/var/logs", root);
	n = readlink(p, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "../../../shared/var/logs");
	free(p);
	/* an id that exists is not overwritten */
	assert_int_equal(rel_stage(root, "R1", artifact, &o, NULL, &err), -OPS_EXIT_FAILED);
	assert_non_null(strstr(err.msg.buf, "already exists"));
	names[0] = "../escape";
	assert_int_equal(rel_stage(root, "R2", artifact, &o, NULL, &err), -OPS_EXIT_CONFIG);
	assert_non_null(strstr(err.msg.buf, "must be a relative path inside the release"));
	free(artifact);
	free(shared);
	ops_error_release(&err);
}

static void test_prune(void **state)
{
	const char *root = *state;
	struct ops_error err = OPS_ERROR_INIT;
	const char *ids[] = { "20260101T000000Z", "20260102T000000Z", "20260103T000000Z",
			      "20260103T000000Z-2", "20260103T000000Z-10", "20260104T000000Z" };
	const char *protect[] = { "20260101T000000Z", NULL };
	char **removed = NULL, **list = NULL;
	size_t nremoved = 0, n = 0;

	for (size_t i = 0; i < 6; i++) {
		char *p = xstrfmt("%s/releases/%s/sub", root, ids[i]);
		assert_int_equal(fs_mkdir_p(p, 0755, &err), 0);
		free(p);
	}
	assert_int_equal(rel_list(root, &list, &n, &err), 0);
	assert_int_equal(n, 6);
	assert_string_equal(list[3], "20260103T000000Z-2");
	assert_string_equal(list[4], "20260103T000000Z-10");
	rel_list_free(list, n);
	assert_int_equal(rel_prune(root, 2, protect, 2, &removed, &nremoved, &err), 0);
	assert_int_equal(nremoved, 3);
	assert_string_equal(removed[0], "20260103T000000Z-2");
	assert_string_equal(removed[1], "20260103T000000Z");
	assert_string_equal(removed[2], "20260102T000000Z");
	rel_list_free(removed, nremoved);
	assert_int_equal(rel_list(root, &list, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[0], "20260101T000000Z");
	assert_string_equal(list[2], "20260104T000000Z");
	rel_list_free(list, n);
	ops_error_release(&err);
}

static void test_journal(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	cJSON *j = journal("deploy", "lock"), *back = NULL;
	char *path = xstrfmt("%s/deploy/journal.json", dir);
	struct stat st;

	assert_int_equal(rel_journal_read(dir, &back, &err), 0);
	assert_null(back);
	assert_int_equal(rel_journal_step(dir, j, REL_STEP_UNPACK, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(rel_journal_read(dir, &back, &err), 0);
	assert_non_null(back);
	assert_string_equal(cJSON_GetObjectItem(back, "step")->valuestring, "unpack");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(back, "steps")), 1);
	assert_int_equal(rel_recovery_for(back), REL_RECOVER_DISCARD);
	cJSON_Delete(back);
	assert_int_equal(rel_journal_clear(dir, &err), 0);
	assert_false(fs_exists(path));
	assert_int_equal(rel_journal_clear(dir, &err), 0);
	write_file(path, "{\"kind\": \"deploy\", \"step\":");
	assert_int_equal(rel_journal_read(dir, &back, &err), -OPS_EXIT_INTEGRITY);
	assert_null(back);
	assert_non_null(strstr(err.msg.buf, "is damaged"));
	cJSON_Delete(j);
	free(path);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_recovery_decisions),
		cmocka_unit_test_setup_teardown(test_links, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_stage_single_file_and_shared, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_prune, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_journal, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
