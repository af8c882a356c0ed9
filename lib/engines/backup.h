/* Backup sets: DIR/APP-YYYYmmddTHHMMSSZ/ with the database dump, an archive
 * of the configured paths and manifest.json (written last: a directory
 * without a valid manifest is not a backup). Creating, listing, verifying,
 * retention, and restoring into a new database that is swapped in only when
 * it is complete. */
#ifndef OPSCTL_BACKUP_H
#define OPSCTL_BACKUP_H

#include <stdint.h>
#include <time.h>
#include "adapters/db.h"
#include "adapters/zstream.h"
#include "base/error.h"

#define BK_MANIFEST "manifest.json"
#define BK_VERIFIED "verified.json"
#define BK_DUMP_DIR "db"       /* a directory-format dump: db/toc.dat, db/NNNN.dat.zst */

struct bk_file {
	char *name;            /* "db.dump.zst", relative to the set's directory */
	char *role;            /* "database" or "paths" */
	uint64_t size;
	char sha256[65];
};

struct bk_table {
	char *schema;
	char *name;
	long long rows;
};

struct bk_manifest {
	char *id;
	char *app;
	char *tool;            /* "opsctl 0.1.0" */
	char *database;        /* the database's name */
	char *server_version;
	char *format;          /* "directory", "custom" or "plain" */
	char *compression;     /* "zstd", "gzip", "none" */
	time_t started_at, finished_at;
	int64_t duration_ms;
	uint64_t dump_bytes;   /* the dump before compression */
	struct bk_file *files;
	size_t nfiles;
	struct bk_table *tables;
	size_t ntables;
	char **paths;          /* what the paths archive holds, as configured */
	size_t npaths;
	struct cJSON *sources; /* [source]s in the set: src_entry_json objects, or NULL */
};

void bk_manifest_release(struct bk_manifest *m);
/* Strict: every field of the contract with the right type, file names
 * without '/' or "..", sha256 as 64 hex digits. OPS_EXIT_INTEGRITY otherwise. */
int bk_manifest_parse(const char *text, size_t len, struct bk_manifest *m, struct ops_error *err);
/* Pretty JSON (malloc'd). */
char *bk_manifest_json(const struct bk_manifest *m);
uint64_t bk_manifest_size(const struct bk_manifest *m);
const struct bk_file *bk_manifest_file(const struct bk_manifest *m, const char *role);

struct bk_entry {
	char *id;
	char *path;            /* DIR/ID */
	struct bk_manifest m;
	time_t verified_at;    /* 0 = never (from verified.json) */
	int restore_tested;
};

struct bk_list {
	struct bk_entry *items;  /* newest first (manifest time, then id) */
	size_t nr;
	size_t skipped;          /* directories without a valid manifest */
};

/* Reads every set of dir. A missing dir is an empty list. */
int bk_list_read(const char *dir, struct bk_list *l, struct ops_error *err);
void bk_list_release(struct bk_list *l);
/* Keeps only the sets of app (a directory may be shared by several apps:
 * retention and "latest" must never cross them). */
void bk_list_only_app(struct bk_list *l, const char *app);
/* "latest", an id, or a path to a set's directory. OPS_EXIT_USAGE when unknown. */
int bk_find(const struct bk_list *l, const char *which, const struct bk_entry **out,
	    struct ops_error *err);
/* Reads one set from its directory (restore PATH). */
int bk_entry_read(const char *path, struct bk_entry *e, struct ops_error *err);
void bk_entry_release(struct bk_entry *e);

/* Sizes and SHA-256 of every file against the manifest: OPS_EXIT_INTEGRITY
 * naming the first file that differs. */
int bk_verify(const struct bk_entry *e, struct ops_error *err);
/* What a restore checks before it touches the server: bk_verify, except that
 * a directory set's table data files (db/NNNN.dat.zst) are only checked for
 * their presence and size here; bk_restore streams them into COPY and fails
 * on a wrong SHA-256 (OPS_EXIT_INTEGRITY, the same message) before any swap. */
int bk_verify_before_restore(const struct bk_entry *e, struct ops_error *err);
/* Records a successful verification (and restore test) in verified.json,
 * which `backup list` shows; a read-only directory is not an error. */
void bk_mark_verified(const struct bk_entry *e, int restore_tested);

struct bk_policy {
	long keep_last, keep_daily, keep_weekly, keep_monthly;
};
/* keep[i] for l->items[i] (newest first): the newest keep_last, then the
 * newest set of each of the last keep_daily days, keep_weekly ISO weeks and
 * keep_monthly months that have sets (UTC, by manifest time). Never keeps
 * fewer than one. reason[i] (may be NULL) says which rule kept it. */
void bk_retention(const struct bk_list *l, const struct bk_policy *p, int *keep,
		  const char **reason);
/* Deletes a set: renamed to DIR/.trash-ID first (so it is never half listed),
 * then removed. */
int bk_remove(const struct bk_entry *e, struct ops_error *err);

typedef int (*bk_progress_fn)(const char *what, uint64_t done, uint64_t total, void *data);

/* The default of [backup] jobs: one per CPU we may run on, at most 4 (each
 * job is a connection and a server process). */
long bk_default_jobs(void);

struct config;
/* [backup] stall_timeout (cfg may be NULL): *out is left alone when it is
 * not set; a value of 0 or less is OPS_EXIT_CONFIG. */
int bk_stall_setting(const struct config *cfg, int64_t *out, struct ops_error *err);

struct src_settings;
struct src_callbacks;

#define BK_DEFAULT_STALL_MS (10 * 60 * 1000)

struct bk_create_opts {
	const char *dir;
	const char *app;
	const struct db_target *db;
	const char *format;        /* "directory", "custom" or "plain" */
	enum zs_codec codec;
	int level, threads;
	int jobs;                  /* pg_dump workers for "directory" (its -j) */
	const char *const *paths;  /* may be NULL */
	size_t npaths;
	const char *pg_dump;       /* program name or path */
	const struct src_settings *sources;  /* [source]s backed up into the same set */
	size_t nsources;
	const struct src_callbacks *source_callbacks;  /* may be NULL */
	int64_t stall_ms;          /* pg_dump writing nothing this long, or a row
				      count running this long, is a stalled
				      database: OPS_EXIT_UNREACHABLE ([backup]
				      stall_timeout); 0 = BK_DEFAULT_STALL_MS */
	bk_progress_fn progress;
	void *progress_data;
};

/* Runs pg_dump (no shell; the connection passed in PG* variables, never on
 * its command line) in a snapshot whose per-table row counts go into the
 * manifest, compresses while hashing, archives the paths, writes the
 * manifest last, fsyncs, and renames .tmp-ID into place. On any failure the
 * temporary directory is removed and nothing is listed; work directories
 * left by a killed run are removed first (the caller holds the lock). */
int bk_create(const struct bk_create_opts *o, struct bk_entry *out, struct ops_error *err);

struct bk_restore_opts {
	const struct db_target *db;  /* the live database (its name is the one replaced) */
	const char *target_db;       /* restore beside it under this name, no swap */
	const char *scratch_db;      /* restore test: restore here, compare, drop */
	int jobs;                    /* parallel pg_restore (-j) for directory and custom dumps */
	int verified;                /* the caller just ran bk_verify or
					bk_verify_before_restore: not again (the
					load still hashes what it reads) */
	const char *pg_restore, *psql;
	const char *stop_cmd, *start_cmd;   /* [service] stop/start, may be NULL */
	int64_t timeout_ms;
	bk_progress_fn progress;
	void *progress_data;
};

struct bk_restore_result {
	char *restored_as;     /* the database the data went into */
	char *previous_as;     /* the live database's new name after the swap, or NULL */
	size_t tables_checked;
	int64_t duration_ms;
};
void bk_restore_result_release(struct bk_restore_result *r);

/* Verifies (bk_verify_before_restore; the table data as it is loaded),
 * restores into a new database, compares row counts with the manifest
 * (OPS_EXIT_INTEGRITY on a difference), then (unless target_db or
 * scratch_db) stops the service, ends the remaining sessions, renames the
 * live database to NAME_pre_restore_TS and the new one to NAME, and starts
 * the service. Any failure before the swap drops the new database and leaves
 * the live one as it was. */
int bk_restore(const struct bk_entry *e, const struct bk_restore_opts *o,
	       struct bk_restore_result *res, struct ops_error *err);

/* Extracts the paths archive into a fresh directory beside each path and
 * swaps it in (old content kept as PATH.pre_restore_TS). */
int bk_restore_files(const struct bk_entry *e, const char *stamp, struct ops_error *err);

#endif
