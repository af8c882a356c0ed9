/* What every command shares: the explicit context and the command table. */
#ifndef OPSCTL_CMD_H
#define OPSCTL_CMD_H

#include <stdint.h>
#include "base/config.h"
#include "base/envfile.h"
#include "base/error.h"
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
	int64_t lock_wait_ms;
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
int cmd_help(int argc, const char **argv, struct opsctl_ctx *ctx);

/* Parses a command's options; on -h prints usage to stdout and returns
 * OPTS_HELP; on error reports it (exit 2) and returns < 0 other than OPTS_HELP. */
int cmd_parse_options(struct opsctl_ctx *ctx, const struct opt *opts, const char *const *usage,
		      int argc, const char **argv);
/* Reports ctx->err (or e) and returns its exit code. */
int cmd_fail(struct opsctl_ctx *ctx, const struct ops_error *e);
/* Writes a cJSON document to stdout (takes ownership and frees it). */
struct cJSON;
void cmd_print_json(struct cJSON *doc);

#endif
