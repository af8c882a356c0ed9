/* Child processes without a shell: argv vectors, captured output, a deadline,
 * the exit status checked. Operator-written commands from the config are the
 * one exception and go through proc_run_shell (/bin/sh -c). */
#ifndef OPSCTL_PROC_H
#define OPSCTL_PROC_H

#include <stdint.h>
#include "base/error.h"
#include "base/strbuf.h"

struct proc_opts {
	const char *const *env_add; /* NULL-terminated "K=V" strings added to (or replacing in) the environment; may be NULL */
	const char *cwd;            /* NULL = inherit */
	const char *stdin_data;     /* written to the child's stdin, then closed; NULL = /dev/null */
	size_t stdin_len;
	int64_t timeout_ms;         /* 0 = no deadline; on expiry SIGTERM, then SIGKILL after 2 s */
	struct strbuf *out;         /* captured stdout, or NULL to discard */
	struct strbuf *errout;      /* captured stderr, or NULL to discard */
	size_t capture_max;         /* cap per stream (0 = 1 MiB); the rest is read and dropped */
	int inherit_stdio;          /* 1: child writes to our stdout/stderr directly (out/errout ignored) */
};

struct proc_result {
	int exited;        /* 1 if it exited normally */
	int status;        /* exit status, or the signal number when !exited */
	int timed_out;     /* 1 if the deadline killed it */
	int64_t elapsed_ms;
};

/* Runs argv[0] (found on PATH) with argv. Returns 0 when it ran (whatever its
 * status: check res), or an error when it could not be started
 * ("cannot run 'pg_dump': no such file") or timed out (OPS_EXIT_UNREACHABLE:
 * "'pg_dump' did not finish within 30s"). */
int proc_run(const char *const *argv, const struct proc_opts *opts, struct proc_result *res,
	     struct ops_error *err);
/* Runs an operator-written command line through /bin/sh -c. */
int proc_run_shell(const char *cmdline, const struct proc_opts *opts, struct proc_result *res,
		   struct ops_error *err);
/* Convenience: proc_run + fail unless exit status 0. The message names the
 * program and quotes the last line of its stderr:
 * "'pg_dump' failed with exit status 1: pg_dump: error: ..." */
int proc_run_checked(const char *const *argv, const struct proc_opts *opts,
		     struct proc_result *res, struct ops_error *err);
int proc_run_shell_checked(const char *cmdline, const struct proc_opts *opts,
			   struct proc_result *res, struct ops_error *err);

#endif
