/* Health probes: build them from config or targets, run them all at once,
 * judge what came back, and wait for a run of passes. */
#include "engines/probe.h"
#include "system/clock.h"
#include "system/fs.h"
#include "adapters/http.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_BACKOFF_MS 5000

const char *probe_state_name(enum probe_state s)
{
	switch (s) {
	case PROBE_PASS: return "pass";
	case PROBE_WARN: return "warn";
	case PROBE_UNREACHABLE: return "unreachable";
	case PROBE_FAIL: return "fail";
	}
	return "fail";
}

const char *probe_type_name(enum probe_type t)
{
	switch (t) {
	case PROBE_HTTP: return "http";
	case PROBE_POSTGRES: return "postgres";
	case PROBE_TCP: return "tcp";
	case PROBE_DISK: return "disk";
	case PROBE_MEMORY: return "memory";
	}
	return "http";
}

void probe_set_init(struct probe_set *set)
{
	memset(set, 0, sizeof(*set));
}

static void probe_release(struct probe *p)
{
	free(p->name);
	free(p->url);
	free(p->host);
	free(p->port);
	if (p->redis_password) {
		explicit_bzero(p->redis_password, strlen(p->redis_password));
		free(p->redis_password);
	}
	for (size_t i = 0; i < p->nrequire; i++)
		free(p->require[i]);
	free(p->require);
	free(p->expect);
	free(p->path);
	db_target_release(&p->db);
	strbuf_release(&p->detail);
	free(p->server_version);
}

void probe_set_release(struct probe_set *set)
{
	for (size_t i = 0; i < set->nr; i++)
		probe_release(&set->items[i]);
	free(set->items);
	probe_set_init(set);
}

static struct probe *probe_new(struct probe_set *set, const char *name, enum probe_type type,
			       const struct probe_defaults *d)
{
	struct probe *p;
	if (set->nr == set->alloc) {
		set->alloc = set->alloc ? set->alloc * 2 : 8;
		set->items = xrealloc(set->items, set->alloc * sizeof(*set->items));
	}
	p = &set->items[set->nr++];
	memset(p, 0, sizeof(*p));
	p->name = xstrdup(name);
	p->type = type;
	p->timeout_ms = d && d->timeout_ms > 0 ? d->timeout_ms : DEFAULT_TIMEOUT_MS;
	strbuf_init(&p->detail, 0);
	switch (type) {
	case PROBE_DISK:
		p->warn_pct = 80;
		p->crit_pct = 90;
		break;
	case PROBE_MEMORY:
		p->warn_pct = 90;
		p->crit_pct = 95;
		break;
	case PROBE_POSTGRES:
		p->warn_pct = 80;
		p->crit_pct = 95;
		break;
	default:
		break;
	}
	if (d && (type == PROBE_DISK || type == PROBE_MEMORY)) {
		if (d->warn_pct >= 0)
			p->warn_pct = d->warn_pct;
		if (d->crit_pct >= 0)
			p->crit_pct = d->crit_pct;
	}
	return p;
}

static void split_list(struct probe *p, const char *list)
{
	const char *s = list;
	while (s && *s) {
		size_t n;
		while (*s == ' ' || *s == ',' || *s == '\t')
			s++;
		n = strcspn(s, " ,\t");
		if (!n)
			break;
		p->require = xrealloc(p->require, (p->nrequire + 1) * sizeof(char *));
		p->require[p->nrequire++] = xstrndup(s, n);
		s += n;
	}
}

/* host:port, [v6]:port */
static int split_address(const char *addr, char **host, char **port, struct ops_error *err)
{
	const char *colon;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':' || !end[2])
			goto bad;
		*host = xstrndup(addr + 1, (size_t)(end - addr - 1));
		*port = xstrdup(end + 2);
		return 0;
	}
	colon = strrchr(addr, ':');
	if (!colon || colon == addr || !colon[1])
		goto bad;
	for (const char *c = colon + 1; *c; c++)
		if (!isdigit((unsigned char)*c))
			goto bad;
	*host = xstrndup(addr, (size_t)(colon - addr));
	*port = xstrdup(colon + 1);
	return 0;
bad:
	return ops_error_set(err, OPS_EXIT_USAGE, "invalid address '%s' (expected HOST:PORT)", addr);
}

int probe_add_target(struct probe_set *set, const char *target, const struct probe_defaults *d,
		     struct ops_error *err)
{
	struct probe *p;
	int ret = 0;

	if (starts_with(target, "http://") || starts_with(target, "https://")) {
		p = probe_new(set, target, PROBE_HTTP, d);
		p->url = xstrdup(target);
		if (d && d->require)
			split_list(p, d->require);
		if (d && d->expect)
			p->expect = xstrdup(d->expect);
	} else if (starts_with(target, "postgres://") || starts_with(target, "postgresql://")) {
		struct db_target t;
		char *shown;
		ret = db_target_from_url(&t, target, "the command line", err);
		if (ret < 0)
			return ops_error_set(err, OPS_EXIT_USAGE, "%s", err->msg.buf);
		shown = db_redact(target);
		p = probe_new(set, shown, PROBE_POSTGRES, d);
		free(shown);
		p->db = t;
	} else if (starts_with(target, "tcp://") || starts_with(target, "redis://")) {
		int redis = starts_with(target, "redis://");
		const char *addr = target + (redis ? 8 : 6);
		char *host = NULL, *port = NULL;
		struct strbuf a = STRBUF_INIT;
		strbuf_add(&a, addr, strcspn(addr, "/"));
		ret = split_address(a.buf, &host, &port, err);
		strbuf_release(&a);
		if (ret < 0)
			return ret;
		p = probe_new(set, target, PROBE_TCP, d);
		p->host = host;
		p->port = port;
		p->redis = redis || !strcmp(port, "6379");
	} else if (starts_with(target, "disk:")) {
		if (!target[5])
			return ops_error_set(err, OPS_EXIT_USAGE, "invalid target '%s' (expected disk:/PATH)", target);
		p = probe_new(set, target, PROBE_DISK, d);
		p->path = xstrdup(target + 5);
	} else if (!strcmp(target, "memory")) {
		probe_new(set, "memory", PROBE_MEMORY, d);
	} else if (strstr(target, "://")) {
		return ops_error_set(err, OPS_EXIT_USAGE,
				     "unsupported target '%s' (expected http://, https://, postgresql://, tcp://, redis://)",
				     target);
	} else {
		return 1;
	}
	return 0;
}

void probe_add_database(struct probe_set *set, const char *name, const struct db_target *db,
			const struct probe_defaults *d)
{
	struct probe *p = probe_new(set, name, PROBE_POSTGRES, d);
	p->db.nr = db->nr;
	p->db.keywords = xcalloc(db->nr + 1, sizeof(char *));
	p->db.values = xcalloc(db->nr + 1, sizeof(char *));
	for (size_t i = 0; i < db->nr; i++) {
		p->db.keywords[i] = xstrdup(db->keywords[i]);
		p->db.values[i] = xstrdup(db->values[i]);
	}
	p->db.display = xstrdup(db->display ? db->display : "database");
	p->db.source = db->source;
}

static const char *const check_keys[] = {
	"type", "url", "require", "expect", "timeout", "address", "password_env", "path",
	"warn", "crit", "warn_connections", "crit_connections", "max_body", NULL
};

int probe_add_configured(struct probe_set *set, const struct config *cfg, const struct envfile *env,
			 const char *name, const struct probe_defaults *d, struct ops_error *err)
{
	const char *type = config_get(cfg, "check", name, "type");
	const char *url = config_get(cfg, "check", name, "url");
	const char *address = config_get(cfg, "check", name, "address");
	const char *path = config_get(cfg, "check", name, "path");
	enum probe_type pt;
	struct probe *p;
	int64_t timeout = 0;
	uint64_t max_body = 0;
	int ret = 0, found = 0;

	for (size_t i = 0; i < cfg->nr; i++) {
		const struct config_entry *e = &cfg->entries[i];
		size_t k;
		if (strcmp(e->section, "check") || !e->subsection || strcmp(e->subsection, name))
			continue;
		found = 1;
		for (k = 0; check_keys[k]; k++)
			if (!strcmp(check_keys[k], e->key))
				break;
		if (!check_keys[k]) {
			ret = config_error(cfg, e, err, "unknown key '%s' in [check \"%s\"]", e->key, name);
			ops_error_hint(err, "a check knows: type url require expect timeout address password_env path warn crit warn_connections crit_connections max_body");
			return ret;
		}
	}
	if (!found)
		return ops_error_set(err, OPS_EXIT_USAGE, "unknown check '%s'", name);

	if (!type)
		type = url ? "http" : address ? "tcp" : path ? "disk" : NULL;
	if (!type) {
		const struct config_entry *e = NULL;
		for (size_t i = 0; i < cfg->nr && !e; i++)
			if (!strcmp(cfg->entries[i].section, "check") && cfg->entries[i].subsection &&
			    !strcmp(cfg->entries[i].subsection, name))
				e = &cfg->entries[i];
		return config_error(cfg, e, err, "check '%s' has no type (set type = http|postgres|tcp|redis|disk|memory)", name);
	}
	if (!strcmp(type, "http"))
		pt = PROBE_HTTP;
	else if (!strcmp(type, "postgres") || !strcmp(type, "postgresql"))
		pt = PROBE_POSTGRES;
	else if (!strcmp(type, "tcp") || !strcmp(type, "redis"))
		pt = PROBE_TCP;
	else if (!strcmp(type, "disk"))
		pt = PROBE_DISK;
	else if (!strcmp(type, "memory"))
		pt = PROBE_MEMORY;
	else
		return config_error(cfg, config_find_entry(cfg, "check", name, "type"), err,
				    "unknown check type '%s' (expected http, postgres, tcp, redis, disk or memory)", type);

	p = probe_new(set, name, pt, d);
	if (config_get_duration_ms(cfg, "check", name, "timeout", &timeout, err) < 0 ||
	    config_get_size(cfg, "check", name, "max_body", &max_body, err) < 0)
		return -err->code;
	if (timeout > 0)
		p->timeout_ms = timeout;
	if (d && d->force_timeout_ms > 0)
		p->timeout_ms = d->force_timeout_ms;
	p->max_body = (size_t)max_body;

	switch (pt) {
	case PROBE_HTTP: {
		const char *req = config_get(cfg, "check", name, "require");
		const char *expect = config_get(cfg, "check", name, "expect");
		if (!url)
			return config_error(cfg, config_find_entry(cfg, "check", name, "type"), err,
					    "check '%s' of type http needs a url", name);
		if (!starts_with(url, "http://") && !starts_with(url, "https://"))
			return config_error(cfg, config_find_entry(cfg, "check", name, "url"), err,
					    "invalid url '%s' (expected http:// or https://)", url);
		p->url = xstrdup(url);
		if (req)
			split_list(p, req);
		if (expect)
			p->expect = xstrdup(expect);
		break;
	}
	case PROBE_POSTGRES:
		if (url)
			ret = db_target_from_url(&p->db, url, "[check] url", err);
		else if (d && d->db) {
			set->nr--;
			probe_release(p);
			probe_add_database(set, name, d->db, d);
			p = &set->items[set->nr - 1];
			if (timeout > 0)
				p->timeout_ms = timeout;
			if (d->force_timeout_ms > 0)
				p->timeout_ms = d->force_timeout_ms;
		} else
			ret = db_resolve(&p->db, NULL, cfg, env, err);
		if (ret < 0)
			return ret;
		if (config_get_percent(cfg, "check", name, "warn_connections", &p->warn_pct, err) < 0 ||
		    config_get_percent(cfg, "check", name, "crit_connections", &p->crit_pct, err) < 0)
			return -err->code;
		break;
	case PROBE_TCP: {
		const char *pwenv = config_get(cfg, "check", name, "password_env");
		if (!address)
			return config_error(cfg, config_find_entry(cfg, "check", name, "type"), err,
					    "check '%s' of type %s needs an address (HOST:PORT)", name, type);
		if (split_address(address, &p->host, &p->port, err) < 0)
			return config_error(cfg, config_find_entry(cfg, "check", name, "address"), err,
					    "%s", err->msg.buf);
		p->redis = !strcmp(type, "redis") || !strcmp(p->port, "6379");
		if (pwenv) {
			const char *pw = getenv(pwenv);
			if (!pw && env)
				pw = envfile_get(env, pwenv);
			if (!pw)
				return config_error(cfg, config_find_entry(cfg, "check", name, "password_env"), err,
						    "variable '%s' is not set in the environment or the env file", pwenv);
			p->redis_password = xstrdup(pw);
		}
		break;
	}
	case PROBE_DISK:
		if (!path)
			return config_error(cfg, config_find_entry(cfg, "check", name, "type"), err,
					    "check '%s' of type disk needs a path", name);
		p->path = xstrdup(path);
		/* thresholds below */
		__attribute__((fallthrough));
	case PROBE_MEMORY:
		if (config_get_percent(cfg, "check", name, "warn", &p->warn_pct, err) < 0 ||
		    config_get_percent(cfg, "check", name, "crit", &p->crit_pct, err) < 0)
			return -err->code;
		break;
	}
	if ((pt == PROBE_DISK || pt == PROBE_MEMORY || pt == PROBE_POSTGRES) && p->warn_pct > p->crit_pct)
		return config_error(cfg, config_find_entry(cfg, "check", name, "warn") ?
				    config_find_entry(cfg, "check", name, "warn") :
				    config_find_entry(cfg, "check", name, "type"), err,
				    "warn threshold %.0f%% is above crit threshold %.0f%%", p->warn_pct, p->crit_pct);
	return 0;
}

/* ---- judging HTTP answers ---- */

int probe_status_expected(long status, const char *expect)
{
	const char *s = expect;
	if (!expect || !*expect)
		return status >= 200 && status < 400;
	while (*s) {
		char *end;
		long lo, hi;
		while (*s == ' ' || *s == ',')
			s++;
		if (!*s)
			break;
		lo = strtol(s, &end, 10);
		if (end == s)
			return 0;
		hi = lo;
		if (*end == '-') {
			s = end + 1;
			hi = strtol(s, &end, 10);
			if (end == s)
				return 0;
		} else if (end - s == 3 && (end[0] == 'x' || end[0] == 'X')) {
			/* not reached: "2xx" is handled below */
		}
		if (status >= lo && status <= hi)
			return 1;
		s = end;
		if ((*s == 'x' || *s == 'X') && s[1] && (s[1] == 'x' || s[1] == 'X')) {
			if (status / 100 == lo)
				return 1;
			s += 2;
		}
	}
	return 0;
}

/* Maps the status words of Actuator, IETF health+json and the seeds. */
static int word_state(const char *w, enum probe_state *out)
{
	static const char *const pass[] = { "up", "pass", "ok", "healthy", "green", "passing", NULL };
	static const char *const warn[] = { "unknown", "warn", "warning", "degraded", "yellow", NULL };
	static const char *const fail[] = { "down", "out_of_service", "fail", "error", "unhealthy",
					    "critical", "red", "failing", "outofservice", NULL };
	for (size_t i = 0; pass[i]; i++)
		if (!strcasecmp(w, pass[i]))
			return (*out = PROBE_PASS), 1;
	for (size_t i = 0; warn[i]; i++)
		if (!strcasecmp(w, warn[i]))
			return (*out = PROBE_WARN), 1;
	for (size_t i = 0; fail[i]; i++)
		if (!strcasecmp(w, fail[i]))
			return (*out = PROBE_FAIL), 1;
	return 0;
}

struct component {
	char *name;
	const char *word;  /* points into the cJSON tree */
	enum probe_state state;
};

static void add_component(struct component **cs, size_t *n, const char *name, size_t name_len,
			  const char *word)
{
	enum probe_state st = PROBE_WARN;
	if (!word)
		word = "(no status)";
	else if (!word_state(word, &st))
		st = PROBE_WARN;
	for (size_t i = 0; i < *n; i++)
		if (strlen((*cs)[i].name) == name_len && !strncmp((*cs)[i].name, name, name_len)) {
			if (st > (*cs)[i].state) {
				(*cs)[i].state = st;
				(*cs)[i].word = word;
			}
			return;
		}
	*cs = xrealloc(*cs, (*n + 1) * sizeof(**cs));
	(*cs)[*n].name = xstrndup(name, name_len);
	(*cs)[*n].word = word;
	(*cs)[*n].state = st;
	(*n)++;
}

static const char *status_of(const cJSON *item)
{
	const cJSON *s;
	if (cJSON_IsString(item))
		return item->valuestring;
	s = cJSON_GetObjectItemCaseSensitive(item, "status");
	return cJSON_IsString(s) ? s->valuestring : NULL;
}

static void collect_components(const cJSON *root, struct component **cs, size_t *n)
{
	const cJSON *group, *item;

	/* Actuator v3 "components", the seeds' "components", Actuator v2 "details" */
	static const char *const groups[] = { "components", "details", NULL };
	for (size_t g = 0; groups[g]; g++) {
		group = cJSON_GetObjectItemCaseSensitive(root, groups[g]);
		if (!cJSON_IsObject(group))
			continue;
		cJSON_ArrayForEach(item, group) {
			const char *w = status_of(item);
			if (!w && !cJSON_IsObject(item))
				continue;
			if (!w && g == 1)
				continue; /* v2 details may hold plain data, not components */
			add_component(cs, n, item->string, strlen(item->string), w);
		}
	}
	/* IETF health+json: "checks": {"db:responseTime": [{"status": "pass"}]} */
	group = cJSON_GetObjectItemCaseSensitive(root, "checks");
	if (cJSON_IsObject(group)) {
		cJSON_ArrayForEach(item, group) {
			size_t len = strcspn(item->string, ":");
			const cJSON *e;
			if (cJSON_IsArray(item)) {
				cJSON_ArrayForEach(e, item)
					add_component(cs, n, item->string, len, status_of(e));
			} else {
				add_component(cs, n, item->string, len, status_of(item));
			}
		}
	}
}

enum probe_state probe_judge_http(long status, const char *content_type, const char *body,
				  size_t body_len, const char *expect, char *const *require,
				  size_t nrequire, struct strbuf *detail)
{
	enum probe_state state = PROBE_PASS, overall = PROBE_PASS;
	const char *p = body;
	int is_json = content_type && strstr(content_type, "json");
	cJSON *root = NULL;
	const char *word = NULL;
	struct component *cs = NULL;
	size_t ncs = 0;
	struct strbuf notes = STRBUF_INIT;

	strbuf_reset(detail);
	strbuf_addf(detail, "HTTP %ld", status);
	if (!probe_status_expected(status, expect))
		state = PROBE_FAIL;
	while (p && p < body + body_len && isspace((unsigned char)*p))
		p++;
	if (p && p < body + body_len && *p == '{')
		is_json = 1;
	if (!is_json || !body_len) {
		if (is_json && state == PROBE_PASS && !nrequire)
			goto out; /* an empty JSON body: judged by its status */
		if (nrequire && state == PROBE_PASS) {
			state = PROBE_FAIL;
			strbuf_addf(detail, ", required component '%s' not reported (no JSON body)", require[0]);
		}
		goto out;
	}
	root = cJSON_ParseWithLength(body, body_len);
	if (!root) {
		const char *at = cJSON_GetErrorPtr();
		state = PROBE_FAIL;
		if (at && at >= body && at <= body + body_len)
			strbuf_addf(detail, ", malformed JSON body (at byte %zu)", (size_t)(at - body));
		else
			strbuf_addstr(detail, ", malformed JSON body");
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		state = state > PROBE_WARN ? state : PROBE_WARN;
		strbuf_addstr(detail, ", JSON body is not an object");
		goto out;
	}
	word = status_of(root);
	if (word) {
		strbuf_addf(detail, ", status %s", word);
		if (!word_state(word, &overall)) {
			overall = PROBE_WARN;
			strbuf_addstr(detail, " (not a known health status)");
		}
	}
	collect_components(root, &cs, &ncs);
	for (size_t i = 0; i < nrequire; i++) {
		size_t k;
		for (k = 0; k < ncs; k++)
			if (!strcmp(cs[k].name, require[i]))
				break;
		if (k == ncs) {
			strbuf_addf(&notes, "%srequired component '%s' not reported", notes.len ? ", " : "",
				    require[i]);
			overall = PROBE_FAIL;
		} else if (cs[k].state != PROBE_PASS) {
			strbuf_addf(&notes, "%srequired component '%s' is %s", notes.len ? ", " : "",
				    require[i], cs[k].word);
			if (cs[k].state > overall)
				overall = cs[k].state == PROBE_WARN ? PROBE_WARN : PROBE_FAIL;
		}
	}
	for (size_t k = 0; k < ncs; k++) {
		int required = 0;
		for (size_t i = 0; i < nrequire; i++)
			if (!strcmp(cs[k].name, require[i]))
				required = 1;
		if (required || cs[k].state == PROBE_PASS)
			continue;
		/* Only named: the service's own aggregate status decides (an
		 * Actuator that reports UP with a DOWN component was told to). */
		strbuf_addf(&notes, "%s%s %s", notes.len ? ", " : "", cs[k].name, cs[k].word);
	}
	if (notes.len)
		strbuf_addf(detail, " (%s)", notes.buf);
	if (overall > state)
		state = overall;
out:
	/* the words and names come from the service: a line break or an escape
	 * in one must not start a line of its own in our output */
	for (size_t i = 0; i < detail->len; i++)
		if ((unsigned char)detail->buf[i] < 0x20 || detail->buf[i] == 0x7f)
			detail->buf[i] = '?';
	for (size_t i = 0; i < ncs; i++)
		free(cs[i].name);
	free(cs);
	cJSON_Delete(root);
	strbuf_release(&notes);
	return state;
}

/* ---- runners ---- */

static void set_result(struct probe *p, enum probe_state st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_result(struct probe *p, enum probe_state st, const char *fmt, ...)
{
	va_list ap;
	p->state = st;
	strbuf_reset(&p->detail);
	va_start(ap, fmt);
	strbuf_vaddf(&p->detail, fmt, ap);
	va_end(ap);
}

static enum probe_state threshold(double pct, double warn, double crit)
{
	if (pct >= crit)
		return PROBE_FAIL;
	if (pct >= warn)
		return PROBE_WARN;
	return PROBE_PASS;
}

static void run_postgres(struct probe *p, int64_t timeout_ms)
{
	static const char sql[] =
		"SELECT current_setting('server_version'), "
		"(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
		"current_setting('max_connections')::int";
	struct ops_error err = OPS_ERROR_INIT;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int64_t start = clock_now_ms(), left;

	p->unit = "ms";
	if (db_connect(&conn, &p->db, "opsctl health", timeout_ms, &err) < 0) {
		set_result(p, err.code == OPS_EXIT_UNREACHABLE ? PROBE_UNREACHABLE : PROBE_FAIL, "%s",
			   err.msg.buf);
		goto out;
	}
	left = timeout_ms - (clock_now_ms() - start);
	if (db_exec(conn, sql, 0, NULL, left > 100 ? left : 100, &res, &err) < 0) {
		set_result(p, err.code == OPS_EXIT_UNREACHABLE ? PROBE_UNREACHABLE : PROBE_FAIL,
			   "query failed: %s", err.msg.buf);
		goto out;
	}
	free(p->server_version);
	p->server_version = xstrdup(PQgetvalue(res, 0, 0));
	p->connections = atol(PQgetvalue(res, 0, 1));
	p->max_connections = atol(PQgetvalue(res, 0, 2));
	{
		double pct = p->max_connections ? 100.0 * (double)p->connections / (double)p->max_connections : 0;
		enum probe_state st = threshold(pct, p->warn_pct, p->crit_pct);
		/* the connection check's observed value stays the latency; the
		 * connections are reported beside it */
		set_result(p, st, "PostgreSQL %s, %ld/%ld connections (%.0f%%)%s", p->server_version,
			   p->connections, p->max_connections, pct,
			   st == PROBE_FAIL ? ", above crit" : st == PROBE_WARN ? ", above warn" : "");
	}
out:
	p->duration_ms = (double)(clock_now_ms() - start);
	p->observed = p->duration_ms;
	if (res)
		PQclear(res);
	if (conn)
		PQfinish(conn);
	ops_error_release(&err);
}

/* Reads one RESP line ("+PONG\r\n") within the deadline. */
static int read_line(int fd, char *buf, size_t cap, int64_t deadline)
{
	size_t n = 0;
	while (n + 1 < cap) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int64_t left = deadline - clock_now_ms();
		ssize_t r;
		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		r = read(fd, buf + n, 1);
		if (r <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			if (n && buf[n - 1] == '\r')
				buf[n - 1] = '\0';
			return 0;
		}
		n++;
	}
	buf[n] = '\0';
	return 0;
}


static void run_tcp(struct probe *p, int64_t timeout_ms)
{
	struct addrinfo hints, *ai = NULL, *a;
	int64_t start = clock_now_ms(), deadline = start + timeout_ms;
	int fd = -1, rc, last_errno = 0;
	char line[256];
	struct strbuf cmd = STRBUF_INIT;

	p->unit = "ms";
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(p->host, p->port, &hints, &ai);
	if (rc) {
		set_result(p, PROBE_UNREACHABLE, "cannot resolve '%s': %s", p->host, gai_strerror(rc));
		goto out;
	}
	for (a = ai; a; a = a->ai_next) {
		struct pollfd pfd;
		int so = 0;
		socklen_t sl = sizeof(so);
		int64_t left;
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			last_errno = errno;
			goto next;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		left = deadline - clock_now_ms();
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			last_errno = ETIMEDOUT;
			goto next;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
			break;
		last_errno = so ? so : ECONNREFUSED;
next:
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		const char *why = last_errno == ETIMEDOUT ? "no answer in time" : ops_strerror(last_errno);
		set_result(p, PROBE_UNREACHABLE, "cannot connect to '%s:%s': %s", p->host, p->port, why);
		goto out;
	}
	if (!p->redis) {
		set_result(p, PROBE_PASS, "connected to %s:%s", p->host, p->port);
		goto out;
	}
	/* fcntl back to blocking is unnecessary: reads go through poll */
	if (p->redis_password) {
		strbuf_addf(&cmd, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", strlen(p->redis_password),
			    p->redis_password);
		if (fs_write_all(fd, cmd.buf, cmd.len) < 0 || read_line(fd, line, sizeof(line), deadline) < 0) {
			set_result(p, PROBE_UNREACHABLE, "redis at %s:%s did not answer AUTH in time", p->host, p->port);
			goto out;
		}
		if (line[0] != '+') {
			set_result(p, PROBE_FAIL, "redis at %s:%s refused AUTH: %s", p->host, p->port, line + 1);
			goto out;
		}
	}
	if (fs_write_all(fd, "*1\r\n$4\r\nPING\r\n", 14) < 0 || read_line(fd, line, sizeof(line), deadline) < 0) {
		set_result(p, PROBE_UNREACHABLE, "%s:%s accepted the connection but did not answer PING in time",
			   p->host, p->port);
		goto out;
	}
	if (!strcmp(line, "+PONG"))
		set_result(p, PROBE_PASS, "redis PONG");
	else if (starts_with(line, "-NOAUTH"))
		set_result(p, PROBE_WARN, "redis is up but wants a password (set password_env)");
	else
		set_result(p, PROBE_FAIL, "unexpected answer to PING: '%.60s'", line);
out:
	p->duration_ms = (double)(clock_now_ms() - start);
	p->observed = p->duration_ms;
	if (ai)
		freeaddrinfo(ai);
	if (fd >= 0)
		close(fd);
	strbuf_release_secret(&cmd);
}

static void run_disk(struct probe *p)
{
	struct statvfs st;
	int64_t start = clock_now_ms();
	struct strbuf used = STRBUF_INIT, total = STRBUF_INIT;

	p->unit = "%";
	if (statvfs(p->path, &st) < 0) {
		set_result(p, PROBE_FAIL, "cannot stat '%s': %s", p->path, ops_strerror(errno));
		goto out;
	}
	{
		uint64_t used_blocks = (uint64_t)(st.f_blocks - st.f_bfree);
		uint64_t avail = used_blocks + (uint64_t)st.f_bavail;
		double pct = avail ? 100.0 * (double)used_blocks / (double)avail : 0;
		p->used_bytes = used_blocks * st.f_frsize;
		p->total_bytes = (uint64_t)st.f_blocks * st.f_frsize;
		p->observed = pct;
		format_size(&used, p->used_bytes);
		format_size(&total, p->total_bytes);
		set_result(p, threshold(pct, p->warn_pct, p->crit_pct), "%.1f%% used (%s of %s; warn %.0f%%, crit %.0f%%)",
			   pct, used.buf, total.buf, p->warn_pct, p->crit_pct);
	}
out:
	p->duration_ms = (double)(clock_now_ms() - start);
	strbuf_release(&used);
	strbuf_release(&total);
}

static void run_memory(struct probe *p)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	unsigned long long total = 0, avail = 0;
	int64_t start = clock_now_ms();

	p->unit = "%";
	if (!f) {
		set_result(p, PROBE_FAIL, "cannot read '/proc/meminfo': %s", ops_strerror(errno));
		goto out;
	}
	while (fgets(line, sizeof(line), f)) {
		if (starts_with(line, "MemTotal:"))
			total = strtoull(line + 9, NULL, 10);
		else if (starts_with(line, "MemAvailable:"))
			avail = strtoull(line + 13, NULL, 10);
	}
	if (!total) {
		set_result(p, PROBE_FAIL, "no MemTotal in '/proc/meminfo'");
		goto out;
	}
	{
		double pct = 100.0 * (1.0 - (double)avail / (double)total);
		p->total_bytes = total * 1024;
		p->used_bytes = (total - avail) * 1024;
		p->observed = pct;
		set_result(p, threshold(pct, p->warn_pct, p->crit_pct), "%.1f%% used (warn %.0f%%, crit %.0f%%)",
			   pct, p->warn_pct, p->crit_pct);
	}
out:
	if (f)
		fclose(f);
	p->duration_ms = (double)(clock_now_ms() - start);
}

struct worker {
	struct probe *p;
	int64_t timeout_ms;
	pthread_t tid;
	int started;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	switch (w->p->type) {
	case PROBE_POSTGRES:
		run_postgres(w->p, w->timeout_ms);
		break;
	case PROBE_TCP:
		run_tcp(w->p, w->timeout_ms);
		break;
	case PROBE_DISK:
		run_disk(w->p);
		break;
	case PROBE_MEMORY:
		run_memory(w->p);
		break;
	case PROBE_HTTP:
		break;
	}
	return NULL;
}

static int run_all_capped(struct probe_set *set, int64_t cap_ms, struct ops_error *err)
{
	struct worker *ws = xcalloc(set->nr ? set->nr : 1, sizeof(*ws));
	struct http_request *reqs = xcalloc(set->nr ? set->nr : 1, sizeof(*reqs));
	struct http_request **rp = xcalloc(set->nr ? set->nr : 1, sizeof(*rp));
	size_t nhttp = 0;
	int ret = 0;

	for (size_t i = 0; i < set->nr; i++) {
		struct probe *p = &set->items[i];
		int64_t t = p->timeout_ms;
		if (cap_ms > 0 && t > cap_ms)
			t = cap_ms;
		strbuf_reset(&p->detail);
		p->state = PROBE_FAIL;
		if (p->type == PROBE_HTTP) {
			http_request_init(&reqs[nhttp], p->url, t, p->max_body);
			rp[nhttp] = &reqs[nhttp];
			nhttp++;
			continue;
		}
		ws[i].p = p;
		ws[i].timeout_ms = t;
		if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) == 0)
			ws[i].started = 1;
		else
			worker_main(&ws[i]);
	}
	if (nhttp)
		ret = http_perform_all(rp, nhttp, err);
	for (size_t i = 0; i < set->nr; i++)
		if (ws[i].started)
			pthread_join(ws[i].tid, NULL);
	nhttp = 0;
	for (size_t i = 0; i < set->nr; i++) {
		struct probe *p = &set->items[i];
		struct http_request *r;
		if (p->type != PROBE_HTTP)
			continue;
		r = &reqs[nhttp++];
		p->unit = "ms";
		p->duration_ms = r->elapsed_ms;
		p->observed = r->elapsed_ms;
		p->http_status = r->status;
		if (r->err.code) {
			p->state = r->unreachable ? PROBE_UNREACHABLE : PROBE_FAIL;
			strbuf_reset(&p->detail);
			if (r->status && !r->unreachable)
				strbuf_addf(&p->detail, "HTTP %ld, ", r->status);
			strbuf_addbuf(&p->detail, &r->err.msg);
		} else {
			p->state = probe_judge_http(r->status, r->content_type, r->body.buf, r->body.len,
						    p->expect, p->require, p->nrequire, &p->detail);
		}
		http_request_release(r);
	}
	free(ws);
	free(reqs);
	free(rp);
	return ret;
}

int probe_run_all(struct probe_set *set, struct ops_error *err)
{
	return run_all_capped(set, 0, err);
}

enum probe_state probe_set_worst(const struct probe_set *set)
{
	enum probe_state worst = PROBE_PASS;
	for (size_t i = 0; i < set->nr; i++)
		if (set->items[i].state > worst)
			worst = set->items[i].state;
	return worst;
}

int probe_exit_code(const struct probe_set *set)
{
	switch (probe_set_worst(set)) {
	case PROBE_PASS: return OPS_EXIT_OK;
	case PROBE_WARN: return OPS_EXIT_DEGRADED;
	case PROBE_UNREACHABLE: return OPS_EXIT_UNREACHABLE;
	case PROBE_FAIL: return OPS_EXIT_FAILED;
	}
	return OPS_EXIT_FAILED;
}

int probe_wait(struct probe_set *set, int64_t wait_ms, int64_t interval_ms, unsigned consecutive,
	       probe_round_fn on_round, void *data, struct ops_error *err)
{
	int64_t start = clock_now_ms(), deadline = start + wait_ms;
	int64_t delay = interval_ms > 0 ? interval_ms : 1000;
	unsigned round = 0;
	int ret = 0;

	if (consecutive < 1)
		consecutive = 1;
	for (size_t i = 0; i < set->nr; i++)
		set->items[i].passes_in_row = 0;
	for (;;) {
		int64_t left = deadline - clock_now_ms();
		int all = 1;
		ret = run_all_capped(set, left > 200 ? left : 200, err);
		if (ret < 0)
			break;
		round++;
		set->rounds = round;
		for (size_t i = 0; i < set->nr; i++) {
			struct probe *p = &set->items[i];
			if (p->state == PROBE_PASS || p->state == PROBE_WARN)
				p->passes_in_row++;
			else
				p->passes_in_row = 0;
			if (p->passes_in_row < consecutive)
				all = 0;
		}
		if (on_round && on_round(set, round, clock_now_ms() - start, data)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted while waiting for checks");
			break;
		}
		if (all)
			break;
		left = deadline - clock_now_ms();
		if (left <= 0)
			break;
		clock_sleep_ms(delay < left ? delay : left);
		if (on_round && on_round(NULL, round, clock_now_ms() - start, data)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted while waiting for checks");
			break;
		}
		delay += delay / 2;
		if (delay > MAX_BACKOFF_MS)
			delay = interval_ms > MAX_BACKOFF_MS ? interval_ms : MAX_BACKOFF_MS;
	}
	return ret;
}

static int gate_checks(const struct probe_gate *g, struct probe_set *set, struct ops_error *err)
{
	struct probe_defaults d;
	const char **names = NULL;
	size_t n;
	int ret = 0;

	memset(&d, 0, sizeof(d));
	d.timeout_ms = g->timeout_ms;
	d.warn_pct = d.crit_pct = -1;
	if ((ret = http_global_init(err)) < 0)
		return ret;
	if (g->url) {
		if ((ret = probe_add_target(set, g->url, &d, err)) > 0)
			ret = ops_error_set(err, OPS_EXIT_CONFIG, "health_url '%s' is not a URL", g->url);
	} else if (g->nnames) {
		/* a name without its section is the config's fault */
		for (size_t i = 0; i < g->nnames && ret >= 0; i++) {
			ret = config_has_subsection(g->cfg, "check", g->names[i])
				    ? probe_add_configured(set, g->cfg, g->env, g->names[i], &d, err)
				    : ops_error_set(err, OPS_EXIT_CONFIG, "%s names '%s', but there is no [check \"%s\"]",
						    g->names_from ? g->names_from : "checks", g->names[i], g->names[i]);
		}
	} else if (g->cfg) {
		n = config_subsections(g->cfg, "check", &names);
		for (size_t i = 0; i < n && ret >= 0; i++)
			ret = probe_add_configured(set, g->cfg, g->env, names[i], &d, err);
	}
	free(names);
	return ret < 0 ? ret : 0;
}

int probe_gate_run(const struct probe_gate *g, struct strbuf *why, struct ops_error *err)
{
	struct probe_set set;
	int ret;

	probe_set_init(&set);
	strbuf_reset(why);
	if ((ret = gate_checks(g, &set, err)) < 0)
		goto out;
	if (!set.nr) {
		ret = 2;
		goto out;
	}
	ret = probe_wait(&set, g->wait_ms, g->interval_ms, g->consecutive, g->on_round, g->data, err);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < set.nr; i++) {
		const struct probe *p = &set.items[i];
		if (p->passes_in_row >= g->consecutive)
			continue;
		strbuf_addf(why, "%s'%s' %s: %s", why->len ? "; " : "", p->name, probe_state_name(p->state),
			    p->detail.buf);
	}
	ret = why->len ? 1 : 0;
out:
	probe_set_release(&set);
	return ret;
}

int probe_gate_validate(const struct probe_gate *g, struct ops_error *err)
{
	struct probe_set set;
	int ret;

	probe_set_init(&set);
	ret = gate_checks(g, &set, err);
	probe_set_release(&set);
	return ret;
}
