/* opsctl deploy and opsctl rollback [RELEASE]: the options and the config
 * turned into the deploy engine's settings (lib/engines/deploy), its
 * messages and results rendered, the exit code it chose returned. */
#include "opsctl.h"
#include "adapters/json.h"
#include "base/parse.h"
#include "engines/backup.h"
#include "engines/deploy.h"
#include "engines/release.h"
#include "system/clock.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const deploy_usage[] = {
	"opsctl deploy ARTIFACT [--strategy symlink|blue-green] [--no-backup] [--no-migrate] [--sha256 HEX] [--reason TEXT] [--dry-run]",
	"opsctl deploy list",
	"opsctl deploy status",
	NULL,
};


/* ---- settings from the config ---- */


static const char *cfg_str(const struct opsctl_ctx *ctx, const char *section, const char *sub, const char *key,
			   const char *def)
{
	const char *v = ctx->have_config ? config_get(&ctx->cfg, section, sub, key) : NULL;
	return v && *v ? v : def;
}

static char *cfg_dup(const struct opsctl_ctx *ctx, const char *section, const char *sub, const char *key,
		     const char *def)
{
	const char *v = cfg_str(ctx, section, sub, key, def);
	return v ? xstrdup(v) : NULL;
}

static int read_slots(struct opsctl_ctx *ctx, struct dp_settings *s)
{
	char **words = NULL;
	size_t nwords = 0;
	int ret = 0;

	parse_words(cfg_str(ctx, "deploy", "blue-green", "slots", "blue:8080 green:8081"), &words, &nwords);
	if (nwords != 2) {
		ret = ops_error_set(&ctx->err, OPS_EXIT_CONFIG,
				    "[deploy \"blue-green\"] slots needs two NAME:PORT slots (e.g. blue:8080 green:8081)");
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		char *colon = strchr(words[i], ':');
		long port;
		if (!colon || colon == words[i] || parse_int(colon + 1, 1, 65535, &port, NULL) < 0 ||
		    !rel_valid_id(words[i])) {
			ret = ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "[deploy \"blue-green\"] slots: '%s' is not NAME:PORT",
					    words[i]);
			goto out;
		}
		s->slots[i].name = xstrndup(words[i], (size_t)(colon - words[i]));
		s->slots[i].port = xstrdup(colon + 1);
		s->nslots = i + 1;
	}
	if (!strcmp(s->slots[0].name, s->slots[1].name))
		ret = ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "[deploy \"blue-green\"] slots: two slots named '%s'",
				    s->slots[0].name);
out:
	for (size_t i = 0; i < nwords; i++)
		free(words[i]);
	free(words);
	return ret;
}

static int read_bluegreen(struct opsctl_ctx *ctx, struct dp_settings *s)
{
	const char *sec = "blue-green", *upstream;
	int ret;

	if ((ret = read_slots(ctx, s)) < 0)
		return ret;
	s->bg_start = cfg_dup(ctx, "deploy", sec, "start", NULL);
	s->bg_stop = cfg_dup(ctx, "deploy", sec, "stop", NULL);
	s->bg_health_url = cfg_dup(ctx, "deploy", sec, "health_url", NULL);
	s->upstream_template = cfg_dup(ctx, "deploy", sec, "upstream_template", "server 127.0.0.1:{port};");
	s->proxy_test = cfg_dup(ctx, "deploy", sec, "proxy_test", NULL);
	s->proxy_reload = cfg_dup(ctx, "deploy", sec, "proxy_reload", NULL);
	upstream = cfg_str(ctx, "deploy", sec, "upstream_file", NULL);
	if (!s->bg_start || !s->bg_stop || !s->bg_health_url || !upstream || !s->proxy_reload)
		return ops_error_set(&ctx->err, OPS_EXIT_CONFIG,
				     "the blue-green strategy needs start, stop, health_url, upstream_file and proxy_reload in [deploy \"blue-green\"]");
	s->upstream_file = cmd_config_path(ctx, upstream);
	if (config_get_duration_ms(&ctx->cfg, "deploy", sec, "timeout", &s->service_timeout_ms, &ctx->err) < 0 ||
	    config_get_duration_ms(&ctx->cfg, "deploy", sec, "drain", &s->drain_ms, &ctx->err) < 0)
		return -ctx->err.code;
	return 0;
}

/* [backup]: what the backup before a deploy needs. */
static int read_backup(struct opsctl_ctx *ctx, struct dp_settings *s)
{
	const char *dir = cfg_str(ctx, "backup", NULL, "dir", NULL);
	long level = 0;

	if (ctx->have_config && config_get_int(&ctx->cfg, "backup", NULL, "level", -7, 19, &level, &ctx->err) < 0)
		return -ctx->err.code;
	s->backup_level = (int)level;
	s->backup_dir = dir ? cmd_config_path(ctx, dir) : xstrdup("backups");
	s->backup_format = cfg_dup(ctx, "backup", NULL, "format", "directory");
	{
		long jobs = bk_default_jobs();
		if (ctx->have_config && config_get_int(&ctx->cfg, "backup", NULL, "jobs", 1, 64, &jobs, &ctx->err) < 0)
			return -ctx->err.code;
		s->backup_jobs = (int)jobs;
	}
	s->backup_compression = cfg_dup(ctx, "backup", NULL, "compression", NULL);
	s->pg_dump = cfg_dup(ctx, "backup", NULL, "pg_dump", "pg_dump");
	if (bk_stall_setting(ctx->have_config ? &ctx->cfg : NULL, &s->backup_stall_ms, &ctx->err) < 0)
		return -ctx->err.code;
	s->app_name = cfg_dup(ctx, "app", NULL, "name", "opsctl");
	return 0;
}

static int read_settings(struct opsctl_ctx *ctx, const char *strategy_opt, struct dp_settings *s)
{
	const struct config *cfg = &ctx->cfg;
	const char *v;

	dp_settings_init(s);
	v = cfg_str(ctx, "deploy", NULL, "root", NULL);
	if (!v) {
		int ret = ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "no [deploy] root in the config%s%s%s",
					ctx->have_config ? " '" : "", ctx->have_config ? cfg->path : "",
					ctx->have_config ? "'" : "");
		ops_error_hint(&ctx->err, "set [deploy] root = /opt/APP (releases/, current and shared/ live there)");
		return ret;
	}
	s->root = cmd_config_path(ctx, v);
	s->state_dir = cmd_state_dir(ctx);
	s->strategy = xstrdup(strategy_opt ? strategy_opt : cfg_str(ctx, "deploy", NULL, "strategy", "symlink"));
	if (strcmp(s->strategy, "symlink") && strcmp(s->strategy, "blue-green"))
		return ops_error_set(&ctx->err, strategy_opt ? OPS_EXIT_USAGE : OPS_EXIT_CONFIG,
				     "unknown deploy strategy '%s' (expected symlink or blue-green)", s->strategy);
	if (config_get_int(cfg, "deploy", NULL, "keep_releases", 1, 10000, &s->keep, &ctx->err) < 0 ||
	    config_get_bool(cfg, "deploy", NULL, "backup", &s->backup, &ctx->err) < 0 ||
	    config_get_bool(cfg, "deploy", NULL, "migrate", &s->migrate, &ctx->err) < 0 ||
	    config_get_size(cfg, "deploy", NULL, "max_unpack", &s->max_unpack, &ctx->err) < 0 ||
	    config_get_size(cfg, "deploy", NULL, "min_free", &s->min_free, &ctx->err) < 0 ||
	    config_get_duration_ms(cfg, "deploy", NULL, "hook_timeout", &s->hook_timeout_ms, &ctx->err) < 0 ||
	    config_get_duration_ms(cfg, "service", NULL, "timeout", &s->service_timeout_ms, &ctx->err) < 0 ||
	    config_get_duration_ms(cfg, "health", NULL, "wait", &s->wait_ms, &ctx->err) < 0 ||
	    config_get_duration_ms(cfg, "health", NULL, "interval", &s->interval_ms, &ctx->err) < 0 ||
	    config_get_duration_ms(cfg, "health", NULL, "timeout", &s->probe_timeout_ms, &ctx->err) < 0 ||
	    config_get_int(cfg, "health", NULL, "consecutive", 1, 1000, &s->consecutive, &ctx->err) < 0 ||
	    config_get_duration_ms(cfg, "migrations", NULL, "lock_timeout", &s->migrations_lock_ms, &ctx->err) < 0 ||
	    (ctx->have_config &&
	     config_get_duration_ms(cfg, "database", NULL, "connect_timeout", &s->connect_timeout_ms, &ctx->err) < 0))
		return -ctx->err.code;
	parse_words(cfg_str(ctx, "deploy", NULL, "shared", NULL), &s->shared, &s->nshared);
	parse_words(cfg_str(ctx, "deploy", NULL, "checks", NULL), &s->checks, &s->nchecks);
	s->migrations_in_release = cfg_dup(ctx, "deploy", NULL, "migrations", "migrations");
	v = cfg_str(ctx, "migrations", NULL, "dir", NULL);
	s->migrations_fallback = v ? cmd_config_path(ctx, v) : NULL;
	s->migrations_table = cfg_dup(ctx, "migrations", NULL, "table", "schema_migrations");
	s->before_switch = cfg_dup(ctx, "deploy", NULL, "before_switch", NULL);
	s->after_switch = cfg_dup(ctx, "deploy", NULL, "after_switch", NULL);
	s->after_failure = cfg_dup(ctx, "deploy", NULL, "after_failure", NULL);
	s->restart = cfg_dup(ctx, "service", NULL, "restart", NULL);
	if (ctx->lock_wait_ms >= 0)
		s->migrations_lock_ms = ctx->lock_wait_ms;
	s->lock_wait_ms = ctx->lock_wait_ms > 0 ? ctx->lock_wait_ms : 0;
	s->db_url = ctx->db_url;
	s->cfg = ctx->have_config ? &ctx->cfg : NULL;
	s->env = ctx->have_env ? &ctx->env : NULL;
	if (!strcmp(s->strategy, "blue-green"))
		return read_bluegreen(ctx, s);
	return 0;
}

/* ---- the engine's messages, questions and signals ---- */

static int on_confirm(void *data, const char *question)
{
	struct opsctl_ctx *ctx = data;
	char answer[16] = "";

	if (ctx->json || !isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
		return -1;
	fprintf(stderr, "%s", question);
	return fgets(answer, sizeof(answer), stdin) && (answer[0] == 'y' || answer[0] == 'Y');
}

static void callbacks_init(struct dp_callbacks *cb, struct opsctl_ctx *ctx)
{
	memset(cb, 0, sizeof(*cb));
	cb->event = cmd_event;
	cb->stop_requested = cmd_stop_requested;
	cb->confirm = on_confirm;
	cb->data = ctx;
}

/* ---- rendering ---- */

/* A failure before anything started: the short report. */
static int fail_early(struct opsctl_ctx *ctx, const char *command)
{
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", command);
		cJSON_AddStringToObject(doc, "outcome", ops_exit_name(ctx->err.code));
		cJSON_AddNumberToObject(doc, "exit", ctx->err.code);
		cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	}
	return cmd_fail(ctx, NULL);
}

static void print_result(struct opsctl_ctx *ctx, const struct dp_result *res, int code)
{
	if (ctx->json) {
		cJSON *doc = dp_result_fields(res, 0, NULL);
		cJSON_AddStringToObject(doc, "command", res->command);
		cJSON_AddBoolToObject(doc, "dry_run", 0);
		json_set_str(doc, "current", res->current);
		cJSON_AddItemToObject(doc, "steps", cJSON_Duplicate(res->steps, 1));
		cJSON_AddItemToObject(doc, "pruned", cJSON_Duplicate(res->pruned, 1));
		if (res->recovered)
			cJSON_AddItemToObject(doc, "recovered", cJSON_Duplicate(res->recovered, 1));
		cJSON_AddStringToObject(doc, "outcome", ops_exit_name(code));
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code && ctx->err.code)
			cmd_json_error(doc, &ctx->err);
		cmd_print_json(doc);
	} else if (code == 0 && res->release) {
		printf("%s\n", res->release);
	}
	fflush(stdout);
	if (code)
		term_report(&ctx->term, &ctx->err);
	else if (res->release)
		term_info(&ctx->term, "%s '%s' is live (was '%s') after %.1fs",
			  !strcmp(res->command, "deploy") ? "deployed" : "rolled back to", res->release,
			  res->previous ? res->previous : "nothing", (double)(clock_now_ms() - res->started_ms) / 1000.0);
}

static void print_plan(struct opsctl_ctx *ctx, const struct dp_result *res)
{
	const cJSON *e;

	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "deploy");
		cJSON_AddBoolToObject(doc, "dry_run", 1);
		cJSON_AddStringToObject(doc, "release", res->release);
		json_set_str(doc, "previous", res->previous);
		cJSON_AddStringToObject(doc, "strategy", res->strategy);
		cJSON_AddStringToObject(doc, "artifact", res->artifact);
		cJSON_AddStringToObject(doc, "sha256", res->sha256);
		cJSON_AddItemToObject(doc, "plan", cJSON_Duplicate(res->plan, 1));
		cJSON_AddNumberToObject(doc, "exit", 0);
		cmd_print_json(doc);
		return;
	}
	cJSON_ArrayForEach(e, res->plan)
		printf("would %s\n", e->valuestring);
}

/* ---- opsctl deploy list / status ---- */

static int do_list(struct opsctl_ctx *ctx, const struct dp_settings *s)
{
	cJSON *hist = NULL, *e;
	char *current = NULL;

	if (dp_list(s, &hist, &current, &ctx->err) < 0)
		return fail_early(ctx, "deploy list");
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "deploy list");
		cJSON_AddStringToObject(doc, "root", s->root);
		json_set_str(doc, "current", current);
		cJSON_AddItemToObject(doc, "deploys", hist);
		hist = NULL;
		cJSON_AddNumberToObject(doc, "exit", 0);
		cmd_print_json(doc);
	} else if (cJSON_GetArraySize(hist)) {
		static const char *const header[] = { "RELEASE", "TIME", "COMMAND", "OUTCOME", "SHA256", "MIGRATIONS",
						      "BACKUP", "DURATION", "BY", "" };
		struct table tb;
		struct strbuf out = STRBUF_INIT;
		table_init(&tb, 10, header);
		cJSON_ArrayForEach(e, hist) {
			const char *cells[10];
			char migs[16], sha[16] = "";
			struct strbuf dur = STRBUF_INIT;
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "duration_ms");
			const char *outcome = json_get_str(e, "outcome");
			int is_current = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "current"));
			snprintf(migs, sizeof(migs), "%d", cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "migrations")));
			if (json_get_str(e, "sha256"))
				snprintf(sha, sizeof(sha), "%.12s", json_get_str(e, "sha256"));
			if (cJSON_IsNumber(d))
				format_duration_ms(&dur, (int64_t)d->valuedouble);
			cells[0] = json_get_str(e, "release");
			cells[1] = json_get_str(e, "time") ? json_get_str(e, "time") : "";
			cells[2] = json_get_str(e, "command");
			cells[3] = outcome ? outcome : "";
			cells[4] = sha;
			cells[5] = migs;
			cells[6] = json_get_str(e, "backup") ? json_get_str(e, "backup") : "";
			cells[7] = dur.buf;
			cells[8] = json_get_str(e, "user") ? json_get_str(e, "user") : "";
			cells[9] = is_current ? "current" : "";
			table_add_row(&tb, outcome && strcmp(outcome, "ok") ? TC_RED : 0, cells);
			strbuf_release(&dur);
		}
		table_render(&tb, &out, ctx->term.color_out);
		fwrite(out.buf, 1, out.len, stdout);
		table_release(&tb);
		strbuf_release(&out);
	} else {
		term_info(&ctx->term, "no deploys recorded in '%s/history.jsonl'", s->state_dir);
	}
	cJSON_Delete(hist);
	free(current);
	return OPS_EXIT_OK;
}

static int do_status(struct opsctl_ctx *ctx, const struct dp_settings *s)
{
	struct dp_callbacks cb;
	struct dp_status st;

	callbacks_init(&cb, ctx);
	if (dp_status(s, &cb, &st, &ctx->err) != 0) {
		dp_status_release(&st);
		return fail_early(ctx, "deploy status");
	}
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject(), *arr;
		cJSON_AddStringToObject(doc, "command", "deploy status");
		cJSON_AddStringToObject(doc, "root", s->root);
		cJSON_AddStringToObject(doc, "strategy", s->strategy);
		json_set_str(doc, "current", st.current);
		if (s->nslots) {
			cJSON *slots = cJSON_AddObjectToObject(doc, "slots");
			json_set_str(doc, "live_slot", st.live_slot);
			for (size_t i = 0; i < s->nslots; i++)
				json_set_str(slots, s->slots[i].name, st.slot_release[i]);
		}
		arr = cJSON_AddArrayToObject(doc, "releases");
		for (size_t i = 0; i < st.nreleases; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(st.releases[i]));
		if (st.journal) {
			cJSON_AddItemToObject(doc, "in_progress", st.journal);
			st.journal = NULL;
		} else {
			cJSON_AddNullToObject(doc, "in_progress");
		}
		if (st.recovered)
			cJSON_AddItemToObject(doc, "recovered", cJSON_Duplicate(st.recovered, 1));
		cJSON_AddNumberToObject(doc, "exit", 0);
		cmd_print_json(doc);
	} else {
		const cJSON *pid = st.journal ? cJSON_GetObjectItemCaseSensitive(st.journal, "pid") : NULL;
		printf("current   %s\n", st.current ? st.current : "(none)");
		if (st.live_slot)
			printf("live slot %s\n", st.live_slot);
		printf("releases  %zu in '%s/releases'\n", st.nreleases, s->root);
		if (st.in_progress && st.journal)
			printf("running   %s of '%s', step '%s', pid %.0f\n", json_get_str(st.journal, "kind"),
			       json_get_str(st.journal, "release"), json_get_str(st.journal, "step"), pid ? pid->valuedouble : 0.0);
		else if (st.recovered)
			printf("recovered an interrupted run (%s)\n", json_get_str(st.recovered, "action"));
	}
	dp_status_release(&st);
	return OPS_EXIT_OK;
}

/* ---- opsctl deploy ARTIFACT ---- */

static int do_deploy(struct opsctl_ctx *ctx, struct dp_settings *s, const struct dp_deploy_opts *o)
{
	struct dp_callbacks cb;
	struct dp_result res;
	struct cmd_signals sig = { 0 };
	int code;

	if (!o->dry_run && s->backup && !o->no_backup && read_backup(ctx, s) < 0)
		return fail_early(ctx, "deploy");
	callbacks_init(&cb, ctx);
	dp_result_init(&res);
	/* not one-shot: a second signal must not cut the rollback short; the
	 * first also cancels a migration statement the engine armed */
	if (!o->dry_run)
		cmd_catch_signals(&sig, 0);
	code = dp_deploy(s, o, &cb, &res, &ctx->err);
	if (res.early)
		fail_early(ctx, "deploy");
	else if (res.dry_run)
		print_plan(ctx, &res);
	else
		print_result(ctx, &res, code);
	cmd_release_signals(&sig);
	dp_result_release(&res);
	return code;
}

int cmd_deploy(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	struct dp_settings s;
	struct dp_deploy_opts o;
	const char *strategy = NULL;
	int n, code;
	const struct opt options[] = {
		{ OPT_CHOICE, 0, "strategy", &strategy, "STRATEGY", "symlink or blue-green (default: [deploy] strategy)", 0, "symlink|blue-green" },
		{ OPT_BOOL, 0, "no-backup", &o.no_backup, NULL, "skip the database backup before the deploy", 0, NULL },
		{ OPT_BOOL, 0, "no-migrate", &o.no_migrate, NULL, "do not apply the release's migrations", 0, NULL },
		{ OPT_STRING, 0, "sha256", &o.sha256, "HEX", "refuse the artifact unless its SHA-256 is HEX (exit 5)", 0, NULL },
		{ OPT_STRING, 0, "reason", &o.reason, "TEXT", "why, for the history (deploy list)", 0, NULL },
		{ OPT_BOOL, 'n', "dry-run", &o.dry_run, NULL, "print the plan, change nothing (also the global -n)", 0, NULL },
		OPT_END_MARK,
	};

	memset(&o, 0, sizeof(o));
	dp_settings_init(&s);
	n = cmd_parse_options(ctx, options, deploy_usage, argc, argv);
	if (n == OPTS_HELP) {
		code = OPS_EXIT_OK;
		goto out;
	}
	if (n < 0) {
		code = OPS_EXIT_USAGE;
		goto out;
	}
	if (ctx->dry_run)
		o.dry_run = 1;
	if (n != 1) {
		term_error(&ctx->term, n ? "unexpected argument '%s'" : "'deploy' needs an ARTIFACT (or list, status)",
			   n ? argv[1] : "");
		opts_usage(stderr, deploy_usage, NULL);
		code = OPS_EXIT_USAGE;
		goto out;
	}
	if (read_settings(ctx, strategy, &s) < 0) {
		code = fail_early(ctx, "deploy");
		goto out;
	}
	if (!strcmp(argv[0], "list")) {
		code = do_list(ctx, &s);
	} else if (!strcmp(argv[0], "status")) {
		code = do_status(ctx, &s);
	} else {
		o.artifact = argv[0];
		code = do_deploy(ctx, &s, &o);
	}
out:
	dp_settings_release(&s);
	return code;
}

/* ---- opsctl rollback [RELEASE] ---- */

static void print_rollback_plan(struct opsctl_ctx *ctx, const struct dp_result *res)
{
	const cJSON *e;

	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "rollback");
		cJSON_AddBoolToObject(doc, "dry_run", 1);
		cJSON_AddStringToObject(doc, "release", res->release);
		cJSON_AddStringToObject(doc, "previous", res->previous);
		cJSON_AddItemToObject(doc, "undo_migrations", cJSON_Duplicate(res->undo, 1));
		cJSON_AddNumberToObject(doc, "exit", 0);
		cmd_print_json(doc);
		return;
	}
	cJSON_ArrayForEach(e, res->plan)
		printf("would %s\n", e->valuestring);
}

int cmd_rollback_release(struct opsctl_ctx *ctx, const char *release, int with_schema, const char *reason)
{
	struct dp_settings s;
	struct dp_rollback_opts o;
	struct dp_callbacks cb;
	struct dp_result res;
	struct cmd_signals sig = { 0 };
	int code;

	memset(&o, 0, sizeof(o));
	o.release = release;
	o.with_schema = with_schema;
	o.reason = reason;
	o.dry_run = ctx->dry_run;
	o.yes = ctx->yes;
	callbacks_init(&cb, ctx);
	dp_result_init(&res);
	cmd_catch_signals(&sig, 0);
	if (read_settings(ctx, NULL, &s) < 0) {
		code = fail_early(ctx, "rollback");
		goto out;
	}
	code = dp_rollback(&s, &o, &cb, &res, &ctx->err);
	if (res.early)
		fail_early(ctx, "rollback");
	else if (res.dry_run)
		print_rollback_plan(ctx, &res);
	else
		print_result(ctx, &res, code);
out:
	cmd_release_signals(&sig);
	dp_result_release(&res);
	dp_settings_release(&s);
	return code;
}
