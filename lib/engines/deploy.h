/* Deploys and rollbacks of releases (DESIGN.md section 6): the steps lock,
 * preflight, backup, unpack, migrate, switch, restart, health gate, record
 * and prune, each journaled before it starts; a failed gate (or a signal)
 * goes back to the previous release; a run killed part way is finished or
 * undone from the journal by the next one. Built on engines/release (the
 * layout, links and journal), backup, migrate and probe. Nothing here
 * prints: messages go through the caller's event callback, results into a
 * struct dp_result, failures into the ops_error. */
#ifndef OPSCTL_DEPLOY_H
#define OPSCTL_DEPLOY_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "base/error.h"
#include "base/event.h"

struct config;
struct envfile;

#define DP_DEFAULT_KEEP 5
#define DP_DEFAULT_WAIT_MS 90000
#define DP_DEFAULT_SERVICE_TIMEOUT_MS 120000
#define DP_DEFAULT_DRAIN_MS 3000
#define DP_DEFAULT_HOOK_TIMEOUT_MS 300000
#define DP_DEFAULT_MIN_FREE (100ull << 20)

struct dp_slot {
	char *name;
	char *port;
};

/* What a deploy needs to know, from the config and the command line. Every
 * char * is owned (malloc'd; dp_settings_release frees them); cfg, env and
 * db_url are borrowed and must outlive the calls. */
struct dp_settings {
	char *root;                  /* releases/, current, shared/, slots/ live here */
	char *state_dir;             /* deploy/journal.json, locks/, history.jsonl */
	char *strategy;              /* "symlink" or "blue-green" */
	long keep;                   /* [deploy] keep_releases */
	char **shared;               /* names under ROOT/shared linked into every release */
	size_t nshared;
	int backup, migrate;         /* [deploy] backup, migrate */
	uint64_t max_unpack, min_free;
	int64_t lock_wait_ms;        /* how long to queue for a lock; 0 = do not wait */
	/* migrations */
	char *migrations_in_release; /* the directory inside a release ("migrations") */
	char *migrations_fallback;   /* [migrations] dir when a release has none; may be NULL */
	char *migrations_table;
	int64_t migrations_lock_ms;
	/* hooks and the service (run through /bin/sh -c); NULL when not set */
	char *before_switch, *after_switch, *after_failure;
	int64_t hook_timeout_ms;
	char *restart;
	int64_t service_timeout_ms;
	/* the health gate: the [check]s named in checks (all of cfg's [check]
	 * sections when there are none) */
	int64_t wait_ms, interval_ms, probe_timeout_ms;
	long consecutive;
	char **checks;
	size_t nchecks;
	/* blue-green ({slot} {port} {release} are filled in) */
	struct dp_slot slots[2];
	size_t nslots;
	char *bg_start, *bg_stop, *bg_health_url, *upstream_template, *proxy_test, *proxy_reload;
	char *upstream_file;
	int64_t drain_ms;            /* before a slot taken out of the proxy stops */
	/* the backup before a deploy */
	char *backup_dir, *backup_format, *backup_compression, *pg_dump, *app_name;
	int backup_level;
	int backup_jobs;             /* [backup] jobs: pg_dump -j for a directory dump */
	int64_t backup_stall_ms;     /* [backup] stall_timeout; 0 = the default */
	/* the database (db_resolve's sources) and the checks' config */
	const char *db_url;
	const struct config *cfg;    /* may be NULL */
	const struct envfile *env;   /* may be NULL */
	int64_t connect_timeout_ms;
};

/* The defaults (keep 5, wait 90 s, backup and migrate on...), no strings. */
void dp_settings_init(struct dp_settings *s);
void dp_settings_release(struct dp_settings *s);
/* The slot called name, or NULL. */
const struct dp_slot *dp_find_slot(const struct dp_settings *s, const char *name);

struct dp_callbacks {
	/* Every message of the run; may be NULL. */
	void (*event)(void *data, enum ops_event kind, const char *msg);
	/* Polled between steps and gate rounds: the number of the signal that
	 * asks the run to stop, or 0. May be NULL. */
	int (*stop_requested)(void *data);
	/* rollback --with-schema: asks question; 1 yes, 0 no, -1 cannot ask
	 * (no terminal). May be NULL (cannot ask). */
	int (*confirm)(void *data, const char *question);
	void *data;
};

/* What a run did: the report's and the history's fields. */
struct dp_result {
	int early;              /* failed before anything started: nothing recorded */
	int dry_run;            /* plan holds what would be done */
	char *command;          /* "deploy" or "rollback" */
	char *strategy;
	char *reason;
	char *release;          /* deployed / rolled back to */
	char *previous;         /* what was current before */
	char *current;          /* what ROOT/current points to at the end */
	char *artifact;         /* absolute path */
	char sha256[65];        /* of the artifact, "" when not read */
	char *backup_id;
	char *slot;             /* blue-green: the slot the release went into */
	char *rolled_back_to;
	cJSON *migrations;      /* [{"version","script"}] applied, or [{"version","undone"}] */
	cJSON *steps;           /* [{"step","ms","status"}] */
	cJSON *pruned;          /* [release ids] */
	cJSON *recovered;       /* what the recovery of a killed run did, or NULL */
	cJSON *plan;            /* dry run: ["back up the database", ...] */
	cJSON *undo;            /* rollback dry run: the versions --with-schema undoes */
	int64_t started_ms;     /* clock_now_ms() at the start */
};

void dp_result_init(struct dp_result *r);
void dp_result_release(struct dp_result *r);
/* The history line's fields (and the JSON report's): release, previous,
 * strategy, artifact, sha256, backup, migrations, slot, rolled_back_to,
 * reason, duration_ms, and "error" (error_msg) when code is not 0.
 * Returns a new object (the caller owns it). */
cJSON *dp_result_fields(const struct dp_result *r, int code, const char *error_msg);

struct dp_deploy_opts {
	const char *artifact;   /* as given on the command line */
	const char *sha256;     /* refuse unless the artifact has it; may be NULL */
	const char *reason;     /* for the history; may be NULL */
	int no_backup, no_migrate, dry_run;
};

/* opsctl deploy ARTIFACT: every step, the gate, the way back. Returns the
 * exit code: 0, 7 rolled back (the previous release serves), 8 the rollback
 * failed too, 10 interrupted before the switch and undone, 75 locked, 5 a
 * checksum mismatch or unsafe archive, 4 the database unreachable, 1...; on
 * a failure err says why. The run is recorded in STATE/history.jsonl unless
 * res->early. res must be dp_result_init'ed. */
int dp_deploy(const struct dp_settings *s, const struct dp_deploy_opts *o, const struct dp_callbacks *cb,
	      struct dp_result *res, struct ops_error *err);

struct dp_rollback_opts {
	const char *release;    /* NULL: the one that served before the current */
	int with_schema;        /* also undo the migrations of the release being left */
	int dry_run;            /* res->plan and res->undo, nothing changed */
	int yes;                /* undoing migrations needs no confirmation */
	const char *reason;
};

/* opsctl rollback [RELEASE]: the deploy's switch-restart-gate path back to
 * an earlier release. 0, 8 when its gate fails, 10 not confirmed... */
int dp_rollback(const struct dp_settings *s, const struct dp_rollback_opts *o, const struct dp_callbacks *cb,
		struct dp_result *res, struct ops_error *err);

/* Finishes or undoes what the journal says a killed run was doing, under
 * the deploy lock (OPS_EXIT_LOCKED while a run holds it); the recovery is
 * recorded in the history. dp_deploy, dp_rollback and dp_status do this
 * first on their own. 0 when done or there was nothing; *recovered (may be
 * NULL) gets {"action","step","exit"} (the caller owns it) or NULL. Else
 * the exit code with err. */
int dp_recover(const struct dp_settings *s, const struct dp_callbacks *cb, cJSON **recovered,
	       struct ops_error *err);

/* opsctl deploy status. */
struct dp_status {
	int in_progress;        /* another run holds the lock */
	cJSON *journal;         /* its journal, or NULL */
	cJSON *recovered;       /* this call recovered a killed run */
	char *current;
	char *live_slot;        /* blue-green, or NULL */
	char *slot_release[2];  /* what slots/NAME point to */
	char **releases;        /* oldest first */
	size_t nreleases;
};
void dp_status_release(struct dp_status *st);
int dp_status(const struct dp_settings *s, const struct dp_callbacks *cb, struct dp_status *st,
	      struct ops_error *err);

/* opsctl deploy list: the deploy and rollback lines of the history, oldest
 * first, each with "on_disk" and "current" added; *current as rel_read_link.
 * *deploys is a new array (the caller owns it). */
int dp_list(const struct dp_settings *s, cJSON **deploys, char **current, struct ops_error *err);

#endif
