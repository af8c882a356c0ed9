/* Secret rotation: see secret.h. The run keeps what it changed (database,
 * env file, service) so that a failure undoes exactly that; the pending file
 * keeps the same for the next run when this one is killed. */
#include "engines/secret.h"
#include "adapters/json.h"
#include "adapters/db.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "engines/history.h"
#include "engines/probe.h"
#include "system/clock.h"
#include "system/fs.h"
#include "system/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- settings ---- */

void sec_settings_init(struct sec_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->bytes = SEC_DEFAULT_BYTES;
	s->connect_timeout_ms = 10000;
	s->service_timeout_ms = 120000;
	s->wait_ms = 90000;
	s->interval_ms = 1000;
	s->consecutive = 1;
}

static void free_words(char **w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

void sec_settings_release(struct sec_settings *s)
{
	free(s->name);
	free(s->env_key);
	free(s->previous_env);
	free(s->role);
	free(s->role_a);
	free(s->role_b);
	free(s->owner);
	free(s->user_env);
	free(s->admin_url);
	free(s->env_file);
	free(s->state_dir);
	free(s->config_path);
	free(s->restart);
	free_words(s->checks, s->nchecks);
	memset(s, 0, sizeof(*s));
}


size_t sec_names(const struct config *cfg, const char ***names)
{
	*names = NULL;
	return cfg ? config_subsections(cfg, "secret", names) : 0;
}

const char *sec_kind_name(enum sec_kind k)
{
	return k == SEC_POSTGRES_PASSWORD ? "postgres-password" : "random";
}

const char *sec_encoding_name(enum sec_encoding e)
{
	return e == SEC_HEX ? "hex" : e == SEC_BASE64URL ? "base64url" : "base64";
}

static char *get_dup(const struct config *cfg, const char *name, const char *key)
{
	const char *v = config_get(cfg, "secret", name, key);
	return v && *v ? xstrdup(v) : NULL;
}

/* A key of the section that must name an env-file key. */
static int env_key_setting(const struct config *cfg, const char *name, const char *key, char **out,
			   struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "secret", name, key);
	*out = NULL;
	if (!e || !*e->value)
		return 0;
	if (!envfile_key_valid(e->value))
		return config_error(cfg, e, err, "'%s' is not an env file key (letters, digits, '_', '.')", e->value);
	*out = xstrdup(e->value);
	return 0;
}

static int role_setting(const struct config *cfg, const char *name, const char *key, char **out,
			struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "secret", name, key);
	*out = NULL;
	if (!e || !*e->value)
		return 0;
	if (strlen(e->value) >= 64)
		return config_error(cfg, e, err, "role name '%s' is longer than PostgreSQL allows", e->value);
	*out = xstrdup(e->value);
	return 0;
}

static int missing(const struct config *cfg, const char *name, const char *what, struct ops_error *err)
{
	int ret = ops_error_set(err, OPS_EXIT_CONFIG, "[secret \"%s\"] in '%s' needs %s", name,
				cfg->path ? cfg->path : "the config", what);
	return ret;
}

static int load_kind(struct sec_settings *s, const struct config *cfg, const char *name, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "secret", name, "kind");
	if (!e || !strcmp(e->value, "random")) {
		s->kind = SEC_RANDOM;
	} else if (!strcmp(e->value, "postgres-password")) {
		s->kind = SEC_POSTGRES_PASSWORD;
		s->bytes = SEC_DEFAULT_PG_BYTES;
		s->encoding = SEC_BASE64URL;
	} else {
		return config_error(cfg, e, err, "unknown kind '%s' (expected random or postgres-password)", e->value);
	}
	e = config_find_entry(cfg, "secret", name, "encoding");
	if (e) {
		if (!strcmp(e->value, "base64"))
			s->encoding = SEC_BASE64;
		else if (!strcmp(e->value, "base64url"))
			s->encoding = SEC_BASE64URL;
		else if (!strcmp(e->value, "hex"))
			s->encoding = SEC_HEX;
		else
			return config_error(cfg, e, err, "unknown encoding '%s' (expected base64, base64url or hex)",
					    e->value);
	}
	if (config_find_entry(cfg, "secret", name, "bytes")) {
		long n;
		if (config_get_int(cfg, "secret", name, "bytes", SEC_MIN_BYTES, SEC_MAX_BYTES, &n, err) < 0)
			return -err->code;
		s->bytes = (size_t)n;
	}
	return 0;
}

static int load_postgres(struct sec_settings *s, const struct config *cfg, const char *name, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "secret", name, "strategy");
	int ret;

	if (s->previous_env) {
		e = config_find_entry(cfg, "secret", name, "previous_env");
		return config_error(cfg, e, err, "previous_env is for kind = random: an old password stops working");
	}
	s->strategy = SEC_SINGLE;
	if (e && !strcmp(e->value, "alternating"))
		s->strategy = SEC_ALTERNATING;
	else if (e && strcmp(e->value, "single"))
		return config_error(cfg, e, err, "unknown strategy '%s' (expected single or alternating)", e->value);
	if ((ret = role_setting(cfg, name, "role", &s->role, err)) < 0 ||
	    (ret = role_setting(cfg, name, "role_a", &s->role_a, err)) < 0 ||
	    (ret = role_setting(cfg, name, "role_b", &s->role_b, err)) < 0 ||
	    (ret = role_setting(cfg, name, "owner", &s->owner, err)) < 0 ||
	    (ret = env_key_setting(cfg, name, "user_env", &s->user_env, err)) < 0)
		return ret;
	if (s->strategy == SEC_SINGLE && !s->role)
		return missing(cfg, name, "role = NAME (the role whose password changes)", err);
	if (s->strategy == SEC_ALTERNATING) {
		if (!s->role_a || !s->role_b)
			return missing(cfg, name, "role_a and role_b (strategy = alternating)", err);
		if (!strcmp(s->role_a, s->role_b))
			return missing(cfg, name, "two different roles in role_a and role_b", err);
		if (!s->user_env)
			s->user_env = xstrdup("DB_USER");
		if (!strcmp(s->user_env, s->env_key))
			return missing(cfg, name, "user_env and env naming different keys", err);
	}
	s->admin_url = get_dup(cfg, name, "admin_url");
	return 0;
}

int sec_settings_load(struct sec_settings *s, const struct config *cfg, const char *name, struct ops_error *err)
{
	int restart = 1, ret;
	const char *checks;

	if (!config_has_subsection(cfg, "secret", name)) {
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "no [secret \"%s\"] in '%s'", name,
				    cfg && cfg->path ? cfg->path : "the config");
		ops_error_hint(err, "'opsctl rotate-secret --list' shows the secrets the config defines");
		return ret;
	}
	s->name = xstrdup(name);
	s->cfg = cfg;
	if ((ret = env_key_setting(cfg, name, "env", &s->env_key, err)) < 0)
		return ret;
	if (!s->env_key)
		return missing(cfg, name, "env = KEY (the env file key that holds the value)", err);
	if ((ret = env_key_setting(cfg, name, "previous_env", &s->previous_env, err)) < 0 ||
	    (ret = load_kind(s, cfg, name, err)) < 0)
		return ret;
	if (s->previous_env && !strcmp(s->previous_env, s->env_key))
		return missing(cfg, name, "previous_env and env naming different keys", err);
	if (s->kind == SEC_POSTGRES_PASSWORD && (ret = load_postgres(s, cfg, name, err)) < 0)
		return ret;
	if (config_get_bool(cfg, "secret", name, "restart", &restart, err) < 0 ||
	    config_get_duration_ms(cfg, "service", NULL, "timeout", &s->service_timeout_ms, err) < 0 ||
	    config_get_duration_ms(cfg, "health", NULL, "wait", &s->wait_ms, err) < 0 ||
	    config_get_duration_ms(cfg, "health", NULL, "interval", &s->interval_ms, err) < 0 ||
	    config_get_duration_ms(cfg, "health", NULL, "timeout", &s->probe_timeout_ms, err) < 0 ||
	    config_get_int(cfg, "health", NULL, "consecutive", 1, 1000, &s->consecutive, err) < 0 ||
	    config_get_duration_ms(cfg, "database", NULL, "connect_timeout", &s->connect_timeout_ms, err) < 0)
		return -err->code;
	s->restart_off = !restart;
	if (restart) {
		const char *v = config_get(cfg, "service", NULL, "restart");
		s->restart = v && *v ? xstrdup(v) : NULL;
	}
	checks = config_get(cfg, "secret", name, "checks");
	if (!checks)
		checks = config_get(cfg, "deploy", NULL, "checks");
	parse_words(checks, &s->checks, &s->nchecks);
	return 0;
}

/* ---- values ---- */

void sec_wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void wipe_strbuf(struct strbuf *sb)
{
	strbuf_release_secret(sb);
}

int sec_generate(size_t n, enum sec_encoding enc, char **out, struct ops_error *err)
{
	unsigned char *raw = xmalloc(n ? n : 1);
	size_t got = 0, cap = 4 * ((n + 2) / 3) + 2 * n + 1;
	char *s = xmalloc(cap);
	int ret = 0;

	*out = NULL;
	while (got < n) {
		ssize_t k = getrandom(raw + got, n - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read random bytes: %s", strerror(errno));
			goto out;
		}
		got += (size_t)k;
	}
	if (enc == SEC_HEX) {
		static const char digits[] = "0123456789abcdef";
		for (size_t i = 0; i < n; i++) {
			s[2 * i] = digits[raw[i] >> 4];
			s[2 * i + 1] = digits[raw[i] & 15];
		}
		s[2 * n] = '\0';
	} else {
		int len = EVP_EncodeBlock((unsigned char *)s, raw, (int)n);
		s[len] = '\0';
		if (enc == SEC_BASE64URL) {
			/* RFC 4648 section 5, without padding */
			for (int i = 0; i < len; i++)
				s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
			while (len && s[len - 1] == '=')
				s[--len] = '\0';
		}
	}
	*out = s;
	s = NULL;
out:
	explicit_bzero(raw, n);
	free(raw);
	if (s) {
		explicit_bzero(s, cap);
		free(s);
	}
	return ret;
}

/* "" (no value) is null in the JSON */
static const char *fp_or_null(const char *fp)
{
	return fp && *fp ? fp : NULL;
}

static void fingerprint(const char *value, char out[20])
{
	if (value)
		history_fingerprint(value, strlen(value), out);
	else
		out[0] = '\0';
}

/* ---- results ---- */

void sec_result_init(struct sec_result *r)
{
	memset(r, 0, sizeof(*r));
	r->steps = cJSON_CreateArray();
	r->started_ms = clock_now_ms();
}

void sec_result_release(struct sec_result *r)
{
	free(r->name);
	free(r->kind);
	free(r->strategy);
	free(r->env_key);
	free(r->env_file);
	free(r->role);
	free(r->previous_role);
	free(r->rotated_at);
	free(r->outcome);
	free(r->gate);
	cJSON_Delete(r->steps);
	cJSON_Delete(r->recovered);
	cJSON_Delete(r->plan);
	cJSON_Delete(r->setup);
	sec_wipe_free(r->shown);
	memset(r, 0, sizeof(*r));
}

cJSON *sec_result_fields(const struct sec_result *r, int code, const char *error_msg)
{
	cJSON *o = cJSON_CreateObject();

	json_set_str(o, "secret", r->name);
	json_set_str(o, "kind", r->kind);
	json_set_str(o, "strategy", r->strategy);
	json_set_str(o, "env", r->env_key);
	json_set_str(o, "env_file", r->env_file);
	json_set_str(o, "role", r->role);
	json_set_str(o, "previous_role", r->previous_role);
	json_set_str(o, "fingerprint", fp_or_null(r->fingerprint));
	json_set_str(o, "previous_fingerprint", fp_or_null(r->previous_fingerprint));
	json_set_str(o, "rotated_at", r->rotated_at);
	json_set_str(o, "outcome", r->outcome);
	cJSON_AddBoolToObject(o, "restarted", r->restarted);
	json_set_str(o, "gate", r->gate);
	cJSON_AddNumberToObject(o, "duration_ms", (double)(clock_now_ms() - r->started_ms));
	if (code && error_msg)
		cJSON_AddStringToObject(o, "error", error_msg);
	return o;
}

static void set_str(char **field, const char *v)
{
	free(*field);
	*field = v ? xstrdup(v) : NULL;
}

/* ---- the run ---- */

struct run {
	const struct sec_settings *s;
	const struct sec_rotate_opts *o;
	const struct sec_callbacks *cb;
	struct sec_result *res;
	struct ops_error *err;
	char *env_path;             /* the env file with links resolved */
	struct strbuf env_before;   /* its bytes when we started (secret) */
	struct envfile env;         /* parsed env_before */
	char *new_value, *old_value, *old_previous;
	char *role, *old_user;      /* the role whose password is set; the user before */
	int db_set, env_written, restart_ran;
	struct db_target admin;
	int have_admin;
	PGconn *conn;
	char *secrets_dir, *pending_path, *state_path;
	cJSON *pending;             /* holds values: wiped */
	const char *step_name;
	int64_t step_started;
};

static const struct sec_callbacks no_callbacks;

static void ev(const struct run *r, enum ops_event kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

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

static int wipe_json_string(cJSON *item)
{
	for (cJSON *c = item ? item->child : NULL; c; c = c->next) {
		if (cJSON_IsString(c) && c->valuestring)
			explicit_bzero(c->valuestring, strlen(c->valuestring));
		else if (c->child)
			wipe_json_string(c);
	}
	return 0;
}

static void pending_free(cJSON **p)
{
	if (*p) {
		wipe_json_string(*p);
		cJSON_Delete(*p);
		*p = NULL;
	}
}

static void run_init(struct run *r, const struct sec_settings *s, const struct sec_rotate_opts *o,
		     const struct sec_callbacks *cb, struct sec_result *res, struct ops_error *err)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->o = o;
	r->cb = cb ? cb : &no_callbacks;
	r->res = res;
	r->err = err;
	strbuf_init(&r->env_before, 0);
	envfile_init(&r->env);
	r->secrets_dir = xstrfmt("%s/secrets", s->state_dir);
}

static void run_reset_secret(struct run *r)
{
	sec_wipe_free(r->new_value);
	sec_wipe_free(r->old_value);
	sec_wipe_free(r->old_previous);
	r->new_value = r->old_value = r->old_previous = NULL;
	free(r->role);
	free(r->old_user);
	r->role = r->old_user = NULL;
	free(r->env_path);
	r->env_path = NULL;
	wipe_strbuf(&r->env_before);
	strbuf_init(&r->env_before, 0);
	envfile_release(&r->env);
	envfile_init(&r->env);
	free(r->pending_path);
	free(r->state_path);
	r->pending_path = r->state_path = NULL;
	pending_free(&r->pending);
	r->db_set = r->env_written = r->restart_ran = 0;
}

static void run_close_db(struct run *r)
{
	if (r->conn)
		PQfinish(r->conn);
	r->conn = NULL;
	if (r->have_admin)
		db_target_release(&r->admin);
	r->have_admin = 0;
}

static void run_release(struct run *r)
{
	run_reset_secret(r);
	run_close_db(r);
	free(r->secrets_dir);
	wipe_strbuf(&r->env_before);
	envfile_release(&r->env);
}

static void step_begin(struct run *r, const char *name)
{
	r->step_name = name;
	r->step_started = clock_now_ms();
	ev(r, OPS_EVENT_VERBOSE, "step %s", name);
}

static void step_end(struct run *r, const char *status)
{
	cJSON *st;
	if (!r->step_name)
		return;
	st = cJSON_CreateObject();
	cJSON_AddStringToObject(st, "step", r->step_name);
	cJSON_AddNumberToObject(st, "ms", (double)(clock_now_ms() - r->step_started));
	cJSON_AddStringToObject(st, "status", status);
	cJSON_AddItemToArray(r->res->steps, st);
	r->step_name = NULL;
}

/* OPSCTL_TEST_KILL_AT=STEP: die right after STEP is recorded (tests of the
 * recovery). */
static void test_kill_at(const char *step)
{
	const char *at = getenv("OPSCTL_TEST_KILL_AT");
	if (at && !strcmp(at, step))
		raise(SIGKILL);
}

/* ---- the pending file ---- */

static int write_json_0600(const char *path, const cJSON *doc, struct ops_error *err)
{
	char *text = cJSON_Print(doc);
	size_t len = strlen(text);
	int ret;

	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	text[len] = '\0';
	ret = fs_write_atomic(path, text, len, 0600, err);
	explicit_bzero(text, len);
	free(text);
	return ret;
}

/* Records that step is done (the pending file, fsynced), then the kill hook. */
static int pending_step(struct run *r, const char *step)
{
	int ret;
	cJSON_DeleteItemFromObjectCaseSensitive(r->pending, "step");
	cJSON_AddStringToObject(r->pending, "step", step);
	ret = write_json_0600(r->pending_path, r->pending, r->err);
	if (ret == 0)
		test_kill_at(step);
	return ret;
}

/* Removes the pending file, then overwrites its bytes with zeros through
 * the descriptor still open: a run killed half way never leaves a zeroed
 * (unreadable) pending file behind that would block every later run. */
static int pending_wipe(const char *path, struct ops_error *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	char *dir;
	int ret;

	if (unlink(path) < 0 && errno != ENOENT) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	dir = xstrdup(path);
	*strrchr(dir, '/') = '\0';
	ret = fs_fsync_dir(dir, err);
	free(dir);
	test_kill_at("wipe");
	if (fd >= 0) {
		fs_zero_fd(fd);
		close(fd);
	}
	return ret;
}

/* ---- the env file ---- */

/* Resolves the env file (a link such as current/.env is followed, so the
 * file is replaced, not the link) and reads it. */
static int env_read(struct run *r, const char *configured)
{
	char resolved[PATH_MAX];
	int ret;

	if (!configured) {
		ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "rotate-secret needs the app's env file");
		ops_error_hint(r->err, "set [app] env_file or pass --env-file FILE");
		return ret;
	}
	if (!realpath(configured, resolved))
		return ops_error_set(r->err, OPS_EXIT_CONFIG, "cannot read env file '%s': %s", configured, strerror(errno));
	free(r->env_path);
	r->env_path = xstrdup(resolved);
	wipe_strbuf(&r->env_before);
	strbuf_init(&r->env_before, 0);
	if ((ret = fs_read_file(r->env_path, &r->env_before, 1 << 20, r->err)) < 0)
		return ret;
	envfile_release(&r->env);
	envfile_init(&r->env);
	return envfile_parse(&r->env, r->env_path, r->env_before.buf, r->env_before.len, r->err);
}

/* The env file must be writable by its owner (even for root: a file made
 * read-only is a decision) and its directory writable (the new file is
 * renamed into it). */
static int env_check_writable(struct run *r)
{
	struct stat st;
	char *dir = xstrdup(r->env_path);
	int ret = 0;

	*strrchr(dir, '/') = '\0';
	if (stat(r->env_path, &st) < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "cannot read env file '%s': %s", r->env_path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "env file '%s' is not a regular file", r->env_path);
	} else if (!(st.st_mode & S_IWUSR) || access(r->env_path, W_OK) < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "env file '%s' is read-only (mode %04o)", r->env_path,
				    (unsigned)(st.st_mode & 07777));
		ops_error_hint(r->err, "nothing was changed; make it writable (chmod u+w) to rotate its secrets");
	} else if (access(dir, W_OK | X_OK) < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot write in '%s' (the env file is replaced there): %s",
				    *dir ? dir : "/", strerror(errno));
		ops_error_hint(r->err, "nothing was changed");
	}
	free(dir);
	return ret;
}

/* The env file's bytes with the new value (and user, previous value) set. */
static void env_after(struct run *r, const char *env_key, const char *value, const char *prev_key,
		      const char *prev_value, const char *user_key, const char *user, struct strbuf *out)
{
	struct envfile e;
	struct ops_error ignored = OPS_ERROR_INIT;

	envfile_init(&e);
	/* it parsed a moment ago */
	envfile_parse(&e, r->env_path, r->env_before.buf, r->env_before.len, &ignored);
	envfile_set(&e, env_key, value);
	if (prev_key && prev_value)
		envfile_set(&e, prev_key, prev_value);
	if (user_key && user)
		envfile_set(&e, user_key, user);
	envfile_serialize(&e, out);
	envfile_release(&e);
	ops_error_release(&ignored);
}

/* ---- the database ---- */

static int admin_target(struct run *r, const char *admin_url, const struct envfile *env)
{
	int ret;
	if (r->have_admin)
		return 0;
	ret = admin_url ? db_target_from_url(&r->admin, admin_url, "[secret] admin_url", r->err)
			: db_resolve(&r->admin, r->s->db_url, r->s->cfg, env, r->err);
	if (ret == 0)
		r->have_admin = 1;
	return ret;
}

/* Connects as the admin. When that is refused and other_password is given
 * (a recovery: the admin may be the very role whose password was being
 * changed), tries once more with it. */
static int admin_connect(struct run *r, const char *other_password)
{
	int ret;
	if (r->conn)
		return 0;
	ret = db_connect(&r->conn, &r->admin, "opsctl rotate-secret", r->s->connect_timeout_ms, r->err);
	if (ret == -OPS_EXIT_FAILED && other_password) {
		struct db_target t;
		struct ops_error second = OPS_ERROR_INIT;
		db_target_with_login(&t, &r->admin, NULL, NULL, other_password);
		if (db_connect(&r->conn, &t, "opsctl rotate-secret", r->s->connect_timeout_ms, &second) == 0)
			ret = 0;
		db_target_release(&t);
		ops_error_release(&second);
	}
	return ret;
}

static int role_exists(struct run *r, const char *role, int *exists)
{
	const char *params[1] = { role };
	PGresult *res = NULL;
	int ret = db_exec(r->conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", 1, params, 30000, &res,
			  r->err);
	if (ret == 0)
		*exists = PQntuples(res) > 0;
	PQclear(res);
	return ret;
}

static int require_role(struct run *r, const char *role)
{
	int exists = 0, ret;
	if ((ret = role_exists(r, role, &exists)) < 0)
		return ret;
	if (!exists) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "role '%s' does not exist on '%s'", role, r->admin.display);
		ops_error_hint(r->err, r->s->strategy == SEC_ALTERNATING
					       ? "'opsctl rotate-secret NAME --setup' creates the two roles"
					       : "create it, or fix [secret] role; nothing was changed");
	}
	return ret;
}

/* ALTER ROLE role PASSWORD 'verifier': the plaintext stays here. */
static int set_password(struct run *r, const char *role, const char *password)
{
	char *verifier = NULL, *lit = NULL, *ident = NULL, *sql = NULL;
	PGresult *res = NULL;
	int ret;

	if ((ret = db_password_verifier(r->conn, role, password, &verifier, r->err)) < 0)
		goto out;
	ident = PQescapeIdentifier(r->conn, role, strlen(role));
	lit = PQescapeLiteral(r->conn, verifier, strlen(verifier));
	if (!ident || !lit) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot quote role '%s': %s", role, PQerrorMessage(r->conn));
		goto out;
	}
	sql = xstrfmt("ALTER ROLE %s PASSWORD %s", ident, lit);
	ret = db_exec(r->conn, sql, 0, NULL, 60000, &res, r->err);
	if (ret < 0)
		ops_error_prefix(r->err, "cannot set the password of role '%s'", role);
out:
	PQclear(res);
	free(sql);
	PQfreemem(ident);
	PQfreemem(lit);
	sec_wipe_free(verifier);
	return ret;
}

/* A fresh connection as role with password, to the admin's server and
 * database: proves the password before anything else changes. */
static int test_login(struct run *r, const char *role, const char *password)
{
	struct db_target t;
	PGconn *conn = NULL;
	int ret;

	db_target_with_login(&t, &r->admin, NULL, role, password);
	ret = db_connect(&conn, &t, "opsctl rotate-secret test", r->s->connect_timeout_ms, r->err);
	if (ret < 0) {
		ops_error_prefix(r->err, "the new password of role '%s' does not work", role);
	} else if (!PQconnectionUsedPassword(conn)) {
		ev(r, OPS_EVENT_WARNING,
		   "the server let role '%s' in without asking for a password (trust authentication?): the test proves only that it can log in",
		   role);
	}
	if (conn)
		PQfinish(conn);
	db_target_release(&t);
	return ret;
}

/* ---- the service ---- */

/* The restart's pid (and start time) in the pending file: a recovery waits
 * for a restart that a killed run left running before it restarts the
 * service itself (two restarts at once can leave it stopped). */
static void note_restart_pid(pid_t pid, void *data)
{
	struct run *r = data;
	struct ops_error ignored = OPS_ERROR_INIT;

	if (!r->pending || !r->pending_path || !fs_exists(r->pending_path))
		return;
	cJSON_DeleteItemFromObjectCaseSensitive(r->pending, "restart_pid");
	cJSON_DeleteItemFromObjectCaseSensitive(r->pending, "restart_ticks");
	cJSON_AddNumberToObject(r->pending, "restart_pid", (double)pid);
	cJSON_AddNumberToObject(r->pending, "restart_ticks", (double)proc_start_ticks(pid));
	write_json_0600(r->pending_path, r->pending, &ignored);
	ops_error_release(&ignored);
}

static int restart_service(struct run *r)
{
	struct proc_opts po;
	struct proc_result pr;
	int ret;

	memset(&po, 0, sizeof(po));
	po.timeout_ms = r->s->service_timeout_ms;
	po.on_start = note_restart_pid;
	po.on_start_data = r;
	ev(r, OPS_EVENT_INFO, "restarting: %s", r->s->restart);
	r->restart_ran = 1;
	ret = proc_run_shell_checked(r->s->restart, &po, &pr, r->err);
	if (ret < 0)
		ops_error_prefix(r->err, "[service] restart");
	return ret;
}

static int on_round(const struct probe_set *set, unsigned round, int64_t elapsed_ms, void *data)
{
	struct run *r = data;
	if (set) {
		size_t ok = 0;
		for (size_t i = 0; i < set->nr; i++)
			ok += set->items[i].state <= PROBE_WARN;
		ev(r, OPS_EVENT_PROGRESS, "gate: %zu/%zu checks passing after %.1fs (round %u)", ok, set->nr,
		   (double)elapsed_ms / 1000.0, round);
	}
	return stop_signal(r);
}

static void gate_opts(struct run *r, const struct config *cfg, const struct envfile *env, struct probe_gate *g)
{
	memset(g, 0, sizeof(*g));
	g->cfg = cfg;
	g->env = env;
	g->names = r->s->checks;
	g->nnames = r->s->nchecks;
	g->names_from = "the secret's checks";
	g->timeout_ms = r->s->probe_timeout_ms;
	g->wait_ms = r->s->wait_ms;
	g->interval_ms = r->s->interval_ms;
	g->consecutive = (unsigned)r->s->consecutive;
	g->on_round = on_round;
	g->data = r;
}

/* The gate with the env file as it is now: the config is read again so
 * ${VAR} in it (a database URL's password) sees the new value. */
static int gate(struct run *r, const char *when)
{
	struct envfile env;
	struct config cfg;
	struct probe_gate g;
	struct strbuf why = STRBUF_INIT;
	int have_cfg = 0, ret;

	envfile_init(&env);
	config_init(&cfg);
	if ((ret = envfile_load(&env, r->env_path, r->err)) < 0)
		goto out;
	if (r->s->config_path) {
		if ((ret = config_load(&cfg, r->s->config_path, &env, r->err)) < 0)
			goto out;
		have_cfg = 1;
	}
	gate_opts(r, have_cfg ? &cfg : r->s->cfg, &env, &g);
	ret = probe_gate_run(&g, &why, r->err);
	ev(r, OPS_EVENT_PROGRESS_DONE, "%s", "");
	if (ret == 2) {
		ev(r, OPS_EVENT_WARNING, "no [check] sections: nothing proves the app works %s", when);
		set_str(&r->res->gate, "none");
		ret = 0;
	} else if (ret == 1) {
		set_str(&r->res->gate, "failed");
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "health gate failed %s: %s", when, why.buf);
	} else if (ret == 0) {
		set_str(&r->res->gate, "passed");
	}
out:
	strbuf_release(&why);
	config_release(&cfg);
	envfile_release(&env);
	return ret;
}

/* ---- state files ---- */

static void paths_for(struct run *r, const char *name)
{
	free(r->pending_path);
	free(r->state_path);
	r->pending_path = xstrfmt("%s/%s.pending.json", r->secrets_dir, name);
	r->state_path = xstrfmt("%s/%s.json", r->secrets_dir, name);
}

static cJSON *read_json(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	struct ops_error ignored = OPS_ERROR_INIT;
	cJSON *doc = NULL;

	if (fs_read_file(path, &sb, 1 << 22, &ignored) == 0)
		doc = cJSON_Parse(sb.buf);
	wipe_strbuf(&sb);
	ops_error_release(&ignored);
	return doc;
}

/* STATE/secrets/NAME.json: fingerprints and times, never a value. */
static int write_state(struct run *r, const char *name, const char *fp, const char *prev_fp, const char *role)
{
	cJSON *doc = cJSON_CreateObject();
	char now[32];
	int ret;

	clock_rfc3339(now, time(NULL));
	cJSON_AddStringToObject(doc, "secret", name);
	json_set_str(doc, "kind", r->res->kind);
	json_set_str(doc, "env", r->res->env_key);
	json_set_str(doc, "fingerprint", fp_or_null(fp));
	json_set_str(doc, "previous_fingerprint", fp_or_null(prev_fp));
	cJSON_AddStringToObject(doc, "rotated_at", now);
	json_set_str(doc, "role", role);
	set_str(&r->res->rotated_at, now);
	ret = write_json_0600(r->state_path, doc, r->err);
	cJSON_Delete(doc);
	return ret;
}

static void record(struct run *r, int code, const char *action)
{
	struct ops_error ignored = OPS_ERROR_INIT;
	cJSON *fields = sec_result_fields(r->res, code, code ? r->err->msg.buf : NULL);

	if (r->res->outcome)
		cJSON_AddStringToObject(fields, "result", r->res->outcome);
	if (action)
		cJSON_AddStringToObject(fields, "recovery", action);
	if (r->o && r->o->reason)
		cJSON_AddStringToObject(fields, "reason", r->o->reason);
	if (history_append(r->s->state_dir, "rotate-secret", code, fields, &ignored) < 0)
		ev(r, OPS_EVENT_WARNING, "cannot write the history: %s", ignored.msg.buf);
	ops_error_release(&ignored);
}

/* ---- undoing ---- */

/* The old password set again over the admin connection. When the server
 * restarted meanwhile (the session is gone, the server is back), once more
 * over a new connection: else the role keeps a password only the pending
 * file knows. */
static int set_old_password(struct run *r)
{
	if (admin_connect(r, r->new_value) == 0 && set_password(r, r->role, r->old_value) == 0)
		return 0;
	if (!r->conn || PQstatus(r->conn) != CONNECTION_BAD)
		return -1;
	PQfinish(r->conn);
	r->conn = NULL;
	ops_error_clear(r->err);
	if (admin_connect(r, r->new_value) == 0 && set_password(r, r->role, r->old_value) == 0)
		return 0;
	return -1;
}

/* Puts the old value back wherever this run (or the killed one whose
 * pending file is loaded) changed it, then restarts the service if it had
 * been restarted. Errors are reported as events. 0 when everything is back;
 * 1 when the values are back but the service did not restart; -1 when a
 * value could not be put back (the pending file stays). */
static int revert(struct run *r, const char *why)
{
	struct ops_error e = OPS_ERROR_INIT;
	struct ops_error *saved = r->err;
	int failures = 0, restart_failed = 0;

	r->err = &e;
	ev(r, OPS_EVENT_INFO, "putting the old value back (%s)", why);
	if (r->restart_ran && r->s->restart && r->pending && r->pending_path && fs_exists(r->pending_path) &&
	    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->pending, "restart_ran"))) {
		/* a run killed from here on leaves the env file with the old value
		 * while the service may run with the new one: its recovery must
		 * restart the service again */
		cJSON_AddBoolToObject(r->pending, "restart_ran", 1);
		if (write_json_0600(r->pending_path, r->pending, &e) < 0)
			ev(r, OPS_EVENT_WARNING, "%s", e.msg.buf);
		ops_error_release(&e);
	}
	if (r->env_written) {
		/* a write that failed before its rename left the file as it was
		 * (and a full disk would refuse this one too) */
		struct strbuf now = STRBUF_INIT;
		if (fs_read_file(r->env_path, &now, 1 << 20, &e) == 0 && now.len == r->env_before.len &&
		    !memcmp(now.buf, r->env_before.buf, now.len))
			r->env_written = 0;
		wipe_strbuf(&now);
		ops_error_release(&e);
	}
	if (r->env_written) {
		if (fs_write_atomic(r->env_path, r->env_before.buf, r->env_before.len, -1, &e) < 0) {
			ev(r, OPS_EVENT_ERROR, "cannot restore the env file: %s", e.msg.buf);
			failures++;
		} else {
			r->env_written = 0;
		}
		ops_error_release(&e);
	}
	if (r->conn && PQstatus(r->conn) != CONNECTION_OK) {
		PQfinish(r->conn);
		r->conn = NULL;
	}
	if (r->db_set && r->role) {
		const char *strategy = json_get_str(r->pending, "strategy");
		if (strategy && !strcmp(strategy, "alternating")) {
			/* nothing uses the inactive role's new password: it stays */
			r->db_set = 0;
		} else if (!r->old_value) {
			ev(r, OPS_EVENT_ERROR, "the old password of role '%s' is not known: it cannot be set again", r->role);
			failures++;
		} else if (set_old_password(r) < 0) {
			ev(r, OPS_EVENT_ERROR, "cannot set the old password of role '%s' again: %s", r->role, e.msg.buf);
			failures++;
		} else {
			r->db_set = 0;
		}
		ops_error_release(&e);
	}
	test_kill_at("reverting");
	if (r->restart_ran && r->s->restart) {
		if (restart_service(r) < 0) {
			ev(r, OPS_EVENT_ERROR, "the service did not restart with the old value: %s", e.msg.buf);
			restart_failed = 1;
		}
		ops_error_release(&e);
	}
	/* the values are back (or not): the pending file goes only when they
	 * are, and after the service was restarted with them */
	if (!failures && r->pending_path && pending_wipe(r->pending_path, &e) < 0) {
		ev(r, OPS_EVENT_ERROR, "%s", e.msg.buf);
		failures++;
	}
	ops_error_release(&e);
	r->err = saved;
	return failures ? -1 : restart_failed;
}

/* After a failure at a step: revert, and say in the hint where things are. */
static int fail_and_revert(struct run *r, int ret)
{
	int code = -ret == OPS_EXIT_ABORTED ? OPS_EXIT_ABORTED : OPS_EXIT_FAILED;
	int back = revert(r, r->err->msg.buf);

	if (back >= 0) {
		/* what is in force now */
		fingerprint(r->old_value, r->res->fingerprint);
	}
	if (back == 0) {
		ops_error_hint(r->err, "the old value is back in place; nothing else was changed");
		set_str(&r->res->outcome, "reverted");
	} else if (back == 1) {
		ops_error_hint(r->err, "the old value is back in place, but the service did not restart with it (see above)");
		set_str(&r->res->outcome, "reverted");
	} else {
		ops_error_hint(r->err, "putting the old value back failed too (see above); the values are kept in '%s' (mode 0600): fix the cause, then run 'opsctl rotate-secret --recover'",
			       r->pending_path);
		set_str(&r->res->outcome, "failed");
		code = OPS_EXIT_FAILED;
	}
	r->err->code = code;
	return -code;
}

/* ---- recovery ---- */

static char *jdup(const cJSON *o, const char *key)
{
	const char *v = json_get_str(o, key);
	return v ? xstrdup(v) : NULL;
}

/* Loads a pending file into the run: the values and what had been done. */
static int load_pending(struct run *r, const char *path)
{
	cJSON *doc = read_json(path);
	const char *step, *env_file;
	int ret;

	if (!doc || !cJSON_IsObject(doc) || !json_get_str(doc, "new") || !json_get_str(doc, "env") ||
	    !(env_file = json_get_str(doc, "env_file"))) {
		pending_free(&doc);
		return ops_error_set(r->err, OPS_EXIT_FAILED, "cannot read the rotation state '%s'", path);
	}
	r->pending = doc;
	r->new_value = jdup(doc, "new");
	r->old_value = jdup(doc, "old");
	r->old_previous = jdup(doc, "old_previous");
	r->role = jdup(doc, "role");
	r->old_user = jdup(doc, "old_user");
	step = json_get_str(doc, "step");
	r->db_set = r->role != NULL;   /* the kill may have come between ALTER ROLE and the record */
	r->restart_ran = step && (!strcmp(step, "restarted") || !strcmp(step, "gated") || !strcmp(step, "written"));
	/* the env file as the killed run found it */
	wipe_strbuf(&r->env_before);
	strbuf_init(&r->env_before, 0);
	if (json_get_str(doc, "env_before"))
		strbuf_addstr(&r->env_before, json_get_str(doc, "env_before"));
	r->env_path = xstrdup(env_file);
	/* the killed run's env file write, if it was cut short before its rename */
	fs_remove_stale_tmp(r->env_path, 1);
	ret = 0;
	return ret;
}

/* A killed run of secret name: finishes it when the env file already holds
 * the new value, else undoes it. 0 when the secret is consistent again
 * (*action says how), < 0 when not (the pending file stays). */
static int recover_one(struct run *r, const struct sec_settings *s_named, const char *name, const char **action)
{
	const struct sec_settings *saved_s = r->s;
	struct envfile now;
	const char *cur, *step, *key;
	int ret, holds_new;

	*action = NULL;
	paths_for(r, name);
	if ((ret = load_pending(r, r->pending_path)) < 0)
		return ret;
	step = json_get_str(r->pending, "step");
	key = json_get_str(r->pending, "env");
	envfile_init(&now);
	if ((ret = envfile_load(&now, r->env_path, r->err)) < 0) {
		envfile_release(&now);
		return ret;
	}
	cur = envfile_get(&now, key);
	holds_new = cur && !strcmp(cur, r->new_value);
	envfile_release(&now);
	r->s = s_named;
	set_str(&r->res->name, name);
	set_str(&r->res->gate, "none");
	set_str(&r->res->kind, json_get_str(r->pending, "kind"));
	set_str(&r->res->strategy, json_get_str(r->pending, "strategy"));
	set_str(&r->res->env_file, r->env_path);
	set_str(&r->res->role, r->role);
	set_str(&r->res->env_key, key);
	ev(r, OPS_EVENT_INFO, "a rotation of '%s' was interrupted after step '%s': %s", name, step ? step : "?",
	   holds_new ? "finishing it" : "undoing it");
	{
		/* a restart the killed run started may still be running: it ends first */
		const cJSON *pid = cJSON_GetObjectItemCaseSensitive(r->pending, "restart_pid");
		const cJSON *ticks = cJSON_GetObjectItemCaseSensitive(r->pending, "restart_ticks");
		if (cJSON_IsNumber(pid) && cJSON_IsNumber(ticks) &&
		    proc_start_ticks((pid_t)pid->valuedouble) == (unsigned long long)ticks->valuedouble) {
			ev(r, OPS_EVENT_INFO, "waiting for the interrupted run's restart (pid %d) to finish",
			   (int)pid->valuedouble);
			if (!proc_wait_gone((pid_t)pid->valuedouble, (unsigned long long)ticks->valuedouble,
					    r->s->service_timeout_ms > 0 ? r->s->service_timeout_ms : 120000))
				ev(r, OPS_EVENT_WARNING, "the interrupted run's restart (pid %d) is still running",
				   (int)pid->valuedouble);
		}
	}
	if (json_get_str(r->pending, "role")) {
		/* the admin connection as the killed run resolved it: from the env
		 * file as it was then (DB_* variables may be the only source) */
		struct envfile before;
		struct ops_error ignored = OPS_ERROR_INIT;
		envfile_init(&before);
		envfile_parse(&before, r->env_path, r->env_before.buf, r->env_before.len, &ignored);
		ret = admin_target(r, json_get_str(r->pending, "admin_url"), &before);
		envfile_release(&before);
		ops_error_release(&ignored);
		if (ret < 0)
			goto out;
	}
	if (!holds_new) {
		/* the env file never got the new value: nothing used it */
		r->env_written = 0;
		/* nothing read it, unless the killed run was putting the old value
		 * back after a restart on the new one */
		r->restart_ran = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->pending, "restart_ran"));
		r->db_set = r->role && strcmp(json_get_str(r->pending, "strategy") ? json_get_str(r->pending, "strategy") : "",
					      "alternating");
		if (r->db_set && (ret = admin_connect(r, r->new_value)) < 0)
			goto out;
		ret = revert(r, "the interrupted rotation had not reached the env file") >= 0
			      ? 0
			      : ops_error_set(r->err, OPS_EXIT_FAILED, "cannot undo the interrupted rotation of '%s'", name);
		*action = "reverted";
		goto out;
	}
	/* the new value is in the env file: make sure it is everywhere */
	r->env_written = 1;
	if (r->role) {
		if ((ret = admin_connect(r, r->old_value)) < 0 || (ret = set_password(r, r->role, r->new_value)) < 0 ||
		    (ret = test_login(r, r->role, r->new_value)) < 0)
			goto undo;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->pending, "no_restart")) && r->s->restart) {
		if ((ret = restart_service(r)) < 0)
			goto undo;
		r->res->restarted = 1;
	}
	if ((ret = gate(r, "after finishing the interrupted rotation")) < 0)
		goto undo;
	{
		char fp[20], prev[20];
		fingerprint(r->new_value, fp);
		fingerprint(r->old_value, prev);
		memcpy(r->res->fingerprint, fp, sizeof(fp));
		memcpy(r->res->previous_fingerprint, prev, sizeof(prev));
		if ((ret = write_state(r, name, fp, prev, r->role)) < 0 || (ret = pending_wipe(r->pending_path, r->err)) < 0)
			goto out;
	}
	*action = "completed";
	goto out;
undo:
	ret = fail_and_revert(r, ret);
	*action = ret < 0 && !strcmp(r->res->outcome ? r->res->outcome : "", "reverted") ? "reverted" : NULL;
	if (*action)
		ret = 0;
out:
	r->s = saved_s;
	return ret;
}

/* Every pending file in STATE/secrets. */
static int recover_all(struct run *r, cJSON **recovered)
{
	DIR *d = opendir(r->secrets_dir);
	struct dirent *de;
	int ret = 0;

	*recovered = NULL;
	if (!d)
		return 0;
	while (ret == 0 && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		const size_t suffix = strlen(".pending.json");
		struct sec_settings other;
		const struct sec_settings *use = r->s;
		const char *action = NULL;
		char *name;
		int have_other = 0;

		if (n > 11 && !strncmp(de->d_name + n - 11, ".tmp-", 5)) {
			/* a state or pending file whose write was killed before its
			 * rename: it may hold the values */
			char *dest = xstrfmt("%s/%.*s", r->secrets_dir, (int)(n - 11), de->d_name);
			fs_remove_stale_tmp(dest, 1);
			free(dest);
			continue;
		}
		if (n <= suffix || strcmp(de->d_name + n - suffix, ".pending.json"))
			continue;
		name = xstrndup(de->d_name, n - suffix);
		if (strcmp(name, r->s->name ? r->s->name : "")) {
			/* another secret's run: its own settings where they still exist */
			struct ops_error ignored = OPS_ERROR_INIT;
			sec_settings_init(&other);
			if (r->s->cfg && sec_settings_load(&other, r->s->cfg, name, &ignored) == 0) {
				other.state_dir = xstrdup(r->s->state_dir);
				other.db_url = r->s->db_url;
				other.config_path = r->s->config_path ? xstrdup(r->s->config_path) : NULL;
				use = &other;
			}
			have_other = 1;
			ops_error_release(&ignored);
		}
		ret = recover_one(r, use, name, &action);
		if (action) {
			cJSON *rec = cJSON_CreateObject();
			cJSON_AddStringToObject(rec, "secret", name);
			cJSON_AddStringToObject(rec, "action", action);
			json_set_str(rec, "step", json_get_str(r->pending, "step"));
			cJSON_Delete(*recovered);
			*recovered = rec;
			record(r, 0, action);
			ev(r, OPS_EVENT_INFO, "the interrupted rotation of '%s' was %s", name, action);
		}
		run_reset_secret(r);
		run_close_db(r);
		if (have_other)
			sec_settings_release(&other);
		free(name);
	}
	closedir(d);
	return ret;
}

/* ---- the rotation ---- */

static cJSON *make_plan(const struct run *r)
{
	const struct sec_settings *s = r->s;
	cJSON *plan = cJSON_CreateArray();

	if (r->o->setup && s->strategy == SEC_ALTERNATING)
		json_add_fmt(plan, "create the roles %s and %s as members of %s where missing (--setup)", s->role_a, s->role_b,
			 s->owner ? s->owner : "(owner not set)");
	json_add_fmt(plan, "generate %zu random bytes, %s-encoded", s->bytes, sec_encoding_name(s->encoding));
	if (s->kind == SEC_POSTGRES_PASSWORD) {
		json_add_fmt(plan, "ALTER ROLE %s PASSWORD with a SCRAM verifier computed here (on %s)", r->role,
			 r->admin.display);
		json_add_fmt(plan, "log in as %s with the new password", r->role);
	}
	if (s->strategy == SEC_ALTERNATING && s->kind == SEC_POSTGRES_PASSWORD)
		json_add_fmt(plan, "write %s and %s=%s to %s", s->env_key, s->user_env, r->role, r->env_path);
	else if (s->previous_env)
		json_add_fmt(plan, "write %s (the old value to %s) to %s", s->env_key, s->previous_env, r->env_path);
	else
		json_add_fmt(plan, "write %s to %s", s->env_key, r->env_path);
	if (s->restart && !r->o->no_restart)
		json_add_fmt(plan, "restart: %s", s->restart);
	else
		json_add_fmt(plan, "no restart");
	json_add_fmt(plan, "health gate: %s", s->nchecks ? "the named [check]s" : "every [check]");
	return plan;
}

/* --setup: the two login roles as members of the owner, in one transaction. */
static int setup_roles(struct run *r)
{
	const struct sec_settings *s = r->s;
	const char *roles[2] = { s->role_a, s->role_b };
	PGresult *res = NULL;
	int ret, exists;

	if (!s->owner) {
		ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "--setup needs owner = ROLE in [secret \"%s\"]", s->name);
		ops_error_hint(r->err, "the owner is the role both login roles are members of (often the app's old role)");
		return ret;
	}
	r->res->setup = cJSON_CreateArray();
	if ((ret = db_exec(r->conn, "BEGIN", 0, NULL, 30000, &res, r->err)) < 0)
		return ret;
	PQclear(res);
	res = NULL;
	if ((ret = role_exists(r, s->owner, &exists)) < 0)
		goto out;
	if (!exists) {
		char *id = PQescapeIdentifier(r->conn, s->owner, strlen(s->owner));
		char *sql = xstrfmt("CREATE ROLE %s NOLOGIN", id);
		ret = db_exec(r->conn, sql, 0, NULL, 30000, &res, r->err);
		cJSON_AddItemToArray(r->res->setup, cJSON_CreateString(sql));
		PQfreemem(id);
		free(sql);
		PQclear(res);
		res = NULL;
		if (ret < 0)
			goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		const char *params[2] = { roles[i], s->owner };
		char *id = PQescapeIdentifier(r->conn, roles[i], strlen(roles[i]));
		char *owner = PQescapeIdentifier(r->conn, s->owner, strlen(s->owner));
		char *sql[3] = { NULL, NULL, NULL };
		int member = 0;

		if ((ret = role_exists(r, roles[i], &exists)) == 0 && exists) {
			ret = db_exec(r->conn,
				      "SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles u ON u.oid = m.member "
				      "JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE u.rolname = $1 AND g.rolname = $2",
				      2, params, 30000, &res, r->err);
			member = ret == 0 && PQntuples(res) > 0;
			PQclear(res);
			res = NULL;
		}
		if (ret == 0 && !exists) {
			sql[0] = xstrfmt("CREATE ROLE %s LOGIN IN ROLE %s", id, owner);
			sql[1] = xstrfmt("ALTER ROLE %s SET role = %s", id, owner);
		} else if (ret == 0 && !member) {
			sql[0] = xstrfmt("GRANT %s TO %s", owner, id);
			sql[1] = xstrfmt("ALTER ROLE %s SET role = %s", id, owner);
		}
		for (size_t k = 0; ret == 0 && sql[k]; k++) {
			ret = db_exec(r->conn, sql[k], 0, NULL, 30000, &res, r->err);
			PQclear(res);
			res = NULL;
			cJSON_AddItemToArray(r->res->setup, cJSON_CreateString(sql[k]));
		}
		for (size_t k = 0; k < 3; k++)
			free(sql[k]);
		PQfreemem(id);
		PQfreemem(owner);
		if (ret < 0)
			goto out;
	}
	ret = db_exec(r->conn, "COMMIT", 0, NULL, 30000, &res, r->err);
out:
	PQclear(res);
	if (ret < 0) {
		struct ops_error ignored = OPS_ERROR_INIT;
		PGresult *rb = NULL;
		db_exec(r->conn, "ROLLBACK", 0, NULL, 30000, &rb, &ignored);
		PQclear(rb);
		ops_error_release(&ignored);
		ops_error_prefix(r->err, "--setup");
		ops_error_hint(r->err, "nothing was created; the admin connection needs CREATEROLE");
		cJSON_Delete(r->res->setup);
		r->res->setup = cJSON_CreateArray();
	} else {
		size_t n = (size_t)cJSON_GetArraySize(r->res->setup);
		for (cJSON *c = r->res->setup->child; c; c = c->next)
			ev(r, OPS_EVENT_INFO, "setup: %s", c->valuestring);
		if (!n)
			ev(r, OPS_EVENT_INFO, "setup: roles '%s' and '%s' already exist in '%s'", s->role_a, s->role_b,
			   s->owner);
	}
	return ret;
}

/* Everything that can be checked before a change: the env file, the
 * database and the role(s); picks the role and remembers the old values. */
static int preflight(struct run *r)
{
	const struct sec_settings *s = r->s;
	const char *v;
	int ret;

	if ((ret = env_read(r, s->env_file)) < 0 || (ret = env_check_writable(r)) < 0)
		return ret;
	set_str(&r->res->env_file, r->env_path);
	{
		/* a check the gate cannot read is found before anything changes */
		struct probe_gate g;
		gate_opts(r, s->cfg, &r->env, &g);
		if ((ret = probe_gate_validate(&g, r->err)) < 0)
			return ret;
	}
	v = envfile_get(&r->env, s->env_key);
	r->old_value = v ? xstrdup(v) : NULL;
	if (s->previous_env && (v = envfile_get(&r->env, s->previous_env)))
		r->old_previous = xstrdup(v);
	fingerprint(r->old_value, r->res->previous_fingerprint);
	if (s->kind != SEC_POSTGRES_PASSWORD)
		return 0;
	if (s->strategy == SEC_SINGLE) {
		r->role = xstrdup(s->role);
		if (!r->old_value) {
			ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "env file '%s' has no %s: the old password of role '%s' would be lost",
					    r->env_path, s->env_key, s->role);
			ops_error_hint(r->err, "add the current password as %s=... first; nothing was changed", s->env_key);
			return ret;
		}
	} else {
		v = envfile_get(&r->env, s->user_env);
		r->old_user = v ? xstrdup(v) : NULL;
		/* the other one of the pair; role_a when the app uses neither yet */
		r->role = xstrdup(v && !strcmp(v, s->role_a) ? s->role_b : s->role_a);
		set_str(&r->res->previous_role, v);
	}
	set_str(&r->res->role, r->role);
	if ((ret = admin_target(r, s->admin_url, &r->env)) < 0 || (ret = admin_connect(r, NULL)) < 0)
		return ret;
	if (r->o->setup && s->strategy == SEC_ALTERNATING) {
		/* a dry run only says what --setup would look at */
		if (r->o->dry_run)
			return 0;
		if ((ret = setup_roles(r)) < 0)
			return ret;
	}
	return require_role(r, r->role);
}

static void pending_new(struct run *r)
{
	const struct sec_settings *s = r->s;
	char now[32];
	cJSON *p = cJSON_CreateObject();

	clock_rfc3339(now, time(NULL));
	cJSON_AddStringToObject(p, "secret", s->name);
	cJSON_AddStringToObject(p, "kind", sec_kind_name(s->kind));
	if (s->kind == SEC_POSTGRES_PASSWORD)
		cJSON_AddStringToObject(p, "strategy", s->strategy == SEC_ALTERNATING ? "alternating" : "single");
	cJSON_AddStringToObject(p, "env", s->env_key);
	cJSON_AddStringToObject(p, "env_file", r->env_path);
	json_set_str(p, "previous_env", s->previous_env);
	json_set_str(p, "user_env", s->user_env);
	json_set_str(p, "role", r->role);
	json_set_str(p, "admin_url", s->admin_url);
	json_set_str(p, "old_user", r->old_user);
	cJSON_AddStringToObject(p, "new", r->new_value);
	json_set_str(p, "old", r->old_value);
	json_set_str(p, "old_previous", r->old_previous);
	cJSON_AddStringToObject(p, "env_before", r->env_before.buf);
	cJSON_AddBoolToObject(p, "no_restart", r->o->no_restart || !s->restart);
	cJSON_AddNumberToObject(p, "pid", (double)getpid());
	cJSON_AddStringToObject(p, "started_at", now);
	cJSON_AddStringToObject(p, "step", "pending");
	r->pending = p;
}

static int rotate_steps(struct run *r)
{
	const struct sec_settings *s = r->s;
	struct strbuf after = STRBUF_INIT;
	int ret;

	if ((ret = sec_generate(s->bytes, s->encoding, &r->new_value, r->err)) < 0)
		return ret;
	if ((ret = fs_mkdir_p(r->secrets_dir, 0700, r->err)) < 0)
		return ret;
	paths_for(r, s->name);
	pending_new(r);
	step_begin(r, "pending");
	if ((ret = pending_step(r, "pending")) < 0)
		return ret;
	step_end(r, "ok");
	if (stop_signal(r))
		return ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted by signal %d", stop_signal(r));

	if (s->kind == SEC_POSTGRES_PASSWORD) {
		step_begin(r, "set");
		ev(r, OPS_EVENT_INFO, "setting a new password for role '%s'", r->role);
		ret = set_password(r, r->role, r->new_value);
		/* refused by the server: nothing changed; lost on the way: it may have */
		r->db_set = ret == 0 || PQstatus(r->conn) != CONNECTION_OK;
		if (ret < 0 || (ret = pending_step(r, "set")) < 0)
			goto fail;
		step_end(r, "ok");
		step_begin(r, "test");
		if ((ret = test_login(r, r->role, r->new_value)) < 0 || (ret = pending_step(r, "tested")) < 0)
			goto fail;
		step_end(r, "ok");
	}
	if (stop_signal(r)) {
		ret = ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted by signal %d", stop_signal(r));
		goto fail;
	}

	step_begin(r, "write");
	env_after(r, s->env_key, r->new_value, s->previous_env, r->old_value,
		  s->strategy == SEC_ALTERNATING && s->kind == SEC_POSTGRES_PASSWORD ? s->user_env : NULL, r->role, &after);
	r->env_written = 1;
	ret = fs_write_atomic(r->env_path, after.buf, after.len, -1, r->err);
	wipe_strbuf(&after);
	if (ret < 0 || (ret = pending_step(r, "written")) < 0)
		goto fail;
	step_end(r, "ok");
	ev(r, OPS_EVENT_INFO, "wrote %s to '%s'", s->env_key, r->env_path);

	if (s->restart && !r->o->no_restart) {
		step_begin(r, "restart");
		if ((ret = restart_service(r)) < 0 || (ret = pending_step(r, "restarted")) < 0)
			goto fail;
		r->res->restarted = 1;
		step_end(r, "ok");
	} else if (!r->o->no_restart && !s->restart_off) {
		ev(r, OPS_EVENT_WARNING, "no [service] restart: the app sees the new value when it next reads '%s'",
		   r->env_path);
	}
	if (stop_signal(r)) {
		ret = ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted by signal %d", stop_signal(r));
		goto fail;
	}
	/* also without a restart: an app that re-reads the file must work with it */
	step_begin(r, "gate");
	if ((ret = gate(r, "after the rotation")) < 0 || (ret = pending_step(r, "gated")) < 0)
		goto fail;
	step_end(r, "ok");

	step_begin(r, "finish");
	fingerprint(r->new_value, r->res->fingerprint);
	if ((ret = write_state(r, s->name, r->res->fingerprint, r->res->previous_fingerprint, r->role)) < 0)
		goto fail;
	r->env_written = r->db_set = r->restart_ran = 0;
	if ((ret = pending_wipe(r->pending_path, r->err)) < 0)
		ev(r, OPS_EVENT_WARNING, "%s", r->err->msg.buf);
	step_end(r, "ok");
	set_str(&r->res->outcome, "rotated");
	return 0;
fail:
	step_end(r, "failed");
	if (-ret == OPS_EXIT_ABORTED || stop_signal(r)) {
		if (-ret != OPS_EXIT_ABORTED)
			ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted by signal %d", stop_signal(r));
		ret = -OPS_EXIT_ABORTED;
	}
	return fail_and_revert(r, ret);
}

static void result_start(struct run *r)
{
	const struct sec_settings *s = r->s;
	set_str(&r->res->name, s->name);
	set_str(&r->res->kind, sec_kind_name(s->kind));
	if (s->kind == SEC_POSTGRES_PASSWORD)
		set_str(&r->res->strategy, s->strategy == SEC_ALTERNATING ? "alternating" : "single");
	set_str(&r->res->env_key, s->env_key);
	set_str(&r->res->gate, "none");
}

int sec_rotate(const struct sec_settings *s, const struct sec_rotate_opts *o, const struct sec_callbacks *cb,
	       struct sec_result *res, struct ops_error *err)
{
	struct fs_lock lock = FS_LOCK_INIT;
	struct run r;
	char *note = NULL;
	int ret, recorded = 0;

	run_init(&r, s, o, cb, res, err);
	if (s->name)
		result_start(&r);
	if (!o->dry_run) {
		note = xstrfmt("opsctl rotate-secret %s", s->name ? s->name : "--recover");
		if ((ret = fs_lock_acquire(&lock, s->state_dir, "rotate-secret", note, s->lock_wait_ms, err)) < 0)
			goto out;
		if ((ret = recover_all(&r, &res->recovered)) < 0)
			goto out;
		if (!s->name) {
			set_str(&res->outcome, res->recovered ? "recovered" : "nothing to recover");
			goto out;
		}
		/* the interrupted rotation of this secret finished: that is the rotation asked for */
		if (res->recovered && !strcmp(json_get_str(res->recovered, "secret"), s->name) &&
		    !strcmp(json_get_str(res->recovered, "action"), "completed")) {
			set_str(&res->outcome, "recovered");
			goto out;
		}
		result_start(&r);
	}
	if ((ret = preflight(&r)) < 0) {
		set_str(&res->outcome, "failed");
		goto out;
	}
	if (o->dry_run) {
		res->plan = make_plan(&r);
		set_str(&res->outcome, "planned");
		goto out;
	}
	ret = rotate_steps(&r);
	if (ret == 0 && o->show)
		res->shown = xstrdup(r.new_value);
	record(&r, ret < 0 ? -ret : 0, NULL);
	recorded = 1;
out:
	if (ret < 0 && !recorded && !o->dry_run && -ret != OPS_EXIT_LOCKED && s->name && res->outcome)
		record(&r, -ret, NULL);
	run_release(&r);
	fs_lock_release(&lock);
	free(note);
	return ret < 0 ? -ret : 0;
}

/* ---- --list ---- */

static time_t parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return (time_t)-1;
	return timegm(&tm);
}

static void list_add(cJSON *arr, const char *name, const char *kind, const char *key, const struct envfile *env,
		     const char *secrets_dir)
{
	char *state_path = xstrfmt("%s/%s.json", secrets_dir, name);
	char *pending_path = xstrfmt("%s/%s.pending.json", secrets_dir, name);
	cJSON *st = read_json(state_path), *o = cJSON_CreateObject();
	const char *v = env && key ? envfile_get(env, key) : NULL;
	const char *at = st ? json_get_str(st, "rotated_at") : NULL;
	time_t t = parse_time(at);
	char fp[20];

	cJSON_AddStringToObject(o, "name", name);
	json_set_str(o, "kind", kind ? kind : (st ? json_get_str(st, "kind") : NULL));
	json_set_str(o, "env", key ? key : (st ? json_get_str(st, "env") : NULL));
	fingerprint(v, fp);
	json_set_str(o, "fingerprint", fp_or_null(fp));
	json_set_str(o, "rotated_at", at);
	if (t != (time_t)-1)
		cJSON_AddNumberToObject(o, "age_s", (double)(time(NULL) - t));
	else
		cJSON_AddNullToObject(o, "age_s");
	cJSON_AddBoolToObject(o, "pending", fs_exists(pending_path));
	cJSON_AddItemToArray(arr, o);
	cJSON_Delete(st);
	free(state_path);
	free(pending_path);
}

int sec_list(const struct config *cfg, const struct envfile *env, const char *state_dir, cJSON **out,
	     struct ops_error *err)
{
	const char **names = NULL;
	size_t n = sec_names(cfg, &names);
	char *dir = xstrfmt("%s/secrets", state_dir);
	cJSON *arr = cJSON_CreateArray();
	DIR *d;
	struct dirent *de;

	(void)err;
	for (size_t i = 0; i < n; i++) {
		const char *kind = config_get(cfg, "secret", names[i], "kind");
		list_add(arr, names[i], kind && *kind ? kind : "random", config_get(cfg, "secret", names[i], "env"), env,
			 dir);
	}
	/* state left by a secret the config no longer has */
	if ((d = opendir(dir))) {
		while ((de = readdir(d))) {
			size_t len = strlen(de->d_name);
			char *name;
			int known = 0;
			if (len <= 5 || strcmp(de->d_name + len - 5, ".json") ||
			    (len > 13 && !strcmp(de->d_name + len - 13, ".pending.json")))
				continue;
			name = xstrndup(de->d_name, len - 5);
			for (size_t i = 0; i < n; i++)
				known |= !strcmp(names[i], name);
			if (!known)
				list_add(arr, name, NULL, NULL, env, dir);
			free(name);
		}
		closedir(d);
	}
	free(names);
	free(dir);
	*out = arr;
	return 0;
}
