/* Backup sources beside PostgreSQL: Redis (BGSAVE, then the RDB file) and
 * HTTP snapshots (Qdrant, or generic URL templates), into a backup set. */
#include "engines/source.h"
#include "adapters/hash.h"
#include "adapters/http.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "system/clock.h"
#include "system/fs.h"
#include "system/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define SRC_COPY_BUF (256 * 1024)
#define SRC_ANSWER_MAX (1024 * 1024)
#define RDB_MAGIC "REDIS"

/* ---- settings ---- */

void src_settings_init(struct src_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->timeout_ms = SRC_DEFAULT_TIMEOUT_MS;
	s->connect_timeout_ms = SRC_DEFAULT_CONNECT_TIMEOUT_MS;
	s->port = SRC_DEFAULT_REDIS_PORT;
	s->check = SRC_CHECK_KEYS;
	s->restore_upload = SRC_UPLOAD_MULTIPART;
}

static void free_secret(char *v)
{
	if (v) {
		explicit_bzero(v, strlen(v));
		free(v);
	}
}

void src_settings_release(struct src_settings *s)
{
	char **strs[] = {
		&s->name, &s->display, &s->host, &s->unix_socket, &s->username, &s->password_env,
		&s->rdb_path, &s->stop_cmd, &s->start_cmd, &s->preset, &s->url, &s->collection,
		&s->create_url, &s->download_url, &s->delete_url, &s->restore_url, &s->create_method,
		&s->download_method, &s->delete_method, &s->restore_method, &s->create_body,
		&s->name_field, &s->checksum_field, &s->restore_field, &s->api_key_env, &s->api_key_header,
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		free(*strs[i]);
	free_secret(s->password);
	free_secret(s->api_key);
	src_settings_init(s);
}

size_t src_names(const struct config *cfg, const char ***names)
{
	*names = NULL;
	return cfg ? config_subsections(cfg, "source", names) : 0;
}

const char *src_type_name(enum src_type t)
{
	return t == SRC_REDIS ? "redis" : "http-snapshot";
}

static const char *const common_keys[] = { "type", "timeout", "connect_timeout", NULL };
static const char *const redis_setting_keys[] = {
	"address", "username", "password_env", "rdb_path", "stop", "start", "restore_check", NULL,
};
static const char *const http_setting_keys[] = {
	"preset", "url", "collection", "create", "download", "delete", "restore", "create_method",
	"download_method", "delete_method", "restore_method", "create_body", "name_field",
	"checksum_field", "restore_upload", "restore_field", "api_key_env", "api_key_header", NULL,
};

static int in_list(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (!strcmp(*list, key))
			return 1;
	return 0;
}

/* Typos and secrets written into the config are refused, naming the line. */
static int check_keys(const struct src_settings *s, const struct config *cfg, struct ops_error *err)
{
	const char *const *own = s->type == SRC_REDIS ? redis_setting_keys : http_setting_keys;

	for (size_t i = 0; i < cfg->nr; i++) {
		const struct config_entry *e = &cfg->entries[i];
		if (strcmp(e->section, "source") || !e->subsection || strcmp(e->subsection, s->name))
			continue;
		if (!strcmp(e->key, "password") || !strcmp(e->key, "api_key")) {
			int ret = config_error(cfg, e, err, "a secret does not belong in the config file");
			ops_error_hint(err, "put it in the env file and name the variable: %s_env = VARIABLE", e->key);
			return ret;
		}
		if (!in_list(common_keys, e->key) && !in_list(own, e->key))
			return config_error(cfg, e, err, "unknown key '%s' for a source of type %s", e->key,
					    src_type_name(s->type));
	}
	return 0;
}

static char *get_dup(const struct config *cfg, const char *name, const char *key)
{
	const char *v = config_get(cfg, "source", name, key);
	return v && *v ? xstrdup(v) : NULL;
}

/* A *_env key: the variable's name in the config, its value from the env
 * file, then the environment. */
static int secret_setting(const struct config *cfg, const struct envfile *env, const char *name,
			  const char *key, char **var_out, char **value_out, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "source", name, key);
	const char *v = NULL;

	if (!e || !*e->value)
		return 0;
	if (!envfile_key_valid(e->value))
		return config_error(cfg, e, err, "'%s' is not a variable name (letters, digits, '_', '.')", e->value);
	if (env)
		v = envfile_get(env, e->value);
	if (!v || !*v)
		v = getenv(e->value);
	if (!v || !*v) {
		int ret = config_error(cfg, e, err, "%s names '%s', which is set neither in the env file nor in the environment",
				       key, e->value);
		ops_error_hint(err, "add %s=... to the app's env file ([app] env_file)", e->value);
		return ret;
	}
	*var_out = xstrdup(e->value);
	*value_out = xstrdup(v);
	return 0;
}

int src_parse_redis_address(const char *addr, char **host, int *port, char **unix_socket)
{
	const char *colon;
	long p = SRC_DEFAULT_REDIS_PORT;
	char *end;

	*host = *unix_socket = NULL;
	if (!addr || !*addr)
		return -1;
	if (starts_with(addr, "unix:"))
		addr += 5;
	if (addr[0] == '/') {
		*unix_socket = xstrdup(addr);
		return 0;
	}
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close == addr + 1 || (close[1] && close[1] != ':'))
			return -1;
		*host = xstrndup(addr + 1, (size_t)(close - addr - 1));
		colon = close[1] ? close + 1 : NULL;
	} else {
		colon = strchr(addr, ':');
		if (colon && strchr(colon + 1, ':'))
			return -1; /* a bare IPv6 address needs brackets */
		*host = colon ? xstrndup(addr, (size_t)(colon - addr)) : xstrdup(addr);
	}
	if (!**host)
		goto bad;
	if (colon) {
		errno = 0;
		p = strtol(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end || p < 1 || p > 65535)
			goto bad;
	}
	*port = (int)p;
	return 0;
bad:
	free(*host);
	*host = NULL;
	return -1;
}

static int load_method(const struct config *cfg, const char *name, const char *key, const char *def,
		       char **out, struct ops_error *err)
{
	static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "PATCH", NULL };
	const struct config_entry *e = config_find_entry(cfg, "source", name, key);

	if (!e || !*e->value) {
		if (!*out)
			*out = xstrdup(def);
		return 0;
	}
	if (!in_list(methods, e->value))
		return config_error(cfg, e, err, "unknown method '%s' (expected GET, POST, PUT, DELETE or PATCH)",
				    e->value);
	free(*out);
	*out = xstrdup(e->value);
	return 0;
}

/* An explicit key overrides the preset's value. */
static void override(const struct config *cfg, const char *name, const char *key, char **field)
{
	char *v = get_dup(cfg, name, key);
	if (v) {
		free(*field);
		*field = v;
	}
}

static int check_template(const struct src_settings *s, const struct config *cfg, const char *key,
			  const char *tmpl, int is_url, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "source", s->name, key);
	struct src_vars v = { s->url, s->collection, "x" };
	struct strbuf sb = STRBUF_INIT;
	struct ops_error terr = OPS_ERROR_INIT;
	int ret = 0;

	if (!tmpl)
		goto out;
	if (!e) /* from the preset: {url} or {collection} is what is missing */
		e = config_find_entry(cfg, "source", s->name, "preset");
	if (src_template_fill(tmpl, &v, 1, &sb, &terr) < 0) {
		ret = config_error(cfg, e, err, "%s: %s", key, terr.msg.buf);
		goto out;
	}
	if (is_url && !starts_with(sb.buf, "http://") && !starts_with(sb.buf, "https://"))
		ret = config_error(cfg, e, err, "%s: '%s' is not an http:// or https:// URL", key, sb.buf);
out:
	strbuf_release(&sb);
	ops_error_release(&terr);
	return ret;
}

static int load_http(struct src_settings *s, const struct config *cfg, const struct envfile *env,
		     struct ops_error *err)
{
	const char *name = s->name;
	const struct config_entry *e, *type_e = config_find_entry(cfg, "source", name, "type");
	int ret;

	s->preset = get_dup(cfg, name, "preset");
	s->url = get_dup(cfg, name, "url");
	s->collection = get_dup(cfg, name, "collection");
	while (s->url && ends_with(s->url, "/") && strlen(s->url) > 1)
		s->url[strlen(s->url) - 1] = '\0';
	if (s->preset && !strcmp(s->preset, "qdrant")) {
		if (!s->url)
			return config_error(cfg, config_find_entry(cfg, "source", name, "preset"), err,
					    "preset = qdrant needs url = http://HOST:6333");
		if (!s->collection)
			return config_error(cfg, config_find_entry(cfg, "source", name, "preset"), err,
					    "preset = qdrant needs collection = NAME");
		s->create_url = xstrdup("{url}/collections/{collection}/snapshots");
		s->download_url = xstrdup("{url}/collections/{collection}/snapshots/{name}");
		s->delete_url = xstrdup("{url}/collections/{collection}/snapshots/{name}");
		s->restore_url = xstrdup("{url}/collections/{collection}/snapshots/upload?priority=snapshot");
		s->checksum_field = xstrdup("result.checksum");
		s->api_key_header = xstrdup("api-key");
		s->restore_field = xstrdup("snapshot");
	} else if (s->preset) {
		e = config_find_entry(cfg, "source", name, "preset");
		return config_error(cfg, e, err, "unknown preset '%s' (expected qdrant, or no preset and the "
				    "create/download/delete/restore URL templates)", s->preset);
	}
	override(cfg, name, "create", &s->create_url);
	override(cfg, name, "download", &s->download_url);
	override(cfg, name, "delete", &s->delete_url);
	override(cfg, name, "restore", &s->restore_url);
	override(cfg, name, "checksum_field", &s->checksum_field);
	override(cfg, name, "api_key_header", &s->api_key_header);
	override(cfg, name, "restore_field", &s->restore_field);
	s->create_body = get_dup(cfg, name, "create_body");
	s->name_field = get_dup(cfg, name, "name_field");
	if (!s->name_field)
		s->name_field = xstrdup(SRC_DEFAULT_NAME_FIELD);
	if (!s->restore_field)
		s->restore_field = xstrdup("snapshot");
	if (!s->api_key_header)
		s->api_key_header = xstrdup("Authorization");
	if (!s->create_url)
		return config_error(cfg, type_e, err, "type = http-snapshot needs preset = qdrant or create = URL");
	if (!s->download_url)
		return config_error(cfg, type_e, err, "type = http-snapshot needs download = URL (with {name})");
	if ((ret = load_method(cfg, name, "create_method", "POST", &s->create_method, err)) < 0 ||
	    (ret = load_method(cfg, name, "download_method", "GET", &s->download_method, err)) < 0 ||
	    (ret = load_method(cfg, name, "delete_method", "DELETE", &s->delete_method, err)) < 0 ||
	    (ret = load_method(cfg, name, "restore_method", "POST", &s->restore_method, err)) < 0)
		return ret;
	e = config_find_entry(cfg, "source", name, "restore_upload");
	if (e && !strcmp(e->value, "raw"))
		s->restore_upload = SRC_UPLOAD_RAW;
	else if (e && strcmp(e->value, "multipart"))
		return config_error(cfg, e, err, "unknown restore_upload '%s' (expected multipart or raw)", e->value);
	e = config_find_entry(cfg, "source", name, "api_key_header");
	if (e && (!*e->value || strpbrk(e->value, ": \t\r\n")))
		return config_error(cfg, e, err, "'%s' is not a header name", e->value);
	if ((ret = check_template(s, cfg, "create", s->create_url, 1, err)) < 0 ||
	    (ret = check_template(s, cfg, "download", s->download_url, 1, err)) < 0 ||
	    (ret = check_template(s, cfg, "delete", s->delete_url, 1, err)) < 0 ||
	    (ret = check_template(s, cfg, "restore", s->restore_url, 1, err)) < 0 ||
	    (ret = check_template(s, cfg, "create_body", s->create_body, 0, err)) < 0)
		return ret;
	if ((ret = secret_setting(cfg, env, name, "api_key_env", &s->api_key_env, &s->api_key, err)) < 0)
		return ret;
	if (s->preset)
		s->display = xstrfmt("%s %s collection '%s'", s->preset, s->url, s->collection);
	else
		s->display = xstrfmt("http-snapshot %s", s->url ? s->url : s->create_url);
	return 0;
}

static int load_redis(struct src_settings *s, const struct config *cfg, const struct envfile *env,
		      struct ops_error *err)
{
	const char *name = s->name;
	const struct config_entry *e = config_find_entry(cfg, "source", name, "address");
	int ret;

	if (src_parse_redis_address(e ? e->value : "127.0.0.1:6379", &s->host, &s->port, &s->unix_socket) < 0)
		return config_error(cfg, e, err, "invalid Redis address '%s' (expected HOST:PORT, [IPv6]:PORT "
				    "or a socket path)", e->value);
	s->username = get_dup(cfg, name, "username");
	s->rdb_path = get_dup(cfg, name, "rdb_path");
	s->stop_cmd = get_dup(cfg, name, "stop");
	s->start_cmd = get_dup(cfg, name, "start");
	if (s->rdb_path && s->rdb_path[0] != '/')
		return config_error(cfg, config_find_entry(cfg, "source", name, "rdb_path"), err,
				    "rdb_path '%s' is not an absolute path", s->rdb_path);
	e = config_find_entry(cfg, "source", name, "restore_check");
	if (e && !strcmp(e->value, "ping"))
		s->check = SRC_CHECK_PING;
	else if (e && !strcmp(e->value, "keys-equal"))
		s->check = SRC_CHECK_KEYS_EQUAL;
	else if (e && strcmp(e->value, "keys"))
		return config_error(cfg, e, err, "unknown restore_check '%s' (expected ping, keys or keys-equal)",
				    e->value);
	if ((ret = secret_setting(cfg, env, name, "password_env", &s->password_env, &s->password, err)) < 0)
		return ret;
	if (s->username && !s->password)
		return config_error(cfg, config_find_entry(cfg, "source", name, "username"), err,
				    "username needs password_env (AUTH USER PASSWORD)");
	if (s->unix_socket)
		s->display = xstrfmt("redis %s", s->unix_socket);
	else if (strchr(s->host, ':'))
		s->display = xstrfmt("redis [%s]:%d", s->host, s->port);
	else
		s->display = xstrfmt("redis %s:%d", s->host, s->port);
	return 0;
}

int src_settings_load(struct src_settings *s, const struct config *cfg, const struct envfile *env,
		      const char *name, struct ops_error *err)
{
	const struct config_entry *e;
	int ret;

	if (!config_has_subsection(cfg, "source", name)) {
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "no [source \"%s\"] in '%s'", name,
				    cfg && cfg->path ? cfg->path : "the config");
		return ret;
	}
	s->name = xstrdup(name);
	if (!*name || strpbrk(name, "/\\") || name[0] == '.')
		return ops_error_set(err, OPS_EXIT_CONFIG, "%s: [source \"%s\"]: the name must not contain '/' or start with '.'",
				     cfg->path ? cfg->path : "the config", name);
	e = config_find_entry(cfg, "source", name, "type");
	if (!e || !*e->value)
		return ops_error_set(err, OPS_EXIT_CONFIG, "%s: [source \"%s\"] needs type = redis or type = http-snapshot",
				     cfg->path ? cfg->path : "the config", name);
	if (!strcmp(e->value, "redis"))
		s->type = SRC_REDIS;
	else if (!strcmp(e->value, "http-snapshot"))
		s->type = SRC_HTTP_SNAPSHOT;
	else
		return config_error(cfg, e, err, "unknown source type '%s' (expected redis or http-snapshot)", e->value);
	if ((ret = check_keys(s, cfg, err)) < 0)
		return ret;
	if (config_get_duration_ms(cfg, "source", name, "timeout", &s->timeout_ms, err) < 0 ||
	    config_get_duration_ms(cfg, "source", name, "connect_timeout", &s->connect_timeout_ms, err) < 0)
		return -err->code;
	if (s->timeout_ms <= 0 || s->connect_timeout_ms <= 0) {
		e = config_find_entry(cfg, "source", name, s->timeout_ms <= 0 ? "timeout" : "connect_timeout");
		return config_error(cfg, e, err, "%s must be more than 0", e->key);
	}
	return s->type == SRC_REDIS ? load_redis(s, cfg, env, err) : load_http(s, cfg, env, err);
}

/* ---- templates and JSON fields ---- */

int src_template_fill(const char *tmpl, const struct src_vars *v, int escape, struct strbuf *out,
		      struct ops_error *err)
{
	const char *p = tmpl;

	while (*p) {
		const char *open = strchr(p, '{'), *close, *val;
		size_t klen;
		if (!open) {
			strbuf_addstr(out, p);
			break;
		}
		strbuf_add(out, p, (size_t)(open - p));
		close = strchr(open, '}');
		klen = close ? (size_t)(close - open - 1) : 0;
		/* a '{' that does not open a placeholder (a JSON body) stays as it is */
		if (!close || !klen || strspn(open + 1, "abcdefghijklmnopqrstuvwxyz_") != klen) {
			strbuf_addch(out, '{');
			p = open + 1;
			continue;
		}
		if (klen == 3 && !strncmp(open + 1, "url", 3)) {
			val = v->url;
			if (!val)
				return ops_error_set(err, OPS_EXIT_CONFIG, "'{url}' is used but url is not set");
			strbuf_addstr(out, val);
		} else if ((klen == 10 && !strncmp(open + 1, "collection", 10)) ||
			   (klen == 4 && !strncmp(open + 1, "name", 4))) {
			int is_name = klen == 4;
			val = is_name ? v->name : v->collection;
			if (!val)
				return ops_error_set(err, OPS_EXIT_CONFIG, is_name ? "'{name}' is not known here"
						     : "'{collection}' is used but collection is not set");
			if (escape)
				http_escape(out, val);
			else
				strbuf_addstr(out, val);
		} else {
			return ops_error_set(err, OPS_EXIT_CONFIG,
					     "unknown placeholder '{%.*s}' (expected {url}, {collection} or {name})",
					     (int)klen, open + 1);
		}
		p = close + 1;
	}
	return 0;
}

const cJSON *src_json_field(const cJSON *root, const char *path)
{
	const cJSON *cur = root;
	const char *p = path;

	if (*p == '/')
		p++;
	while (cur && *p) {
		size_t len = strcspn(p, "./");
		char *key = xstrndup(p, len);
		if (cJSON_IsArray(cur)) {
			char *end;
			long i = strtol(key, &end, 10);
			cur = (*key && !*end && i >= 0 && i < INT_MAX) ? cJSON_GetArrayItem(cur, (int)i) : NULL;
		} else {
			cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, key) : NULL;
		}
		free(key);
		p += len;
		if (*p)
			p++;
	}
	return cur;
}

/* ---- manifest entries ---- */

void src_entry_init(struct src_entry *e)
{
	memset(e, 0, sizeof(*e));
}

void src_entry_release(struct src_entry *e)
{
	free(e->name);
	free(e->type);
	free(e->file);
	cJSON_Delete(e->details);
	src_entry_init(e);
}

cJSON *src_entry_json(const struct src_entry *e)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", e->name ? e->name : "");
	cJSON_AddStringToObject(o, "type", e->type ? e->type : "");
	cJSON_AddStringToObject(o, "file", e->file ? e->file : "");
	cJSON_AddNumberToObject(o, "size", (double)e->size);
	cJSON_AddStringToObject(o, "sha256", e->sha256);
	cJSON_AddItemToObject(o, "details", e->details ? cJSON_Duplicate(e->details, 1) : cJSON_CreateObject());
	return o;
}

static int is_hex64(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

int src_entry_parse(const cJSON *obj, struct src_entry *e, struct ops_error *err)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
	const cJSON *file = cJSON_GetObjectItemCaseSensitive(obj, "file");
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(obj, "size");
	const cJSON *sha = cJSON_GetObjectItemCaseSensitive(obj, "sha256");
	const cJSON *details = cJSON_GetObjectItemCaseSensitive(obj, "details");
	const char *f;

	if (!cJSON_IsObject(obj) || !cJSON_IsString(name) || !cJSON_IsString(type) || !cJSON_IsString(file) ||
	    !cJSON_IsNumber(size) || !cJSON_IsString(sha) || !cJSON_IsObject(details))
		return ops_error_set(err, OPS_EXIT_INTEGRITY,
				     "a source entry needs name, type, file, size, sha256 and details");
	if (strcmp(type->valuestring, "redis") && strcmp(type->valuestring, "http-snapshot"))
		return ops_error_set(err, OPS_EXIT_INTEGRITY, "source '%s': unknown type '%s'", name->valuestring,
				     type->valuestring);
	f = file->valuestring;
	if (!starts_with(f, SRC_DIR "/") || strchr(f + strlen(SRC_DIR "/"), '/') || strstr(f, "..") ||
	    !f[strlen(SRC_DIR "/")])
		return ops_error_set(err, OPS_EXIT_INTEGRITY, "source '%s': bad file name '%s'", name->valuestring, f);
	if (size->valuedouble < 0 || size->valuedouble > 9007199254740992.0)
		return ops_error_set(err, OPS_EXIT_INTEGRITY, "source '%s': bad size", name->valuestring);
	if (!is_hex64(sha->valuestring))
		return ops_error_set(err, OPS_EXIT_INTEGRITY, "source '%s': sha256 is not 64 hex digits",
				     name->valuestring);
	e->name = xstrdup(name->valuestring);
	e->type = xstrdup(type->valuestring);
	e->file = xstrdup(f);
	e->size = (uint64_t)size->valuedouble;
	strlcpy_s(e->sha256, sha->valuestring, sizeof(e->sha256));
	e->details = cJSON_Duplicate(details, 1);
	return 0;
}

/* ---- one run: deadline, events, the file in the set ---- */

struct run {
	const struct src_settings *s;
	const struct src_callbacks *cb;
	struct ops_error *err;
	int64_t deadline;
	/* the file being written into the set */
	int fd;
	char *path;
	struct hash_sha256_ctx hash;
	uint64_t written;
	const char *what;      /* progress label */
	uint64_t total;
	/* redis */
	redisContext *rc;
	int64_t io_timeout_ms; /* each command's, set on connecting */
};

static void ev(struct run *r, enum ops_event kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void ev(struct run *r, enum ops_event kind, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;

	if (!r->cb || !r->cb->event)
		return;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	r->cb->event(r->cb->data, kind, sb.buf);
	strbuf_release(&sb);
}

static int stopping(struct run *r)
{
	return r->cb && r->cb->stop_requested && r->cb->stop_requested(r->cb->data);
}

static int64_t remaining_ms(const struct run *r)
{
	int64_t left = r->deadline - clock_now_ms();
	return left > 1 ? left : 1;
}

static int expired(const struct run *r)
{
	return clock_now_ms() >= r->deadline;
}

static int interrupted(struct run *r)
{
	return ops_error_set(r->err, OPS_EXIT_ABORTED, "interrupted");
}

/* Opens SET_DIR/sources/NAME.EXT for writing (0600, new). */
static int out_open(struct run *r, const char *set_dir, const char *ext, struct src_entry *e)
{
	char *dir = xstrfmt("%s/%s", set_dir, SRC_DIR);
	int ret = 0;

	if ((ret = fs_mkdir_p(dir, 0700, r->err)) < 0)
		goto out;
	r->path = xstrfmt("%s/%s.%s", dir, r->s->name, ext);
	r->fd = open(r->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (r->fd < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot create '%s': %s", r->path, ops_strerror(errno));
		free(r->path);
		r->path = NULL;
		goto out;
	}
	hash_sha256_init(&r->hash);
	e->file = xstrfmt("%s/%s.%s", SRC_DIR, r->s->name, ext);
out:
	free(dir);
	return ret;
}

static int out_write(struct run *r, const void *buf, size_t len)
{
	const char *p = buf;
	size_t left = len;

	while (left) {
		ssize_t n = write(r->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ops_error_set(r->err, OPS_EXIT_FAILED, "cannot write '%s': %s", r->path,
					     ops_strerror(errno));
		p += n;
		left -= (size_t)n;
	}
	hash_sha256_update(&r->hash, buf, len);
	r->written += len;
	if (r->cb && r->cb->progress)
		r->cb->progress(r->cb->data, r->what, r->written, r->total);
	return 0;
}

/* fsync, close, the digest into e, the directory fsynced. */
static int out_finish(struct run *r, struct src_entry *e)
{
	unsigned char digest[HASH_SHA256_LEN];
	char *dir;
	int ret = 0;

	if (fsync(r->fd) < 0 || close(r->fd) < 0) {
		r->fd = -1;
		return ops_error_set(r->err, OPS_EXIT_FAILED, "cannot write '%s': %s", r->path, ops_strerror(errno));
	}
	r->fd = -1;
	hash_sha256_final(&r->hash, digest);
	hash_hex(digest, sizeof(digest), e->sha256);
	e->size = r->written;
	dir = xstrndup(r->path, (size_t)(strrchr(r->path, '/') - r->path));
	ret = fs_fsync_dir(dir, r->err);
	free(dir);
	return ret;
}

/* Removes a half-written file (on failure). */
static void out_abandon(struct run *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->path)
		unlink(r->path);
	hash_sha256_release(&r->hash);
}

/* Checks a file against the manifest entry before it goes back anywhere. */
static int check_file(struct run *r, const char *file, const struct src_restore_opts *o)
{
	char hex[65];
	uint64_t size = 0;

	if (!o || !o->entry || o->verified)
		return 0;
	if (hash_sha256_file(file, hex, &size, r->err) < 0)
		return -r->err->code;
	if (size != o->entry->size || strcmp(hex, o->entry->sha256))
		return ops_error_set(r->err, OPS_EXIT_INTEGRITY,
				     "'%s' does not match the manifest (%s)", file,
				     size != o->entry->size ? "size differs" : "SHA-256 differs");
	return 0;
}

/* ---- Redis ---- */

static struct timeval tv_ms(int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
	return tv;
}

static void redis_close(struct run *r)
{
	if (r->rc)
		redisFree(r->rc);
	r->rc = NULL;
}

enum { CONNECT_QUIET = 1, CONNECT_NO_AUTH = 2 };

static int redis_no_reply(struct run *r, const char *what);

/* Connects (and AUTHs) within connect_timeout. CONNECT_QUIET: fail without
 * touching the error record (polling for the server to go or come back). */
static int redis_connect(struct run *r, unsigned flags)
{
	const struct src_settings *s = r->s;
	int64_t t = s->connect_timeout_ms < remaining_ms(r) ? s->connect_timeout_ms : remaining_ms(r);
	struct timeval tv = tv_ms(t);
	struct ops_error quiet_err = OPS_ERROR_INIT;
	struct ops_error *saved = r->err;
	int quiet = flags & CONNECT_QUIET;
	redisReply *rep = NULL;
	int ret = 0;

	if (quiet)
		r->err = &quiet_err;

	redis_close(r);
	r->rc = s->unix_socket ? redisConnectUnixWithTimeout(s->unix_socket, tv)
			       : redisConnectWithTimeout(s->host, s->port, tv);
	if (!r->rc || r->rc->err) {
		ret = quiet ? -OPS_EXIT_FAILED
			    : ops_error_set(r->err, OPS_EXIT_FAILED, "cannot connect: %s",
					    r->rc ? r->rc->errstr : "out of memory");
		if (!quiet && r->rc && (r->rc->err == REDIS_ERR_IO || r->rc->err == REDIS_ERR_EOF))
			ops_error_hint(r->err, "is Redis running and listening there? ([source \"%s\"] address)",
				       s->name);
		goto out;
	}
	redisSetTimeout(r->rc, tv);
	r->io_timeout_ms = t;
	if (s->password && !(flags & CONNECT_NO_AUTH)) {
		rep = s->username ? redisCommand(r->rc, "AUTH %s %s", s->username, s->password)
				  : redisCommand(r->rc, "AUTH %s", s->password);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			ret = rep ? ops_error_set(r->err, OPS_EXIT_FAILED, "AUTH failed: %s", rep->str)
				  : redis_no_reply(r, "AUTH");
			if (rep)
				ops_error_hint(r->err, "check %s in the env file", s->password_env);
			goto out;
		}
	}
out:
	if (rep)
		freeReplyObject(rep);
	if (ret < 0)
		redis_close(r);
	r->err = saved;
	ops_error_release(&quiet_err);
	return ret;
}

static redisReply *rcmd(struct run *r, const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	va_start(ap, fmt);
	rep = redisvCommand(r->rc, fmt, ap);
	va_end(ap);
	return rep;
}

/* "WHAT failed: ..." for a command that got no reply: a server that
 * accepted and never answered is named as such, not as hiredis's EAGAIN. */
static int redis_no_reply(struct run *r, const char *what)
{
	if (r->rc->err == REDIS_ERR_IO && !strcasecmp(r->rc->errstr, ops_strerror(EAGAIN))) {
		ops_error_set(r->err, OPS_EXIT_UNREACHABLE, "%s failed: no answer within %lldms", what,
			      (long long)r->io_timeout_ms);
		ops_error_hint(r->err, "the server accepted the connection and did not answer; is it Redis, "
			       "and not stopped? ([source \"%s\"] address, connect_timeout)", r->s->name);
		return -OPS_EXIT_UNREACHABLE;
	}
	return ops_error_set(r->err, OPS_EXIT_FAILED, "%s failed: %s", what,
			     r->rc->err ? r->rc->errstr : "no answer");
}

/* A reply that is not an error, or NULL with "WHAT failed: ..." in err. */
static redisReply *rcmd_ok(struct run *r, const char *what, redisReply *rep)
{
	if (!rep) {
		redis_no_reply(r, what);
		return NULL;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		ops_error_set(r->err, OPS_EXIT_FAILED, "%s failed: %s", what, rep->str);
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

/* "field:value" of an INFO answer into out; 0, or -1 when absent. */
static int info_field(const char *info, const char *field, char *out, size_t len)
{
	size_t flen = strlen(field);
	const char *p = info;

	while (p && *p) {
		if (!strncmp(p, field, flen) && p[flen] == ':') {
			size_t vlen = strcspn(p + flen + 1, "\r\n");
			if (vlen >= len)
				vlen = len - 1;
			memcpy(out, p + flen + 1, vlen);
			out[vlen] = '\0';
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

static int redis_info(struct run *r, const char *section, struct strbuf *out)
{
	redisReply *rep = rcmd_ok(r, "INFO", rcmd(r, "INFO %s", section));
	if (!rep)
		return -r->err->code;
	strbuf_reset(out);
	if (rep->type == REDIS_REPLY_STRING)
		strbuf_add(out, rep->str, rep->len);
	freeReplyObject(rep);
	return 0;
}

static int redis_integer(struct run *r, const char *what, long long *out)
{
	redisReply *rep = rcmd_ok(r, what, rcmd(r, what));
	int ret = 0;

	if (!rep)
		return -r->err->code;
	if (rep->type != REDIS_REPLY_INTEGER)
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "%s: unexpected answer", what);
	else
		*out = rep->integer;
	freeReplyObject(rep);
	return ret;
}

/* CONFIG GET key: the value into *out (malloc'd). */
static int redis_config_get(struct run *r, const char *key, char **out)
{
	redisReply *rep = rcmd_ok(r, "CONFIG GET", rcmd(r, "CONFIG GET %s", key));
	int ret = 0;

	if (!rep) {
		ops_error_hint(r->err, "when CONFIG is renamed or disabled, set rdb_path in [source \"%s\"]", r->s->name);
		return -r->err->code;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[1]->type != REDIS_REPLY_STRING)
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "CONFIG GET %s: unexpected answer", key);
	else
		*out = xstrdup(rep->element[1]->str);
	freeReplyObject(rep);
	return ret;
}

static int redis_rdb_path(struct run *r, char **out)
{
	char *dir = NULL, *file = NULL;
	int ret;

	if (r->s->rdb_path) {
		*out = xstrdup(r->s->rdb_path);
		return 0;
	}
	if ((ret = redis_config_get(r, "dir", &dir)) == 0 && (ret = redis_config_get(r, "dbfilename", &file)) == 0)
		*out = file[0] == '/' ? xstrdup(file) : xstrfmt("%s/%s", dir, file);
	free(dir);
	free(file);
	return ret;
}

/* The keys of every database (INFO keyspace: "db0:keys=3,expires=0,..."). */
static int redis_keys(struct run *r, long long *out)
{
	struct strbuf info = STRBUF_INIT;
	const char *p;
	int ret;

	*out = 0;
	if ((ret = redis_info(r, "keyspace", &info)) < 0)
		goto out;
	for (p = info.buf; (p = strstr(p, "keys=")); p += 5)
		if (p > info.buf && (p[-1] == ':'))
			*out += strtoll(p + 5, NULL, 10);
out:
	strbuf_release(&info);
	return ret;
}

/* Waits without busy looping: 50 ms growing to 500 ms. */
static void poll_sleep(int *step)
{
	int64_t ms = 50LL << (*step < 4 ? *step : 4);
	clock_sleep_ms(ms < 500 ? ms : 500);
	(*step)++;
}

/* BGSAVE until one of ours started (a save or an AOF rewrite already running
 * is waited for), then LASTSAVE past before and the status ok. */
static int redis_bgsave(struct run *r, long long *lastsave)
{
	struct strbuf info = STRBUF_INIT;
	redisReply *rep = NULL;
	long long before = 0, now = 0;
	char val[64];
	int ret = 0, step = 0;

	for (;;) {
		if ((ret = redis_integer(r, "LASTSAVE", &before)) < 0)
			goto out;
		/* LASTSAVE counts seconds: a save ending in the second of the last one
		 * would not move it, so ours starts in a later second */
		rep = rcmd_ok(r, "TIME", rcmd(r, "TIME"));
		if (!rep) {
			ret = -r->err->code;
			goto out;
		}
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
			now = strtoll(rep->element[0]->str, NULL, 10);
			if (now <= before)
				clock_sleep_ms(1000 - strtoll(rep->element[1]->str, NULL, 10) / 1000 + 10);
		}
		freeReplyObject(rep);
		rep = rcmd(r, "BGSAVE");
		if (!rep) {
			ret = redis_no_reply(r, "BGSAVE");
			goto out;
		}
		if (rep->type != REDIS_REPLY_ERROR)
			break;
		/* "Background save already in progress", "Another child process is
		 * active (AOF?)", older "An AOF log rewriting in progress" */
		if (!strstr(rep->str, "in progress") && !strstr(rep->str, "child process is active")) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "BGSAVE failed: %s", rep->str);
			goto out;
		}
		if (step == 0)
			ev(r, OPS_EVENT_VERBOSE, "source '%s': a save is already running, waiting for it", r->s->name);
		freeReplyObject(rep);
		rep = NULL;
		if (stopping(r)) {
			ret = interrupted(r);
			goto out;
		}
		if (expired(r)) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED,
					    "BGSAVE failed: the save already in progress did not end within the timeout");
			goto out;
		}
		poll_sleep(&step);
	}
	ev(r, OPS_EVENT_VERBOSE, "source '%s': BGSAVE: %s", r->s->name, rep->str ? rep->str : "started");
	step = 0;
	for (;;) {
		long long last = 0;
		if (stopping(r)) {
			ret = interrupted(r);
			goto out;
		}
		if ((ret = redis_integer(r, "LASTSAVE", &last)) < 0 || (ret = redis_info(r, "persistence", &info)) < 0)
			goto out;
		if (info_field(info.buf, "rdb_bgsave_in_progress", val, sizeof(val)) == 0 && !strcmp(val, "0")) {
			if (info_field(info.buf, "rdb_last_bgsave_status", val, sizeof(val)) == 0 && strcmp(val, "ok")) {
				ret = ops_error_set(r->err, OPS_EXIT_FAILED, "BGSAVE failed: rdb_last_bgsave_status:%s", val);
				ops_error_hint(r->err, "Redis's log says why (disk full, permissions of its dir, "
					       "vm.overcommit_memory)");
				goto out;
			}
			if (last > before) {
				*lastsave = last;
				break;
			}
		}
		if (expired(r)) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "BGSAVE did not finish within %llds "
					    "(LASTSAVE still %lld)", (long long)(r->s->timeout_ms / 1000), before);
			ops_error_hint(r->err, "a larger data set needs a longer [source \"%s\"] timeout", r->s->name);
			goto out;
		}
		poll_sleep(&step);
	}
out:
	if (rep)
		freeReplyObject(rep);
	strbuf_release(&info);
	return ret;
}

static int copy_rdb(struct run *r, const char *rdb, struct src_entry *e)
{
	unsigned char *buf = xmalloc(SRC_COPY_BUF);
	struct stat st;
	int fd = open(rdb, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		int saved = errno;
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot read the RDB file '%s': %s", rdb, ops_strerror(saved));
		if (saved == ENOENT)
			ops_error_hint(r->err, "the RDB is copied from this machine's disk: Redis must run here, or "
				       "set rdb_path to where its file is visible");
		else if (saved == EACCES)
			ops_error_hint(r->err, "run as a user that may read Redis's directory (e.g. in the redis group)");
		goto out;
	}
	r->what = "rdb";
	r->total = (uint64_t)st.st_size;
	for (;;) {
		ssize_t n = read(fd, buf, SRC_COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot read the RDB file '%s': %s", rdb,
					    ops_strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (r->written == 0 && ((size_t)n < strlen(RDB_MAGIC) || memcmp(buf, RDB_MAGIC, strlen(RDB_MAGIC)))) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "'%s' is not an RDB file", rdb);
			goto out;
		}
		if ((ret = out_write(r, buf, (size_t)n)) < 0)
			goto out;
		if (stopping(r)) {
			ret = interrupted(r);
			goto out;
		}
	}
	if (r->written == 0)
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "the RDB file '%s' is empty", rdb);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static int redis_backup(struct run *r, const char *set_dir, struct src_entry *e)
{
	struct strbuf info = STRBUF_INIT;
	char *rdb = NULL, *aof = NULL, version[64] = "", stamp[32];
	long long lastsave = 0, keys = 0;
	int ret;

	if ((ret = redis_connect(r, 0)) < 0)
		goto out;
	if ((ret = redis_info(r, "server", &info)) < 0)
		goto out;
	info_field(info.buf, "redis_version", version, sizeof(version));
	if ((ret = redis_rdb_path(r, &rdb)) < 0)
		goto out;
	if (!r->s->rdb_path && (ret = redis_config_get(r, "appendonly", &aof)) < 0)
		goto out;
	if ((ret = redis_bgsave(r, &lastsave)) < 0 || (ret = redis_keys(r, &keys)) < 0)
		goto out;
	if ((ret = out_open(r, set_dir, "rdb", e)) < 0 || (ret = copy_rdb(r, rdb, e)) < 0 ||
	    (ret = out_finish(r, e)) < 0)
		goto out;
	clock_rfc3339(stamp, (time_t)lastsave);
	e->details = cJSON_CreateObject();
	cJSON_AddStringToObject(e->details, "address", r->s->display + strlen("redis "));
	if (*version)
		cJSON_AddStringToObject(e->details, "redis_version", version);
	cJSON_AddNumberToObject(e->details, "lastsave", (double)lastsave);
	cJSON_AddStringToObject(e->details, "lastsave_at", stamp);
	cJSON_AddNumberToObject(e->details, "keys", (double)keys);
	cJSON_AddStringToObject(e->details, "rdb_path", rdb);
	if (aof)
		cJSON_AddBoolToObject(e->details, "appendonly", !strcmp(aof, "yes"));
	ev(r, OPS_EVENT_VERBOSE, "source '%s': %llu bytes from '%s' (%lld keys, LASTSAVE %s)", r->s->name,
	   (unsigned long long)e->size, rdb, keys, stamp);
out:
	redis_close(r);
	strbuf_release(&info);
	free(rdb);
	free(aof);
	return ret;
}

/* Polls until the server answers (and has loaded its data: no -LOADING) or,
 * with want_up = 0, no longer accepts connections. */
static int redis_wait(struct run *r, int want_up)
{
	int step = 0;

	for (;;) {
		int up = 0;
		/* gone means: no connection (an AUTH refused is still a server) */
		if (redis_connect(r, CONNECT_QUIET | (want_up ? 0 : CONNECT_NO_AUTH)) == 0) {
			redisReply *rep = want_up ? rcmd(r, "PING") : NULL;
			up = want_up ? rep && rep->type == REDIS_REPLY_STATUS : 1;
			if (rep)
				freeReplyObject(rep);
		}
		redis_close(r);
		if (up == want_up)
			return 0;
		if (stopping(r))
			return interrupted(r);
		if (expired(r))
			return ops_error_set(r->err, OPS_EXIT_FAILED, want_up ? "the server does not answer after start"
					     : "the server still answers after stop");
		poll_sleep(&step);
	}
}

static int run_command(struct run *r, const char *which, const char *cmdline)
{
	struct proc_opts po = { 0 };
	struct proc_result res;
	int ret;

	po.timeout_ms = remaining_ms(r);
	ev(r, OPS_EVENT_VERBOSE, "source '%s': %s: %s", r->s->name, which, cmdline);
	ret = proc_run_shell_checked(cmdline, &po, &res, r->err);
	if (ret < 0)
		ops_error_prefix(r->err, "%s", which);
	return ret;
}

/* Copies file into a new temporary file beside dest (owner and mode of
 * like, when there is one), fsynced; its path into *tmp_out. */
static int copy_beside(struct run *r, const char *file, const char *dest, const struct stat *like,
		       char **tmp_out)
{
	const char *slash = strrchr(dest, '/');
	char *tmp = xstrfmt("%.*s/.opsctl-restore-XXXXXX", (int)(slash - dest), dest);
	unsigned char *buf = xmalloc(SRC_COPY_BUF);
	int in = -1, out = -1, ret = 0;

	in = open(file, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot read '%s': %s", file, ops_strerror(errno));
		goto out;
	}
	out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot create a file in '%.*s': %s",
				    (int)(slash - dest), dest, ops_strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	for (;;) {
		ssize_t n = read(in, buf, SRC_COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot read '%s': %s", file, ops_strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (fs_write_all(out, buf, (size_t)n) < 0) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot write '%s': %s", tmp, ops_strerror(errno));
			goto out;
		}
	}
	if (like) {
		if (fchown(out, like->st_uid, like->st_gid) < 0 && errno != EPERM) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot chown '%s': %s", tmp, ops_strerror(errno));
			goto out;
		}
		fchmod(out, like->st_mode & 07777);
	} else {
		fchmod(out, 0644);
	}
	if (fsync(out) < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot write '%s': %s", tmp, ops_strerror(errno));
		goto out;
	}
out:
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0 && ret == 0)
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot write '%s': %s", tmp, ops_strerror(errno));
	if (ret < 0 && tmp) {
		unlink(tmp);
		free(tmp);
		tmp = NULL;
	}
	*tmp_out = tmp;
	free(buf);
	return ret;
}

static int check_keys_after(struct run *r, const struct src_restore_opts *o)
{
	const cJSON *k = o && o->entry ? cJSON_GetObjectItemCaseSensitive(o->entry->details, "keys") : NULL;
	long long want = cJSON_IsNumber(k) ? (long long)k->valuedouble : -1, have = 0;
	int ret;

	if (r->s->check == SRC_CHECK_PING || want < 0)
		return 0;
	if ((ret = redis_connect(r, 0)) < 0 || (ret = redis_keys(r, &have)) < 0)
		return ret;
	if (r->s->check == SRC_CHECK_KEYS && want > 0 && have == 0)
		return ops_error_set(r->err, OPS_EXIT_FAILED, "the server has no keys after the restore (the backup had %lld)",
				     want);
	if (r->s->check == SRC_CHECK_KEYS_EQUAL && have != want)
		return ops_error_set(r->err, OPS_EXIT_FAILED, "the server has %lld keys after the restore, the backup had %lld",
				     have, want);
	ev(r, OPS_EVENT_VERBOSE, "source '%s': %lld keys after the restore", r->s->name, have);
	return 0;
}

/* After a failure past the swap: the old RDB back, the server started. */
static void redis_undo(struct run *r, const char *rdb, const char *kept, int started)
{
	struct ops_error e2 = OPS_ERROR_INIT;
	struct run r2 = *r;
	struct strbuf what = STRBUF_INIT;

	r2.err = &e2;
	r2.rc = NULL;
	r2.deadline = clock_now_ms() + r->s->timeout_ms;
	if (started && (run_command(&r2, "stop", r->s->stop_cmd) < 0 || redis_wait(&r2, 0) < 0))
		goto out;
	if (kept) {
		if (rename(kept, rdb) < 0) {
			ops_error_set(&e2, OPS_EXIT_FAILED, "cannot rename '%s': %s", kept, ops_strerror(errno));
			goto out;
		}
		strbuf_addstr(&what, "the previous RDB is back in place and ");
	} else {
		unlink(rdb);
	}
	if (run_command(&r2, "start", r->s->start_cmd) < 0)
		goto out;
	strbuf_addstr(&what, "the server was started again");
out:
	if (e2.code)
		ops_error_hint(r->err, "putting the previous state back failed too (%s): the previous RDB is %s%s",
			       e2.msg.buf, kept ? "in " : "gone", kept ? kept : "");
	else
		ops_error_hint(r->err, "%s", what.buf);
	strbuf_release(&what);
	redis_close(&r2);
	ops_error_release(&e2);
}

/* A hard link PATH.pre_restore_STAMP[-N] to the current RDB (two restores
 * in one second keep both). */
static int keep_old(struct run *r, const char *rdb, const char *stamp, char **kept)
{
	for (int i = 1; i < 100; i++) {
		*kept = i == 1 ? xstrfmt("%s.pre_restore_%s", rdb, stamp)
			       : xstrfmt("%s.pre_restore_%s-%d", rdb, stamp, i);
		if (link(rdb, *kept) == 0)
			return 0;
		if (errno != EEXIST)
			break;
		free(*kept);
		*kept = NULL;
	}
	free(*kept);
	*kept = NULL;
	return ops_error_set(r->err, OPS_EXIT_FAILED, "cannot keep the current RDB '%s' beside it: %s", rdb,
			     ops_strerror(errno));
}

static int redis_restore(struct run *r, const char *file, const struct src_restore_opts *o)
{
	const struct src_settings *s = r->s;
	char *rdb = NULL, *aof = NULL, *tmp = NULL, *kept = NULL, stamp[32], magic[5];
	struct stat st;
	int ret, have_old, swapped = 0, started = 0, fd;

	if (!s->stop_cmd || !s->start_cmd) {
		ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "a restore needs the stop and start commands");
		ops_error_hint(r->err, "Redis writes its RDB when it stops: add stop = ... and start = ... to "
			       "[source \"%s\"]", s->name);
		goto out;
	}
	if ((ret = check_file(r, file, o)) < 0)
		goto out;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot read '%s': %s", file, ops_strerror(errno));
		goto out;
	}
	if (read(fd, magic, sizeof(magic)) != (ssize_t)sizeof(magic) || memcmp(magic, RDB_MAGIC, 5)) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "'%s' is not an RDB file", file);
		close(fd);
		goto out;
	}
	close(fd);
	if (redis_connect(r, 0) == 0) {
		if ((ret = redis_rdb_path(r, &rdb)) < 0)
			goto out;
		if (redis_config_get(r, "appendonly", &aof) < 0) {
			ev(r, OPS_EVENT_WARNING, "source '%s': cannot check appendonly (%s): a server with "
			   "appendonly yes loads its AOF, not the restored RDB", s->name, r->err->msg.buf);
		} else if (!strcmp(aof, "yes")) {
			ret = ops_error_set(r->err, OPS_EXIT_FAILED,
					    "the server runs with appendonly yes: it would load its AOF, not the restored RDB");
			ops_error_hint(r->err, "CONFIG SET appendonly no (and in redis.conf), restore, then CONFIG SET "
				       "appendonly yes: Redis writes a new AOF from the restored data");
			goto out;
		}
		ops_error_clear(r->err);
		redis_close(r);
	} else if (s->rdb_path) {
		ev(r, OPS_EVENT_WARNING, "source '%s': %s; restoring into '%s' without checking appendonly", s->name,
		   r->err->msg.buf, s->rdb_path);
		ops_error_clear(r->err);
		rdb = xstrdup(s->rdb_path);
	} else {
		ops_error_hint(r->err, "the RDB path comes from the running server; set rdb_path to restore into "
			       "a stopped one");
		ret = -r->err->code;
		goto out;
	}
	if ((ret = run_command(r, "stop", s->stop_cmd)) < 0 || (ret = redis_wait(r, 0)) < 0)
		goto out;
	have_old = stat(rdb, &st) == 0;
	if ((ret = copy_beside(r, file, rdb, have_old ? &st : NULL, &tmp)) < 0)
		goto fail;
	if (have_old) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
		if ((ret = keep_old(r, rdb, stamp, &kept)) < 0)
			goto fail;
	}
	if (rename(tmp, rdb) < 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "cannot rename '%s' to '%s': %s", tmp, rdb,
				    ops_strerror(errno));
		goto fail;
	}
	free(tmp);
	tmp = NULL;
	swapped = 1;
	{
		char *dir = xstrndup(rdb, (size_t)(strrchr(rdb, '/') - rdb));
		ret = fs_fsync_dir(dir, r->err);
		free(dir);
		if (ret < 0)
			goto fail;
	}
	if ((ret = run_command(r, "start", s->start_cmd)) < 0)
		goto fail;
	started = 1;
	if ((ret = redis_wait(r, 1)) < 0 || (ret = check_keys_after(r, o)) < 0)
		goto fail;
	if (kept)
		ev(r, OPS_EVENT_INFO, "source '%s': the previous RDB is kept as '%s'", s->name, kept);
	goto out;
fail:
	if (swapped) {
		redis_undo(r, rdb, kept, started);
	} else {
		/* the server's RDB was not touched: start it again */
		struct ops_error e2 = OPS_ERROR_INIT;
		struct run r2 = *r;
		r2.err = &e2;
		r2.rc = NULL;
		r2.deadline = clock_now_ms() + s->timeout_ms;
		if (kept)
			unlink(kept);
		if (run_command(&r2, "start", s->start_cmd) < 0)
			ops_error_hint(r->err, "starting the server again failed too: %s", e2.msg.buf);
		else
			ops_error_hint(r->err, "the server's RDB was not changed and the server was started again");
		ops_error_release(&e2);
	}
out:
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	redis_close(r);
	free(rdb);
	free(aof);
	free(kept);
	return ret;
}

/* ---- HTTP snapshots ---- */

struct http_headers {
	char *auth;
	const char *list[4];
};

static void headers_init(struct http_headers *h, const struct src_settings *s, int json_body)
{
	size_t n = 0;

	h->auth = NULL;
	h->list[n++] = "Accept: application/json, */*";
	if (json_body)
		h->list[n++] = "Content-Type: application/json";
	if (s->api_key) {
		if (!strcasecmp(s->api_key_header, "Authorization"))
			h->auth = xstrfmt("Authorization: Bearer %s", s->api_key);
		else
			h->auth = xstrfmt("%s: %s", s->api_key_header, s->api_key);
		h->list[n++] = h->auth;
	}
	h->list[n] = NULL;
}

static void headers_release(struct http_headers *h)
{
	free_secret(h->auth);
	h->auth = NULL;
}

/* The gist of an error answer: Qdrant's status.error, or the first line. */
static void answer_gist(struct strbuf *out, const struct strbuf *body)
{
	cJSON *j = body->len ? cJSON_ParseWithLength(body->buf, body->len) : NULL;
	const cJSON *msg = j ? src_json_field(j, "status.error") : NULL;
	size_t len;

	if (!cJSON_IsString(msg) && j)
		msg = src_json_field(j, "error");
	if (!cJSON_IsString(msg) && j)
		msg = src_json_field(j, "message");
	if (cJSON_IsString(msg)) {
		strbuf_addf(out, ": %s", msg->valuestring);
	} else if (body->len) {
		len = strcspn(body->buf, "\r\n");
		strbuf_addf(out, ": %.*s%s", (int)(len > 200 ? 200 : len), body->buf, len > 200 ? "..." : "");
	}
	cJSON_Delete(j);
}

/* Performs one call: 0 on a 2xx answer, else "METHOD URL: ..." in err. */
static int http_step(struct run *r, struct http_call *c, const char *step)
{
	struct strbuf what = STRBUF_INIT;
	int ret = 0;

	c->timeout_ms = remaining_ms(r);
	c->connect_timeout_ms = r->s->connect_timeout_ms;
	http_describe(&what, c->method, c->url);
	if (http_call_perform(c, r->err) < 0) {
		ret = -r->err->code;
		ops_error_prefix(r->err, "%s failed: %s", step, what.buf);
		goto out;
	}
	if (c->status < 200 || c->status >= 300) {
		struct strbuf gist = STRBUF_INIT;
		answer_gist(&gist, &c->body);
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "%s failed: %s answered %ld%s", step, what.buf, c->status,
				    gist.buf);
		if (c->status == 401 || c->status == 403)
			ops_error_hint(r->err, "check api_key_env of [source \"%s\"]", r->s->name);
		strbuf_release(&gist);
	}
out:
	strbuf_release(&what);
	return ret;
}

static int fill_url(struct run *r, const char *tmpl, const char *snapshot, int escape, struct strbuf *out)
{
	struct src_vars v = { r->s->url, r->s->collection, snapshot };
	strbuf_reset(out);
	return src_template_fill(tmpl, &v, escape, out, r->err);
}

struct sink_state {
	struct run *r;
	int stop;
	struct ops_error werr;  /* the write error, which the transfer's own would hide */
};

static int download_sink(void *data, const void *buf, size_t len)
{
	struct sink_state *ss = data;
	struct ops_error *saved = ss->r->err;
	int ret;

	ss->r->err = &ss->werr;
	ret = out_write(ss->r, buf, len);
	ss->r->err = saved;
	if (ret < 0)
		return 1;
	if (stopping(ss->r)) {
		ss->stop = 1;
		return 1;
	}
	return 0;
}

static int http_delete(struct run *r, const char *snapshot)
{
	struct strbuf url = STRBUF_INIT;
	struct http_headers h;
	struct http_call c;
	int ret;

	headers_init(&h, r->s, 0);
	http_call_init(&c, r->s->delete_method, NULL, 0);
	c.headers = h.list;
	if ((ret = fill_url(r, r->s->delete_url, snapshot, 1, &url)) == 0) {
		c.url = url.buf;
		/* a delete gets its own minute even when the download used up the deadline */
		if (remaining_ms(r) < 60000)
			r->deadline = clock_now_ms() + 60000;
		ret = http_step(r, &c, "deleting the snapshot on the server");
	}
	http_call_release(&c);
	headers_release(&h);
	strbuf_release(&url);
	return ret;
}

static int http_backup(struct run *r, const char *set_dir, struct src_entry *e)
{
	const struct src_settings *s = r->s;
	struct strbuf url = STRBUF_INIT, body = STRBUF_INIT;
	struct http_headers h;
	struct http_call c;
	struct sink_state ss = { r, 0, OPS_ERROR_INIT };
	cJSON *answer = NULL;
	const cJSON *field;
	char *snapshot = NULL, *server_sum = NULL, stamp[32];
	int ret, created = 0, deleted = 0;
	int own_name = strstr(s->create_url, "{name}") || (s->create_body && strstr(s->create_body, "{name}"));

	headers_init(&h, s, s->create_body != NULL);
	http_call_init(&c, s->create_method, NULL, 0);
	c.headers = h.list;
	c.max_body = SRC_ANSWER_MAX;
	if (own_name) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
		snapshot = xstrfmt("opsctl-%s-%s", s->name, stamp);
	}
	if ((ret = fill_url(r, s->create_url, snapshot, 1, &url)) < 0)
		goto out;
	if (s->create_body && (ret = fill_url(r, s->create_body, snapshot, 0, &body)) < 0)
		goto out;
	c.url = url.buf;
	if (s->create_body) {
		c.data = body.buf;
		c.data_len = body.len;
	}
	if ((ret = http_step(r, &c, "creating the snapshot")) < 0)
		goto out;
	created = 1;
	answer = c.body.len ? cJSON_ParseWithLength(c.body.buf, c.body.len) : NULL;
	if (!own_name) {
		field = answer ? src_json_field(answer, s->name_field) : NULL;
		if (!cJSON_IsString(field) || !*field->valuestring || strchr(field->valuestring, '/')) {
			created = 0; /* nothing known to delete */
			ret = ops_error_set(r->err, OPS_EXIT_FAILED, "the answer to creating the snapshot has no "
					    "snapshot name at '%s'", s->name_field);
			ops_error_hint(r->err, "name_field in [source \"%s\"] says where the answer holds it", s->name);
			goto out;
		}
		snapshot = xstrdup(field->valuestring);
	}
	if (s->checksum_field && answer) {
		field = src_json_field(answer, s->checksum_field);
		if (cJSON_IsString(field) && is_hex64(field->valuestring))
			server_sum = xstrdup(field->valuestring);
	}
	ev(r, OPS_EVENT_VERBOSE, "source '%s': snapshot '%s' created", s->name, snapshot);

	http_call_release(&c);
	http_call_init(&c, s->download_method, NULL, 0);
	c.headers = h.list;
	c.sink = download_sink;
	c.sink_data = &ss;
	if ((ret = fill_url(r, s->download_url, snapshot, 1, &url)) < 0 ||
	    (ret = out_open(r, set_dir, "snapshot", e)) < 0)
		goto out;
	c.url = url.buf;
	r->what = "snapshot";
	if ((ret = http_step(r, &c, "downloading the snapshot")) < 0) {
		if (ss.stop)
			ret = interrupted(r);
		else if (ss.werr.code)
			ret = ops_error_set(r->err, ss.werr.code, "%s", ss.werr.msg.buf);
		goto out;
	}
	if (c.sunk == 0) {
		ret = ops_error_set(r->err, OPS_EXIT_FAILED, "downloading the snapshot: the answer was empty");
		goto out;
	}
	if ((ret = out_finish(r, e)) < 0)
		goto out;
	if (server_sum && strcmp(server_sum, e->sha256)) {
		ret = ops_error_set(r->err, OPS_EXIT_INTEGRITY, "the downloaded snapshot's SHA-256 %s is not the "
				    "server's %s", e->sha256, server_sum);
		goto out;
	}
out:
	if (created && snapshot) {
		struct ops_error derr = OPS_ERROR_INIT;
		struct run r2 = *r;
		r2.err = &derr;
		deleted = !s->delete_url || http_delete(&r2, snapshot) == 0;
		if (!deleted) {
			if (ret < 0)
				ops_error_hint(r->err, "the snapshot '%s' is still on the server: %s", snapshot, derr.msg.buf);
			else
				ev(r, OPS_EVENT_WARNING, "source '%s': the snapshot '%s' is still on the server: %s", s->name,
				   snapshot, derr.msg.buf);
		}
		ops_error_release(&derr);
	}
	if (ret == 0) {
		e->details = cJSON_CreateObject();
		if (s->url)
			cJSON_AddStringToObject(e->details, "url", s->url);
		if (s->preset)
			cJSON_AddStringToObject(e->details, "preset", s->preset);
		if (s->collection)
			cJSON_AddStringToObject(e->details, "collection", s->collection);
		cJSON_AddStringToObject(e->details, "snapshot", snapshot);
		if (server_sum)
			cJSON_AddStringToObject(e->details, "server_checksum", server_sum);
		cJSON_AddBoolToObject(e->details, "server_snapshot_deleted", s->delete_url && deleted);
	}
	cJSON_Delete(answer);
	ops_error_release(&ss.werr);
	http_call_release(&c);
	headers_release(&h);
	strbuf_release(&url);
	strbuf_release(&body);
	free(snapshot);
	free(server_sum);
	return ret;
}

static int http_restore(struct run *r, const char *file, const struct src_restore_opts *o)
{
	const struct src_settings *s = r->s;
	const cJSON *snap = o && o->entry ? cJSON_GetObjectItemCaseSensitive(o->entry->details, "snapshot") : NULL;
	struct strbuf url = STRBUF_INIT;
	struct http_headers h;
	struct http_call c;
	int ret;

	headers_init(&h, s, 0);
	http_call_init(&c, s->restore_method, NULL, 0);
	if (!s->restore_url) {
		ret = ops_error_set(r->err, OPS_EXIT_CONFIG, "no restore URL");
		ops_error_hint(r->err, "add restore = URL to [source \"%s\"]", s->name);
		goto out;
	}
	if ((ret = check_file(r, file, o)) < 0 ||
	    (ret = fill_url(r, s->restore_url, cJSON_IsString(snap) ? snap->valuestring : NULL, 1, &url)) < 0)
		goto out;
	c.url = url.buf;
	c.headers = h.list;
	c.upload_path = file;
	c.form_field = s->restore_upload == SRC_UPLOAD_MULTIPART ? s->restore_field : NULL;
	c.max_body = SRC_ANSWER_MAX;
	ret = http_step(r, &c, "uploading the snapshot");
out:
	http_call_release(&c);
	headers_release(&h);
	strbuf_release(&url);
	return ret;
}

/* ---- entry points ---- */

/* hiredis writes to its socket with write(2): a server that went away must
 * give EPIPE, not a SIGPIPE that kills us. Blocked for the run, and one it
 * raised discarded. (libcurl guards itself.) */
struct pipe_guard {
	sigset_t old;
	int was_pending;
};

static void pipe_guard_on(struct pipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE);
}

static void pipe_guard_off(struct pipe_guard *g)
{
	sigset_t set, pending;
	struct timespec zero = { 0, 0 };

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigpending(&pending);
	if (!g->was_pending && sigismember(&pending, SIGPIPE))
		sigtimedwait(&set, NULL, &zero);
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static void run_init(struct run *r, const struct src_settings *s, const struct src_callbacks *cb,
		     struct ops_error *err)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->cb = cb;
	r->err = err;
	r->fd = -1;
	r->deadline = clock_now_ms() + s->timeout_ms;
}

/* Names the source in front of the message; a failure to reach it is a
 * failed backup (exit 1), like every other source failure. */
static int finish_error(const struct src_settings *s, int ret, struct ops_error *err)
{
	if (ret >= 0)
		return ret;
	if (err->code == OPS_EXIT_UNREACHABLE)
		err->code = OPS_EXIT_FAILED;
	ops_error_prefix(err, "source '%s' (%s)", s->name, s->display ? s->display : src_type_name(s->type));
	return -err->code;
}

int src_backup(const struct src_settings *s, const char *set_dir, const struct src_callbacks *cb,
	       struct src_entry *out, struct ops_error *err)
{
	struct pipe_guard guard;
	struct run r;
	int ret;

	run_init(&r, s, cb, err);
	out->name = xstrdup(s->name);
	out->type = xstrdup(src_type_name(s->type));
	pipe_guard_on(&guard);
	ret = s->type == SRC_REDIS ? redis_backup(&r, set_dir, out) : http_backup(&r, set_dir, out);
	pipe_guard_off(&guard);
	if (ret < 0) {
		out_abandon(&r);
		src_entry_release(out);
	}
	hash_sha256_release(&r.hash);
	free(r.path);
	return finish_error(s, ret, err);
}

int src_restore(const struct src_settings *s, const char *file, const struct src_restore_opts *o,
		const struct src_callbacks *cb, struct ops_error *err)
{
	struct pipe_guard guard;
	struct run r;
	int ret;

	run_init(&r, s, cb, err);
	pipe_guard_on(&guard);
	if (o && o->entry && o->entry->type && strcmp(o->entry->type, src_type_name(s->type)))
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "the backup holds a %s source, the config says type = %s",
				    o->entry->type, src_type_name(s->type));
	else
		ret = s->type == SRC_REDIS ? redis_restore(&r, file, o) : http_restore(&r, file, o);
	pipe_guard_off(&guard);
	return finish_error(s, ret, err);
}
