/* opsctl health: probe endpoints, PostgreSQL, TCP services, disk and memory,
 * once or until they pass; render as a table, JSON, Nagios or Prometheus. */
#include "opsctl.h"
#include "adapters/db.h"
#include "adapters/http.h"
#include "base/parse.h"
#include "engines/probe.h"
#include "system/clock.h"
#include "system/fs.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const health_usage[] = {
	"opsctl health [options] [CHECK | URL | tcp://HOST:PORT | redis://HOST:PORT | disk:PATH | memory ...]",
	NULL,
};

struct health_opts {
	int db;
	int nagios;
	int64_t timeout_ms;
	int64_t wait_ms;
	int64_t interval_ms;
	long consecutive;
	const char *require;
	const char *expect;
	const char *warn;
	const char *crit;
	const char *metrics_file;
};

static int on_round(const struct probe_set *set, unsigned round, int64_t elapsed_ms, void *data)
{
	struct opsctl_ctx *ctx = data;
	if (set) {
		size_t ok = 0;
		for (size_t i = 0; i < set->nr; i++)
			if (set->items[i].state <= PROBE_WARN)
				ok++;
		term_progress(&ctx->term, "waiting: %zu/%zu checks passing after %.1fs (round %u)", ok, set->nr,
			      (double)elapsed_ms / 1000.0, round);
		if (!ctx->term.progress)
			term_verbose(&ctx->term, "round %u: %zu/%zu checks passing after %.1fs", round, ok, set->nr,
				     (double)elapsed_ms / 1000.0);
	}
	return cmd_interrupted != 0;
}

static const char *summary(const struct probe_set *set, struct strbuf *sb)
{
	size_t counts[4] = { 0, 0, 0, 0 };
	for (size_t i = 0; i < set->nr; i++)
		counts[set->items[i].state]++;
	strbuf_reset(sb);
	if (counts[PROBE_PASS] == set->nr) {
		strbuf_addf(sb, "%zu check%s passed", set->nr, set->nr == 1 ? "" : "s");
		return sb->buf;
	}
	strbuf_addf(sb, "%zu of %zu checks passed", counts[PROBE_PASS], set->nr);
	if (counts[PROBE_FAIL])
		strbuf_addf(sb, ", %zu failed", counts[PROBE_FAIL]);
	if (counts[PROBE_UNREACHABLE])
		strbuf_addf(sb, ", %zu unreachable", counts[PROBE_UNREACHABLE]);
	if (counts[PROBE_WARN])
		strbuf_addf(sb, ", %zu warned", counts[PROBE_WARN]);
	return sb->buf;
}

static const char *ietf_status(enum probe_state s)
{
	return s == PROBE_PASS ? "pass" : s == PROBE_WARN ? "warn" : "fail";
}

static void print_json(const struct probe_set *set, int code, unsigned rounds)
{
	cJSON *doc = cJSON_CreateObject(), *checks;
	struct strbuf sb = STRBUF_INIT;
	char when[32];

	clock_rfc3339(when, time(NULL));
	cJSON_AddStringToObject(doc, "status", ietf_status(probe_set_worst(set)));
	cJSON_AddStringToObject(doc, "description", "opsctl health");
	cJSON_AddStringToObject(doc, "output", summary(set, &sb));
	checks = cJSON_AddObjectToObject(doc, "checks");
	for (size_t i = 0; i < set->nr; i++) {
		const struct probe *p = &set->items[i];
		cJSON *arr, *e = cJSON_CreateObject();
		strbuf_reset(&sb);
		strbuf_addf(&sb, "%s:%s", p->name, probe_type_name(p->type));
		arr = cJSON_AddArrayToObject(checks, sb.buf);
		cJSON_AddStringToObject(e, "componentId", p->name);
		cJSON_AddStringToObject(e, "componentType", probe_type_name(p->type));
		cJSON_AddStringToObject(e, "status", ietf_status(p->state));
		cJSON_AddStringToObject(e, "state", probe_state_name(p->state));
		cJSON_AddStringToObject(e, "time", when);
		cJSON_AddNumberToObject(e, "observedValue", p->observed);
		cJSON_AddStringToObject(e, "observedUnit", p->unit ? p->unit : "ms");
		cJSON_AddNumberToObject(e, "durationMs", p->duration_ms);
		cJSON_AddStringToObject(e, "output", p->detail.buf);
		switch (p->type) {
		case PROBE_HTTP:
			cJSON_AddStringToObject(e, "target", p->url);
			if (p->http_status)
				cJSON_AddNumberToObject(e, "httpStatus", (double)p->http_status);
			break;
		case PROBE_POSTGRES:
			cJSON_AddStringToObject(e, "target", p->db.display ? p->db.display : "");
			if (p->server_version) {
				cJSON_AddStringToObject(e, "serverVersion", p->server_version);
				cJSON_AddNumberToObject(e, "connections", (double)p->connections);
				cJSON_AddNumberToObject(e, "maxConnections", (double)p->max_connections);
			}
			break;
		case PROBE_TCP:
			strbuf_reset(&sb);
			strbuf_addf(&sb, "%s:%s", p->host, p->port);
			cJSON_AddStringToObject(e, "target", sb.buf);
			cJSON_AddBoolToObject(e, "redis", p->redis);
			break;
		case PROBE_DISK:
		case PROBE_MEMORY:
			if (p->path)
				cJSON_AddStringToObject(e, "target", p->path);
			cJSON_AddNumberToObject(e, "usedBytes", (double)p->used_bytes);
			cJSON_AddNumberToObject(e, "totalBytes", (double)p->total_bytes);
			cJSON_AddNumberToObject(e, "warnPercent", p->warn_pct);
			cJSON_AddNumberToObject(e, "critPercent", p->crit_pct);
			break;
		}
		cJSON_AddItemToArray(arr, e);
	}
	if (rounds)
		cJSON_AddNumberToObject(doc, "rounds", rounds);
	cJSON_AddNumberToObject(doc, "exit", code);
	cmd_print_json(doc);
	strbuf_release(&sb);
}

static void print_table(const struct opsctl_ctx *ctx, const struct probe_set *set)
{
	static const char *const header[] = { "CHECK", "TYPE", "STATUS", "TIME", "DETAIL" };
	struct table tb;
	struct strbuf out = STRBUF_INIT, dur = STRBUF_INIT;

	table_init(&tb, 5, header);
	for (size_t i = 0; i < set->nr; i++) {
		const struct probe *p = &set->items[i];
		const char *cells[5];
		int color = p->state == PROBE_PASS ? TC_GREEN : p->state == PROBE_WARN ? TC_YELLOW : TC_RED;
		strbuf_reset(&dur);
		format_duration_ms(&dur, (int64_t)(p->duration_ms + 0.5));
		cells[0] = p->name;
		cells[1] = probe_type_name(p->type);
		cells[2] = probe_state_name(p->state);
		cells[3] = dur.buf;
		cells[4] = p->detail.buf;
		table_add_row(&tb, color, cells);
	}
	table_render(&tb, &out, ctx->term.color_out);
	fwrite(out.buf, 1, out.len, stdout);
	table_release(&tb);
	strbuf_release(&out);
	strbuf_release(&dur);
}

/* Nagios perfdata labels: quoted, with no '=' or quote inside. */
static void perf_label(struct strbuf *sb, const char *name, const char *suffix)
{
	strbuf_addch(sb, '\'');
	for (const char *c = name; *c; c++)
		strbuf_addch(sb, (*c == '=' || *c == '\'') ? '_' : *c);
	strbuf_addstr(sb, suffix);
	strbuf_addch(sb, '\'');
}

static int print_nagios(const struct probe_set *set)
{
	enum probe_state worst = probe_set_worst(set);
	struct strbuf line = STRBUF_INIT, sb = STRBUF_INIT;
	int code = worst == PROBE_PASS ? OPS_NAGIOS_OK : worst == PROBE_WARN ? OPS_NAGIOS_WARNING
									   : OPS_NAGIOS_CRITICAL;
	const char *word = code == OPS_NAGIOS_OK ? "OK" : code == OPS_NAGIOS_WARNING ? "WARNING" : "CRITICAL";

	strbuf_addf(&line, "HEALTH %s - ", word);
	if (worst == PROBE_PASS) {
		strbuf_addstr(&line, summary(set, &sb));
	} else {
		int first = 1;
		for (size_t i = 0; i < set->nr; i++) {
			const struct probe *p = &set->items[i];
			if (p->state == PROBE_PASS)
				continue;
			strbuf_addf(&line, "%s%s %s: %s", first ? "" : "; ", p->name, probe_state_name(p->state),
				    p->detail.buf);
			first = 0;
		}
	}
	/* the status line must stay one line */
	for (size_t i = 0; i < line.len; i++)
		if (line.buf[i] == '\n' || line.buf[i] == '|')
			line.buf[i] = ' ';
	strbuf_addstr(&line, " |");
	for (size_t i = 0; i < set->nr; i++) {
		const struct probe *p = &set->items[i];
		strbuf_addch(&line, ' ');
		if (p->type == PROBE_DISK || p->type == PROBE_MEMORY) {
			perf_label(&line, p->name, "");
			strbuf_addf(&line, "=%.1f%%;%.0f;%.0f;0;100", p->observed, p->warn_pct, p->crit_pct);
		} else {
			perf_label(&line, p->name, "");
			strbuf_addf(&line, "=%.3fs;;;0", p->duration_ms / 1000.0);
			if (p->type == PROBE_POSTGRES && p->max_connections) {
				strbuf_addch(&line, ' ');
				perf_label(&line, p->name, "_connections");
				strbuf_addf(&line, "=%ld;%.0f;%.0f;0;%ld", p->connections,
					    p->warn_pct * (double)p->max_connections / 100.0,
					    p->crit_pct * (double)p->max_connections / 100.0, p->max_connections);
			}
		}
	}
	puts(line.buf);
	strbuf_release(&line);
	strbuf_release(&sb);
	return code;
}

static void prom_label(struct strbuf *sb, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			strbuf_addch(sb, '\\');
		if (*v == '\n') {
			strbuf_addstr(sb, "\\n");
			continue;
		}
		strbuf_addch(sb, *v);
	}
}

static int metric_status(enum probe_state s)
{
	switch (s) {
	case PROBE_PASS: return 0;
	case PROBE_WARN: return 1;
	case PROBE_FAIL: return 2;
	case PROBE_UNREACHABLE: return 3;
	}
	return 2;
}

static int write_metrics(const char *path, const struct probe_set *set, struct ops_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	static const char *const metrics[][3] = {
		{ "opsctl_check_up", "1 if the check passed or only warned, 0 if it failed or was unreachable", "gauge" },
		{ "opsctl_check_status", "0 pass, 1 warn, 2 fail, 3 unreachable", "gauge" },
		{ "opsctl_check_duration_seconds", "how long the check took", "gauge" },
	};
	int ret;

	for (size_t m = 0; m < 3; m++) {
		strbuf_addf(&sb, "# HELP %s %s\n# TYPE %s %s\n", metrics[m][0], metrics[m][1], metrics[m][0],
			    metrics[m][2]);
		for (size_t i = 0; i < set->nr; i++) {
			const struct probe *p = &set->items[i];
			strbuf_addf(&sb, "%s{check=\"", metrics[m][0]);
			prom_label(&sb, p->name);
			strbuf_addstr(&sb, "\"} ");
			if (m == 0)
				strbuf_addf(&sb, "%d\n", p->state <= PROBE_WARN);
			else if (m == 1)
				strbuf_addf(&sb, "%d\n", metric_status(p->state));
			else
				strbuf_addf(&sb, "%.6f\n", p->duration_ms / 1000.0);
		}
	}
	strbuf_addf(&sb, "# HELP opsctl_health_last_run_timestamp_seconds when opsctl health last ran\n"
			 "# TYPE opsctl_health_last_run_timestamp_seconds gauge\n"
			 "opsctl_health_last_run_timestamp_seconds %lld\n", (long long)time(NULL));
	ret = fs_write_atomic(path, sb.buf, sb.len, 0644, err);
	strbuf_release(&sb);
	return ret;
}

static int read_defaults(struct opsctl_ctx *ctx, struct health_opts *o)
{
	const struct config *cfg = &ctx->cfg;
	long consecutive = 0;
	if (!ctx->have_config)
		return 0;
	/* [health] wait is the deploy gate's; a plain `opsctl health` waits
	 * only when asked with --wait, so cron and --nagios runs stay short. */
	if ((!o->timeout_ms && config_get_duration_ms(cfg, "health", NULL, "timeout", &o->timeout_ms, &ctx->err) < 0) ||
	    (!o->interval_ms && config_get_duration_ms(cfg, "health", NULL, "interval", &o->interval_ms, &ctx->err) < 0) ||
	    config_get_int(cfg, "health", NULL, "consecutive", 1, 1000, &consecutive, &ctx->err) < 0)
		return -ctx->err.code;
	if (!o->consecutive && consecutive)
		o->consecutive = consecutive;
	return 0;
}

static int build_set(struct opsctl_ctx *ctx, struct health_opts *o, int argc, const char **argv,
		     struct probe_set *set, struct probe_defaults *d)
{
	int ret = 0;
	struct db_target db;
	int have_db = 0;

	memset(&db, 0, sizeof(db));
	if (o->db || ctx->db_url) {
		ret = db_resolve(&db, ctx->db_url, ctx->have_config ? &ctx->cfg : NULL,
				 ctx->have_env ? &ctx->env : NULL, &ctx->err);
		if (ret < 0)
			goto out;
		have_db = 1;
		d->db = &db;
	}
	for (int i = 0; i < argc; i++) {
		ret = probe_add_target(set, argv[i], d, &ctx->err);
		if (ret < 0)
			goto out;
		if (ret == 1) {
			if (!ctx->have_config) {
				ret = ops_error_set(&ctx->err, OPS_EXIT_USAGE, "unknown check '%s'", argv[i]);
				ops_error_hint(&ctx->err, "no config file was found; a target is a URL, tcp://HOST:PORT, redis://HOST:PORT, disk:PATH or memory");
				goto out;
			}
			ret = probe_add_configured(set, &ctx->cfg, ctx->have_env ? &ctx->env : NULL, argv[i], d,
						   &ctx->err);
			if (ret < 0)
				goto out;
		}
	}
	if (!argc && ctx->have_config) {
		const char **names = NULL;
		size_t n = config_subsections(&ctx->cfg, "check", &names);
		for (size_t i = 0; i < n && ret >= 0; i++)
			ret = probe_add_configured(set, &ctx->cfg, ctx->have_env ? &ctx->env : NULL, names[i], d,
						   &ctx->err);
		free(names);
		if (ret < 0)
			goto out;
	}
	if (have_db && (o->db || !set->nr))
		probe_add_database(set, "database", &db, d);
	if (!set->nr) {
		ret = ops_error_set(&ctx->err, OPS_EXIT_USAGE, "nothing to check");
		ops_error_hint(&ctx->err, ctx->have_config
				   ? "add [check \"NAME\"] sections to the config, or name a URL or --db"
				   : "name a URL (opsctl health http://127.0.0.1:8080/health), --db, or a config with [check] sections");
		goto out;
	}
	ret = 0;
out:
	d->db = NULL;
	if (have_db)
		db_target_release(&db);
	return ret;
}

int cmd_health(int argc, const char **argv, struct opsctl_ctx *ctx)
{
	struct health_opts o;
	struct probe_set set;
	struct probe_defaults d;
	struct cmd_signals sig = { 0 };
	unsigned rounds = 0;
	int n, code = OPS_EXIT_OK;
	const struct opt options[] = {
		{ OPT_BOOL, 0, "db", &o.db, NULL, "also check the database (global --db, [database] url, DATABASE_URL, PG*, DB_*)", 0, NULL },
		{ OPT_DURATION, 't', "timeout", &o.timeout_ms, "DURATION", "deadline of each check (default: [health] timeout or 5s)", 0, NULL },
		{ OPT_DURATION, 0, "wait", &o.wait_ms, "DURATION", "keep probing until every check passes or this passes", 0, NULL },
		{ OPT_DURATION, 0, "interval", &o.interval_ms, "DURATION", "first pause between rounds, growing to 5s (default 1s)", 0, NULL },
		{ OPT_INT, 0, "consecutive", &o.consecutive, "N", "passes in a row needed with --wait (default 1)", 0, NULL },
		{ OPT_STRING, 0, "require", &o.require, "LIST", "components that must be up in ad hoc URLs' bodies", 0, NULL },
		{ OPT_STRING, 0, "expect", &o.expect, "CODES", "HTTP statuses that pass for ad hoc URLs (default 200-399)", 0, NULL },
		{ OPT_STRING, 0, "warn", &o.warn, "PCT", "warning threshold for ad hoc disk: and memory", 0, NULL },
		{ OPT_STRING, 0, "crit", &o.crit, "PCT", "critical threshold for ad hoc disk: and memory", 0, NULL },
		{ OPT_BOOL, 0, "nagios", &o.nagios, NULL, "monitoring-plugin output and exit codes (0/1/2/3)", 0, NULL },
		{ OPT_STRING, 0, "metrics-file", &o.metrics_file, "FILE", "also write Prometheus text to FILE (atomically)", 0, NULL },
		OPT_END_MARK,
	};

	memset(&o, 0, sizeof(o));
	memset(&d, 0, sizeof(d));
	probe_set_init(&set);
	/* the monitoring-plugin contract holds even for a bad option */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--nagios"))
			o.nagios = 1;
	n = cmd_parse_options(ctx, options, health_usage, argc, argv);
	if (n == OPTS_HELP)
		return OPS_EXIT_OK;
	if (n < 0) {
		if (o.nagios)
			printf("HEALTH UNKNOWN - %s\n", ctx->err.msg.buf);
		return o.nagios ? OPS_NAGIOS_UNKNOWN : OPS_EXIT_USAGE;
	}

	d.warn_pct = d.crit_pct = -1;
	d.force_timeout_ms = o.timeout_ms;
	if ((o.warn && parse_percent(o.warn, &d.warn_pct, &ctx->err) < 0) ||
	    (o.crit && parse_percent(o.crit, &d.crit_pct, &ctx->err) < 0) ||
	    read_defaults(ctx, &o) < 0) {
		code = ctx->err.code ? ctx->err.code : OPS_EXIT_USAGE;
		goto fail;
	}
	if (d.warn_pct >= 0 && d.crit_pct >= 0 && d.warn_pct > d.crit_pct) {
		ops_error_set(&ctx->err, OPS_EXIT_USAGE, "--warn %s is above --crit %s", o.warn, o.crit);
		code = OPS_EXIT_USAGE;
		goto fail;
	}
	d.timeout_ms = o.timeout_ms;
	d.require = o.require;
	d.expect = o.expect;
	if (http_global_init(&ctx->err) < 0 || build_set(ctx, &o, n, argv, &set, &d) < 0) {
		code = ctx->err.code;
		goto fail;
	}

	if (o.wait_ms > 0) {
		int ret;
		/* Ctrl-C while waiting stops the wait cleanly (exit 10) */
		cmd_catch_signals(&sig, 0);
		ret = probe_wait(&set, o.wait_ms, o.interval_ms ? o.interval_ms : 1000,
				 (unsigned)(o.consecutive ? o.consecutive : 1), on_round, ctx, &ctx->err);
		cmd_release_signals(&sig);
		term_progress_done(&ctx->term);
		rounds = set.rounds;
		if (ret < 0) {
			code = ctx->err.code;
			goto fail;
		}
	} else if (probe_run_all(&set, &ctx->err) < 0) {
		code = ctx->err.code;
		goto fail;
	}

	code = probe_exit_code(&set);
	if (o.metrics_file && write_metrics(o.metrics_file, &set, &ctx->err) < 0) {
		term_report(&ctx->term, &ctx->err);
		if (code == OPS_EXIT_OK || code == OPS_EXIT_DEGRADED)
			code = OPS_EXIT_FAILED;
	}
	if (o.nagios) {
		int ncode = print_nagios(&set);
		code = ctx->err.code && code == OPS_EXIT_FAILED && ncode != OPS_NAGIOS_CRITICAL
			       ? OPS_NAGIOS_UNKNOWN : ncode;
	} else if (ctx->json) {
		print_json(&set, code, rounds);
	} else if (!(ctx->quiet && code == OPS_EXIT_OK)) {
		/* -q: silent on success (cron); a failure still shows the table */
		print_table(ctx, &set);
	}
	if (!o.nagios && code != OPS_EXIT_OK && !ctx->json) {
		struct strbuf sb = STRBUF_INIT;
		if (o.wait_ms > 0)
			term_warning(&ctx->term, "checks did not all pass within the wait: %s", summary(&set, &sb));
		strbuf_release(&sb);
	}
	goto out;
fail:
	if (o.nagios) {
		printf("HEALTH UNKNOWN - %s\n", ctx->err.msg.buf);
		term_report(&ctx->term, &ctx->err);
		code = OPS_NAGIOS_UNKNOWN;
	} else {
		term_report(&ctx->term, &ctx->err);
	}
out:
	probe_set_release(&set);
	return code;
}
