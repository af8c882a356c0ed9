/* Secret rotation (DESIGN.md section 6 "rotate-secret"): a new value made
 * here, set where the secret lives (PostgreSQL for a password), proved, then
 * written into the app's env file, the service restarted and health-gated.
 * Each step is recorded in STATE/secrets/NAME.pending.json (0600, holding
 * the new and old values) before it starts; a failure puts the old value
 * back everywhere it was already changed; a run killed part way is finished
 * (the env file already has the new value) or undone (it has not) by the
 * next one. A value never reaches a command line, the history or the
 * server's log (only the SCRAM verifier computed here is sent). Nothing here
 * prints; messages go through the event callback. */
#ifndef OPSCTL_SECRET_H
#define OPSCTL_SECRET_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "base/error.h"
#include "base/event.h"

struct config;
struct envfile;

enum sec_kind { SEC_RANDOM, SEC_POSTGRES_PASSWORD };
enum sec_encoding { SEC_BASE64, SEC_BASE64URL, SEC_HEX };
enum sec_strategy { SEC_SINGLE, SEC_ALTERNATING };

#define SEC_DEFAULT_BYTES 32
#define SEC_DEFAULT_PG_BYTES 24
#define SEC_MIN_BYTES 8
#define SEC_MAX_BYTES 1024

/* One [secret "NAME"] section and what the run needs beside it. Strings are
 * owned (sec_settings_release frees them); cfg is borrowed. */
struct sec_settings {
	char *name;
	char *env_key;              /* env = KEY */
	enum sec_kind kind;
	size_t bytes;
	enum sec_encoding encoding;
	char *previous_env;         /* random: keeps the outgoing value; may be NULL */
	/* postgres-password */
	enum sec_strategy strategy;
	char *role;                 /* single */
	char *role_a, *role_b;      /* alternating */
	char *owner;                /* alternating: the role both are members of (--setup) */
	char *user_env;             /* alternating: the env key of the user (DB_USER) */
	char *admin_url;            /* may be NULL: the database connection of DESIGN 3 */
	const char *db_url;         /* --db, borrowed, may be NULL */
	int64_t connect_timeout_ms;
	/* where and what to restart / gate */
	char *env_file;             /* the app's env file (as configured) */
	char *state_dir;
	char *config_path;          /* re-read with the new env file for the gate; may be NULL */
	const struct config *cfg;   /* may be NULL */
	char *restart;              /* [service] restart, NULL when none or restart = no */
	int restart_off;            /* restart = no: the app re-reads the file itself */
	int64_t service_timeout_ms;
	char **checks;              /* [secret] checks, else [deploy] checks, else all [check]s */
	size_t nchecks;
	int64_t wait_ms, interval_ms, probe_timeout_ms;
	long consecutive;
	int64_t lock_wait_ms;
};

void sec_settings_init(struct sec_settings *s);
void sec_settings_release(struct sec_settings *s);
/* Fills s from [secret "name"] of cfg (and [service], [health], [deploy]
 * checks, [app] state_dir is the caller's). OPS_EXIT_CONFIG with the file
 * and line for an unknown secret, a missing env key, a bad kind, encoding,
 * bytes or strategy, previous_env with a password, roles missing. */
int sec_settings_load(struct sec_settings *s, const struct config *cfg, const char *name,
		      struct ops_error *err);

/* The names of the [secret] sections (a new array of borrowed strings). */
size_t sec_names(const struct config *cfg, const char ***names);

/* n random bytes from getrandom(2), encoded; *out is malloc'd (wipe it with
 * sec_wipe_free). Fails only when the kernel has no entropy to give. */
int sec_generate(size_t n, enum sec_encoding enc, char **out, struct ops_error *err);
void sec_wipe_free(char *s);
const char *sec_kind_name(enum sec_kind k);         /* random postgres-password */
const char *sec_encoding_name(enum sec_encoding e); /* base64 base64url hex */

struct sec_callbacks {
	void (*event)(void *data, enum ops_event kind, const char *msg);
	/* the number of the signal that asks the run to stop, or 0 */
	int (*stop_requested)(void *data);
	void *data;
};

struct sec_result {
	char *name, *kind, *strategy, *env_key, *env_file;
	char *role, *previous_role;       /* postgres-password */
	char fingerprint[20];             /* the value in force at the end */
	char previous_fingerprint[20];    /* "" when there was none */
	char *rotated_at;                 /* RFC 3339, when rotated */
	char *outcome;                    /* rotated, reverted, failed, recovered, planned */
	int restarted;
	char *gate;                       /* passed, failed, none */
	cJSON *steps;                     /* [{"step","ms","status"}] */
	cJSON *recovered;                 /* {"secret","action","step"} or NULL */
	cJSON *plan;                      /* dry run */
	cJSON *setup;                     /* --setup: the statements run (no values) */
	char *shown;                      /* the new value, only when asked (--show) */
	int64_t started_ms;
};
void sec_result_init(struct sec_result *r);
void sec_result_release(struct sec_result *r);
/* The history's and the JSON report's fields (never a value). */
cJSON *sec_result_fields(const struct sec_result *r, int code, const char *error_msg);

struct sec_rotate_opts {
	int dry_run;
	int no_restart;
	int show;                 /* keep the new value in res->shown */
	int setup;                /* alternating: create the roles first */
	const char *reason;
};

/* opsctl rotate-secret NAME: lock, recover a killed run, then pending, set,
 * test, write, restart, gate, finish. Returns the exit code: 0; 1 failed and
 * reverted (err says why; "the old value is back in place") or the revert
 * failed too (err says what is left); 3 config; 4 database unreachable;
 * 10 interrupted and reverted; 75 locked. Recorded in the history. */
int sec_rotate(const struct sec_settings *s, const struct sec_rotate_opts *o, const struct sec_callbacks *cb,
	       struct sec_result *res, struct ops_error *err);

/* opsctl rotate-secret --list: one object per [secret] (and per state file
 * without one): name, kind, env, fingerprint (of the env file's value),
 * rotated_at (or null), age_s (or null), pending (a killed run to recover).
 * env may be NULL (fingerprint null). */
int sec_list(const struct config *cfg, const struct envfile *env, const char *state_dir, cJSON **out,
	     struct ops_error *err);

#endif
