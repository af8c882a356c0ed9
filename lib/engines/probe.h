/* Health probes: what to check (from the config or ad hoc targets), running
 * every check concurrently with its own deadline, judging HTTP health bodies,
 * and waiting until checks pass N times in a row. */
#ifndef OPSCTL_PROBE_H
#define OPSCTL_PROBE_H

#include <stdint.h>
#include "adapters/db.h"
#include "base/error.h"
#include "base/strbuf.h"

struct config;
struct envfile;

enum probe_type { PROBE_HTTP, PROBE_POSTGRES, PROBE_TCP, PROBE_DISK, PROBE_MEMORY };
/* Ordered by severity: the worst state of a set decides its outcome. */
enum probe_state { PROBE_PASS = 0, PROBE_WARN = 1, PROBE_UNREACHABLE = 2, PROBE_FAIL = 3 };

struct probe {
	char *name;
	enum probe_type type;
	/* settings */
	char *url;             /* http */
	char *host, *port;     /* tcp */
	int redis;             /* tcp: speak RESP PING */
	char *redis_password;  /* wiped on release */
	char **require;        /* http: components that must be up */
	size_t nrequire;
	char *expect;          /* http: "200,204" or "200-299" (NULL = 200-399) */
	int64_t timeout_ms;
	size_t max_body;
	char *path;            /* disk */
	double warn_pct, crit_pct;           /* disk, memory, postgres connections */
	struct db_target db;                 /* postgres */
	/* results of the last run */
	enum probe_state state;
	struct strbuf detail;  /* one line: "HTTP 200, status UP", "45% used (warn 70%)" */
	double duration_ms;
	double observed;       /* disk/memory: % used; http/tcp/postgres: latency in ms */
	const char *unit;      /* "%" or "ms" */
	long http_status;
	char *server_version;  /* postgres */
	long connections, max_connections;
	uint64_t total_bytes, used_bytes;    /* disk, memory */
	unsigned passes_in_row;
};

struct probe_set {
	struct probe *items;
	size_t nr, alloc;
	unsigned rounds;       /* rounds run by the last probe_wait */
};

struct probe_defaults {
	int64_t timeout_ms;          /* per check, unless the check sets its own */
	int64_t force_timeout_ms;    /* from the command line: beats the check's own */
	const char *require;         /* ad hoc URLs: comma/space list */
	const char *expect;
	double warn_pct, crit_pct;   /* ad hoc disk/memory; <0 = the type's default */
	const struct db_target *db;  /* postgres checks without url (NULL: resolve from config) */
};

void probe_set_init(struct probe_set *set);
void probe_set_release(struct probe_set *set);

/* Adds the [check "NAME"] of the config. Unknown keys/types and bad values
 * are OPS_EXIT_CONFIG naming FILE:LINE. */
int probe_add_configured(struct probe_set *set, const struct config *cfg, const struct envfile *env,
			 const char *name, const struct probe_defaults *d, struct ops_error *err);
/* Adds an ad hoc target: http(s)://, postgres(ql)://, tcp://host:port,
 * redis://host:port, disk:/path, memory. Not a target: returns 1 (so the
 * caller can try it as a check name). Bad target: OPS_EXIT_USAGE. */
int probe_add_target(struct probe_set *set, const char *target, const struct probe_defaults *d,
		     struct ops_error *err);
/* Adds a postgres check of an already resolved database (health --db). */
void probe_add_database(struct probe_set *set, const char *name, const struct db_target *db,
			const struct probe_defaults *d);

/* Runs every probe once, all at the same time; fills the results. */
int probe_run_all(struct probe_set *set, struct ops_error *err);

/* Called after each round while waiting (and with set == NULL after each
 * sleep); a non-zero return stops the wait (Ctrl-C): probe_wait then returns
 * OPS_EXIT_ABORTED. */
typedef int (*probe_round_fn)(const struct probe_set *set, unsigned round, int64_t elapsed_ms,
			      void *data);
/* Runs rounds until every probe has passed (or warned) `consecutive` rounds in
 * a row, or wait_ms has passed. The sleep between rounds starts at
 * interval_ms and grows by half each round up to 5 s (never past the deadline). */
int probe_wait(struct probe_set *set, int64_t wait_ms, int64_t interval_ms, unsigned consecutive,
	       probe_round_fn on_round, void *data, struct ops_error *err);

/* The health gate of deploy and rotate-secret: which checks, then waiting
 * for them. url alone when given; else the [check]s in names (a name
 * without its section is OPS_EXIT_CONFIG naming names_from, e.g.
 * "[deploy] checks"); else every [check] of cfg. */
struct probe_gate {
	const struct config *cfg;     /* may be NULL */
	const struct envfile *env;    /* may be NULL */
	const char *url;
	char *const *names;
	size_t nnames;
	const char *names_from;
	int64_t timeout_ms, wait_ms, interval_ms;
	unsigned consecutive;
	probe_round_fn on_round;      /* may be NULL */
	void *data;
};
/* 0 passed; 1 failed, the failing checks in why ("'api' fail: HTTP 503;
 * ..."); 2 nothing to check; < 0 when the gate could not run (a config
 * error; OPS_EXIT_ABORTED when on_round asked to stop). */
int probe_gate_run(const struct probe_gate *g, struct strbuf *why, struct ops_error *err);
/* Reads the gate's checks without running them (a bad one is found before
 * anything changes): 0, or the config error. */
int probe_gate_validate(const struct probe_gate *g, struct ops_error *err);

/* The worst state of the set. */
enum probe_state probe_set_worst(const struct probe_set *set);
/* Exit code of DESIGN.md section 4: fail 1 > unreachable 4 > warn 6 > 0. */
int probe_exit_code(const struct probe_set *set);
const char *probe_state_name(enum probe_state s);  /* pass warn fail unreachable */
const char *probe_type_name(enum probe_type t);    /* http postgres tcp disk memory */

/* Judges an HTTP answer: status code against expect, then a JSON body in the
 * Spring Actuator (v2 details, v3 components), IETF health+json or the seeds'
 * {"status":"healthy","components":{...}} shape, with `require`d components.
 * Writes the state and a one-line reason into detail (control characters
 * from the body shown as '?'). Pure: unit-tested. */
enum probe_state probe_judge_http(long status, const char *content_type, const char *body,
				  size_t body_len, const char *expect, char *const *require,
				  size_t nrequire, struct strbuf *detail);
/* Whether status matches "200,204" / "200-299" / NULL (200-399). */
int probe_status_expected(long status, const char *expect);

#endif
