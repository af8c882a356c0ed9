/* Child processes without a shell: argv vectors, captured output, a deadline,
 * the exit status checked. Operator-written commands from the config are the
 * one exception and go through proc_run_shell (/bin/sh -c). */
#ifndef OPSCTL_PROC_H
#define OPSCTL_PROC_H

#include <stdint.h>
#include <sys/types.h>
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
	/* called in the parent once the child runs (before waiting for it): a
	 * caller records the pid where the next run finds it if this one is
	 * killed (see proc_wait_gone); may be NULL */
	void (*on_start)(pid_t pid, void *data);
	void *on_start_data;
};

/* The start time of process pid (/proc/PID/stat, clock ticks since boot),
 * 0 when it does not exist: with the pid it names one process, even after
 * the pid is reused. */
unsigned long long proc_start_ticks(pid_t pid);
/* Waits until the process (pid, start ticks) is gone, at most timeout_ms
 * (< 0: no limit), polling. 1 when it is gone (or never was), 0 on timeout. */
int proc_wait_gone(pid_t pid, unsigned long long start_ticks, int64_t timeout_ms);

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

/* Streaming children: pg_dump writing a dump we compress as it comes, psql or
 * pg_restore reading a dump we decompress into it.
 *
 * proc_start forks and execs argv (no shell) with one or both of its stdin and
 * stdout connected to us by blocking pipes; a stream not piped is /dev/null.
 * Its stderr goes to a supervisor thread that proc_start creates: it drains
 * stderr concurrently (so a chatty child never blocks on a full pipe while we
 * block on its stdout), keeps the first capture_max bytes in errout and the
 * last lines for the error message, and enforces the deadlines (SIGTERM, then
 * SIGKILL 2 s later). The thread blocks every signal, so SIGINT and friends
 * still reach (and interrupt) the caller's thread. Nothing of this is shared
 * with the caller until proc_finish/proc_kill has joined the thread.
 *
 * Every successful proc_start must be followed by exactly one proc_finish or
 * proc_kill, which close our pipe ends, reap the child and free everything:
 * no zombie, no descriptor left. Both are no-ops on a zeroed struct, one that
 * proc_start failed on, or one already finished, so a `goto out` path can
 * always call proc_kill. The descriptors are close-on-exec.
 *
 * SIGPIPE: with PROC_PIPE_STDIN, proc_start blocks SIGPIPE in the calling
 * thread until the matching proc_finish/proc_kill (nested streams counted),
 * which discards a SIGPIPE raised meanwhile. A write to in_fd after the child
 * died then fails with EPIPE instead of killing opsctl. Write in_fd from the
 * thread that called proc_start (or block SIGPIPE in yours), and call
 * proc_finish/proc_kill from that thread too. The cause of an EPIPE is the
 * child's: call proc_finish and report its error ("'psql' failed with exit
 * status 3: ...") in preference to the write error.
 *
 * With both pipes the caller must read and write concurrently (a thread or
 * poll) or the child may block on a full stdout while we block on its stdin.
 *
 * Restore:   proc_start(psql, {.pipes = PROC_PIPE_STDIN}) ; write/zs_decompress
 *            into c.in_fd ; proc_finish(&c, 30000, &res, &err)
 * Backup:    proc_start(pg_dump, {.pipes = PROC_PIPE_STDOUT}) ; read/zs_pump
 *            from c.out_fd until EOF ; proc_finish
 * Aborting:  proc_kill(&c) (Ctrl-C seen, the reader or writer failed). */
enum {
	PROC_PIPE_STDIN = 1,  /* c->in_fd is the write end of the child's stdin */
	PROC_PIPE_STDOUT = 2, /* c->out_fd is the read end of the child's stdout */
};

struct proc_stream_opts {
	const char *const *env_add; /* as in proc_opts; may be NULL */
	const char *cwd;            /* NULL = inherit */
	int pipes;                  /* PROC_PIPE_* bits */
	int64_t timeout_ms;         /* whole-run deadline counted from proc_start, 0 = none;
				     * the child is killed even while the caller is blocked on
				     * its pipe (which then sees EOF/EPIPE) */
	struct strbuf *errout;      /* the first capture_max bytes of stderr, or NULL; filled
				     * only once proc_finish/proc_kill returns */
	size_t capture_max;         /* 0 = 1 MiB; the rest is read and dropped */
};

struct proc_child {
	int in_fd;                  /* ours to write (PROC_PIPE_STDIN), else -1 */
	int out_fd;                 /* ours to read (PROC_PIPE_STDOUT), else -1 */
	pid_t pid;                  /* for information; signal it only through proc_kill */
	struct proc_stream *priv;   /* private; NULL when there is nothing to finish */
};

/* Starts argv[0] (found on PATH). Returns 0 with c filled in, or an error
 * ("cannot run 'pg_dump': no such file or directory", "cannot run 'psql' in
 * '/x': ...") with nothing left behind and c->priv NULL. opts may be NULL
 * (no pipes: output discarded, stdin /dev/null). */
int proc_start(const char *const *argv, const struct proc_stream_opts *opts,
	       struct proc_child *c, struct ops_error *err);

/* Closes our ends of the pipes (the child sees EOF on stdin; a child still
 * writing stdout gets SIGPIPE), drains stderr, and waits for the exit: at most
 * timeout_ms from now (0 = no limit beyond opts->timeout_ms), then SIGTERM and
 * SIGKILL. Returns 0 only when the child exited with status 0; otherwise the
 * message of proc_run_checked: "'pg_dump' failed with exit status 1:
 * pg_dump: error: ...", "'psql' was killed by signal 9 (Killed)", or with
 * OPS_EXIT_UNREACHABLE "'pg_dump' did not finish within 30s" (opts deadline)
 * / "'psql' did not finish within 5s after the stream ended" (this one).
 * res may be NULL. Always releases c. */
int proc_finish(struct proc_child *c, int64_t timeout_ms, struct proc_result *res,
		struct ops_error *err);

/* 1 once the child has exited (it stays a zombie until proc_finish reaps
 * it), 0 while it runs: for a caller that waits on something else (files the
 * child writes) and must notice the exit. 1 also for a zeroed struct. */
int proc_exited(const struct proc_child *c);
/* proc_exited after waiting up to wait_ms for the exit, returning as soon as
 * it happens (a pidfd; without one, a look every 50 ms): for a caller that
 * shows progress while it waits and must not add a tick to each step. */
int proc_wait_exit(const struct proc_child *c, int wait_ms);

/* Aborts: closes our ends, SIGTERM at once, SIGKILL 2 s later if still there,
 * reaps it and releases c. Not async-signal-safe: a signal handler sets a
 * flag, the loop that sees it calls this. */
void proc_kill(struct proc_child *c);

#endif
