/* Exit codes: the contract of DESIGN.md section 4, in one place. */
#ifndef OPSCTL_EXITCODE_H
#define OPSCTL_EXITCODE_H

enum ops_exit {
	OPS_EXIT_OK = 0,
	OPS_EXIT_FAILED = 1,        /* the operation ran and failed; health: a check failed */
	OPS_EXIT_USAGE = 2,         /* unknown command or option, bad argument */
	OPS_EXIT_CONFIG = 3,        /* missing or invalid config/env file */
	OPS_EXIT_UNREACHABLE = 4,   /* database, endpoint or storage not reached in time */
	OPS_EXIT_INTEGRITY = 5,     /* checksum mismatch, corrupted backup, edited migration */
	OPS_EXIT_DEGRADED = 6,      /* health: warnings only */
	OPS_EXIT_ROLLED_BACK = 7,   /* deploy failed, previous release serving */
	OPS_EXIT_ROLLBACK_FAILED = 8, /* deploy failed and rollback failed: operator must act */
	OPS_EXIT_PENDING = 9,       /* migrate status --exit-code: unapplied migrations */
	OPS_EXIT_ABORTED = 10,      /* confirmation declined or interrupted and cleaned up */
	OPS_EXIT_LOCKED = 75,       /* another run holds the lock (EX_TEMPFAIL) */
};

/* Nagios / monitoring-plugin codes used by health --nagios. */
enum ops_nagios {
	OPS_NAGIOS_OK = 0,
	OPS_NAGIOS_WARNING = 1,
	OPS_NAGIOS_CRITICAL = 2,
	OPS_NAGIOS_UNKNOWN = 3,
};

/* Short lowercase name of an exit code ("unreachable"), for JSON and docs. */
const char *ops_exit_name(int code);

#endif
