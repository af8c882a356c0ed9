/* opsctl backup and opsctl restore: nightly backups that are verified,
 * pruned and monitored, and restores that cannot destroy the live database. */
#include "opsctl.h"
#include "adapters/db.h"
#include "base/parse.h"
#include "engines/backup.h"
#include "engines/offsite.h"
#include "engines/source.h"
#include "system/clock.h"
#include "system/fs.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static const char *const backup_usage[] = {
	"opsctl backup [create] [--no-prune] [--dir DIR] [--format directory|custom|plain] [--compression zstd|gzip|none] [--jobs N] [--limit-rate RATE]",
	"opsctl backup list [--remote] [--dir DIR]",
	"opsctl backup verify [ID|latest] [--restore-test | --remote [--deep]] [--dir DIR]",
	"opsctl backup prune [--dir DIR]",
	"opsctl backup upload [ID] [--limit-rate RATE] [--dir DIR]",
	NULL,
};

static const char *const restore_usage[] = {
	"opsctl restore [ID|PATH|latest] [--target-db NAME] [--jobs N] [--files|--no-files] [--sources|--no-sources] [--dir DIR]",
	NULL,
};


struct bk_settings {
	char *dir;
	char *app;
	char *metrics_file;
	const char *format;
	enum zs_codec codec;
	long level;
	long jobs;             /* pg_dump -j / pg_restore -j */
	int64_t stall_ms;      /* [backup] stall_timeout; 0 = the default */
	const char *pg_dump, *pg_restore, *psql;
	char **paths;
	size_t npaths;
	struct bk_policy policy;
	int have_policy;
	char *offsite;         /* [backup] offsite: the [storage] sets are uploaded to */
	uint64_t limit_rate;   /* --limit-rate: upload bytes/s */
	struct src_settings *sources;  /* the [source]s */
	size_t nsources;
};

static void settings_release(struct bk_settings *s)
{
	free(s->dir);
	free(s->app);
	free(s->metrics_file);
	for (size_t i = 0; i < s->npaths; i++)
		free(s->paths[i]);
	free(s->paths);
	free(s->offsite);
	for (size_t i = 0; i < s->nsources; i++)
		src_settings_release(&s->sources[i]);
	free(s->sources);
	memset(s, 0, sizeof(*s));
}

#define JOBS_UNSET LONG_MIN

/* A directory dump is restored in parallel by default; a custom dump only
 * when asked, since pg_restore -j needs it decompressed to a file first. */
static int restore_jobs(const struct bk_entry *e, long explicit_jobs, const struct bk_settings *s)
{
	if (explicit_jobs != JOBS_UNSET)
		return (int)explicit_jobs;
	return !strcmp(e->m.format, "directory") ? (int)s->jobs : 1;
}

/* [backup] and the options, checked before anything runs. */
static int read_settings(struct opsctl_ctx *ctx, const char *dir_opt, const char *format_opt,
			 const char *compression_opt, struct bk_settings *s)
{
	const struct config *cfg = ctx->have_config ? &ctx->cfg : NULL;
	const char *v;
	static const char *const keys[] = { "keep_last", "keep_daily", "keep_weekly", "keep_monthly" };
	long *slots[] = { &s->policy.keep_last, &s->policy.keep_daily, &s->policy.keep_weekly,
			  &s->policy.keep_monthly };

	memset(s, 0, sizeof(*s));
	v = dir_opt ? dir_opt : cfg ? config_get(cfg, "backup", NULL, "dir") : NULL;
	s->dir = v ? (dir_opt ? xstrdup(v) : cmd_config_path(ctx, v)) : xstrdup("backups");
	v = cfg ? config_get(cfg, "app", NULL, "name") : NULL;
	s->app = xstrdup(v && *v ? v : "opsctl");
	v = cfg ? config_get(cfg, "backup", NULL, "metrics_file") : NULL;
	s->metrics_file = v && *v ? cmd_config_path(ctx, v) : NULL;
	s->format = format_opt ? format_opt : cfg && config_get(cfg, "backup", NULL, "format")
						      ? config_get(cfg, "backup", NULL, "format") : "directory";
	if (strcmp(s->format, "directory") && strcmp(s->format, "custom") && strcmp(s->format, "plain"))
		return ops_error_set(&ctx->err, format_opt ? OPS_EXIT_USAGE : OPS_EXIT_CONFIG,
				     "unknown backup format '%s' (expected directory, custom or plain)", s->format);
	/* pg_restore's formats are compressed with zstd, plain dumps with gzip like the seeds' */
	v = compression_opt ? compression_opt : cfg ? config_get(cfg, "backup", NULL, "compression") : NULL;
	if (zs_codec_parse(v ? v : strcmp(s->format, "plain") ? "zstd" : "gzip", &s->codec, &ctx->err) < 0)
		return -ctx->err.code;
	s->jobs = bk_default_jobs();
	if (cfg && config_get_int(cfg, "backup", NULL, "jobs", 1, 64, &s->jobs, &ctx->err) < 0)
		return -ctx->err.code;
	if (cfg && config_get_int(cfg, "backup", NULL, "level", -7, 19, &s->level, &ctx->err) < 0)
		return -ctx->err.code;
	if (bk_stall_setting(cfg, &s->stall_ms, &ctx->err) < 0)
		return -ctx->err.code;
	if (s->level && ((s->codec == ZS_GZIP && (s->level < 1 || s->level > 9)) || s->codec == ZS_NONE))
		return config_error(cfg, config_find_entry(cfg, "backup", NULL, "level"), &ctx->err,
				    "level %ld does not fit compression '%s' (gzip takes 1-9, zstd -7-19, none none)",
				    s->level, zs_codec_name(s->codec));
	s->pg_dump = cfg && config_get(cfg, "backup", NULL, "pg_dump") ? config_get(cfg, "backup", NULL, "pg_dump") : "pg_dump";
	s->pg_restore = cfg && config_get(cfg, "backup", NULL, "pg_restore") ? config_get(cfg, "backup", NULL, "pg_restore") : "pg_restore";
	s->psql = cfg && config_get(cfg, "backup", NULL, "psql") ? config_get(cfg, "backup", NULL, "psql") : "psql";
	v = cfg ? config_get(cfg, "backup", NULL, "paths") : NULL;
	while (v && *v) {
		size_t n;
		while (*v == ' ' || *v == '\t')
			v++;
		n = strcspn(v, " \t");
		if (!n)
			break;
		s->paths = xrealloc(s->paths, (s->npaths + 1) * sizeof(char *));
		s->paths[s->npaths] = xstrndup(v, n);
		if (s->paths[s->npaths][0] != '/') {
			/* stored absolute: a restore puts them back wherever it runs */
			char *rel = cmd_config_path(ctx, s->paths[s->npaths]), cwd[4096];
			free(s->paths[s->npaths]);
			if (rel[0] != '/' && getcwd(cwd, sizeof(cwd))) {
				s->paths[s->npaths] = xstrfmt("%s/%s", cwd, rel);
				free(rel);
			} else {
				s->paths[s->npaths] = rel;
			}
		}
		s->npaths++;
		v += n;
	}
	for (int i = 0; i < 4; i++) {
		if (cfg && config_get(cfg, "backup", NULL, keys[i]))
			s->have_policy = 1;
		if (cfg && config_get_int(cfg, "backup", NULL, keys[i], 0, 100000, slots[i], &ctx->err) < 0)
			return -ctx->err.code;
	}
	v = cfg ? config_get(cfg, "backup", NULL, "offsite") : NULL;
	s->offsite = v && *v ? xstrdup(v) : NULL;
	if (cfg) {
		const char **names = NULL;
		size_t n = src_names(cfg, &names);
		int ret = 0;
		s->sources = xcalloc(n + 1, sizeof(*s->sources));
		for (size_t i = 0; i < n && ret == 0; i++) {
			src_settings_init(&s->sources[i]);
			s->nsources++;
			ret = src_settings_load(&s->sources[i], cfg, ctx->have_env ? &ctx->env : NULL, names[i], &ctx->err);
		}
		free(names);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* [storage "NAME"] of [backup] offsite, with the remote retention. */
static int offsite_settings(struct opsctl_ctx *ctx, const struct bk_settings *s, struct off_settings *o)
{
	int ret;
	off_settings_init(o);
	if (!s->offsite) {
		ret = ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "no [backup] offsite: there is no remote to use");
		ops_error_hint(&ctx->err, "set [backup] offsite = NAME and describe it in [storage \"NAME\"]");
		return ret;
	}
	if ((ret = off_settings_load(o, &ctx->cfg, s->offsite, ctx->have_env ? &ctx->env : NULL, &s->policy,
				     s->have_policy, &ctx->err)) < 0)
		return ret;
	o->state_dir = cmd_state_dir(ctx);
	o->rate_limit = s->limit_rate;
	o->stop = cmd_stop_requested; /* Ctrl-C ends a long upload or download; it resumes next time */
	return 0;
}

struct progress_state {
	struct opsctl_ctx *ctx;
	int64_t start;
	int64_t drawn;   /* when the line was last redrawn: ten times a second is enough */
};

static int on_progress(const char *what, uint64_t done, uint64_t total, void *data)
{
	struct progress_state *p = data;
	double secs = (double)(clock_now_ms() - p->start) / 1000.0;
	struct strbuf a = STRBUF_INIT, rate = STRBUF_INIT;

	if (!p->ctx->term.progress || clock_now_ms() - p->drawn < 100)
		return cmd_interrupted != 0;
	p->drawn = clock_now_ms();
	format_size(&a, done);
	format_size(&rate, secs > 0.2 ? (uint64_t)((double)done / secs) : 0);
	if (done && strcmp(what, "check"))
		term_progress(&p->ctx->term, "%s: %s, %s/s, %.0fs", what, a.buf, rate.buf, secs);
	else
		term_progress(&p->ctx->term, "%s... %.0fs", what, secs);
	strbuf_release(&a);
	strbuf_release(&rate);
	return cmd_interrupted != 0;
}

/* With --output json, a command that stops before its work still prints its
 * document, so CI always has one to read. Returns the exit code. */
static int fail_json(struct opsctl_ctx *ctx, const char *command)
{
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", command);
		cJSON_AddNumberToObject(doc, "exit", ctx->err.code);
		cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	}
	return cmd_fail(ctx, NULL);
}

static int take_lock(struct opsctl_ctx *ctx, struct fs_lock *lock, const char *command)
{
	char *state = cmd_state_dir(ctx);
	int ret = fs_lock_acquire(lock, state, "backup", command, ctx->lock_wait_ms > 0 ? ctx->lock_wait_ms : 0,
				  &ctx->err);
	free(state);
	return ret;
}

/* Prometheus textfile for node_exporter, rewritten atomically after every
 * run, so an alert fires when backups stop succeeding. */
static void write_metrics(struct opsctl_ctx *ctx, const struct bk_settings *s, int ok,
			  const struct bk_entry *made, int64_t duration_ms, int offsite_ok)
{
	struct bk_list l;
	struct strbuf sb = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	time_t last = 0;
	uint64_t size = 0;

	if (!s->metrics_file)
		return;
	if (bk_list_read(s->dir, &l, NULL) == 0 && (bk_list_only_app(&l, s->app), l.nr)) {
		last = l.items[0].m.finished_at; /* a failed run keeps the last good time */
		size = bk_manifest_size(&l.items[0].m);
	}
	if (made) {
		last = made->m.finished_at;
		size = bk_manifest_size(&made->m);
	}
	strbuf_addf(&sb, "# HELP opsctl_backup_success 1 if the last backup run succeeded\n"
			 "# TYPE opsctl_backup_success gauge\n"
			 "opsctl_backup_success{app=\"%s\"} %d\n", s->app, ok);
	strbuf_addf(&sb, "# HELP opsctl_backup_last_success_timestamp_seconds when the newest good backup finished\n"
			 "# TYPE opsctl_backup_last_success_timestamp_seconds gauge\n"
			 "opsctl_backup_last_success_timestamp_seconds{app=\"%s\"} %lld\n", s->app, (long long)last);
	strbuf_addf(&sb, "# HELP opsctl_backup_duration_seconds how long the last backup run took\n"
			 "# TYPE opsctl_backup_duration_seconds gauge\n"
			 "opsctl_backup_duration_seconds{app=\"%s\"} %.3f\n", s->app, (double)duration_ms / 1000.0);
	strbuf_addf(&sb, "# HELP opsctl_backup_size_bytes size of the newest good backup\n"
			 "# TYPE opsctl_backup_size_bytes gauge\n"
			 "opsctl_backup_size_bytes{app=\"%s\"} %llu\n", s->app, (unsigned long long)size);
	if (s->offsite && offsite_ok >= 0)
		strbuf_addf(&sb, "# HELP opsctl_backup_offsite_success 1 if the last run's sets reached the offsite storage\n"
				 "# TYPE opsctl_backup_offsite_success gauge\n"
				 "opsctl_backup_offsite_success{app=\"%s\",storage=\"%s\"} %d\n",
			    s->app, s->offsite, offsite_ok);
	if (fs_write_atomic(s->metrics_file, sb.buf, sb.len, 0644, &err) < 0)
		term_warning(&ctx->term, "cannot write the metrics file: %s", err.msg.buf);
	if (l.nr || l.items)
		bk_list_release(&l);
	strbuf_release(&sb);
	ops_error_release(&err);
}

static cJSON *entry_json(const struct bk_entry *e)
{
	cJSON *o = cJSON_CreateObject();
	char when[32];
	clock_rfc3339(when, e->m.started_at);
	cJSON_AddStringToObject(o, "id", e->id);
	cJSON_AddStringToObject(o, "path", e->path);
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddStringToObject(o, "database", e->m.database);
	cJSON_AddStringToObject(o, "format", e->m.format);
	cJSON_AddStringToObject(o, "compression", e->m.compression);
	cJSON_AddNumberToObject(o, "size_bytes", (double)bk_manifest_size(&e->m));
	cJSON_AddNumberToObject(o, "dump_bytes", (double)e->m.dump_bytes);
	cJSON_AddNumberToObject(o, "duration_ms", (double)e->m.duration_ms);
	cJSON_AddNumberToObject(o, "tables", (double)e->m.ntables);
	if (e->verified_at) {
		clock_rfc3339(when, e->verified_at);
		cJSON_AddStringToObject(o, "verified_at", when);
	}
	cJSON_AddBoolToObject(o, "restore_tested", e->restore_tested);
	return o;
}

/* Retention after a good backup, and `backup prune`. */
static int prune(struct opsctl_ctx *ctx, const struct bk_settings *s, cJSON *removed_out)
{
	struct bk_list l;
	int *keep = NULL, ret;
	const char **why = NULL;
	size_t removed = 0;

	ret = bk_list_read(s->dir, &l, &ctx->err);
	if (ret < 0)
		return ret;
	bk_list_only_app(&l, s->app);
	keep = xcalloc(l.nr + 1, sizeof(int));
	why = xcalloc(l.nr + 1, sizeof(char *));
	bk_retention(&l, &s->policy, keep, why);
	for (size_t i = 0; i < l.nr && ret == 0; i++) {
		if (keep[i]) {
			term_verbose(&ctx->term, "keeping %s (%s)", l.items[i].id, why[i]);
			continue;
		}
		if (ctx->dry_run) {
			if (!ctx->json)
				printf("would remove %s\n", l.items[i].id);
		} else {
			ret = bk_remove(&l.items[i], &ctx->err);
			if (ret == 0 && !ctx->json && !ctx->quiet)
				printf("removed %s\n", l.items[i].id);
		}
		if (ret == 0) {
			cJSON_AddItemToArray(removed_out, cJSON_CreateString(l.items[i].id));
			removed++;
		}
	}
	if (ret == 0 && (removed || ctx->dry_run))
		term_info(&ctx->term, "%s%zu backup%s, keeping %zu", ctx->dry_run ? "would remove " : "removed ", removed,
			  removed == 1 ? "" : "s", l.nr - removed);
	free(keep);
	free(why);
	bk_list_release(&l);
	return ret;
}

static void on_source_event(void *data, enum ops_event kind, const char *msg)
{
	struct progress_state *p = data;
	cmd_event(p->ctx, kind, msg);
}

static void on_source_progress(void *data, const char *what, uint64_t done, uint64_t total)
{
	on_progress(what, done, total, data);
}

static void source_callbacks(struct src_callbacks *cb, struct progress_state *ps)
{
	memset(cb, 0, sizeof(*cb));
	cb->event = on_source_event;
	cb->progress = on_source_progress;
	cb->stop_requested = cmd_stop_requested;
	cb->data = ps;
}

static void on_upload_progress(void *data, uint64_t done, uint64_t total)
{
	on_progress("upload", done, total, data);
}

/* Uploads the local sets the remote retention keeps that are not there yet
 * (the one just made, and any whose upload failed before), oldest first;
 * only_id: that set alone, uploaded again even if it was. Ids uploaded go
 * into uploaded. */
static int upload_sets(struct opsctl_ctx *ctx, const struct bk_settings *s, const char *only_id, const char *fresh_id,
		       cJSON *uploaded)
{
	struct off_settings o;
	struct bk_list l;
	struct progress_state ps = { ctx, clock_now_ms(), 0 };
	int *keep = NULL, ret, found = 0;

	memset(&l, 0, sizeof(l));
	if ((ret = offsite_settings(ctx, s, &o)) < 0 || (ret = bk_list_read(s->dir, &l, &ctx->err)) < 0)
		goto out;
	bk_list_only_app(&l, s->app);
	keep = xcalloc(l.nr + 1, sizeof(int));
	if (o.have_policy)
		bk_retention(&l, &o.policy, keep, NULL);
	else
		for (size_t k = 0; k < l.nr; k++)
			keep[k] = 1;
	if (only_id) {
		const struct bk_entry *one;
		if ((ret = bk_find(&l, only_id, &one, &ctx->err)) < 0)
			goto out;
		only_id = one->id;
	}
	/* newest first: the set just made matters most */
	for (size_t k = 0; k < l.nr && ret == 0; k++) {
		const struct bk_entry *e = &l.items[k];
		struct off_upload_result ur;
		struct strbuf size = STRBUF_INIT;

		if (only_id ? strcmp(e->id, only_id) != 0 : (!keep[k] || off_uploaded(e, s->offsite)))
			continue;
		found = 1;
		if (ctx->dry_run) {
			if (!ctx->json)
				printf("would upload %s to '%s'\n", e->id, s->offsite);
			cJSON_AddItemToArray(uploaded, cJSON_CreateString(e->id));
			continue;
		}
		/* a set made by an earlier run has had time to rot on disk: each
		 * file is checked against its checksum as it is read for sending,
		 * and a damaged one is not completed on the storage */
		ps.start = clock_now_ms();
		ret = off_upload(&o, e, !fresh_id || strcmp(e->id, fresh_id), on_upload_progress, &ps, &ur,
				 &ctx->err);
		term_progress_done(&ctx->term);
		if (ret < 0 && ur.damaged)
			break; /* the set is damaged, not the upload: said as bk_verify says it */
		if (ret < 0) {
			ops_error_prefix(&ctx->err, "backup '%s' is complete here, but its upload to '%s' failed", e->id,
					 s->offsite);
			/* the adapter's hint (the credentials, the server) says what to fix */
			if (ctx->err.hint.len)
				ops_error_hint(&ctx->err, "%s; the local set is intact, and the next 'opsctl backup' uploads it again (or run 'opsctl backup upload %s')",
					       ctx->err.hint.buf, e->id);
			else
				ops_error_hint(&ctx->err, "the local set is intact; the next 'opsctl backup' uploads it again (or run 'opsctl backup upload %s')",
					       e->id);
			break;
		}
		format_size(&size, ur.bytes);
		term_info(&ctx->term, "uploaded %s to '%s' (%s in %.1fs%s)", e->id, s->offsite, size.buf,
			  (double)ur.duration_ms / 1000.0, ur.skipped || ur.parts_resumed ? ", resumed" : "");
		strbuf_release(&size);
		cJSON_AddItemToArray(uploaded, cJSON_CreateString(e->id));
	}
	(void)found;
out:
	free(keep);
	bk_list_release(&l);
	off_settings_release(&o);
	return ret;
}

/* Remote retention: the remote_keep_* policy over the remote sets. */
static int prune_remote(struct opsctl_ctx *ctx, const struct bk_settings *s, cJSON *removed_out)
{
	struct off_settings o;
	struct bk_list l;
	int *keep = NULL, ret;

	memset(&l, 0, sizeof(l));
	if ((ret = offsite_settings(ctx, s, &o)) < 0 || !o.have_policy || (ret = off_list(&o, &l, &ctx->err)) < 0)
		goto out;
	bk_list_only_app(&l, s->app);
	keep = xcalloc(l.nr + 1, sizeof(int));
	bk_retention(&l, &o.policy, keep, NULL);
	for (size_t i = 0; i < l.nr && ret == 0; i++) {
		if (keep[i])
			continue;
		if (ctx->dry_run) {
			if (!ctx->json)
				printf("would remove %s from '%s'\n", l.items[i].id, s->offsite);
		} else if ((ret = off_remove(&o, &l.items[i], &ctx->err)) == 0 && !ctx->json && !ctx->quiet) {
			printf("removed %s from '%s'\n", l.items[i].id, s->offsite);
		}
		if (ret == 0)
			cJSON_AddItemToArray(removed_out, cJSON_CreateString(l.items[i].id));
	}
	if (ret < 0)
		ops_error_prefix(&ctx->err, "pruning '%s'", s->offsite);
out:
	free(keep);
	bk_list_release(&l);
	off_settings_release(&o);
	return ret;
}

static int do_create(struct opsctl_ctx *ctx, struct bk_settings *s, int no_prune)
{
	struct bk_create_opts o;
	struct bk_entry made;
	struct db_target db;
	struct fs_lock lock = FS_LOCK_INIT;
	struct progress_state ps = { ctx, clock_now_ms(), 0 };
	struct src_callbacks scb;
	cJSON *fields = cJSON_CreateObject(), *removed = cJSON_CreateArray();
	cJSON *uploaded = cJSON_CreateArray(), *removed_remote = cJSON_CreateArray();
	int ret, code, have_db = 0, offsite_ok = -1;

	memset(&made, 0, sizeof(made));
	memset(&db, 0, sizeof(db));
	if (ctx->dry_run) {
		printf("would back up the database%s into '%s' (%s, %s)\n", s->npaths ? " and the paths" : "", s->dir,
		       s->format, zs_codec_name(s->codec));
		ret = 0;
		goto out;
	}
	ret = take_lock(ctx, &lock, "opsctl backup");
	if (ret == 0 && s->offsite) {
		/* a bad [storage] is the config's fault, found before the dump */
		struct off_settings check;
		ret = offsite_settings(ctx, s, &check);
		off_settings_release(&check);
	}
	if (ret == 0)
		ret = db_resolve(&db, ctx->db_url, ctx->have_config ? &ctx->cfg : NULL,
				 ctx->have_env ? &ctx->env : NULL, &ctx->err);
	if (ret < 0)
		goto out;
	have_db = 1;
	memset(&o, 0, sizeof(o));
	o.dir = s->dir;
	o.app = s->app;
	o.db = &db;
	o.format = s->format;
	o.codec = s->codec;
	o.level = (int)s->level;
	o.jobs = (int)s->jobs;
	o.paths = (const char *const *)s->paths;
	o.npaths = s->npaths;
	o.pg_dump = s->pg_dump;
	o.stall_ms = s->stall_ms;
	o.sources = s->sources;
	o.nsources = s->nsources;
	source_callbacks(&scb, &ps);
	o.source_callbacks = &scb;
	o.progress = on_progress;
	o.progress_data = &ps;
	ret = bk_create(&o, &made, &ctx->err);
	term_progress_done(&ctx->term);
	if (ret == 0 && s->offsite) {
		/* the local set is complete and valid whatever happens now; the
		 * upload comes before the local prune, which then never removes a
		 * set the storage does not have yet */
		ret = upload_sets(ctx, s, NULL, made.id, uploaded);
		if (ret == 0 && !no_prune)
			ret = prune_remote(ctx, s, removed_remote);
		offsite_ok = ret == 0;
		if (ret < 0 && ctx->err.code != OPS_EXIT_INTEGRITY)
			ctx->err.code = OPS_EXIT_UNREACHABLE;
	}
	if (ret == 0 && s->have_policy && !no_prune)
		ret = prune(ctx, s, removed); /* never after a failed backup or upload */
	if (made.id || ret < 0)
		write_metrics(ctx, s, made.id != NULL, made.id ? &made : NULL, clock_now_ms() - ps.start, offsite_ok);
out:
	code = ret < 0 ? ctx->err.code : OPS_EXIT_OK;
	if (!ctx->dry_run) {
		if (made.id) {
			cJSON_AddStringToObject(fields, "id", made.id);
			cJSON_AddNumberToObject(fields, "size_bytes", (double)bk_manifest_size(&made.m));
			cJSON_AddNumberToObject(fields, "duration_ms", (double)made.m.duration_ms);
		}
		if (s->offsite) {
			cJSON_AddStringToObject(fields, "offsite", s->offsite);
			cJSON_AddBoolToObject(fields, "offsite_ok", offsite_ok == 1);
			cJSON_AddItemToObject(fields, "uploaded", cJSON_Duplicate(uploaded, 1));
		}
		if (code)
			cJSON_AddStringToObject(fields, "error", ctx->err.msg.buf);
	}
	if (ctx->json && !ctx->dry_run) {
		cJSON *doc = made.id ? entry_json(&made) : cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "backup create");
		cJSON_AddItemToObject(doc, "pruned", removed);
		removed = NULL;
		if (s->offsite) {
			cJSON *off = cJSON_AddObjectToObject(doc, "offsite");
			cJSON_AddStringToObject(off, "storage", s->offsite);
			cJSON_AddBoolToObject(off, "ok", offsite_ok == 1);
			cJSON_AddItemToObject(off, "uploaded", uploaded);
			cJSON_AddItemToObject(off, "pruned", removed_remote);
			uploaded = removed_remote = NULL;
		}
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	} else if (made.id && !ctx->quiet) {
		struct strbuf size = STRBUF_INIT;
		uint64_t total = bk_manifest_size(&made.m);
		format_size(&size, total);
		printf("%s  %s  %.1fs  %.1fx\n", made.id, size.buf, (double)made.m.duration_ms / 1000.0,
		       total ? (double)made.m.dump_bytes / (double)bk_manifest_size(&made.m) : 0.0);
		strbuf_release(&size);
	}
	if (code)
		term_report(&ctx->term, &ctx->err);
	if (!ctx->dry_run && code != OPS_EXIT_LOCKED)
		cmd_history(ctx, "backup create", code, fields);
	else
		cJSON_Delete(fields);
	cJSON_Delete(removed);
	cJSON_Delete(uploaded);
	cJSON_Delete(removed_remote);
	if (have_db)
		db_target_release(&db);
	bk_entry_release(&made);
	fs_lock_release(&lock);
	return code;
}

static int do_list(struct opsctl_ctx *ctx, const struct bk_settings *s, int remote)
{
	struct bk_list l;
	if (remote) {
		struct off_settings o;
		int ret = offsite_settings(ctx, s, &o);
		if (ret == 0)
			ret = off_list(&o, &l, &ctx->err);
		off_settings_release(&o);
		if (ret < 0)
			return fail_json(ctx, "backup list --remote");
	} else if (bk_list_read(s->dir, &l, &ctx->err) < 0) {
		return fail_json(ctx, "backup list");
	}
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "backups");
		for (size_t i = 0; i < l.nr; i++)
			cJSON_AddItemToArray(arr, entry_json(&l.items[i]));
		cJSON_AddStringToObject(doc, remote ? "storage" : "dir", remote ? s->offsite : s->dir);
		cJSON_AddNumberToObject(doc, "exit", 0);
		cmd_print_json(doc);
	} else if (l.nr) {
		static const char *const header[] = { "ID", "TIME", "SIZE", "FORMAT", "TABLES", "VERIFIED" };
		static const char *const remote_header[] = { "ID", "TIME", "SIZE", "FORMAT", "TABLES", "WHERE" };
		struct table tb;
		struct strbuf out = STRBUF_INIT;
		table_init(&tb, 6, remote ? remote_header : header);
		for (size_t i = 0; i < l.nr; i++) {
			const struct bk_entry *e = &l.items[i];
			char when[32], verified[48], tables[24];
			struct strbuf size = STRBUF_INIT, fmt = STRBUF_INIT;
			const char *cells[6];
			clock_rfc3339(when, e->m.started_at);
			format_size(&size, bk_manifest_size(&e->m));
			strbuf_addf(&fmt, "%s+%s", e->m.format, e->m.compression);
			snprintf(tables, sizeof(tables), "%zu", e->m.ntables);
			if (remote) {
				strlcpy_s(verified, s->offsite, sizeof(verified));
			} else if (e->verified_at) {
				clock_rfc3339(verified, e->verified_at);
				if (e->restore_tested)
					strlcpy_s(verified + strlen(verified), " +restore", sizeof(verified) - strlen(verified));
			} else {
				strlcpy_s(verified, "no", sizeof(verified));
			}
			cells[0] = e->id;
			cells[1] = when;
			cells[2] = size.buf;
			cells[3] = fmt.buf;
			cells[4] = tables;
			cells[5] = verified;
			table_add_row(&tb, 0, cells);
			strbuf_release(&size);
			strbuf_release(&fmt);
		}
		table_render(&tb, &out, ctx->term.color_out);
		fwrite(out.buf, 1, out.len, stdout);
		table_release(&tb);
		strbuf_release(&out);
	} else {
		term_info(&ctx->term, "no backups in '%s'", remote ? s->offsite : s->dir);
	}
	if (l.skipped && remote)
		term_warning(&ctx->term, "%zu set%s in '%s' without a valid manifest (an upload cut short; not backups)",
			     l.skipped, l.skipped == 1 ? "" : "s", s->offsite);
	else if (l.skipped)
		term_warning(&ctx->term, "%zu director%s in '%s' without a valid manifest (unfinished or damaged; not backups)",
			     l.skipped, l.skipped == 1 ? "y" : "ies", s->dir);
	bk_list_release(&l);
	return OPS_EXIT_OK;
}

static int restore_test(struct opsctl_ctx *ctx, const struct bk_settings *s, const struct bk_entry *e)
{
	struct db_target db;
	struct bk_restore_opts ro;
	struct bk_restore_result rr;
	struct progress_state ps = { ctx, clock_now_ms(), 0 };
	char *scratch = xstrfmt("opsctl_restore_test_%d", (int)getpid());
	int ret = db_resolve(&db, ctx->db_url, ctx->have_config ? &ctx->cfg : NULL, ctx->have_env ? &ctx->env : NULL,
			     &ctx->err);
	if (ret < 0) {
		free(scratch);
		return ret;
	}
	memset(&ro, 0, sizeof(ro));
	ro.db = &db;
	ro.scratch_db = scratch;
	ro.jobs = restore_jobs(e, JOBS_UNSET, s);
	ro.verified = 1;
	ro.pg_restore = s->pg_restore;
	ro.psql = s->psql;
	ro.progress = on_progress;
	ro.progress_data = &ps;
	ret = bk_restore(e, &ro, &rr, &ctx->err);
	term_progress_done(&ctx->term);
	if (ret == 0)
		term_info(&ctx->term, "restore test of '%s': %zu table%s restored with the row counts of the manifest",
			  e->id, rr.tables_checked, rr.tables_checked == 1 ? "" : "s");
	bk_restore_result_release(&rr);
	db_target_release(&db);
	free(scratch);
	return ret;
}

static int do_verify(struct opsctl_ctx *ctx, const struct bk_settings *s, const char *which, int test)
{
	struct bk_list l;
	const struct bk_entry *e;
	struct fs_lock lock = FS_LOCK_INIT;
	int ret = bk_list_read(s->dir, &l, &ctx->err), code;

	if (ret == 0 && !which)
		bk_list_only_app(&l, s->app);
	if (ret == 0)
		ret = bk_find(&l, which ? which : "latest", &e, &ctx->err);
	if (ret == 0)
		ret = bk_verify(e, &ctx->err);
	if (ret == 0 && test)
		ret = take_lock(ctx, &lock, "opsctl backup verify --restore-test");
	if (ret == 0 && test)
		ret = restore_test(ctx, s, e);
	if (ret == 0)
		bk_mark_verified(e, test);
	code = ret < 0 ? ctx->err.code : OPS_EXIT_OK;
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", test ? "backup verify --restore-test" : "backup verify");
		if (ret == 0 || (l.nr && which))
			cJSON_AddStringToObject(doc, "id", ret == 0 ? e->id : which);
		cJSON_AddBoolToObject(doc, "ok", ret == 0);
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	} else if (ret == 0 && !ctx->quiet) {
		printf("%s  ok%s\n", e->id, test ? " (checksums and a restore test)" : " (checksums)");
	}
	if (code)
		term_report(&ctx->term, &ctx->err);
	if (test) {
		cJSON *fields = cJSON_CreateObject();
		if (ret == 0)
			cJSON_AddStringToObject(fields, "id", e->id);
		cmd_history(ctx, "backup verify --restore-test", code, fields);
	}
	fs_lock_release(&lock);
	bk_list_release(&l);
	return code;
}

/* backup verify --remote [--deep]: the remote set against its manifest. */
static int do_verify_remote(struct opsctl_ctx *ctx, const struct bk_settings *s, const char *which, int deep)
{
	struct off_settings o;
	struct bk_list l;
	const struct bk_entry *e = NULL;
	int ret, code;

	memset(&l, 0, sizeof(l));
	ret = offsite_settings(ctx, s, &o);
	if (ret == 0)
		ret = off_list(&o, &l, &ctx->err);
	if (ret == 0 && !which)
		bk_list_only_app(&l, s->app);
	if (ret == 0)
		ret = bk_find(&l, which ? which : "latest", &e, &ctx->err);
	if (ret == 0)
		ret = off_verify(&o, e, deep, &ctx->err);
	code = ret < 0 ? ctx->err.code : OPS_EXIT_OK;
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", deep ? "backup verify --remote --deep" : "backup verify --remote");
		if (e)
			cJSON_AddStringToObject(doc, "id", e->id);
		cJSON_AddStringToObject(doc, "storage", s->offsite ? s->offsite : "");
		cJSON_AddBoolToObject(doc, "ok", ret == 0);
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	} else if (ret == 0 && !ctx->quiet) {
		printf("%s  ok in '%s' (%s)\n", e->id, s->offsite, deep ? "every byte against the checksums" : "every file, with its size");
	}
	if (code)
		term_report(&ctx->term, &ctx->err);
	bk_list_release(&l);
	off_settings_release(&o);
	return code;
}

/* backup upload [ID]: what an earlier run could not send, or one set again. */
static int do_upload(struct opsctl_ctx *ctx, const struct bk_settings *s, const char *which)
{
	struct fs_lock lock = FS_LOCK_INIT;
	cJSON *uploaded = cJSON_CreateArray(), *fields;
	int ret = ctx->dry_run ? 0 : take_lock(ctx, &lock, "opsctl backup upload"), code;

	if (ret == 0)
		ret = upload_sets(ctx, s, which, NULL, uploaded);
	code = ret < 0 ? ctx->err.code : OPS_EXIT_OK;
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "backup upload");
		cJSON_AddStringToObject(doc, "storage", s->offsite ? s->offsite : "");
		cJSON_AddItemToObject(doc, "uploaded", cJSON_Duplicate(uploaded, 1));
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	} else if (code == 0 && !cJSON_GetArraySize(uploaded)) {
		term_info(&ctx->term, "every backup is in '%s' already", s->offsite);
	}
	if (code)
		term_report(&ctx->term, &ctx->err);
	if (code != OPS_EXIT_LOCKED && !ctx->dry_run) {
		fields = cJSON_CreateObject();
		cJSON_AddStringToObject(fields, "storage", s->offsite ? s->offsite : "");
		cJSON_AddItemToObject(fields, "uploaded", uploaded);
		uploaded = NULL;
		if (code)
			cJSON_AddStringToObject(fields, "error", ctx->err.msg.buf);
		cmd_history(ctx, "backup upload", code, fields);
	}
	cJSON_Delete(uploaded);
	fs_lock_release(&lock);
	return code;
}

static int do_prune(struct opsctl_ctx *ctx, const struct bk_settings *s)
{
	struct fs_lock lock = FS_LOCK_INIT;
	cJSON *removed = cJSON_CreateArray(), *removed_remote = cJSON_CreateArray();
	int ret = 0, code;

	if (!s->have_policy && !(s->offsite && ctx->have_config &&
				 (config_get(&ctx->cfg, "backup", NULL, "remote_keep_last") ||
				  config_get(&ctx->cfg, "backup", NULL, "remote_keep_daily") ||
				  config_get(&ctx->cfg, "backup", NULL, "remote_keep_weekly") ||
				  config_get(&ctx->cfg, "backup", NULL, "remote_keep_monthly")))) {
		ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "no retention policy: nothing would ever be pruned");
		ops_error_hint(&ctx->err, "set keep_last, keep_daily, keep_weekly or keep_monthly in [backup]");
		cJSON_Delete(removed);
		cJSON_Delete(removed_remote);
		return fail_json(ctx, "backup prune");
	}
	if (!ctx->dry_run)
		ret = take_lock(ctx, &lock, "opsctl backup prune");
	if (ret == 0 && s->have_policy)
		ret = prune(ctx, s, removed);
	if (ret == 0 && s->offsite)
		ret = prune_remote(ctx, s, removed_remote);
	code = ret < 0 ? ctx->err.code : OPS_EXIT_OK;
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "backup prune");
		cJSON_AddBoolToObject(doc, "dry_run", ctx->dry_run);
		cJSON_AddItemToObject(doc, "removed", cJSON_Duplicate(removed, 1));
		if (s->offsite)
			cJSON_AddItemToObject(doc, "removed_remote", cJSON_Duplicate(removed_remote, 1));
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	}
	if (code)
		term_report(&ctx->term, &ctx->err);
	if (!ctx->dry_run && code != OPS_EXIT_LOCKED) {
		cJSON *fields = cJSON_CreateObject();
		cJSON_AddItemToObject(fields, "removed", removed);
		removed = NULL;
		if (s->offsite) {
			cJSON_AddItemToObject(fields, "removed_remote", removed_remote);
			removed_remote = NULL;
		}
		cmd_history(ctx, "backup prune", code, fields);
	}
	cJSON_Delete(removed);
	cJSON_Delete(removed_remote);
	fs_lock_release(&lock);
	return code;
}

int cmd_backup(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	static const char *const subs[] = { "create", "list", "verify", "prune", "upload", NULL };
	const char *dir = NULL, *format = NULL, *compression = NULL, *sub = "create";
	int no_prune = 0, restore_test_flag = 0, remote = 0, deep = 0, n, code;
	uint64_t limit_rate = 0;
	long jobs = JOBS_UNSET;
	struct bk_settings s;
	struct cmd_signals sig = { 0 };
	const struct opt options[] = {
		{ OPT_STRING, 0, "dir", &dir, "DIR", "backup directory (default: [backup] dir or ./backups)", 0, NULL },
		{ OPT_CHOICE, 0, "format", &format, "FORMAT", "create: directory or custom (pg_restore), or plain (psql)", 0, "directory|custom|plain" },
		{ OPT_CHOICE, 0, "compression", &compression, "CODEC", "create: zstd, gzip or none", 0, "zstd|gzip|none" },
		{ OPT_INT, 'j', "jobs", &jobs, "N", "create, verify --restore-test: parallel pg_dump/pg_restore jobs (default: [backup] jobs or CPUs, at most 4)", 0, NULL },
		{ OPT_BOOL, 0, "no-prune", &no_prune, NULL, "create: keep every old backup this time", 0, NULL },
		{ OPT_BOOL, 0, "restore-test", &restore_test_flag, NULL, "verify: also restore into a scratch database and compare row counts", 0, NULL },
		{ OPT_BOOL, 0, "remote", &remote, NULL, "list, verify: the sets on the [backup] offsite storage", 0, NULL },
		{ OPT_BOOL, 0, "deep", &deep, NULL, "verify --remote: download every file and check its SHA-256", 0, NULL },
		{ OPT_SIZE, 0, "limit-rate", &limit_rate, "RATE", "create, upload: upload at most RATE bytes per second (e.g. 20M)", 0, NULL },
		OPT_END_MARK,
	};

	n = cmd_parse_options(ctx, options, backup_usage, argc, argv);
	if (n == OPTS_HELP)
		return OPS_EXIT_OK;
	if (n < 0)
		return OPS_EXIT_USAGE;
	if (cmd_subcommand(ctx, "backup", subs, &argv, &n, &sub) < 0)
		return OPS_EXIT_USAGE;
	if (n > (strcmp(sub, "verify") && strcmp(sub, "upload") ? 0 : 1)) {
		term_error(&ctx->term, "unexpected argument '%s'", argv[n - 1]);
		return OPS_EXIT_USAGE;
	}
	if (jobs != JOBS_UNSET && (jobs < 1 || jobs > 64)) {
		term_error(&ctx->term, "--jobs takes 1 to 64");
		return OPS_EXIT_USAGE;
	}
	if ((restore_test_flag || deep) && strcmp(sub, "verify")) {
		term_error(&ctx->term, "option '--%s' does not apply to 'backup %s'", deep ? "deep" : "restore-test", sub);
		return OPS_EXIT_USAGE;
	}
	if (remote && strcmp(sub, "verify") && strcmp(sub, "list")) {
		term_error(&ctx->term, "option '--remote' does not apply to 'backup %s'%s", sub,
			   !strcmp(sub, "prune") ? " (prune always prunes the remote too)" : "");
		return OPS_EXIT_USAGE;
	}
	if ((deep && !remote) || (remote && restore_test_flag)) {
		term_error(&ctx->term, deep && !remote ? "--deep goes with --remote" : "--restore-test works on a local set");
		return OPS_EXIT_USAGE;
	}
	if (read_settings(ctx, dir, format, compression, &s) < 0) {
		char *command = xstrfmt("backup %s", sub);
		code = fail_json(ctx, command);
		free(command);
		goto out;
	}
	if (jobs != JOBS_UNSET)
		s.jobs = jobs;
	s.limit_rate = limit_rate;
	cmd_catch_signals(&sig, 0);
	if (!strcmp(sub, "create"))
		code = do_create(ctx, &s, no_prune);
	else if (!strcmp(sub, "list"))
		code = do_list(ctx, &s, remote);
	else if (!strcmp(sub, "verify") && remote)
		code = do_verify_remote(ctx, &s, n ? argv[0] : NULL, deep);
	else if (!strcmp(sub, "verify"))
		code = do_verify(ctx, &s, n ? argv[0] : NULL, restore_test_flag);
	else if (!strcmp(sub, "upload"))
		code = do_upload(ctx, &s, n ? argv[0] : NULL);
	else
		code = do_prune(ctx, &s);
	cmd_release_signals(&sig);
	if (cmd_interrupted && code)
		code = OPS_EXIT_ABORTED;
out:
	settings_release(&s);
	return code;
}

/* On a terminal the operator types the database's name; without one --yes. */
static int confirm_restore(struct opsctl_ctx *ctx, const char *live, const struct bk_entry *e)
{
	char answer[256] = "";
	size_t len;
	if (ctx->yes)
		return 0;
	if (ctx->json || !isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
		ops_error_set(&ctx->err, OPS_EXIT_ABORTED, "restoring over '%s' needs confirmation; nothing was changed", live);
		ops_error_hint(&ctx->err, "pass --yes (before the command) to run it without a terminal, or --target-db NAME to restore beside it");
		return -OPS_EXIT_ABORTED;
	}
	fprintf(stderr, "This replaces database '%s' with backup '%s' (the current one is kept as %s_pre_restore_...).\n"
			"Type the database name to continue: ", live, e->id, live);
	if (!fgets(answer, sizeof(answer), stdin))
		answer[0] = '\0';
	len = strcspn(answer, "\r\n");
	answer[len] = '\0';
	if (strcmp(answer, live)) {
		ops_error_set(&ctx->err, OPS_EXIT_ABORTED, "not confirmed; nothing was changed");
		return -OPS_EXIT_ABORTED;
	}
	return 0;
}

/* A set that is not here any more, from the offsite storage: downloaded
 * (every file checked on arrival) into the backup directory, then
 * restored like any local set. */
static int fetch_remote(struct opsctl_ctx *ctx, const struct bk_settings *s, const char *which,
			struct bk_entry *out)
{
	struct off_settings o;
	struct bk_list l;
	const struct bk_entry *e = NULL;
	struct progress_state ps = { ctx, clock_now_ms(), 0 };
	int ret;

	memset(&l, 0, sizeof(l));
	if ((ret = offsite_settings(ctx, s, &o)) == 0 && (ret = off_list(&o, &l, &ctx->err)) == 0) {
		if (!strcmp(which, "latest"))
			bk_list_only_app(&l, s->app);
		ret = bk_find(&l, which, &e, &ctx->err);
	}
	if (ret == 0 && ctx->dry_run) {
		/* a dry run downloads nothing: the remote entry is the plan */
		size_t k = (size_t)(e - l.items);
		memset(out, 0, sizeof(*out));
		out->id = xstrdup(e->id);
		out->path = xstrdup(e->path);
		out->m = l.items[k].m;
		memset(&l.items[k].m, 0, sizeof(l.items[k].m));
	} else if (ret == 0) {
		term_info(&ctx->term, "backup '%s' is not in '%s': fetching it from '%s'", e->id, s->dir, s->offsite);
		if ((ret = fs_mkdir_p(s->dir, 0750, &ctx->err)) == 0)
			ret = off_fetch(&o, e, s->dir, on_upload_progress, &ps, out, &ctx->err);
		term_progress_done(&ctx->term);
		if (ret < 0)
			ops_error_prefix(&ctx->err, "fetching '%s' from '%s'", e->id, s->offsite);
	}
	bk_list_release(&l);
	off_settings_release(&o);
	return ret;
}

/* The set's [source]s back where they came from, each through its own
 * [source] section (stop, put the file back, start, check). */
static int restore_sources(struct opsctl_ctx *ctx, const struct bk_settings *s, const struct bk_entry *e,
			   struct progress_state *ps, cJSON *restored)
{
	struct src_callbacks cb;
	const cJSON *it;
	int ret = 0;

	source_callbacks(&cb, ps);
	cJSON_ArrayForEach(it, e->m.sources)
	{
		struct src_entry se;
		const struct src_settings *conf = NULL;
		char *file;

		src_entry_init(&se);
		if ((ret = src_entry_parse(it, &se, &ctx->err)) < 0) {
			src_entry_release(&se);
			break;
		}
		for (size_t i = 0; i < s->nsources; i++)
			if (!strcmp(s->sources[i].name, se.name))
				conf = &s->sources[i];
		if (!conf) {
			term_warning(&ctx->term, "the backup holds source '%s', but the config has no [source \"%s\"]: not restored",
				     se.name, se.name);
			src_entry_release(&se);
			continue;
		}
		file = xstrfmt("%s/%s", e->path, se.file);
		{
			struct src_restore_opts so;
			memset(&so, 0, sizeof(so));
			so.entry = &se;
			so.verified = 1;
			ret = src_restore(conf, file, &so, &cb, &ctx->err);
		}
		if (ret == 0) {
			term_info(&ctx->term, "restored source '%s'", se.name);
			cJSON_AddItemToArray(restored, cJSON_CreateString(se.name));
		}
		free(file);
		src_entry_release(&se);
		if (ret < 0)
			break;
	}
	return ret;
}

/* Before anything is touched: every Redis source to restore can be
 * stopped and started. */
static int sources_ready(struct opsctl_ctx *ctx, const struct bk_settings *s, const struct bk_entry *e)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, e->m.sources)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
		for (size_t i = 0; cJSON_IsString(name) && i < s->nsources; i++) {
			const struct src_settings *c = &s->sources[i];
			if (strcmp(c->name, name->valuestring) || c->type != SRC_REDIS || (c->stop_cmd && c->start_cmd))
				continue;
			ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "source '%s' cannot be restored: [source \"%s\"] has no stop and start commands",
				      c->name, c->name);
			ops_error_hint(&ctx->err, "Redis writes its RDB when it stops and reads it when it starts: add stop = ... and start = ..., or pass --no-sources; nothing was changed");
			return -OPS_EXIT_CONFIG;
		}
	}
	return 0;
}

int cmd_restore(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	const char *dir = NULL, *target = NULL;
	long jobs = JOBS_UNSET;
	int files = -1, sources = -1, remote_plan = 0, fetch_tried = 0, n, ret, code;
	struct bk_settings s;
	struct bk_list l;
	struct bk_entry direct;
	const struct bk_entry *e = NULL;
	struct db_target db;
	struct bk_restore_opts ro;
	struct bk_restore_result rr;
	struct fs_lock lock = FS_LOCK_INIT;
	struct progress_state ps = { ctx, clock_now_ms(), 0 };
	struct cmd_signals sig = { 0 };
	char *live = NULL, stamp[32];
	cJSON *fields = NULL, *sources_done = cJSON_CreateArray();
	const struct opt options[] = {
		{ OPT_STRING, 0, "target-db", &target, "NAME", "restore beside the live database under NAME (no swap)", 0, NULL },
		{ OPT_INT, 'j', "jobs", &jobs, "N", "parallel pg_restore jobs (default: [backup] jobs or CPUs, at most 4; plain dumps: 1)", 0, NULL },
		{ OPT_BOOL, 0, "files", &files, NULL, "also put the paths archive back (default with a full restore)", OPTF_NEG, NULL },
		{ OPT_BOOL, 0, "sources", &sources, NULL, "also put the [source]s (Redis, snapshots) back (default with a full restore)", OPTF_NEG, NULL },
		{ OPT_STRING, 0, "dir", &dir, "DIR", "backup directory (default: [backup] dir or ./backups)", 0, NULL },
		OPT_END_MARK,
	};

	memset(&l, 0, sizeof(l));
	memset(&direct, 0, sizeof(direct));
	memset(&db, 0, sizeof(db));
	memset(&rr, 0, sizeof(rr));
	memset(&s, 0, sizeof(s));
	n = cmd_parse_options(ctx, options, restore_usage, argc, argv);
	if (n == OPTS_HELP || n < 0) {
		cJSON_Delete(sources_done);
		return n == OPTS_HELP ? OPS_EXIT_OK : OPS_EXIT_USAGE;
	}
	if (n > 1 || (jobs != JOBS_UNSET && (jobs < 1 || jobs > 64))) {
		term_error(&ctx->term, n > 1 ? "unexpected argument '%s'" : "--jobs takes 1 to 64%s", n > 1 ? argv[1] : "");
		cJSON_Delete(sources_done);
		return OPS_EXIT_USAGE;
	}
	ret = read_settings(ctx, dir, NULL, NULL, &s);
	if (ret == 0 && n && strchr(argv[0], '/'))
		ret = bk_entry_read(argv[0], &direct, &ctx->err), e = ret == 0 ? &direct : NULL;
	else if (ret == 0 && (ret = bk_list_read(s.dir, &l, &ctx->err)) == 0) {
		if (!n || !strcmp(argv[0], "latest"))
			bk_list_only_app(&l, s.app); /* never another app's newest set */
		ret = bk_find(&l, n ? argv[0] : "latest", &e, &ctx->err);
		if (ret == -OPS_EXIT_USAGE && s.offsite) {
			ops_error_clear(&ctx->err);
			/* under the lock: a backup starting meanwhile removes every .tmp-* of the dir */
			if (!ctx->dry_run)
				ret = take_lock(ctx, &lock, "opsctl restore");
			if (ctx->dry_run || ret == 0) {
				fetch_tried = !ctx->dry_run;
				/* Ctrl-C ends the download; its temporary copy goes */
				cmd_catch_signals(&sig, 0);
				ret = fetch_remote(ctx, &s, n ? argv[0] : "latest", &direct);
				cmd_release_signals(&sig);
			}
			e = ret == 0 ? &direct : NULL;
			remote_plan = ret == 0 && ctx->dry_run;
		}
	}
	if (ret == 0)
		ret = db_resolve(&db, ctx->db_url, ctx->have_config ? &ctx->cfg : NULL, ctx->have_env ? &ctx->env : NULL,
				 &ctx->err);
	if (ret < 0) {
		code = fail_json(ctx, "restore");
		/* a fetch that failed (the disk full, the storage down) is a restore that ran */
		if (fetch_tried && code != OPS_EXIT_LOCKED && code != OPS_EXIT_ABORTED) {
			fields = cJSON_CreateObject();
			cJSON_AddStringToObject(fields, "id", n ? argv[0] : "latest");
			cJSON_AddStringToObject(fields, "error", ctx->err.msg.buf);
			cmd_history(ctx, "restore", code, fields);
		}
		goto out;
	}
	live = db_target_dbname(&db);
	if (remote_plan) {
		printf("would fetch %s from '%s' into '%s' (every file checked), then restore it into %s%s\n", e->id,
		       s.offsite, s.dir, target ? target : live, target ? "" : " (the current one kept aside)");
		code = OPS_EXIT_OK;
		goto out;
	}
	/* verify before asking: a damaged backup is refused without a question;
	 * without one, the table data is checked as it is loaded (before any
	 * swap), which spares a read of the whole set before the restore starts */
	if (ctx->dry_run || (!ctx->yes && !target))
		ret = bk_verify(e, &ctx->err);
	else
		ret = bk_verify_before_restore(e, &ctx->err);
	if (ret == 0 && ctx->dry_run) {
		printf("would restore %s into %s%s\n", e->id, target ? target : live,
		       target ? "" : " (the current one kept aside)");
		code = OPS_EXIT_OK;
		goto out;
	}
	if (ret == 0 && e->m.sources && (sources == 1 || (sources == -1 && !target)))
		ret = sources_ready(ctx, &s, e);
	if (ret == 0 && !target)
		ret = confirm_restore(ctx, live, e);
	if (ret == 0 && lock.fd < 0)
		ret = take_lock(ctx, &lock, "opsctl restore");
	if (ret < 0)
		goto done;
	memset(&ro, 0, sizeof(ro));
	ro.db = &db;
	ro.target_db = target;
	ro.jobs = restore_jobs(e, jobs, &s);
	ro.verified = 1; /* just above, before any question */
	ro.pg_restore = s.pg_restore;
	ro.psql = s.psql;
	if (ctx->have_config) {
		ro.stop_cmd = config_get(&ctx->cfg, "service", NULL, "stop");
		ro.start_cmd = config_get(&ctx->cfg, "service", NULL, "start");
	}
	ro.progress = on_progress;
	ro.progress_data = &ps;
	cmd_catch_signals(&sig, 0);
	ret = bk_restore(e, &ro, &rr, &ctx->err);
	term_progress_done(&ctx->term);
	if (ret == 0 && bk_manifest_file(&e->m, "paths") && (files == 1 || (files == -1 && !target))) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
		ret = bk_restore_files(e, stamp, &ctx->err);
		if (ret < 0)
			ops_error_prefix(&ctx->err, "the database was restored, but the files were not");
	}
	if (ret == 0 && e->m.sources && (sources == 1 || (sources == -1 && !target))) {
		ret = restore_sources(ctx, &s, e, &ps, sources_done);
		if (ret < 0)
			ops_error_prefix(&ctx->err, "the database was restored, but not every source");
	}
	cmd_release_signals(&sig);
done:
	code = ret < 0 ? ctx->err.code : OPS_EXIT_OK;
	if (cmd_interrupted && code)
		code = OPS_EXIT_ABORTED;
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "restore");
		cJSON_AddStringToObject(doc, "id", e->id);
		if (rr.restored_as)
			cJSON_AddStringToObject(doc, "restored_as", rr.restored_as);
		if (rr.previous_as)
			cJSON_AddStringToObject(doc, "previous_as", rr.previous_as);
		cJSON_AddNumberToObject(doc, "tables_checked", (double)rr.tables_checked);
		cJSON_AddItemToObject(doc, "sources", cJSON_Duplicate(sources_done, 1));
		cJSON_AddNumberToObject(doc, "duration_ms", (double)rr.duration_ms);
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	} else if (code == 0 && !ctx->quiet) {
		printf("restored %s into %s in %.1fs%s%s\n", e->id, rr.restored_as, (double)rr.duration_ms / 1000.0,
		       rr.previous_as ? "; the previous database is now " : "", rr.previous_as ? rr.previous_as : "");
	}
	if (code)
		term_report(&ctx->term, &ctx->err);
	if (code != OPS_EXIT_LOCKED && code != OPS_EXIT_ABORTED) {
		fields = cJSON_CreateObject();
		cJSON_AddStringToObject(fields, "id", e->id);
		if (rr.restored_as)
			cJSON_AddStringToObject(fields, "restored_as", rr.restored_as);
		if (rr.previous_as)
			cJSON_AddStringToObject(fields, "previous_as", rr.previous_as);
		cJSON_AddNumberToObject(fields, "duration_ms", (double)rr.duration_ms);
		cJSON_AddItemToObject(fields, "sources", cJSON_Duplicate(sources_done, 1));
		if (code)
			cJSON_AddStringToObject(fields, "error", ctx->err.msg.buf);
		cmd_history(ctx, "restore", code, fields);
	}
out:
	fs_lock_release(&lock);
	bk_restore_result_release(&rr);
	if (db.keywords || db.display)
		db_target_release(&db);
	bk_entry_release(&direct);
	bk_list_release(&l);
	settings_release(&s);
	free(live);
	cJSON_Delete(sources_done);
	return code;
}
