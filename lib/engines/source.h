/* Backup sources beside PostgreSQL (DESIGN.md section 3 [source "NAME"],
 * section 6 backup "Sources"): a Redis RDB taken with BGSAVE, and an HTTP
 * snapshot (the Qdrant preset, or generic URL templates). Each one writes one
 * file into a backup set's work directory and returns what the manifest
 * records; a restore puts that file back. Nothing here prints; messages go
 * through the event callback, failures into the error record. */
#ifndef OPSCTL_SOURCE_H
#define OPSCTL_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "base/error.h"
#include "base/event.h"
#include "base/strbuf.h"

struct config;
struct envfile;

#define SRC_DIR "sources"                 /* in the set: sources/NAME.rdb, sources/NAME.snapshot */
#define SRC_DEFAULT_TIMEOUT_MS (10 * 60 * 1000)
#define SRC_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define SRC_DEFAULT_REDIS_PORT 6379
#define SRC_DEFAULT_NAME_FIELD "result.name"

enum src_type { SRC_REDIS, SRC_HTTP_SNAPSHOT };

/* After a Redis restore: what proves the data came back. */
enum src_redis_check {
	SRC_CHECK_PING,       /* the server answers PING (and is done loading) */
	SRC_CHECK_KEYS,       /* and, when the backup recorded keys, has keys (default) */
	SRC_CHECK_KEYS_EQUAL, /* and has exactly as many keys as recorded (a quiet store) */
};

/* How an http-snapshot restore sends the file. */
enum src_upload { SRC_UPLOAD_MULTIPART, SRC_UPLOAD_RAW };

/* One [source "NAME"] section. Strings are owned (src_settings_release
 * frees them; password and api_key are wiped first). */
struct src_settings {
	char *name;
	enum src_type type;
	char *display;              /* "redis 127.0.0.1:6379", "qdrant http://h:6333 collection 'k'" */
	int64_t timeout_ms;         /* timeout: the whole backup or restore of this source (10m) */
	int64_t connect_timeout_ms; /* connect_timeout: each connection (10s) */

	/* type = redis */
	char *host;                 /* address = HOST:PORT, [V6]:PORT, or a socket path */
	int port;
	char *unix_socket;          /* address = /run/redis/redis.sock (or unix:PATH) */
	char *username;             /* ACL user (AUTH user password); NULL = default user */
	char *password_env;         /* the variable that holds the password, or NULL */
	char *password;             /* its value (env file, then environment); NULL = no AUTH */
	char *rdb_path;             /* rdb_path: where the RDB is when CONFIG is renamed or
				     * disabled; NULL = CONFIG GET dir + dbfilename */
	char *stop_cmd, *start_cmd; /* stop / start: run through /bin/sh -c for a restore */
	enum src_redis_check check; /* restore_check = ping | keys | keys-equal */

	/* type = http-snapshot */
	char *preset;               /* "qdrant", or NULL for the generic templates */
	char *url;                  /* url (no trailing '/'): {url} in the templates */
	char *collection;           /* collection: {collection}; required by the preset */
	char *create_url, *download_url, *delete_url, *restore_url;  /* templates; delete/restore may be NULL */
	char *create_method, *download_method, *delete_method, *restore_method;
	char *create_body;          /* create_body: template of a request body, or NULL */
	char *name_field;           /* name_field: where the create answer holds the name (result.name) */
	char *checksum_field;       /* checksum_field: the server's SHA-256 of the snapshot, or NULL */
	enum src_upload restore_upload;  /* restore_upload = multipart | raw */
	char *restore_field;        /* restore_field: the multipart field ("snapshot") */
	char *api_key_env;          /* the variable that holds the API key, or NULL */
	char *api_key;              /* its value */
	char *api_key_header;       /* api_key_header: "api-key" (Qdrant), else "Authorization"
				     * (sent as "Bearer KEY") */
};

void src_settings_init(struct src_settings *s);
void src_settings_release(struct src_settings *s);
/* Fills s from [source "name"] of cfg; a variable named by password_env or
 * api_key_env is looked up in env (may be NULL), then in the environment.
 * OPS_EXIT_CONFIG with "FILE:LINE: ..." for an unknown type or preset, a bad
 * address, timeout or method, an unknown {placeholder} in a template, a
 * missing url/collection/create/download, a literal `password =` (names of
 * variables only), a variable that is set nowhere. */
int src_settings_load(struct src_settings *s, const struct config *cfg, const struct envfile *env,
		      const char *name, struct ops_error *err);
/* The names of the [source] sections (a new array of borrowed strings). */
size_t src_names(const struct config *cfg, const char ***names);
const char *src_type_name(enum src_type t);     /* "redis", "http-snapshot" */

/* What a source added to a backup set: one manifest entry. */
struct src_entry {
	char *name;            /* the source's name */
	char *type;            /* "redis" or "http-snapshot" */
	char *file;            /* "sources/cache.rdb", relative to the set's directory */
	uint64_t size;
	char sha256[65];
	/* owned: redis {"address","redis_version","lastsave","lastsave_at","keys",
	 * "rdb_path","appendonly"}; http-snapshot {"url","preset","collection",
	 * "snapshot","server_checksum","server_snapshot_deleted"} */
	cJSON *details;
};
void src_entry_init(struct src_entry *e);
void src_entry_release(struct src_entry *e);
/* The manifest's form: {"name","type","file","size","sha256","details"};
 * a new object the caller owns (cJSON_AddItemToArray hands it over). */
cJSON *src_entry_json(const struct src_entry *e);
/* Reads that form back (strict: the same fields and types, file as
 * "sources/NAME.EXT" without "..", sha256 as 64 hex digits): OPS_EXIT_INTEGRITY
 * otherwise. details is copied. */
int src_entry_parse(const cJSON *obj, struct src_entry *e, struct ops_error *err);


/* Every member may be NULL. */
struct src_callbacks {
	void (*event)(void *data, enum ops_event kind, const char *msg);
	/* bytes copied so far of total (0 when unknown) */
	void (*progress)(void *data, const char *what, uint64_t done, uint64_t total);
	/* non-zero (a signal number) when the run must stop */
	int (*stop_requested)(void *data);
	void *data;
};

/* Snapshots the source into SET_DIR/sources/NAME.rdb (redis) or
 * SET_DIR/sources/NAME.snapshot (http-snapshot), hashing while it copies,
 * fsyncs the file and the directory, and fills out (which must be
 * src_entry_init'ed). Redis: connect (connect_timeout), AUTH, BGSAVE (a save
 * already in progress is waited for, then ours runs), wait for LASTSAVE to
 * move past its value before BGSAVE and rdb_last_bgsave_status:ok, copy the
 * RDB. http-snapshot: create, download, and delete it on the server, also
 * when the download failed (a failed delete after a good download is a
 * warning, recorded as server_snapshot_deleted false). Every failure returns
 * -code with the message "source 'NAME' (DISPLAY): ..." (OPS_EXIT_FAILED;
 * OPS_EXIT_INTEGRITY when the server's checksum disagrees; OPS_EXIT_ABORTED
 * when stop_requested) and leaves no file behind. */
int src_backup(const struct src_settings *s, const char *set_dir, const struct src_callbacks *cb,
	       struct src_entry *out, struct ops_error *err);

struct src_restore_opts {
	const struct src_entry *entry;  /* the manifest's entry: the file is checked against
					 * its size and SHA-256 first (OPS_EXIT_INTEGRITY), and
					 * redis keys / the snapshot name come from it; may be NULL */
	int verified;                   /* the caller just checked the file: not again */
};

/* Puts FILE (a set's sources/NAME.*) back. Redis: refuses when the running
 * server has appendonly yes (it would load its AOF, not the RDB) or no
 * stop/start is configured; runs stop, waits until the server is gone,
 * replaces the RDB atomically (temp file + rename, the old file's owner and
 * mode kept; the old file kept as PATH.pre_restore_TS), runs start, and
 * checks PING / keys (restore_check). A failure after the swap puts the old
 * RDB back and starts the server again. http-snapshot: uploads the file to
 * the restore URL (Qdrant: multipart to .../snapshots/upload?priority=snapshot).
 * Messages as src_backup's. */
int src_restore(const struct src_settings *s, const char *file, const struct src_restore_opts *o,
		const struct src_callbacks *cb, struct ops_error *err);

/* ---- exposed for the tests ---- */

/* Fills a URL/body template: {url} as configured, {collection} and {name}
 * percent-encoded (escape = 1; raw for a JSON body, escape = 0). A value that
 * is NULL leaves its placeholder an error: "'{name}' is not known here".
 * Unknown placeholders: "unknown placeholder '{x}'". Appended to out. */
struct src_vars {
	const char *url, *collection, *name;
};
int src_template_fill(const char *tmpl, const struct src_vars *v, int escape, struct strbuf *out,
		      struct ops_error *err);
/* The value at a dotted path ("result.name", "snapshots.0.name"; a leading
 * '/' and '/' separators are accepted too) in root, or NULL. Borrowed. */
const cJSON *src_json_field(const cJSON *root, const char *path);
/* Splits "HOST:PORT", "[V6]:PORT", "HOST" (port 6379), "/path" or
 * "unix:/path" into s->host/port or s->unix_socket: 0 or -1 (bad). */
int src_parse_redis_address(const char *addr, char **host, int *port, char **unix_socket);

#endif
