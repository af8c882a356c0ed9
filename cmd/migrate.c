/* opsctl migrate and opsctl rollback --schema: versioned SQL migrations
 * that cannot half-apply, race or drift. */
#include "opsctl.h"
#include "system/clock.h"
#include "adapters/db.h"
#include "base/parse.h"
#include "engines/migrate.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const migrate_usage[] = {
	"opsctl migrate [up] [--to VERSION] [--allow-out-of-order] [--dir DIR]",
	"opsctl migrate down [--to VERSION] [--dir DIR]",
	"opsctl migrate status [--exit-code] [--dir DIR]",
	"opsctl migrate validate | repair [--dir DIR]",
	"opsctl migrate new NAME [--dir DIR]",
	"opsctl migrate baseline VERSION [--dir DIR]",
	NULL,
};

static const char *const rollback_usage[] = {
	"opsctl rollback [RELEASE] [--with-schema] [--reason TEXT]",
	"opsctl rollback --schema VERSION [--dir DIR]",
	NULL,
};

struct migrate_opts {
	const char *to;
	const char *dir;
	const char *schema;
	const char *reason;
	int with_schema;
	int allow_out_of_order;
	int exit_code;
};

struct run {
	struct opsctl_ctx *ctx;
	struct mig m;
	PGconn *conn;
	char *display;
	int64_t started;
	struct strbuf summary;  /* the closing line, said after the results */
	struct cmd_signals sig; /* caught from the connection on */
};

/* ---- Ctrl-C and SIGTERM ----
 * Once a run has connected (the wait for the lock included), the first
 * SIGINT or SIGTERM cancels the
 * running statement on the server (as psql does) and stops the run: the
 * migration it was in rolls back, the lock is released, exit 10. A second
 * signal ends opsctl at once (one-shot); the server then rolls back when
 * the connection drops. */

static void catch_signals(struct run *r)
{
	db_cancel_arm(r->conn);
	cmd_catch_signals(&r->sig, 1);
	r->m.stop = cmd_stop_requested;
}

static void release_signals(struct run *r)
{
	if (!r->sig.caught)
		return;
	cmd_release_signals(&r->sig);
	db_cancel_disarm();
}

static void on_progress(const char *verb, const struct mig_file *f, size_t index, size_t total, void *data)
{
	struct run *r = data;
	term_info(&r->ctx->term, "%s %s (%zu/%zu)", verb, f->script_name ? f->script_name : f->version,
		  index + 1, total);
}

static char *whoami(void)
{
	char user[64], host[256];
	clock_whoami(user, sizeof(user), host, sizeof(host));
	return xstrfmt("%s@%s", user, host);
}

/* Settings from [migrations] and the command line; nothing touches the database yet. */
static int setup(struct run *r, const struct migrate_opts *o)
{
	struct opsctl_ctx *ctx = r->ctx;
	const struct config *cfg = ctx->have_config ? &ctx->cfg : NULL;
	const char *dir = o->dir, *table = NULL;
	char *dir_owned = NULL;
	int64_t lock_timeout = 60000;

	if (cfg) {
		if (!dir && config_get(cfg, "migrations", NULL, "dir"))
			dir = dir_owned = cmd_config_path(ctx, config_get(cfg, "migrations", NULL, "dir"));
		table = config_get(cfg, "migrations", NULL, "table");
		if (config_get_duration_ms(cfg, "migrations", NULL, "lock_timeout", &lock_timeout, &ctx->err) < 0) {
			free(dir_owned);
			return -ctx->err.code;
		}
	}
	if (ctx->lock_wait_ms >= 0)
		lock_timeout = ctx->lock_wait_ms;
	mig_init(&r->m, dir ? dir : "migrations", table && *table ? table : "schema_migrations", lock_timeout);
	free(dir_owned);
	r->m.applied_by = whoami();
	r->m.progress = on_progress;
	r->m.progress_data = r;
	if (mig_scan(&r->m, &ctx->err) < 0)
		return -ctx->err.code;
	for (size_t i = 0; i < r->m.nignored; i++)
		term_warning(&ctx->term, "ignoring '%s': not named NNN_name.sql, so it never runs", r->m.ignored[i]);
	return 0;
}

static int connect_db(struct run *r, int lock)
{
	int ret = cmd_db_connect(r->ctx, "opsctl migrate", &r->conn, &r->display);
	if (ret < 0)
		return ret;
	ret = mig_attach(&r->m, r->conn, &r->ctx->err);
	if (ret < 0 || !lock)
		return ret;
	catch_signals(r);
	ret = mig_lock(&r->m, &r->ctx->err);
	if (ret < 0)
		return ret;
	return mig_prepare(&r->m, &r->ctx->err);
}

static void run_release(struct run *r)
{
	release_signals(r);
	mig_release(&r->m);
	if (r->conn)
		PQfinish(r->conn);
	free(r->display);
	strbuf_release(&r->summary);
}

static cJSON *json_base(struct run *r, const char *action)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "command", action);
	if (r->display)
		cJSON_AddStringToObject(doc, "database", r->display);
	cJSON_AddStringToObject(doc, "table", r->m.table);
	cJSON_AddStringToObject(doc, "dir", r->m.dir);
	cJSON_AddBoolToObject(doc, "dry_run", r->ctx->dry_run);
	return doc;
}

static void json_finish(struct run *r, cJSON *doc, int code)
{
	cJSON_AddNumberToObject(doc, "duration_ms", (double)(clock_now_ms() - r->started));
	cJSON_AddNumberToObject(doc, "exit", code);
	if (code && r->ctx->err.code)
		cmd_json_error(doc, &r->ctx->err);
	cmd_print_json(doc);
}

static cJSON *done_list(const struct mig *m)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < m->ndone; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "version", m->done[i].version);
		cJSON_AddStringToObject(e, "script", m->done[i].script_name);
		if (m->done[i].ms >= 0)
			cJSON_AddNumberToObject(e, "ms", (double)m->done[i].ms);
		cJSON_AddNumberToObject(e, "statements", (double)m->done[i].statements);
		cJSON_AddItemToArray(arr, e);
	}
	return arr;
}

#define HISTORY_MAX_MIGRATIONS 100

static void record(struct run *r, const char *command, int code)
{
	cJSON *fields = cJSON_CreateObject(), *list = done_list(&r->m);
	if (r->display)
		cJSON_AddStringToObject(fields, "database", r->display);
	/* one line per run stays readable: the first 100, and how many in all */
	while (cJSON_GetArraySize(list) > HISTORY_MAX_MIGRATIONS)
		cJSON_DeleteItemFromArray(list, HISTORY_MAX_MIGRATIONS);
	cJSON_AddItemToObject(fields, "migrations", list);
	cJSON_AddNumberToObject(fields, "migrations_total", (double)r->m.ndone);
	cJSON_AddNumberToObject(fields, "duration_ms", (double)(clock_now_ms() - r->started));
	if (code)
		cJSON_AddStringToObject(fields, "error", r->ctx->err.msg.buf);
	cmd_history(r->ctx, command, code, fields);
}

/* Ends a mutating subcommand: results (JSON under key, or a line per
 * migration starting with verb), the summary, history, the exit code. */
static int finish(struct run *r, const char *command, const char *key, const char *verb, int ret)
{
	struct opsctl_ctx *ctx = r->ctx;
	int code = ret < 0 ? (ctx->err.code ? ctx->err.code : OPS_EXIT_FAILED) : OPS_EXIT_OK;

	/* a signal that cancelled bookkeeping rather than a migration's own statement */
	if (code && cmd_interrupted && r->sig.caught)
		code = ctx->err.code = OPS_EXIT_ABORTED;

	if (ctx->json) {
		cJSON *doc = json_base(r, command);
		cJSON_AddItemToObject(doc, key, done_list(&r->m));
		if (r->m.adopted)
			cJSON_AddNumberToObject(doc, "adopted", (double)r->m.adopted);
		json_finish(r, doc, code);
	} else if (!ctx->quiet || code) {
		for (size_t i = 0; i < r->m.ndone; i++) {
			if (r->m.done[i].ms >= 0)
				printf("%s %s  %ldms\n", verb, r->m.done[i].script_name, r->m.done[i].ms);
			else
				printf("%s %s\n", verb, r->m.done[i].script_name);
		}
	}
	fflush(stdout); /* what ran, before why it stopped */
	if (code)
		term_report(&ctx->term, &ctx->err);
	else if (r->summary.len)
		term_info(&ctx->term, "%s", r->summary.buf);
	if (!code && r->m.adopted)
		term_info(&ctx->term, "adopted %zu migration%s recorded without a checksum (the seeds' migrate.sh)",
			  r->m.adopted, r->m.adopted == 1 ? "" : "s");
	if (!ctx->dry_run && code != OPS_EXIT_USAGE && code != OPS_EXIT_CONFIG)
		record(r, command, code);
	return code;
}

/* --dry-run: what would happen, as text lines or the "plan" of the JSON. */
static int print_plan(struct run *r, const char *command, const char *verb, const char *const *names,
		      size_t n, const char *nothing)
{
	if (r->ctx->json) {
		cJSON *doc = json_base(r, command), *arr = cJSON_AddArrayToObject(doc, "plan");
		for (size_t i = 0; i < n; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
		json_finish(r, doc, 0);
		return OPS_EXIT_OK;
	}
	for (size_t i = 0; i < n; i++)
		printf("would %s %s\n", verb, names[i]);
	if (!n)
		term_info(&r->ctx->term, "%s", nothing);
	return OPS_EXIT_OK;
}

static int parse_to(struct run *r, const char *to, uint64_t *out)
{
	if (!to)
		return 0;
	return mig_parse_version(to, out, &r->ctx->err);
}

static int do_up(struct run *r, const struct migrate_opts *o)
{
	struct opsctl_ctx *ctx = r->ctx;
	const struct mig_file **plan = NULL;
	size_t n = 0;
	uint64_t to = 0;
	int ret;

	ret = parse_to(r, o->to, &to);
	if (ret == 0)
		ret = connect_db(r, !ctx->dry_run);
	if (ret == 0)
		ret = mig_plan_up(&r->m, o->to != NULL, to, o->allow_out_of_order, &plan, &n, &ctx->err);
	if (ret == 0 && ctx->dry_run) {
		const char **names = xcalloc(n + 1, sizeof(*names));
		for (size_t i = 0; i < n; i++)
			names[i] = plan[i]->script_name;
		print_plan(r, "migrate up", "apply", names, n, "nothing to apply: the database is up to date");
		free(names);
		free(plan);
		return OPS_EXIT_OK;
	}
	if (ret == 0)
		ret = mig_apply(&r->m, plan, n, &ctx->err);
	free(plan);
	if (ret == 0 && !n)
		strbuf_addf(&r->summary, "nothing to apply: '%s' is up to date (%zu applied)", r->display,
			    r->m.napplied);
	else if (ret == 0)
		strbuf_addf(&r->summary, "applied %zu migration%s to '%s' in %lldms", n, n == 1 ? "" : "s",
			    r->display, (long long)(clock_now_ms() - r->started));
	return finish(r, "migrate up", "applied", "applied", ret);
}

static int do_down(struct run *r, const char *to_arg, const char *command)
{
	struct opsctl_ctx *ctx = r->ctx;
	const struct mig_applied **plan = NULL;
	size_t n = 0;
	uint64_t to = 0;
	int ret;

	ret = parse_to(r, to_arg, &to);
	if (ret == 0)
		ret = connect_db(r, !ctx->dry_run);
	if (ret == 0)
		ret = mig_plan_down(&r->m, to_arg != NULL, to, 1, &plan, &n, &ctx->err);
	if (ret == 0 && ctx->dry_run) {
		const char **names = xcalloc(n + 1, sizeof(*names));
		for (size_t i = 0; i < n; i++)
			names[i] = plan[i]->script_name;
		print_plan(r, command, "undo", names, n, "nothing to undo");
		free(names);
		free(plan);
		return OPS_EXIT_OK;
	}
	/* undoing a migration usually drops data: ask on a terminal, else need --yes */
	if (ret == 0 && n && !ctx->yes) {
		char answer[16] = "";
		if (ctx->json || !isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
			ret = ops_error_set(&ctx->err, OPS_EXIT_ABORTED,
					    "undoing %zu migration%s needs confirmation; nothing was undone", n,
					    n == 1 ? "" : "s");
			ops_error_hint(&ctx->err, "pass --yes (before the command) to run it without a terminal");
		} else {
			fprintf(stderr, "undo %zu migration%s on '%s', newest first (%s)? [y/N] ", n,
				n == 1 ? "" : "s", r->display, plan[0]->script_name);
			if (!fgets(answer, sizeof(answer), stdin) || (answer[0] != 'y' && answer[0] != 'Y'))
				ret = ops_error_set(&ctx->err, OPS_EXIT_ABORTED, "not confirmed; nothing was undone");
		}
	}
	if (ret == 0)
		ret = mig_undo(&r->m, plan, n, &ctx->err);
	free(plan);
	if (ret == 0 && n)
		strbuf_addf(&r->summary, "undid %zu migration%s on '%s'", n, n == 1 ? "" : "s", r->display);
	else if (ret == 0)
		strbuf_addf(&r->summary, "nothing to undo on '%s'", r->display);
	return finish(r, command, "undone", "undid", ret);
}

static int do_status(struct run *r, const struct migrate_opts *o, int validate)
{
	struct opsctl_ctx *ctx = r->ctx;
	size_t pending, problems = 0;
	int ret = connect_db(r, 0), code;

	if (ret < 0) {
		if (ctx->json)
			json_finish(r, json_base(r, validate ? "migrate validate" : "migrate status"), ctx->err.code);
		return cmd_fail(ctx, NULL);
	}
	pending = mig_count(&r->m, MIG_PENDING) + mig_count(&r->m, MIG_PARTIAL) +
		  mig_count(&r->m, MIG_OUT_OF_ORDER);
	problems = mig_count(&r->m, MIG_CHANGED) + mig_count(&r->m, MIG_MISSING) +
		   mig_count(&r->m, MIG_OUT_OF_ORDER) + mig_count(&r->m, MIG_PARTIAL);
	code = validate ? (problems ? OPS_EXIT_INTEGRITY : OPS_EXIT_OK)
			: (o->exit_code && pending ? OPS_EXIT_PENDING : OPS_EXIT_OK);
	if (ctx->json) {
		cJSON *doc = json_base(r, validate ? "migrate validate" : "migrate status");
		cJSON *arr = cJSON_AddArrayToObject(doc, "migrations");
		for (size_t i = 0; i < r->m.nrows; i++) {
			const struct mig_row *row = &r->m.rows[i];
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "version", row->file ? row->file->version : row->applied->version);
			cJSON_AddStringToObject(e, "script", row->file ? row->file->script_name : row->applied->script_name);
			cJSON_AddStringToObject(e, "state", mig_state_name(row->state));
			if (row->file)
				cJSON_AddStringToObject(e, "file", row->file->path);
			if (row->file && row->file->down_path)
				cJSON_AddStringToObject(e, "down_file", row->file->down_path);
			if (row->applied) {
				if (row->applied->executed_at)
					cJSON_AddStringToObject(e, "applied_at", row->applied->executed_at);
				if (row->applied->execution_ms >= 0)
					cJSON_AddNumberToObject(e, "execution_ms", (double)row->applied->execution_ms);
				if (row->applied->applied_by)
					cJSON_AddStringToObject(e, "applied_by", row->applied->applied_by);
				if (row->applied->checksum)
					cJSON_AddStringToObject(e, "checksum", row->applied->checksum);
			}
			if (row->partial) {
				cJSON_AddNumberToObject(e, "statements_done", (double)row->partial->done);
				cJSON_AddNumberToObject(e, "statements_total", (double)row->partial->total);
			}
			cJSON_AddItemToArray(arr, e);
		}
		cJSON_AddNumberToObject(doc, "applied", (double)r->m.napplied);
		cJSON_AddNumberToObject(doc, "pending", (double)pending);
		cJSON_AddNumberToObject(doc, "problems", (double)problems);
		json_finish(r, doc, code);
		return code;
	}
	if (validate) {
		for (size_t i = 0; i < r->m.nrows; i++) {
			const struct mig_row *row = &r->m.rows[i];
			switch (row->state) {
			case MIG_CHANGED:
				printf("changed       %s: edited after it was applied\n", row->file->path);
				break;
			case MIG_MISSING:
				printf("missing       %s: applied, but the file is gone\n", row->applied->script_name);
				break;
			case MIG_OUT_OF_ORDER:
				printf("out-of-order  %s: pending below an applied version\n", row->file->path);
				break;
			case MIG_PARTIAL:
				printf("partial       %s: stopped after statement %ld of %ld\n", row->file->path,
				       row->partial->done, row->partial->total);
				break;
			default:
				if (row->file && !row->file->down_path && (!ctx->quiet))
					term_warning(&ctx->term, "'%s' has no down file (%s/rollback/%s_%s.down.sql)",
						     row->file->path, r->m.dir, row->file->version, row->file->name);
				break;
			}
		}
		if (!problems)
			term_info(&ctx->term, "%zu migrations, %zu applied, %zu pending: no drift, nothing missing",
				  r->m.nrows, r->m.napplied, pending);
		else
			term_error(&ctx->term, "%zu problem%s in '%s'", problems, problems == 1 ? "" : "s", r->m.dir);
		if (problems && mig_count(&r->m, MIG_CHANGED))
			term_hint(&ctx->term, "put edited files back, or accept the edits with 'opsctl migrate repair'");
		return code;
	}
	if (!ctx->quiet || code) {
		static const char *const header[] = { "VERSION", "NAME", "STATE", "APPLIED", "MS", "BY" };
		struct table tb;
		struct strbuf out = STRBUF_INIT;
		table_init(&tb, 6, header);
		for (size_t i = 0; i < r->m.nrows; i++) {
			const struct mig_row *row = &r->m.rows[i];
			char ms[24] = "", state[48];
			const char *cells[6];
			int color = row->state == MIG_APPLIED ? 0 : row->state == MIG_PENDING ? TC_YELLOW : TC_RED;
			if (row->applied && row->applied->execution_ms >= 0)
				snprintf(ms, sizeof(ms), "%ld", row->applied->execution_ms);
			if (row->partial)
				snprintf(state, sizeof(state), "partial %ld/%ld", row->partial->done, row->partial->total);
			else
				snprintf(state, sizeof(state), "%s", mig_state_name(row->state));
			cells[0] = row->file ? row->file->version : row->applied->version;
			cells[1] = row->file && row->file->name ? row->file->name : row->applied->script_name;
			cells[2] = state;
			cells[3] = row->applied && row->applied->executed_at ? row->applied->executed_at : "";
			cells[4] = ms;
			cells[5] = row->applied && row->applied->applied_by ? row->applied->applied_by : "";
			table_add_row(&tb, color, cells);
		}
		if (r->m.nrows)
			table_render(&tb, &out, ctx->term.color_out);
		fwrite(out.buf, 1, out.len, stdout);
		table_release(&tb);
		strbuf_release(&out);
		term_info(&ctx->term, "%zu applied, %zu pending%s", r->m.napplied, pending,
			  r->m.table_exists ? "" : " (no migration table yet)");
	}
	return code;
}

static int do_repair(struct run *r)
{
	size_t changed = 0;
	int ret = connect_db(r, !r->ctx->dry_run);
	if (ret == 0 && r->ctx->dry_run) {
		const char **names = xcalloc(r->m.nrows + 1, sizeof(*names));
		size_t n = 0;
		for (size_t i = 0; i < r->m.nrows; i++)
			if (r->m.rows[i].state == MIG_CHANGED || r->m.rows[i].state == MIG_PARTIAL ||
			    (r->m.rows[i].applied && !r->m.rows[i].applied->checksum && r->m.rows[i].file))
				names[n++] = r->m.rows[i].file->script_name;
		print_plan(r, "migrate repair", "accept", names, n, "nothing to repair");
		free(names);
		return OPS_EXIT_OK;
	}
	if (ret == 0)
		ret = mig_repair(&r->m, &changed, &r->ctx->err);
	if (ret == 0 && changed)
		strbuf_addf(&r->summary, "accepted %zu change%s", changed, changed == 1 ? "" : "s");
	else if (ret == 0)
		strbuf_addstr(&r->summary, "nothing to repair");
	return finish(r, "migrate repair", "accepted", "accepted", ret);
}

static int do_baseline(struct run *r, const char *arg)
{
	uint64_t v;
	size_t marked = 0;
	int ret = mig_parse_version(arg, &v, &r->ctx->err);
	if (ret == 0)
		ret = connect_db(r, !r->ctx->dry_run);
	if (ret == 0 && r->ctx->dry_run && r->m.napplied) {
		ret = ops_error_set(&r->ctx->err, OPS_EXIT_FAILED,
				    "%s already has applied migrations; baseline is for a database that has none",
				    r->m.table);
	} else if (ret == 0 && r->ctx->dry_run) {
		const char **names = xcalloc(r->m.nfiles + 1, sizeof(*names));
		size_t n = 0;
		for (size_t i = 0; i < r->m.nfiles; i++)
			if (r->m.files[i].path && r->m.files[i].number <= v)
				names[n++] = r->m.files[i].script_name;
		print_plan(r, "migrate baseline", "mark", names, n, "no file at or below that version: a marker row would be written");
		free(names);
		return OPS_EXIT_OK;
	}
	if (ret == 0)
		ret = mig_baseline(&r->m, v, &marked, &r->ctx->err);
	return finish(r, "migrate baseline", "marked", "marked as applied", ret);
}

static int do_new(struct run *r, const char *name)
{
	char *up = NULL, *down = NULL;
	int ret;
	if (r->ctx->dry_run) {
		const char *names[1] = { name };
		return print_plan(r, "migrate new", "create a migration named", names, 1, "");
	}
	ret = mig_new(&r->m, name, &up, &down, &r->ctx->err);
	if (ret < 0)
		return cmd_fail(r->ctx, NULL);
	if (r->ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "command", "migrate new");
		cJSON_AddStringToObject(doc, "up_file", up);
		cJSON_AddStringToObject(doc, "down_file", down);
		cJSON_AddNumberToObject(doc, "exit", 0);
		cmd_print_json(doc);
	} else {
		printf("%s\n%s\n", up, down);
	}
	free(up);
	free(down);
	return OPS_EXIT_OK;
}

static int only_for(struct opsctl_ctx *ctx, const char *opt, int given, const char *sub, int ok)
{
	if (given && !ok) {
		term_error(&ctx->term, "option '%s' does not apply to 'migrate %s'", opt, sub);
		return -1;
	}
	return 0;
}

int cmd_migrate(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	static const char *const subs[] = { "up", "down", "status", "validate", "repair", "new", "baseline", NULL };
	struct migrate_opts o;
	struct run r;
	const char *sub = "up";
	int n, code;
	const struct opt options[] = {
		{ OPT_STRING, 0, "to", &o.to, "VERSION", "up: apply up to VERSION; down: undo everything above VERSION", 0, NULL },
		{ OPT_BOOL, 0, "allow-out-of-order", &o.allow_out_of_order, NULL, "apply pending versions below the newest applied one", 0, NULL },
		{ OPT_BOOL, 0, "exit-code", &o.exit_code, NULL, "status: exit 9 when migrations are pending", 0, NULL },
		{ OPT_STRING, 0, "dir", &o.dir, "DIR", "migrations directory (default: [migrations] dir or ./migrations)", 0, NULL },
		OPT_END_MARK,
	};

	memset(&o, 0, sizeof(o));
	memset(&r, 0, sizeof(r));
	strbuf_init(&r.summary, 0);
	n = cmd_parse_options(ctx, options, migrate_usage, argc, argv);
	if (n == OPTS_HELP)
		return OPS_EXIT_OK;
	if (n < 0)
		return OPS_EXIT_USAGE;
	if (cmd_subcommand(ctx, "migrate", subs, &argv, &n, &sub) < 0)
		return OPS_EXIT_USAGE;
	if (only_for(ctx, "--to", o.to != NULL, sub, !strcmp(sub, "up") || !strcmp(sub, "down")) < 0 ||
	    only_for(ctx, "--exit-code", o.exit_code, sub, !strcmp(sub, "status")) < 0 ||
	    only_for(ctx, "--allow-out-of-order", o.allow_out_of_order, sub, !strcmp(sub, "up")) < 0)
		return OPS_EXIT_USAGE;
	if (!strcmp(sub, "new") || !strcmp(sub, "baseline")) {
		if (n != 1) {
			term_error(&ctx->term, "'migrate %s' takes one argument (%s)", sub,
				   strcmp(sub, "new") ? "VERSION" : "NAME");
			opts_usage(stderr, migrate_usage, NULL);
			return OPS_EXIT_USAGE;
		}
	} else if (n) {
		term_error(&ctx->term, "unexpected argument '%s'", argv[0]);
		opts_usage(stderr, migrate_usage, NULL);
		return OPS_EXIT_USAGE;
	}

	r.ctx = ctx;
	r.started = clock_now_ms();
	if (setup(&r, &o) < 0) {
		code = cmd_fail(ctx, NULL);
		goto out;
	}
	if (!strcmp(sub, "new")) {
		code = do_new(&r, argv[0]);
		goto out;
	}
	if (!strcmp(sub, "status") || !strcmp(sub, "validate")) {
		code = do_status(&r, &o, !strcmp(sub, "validate"));
		goto out;
	}
	if (!strcmp(sub, "up"))
		code = do_up(&r, &o);
	else if (!strcmp(sub, "down"))
		code = do_down(&r, o.to, "migrate down");
	else if (!strcmp(sub, "repair"))
		code = do_repair(&r);
	else
		code = do_baseline(&r, argv[0]);
out:
	run_release(&r);
	return code;
}

int cmd_rollback(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	struct migrate_opts o;
	struct run r;
	int n, code;
	const struct opt options[] = {
		{ OPT_BOOL, 0, "with-schema", &o.with_schema, NULL, "also undo the migrations the release being left applied", 0, NULL },
		{ OPT_STRING, 0, "reason", &o.reason, "TEXT", "why, for the history (deploy list)", 0, NULL },
		{ OPT_STRING, 0, "schema", &o.schema, "VERSION", "undo migrations above VERSION (= migrate down --to VERSION)", 0, NULL },
		{ OPT_STRING, 0, "dir", &o.dir, "DIR", "migrations directory (default: [migrations] dir or ./migrations)", 0, NULL },
		OPT_END_MARK,
	};

	memset(&o, 0, sizeof(o));
	memset(&r, 0, sizeof(r));
	strbuf_init(&r.summary, 0);
	n = cmd_parse_options(ctx, options, rollback_usage, argc, argv);
	if (n == OPTS_HELP)
		return OPS_EXIT_OK;
	if (n < 0)
		return OPS_EXIT_USAGE;
	if (!o.schema) {
		if (n > 1 || o.dir) {
			term_error(&ctx->term, n > 1 ? "unexpected argument '%s'" : "option '--dir' goes with --schema%s",
				   n > 1 ? argv[1] : "");
			opts_usage(stderr, rollback_usage, NULL);
			return OPS_EXIT_USAGE;
		}
		/* without a deploy setup, 'rollback 3' most likely meant the migrations */
		if (!ctx->have_config || !config_get(&ctx->cfg, "deploy", NULL, "root")) {
			term_error(&ctx->term, "'rollback%s%s' needs --schema VERSION (to undo migrations) or a [deploy] root in the config (to return to a release)",
				   n ? " " : "", n ? argv[0] : "");
			term_hint(&ctx->term, "to undo migrations: opsctl rollback --schema VERSION");
			opts_usage(stderr, rollback_usage, NULL);
			return OPS_EXIT_USAGE;
		}
		return cmd_rollback_release(ctx, n ? argv[0] : NULL, o.with_schema, o.reason);
	}
	if (n || o.with_schema || o.reason) {
		term_error(&ctx->term, n ? "unexpected argument '%s'" : "'%s' does not go with --schema",
			   n ? argv[0] : o.with_schema ? "--with-schema" : "--reason");
		term_hint(&ctx->term, "'rollback RELEASE' returns to a release; 'rollback --schema VERSION' undoes migrations");
		opts_usage(stderr, rollback_usage, NULL);
		return OPS_EXIT_USAGE;
	}
	r.ctx = ctx;
	r.started = clock_now_ms();
	if (setup(&r, &o) < 0) {
		code = cmd_fail(ctx, NULL);
		goto out;
	}
	code = do_down(&r, o.schema, "rollback --schema");
out:
	run_release(&r);
	return code;
}
