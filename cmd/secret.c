/* opsctl rotate-secret NAME | --list | --recover: the options and the
 * config turned into the secret engine's settings (lib/engines/secret), its
 * messages and results rendered. A value is printed only with --show, and
 * only to a terminal. */
#include "opsctl.h"
#include "adapters/json.h"
#include "engines/secret.h"
#include "system/clock.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const secret_usage[] = {
	"opsctl rotate-secret [options] NAME",
	"opsctl rotate-secret --list",
	"opsctl rotate-secret --recover",
	NULL,
};

/* What every run needs beside the [secret] section: where state and the env
 * file are, the config to read again for the gate, the flags. */
static void common_settings(struct opsctl_ctx *ctx, struct sec_settings *s)
{
	s->state_dir = cmd_state_dir(ctx);
	s->env_file = ctx->have_env && ctx->env.path ? xstrdup(ctx->env.path) : NULL;
	s->config_path = ctx->have_config && ctx->cfg.path ? xstrdup(ctx->cfg.path) : NULL;
	s->cfg = ctx->have_config ? &ctx->cfg : NULL;
	s->db_url = ctx->db_url;
	s->lock_wait_ms = ctx->lock_wait_ms > 0 ? ctx->lock_wait_ms : 0;
}

static void format_age(char *out, size_t len, double age_s)
{
	if (age_s < 120)
		snprintf(out, len, "%.0fs", age_s);
	else if (age_s < 7200)
		snprintf(out, len, "%.0fm", age_s / 60);
	else if (age_s < 3 * 86400)
		snprintf(out, len, "%.0fh", age_s / 3600);
	else
		snprintf(out, len, "%.0fd", age_s / 86400);
}

static const char *jstr(const cJSON *o, const char *key, const char *def)
{
	const char *v = json_get_str(o, key);
	return v ? v : def;
}

static int do_list(struct opsctl_ctx *ctx)
{
	char *state_dir = cmd_state_dir(ctx);
	cJSON *list = NULL;
	const cJSON *e;
	int ret;

	ret = sec_list(ctx->have_config ? &ctx->cfg : NULL, ctx->have_env ? &ctx->env : NULL, state_dir, &list,
		       &ctx->err);
	free(state_dir);
	if (ret < 0)
		return cmd_fail(ctx, NULL);
	if (ctx->json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddItemToObject(doc, "secrets", list);
		cmd_print_json(doc);
		return 0;
	}
	if (!cJSON_GetArraySize(list)) {
		term_info(&ctx->term, "no [secret] sections in the config");
		cJSON_Delete(list);
		return 0;
	}
	printf("%-16s %-18s %-20s %-20s %-21s %s\n", "NAME", "KIND", "ENV", "FINGERPRINT", "ROTATED", "AGE");
	cJSON_ArrayForEach(e, list)
	{
		const cJSON *age = cJSON_GetObjectItemCaseSensitive(e, "age_s");
		char age_text[32] = "-";
		if (cJSON_IsNumber(age))
			format_age(age_text, sizeof(age_text), age->valuedouble);
		printf("%-16s %-18s %-20s %-20s %-21s %s%s\n", jstr(e, "name", "?"), jstr(e, "kind", "-"),
		       jstr(e, "env", "-"), jstr(e, "fingerprint", "(not set)"), jstr(e, "rotated_at", "never"), age_text,
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "pending")) ? "  (pending: run --recover)" : "");
	}
	cJSON_Delete(list);
	return 0;
}

static void print_result(struct opsctl_ctx *ctx, const struct sec_result *res, int code, int dry_run)
{
	const cJSON *e;

	if (ctx->json) {
		cJSON *doc = sec_result_fields(res, 0, NULL);
		cJSON_AddStringToObject(doc, "command", "rotate-secret");
		cJSON_AddBoolToObject(doc, "dry_run", dry_run);
		cJSON_AddItemToObject(doc, "steps", cJSON_Duplicate(res->steps, 1));
		cJSON_AddItemToObject(doc, "recovered", res->recovered ? cJSON_Duplicate(res->recovered, 1) : cJSON_CreateNull());
		cJSON_AddItemToObject(doc, "plan", res->plan ? cJSON_Duplicate(res->plan, 1) : cJSON_CreateArray());
		cJSON_AddItemToObject(doc, "setup", res->setup ? cJSON_Duplicate(res->setup, 1) : cJSON_CreateArray());
		cJSON_AddNumberToObject(doc, "exit", code);
		if (code && ctx->err.code)
			cmd_json_error(doc, &ctx->err);
		else
			cJSON_AddNullToObject(doc, "error");
		cmd_print_json(doc);
	} else if (dry_run && res->plan) {
		cJSON_ArrayForEach(e, res->plan)
			printf("would %s\n", e->valuestring);
	} else if (code == 0 && res->outcome && !strcmp(res->outcome, "rotated")) {
		printf("rotated '%s': %s %s -> %s", res->name, res->env_key,
		       res->previous_fingerprint[0] ? res->previous_fingerprint : "(not set)", res->fingerprint);
		if (res->role)
			printf(" for role %s", res->role);
		printf(" (%s, health gate %s)\n", res->restarted ? "service restarted" : "no restart", res->gate);
		if (res->shown)
			printf("%s\n", res->shown);
	} else if (code == 0 && res->recovered) {
		printf("%s the interrupted rotation of '%s'\n",
		       !strcmp(jstr(res->recovered, "action", ""), "completed") ? "completed" : "undid",
		       jstr(res->recovered, "secret", "?"));
	} else if (code == 0 && res->outcome && !strcmp(res->outcome, "nothing to recover")) {
		term_info(&ctx->term, "no interrupted rotation to recover");
	}
	fflush(stdout);
	if (code)
		term_report(&ctx->term, &ctx->err);
}

int cmd_rotate_secret(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	struct sec_settings s;
	struct sec_rotate_opts o;
	struct sec_callbacks cb;
	struct sec_result res;
	struct cmd_signals sig = { 0 };
	int list = 0, recover = 0, n, code;
	const struct opt options[] = {
		{ OPT_BOOL, 0, "no-restart", &o.no_restart, NULL, "do not restart the service (the app re-reads the secret itself)", 0, NULL },
		{ OPT_BOOL, 0, "show", &o.show, NULL, "print the new value (only to a terminal)", 0, NULL },
		{ OPT_BOOL, 0, "setup", &o.setup, NULL, "alternating: create the two login roles first (needs CREATEROLE)", 0, NULL },
		{ OPT_STRING, 0, "reason", &o.reason, "TEXT", "why, for the history", 0, NULL },
		{ OPT_BOOL, 0, "list", &list, NULL, "the secrets: kind, fingerprint, last rotation, age", 0, NULL },
		{ OPT_BOOL, 0, "recover", &recover, NULL, "only finish or undo a rotation that was killed part way", 0, NULL },
		OPT_END_MARK,
	};

	memset(&o, 0, sizeof(o));
	sec_settings_init(&s);
	sec_result_init(&res);
	n = cmd_parse_options(ctx, options, secret_usage, argc, argv);
	if (n == OPTS_HELP) {
		code = OPS_EXIT_OK;
		goto out;
	}
	if (n < 0) {
		code = OPS_EXIT_USAGE;
		goto out;
	}
	o.dry_run = ctx->dry_run;
	if ((list || recover) ? n != 0 || (list && recover) : n != 1) {
		term_error(&ctx->term, n > 1 || ((list || recover) && n) ? "unexpected argument '%s'"
					: list && recover ? "--list and --recover do not go together%s"
							  : "'rotate-secret' needs a NAME (or --list, --recover)%s",
			   n > 1 ? argv[1] : n ? argv[0] : "");
		opts_usage(stderr, secret_usage, NULL);
		code = OPS_EXIT_USAGE;
		goto out;
	}
	if (list) {
		code = do_list(ctx);
		goto out;
	}
	if (o.show && (ctx->json || !isatty(STDOUT_FILENO))) {
		ops_error_set(&ctx->err, OPS_EXIT_USAGE, "--show prints the new value only to a terminal");
		ops_error_hint(&ctx->err, "the value is in the env file; a pipe or a log is no place for it");
		code = cmd_fail(ctx, NULL);
		goto out;
	}
	if (!recover) {
		if (!ctx->have_config) {
			ops_error_set(&ctx->err, OPS_EXIT_CONFIG, "no config file found: secrets are defined in [secret \"NAME\"]");
			ops_error_hint(&ctx->err, "pass -c FILE, set OPSCTL_CONFIG, or create ./opsctl.conf");
			code = cmd_fail(ctx, NULL);
			goto out;
		}
		if (sec_settings_load(&s, &ctx->cfg, argv[0], &ctx->err) < 0) {
			code = cmd_fail(ctx, NULL);
			goto out;
		}
		if (o.setup && (s.kind != SEC_POSTGRES_PASSWORD || s.strategy != SEC_ALTERNATING)) {
			ops_error_set(&ctx->err, OPS_EXIT_USAGE, "--setup is for a postgres-password with strategy = alternating");
			code = cmd_fail(ctx, NULL);
			goto out;
		}
	} else {
		const char *restart = ctx->have_config ? config_get(&ctx->cfg, "service", NULL, "restart") : NULL;
		s.restart = restart && *restart ? xstrdup(restart) : NULL;
	}
	common_settings(ctx, &s);

	memset(&cb, 0, sizeof(cb));
	cb.event = cmd_event;
	cb.stop_requested = cmd_stop_requested;
	cb.data = ctx;
	cmd_catch_signals(&sig, 0); /* not one-shot: an undo must run to its end */
	code = sec_rotate(&s, &o, &cb, &res, &ctx->err);
	cmd_release_signals(&sig);
	print_result(ctx, &res, code, o.dry_run);
out:
	sec_result_release(&res);
	sec_settings_release(&s);
	return code;
}
