/* Versioned SQL migrations: scan, read history, lock, plan, apply, undo. */
#include "engines/migrate.h"
#include "system/clock.h"
#include "adapters/db.h"
#include "adapters/hash.h"
#include "base/exitcode.h"
#include "base/sqlsplit.h"
#include "system/fs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NO_TX_MARK "-- opsctl:no-transaction"
#define BASELINE_MARK "baseline"

/* "app.schema_migrations" -> "app"."schema_migrations" (each part escaped). */
static char *quote_table(PGconn *conn, const char *table, const char *suffix)
{
	struct strbuf sb = STRBUF_INIT, part = STRBUF_INIT;
	const char *p = table;
	while (*p) {
		size_t n = strcspn(p, ".");
		char *q;
		strbuf_reset(&part);
		strbuf_add(&part, p, n);
		p += n;
		if (!*p && suffix)
			strbuf_addstr(&part, suffix);
		q = PQescapeIdentifier(conn, part.buf, part.len);
		if (sb.len)
			strbuf_addch(&sb, '.');
		strbuf_addstr(&sb, q ? q : "\"\"");
		PQfreemem(q);
		if (*p == '.')
			p++;
	}
	strbuf_release(&part);
	return strbuf_detach(&sb, NULL);
}

void mig_init(struct mig *m, const char *dir, const char *table, int64_t lock_timeout_ms)
{
	memset(m, 0, sizeof(*m));
	m->dir = xstrdup(dir);
	m->table = xstrdup(table);
	m->lock_timeout_ms = lock_timeout_ms;
}

static void free_applied(struct mig *m)
{
	for (size_t i = 0; i < m->napplied; i++) {
		free(m->applied[i].version);
		free(m->applied[i].script_name);
		free(m->applied[i].checksum);
		free(m->applied[i].executed_at);
		free(m->applied[i].applied_by);
	}
	free(m->applied);
	m->applied = NULL;
	m->napplied = 0;
	for (size_t i = 0; i < m->npartials; i++) {
		free(m->partials[i].version);
		free(m->partials[i].checksum);
	}
	free(m->partials);
	m->partials = NULL;
	m->npartials = 0;
	free(m->rows);
	m->rows = NULL;
	m->nrows = 0;
}

void mig_release(struct mig *m)
{
	mig_unlock(m);
	for (size_t i = 0; i < m->nfiles; i++) {
		free(m->files[i].version);
		free(m->files[i].name);
		free(m->files[i].script_name);
		free(m->files[i].path);
		free(m->files[i].down_path);
	}
	free(m->files);
	for (size_t i = 0; i < m->nignored; i++)
		free(m->ignored[i]);
	free(m->ignored);
	free_applied(m);
	for (size_t i = 0; i < m->ndone; i++) {
		free(m->done[i].version);
		free(m->done[i].script_name);
	}
	free(m->done);
	free(m->dir);
	free(m->table);
	free(m->applied_by);
	free(m->qtable);
	free(m->qprogress);
	memset(m, 0, sizeof(*m));
}

const char *mig_state_name(enum mig_state s)
{
	switch (s) {
	case MIG_APPLIED: return "applied";
	case MIG_PENDING: return "pending";
	case MIG_CHANGED: return "changed";
	case MIG_MISSING: return "missing";
	case MIG_PARTIAL: return "partial";
	case MIG_OUT_OF_ORDER: return "out-of-order";
	}
	return "unknown";
}

size_t mig_count(const struct mig *m, enum mig_state s)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nrows; i++)
		if (m->rows[i].state == s)
			n++;
	return n;
}

int mig_parse_version(const char *s, uint64_t *out, struct ops_error *err)
{
	uint64_t v = 0;
	const char *p = s;
	if (!*p)
		goto bad;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p) || v > (UINT64_MAX - 9) / 10)
			goto bad;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	return 0;
bad:
	return ops_error_set(err, OPS_EXIT_USAGE, "invalid version '%s' (expected the number before '_' in a file name)", s);
}

void mig_checksum(const char *text, size_t len, char hex[65])
{
	struct hash_sha256_ctx ctx = HASH_SHA256_CTX_INIT;
	unsigned char bin[32];
	size_t start = 0;

	hash_sha256_init(&ctx);
	for (size_t i = 0; i < len; i++) {
		if (text[i] != '\r')
			continue;
		hash_sha256_update(&ctx, text + start, i - start);
		if (i + 1 >= len || text[i + 1] != '\n')
			hash_sha256_update(&ctx, "\n", 1); /* a lone CR is a line end too */
		start = i + 1;
	}
	hash_sha256_update(&ctx, text + start, len - start);
	hash_sha256_final(&ctx, bin);
	hash_sha256_release(&ctx);
	hash_hex(bin, sizeof(bin), hex);
}

/* Offset of the first invalid UTF-8 sequence, or len when valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0) {
			n = 1;
			cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2;
			cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return i;
		}
		if (i + n >= len)
			return i; /* truncated sequence at the end */
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += n + 1;
	}
	return len;
}

int mig_read_file(const char *path, struct strbuf *out, struct ops_error *err)
{
	size_t bad;
	int ret;

	strbuf_reset(out);
	ret = fs_read_file(path, out, 0, err);
	if (ret < 0)
		return ops_error_set(err, OPS_EXIT_CONFIG, "%s", err->msg.buf);
	bad = utf8_invalid_at((const unsigned char *)out->buf, out->len);
	if (bad < out->len)
		return ops_error_set(err, OPS_EXIT_CONFIG, "%s:%d: not valid UTF-8 (byte %zu)", path,
				     sql_line_at(out->buf, out->len, bad), bad + 1);
	return 0;
}

/* ---- scanning ---- */

/* NNN_name.sql -> number and name; 0 when the name does not fit. */
int mig_parse_name(const char *fname, const char *suffix, char **version, uint64_t *number,
		   char **name)
{
	size_t digits = strspn(fname, "0123456789");
	size_t flen = strlen(fname), slen = strlen(suffix);
	uint64_t v = 0;

	if (!digits || fname[digits] != '_' || flen <= digits + 1 + slen || !ends_with(fname, suffix))
		return 0;
	if (digits > 19)
		return 0;
	for (size_t i = 0; i < digits; i++)
		v = v * 10 + (uint64_t)(fname[i] - '0');
	*version = xstrndup(fname, digits);
	*number = v;
	*name = xstrndup(fname + digits + 1, flen - digits - 1 - slen);
	return 1;
}

static int cmp_file(const void *a, const void *b)
{
	const struct mig_file *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	return xstrfmt("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

static int scan_downs(struct mig *m, struct ops_error *err)
{
	char *rdir = path_join(m->dir, "rollback");
	DIR *d = opendir(rdir);
	struct dirent *de;
	int ret = 0;
	const size_t nsorted = m->nfiles;

	if (!d)
		goto out;
	while ((de = readdir(d))) {
		char *version = NULL, *name = NULL;
		uint64_t number;
		struct mig_file *f = NULL;
		if (!mig_parse_name(de->d_name, ".down.sql", &version, &number, &name))
			continue;
		{	/* m->files[0..nsorted) is sorted by number (mig_scan): binary search */
			size_t lo = 0, hi = nsorted;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (m->files[mid].number < number)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < nsorted && m->files[lo].number == number)
				f = &m->files[lo];
			else
				for (size_t i = nsorted; i < m->nfiles; i++)  /* orphan down files, few */
					if (m->files[i].number == number)
						f = &m->files[i];
		}
		if (f && f->down_path) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG, "two down files for version %s: '%s' and '%s/%s'",
					    version, f->down_path, rdir, de->d_name);
		} else if (f) {
			f->down_path = path_join(rdir, de->d_name);
		} else {
			/* a down file whose up file is gone: keep it for undoing */
			m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
			f = &m->files[m->nfiles++];
			memset(f, 0, sizeof(*f));
			f->version = version;
			f->number = number;
			f->name = name;
			f->down_path = path_join(rdir, de->d_name);
			version = name = NULL;
		}
		free(version);
		free(name);
		if (ret < 0)
			break;
	}
	closedir(d);
out:
	free(rdir);
	return ret;
}

int mig_scan(struct mig *m, struct ops_error *err)
{
	DIR *d = opendir(m->dir);
	struct dirent *de;
	struct strbuf text = STRBUF_INIT;
	int ret = 0;

	if (!d) {
		if (errno == ENOENT)
			return 0;
		return ops_error_set(err, OPS_EXIT_CONFIG, "cannot read migrations directory '%s': %s", m->dir,
				     ops_strerror(errno));
	}
	while ((de = readdir(d))) {
		struct mig_file f;
		memset(&f, 0, sizeof(f));
		if (ends_with(de->d_name, ".down.sql") || !ends_with(de->d_name, ".sql"))
			continue;
		if (!mig_parse_name(de->d_name, ".sql", &f.version, &f.number, &f.name)) {
			/* a typo in a name would otherwise mean a migration that never runs */
			m->ignored = xrealloc(m->ignored, (m->nignored + 1) * sizeof(*m->ignored));
			m->ignored[m->nignored++] = path_join(m->dir, de->d_name);
			continue;
		}
		f.script_name = xstrdup(de->d_name);
		f.path = path_join(m->dir, de->d_name);
		m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
		m->files[m->nfiles++] = f;
	}
	closedir(d);
	if (m->nfiles)
		qsort(m->files, m->nfiles, sizeof(*m->files), cmp_file);
	for (size_t i = 1; i < m->nfiles; i++)
		if (m->files[i].number == m->files[i - 1].number) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG, "two migrations with version %llu: '%s' and '%s'",
					    (unsigned long long)m->files[i].number, m->files[i - 1].path,
					    m->files[i].path);
			ops_error_hint(err, "give one of them the next free number ('opsctl migrate new' picks it)");
			goto out;
		}
	for (size_t i = 0; i < m->nfiles; i++) {
		ret = mig_read_file(m->files[i].path, &text, err);
		if (ret < 0)
			goto out;
		mig_checksum(text.buf, text.len, m->files[i].checksum);
	}
	ret = scan_downs(m, err);
	if (ret < 0 || !m->nfiles)
		goto out;
	qsort(m->files, m->nfiles, sizeof(*m->files), cmp_file);
out:
	strbuf_release(&text);
	return ret;
}

/* ---- history ---- */

static int cmp_row(const void *a, const void *b)
{
	const struct mig_row *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

static const struct mig_file *file_by_number(const struct mig *m, uint64_t n)
{
	size_t lo = 0, hi = m->nfiles;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->files[mid].number < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* files whose only file is a down file have no path: they are not up files */
	if (lo < m->nfiles && m->files[lo].number == n && m->files[lo].path)
		return &m->files[lo];
	return NULL;
}

static void build_rows(struct mig *m)
{
	uint64_t max_applied = 0;
	size_t n = 0;

	free(m->rows);
	m->rows = xcalloc(m->nfiles + m->napplied + 1, sizeof(*m->rows));
	for (size_t i = 0; i < m->napplied; i++)
		if (m->applied[i].number > max_applied)
			max_applied = m->applied[i].number;
	unsigned char *has_row = xcalloc(m->nfiles + 1, 1); /* files with a row: no second search */
	for (size_t i = 0; i < m->napplied; i++) {
		struct mig_row *r = &m->rows[n++];
		const struct mig_applied *a = &m->applied[i];
		r->number = a->number;
		r->applied = a;
		r->file = file_by_number(m, a->number);
		if (r->file)
			has_row[r->file - m->files] = 1;
		if (!r->file)
			r->state = a->checksum && !strcmp(a->checksum, BASELINE_MARK) ? MIG_APPLIED : MIG_MISSING;
		else if (a->checksum && strcmp(a->checksum, r->file->checksum) && strcmp(a->checksum, BASELINE_MARK))
			r->state = MIG_CHANGED;
		else
			r->state = MIG_APPLIED;
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct mig_file *f = &m->files[i];
		struct mig_row *r;
		if (!f->path || has_row[i])
			continue;
		r = &m->rows[n++];
		r->number = f->number;
		r->file = f;
		for (size_t k = 0; k < m->npartials; k++)
			if (m->partials[k].number == f->number)
				r->partial = &m->partials[k];
		r->state = r->partial ? MIG_PARTIAL : f->number < max_applied ? MIG_OUT_OF_ORDER : MIG_PENDING;
	}
	free(has_row);
	qsort(m->rows, n, sizeof(*m->rows), cmp_row);
	m->nrows = n;
}

static char *dup_value(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

static int read_history(struct mig *m, struct ops_error *err)
{
	const char *params[2];
	PGresult *res = NULL;
	struct strbuf sql = STRBUF_INIT;
	int has_checksum, has_progress, ret;

	free_applied(m);
	params[0] = m->qtable;
	params[1] = m->qprogress;
	ret = db_exec(m->conn,
		      "SELECT to_regclass($1) IS NOT NULL, "
		      "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) "
		      "AND attname = 'checksum' AND NOT attisdropped), to_regclass($2) IS NOT NULL",
		      2, params, 30000, &res, err);
	if (ret < 0)
		goto out;
	m->table_exists = !strcmp(PQgetvalue(res, 0, 0), "t");
	has_checksum = !strcmp(PQgetvalue(res, 0, 1), "t");
	m->table_extended = has_checksum;
	has_progress = !strcmp(PQgetvalue(res, 0, 2), "t");
	PQclear(res);
	res = NULL;
	if (!m->table_exists)
		goto rows;
	strbuf_addf(&sql,
		    "SELECT id, version, script_name, %s, "
		    "to_char(executed_at, 'YYYY-MM-DD\"T\"HH24:MI:SS'), %s, %s FROM %s ORDER BY id",
		    has_checksum ? "checksum" : "NULL", has_checksum ? "execution_ms" : "NULL",
		    has_checksum ? "applied_by" : "NULL", m->qtable);
	ret = db_exec(m->conn, sql.buf, 0, NULL, 60000, &res, err);
	if (ret < 0)
		goto out;
	m->napplied = (size_t)PQntuples(res);
	m->applied = xcalloc(m->napplied + 1, sizeof(*m->applied));
	for (int i = 0; i < PQntuples(res); i++) {
		struct mig_applied *a = &m->applied[i];
		struct ops_error verr = OPS_ERROR_INIT;
		a->id = atol(PQgetvalue(res, i, 0));
		a->version = xstrdup(PQgetvalue(res, i, 1));
		if (mig_parse_version(a->version, &a->number, &verr) < 0) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG, "%s has a row with version '%s', which is not a number",
					    m->table, a->version);
			ops_error_release(&verr);
			goto out;
		}
		ops_error_release(&verr);
		a->script_name = xstrdup(PQgetvalue(res, i, 2));
		a->checksum = dup_value(res, i, 3);
		a->executed_at = dup_value(res, i, 4);
		a->execution_ms = PQgetisnull(res, i, 5) ? -1 : atol(PQgetvalue(res, i, 5));
		a->applied_by = dup_value(res, i, 6);
	}
	PQclear(res);
	res = NULL;
	if (has_progress) {
		strbuf_reset(&sql);
		strbuf_addf(&sql, "SELECT version, checksum, statements_done, statements_total FROM %s", m->qprogress);
		ret = db_exec(m->conn, sql.buf, 0, NULL, 30000, &res, err);
		if (ret < 0)
			goto out;
		m->npartials = (size_t)PQntuples(res);
		m->partials = xcalloc(m->npartials + 1, sizeof(*m->partials));
		for (int i = 0; i < PQntuples(res); i++) {
			struct mig_partial *p = &m->partials[i];
			p->version = xstrdup(PQgetvalue(res, i, 0));
			mig_parse_version(p->version, &p->number, NULL);
			p->checksum = xstrdup(PQgetvalue(res, i, 1));
			p->done = atol(PQgetvalue(res, i, 2));
			p->total = atol(PQgetvalue(res, i, 3));
		}
	}
rows:
	build_rows(m);
	ret = 0;
out:
	if (res)
		PQclear(res);
	strbuf_release(&sql);
	if (ret < 0)
		ops_error_prefix(err, "cannot read the migration history");
	return ret;
}

/* The schema the table lives in (or would be created in), so that a
 * migration changing search_path cannot redirect the bookkeeping, and two
 * spellings of one table share one lock. */
static int qualify_table(struct mig *m, char **qualified, struct ops_error *err)
{
	char *q = quote_table(m->conn, m->table, NULL);
	const char *params[1] = { q };
	PGresult *res = NULL;
	int ret;

	if (strchr(m->table, '.')) {
		*qualified = xstrdup(m->table);
		free(q);
		return 0;
	}
	ret = db_exec(m->conn,
		      "SELECT coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
		      "WHERE c.oid = to_regclass($1)), current_schema())",
		      1, params, 30000, &res, err);
	if (ret == 0)
		*qualified = xstrfmt("%s.%s", PQgetvalue(res, 0, 0), m->table);
	if (res)
		PQclear(res);
	free(q);
	return ret;
}

int mig_attach(struct mig *m, PGconn *conn, struct ops_error *err)
{
	unsigned char bin[32];
	struct strbuf key = STRBUF_INIT;
	char *qualified = NULL;
	uint64_t k = 0;
	int ret;

	m->conn = conn;
	ret = qualify_table(m, &qualified, err);
	if (ret < 0)
		return ret;
	free(m->qtable);
	free(m->qprogress);
	m->qtable = quote_table(conn, qualified, NULL);
	m->qprogress = quote_table(conn, qualified, "_progress");
	free(qualified);
	/* one lock per bookkeeping table, stable across runs and hosts */
	strbuf_addf(&key, "opsctl migrate %s", m->qtable);
	hash_sha256(key.buf, key.len, bin);
	for (int i = 0; i < 8; i++)
		k = (k << 8) | bin[i];
	m->lock_key = (int64_t)k;
	strbuf_release(&key);
	return read_history(m, err);
}

/* ---- lock ---- */

static void name_holder(struct mig *m, struct ops_error *err)
{
	char classid[24], objid[24];
	const char *params[2] = { classid, objid };
	PGresult *res = NULL;
	struct ops_error qerr = OPS_ERROR_INIT;
	uint64_t k = (uint64_t)m->lock_key;

	snprintf(classid, sizeof(classid), "%llu", (unsigned long long)(k >> 32));
	snprintf(objid, sizeof(objid), "%llu", (unsigned long long)(k & 0xffffffffu));
	if (db_exec(m->conn,
		    "SELECT a.pid, coalesce(nullif(a.application_name, ''), 'unnamed'), "
		    "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
		    "coalesce(host(a.client_addr), 'local socket') "
		    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
		    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid "
		    "AND l.objid = $2::oid AND l.objsubid = 1",
		    2, params, 5000, &res, &qerr) == 0 && PQntuples(res) > 0) {
		ops_error_set(err, OPS_EXIT_LOCKED,
			      "migrations of %s are locked by pid %s (%s, from %s, connected since %s)",
			      m->table, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 3),
			      PQgetvalue(res, 0, 2));
	} else {
		ops_error_set(err, OPS_EXIT_LOCKED, "migrations of %s are locked by another session", m->table);
	}
	ops_error_hint(err, "another 'opsctl migrate' is running; wait for it, or raise [migrations] lock_timeout / --lock-wait");
	if (res)
		PQclear(res);
	ops_error_release(&qerr);
}

static int stop_signal(const struct mig *m)
{
	return m->stop ? m->stop(m->stop_data) : 0;
}

int mig_lock(struct mig *m, struct ops_error *err)
{
	char key[24];
	const char *params[1] = { key };
	int64_t deadline = clock_now_ms() + (m->lock_timeout_ms > 0 ? m->lock_timeout_ms : 0);
	int64_t pause = 50;
	int ret;

	snprintf(key, sizeof(key), "%lld", (long long)m->lock_key);
	for (;;) {
		PGresult *res = NULL;
		int got;
		ret = db_exec(m->conn, "SELECT pg_try_advisory_lock($1::bigint)", 1, params, 10000, &res, err);
		if (ret < 0)
			return ret;
		got = !strcmp(PQgetvalue(res, 0, 0), "t");
		PQclear(res);
		if (got) {
			m->locked = 1;
			return 0;
		}
		if (stop_signal(m))
			return ops_error_set(err, OPS_EXIT_ABORTED,
					     "interrupted by signal %d while waiting for the lock of %s; nothing ran",
					     stop_signal(m), m->table);
		if (clock_now_ms() >= deadline) {
			name_holder(m, err);
			return -OPS_EXIT_LOCKED;
		}
		clock_sleep_ms(pause < deadline - clock_now_ms() ? pause : deadline - clock_now_ms());
		if (pause < 500)
			pause *= 2;
	}
}

void mig_unlock(struct mig *m)
{
	char key[24];
	const char *params[1] = { key };
	PGresult *res = NULL;
	struct ops_error err = OPS_ERROR_INIT;

	if (!m->locked || !m->conn)
		return;
	snprintf(key, sizeof(key), "%lld", (long long)m->lock_key);
	if (db_exec(m->conn, "SELECT pg_advisory_unlock($1::bigint)", 1, params, 10000, &res, &err) == 0)
		PQclear(res);
	/* if that failed the session is gone, and the lock with it */
	m->locked = 0;
	ops_error_release(&err);
}

static int exec_simple(struct mig *m, const char *sql, struct ops_error *err)
{
	PGresult *res = NULL;
	int ret = db_exec(m->conn, sql, 0, NULL, 0, &res, err);
	if (res)
		PQclear(res);
	return ret;
}

int mig_prepare(struct mig *m, struct ops_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret;

	/* The seeds' shape, so their migrate.sh keeps working on it, plus ours. */
	strbuf_addf(&sql,
		    "CREATE TABLE IF NOT EXISTS %s (id SERIAL PRIMARY KEY, version VARCHAR(50) NOT NULL UNIQUE, "
		    "executed_at TIMESTAMP DEFAULT NOW(), script_name VARCHAR(255) NOT NULL, "
		    "checksum TEXT, execution_ms INTEGER, applied_by TEXT)", m->qtable);
	if (m->table_exists && m->table_extended)
		goto out_read;
	if (m->table_exists) {
		strbuf_reset(&sql);
		strbuf_addf(&sql,
			    "ALTER TABLE %s ADD COLUMN IF NOT EXISTS checksum TEXT, "
			    "ADD COLUMN IF NOT EXISTS execution_ms INTEGER, ADD COLUMN IF NOT EXISTS applied_by TEXT",
			    m->qtable);
	}
	ret = exec_simple(m, sql.buf, err);
	if (ret < 0) {
		ops_error_prefix(err, "cannot prepare the migration table %s", m->table);
		goto out;
	}
out_read:
	ret = read_history(m, err);
out:
	strbuf_release(&sql);
	return ret;
}

/* ---- reading and checking one file ---- */

struct mig_script {
	struct strbuf text;
	size_t skip;          /* a UTF-8 BOM */
	int no_tx;
	struct sql_script sql;
	size_t first, last;   /* statements to run: [first, last) (an outer BEGIN/COMMIT left out) */
	size_t count;         /* statements with a body in [first, last) */
};

static void script_release(struct mig_script *s)
{
	strbuf_release(&s->text);
	sql_script_release(&s->sql);
}

/* Whether a statement body begins with keyword a or b (case-insensitive). */
static int starts_word(const char *body, const char *a, const char *b)
{
	const char *kw[2] = { a, b };
	for (int i = 0; i < 2; i++) {
		size_t n = strlen(kw[i]);
		if (!strncasecmp(body, kw[i], n) && !isalnum((unsigned char)body[n]) && body[n] != '_')
			return 1;
	}
	return 0;
}

static int load_script(const char *path, struct mig_script *s, struct ops_error *err)
{
	const char *body;
	size_t len, firstline;
	int ret;

	memset(s, 0, sizeof(*s));
	strbuf_init(&s->text, 0);
	ret = mig_read_file(path, &s->text, err);
	if (ret < 0)
		return ret;
	if (s->text.len >= 3 && !memcmp(s->text.buf, "\xEF\xBB\xBF", 3))
		s->skip = 3;
	body = s->text.buf + s->skip;
	len = s->text.len - s->skip;
	firstline = strcspn(body, "\r\n");
	while (firstline && (body[firstline - 1] == ' ' || body[firstline - 1] == '\t'))
		firstline--;
	s->no_tx = firstline == strlen(NO_TX_MARK) && !strncmp(body, NO_TX_MARK, firstline);
	ret = sql_split(body, len, &s->sql, err);
	if (ret < 0) {
		ops_error_prefix(err, "%s", path);
		return -OPS_EXIT_CONFIG;
	}
	s->first = 0;
	s->last = s->sql.nr;
	/* skip comment-only pieces at both ends to find the outer statements */
	{
		size_t a = 0, b = s->sql.nr;
		while (a < b && !s->sql.stmts[a].body_len)
			a++;
		while (b > a && !s->sql.stmts[b - 1].body_len)
			b--;
		if (b == a)
			return ops_error_set(err, OPS_EXIT_CONFIG, "%s: no SQL statements", path);
		if (!s->no_tx && b - a >= 2 &&
		    sql_is_transaction_control(body + s->sql.stmts[a].body_start, s->sql.stmts[a].body_len) &&
		    sql_is_transaction_control(body + s->sql.stmts[b - 1].body_start, s->sql.stmts[b - 1].body_len) &&
		    starts_word(body + s->sql.stmts[a].body_start, "BEGIN", "START") &&
		    starts_word(body + s->sql.stmts[b - 1].body_start, "COMMIT", "END")) {
			/* a file wrapped in BEGIN ... COMMIT: opsctl's own transaction replaces it */
			s->first = a + 1;
			s->last = b - 1;
		}
	}
	for (size_t i = s->first; i < s->last; i++) {
		const struct sql_stmt *st = &s->sql.stmts[i];
		if (!st->body_len)
			continue;
		s->count++;
		if (sql_is_transaction_control(body + st->body_start, st->body_len)) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG,
					    "%s:%d: transaction control inside a migration ('%.*s')", path, st->line,
					    (int)(st->body_len > 20 ? 20 : st->body_len), body + st->body_start);
			ops_error_hint(err, s->no_tx ? "a no-transaction file runs each statement on its own; remove it"
						     : "opsctl runs each migration in its own transaction; remove it, or start the file with '" NO_TX_MARK "'");
			return ret;
		}
	}
	return 0;
}

/* "FILE:LINE: message" for a statement that failed. */
static int statement_error(const char *path, const struct mig_script *s, const struct sql_stmt *st,
			   const struct db_diag *diag, struct ops_error *err)
{
	const char *body = s->text.buf + s->skip;
	size_t len = s->text.len - s->skip;
	size_t off = st->body_start;
	struct strbuf msg = STRBUF_INIT;

	if (diag->position > 0)
		off = st->body_start + sql_char_to_byte(body + st->body_start, st->body_len, (size_t)diag->position);
	strbuf_addbuf(&msg, &err->msg);
	ops_error_set(err, OPS_EXIT_FAILED, "%s:%d: %s", path, sql_line_at(body, len, off), msg.buf);
	if (diag->detail.len && diag->hint.len)
		ops_error_hint(err, "%s; %s", diag->detail.buf, diag->hint.buf);
	else if (diag->detail.len || diag->hint.len)
		ops_error_hint(err, "%s", diag->detail.len ? diag->detail.buf : diag->hint.buf);
	strbuf_release(&msg);
	return -OPS_EXIT_FAILED;
}

static int run_statement(struct mig *m, const char *path, const struct mig_script *s, size_t i,
			 struct ops_error *err)
{
	const struct sql_stmt *st = &s->sql.stmts[i];
	char *sql = xstrndup(s->text.buf + s->skip + st->body_start, st->body_len);
	struct db_diag diag;
	PGresult *res = NULL;
	int ret;

	db_diag_init(&diag);
	ret = db_exec_diag(m->conn, sql, 0, NULL, 0, &res, &diag, err);
	if (res)
		PQclear(res);
	if (ret < 0 && stop_signal(m) && !strcmp(diag.sqlstate, "57014"))
		ret = ops_error_set(err, OPS_EXIT_ABORTED, "%s:%d: interrupted by signal %d; the statement was cancelled",
				    path, st->line, stop_signal(m));
	else if (ret < 0 && stop_signal(m))
		ret = ops_error_set(err, OPS_EXIT_ABORTED, "%s:%d: interrupted by signal %d (the statement failed: %s)",
				    path, st->line, stop_signal(m), err->msg.buf);
	else if (ret < 0 && err->code == OPS_EXIT_FAILED)
		ret = statement_error(path, s, st, &diag, err);
	else if (ret < 0)
		ops_error_prefix(err, "%s:%d", path, st->line);
	db_diag_release(&diag);
	free(sql);
	return ret;
}

static void rollback_quietly(struct mig *m)
{
	PGTransactionStatusType st = PQtransactionStatus(m->conn);
	if (st == PQTRANS_INTRANS || st == PQTRANS_INERROR) {
		PGresult *r = PQexec(m->conn, "ROLLBACK");
		PQclear(r);
	}
}

/* After each migration: what it SET for the session must not leak into the
 * next one (the seeds ran a fresh psql per file). Advisory locks stay. */
static int reset_session(struct mig *m, struct ops_error *err)
{
	return exec_simple(m, "RESET ALL", err);
}

static void record_done(struct mig *m, const char *version, const char *script_name, long ms, long stmts)
{
	struct mig_done *d;
	m->done = xrealloc(m->done, (m->ndone + 1) * sizeof(*m->done));
	d = &m->done[m->ndone++];
	d->version = xstrdup(version);
	d->script_name = xstrdup(script_name);
	d->ms = ms;
	d->statements = stmts;
}

/* ---- up ---- */

int mig_plan_up(struct mig *m, int have_to, uint64_t to, int allow_out_of_order,
		const struct mig_file ***plan, size_t *n, struct ops_error *err)
{
	struct strbuf list = STRBUF_INIT;
	const struct mig_file **p = xcalloc(m->nrows + 1, sizeof(*p));
	size_t np = 0, changed = 0;
	int ret = 0;

	for (size_t i = 0; i < m->nrows; i++)
		if (m->rows[i].state == MIG_CHANGED) {
			strbuf_addf(&list, "%s'%s'", changed++ ? ", " : "", m->rows[i].file->path);
		}
	if (changed) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "%zu applied migration%s changed since %s applied: %s",
				    changed, changed == 1 ? "" : "s", changed == 1 ? "it was" : "they were", list.buf);
		ops_error_hint(err, "put the file back as it was, or accept the edit with 'opsctl migrate repair'");
		goto out;
	}
	for (size_t i = 0; i < m->nrows; i++) {
		const struct mig_row *r = &m->rows[i];
		if (r->state != MIG_PENDING && r->state != MIG_OUT_OF_ORDER && r->state != MIG_PARTIAL)
			continue;
		if (have_to && r->number > to)
			continue;
		if (r->state == MIG_OUT_OF_ORDER && !allow_out_of_order) {
			ret = ops_error_set(err, OPS_EXIT_FAILED,
					    "'%s' is pending but a later version is already applied", r->file->path);
			ops_error_hint(err, "renumber it above the newest applied version, or pass --allow-out-of-order");
			goto out;
		}
		p[np++] = r->file;
	}
	/* every file readable and sound before anything runs */
	for (size_t i = 0; i < np; i++) {
		struct mig_script s;
		ret = load_script(p[i]->path, &s, err);
		script_release(&s);
		if (ret < 0)
			goto out;
	}
	*plan = p;
	*n = np;
	p = NULL;
out:
	free(p);
	strbuf_release(&list);
	return ret;
}

/* Seeds' rows have no checksum: the files as they are now are taken as what ran. */
static int adopt(struct mig *m, struct ops_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret = 0;

	strbuf_addf(&sql, "UPDATE %s SET checksum = $1 WHERE version = $2 AND checksum IS NULL", m->qtable);
	for (size_t i = 0; i < m->nrows; i++) {
		const struct mig_row *r = &m->rows[i];
		const char *params[2];
		PGresult *res = NULL;
		if (!r->applied || r->applied->checksum || !r->file)
			continue;
		params[0] = r->file->checksum;
		params[1] = r->applied->version;
		ret = db_exec(m->conn, sql.buf, 2, params, 30000, &res, err);
		if (res)
			PQclear(res);
		if (ret < 0)
			break;
		m->adopted++;
	}
	strbuf_release(&sql);
	return ret;
}

static int insert_row(struct mig *m, const struct mig_file *f, long ms, struct ops_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	char msbuf[24];
	const char *params[5];
	PGresult *res = NULL;
	int ret;

	snprintf(msbuf, sizeof(msbuf), "%ld", ms);
	params[0] = f->version;
	params[1] = f->script_name;
	params[2] = f->checksum;
	params[3] = msbuf;
	params[4] = m->applied_by ? m->applied_by : "opsctl";
	strbuf_addf(&sql, "INSERT INTO %s (version, script_name, checksum, execution_ms, applied_by) "
			  "VALUES ($1, $2, $3, $4::integer, $5)", m->qtable);
	ret = db_exec(m->conn, sql.buf, 5, params, 30000, &res, err);
	if (res)
		PQclear(res);
	strbuf_release(&sql);
	return ret;
}

static void prefix_checksum(const struct mig_script *s, size_t upto, char hex[65])
{
	const struct sql_stmt *st = upto ? &s->sql.stmts[upto - 1] : NULL;
	size_t end = st ? st->start + st->len : 0;
	mig_checksum(s->text.buf + s->skip, end, hex);
}

static int apply_tx(struct mig *m, const struct mig_file *f, struct mig_script *s, struct ops_error *err)
{
	int64_t start = clock_now_ms();
	int ret = exec_simple(m, "BEGIN", err);
	if (ret < 0)
		return ret;
	for (size_t i = s->first; i < s->last && ret == 0; i++)
		if (s->sql.stmts[i].body_len)
			ret = run_statement(m, f->path, s, i, err);
	if (ret == 0 && (insert_row(m, f, (long)(clock_now_ms() - start), err) < 0 ||
			 exec_simple(m, "COMMIT", err) < 0)) {
		/* deferred constraints fail here, at COMMIT */
		ops_error_prefix(err, "%s", f->path);
		ret = -err->code;
	}
	if (ret < 0) {
		rollback_quietly(m);
		if (err->code == OPS_EXIT_ABORTED)
			ops_error_hint(err, "nothing of %s was applied (its transaction rolled back); 'opsctl migrate' applies it",
				       f->script_name);
		return ret;
	}
	record_done(m, f->version, f->script_name, (long)(clock_now_ms() - start), (long)s->count);
	return reset_session(m, err);
}

static int save_progress(struct mig *m, const struct mig_file *f, const struct mig_script *s, size_t upto,
			 long done, struct ops_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	char hex[65], dbuf[24], tbuf[24];
	const char *params[5] = { f->version, f->script_name, hex, dbuf, tbuf };
	PGresult *res = NULL;
	int ret;

	prefix_checksum(s, upto, hex);
	snprintf(dbuf, sizeof(dbuf), "%ld", done);
	snprintf(tbuf, sizeof(tbuf), "%zu", s->count);
	strbuf_addf(&sql,
		    "INSERT INTO %s (version, script_name, checksum, statements_done, statements_total) "
		    "VALUES ($1, $2, $3, $4::integer, $5::integer) ON CONFLICT (version) DO UPDATE SET "
		    "checksum = EXCLUDED.checksum, statements_done = EXCLUDED.statements_done, "
		    "statements_total = EXCLUDED.statements_total, updated_at = NOW()", m->qprogress);
	ret = db_exec(m->conn, sql.buf, 5, params, 30000, &res, err);
	if (res)
		PQclear(res);
	strbuf_release(&sql);
	return ret;
}

static int apply_no_tx(struct mig *m, const struct mig_file *f, struct mig_script *s,
		       const struct mig_partial *partial, struct ops_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int64_t start = clock_now_ms();
	size_t i, done = 0, resume_at = 0;
	int ret;

	strbuf_addf(&sql,
		    "CREATE TABLE IF NOT EXISTS %s (version VARCHAR(50) PRIMARY KEY, script_name VARCHAR(255) NOT NULL, "
		    "checksum TEXT NOT NULL, statements_done INTEGER NOT NULL, statements_total INTEGER NOT NULL, "
		    "updated_at TIMESTAMP DEFAULT NOW())", m->qprogress);
	ret = exec_simple(m, sql.buf, err);
	if (ret < 0)
		goto out;
	if (partial) {
		/* find where the statements that already ran end, and check they are unchanged */
		char hex[65];
		for (i = s->first; i < s->last && done < (size_t)partial->done; i++)
			if (s->sql.stmts[i].body_len)
				done++;
		resume_at = i;
		prefix_checksum(s, resume_at, hex);
		if (done < (size_t)partial->done || strcmp(hex, partial->checksum)) {
			if (partial->done == 1)
				ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
						    "%s: the statement that already ran was edited since", f->path);
			else
				ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
						    "%s: the %ld statements that already ran were edited since",
						    f->path, partial->done);
			ops_error_hint(err, "restore them as they were; 'opsctl migrate repair' forgets the partial run if you cleaned up by hand");
			goto out;
		}
	}
	for (i = resume_at ? resume_at : s->first; i < s->last; i++) {
		if (!s->sql.stmts[i].body_len)
			continue;
		if (stop_signal(m)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "%s: interrupted by signal %d before statement %zu of %zu",
					    f->path, stop_signal(m), done + 1, s->count);
			if (done)
				ops_error_hint(err, "%zu statement%s ran and %s committed (no transaction); 'opsctl migrate' resumes at statement %zu",
					       done, done == 1 ? "" : "s", done == 1 ? "is" : "are", done + 1);
			else
				ops_error_hint(err, "none of its statements ran; 'opsctl migrate' applies it");
			goto out;
		}
		ret = run_statement(m, f->path, s, i, err);
		if (ret < 0) {
			struct strbuf h = STRBUF_INIT;
			int stopped = err->code == OPS_EXIT_ABORTED;
			strbuf_addf(&h, "statement %zu of %zu %s; ", done + 1, s->count, stopped ? "was cancelled" : "failed");
			if (done == 1)
				strbuf_addstr(&h, "statement 1 ran and is committed (no transaction); ");
			else if (done)
				strbuf_addf(&h, "statements 1-%zu ran and are committed (no transaction); ", done);
			if (stopped)
				strbuf_addf(&h, "'opsctl migrate' resumes at statement %zu", done + 1);
			else
				strbuf_addf(&h, "fix it and run 'opsctl migrate' again: it resumes at statement %zu", done + 1);
			if (err->hint.len)
				strbuf_addf(&h, " (%s)", err->hint.buf);
			ops_error_hint(err, "%s", h.buf);
			strbuf_release(&h);
			goto out;
		}
		done++;
		ret = save_progress(m, f, s, i + 1, (long)done, err);
		if (ret < 0)
			goto out;
	}
	/* the row and the end of the progress record commit together */
	ret = exec_simple(m, "BEGIN", err);
	if (ret == 0)
		ret = insert_row(m, f, (long)(clock_now_ms() - start), err);
	if (ret == 0) {
		const char *params[1] = { f->version };
		PGresult *res = NULL;
		strbuf_reset(&sql);
		strbuf_addf(&sql, "DELETE FROM %s WHERE version = $1", m->qprogress);
		ret = db_exec(m->conn, sql.buf, 1, params, 30000, &res, err);
		if (res)
			PQclear(res);
	}
	if (ret == 0)
		ret = exec_simple(m, "COMMIT", err);
	if (ret < 0) {
		ops_error_prefix(err, "%s", f->path);
		rollback_quietly(m);
		goto out;
	}
	record_done(m, f->version, f->script_name, (long)(clock_now_ms() - start), (long)s->count);
	ret = reset_session(m, err);
out:
	strbuf_release(&sql);
	return ret;
}

int mig_apply(struct mig *m, const struct mig_file *const *plan, size_t n, struct ops_error *err)
{
	int ret = adopt(m, err);

	for (size_t i = 0; i < n && ret == 0; i++) {
		const struct mig_file *f = plan[i];
		const struct mig_partial *partial = NULL;
		struct mig_script s;
		for (size_t k = 0; k < m->npartials; k++)
			if (m->partials[k].number == f->number)
				partial = &m->partials[k];
		if (stop_signal(m)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted by signal %d before %s; %zu of %zu applied",
					    stop_signal(m), f->script_name, i, n);
			break;
		}
		if (m->progress)
			m->progress("applying", f, i, n, m->progress_data);
		ret = load_script(f->path, &s, err);
		if (ret == 0)
			ret = s.no_tx ? apply_no_tx(m, f, &s, partial, err) : apply_tx(m, f, &s, err);
		script_release(&s);
	}
	return ret;
}

/* ---- down ---- */

static const char *down_path_of(const struct mig *m, uint64_t number)
{
	for (size_t i = 0; i < m->nfiles; i++)
		if (m->files[i].number == number)
			return m->files[i].down_path;
	return NULL;
}

static int is_marker(const struct mig_applied *a)
{
	return a->checksum && !strcmp(a->checksum, BASELINE_MARK);
}

static int cmp_applied_desc(const void *a, const void *b)
{
	const struct mig_applied *x = *(const struct mig_applied *const *)a;
	const struct mig_applied *y = *(const struct mig_applied *const *)b;
	return x->id > y->id ? -1 : x->id < y->id;
}

int mig_plan_down(struct mig *m, int have_to, uint64_t to, size_t steps,
		  const struct mig_applied ***plan, size_t *n, struct ops_error *err)
{
	const struct mig_applied **p = xcalloc(m->napplied + 1, sizeof(*p));
	struct strbuf missing = STRBUF_INIT;
	size_t np = 0, nmissing = 0;
	int ret = 0;

	for (size_t i = 0; i < m->napplied; i++)
		p[np++] = &m->applied[i];
	qsort(p, np, sizeof(*p), cmp_applied_desc);
	if (have_to) {
		size_t keep = 0;
		for (size_t i = 0; i < np; i++)
			if (p[i]->number > to)
				p[keep++] = p[i];
		np = keep;
	} else if (np > steps) {
		np = steps;
	}
	for (size_t i = 0; i < np; i++) {
		const char *dp = down_path_of(m, p[i]->number);
		struct mig_script s;
		if (is_marker(p[i]))
			continue; /* a baseline marker ran nothing: there is nothing to undo */
		if (!dp) {
			const char *base = p[i]->script_name;
			size_t blen = ends_with(base, ".sql") ? strlen(base) - 4 : strlen(base);
			strbuf_addf(&missing, "%s'%s/rollback/%.*s.down.sql'", nmissing++ ? ", " : "", m->dir,
				    (int)blen, base);
			continue;
		}
		ret = load_script(dp, &s, err);
		script_release(&s);
		if (ret < 0)
			goto out;
	}
	if (nmissing) {
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "cannot undo: %zu down file%s missing: %s", nmissing,
				    nmissing == 1 ? " is" : "s are", missing.buf);
		ops_error_hint(err, "nothing was changed; write the missing down files first");
		goto out;
	}
	*plan = p;
	*n = np;
	p = NULL;
out:
	free(p);
	strbuf_release(&missing);
	return ret;
}

int mig_undo(struct mig *m, const struct mig_applied *const *plan, size_t n, struct ops_error *err)
{
	struct strbuf del = STRBUF_INIT;
	int ret = 0;

	strbuf_addf(&del, "DELETE FROM %s WHERE version = $1", m->qtable);
	for (size_t i = 0; i < n && ret == 0; i++) {
		const struct mig_applied *a = plan[i];
		const char *dp = down_path_of(m, a->number);
		const char *params[1] = { a->version };
		struct mig_script s;
		struct mig_file shown;
		int64_t start = clock_now_ms();
		PGresult *res = NULL;

		memset(&shown, 0, sizeof(shown));
		shown.version = a->version;
		shown.script_name = a->script_name;
		shown.path = (char *)dp;
		if (stop_signal(m)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted by signal %d before undoing %s; %zu of %zu undone",
					    stop_signal(m), a->script_name, i, n);
			break;
		}
		if (m->progress)
			m->progress("undoing", &shown, i, n, m->progress_data);
		if (is_marker(a)) {
			ret = db_exec(m->conn, del.buf, 1, params, 30000, &res, err);
			if (res)
				PQclear(res);
			if (ret == 0)
				record_done(m, a->version, a->script_name, -1, 0);
			continue;
		}
		ret = load_script(dp, &s, err);
		if (ret == 0 && !s.no_tx)
			ret = exec_simple(m, "BEGIN", err);
		for (size_t k = s.first; ret == 0 && k < s.last; k++)
			if (s.sql.stmts[k].body_len)
				ret = run_statement(m, dp, &s, k, err);
		if (ret == 0 && s.no_tx)
			ret = exec_simple(m, "BEGIN", err);
		if (ret == 0)
			ret = db_exec(m->conn, del.buf, 1, params, 30000, &res, err);
		if (res)
			PQclear(res);
		if (ret == 0 && exec_simple(m, "COMMIT", err) < 0) {
			ops_error_prefix(err, "%s", dp);
			ret = -err->code;
		}
		if (ret < 0) {
			rollback_quietly(m);
			if (err->code == OPS_EXIT_ABORTED && !s.no_tx)
				ops_error_hint(err, "%s was not undone (its transaction rolled back)", a->script_name);
			else if (err->code == OPS_EXIT_ABORTED)
				ops_error_hint(err, "%s runs without a transaction: the statements before the cancelled one stay done, and %s stays recorded until its down file runs to the end",
					       dp, a->script_name);
		} else {
			record_done(m, a->version, a->script_name, (long)(clock_now_ms() - start), (long)s.count);
		}
		if (ret == 0)
			ret = reset_session(m, err);
		script_release(&s);
	}
	strbuf_release(&del);
	return ret;
}

/* ---- repair, baseline, new ---- */

int mig_repair(struct mig *m, size_t *changed, struct ops_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret;

	*changed = 0;
	ret = exec_simple(m, "BEGIN", err);
	strbuf_addf(&sql, "UPDATE %s SET checksum = $1 WHERE version = $2", m->qtable);
	for (size_t i = 0; i < m->nrows && ret == 0; i++) {
		const struct mig_row *r = &m->rows[i];
		const char *params[2];
		PGresult *res = NULL;
		if (!r->applied || !r->file || (r->applied->checksum && r->state != MIG_CHANGED))
			continue;
		params[0] = r->file->checksum;
		params[1] = r->applied->version;
		ret = db_exec(m->conn, sql.buf, 2, params, 30000, &res, err);
		if (res)
			PQclear(res);
		if (ret < 0)
			break;
		record_done(m, r->applied->version, r->file->script_name, -1, 0);
		(*changed)++;
	}
	if (ret == 0 && m->npartials) {
		strbuf_reset(&sql);
		strbuf_addf(&sql, "DELETE FROM %s", m->qprogress);
		ret = exec_simple(m, sql.buf, err);
		*changed += m->npartials;
	}
	if (ret == 0)
		ret = exec_simple(m, "COMMIT", err);
	else
		rollback_quietly(m);
	strbuf_release(&sql);
	return ret;
}

int mig_baseline(struct mig *m, uint64_t version, size_t *marked, struct ops_error *err)
{
	int ret;

	*marked = 0;
	if (m->napplied)
		return ops_error_set(err, OPS_EXIT_FAILED, "%s already has %zu applied migration%s; baseline is for a database that has none",
				     m->table, m->napplied, m->napplied == 1 ? "" : "s");
	ret = exec_simple(m, "BEGIN", err);
	for (size_t i = 0; i < m->nfiles && ret == 0; i++) {
		const struct mig_file *f = &m->files[i];
		if (!f->path || f->number > version)
			continue;
		ret = insert_row(m, f, 0, err);
		if (ret < 0)
			break;
		record_done(m, f->version, f->script_name, -1, 0);
		(*marked)++;
	}
	if (ret == 0 && !*marked) {
		/* no file at or below: a marker row so later files count as newer */
		struct strbuf sql = STRBUF_INIT;
		char v[24];
		const char *params[3] = { v, "baseline", m->applied_by ? m->applied_by : "opsctl" };
		PGresult *res = NULL;
		snprintf(v, sizeof(v), "%llu", (unsigned long long)version);
		strbuf_addf(&sql, "INSERT INTO %s (version, script_name, checksum, execution_ms, applied_by) "
				  "VALUES ($1, $2, '" BASELINE_MARK "', 0, $3)", m->qtable);
		ret = db_exec(m->conn, sql.buf, 3, params, 30000, &res, err);
		if (res)
			PQclear(res);
		strbuf_release(&sql);
		record_done(m, v, "baseline", -1, 0);
		(*marked)++;
	}
	if (ret == 0)
		ret = exec_simple(m, "COMMIT", err);
	else
		rollback_quietly(m);
	return ret;
}

int mig_new(struct mig *m, const char *name, char **up_path, char **down_path, struct ops_error *err)
{
	struct strbuf clean = STRBUF_INIT, version = STRBUF_INIT, text = STRBUF_INIT;
	char *rdir = NULL, *up = NULL, *down = NULL;
	size_t width = 3;
	uint64_t max = 0;
	int ret = 0, stamp = 0;

	for (const char *c = name; *c; c++) {
		char ch = (char)tolower((unsigned char)*c);
		if (!isalnum((unsigned char)ch))
			ch = '_';
		if (ch == '_' && (!clean.len || clean.buf[clean.len - 1] == '_'))
			continue;
		strbuf_addch(&clean, ch);
	}
	while (clean.len && clean.buf[clean.len - 1] == '_')
		strbuf_setlen(&clean, clean.len - 1);
	if (!clean.len) {
		ret = ops_error_set(err, OPS_EXIT_USAGE, "invalid migration name '%s' (use letters, digits and _)", name);
		goto out;
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		if (m->files[i].number >= max) {
			max = m->files[i].number;
			width = strlen(m->files[i].version);
		}
	}
	stamp = width >= 12;
	if (stamp) {
		time_t t = time(NULL);
		struct tm tm;
		char buf[32];
		gmtime_r(&t, &tm);
		strftime(buf, sizeof(buf), "%Y%m%d%H%M%S", &tm);
		/* two in the same second, or a clock behind the newest file */
		if (strtoull(buf, NULL, 10) <= max)
			strbuf_addf(&version, "%llu", (unsigned long long)max + 1);
		else
			strbuf_addstr(&version, buf);
	} else {
		strbuf_addf(&version, "%0*llu", (int)width, (unsigned long long)max + 1);
	}
	rdir = path_join(m->dir, "rollback");
	if ((ret = fs_mkdir_p(rdir, 0755, err)) < 0)
		goto out;
	up = xstrfmt("%s/%s_%s.sql", m->dir, version.buf, clean.buf);
	down = xstrfmt("%s/%s_%s.down.sql", rdir, version.buf, clean.buf);
	if (fs_exists(up) || fs_exists(down)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s' already exists", fs_exists(up) ? up : down);
		goto out;
	}
	strbuf_addf(&text, "-- %s_%s: write the change here; it runs in one transaction with its bookkeeping row.\n"
			   "-- Start the file with '" NO_TX_MARK "' for statements such as CREATE INDEX CONCURRENTLY.\n",
		    version.buf, clean.buf);
	if ((ret = fs_write_atomic(up, text.buf, text.len, 0644, err)) < 0)
		goto out;
	strbuf_reset(&text);
	strbuf_addf(&text, "-- undoes %s_%s.sql ('opsctl migrate down' / 'opsctl rollback --schema')\n",
		    version.buf, clean.buf);
	if ((ret = fs_write_atomic(down, text.buf, text.len, 0644, err)) < 0)
		goto out;
	*up_path = up;
	*down_path = down;
	up = down = NULL;
out:
	free(rdir);
	free(up);
	free(down);
	strbuf_release(&clean);
	strbuf_release(&version);
	strbuf_release(&text);
	return ret;
}
