/* libFuzzer target for backup manifests (lib/engines/backup): whatever
 * parses re-serialises (bk_manifest_json) to a manifest that parses to the
 * same fields, every one of them: the names and times, the dump's figures,
 * each file (name, role, size, sha256), each table (schema, name, rows),
 * the paths and the sources; and a second serialisation is the same text.
 * What parses also keeps the contract bk_manifest_parse documents: file
 * names without ".." or more than one '/', 64 lowercase hex digits, and
 * sources without numbers JSON cannot write (inf). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engines/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int differ(const char *a, const char *b)
{
	return !a != !b || (a && strcmp(a, b));
}

/* cJSON would write inf as null: sources with one must not parse */
static int finite_numbers(const cJSON *item)
{
	const cJSON *c;

	if (cJSON_IsNumber(item))
		return isfinite(item->valuedouble);
	cJSON_ArrayForEach(c, item)
		if (!finite_numbers(c))
			return 0;
	return 1;
}

static void check_contract(const struct bk_manifest *m)
{
	if (!m->id || !m->app || !m->tool || !m->database || !m->server_version || !m->format ||
	    !m->compression || !m->nfiles || !m->files)
		abort();
	if (!m->id[0] || strchr(m->id, '/') || !strcmp(m->id, ".") || !strcmp(m->id, ".."))
		abort();
	if (strcmp(m->format, "directory") && strcmp(m->format, "custom") && strcmp(m->format, "plain"))
		abort();
	if (m->duration_ms < 0)
		abort();
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct bk_file *f = &m->files[i];
		const char *slash = strchr(f->name, '/');

		if (!f->name[0] || f->name[0] == '/' || (slash && (strchr(slash + 1, '/') || !slash[1])))
			abort();
		if (!strcmp(f->name, "..") || !strncmp(f->name, "../", 3) ||
		    (slash && !strcmp(slash, "/..")) || !strcmp(f->name, ".") ||
		    !strncmp(f->name, "./", 2) || (slash && !strcmp(slash, "/.")))
			abort();
		if (strlen(f->sha256) != 64 || strspn(f->sha256, "0123456789abcdef") != 64)
			abort();
		if (!f->role)
			abort();
	}
	for (size_t i = 0; i < m->ntables; i++)
		if (!m->tables[i].schema || !m->tables[i].name || m->tables[i].rows < 0)
			abort();
	if (m->sources && (!cJSON_IsArray(m->sources) || !finite_numbers(m->sources)))
		abort();
}

static void check_same(const struct bk_manifest *a, const struct bk_manifest *b)
{
	if (differ(a->id, b->id) || differ(a->app, b->app) || differ(a->tool, b->tool) ||
	    differ(a->database, b->database) || differ(a->server_version, b->server_version) ||
	    differ(a->format, b->format) || differ(a->compression, b->compression))
		abort();
	if (a->started_at != b->started_at || a->finished_at != b->finished_at ||
	    a->duration_ms != b->duration_ms || a->dump_bytes != b->dump_bytes)
		abort();
	if (a->nfiles != b->nfiles || a->ntables != b->ntables || a->npaths != b->npaths ||
	    bk_manifest_size(a) != bk_manifest_size(b))
		abort();
	for (size_t i = 0; i < a->nfiles; i++) {
		const struct bk_file *x = &a->files[i], *y = &b->files[i];

		if (differ(x->name, y->name) || differ(x->role, y->role) || x->size != y->size ||
		    strcmp(x->sha256, y->sha256))
			abort();
		if (bk_manifest_file(a, x->role) - a->files != bk_manifest_file(b, y->role) - b->files)
			abort();
	}
	for (size_t i = 0; i < a->ntables; i++) {
		const struct bk_table *x = &a->tables[i], *y = &b->tables[i];

		if (differ(x->schema, y->schema) || differ(x->name, y->name) || x->rows != y->rows)
			abort();
	}
	for (size_t i = 0; i < a->npaths; i++)
		if (differ(a->paths[i], b->paths[i]))
			abort();
	/* as text: cJSON_Compare finds {"k":1,"k":2} unequal to itself */
	if (!a->sources != !b->sources)
		abort();
	if (a->sources) {
		char *x = cJSON_PrintUnformatted(a->sources), *y = cJSON_PrintUnformatted(b->sources);

		if (!x || !y || strcmp(x, y))
			abort();
		free(x);
		free(y);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bk_manifest m, again;
	struct ops_error err = OPS_ERROR_INIT;
	char *json, *json2;

	if (bk_manifest_parse((const char *)data, size, &m, &err) < 0) {
		if (!err.code || !err.msg.len)
			abort();
		ops_error_release(&err);
		return 0;
	}
	check_contract(&m);
	json = bk_manifest_json(&m);
	if (!json || bk_manifest_parse(json, strlen(json), &again, NULL) < 0)
		abort();
	check_same(&m, &again);
	json2 = bk_manifest_json(&again);
	if (!json2 || strcmp(json, json2))
		abort();
	free(json);
	free(json2);
	bk_manifest_release(&m);
	bk_manifest_release(&again);
	ops_error_release(&err);
	return 0;
}
