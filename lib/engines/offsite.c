/* Offsite copies of backup sets: see offsite.h. */
#include "engines/offsite.h"
#include "base/config.h"
#include "base/exitcode.h"
#include "base/strbuf.h"
#include "system/clock.h"
#include "system/fs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OFF_DEFAULT_WORKERS 2

void off_settings_init(struct off_settings *o)
{
	memset(o, 0, sizeof(*o));
	s3_settings_init(&o->s3);
	o->workers = OFF_DEFAULT_WORKERS;
}

void off_settings_release(struct off_settings *o)
{
	s3_settings_release(&o->s3);
	free(o->state_dir);
	memset(o, 0, sizeof(*o));
}

int off_settings_load(struct off_settings *o, const struct config *cfg, const char *name,
		      const struct envfile *env, const struct bk_policy *local, int have_local,
		      struct ops_error *err)
{
	static const char *const keys[4] = { "remote_keep_last", "remote_keep_daily", "remote_keep_weekly",
					     "remote_keep_monthly" };
	long *fields[4] = { &o->policy.keep_last, &o->policy.keep_daily, &o->policy.keep_weekly,
			    &o->policy.keep_monthly };
	long workers = OFF_DEFAULT_WORKERS;
	int ret;

	if ((ret = s3_settings_load(&o->s3, cfg, name, env, err)) < 0)
		return ret;
	o->policy = *local;
	o->have_policy = have_local;
	for (size_t i = 0; i < 4; i++) {
		if (config_get(cfg, "backup", NULL, keys[i]))
			o->have_policy = 1;
		if (config_get_int(cfg, "backup", NULL, keys[i], 0, 100000, fields[i], err) < 0)
			return -err->code;
	}
	if (o->policy.keep_last < 1)
		o->policy.keep_last = 1;
	if (config_get_int(cfg, "storage", name, "workers", 1, 16, &workers, err) < 0)
		return -err->code;
	o->workers = (int)workers;
	return 0;
}

/* ---- paths and marks ---- */

static char *key_of(const char *id, const char *name)
{
	return xstrfmt("%s/%s", id, name);
}

/* STATE/offsite/ID, and in it one resume state per large file. */
static char *work_dir(const struct off_settings *o, const char *id)
{
	return xstrfmt("%s/offsite/%s", o->state_dir, id);
}

static char *state_file(const char *work, const char *name)
{
	char *flat = xstrdup(name), *p, *path;
	for (p = flat; *p; p++)
		if (*p == '/')
			*p = '#';
	path = xstrfmt("%s/%s.upload.json", work, flat);
	free(flat);
	return path;
}

int off_uploaded(const struct bk_entry *e, const char *storage)
{
	char *path = xstrfmt("%s/%s", e->path, OFF_MARK);
	struct strbuf sb = STRBUF_INIT;
	cJSON *doc = NULL;
	int yes = 0;

	if (fs_exists(path) && fs_read_file(path, &sb, 1 << 16, NULL) == 0 && (doc = cJSON_Parse(sb.buf))) {
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(doc, "storage");
		yes = cJSON_IsString(s) && !strcmp(s->valuestring, storage);
	}
	cJSON_Delete(doc);
	strbuf_release(&sb);
	free(path);
	return yes;
}

static int write_mark(const struct off_settings *o, const struct bk_entry *e, struct ops_error *err)
{
	cJSON *doc = cJSON_CreateObject();
	char now[32], *path = xstrfmt("%s/%s", e->path, OFF_MARK), *text;
	int ret;

	clock_rfc3339(now, time(NULL));
	cJSON_AddStringToObject(doc, "storage", o->s3.name);
	cJSON_AddStringToObject(doc, "bucket", o->s3.bucket);
	cJSON_AddStringToObject(doc, "prefix", o->s3.prefix ? o->s3.prefix : "");
	cJSON_AddStringToObject(doc, "uploaded_at", now);
	text = cJSON_Print(doc);
	ret = fs_write_atomic(path, text, strlen(text), 0640, err);
	cJSON_free(text);
	cJSON_Delete(doc);
	free(path);
	return ret;
}

/* STATE/offsite/ID/done.json: the files of the set already complete on the
 * storage, so that a second try does not send them again. */
static cJSON *read_done(const char *work)
{
	char *path = xstrfmt("%s/done.json", work);
	struct strbuf sb = STRBUF_INIT;
	cJSON *doc = NULL;

	if (fs_exists(path) && fs_read_file(path, &sb, 16 << 20, NULL) == 0)
		doc = cJSON_Parse(sb.buf);
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		doc = cJSON_CreateObject();
	}
	strbuf_release(&sb);
	free(path);
	return doc;
}

static int write_done(const char *work, const cJSON *done, struct ops_error *err)
{
	char *path = xstrfmt("%s/done.json", work), *text = cJSON_Print(done);
	int ret = fs_write_atomic(path, text, strlen(text), 0600, err);
	cJSON_free(text);
	free(path);
	return ret;
}

/* ---- uploading: a few files at a time, each with its own client ---- */

/* A client of the storage that stops when the caller's stop() says so. */
static void client_init(struct s3_client *c, const struct off_settings *o)
{
	s3_client_init(c, &o->s3);
	c->stop = o->stop;
	c->stop_data = o->stop_data;
}

struct upload {
	const struct off_settings *o;
	const struct bk_entry *e;
	char *work;
	const struct bk_file **files;   /* largest first */
	size_t nfiles, next;
	cJSON *done;
	uint64_t total, finished_bytes;
	uint64_t *in_flight;            /* per worker: bytes of its current file sent */
	off_progress_fn *progress;
	void *progress_data;
	struct off_upload_result *res;
	pthread_mutex_t lock;
	int failed;
	int verify;                     /* check each file against its SHA-256 while sending */
	struct ops_error err;
};

struct worker {
	struct upload *u;
	size_t index;
};

static void report(struct upload *u)
{
	uint64_t done = u->finished_bytes;
	for (int i = 0; i < u->o->workers; i++)
		done += u->in_flight[i];
	if (u->progress)
		u->progress(u->progress_data, done, u->total);
}

static void on_s3_progress(void *data, uint64_t done, uint64_t total)
{
	struct worker *w = data;
	(void)total;
	pthread_mutex_lock(&w->u->lock);
	w->u->in_flight[w->index] = done;
	report(w->u);
	pthread_mutex_unlock(&w->u->lock);
}

static int upload_one(struct upload *u, struct s3_client *c, const struct bk_file *f, struct ops_error *err)
{
	char *key = key_of(u->e->id, f->name), *path = xstrfmt("%s/%s", u->e->path, f->name);
	char *state = state_file(u->work, f->name);
	struct s3_put_result pr;
	struct stat st;
	int ret;

	memset(&pr, 0, sizeof(pr));
	if (stat(path, &st) < 0) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' is gone from the local set: %s", path, strerror(errno));
		goto out;
	}
	if ((uint64_t)st.st_size != f->size) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' has %llu bytes, the manifest says %llu", path,
				    (unsigned long long)st.st_size, (unsigned long long)f->size);
		goto out;
	}
	ret = s3_put_file(c, key, path, state, u->verify ? f->sha256 : NULL, &pr, err);
	if (ret < 0 && pr.source_damaged) {
		/* bk_verify's words: the set is damaged, not the upload */
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
				    "backup '%s' is damaged: the SHA-256 of '%s' does not match the manifest", u->e->id,
				    f->name);
		ops_error_hint(err, "nothing of it was kept on the storage; restore from another backup ('opsctl backup list')");
		pthread_mutex_lock(&u->lock);
		u->res->damaged = 1;
		pthread_mutex_unlock(&u->lock);
		goto out;
	}
	if (ret < 0) {
		ops_error_prefix(err, "uploading '%s'", f->name);
		goto out;
	}
	pthread_mutex_lock(&u->lock);
	u->res->files++;
	u->res->parts_resumed += pr.parts_resumed;
	u->res->retries += pr.retries;
	cJSON_AddStringToObject(u->done, f->name, pr.etag);
	ret = write_done(u->work, u->done, err);
	pthread_mutex_unlock(&u->lock);
out:
	free(key);
	free(path);
	free(state);
	return ret;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct upload *u = w->u;
	struct s3_client c;
	struct ops_error err = OPS_ERROR_INIT;

	client_init(&c, u->o);
	c.rate_limit = u->o->rate_limit / (uint64_t)u->o->workers;
	c.progress = on_s3_progress;
	c.progress_data = w;
	for (;;) {
		const struct bk_file *f;
		int ret;

		pthread_mutex_lock(&u->lock);
		if (!u->failed && u->next < u->nfiles && u->o->stop && u->o->stop(u->o->stop_data)) {
			u->failed = 1;
			ops_error_set(&u->err, OPS_EXIT_ABORTED, "interrupted before '%s'", u->files[u->next]->name);
		}
		if (u->failed || u->next >= u->nfiles) {
			pthread_mutex_unlock(&u->lock);
			break;
		}
		f = u->files[u->next++];
		u->in_flight[w->index] = 0;
		pthread_mutex_unlock(&u->lock);
		ret = upload_one(u, &c, f, &err);
		pthread_mutex_lock(&u->lock);
		u->in_flight[w->index] = 0;
		if (ret < 0 && !u->failed) {
			u->failed = 1;
			ops_error_set(&u->err, err.code, "%s", err.msg.buf);
			if (err.hint.len)
				ops_error_hint(&u->err, "%s", err.hint.buf);
		} else if (ret == 0) {
			u->finished_bytes += f->size;
			report(u);
		}
		pthread_mutex_unlock(&u->lock);
		ops_error_release(&err);
	}
	s3_client_release(&c);
	return NULL;
}

static int cmp_size_desc(const void *a, const void *b)
{
	const struct bk_file *x = *(const struct bk_file *const *)a, *y = *(const struct bk_file *const *)b;
	return x->size < y->size ? 1 : x->size > y->size ? -1 : strcmp(x->name, y->name);
}

int off_upload(const struct off_settings *o, const struct bk_entry *e, int verify, off_progress_fn *progress,
	       void *progress_data, struct off_upload_result *res, struct ops_error *err)
{
	struct upload u;
	struct worker *workers = NULL;
	pthread_t *threads = NULL;
	struct s3_client c;
	struct s3_put_result pr;
	char *mkey = NULL, *mpath = NULL;
	int64_t start = clock_now_ms();
	int started = 0, ret;

	memset(res, 0, sizeof(*res));
	memset(&u, 0, sizeof(u));
	client_init(&c, o);
	c.rate_limit = o->rate_limit;
	u.o = o;
	u.e = e;
	u.verify = verify;
	u.res = res;
	u.progress = progress;
	u.progress_data = progress_data;
	u.work = work_dir(o, e->id);
	pthread_mutex_init(&u.lock, NULL);
	if ((ret = fs_mkdir_p(u.work, 0700, err)) < 0)
		goto out;
	u.done = read_done(u.work);
	u.files = xcalloc(e->m.nfiles + 1, sizeof(*u.files));
	for (size_t i = 0; i < e->m.nfiles; i++) {
		const struct bk_file *f = &e->m.files[i];
		u.total += f->size;
		if (cJSON_GetObjectItemCaseSensitive(u.done, f->name)) {
			res->skipped++;
			u.finished_bytes += f->size;
			continue;
		}
		u.files[u.nfiles++] = f;
	}
	res->bytes = u.total;
	qsort(u.files, u.nfiles, sizeof(*u.files), cmp_size_desc);
	u.in_flight = xcalloc((size_t)o->workers, sizeof(uint64_t));
	workers = xcalloc((size_t)o->workers, sizeof(*workers));
	threads = xcalloc((size_t)o->workers, sizeof(*threads));
	for (int i = 0; i < o->workers; i++) {
		workers[i].u = &u;
		workers[i].index = (size_t)i;
		if (pthread_create(&threads[i], NULL, worker_run, &workers[i]) != 0)
			break;
		started++;
	}
	if (!started) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot start an upload thread");
		goto out;
	}
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (u.failed || u.next < u.nfiles) {
		ret = ops_error_set(err, u.err.code ? u.err.code : OPS_EXIT_FAILED, "%s",
				    u.err.msg.len ? u.err.msg.buf : "the upload stopped");
		if (u.err.hint.len)
			ops_error_hint(err, "%s", u.err.hint.buf);
		goto out;
	}
	/* the manifest last: before it is there the remote set does not exist */
	mkey = key_of(e->id, BK_MANIFEST);
	mpath = xstrfmt("%s/%s", e->path, BK_MANIFEST);
	memset(&pr, 0, sizeof(pr));
	if ((ret = s3_put_file(&c, mkey, mpath, NULL, NULL, &pr, err)) < 0) {
		ops_error_prefix(err, "uploading '%s'", BK_MANIFEST);
		goto out;
	}
	res->files++;
	if ((ret = write_mark(o, e, err)) < 0)
		goto out;
	fs_remove_tree(u.work, NULL);
	if (progress)
		progress(progress_data, u.total, u.total);
out:
	res->duration_ms = clock_now_ms() - start;
	s3_client_release(&c);
	pthread_mutex_destroy(&u.lock);
	ops_error_release(&u.err);
	cJSON_Delete(u.done);
	free(u.files);
	free(u.in_flight);
	free(u.work);
	free(workers);
	free(threads);
	free(mkey);
	free(mpath);
	return ret;
}

/* ---- remote sets ---- */

static char *remote_path(const struct off_settings *o, const char *id)
{
	return xstrfmt("s3://%s/%s%s%s", o->s3.bucket, o->s3.prefix ? o->s3.prefix : "",
		       o->s3.prefix && *o->s3.prefix ? "/" : "", id);
}

/* Reads a remote manifest through a temporary file in STATE/offsite. */
static int read_remote_manifest(const struct off_settings *o, struct s3_client *c, const char *id,
				struct bk_manifest *m, struct ops_error *err)
{
	char *dir = xstrfmt("%s/offsite", o->state_dir), *tmp = NULL, *key = key_of(id, BK_MANIFEST);
	struct strbuf text = STRBUF_INIT;
	int ret;

	if ((ret = fs_mkdir_p(dir, 0700, err)) < 0)
		goto out;
	tmp = xstrfmt("%s/manifest-%d.json", dir, (int)getpid());
	if ((ret = s3_get_file(c, key, tmp, NULL, NULL, NULL, err)) < 0)
		goto out;
	if ((ret = fs_read_file(tmp, &text, 16 << 20, err)) < 0)
		goto out;
	ret = bk_manifest_parse(text.buf, text.len, m, err);
	if (ret == 0 && strcmp(m->id, id)) {
		bk_manifest_release(m);
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "the manifest of '%s' names another set, '%s'", id, m->id);
	}
	if (ret < 0)
		ops_error_prefix(err, "remote '%s'", key);
out:
	if (tmp)
		unlink(tmp);
	strbuf_release(&text);
	free(tmp);
	free(dir);
	free(key);
	return ret;
}

static int cmp_newest(const void *a, const void *b)
{
	const struct bk_entry *x = a, *y = b;
	if (x->m.started_at != y->m.started_at)
		return x->m.started_at < y->m.started_at ? 1 : -1;
	return strcmp(y->id, x->id);
}

int off_list(const struct off_settings *o, struct bk_list *l, struct ops_error *err)
{
	struct s3_client c;
	struct s3_list objs = S3_LIST_INIT;
	size_t alloc = 0;
	int ret;

	memset(l, 0, sizeof(*l));
	client_init(&c, o);
	if ((ret = s3_list(&c, "", &objs, err)) < 0)
		goto out;
	for (size_t i = 0; i < objs.nr; i++) {
		const char *key = objs.items[i].key, *slash = strchr(key, '/');
		size_t idlen;
		if (!slash)
			continue;
		idlen = (size_t)(slash - key);
		if (strcmp(slash + 1, BK_MANIFEST))
			continue;
		{
			struct bk_entry e;
			memset(&e, 0, sizeof(e));
			e.id = xstrndup(key, idlen);
			ret = read_remote_manifest(o, &c, e.id, &e.m, err);
			if (ret == -OPS_EXIT_INTEGRITY) {
				l->skipped++;
				bk_entry_release(&e);
				ops_error_clear(err);
				continue;
			}
			if (ret < 0) {
				bk_entry_release(&e);
				goto out;
			}
			e.path = remote_path(o, e.id);
			if (l->nr == alloc) {
				alloc = alloc ? 2 * alloc : 16;
				l->items = xrealloc(l->items, alloc * sizeof(*l->items));
			}
			l->items[l->nr++] = e;
		}
	}
	/* IDs that have files but no manifest: cut short or still going */
	{
		size_t ids = 0;
		const char *prev = NULL;
		size_t prev_len = 0;
		for (size_t i = 0; i < objs.nr; i++) {
			const char *key = objs.items[i].key, *slash = strchr(key, '/');
			if (!slash)
				continue;
			if (prev && prev_len == (size_t)(slash - key) && !strncmp(prev, key, prev_len))
				continue;
			prev = key;
			prev_len = (size_t)(slash - key);
			ids++;
		}
		l->skipped = ids > l->nr ? ids - l->nr : 0;
	}
	if (l->nr)
		qsort(l->items, l->nr, sizeof(*l->items), cmp_newest);
	ret = 0;
out:
	s3_list_release(&objs);
	s3_client_release(&c);
	if (ret < 0)
		bk_list_release(l);
	return ret;
}

int off_verify(const struct off_settings *o, const struct bk_entry *e, int deep, struct ops_error *err)
{
	struct s3_client c;
	int ret = 0;

	client_init(&c, o);
	for (size_t i = 0; i < e->m.nfiles && ret == 0; i++) {
		const struct bk_file *f = &e->m.files[i];
		char *key = key_of(e->id, f->name);
		struct s3_object obj;
		char sha[65];
		uint64_t size = 0;

		memset(&obj, 0, sizeof(obj));
		ret = s3_head(&c, key, &obj, err);
		if (ret == S3_NOT_FOUND)
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "remote set '%s' is missing '%s'", e->id, f->name);
		else if (ret == 0 && obj.size != f->size)
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "remote '%s' has %llu bytes, the manifest says %llu",
					    key, (unsigned long long)obj.size, (unsigned long long)f->size);
		else if (ret == 0 && deep) {
			ret = s3_get_file(&c, key, NULL, NULL, sha, &size, err);
			if (ret == 0 && strcmp(sha, f->sha256))
				ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "remote '%s' does not match its checksum (%.12s..., expected %.12s...)",
						    key, sha, f->sha256);
		}
		s3_object_release(&obj);
		free(key);
	}
	s3_client_release(&c);
	return ret;
}

int off_remove(const struct off_settings *o, const struct bk_entry *e, struct ops_error *err)
{
	struct s3_client c;
	const char **keys = xcalloc(e->m.nfiles + 1, sizeof(char *));
	char *mkey = key_of(e->id, BK_MANIFEST);
	int ret;

	client_init(&c, o);
	for (size_t i = 0; i < e->m.nfiles; i++)
		keys[i] = key_of(e->id, e->m.files[i].name);
	/* the manifest first: a set half deleted is no longer listed */
	if ((ret = s3_delete(&c, mkey, err)) == 0)
		ret = s3_delete_many(&c, keys, e->m.nfiles, err);
	for (size_t i = 0; i < e->m.nfiles; i++)
		free((char *)keys[i]);
	free(keys);
	free(mkey);
	s3_client_release(&c);
	return ret;
}

struct fetch_progress {
	off_progress_fn *fn;
	void *data;
	uint64_t before, total;
};

static void on_fetch_progress(void *data, uint64_t done, uint64_t total)
{
	struct fetch_progress *p = data;
	(void)total;
	if (p->fn)
		p->fn(p->data, p->before + done, p->total);
}

int off_fetch(const struct off_settings *o, const struct bk_entry *remote, const char *dir,
	      off_progress_fn *progress, void *progress_data, struct bk_entry *out, struct ops_error *err)
{
	struct s3_client c;
	struct fetch_progress fp;
	char *tmp = xstrfmt("%s/.tmp-%s", dir, remote->id), *final = xstrfmt("%s/%s", dir, remote->id);
	int ret;

	memset(out, 0, sizeof(*out));
	client_init(&c, o);
	fp.fn = progress;
	fp.data = progress_data;
	fp.before = 0;
	fp.total = bk_manifest_size(&remote->m);
	c.progress = on_fetch_progress;
	c.progress_data = &fp;
	if (fs_exists(final)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s' exists already", final);
		goto out;
	}
	fs_remove_tree(tmp, NULL);
	if ((ret = fs_mkdir_p(tmp, 0700, err)) < 0)
		goto out;
	for (size_t i = 0; i < remote->m.nfiles && ret == 0; i++) {
		const struct bk_file *f = &remote->m.files[i];
		char *key = key_of(remote->id, f->name), *path = xstrfmt("%s/%s", tmp, f->name);
		char *slash = strrchr(path, '/');

		*slash = '\0';
		ret = fs_mkdir_p(path, 0700, err);
		*slash = '/';
		if (ret == 0)
			ret = s3_get_file(&c, key, path, f->sha256, NULL, NULL, err);
		if (ret == S3_NOT_FOUND)
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "remote set '%s' is missing '%s'", remote->id, f->name);
		else if (ret < 0)
			ops_error_prefix(err, "downloading '%s'", key);
		fp.before += f->size;
		free(key);
		free(path);
	}
	if (ret == 0) {
		char *key = key_of(remote->id, BK_MANIFEST), *path = xstrfmt("%s/%s", tmp, BK_MANIFEST);
		ret = s3_get_file(&c, key, path, NULL, NULL, NULL, err);
		free(key);
		free(path);
	}
	if (ret == 0 && (ret = fs_fsync_dir(tmp, err)) == 0 && rename(tmp, final) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot rename '%s' to '%s': %s", tmp, final, strerror(errno));
	if (ret == 0)
		ret = fs_fsync_dir(dir, err);
	if (ret == 0)
		ret = bk_entry_read(final, out, err);
	/* it is on the storage: the next backup need not send it again */
	if (ret == 0)
		ret = write_mark(o, out, err);
out:
	if (ret < 0)
		fs_remove_tree(tmp, NULL);
	s3_client_release(&c);
	free(tmp);
	free(final);
	return ret;
}
