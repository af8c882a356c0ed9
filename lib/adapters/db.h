/* PostgreSQL through libpq: where to connect (the resolution order of
 * DESIGN.md section 3), connecting and querying with deadlines, and error
 * messages that never contain a password. */
#ifndef OPSCTL_DB_H
#define OPSCTL_DB_H

#include <stdint.h>
#include <libpq-fe.h>
#include "base/error.h"
#include "base/strbuf.h"

struct config;
struct envfile;

/* Connection parameters as libpq keyword/value pairs (NULL-terminated). */
struct db_target {
	char **keywords;
	char **values;      /* may hold a password: wiped on release */
	size_t nr;
	char *display;      /* "user@host:port/dbname", never a password */
	const char *source; /* "--db", "[database] url", "DATABASE_URL", "libpq environment",
			       "DB_* variables", "libpq defaults" */
};

/* Resolves in order: flag_url (global --db), [database] url, DATABASE_URL
 * (environment, then env file), libpq's PG* environment / service file,
 * DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD (environment, then env file),
 * libpq's defaults. cfg and env may be NULL. A malformed URL is
 * OPS_EXIT_CONFIG (the message shows it with any password masked). */
int db_resolve(struct db_target *t, const char *flag_url, const struct config *cfg,
	       const struct envfile *env, struct ops_error *err);
/* A target from one URL or conninfo string (health's postgres:// targets). */
int db_target_from_url(struct db_target *t, const char *url, const char *source,
		       struct ops_error *err);
void db_target_release(struct db_target *t);

/* Connects within timeout_ms (0 = 30 s). Failure codes: OPS_EXIT_UNREACHABLE when
 * the server could not be reached (refused, timeout, unknown host),
 * OPS_EXIT_FAILED when it answered but refused us (authentication, missing
 * database). Message: "cannot connect to 'user@host:port/db': connection refused". */
int db_connect(PGconn **out, const struct db_target *t, const char *application_name,
	       int64_t timeout_ms, struct ops_error *err);

/* Runs one statement (no parameters when nparams == 0) and waits for it up to
 * timeout_ms (0 = no deadline), cancelling it on expiry (OPS_EXIT_UNREACHABLE;
 * a server that does not answer the cancel within 5 s, a frozen one, leaves
 * the connection mid-statement: PQfinish it). *res is set on success (PQclear
 * it); a failed statement is OPS_EXIT_FAILED with the server's message. */
int db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
	    int64_t timeout_ms, PGresult **res, struct ops_error *err);

/* COPY ... FROM STDIN, the data sent in chunks of any size. stall_ms bounds
 * each wait for the server (to accept more data, to answer): 0 = 10 minutes.
 * db_copy_begin sends sql and fails unless the server is ready for data;
 * db_copy_put queues a chunk; db_copy_end finishes, waits for the server's
 * verdict and sets *rows (may be NULL) to the rows it loaded. After an error
 * the connection is unusable: PQfinish it. Errors: OPS_EXIT_FAILED with the
 * server's message ("COPY public.messages: invalid input syntax ..."), or
 * OPS_EXIT_UNREACHABLE when the server stalled past stall_ms. */
int db_copy_begin(PGconn *conn, const char *sql, int64_t stall_ms, struct ops_error *err);
int db_copy_put(PGconn *conn, const void *buf, size_t len, int64_t stall_ms, struct ops_error *err);
int db_copy_end(PGconn *conn, int64_t stall_ms, long long *rows, struct ops_error *err);

/* What PostgreSQL said about a failed statement, beyond its message. */
struct db_diag {
	int position;         /* 1-based character position in the statement; 0 if none */
	char sqlstate[6];
	struct strbuf detail;
	struct strbuf hint;
};
void db_diag_init(struct db_diag *d);
void db_diag_release(struct db_diag *d);
/* db_exec that also fills diag (may be NULL) when the statement fails. */
int db_exec_diag(PGconn *conn, const char *sql, int nparams, const char *const *params,
		 int64_t timeout_ms, PGresult **res, struct db_diag *diag, struct ops_error *err);

/* Cancelling the running statement from a signal handler, as psql does on
 * Ctrl-C, so an interrupted run does not leave a long statement running on
 * the server (holding its locks) until the server notices the closed
 * connection. db_cancel_arm keeps conn's cancel key in the process's one
 * slot (replacing any other); db_cancel_fire, async-signal-safe, asks the
 * server to cancel whatever that connection runs now (a no-op when nothing
 * is armed); db_cancel_disarm empties the slot. The statement then fails
 * with "canceling statement due to user request" (SQLSTATE 57014, which a
 * statement_timeout gives too: the caller knows whether it fired), and a
 * transaction it was in rolls back as on any failure. Arm and disarm from
 * the main thread only. */
void db_cancel_arm(PGconn *conn);
void db_cancel_fire(void);
void db_cancel_disarm(void);

/* The connection as libpq environment variables ("PGHOST=db1", ...),
 * NULL-terminated and malloc'd, for the programs opsctl runs (pg_dump,
 * psql): a password never goes on their command line nor in their
 * environment, but in a private passfile (PGPASSFILE=/proc/OPSCTL-PID/fd/N,
 * an anonymous memfd of mode 0600, open until db_env_free), so the child
 * must run while opsctl does. dbname (may be NULL) replaces the database.
 * Free with db_env_free. */
char **db_target_env(const struct db_target *t, const char *dbname);
void db_env_free(char **env);
/* The same server, user and settings as t, another database (restores,
 * maintenance connections). out is filled; release it. */
void db_target_with_dbname(struct db_target *out, const struct db_target *t, const char *dbname);

/* The same server and settings as t as another user: dbname, user and
 * password replace t's when not NULL (a password given ignores passfile). */
void db_target_with_login(struct db_target *out, const struct db_target *t, const char *dbname,
			  const char *user, const char *password);
/* ALTER ROLE's argument for password: a SCRAM (or md5, following the
 * server's password_encryption) verifier computed here with
 * PQencryptPasswordConn, so the plaintext never reaches the server or its
 * log. *verifier is malloc'd. */
int db_password_verifier(PGconn *conn, const char *role, const char *password, char **verifier,
			 struct ops_error *err);
/* The database name libpq would use for t (malloc'd; "postgres" style
 * defaults applied: the user name when none is given). */
char *db_target_dbname(const struct db_target *t);

/* Masks the password of a URL or conninfo for messages: "postgresql://u:***@h/db". */
char *db_redact(const char *url);

#endif
