/* Deploys and rollbacks: the steps of DESIGN.md section 6 in order, each
 * journaled before it starts, the health gate, the way back, and the
 * recovery of a run that was killed. */
#include "engines/deploy.h"
#include "adapters/json.h"
#include "adapters/db.h"
#include "adapters/hash.h"
#include "adapters/http.h"
#include "adapters/zstream.h"
#include "base/config.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "engines/backup.h"
#include "engines/history.h"
#include "engines/migrate.h"
#include "engines/probe.h"
#include "engines/release.h"
#include "system/clock.h"
#include "system/fs.h"
#include "system/proc.h"

#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- settings and results ---- */

static void free_words(char **w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

void dp_settings_init(struct dp_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->keep = DP_DEFAULT_KEEP;
	s->backup = s->migrate = 1;
	s->max_unpack = REL_DEFAULT_MAX_UNPACK;
	s->min_free = DP_DEFAULT_MIN_FREE;
	s->hook_timeout_ms = DP_DEFAULT_HOOK_TIMEOUT_MS;
	s->service_timeout_ms = DP_DEFAULT_SERVICE_TIMEOUT_MS;
	s->wait_ms = DP_DEFAULT_WAIT_MS;
	s->interval_ms = 1000;
	s->consecutive = 1;
	s->migrations_lock_ms = 60000;
	s->connect_timeout_ms = 10000;
	s->drain_ms = DP_DEFAULT_DRAIN_MS;
}

void dp_settings_release(struct dp_settings *s)
{
	char **owned[] = {
		&s->root, &s->state_dir, &s->strategy, &s->migrations_in_release, &s->migrations_fallback,
		&s->migrations_table, &s->before_switch, &s->after_switch, &s->after_failure, &s->restart,
		&s->bg_start, &s->bg_stop, &s->bg_health_url, &s->upstream_template, &s->proxy_test,
		&s->proxy_reload, &s->upstream_file, &s->backup_dir, &s->backup_format,
		&s->backup_compression, &s->pg_dump, &s->app_name,
	};
	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		free(*owned[i]);
	free_words(s->shared, s->nshared);
	free_words(s->checks, s->nchecks);
	for (size_t i = 0; i < s->nslots; i++) {
		free(s->slots[i].name);
		free(s->slots[i].port);
	}
	memset(s, 0, sizeof(*s));
}

const struct dp_slot *dp_find_slot(const struct dp_settings *s, const char *name)
{
	for (size_t i = 0; name && i < s->nslots; i++)
		if (!strcmp(s->slots[i].name, name))
			return &s->slots[i];
	return NULL;
}

void dp_result_init(struct dp_result *r)
{
	memset(r, 0, sizeof(*r));
	r->migrations = cJSON_CreateArray();
	r->steps = cJSON_CreateArray();
	r->pruned = cJSON_CreateArray();
	r->started_ms = clock_now_ms();
}

void dp_result_release(struct dp_result *r)
{
	free(r->command);
	free(r->strategy);
	free(r->reason);
	free(r->release);
	free(r->previous);
	free(r->current);
	free(r->artifact);
	free(r->backup_id);
	free(r->slot);
	free(r->rolled_back_to);
	cJSON_Delete(r->migrations);
	cJSON_Delete(r->steps);
	cJSON_Delete(r->pruned);
	cJSON_Delete(r->recovered);
	cJSON_Delete(r->plan);
	cJSON_Delete(r->undo);
	memset(r, 0, sizeof(*r));
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

cJSON *dp_result_fields(const struct dp_result *r, int code, const char *error_msg)
{
	cJSON *f = cJSON_CreateObject();
	json_set_str(f, "release", r->release);
	json_set_str(f, "previous", r->previous);
	cJSON_AddStringToObject(f, "strategy", r->strategy ? r->strategy : "symlink");
	if (r->artifact) {
		cJSON_AddStringToObject(f, "artifact", r->artifact);
		if (r->sha256[0])
			cJSON_AddStringToObject(f, "sha256", r->sha256);
	}
	json_set_str(f, "backup", r->backup_id);
	cJSON_AddItemToObject(f, "migrations", cJSON_Duplicate(r->migrations, 1));
	if (r->slot)
		cJSON_AddStringToObject(f, "slot", r->slot);
	if (r->rolled_back_to)
		cJSON_AddStringToObject(f, "rolled_back_to", r->rolled_back_to);
	if (r->reason)
		cJSON_AddStringToObject(f, "reason", r->reason);
	cJSON_AddNumberToObject(f, "duration_ms", (double)(clock_now_ms() - r->started_ms));
	if (code)
		cJSON_AddStringToObject(f, "error", error_msg ? error_msg : "");
	return f;
}

/* ---- the run ---- */

struct run {
	const struct dp_settings *s;
	const struct dp_callbacks *cb;
	struct ops_error *err;
	const char *strategy;     /* the settings', or a killed run's from its journal */
	struct fs_lock lock;
	cJSON *journal;
	int64_t step_started;
	uint64_t artifact_size;
	struct dp_result res;
	const char *artifact_arg;  /* as given, for messages */
	const char *sha256_opt;
	int no_backup, no_migrate;
	char *old_slot;           /* blue-green */
	int in_rollback;
	int switched;
	struct strbuf failure;    /* why the deploy failed, for the record */
	PGconn *conn;
	struct db_target db;
	int have_db;
};

static const struct dp_callbacks no_callbacks;

static void run_init(struct run *r, const struct dp_settings *s, const struct dp_callbacks *cb,
		     const char *command, struct ops_error *err)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->cb = cb ? cb : &no_callbacks;
	r->err = err;
	r->strategy = s->strategy ? s->strategy : "symlink";
	r->lock = (struct fs_lock)FS_LOCK_INIT;
	dp_result_init(&r->res);
	r->res.command = xstrdup(command);
	r->res.strategy = xstrdup(r->strategy);
	strbuf_init(&r->failure, 0);
}

static void run_release(struct run *r)
{
	fs_lock_release(&r->lock);
	cJSON_Delete(r->journal);
	dp_result_release(&r->res);
	free(r->old_slot);
	strbuf_release(&r->failure);
	if (r->conn)
		PQfinish(r->conn);
	if (r->have_db)
		db_target_release(&r->db);
}

/* Hands the result over to the caller's res. */
static void run_finish(struct run *r, struct dp_result *res)
{
	dp_result_release(res);
	*res = r->res;
	memset(&r->res, 0, sizeof(r->res));
}

static void ev(const struct run *r, enum ops_event kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void ev(const struct run *r, enum ops_event kind, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;

	if (!r->cb->event)
		return;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	r->cb->event(r->cb->data, kind, sb.buf);
	strbuf_release(&sb);
}

static int stop_signal(const struct run *r)
{
	return r->cb->stop_requested ? r->cb->stop_requested(r->cb->data) : 0;
}

static int stop_requested(struct run *r)
{
	int sig = stop_signal(r);
	if (!sig)
		return 0;
	return ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted by signal %d", sig);
}

/* A failure before the run started: nothing to record or undo. */
static int early(struct run *r)
{
	r->res.early = 1;
	return r->err->code ? r->err->code : OPS_EXIT_FAILED;
}

static void record(struct run *r, const char *command, int code, cJSON *fields)
{
	struct ops_error e = OPS_ERROR_INIT;
	if (history_append(r->s->state_dir, command, code, fields, &e) < 0)
		ev(r, OPS_EVENT_WARNING, "cannot record the run in the history: %s", e.msg.buf);
	ops_error_release(&e);
}

static void record_run(struct run *r, int code)
{
	record(r, r->res.command, code, dp_result_fields(&r->res, code, r->err->msg.buf));
}

/* {slot} {port} {release} filled in. malloc'd. */
static char *fill(const char *tmpl, const char *slot, const char *port, const char *release)
{
	struct strbuf sb = STRBUF_INIT;
	for (const char *c = tmpl; *c; c++) {
		if (starts_with(c, "{slot}")) {
			strbuf_addstr(&sb, slot ? slot : "");
			c += 5;
		} else if (starts_with(c, "{port}")) {
			strbuf_addstr(&sb, port ? port : "");
			c += 5;
		} else if (starts_with(c, "{release}")) {
			strbuf_addstr(&sb, release ? release : "");
			c += 8;
		} else {
			strbuf_addch(&sb, *c);
		}
	}
	return strbuf_detach(&sb, NULL);
}

static int is_bluegreen(const struct run *r)
{
	return !strcmp(r->strategy, "blue-green");
}

static void step_end(struct run *r, const char *status)
{
	cJSON *last = cJSON_GetArrayItem(r->res.steps, cJSON_GetArraySize(r->res.steps) - 1);
	if (!last || cJSON_GetObjectItemCaseSensitive(last, "status"))
		return;
	cJSON_AddNumberToObject(last, "ms", (double)(clock_now_ms() - r->step_started));
	cJSON_AddStringToObject(last, "status", status);
}

/* The tests' SIGKILL at an exact step (like git's GIT_TEST_* knobs): the
 * journal says the step was about to start, nothing of it ran. */
static void test_kill_at(enum rel_step s)
{
	const char *at = getenv("OPSCTL_TEST_KILL_AT");
	if (at && !strcmp(at, rel_step_name(s)))
		raise(SIGKILL);
}

/* Ends the previous step, journals the next before it starts. */
static int step(struct run *r, enum rel_step s)
{
	cJSON *e = cJSON_CreateObject();
	step_end(r, "ok");
	cJSON_AddStringToObject(e, "step", rel_step_name(s));
	cJSON_AddItemToArray(r->res.steps, e);
	r->step_started = clock_now_ms();
	if (!r->journal)
		return 0;
	if (rel_journal_step(r->s->state_dir, r->journal, s, r->err) < 0)
		return -r->err->code;
	test_kill_at(s);
	return 0;
}

/* 1 when the journal's step is s already (blue-green journals record
 * before it stops the old slot). */
static int journal_at(const struct run *r, enum rel_step s)
{
	const char *at = r->journal ? json_get_str(r->journal, "step") : NULL;
	return at && !strcmp(at, rel_step_name(s));
}

/* The environment of hooks and service commands. */
static char **command_env(const struct run *r, const char *release, const char *previous, const char *slot,
			  const char *port)
{
	char **env = xcalloc(8, sizeof(char *));
	size_t n = 0;
	env[n++] = xstrfmt("OPSCTL_RELEASE=%s", release ? release : "");
	env[n++] = xstrfmt("OPSCTL_PREVIOUS=%s", previous ? previous : "");
	env[n++] = xstrfmt("OPSCTL_ROOT=%s", r->s->root);
	if (release)
		env[n++] = xstrfmt("OPSCTL_RELEASE_DIR=%s/releases/%s", r->s->root, release);
	if (slot) {
		env[n++] = xstrfmt("OPSCTL_SLOT=%s", slot);
		env[n++] = xstrfmt("OPSCTL_PORT=%s", port ? port : "");
	}
	return env;
}

/* Runs an operator-written command (hook, service command) with the
 * release in its environment. what names it in messages ("before_switch"). */
/* The pid (and start time) of the command running now, in the journal: a
 * recovery waits for what a killed run left running (a restart, a slot's
 * start or stop) before it runs commands of its own. */
static void note_command_pid(pid_t pid, void *data)
{
	struct run *r = data;
	struct ops_error ignored = OPS_ERROR_INIT;

	if (!r->journal)
		return;
	cJSON_DeleteItemFromObjectCaseSensitive(r->journal, "command_pid");
	cJSON_DeleteItemFromObjectCaseSensitive(r->journal, "command_ticks");
	cJSON_AddNumberToObject(r->journal, "command_pid", (double)pid);
	cJSON_AddNumberToObject(r->journal, "command_ticks", (double)proc_start_ticks(pid));
	rel_journal_write(r->s->state_dir, r->journal, &ignored);
	ops_error_release(&ignored);
}

static int run_command(struct run *r, const char *what, const char *cmdline, const char *release,
		       const char *previous, const char *slot, const char *port, int64_t timeout_ms)
{
	char **env = command_env(r, release, previous, slot, port);
	struct proc_opts po;
	struct proc_result res;
	int ret;

	memset(&po, 0, sizeof(po));
	po.env_add = (const char *const *)env;
	po.timeout_ms = timeout_ms;
	po.on_start = note_command_pid;
	po.on_start_data = r;
	ev(r, OPS_EVENT_VERBOSE, "running %s: %s", what, cmdline);
	ret = proc_run_shell_checked(cmdline, &po, &res, r->err);
	if (ret < 0)
		ops_error_prefix(r->err, "%s", what);
	db_env_free(env);
	return ret;
}

/* ---- the health gate ---- */

static int on_round(const struct probe_set *set, unsigned round, int64_t elapsed_ms, void *data)
{
	struct run *r = data;
	if (set) {
		size_t ok = 0;
		for (size_t i = 0; i < set->nr; i++)
			if (set->items[i].state <= PROBE_WARN)
				ok++;
		ev(r, OPS_EVENT_PROGRESS, "gate: %zu/%zu checks passing after %.1fs (round %u)", ok, set->nr,
		   (double)elapsed_ms / 1000.0, round);
		ev(r, OPS_EVENT_VERBOSE, "gate round %u: %zu/%zu checks passing after %.1fs", round, ok, set->nr,
		   (double)elapsed_ms / 1000.0);
	}
	/* a rollback in progress is not given up for a second Ctrl-C */
	return stop_signal(r) && !r->in_rollback;
}

static void gate_opts(struct run *r, const char *url, struct probe_gate *g)
{
	memset(g, 0, sizeof(*g));
	g->cfg = r->s->cfg;
	g->env = r->s->env;
	g->url = url;
	g->names = r->s->checks;
	g->nnames = r->s->nchecks;
	g->names_from = "[deploy] checks";
	g->timeout_ms = r->s->probe_timeout_ms;
	g->wait_ms = r->s->wait_ms;
	g->interval_ms = r->s->interval_ms;
	g->consecutive = (unsigned)r->s->consecutive;
	g->on_round = on_round;
	g->data = r;
}

/* Waits until the checks pass [health] consecutive times in a row within
 * [health] wait: url when given, else [deploy] checks, else every [check].
 * 0 when they did; 1 with the failing checks in why; < 0 when the gate
 * could not run (interrupted: OPS_EXIT_ABORTED). */
static int gate(struct run *r, const char *url, struct strbuf *why)
{
	struct probe_gate g;
	int ret;

	gate_opts(r, url, &g);
	ret = probe_gate_run(&g, why, r->err);
	ev(r, OPS_EVENT_PROGRESS_DONE, "%s", "");
	if (ret == 2) {
		ev(r, OPS_EVENT_WARNING, "no [check] sections: the health gate has nothing to check");
		ret = 0;
	}
	return ret;
}

/* ---- migrations ---- */

static int db_resolve_once(struct run *r)
{
	int ret;
	if (r->have_db)
		return 0;
	if ((ret = db_resolve(&r->db, r->s->db_url, r->s->cfg, r->s->env, r->err)) < 0)
		return ret;
	r->have_db = 1;
	return 0;
}

static int db_connect_once(struct run *r)
{
	int ret;
	if (r->conn)
		return 0;
	if ((ret = db_resolve_once(r)) < 0)
		return ret;
	ev(r, OPS_EVENT_VERBOSE, "connecting to '%s' (from %s)", r->db.display, r->db.source);
	return db_connect(&r->conn, &r->db, !strcmp(r->res.command, "deploy") ? "opsctl deploy" : "opsctl rollback",
			  r->s->connect_timeout_ms, r->err);
}

/* The migrations of a release: its own directory, else [migrations] dir. */
static char *migrations_dir(const struct run *r, const char *release)
{
	char *dir = xstrfmt("%s/releases/%s/%s", r->s->root, release,
			    r->s->migrations_in_release ? r->s->migrations_in_release : "migrations");
	struct stat st;
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return dir;
	free(dir);
	return dup_or_null(r->s->migrations_fallback);
}

static char *whoami(void)
{
	char user[64], host[256];
	clock_whoami(user, sizeof(user), host, sizeof(host));
	return xstrfmt("%s@%s", user, host);
}

/* interruptible: a signal stops the lock wait and cancels the running
 * statement (the forward migrations); undoing them is never interrupted. */
static int mig_open(struct run *r, struct mig *m, const char *dir, int interruptible)
{
	int ret;
	mig_init(m, dir, r->s->migrations_table ? r->s->migrations_table : "schema_migrations",
		 r->s->migrations_lock_ms);
	m->applied_by = whoami();
	if (interruptible) {
		m->stop = r->cb->stop_requested;
		m->stop_data = r->cb->data;
	}
	if ((ret = mig_scan(m, r->err)) < 0 || (ret = db_connect_once(r)) < 0 ||
	    (ret = mig_attach(m, r->conn, r->err)) < 0 || (ret = mig_lock(m, r->err)) < 0)
		return ret;
	return mig_prepare(m, r->err);
}

/* Undoes the versions (a JSON array of strings) that are applied, newest
 * first; they must be the newest applied ones and have down files. Used
 * after a failed migrate step, by the recovery, and by rollback
 * --with-schema. plan_only: check, change nothing. */
static int undo_versions(struct run *r, const char *dir, const cJSON *versions, int plan_only, cJSON *undone,
			 struct ops_error *err)
{
	struct mig m;
	const struct mig_applied **plan = NULL;
	size_t steps = 0, n = 0;
	int ret;

	memset(&m, 0, sizeof(m));
	if ((ret = mig_open(r, &m, dir, 0)) < 0)
		goto out;
	for (size_t i = 0; i < m.napplied; i++) {
		const cJSON *v;
		cJSON_ArrayForEach(v, versions)
			if (cJSON_IsString(v) && !strcmp(v->valuestring, m.applied[i].version))
				steps++;
	}
	if (!steps)
		goto out;
	if ((ret = mig_plan_down(&m, 0, 0, steps, &plan, &n, err)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const cJSON *v;
		int mine = 0;
		cJSON_ArrayForEach(v, versions)
			if (cJSON_IsString(v) && !strcmp(v->valuestring, plan[i]->version))
				mine = 1;
		if (!mine) {
			ret = ops_error_set(err, OPS_EXIT_FAILED,
					    "migration '%s' was applied after the release's own; not undoing them",
					    plan[i]->script_name);
			goto out;
		}
	}
	if (plan_only)
		goto out;
	ret = mig_undo(&m, plan, n, err);
	for (size_t i = 0; i < m.ndone && undone; i++)
		cJSON_AddItemToArray(undone, cJSON_CreateString(m.done[i].version));
out:
	free(plan);
	mig_unlock(&m);
	mig_release(&m);
	return ret;
}

static int do_migrate(struct run *r)
{
	struct mig m;
	const struct mig_file **plan = NULL;
	size_t n = 0;
	char *dir = migrations_dir(r, r->res.release);
	cJSON *planned;
	int ret = 0;

	memset(&m, 0, sizeof(m));
	if (!dir) {
		ev(r, OPS_EVENT_INFO, "no migrations in the release and no [migrations] dir: nothing to migrate");
		goto out;
	}
	if ((ret = mig_open(r, &m, dir, 1)) < 0 ||
	    (ret = mig_plan_up(&m, 0, 0, 0, &plan, &n, r->err)) < 0)
		goto out;
	planned = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(planned, cJSON_CreateString(plan[i]->version));
	cJSON_AddItemToObject(r->journal, "migrations_plan", planned);
	json_set_str(r->journal, "migrations_dir", dir);
	if ((ret = rel_journal_write(r->s->state_dir, r->journal, r->err)) < 0)
		goto out;
	if (n)
		ev(r, OPS_EVENT_INFO, "applying %zu migration%s from '%s'", n, n == 1 ? "" : "s", dir);
	db_cancel_arm(r->conn);
	ret = mig_apply(&m, plan, n, r->err);
	db_cancel_disarm();
	for (size_t i = 0; i < m.ndone; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "version", m.done[i].version);
		cJSON_AddStringToObject(e, "script", m.done[i].script_name);
		cJSON_AddItemToArray(r->res.migrations, e);
	}
	if (ret < 0 && m.ndone) {
		/* the failed one rolled back in its transaction; the ones before it
		 * are undone too, so the database is as it was before the deploy */
		struct ops_error undo_err = OPS_ERROR_INIT;
		cJSON *applied = cJSON_CreateArray();
		for (size_t i = 0; i < m.ndone; i++)
			cJSON_AddItemToArray(applied, cJSON_CreateString(m.done[i].version));
		mig_unlock(&m);
		if (undo_versions(r, dir, applied, 0, NULL, &undo_err) < 0) {
			ev(r, OPS_EVENT_WARNING, "the migrations applied before the failure stay applied: %s",
			   undo_err.msg.buf);
		} else {
			ev(r, OPS_EVENT_INFO, "undid the %zu migration%s applied before the failure", m.ndone,
			   m.ndone == 1 ? "" : "s");
			cJSON_Delete(r->res.migrations);
			r->res.migrations = cJSON_CreateArray();
		}
		cJSON_Delete(applied);
		ops_error_release(&undo_err);
	}
out:
	free(plan);
	mig_unlock(&m);
	mig_release(&m);
	free(dir);
	return ret;
}

/* ---- backup ---- */

static int do_backup(struct run *r)
{
	const struct dp_settings *s = r->s;
	struct bk_create_opts o;
	struct bk_entry made;
	struct fs_lock lock = FS_LOCK_INIT;
	enum zs_codec codec;
	const char *format = s->backup_format ? s->backup_format : "directory";
	const char *dir = s->backup_dir ? s->backup_dir : "backups";
	int ret;

	memset(&made, 0, sizeof(made));
	memset(&o, 0, sizeof(o));
	if ((ret = zs_codec_parse(s->backup_compression ? s->backup_compression
				  : strcmp(format, "plain") ? "zstd" : "gzip", &codec, r->err)) < 0)
		goto out;
	if ((ret = db_resolve_once(r)) < 0)
		goto out;
	/* the backup engine cleans up after killed backups: never under a running one */
	if ((ret = fs_lock_acquire(&lock, s->state_dir, "backup", "opsctl deploy (backup)", s->lock_wait_ms,
				   r->err)) < 0)
		goto out;
	o.dir = dir;
	o.app = s->app_name ? s->app_name : "opsctl";
	o.db = &r->db;
	o.format = format;
	o.codec = codec;
	o.level = s->backup_level;
	o.jobs = s->backup_jobs > 0 ? s->backup_jobs : 1;
	o.pg_dump = s->pg_dump ? s->pg_dump : "pg_dump";
	o.stall_ms = s->backup_stall_ms;
	ev(r, OPS_EVENT_INFO, "backing up the database into '%s'", dir);
	ret = bk_create(&o, &made, r->err);
	if (ret == 0) {
		r->res.backup_id = xstrdup(made.id);
		json_set_str(r->journal, "backup", made.id);
	}
out:
	fs_lock_release(&lock);
	bk_entry_release(&made);
	return ret;
}

/* ---- switching: symlink ---- */

static int restart_service(struct run *r, const char *release, const char *previous)
{
	if (!r->s->restart) {
		ev(r, OPS_EVENT_WARNING, "no [service] restart: '%s' is linked but nothing was restarted", release);
		return 0;
	}
	ev(r, OPS_EVENT_INFO, "restarting: %s", r->s->restart);
	return run_command(r, "[service] restart", r->s->restart, release, previous, NULL, NULL,
			   r->s->service_timeout_ms);
}

/* ---- switching: blue-green ---- */

/* A proxy's reload may return before its old workers are gone (nginx -s
 * reload only signals): they still send requests to the slot that was just
 * taken out of the upstream. Its stop waits [deploy "blue-green"] drain. */
static void drain(struct run *r, const char *slot)
{
	if (r->s->drain_ms <= 0)
		return;
	ev(r, OPS_EVENT_INFO, "draining slot '%s' for %.1fs before it stops", slot, (double)r->s->drain_ms / 1000.0);
	clock_sleep_ms(r->s->drain_ms);
}

static int slot_command(struct run *r, const char *what, const char *tmpl, const char *slot, const char *release,
			const char *previous)
{
	const struct dp_slot *sl = dp_find_slot(r->s, slot);
	char *cmd = fill(tmpl, slot, sl ? sl->port : NULL, release);
	int ret;
	ev(r, OPS_EVENT_INFO, "%s slot '%s': %s", what, slot ? slot : "", cmd ? cmd : "");
	ret = run_command(r, what, cmd, release, previous, slot, sl ? sl->port : NULL, r->s->service_timeout_ms);
	free(cmd);
	return ret;
}

/* Puts back the upstream file the journal saved; NULL content: there was none. */
static int restore_upstream(struct run *r, const cJSON *journal)
{
	const char *old = json_get_str(journal, "upstream_old");
	if (!old) {
		if (unlink(r->s->upstream_file) < 0 && errno != ENOENT)
			return ops_error_set(r->err, OPS_EXIT_FAILED, "cannot remove '%s': %s",
					     r->s->upstream_file, ops_strerror(errno));
		return 0;
	}
	return fs_write_atomic(r->s->upstream_file, old, strlen(old), 0644, r->err);
}

static int proxy_reload(struct run *r, const char *release, const char *previous)
{
	int ret = 0;
	if (r->s->proxy_test)
		ret = run_command(r, "proxy_test", r->s->proxy_test, release, previous, NULL, NULL,
				  r->s->service_timeout_ms);
	if (ret == 0)
		ret = run_command(r, "proxy_reload", r->s->proxy_reload, release, previous, NULL, NULL,
				  r->s->service_timeout_ms);
	return ret;
}

static char *live_slot(const struct dp_settings *s)
{
	char *live = NULL;
	struct ops_error ignored = OPS_ERROR_INIT;
	rel_read_target(s->root, "slots/live", &live, &ignored);
	ops_error_release(&ignored);
	if (live && !dp_find_slot(s, live)) {
		free(live);
		live = NULL;
	}
	return live;
}

/* ---- going back ---- */

/* Switch back to the previous release, restart (or put the upstream back),
 * gate it. Returns OPS_EXIT_ROLLED_BACK or OPS_EXIT_ROLLBACK_FAILED, with
 * the failure in err. */
static int roll_back(struct run *r, const cJSON *journal)
{
	struct strbuf why = STRBUF_INIT;
	struct ops_error saved = OPS_ERROR_INIT;
	const char *root = r->s->root, *release = r->res.release, *previous = r->res.previous;
	int ret = 0, code;

	r->in_rollback = 1;
	step(r, REL_STEP_ROLLBACK);
	if (!previous) {
		ops_error_set(r->err, OPS_EXIT_ROLLBACK_FAILED,
			      "%s; there is no previous release to return to ('current' points to '%s')",
			      r->failure.buf, release);
		ops_error_hint(r->err, "fix the release and deploy again; check the service and its log");
		code = OPS_EXIT_ROLLBACK_FAILED;
		goto out;
	}
	ev(r, OPS_EVENT_WARNING, "%s; rolling back to '%s'", r->failure.buf, previous);
	if (is_bluegreen(r)) {
		const char *old_slot = json_get_str(journal, "old_slot");
		const char *new_slot = json_get_str(journal, "slot");
		if ((ret = restore_upstream(r, journal)) == 0 && (ret = proxy_reload(r, previous, release)) == 0 &&
		    (ret = rel_switch(root, "current", previous, r->err)) == 0 && old_slot)
			ret = rel_switch_to(root, "slots/live", old_slot, r->err);
		if (ret == 0) {
			r->switched = 0;
			ret = gate(r, NULL, &why);
			if (ret == 0 && new_slot) {
				/* the new slot is out of the proxy once the old workers drained */
				drain(r, new_slot);
				if (slot_command(r, "stopping", r->s->bg_stop, new_slot, release, previous) < 0)
					ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
			}
		}
	} else {
		if ((ret = rel_switch(root, "current", previous, r->err)) == 0) {
			r->switched = 0;
			ret = restart_service(r, previous, release);
		}
		if (ret == 0)
			ret = gate(r, NULL, &why);
	}
	if (ret == 0) {
		r->res.rolled_back_to = xstrdup(previous);
		ops_error_set(r->err, OPS_EXIT_ROLLED_BACK, "%s; rolled back to '%s', which passed its health gate",
			      r->failure.buf, previous);
		code = OPS_EXIT_ROLLED_BACK;
	} else {
		ops_error_set(&saved, 1, "%s", ret == 1 ? why.buf : r->err->msg.buf);
		ops_error_set(r->err, OPS_EXIT_ROLLBACK_FAILED, "%s; the rollback to '%s' failed too: %s",
			      r->failure.buf, previous, saved.msg.buf);
		ops_error_hint(r->err, "an operator must check the service ([service] restart, its log) and the checks; "
			       "'current' points to '%s'", previous);
		code = OPS_EXIT_ROLLBACK_FAILED;
	}
out:
	step_end(r, code == OPS_EXIT_ROLLED_BACK ? "ok" : "failed");
	strbuf_release(&why);
	ops_error_release(&saved);
	return code;
}

static void prune(struct run *r)
{
	const char *protect[4];
	char **removed = NULL;
	size_t nremoved = 0, np = 0;
	struct ops_error err = OPS_ERROR_INIT;
	char *slots[2] = { NULL, NULL };

	protect[np++] = r->res.release;
	protect[np++] = r->res.previous;
	for (size_t i = 0; i < r->s->nslots; i++) {
		char *name = xstrfmt("slots/%s", r->s->slots[i].name);
		rel_read_link(r->s->root, name, &slots[i], &err);
		protect[np++] = slots[i];
		free(name);
	}
	if (rel_prune(r->s->root, (size_t)r->s->keep, protect, np, &removed, &nremoved, &err) < 0)
		ev(r, OPS_EVENT_WARNING, "cannot prune old releases: %s", err.msg.buf);
	for (size_t i = 0; i < nremoved; i++) {
		ev(r, OPS_EVENT_VERBOSE, "pruned release '%s'", removed[i]);
		cJSON_AddItemToArray(r->res.pruned, cJSON_CreateString(removed[i]));
	}
	rel_list_free(removed, nremoved);
	free(slots[0]);
	free(slots[1]);
	ops_error_release(&err);
}

/* ---- recovery of a killed run ---- */

static int take_lock(struct run *r, const char *note)
{
	return fs_lock_acquire(&r->lock, r->s->state_dir, "deploy", note, r->s->lock_wait_ms, r->err);
}

/* Finishes or undoes what the journal says a killed run was doing (the
 * deploy lock is held). 0 when it is done (or there was nothing), else the
 * exit code with err. */
static int recover(struct run *r)
{
	const struct dp_settings *s = r->s;
	cJSON *j = NULL;
	struct run k;
	enum rel_recovery action;
	const char *release, *previous, *kind;
	char *current = NULL;
	int code = 0;

	if (rel_journal_read(s->state_dir, &j, r->err) < 0)
		return r->err->code;
	if (!j) {
		/* a run killed while it wrote its first journal left its temporary file */
		char *path = xstrfmt("%s/deploy/journal.json", s->state_dir);
		fs_remove_stale_tmp(path, 0);
		free(path);
		return 0;
	}
	{
		/* a command the killed run started may still be running: it ends first */
		const cJSON *pid = cJSON_GetObjectItemCaseSensitive(j, "command_pid");
		const cJSON *ticks = cJSON_GetObjectItemCaseSensitive(j, "command_ticks");
		if (cJSON_IsNumber(pid) && cJSON_IsNumber(ticks) &&
		    proc_start_ticks((pid_t)pid->valuedouble) == (unsigned long long)ticks->valuedouble) {
			int64_t wait_ms = s->service_timeout_ms > s->hook_timeout_ms ? s->service_timeout_ms
										  : s->hook_timeout_ms;
			ev(r, OPS_EVENT_INFO, "waiting for a command of the interrupted run (pid %d) to finish",
			   (int)pid->valuedouble);
			if (!proc_wait_gone((pid_t)pid->valuedouble, (unsigned long long)ticks->valuedouble,
					    wait_ms > 0 ? wait_ms : 300000))
				ev(r, OPS_EVENT_WARNING, "a command of the interrupted run (pid %d) is still running",
				   (int)pid->valuedouble);
		}
	}
	action = rel_recovery_for(j);
	kind = json_get_str(j, "kind");
	/* blue-green has no half-switched rollback: it goes back to the old upstream */
	if (action == REL_RECOVER_FINISH && !strcmp(kind, "rollback") &&
	    rel_step_parse(json_get_str(j, "step")) < REL_STEP_RECORD &&
	    !strcmp(json_get_str(j, "strategy") ? json_get_str(j, "strategy") : "", "blue-green"))
		action = REL_RECOVER_ROLLBACK;
	release = json_get_str(j, "release");
	previous = json_get_str(j, "previous");
	ev(r, OPS_EVENT_WARNING, "a %s of '%s' was interrupted at step '%s' (pid %d): %s", kind,
	   release ? release : "?", json_get_str(j, "step"),
	   cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "pid"))
		   ? (int)cJSON_GetObjectItemCaseSensitive(j, "pid")->valuedouble : 0,
	   action == REL_RECOVER_DISCARD ? "undoing it"
	   : action == REL_RECOVER_ROLLBACK ? "rolling it back"
					    : "finishing it");

	/* a run of its own, in the killed one's settings */
	run_init(&k, s, r->cb, kind, r->err);
	if (json_get_str(j, "strategy"))
		k.strategy = json_get_str(j, "strategy");
	free(k.res.strategy);
	k.res.strategy = xstrdup(k.strategy);
	k.res.release = dup_or_null(release);
	k.res.previous = dup_or_null(previous);
	k.res.artifact = dup_or_null(json_get_str(j, "artifact"));
	k.res.backup_id = dup_or_null(json_get_str(j, "backup"));
	k.res.slot = dup_or_null(json_get_str(j, "slot"));
	if (json_get_str(j, "sha256"))
		strlcpy_s(k.res.sha256, json_get_str(j, "sha256"), sizeof(k.res.sha256));
	if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "migrations"))) {
		cJSON_Delete(k.res.migrations);
		k.res.migrations = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "migrations"), 1);
	}
	if (is_bluegreen(&k) && !s->nslots) {
		code = ops_error_set(r->err, OPS_EXIT_CONFIG,
				     "the interrupted deploy used the blue-green strategy; the config has no slots for it");
		code = -code;
		goto out;
	}
	if (rel_read_link(s->root, "current", &current, r->err) < 0) {
		code = r->err->code;
		goto out;
	}
	if (is_bluegreen(&k) && s->upstream_file)
		fs_remove_stale_tmp(s->upstream_file, 0);

	if (action == REL_RECOVER_DISCARD) {
		const cJSON *plan = cJSON_GetObjectItemCaseSensitive(j, "migrations_plan");
		const char *dir = json_get_str(j, "migrations_dir");
		if (!strcmp(kind, "deploy") && cJSON_GetArraySize(plan) > 0 && dir) {
			cJSON *undone = cJSON_CreateArray();
			if (undo_versions(&k, dir, plan, 0, undone, r->err) < 0)
				ev(r, OPS_EVENT_WARNING, "the interrupted deploy's migrations stay applied: %s",
				   r->err->msg.buf);
			else if (cJSON_GetArraySize(undone))
				ev(r, OPS_EVENT_INFO, "undid %d migration%s of the interrupted deploy",
				   cJSON_GetArraySize(undone), cJSON_GetArraySize(undone) == 1 ? "" : "s");
			cJSON_Delete(undone);
			ops_error_clear(r->err);
		}
		if (k.res.slot && is_bluegreen(&k) && rel_step_parse(json_get_str(j, "step")) >= REL_STEP_START) {
			if (slot_command(&k, "stopping", s->bg_stop, k.res.slot, k.res.release, k.res.previous) < 0)
				ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
			ops_error_clear(r->err);
		}
		if (!strcmp(kind, "deploy") && release && (!current || strcmp(current, release))) {
			if (rel_remove(s->root, release, r->err) < 0) {
				code = r->err->code;
				goto out;
			}
			/* a slot linked to the removed release gets back what it held */
			for (size_t i = 0; i < s->nslots; i++) {
				char *link = xstrfmt("slots/%s", s->slots[i].name), *held = NULL;
				const char *old = json_get_str(j, "slot_release_old");
				if (rel_read_link(s->root, link, &held, r->err) == 0 && held && !strcmp(held, release) &&
				    rel_switch(s->root, link, old && rel_exists(s->root, old) ? old : NULL, r->err) < 0)
					ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
				ops_error_clear(r->err);
				free(held);
				free(link);
			}
		}
		if (rel_clean(s->root, r->err) < 0) {
			code = r->err->code;
			goto out;
		}
		code = OPS_EXIT_ABORTED;
		ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted before the switch; undone");
	} else if (action == REL_RECOVER_ROLLBACK) {
		int needs = !current || !previous || strcmp(current, previous) ||
			    rel_step_parse(json_get_str(j, "step")) > REL_STEP_SWITCH || is_bluegreen(&k);
		strbuf_addf(&k.failure, "the deploy of '%s' was interrupted", release ? release : "?");
		if (!needs) {
			code = OPS_EXIT_ROLLED_BACK;
			ops_error_set(r->err, code, "%s before it switched", k.failure.buf);
		} else {
			code = roll_back(&k, j);
		}
	} else {
		/* the gate had passed (deploy), or a rollback's target is to be
		 * serving: make sure it is, then record it. A rollback killed
		 * after its switch may not have restarted (killed before the
		 * restart began, or during it) nor gated: both are done again. */
		int rstep = rel_step_parse(json_get_str(j, "step"));
		int moved = current && release && !strcmp(current, release);
		if (!strcmp(kind, "rollback") && release && (!moved || rstep < REL_STEP_RECORD)) {
			struct strbuf why = STRBUF_INIT;
			if ((!moved && rel_switch(s->root, "current", release, r->err) < 0) ||
			    ((!moved || rstep <= REL_STEP_RESTART) && restart_service(&k, release, previous) < 0) ||
			    gate(&k, NULL, &why) != 0) {
				if (why.len)
					ops_error_set(r->err, OPS_EXIT_ROLLBACK_FAILED, "the checks failed: %s", why.buf);
				code = OPS_EXIT_ROLLBACK_FAILED;
			}
			strbuf_release(&why);
		}
		if (!code && is_bluegreen(&k) && json_get_str(j, "old_slot")) {
			/* killed while the old slot drained or stopped: it stops now */
			const char *old_slot = json_get_str(j, "old_slot");
			char *live = live_slot(s);
			if (!live || strcmp(live, old_slot)) {
				drain(&k, old_slot);
				if (slot_command(&k, "stopping", s->bg_stop, old_slot, previous, release) < 0)
					ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
				ops_error_clear(r->err);
			}
			free(live);
		}
		if (!code && !strcmp(kind, "deploy"))
			prune(&k);
		/* a run killed while it pruned left a release half removed in .trash-ID */
		{
			struct ops_error ce = OPS_ERROR_INIT;
			if (rel_clean(s->root, &ce) < 0)
				ev(r, OPS_EVENT_WARNING, "%s", ce.msg.buf);
			ops_error_release(&ce);
		}
	}
	k.res.recovered = cJSON_CreateObject();
	cJSON_AddStringToObject(k.res.recovered, "action", rel_recovery_name(action));
	cJSON_AddStringToObject(k.res.recovered, "step", json_get_str(j, "step"));
	cJSON_AddNumberToObject(k.res.recovered, "exit", code);
	{
		cJSON *f = dp_result_fields(&k.res, code, r->err->msg.buf);
		cJSON_AddItemToObject(f, "recovered", cJSON_Duplicate(k.res.recovered, 1));
		record(r, kind, code, f);
	}
	/* Recovered either way: a rollback that failed its gate is reported (and
	 * recorded) but does not block the next deploy, which is the fix. */
	if (code == OPS_EXIT_ROLLBACK_FAILED) {
		ev(r, OPS_EVENT_ERROR, "%s", r->err->msg.len ? r->err->msg.buf : "unknown error");
		if (r->err->hint.len)
			ev(r, OPS_EVENT_HINT, "%s", r->err->hint.buf);
		ops_error_clear(r->err);
		code = 0;
	}
	cJSON_Delete(r->res.recovered);
	r->res.recovered = k.res.recovered;
	k.res.recovered = NULL;
	if (rel_journal_clear(s->state_dir, r->err) < 0) {
		code = r->err->code;
		goto out;
	}
	if (code)
		ev(r, OPS_EVENT_INFO, "%s", r->err->msg.buf);
	else
		ev(r, OPS_EVENT_INFO, "the interrupted %s of '%s' is finished", kind, release ? release : "?");
	ops_error_clear(r->err);
	code = 0;
out:
	run_release(&k);
	cJSON_Delete(j);
	free(current);
	return code;
}

/* ---- the switch, gate and rollback of both strategies ---- */

static int switch_bluegreen(struct run *r)
{
	const struct dp_settings *s = r->s;
	struct strbuf why = STRBUF_INIT, old = STRBUF_INIT;
	const char *root = s->root, *release = r->res.release, *previous = r->res.previous;
	char *live = live_slot(s);
	const struct dp_slot *idle = NULL;
	char *content = NULL, *health = NULL;
	int ret = 0, code = 0;

	for (size_t i = 0; i < s->nslots && !idle; i++)
		if (!live || strcmp(live, s->slots[i].name))
			idle = &s->slots[i];
	r->res.slot = xstrdup(idle->name);
	r->old_slot = live;
	json_set_str(r->journal, "slot", r->res.slot);
	json_set_str(r->journal, "old_slot", r->old_slot);
	{
		/* what the idle slot held, for a recovery that removes the release */
		char *link = xstrfmt("slots/%s", idle->name), *held = NULL;
		struct ops_error ignored = OPS_ERROR_INIT;
		rel_read_link(root, link, &held, &ignored);
		json_set_str(r->journal, "slot_release_old", held);
		ops_error_release(&ignored);
		free(held);
		free(link);
	}
	if ((ret = step(r, REL_STEP_START)) < 0)
		goto out;
	{
		char *link = xstrfmt("slots/%s", idle->name);
		ret = rel_switch(root, link, release, r->err);
		free(link);
	}
	if (ret == 0)
		ret = slot_command(r, "starting", s->bg_start, idle->name, release, previous);
	if (ret == 0 && (ret = stop_requested(r)) == 0) {
		health = fill(s->bg_health_url, idle->name, idle->port, release);
		ev(r, OPS_EVENT_INFO, "gate: waiting for slot '%s' at %s", idle->name, health);
		ret = gate(r, health, &why);
		if (ret == 1)
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "slot '%s' did not pass its health gate: %s",
					    idle->name, why.buf);
	}
	if (ret == 0)
		ret = stop_requested(r);
	if (ret == 0 && s->before_switch && (ret = step(r, REL_STEP_BEFORE_SWITCH)) == 0)
		ret = run_command(r, "before_switch", s->before_switch, release, previous, idle->name, idle->port,
				  s->hook_timeout_ms);
	if (ret < 0) {
		/* the proxy never saw the new slot: stop it, the live one serves on */
		strbuf_addbuf(&r->failure, &r->err->msg);
		if (slot_command(r, "stopping", s->bg_stop, idle->name, release, previous) < 0)
			ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
		ops_error_set(r->err, OPS_EXIT_ROLLED_BACK, "%s; the proxy was not switched, '%s' serves on",
			      r->failure.buf, previous ? previous : "nothing");
		code = OPS_EXIT_ROLLED_BACK;
		goto out;
	}
	/* the upstream file: the old content is journaled before it is replaced */
	if (fs_exists(s->upstream_file) && fs_read_file(s->upstream_file, &old, 1 << 20, r->err) < 0) {
		ret = -1;
	} else {
		json_set_str(r->journal, "upstream_old", fs_exists(s->upstream_file) ? old.buf : NULL);
		ret = step(r, REL_STEP_SWITCH);
	}
	if (ret == 0) {
		struct strbuf sb = STRBUF_INIT;
		content = fill(s->upstream_template, idle->name, idle->port, release);
		strbuf_addstr(&sb, content);
		if (!ends_with(sb.buf, "\n"))
			strbuf_addch(&sb, '\n');
		ret = fs_write_atomic(s->upstream_file, sb.buf, sb.len, 0644, r->err);
		strbuf_release(&sb);
	}
	if (ret == 0 && s->proxy_test &&
	    (ret = run_command(r, "proxy_test", s->proxy_test, release, previous, idle->name, idle->port,
			       s->service_timeout_ms)) < 0) {
		struct ops_error keep = OPS_ERROR_INIT;
		ops_error_set(&keep, 1, "%s", r->err->msg.buf);
		strbuf_addbuf(&r->failure, &keep.msg);
		if (restore_upstream(r, r->journal) < 0)
			ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
		if (slot_command(r, "stopping", s->bg_stop, idle->name, release, previous) < 0)
			ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
		ops_error_set(r->err, OPS_EXIT_ROLLED_BACK, "%s; the old upstream file was put back, '%s' serves on",
			      r->failure.buf, previous ? previous : "nothing");
		ops_error_release(&keep);
		code = OPS_EXIT_ROLLED_BACK;
		goto out;
	}
	if (ret == 0 && (ret = step(r, REL_STEP_RESTART)) == 0) {
		r->switched = 1;
		ret = run_command(r, "proxy_reload", s->proxy_reload, release, previous, idle->name, idle->port,
				  s->service_timeout_ms);
	}
	if (ret == 0)
		ret = rel_switch(root, "current", release, r->err);
	if (ret == 0)
		ret = rel_switch_to(root, "slots/live", idle->name, r->err);
	if (ret == 0 && s->after_switch && (ret = step(r, REL_STEP_AFTER_SWITCH)) == 0)
		ret = run_command(r, "after_switch", s->after_switch, release, previous, idle->name, idle->port,
				  s->hook_timeout_ms);
	if (ret == 0)
		ret = stop_requested(r);
	if (ret == 0 && (ret = step(r, REL_STEP_GATE)) == 0) {
		ev(r, OPS_EVENT_INFO, "gate: waiting for the checks through the proxy (up to %.0fs)",
		   (double)s->wait_ms / 1000.0);
		ret = gate(r, NULL, &why);
		if (ret == 1)
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "'%s' did not pass its health gate: %s", release,
					    why.buf);
	}
	if (ret < 0) {
		strbuf_addbuf(&r->failure, &r->err->msg);
		code = roll_back(r, r->journal);
		goto out;
	}
	/* The gate passed: from here on a killed run is finished, not rolled
	 * back (the old slot may be stopped already); the recovery stops it. */
	if (step(r, REL_STEP_RECORD) < 0) {
		ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
		ops_error_clear(r->err);
	}
	if (r->old_slot)
		drain(r, r->old_slot);
	if (r->old_slot && slot_command(r, "stopping", s->bg_stop, r->old_slot, previous, release) < 0) {
		ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
		ops_error_clear(r->err);
	}
out:
	free(content);
	free(health);
	strbuf_release(&old);
	strbuf_release(&why);
	return code;
}

/* Switches to the release (from the previous one), restarts and gates it;
 * on a failure goes back. 0 on success, else the exit code (7, 8, 10). */
static int switch_and_gate(struct run *r)
{
	const struct dp_settings *s = r->s;
	struct strbuf why = STRBUF_INIT;
	const char *release = r->res.release, *previous = r->res.previous;
	int ret = 0, code = 0;

	if (is_bluegreen(r)) {
		code = switch_bluegreen(r);
		goto out;
	}
	if (s->before_switch) {
		if ((ret = step(r, REL_STEP_BEFORE_SWITCH)) == 0)
			ret = run_command(r, "before_switch", s->before_switch, release, previous, NULL, NULL,
					  s->hook_timeout_ms);
		if (ret == 0)
			ret = stop_requested(r);
		if (ret < 0) {
			/* interrupted here: cleaned up, nothing changed (10); a failed hook
			 * is handled like a failed gate (7) */
			code = stop_signal(r) ? OPS_EXIT_ABORTED : OPS_EXIT_ROLLED_BACK;
			strbuf_addbuf(&r->failure, &r->err->msg);
			ops_error_set(r->err, code, "%s; nothing was switched, '%s' serves on", r->failure.buf,
				      previous ? previous : "nothing");
			goto out;
		}
	}
	if ((ret = step(r, REL_STEP_SWITCH)) == 0) {
		ev(r, OPS_EVENT_INFO, "switching 'current' to '%s'", release);
		ret = rel_switch(s->root, "current", release, r->err);
	}
	if (ret == 0) {
		r->switched = 1;
		if ((ret = step(r, REL_STEP_RESTART)) == 0)
			ret = restart_service(r, release, previous);
	}
	if (ret == 0 && s->after_switch && (ret = step(r, REL_STEP_AFTER_SWITCH)) == 0)
		ret = run_command(r, "after_switch", s->after_switch, release, previous, NULL, NULL,
				  s->hook_timeout_ms);
	if (ret == 0)
		ret = stop_requested(r);
	if (ret == 0 && (ret = step(r, REL_STEP_GATE)) == 0) {
		ev(r, OPS_EVENT_INFO, "gate: waiting for the checks (up to %.0fs, %ld in a row)",
		   (double)s->wait_ms / 1000.0, s->consecutive);
		ret = gate(r, NULL, &why);
		if (ret == 1)
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "'%s' did not pass its health gate: %s", release,
					    why.buf);
	}
	if (ret < 0) {
		strbuf_addbuf(&r->failure, &r->err->msg);
		code = r->switched ? roll_back(r, r->journal) : r->err->code;
	}
out:
	strbuf_release(&why);
	return code;
}

/* ---- opsctl deploy ARTIFACT ---- */

static int check_sha256(struct run *r)
{
	int ret;
	if (r->sha256_opt && strcasecmp(r->sha256_opt, r->res.sha256)) {
		ret = ops_error_set(r->err, OPS_EXIT_INTEGRITY, "checksum mismatch for '%s': expected %s, got %s",
				    r->res.artifact, r->sha256_opt, r->res.sha256);
		return ret;
	}
	return 0;
}

static int preflight(struct run *r)
{
	const struct dp_settings *s = r->s;
	struct statvfs vfs;
	uint64_t need, avail;
	int ret;

	if ((ret = hash_sha256_file(r->res.artifact, r->res.sha256, &r->artifact_size, r->err)) < 0)
		return ret;
	json_set_str(r->journal, "sha256", r->res.sha256);
	if ((ret = check_sha256(r)) < 0) {
		ops_error_hint(r->err, "the artifact is not the one that was built; nothing was changed");
		return ret;
	}
	if ((ret = fs_mkdir_p(s->root, 0755, r->err)) < 0)
		return ret;
	if (statvfs(s->root, &vfs) == 0) {
		avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		need = r->artifact_size * (rel_is_archive(r->res.artifact) ? 3 : 1) + s->min_free;
		if (avail < need) {
			struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
			format_size(&a, avail);
			format_size(&b, need);
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "not enough free space in '%s': %s free, %s needed",
					    s->root, a.buf, b.buf);
			ops_error_hint(r->err, "prune old releases or backups, or lower [deploy] min_free");
			strbuf_release(&a);
			strbuf_release(&b);
			return ret;
		}
	}
	/* the gate's checks are read now: a bad one must not be found after the switch */
	{
		struct probe_gate g;
		char *url = NULL;
		gate_opts(r, NULL, &g);
		ret = probe_gate_validate(&g, r->err);
		if (ret == 0 && s->bg_health_url && s->nslots) {
			url = fill(s->bg_health_url, s->slots[0].name, s->slots[0].port, r->res.release);
			gate_opts(r, url, &g);
			ret = probe_gate_validate(&g, r->err);
		}
		free(url);
		if (ret < 0)
			return ret;
	}
	if ((s->backup && !r->no_backup) || (s->migrate && !r->no_migrate)) {
		if ((ret = db_connect_once(r)) < 0)
			return ret;
	}
	return 0;
}

static cJSON *deploy_plan(const struct run *r)
{
	const struct dp_settings *s = r->s;
	const struct dp_result *res = &r->res;
	cJSON *plan = cJSON_CreateArray();

	json_add_fmt(plan, "check '%s' (sha256 %s%s)", res->artifact, res->sha256, r->sha256_opt ? ", matches --sha256" : "");
	if (s->backup && !r->no_backup)
		json_add_fmt(plan, "back up the database");
	json_add_fmt(plan, "%s '%s' into '%s/releases/%s'", rel_is_archive(res->artifact) ? "unpack" : "copy",
		 res->artifact, s->root, res->release);
	for (size_t i = 0; i < s->nshared; i++)
		json_add_fmt(plan, "link '%s/shared/%s' into the release", s->root, s->shared[i]);
	if (s->migrate && !r->no_migrate)
		json_add_fmt(plan, "apply the release's pending migrations");
	if (s->before_switch)
		json_add_fmt(plan, "run before_switch: %s", s->before_switch);
	if (is_bluegreen(r)) {
		json_add_fmt(plan, "start the idle slot on '%s' and gate it at %s", res->release, s->bg_health_url);
		json_add_fmt(plan, "write '%s' for the idle slot, test and reload the proxy", s->upstream_file);
	} else {
		json_add_fmt(plan, "switch '%s/current' from '%s' to '%s'", s->root, res->previous ? res->previous : "nothing",
			 res->release);
		if (s->restart)
			json_add_fmt(plan, "restart: %s", s->restart);
	}
	if (s->after_switch)
		json_add_fmt(plan, "run after_switch: %s", s->after_switch);
	json_add_fmt(plan, "gate: the checks pass %ld time%s in a row within %.0fs", s->consecutive,
		 s->consecutive == 1 ? "" : "s", (double)s->wait_ms / 1000.0);
	if (is_bluegreen(r))
		json_add_fmt(plan, "stop the old slot");
	json_add_fmt(plan, "keep the newest %ld releases (and the previous one)", s->keep);
	return plan;
}

static cJSON *journal_new(const struct run *r, const char *kind)
{
	cJSON *j = cJSON_CreateObject();
	char when[32], user[64], host[256];

	clock_rfc3339(when, time(NULL));
	clock_whoami(user, sizeof(user), host, sizeof(host));
	cJSON_AddStringToObject(j, "kind", kind);
	cJSON_AddStringToObject(j, "step", "lock");
	cJSON_AddStringToObject(j, "release", r->res.release);
	json_set_str(j, "previous", r->res.previous);
	cJSON_AddStringToObject(j, "strategy", r->strategy);
	cJSON_AddStringToObject(j, "root", r->s->root);
	if (r->res.artifact)
		cJSON_AddStringToObject(j, "artifact", r->res.artifact);
	cJSON_AddNumberToObject(j, "pid", (double)getpid());
	cJSON_AddStringToObject(j, "user", user);
	cJSON_AddStringToObject(j, "host", host);
	cJSON_AddStringToObject(j, "started_at", when);
	if (r->res.reason)
		cJSON_AddStringToObject(j, "reason", r->res.reason);
	return j;
}

/* The end of a run that started: the journal is for runs that were killed,
 * this one ends knowing its state. */
static void run_end(struct run *r, int code)
{
	struct ops_error e = OPS_ERROR_INIT;
	if (rel_journal_clear(r->s->state_dir, &e) < 0)
		ev(r, OPS_EVENT_WARNING, "%s", e.msg.buf);
	ops_error_release(&e);
	step_end(r, code ? "failed" : "ok");
	rel_read_link(r->s->root, "current", &r->res.current, &e);
	ops_error_release(&e);
}

/* Nothing was switched: the release (and the migrations it applied) go. */
static void discard_release(struct run *r)
{
	struct ops_error e = OPS_ERROR_INIT;
	if (cJSON_GetArraySize(r->res.migrations) > 0) {
		cJSON *versions = cJSON_CreateArray();
		const cJSON *m;
		cJSON_ArrayForEach(m, r->res.migrations)
			cJSON_AddItemToArray(versions, cJSON_CreateString(json_get_str(m, "version")));
		if (undo_versions(r, json_get_str(r->journal, "migrations_dir"), versions, 0, NULL, &e) < 0)
			ev(r, OPS_EVENT_WARNING, "the migrations applied stay applied: %s", e.msg.buf);
		cJSON_Delete(versions);
	}
	if (rel_remove(r->s->root, r->res.release, &e) < 0)
		ev(r, OPS_EVENT_WARNING, "%s", e.msg.buf);
	ops_error_release(&e);
}

static void after_failure(struct run *r)
{
	struct ops_error keep = OPS_ERROR_INIT;
	ops_error_set(&keep, r->err->code, "%s", r->err->msg.buf);
	ops_error_hint(&keep, "%s", r->err->hint.buf);
	if (run_command(r, "after_failure", r->s->after_failure, r->res.release, r->res.previous, r->res.slot, NULL,
			r->s->hook_timeout_ms) < 0)
		ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
	ops_error_set(r->err, keep.code, "%s", keep.msg.buf);
	if (keep.hint.len)
		ops_error_hint(r->err, "%s", keep.hint.buf);
	ops_error_release(&keep);
}

/* Preflight, backup, unpack, migrate: nothing is switched yet. 0 or < 0
 * with err. */
static int steps_before_switch(struct run *r)
{
	const struct dp_settings *s = r->s;
	struct rel_stage_opts so;
	int ret;

	if ((ret = step(r, REL_STEP_PREFLIGHT)) < 0 || (ret = preflight(r)) < 0 || (ret = stop_requested(r)) < 0)
		return ret;
	if (s->backup && !r->no_backup &&
	    ((ret = step(r, REL_STEP_BACKUP)) < 0 || (ret = do_backup(r)) < 0 || (ret = stop_requested(r)) < 0))
		return ret;
	if ((ret = step(r, REL_STEP_UNPACK)) < 0)
		return ret;
	memset(&so, 0, sizeof(so));
	so.max_bytes = s->max_unpack;
	so.shared = (const char *const *)s->shared;
	so.nshared = s->nshared;
	ev(r, OPS_EVENT_INFO, "%s '%s' into '%s/releases/%s'", rel_is_archive(r->res.artifact) ? "unpacking" : "copying",
	   r->artifact_arg, s->root, r->res.release);
	if ((ret = rel_clean(s->root, r->err)) < 0 ||
	    (ret = rel_stage(s->root, r->res.release, r->res.artifact, &so, NULL, r->err)) < 0 ||
	    (ret = stop_requested(r)) < 0)
		return ret;
	if (s->migrate && !r->no_migrate &&
	    ((ret = step(r, REL_STEP_MIGRATE)) < 0 || (ret = do_migrate(r)) < 0 || (ret = stop_requested(r)) < 0))
		return ret;
	return 0;
}

/* The steps after the lock: 0 or the exit code, with err. */
static int deploy_steps(struct run *r)
{
	int code;

	if (steps_before_switch(r) < 0) {
		code = r->err->code ? r->err->code : OPS_EXIT_FAILED;
		discard_release(r);
		if (stop_signal(r) && code == OPS_EXIT_ABORTED)
			ops_error_prefix(r->err, "deploy of '%s'", r->res.release);
		/* say what an operator most wants to know after a full disk or a failed migration */
		if ((code == OPS_EXIT_FAILED || code == OPS_EXIT_UNREACHABLE) && !r->err->hint.len && r->res.previous)
			ops_error_hint(r->err, "nothing was switched: '%s' is still the current release",
				       r->res.previous);
		return code;
	}
	cJSON_AddItemToObject(r->journal, "migrations", cJSON_Duplicate(r->res.migrations, 1));
	if ((code = switch_and_gate(r)) != 0)
		return code;
	if (!journal_at(r, REL_STEP_RECORD) && step(r, REL_STEP_RECORD) < 0)
		return r->err->code;
	record_run(r, 0);
	step(r, REL_STEP_PRUNE);
	prune(r);
	return 0;
}

int dp_deploy(const struct dp_settings *s, const struct dp_deploy_opts *o, const struct dp_callbacks *cb,
	      struct dp_result *res, struct ops_error *err)
{
	struct run r;
	char *note = NULL;
	int code = 0;

	run_init(&r, s, cb, "deploy", err);
	r.res.reason = dup_or_null(o->reason);
	r.sha256_opt = o->sha256;
	r.no_backup = o->no_backup;
	r.no_migrate = o->no_migrate;
	r.artifact_arg = o->artifact;
	r.res.artifact = realpath(o->artifact, NULL);
	if (!r.res.artifact) {
		ops_error_set(err, OPS_EXIT_USAGE, "cannot read artifact '%s': %s", o->artifact, ops_strerror(errno));
		code = early(&r);
		goto out;
	}
	if (o->sha256 && (strlen(o->sha256) != 64 || strspn(o->sha256, "0123456789abcdefABCDEF") != 64)) {
		ops_error_set(err, OPS_EXIT_USAGE, "--sha256 needs 64 hex digits, not '%s'", o->sha256);
		code = early(&r);
		goto out;
	}
	if (o->dry_run) {
		if (rel_read_link(s->root, "current", &r.res.previous, err) < 0 ||
		    hash_sha256_file(r.res.artifact, r.res.sha256, &r.artifact_size, err) < 0 || check_sha256(&r) < 0) {
			code = early(&r);
			goto out;
		}
		r.res.release = rel_new_id(s->root);
		r.res.dry_run = 1;
		r.res.plan = deploy_plan(&r);
		goto out;
	}

	step(&r, REL_STEP_LOCK);
	note = xstrfmt("opsctl deploy %s", o->artifact);
	if (take_lock(&r, note) < 0 || (code = recover(&r)) != 0 ||
	    rel_read_link(s->root, "current", &r.res.previous, err) < 0) {
		code = early(&r);
		goto out;
	}
	r.res.release = rel_new_id(s->root);
	r.journal = journal_new(&r, "deploy");
	if (rel_journal_write(s->state_dir, r.journal, err) < 0) {
		code = err->code ? err->code : OPS_EXIT_FAILED;
		discard_release(&r);
	} else {
		test_kill_at(REL_STEP_LOCK);
		ev(&r, OPS_EVENT_INFO, "deploying '%s' as release '%s' (%s)", o->artifact, r.res.release, r.strategy);
		code = deploy_steps(&r);
	}
	if (code && s->after_failure)
		after_failure(&r);
	if (code)
		record_run(&r, code);
	run_end(&r, code);
out:
	run_finish(&r, res);
	run_release(&r);
	free(note);
	return code;
}

/* ---- history ---- */

/* The deploy and rollback lines of history.jsonl, oldest first. */
static cJSON *read_history(const char *state_dir)
{
	char *path = xstrfmt("%s/history.jsonl", state_dir);
	struct strbuf sb = STRBUF_INIT;
	struct ops_error ignored = OPS_ERROR_INIT;
	cJSON *arr = cJSON_CreateArray();
	char *line, *next;

	if (fs_exists(path) && fs_read_file(path, &sb, 0, &ignored) == 0) {
		for (line = sb.buf; line && *line; line = next) {
			cJSON *e;
			const char *cmd;
			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			e = cJSON_Parse(line);
			cmd = json_get_str(e, "command");
			if (cmd && (!strcmp(cmd, "deploy") || !strcmp(cmd, "rollback")) && json_get_str(e, "release"))
				cJSON_AddItemToArray(arr, e);
			else
				cJSON_Delete(e);
		}
	}
	strbuf_release(&sb);
	ops_error_release(&ignored);
	free(path);
	return arr;
}

int dp_list(const struct dp_settings *s, cJSON **deploys, char **current, struct ops_error *err)
{
	cJSON *hist = NULL, *e;
	int ret;

	*deploys = NULL;
	*current = NULL;
	if ((ret = rel_read_link(s->root, "current", current, err)) < 0)
		return ret;
	hist = read_history(s->state_dir);
	cJSON_ArrayForEach(e, hist) {
		const char *id = json_get_str(e, "release");
		cJSON_AddBoolToObject(e, "on_disk", id && rel_exists(s->root, id));
		cJSON_AddBoolToObject(e, "current", id && *current && !strcmp(id, *current));
	}
	*deploys = hist;
	return 0;
}

/* ---- opsctl rollback [RELEASE] ---- */

/* The release to go back to: the one that served before the current one
 * (the "previous" of the last successful deploy or rollback to it), else the
 * newest release older than the current one. */
static char *rollback_target(const struct dp_settings *s, const char *current, const cJSON *hist)
{
	const cJSON *e;
	char *found = NULL, **ids = NULL;
	size_t n = 0;
	struct ops_error ignored = OPS_ERROR_INIT;

	for (int i = cJSON_GetArraySize(hist) - 1; i >= 0 && !found; i--) {
		e = cJSON_GetArrayItem(hist, i);
		if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "exit")) ||
		    cJSON_GetObjectItemCaseSensitive(e, "exit")->valuedouble != 0)
			continue;
		if (!json_get_str(e, "release") || strcmp(json_get_str(e, "release"), current))
			continue;
		if (json_get_str(e, "previous") && rel_exists(s->root, json_get_str(e, "previous")))
			found = xstrdup(json_get_str(e, "previous"));
		break;
	}
	if (!found && rel_list(s->root, &ids, &n, &ignored) == 0) {
		for (size_t i = n; i-- > 0 && !found;)
			if (rel_id_cmp(ids[i], current) < 0)
				found = xstrdup(ids[i]);
	}
	rel_list_free(ids, n);
	ops_error_release(&ignored);
	return found;
}

/* The versions the deploy of release applied (its last successful deploy). */
static cJSON *applied_by_release(const cJSON *hist, const char *release)
{
	cJSON *versions = cJSON_CreateArray();
	for (int i = cJSON_GetArraySize(hist) - 1; i >= 0; i--) {
		const cJSON *e = cJSON_GetArrayItem(hist, i), *m;
		if (strcmp(json_get_str(e, "command"), "deploy") || !json_get_str(e, "release") ||
		    strcmp(json_get_str(e, "release"), release))
			continue;
		cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(e, "migrations"))
			if (json_get_str(m, "version"))
				cJSON_AddItemToArray(versions, cJSON_CreateString(json_get_str(m, "version")));
		if (cJSON_GetArraySize(versions))
			break;
	}
	return versions;
}

static cJSON *rollback_plan(const struct run *r, const cJSON *versions)
{
	const struct dp_settings *s = r->s;
	cJSON *plan = cJSON_CreateArray();
	const cJSON *v;

	json_add_fmt(plan, "switch '%s/current' from '%s' to '%s'", s->root, r->res.previous, r->res.release);
	if (s->restart && !is_bluegreen(r))
		json_add_fmt(plan, "restart: %s", s->restart);
	json_add_fmt(plan, "gate: the checks pass %ld time%s in a row within %.0fs", s->consecutive,
		 s->consecutive == 1 ? "" : "s", (double)s->wait_ms / 1000.0);
	cJSON_ArrayForEach(v, versions)
		json_add_fmt(plan, "undo migration %s", v->valuestring);
	return plan;
}

/* Asks before undoing migrations: 0 when confirmed, else the exit code. */
static int confirm_undo(struct run *r, int nversions)
{
	char *question = xstrfmt("roll back to '%s' and undo %d migration%s? [y/N] ", r->res.release, nversions,
				 nversions == 1 ? "" : "s");
	int answer = r->cb->confirm ? r->cb->confirm(r->cb->data, question) : -1;
	int ret = 0;

	if (answer < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_ABORTED,
				    "undoing %d migration%s with the rollback needs confirmation; nothing was changed",
				    nversions, nversions == 1 ? "" : "s");
		ops_error_hint(r->err, "pass --yes (before the command) to run it without a terminal");
	} else if (answer == 0) {
		ret = ops_error_set(r->err, OPS_EXIT_ABORTED, "not confirmed; nothing was changed");
	}
	free(question);
	return ret;
}

/* The symlink strategy's rollback: switch, restart, gate; 0 or 8. */
static int rollback_symlink(struct run *r)
{
	struct strbuf why = STRBUF_INIT;
	int ret, code = 0;

	ret = step(r, REL_STEP_SWITCH);
	if (ret == 0)
		ret = rel_switch(r->s->root, "current", r->res.release, r->err);
	if (ret == 0 && (ret = step(r, REL_STEP_RESTART)) == 0)
		ret = restart_service(r, r->res.release, r->res.previous);
	if (ret == 0 && (ret = step(r, REL_STEP_GATE)) == 0) {
		r->in_rollback = 1; /* a rollback is the way back: Ctrl-C does not stop its gate */
		ret = gate(r, NULL, &why);
		if (ret == 1)
			ret = ops_error_set(r->err, OPS_EXIT_ROLLBACK_FAILED,
					    "'%s' did not pass its health gate after the rollback: %s", r->res.release,
					    why.buf);
	}
	if (ret < 0) {
		code = OPS_EXIT_ROLLBACK_FAILED;
		if (r->err->code != OPS_EXIT_ROLLBACK_FAILED)
			ops_error_set(r->err, OPS_EXIT_ROLLBACK_FAILED, "%s", r->err->msg.buf);
		ops_error_hint(r->err, "an operator must check the service and the checks; 'current' points to '%s'",
			       r->res.release);
	}
	strbuf_release(&why);
	return code;
}

/* Undoes the migrations of the release that was left (--with-schema). */
static int undo_schema(struct run *r, const char *schema_dir, const cJSON *versions)
{
	cJSON *undone = cJSON_CreateArray();
	const cJSON *v;
	int code = 0;

	step(r, REL_STEP_MIGRATE);
	if (undo_versions(r, schema_dir, versions, 0, undone, r->err) < 0) {
		code = OPS_EXIT_FAILED;
		ops_error_prefix(r->err, "'%s' serves again, but undoing its successor's migrations failed",
				 r->res.release);
	}
	cJSON_ArrayForEach(v, undone) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "version", v->valuestring);
		cJSON_AddStringToObject(e, "undone", "yes");
		cJSON_AddItemToArray(r->res.migrations, e);
	}
	cJSON_Delete(undone);
	return code;
}

/* Everything before the switch: the target, the checks of --with-schema.
 * 0, or the exit code of an early failure. */
static int rollback_prepare(struct run *r, const struct dp_rollback_opts *o, cJSON **versions, char **schema_dir)
{
	const struct dp_settings *s = r->s;
	cJSON *hist = NULL;
	char *current = NULL;
	int code = 0;

	if (o->release && !rel_valid_id(o->release)) {
		ops_error_set(r->err, OPS_EXIT_USAGE, "'%s' is not a release id", o->release);
		code = early(r);
		goto out;
	}
	if (!o->dry_run && (take_lock(r, "opsctl rollback") < 0 || recover(r) != 0)) {
		code = early(r);
		goto out;
	}
	if (rel_read_link(s->root, "current", &current, r->err) < 0) {
		code = early(r);
		goto out;
	}
	if (!current) {
		ops_error_set(r->err, OPS_EXIT_FAILED, "nothing to roll back: '%s/current' does not exist", s->root);
		code = early(r);
		goto out;
	}
	hist = read_history(s->state_dir);
	r->res.release = o->release ? xstrdup(o->release) : rollback_target(s, current, hist);
	r->res.previous = xstrdup(current);
	if (!r->res.release) {
		ops_error_set(r->err, OPS_EXIT_FAILED, "no release to roll back to: '%s' is the only one", current);
		code = early(r);
		goto out;
	}
	if (!rel_exists(s->root, r->res.release)) {
		ops_error_set(r->err, OPS_EXIT_USAGE, "no release '%s' in '%s/releases'", r->res.release, s->root);
		ops_error_hint(r->err, "'opsctl deploy list' shows the releases");
		code = early(r);
		goto out;
	}
	if (!strcmp(r->res.release, current)) {
		ops_error_set(r->err, OPS_EXIT_USAGE, "'%s' is already the current release", current);
		code = early(r);
		goto out;
	}
	if (o->with_schema) {
		*versions = applied_by_release(hist, current);
		*schema_dir = migrations_dir(r, current);
		if (cJSON_GetArraySize(*versions) && !*schema_dir) {
			ops_error_set(r->err, OPS_EXIT_CONFIG, "the migrations of '%s' cannot be found", current);
			code = early(r);
			goto out;
		}
		/* every down file is checked before anything is switched */
		if (cJSON_GetArraySize(*versions) && undo_versions(r, *schema_dir, *versions, 1, NULL, r->err) < 0) {
			ops_error_prefix(r->err, "refusing to roll back with --with-schema");
			code = early(r);
			goto out;
		}
	}
out:
	cJSON_Delete(hist);
	free(current);
	return code;
}

int dp_rollback(const struct dp_settings *s, const struct dp_rollback_opts *o, const struct dp_callbacks *cb,
		struct dp_result *res, struct ops_error *err)
{
	struct run r;
	cJSON *versions = NULL;
	char *schema_dir = NULL;
	int code;

	run_init(&r, s, cb, "rollback", err);
	r.res.reason = dup_or_null(o->reason);
	if ((code = rollback_prepare(&r, o, &versions, &schema_dir)) != 0)
		goto out;
	if (o->dry_run) {
		r.res.dry_run = 1;
		r.res.plan = rollback_plan(&r, versions);
		r.res.undo = versions ? cJSON_Duplicate(versions, 1) : cJSON_CreateArray();
		goto out;
	}
	if (cJSON_GetArraySize(versions) && !o->yes && confirm_undo(&r, cJSON_GetArraySize(versions)) < 0) {
		code = early(&r);
		goto out;
	}
	r.journal = journal_new(&r, "rollback");
	if (rel_journal_write(s->state_dir, r.journal, err) < 0) {
		code = early(&r);
		goto out;
	}
	ev(&r, OPS_EVENT_INFO, "rolling back from '%s' to '%s'", r.res.previous, r.res.release);
	/* blue-green: the target starts in the idle slot, like a deploy of it */
	code = is_bluegreen(&r) ? switch_and_gate(&r) : rollback_symlink(&r);
	if (code == OPS_EXIT_ROLLED_BACK) {
		/* blue-green: the target never took over; what was live serves on */
		code = OPS_EXIT_ROLLBACK_FAILED;
		err->code = code;
	}
	if (code == 0 && cJSON_GetArraySize(versions))
		code = undo_schema(&r, schema_dir, versions);
	if (code == 0 && !journal_at(&r, REL_STEP_RECORD))
		step(&r, REL_STEP_RECORD);
	record_run(&r, code);
	run_end(&r, code);
out:
	run_finish(&r, res);
	run_release(&r);
	cJSON_Delete(versions);
	free(schema_dir);
	return code;
}

/* ---- recovery and status on their own ---- */

int dp_recover(const struct dp_settings *s, const struct dp_callbacks *cb, cJSON **recovered,
	       struct ops_error *err)
{
	struct run r;
	int code = 0;

	run_init(&r, s, cb, "deploy", err);
	if (recovered)
		*recovered = NULL;
	if (take_lock(&r, "opsctl deploy (recovery)") < 0 || (code = recover(&r)) != 0) {
		code = err->code ? err->code : OPS_EXIT_FAILED;
		goto out;
	}
	if (recovered) {
		*recovered = r.res.recovered;
		r.res.recovered = NULL;
	}
out:
	run_release(&r);
	return code;
}

void dp_status_release(struct dp_status *st)
{
	cJSON_Delete(st->journal);
	cJSON_Delete(st->recovered);
	free(st->current);
	free(st->live_slot);
	free(st->slot_release[0]);
	free(st->slot_release[1]);
	rel_list_free(st->releases, st->nreleases);
	memset(st, 0, sizeof(*st));
}

int dp_status(const struct dp_settings *s, const struct dp_callbacks *cb, struct dp_status *st,
	      struct ops_error *err)
{
	struct run r;
	int code = 0;

	memset(st, 0, sizeof(*st));
	run_init(&r, s, cb, "deploy", err);
	/* a deploy holding the lock is running: show its journal; otherwise a
	 * journal is a killed run's, and this is the run that recovers it */
	if (take_lock(&r, "opsctl deploy status") < 0) {
		if (err->code != OPS_EXIT_LOCKED) {
			code = early(&r);
			goto out;
		}
		st->in_progress = 1;
		ev(&r, OPS_EVENT_INFO, "%s", err->msg.buf);
		ops_error_clear(err);
		if (rel_journal_read(s->state_dir, &st->journal, err) < 0) {
			code = early(&r);
			goto out;
		}
	} else {
		if (recover(&r) != 0) {
			code = early(&r);
			goto out;
		}
		fs_lock_release(&r.lock);
		st->recovered = r.res.recovered;
		r.res.recovered = NULL;
	}
	if (rel_read_link(s->root, "current", &st->current, err) < 0 ||
	    rel_list(s->root, &st->releases, &st->nreleases, err) < 0) {
		code = early(&r);
		goto out;
	}
	if (s->nslots)
		st->live_slot = live_slot(s);
	for (size_t i = 0; i < s->nslots; i++) {
		char *name = xstrfmt("slots/%s", s->slots[i].name);
		struct ops_error ignored = OPS_ERROR_INIT;
		rel_read_link(s->root, name, &st->slot_release[i], &ignored);
		free(name);
		ops_error_release(&ignored);
	}
out:
	run_release(&r);
	return code;
}
