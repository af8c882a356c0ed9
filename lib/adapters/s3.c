/* S3-compatible storage over libcurl: SigV4 from libcurl, XML from libxml2,
 * multipart uploads over curl multi that resume from a state file. */
#include "adapters/s3.h"
#include "adapters/hash.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "system/clock.h"
#include "system/fs.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dlfcn.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define S3_MAX_BODY (4 * 1024 * 1024)       /* a ListObjectsV2 page of 1000 keys is ~300 KiB */
#define S3_MAX_BACKOFF_MS 30000
#define S3_PROGRESS_EVERY_MS 200
#define S3_READ_CHUNK (1024 * 1024)
#define S3_TRICKLE_BYTES 1024 /* at least this much moves in every [storage] timeout */
#define S3_STATE_VERSION 1
#define S3_MAX_PARTS 10000
#define S3_NO_SUCH_UPLOAD (-405)             /* internal: start the multipart upload again */
#define S3_SOURCE_DAMAGED (-406)             /* internal: the file's SHA-256 is not the one expected */

/* The SHA-256 of no bytes: the payload hash of a request without a body. */
static const char empty_sha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* ---- settings ------------------------------------------------------------ */

void s3_settings_init(struct s3_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->verify_tls = 1;
	s->concurrency = S3_DEFAULT_CONCURRENCY;
	s->timeout_ms = S3_DEFAULT_TIMEOUT_MS;
}

static void wipe_free(char *p)
{
	if (p) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

void s3_settings_release(struct s3_settings *s)
{
	free(s->name);
	free(s->endpoint);
	free(s->bucket);
	free(s->prefix);
	free(s->region);
	free(s->access_key_env);
	free(s->secret_key_env);
	wipe_free(s->access_key);
	wipe_free(s->secret_key);
	free(s->credentials_from);
	free(s->ca_file);
	s3_settings_init(s);
}

static const char *const known_keys[] = {
	"type", "endpoint", "bucket", "prefix", "region", "path_style", "access_key_env",
	"secret_key_env", "ca_file", "verify_tls", "part_size", "concurrency", "timeout",
	"workers", /* engines/offsite: files sent at the same time */
	NULL,
};

/* Keys people write when they mean to put the secret itself in the file. */
static const char *const literal_keys[] = {
	"access_key", "secret_key", "access_key_id", "secret_access_key", "aws_access_key_id",
	"aws_secret_access_key", "password", "secret", NULL,
};

static int in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (!strcmp(*list, s))
			return 1;
	return 0;
}

static int storage_missing(const struct config *cfg, const char *name, const char *what,
			   struct ops_error *err)
{
	return ops_error_set(err, OPS_EXIT_CONFIG, "[storage \"%s\"] in '%s' needs %s", name,
			     cfg->path ? cfg->path : "the config", what);
}

static int check_keys(const struct config *cfg, const char *name, struct ops_error *err)
{
	for (size_t i = 0; i < cfg->nr; i++) {
		const struct config_entry *e = &cfg->entries[i];
		if (strcmp(e->section, "storage") || !e->subsection || strcmp(e->subsection, name))
			continue;
		if (in_list(literal_keys, e->key)) {
			int ret = config_error(cfg, e, err,
					       "'storage.%s.%s': keys are not kept in the config file; use %s",
					       name, e->key,
					       strstr(e->key, "secret") || !strcmp(e->key, "password")
						       ? "secret_key_env = VARIABLE"
						       : "access_key_env = VARIABLE");
			ops_error_hint(err, "name a variable of the env file ([app] env_file) or the "
				       "environment that holds the key, e.g. access_key_env = MINIO_ACCESS_KEY");
			return ret;
		}
		if (!in_list(known_keys, e->key))
			return config_error(cfg, e, err, "unknown key 'storage.%s.%s'", name, e->key);
	}
	return 0;
}

static char *get_dup(const struct config *cfg, const char *name, const char *key)
{
	const char *v = config_get(cfg, "storage", name, key);
	return v && *v ? xstrdup(v) : NULL;
}

static int load_endpoint(struct s3_settings *s, const struct config *cfg, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "storage", s->name, "endpoint");
	const char *v = e ? e->value : NULL;
	size_t len;

	if (!v || !*v)
		return storage_missing(cfg, s->name, "endpoint = URL (e.g. http://localhost:9000)", err);
	if (!starts_with(v, "http://") && !starts_with(v, "https://"))
		return config_error(cfg, e, err, "endpoint '%s' is not an http:// or https:// URL", v);
	if (strchr(v, '@') || strchr(v, '?') || strchr(v, '#') || strchr(v, ' '))
		return config_error(cfg, e, err,
				    "endpoint '%s' must be scheme://host[:port][/path] (no user, query or fragment)", v);
	len = strlen(v);
	while (len > 0 && v[len - 1] == '/')
		len--;
	s->endpoint = xstrndup(v, len);
	return 0;
}

/* S3's rules for bucket names (the subset every implementation accepts). */
static int bucket_name_valid(const char *b)
{
	size_t n = strlen(b);
	if (n < 3 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-' ||
		      b[i] == '.'))
			return 0;
	return b[0] != '-' && b[0] != '.' && b[n - 1] != '-' && b[n - 1] != '.';
}

static int load_prefix(struct s3_settings *s, const struct config *cfg, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "storage", s->name, "prefix");
	const char *v = e ? e->value : "";
	size_t len;

	while (*v == '/')
		v++;
	len = strlen(v);
	while (len > 0 && v[len - 1] == '/')
		len--;
	s->prefix = xstrndup(v, len);
	if (strstr(s->prefix, "//") || strstr(s->prefix, "/../") || !strcmp(s->prefix, "..") ||
	    starts_with(s->prefix, "../"))
		return config_error(cfg, e, err, "prefix '%s' is not a plain key prefix", e->value);
	return 0;
}

/* access_key_env / secret_key_env: the variable's name from the config, its
 * value from the env file, then the environment. */
static int load_key(struct s3_settings *s, const struct config *cfg, const struct envfile *env,
		    const char *setting, char **name_out, char **value_out, struct ops_error *err)
{
	const struct config_entry *e = config_find_entry(cfg, "storage", s->name, setting);
	const char *value = NULL, *from = NULL;
	int ret;

	if (!e || !*e->value) {
		struct strbuf what = STRBUF_INIT;
		strbuf_addf(&what, "%s = VARIABLE (the env file or environment variable holding the %s key)",
			    setting, !strcmp(setting, "access_key_env") ? "access" : "secret");
		ret = storage_missing(cfg, s->name, what.buf, err);
		strbuf_release(&what);
		return ret;
	}
	if (!envfile_key_valid(e->value))
		return config_error(cfg, e, err, "'%s' is not a variable name (letters, digits, '_')", e->value);
	*name_out = xstrdup(e->value);
	if (env && (value = envfile_get(env, e->value)) && *value) {
		from = env->path;
	} else {
		value = getenv(e->value);
		from = NULL;
	}
	if (!value || !*value) {
		if (env && env->path)
			ret = config_error(cfg, e, err, "%s (%s) is set neither in '%s' nor in the environment",
					   e->value, setting, env->path);
		else
			ret = config_error(cfg, e, err, "%s (%s) is not set in the environment", e->value, setting);
		ops_error_hint(err, "add %s=... to the app's env file ([app] env_file)", e->value);
		return ret;
	}
	*value_out = xstrdup(value);
	if (!s->credentials_from)
		s->credentials_from = from ? xstrfmt("'%s'", from) : xstrdup("the environment");
	return 0;
}

int s3_settings_load(struct s3_settings *s, const struct config *cfg, const char *name,
		     const struct envfile *env, struct ops_error *err)
{
	const struct config_entry *e;
	uint64_t part_size = 0;
	int ret;

	if (!config_has_subsection(cfg, "storage", name)) {
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "no [storage \"%s\"] in '%s'", name,
				    cfg && cfg->path ? cfg->path : "the config");
		ops_error_hint(err, "define it: [storage \"%s\"] with type = s3, endpoint, bucket, "
			       "access_key_env, secret_key_env", name);
		return ret;
	}
	s->name = xstrdup(name);
	if ((ret = check_keys(cfg, name, err)) < 0)
		return ret;
	e = config_find_entry(cfg, "storage", name, "type");
	if (!e)
		return storage_missing(cfg, name, "type = s3", err);
	if (strcmp(e->value, "s3"))
		return config_error(cfg, e, err, "unknown storage type '%s' (expected s3)", e->value);
	if (config_get_bool(cfg, "storage", name, "path_style", &s->path_style, err) < 0 ||
	    config_get_bool(cfg, "storage", name, "verify_tls", &s->verify_tls, err) < 0)
		return -err->code;
	if ((ret = load_endpoint(s, cfg, err)) < 0)
		return ret;
	s->bucket = get_dup(cfg, name, "bucket");
	if (!s->bucket)
		return storage_missing(cfg, name, "bucket = NAME", err);
	if (!bucket_name_valid(s->bucket))
		return config_error(cfg, config_find_entry(cfg, "storage", name, "bucket"), err,
				    "'%s' is not a bucket name (3-63 of a-z 0-9 . -)", s->bucket);
	if ((ret = load_prefix(s, cfg, err)) < 0)
		return ret;
	s->region = get_dup(cfg, name, "region");
	if (!s->region)
		s->region = xstrdup("us-east-1");
	if (strpbrk(s->region, ": /"))
		return config_error(cfg, config_find_entry(cfg, "storage", name, "region"), err,
				    "'%s' is not a region name", s->region);
	s->ca_file = get_dup(cfg, name, "ca_file");
	if (s->ca_file && access(s->ca_file, R_OK) < 0)
		return config_error(cfg, config_find_entry(cfg, "storage", name, "ca_file"), err,
				    "cannot read ca_file '%s': %s", s->ca_file, ops_strerror(errno));
	if (config_get_size(cfg, "storage", name, "part_size", &part_size, err) < 0 ||
	    config_get_int(cfg, "storage", name, "concurrency", 1, S3_MAX_CONCURRENCY, &s->concurrency,
			   err) < 0 ||
	    config_get_duration_ms(cfg, "storage", name, "timeout", &s->timeout_ms, err) < 0)
		return -err->code;
	e = config_find_entry(cfg, "storage", name, "part_size");
	if (e && (part_size < S3_MIN_PART_SIZE || part_size > S3_MAX_PART_SIZE))
		return config_error(cfg, e, err, "part_size must be between 5M and 5G (S3's limits), not '%s'",
				    e->value);
	s->part_size = part_size;
	e = config_find_entry(cfg, "storage", name, "timeout");
	if (e && s->timeout_ms < 1000)
		return config_error(cfg, e, err, "timeout must be at least 1s, not '%s'", e->value);
	if ((ret = load_key(s, cfg, env, "access_key_env", &s->access_key_env, &s->access_key, err)) < 0 ||
	    (ret = load_key(s, cfg, env, "secret_key_env", &s->secret_key_env, &s->secret_key, err)) < 0)
		return ret;
	return 0;
}

/* ---- URLs ---------------------------------------------------------------- */

void s3_uri_encode(struct strbuf *out, const char *key, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/')) {
			strbuf_addch(out, *p);
		} else {
			strbuf_addch(out, '%');
			strbuf_addch(out, hex[*p >> 4]);
			strbuf_addch(out, hex[*p & 15]);
		}
	}
}

/* prefix/key, the object's name in the bucket. */
static void full_key(const struct s3_settings *s, const char *key, struct strbuf *out)
{
	if (s->prefix && *s->prefix) {
		strbuf_addstr(out, s->prefix);
		if (*key)
			strbuf_addch(out, '/');
	}
	strbuf_addstr(out, key);
}

/* The full key is already prefixed: one URL builder for both. */
static void url_for_full_key(const struct s3_settings *s, const char *fkey, const char *query,
			     struct strbuf *out)
{
	const char *authority = strstr(s->endpoint, "://");

	strbuf_reset(out);
	if (s->path_style || !authority) {
		strbuf_addf(out, "%s/", s->endpoint);
		s3_uri_encode(out, s->bucket, 0);
		strbuf_addch(out, '/');
	} else {
		authority += 3;
		strbuf_add(out, s->endpoint, (size_t)(authority - s->endpoint));
		strbuf_addf(out, "%s.%s/", s->bucket, authority);
	}
	s3_uri_encode(out, fkey, 1);
	if (query && *query)
		strbuf_addf(out, "?%s", query);
}

void s3_url(const struct s3_settings *s, const char *key, const char *query, struct strbuf *out)
{
	struct strbuf fkey = STRBUF_INIT;
	full_key(s, key, &fkey);
	if (!*key)
		strbuf_reset(&fkey); /* the bucket itself: the prefix goes in the query */
	url_for_full_key(s, fkey.buf, query, out);
	strbuf_release(&fkey);
}

uint64_t s3_part_size(uint64_t file_size, uint64_t min_part)
{
	uint64_t part = min_part ? min_part : S3_DEFAULT_PART_SIZE;
	uint64_t spread = file_size / S3_PART_SPREAD + (file_size % S3_PART_SPREAD != 0);

	spread = (spread + S3_MIB - 1) / S3_MIB * S3_MIB;
	if (spread > part)
		part = spread;
	return part > S3_MAX_PART_SIZE ? S3_MAX_PART_SIZE : part;
}

/* ---- XML ----------------------------------------------------------------- */

/* libxml2 writes some errors (a bad encoding) to stderr whatever the parse
 * options say; lib/ never prints, and a bad answer is reported by the caller. */
static void xml_quiet(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

/* libxml2 (and ICU behind it) is loaded when the first answer is read, not
 * at every start of opsctl: most commands never talk to a storage. Four
 * entry points are enough; the tree is walked through its public structs. */
#define XML_LIBRARY "libxml2.so.2"

static struct {
	void (*init_parser)(void);
	void (*set_generic_error_func)(void *ctx, xmlGenericErrorFunc handler);
	xmlDocPtr (*read_memory)(const char *buffer, int size, const char *url, const char *encoding, int options);
	void (*free_doc)(xmlDocPtr doc);
} X;
static int xml_loaded;
static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_load_once(void)
{
	void *h = dlopen(XML_LIBRARY, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		return;
	*(void **)&X.init_parser = dlsym(h, "xmlInitParser");
	*(void **)&X.set_generic_error_func = dlsym(h, "xmlSetGenericErrorFunc");
	*(void **)&X.read_memory = dlsym(h, "xmlReadMemory");
	*(void **)&X.free_doc = dlsym(h, "xmlFreeDoc");
	if (!X.init_parser || !X.set_generic_error_func || !X.read_memory || !X.free_doc) {
		memset(&X, 0, sizeof(X));
		dlclose(h);
		return;
	}
	X.init_parser();
	xml_loaded = 1;
}

/* No network, no entity substitution, no DTD loading: an answer is data.
 * NULL when it is not XML (or libxml2 cannot be loaded). */
static xmlDocPtr xml_read(const char *xml, size_t len)
{
	if (!xml || !len || len > INT_MAX)
		return NULL;
	pthread_once(&xml_once, xml_load_once);
	if (!xml_loaded)
		return NULL;
	X.set_generic_error_func(NULL, xml_quiet);   /* per thread in libxml2 */
	return X.read_memory(xml, (int)len, "s3-answer.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static void xml_free(xmlDocPtr doc)
{
	if (doc && xml_loaded)
		X.free_doc(doc);
}

static xmlNodePtr xml_root(xmlDocPtr doc)
{
	for (xmlNodePtr n = doc ? doc->children : NULL; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE)
			return n;
	return NULL;
}

static int is_element(xmlNodePtr n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

static xmlNodePtr xml_child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
		if (is_element(n, name))
			return n;
	return NULL;
}

/* The text of parent's first <name> into out (emptied first); 0 when there is one. */
static int xml_child_text(xmlNodePtr parent, const char *name, struct strbuf *out)
{
	xmlNodePtr n = xml_child(parent, name);

	strbuf_reset(out);
	if (!n)
		return -1;
	/* the text and CDATA children; an entity reference is not expanded */
	for (xmlNodePtr c = n->children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
			strbuf_addstr(out, (const char *)c->content);
	return 0;
}

/* ETags come quoted ("\"abc\"", or &quot;abc&quot; in XML); ours are bare. */
static void etag_copy(char out[S3_ETAG_MAX], const char *v, size_t len)
{
	while (len && (*v == '"' || *v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len && (v[len - 1] == '"' || v[len - 1] == ' ' || v[len - 1] == '\t' ||
		       v[len - 1] == '\r' || v[len - 1] == '\n'))
		len--;
	if (len >= S3_ETAG_MAX)
		len = S3_ETAG_MAX - 1;
	memcpy(out, v, len);
	out[len] = '\0';
}

/* "2026-11-22T02:24:02.000Z" (S3's ISO 8601 in UTC), or 0. */
static time_t parse_iso_time(const char *s)
{
	struct tm tm;
	int y, mo, d, h, mi, sec;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
		return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	return timegm(&tm);
}

int s3_parse_error(const char *xml, size_t len, struct strbuf *code, struct strbuf *message)
{
	xmlDocPtr doc = xml_read(xml, len);
	xmlNodePtr root = doc ? xml_root(doc) : NULL;
	int ret = -1;

	strbuf_reset(code);
	strbuf_reset(message);
	if (!is_element(root, "Error"))
		goto out;
	xml_child_text(root, "Code", code);
	xml_child_text(root, "Message", message);
	ret = 0;
out:
	if (doc)
		xml_free(doc);
	return ret;
}

int s3_parse_initiate(const char *xml, size_t len, struct strbuf *upload_id, struct ops_error *err)
{
	xmlDocPtr doc = xml_read(xml, len);
	xmlNodePtr root = doc ? xml_root(doc) : NULL;
	int ret = 0;

	strbuf_reset(upload_id);
	if (!is_element(root, "InitiateMultipartUploadResult") ||
	    xml_child_text(root, "UploadId", upload_id) < 0 || !upload_id->len) {
		ret = ops_error_set(err, OPS_EXIT_FAILED,
				    "the storage's answer to starting a multipart upload has no UploadId");
		goto out;
	}
	/* it goes into URLs and the state file: refuse anything odd */
	for (size_t i = 0; i < upload_id->len; i++)
		if ((unsigned char)upload_id->buf[i] <= ' ' || upload_id->buf[i] == 0x7f) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "the storage sent an UploadId with control characters");
			goto out;
		}
out:
	if (doc)
		xml_free(doc);
	return ret;
}

static struct s3_object *list_add(struct s3_list *l)
{
	if (l->nr == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 64;
		l->items = xrealloc(l->items, l->alloc * sizeof(*l->items));
	}
	memset(&l->items[l->nr], 0, sizeof(l->items[0]));
	return &l->items[l->nr++];
}

int s3_parse_list(const char *xml, size_t len, const char *strip, struct s3_list *out,
		  struct strbuf *next_token, struct ops_error *err)
{
	xmlDocPtr doc = xml_read(xml, len);
	xmlNodePtr root = doc ? xml_root(doc) : NULL;
	struct strbuf v = STRBUF_INIT;
	size_t strip_len = strip ? strlen(strip) : 0;
	int ret = 0;

	strbuf_reset(next_token);
	if (!is_element(root, "ListBucketResult")) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "the storage's answer to a listing is not a ListBucketResult");
		goto out;
	}
	for (xmlNodePtr n = root->children; n; n = n->next) {
		struct s3_object *o;
		char *end;
		if (!is_element(n, "Contents"))
			continue;
		if (xml_child_text(n, "Key", &v) < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "the storage listed an object without a Key");
			goto out;
		}
		if (strncmp(v.buf, strip ? strip : "", strip_len) || !v.buf[strip_len])
			continue;
		o = list_add(out);
		o->key = xstrdup(v.buf + strip_len);
		if (xml_child_text(n, "Size", &v) == 0) {
			errno = 0;
			o->size = strtoull(v.buf, &end, 10);
			if (errno || end == v.buf || *end || v.buf[0] < '0' || v.buf[0] > '9') {
				ret = ops_error_set(err, OPS_EXIT_FAILED, "the storage listed '%s' with a size of '%s'",
						    o->key, v.buf);
				goto out;
			}
		}
		if (xml_child_text(n, "ETag", &v) == 0)
			etag_copy(o->etag, v.buf, v.len);
		if (xml_child_text(n, "LastModified", &v) == 0)
			o->last_modified = parse_iso_time(v.buf);
	}
	if (xml_child_text(root, "IsTruncated", &v) == 0 && !strcmp(v.buf, "true")) {
		if (xml_child_text(root, "NextContinuationToken", next_token) < 0 || !next_token->len) {
			ret = ops_error_set(err, OPS_EXIT_FAILED,
					    "the storage's listing is truncated but has no NextContinuationToken");
			goto out;
		}
	}
out:
	strbuf_release(&v);
	if (doc)
		xml_free(doc);
	return ret;
}

void s3_list_init(struct s3_list *l)
{
	memset(l, 0, sizeof(*l));
}

void s3_object_release(struct s3_object *o)
{
	free(o->key);
	o->key = NULL;
}

void s3_list_release(struct s3_list *l)
{
	for (size_t i = 0; i < l->nr; i++)
		s3_object_release(&l->items[i]);
	free(l->items);
	s3_list_init(l);
}

/* ---- the resume state ---------------------------------------------------- */

void s3_upload_state_init(struct s3_upload_state *st)
{
	memset(st, 0, sizeof(*st));
}

void s3_upload_state_release(struct s3_upload_state *st)
{
	free(st->endpoint);
	free(st->bucket);
	free(st->key);
	free(st->upload_id);
	for (unsigned i = 0; i < st->nparts; i++) {
		free(st->etags ? st->etags[i] : NULL);
		free(st->md5s ? st->md5s[i] : NULL);
	}
	free(st->etags);
	free(st->md5s);
	s3_upload_state_init(st);
}

static unsigned parts_for(uint64_t size, uint64_t part_size)
{
	uint64_t n = part_size ? size / part_size + (size % part_size != 0) : 0;
	return n > S3_MAX_PARTS ? 0 : (unsigned)n;
}

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int json_u64(const cJSON *o, const char *key, uint64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0)
		return -1;
	*out = (uint64_t)v->valuedouble;
	return 0;
}

int s3_upload_state_load(struct s3_upload_state *st, const char *path, struct ops_error *err)
{
	struct strbuf text = STRBUF_INIT;
	cJSON *doc = NULL;
	const cJSON *parts, *part;
	const char *mtime;
	double version;
	char *end;
	int ret = 0;

	s3_upload_state_release(st);
	if (!fs_exists(path)) {
		ret = 1;
		goto out;
	}
	if ((ret = fs_read_file(path, &text, 16 * 1024 * 1024, err)) < 0)
		goto out;
	doc = cJSON_ParseWithLength(text.buf, text.len);
	version = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc, "version"));
	if (!cJSON_IsObject(doc) || version != S3_STATE_VERSION)
		goto bad;
	mtime = json_str(doc, "mtime_ns");
	if (!json_str(doc, "endpoint") || !json_str(doc, "bucket") || !json_str(doc, "key") ||
	    !json_str(doc, "upload_id") || !mtime || json_u64(doc, "size", &st->size) < 0 ||
	    json_u64(doc, "part_size", &st->part_size) < 0 || !st->part_size)
		goto bad;
	errno = 0;
	st->mtime_ns = strtoll(mtime, &end, 10);
	if (errno || *end)
		goto bad;
	st->nparts = parts_for(st->size, st->part_size);
	if (!st->nparts)
		goto bad;
	st->endpoint = xstrdup(json_str(doc, "endpoint"));
	st->bucket = xstrdup(json_str(doc, "bucket"));
	st->key = xstrdup(json_str(doc, "key"));
	st->upload_id = xstrdup(json_str(doc, "upload_id"));
	st->etags = xcalloc(st->nparts, sizeof(*st->etags));
	st->md5s = xcalloc(st->nparts, sizeof(*st->md5s));
	parts = cJSON_GetObjectItemCaseSensitive(doc, "parts");
	if (!cJSON_IsArray(parts))
		goto bad;
	cJSON_ArrayForEach(part, parts) {
		uint64_t n;
		const char *etag = json_str(part, "etag"), *md5 = json_str(part, "md5");
		if (json_u64(part, "part", &n) < 0 || n < 1 || n > st->nparts || !etag ||
		    strlen(etag) >= S3_ETAG_MAX || st->etags[n - 1] || (md5 && strlen(md5) != 32))
			goto bad;
		st->etags[n - 1] = xstrdup(etag);
		st->md5s[n - 1] = md5 ? xstrdup(md5) : NULL;
	}
	goto out;
bad:
	s3_upload_state_release(st);
	ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s' is not an upload state file of opsctl", path);
out:
	cJSON_Delete(doc);
	strbuf_release(&text);
	return ret;
}

int s3_upload_state_save(const struct s3_upload_state *st, const char *path, struct ops_error *err)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *parts = cJSON_CreateArray();
	char mtime[32];
	char *text;
	int ret;

	snprintf(mtime, sizeof(mtime), "%" PRId64, st->mtime_ns);
	cJSON_AddNumberToObject(doc, "version", S3_STATE_VERSION);
	cJSON_AddStringToObject(doc, "endpoint", st->endpoint);
	cJSON_AddStringToObject(doc, "bucket", st->bucket);
	cJSON_AddStringToObject(doc, "key", st->key);
	cJSON_AddStringToObject(doc, "upload_id", st->upload_id);
	cJSON_AddNumberToObject(doc, "size", (double)st->size);
	/* a string: nanoseconds since 1970 do not fit a JSON number exactly */
	cJSON_AddStringToObject(doc, "mtime_ns", mtime);
	cJSON_AddNumberToObject(doc, "part_size", (double)st->part_size);
	for (unsigned i = 0; i < st->nparts; i++) {
		cJSON *p;
		if (!st->etags[i])
			continue;
		p = cJSON_CreateObject();
		cJSON_AddNumberToObject(p, "part", i + 1);
		cJSON_AddStringToObject(p, "etag", st->etags[i]);
		if (st->md5s && st->md5s[i])
			cJSON_AddStringToObject(p, "md5", st->md5s[i]);
		cJSON_AddItemToArray(parts, p);
	}
	cJSON_AddItemToObject(doc, "parts", parts);
	text = cJSON_PrintUnformatted(doc);
	ret = fs_write_replace(path, text, strlen(text), 0600, err);
	free(text);
	cJSON_Delete(doc);
	return ret;
}

/* ---- requests ------------------------------------------------------------ */

enum outcome { OUT_OK, OUT_RETRY, OUT_FAIL, OUT_NOT_FOUND };

/* One S3 request and what came back; reused for each attempt. */
struct req {
	struct s3_client *c;
	CURL *easy;
	const char *method;          /* GET HEAD PUT POST DELETE */
	struct strbuf url;
	void *owner;                 /* the multipart slot running it */
	/* the body sent: a region of a file, or bytes in memory */
	int in_fd;
	uint64_t in_off, in_len, in_pos;
	const char *mem;
	size_t mem_len;
	char payload_sha256[65];     /* x-amz-content-sha256, signed by curl */
	char content_md5[32];        /* base64; "" for none */
	const char *content_type;
	uint64_t rate;               /* bytes/s; 0: no limit */
	int long_running;            /* a body of any size: no overall deadline, only the stall limit */
	/* the answer */
	CURLcode rc;
	long status;
	long os_errno;
	struct strbuf body;          /* XML answers and error documents */
	int body_too_large;
	int out_fd;                  /* GET: a 2xx body goes here (and into sha); -1: nowhere */
	const char *out_path;        /* its name, for messages */
	int hashing;
	struct hash_sha256_ctx sha;
	uint64_t received;
	int read_errno, write_errno;
	char etag[S3_ETAG_MAX];
	int etag_opaque;             /* SSE-KMS or SSE-C: the ETag is not the MD5 of the bytes */
	curl_off_t content_length;
	curl_off_t filetime;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers;
	/* progress */
	int progress_serial;         /* report through the client from the transfer itself */
	uint64_t progress_total;
	curl_off_t now_up, now_down;
	int64_t moved_at_ms;         /* the last time a byte went either way */
	int stalled;                 /* aborted: nothing moved for [storage] timeout */
	int stopped;                 /* aborted: the client's stop() said so */
	int trickled;                /* ... because under S3_TRICKLE_BYTES moved in a timeout */
	int64_t window_at_ms;        /* the trickle check: when the current window began */
	curl_off_t window_moved;     /* ... and the bytes moved either way by then */
};

static void req_init(struct req *r, struct s3_client *c, const char *method)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->easy = c->curl;
	r->method = method;
	strbuf_init(&r->url, 0);
	strbuf_init(&r->body, 0);
	r->in_fd = -1;
	r->out_fd = -1;
	memcpy(r->payload_sha256, empty_sha256, sizeof(empty_sha256));
}

static void req_release(struct req *r)
{
	strbuf_release(&r->url);
	strbuf_release(&r->body);
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	hash_sha256_release(&r->sha);
}


static void report_progress(struct s3_client *c, uint64_t done, uint64_t total, int force)
{
	int64_t now;
	if (!c->progress)
		return;
	now = clock_now_ms();
	if (!force && now - c->progress_at_ms < S3_PROGRESS_EVERY_MS)
		return;
	c->progress_at_ms = now;
	c->progress(c->progress_data, done, total);
}

/* S3 says that an object stored with SSE-KMS (x-amz-server-side-encryption:
 * aws:kms, or aws:kms:dsse) or SSE-C (x-amz-server-side-encryption-customer-
 * algorithm) has an ETag that is not the MD5 of its bytes: those answers
 * still had their Content-MD5 checked by the storage, but their ETag cannot
 * be compared with ours. */
static int sse_header_opaque(const char *data, size_t len)
{
	static const char kms[] = "x-amz-server-side-encryption:";
	static const char ssec[] = "x-amz-server-side-encryption-customer-algorithm:";
	size_t i;

	if (len >= sizeof(ssec) - 1 && !strncasecmp(data, ssec, sizeof(ssec) - 1))
		return 1;
	if (len < sizeof(kms) - 1 || strncasecmp(data, kms, sizeof(kms) - 1))
		return 0;
	for (i = sizeof(kms) - 1; i < len && (data[i] == ' ' || data[i] == '\t'); i++)
		;
	return len - i >= 7 && !strncasecmp(data + i, "aws:kms", 7);
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
	struct req *r = userp;
	size_t len = size * n;

	if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
		/* a 100 Continue came first: only the final answer's headers count */
		r->etag[0] = '\0';
		r->etag_opaque = 0;
	} else if (len > 5 && !strncasecmp(data, "etag:", 5)) {
		etag_copy(r->etag, data + 5, len - 5);
	} else if (sse_header_opaque(data, len)) {
		r->etag_opaque = 1;
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
	struct req *r = userp;
	size_t len = size * n;
	long status = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (r->hashing && status >= 200 && status < 300) {
		hash_sha256_update(&r->sha, data, len);
		r->received += len;
		if (r->out_fd >= 0 && fs_write_all(r->out_fd, data, len) < 0) {
			r->write_errno = errno;
			return 0;
		}
		return len;
	}
	if (r->body.len + len > S3_MAX_BODY) {
		r->body_too_large = 1;
		return 0;
	}
	strbuf_add(&r->body, data, len);
	return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userp)
{
	struct req *r = userp;
	uint64_t want = (uint64_t)size * n, left = r->in_len - r->in_pos;
	ssize_t got;

	if (want > left)
		want = left;
	if (!want)
		return 0;
	do
		got = pread(r->in_fd, buf, (size_t)want, (off_t)(r->in_off + r->in_pos));
	while (got < 0 && errno == EINTR);
	if (got <= 0) {
		/* 0: the file shrank under us, which is as bad as a read error */
		r->read_errno = got < 0 ? errno : EIO;
		return CURL_READFUNC_ABORT;
	}
	r->in_pos += (uint64_t)got;
	return (size_t)got;
}

/* curl rewinds the body when it has to send it again on a new connection. */
static int on_seek(void *userp, curl_off_t offset, int origin)
{
	struct req *r = userp;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->in_len)
		return CURL_SEEKFUNC_FAIL;
	r->in_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int stop_requested(const struct s3_client *c)
{
	return c->stop && c->stop(c->stop_data);
}

static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct req *r = userp;
	int64_t now = clock_now_ms();
	int moving = ulnow != r->now_up || dlnow != r->now_down;

	if (stop_requested(r->c)) {
		r->stopped = 1;
		return 1; /* CURLE_ABORTED_BY_CALLBACK, never retried */
	}
	/* curl's low-speed check averages over several seconds, so a body that
	 * stops after a burst would run on for timeout + ~6s: a stall is timed
	 * here, from the last byte that moved */
	if (moving)
		r->moved_at_ms = now;
	else if (now - r->moved_at_ms > r->c->set->timeout_ms) {
		r->stalled = 1;
		return 1; /* CURLE_ABORTED_BY_CALLBACK, reported as a timeout */
	}
	/* a peer that trickles (a byte now and then) never stalls by the rule
	 * above: under S3_TRICKLE_BYTES in a whole timeout counts as a stall,
	 * if bytes still move. A peer silent since its last byte (a small body
	 * sent, then no answer) is left to the rule above, and so reported. */
	if (!r->window_at_ms) {
		r->window_at_ms = now;
		r->window_moved = ulnow + dlnow;
	} else if (now - r->window_at_ms >= r->c->set->timeout_ms) {
		curl_off_t moved = ulnow + dlnow - r->window_moved;
		if (moved == 0 || (moved < S3_TRICKLE_BYTES && moving)) {
			r->stalled = 1;
			r->trickled = moved > 0;
			return 1;
		}
		if (moved >= S3_TRICKLE_BYTES) {
			r->window_at_ms = now;
			r->window_moved = ulnow + dlnow;
		}
	}
	r->now_up = ulnow;
	r->now_down = dlnow;
	if (r->progress_serial) {
		int upload = r->in_fd >= 0;
		uint64_t total = r->progress_total ? r->progress_total : (uint64_t)(dltotal > 0 ? dltotal : 0);
		report_progress(r->c, (uint64_t)(upload ? ulnow : dlnow), total, 0);
	}
	return 0;
}

/* Ready for (another) attempt. */
static int req_rewind(struct req *r)
{
	r->in_pos = 0;
	strbuf_reset(&r->body);
	r->body_too_large = 0;
	r->etag[0] = '\0';
	r->status = 0;
	r->rc = CURLE_OK;
	r->os_errno = 0;
	r->received = 0;
	r->read_errno = r->write_errno = 0;
	r->content_length = -1;
	r->filetime = -1;
	r->errbuf[0] = '\0';
	r->now_up = r->now_down = 0;
	if (r->hashing) {
		hash_sha256_release(&r->sha);
		hash_sha256_init(&r->sha);
	}
	if (r->out_fd >= 0 && (ftruncate(r->out_fd, 0) < 0 || lseek(r->out_fd, 0, SEEK_SET) < 0)) {
		r->write_errno = errno;
		return -1;
	}
	return 0;
}

static void add_header(struct req *r, const char *name, const char *value)
{
	struct strbuf h = STRBUF_INIT;
	strbuf_addf(&h, "%s: %s", name, value);
	r->headers = curl_slist_append(r->headers, h.buf);
	strbuf_release(&h);
}

static void setup_easy(struct req *r)
{
	const struct s3_settings *s = r->c->set;
	CURL *e = r->easy;
	char sigv4[96];
	long stall_s = (long)((s->timeout_ms + 999) / 1000);

	curl_easy_reset(e); /* keeps the connection and DNS caches */
	r->moved_at_ms = clock_now_ms();
	r->stalled = 0;
	r->stopped = 0;
	r->trickled = 0;
	r->window_at_ms = 0;
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	curl_easy_setopt(e, CURLOPT_URL, r->url.buf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "opsctl/" OPSCTL_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* libcurl signs: provider aws, header prefix amz, our region, service s3 */
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", s->region);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4);
	/* the two halves separately, so no "access:secret" copy of the secret is made here */
	curl_easy_setopt(e, CURLOPT_USERNAME, s->access_key ? s->access_key : "");
	curl_easy_setopt(e, CURLOPT_PASSWORD, s->secret_key ? s->secret_key : "");
	/* S3 wants the payload hash as a header, and curl 7.88 does not add it */
	add_header(r, "x-amz-content-sha256", r->payload_sha256);
	if (r->content_md5[0])
		add_header(r, "Content-MD5", r->content_md5);
	if (r->content_type)
		add_header(r, "Content-Type", r->content_type);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, r);
	/* deadlines: connecting, and a transfer that stops moving (a stalled
	 * endpoint fails within the timeout instead of hanging the backup) */
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s > 0 ? stall_s : 1L);
	if (!r->long_running)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	if (s->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->verify_tls ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->verify_tls ? 2L : 0L);
	if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(e, CURLOPT_FILETIME, 1L);
	} else if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->in_len);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
		if (r->rate)
			curl_easy_setopt(e, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)r->rate);
	} else if (!strcmp(r->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->mem ? r->mem : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->mem_len);
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
}

static void collect(struct req *r)
{
	if (r->stalled && r->rc == CURLE_ABORTED_BY_CALLBACK)
		r->rc = CURLE_OPERATION_TIMEDOUT;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &r->os_errno);
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->content_length);
	curl_easy_getinfo(r->easy, CURLINFO_FILETIME_T, &r->filetime);
}

/* Worth another try: the network, a timeout, a server that broke off. */
static int transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0;
	}
}

static int retryable_code(const char *code)
{
	return !strcmp(code, "InternalError") || !strcmp(code, "SlowDown") ||
	       !strcmp(code, "ServiceUnavailable") || !strcmp(code, "RequestTimeout");
}

static enum outcome classify(struct req *r)
{
	struct strbuf code = STRBUF_INIT, msg = STRBUF_INIT;
	enum outcome o = OUT_FAIL;

	if (r->read_errno || r->write_errno || r->body_too_large || r->stopped)
		goto out;
	if (r->rc != CURLE_OK) {
		o = transient(r->rc) ? OUT_RETRY : OUT_FAIL;
		goto out;
	}
	s3_parse_error(r->body.buf, r->body.len, &code, &msg);
	if (r->status >= 200 && r->status < 300) {
		/* CompleteMultipartUpload answers 200 before it is done, and
		 * then may still fail: the error is in the body */
		if (!code.len)
			o = OUT_OK;
		else
			o = retryable_code(code.buf) ? OUT_RETRY : OUT_FAIL;
		goto out;
	}
	if (r->status == 404 && (!strcmp(code.buf, "NoSuchKey") || (!code.len && !strcmp(r->method, "HEAD")))) {
		o = OUT_NOT_FOUND;
		goto out;
	}
	if (r->status == 408 || r->status == 429 || r->status >= 500 || retryable_code(code.buf))
		o = OUT_RETRY;
out:
	strbuf_release(&code);
	strbuf_release(&msg);
	return o;
}

static int is_auth_code(const char *code)
{
	return !strcmp(code, "InvalidAccessKeyId") || !strcmp(code, "SignatureDoesNotMatch") ||
	       !strcmp(code, "AccessDenied") || !strcmp(code, "InvalidToken") ||
	       !strcmp(code, "ExpiredToken") || !strcmp(code, "AuthorizationHeaderMalformed");
}

static void credentials_hint(const struct s3_settings *s, struct ops_error *err)
{
	ops_error_hint(err, "check %s and %s (access_key_env and secret_key_env of [storage \"%s\"]) in %s",
		       s->access_key_env ? s->access_key_env : "the access key",
		       s->secret_key_env ? s->secret_key_env : "the secret key", s->name,
		       s->credentials_from ? s->credentials_from : "the env file or the environment");
}

/* "cannot WHAT: REASON (N attempts)" for a transfer that got no usable answer. */
static int transport_error(struct req *r, const char *what, const char *tries, struct ops_error *err)
{
	const struct s3_settings *s = r->c->set;
	struct strbuf reason = STRBUF_INIT, limit = STRBUF_INIT;
	int code = transient(r->rc) ? OPS_EXIT_UNREACHABLE : OPS_EXIT_FAILED, ret;

	switch (r->rc) {
	case CURLE_COULDNT_CONNECT:
		strbuf_addf(&reason, "cannot connect to '%s': %s", s->endpoint,
			    r->os_errno ? ops_strerror((int)r->os_errno) : "no answer");
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		strbuf_addf(&reason, "cannot resolve the host name of '%s'", s->endpoint);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		format_duration_ms(&limit, s->timeout_ms);
		if (r->trickled)
			strbuf_addf(&reason, "'%s' moved under %d bytes in %s (timeout of [storage \"%s\"])",
				    s->endpoint, S3_TRICKLE_BYTES, limit.buf, s->name);
		else
			strbuf_addf(&reason, "'%s' did not answer or stalled for %s (timeout of [storage \"%s\"])",
				    s->endpoint, limit.buf, s->name);
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		code = OPS_EXIT_UNREACHABLE;
		strbuf_addf(&reason, "cannot verify the TLS certificate of '%s': %s", s->endpoint,
			    r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->rc));
		break;
	default:
		strbuf_addf(&reason, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->rc));
		/* curl's messages start with a capital letter; ours don't */
		if (reason.buf[0] >= 'A' && reason.buf[0] <= 'Z' && !(reason.buf[1] >= 'A' && reason.buf[1] <= 'Z'))
			reason.buf[0] = (char)(reason.buf[0] - 'A' + 'a');
		break;
	}
	ret = ops_error_set(err, code, "cannot %s: %s%s", what, reason.buf, tries);
	if (r->rc == CURLE_PEER_FAILED_VERIFICATION || r->rc == CURLE_SSL_CACERT_BADFILE)
		ops_error_hint(err, "set ca_file = in [storage \"%s\"] to the CA that signed the server's certificate",
			       s->name);
	else if (code == OPS_EXIT_UNREACHABLE)
		ops_error_hint(err, "is the storage server up? endpoint = %s in [storage \"%s\"]", s->endpoint, s->name);
	strbuf_release(&reason);
	strbuf_release(&limit);
	return ret;
}

/* The error of a request that failed for good (after attempts tries). */
static int req_fail(struct req *r, const char *what, int attempts, struct ops_error *err)
{
	const struct s3_settings *s = r->c->set;
	struct strbuf code = STRBUF_INIT, msg = STRBUF_INIT, tries = STRBUF_INIT, answer = STRBUF_INIT;
	int ret;

	if (attempts > 1)
		strbuf_addf(&tries, " (%d attempts)", attempts);
	if (r->stopped || stop_requested(r->c)) {
		ret = ops_error_set(err, OPS_EXIT_ABORTED, "cannot %s: interrupted", what);
		goto out;
	}
	if (r->read_errno) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: cannot read the file: %s", what,
				    ops_strerror(r->read_errno));
		goto out;
	}
	if (r->write_errno) {
		if (r->out_path)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: cannot write '%s': %s", what,
					    r->out_path, ops_strerror(r->write_errno));
		else
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: cannot write the file: %s", what,
					    ops_strerror(r->write_errno));
		goto out;
	}
	if (r->body_too_large) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: the storage's answer is larger than %d MiB",
				    what, S3_MAX_BODY >> 20);
		goto out;
	}
	if (r->rc != CURLE_OK) {
		ret = transport_error(r, what, tries.buf, err);
		goto out;
	}
	s3_parse_error(r->body.buf, r->body.len, &code, &msg);
	strbuf_addf(&answer, "%s", code.len ? code.buf : "");
	if (!code.len)
		strbuf_addf(&answer, "HTTP %ld", r->status);
	if (msg.len)
		strbuf_addf(&answer, " (%s)", msg.buf);
	if (r->status == 403 && (!code.len || is_auth_code(code.buf))) {
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "storage '%s' refused the credentials: %s", s->name,
				    answer.buf);
		credentials_hint(s, err);
	} else if (!strcmp(code.buf, "NoSuchBucket")) {
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "storage '%s' has no bucket '%s' (at '%s')", s->name,
				    s->bucket, s->endpoint);
		ops_error_hint(err, "create the bucket, or correct bucket = in [storage \"%s\"]", s->name);
	} else if (r->status == 301 || !strcmp(code.buf, "PermanentRedirect") ||
		   !strcmp(code.buf, "AuthorizationHeaderMalformed")) {
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "cannot %s: %s", what, answer.buf);
		ops_error_hint(err, "the bucket may be in another region: set region = in [storage \"%s\"]", s->name);
	} else if (r->status == 408 || r->status == 429 || r->status >= 500 || retryable_code(code.buf)) {
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "cannot %s: storage '%s' answered %s%s", what, s->name,
				    answer.buf, tries.buf);
	} else {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: storage '%s' answered %s", what, s->name,
				    answer.buf);
	}
out:
	strbuf_release(&code);
	strbuf_release(&msg);
	strbuf_release(&tries);
	strbuf_release(&answer);
	return ret;
}

static int64_t backoff_ms(const struct s3_client *c, int attempt)
{
	int64_t ms = c->backoff_ms > 0 ? c->backoff_ms : S3_DEFAULT_BACKOFF_MS;
	for (int i = 1; i < attempt && ms < S3_MAX_BACKOFF_MS; i++)
		ms *= 2;
	return ms < S3_MAX_BACKOFF_MS ? ms : S3_MAX_BACKOFF_MS;
}

static int max_attempts(const struct s3_client *c)
{
	return c->max_attempts > 0 ? c->max_attempts : S3_DEFAULT_ATTEMPTS;
}

static int client_easy(struct s3_client *c, struct ops_error *err)
{
	if (!c->curl)
		c->curl = curl_easy_init();
	if (!c->curl)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot initialise libcurl");
	return 0;
}

/* One request on the client's handle, tried again with backoff while the
 * failure is transient. S3_NOT_FOUND (err untouched) for a missing object. */
/* Sleeps ms before a retry, in slices, so a stop is not kept waiting: -1
 * when stopped. */
static int backoff_wait(const struct s3_client *c, int64_t ms)
{
	int64_t until = clock_now_ms() + ms;
	for (;;) {
		int64_t left = until - clock_now_ms();
		if (stop_requested(c))
			return -1;
		if (left <= 0)
			return 0;
		clock_sleep_ms(left < 200 ? left : 200);
	}
}

static int perform(struct req *r, const char *what, struct ops_error *err)
{
	int ret = 0;

	if ((ret = client_easy(r->c, err)) < 0)
		return ret;
	r->easy = r->c->curl;
	for (int attempt = 1;; attempt++) {
		enum outcome o;
		if (req_rewind(r) < 0)
			return req_fail(r, what, attempt, err);
		setup_easy(r);
		r->rc = curl_easy_perform(r->easy);
		collect(r);
		o = classify(r);
		if (o == OUT_OK)
			return 0;
		if (o == OUT_NOT_FOUND)
			return S3_NOT_FOUND;
		if (o == OUT_FAIL || attempt >= max_attempts(r->c) || r->stopped)
			return req_fail(r, what, attempt, err);
		r->c->retries++;
		if (backoff_wait(r->c, backoff_ms(r->c, attempt)) < 0)
			return req_fail(r, what, attempt, err);
	}
}

static int not_found(const struct s3_client *c, const char *key, struct ops_error *err)
{
	ops_error_set(err, OPS_EXIT_FAILED, "no object '%s' in storage '%s'", key, c->set->name);
	return S3_NOT_FOUND;
}

/* The S3 error code of the last answer ("" when none). */
static int answer_code_is(const struct req *r, const char *want)
{
	struct strbuf code = STRBUF_INIT, msg = STRBUF_INIT;
	int is;
	s3_parse_error(r->body.buf, r->body.len, &code, &msg);
	is = !strcmp(code.buf, want);
	strbuf_release(&code);
	strbuf_release(&msg);
	return is;
}

/* ---- the client ---------------------------------------------------------- */

void s3_client_init(struct s3_client *c, const struct s3_settings *set)
{
	memset(c, 0, sizeof(*c));
	c->set = set;
	c->max_attempts = S3_DEFAULT_ATTEMPTS;
	c->backoff_ms = S3_DEFAULT_BACKOFF_MS;
}

void s3_client_release(struct s3_client *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	c->curl = NULL;
}

int s3_head(struct s3_client *c, const char *key, struct s3_object *out, struct ops_error *err)
{
	struct req r;
	struct strbuf what = STRBUF_INIT;
	int ret;

	memset(out, 0, sizeof(*out));
	req_init(&r, c, "HEAD");
	s3_url(c->set, key, NULL, &r.url);
	strbuf_addf(&what, "look up '%s' in storage '%s'", key, c->set->name);
	ret = perform(&r, what.buf, err);
	if (ret == S3_NOT_FOUND) {
		ret = not_found(c, key, err);
		goto out;
	}
	if (ret < 0)
		goto out;
	out->key = xstrdup(key);
	out->size = r.content_length > 0 ? (uint64_t)r.content_length : 0;
	memcpy(out->etag, r.etag, sizeof(out->etag));
	out->etag_opaque = r.etag_opaque;
	out->last_modified = r.filetime > 0 ? (time_t)r.filetime : 0;
out:
	strbuf_release(&what);
	req_release(&r);
	return ret;
}

int s3_get_file(struct s3_client *c, const char *key, const char *path, const char *expect_sha256,
		char sha256_hex[65], uint64_t *size, struct ops_error *err)
{
	struct req r;
	struct strbuf what = STRBUF_INIT, tmp = STRBUF_INIT;
	unsigned char digest[HASH_SHA256_LEN];
	char hex[HASH_SHA256_HEX_LEN + 1];
	char *dir = NULL;
	int fd = -1, tmp_made = 0, ret;

	c->progress_at_ms = 0;
	req_init(&r, c, "GET");
	s3_url(c->set, key, NULL, &r.url);
	strbuf_addf(&what, "download '%s' from storage '%s'", key, c->set->name);
	if (path) {
		const char *slash = strrchr(path, '/');
		dir = slash ? xstrndup(path, (size_t)(slash - path + (slash == path))) : xstrdup(".");
		strbuf_addf(&tmp, "%s.s3tmp-XXXXXX", path);
		fd = mkostemp(tmp.buf, O_CLOEXEC);
		if (fd < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", tmp.buf, ops_strerror(errno));
			goto out;
		}
		tmp_made = 1;
	}
	r.out_fd = fd;
	r.out_path = fd >= 0 ? tmp.buf : NULL;
	r.hashing = 1;
	r.long_running = 1;
	r.progress_serial = 1;
	ret = perform(&r, what.buf, err);
	if (ret == S3_NOT_FOUND) {
		ret = not_found(c, key, err);
		goto out;
	}
	if (ret < 0)
		goto out;
	report_progress(c, r.received, r.received, 1);
	hash_sha256_final(&r.sha, digest);
	hash_hex(digest, sizeof(digest), hex);
	if (expect_sha256 && strcasecmp(hex, expect_sha256)) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
				    "checksum mismatch for '%s' in storage '%s': expected SHA-256 %s, got %s", key,
				    c->set->name, expect_sha256, hex);
		ops_error_hint(err, "the remote copy is damaged; it was not used");
		goto out;
	}
	if (fd >= 0) {
		if (fsync(fd) < 0 || close(fd) < 0) {
			fd = -1;
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", tmp.buf, ops_strerror(errno));
			goto out;
		}
		fd = -1;
		if (rename(tmp.buf, path) < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot rename '%s' to '%s': %s", tmp.buf, path,
					    ops_strerror(errno));
			goto out;
		}
		tmp_made = 0;
		if ((ret = fs_fsync_dir(dir, err)) < 0)
			goto out;
	}
	if (sha256_hex)
		memcpy(sha256_hex, hex, sizeof(hex));
	if (size)
		*size = r.received;
out:
	if (fd >= 0)
		close(fd);
	if (tmp_made)
		unlink(tmp.buf);
	free(dir);
	strbuf_release(&tmp);
	strbuf_release(&what);
	req_release(&r);
	return ret;
}

int s3_list(struct s3_client *c, const char *prefix, struct s3_list *out, struct ops_error *err)
{
	const struct s3_settings *s = c->set;
	struct strbuf strip = STRBUF_INIT, full = STRBUF_INIT, token = STRBUF_INIT, query = STRBUF_INIT;
	struct strbuf what = STRBUF_INIT;
	int ret = 0;

	if (s->prefix && *s->prefix)
		strbuf_addf(&strip, "%s/", s->prefix);
	strbuf_addf(&full, "%s%s", strip.buf, prefix ? prefix : "");
	strbuf_addf(&what, "list '%s' in storage '%s'", full.len ? full.buf : "/", s->name);
	do {
		struct req r;
		/* parameters sorted by name: SigV4 signs the query as it is sent */
		strbuf_reset(&query);
		if (token.len) {
			strbuf_addstr(&query, "continuation-token=");
			s3_uri_encode(&query, token.buf, 0);
			strbuf_addch(&query, '&');
		}
		strbuf_addstr(&query, "list-type=2");
		if (c->list_page_size)
			strbuf_addf(&query, "&max-keys=%u", c->list_page_size);
		if (full.len) {
			strbuf_addstr(&query, "&prefix=");
			s3_uri_encode(&query, full.buf, 0);
		}
		req_init(&r, c, "GET");
		s3_url(s, "", query.buf, &r.url);
		ret = perform(&r, what.buf, err);
		if (ret == S3_NOT_FOUND)
			ret = req_fail(&r, what.buf, 1, err);
		if (ret == 0)
			ret = s3_parse_list(r.body.buf, r.body.len, strip.buf, out, &token, err);
		req_release(&r);
	} while (ret == 0 && token.len);
	strbuf_release(&strip);
	strbuf_release(&full);
	strbuf_release(&token);
	strbuf_release(&query);
	strbuf_release(&what);
	return ret;
}

int s3_delete(struct s3_client *c, const char *key, struct ops_error *err)
{
	struct req r;
	struct strbuf what = STRBUF_INIT;
	int ret;

	req_init(&r, c, "DELETE");
	s3_url(c->set, key, NULL, &r.url);
	strbuf_addf(&what, "delete '%s' from storage '%s'", key, c->set->name);
	ret = perform(&r, what.buf, err);
	if (ret == S3_NOT_FOUND)
		ret = 0; /* gone already is what was asked for */
	strbuf_release(&what);
	req_release(&r);
	return ret;
}

int s3_delete_many(struct s3_client *c, const char *const *keys, size_t n, struct ops_error *err)
{
	for (size_t i = 0; i < n; i++) {
		int ret = s3_delete(c, keys[i], err);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ---- uploads ------------------------------------------------------------- */

/* MD5 of len bytes of fd at off (Content-MD5 and S3's ETag of a part). */
/* Reads len bytes of fd at off once, feeding them to md5 and sha (either
 * may be NULL). */
static int hash_region(int fd, uint64_t off, uint64_t len, EVP_MD_CTX *md5, EVP_MD_CTX *sha, int *errno_out)
{
	char *buf = xmalloc(S3_READ_CHUNK);
	int ret = -1;

	while (len > 0) {
		size_t want = len < S3_READ_CHUNK ? (size_t)len : S3_READ_CHUNK;
		ssize_t got = pread(fd, buf, want, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			*errno_out = got < 0 ? errno : EIO;
			goto out;
		}
		if (md5)
			EVP_DigestUpdate(md5, buf, (size_t)got);
		if (sha)
			EVP_DigestUpdate(sha, buf, (size_t)got);
		off += (uint64_t)got;
		len -= (uint64_t)got;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

/* MD5 of len bytes of fd at off (Content-MD5 and S3's ETag of a part), and
 * when sha is not NULL the same bytes into it too. */
static int md5_region(int fd, uint64_t off, uint64_t len, unsigned char out[16], EVP_MD_CTX *sha, int *errno_out)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ret = -1;

	if (!md || !EVP_DigestInit_ex(md, EVP_md5(), NULL)) {
		*errno_out = ENOMEM;
		goto out;
	}
	if (hash_region(fd, off, len, md, sha, errno_out) < 0)
		goto out;
	if (!EVP_DigestFinal_ex(md, out, NULL)) {
		*errno_out = ENOMEM;
		goto out;
	}
	ret = 0;
out:
	EVP_MD_CTX_free(md);
	return ret;
}

/* A SHA-256 context (NULL when want is NULL or on failure: *ok = 0). */
static EVP_MD_CTX *sha_begin(const char *want, int *ok)
{
	EVP_MD_CTX *sha = NULL;
	*ok = 1;
	if (!want)
		return NULL;
	sha = EVP_MD_CTX_new();
	if (!sha || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(sha);
		*ok = 0;
		return NULL;
	}
	return sha;
}

/* Ends sha into hex; 1 when it is want. */
static int sha_matches(EVP_MD_CTX *sha, const char *want, char hex[65])
{
	unsigned char sum[32];
	unsigned n = 0;
	hex[0] = '\0';
	if (!EVP_DigestFinal_ex(sha, sum, &n) || n != 32)
		return 0;
	hash_hex(sum, sizeof(sum), hex);
	return !strcasecmp(hex, want);
}

static void md5_strings(const unsigned char md5[16], char hex[33], char b64[25])
{
	hash_hex(md5, 16, hex);
	EVP_EncodeBlock((unsigned char *)b64, md5, 16);
}

static int hex_to_md5(const char *hex, unsigned char out[16])
{
	for (int i = 0; i < 16; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* An ETag that is a plain MD5 can be checked against the bytes sent; others
 * (multipart "md5-N", some server-side encryption) say nothing about them. */
static int etag_is_md5(const char *etag)
{
	size_t n = strlen(etag);
	if (n != 32)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((etag[i] >= '0' && etag[i] <= '9') || (etag[i] >= 'a' && etag[i] <= 'f') ||
		      (etag[i] >= 'A' && etag[i] <= 'F')))
			return 0;
	return 1;
}

/* The file is not what the caller expected (want_sha256 of s3_put_file). */
static int source_damaged(const char *path, const char *got, struct s3_put_result *res, struct ops_error *err)
{
	if (res)
		res->source_damaged = 1;
	return ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' has SHA-256 %s, not the expected one", path,
			     got[0] ? got : "(unknown)");
}

static int put_single(struct s3_client *c, const char *fkey, const char *key, const char *path, int fd,
		      uint64_t size, const char *want_sha256, struct s3_put_result *res, struct ops_error *err)
{
	struct req r;
	struct strbuf what = STRBUF_INIT;
	unsigned char md5[16];
	char md5_hex[33], sha_hex[65];
	int ret, errnum = 0, ok;
	EVP_MD_CTX *sha = sha_begin(want_sha256, &ok);

	req_init(&r, c, "PUT");
	strbuf_addf(&what, "upload '%s' to storage '%s'", key, c->set->name);
	if (!ok || md5_region(fd, 0, size, md5, sha, &errnum) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", path,
				    ops_strerror(ok ? errnum : ENOMEM));
		goto out;
	}
	/* checked before a byte is sent */
	if (sha && !sha_matches(sha, want_sha256, sha_hex)) {
		ret = source_damaged(path, sha_hex, res, err);
		goto out;
	}
	md5_strings(md5, md5_hex, r.content_md5);
	url_for_full_key(c->set, fkey, NULL, &r.url);
	r.in_fd = fd;
	r.in_len = size;
	/* the body is covered by Content-MD5 (checked by S3) and the ETag (checked here) */
	strlcpy_s(r.payload_sha256, "UNSIGNED-PAYLOAD", sizeof(r.payload_sha256));
	r.content_type = "application/octet-stream";
	r.rate = c->rate_limit;
	r.long_running = 1;
	r.progress_serial = 1;
	r.progress_total = size;
	if ((ret = perform(&r, what.buf, err)) < 0) {
		if (ret == S3_NOT_FOUND)
			ret = req_fail(&r, what.buf, 1, err);
		goto out;
	}
	if (!r.etag_opaque && etag_is_md5(r.etag) && strcasecmp(r.etag, md5_hex)) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
				    "cannot upload '%s' to storage '%s': it stored ETag %s, not the MD5 %s of the bytes sent",
				    key, c->set->name, r.etag, md5_hex);
		goto out;
	}
	report_progress(c, size, size, 1);
	if (res) {
		memcpy(res->etag, r.etag, sizeof(res->etag));
		res->parts = 0;
	}
out:
	EVP_MD_CTX_free(sha);
	strbuf_release(&what);
	req_release(&r);
	return ret;
}

enum part_state { PART_TODO, PART_RUNNING, PART_DONE };

struct mp_part {
	uint64_t off, len;
	enum part_state state;
	int attempts;
	int64_t not_before_ms;      /* a retry waits for its backoff */
	char md5_hex[33];           /* "" until computed */
	char md5_b64[25];
};

struct mp_slot {
	struct req r;
	unsigned part;              /* while busy */
	int busy;
};

/* One multipart upload in progress. */
struct mp {
	struct s3_client *c;
	const char *key, *fkey, *path, *state_path;
	int fd;
	uint64_t size, part_size;
	int64_t mtime_ns;
	unsigned nparts;
	struct mp_part *parts;
	struct s3_upload_state st;
	uint64_t done_bytes;
	unsigned resumed;
	struct strbuf what;
	const char *want_sha256;    /* hex, or NULL: the whole file checked before completing */
	char got_sha256[65];
};

static int part_md5(struct mp *m, struct mp_part *p, struct ops_error *err)
{
	unsigned char md5[16];
	int errnum = 0;

	if (p->md5_hex[0])
		return 0;
	if (md5_region(m->fd, p->off, p->len, md5, NULL, &errnum) < 0)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", m->path, ops_strerror(errnum));
	md5_strings(md5, p->md5_hex, p->md5_b64);
	return 0;
}

static int save_state(struct mp *m, struct ops_error *err)
{
	if (!m->state_path)
		return 0;
	return s3_upload_state_save(&m->st, m->state_path, err);
}

static void upload_query(struct strbuf *q, const char *upload_id, unsigned part)
{
	strbuf_reset(q);
	if (part)
		strbuf_addf(q, "partNumber=%u&", part);
	strbuf_addstr(q, "uploadId=");
	s3_uri_encode(q, upload_id, 0);
}

/* DELETE ?uploadId: the server drops the parts. Gone already is fine. */
static int abort_upload(struct s3_client *c, const char *fkey, const char *upload_id, struct ops_error *err)
{
	struct req r;
	struct strbuf q = STRBUF_INIT, what = STRBUF_INIT;
	int ret;

	req_init(&r, c, "DELETE");
	upload_query(&q, upload_id, 0);
	url_for_full_key(c->set, fkey, q.buf, &r.url);
	strbuf_addf(&what, "abort the upload of '%s' to storage '%s'", fkey, c->set->name);
	ret = perform(&r, what.buf, err);
	/* gone already; or a server that cannot abort (s3rver answers 405):
	 * its parts stay until its own cleanup, as S3's do until a lifecycle
	 * rule's AbortIncompleteMultipartUpload */
	if (ret == S3_NOT_FOUND || (ret < 0 && r.rc == CURLE_OK &&
				    (r.status == 404 || answer_code_is(&r, "MethodNotAllowed") ||
				     answer_code_is(&r, "NotImplemented"))))
		ret = 0;
	strbuf_release(&q);
	strbuf_release(&what);
	req_release(&r);
	return ret;
}

static int initiate(struct mp *m, struct ops_error *err)
{
	struct req r;
	struct strbuf upload_id = STRBUF_INIT;
	int ret;

	req_init(&r, m->c, "POST");
	url_for_full_key(m->c->set, m->fkey, "uploads=", &r.url);
	r.content_type = "application/octet-stream";
	if ((ret = perform(&r, m->what.buf, err)) < 0) {
		if (ret == S3_NOT_FOUND)
			ret = req_fail(&r, m->what.buf, 1, err);
		goto out;
	}
	if ((ret = s3_parse_initiate(r.body.buf, r.body.len, &upload_id, err)) < 0) {
		ops_error_prefix(err, "cannot %s", m->what.buf);
		goto out;
	}
	s3_upload_state_release(&m->st);
	m->st.endpoint = xstrdup(m->c->set->endpoint);
	m->st.bucket = xstrdup(m->c->set->bucket);
	m->st.key = xstrdup(m->fkey);
	m->st.upload_id = strbuf_detach(&upload_id, NULL);
	m->st.size = m->size;
	m->st.mtime_ns = m->mtime_ns;
	m->st.part_size = m->part_size;
	m->st.nparts = m->nparts;
	m->st.etags = xcalloc(m->nparts, sizeof(*m->st.etags));
	m->st.md5s = xcalloc(m->nparts, sizeof(*m->st.md5s));
	ret = save_state(m, err);
out:
	strbuf_release(&upload_id);
	req_release(&r);
	return ret;
}

/* The state of an earlier run, when it is about this very file and object. */
static int state_matches(const struct mp *m, const struct s3_upload_state *st)
{
	return !strcmp(st->endpoint, m->c->set->endpoint) && !strcmp(st->bucket, m->c->set->bucket) &&
	       !strcmp(st->key, m->fkey) && st->size == m->size && st->mtime_ns == m->mtime_ns &&
	       st->part_size == m->part_size && st->nparts == m->nparts;
}

/* Picks up the upload an earlier run recorded, or starts a new one. */
static int mp_prepare(struct mp *m, int fresh, struct ops_error *err)
{
	int ret = 0, loaded = 0;

	m->done_bytes = 0;
	m->resumed = 0;
	for (unsigned i = 0; i < m->nparts; i++) {
		struct mp_part *p = &m->parts[i];
		p->off = (uint64_t)i * m->part_size;
		p->len = i + 1 < m->nparts ? m->part_size : m->size - p->off;
		p->state = PART_TODO;
		p->attempts = 0;
		p->not_before_ms = 0;
	}
	if (m->state_path && !fresh) {
		struct ops_error ignored = OPS_ERROR_INIT;
		/* an unreadable state file costs a fresh upload, never the backup */
		loaded = s3_upload_state_load(&m->st, m->state_path, &ignored) == 0;
		ops_error_release(&ignored);
		if (loaded && !state_matches(m, &m->st)) {
			if (!strcmp(m->st.endpoint, m->c->set->endpoint) && !strcmp(m->st.bucket, m->c->set->bucket)) {
				abort_upload(m->c, m->st.key, m->st.upload_id, &ignored);
				ops_error_release(&ignored);
			}
			loaded = 0;
		}
	}
	if (!loaded)
		return initiate(m, err);
	/* a part counts as sent only while the local bytes still have the
	 * MD5 the server acknowledged for it */
	for (unsigned i = 0; i < m->nparts; i++) {
		struct mp_part *p = &m->parts[i];
		if (!m->st.etags[i])
			continue;
		if ((ret = part_md5(m, p, err)) < 0)
			return ret;
		/* the MD5 recorded beside the ETag (an SSE-KMS ETag is not one),
		 * else the ETag (state files of earlier versions) */
		if (!strcasecmp(m->st.md5s[i] ? m->st.md5s[i] : m->st.etags[i], p->md5_hex)) {
			p->state = PART_DONE;
			m->done_bytes += p->len;
			m->resumed++;
		} else {
			free(m->st.etags[i]);
			m->st.etags[i] = NULL;
			free(m->st.md5s[i]);
			m->st.md5s[i] = NULL;
		}
	}
	return 0;
}

/* The parts' MD5s (Content-MD5, and the ETag check) are computed on a
 * thread of their own, in part order, while the transfers go on: hashed in
 * the loop that drives the transfers, each part stalled all of them for as
 * long as its MD5 took (about 13 ms per 8 MiB here), which cost more than
 * the hashing itself. A part is started only once its MD5 is known. */
struct hasher {
	struct mp *m;
	CURLM *multi;               /* woken after each part */
	pthread_t thread;
	pthread_mutex_t lock;
	unsigned char *ready;       /* per part, under lock: md5_hex/md5_b64 set */
	int stop;                   /* under lock */
	int errnum;                 /* under lock: a read failed */
	int sha_state;              /* under lock: 0 running, 1 matches, -1 does not */
	int started;
};

/* With m->want_sha256 the whole file goes through SHA-256 in the same
 * pass, the parts sent by an earlier run included, so the upload is not
 * completed unless the bytes are the ones expected. */
static void *hasher_run(void *arg)
{
	struct hasher *h = arg;
	int ok, verdict = 0, errnum = 0;
	EVP_MD_CTX *sha = sha_begin(h->m->want_sha256, &ok);

	if (!ok)
		errnum = ENOMEM;
	for (unsigned i = 0; ok && i < h->m->nparts; i++) {
		struct mp_part *p = &h->m->parts[i];
		unsigned char md5[16];
		char hex[33], b64[25];
		int have, stop;

		pthread_mutex_lock(&h->lock);
		have = h->ready[i];
		stop = h->stop;
		pthread_mutex_unlock(&h->lock);
		if (stop)
			break;
		if (have && !sha)
			continue;
		if (have) {
			if (hash_region(h->m->fd, p->off, p->len, NULL, sha, &errnum) < 0)
				break;
			continue;
		}
		if (md5_region(h->m->fd, p->off, p->len, md5, sha, &errnum) < 0)
			break;
		md5_strings(md5, hex, b64);
		pthread_mutex_lock(&h->lock);
		memcpy(p->md5_hex, hex, sizeof(hex));
		memcpy(p->md5_b64, b64, sizeof(b64));
		h->ready[i] = 1;
		pthread_mutex_unlock(&h->lock);
		curl_multi_wakeup(h->multi);
	}
	if (sha && !errnum)
		verdict = sha_matches(sha, h->m->want_sha256, h->m->got_sha256) ? 1 : -1;
	pthread_mutex_lock(&h->lock);
	if (errnum)
		h->errnum = errnum;
	else if (!h->stop)
		h->sha_state = verdict;
	pthread_mutex_unlock(&h->lock);
	curl_multi_wakeup(h->multi);
	EVP_MD_CTX_free(sha);
	return NULL;
}

static int hasher_start(struct hasher *h, struct mp *m, CURLM *multi)
{
	memset(h, 0, sizeof(*h));
	h->m = m;
	h->multi = multi;
	h->ready = xcalloc(m->nparts ? m->nparts : 1, 1);
	for (unsigned i = 0; i < m->nparts; i++)
		h->ready[i] = m->parts[i].state == PART_DONE || m->parts[i].md5_hex[0];
	pthread_mutex_init(&h->lock, NULL);
	h->started = pthread_create(&h->thread, NULL, hasher_run, h) == 0;
	return h->started ? 0 : -1;
}

static void hasher_stop(struct hasher *h)
{
	if (h->started) {
		pthread_mutex_lock(&h->lock);
		h->stop = 1;
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->thread, NULL);
		h->started = 0;
	}
	pthread_mutex_destroy(&h->lock);
	free(h->ready);
	h->ready = NULL;
}

/* The next part to send: due (past its backoff) and hashed. */
static struct mp_part *next_part(struct mp *m, struct hasher *h, int64_t now, int64_t *wake_ms)
{
	struct mp_part *found = NULL;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < m->nparts && !found; i++) {
		struct mp_part *p = &m->parts[i];
		if (p->state != PART_TODO || !h->ready[i])
			continue;
		if (p->not_before_ms <= now)
			found = p;
		else if (*wake_ms < 0 || p->not_before_ms < *wake_ms)
			*wake_ms = p->not_before_ms;
	}
	pthread_mutex_unlock(&h->lock);
	return found;
}

static int all_sent(const struct mp *m)
{
	for (unsigned i = 0; i < m->nparts; i++)
		if (m->parts[i].state != PART_DONE)
			return 0;
	return 1;
}

static int start_part(struct mp *m, struct mp_slot *slot, CURLM *multi, unsigned idx, uint64_t rate,
		      struct ops_error *err)
{
	struct mp_part *p = &m->parts[idx];
	struct req *r = &slot->r;
	struct strbuf q = STRBUF_INIT;
	int ret;

	if ((ret = part_md5(m, p, err)) < 0)
		goto out;
	upload_query(&q, m->st.upload_id, idx + 1);
	url_for_full_key(m->c->set, m->fkey, q.buf, &r->url);
	r->in_fd = m->fd;
	r->in_off = p->off;
	r->in_len = p->len;
	memcpy(r->content_md5, p->md5_b64, sizeof(p->md5_b64));
	strlcpy_s(r->payload_sha256, "UNSIGNED-PAYLOAD", sizeof(r->payload_sha256));
	r->rate = rate;
	r->long_running = 1;
	r->owner = slot;
	req_rewind(r);
	setup_easy(r);
	if (curl_multi_add_handle(multi, r->easy) != CURLM_OK) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot start a transfer in libcurl");
		goto out;
	}
	slot->part = idx;
	slot->busy = 1;
	p->state = PART_RUNNING;
out:
	strbuf_release(&q);
	return ret;
}

/* A part's transfer ended: done (recorded in the state file), to be tried
 * again after its backoff, or the end of the upload. */
static int finish_part(struct mp *m, struct mp_slot *slot, struct ops_error *err)
{
	struct mp_part *p = &m->parts[slot->part];
	struct req *r = &slot->r;
	enum outcome o = classify(r);
	struct strbuf what = STRBUF_INIT;
	int etag_wrong = 0, ret = 0;

	slot->busy = 0;
	p->attempts++;
	p->state = PART_TODO;
	if (o == OUT_OK && (!strcasecmp(r->etag, p->md5_hex) || (r->etag_opaque && r->etag[0]))) {
		p->state = PART_DONE;
		m->done_bytes += p->len;
		free(m->st.etags[slot->part]);
		m->st.etags[slot->part] = xstrdup(r->etag);
		free(m->st.md5s[slot->part]);
		m->st.md5s[slot->part] = xstrdup(p->md5_hex);
		ret = save_state(m, err);
		goto out;
	}
	if (o == OUT_OK) {
		/* the server stored other bytes than we sent: send them again */
		etag_wrong = 1;
		o = OUT_RETRY;
	}
	if (o == OUT_RETRY && p->attempts < max_attempts(m->c)) {
		p->not_before_ms = clock_now_ms() + backoff_ms(m->c, p->attempts);
		m->c->retries++;
		goto out;
	}
	strbuf_addf(&what, "upload part %u of '%s' to storage '%s'", slot->part + 1, m->key, m->c->set->name);
	if (etag_wrong)
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
				    "cannot %s: it stored ETag '%s', not the MD5 %s of the bytes sent (%d attempts)",
				    what.buf, r->etag, p->md5_hex, p->attempts);
	else if (r->rc == CURLE_OK && r->status == 404 && answer_code_is(r, "NoSuchUpload"))
		ret = S3_NO_SUCH_UPLOAD;
	else
		ret = req_fail(r, what.buf, p->attempts, err);
out:
	strbuf_release(&what);
	return ret;
}

static uint64_t bytes_in_flight(const struct mp_slot *slots, unsigned n)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < n; i++)
		if (slots[i].busy && slots[i].r.now_up > 0)
			sum += (uint64_t)slots[i].r.now_up;
	return sum;
}

/* Sends every part not done yet, a few at a time over one curl multi handle.
 * A part that fails transiently waits for its backoff while the others go on. */
static int upload_parts(struct mp *m, struct ops_error *err)
{
	CURLM *multi = curl_multi_init();
	struct mp_slot *slots = NULL;
	struct hasher h;
	unsigned todo = 0, nslots, running = 0;
	uint64_t rate = 0;
	int ret = 0;

	if (!multi)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot initialise libcurl");
	if (hasher_start(&h, m, multi) < 0) {
		hasher_stop(&h);
		curl_multi_cleanup(multi);
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot start a thread");
	}
	for (unsigned i = 0; i < m->nparts; i++)
		todo += m->parts[i].state != PART_DONE;
	nslots = todo < (unsigned)m->c->set->concurrency ? todo : (unsigned)m->c->set->concurrency;
	if (!nslots)
		nslots = todo ? 1 : 0;
	slots = xcalloc(nslots ? nslots : 1, sizeof(*slots));
	for (unsigned i = 0; i < nslots; i++) {
		req_init(&slots[i].r, m->c, "PUT");
		slots[i].r.easy = curl_easy_init();
		if (!slots[i].r.easy) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot initialise libcurl");
			goto out;
		}
	}
	/* the limit is for the whole upload: each transfer gets its share */
	if (m->c->rate_limit && nslots)
		rate = m->c->rate_limit / nslots ? m->c->rate_limit / nslots : 1;
	for (;;) {
		int64_t now = clock_now_ms(), wake = -1, wait_ms = 1000;
		int still = 0, left, finished = 0;
		CURLMsg *msg;
		CURLMcode mc;

		int sha_state;

		pthread_mutex_lock(&h.lock);
		if (h.errnum)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", m->path, ops_strerror(h.errnum));
		sha_state = m->want_sha256 ? h.sha_state : 1;
		pthread_mutex_unlock(&h.lock);
		if (ret == 0 && stop_requested(m->c))
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "cannot %s: interrupted", m->what.buf);
		if (ret < 0)
			goto out;
		if (sha_state < 0) {
			/* no part more: the upload is abandoned by the caller */
			ret = S3_SOURCE_DAMAGED;
			goto out;
		}
		for (unsigned i = 0; i < nslots; i++) {
			struct mp_part *p;
			if (slots[i].busy)
				continue;
			p = next_part(m, &h, now, &wake);
			if (!p)
				break;
			if ((ret = start_part(m, &slots[i], multi, (unsigned)(p - m->parts), rate, err)) < 0)
				goto out;
			running++;
		}
		if (!running && all_sent(m) && sha_state > 0)
			break;
		mc = curl_multi_perform(multi, &still);
		if (mc != CURLM_OK) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "libcurl: %s", curl_multi_strerror(mc));
			goto out;
		}
		while ((msg = curl_multi_info_read(multi, &left))) {
			struct req *r = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			r->rc = msg->data.result;
			collect(r);
			curl_multi_remove_handle(multi, r->easy);
			running--;
			finished++;
			if ((ret = finish_part(m, r->owner, err)) < 0)
				goto out;
		}
		report_progress(m->c, m->done_bytes + bytes_in_flight(slots, nslots), m->size, 0);
		/* a slot just came free: the next part starts now, not after a poll */
		if (finished)
			continue;
		if (wake >= 0 && wake - now < wait_ms)
			wait_ms = wake > now ? wake - now : 0;
		if (still || wait_ms > 0)
			curl_multi_poll(multi, NULL, 0, (int)wait_ms, NULL);
	}
out:
	hasher_stop(&h);
	for (unsigned i = 0; i < nslots; i++) {
		if (slots[i].busy)
			curl_multi_remove_handle(multi, slots[i].r.easy);
		if (slots[i].r.easy)
			curl_easy_cleanup(slots[i].r.easy);
		req_release(&slots[i].r);
	}
	free(slots);
	curl_multi_cleanup(multi);
	return ret;
}

/* S3's ETag of a multipart object: MD5 of the parts' MD5s, "-" and their number. */
static void multipart_etag(const struct mp *m, char out[S3_ETAG_MAX])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char part[16], sum[16];
	char hex[33];

	out[0] = '\0';
	if (!md || !EVP_DigestInit_ex(md, EVP_md5(), NULL))
		goto out;
	for (unsigned i = 0; i < m->nparts; i++) {
		if (hex_to_md5(m->parts[i].md5_hex, part) < 0)
			goto out;
		EVP_DigestUpdate(md, part, sizeof(part));
	}
	if (!EVP_DigestFinal_ex(md, sum, NULL))
		goto out;
	hash_hex(sum, sizeof(sum), hex);
	snprintf(out, S3_ETAG_MAX, "%s-%u", hex, m->nparts);
out:
	EVP_MD_CTX_free(md);
}

static int complete(struct mp *m, struct s3_put_result *res, struct ops_error *err)
{
	struct req r;
	struct strbuf xml = STRBUF_INIT, q = STRBUF_INIT, etag = STRBUF_INIT;
	unsigned char digest[HASH_SHA256_LEN];
	xmlDocPtr doc = NULL;
	xmlNodePtr root;
	char expect[S3_ETAG_MAX];
	int ret;

	req_init(&r, m->c, "POST");
	strbuf_addstr(&xml, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (unsigned i = 0; i < m->nparts; i++)
		strbuf_addf(&xml, "<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
			    m->st.etags[i]);
	strbuf_addstr(&xml, "</CompleteMultipartUpload>");
	upload_query(&q, m->st.upload_id, 0);
	url_for_full_key(m->c->set, m->fkey, q.buf, &r.url);
	r.mem = xml.buf;
	r.mem_len = xml.len;
	hash_sha256(xml.buf, xml.len, digest);
	hash_hex(digest, sizeof(digest), r.payload_sha256);
	r.content_type = "application/xml";
	r.long_running = 1; /* assembling a large object takes the server a while */
	ret = perform(&r, m->what.buf, err);
	if (ret < 0) {
		if (r.rc == CURLE_OK && r.status == 404 && answer_code_is(&r, "NoSuchUpload"))
			ret = S3_NO_SUCH_UPLOAD;
		else if (ret == S3_NOT_FOUND)
			ret = req_fail(&r, m->what.buf, 1, err);
		goto out;
	}
	doc = xml_read(r.body.buf, r.body.len);
	root = doc ? xml_root(doc) : NULL;
	if (!is_element(root, "CompleteMultipartUploadResult") || xml_child_text(root, "ETag", &etag) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: the storage's answer to completing it has no ETag",
				    m->what.buf);
		goto out;
	}
	if (res)
		etag_copy(res->etag, etag.buf, etag.len);
	multipart_etag(m, expect);
	if (res && !r.etag_opaque && strchr(res->etag, '-') && expect[0] && strcasecmp(res->etag, expect)) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY,
				    "cannot %s: the storage assembled ETag %s, not %s from the parts sent", m->what.buf,
				    res->etag, expect);
		goto out;
	}
out:
	if (doc)
		xml_free(doc);
	strbuf_release(&xml);
	strbuf_release(&q);
	strbuf_release(&etag);
	req_release(&r);
	return ret;
}

static int remove_state(const char *path, struct ops_error *err)
{
	char *dir;
	const char *slash;
	int ret;

	if (unlink(path) < 0 && errno != ENOENT)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path, ops_strerror(errno));
	slash = strrchr(path, '/');
	dir = slash ? xstrndup(path, (size_t)(slash - path + (slash == path))) : xstrdup(".");
	ret = fs_fsync_dir(dir, err);
	free(dir);
	return ret;
}

/* The object is there already when a run was killed between completing the
 * upload and removing its state file, or while the storage assembled it
 * (the answer to CompleteMultipartUpload never read): its size, and its
 * ETag when the storage gives the multipart form (MD5-N), must be those of
 * the parts recorded. */
static int already_complete(struct mp *m, struct s3_put_result *res)
{
	struct ops_error ignored = OPS_ERROR_INIT;
	struct s3_object o;
	char expect[S3_ETAG_MAX];
	int whole;

	memset(&o, 0, sizeof(o));
	whole = s3_head(m->c, m->key, &o, &ignored) == 0 && o.size == m->size;
	multipart_etag(m, expect);
	if (whole && !o.etag_opaque && strchr(o.etag, '-') && expect[0] && strcasecmp(o.etag, expect))
		whole = 0;
	if (whole && res)
		memcpy(res->etag, o.etag, sizeof(res->etag));
	s3_object_release(&o);
	ops_error_release(&ignored);
	return whole;
}

static int put_multipart(struct mp *m, struct s3_put_result *res, struct ops_error *err)
{
	int ret = 0;

	m->nparts = parts_for(m->size, m->part_size);
	m->parts = xcalloc(m->nparts, sizeof(*m->parts));
	/* a second round only when the server forgot the upload (expired,
	 * aborted by a lifecycle rule, or completed by a run that died) */
	for (int round = 0; round < 2; round++) {
		if ((ret = mp_prepare(m, round > 0, err)) < 0)
			goto out;
		report_progress(m->c, m->done_bytes, m->size, 1);
		ret = upload_parts(m, err);
		if (ret == S3_SOURCE_DAMAGED) {
			/* never completed: what was sent goes, and no later run resumes it */
			struct ops_error ignored = OPS_ERROR_INIT;
			abort_upload(m->c, m->fkey, m->st.upload_id, &ignored);
			ops_error_release(&ignored);
			if (m->state_path)
				remove_state(m->state_path, NULL);
			ret = source_damaged(m->path, m->got_sha256, res, err);
			goto out;
		}
		if (ret == 0)
			ret = complete(m, res, err);
		/* every part recorded by a run that died: it may have sent the
		 * completion too, which a storage then answers NoSuchUpload (S3,
		 * MinIO) or with an error of its own (s3rver: 500 InternalError) */
		if (ret < 0 && round == 0 && m->resumed == m->nparts && already_complete(m, res)) {
			ops_error_clear(err);
			ret = 0;
			break;
		}
		if (ret != S3_NO_SUCH_UPLOAD)
			break;
	}
	if (ret == S3_NO_SUCH_UPLOAD)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot %s: the storage lost the multipart upload twice",
				    m->what.buf);
	if (ret < 0)
		goto out;
	report_progress(m->c, m->size, m->size, 1);
	if (res) {
		res->parts = m->nparts;
		res->parts_resumed = m->resumed;
	}
	{	/* the tests' SIGKILL with the upload completed, its state still there */
		const char *at = getenv("OPSCTL_TEST_KILL_AT");
		if (at && !strcmp(at, "offsite-completed") && m->state_path)
			raise(SIGKILL);
	}
	if (m->state_path)
		ret = remove_state(m->state_path, err);
out:
	return ret;
}

int s3_put_file(struct s3_client *c, const char *key, const char *path, const char *state_path,
		const char *want_sha256, struct s3_put_result *res, struct ops_error *err)
{
	struct mp m;
	struct stat st;
	struct strbuf fkey = STRBUF_INIT;
	int ret;

	memset(&m, 0, sizeof(m));
	strbuf_init(&m.what, 0);
	s3_upload_state_init(&m.st);
	c->retries = 0;
	c->progress_at_ms = 0;
	if (res)
		memset(res, 0, sizeof(*res));
	m.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m.fd < 0 || fstat(m.fd, &st) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot upload '%s': not a regular file", path);
		goto out;
	}
	full_key(c->set, key, &fkey);
	m.c = c;
	m.key = key;
	m.fkey = fkey.buf;
	m.path = path;
	m.state_path = state_path;
	m.size = (uint64_t)st.st_size;
	m.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	m.part_size = s3_part_size(m.size, c->set->part_size);
	m.want_sha256 = want_sha256;
	strbuf_addf(&m.what, "upload '%s' to storage '%s'", key, c->set->name);
	if ((ret = client_easy(c, err)) < 0)
		goto out;
	if (m.size <= m.part_size)
		ret = put_single(c, fkey.buf, key, path, m.fd, m.size, want_sha256, res, err);
	else
		ret = put_multipart(&m, res, err);
	if (ret == 0 && res)
		res->size = m.size;
out:
	if (res)
		res->retries = c->retries;
	if (m.fd >= 0)
		close(m.fd);
	free(m.parts);
	s3_upload_state_release(&m.st);
	strbuf_release(&m.what);
	strbuf_release(&fkey);
	return ret;
}

int s3_put_abandon(struct s3_client *c, const char *state_path, struct ops_error *err)
{
	struct s3_upload_state st;
	struct ops_error ignored = OPS_ERROR_INIT;
	int ret = 0, loaded;

	s3_upload_state_init(&st);
	loaded = s3_upload_state_load(&st, state_path, &ignored);
	if (loaded == 1)
		goto out;
	if (loaded == 0 && !strcmp(st.endpoint, c->set->endpoint) && !strcmp(st.bucket, c->set->bucket) &&
	    (ret = abort_upload(c, st.key, st.upload_id, err)) < 0)
		goto out;
	ret = remove_state(state_path, err);
out:
	ops_error_release(&ignored);
	s3_upload_state_release(&st);
	return ret;
}
