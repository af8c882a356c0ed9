/* What every command shares: the explicit context and the command table. */
#ifndef OPSCTL_CMD_H
#define OPSCTL_CMD_H

#include <signal.h>
#include <stdint.h>
#include "base/config.h"
#include "base/envfile.h"
#include "base/error.h"
#include "base/event.h"
#include "base/exitcode.h"
#include "base/opts.h"
#include "system/term.h"

struct opsctl_ctx {
	/* global options */
	const char *config_opt;
	const char *env_file_opt;
	const char *output;      /* "text" or "json" */
	const char *db_url;      /* --db URL */
	int json;
	int quiet;
	int verbose;
	int no_color;
	int dry_run;
	int yes;
	int64_t lock_wait_ms;    /* -1 when not given; 0 = do not wait */
	/* loaded state */
	int have_config;
	struct config cfg;
	int have_env;
	struct envfile env;
	struct term term;
	struct ops_error err;
};

/* Command flags */
#define CMD_USES_CONFIG 1u   /* load the config file when one is found */
#define CMD_NEEDS_CONFIG 2u  /* fail with exit 3 when there is none */

struct cmd_struct {
	const char *name;
	int (*fn)(int argc, const char **argv, struct opsctl_ctx *ctx);
	unsigned flags;
	const char *summary;
};

int cmd_health(int argc, const char **argv, struct opsctl_ctx *ctx);
int cmd_migrate(int argc, const char **argv, struct opsctl_ctx *ctx);
int cmd_rollback(int argc, const char **argv, struct opsctl_ctx *ctx);
int cmd_deploy(int argc, const char **argv, struct opsctl_ctx *ctx);
/* rollback without --schema: back to the previous (or the given) release
 * through the deploy's switch-restart-gate path (cmd/deploy.c). */
int cmd_rollback_release(struct opsctl_ctx *ctx, const char *release, int with_schema, const char *reason);
int cmd_backup(int argc, const char **argv, struct opsctl_ctx *ctx);
int cmd_restore(int argc, const char **argv, struct opsctl_ctx *ctx);
int cmd_rotate_secret(int argc, const char **argv, struct opsctl_ctx *ctx);
int cmd_help(int argc, const char **argv, struct opsctl_ctx *ctx);

/* Parses a command's options; on -h prints usage to stdout and returns
 * OPTS_HELP; on error reports it (exit 2) and returns < 0 other than OPTS_HELP. */
int cmd_parse_options(struct opsctl_ctx *ctx, const struct opt *opts, const char *const *usage,
		      int argc, const char **argv);
/* Takes the subcommand from operands (argv[0..*n)) when there is one:
 * *sub is set (left as the default otherwise) and the operands shifted.
 * An unknown one is reported (exit 2) and returns -1. */
int cmd_subcommand(struct opsctl_ctx *ctx, const char *command, const char *const *subs,
		   const char ***argv, int *n, const char **sub);
/* An engine's message on stderr as its kind says (info, warning, -v,
 * progress line, error, hint); data is the struct opsctl_ctx. Usable as
 * the event callback of every engine. */
void cmd_event(void *data, enum ops_event kind, const char *msg);
/* Reports ctx->err (or e) and returns its exit code. */
int cmd_fail(struct opsctl_ctx *ctx, const struct ops_error *e);
/* Writes a cJSON document to stdout (takes ownership and frees it). */
struct cJSON;
void cmd_print_json(struct cJSON *doc);
/* "error": {"message": ..., "hint": ...} (hint only when there is one), the
 * same in every command's JSON document. */
void cmd_json_error(struct cJSON *doc, const struct ops_error *e);

/* [app] state_dir, $OPSCTL_STATE_DIR, or /var/lib/opsctl/NAME for root and
 * $XDG_STATE_HOME/opsctl/NAME (~/.local/state/...) for others, NAME being
 * [app] name or "default". malloc'd. */
char *cmd_state_dir(const struct opsctl_ctx *ctx);
/* A path from the config: relative ones are taken from the config file's
 * directory, so cron's working directory does not matter. malloc'd. */
char *cmd_config_path(const struct opsctl_ctx *ctx, const char *value);
/* Appends to history.jsonl (fields taken over); a failure is a warning,
 * never a reason to fail the command that already ran. */
void cmd_history(struct opsctl_ctx *ctx, const char *command, int code, struct cJSON *fields);
/* Connects to the database of DESIGN.md section 3 within [database]
 * connect_timeout (default 10s). */
struct pg_conn;
int cmd_db_connect(struct opsctl_ctx *ctx, const char *application_name, struct pg_conn **conn,
		   char **display);

/* SIGINT and SIGTERM while a command works. The handler records the signal
 * in cmd_interrupted (0 until one comes; a process runs one command) and
 * cancels the statement a db_cancel_arm left armed, if any; the engines ask
 * cmd_stop_requested (their stop callback: data is unused) and clean up.
 * one_shot: the handler is reset by the first signal, so a second one ends
 * opsctl at once (not for a command whose cleanup must run to its end). */
extern volatile sig_atomic_t cmd_interrupted;
struct cmd_signals {
	struct sigaction old_int, old_term;
	int caught;
};
void cmd_catch_signals(struct cmd_signals *s, int one_shot);
/* Puts the handlers of before cmd_catch_signals back (nothing if not caught). */
void cmd_release_signals(struct cmd_signals *s);
int cmd_stop_requested(void *data);

#endif
