/* Unit tests for the backup engine's pure parts: the manifest and retention. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/exitcode.h"
#include "engines/backup.h"

static const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void fill_manifest(struct bk_manifest *m, const char *id, time_t t)
{
	memset(m, 0, sizeof(*m));
	m->id = xstrdup(id);
	m->app = xstrdup("app");
	m->tool = xstrdup("opsctl test");
	m->database = xstrdup("ai_chat");
	m->server_version = xstrdup("15.20");
	m->format = xstrdup("custom");
	m->compression = xstrdup("zstd");
	m->started_at = t;
	m->finished_at = t + 5;
	m->duration_ms = 5000;
	m->dump_bytes = 1000;
	m->nfiles = 1;
	m->files = xcalloc(1, sizeof(*m->files));
	m->files[0].name = xstrdup("db.dump.zst");
	m->files[0].role = xstrdup("database");
	m->files[0].size = 123;
	memcpy(m->files[0].sha256, sha, 65);
	m->ntables = 1;
	m->tables = xcalloc(1, sizeof(*m->tables));
	m->tables[0].schema = xstrdup("public");
	m->tables[0].name = xstrdup("users");
	m->tables[0].rows = 42;
}

static void test_manifest_round_trip(void **state)
{
	struct bk_manifest m, back;
	struct ops_error err = OPS_ERROR_INIT;
	char *json;
	(void)state;

	fill_manifest(&m, "app-20261121T020000Z", 1795226400);
	json = bk_manifest_json(&m);
	assert_int_equal(bk_manifest_parse(json, strlen(json), &back, &err), 0);
	assert_string_equal(back.id, "app-20261121T020000Z");
	assert_int_equal(back.started_at, 1795226400);
	assert_int_equal(back.finished_at, 1795226405);
	assert_int_equal(back.nfiles, 1);
	assert_string_equal(back.files[0].sha256, sha);
	assert_int_equal(back.files[0].size, 123);
	assert_int_equal(back.ntables, 1);
	assert_int_equal(back.tables[0].rows, 42);
	assert_int_equal(bk_manifest_size(&back), 123);
	assert_non_null(bk_manifest_file(&back, "database"));
	assert_null(bk_manifest_file(&back, "paths"));
	bk_manifest_release(&back);
	bk_manifest_release(&m);
	free(json);
	ops_error_release(&err);
}

static void expect_bad(const char *text, const char *msg)
{
	struct bk_manifest m;
	struct ops_error err = OPS_ERROR_INIT;
	assert_int_equal(bk_manifest_parse(text, strlen(text), &m, &err), -OPS_EXIT_INTEGRITY);
	assert_string_equal(err.msg.buf, msg);
	ops_error_release(&err);
}

static void test_manifest_refuses(void **state)
{
	struct bk_manifest m;
	char *json, *p;
	(void)state;
	expect_bad("[]", "manifest is not a JSON object");
	expect_bad("{\"id\": \"x\"}", "manifest has no 'app'");
	/* a file name that would leave the set's directory */
	fill_manifest(&m, "app-1", 1795226400);
	free(m.files[0].name);
	m.files[0].name = xstrdup("../../etc/passwd");
	json = bk_manifest_json(&m);
	expect_bad(json, "manifest has an invalid file entry");
	free(json);
	/* a checksum that is not 64 hex digits */
	free(m.files[0].name);
	m.files[0].name = xstrdup("db.dump.zst");
	json = bk_manifest_json(&m);
	p = strstr(json, sha);
	p[3] = 'Z';
	expect_bad(json, "manifest has an invalid file entry");
	free(json);
	bk_manifest_release(&m);
}

/* Found by tests/fuzz/fuzz_manifest (regress/manifest/): numbers beyond
 * 2^53 or inf were cast to the integer fields (undefined behaviour), and
 * sizes above 10^15 were written back rounded. */
static void replace_number(char **json, const char *what, const char *with)
{
	char *at = strstr(*json, what), *end, *out;

	assert_non_null(at);
	end = at + strlen(what);
	out = xstrfmt("%.*s%s%s", (int)(at - *json), *json, with, end);
	free(*json);
	*json = out;
}

static void test_manifest_huge_numbers(void **state)
{
	struct bk_manifest m, back;
	struct ops_error err = OPS_ERROR_INIT;
	char *json;
	(void)state;

	fill_manifest(&m, "app-1", 1795226400);
	json = bk_manifest_json(&m);
	replace_number(&json, "\"size\":\t123", "\"size\":\t1e400");
	expect_bad(json, "manifest has an invalid file entry");
	free(json);
	json = bk_manifest_json(&m);
	replace_number(&json, "\"rows\":\t42", "\"rows\":\t1e19");
	expect_bad(json, "manifest has an invalid table entry");
	free(json);
	/* an optional figure out of range reads as absent */
	json = bk_manifest_json(&m);
	replace_number(&json, "\"duration_ms\":\t5000", "\"duration_ms\":\t1e300");
	assert_int_equal(bk_manifest_parse(json, strlen(json), &back, &err), 0);
	assert_int_equal(back.duration_ms, 0);
	bk_manifest_release(&back);
	free(json);
	/* 2^53 itself is still a size, and is written back with all its digits
	 * (cJSON's own printing made it 9.00719925474099e+15) */
	json = bk_manifest_json(&m);
	replace_number(&json, "\"size\":\t123", "\"size\":\t9007199254740992");
	assert_int_equal(bk_manifest_parse(json, strlen(json), &back, &err), 0);
	assert_true(back.files[0].size == 9007199254740992ULL);
	free(json);
	json = bk_manifest_json(&back);
	assert_non_null(strstr(json, "\"size\":\t9007199254740992,"));
	bk_manifest_release(&back);
	assert_int_equal(bk_manifest_parse(json, strlen(json), &back, &err), 0);
	assert_true(back.files[0].size == 9007199254740992ULL);
	bk_manifest_release(&back);
	free(json);
	bk_manifest_release(&m);
	ops_error_release(&err);
}

/* Found by fuzz_manifest too: a number of a source's details that cJSON
 * cannot write (1e400 is inf, written as null) came back changed. */
static void test_manifest_sources_inf(void **state)
{
	static const char text[] =
		"{\"id\":\"app-1\",\"app\":\"app\",\"tool\":\"opsctl\",\"database\":\"app\","
		"\"server_version\":\"15\",\"format\":\"custom\",\"compression\":\"zstd\","
		"\"started_at\":\"2026-11-21T22:39:00Z\",\"finished_at\":\"2026-11-21T22:39:00Z\","
		"\"files\":[{\"name\":\"sources/cache.rdb\",\"role\":\"source\",\"size\":9,"
		"\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}],"
		"\"sources\":[{\"name\":\"cache\",\"type\":\"redis\",\"file\":\"sources/cache.rdb\",\"size\":9,"
		"\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
		"\"details\":{\"keys\":KEYS}}]}";
	struct bk_manifest m;
	struct ops_error err = OPS_ERROR_INIT;
	char *json;
	(void)state;

	json = xstrdup(text);
	replace_number(&json, "KEYS", "121");
	assert_int_equal(bk_manifest_parse(json, strlen(json), &m, &err), 0);
	bk_manifest_release(&m);
	free(json);
	json = xstrdup(text);
	replace_number(&json, "KEYS", "121e400");
	expect_bad(json, "manifest has an invalid 'sources'");
	free(json);
	ops_error_release(&err);
}

/* A list of sets at the given UTC times, newest first. */
static void make_list(struct bk_list *l, const char *const *times, size_t n)
{
	memset(l, 0, sizeof(*l));
	l->items = xcalloc(n, sizeof(*l->items));
	for (size_t i = 0; i < n; i++) {
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		assert_non_null(strptime(times[i], "%Y-%m-%d %H:%M", &tm));
		fill_manifest(&l->items[i].m, times[i], timegm(&tm));
		l->items[i].id = xstrdup(times[i]);
	}
	l->nr = n;
}

static void test_retention(void **state)
{
	/* newest first, as bk_list_read orders them */
	static const char *const times[] = {
		"2026-11-21 02:00", "2026-11-20 14:00", "2026-11-20 02:00", "2026-11-19 02:00",
		"2026-11-16 02:00", /* Monday of week 47 */
		"2026-11-10 02:00", "2026-11-03 02:00", "2026-10-30 02:00", "2026-10-01 02:00",
		"2026-09-15 02:00", "2026-08-15 02:00",
	};
	struct bk_list l;
	int keep[11];
	const char *why[11];
	struct bk_policy p = { 2, 3, 2, 3 };
	(void)state;

	make_list(&l, times, 11);
	bk_retention(&l, &p, keep, why);
	/* last 2 */
	assert_true(keep[0] && keep[1]);
	assert_string_equal(why[0], "last");
	/* daily 3: 11-21 (kept), 11-20 14:00 (kept), 11-19 */
	assert_false(keep[2]);
	assert_true(keep[3]);
	assert_string_equal(why[3], "daily");
	/* weekly 2: week 47 (11-21, kept), week 46 (11-10) */
	assert_false(keep[4]);
	assert_true(keep[5]);
	assert_string_equal(why[5], "weekly");
	/* monthly 3: November (11-21), October (10-30), September (09-15) */
	assert_false(keep[6]);
	assert_true(keep[7]);
	assert_string_equal(why[7], "monthly");
	assert_false(keep[8]);
	assert_true(keep[9]);
	assert_false(keep[10]);
	bk_list_release(&l);
}

static void test_retention_never_empty(void **state)
{
	static const char *const times[] = { "2026-11-21 02:00", "2026-11-20 02:00" };
	struct bk_list l;
	int keep[2];
	struct bk_policy none = { 0, 0, 0, 0 };
	(void)state;
	make_list(&l, times, 2);
	bk_retention(&l, &none, keep, NULL);
	assert_true(keep[0]);
	assert_false(keep[1]);
	bk_list_release(&l);
}

static void test_only_app(void **state)
{
	static const char *const times[] = { "2026-11-21 02:00", "2026-11-20 02:00", "2026-11-19 02:00" };
	struct bk_list l;
	(void)state;
	make_list(&l, times, 3);
	free(l.items[1].m.app);
	l.items[1].m.app = xstrdup("other");
	bk_list_only_app(&l, "app");
	assert_int_equal(l.nr, 2);
	assert_string_equal(l.items[0].id, "2026-11-21 02:00");
	assert_string_equal(l.items[1].id, "2026-11-19 02:00");
	bk_list_release(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_round_trip),
		cmocka_unit_test(test_manifest_refuses),
		cmocka_unit_test(test_manifest_huge_numbers),
		cmocka_unit_test(test_manifest_sources_inf),
		cmocka_unit_test(test_retention),
		cmocka_unit_test(test_retention_never_empty),
		cmocka_unit_test(test_only_app),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
