/* Backup sets: manifest, listing, verification, retention, creation and a
 * restore that swaps the database in only when it is complete. */
#include "engines/backup.h"
#include "adapters/json.h"
#include "engines/source.h"
#include "engines/dumpdir.h"
#include "adapters/archive.h"
#include "adapters/hash.h"
#include "base/config.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "base/sqlsplit.h"
#include "system/clock.h"
#include "system/fs.h"
#include "system/proc.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ---- manifest ---- */

void bk_manifest_release(struct bk_manifest *m)
{
	free(m->id);
	free(m->app);
	free(m->tool);
	free(m->database);
	free(m->server_version);
	free(m->format);
	free(m->compression);
	for (size_t i = 0; i < m->nfiles; i++) {
		free(m->files[i].name);
		free(m->files[i].role);
	}
	free(m->files);
	for (size_t i = 0; i < m->ntables; i++) {
		free(m->tables[i].schema);
		free(m->tables[i].name);
	}
	free(m->tables);
	for (size_t i = 0; i < m->npaths; i++)
		free(m->paths[i]);
	free(m->paths);
	cJSON_Delete(m->sources);
	memset(m, 0, sizeof(*m));
}

static time_t parse_time(const char *s)
{
	struct tm tm;
	const char *end;
	memset(&tm, 0, sizeof(tm));
	end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
	if (!end || *end)
		return (time_t)-1;
	return timegm(&tm);
}

static int safe_name(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* A set's file: NAME, or DIR/NAME for the files of a directory-format dump. */
static int safe_path(const char *s)
{
	const char *slash = strchr(s, '/');
	char *dir;
	int ok;

	if (!slash)
		return safe_name(s);
	dir = xstrndup(s, (size_t)(slash - s));
	ok = safe_name(dir) && safe_name(slash + 1);
	free(dir);
	return ok;
}

static int is_hex64(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isxdigit((unsigned char)s[n]) || isupper((unsigned char)s[n]))
			return 0;
	return n == 64;
}

/* A count or size: 0 to 2^53 (where doubles stop being exact; beyond it, or
 * inf from "1e400", the casts to the integer fields would be undefined). */
/* Whether every number in item is finite: cJSON writes inf as null, so
 * the sources (kept as read) would not be written back as they were. */
static int all_finite(const cJSON *item)
{
	const cJSON *c;

	if (cJSON_IsNumber(item))
		return isfinite(item->valuedouble);
	cJSON_ArrayForEach(c, item)
		if (!all_finite(c))
			return 0;
	return 1;
}

static int get_num(const cJSON *o, const char *key, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0))
		return -1;
	*out = v->valuedouble;
	return 0;
}

int bk_manifest_parse(const char *text, size_t len, struct bk_manifest *m, struct ops_error *err)
{
	cJSON *root = cJSON_ParseWithLength(text, len), *arr, *it;
	const char *s;
	double d;
	int ret = -OPS_EXIT_INTEGRITY;

	memset(m, 0, sizeof(*m));
	if (!cJSON_IsObject(root)) {
		ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest is not a JSON object");
		goto out;
	}
#define NEED_STR(field, key)                                                                   \
	do {                                                                                   \
		if (!(s = json_get_str(root, key))) {                                               \
			ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has no '%s'", key);   \
			goto out;                                                              \
		}                                                                              \
		m->field = xstrdup(s);                                                         \
	} while (0)
	NEED_STR(id, "id");
	NEED_STR(app, "app");
	NEED_STR(tool, "tool");
	NEED_STR(database, "database");
	NEED_STR(server_version, "server_version");
	NEED_STR(format, "format");
	NEED_STR(compression, "compression");
#undef NEED_STR
	if (!safe_name(m->id) || (strcmp(m->format, "directory") && strcmp(m->format, "custom") && strcmp(m->format, "plain"))) {
		ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has an invalid id or format");
		goto out;
	}
	m->started_at = parse_time(json_get_str(root, "started_at"));
	m->finished_at = parse_time(json_get_str(root, "finished_at"));
	if (m->started_at == (time_t)-1 || m->finished_at == (time_t)-1) {
		ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has invalid times");
		goto out;
	}
	if (get_num(root, "duration_ms", &d) == 0)
		m->duration_ms = (int64_t)d;
	if (get_num(root, "dump_bytes", &d) == 0)
		m->dump_bytes = (uint64_t)d;
	arr = cJSON_GetObjectItemCaseSensitive(root, "files");
	if (!cJSON_IsArray(arr) || !cJSON_GetArraySize(arr)) {
		ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest lists no files");
		goto out;
	}
	m->files = xcalloc((size_t)cJSON_GetArraySize(arr), sizeof(*m->files));
	cJSON_ArrayForEach(it, arr) {
		struct bk_file *f = &m->files[m->nfiles];
		const char *name = json_get_str(it, "name"), *role = json_get_str(it, "role"), *sha = json_get_str(it, "sha256");
		if (!name || !role || !sha || !safe_path(name) || !is_hex64(sha) || get_num(it, "size", &d) < 0) {
			ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has an invalid file entry");
			goto out;
		}
		f->name = xstrdup(name);
		f->role = xstrdup(role);
		f->size = (uint64_t)d;
		memcpy(f->sha256, sha, 65);
		m->nfiles++;
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "tables");
	if (cJSON_IsArray(arr)) {
		m->tables = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*m->tables));
		cJSON_ArrayForEach(it, arr) {
			struct bk_table *t = &m->tables[m->ntables];
			const char *schema = json_get_str(it, "schema"), *name = json_get_str(it, "name");
			if (!schema || !name || get_num(it, "rows", &d) < 0) {
				ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has an invalid table entry");
				goto out;
			}
			t->schema = xstrdup(schema);
			t->name = xstrdup(name);
			t->rows = (long long)d;
			m->ntables++;
		}
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "paths");
	if (cJSON_IsArray(arr)) {
		m->paths = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(char *));
		cJSON_ArrayForEach(it, arr)
			if (cJSON_IsString(it))
				m->paths[m->npaths++] = xstrdup(it->valuestring);
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "sources");
	if (arr && !cJSON_IsNull(arr)) {
		/* each one strictly, and its file among the set's files */
		if (!cJSON_IsArray(arr) || !all_finite(arr)) {
			ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has an invalid 'sources'");
			goto out;
		}
		cJSON_ArrayForEach(it, arr) {
			struct src_entry se;
			int listed = 0;
			src_entry_init(&se);
			if (src_entry_parse(it, &se, err) < 0) {
				src_entry_release(&se);
				goto out;
			}
			for (size_t i = 0; i < m->nfiles; i++)
				listed |= !strcmp(m->files[i].name, se.file) && !strcmp(m->files[i].sha256, se.sha256);
			src_entry_release(&se);
			if (!listed) {
				ops_error_set(err, OPS_EXIT_INTEGRITY, "manifest has a source whose file is not among its files");
				goto out;
			}
		}
		m->sources = cJSON_Duplicate(arr, 1);
	}
	ret = 0;
out:
	if (ret < 0)
		bk_manifest_release(m);
	cJSON_Delete(root);
	return ret;
}

/* A count or size written with all its digits: cJSON prints numbers with 15
 * significant digits when that reads back within its rounding tolerance,
 * which turned 9007199254740992 into 9.00719925474099e+15. */
static void add_count(cJSON *obj, const char *key, unsigned long long v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", v);
	cJSON_AddRawToObject(obj, key, buf);
}

static void add_signed(cJSON *obj, const char *key, long long v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", v);
	cJSON_AddRawToObject(obj, key, buf);
}

char *bk_manifest_json(const struct bk_manifest *m)
{
	cJSON *root = cJSON_CreateObject(), *arr;
	char started[32], finished[32];
	char *text;

	clock_rfc3339(started, m->started_at);
	clock_rfc3339(finished, m->finished_at);
	cJSON_AddNumberToObject(root, "manifest_version", 1);
	cJSON_AddStringToObject(root, "id", m->id);
	cJSON_AddStringToObject(root, "app", m->app);
	cJSON_AddStringToObject(root, "tool", m->tool);
	cJSON_AddStringToObject(root, "database", m->database);
	cJSON_AddStringToObject(root, "server_version", m->server_version);
	cJSON_AddStringToObject(root, "format", m->format);
	cJSON_AddStringToObject(root, "compression", m->compression);
	cJSON_AddStringToObject(root, "started_at", started);
	cJSON_AddStringToObject(root, "finished_at", finished);
	add_signed(root, "duration_ms", (long long)m->duration_ms);
	add_count(root, "dump_bytes", m->dump_bytes);
	add_count(root, "size_bytes", bk_manifest_size(m));
	arr = cJSON_AddArrayToObject(root, "files");
	for (size_t i = 0; i < m->nfiles; i++) {
		cJSON *f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "name", m->files[i].name);
		cJSON_AddStringToObject(f, "role", m->files[i].role);
		add_count(f, "size", m->files[i].size);
		cJSON_AddStringToObject(f, "sha256", m->files[i].sha256);
		cJSON_AddItemToArray(arr, f);
	}
	arr = cJSON_AddArrayToObject(root, "tables");
	for (size_t i = 0; i < m->ntables; i++) {
		cJSON *t = cJSON_CreateObject();
		cJSON_AddStringToObject(t, "schema", m->tables[i].schema);
		cJSON_AddStringToObject(t, "name", m->tables[i].name);
		add_signed(t, "rows", m->tables[i].rows);
		cJSON_AddItemToArray(arr, t);
	}
	arr = cJSON_AddArrayToObject(root, "paths");
	for (size_t i = 0; i < m->npaths; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(m->paths[i]));
	if (m->sources)
		cJSON_AddItemToObject(root, "sources", cJSON_Duplicate(m->sources, 1));
	text = cJSON_Print(root);
	cJSON_Delete(root);
	return text;
}

uint64_t bk_manifest_size(const struct bk_manifest *m)
{
	uint64_t n = 0;
	for (size_t i = 0; i < m->nfiles; i++)
		n += m->files[i].size;
	return n;
}

const struct bk_file *bk_manifest_file(const struct bk_manifest *m, const char *role)
{
	for (size_t i = 0; i < m->nfiles; i++)
		if (!strcmp(m->files[i].role, role))
			return &m->files[i];
	return NULL;
}

/* ---- listing ---- */

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a);
	return xstrfmt("%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
}

void bk_entry_release(struct bk_entry *e)
{
	free(e->id);
	free(e->path);
	bk_manifest_release(&e->m);
	memset(e, 0, sizeof(*e));
}

int bk_entry_read(const char *path, struct bk_entry *e, struct ops_error *err)
{
	struct strbuf text = STRBUF_INIT;
	char *mpath = join(path, BK_MANIFEST), *vpath = join(path, BK_VERIFIED);
	const char *base = strrchr(path, '/');
	int ret;

	memset(e, 0, sizeof(*e));
	ret = fs_read_file(mpath, &text, 16 << 20, err);
	if (ret < 0) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' is not a backup: %s", path, err->msg.buf);
		goto out;
	}
	ret = bk_manifest_parse(text.buf, text.len, &e->m, err);
	if (ret < 0) {
		ops_error_prefix(err, "'%s'", mpath);
		goto out;
	}
	e->path = xstrdup(path);
	e->id = xstrdup(base ? base + 1 : path);
	strbuf_reset(&text);
	if (fs_exists(vpath) && fs_read_file(vpath, &text, 1 << 20, NULL) == 0) {
		cJSON *v = cJSON_ParseWithLength(text.buf, text.len);
		time_t t = parse_time(json_get_str(v, "verified_at"));
		e->verified_at = t == (time_t)-1 ? 0 : t;
		e->restore_tested = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "restore_tested"));
		cJSON_Delete(v);
	}
out:
	strbuf_release(&text);
	free(mpath);
	free(vpath);
	return ret;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct bk_entry *x = a, *y = b;
	if (x->m.started_at != y->m.started_at)
		return x->m.started_at > y->m.started_at ? -1 : 1;
	return -strcmp(x->id, y->id);
}

int bk_list_read(const char *dir, struct bk_list *l, struct ops_error *err)
{
	DIR *d;
	struct dirent *de;
	struct ops_error skip = OPS_ERROR_INIT; /* why a directory is not a backup */

	memset(l, 0, sizeof(*l));
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0
				       : ops_error_set(err, OPS_EXIT_FAILED, "cannot read backup directory '%s': %s", dir,
						       ops_strerror(errno));
	while ((de = readdir(d))) {
		struct bk_entry e;
		char *path;
		if (de->d_name[0] == '.')
			continue; /* ., .., .tmp-*, .trash-*: never a backup */
		path = join(dir, de->d_name);
		ops_error_clear(&skip);
		if (bk_entry_read(path, &e, &skip) == 0) {
			l->items = xrealloc(l->items, (l->nr + 1) * sizeof(*l->items));
			l->items[l->nr++] = e;
		} else {
			l->skipped++;
		}
		free(path);
	}
	closedir(d);
	ops_error_release(&skip);
	if (l->nr)
		qsort(l->items, l->nr, sizeof(*l->items), cmp_entry);
	return 0;
}

void bk_list_release(struct bk_list *l)
{
	for (size_t i = 0; i < l->nr; i++)
		bk_entry_release(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void bk_list_only_app(struct bk_list *l, const char *app)
{
	size_t keep = 0;
	for (size_t i = 0; i < l->nr; i++) {
		if (!strcmp(l->items[i].m.app, app))
			l->items[keep++] = l->items[i];
		else
			bk_entry_release(&l->items[i]);
	}
	l->nr = keep;
}

int bk_find(const struct bk_list *l, const char *which, const struct bk_entry **out, struct ops_error *err)
{
	if (!strcmp(which, "latest")) {
		if (!l->nr)
			return ops_error_set(err, OPS_EXIT_USAGE, "there is no backup yet");
		*out = &l->items[0];
		return 0;
	}
	for (size_t i = 0; i < l->nr; i++)
		if (!strcmp(l->items[i].id, which)) {
			*out = &l->items[i];
			return 0;
		}
	ops_error_set(err, OPS_EXIT_USAGE, "no backup '%s'", which);
	ops_error_hint(err, "'opsctl backup list' shows the backups");
	return -OPS_EXIT_USAGE;
}

/* ---- verify, retention, removal ---- */

void bk_mark_verified(const struct bk_entry *e, int restore_tested)
{
	char *vpath = join(e->path, BK_VERIFIED), when[32];
	struct strbuf note = STRBUF_INIT;

	clock_rfc3339(when, time(NULL));
	strbuf_addf(&note, "{\"verified_at\": \"%s\", \"restore_tested\": %s}\n", when,
		    restore_tested || e->restore_tested ? "true" : "false");
	fs_write_atomic(vpath, note.buf, note.len, 0644, NULL);
	free(vpath);
	strbuf_release(&note);
}

/* A directory set's table data (db/NNNN.dat.zst): a restore streams it into
 * COPY and checks its size and SHA-256 on the way, before any swap. */
static int streamed_by_restore(const struct bk_entry *e, const struct bk_file *f)
{
	size_t plen = strlen(BK_DUMP_DIR "/");
	return !strcmp(e->m.format, "directory") && !strcmp(f->role, "database") &&
	       !strncmp(f->name, BK_DUMP_DIR "/", plen) && f->name[plen] >= '0' && f->name[plen] <= '9';
}

static int damaged_hint(struct ops_error *err)
{
	ops_error_hint(err, "restore from another backup ('opsctl backup list')");
	return -err->code;
}

static int verify_files(const struct bk_entry *e, int defer_streamed, struct ops_error *err)
{
	int ret = 0;

	for (size_t i = 0; i < e->m.nfiles; i++) {
		const struct bk_file *f = &e->m.files[i];
		char *p = join(e->path, f->name), hex[65];
		uint64_t size = 0;
		int deferred = defer_streamed && streamed_by_restore(e, f);
		if (deferred) {
			/* only its size now: a missing or cut file is refused before anything starts */
			struct stat st;
			if (stat(p, &st) < 0)
				ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "backup '%s' is damaged: cannot read '%s': %s",
						    e->id, p, ops_strerror(errno));
			else
				size = (uint64_t)st.st_size;
		} else {
			ret = hash_sha256_file(p, hex, &size, err);
			if (ret < 0)
				ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "backup '%s' is damaged: %s", e->id,
						    err->msg.buf);
		}
		if (ret == 0 && size != f->size)
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
					    "backup '%s' is damaged: '%s' has %llu bytes, the manifest says %llu", e->id,
					    f->name, (unsigned long long)size, (unsigned long long)f->size);
		else if (ret == 0 && !deferred && strcmp(hex, f->sha256))
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
					    "backup '%s' is damaged: the SHA-256 of '%s' does not match the manifest",
					    e->id, f->name);
		free(p);
		if (ret < 0)
			return damaged_hint(err);
	}
	return 0;
}

int bk_verify(const struct bk_entry *e, struct ops_error *err)
{
	return verify_files(e, 0, err);
}

int bk_verify_before_restore(const struct bk_entry *e, struct ops_error *err)
{
	return verify_files(e, 1, err);
}

/* A mark of the day/week/month of t, UTC. */
static long period(time_t t, char kind)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	switch (kind) {
	case 'd':
		return (long)(tm.tm_year * 1000 + tm.tm_yday);
	case 'm':
		return (long)(tm.tm_year * 100 + tm.tm_mon);
	default: {
		char buf[16];
		strftime(buf, sizeof(buf), "%G%V", &tm); /* ISO year and week */
		return atol(buf);
	}
	}
}

void bk_retention(const struct bk_list *l, const struct bk_policy *p, int *keep, const char **reason)
{
	static const char kinds[3] = { 'd', 'w', 'm' };
	static const char *const names[3] = { "daily", "weekly", "monthly" };
	long limits[3] = { p->keep_daily, p->keep_weekly, p->keep_monthly };

	for (size_t i = 0; i < l->nr; i++) {
		keep[i] = (long)i < (p->keep_last > 0 ? p->keep_last : 1);
		if (reason)
			reason[i] = keep[i] ? "last" : NULL;
	}
	for (int k = 0; k < 3; k++) {
		long seen = 0, last = -1;
		for (size_t i = 0; i < l->nr && seen < limits[k]; i++) {
			long per = period(l->items[i].m.started_at, kinds[k]);
			if (per == last)
				continue; /* only the newest set of each period */
			last = per;
			seen++;
			if (!keep[i] && reason)
				reason[i] = names[k];
			keep[i] = 1;
		}
	}
}

int bk_remove(const struct bk_entry *e, struct ops_error *err)
{
	const char *slash = strrchr(e->path, '/');
	char *trash = slash ? xstrfmt("%.*s/.trash-%s", (int)(slash - e->path), e->path, e->id)
			    : xstrfmt(".trash-%s", e->id);
	int ret = 0;

	if (rename(e->path, trash) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot remove backup '%s': %s", e->id, ops_strerror(errno));
	else
		ret = fs_remove_tree(trash, err);
	free(trash);
	return ret;
}

/* ---- create ---- */

struct snapshot {
	PGconn *conn;
	char *name;           /* pg_export_snapshot() */
	char *database;
	char *server_version;
};

static int open_snapshot(const struct db_target *db, struct snapshot *s, struct ops_error *err)
{
	PGresult *res = NULL;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = db_connect(&s->conn, db, "opsctl backup", 10000, err);
	if (ret == 0) {
		PGresult *b = NULL;
		ret = db_exec(s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 10000, &b, err);
		if (b)
			PQclear(b);
	}
	if (ret == 0)
		ret = db_exec(s->conn, "SELECT pg_export_snapshot(), current_database(), current_setting('server_version')",
			      0, NULL, 10000, &res, err);
	if (ret == 0) {
		s->name = xstrdup(PQgetvalue(res, 0, 0));
		s->database = xstrdup(PQgetvalue(res, 0, 1));
		s->server_version = xstrdup(PQgetvalue(res, 0, 2));
	}
	if (res)
		PQclear(res);
	return ret;
}

static void close_snapshot(struct snapshot *s)
{
	if (s->conn)
		PQfinish(s->conn);
	free(s->name);
	free(s->database);
	free(s->server_version);
	memset(s, 0, sizeof(*s));
}

/* Row counts of every user table, in the snapshot the dump saw; each query
 * within stall_ms. */
static int count_rows(PGconn *conn, int64_t stall, struct bk_manifest *m, struct ops_error *err)
{
	PGresult *res = NULL;
	struct strbuf sql = STRBUF_INIT;
	int ret, i = 0;

	ret = db_exec(conn,
		      "SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
		      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
		      "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
		      "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2",
		      0, NULL, stall, &res, err);
	if (ret < 0)
		goto out;
	m->tables = xcalloc((size_t)PQntuples(res) + 1, sizeof(*m->tables));
	for (; i < PQntuples(res); i++) {
		PGresult *c = NULL;
		strbuf_reset(&sql);
		strbuf_addf(&sql, "SELECT count(*) FROM ONLY %s", PQgetvalue(res, i, 2));
		ret = db_exec(conn, sql.buf, 0, NULL, stall, &c, err);
		if (ret < 0)
			goto out;
		m->tables[m->ntables].schema = xstrdup(PQgetvalue(res, i, 0));
		m->tables[m->ntables].name = xstrdup(PQgetvalue(res, i, 1));
		m->tables[m->ntables].rows = atoll(PQgetvalue(c, 0, 0));
		m->ntables++;
		PQclear(c);
	}
out:
	if (ret < 0) {
		if (res)
			ops_error_prefix(err, "counting the rows of %s", PQgetvalue(res, i, 2));
		else
			ops_error_prefix(err, "listing the tables to count");
		if (err->code == OPS_EXIT_UNREACHABLE)
			ops_error_hint(err, "each query of the count has stall_timeout of [backup]; nothing "
				       "of this run is kept, and the next run starts over");
	}
	if (res)
		PQclear(res);
	strbuf_release(&sql);
	return ret;
}

struct pump_progress {
	const struct bk_create_opts *o;
};

static int on_pump(uint64_t in_bytes, uint64_t out_bytes, void *arg)
{
	struct pump_progress *p = arg;
	(void)out_bytes;
	return p->o->progress ? p->o->progress("dump", in_bytes, 0, p->o->progress_data) : 0;
}

static int fsync_path(const char *path, struct ops_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret = 0;
	if (fd < 0 || fsync(fd) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot sync '%s': %s", path, ops_strerror(errno));
	if (fd >= 0)
		close(fd);
	return ret;
}

static int64_t stall_ms(const struct bk_create_opts *o)
{
	return o->stall_ms > 0 ? o->stall_ms : BK_DEFAULT_STALL_MS;
}

/* pg_dump has written nothing for stall_timeout. */
static int dump_stalled(const struct bk_create_opts *o, struct ops_error *err)
{
	struct strbuf limit = STRBUF_INIT;
	int ret;

	format_duration_ms(&limit, stall_ms(o));
	ret = ops_error_set(err, OPS_EXIT_UNREACHABLE,
			    "pg_dump wrote nothing for %s (stall_timeout of [backup]): the database "
			    "does not answer, or pg_dump waits for a lock another session holds",
			    limit.buf);
	ops_error_hint(err, "pg_locks and pg_stat_activity show who holds a lock; nothing of this "
		       "run is kept, and the next run starts over");
	strbuf_release(&limit);
	return ret;
}

/* pg_dump -Fd -j N into TMP/db/, each data file compressed while pg_dump
 * writes it (dumpdir.h); the manifest lists every file of db/. */
static int dump_directory(const struct bk_create_opts *o, const struct snapshot *s, const char *tmp,
			  struct bk_manifest *m, struct ops_error *err)
{
	char *dir = join(tmp, BK_DUMP_DIR), *file = xstrfmt("--file=%s", dir);
	char *snap = xstrfmt("--snapshot=%s", s->name), *jobs = xstrfmt("--jobs=%d", o->jobs > 0 ? o->jobs : 1);
	char **env = db_target_env(o->db, s->database);
	const char *argv[10];
	struct proc_stream_opts po;
	struct proc_child child = { -1, -1, 0, NULL };
	struct dd_follow *follow = NULL;
	struct dd_file *files = NULL;
	size_t nfiles = 0;
	uint64_t plain = 0, bytes = 0;
	int64_t moved_at = clock_now_ms();
	int ret, n = 0;

	argv[n++] = o->pg_dump;
	argv[n++] = "--format=directory";
	argv[n++] = "--compress=0"; /* we compress, on every core, while it writes */
	argv[n++] = jobs;
	argv[n++] = snap;
	argv[n++] = file;
	argv[n++] = "--no-password";
	argv[n] = NULL;
	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)env;
	po.capture_max = 64 * 1024;

	if (mkdir(dir, 0700) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", dir, ops_strerror(errno));
		goto out;
	}
	ret = dd_follow_start(&follow, dir, o->codec, o->level, o->jobs > 0 ? o->jobs : 1, o->threads, err);
	if (ret == 0)
		ret = proc_start(argv, &po, &child, err);
	while (ret == 0 && !proc_exited(&child)) {
		uint64_t now_bytes;
		ret = dd_follow_poll(follow, 100, err);
		now_bytes = dd_follow_bytes(follow);
		if (ret == 0 && now_bytes != bytes) {
			bytes = now_bytes;
			moved_at = clock_now_ms();
		} else if (ret == 0 && clock_now_ms() - moved_at >= stall_ms(o)) {
			ret = dump_stalled(o, err);
		}
		if (ret == 0 && o->progress && o->progress("dump", now_bytes, 0, o->progress_data))
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted");
	}
	if (ret == 0)
		ret = proc_finish(&child, 30000, NULL, err);
	if (ret == 0) {
		ret = dd_follow_finish(follow, &files, &nfiles, &plain, err);
		follow = NULL;
	}
	if (ret == 0 && plain == 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "pg_dump produced an empty dump");
	if (ret < 0)
		goto out;
	m->dump_bytes = plain;
	m->files = xrealloc(m->files, (m->nfiles + nfiles) * sizeof(*m->files));
	for (size_t i = 0; i < nfiles; i++) {
		struct bk_file *f = &m->files[m->nfiles++];
		f->name = xstrfmt("%s/%s", BK_DUMP_DIR, files[i].name);
		f->role = xstrdup("database");
		f->size = files[i].size;
		memcpy(f->sha256, files[i].sha256, 65);
	}
out:
	proc_kill(&child);
	dd_follow_abort(follow);
	dd_files_release(files, nfiles);
	db_env_free(env);
	free(dir);
	free(file);
	free(snap);
	free(jobs);
	return ret;
}

static int dump_database(const struct bk_create_opts *o, const struct snapshot *s, const char *tmp,
			 struct bk_manifest *m, struct ops_error *err)
{
	const char *ext = !strcmp(o->format, "custom") ? "dump" : "sql";
	char *name = xstrfmt("db.%s%s", ext, zs_codec_suffix(o->codec));
	char *path = join(tmp, name), *snap = xstrfmt("--snapshot=%s", s->name);
	char *fmt = xstrfmt("--format=%s", o->format);
	char **env = db_target_env(o->db, s->database);
	const char *argv[8];
	struct proc_stream_opts po;
	struct proc_child child = { -1, -1, 0, NULL };
	struct proc_result res;
	struct zs_writer w = ZS_WRITER_INIT;
	struct pump_progress pp = { o };
	struct bk_file *f;
	char hex[65];
	int fd = -1, ret, n = 0;

	argv[n++] = o->pg_dump;
	argv[n++] = fmt;
	if (!strcmp(o->format, "custom"))
		argv[n++] = "--compress=0"; /* we compress, faster, on every core */
	argv[n++] = snap;
	argv[n++] = "--no-password";
	argv[n] = NULL;
	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)env;
	po.pipes = PROC_PIPE_STDOUT;
	po.capture_max = 64 * 1024;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	ret = zs_writer_open(&w, fd, path, o->codec, o->level, o->threads, err);
	if (ret == 0)
		ret = proc_start(argv, &po, &child, err);
	if (ret == 0) {
		/* pg_dump's own failures end its output early and show in
		 * proc_finish; a failing pump is ours (disk full, Ctrl-C), and
		 * pg_dump's SIGPIPE that follows is not the news */
		ret = zs_pump(child.out_fd, "pg_dump", stall_ms(o), &w, on_pump, &pp, err);
		if (ret == -OPS_EXIT_UNREACHABLE)
			ret = dump_stalled(o, err);
		if (ret == 0)
			ret = proc_finish(&child, 30000, &res, err);
	}
	if (ret == 0)
		ret = zs_writer_close(&w, hex, err);
	if (ret == 0 && w.in_bytes == 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "pg_dump produced an empty dump");
	if (ret == 0 && fsync(fd) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot sync '%s': %s", path, ops_strerror(errno));
	if (ret < 0)
		goto out;
	m->dump_bytes = w.in_bytes;
	m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
	f = &m->files[m->nfiles++];
	f->name = name;
	name = NULL;
	f->role = xstrdup("database");
	f->size = w.out_bytes;
	memcpy(f->sha256, hex, 65);
out:
	proc_kill(&child);
	zs_writer_release(&w);
	if (fd >= 0)
		close(fd);
	db_env_free(env);
	free(name);
	free(path);
	free(snap);
	free(fmt);
	return ret;
}

static int on_arch(const struct arch_progress *p, void *data)
{
	const struct bk_create_opts *o = data;
	return o->progress ? o->progress("files", p->bytes, 0, o->progress_data) : 0;
}

static int archive_paths(const struct bk_create_opts *o, const char *tmp, struct bk_manifest *m,
			 struct ops_error *err)
{
	enum arch_compression c = o->codec == ZS_ZSTD ? ARCH_COMPRESS_ZSTD
				  : o->codec == ZS_GZIP ? ARCH_COMPRESS_GZIP : ARCH_COMPRESS_NONE;
	char *name = xstrfmt("files.tar%s", zs_codec_suffix(o->codec));
	char *path = join(tmp, name);
	struct arch_create_opts ao;
	struct arch_stats st;
	struct bk_file *f;
	char hex[65];
	uint64_t size = 0;
	int ret;

	memset(&ao, 0, sizeof(ao));
	ao.compression = c;
	ao.progress = on_arch;
	ao.progress_data = (void *)o;
	ret = arch_create(path, o->paths, o->npaths, &ao, &st, err);
	if (ret == 0)
		ret = fsync_path(path, err);
	if (ret == 0)
		ret = hash_sha256_file(path, hex, &size, err);
	if (ret < 0)
		goto out;
	m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
	f = &m->files[m->nfiles++];
	f->name = name;
	name = NULL;
	f->role = xstrdup("paths");
	f->size = size;
	memcpy(f->sha256, hex, 65);
	m->paths = xcalloc(o->npaths + 1, sizeof(char *));
	for (size_t i = 0; i < o->npaths; i++)
		m->paths[m->npaths++] = xstrdup(o->paths[i]);
out:
	free(name);
	free(path);
	return ret;
}

/* The [source]s into the same set: each writes one file under sources/;
 * one failure fails the set. */
static int backup_sources(const struct bk_create_opts *o, const char *tmp, struct bk_manifest *m,
			  struct ops_error *err)
{
	int ret = 0;

	m->sources = cJSON_CreateArray();
	for (size_t i = 0; i < o->nsources && ret == 0; i++) {
		struct src_entry se;
		struct bk_file *f;

		src_entry_init(&se);
		if (o->progress && o->progress(o->sources[i].name, 0, 0, o->progress_data)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted");
		} else if ((ret = src_backup(&o->sources[i], tmp, o->source_callbacks, &se, err)) == 0) {
			m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
			f = &m->files[m->nfiles++];
			f->name = xstrdup(se.file);
			f->role = xstrdup("source");
			f->size = se.size;
			memcpy(f->sha256, se.sha256, sizeof(f->sha256));
			cJSON_AddItemToArray(m->sources, src_entry_json(&se));
		}
		src_entry_release(&se);
	}
	return ret;
}

long bk_default_jobs(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 4 ? 4 : n;
}

int bk_stall_setting(const struct config *cfg, int64_t *out, struct ops_error *err)
{
	const struct config_entry *e = cfg ? config_find_entry(cfg, "backup", NULL, "stall_timeout") : NULL;
	int64_t v = 0;

	if (!e)
		return 0;
	if (config_get_duration_ms(cfg, "backup", NULL, "stall_timeout", &v, err) < 0)
		return -err->code;
	if (v <= 0)
		return config_error(cfg, e, err, "stall_timeout must be more than 0");
	*out = v;
	return 0;
}

/* Work directories of runs that were killed (.tmp-*, .restore-*) and removals that were
 * cut short (.trash-*). The caller holds the backup lock, so no other run is
 * writing them. */
static void remove_leftovers(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		char *p;
		if (!starts_with(de->d_name, ".tmp-") && !starts_with(de->d_name, ".trash-") &&
		    !starts_with(de->d_name, ".restore-"))
			continue;
		p = join(dir, de->d_name);
		fs_remove_tree(p, NULL);
		free(p);
	}
	closedir(d);
}

int bk_create(const struct bk_create_opts *o, struct bk_entry *out, struct ops_error *err)
{
	struct bk_manifest m;
	struct snapshot snap;
	char stamp[32], *tmp = NULL, *final = NULL, *mpath = NULL, *json = NULL;
	int64_t start = clock_now_ms();
	time_t now = time(NULL);
	struct tm tm;
	int ret;

	memset(&m, 0, sizeof(m));
	memset(&snap, 0, sizeof(snap));
	memset(out, 0, sizeof(*out));
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	m.id = xstrfmt("%s-%s", o->app, stamp);
	for (int i = 2; ; i++) {
		free(final);
		final = join(o->dir, m.id);
		if (!fs_exists(final))
			break;
		free(m.id);
		m.id = xstrfmt("%s-%s-%d", o->app, stamp, i); /* two in one second */
	}
	ret = fs_mkdir_p(o->dir, 0750, err);
	if (ret < 0)
		goto out;
	remove_leftovers(o->dir);
	tmp = xstrfmt("%s/.tmp-%s", o->dir, m.id);
	if (mkdir(tmp, 0700) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", tmp, ops_strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	m.app = xstrdup(o->app);
	m.tool = xstrdup("opsctl " OPSCTL_VERSION);
	m.format = xstrdup(o->format);
	m.compression = xstrdup(zs_codec_name(o->codec));
	m.started_at = now;
	ret = open_snapshot(o->db, &snap, err);
	if (ret < 0)
		goto out;
	m.database = xstrdup(snap.database);
	m.server_version = xstrdup(snap.server_version);
	ret = !strcmp(o->format, "directory") ? dump_directory(o, &snap, tmp, &m, err)
					      : dump_database(o, &snap, tmp, &m, err);
	if (ret == 0)
		ret = count_rows(snap.conn, stall_ms(o), &m, err);
	close_snapshot(&snap);
	if (ret == 0 && o->npaths)
		ret = archive_paths(o, tmp, &m, err);
	if (ret == 0 && o->nsources)
		ret = backup_sources(o, tmp, &m, err);
	if (ret < 0)
		goto out;
	m.finished_at = time(NULL);
	m.duration_ms = clock_now_ms() - start;
	json = bk_manifest_json(&m);
	mpath = join(tmp, BK_MANIFEST);
	/* the manifest last: before it exists the directory is not a backup */
	ret = fs_write_atomic(mpath, json, strlen(json), 0600, err);
	if (ret == 0)
		ret = fs_fsync_dir(tmp, err);
	if (ret == 0 && rename(tmp, final) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot rename '%s' to '%s': %s", tmp, final,
				    ops_strerror(errno));
	if (ret == 0)
		ret = fs_fsync_dir(o->dir, err);
	if (ret < 0)
		goto out;
	free(tmp);
	tmp = NULL;
	out->id = xstrdup(m.id);
	out->path = final;
	final = NULL;
	out->m = m;
	memset(&m, 0, sizeof(m));
out:
	close_snapshot(&snap);
	if (tmp)
		fs_remove_tree(tmp, NULL); /* a failed backup leaves nothing behind */
	free(tmp);
	free(final);
	free(mpath);
	cJSON_free(json);
	bk_manifest_release(&m);
	return ret;
}

/* ---- restore ---- */

void bk_restore_result_release(struct bk_restore_result *r)
{
	free(r->restored_as);
	free(r->previous_as);
	memset(r, 0, sizeof(*r));
}

static int admin_exec(PGconn *admin, const char *sql, struct ops_error *err)
{
	PGresult *res = NULL;
	int ret = db_exec(admin, sql, 0, NULL, 60000, &res, err);
	if (res)
		PQclear(res);
	return ret;
}

static char *quote_ident(PGconn *conn, const char *name)
{
	char *q = PQescapeIdentifier(conn, name, strlen(name));
	char *r = xstrdup(q ? q : "\"\"");
	PQfreemem(q);
	return r;
}

static int database_exists(PGconn *admin, const char *name, int *exists, struct ops_error *err)
{
	const char *params[1] = { name };
	PGresult *res = NULL;
	int ret = db_exec(admin, "SELECT 1 FROM pg_database WHERE datname = $1", 1, params, 10000, &res, err);
	if (ret == 0)
		*exists = PQntuples(res) > 0;
	if (res)
		PQclear(res);
	return ret;
}

static int on_load(uint64_t in_bytes, uint64_t out_bytes, void *arg)
{
	const struct bk_restore_opts *o = arg;
	(void)out_bytes;
	return o->progress ? o->progress("restore", in_bytes, 1, o->progress_data) : 0;
}

static uint64_t database_bytes(const struct bk_manifest *m)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < m->nfiles; i++)
		if (!strcmp(m->files[i].role, "database"))
			sum += m->files[i].size;
	return sum;
}

static uint64_t free_bytes(const char *dir)
{
	struct statvfs sv;
	return statvfs(dir, &sv) == 0 ? (uint64_t)sv.f_bavail * sv.f_frsize : 0;
}

/* The work directory of a directory set's restore (toc.dat, the large
 * objects, the placeholders): beside the sets (the backup filesystem is the
 * one sized for dumps), else $TMPDIR; the one with `need` bytes free. */
static int make_work_dir(const struct bk_entry *e, const char *dbname, uint64_t need, char **out,
			 struct ops_error *err)
{
	const char *tmp = getenv("TMPDIR");
	const char *slash = strrchr(e->path, '/');
	char *sets = slash && slash != e->path ? xstrndup(e->path, (size_t)(slash - e->path))
					       : xstrdup(slash ? "/" : ".");
	const char *where[2];
	uint64_t best = 0;
	int ret = 0;

	where[0] = sets;
	where[1] = tmp && *tmp ? tmp : "/tmp";
	*out = NULL;
	for (int i = 0; i < 2 && !*out; i++) {
		char *d = xstrfmt("%s/.restore-%s-%d", where[i], dbname, (int)getpid());
		uint64_t avail = free_bytes(where[i]);
		if (avail > best)
			best = avail;
		if (avail >= need && mkdir(d, 0700) == 0)
			*out = d;
		else
			free(d);
	}
	if (!*out) {
		struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
		strbuf_addf(&a, "%.1f GiB", (double)need / (1 << 30));
		strbuf_addf(&b, "%.1f GiB", (double)best / (1 << 30));
		ret = ops_error_set(err, OPS_EXIT_FAILED,
				    "restoring needs %s of temporary space for the dump's schema and large objects; "
				    "'%s' and '%s' have at most %s free", a.buf, where[0], where[1], b.buf);
		ops_error_hint(err, "free some space, or point TMPDIR at a filesystem with room");
		strbuf_release(&a);
		strbuf_release(&b);
	}
	free(sets);
	return ret;
}

/* ---- a directory-format dump, restored in three steps ----
 *
 * pg_restore 15.20 reads a directory dump's data files only when they are
 * regular files, so it cannot read our .zst files through pipes, and
 * decompressing them first costs a second per GB before anything loads.
 * Instead: (1) pg_restore --section=pre-data makes the tables; (2) the
 * table data is streamed, decompressed as it is read, into COPY ... FROM
 * STDIN on --jobs connections ("lanes", the biggest tables spread first):
 * each lane runs the session settings and COPY statements that
 * `pg_restore -f - -L LANE` prints for its tables (their data files being
 * empty placeholders), each COPY followed by its table's data, its SHA-256
 * checked before the COPY ends (the lanes get their statements and connect
 * while (1) runs; a table bigger than all the others together goes over
 * several connections); meanwhile the rest of the data section (sequence
 * values, large objects) goes through pg_restore itself. The rows each COPY
 * loaded are compared with the manifest; (3) pg_restore --section=post-data
 * -j N builds indexes and constraints while the tables no COPY counted (a
 * partitioned table's parent) are counted. */

static int compare_rows(const struct bk_entry *e, const struct db_target *db, const char *dbname, int jobs,
			const char *skip, size_t *checked, struct ops_error *err);

/* The row counts of the tables no COPY counted, in a thread while the
 * indexes are built. */
struct count_job {
	const struct bk_entry *e;
	const struct bk_restore_opts *o;
	const char *dbname;
	const char *skip;
	size_t checked;
	struct ops_error err;
	int ret;
};

static void *count_run(void *arg)
{
	struct count_job *j = arg;
	j->ret = compare_rows(j->e, j->o->db, j->dbname, j->o->jobs, j->skip, &j->checked, &j->err);
	return NULL;
}

struct restore_run {
	const struct bk_restore_opts *o;
	const char *set_id, *dbname, *work, *src;
	char **env;
	_Atomic int stop;
	int wake[2];                  /* a lane writes a byte when it is done */
	pthread_mutex_t lock;
	pthread_cond_t changed;       /* schema_done or stop set */
	int schema_done;              /* under lock: the lanes may load */
};

/* Stops the lanes (one failed, the user pressed Ctrl-C), wherever they are. */
static void run_stop(struct restore_run *r)
{
	pthread_mutex_lock(&r->lock);
	atomic_store(&r->stop, 1);
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

static void run_schema_done(struct restore_run *r)
{
	pthread_mutex_lock(&r->lock);
	r->schema_done = 1;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

/* The most connections one table is loaded over. */
#define SPLIT_MAX 4

/* Rows a lane's COPY put into a table (a plain one: a partitioned table's
 * own rows are not what COPY into it counts). */
struct loaded_table {
	char *schema, *name;
	long long rows;
};

struct lane {
	struct restore_run *run;
	char *list;                   /* its -L file */
	const struct dd_file **files;
	size_t nfiles;
	struct loaded_table *loaded;  /* one per COPY of a plain table */
	size_t nloaded;
	int split;                    /* its first (biggest) table goes over this many connections */
	uint64_t load;
	_Atomic uint64_t bytes;
	_Atomic int done;
	pthread_t thread;
	int started;
	struct ops_error err;
};

static int cmp_file_size_desc(const void *a, const void *b)
{
	const struct dd_file *x = *(const struct dd_file *const *)a, *y = *(const struct dd_file *const *)b;
	return x->size < y->size ? 1 : x->size > y->size ? -1 : strcmp(x->name, y->name);
}

/* One pg_restore step, its progress shown and Ctrl-C seen while it runs. */
static int restore_step(struct restore_run *r, const char *const *argv, const char *what, struct ops_error *err)
{
	struct proc_stream_opts po;
	struct proc_child child = { -1, -1, 0, NULL };
	int ret;

	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)r->env;
	po.timeout_ms = r->o->timeout_ms;
	po.capture_max = 64 * 1024;
	ret = proc_start(argv, &po, &child, err);
	while (ret == 0 && !proc_wait_exit(&child, 50)) {
		if (r->o->progress && r->o->progress(what, 0, 0, r->o->progress_data))
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted");
	}
	if (ret == 0)
		ret = proc_finish(&child, 30000, NULL, err);
	proc_kill(&child);
	return ret;
}

/* The rows go out over n connections, whole lines in turn (in COPY's text
 * format a raw newline only ends a row): one table loaded by several server
 * processes at once, when it is so much bigger than the rest that a single
 * COPY would be all that runs for most of the load. */
struct copy_sink {
	PGconn *conns[SPLIT_MAX];
	int n, next;
	int ended;              /* past pg_dump's end-of-data line "\.": the rest follows it */
	struct strbuf carry;    /* the start of a line not yet complete */
	int64_t stall_ms;
	struct lane *lane;
	uint64_t base;
};

/* 1 if the lines of carry + buf (whole lines) hold the end-of-data line. */
static int holds_end_of_data(const struct strbuf *carry, const char *buf, size_t len)
{
	const char *c = carry->buf;
	if (carry->len == 0 && len >= 3 && !memcmp(buf, "\\.\n", 3))
		return 1;
	if ((carry->len == 1 && c[0] == '\\' && len >= 2 && !memcmp(buf, ".\n", 2)) ||
	    (carry->len == 2 && !memcmp(c, "\\.", 2) && buf[0] == '\n'))
		return 1;
	return memmem(buf, len, "\n\\.\n", 4) != NULL;
}

static int copy_put(const void *buf, size_t len, void *arg, struct ops_error *err)
{
	struct copy_sink *c = arg;
	const char *p = buf, *nl;
	size_t whole;
	PGconn *to;
	int ret = 0;

	if (c->n == 1 || c->ended)
		return db_copy_put(c->conns[c->next], buf, len, c->stall_ms, err);
	nl = memrchr(p, '\n', len);
	if (!nl) {
		strbuf_add(&c->carry, p, len);
		return 0;
	}
	whole = (size_t)(nl - p) + 1;
	c->ended = holds_end_of_data(&c->carry, p, whole);
	to = c->conns[c->next];
	if (c->carry.len)
		ret = db_copy_put(to, c->carry.buf, c->carry.len, c->stall_ms, err);
	if (ret == 0)
		ret = db_copy_put(to, p, whole, c->stall_ms, err);
	strbuf_reset(&c->carry);
	strbuf_add(&c->carry, p + whole, len - whole);
	if (!c->ended)
		c->next = (c->next + 1) % c->n;
	return ret;
}

static int copy_progress(uint64_t in_bytes, uint64_t out_bytes, void *arg)
{
	struct copy_sink *c = arg;
	(void)out_bytes;
	atomic_store(&c->lane->bytes, c->base + in_bytes);
	return atomic_load(&c->lane->run->stop);
}

/* The table of "COPY public.messages (id, ...) FROM stdin", as written
 * there (quoted where pg_dump quoted it). */
static char *copy_target(const char *copy_sql)
{
	const char *p = copy_sql + strlen("COPY "), *q = p;
	int quoted = 0;
	while (*q && (quoted || *q != ' ')) {
		if (*q == '"')
			quoted = !quoted;
		q++;
	}
	return xstrndup(p, (size_t)(q - p));
}

/* After a COPY: which table it filled and how many rows it loaded, kept for
 * the row count check when the table is a plain one. A failed look-up only
 * leaves the table to count(*). */
static void note_loaded(struct lane *l, PGconn *conn, const char *copy_sql, long long rows)
{
	char *target = copy_target(copy_sql);
	const char *params[1] = { target };
	PGresult *res = NULL;

	if (db_exec(conn,
		    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
		    "WHERE c.oid = $1::regclass AND c.relkind = 'r'",
		    1, params, 60000, &res, NULL) == 0 &&
	    PQntuples(res) == 1) {
		struct loaded_table *t = &l->loaded[l->nloaded++];
		t->schema = xstrdup(PQgetvalue(res, 0, 0));
		t->name = xstrdup(PQgetvalue(res, 0, 1));
		t->rows = rows;
	}
	if (res)
		PQclear(res);
	free(target);
}

/* The set's own verdict on a table data file that could not be loaded: a
 * file that is not what the manifest says is damage, whatever COPY or the
 * decompressor made of it. 1 if it is damaged (err says so). */
static int damaged_file(struct restore_run *r, const struct dd_file *f, const char *path, uint64_t size,
			const char *sha256, struct ops_error *err)
{
	char hex[65];
	struct ops_error ignored = OPS_ERROR_INIT;

	if (!sha256) {
		/* stopped part-way: hash what is on disk */
		if (hash_sha256_file(path, hex, &size, &ignored) < 0)
			hex[0] = '\0';
		ops_error_release(&ignored);
		sha256 = hex;
	}
	if (size != f->size)
		ops_error_set(err, OPS_EXIT_INTEGRITY,
			      "backup '%s' is damaged: '%s/%s' has %llu bytes, the manifest says %llu", r->set_id,
			      BK_DUMP_DIR, f->name, (unsigned long long)size, (unsigned long long)f->size);
	else if (strcmp(sha256, f->sha256))
		ops_error_set(err, OPS_EXIT_INTEGRITY,
			      "backup '%s' is damaged: the SHA-256 of '%s/%s' does not match the manifest", r->set_id,
			      BK_DUMP_DIR, f->name);
	else
		return 0;
	ops_error_hint(err, "restore from another backup ('opsctl backup list')");
	return 1;
}

/* One table's data: its COPY statement (on each of nconns connections),
 * then the file decompressed straight into them, its size and SHA-256
 * checked against the manifest before any of the COPYs is committed. */
static int copy_table(struct lane *l, PGconn **conns, int nconns, const char *copy_sql, const struct dd_file *f,
		      uint64_t *done, struct ops_error *err)
{
	struct restore_run *r = l->run;
	char *path = xstrfmt("%s/%s", r->src, f->name);
	struct copy_sink cs;
	struct zs_decompress_opts zo;
	struct zs_decompress_stats st;
	long long rows = 0;
	int in = -1, ret = 0, read_all = 0;

	memset(&cs, 0, sizeof(cs));
	memset(&st, 0, sizeof(st));
	strbuf_init(&cs.carry, 0);
	cs.n = nconns;
	cs.stall_ms = r->o->timeout_ms;
	cs.lane = l;
	cs.base = *done;
	for (int i = 0; i < nconns && ret == 0; i++) {
		cs.conns[i] = conns[i];
		ret = db_copy_begin(conns[i], copy_sql, cs.stall_ms, err);
	}
	if (ret == 0) {
		in = open(path, O_RDONLY | O_CLOEXEC);
		if (in < 0)
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "cannot read '%s': %s", path, ops_strerror(errno));
	}
	if (ret == 0) {
		memset(&zo, 0, sizeof(zo));
		zo.in_name = path;
		zo.out_name = r->dbname;
		zo.progress = copy_progress;
		zo.progress_arg = &cs;
		zo.sink = copy_put;
		zo.sink_arg = &cs;
		ret = zs_decompress(in, -1, &zo, &st, err);
		*done += st.in_bytes;
		read_all = ret == 0;
	}
	if (ret == 0 && cs.carry.len) /* a last line without its newline */
		ret = db_copy_put(cs.conns[cs.next], cs.carry.buf, cs.carry.len, cs.stall_ms, err);
	if (ret == 0 && damaged_file(r, f, path, st.in_bytes, st.in_sha256, err))
		ret = -OPS_EXIT_INTEGRITY;
	else if (ret < 0 && err->code != OPS_EXIT_ABORTED && in >= 0 && !read_all &&
		 damaged_file(r, f, path, 0, NULL, err))
		ret = -OPS_EXIT_INTEGRITY;
	for (int i = 0; i < nconns && ret == 0; i++) {
		long long n = 0;
		ret = db_copy_end(conns[i], cs.stall_ms, &n, err);
		rows += n;
	}
	if (ret == 0)
		note_loaded(l, conns[0], copy_sql, rows);
	if (ret < 0 && err->code != OPS_EXIT_INTEGRITY && err->code != OPS_EXIT_ABORTED)
		ops_error_prefix(err, "loading '%s'", path);
	if (in >= 0)
		close(in);
	strbuf_release(&cs.carry);
	free(path);
	return ret;
}

/* A lane: the session settings and COPY statements come from
 * `pg_restore -f - -L LIST` on the placeholders (pg_restore knows the
 * columns, the quoting and the settings its data needs); each statement is
 * run on our connection, each COPY followed by its table's data. */
static void *lane_run(void *arg)
{
	struct lane *l = arg;
	struct restore_run *r = l->run;
	const char *pgr[8];
	struct strbuf script = STRBUF_INIT, sql = STRBUF_INIT;
	struct sql_script parts = SQL_SCRIPT_INIT;
	struct proc_opts po;
	struct proc_result res;
	struct db_target t;
	PGconn *conns[SPLIT_MAX] = { NULL }, *conn = NULL;
	uint64_t done = 0;
	size_t k = 0;
	int ret, n = 0, nconns = l->split > 1 ? l->split : 1;

	db_target_with_dbname(&t, r->o->db, r->dbname);
	pgr[n++] = r->o->pg_restore;
	pgr[n++] = "--format=directory";
	pgr[n++] = "--file=-";
	pgr[n++] = "--use-list";
	pgr[n++] = l->list;
	pgr[n++] = r->work;
	pgr[n] = NULL;
	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)r->env;
	po.timeout_ms = 120000;
	po.out = &script;
	po.capture_max = (size_t)256 << 20;
	ret = proc_run_checked(pgr, &po, &res, &l->err);
	/* psql's backslash commands (\restrict) are for psql, not the server */
	for (char *p = script.buf; ret == 0 && p && *p;) {
		char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
		if (*p != '\\')
			strbuf_add(&sql, p, len);
		p = nl ? nl + 1 : NULL;
	}
	if (ret == 0)
		ret = sql_split(sql.buf, sql.len, &parts, &l->err);
	for (int i = 0; i < nconns && ret == 0; i++)
		ret = db_connect(&conns[i], &t, "opsctl restore", 10000, &l->err);
	conn = conns[0];
	/* all of that while pg_restore makes the tables; the data waits for them */
	pthread_mutex_lock(&r->lock);
	while (!r->schema_done && !atomic_load(&r->stop))
		pthread_cond_wait(&r->changed, &r->lock);
	pthread_mutex_unlock(&r->lock);
	if (ret == 0 && atomic_load(&r->stop))
		ret = ops_error_set(&l->err, OPS_EXIT_ABORTED, "interrupted");
	for (size_t i = 0; ret == 0 && i < parts.nr; i++) {
		const struct sql_stmt *st = &parts.stmts[i];
		char *body;
		if (!st->body_len)
			continue;
		body = xstrndup(sql.buf + st->body_start, st->body_len);
		if (starts_with(body, "COPY ") && ends_with(body, " FROM stdin")) {
			if (k == l->nfiles)
				ret = ops_error_set(&l->err, OPS_EXIT_FAILED,
						    "pg_restore printed more COPY statements than expected");
			else if (k == 0 && nconns > 1) {
				/* the other connections get the session settings that came first */
				for (size_t j = 0; ret == 0 && j < i; j++) {
					const struct sql_stmt *set = &parts.stmts[j];
					char *sb = set->body_len ? xstrndup(sql.buf + set->body_start, set->body_len) : NULL;
					for (int c = 1; sb && c < nconns && ret == 0; c++) {
						PGresult *pr = NULL;
						ret = db_exec(conns[c], sb, 0, NULL, 60000, &pr, &l->err);
						if (pr)
							PQclear(pr);
					}
					free(sb);
				}
				if (ret == 0)
					ret = copy_table(l, conns, nconns, body, l->files[k++], &done, &l->err);
			} else
				ret = copy_table(l, conns, 1, body, l->files[k++], &done, &l->err);
		} else {
			PGresult *pr = NULL;
			ret = db_exec(conn, body, 0, NULL, 60000, &pr, &l->err);
			if (pr)
				PQclear(pr);
		}
		free(body);
		if (atomic_load(&r->stop) && ret == 0)
			ret = ops_error_set(&l->err, OPS_EXIT_ABORTED, "interrupted");
	}
	if (ret == 0 && k != l->nfiles)
		ret = ops_error_set(&l->err, OPS_EXIT_FAILED, "pg_restore printed %zu COPY statements, expected %zu",
				    k, l->nfiles);
	if (ret < 0)
		run_stop(r); /* the other lanes stop too */
	for (int i = 0; i < nconns; i++)
		if (conns[i])
			PQfinish(conns[i]);
	sql_script_release(&parts);
	strbuf_release(&script);
	strbuf_release(&sql);
	db_target_release(&t);
	atomic_store(&l->done, 1);
	if (write(r->wake[1], "", 1) < 0) {
		/* the main thread looks again within 50 ms anyway */
	}
	return NULL;
}

/* The TABLE DATA entries of `pg_restore -l` (their dump ids), and every
 * other line, which becomes the list of the rest of the data. */
static int read_toc(struct restore_run *r, struct strbuf *table_lines, struct strbuf *other_lines,
		    struct ops_error *err)
{
	const char *argv[6] = { r->o->pg_restore, "--format=directory", "--list", r->work, NULL, NULL };
	struct strbuf out = STRBUF_INIT;
	struct proc_opts po;
	struct proc_result res;
	int ret;

	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)r->env;
	po.timeout_ms = 60000;
	po.out = &out;
	po.capture_max = (size_t)256 << 20;
	ret = proc_run_checked(argv, &po, &res, err);
	for (char *p = out.buf; ret == 0 && p && *p;) {
		char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
		unsigned a, b;
		int id, used = 0;
		if (*p != ';' && sscanf(p, "%d; %u %u %n", &id, &a, &b, &used) == 3 && used &&
		    !strncmp(p + used, "TABLE DATA ", 11))
			strbuf_add(table_lines, p, len);
		else
			strbuf_add(other_lines, p, len);
		p = nl ? nl + 1 : NULL;
	}
	strbuf_release(&out);
	return ret;
}

/* The line of table_lines for dump id, or NULL. */
static const char *toc_line(const char *table_lines, int id, size_t *len)
{
	for (const char *p = table_lines; p && *p;) {
		const char *nl = strchr(p, '\n');
		if (atoi(p) == id) {
			*len = nl ? (size_t)(nl - p + 1) : strlen(p);
			return p;
		}
		p = nl ? nl + 1 : NULL;
	}
	return NULL;
}

static int write_list(const char *path, const struct strbuf *sb, struct ops_error *err)
{
	return fs_write_atomic(path, sb->buf, sb->len, 0600, err);
}

static int lane_error_rank(const struct lane *l)
{
	return l->err.code == OPS_EXIT_INTEGRITY ? 2 : l->err.code == OPS_EXIT_ABORTED ? 0 : 1;
}

static int load_directory(const struct bk_entry *e, const struct bk_restore_opts *o, const char *dbname,
			  size_t *checked, struct ops_error *err)
{
	char *src = join(e->path, BK_DUMP_DIR), *jobs = xstrfmt("--jobs=%d", o->jobs > 0 ? o->jobs : 1);
	char *work = NULL, *others_list = NULL;
	struct dd_file *files = xcalloc(e->m.nfiles + 1, sizeof(*files)), *plain = NULL;
	const struct dd_file **tables = xcalloc(e->m.nfiles + 1, sizeof(*tables));
	size_t nfiles = 0, nplain = 0, ntables = 0, plen = strlen(BK_DUMP_DIR "/");
	struct strbuf table_lines = STRBUF_INIT, other_lines = STRBUF_INIT, sb = STRBUF_INIT;
	struct restore_run r;
	struct lane *lanes = NULL;
	char *covered = NULL;         /* per manifest table: its rows were counted by COPY */
	size_t ncovered = 0;
	int nlanes = o->jobs > 0 ? o->jobs : 1, ret;
	uint64_t total = database_bytes(&e->m), need = 64u << 20;

	memset(&r, 0, sizeof(r));
	r.wake[0] = r.wake[1] = -1;
	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.changed, NULL);
	r.o = o;
	r.set_id = e->id;
	r.dbname = dbname;
	r.src = src;
	r.env = db_target_env(o->db, dbname);
	plain = xcalloc(e->m.nfiles + 1, sizeof(*plain));
	for (size_t i = 0; i < e->m.nfiles; i++) {
		const struct bk_file *f = &e->m.files[i];
		const char *name = f->name + plen;
		if (strcmp(f->role, "database") || strncmp(f->name, BK_DUMP_DIR "/", plen))
			continue;
		files[nfiles].name = (char *)name; /* borrowed */
		files[nfiles].size = f->size;
		memcpy(files[nfiles].sha256, f->sha256, 65);
		if (name[0] >= '0' && name[0] <= '9') {
			tables[ntables++] = &files[nfiles];          /* NNNN.dat[.zst|.gz]: a table's data */
		} else {
			plain[nplain++] = files[nfiles];             /* toc.dat, blobs.toc, blob_N.dat */
			need += f->size * 10;
		}
		nfiles++;
	}
	ret = pipe2(r.wake, O_CLOEXEC | O_NONBLOCK) < 0
		? ops_error_set(err, OPS_EXIT_FAILED, "cannot create a pipe: %s", ops_strerror(errno)) : 0;
	if (ret == 0)
		ret = make_work_dir(e, dbname, need, &work, err);
	if (ret < 0)
		goto out;
	r.work = work;
	/* toc.dat and the large objects, which pg_restore reads itself */
	ret = dd_unpack(src, plain, nplain, work, nlanes, err);
	if (ret == 0)
		ret = read_toc(&r, &table_lines, &other_lines, err);
	if (ret < 0)
		goto out;
	/* an empty placeholder for each table's data, and the lanes */
	lanes = xcalloc((size_t)nlanes, sizeof(*lanes));
	for (int i = 0; i < nlanes; i++) {
		lanes[i].run = &r;
		lanes[i].files = xcalloc(ntables + 1, sizeof(*lanes[i].files));
		lanes[i].loaded = xcalloc(ntables + 1, sizeof(*lanes[i].loaded));
		lanes[i].list = xstrfmt("%s/lane-%d.list", work, i);
		ops_error_init(&lanes[i].err);
	}
	qsort(tables, ntables, sizeof(*tables), cmp_file_size_desc);
	for (size_t i = 0; i < ntables; i++) {
		const struct dd_file *f = tables[i];
		char *holder = xstrfmt("%s/%d.dat", work, atoi(f->name));
		struct lane *least = &lanes[0];
		int fd = open(holder, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", holder, ops_strerror(errno));
		else
			close(fd);
		free(holder);
		if (ret < 0)
			goto out;
		if (!toc_line(table_lines.buf, atoi(f->name), &(size_t){ 0 })) {
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s/%s' belongs to no table of the dump's toc.dat",
					    src, f->name);
			goto out;
		}
		for (int k = 1; k < nlanes; k++)
			if (lanes[k].load < least->load)
				least = &lanes[k];
		least->files[least->nfiles++] = f;
		least->load += f->size + 1;
	}
	/* a table that is most of the data would leave the other lanes idle
	 * for most of the load: it goes over as many connections as lanes */
	if (nlanes > 1 && ntables && tables[0]->size > (database_bytes(&e->m) - tables[0]->size))
		lanes[0].split = nlanes < SPLIT_MAX ? nlanes : SPLIT_MAX;
	for (int i = 0; i < nlanes && ret == 0; i++) {
		strbuf_reset(&sb);
		for (size_t k = 0; k < lanes[i].nfiles; k++) {
			size_t len = 0;
			const char *line = toc_line(table_lines.buf, atoi(lanes[i].files[k]->name), &len);
			strbuf_add(&sb, line, len);
		}
		ret = write_list(lanes[i].list, &sb, err);
	}
	others_list = xstrfmt("%s/others.list", work);
	if (ret == 0)
		ret = write_list(others_list, &other_lines, err);
	if (ret < 0)
		goto out;

	/* (1) the tables, while the lanes get their COPY statements and connect */
	for (int i = 0; i < nlanes && ret == 0; i++) {
		sigset_t all, old;
		if (!lanes[i].nfiles)
			continue;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old); /* SIGINT stays ours; EPIPE, not SIGPIPE */
		lanes[i].started = pthread_create(&lanes[i].thread, NULL, lane_run, &lanes[i]) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!lanes[i].started)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot start a restore thread");
	}
	if (ret == 0) {
		const char *argv[] = { o->pg_restore, "--format=directory", "--section=pre-data", "--exit-on-error",
				       "--no-password", "--dbname", dbname, work, NULL };
		ret = restore_step(&r, argv, "schema", err);
	}
	if (ret < 0)
		run_stop(&r);
	else
		run_schema_done(&r);
	/* (2) the data: the tables streamed on the lanes, and meanwhile sequences
	 * and large objects by pg_restore */
	if (ret == 0 && !atomic_load(&r.stop)) {
		const char *argv[] = { o->pg_restore, "--format=directory", "--section=data", "--use-list", others_list,
				       "--exit-on-error", "--no-password", "--dbname", dbname, work, NULL };
		ret = restore_step(&r, argv, "data", err);
		if (ret < 0)
			run_stop(&r);
	}
	for (;;) {
		int running = 0;
		uint64_t done = 0;
		for (int i = 0; i < nlanes; i++) {
			running |= lanes[i].started && !atomic_load(&lanes[i].done);
			done += atomic_load(&lanes[i].bytes);
		}
		if (!running)
			break;
		if (o->progress && o->progress("restore", done, total, o->progress_data) && !atomic_load(&r.stop)) {
			run_stop(&r);
			if (ret == 0)
				ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted");
		}
		{
			struct pollfd pfd = { r.wake[0], POLLIN, 0 };
			char drain[16];
			if (poll(&pfd, 1, 50) > 0 && read(r.wake[0], drain, sizeof(drain)) < 0) {
				/* nothing to do: the lanes' state is what counts */
			}
		}
	}
	{
		/* the cause to report: bad data first, then a lane's own failure, and
		 * only then "interrupted" (the other lanes stop when one fails) */
		const struct lane *bad = NULL;
		for (int i = 0; i < nlanes; i++) {
			if (lanes[i].started)
				pthread_join(lanes[i].thread, NULL);
			lanes[i].started = 0;
			if (lanes[i].err.code && (!bad || lane_error_rank(&lanes[i]) > lane_error_rank(bad)))
				bad = &lanes[i];
		}
		if (bad && (ret == 0 || bad->err.code == OPS_EXIT_INTEGRITY)) {
			ret = ops_error_set(err, bad->err.code, "%s", bad->err.msg.buf);
			if (bad->err.hint.len)
				ops_error_hint(err, "%s", bad->err.hint.buf);
		}
	}
	/* the rows each COPY loaded against the manifest, before the indexes */
	covered = xcalloc(e->m.ntables + 1, 1);
	for (size_t t = 0; ret == 0 && t < e->m.ntables; t++) {
		const struct bk_table *tb = &e->m.tables[t];
		long long rows = 0;
		for (int i = 0; i < nlanes; i++)
			for (size_t k = 0; k < lanes[i].nloaded; k++)
				if (!strcmp(lanes[i].loaded[k].schema, tb->schema) &&
				    !strcmp(lanes[i].loaded[k].name, tb->name)) {
					rows += lanes[i].loaded[k].rows;
					covered[t] = 1;
				}
		if (covered[t] && rows != tb->rows)
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "restored table %s.%s has %lld rows, the backup had %lld",
					    tb->schema, tb->name, rows, tb->rows);
		ncovered += covered[t];
	}
	/* (3) indexes and constraints, in parallel, while the tables no COPY
	 * counted (if any) are counted */
	if (ret == 0) {
		const char *argv[] = { o->pg_restore, "--format=directory", "--section=post-data", jobs, "--exit-on-error",
				       "--no-password", "--dbname", dbname, work, NULL };
		struct count_job cj = { e, o, dbname, covered, 0, OPS_ERROR_INIT, 0 };
		pthread_t counter;
		sigset_t all, old;
		int counting = 0;

		if (ncovered < e->m.ntables) {
			sigfillset(&all);
			pthread_sigmask(SIG_SETMASK, &all, &old);
			counting = pthread_create(&counter, NULL, count_run, &cj) == 0;
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			if (!counting)
				count_run(&cj);
		}
		ret = restore_step(&r, argv, "indexes", err);
		if (counting)
			pthread_join(counter, NULL);
		if (ret == 0 && cj.ret < 0)
			ret = ops_error_set(err, cj.err.code, "%s", cj.err.msg.buf);
		*checked = ncovered + cj.checked;
		ops_error_release(&cj.err);
	}
out:
	run_stop(&r); /* lanes still waiting for the schema give up */
	for (int i = 0; lanes && i < nlanes; i++) {
		if (lanes[i].started)
			pthread_join(lanes[i].thread, NULL);
		for (size_t k = 0; k < lanes[i].nloaded; k++) {
			free(lanes[i].loaded[k].schema);
			free(lanes[i].loaded[k].name);
		}
		free(lanes[i].loaded);
		free(lanes[i].files);
		free(lanes[i].list);
		ops_error_release(&lanes[i].err);
	}
	free(lanes);
	if (work)
		fs_remove_tree(work, NULL);
	db_env_free(r.env);
	strbuf_release(&table_lines);
	strbuf_release(&other_lines);
	strbuf_release(&sb);
	free(files); /* the names were borrowed */
	free(plain);
	free(tables);
	free(others_list);
	free(covered);
	if (r.wake[0] >= 0) {
		close(r.wake[0]);
		close(r.wake[1]);
	}
	pthread_cond_destroy(&r.changed);
	pthread_mutex_destroy(&r.lock);
	free(work);
	free(src);
	free(jobs);
	return ret;
}

/* Feeds the dump into psql or pg_restore (stdin), or, for --jobs, writes
 * the decompressed dump next to the set and lets pg_restore read it. */
static int load_dump(const struct bk_entry *e, const struct bk_restore_opts *o, const char *dbname,
		     int *counted, size_t *checked, struct ops_error *err)
{
	const struct bk_file *f = bk_manifest_file(&e->m, "database");
	char *path = f ? join(e->path, f->name) : NULL, *plain = NULL, *jobs = NULL;
	char **env = db_target_env(o->db, dbname);
	int custom = !strcmp(e->m.format, "custom");
	const char *argv[12];
	struct proc_stream_opts po;
	struct proc_child child = { -1, -1, 0, NULL };
	struct proc_result res;
	struct zs_decompress_opts zo;
	struct zs_decompress_stats zst;
	int in = -1, out_fd = -1, ret = 0, n = 0;

	if (!strcmp(e->m.format, "directory")) {
		ret = load_directory(e, o, dbname, checked, err);
		*counted = 1;
		goto out;
	}
	if (!f) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "backup '%s' has no database dump", e->id);
		goto out;
	}
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "cannot read '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	memset(&zo, 0, sizeof(zo));
	zo.in_name = path;
	zo.progress = on_load;
	zo.progress_arg = (void *)o;
	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)env;
	po.timeout_ms = o->timeout_ms;
	po.capture_max = 64 * 1024;
	if (custom && o->jobs > 1) {
		/* parallel pg_restore needs a seekable file */
		plain = xstrfmt("%s/.restore-%s.dump", e->path, dbname);
		out_fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (out_fd < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", plain, ops_strerror(errno));
			goto out;
		}
		zo.out_name = plain;
		ret = zs_decompress(in, out_fd, &zo, &zst, err);
		if (ret == 0 && strcmp(zst.in_sha256, f->sha256))
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' changed while it was read", path);
		close(out_fd);
		out_fd = -1;
		if (ret < 0)
			goto out;
		jobs = xstrfmt("--jobs=%d", o->jobs);
		argv[n++] = o->pg_restore;
		argv[n++] = "--exit-on-error";
		argv[n++] = "--no-password";
		argv[n++] = jobs;
		argv[n++] = "--dbname";
		argv[n++] = dbname;
		argv[n++] = plain;
		argv[n] = NULL;
		ret = proc_run_checked(argv, &(struct proc_opts){ .env_add = (const char *const *)env,
								 .timeout_ms = o->timeout_ms },
				       &res, err);
		goto out;
	}
	if (custom) {
		argv[n++] = o->pg_restore;
		argv[n++] = "--exit-on-error";
		argv[n++] = "--no-password";
		argv[n++] = "--dbname";
		argv[n++] = dbname;
	} else {
		argv[n++] = o->psql;
		argv[n++] = "-X";
		argv[n++] = "--quiet";
		argv[n++] = "--no-password";
		argv[n++] = "--set=ON_ERROR_STOP=1";
		argv[n++] = "--output=/dev/null";
		argv[n++] = "--dbname";
		argv[n++] = dbname;
	}
	argv[n] = NULL;
	po.pipes = PROC_PIPE_STDIN;
	zo.out_name = argv[0];
	ret = proc_start(argv, &po, &child, err);
	if (ret == 0) {
		ret = zs_decompress(in, child.in_fd, &zo, &zst, err);
		if (ret == 0 && strcmp(zst.in_sha256, f->sha256))
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' changed while it was read", path);
		if (ret < 0 && err->code != OPS_EXIT_INTEGRITY) {
			/* the loader's own failure explains a broken pipe best */
			struct ops_error perr = OPS_ERROR_INIT;
			if (proc_finish(&child, 10000, &res, &perr) < 0)
				ops_error_set(err, perr.code, "%s", perr.msg.buf);
			ops_error_release(&perr);
		} else if (ret == 0) {
			ret = proc_finish(&child, 0, &res, err);
		}
	}
out:
	proc_kill(&child);
	if (in >= 0)
		close(in);
	if (out_fd >= 0)
		close(out_fd);
	if (plain)
		unlink(plain);
	db_env_free(env);
	free(plain);
	free(jobs);
	free(path);
	return ret;
}

/* The row counts of the restored tables, on up to `jobs` connections at
 * once (the biggest tables first), against the manifest. */
struct count_work {
	const struct bk_entry *e;
	struct db_target t;
	size_t *order;          /* table indexes, most rows first */
	size_t norder;
	size_t next;            /* under lock */
	size_t checked;
	pthread_mutex_t lock;
	struct ops_error err;   /* the first failure, under lock */
};

static void count_fail(struct count_work *w, const struct ops_error *e)
{
	pthread_mutex_lock(&w->lock);
	if (!w->err.code)
		ops_error_set(&w->err, e->code, "%s", e->msg.buf);
	w->next = w->norder; /* the others stop */
	pthread_mutex_unlock(&w->lock);
}

static void *count_worker(void *arg)
{
	struct count_work *w = arg;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sql = STRBUF_INIT;
	PGconn *conn = NULL;

	if (db_connect(&conn, &w->t, "opsctl restore", 10000, &err) < 0) {
		count_fail(w, &err);
		goto out;
	}
	for (;;) {
		const struct bk_table *tb;
		char *qs, *qn;
		PGresult *res = NULL;
		int ret;

		pthread_mutex_lock(&w->lock);
		tb = w->next < w->norder ? &w->e->m.tables[w->order[w->next++]] : NULL;
		pthread_mutex_unlock(&w->lock);
		if (!tb)
			break;
		qs = quote_ident(conn, tb->schema);
		qn = quote_ident(conn, tb->name);
		strbuf_reset(&sql);
		strbuf_addf(&sql, "SELECT count(*) FROM ONLY %s.%s", qs, qn);
		ret = db_exec(conn, sql.buf, 0, NULL, 0, &res, &err);
		if (ret == 0 && atoll(PQgetvalue(res, 0, 0)) != tb->rows)
			ret = ops_error_set(&err, OPS_EXIT_INTEGRITY,
					    "restored table %s.%s has %s rows, the backup had %lld", tb->schema,
					    tb->name, PQgetvalue(res, 0, 0), tb->rows);
		else if (ret < 0)
			ops_error_prefix(&err, "checking %s.%s", tb->schema, tb->name);
		if (res)
			PQclear(res);
		free(qs);
		free(qn);
		if (ret < 0) {
			count_fail(w, &err);
			break;
		}
		pthread_mutex_lock(&w->lock);
		w->checked++;
		pthread_mutex_unlock(&w->lock);
	}
out:
	if (conn)
		PQfinish(conn);
	ops_error_release(&err);
	strbuf_release(&sql);
	return NULL;
}

static int cmp_rows_desc(const void *a, const void *b, void *arg)
{
	const struct bk_table *t = arg;
	long long x = t[*(const size_t *)a].rows, y = t[*(const size_t *)b].rows;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* skip (may be NULL): per manifest table, 1 when it is already checked. */
static int compare_rows(const struct bk_entry *e, const struct db_target *db, const char *dbname, int jobs,
			const char *skip, size_t *checked, struct ops_error *err)
{
	struct count_work w;
	pthread_t *threads;
	int n = jobs < 1 ? 1 : jobs, started = 0, ret = 0;

	memset(&w, 0, sizeof(w));
	w.e = e;
	db_target_with_dbname(&w.t, db, dbname);
	pthread_mutex_init(&w.lock, NULL);
	ops_error_init(&w.err);
	w.order = xcalloc(e->m.ntables + 1, sizeof(*w.order));
	for (size_t i = 0; i < e->m.ntables; i++)
		if (!skip || !skip[i])
			w.order[w.norder++] = i;
	qsort_r(w.order, w.norder, sizeof(*w.order), cmp_rows_desc, e->m.tables);
	if ((size_t)n > w.norder)
		n = w.norder ? (int)w.norder : 1;
	threads = xcalloc((size_t)n, sizeof(*threads));
	for (int i = 0; i < n; i++) {
		if (pthread_create(&threads[i], NULL, count_worker, &w) != 0)
			break;
		started++;
	}
	if (!started)
		count_worker(&w);
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (w.err.code)
		ret = ops_error_set(err, w.err.code, "%s", w.err.msg.buf);
	*checked = w.checked;
	free(threads);
	free(w.order);
	ops_error_release(&w.err);
	pthread_mutex_destroy(&w.lock);
	db_target_release(&w.t);
	return ret;
}

static int run_service(const char *cmd, const char *what, struct ops_error *err)
{
	struct proc_result res;
	struct proc_opts po;
	int ret;
	if (!cmd || !*cmd)
		return 0;
	memset(&po, 0, sizeof(po));
	po.timeout_ms = 120000;
	ret = proc_run_shell_checked(cmd, &po, &res, err);
	if (ret < 0)
		ops_error_prefix(err, "cannot %s the service", what);
	return ret;
}

/* Renames live away and fresh into its place; sessions still on live are
 * ended (the service is stopped first). */
/* The tests' SIGKILL at an exact point (OPSCTL_TEST_KILL_AT, as in deploy
 * and rotate-secret): "restore-created" right after CREATE DATABASE (before
 * the comment), "restore-swap" between the two renames, inside their
 * transaction. */
static void restore_test_kill_at(const char *point)
{
	const char *at = getenv("OPSCTL_TEST_KILL_AT");
	if (at && !strcmp(at, point))
		raise(SIGKILL);
}

/* Renames live -> aside and fresh -> live in one transaction (ALTER
 * DATABASE ... RENAME is transactional), and clears fresh's in-progress
 * marker: a kill or a lost connection at any moment leaves either the old
 * or the new database as LIVE, never none. */
static int swap_databases(PGconn *admin, const char *live, const char *fresh, const char *aside,
			  int *moved_aside, struct ops_error *err)
{
	char *ql = quote_ident(admin, live), *qf = quote_ident(admin, fresh), *qa = quote_ident(admin, aside);
	struct strbuf sql = STRBUF_INIT;
	const char *params[1] = { live };
	int ret = 0, exists = 0, aside_failed = 0;

	ret = database_exists(admin, live, &exists, err);
	if (ret < 0)
		goto out;
	for (int attempt = 0; attempt < 20; attempt++) {
		if (attempt)
			clock_sleep_ms(250); /* a client reconnected between the two */
		if (exists) {
			PGresult *res = NULL;
			ret = db_exec(admin,
				      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
				      "WHERE datname = $1 AND pid <> pg_backend_pid()",
				      1, params, 10000, &res, err);
			if (res)
				PQclear(res);
			if (ret < 0)
				goto out;
		}
		ret = admin_exec(admin, "BEGIN", err);
		if (ret < 0)
			goto out;
		aside_failed = 0;
		if (exists) {
			strbuf_reset(&sql);
			strbuf_addf(&sql, "ALTER DATABASE %s RENAME TO %s", ql, qa);
			ret = admin_exec(admin, sql.buf, err);
			aside_failed = ret < 0;
			if (ret == 0)
				restore_test_kill_at("restore-swap");
		}
		if (ret == 0) {
			strbuf_reset(&sql);
			strbuf_addf(&sql, "ALTER DATABASE %s RENAME TO %s", qf, ql);
			ret = admin_exec(admin, sql.buf, err);
		}
		if (ret == 0) {
			strbuf_reset(&sql);
			strbuf_addf(&sql, "COMMENT ON DATABASE %s IS NULL", ql);
			ret = admin_exec(admin, sql.buf, err);
		}
		if (ret == 0) {
			strbuf_reset(&sql);
			strbuf_addf(&sql, "ALTER DATABASE %s CONNECTION LIMIT -1", ql);
			ret = admin_exec(admin, sql.buf, err);
		}
		if (ret == 0)
			ret = admin_exec(admin, "COMMIT", err);
		if (ret == 0)
			break;
		admin_exec(admin, "ROLLBACK", NULL); /* both names as they were */
		if (!aside_failed)
			break; /* only a reconnecting client is worth another try */
	}
	if (ret < 0) {
		if (aside_failed)
			ops_error_prefix(err, "cannot move the live database aside");
		goto out;
	}
	*moved_aside = exists;
out:
	free(ql);
	free(qf);
	free(qa);
	strbuf_release(&sql);
	return ret;
}

/* A database that bk_restore creates carries this mark until it is swapped
 * in (or dropped): CONNECTION LIMIT RESTORE_CONNLIMIT, given in CREATE
 * DATABASE itself (so no kill can come between the two; the limit is far
 * above any max_connections), and, for whoever looks, this comment. One
 * still marked was left by a restore that was killed, and the next restore
 * (holding the backup lock, so never one in progress) drops it. */
#define RESTORE_MARKER "opsctl: restore in progress (a database left by a killed restore is dropped by the next one)"
#define RESTORE_CONNLIMIT 999999

static void mark_in_progress(PGconn *admin, const char *qname)
{
	struct strbuf sql = STRBUF_INIT;
	char *lit = PQescapeLiteral(admin, RESTORE_MARKER, strlen(RESTORE_MARKER));
	if (lit) {
		strbuf_addf(&sql, "COMMENT ON DATABASE %s IS %s", qname, lit);
		admin_exec(admin, sql.buf, NULL); /* best effort: unmarked, it is only left behind */
		PQfreemem(lit);
	}
	strbuf_release(&sql);
}

/* Drops the databases of LIVE's killed restores (LIVE_restore_*) and of
 * killed restore tests (opsctl_restore_test_*) that still carry the marker. */
static int drop_left_behind(PGconn *admin, const char *live, struct ops_error *err)
{
	char limit[16];
	const char *params[3] = { RESTORE_MARKER, live, limit };
	PGresult *res = NULL;
	int ret;

	snprintf(limit, sizeof(limit), "%d", RESTORE_CONNLIMIT);
	ret = db_exec(admin,
			  "SELECT datname FROM pg_database "
			  "WHERE (shobj_description(oid, 'pg_database') = $1 OR datconnlimit = $3::int) "
			  "AND (left(datname, length($2) + 9) = $2 || '_restore_' "
			  "OR datname LIKE 'opsctl\\_restore\\_test\\_%')",
			  3, params, 10000, &res, err);
	for (int i = 0; ret == 0 && i < PQntuples(res); i++) {
		char *q = quote_ident(admin, PQgetvalue(res, i, 0));
		struct strbuf sql = STRBUF_INIT;
		strbuf_addf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", q);
		ret = admin_exec(admin, sql.buf, err);
		if (ret < 0)
			ops_error_prefix(err, "cannot drop database '%s' left by a killed restore", PQgetvalue(res, i, 0));
		strbuf_release(&sql);
		free(q);
	}
	if (res)
		PQclear(res);
	return ret;
}

static int connect_admin(const struct db_target *db, const char *live, PGconn **admin,
			 struct ops_error *err)
{
	/* the maintenance database of the same server, as the same user; never
	 * the live one, which is renamed while we are connected */
	struct db_target t;
	int ret;

	db_target_with_dbname(&t, db, strcmp(live, "postgres") ? "postgres" : "template1");
	ret = db_connect(admin, &t, "opsctl restore", 10000, err);
	db_target_release(&t);
	return ret;
}

int bk_restore(const struct bk_entry *e, const struct bk_restore_opts *o, struct bk_restore_result *r,
	       struct ops_error *err)
{
	PGconn *admin = NULL;
	char *live = db_target_dbname(o->db), *fresh = NULL, *aside = NULL, *qfresh = NULL, *owner = NULL;
	char stamp[32];
	struct strbuf sql = STRBUF_INIT;
	int64_t start = clock_now_ms();
	time_t now = time(NULL);
	struct tm tm;
	int ret, exists = 0, created = 0, stopped = 0, counted = 0;

	memset(r, 0, sizeof(*r));
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
	ret = o->verified ? 0 : bk_verify_before_restore(e, err);
	if (ret < 0)
		goto out;
	fresh = o->scratch_db ? xstrdup(o->scratch_db)
		: o->target_db ? xstrdup(o->target_db) : xstrfmt("%s_restore_%s", live, stamp);
	aside = xstrfmt("%s_pre_restore_%s", live, stamp);
	ret = connect_admin(o->db, live, &admin, err);
	if (ret < 0)
		goto out;
	ret = drop_left_behind(admin, live, err);
	if (ret < 0)
		goto out;
	ret = database_exists(admin, fresh, &exists, err);
	if (ret == 0 && exists)
		ret = ops_error_set(err, OPS_EXIT_USAGE, "database '%s' already exists", fresh);
	for (int i = 2; ret == 0 && !o->scratch_db && !o->target_db; i++) {
		/* a second restore within the same second keeps the first one's aside too */
		int taken = 0;
		if ((ret = database_exists(admin, aside, &taken, err)) < 0 || !taken)
			break;
		free(aside);
		aside = xstrfmt("%s_pre_restore_%s_%d", live, stamp, i);
	}
	if (ret < 0)
		goto out;
	{
		/* the new database belongs to whoever owns the live one */
		const char *params[1] = { live };
		PGresult *res = NULL;
		if (db_exec(admin, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", 1, params,
			    10000, &res, NULL) == 0 && PQntuples(res) == 1)
			owner = quote_ident(admin, PQgetvalue(res, 0, 0));
		if (res)
			PQclear(res);
	}
	qfresh = quote_ident(admin, fresh);
	strbuf_addf(&sql, "CREATE DATABASE %s TEMPLATE template0%s%s", qfresh, owner ? " OWNER " : "",
		    owner ? owner : "");
	if (!o->target_db)
		strbuf_addf(&sql, " CONNECTION LIMIT %d", RESTORE_CONNLIMIT); /* the in-progress mark */
	if (o->progress)
		o->progress("create", 0, 0, o->progress_data);
	ret = admin_exec(admin, sql.buf, err);
	if (ret < 0)
		goto out;
	created = 1;
	restore_test_kill_at("restore-created");
	if (!o->target_db)
		mark_in_progress(admin, qfresh);
	if (o->progress)
		o->progress("load", 0, database_bytes(&e->m), o->progress_data);
	ret = load_dump(e, o, fresh, &counted, &r->tables_checked, err);
	if (ret == 0 && !counted) {
		if (o->progress)
			o->progress("check", 0, e->m.ntables, o->progress_data);
		ret = compare_rows(e, o->db, fresh, o->jobs, NULL, &r->tables_checked, err);
	}
	if (ret < 0 || o->scratch_db || o->target_db)
		goto out;
	/* the swap: only now is the live database touched */
	ret = run_service(o->stop_cmd, "stop", err);
	if (ret < 0)
		goto out;
	stopped = 1;
	if (o->progress)
		o->progress("swap", 0, 0, o->progress_data);
	{
		int moved = 0;
		ret = swap_databases(admin, live, fresh, aside, &moved, err);
		if (ret < 0)
			goto out;
		if (moved)
			r->previous_as = xstrdup(aside);
	}
	created = 0; /* it is the live database now */
out:
	if (stopped) {
		struct ops_error serr = OPS_ERROR_INIT;
		/* started again whatever happened: the old or the new data is in place */
		if (run_service(o->start_cmd, "start", &serr) < 0 && ret == 0)
			ret = ops_error_set(err, serr.code, "%s", serr.msg.buf);
		ops_error_release(&serr);
	}
	if (admin && created && (ret < 0 || o->scratch_db)) {
		strbuf_reset(&sql);
		strbuf_addf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", qfresh);
		/* the server restarted under us (the admin session is gone): connect
		 * again once it is back (up to 10s), or the half-built database
		 * stays until the next restore drops it */
		if (admin_exec(admin, sql.buf, NULL) < 0 && PQstatus(admin) == CONNECTION_BAD) {
			int64_t until = clock_now_ms() + 10000;
			int dropped = 0;
			while (!dropped && clock_now_ms() < until) {
				PGconn *again = NULL;
				struct ops_error cerr = OPS_ERROR_INIT;
				if (connect_admin(o->db, live, &again, &cerr) == 0) {
					PQfinish(admin);
					admin = again;
					dropped = admin_exec(admin, sql.buf, NULL) == 0;
				}
				ops_error_release(&cerr);
				if (!dropped)
					clock_sleep_ms(250);
			}
			if (!dropped && ret < 0 && !err->hint.len)
				ops_error_hint(err, "the half-built database '%s' could not be dropped; the next restore "
					       "drops it", fresh);
		}
	}
	if (ret == 0) {
		r->restored_as = xstrdup(o->scratch_db || o->target_db ? fresh : live);
		r->duration_ms = clock_now_ms() - start;
	}
	if (admin)
		PQfinish(admin);
	free(live);
	free(fresh);
	free(aside);
	free(qfresh);
	free(owner);
	strbuf_release(&sql);
	return ret;
}

int bk_restore_files(const struct bk_entry *e, const char *stamp, struct ops_error *err)
{
	const struct bk_file *f = bk_manifest_file(&e->m, "paths");
	char *archive = NULL, *staging = NULL;
	struct arch_extract_opts xo;
	struct arch_stats st;
	int ret = 0;

	if (!f)
		return ops_error_set(err, OPS_EXIT_USAGE, "backup '%s' has no files archive", e->id);
	archive = join(e->path, f->name);
	memset(&xo, 0, sizeof(xo));
	xo.preserve_owner = 1;
	for (size_t i = 0; i < e->m.npaths && ret == 0; i++) {
		const char *p = e->m.paths[i];
		const char *slash = strrchr(p, '/');
		char *parent = slash && slash != p ? xstrndup(p, (size_t)(slash - p)) : xstrdup("/");
		char *inside = NULL, *old = NULL;
		free(staging);
		/* staged beside the path, so the swap is a rename on one filesystem */
		staging = xstrfmt("%s/.opsctl-restore-%s", parent, stamp);
		ret = fs_remove_tree(staging, err);
		if (ret == 0 && fs_mkdir_p(staging, 0700, err) < 0)
			ret = -err->code;
		if (ret == 0)
			ret = arch_extract(archive, staging, &xo, &st, err);
		inside = xstrfmt("%s/%s", staging, p[0] == '/' ? p + 1 : p);
		if (ret == 0 && !fs_exists(inside))
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "the files archive has no '%s'", p);
		old = xstrfmt("%s.pre_restore_%s", p, stamp);
		if (ret == 0 && fs_exists(p) && rename(p, old) < 0)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot move '%s' aside: %s", p, ops_strerror(errno));
		if (ret == 0 && rename(inside, p) < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot put '%s' in place: %s", p, ops_strerror(errno));
			rename(old, p);
		}
		fs_remove_tree(staging, NULL);
		free(parent);
		free(inside);
		free(old);
	}
	free(archive);
	free(staging);
	return ret;
}
