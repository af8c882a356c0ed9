/* opsctl's entry point: global options, config loading and the command table. */
#include "opsctl.h"
#include "adapters/db.h"
#include "adapters/http.h"
#include "base/parse.h"
#include "engines/history.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static const struct cmd_struct commands[] = {
	{ "health", cmd_health, CMD_USES_CONFIG, "probe HTTP endpoints, PostgreSQL, TCP, disk, memory" },
	{ "migrate", cmd_migrate, CMD_USES_CONFIG, "apply, undo, check and create versioned SQL migrations" },
	{ "rollback", cmd_rollback, CMD_USES_CONFIG, "return to the previous release, or undo migrations (--schema)" },
	{ "deploy", cmd_deploy, CMD_USES_CONFIG, "backup, unpack, migrate, switch, restart, health-gate, roll back on failure" },
	{ "backup", cmd_backup, CMD_USES_CONFIG, "create, list, verify and prune verified backup sets" },
	{ "restore", cmd_restore, CMD_USES_CONFIG, "restore a backup into a new database, then swap it in" },
	{ "rotate-secret", cmd_rotate_secret, CMD_USES_CONFIG, "rotate a secret where it lives and in the env file, then restart and gate" },
	{ "help", cmd_help, 0, "show help for opsctl or a command" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *const main_usage[] = {
	"opsctl [global options] <command> [<args>]",
	NULL,
};

static void print_version(void)
{
	int pq = PQlibVersion();
	curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

	printf("opsctl %s\n", OPSCTL_VERSION);
	printf("libpq %d.%d\n", pq / 10000, pq % 10000);
	printf("libcurl %s\n", cv->version);
	printf("cJSON %s\n", cJSON_Version());
	printf("zlib %s\n", zlibVersion());
	printf("libzstd %s\n", ZSTD_versionString());
	printf("libarchive (loaded when an archive is read or written)\n");
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
}

static void print_commands(FILE *f)
{
	fprintf(f, "\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "    %-13s  %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'opsctl help <command>' or 'opsctl <command> -h' shows a command's options;\n"
		   "'man opsctl' has the whole story.\n");
}

static const struct cmd_struct *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[32], cur[32];
	if (la >= 31 || lb >= 31)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, sizeof(prev));
	}
	return prev[lb];
}

static int unknown_command(struct opsctl_ctx *ctx, const char *name)
{
	const char *best = NULL;
	size_t best_d = 99;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		size_t d = edit_distance(name, commands[i].name);
		if (starts_with(commands[i].name, name) && strlen(name) >= 2)
			d = 1;
		if (d < best_d) {
			best_d = d;
			best = commands[i].name;
		}
	}
	term_error(&ctx->term, "unknown command '%s'", name);
	if (best && best_d <= 2)
		term_hint(&ctx->term, "did you mean '%s'?", best);
	else
		term_hint(&ctx->term, "'opsctl help' lists the commands");
	return OPS_EXIT_USAGE;
}

int cmd_help(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	const struct cmd_struct *c;
	const char *hargv[] = { NULL, "-h", NULL };

	if (argc < 2 || argv[1][0] == '-') {
		opts_usage(stdout, main_usage, NULL);
		print_commands(stdout);
		return OPS_EXIT_OK;
	}
	c = find_command(argv[1]);
	if (!c)
		return unknown_command(ctx, argv[1]);
	hargv[0] = c->name;
	return c->fn(2, hargv, ctx);
}

int cmd_parse_options(struct opsctl_ctx *ctx, const struct opt *opts, const char *const *usage,
		      int argc, const char **argv)
{
	int n = opts_parse(opts, argc, argv, 0, &ctx->err);
	if (n == OPTS_HELP) {
		opts_usage(stdout, usage, opts);
		return OPTS_HELP;
	}
	if (n < 0) {
		term_report(&ctx->term, &ctx->err);
		opts_usage(stderr, usage, NULL);
		term_hint(&ctx->term, "'opsctl %s -h' lists the options", argv[0] ? argv[0] : "");
	}
	return n;
}

int cmd_subcommand(struct opsctl_ctx *ctx, const char *command, const char *const *subs,
		   const char ***argv, int *n, const char **sub)
{
	struct strbuf all = STRBUF_INIT;
	if (*n == 0)
		return 0;
	for (size_t i = 0; subs[i]; i++)
		if (!strcmp(subs[i], (*argv)[0])) {
			*sub = subs[i];
			(*argv)++;
			(*n)--;
			return 0;
		}
	for (size_t i = 0; subs[i]; i++)
		strbuf_addf(&all, "%s%s", i ? " " : "", subs[i]);
	term_error(&ctx->term, "unknown subcommand '%s %s'", command, (*argv)[0]);
	term_hint(&ctx->term, "one of: %s", all.buf);
	strbuf_release(&all);
	return -1;
}

int cmd_fail(struct opsctl_ctx *ctx, const struct ops_error *e)
{
	if (!e)
		e = &ctx->err;
	term_report(&ctx->term, e);
	return e->code ? e->code : OPS_EXIT_FAILED;
}

void cmd_print_json(cJSON *doc)
{
	char *s = cJSON_Print(doc);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
	}
	free(s);
	cJSON_Delete(doc);
}

void cmd_event(void *data, enum ops_event kind, const char *msg)
{
	struct opsctl_ctx *ctx = data;
	switch (kind) {
	case OPS_EVENT_INFO:
		term_info(&ctx->term, "%s", msg);
		break;
	case OPS_EVENT_WARNING:
		term_warning(&ctx->term, "%s", msg);
		break;
	case OPS_EVENT_VERBOSE:
		term_verbose(&ctx->term, "%s", msg);
		break;
	case OPS_EVENT_PROGRESS:
		term_progress(&ctx->term, "%s", msg);
		break;
	case OPS_EVENT_PROGRESS_DONE:
		term_progress_done(&ctx->term);
		break;
	case OPS_EVENT_ERROR:
		term_error(&ctx->term, "%s", msg);
		break;
	case OPS_EVENT_HINT:
		term_hint(&ctx->term, "%s", msg);
		break;
	}
}

void cmd_json_error(cJSON *doc, const struct ops_error *e)
{
	cJSON *o = cJSON_AddObjectToObject(doc, "error");
	cJSON_AddStringToObject(o, "message", e->msg.buf);
	if (e->hint.len)
		cJSON_AddStringToObject(o, "hint", e->hint.buf);
}

char *cmd_config_path(const struct opsctl_ctx *ctx, const char *value)
{
	const char *slash = ctx->have_config && ctx->cfg.path ? strrchr(ctx->cfg.path, '/') : NULL;
	if (value[0] == '/' || !slash)
		return xstrdup(value);
	return xstrfmt("%.*s/%s", (int)(slash - ctx->cfg.path), ctx->cfg.path, value);
}

char *cmd_state_dir(const struct opsctl_ctx *ctx)
{
	const char *dir = ctx->have_config ? config_get(&ctx->cfg, "app", NULL, "state_dir") : NULL;
	const char *name = ctx->have_config ? config_get(&ctx->cfg, "app", NULL, "name") : NULL;
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (dir && *dir)
		return cmd_config_path(ctx, dir);
	dir = getenv("OPSCTL_STATE_DIR");
	if (dir && *dir)
		return xstrdup(dir);
	if (!name || !*name)
		name = "default";
	if (geteuid() == 0)
		return xstrfmt("/var/lib/opsctl/%s", name);
	if (xdg && *xdg)
		return xstrfmt("%s/opsctl/%s", xdg, name);
	if (!home || !*home) {
		struct passwd *pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : "/tmp";
	}
	return xstrfmt("%s/.local/state/opsctl/%s", home, name);
}

void cmd_history(struct opsctl_ctx *ctx, const char *command, int code, cJSON *fields)
{
	char *dir = cmd_state_dir(ctx);
	struct ops_error err = OPS_ERROR_INIT;
	if (history_append(dir, command, code, fields, &err) < 0)
		term_warning(&ctx->term, "cannot record the run in the history: %s", err.msg.buf);
	ops_error_release(&err);
	free(dir);
}

volatile sig_atomic_t cmd_interrupted;

static void on_signal(int sig)
{
	cmd_interrupted = sig;
	db_cancel_fire();
}

void cmd_catch_signals(struct cmd_signals *s, int one_shot)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = one_shot ? SA_RESETHAND : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &s->old_int);
	sigaction(SIGTERM, &sa, &s->old_term);
	s->caught = 1;
}

void cmd_release_signals(struct cmd_signals *s)
{
	if (!s->caught)
		return;
	sigaction(SIGINT, &s->old_int, NULL);
	sigaction(SIGTERM, &s->old_term, NULL);
	s->caught = 0;
}

int cmd_stop_requested(void *data)
{
	(void)data;
	return (int)cmd_interrupted;
}

int cmd_db_connect(struct opsctl_ctx *ctx, const char *application_name, PGconn **conn, char **display)
{
	struct db_target t;
	int64_t timeout = 10000;
	int ret;

	*conn = NULL;
	if (ctx->have_config &&
	    config_get_duration_ms(&ctx->cfg, "database", NULL, "connect_timeout", &timeout, &ctx->err) < 0)
		return -ctx->err.code;
	ret = db_resolve(&t, ctx->db_url, ctx->have_config ? &ctx->cfg : NULL, ctx->have_env ? &ctx->env : NULL,
			 &ctx->err);
	if (ret < 0)
		return ret;
	term_verbose(&ctx->term, "connecting to '%s' (from %s)", t.display, t.source);
	ret = db_connect(conn, &t, application_name, timeout, &ctx->err);
	if (display)
		*display = xstrdup(t.display);
	db_target_release(&t);
	return ret;
}

/* The config, then the env file it names (or --env-file), then the config
 * again so ${VAR} can come from the env file. */
static int load_config(struct opsctl_ctx *ctx, unsigned flags)
{
	char *path = NULL, *env_owned = NULL;
	const char *env_path = ctx->env_file_opt;
	int ret;

	ret = config_find(ctx->config_opt, &path, &ctx->err);
	if (ret < 0)
		goto out;
	if (!path) {
		if (flags & CMD_NEEDS_CONFIG) {
			ret = ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "no config file found");
			ops_error_hint(&ctx->err, "pass -c FILE, set OPSCTL_CONFIG, or create ./opsctl.conf");
			goto out;
		}
	} else {
		ret = config_load_flags(&ctx->cfg, path, NULL, CONFIG_KEEP_UNDEFINED, &ctx->err);
		if (ret < 0)
			goto out;
		if (!env_path) {
			env_path = config_get(&ctx->cfg, "app", NULL, "env_file");
			if (env_path && env_path[0] != '/' && strchr(path, '/')) {
				/* relative to the config file, so cron's cwd does not matter */
				const char *slash = strrchr(path, '/');
				env_owned = xstrfmt("%.*s/%s", (int)(slash - path), path, env_path);
				env_path = env_owned;
			}
		}
	}
	if (env_path) {
		ret = envfile_load(&ctx->env, env_path, &ctx->err);
		if (ret < 0)
			goto out;
		ctx->have_env = 1;
	}
	if (path) {
		config_release(&ctx->cfg);
		config_init(&ctx->cfg);
		ret = config_load(&ctx->cfg, path, ctx->have_env ? &ctx->env : NULL, &ctx->err);
		if (ret < 0)
			goto out;
		ctx->have_config = 1;
	}
	ret = 0;
out:
	free(path);
	free(env_owned);
	return ret;
}

int main(int argc, const char **argv)
{
	struct opsctl_ctx ctx;
	int show_version = 0, n, code;
	const struct cmd_struct *cmd;
	const struct opt global_opts[] = {
		{ OPT_STRING, 'c', "config", &ctx.config_opt, "FILE", "config file (default: $OPSCTL_CONFIG, ./opsctl.conf, /etc/opsctl/opsctl.conf)", 0, NULL },
		{ OPT_STRING, 0, "env-file", &ctx.env_file_opt, "FILE", "the app's env file (default: [app] env_file)", 0, NULL },
		{ OPT_CHOICE, 'o', "output", &ctx.output, "FORMAT", "text or json", 0, "text|json" },
		{ OPT_BOOL, 0, "json", &ctx.json, NULL, "same as --output json", 0, NULL },
		{ OPT_BOOL, 'q', "quiet", &ctx.quiet, NULL, "print only errors and results", 0, NULL },
		{ OPT_COUNT, 'v', "verbose", &ctx.verbose, NULL, "say more (repeat for more)", 0, NULL },
		{ OPT_BOOL, 0, "no-color", &ctx.no_color, NULL, "no colour even on a terminal (also NO_COLOR)", 0, NULL },
		{ OPT_BOOL, 'n', "dry-run", &ctx.dry_run, NULL, "print the plan, change nothing", 0, NULL },
		{ OPT_BOOL, 'y', "yes", &ctx.yes, NULL, "do not ask for confirmation", 0, NULL },
		{ OPT_DURATION, 0, "lock-wait", &ctx.lock_wait_ms, "DURATION", "wait this long for another run's lock", 0, NULL },
		{ OPT_STRING, 0, "db", &ctx.db_url, "URL", "database URL (beats the config and DATABASE_URL)", 0, NULL },
		{ OPT_BOOL, 0, "version", &show_version, NULL, "print versions and exit", 0, NULL },
		OPT_END_MARK,
	};

	memset(&ctx, 0, sizeof(ctx));
	ctx.output = "text";
	ctx.lock_wait_ms = -1; /* not given: each lock's own default */
	config_init(&ctx.cfg);
	envfile_init(&ctx.env);
	ops_error_init(&ctx.err);
	term_setup(&ctx.term, 0, 0, 0, 0);

	n = opts_parse(global_opts, argc, argv, OPTS_STOP_AT_NON_OPTION, &ctx.err);
	if (n == OPTS_HELP) {
		opts_usage(stdout, main_usage, global_opts);
		print_commands(stdout);
		code = OPS_EXIT_OK;
		goto out;
	}
	if (n < 0) {
		term_report(&ctx.term, &ctx.err);
		term_hint(&ctx.term, "'opsctl -h' lists the global options");
		code = OPS_EXIT_USAGE;
		goto out;
	}
	if (ctx.json)
		ctx.output = "json";
	ctx.json = !strcmp(ctx.output, "json");
	term_setup(&ctx.term, ctx.quiet, ctx.verbose, ctx.no_color, ctx.json);
	if (show_version) {
		print_version();
		code = OPS_EXIT_OK;
		goto out;
	}
	if (n == 0) {
		opts_usage(stderr, main_usage, NULL);
		print_commands(stderr);
		code = OPS_EXIT_USAGE;
		goto out;
	}
	cmd = find_command(argv[0]);
	if (!cmd) {
		code = unknown_command(&ctx, argv[0]);
		goto out;
	}
	if (cmd->flags & (CMD_USES_CONFIG | CMD_NEEDS_CONFIG)) {
		if (load_config(&ctx, cmd->flags) < 0) {
			code = cmd_fail(&ctx, NULL);
			goto out;
		}
	}
	code = cmd->fn(n, argv, &ctx);
out:
	/* A result that could not be written must not look like success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		term_error(&ctx.term, "cannot write to standard output: %s", ops_strerror(errno));
		if (code == OPS_EXIT_OK)
			code = OPS_EXIT_FAILED;
	}
	config_release(&ctx.cfg);
	envfile_release(&ctx.env);
	ops_error_release(&ctx.err);
	return code;
}
