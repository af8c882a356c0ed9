/* libpq adapter: connection resolution, deadline-bound connect and query. */
#include "adapters/db.h"
#include "system/clock.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "base/strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void target_add(struct db_target *t, const char *k, const char *v)
{
	t->keywords = xrealloc(t->keywords, (t->nr + 2) * sizeof(char *));
	t->values = xrealloc(t->values, (t->nr + 2) * sizeof(char *));
	t->keywords[t->nr] = xstrdup(k);
	t->values[t->nr] = xstrdup(v);
	t->nr++;
	t->keywords[t->nr] = NULL;
	t->values[t->nr] = NULL;
}

void db_target_release(struct db_target *t)
{
	for (size_t i = 0; i < t->nr; i++) {
		free(t->keywords[i]);
		explicit_bzero(t->values[i], strlen(t->values[i]));
		free(t->values[i]);
	}
	free(t->keywords);
	free(t->values);
	free(t->display);
	memset(t, 0, sizeof(*t));
}

char *db_redact(const char *url)
{
	struct strbuf sb = STRBUF_INIT;
	const char *scheme = strstr(url, "://");

	if (scheme) {
		const char *auth = scheme + 3;
		const char *at = strchr(auth, '@');
		const char *slash = strchr(auth, '/');
		const char *colon = strchr(auth, ':');
		if (at && (!slash || at < slash) && colon && colon < at) {
			strbuf_add(&sb, url, (size_t)(colon - url) + 1);
			strbuf_addstr(&sb, "***");
			strbuf_addstr(&sb, at);
		} else {
			strbuf_addstr(&sb, url);
		}
		/* ?password=... in the query string */
		char *q = strstr(sb.buf, "password=");
		if (q) {
			size_t start = (size_t)(q - sb.buf) + 9;
			size_t end = start + strcspn(sb.buf + start, "&");
			struct strbuf out = STRBUF_INIT;
			strbuf_add(&out, sb.buf, start);
			strbuf_addstr(&out, "***");
			strbuf_addstr(&out, sb.buf + end);
			strbuf_release(&sb);
			sb = out;
		}
	} else {
		/* conninfo "key=value ..." */
		const char *p = url;
		while (*p) {
			const char *q = strstr(p, "password");
			if (!q) {
				strbuf_addstr(&sb, p);
				break;
			}
			strbuf_add(&sb, p, (size_t)(q - p));
			q += 8;
			while (*q == ' ')
				q++;
			if (*q != '=' && q > p && q[-1] == ' ' && *q) {
				/* "password SECRET", the '=' forgotten: still a secret */
				strbuf_addstr(&sb, "password ***");
				while (*q && !isspace((unsigned char)*q))
					q++;
				p = q;
				continue;
			}
			if (*q != '=') {
				strbuf_addstr(&sb, "password");
				p = q;
				continue;
			}
			strbuf_addstr(&sb, "password=***");
			q++;
			while (*q == ' ')
				q++;
			if (*q == '\'') {
				q++;
				while (*q && *q != '\'') {
					if (*q == '\\' && q[1])
						q++;
					q++;
				}
				if (*q)
					q++;
			} else {
				while (*q && !isspace((unsigned char)*q))
					q++;
			}
			p = q;
		}
	}
	return strbuf_detach(&sb, NULL);
}

/* The value libpq would use for keyword: what t says (a URL or conninfo
 * given as dbname expanded), else libpq's default (environment, service
 * file, compiled-in), as PQconndefaults reports it. Writes into *out a
 * pointer into parsed or defaults (valid while they live). */
static const char *target_value(const struct db_target *t, PQconninfoOption *parsed,
				const PQconninfoOption *def)
{
	const char *v = NULL;
	for (size_t i = 0; i < t->nr; i++)
		if (!strcmp(t->keywords[i], def->keyword) &&
		    !(parsed && !strcmp(def->keyword, "dbname")))
			v = t->values[i];
	for (PQconninfoOption *o = parsed; o && o->keyword; o++)
		if (!strcmp(o->keyword, def->keyword) && o->val && *o->val)
			v = o->val;
	return v && *v ? v : def->val;
}

/* A dbname that is itself a URL or a conninfo string, parsed; else NULL. */
static PQconninfoOption *parse_expanded(const struct db_target *t)
{
	for (size_t i = 0; i < t->nr; i++)
		if (!strcmp(t->keywords[i], "dbname") &&
		    (strstr(t->values[i], "://") || strchr(t->values[i], '=')))
			return PQconninfoParse(t->values[i], NULL);
	return NULL;
}

/* "user@host:port/dbname" from whatever libpq would use, password left out. */
static void set_display(struct db_target *t)
{
	PQconninfoOption *defs = PQconndefaults(), *parsed = parse_expanded(t), *o;
	const char *host = NULL, *hostaddr = NULL, *port = NULL, *dbname = NULL, *user = NULL;
	struct strbuf sb = STRBUF_INIT;

	for (o = defs; o && o->keyword; o++) {
		const char *v = target_value(t, parsed, o);
		if (!v || !*v)
			continue;
		if (!strcmp(o->keyword, "host"))
			host = v;
		else if (!strcmp(o->keyword, "hostaddr"))
			hostaddr = v;
		else if (!strcmp(o->keyword, "port"))
			port = v;
		else if (!strcmp(o->keyword, "dbname"))
			dbname = v;
		else if (!strcmp(o->keyword, "user"))
			user = v;
	}
	if (user)
		strbuf_addf(&sb, "%s@", user);
	strbuf_addstr(&sb, host ? host : hostaddr ? hostaddr : "localhost");
	strbuf_addf(&sb, ":%s", port ? port : "5432");
	if (dbname)
		strbuf_addf(&sb, "/%s", dbname);
	free(t->display);
	t->display = strbuf_detach(&sb, NULL);
	PQconninfoFree(defs);
	PQconninfoFree(parsed);
}

/* libpq's complaint about a URL it cannot parse quotes the URL, or a piece
 * of it, which may be the password: the URL becomes its redacted form and
 * a quoted piece that the redacted form lacks becomes "***". */
static char *scrub_parse_error(const char *msg, const char *url, const char *red)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	size_t ulen = strlen(url);
	const char *p;

	for (p = msg; *p;) {
		if (ulen && !strncmp(p, url, ulen)) {
			strbuf_addstr(&a, red);
			p += ulen;
		} else {
			strbuf_addch(&a, *p++);
		}
	}
	for (p = a.buf; *p;) {
		const char *end = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (end && end > p + 1) {
			char *piece = xstrndup(p + 1, (size_t)(end - p - 1));
			int secret = strstr(url, piece) && !strstr(red, piece);
			strbuf_addf(&b, "\"%s\"", secret ? "***" : piece);
			explicit_bzero(piece, strlen(piece));
			free(piece);
			p = end + 1;
		} else {
			strbuf_addch(&b, *p++);
		}
	}
	strbuf_release_secret(&a);
	return strbuf_detach(&b, NULL);
}

int db_target_from_url(struct db_target *t, const char *url, const char *source,
		       struct ops_error *err)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &errmsg);
	int ret = 0;

	if (!opts) {
		char *red = db_redact(url), *clean;
		struct strbuf m = STRBUF_INIT;
		strbuf_addstr(&m, errmsg ? errmsg : "cannot parse");
		strbuf_trim(&m);
		clean = scrub_parse_error(m.buf, url, red);
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "invalid database URL '%s' (from %s): %s",
				    red, source, clean);
		free(red);
		free(clean);
		strbuf_release_secret(&m);
		goto out;
	}
	memset(t, 0, sizeof(*t));
	target_add(t, "dbname", url);
	t->source = source;
	set_display(t);
out:
	PQconninfoFree(opts);
	PQfreemem(errmsg);
	return ret;
}

static const char *lookup(const char *key, const struct envfile *env)
{
	const char *v = getenv(key);
	if (v && *v)
		return v;
	v = env ? envfile_get(env, key) : NULL;
	return v && *v ? v : NULL;
}

int db_resolve(struct db_target *t, const char *flag_url, const struct config *cfg,
	       const struct envfile *env, struct ops_error *err)
{
	static const char *const pgvars[] = { "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE",
					      "PGUSER", "PGSERVICE", NULL };
	const char *url;
	memset(t, 0, sizeof(*t));

	if (flag_url && *flag_url)
		return db_target_from_url(t, flag_url, "--db", err);
	url = cfg ? config_get(cfg, "database", NULL, "url") : NULL;
	if (url && *url) {
		int ret = db_target_from_url(t, url, "[database] url", err);
		if (ret < 0) {
			const struct config_entry *e = config_find_entry(cfg, "database", NULL, "url");
			if (e)
				ops_error_prefix(err, "%s:%d", cfg->path ? cfg->path : "config", e->line);
		}
		return ret;
	}
	url = lookup("DATABASE_URL", env);
	if (url)
		return db_target_from_url(t, url, "DATABASE_URL", err);
	for (size_t i = 0; pgvars[i]; i++)
		if (getenv(pgvars[i]) && *getenv(pgvars[i])) {
			t->source = "libpq environment";
			set_display(t);
			return 0;
		}
	if (lookup("DB_HOST", env) || lookup("DB_NAME", env) || lookup("DB_USER", env)) {
		static const char *const map[][2] = { { "DB_HOST", "host" }, { "DB_PORT", "port" },
						     { "DB_NAME", "dbname" }, { "DB_USER", "user" },
						     { "DB_PASSWORD", "password" } };
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
			const char *v = lookup(map[i][0], env);
			if (v)
				target_add(t, map[i][1], v);
		}
		t->source = "DB_* variables";
		set_display(t);
		return 0;
	}
	t->source = "libpq defaults";
	set_display(t);
	return 0;
}

/* The password of a child's connection, in a passfile that is an anonymous
 * memfd of mode 0600 (nothing on disk, nothing left behind by a SIGKILL),
 * which the child opens as /proc/OPSCTL-PID/fd/N while opsctl waits for it.
 * Never PGPASSWORD: a process's environment stays readable in
 * /proc/PID/environ for as long as it runs (libpq's manual advises against
 * it too). The descriptor is close-on-exec, so no other child inherits it.
 * NULL when the kernel has no memfd_create (then PGPASSWORD it is). */
static char *passfile_entry(const char *password)
{
	struct strbuf line = STRBUF_INIT;
	int fd = memfd_create("opsctl-pgpass", MFD_CLOEXEC), ok;
	char *res = NULL;

	if (fd < 0)
		return NULL;
	strbuf_addstr(&line, "*:*:*:*:");
	for (const char *c = password; *c; c++) {
		if (*c == ':' || *c == '\\')
			strbuf_addch(&line, '\\');
		strbuf_addch(&line, *c);
	}
	strbuf_addch(&line, '\n');
	ok = fchmod(fd, 0600) == 0;
	for (size_t off = 0; ok && off < line.len;) {
		ssize_t w = write(fd, line.buf + off, line.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		ok = w > 0;
		off += w > 0 ? (size_t)w : 0;
	}
	strbuf_release_secret(&line);
	if (ok)
		res = xstrfmt("PGPASSFILE=/proc/%ld/fd/%d", (long)getpid(), fd);
	else
		close(fd);
	return res;
}

char **db_target_env(const struct db_target *t, const char *dbname)
{
	PQconninfoOption *defs = PQconndefaults(), *parsed = parse_expanded(t), *o;
	size_t n = 0;
	char **env = xcalloc(64, sizeof(char *));
	char *passfile = NULL;

	for (o = defs; o && o->keyword; o++)
		if (!strcmp(o->keyword, "password")) {
			const char *v = target_value(t, parsed, o);
			if (v && *v)
				passfile = passfile_entry(v);
		}
	for (o = defs; o && o->keyword && n < 60; o++) {
		const char *v = target_value(t, parsed, o);
		if (!o->envvar || !v || !*v)
			continue;
		if (!strcmp(o->keyword, "dbname") && dbname)
			continue;
		if (passfile && (!strcmp(o->keyword, "password") || !strcmp(o->keyword, "passfile")))
			continue;
		env[n++] = xstrfmt("%s=%s", o->envvar, v);
	}
	if (dbname)
		env[n++] = xstrfmt("PGDATABASE=%s", dbname);
	if (passfile) {
		env[n++] = xstrdup("PGPASSWORD="); /* libpq: empty = none; not one of opsctl's environment */
		env[n++] = passfile;
	}
	env[n] = NULL;
	PQconninfoFree(defs);
	PQconninfoFree(parsed);
	return env;
}

void db_env_free(char **env)
{
	char mine[64];
	size_t len = (size_t)snprintf(mine, sizeof(mine), "PGPASSFILE=/proc/%ld/fd/", (long)getpid());

	for (size_t i = 0; env && env[i]; i++) {
		if (!strncmp(env[i], mine, len))
			close(atoi(env[i] + len)); /* the memfd of passfile_entry */
		explicit_bzero(env[i], strlen(env[i]));
		free(env[i]);
	}
	free(env);
}

void db_target_with_dbname(struct db_target *out, const struct db_target *t, const char *dbname)
{
	db_target_with_login(out, t, dbname, NULL, NULL);
}

void db_target_with_login(struct db_target *out, const struct db_target *t, const char *dbname,
			  const char *user, const char *password)
{
	PQconninfoOption *defs = PQconndefaults(), *parsed = parse_expanded(t), *o;
	struct strbuf ci = STRBUF_INIT;

	for (o = defs; o && o->keyword; o++) {
		const char *v = target_value(t, parsed, o);
		if (dbname && !strcmp(o->keyword, "dbname"))
			v = dbname;
		else if (user && !strcmp(o->keyword, "user"))
			v = user;
		else if (password && !strcmp(o->keyword, "password"))
			v = password;
		else if (password && !strcmp(o->keyword, "passfile"))
			v = NULL;   /* the given password, not one from .pgpass */
		if (!v || !*v)
			continue;
		strbuf_addf(&ci, "%s='", o->keyword);
		for (const char *c = v; *c; c++) {
			if (*c == '\'' || *c == '\\')
				strbuf_addch(&ci, '\\');
			strbuf_addch(&ci, *c);
		}
		strbuf_addstr(&ci, "' ");
	}
	memset(out, 0, sizeof(*out));
	target_add(out, "dbname", ci.buf);
	out->source = t->source;
	set_display(out);
	strbuf_release_secret(&ci);
	PQconninfoFree(defs);
	PQconninfoFree(parsed);
}

char *db_target_dbname(const struct db_target *t)
{
	PQconninfoOption *defs = PQconndefaults(), *parsed = parse_expanded(t), *o;
	const char *user = NULL, *db = NULL;
	char *res;

	for (o = defs; o && o->keyword; o++) {
		if (!strcmp(o->keyword, "dbname"))
			db = target_value(t, parsed, o);
		if (!strcmp(o->keyword, "user"))
			user = target_value(t, parsed, o);
	}
	/* libpq's own rule: no database named means the user's name */
	res = xstrdup(db && *db ? db : user && *user ? user : "postgres");
	PQconninfoFree(defs);
	PQconninfoFree(parsed);
	return res;
}

/* libpq's messages, shortened to the reason: "connection refused". libpq
 * writes one line per attempt and indents its own hints; the last
 * unindented line is the most specific reason. */
static void clean_pq_message(struct strbuf *out, const char *msg)
{
	const char *line = msg ? msg : "", *best = NULL, *p;
	size_t best_len = 0;

	strbuf_reset(out);
	while (*line) {
		size_t len = strcspn(line, "\n");
		if (len && line[0] != '\t' && line[0] != ' ') {
			best = line;
			best_len = len;
		}
		line += len;
		if (*line)
			line++;
	}
	if (!best)
		return;
	strbuf_add(out, best, best_len);
	p = strstr(out->buf, " failed: ");
	if (p && starts_with(out->buf, "connection to server")) {
		size_t skip = (size_t)(p - out->buf) + 9;
		memmove(out->buf, out->buf + skip, out->len - skip + 1);
		out->len -= skip;
	}
	if (starts_with(out->buf, "FATAL:  ") || starts_with(out->buf, "ERROR:  ")) {
		memmove(out->buf, out->buf + 8, out->len - 8 + 1);
		out->len -= 8;
	}
	strbuf_trim(out);
	if (out->len && isupper((unsigned char)out->buf[0]) &&
	    !(out->len > 1 && isupper((unsigned char)out->buf[1])))
		out->buf[0] = (char)tolower((unsigned char)out->buf[0]);
	while (out->len && out->buf[out->len - 1] == '.')
		strbuf_setlen(out, out->len - 1);
}

static int answered_but_refused(const char *msg)
{
	static const char *const marks[] = { "authentication failed", "no password supplied",
		"password", "does not exist", "permission denied", "no pg_hba.conf entry",
		"too many connections", "not yet accepting", "shutting down", "starting up",
		"recovery mode", NULL };
	for (size_t i = 0; marks[i]; i++)
		if (strstr(msg, marks[i]))
			return 1;
	return 0;
}

static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int db_connect(PGconn **out, const struct db_target *t, const char *application_name,
	       int64_t timeout_ms, struct ops_error *err)
{
	const char **kw = xcalloc(t->nr + 3, sizeof(char *));
	const char **vals = xcalloc(t->nr + 3, sizeof(char *));
	size_t n = 0;
	int64_t deadline;
	PGconn *conn = NULL;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	struct strbuf reason = STRBUF_INIT;
	int ret = 0;

	*out = NULL;
	if (timeout_ms <= 0)
		timeout_ms = 30000;
	deadline = clock_now_ms() + timeout_ms;
	for (size_t i = 0; i < t->nr; i++, n++) {
		kw[n] = t->keywords[i];
		vals[n] = t->values[i];
	}
	kw[n] = "application_name";
	vals[n++] = application_name ? application_name : "opsctl";
	kw[n] = NULL;

	conn = PQconnectStartParams(kw, vals, 1);
	if (!conn) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot connect to '%s': out of memory", t->display);
		goto out;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		goto failed;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		struct pollfd pfd;
		int64_t left = deadline - clock_now_ms();
		int rc;
		if (left <= 0) {
			ret = ops_error_set(err, OPS_EXIT_UNREACHABLE,
					    "cannot connect to '%s': no answer within %lldms",
					    t->display, (long long)timeout_ms);
			goto out;
		}
		pfd.fd = PQsocket(conn);
		pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		pfd.revents = 0;
		if (pfd.fd < 0)
			break;
		rc = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
		if (rc < 0 && errno != EINTR) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot connect to '%s': %s",
					    t->display, ops_strerror(errno));
			goto out;
		}
		if (rc > 0)
			st = PQconnectPoll(conn);
	}
	if (PQstatus(conn) == CONNECTION_OK) {
		/* NOTICEs ("... already exists, skipping") are the server talking to
		 * itself; libpq would print them to stderr in the middle of our output */
		PQsetNoticeProcessor(conn, ignore_notice, NULL);
		*out = conn;
		conn = NULL;
		goto out;
	}
failed:
	clean_pq_message(&reason, PQerrorMessage(conn));
	ret = ops_error_set(err, answered_but_refused(reason.buf) ? OPS_EXIT_FAILED : OPS_EXIT_UNREACHABLE,
			    "cannot connect to '%s': %s", t->display, reason.len ? reason.buf : "unknown error");
	if (strstr(reason.buf, "password"))
		ops_error_hint(err, "check the password in DATABASE_URL, the env file or ~/.pgpass");
	else if (err && err->code == OPS_EXIT_UNREACHABLE)
		ops_error_hint(err, "is PostgreSQL running and listening there? (connection from %s)", t->source);
out:
	if (conn)
		PQfinish(conn);
	free(kw);
	free(vals);
	strbuf_release(&reason);
	return ret;
}

void db_diag_init(struct db_diag *d)
{
	d->position = 0;
	d->sqlstate[0] = '\0';
	strbuf_init(&d->detail, 0);
	strbuf_init(&d->hint, 0);
}

void db_diag_release(struct db_diag *d)
{
	strbuf_release(&d->detail);
	strbuf_release(&d->hint);
}

static void fill_diag(struct db_diag *d, const PGresult *r)
{
	const char *v;
	if (!d)
		return;
	v = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
	d->position = v ? atoi(v) : 0;
	v = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	strlcpy_s(d->sqlstate, v ? v : "", sizeof(d->sqlstate));
	strbuf_reset(&d->detail);
	strbuf_reset(&d->hint);
	v = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
	if (v)
		strbuf_addstr(&d->detail, v);
	v = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
	if (v)
		strbuf_addstr(&d->hint, v);
}

/* How long a statement past its deadline gets for its cancel to go through
 * and its results to come back. */
#define CANCEL_WAIT_MS 5000
/* How long a cancel's child may wait for the server before it gives up. */
#define CANCEL_CHILD_S 10

/* Sends c's cancel request from a child and waits for it up to wait_ms.
 * PQcancel waits for the server to close the cancel connection: forever for
 * a frozen server (the kernel still accepts the connection), minutes for
 * one behind a dead network; a child can be left to that wait, and gives up
 * after CANCEL_CHILD_S. Async-signal-safe (_Fork, and PQcancel is made for
 * signal handlers). Returns 0 when the server took the request; otherwise
 * *waiting (may be NULL) is the child still waiting, or 0. */
static int cancel_in_child(PGcancel *c, int wait_ms, pid_t *waiting)
{
	struct timespec tick = { 0, 2 * 1000 * 1000 };
	int status = 0;
	pid_t pid = _Fork();

	if (pid == 0) {
		char buf[256];
		alarm(CANCEL_CHILD_S);
		_exit(PQcancel(c, buf, sizeof(buf)) ? 0 : 1);
	}
	if (waiting)
		*waiting = 0;
	for (int waited = 0; pid > 0; waited += 2) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
		if ((w < 0 && errno != EINTR) || waited >= wait_ms)
			break;
		nanosleep(&tick, NULL);
	}
	if (waiting && pid > 0)
		*waiting = pid;
	return -1;
}

/* cancel_in_child for the statement conn runs now, its child reaped. */
static int cancel_within(PGconn *conn, int wait_ms)
{
	PGcancel *c = PQgetCancel(conn);
	pid_t waiting = 0;
	int ret;

	if (!c)
		return -1;
	ret = cancel_in_child(c, wait_ms, &waiting);
	if (waiting) {
		kill(waiting, SIGKILL);
		while (waitpid(waiting, NULL, 0) < 0 && errno == EINTR)
			;
	}
	PQfreeCancel(c);
	return ret;
}

/* After a cancel: reads what is left of the statement's results, at most
 * timeout_ms. 0 when the connection is ready for the next statement. */
static int drain_within(PGconn *conn, int64_t timeout_ms)
{
	int64_t deadline = clock_now_ms() + timeout_ms;
	PGresult *r;

	for (;;) {
		while (PQisBusy(conn)) {
			struct pollfd pfd = { PQsocket(conn), POLLIN, 0 };
			int64_t left = deadline - clock_now_ms();
			if (left <= 0)
				return -1;
			if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
				return -1;
			if (!PQconsumeInput(conn))
				return -1;
		}
		r = PQgetResult(conn);
		if (!r)
			return 0;
		PQclear(r);
	}
}

int db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
	    int64_t timeout_ms, PGresult **res, struct ops_error *err)
{
	return db_exec_diag(conn, sql, nparams, params, timeout_ms, res, NULL, err);
}

int db_exec_diag(PGconn *conn, const char *sql, int nparams, const char *const *params,
		 int64_t timeout_ms, PGresult **res, struct db_diag *diag, struct ops_error *err)
{
	int64_t deadline = timeout_ms > 0 ? clock_now_ms() + timeout_ms : 0;
	PGresult *r, *last = NULL;
	struct strbuf reason = STRBUF_INIT;
	int ret = 0, sent;

	*res = NULL;
	sent = nparams ? PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)
		       : PQsendQuery(conn, sql);
	if (!sent) {
		clean_pq_message(&reason, PQerrorMessage(conn));
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "cannot send query: %s", reason.buf);
		goto out;
	}
	for (;;) {
		while (PQisBusy(conn)) {
			struct pollfd pfd = { PQsocket(conn), POLLIN, 0 };
			int64_t left = deadline ? deadline - clock_now_ms() : 1000;
			if (deadline && left <= 0) {
				format_duration_ms(&reason, timeout_ms);
				if (cancel_within(conn, CANCEL_WAIT_MS) == 0 && drain_within(conn, CANCEL_WAIT_MS) == 0)
					ret = ops_error_set(err, OPS_EXIT_UNREACHABLE,
							    "query did not finish within %s and was cancelled", reason.buf);
				else
					ret = ops_error_set(err, OPS_EXIT_UNREACHABLE,
							    "query did not finish within %s, and the database did not "
							    "answer its cancel within %ds (is the server frozen?)",
							    reason.buf, CANCEL_WAIT_MS / 1000);
				goto out;
			}
			if (poll(&pfd, 1, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR) {
				ret = ops_error_set(err, OPS_EXIT_FAILED, "waiting for the database: %s",
						    ops_strerror(errno));
				goto out;
			}
			if (!PQconsumeInput(conn)) {
				clean_pq_message(&reason, PQerrorMessage(conn));
				ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "lost the database connection: %s",
						    reason.buf);
				goto out;
			}
		}
		r = PQgetResult(conn);
		if (!r)
			break;
		if (last)
			PQclear(last);
		last = r;
	}
	if (!last) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "the database returned no result");
		goto out;
	}
	if (PQresultStatus(last) != PGRES_COMMAND_OK && PQresultStatus(last) != PGRES_TUPLES_OK) {
		const char *primary = PQresultErrorField(last, PG_DIAG_MESSAGE_PRIMARY);
		fill_diag(diag, last);
		if (primary)
			strbuf_addstr(&reason, primary);
		else
			clean_pq_message(&reason, PQresultErrorMessage(last));
		ret = ops_error_set(err, OPS_EXIT_FAILED, "%s", reason.buf);
		PQclear(last);
		last = NULL;
		goto out;
	}
	*res = last;
	last = NULL;
out:
	if (last)
		PQclear(last);
	strbuf_release(&reason);
	return ret;
}

/* ---- cancelling from a signal handler ---- */

/* The one armed cancel key: swapped with SIGINT and SIGTERM blocked so a
 * handler never sees one being freed. */
static PGcancel *volatile cancel_slot;

static PGcancel *cancel_swap(PGcancel *c)
{
	sigset_t block, old;
	PGcancel *prev;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	prev = cancel_slot;
	cancel_slot = c;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return prev;
}

void db_cancel_arm(PGconn *conn)
{
	PGcancel *prev = cancel_swap(conn ? PQgetCancel(conn) : NULL);
	if (prev)
		PQfreeCancel(prev);
}

void db_cancel_disarm(void)
{
	db_cancel_arm(NULL);
}

/* Sent from a child (cancel_in_child): PQcancel's wait for a frozen or
 * unreachable server, in the handler, would hold off every later signal (a
 * second Ctrl-C among them). The handler waits for the child up to
 * CANCEL_FIRE_WAIT_MS, so that a server that answers has taken the cancel
 * before the run goes on (it must not land on a later statement); past
 * that, the child is left to give up by itself and to opsctl's exit. */
#define CANCEL_FIRE_WAIT_MS 2000

void db_cancel_fire(void)
{
	PGcancel *c = cancel_slot;
	int saved = errno;

	if (c)
		cancel_in_child(c, CANCEL_FIRE_WAIT_MS, NULL);
	errno = saved;
}

/* ---- COPY FROM STDIN ---- */

#define COPY_STALL_MS (10 * 60 * 1000)

/* Waits until the connection's socket is ready for events, at most stall_ms. */
static int copy_wait(PGconn *conn, short events, int64_t stall_ms, struct ops_error *err)
{
	struct pollfd pfd;
	int rc;

	pfd.fd = PQsocket(conn);
	pfd.events = events;
	pfd.revents = 0;
	do {
		rc = poll(&pfd, 1, (int)(stall_ms > 0 ? stall_ms : COPY_STALL_MS));
	} while (rc < 0 && errno == EINTR);
	if (rc == 0)
		return ops_error_set(err, OPS_EXIT_UNREACHABLE, "the server did not take the data for %llds",
				     (long long)((stall_ms > 0 ? stall_ms : COPY_STALL_MS) / 1000));
	if (rc < 0)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot wait for the server: %s", ops_strerror(errno));
	return 0;
}

static int copy_failed(PGconn *conn, const PGresult *r, struct ops_error *err)
{
	struct strbuf reason = STRBUF_INIT;
	int ret;

	const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *context = r ? PQresultErrorField(r, PG_DIAG_CONTEXT) : NULL;

	if (primary) {
		/* "invalid input syntax for type integer: "x" (COPY items, line 5, column id: "x")" */
		strbuf_addstr(&reason, primary);
		if (context && *context)
			strbuf_addf(&reason, " (%.*s)", (int)strcspn(context, "\n"), context);
	} else {
		clean_pq_message(&reason, r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
	}
	if (!reason.len)
		clean_pq_message(&reason, PQerrorMessage(conn));
	ret = ops_error_set(err, OPS_EXIT_FAILED, "%s", reason.len ? reason.buf : "COPY failed");
	strbuf_release(&reason);
	return ret;
}

/* The next result, waiting on the socket (never blocking without a bound). */
static int copy_result(PGconn *conn, int64_t stall_ms, PGresult **res, struct ops_error *err)
{
	int ret = 0;

	while (PQisBusy(conn)) {
		if ((ret = copy_wait(conn, POLLIN, stall_ms, err)) < 0)
			return ret;
		if (!PQconsumeInput(conn))
			return copy_failed(conn, NULL, err);
	}
	*res = PQgetResult(conn);
	return 0;
}

int db_copy_begin(PGconn *conn, const char *sql, int64_t stall_ms, struct ops_error *err)
{
	PGresult *r = NULL;
	int ret;

	if (!PQsendQuery(conn, sql))
		return copy_failed(conn, NULL, err);
	ret = copy_result(conn, stall_ms, &r, err);
	if (ret == 0 && (!r || PQresultStatus(r) != PGRES_COPY_IN))
		ret = copy_failed(conn, r, err);
	if (r)
		PQclear(r);
	if (ret == 0 && PQsetnonblocking(conn, 1) != 0)
		ret = copy_failed(conn, NULL, err);
	return ret;
}

int db_copy_put(PGconn *conn, const void *buf, size_t len, int64_t stall_ms, struct ops_error *err)
{
	const char *p = buf;

	while (len) {
		int chunk = len > (1 << 30) ? 1 << 30 : (int)len;
		int rc = PQputCopyData(conn, p, chunk);
		if (rc < 0)
			return copy_failed(conn, NULL, err);
		if (rc == 0) {
			/* libpq's buffer is full: wait for the server to read */
			int ret = copy_wait(conn, POLLOUT, stall_ms, err);
			if (ret < 0)
				return ret;
			if (PQflush(conn) < 0)
				return copy_failed(conn, NULL, err);
			continue;
		}
		p += chunk;
		len -= (size_t)chunk;
	}
	/* all of it in the socket before more is queued: otherwise libpq's
	 * buffer grows by whatever the server has not read yet, and what is left
	 * of it is moved down after every partial send (a restore spent most of
	 * its CPU in that memmove) */
	for (;;) {
		int rc = PQflush(conn), ret;
		if (rc < 0)
			return copy_failed(conn, NULL, err);
		if (rc == 0)
			return 0;
		if ((ret = copy_wait(conn, POLLOUT, stall_ms, err)) < 0)
			return ret;
	}
}

int db_copy_end(PGconn *conn, int64_t stall_ms, long long *rows, struct ops_error *err)
{
	PGresult *r = NULL;
	int rc, ret = 0;

	while ((rc = PQputCopyEnd(conn, NULL)) == 0)
		if ((ret = copy_wait(conn, POLLOUT, stall_ms, err)) < 0)
			return ret;
	if (rc < 0)
		return copy_failed(conn, NULL, err);
	while ((rc = PQflush(conn)) == 1)
		if ((ret = copy_wait(conn, POLLOUT, stall_ms, err)) < 0)
			return ret;
	if (rc < 0 || PQsetnonblocking(conn, 0) != 0)
		return copy_failed(conn, NULL, err);
	ret = copy_result(conn, stall_ms, &r, err);
	if (ret == 0 && (!r || PQresultStatus(r) != PGRES_COMMAND_OK))
		ret = copy_failed(conn, r, err);
	if (ret == 0 && rows)
		*rows = atoll(PQcmdTuples(r));
	if (r)
		PQclear(r);
	/* the end of the command's results */
	while (ret == 0 && (ret = copy_result(conn, stall_ms, &r, err)) == 0 && r) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			ret = copy_failed(conn, r, err);
		PQclear(r);
	}
	return ret;
}

int db_password_verifier(PGconn *conn, const char *role, const char *password, char **verifier,
			 struct ops_error *err)
{
	char *v = PQencryptPasswordConn(conn, password, role, NULL);
	struct strbuf reason = STRBUF_INIT;
	int ret = 0;

	*verifier = NULL;
	if (v) {
		*verifier = xstrdup(v);
		PQfreemem(v);
	} else {
		clean_pq_message(&reason, PQerrorMessage(conn));
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot compute the password verifier for role '%s': %s",
				    role, reason.buf);
	}
	strbuf_release(&reason);
	return ret;
}
