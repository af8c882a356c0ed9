/* Versioned SQL migrations: the files (DIR/NNN_name.sql and
 * DIR/rollback/NNN_name.down.sql), the bookkeeping table (the seeds'
 * schema_migrations, extended in place), the advisory lock, and applying or
 * undoing each migration with its row in one transaction. */
#ifndef OPSCTL_MIGRATE_H
#define OPSCTL_MIGRATE_H

#include <stdint.h>
#include <libpq-fe.h>
#include "base/error.h"
#include "base/strbuf.h"

struct mig_file {
	char *version;        /* as written: "001", "20261121093000" */
	uint64_t number;      /* compared as a number */
	char *name;           /* "add_users" */
	char *script_name;    /* "001_add_users.sql" (the seeds' column) */
	char *path;           /* DIR/001_add_users.sql */
	char *down_path;      /* DIR/rollback/001_add_users.down.sql, or NULL */
	char checksum[65];    /* SHA-256 hex of the content, CRLF -> LF */
};

struct mig_applied {
	long id;
	char *version;
	uint64_t number;
	char *script_name;
	char *checksum;       /* NULL for rows written by the seeds' migrate.sh */
	char *executed_at;
	long execution_ms;    /* -1 when unknown */
	char *applied_by;
};

struct mig_partial {
	char *version;
	uint64_t number;
	char *checksum;       /* of the statements that ran */
	long done, total;
};

enum mig_state {
	MIG_APPLIED,
	MIG_PENDING,
	MIG_CHANGED,          /* applied, file edited since */
	MIG_MISSING,          /* applied, file gone */
	MIG_PARTIAL,          /* no-transaction file stopped part way */
	MIG_OUT_OF_ORDER,     /* pending below the highest applied version */
};

struct mig_row {
	uint64_t number;
	const struct mig_file *file;        /* may be NULL (MIG_MISSING) */
	const struct mig_applied *applied;  /* may be NULL (pending) */
	const struct mig_partial *partial;
	enum mig_state state;
};

/* One migration run or undone, for the report. */
struct mig_done {
	char *version;
	char *script_name;
	long ms;              /* -1: nothing ran (repair, baseline) */
	long statements;
};

typedef void (*mig_progress_fn)(const char *verb, const struct mig_file *f, size_t index,
				size_t total, void *data);

struct mig {
	/* settings (owned) */
	char *dir;
	char *table;          /* as configured: "schema_migrations" or "app.schema_migrations" */
	int64_t lock_timeout_ms;
	char *applied_by;     /* "user@host" */
	mig_progress_fn progress;
	void *progress_data;
	/* May be NULL. Non-zero (the signal) once the run must stop: checked
	 * while waiting for the lock, between migrations and between the
	 * statements of a no-transaction file, and asked when a statement fails
	 * (the caller's signal handler cancels it with db_cancel_fire), so an
	 * interrupted run stops with OPS_EXIT_ABORTED, the migration it was in
	 * rolled back (or, without a transaction, its progress kept). */
	int (*stop)(void *data);
	void *stop_data;
	/* state */
	PGconn *conn;         /* borrowed */
	char *qtable;         /* quoted for SQL */
	char *qprogress;      /* the progress table of no-transaction files */
	int64_t lock_key;
	int locked;
	int table_exists;
	int table_extended;   /* has opsctl's columns */
	struct mig_file *files;
	size_t nfiles;
	char **ignored;       /* .sql files in DIR not named NNN_name.sql */
	size_t nignored;
	struct mig_applied *applied;
	size_t napplied;
	struct mig_partial *partials;
	size_t npartials;
	struct mig_row *rows;
	size_t nrows;
	size_t adopted;       /* seeds' rows given a checksum by this run */
	struct mig_done *done;
	size_t ndone;
};

/* dir and table are copied. */
void mig_init(struct mig *m, const char *dir, const char *table, int64_t lock_timeout_ms);
void mig_release(struct mig *m);

/* Reads DIR: NNN_name.sql files (and their rollback/NNN_name.down.sql).
 * A missing DIR is an empty set. Two files with one version number is
 * OPS_EXIT_CONFIG naming both. */
int mig_scan(struct mig *m, struct ops_error *err);

/* Uses conn (not owned) and reads the bookkeeping table if it exists (one
 * query), then builds m->rows. Does not create or change anything. */
int mig_attach(struct mig *m, PGconn *conn, struct ops_error *err);

/* Takes the session advisory lock, polling up to lock_timeout_ms. On timeout
 * OPS_EXIT_LOCKED naming the holder's pid, application_name and since. */
int mig_lock(struct mig *m, struct ops_error *err);
void mig_unlock(struct mig *m);

/* Creates the bookkeeping table, or adds opsctl's columns to the seeds'
 * table, and re-reads the history. Needs the lock. */
int mig_prepare(struct mig *m, struct ops_error *err);

/* What `up` would run, in order, after the checks (drift -> OPS_EXIT_INTEGRITY,
 * out of order without allow -> OPS_EXIT_FAILED, unreadable/empty/non-UTF-8
 * files -> OPS_EXIT_CONFIG). Only versions <= to when have_to. The array is
 * malloc'd and points into m->files. */
int mig_plan_up(struct mig *m, int have_to, uint64_t to, int allow_out_of_order,
		const struct mig_file ***plan, size_t *n, struct ops_error *err);
/* Applies the plan: each file and its row in one transaction; a
 * `-- opsctl:no-transaction` file statement by statement with its progress
 * recorded. Stops at the first failure: "FILE:LINE: message". m->done lists
 * what ran. */
int mig_apply(struct mig *m, const struct mig_file *const *plan, size_t n, struct ops_error *err);

/* What `down --to` would undo (applied rows above `to`, newest first; all
 * down files must exist: OPS_EXIT_CONFIG naming every missing one). steps > 0
 * limits the count instead (down without --to undoes one). */
int mig_plan_down(struct mig *m, int have_to, uint64_t to, size_t steps,
		  const struct mig_applied ***plan, size_t *n, struct ops_error *err);
int mig_undo(struct mig *m, const struct mig_applied *const *plan, size_t n, struct ops_error *err);

/* Accepts edited files (stores their new checksums) and clears the progress
 * of no-transaction files. Returns the number of rows changed in *changed. */
int mig_repair(struct mig *m, size_t *changed, struct ops_error *err);
/* Marks every file at or below version as applied without running it. */
int mig_baseline(struct mig *m, uint64_t version, size_t *marked, struct ops_error *err);

/* Creates DIR/NNN_name.sql and DIR/rollback/NNN_name.down.sql with the next
 * number, padded like the existing ones (a timestamp if they are timestamps).
 * The paths are returned malloc'd. */
int mig_new(struct mig *m, const char *name, char **up_path, char **down_path,
	    struct ops_error *err);

/* Parses a version argument ("005", "20261121093000"). */
int mig_parse_version(const char *s, uint64_t *out, struct ops_error *err);
/* A file name "NNN_name" + suffix (".sql", ".down.sql"): 1 with the digits
 * before the first '_' (1 to 19 of them) as written in *version and as a
 * number in *number, and the non-empty rest without the suffix in *name
 * (both malloc'd); 0 when the name does not fit (nothing allocated). */
int mig_parse_name(const char *fname, const char *suffix, char **version, uint64_t *number,
		   char **name);

/* Counts for status/validate. */
size_t mig_count(const struct mig *m, enum mig_state s);
const char *mig_state_name(enum mig_state s);

/* Reads a migration file and checks it is readable and valid UTF-8 (that it
 * holds statements is checked when it is about to run or be planned). */
int mig_read_file(const char *path, struct strbuf *out, struct ops_error *err);
/* SHA-256 of text with CRLF and lone CR normalised to LF. */
void mig_checksum(const char *text, size_t len, char hex[65]);

#endif
