/* Child processes without a shell: fork/exec of an argv vector, output read
 * through pipes with poll(2), a deadline enforced with SIGTERM then SIGKILL,
 * and every child waited for. */
#include "system/proc.h"
#include "base/exitcode.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_CAPTURE_MAX ((size_t)1024 * 1024)
#define KILL_GRACE_MS 2000
#define REAP_TICK_MS 50          /* only when pidfd_open(2) is unavailable */
#define STDERR_TAIL_KEEP 4096    /* enough for the last line of a failure */
#define READ_CHUNK 16384
#define DRAIN_MAX_READS 64       /* a grandchild may keep a pipe open and busy */

/* What the child writes to the report pipe when it cannot exec. */
struct child_report {
	int stage;
	int err;
};
enum { STAGE_SETUP, STAGE_CHDIR, STAGE_EXEC };

struct capture {
	int fd;              /* our read end, -1 once at EOF or not piped */
	struct strbuf *sb;   /* NULL: read and drop */
	size_t cap;
	size_t kept;
	struct strbuf *tail; /* the last bytes whatever the cap, or NULL */
};

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Keeps our descriptors off 0-2 so the child's dup2 calls cannot clobber one
 * another when we were started with a closed stdin/stdout/stderr. */
static int fd_above_stdio(int fd)
{
	int nfd;
	if (fd < 0 || fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

static int make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0) {
		p[0] = p[1] = -1;
		return -1;
	}
	p[0] = fd_above_stdio(p[0]);
	p[1] = fd_above_stdio(p[1]);
	if (p[0] < 0 || p[1] < 0) {
		close_fd(&p[0]);
		close_fd(&p[1]);
		return -1;
	}
	return 0;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* A copy of environ with env_add entries replacing or extending it. The
 * strings are borrowed, only the array is ours. */
static char **build_env(const char *const *add)
{
	size_t n, extra, i, j;
	char **env;

	for (n = 0; environ && environ[n]; n++)
		;
	for (extra = 0; add[extra]; extra++)
		;
	env = xcalloc(n + extra + 1, sizeof(*env));
	for (i = 0; i < n; i++)
		env[i] = environ[i];
	for (j = 0; j < extra; j++) {
		const char *eq = strchr(add[j], '=');
		size_t klen, k;
		if (!eq)
			continue;
		klen = (size_t)(eq - add[j]) + 1;
		for (k = 0; k < n; k++)
			if (!strncmp(env[k], add[j], klen))
				break;
		env[k] = (char *)add[j];
		if (k == n)
			n++;
	}
	env[n] = NULL;
	return env;
}

/* Runs in the child between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *const *argv, char *const *envp, const char *cwd,
		       int in_fd, int out_fd, int err_fd, int report_fd)
{
	struct child_report rep = { STAGE_SETUP, 0 };
	struct sigaction sa;
	sigset_t none;
	ssize_t n;

	/* We may ignore SIGPIPE; pg_dump and friends expect the default. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	if (dup2(in_fd, 0) < 0 || (out_fd >= 0 && dup2(out_fd, 1) < 0) ||
	    (err_fd >= 0 && dup2(err_fd, 2) < 0)) {
		rep.err = errno;
	} else if (cwd && chdir(cwd) < 0) {
		rep.stage = STAGE_CHDIR;
		rep.err = errno;
	} else {
		execvpe(argv[0], (char *const *)argv, envp);
		rep.stage = STAGE_EXEC;
		rep.err = errno;
	}
	do {
		n = write(report_fd, &rep, sizeof(rep));
	} while (n < 0 && errno == EINTR);
	_exit(127);
}

static void capture_add(struct capture *c, const char *buf, size_t n)
{
	if (c->sb && c->kept < c->cap) {
		size_t take = n < c->cap - c->kept ? n : c->cap - c->kept;
		strbuf_add(c->sb, buf, take);
		c->kept += take;
	}
	if (c->tail) {
		strbuf_add(c->tail, buf, n);
		if (c->tail->len > 2 * STDERR_TAIL_KEEP) {
			memmove(c->tail->buf, c->tail->buf + c->tail->len - STDERR_TAIL_KEEP,
				STDERR_TAIL_KEEP);
			strbuf_setlen(c->tail, STDERR_TAIL_KEEP);
		}
	}
}

/* One read; closes the descriptor at EOF or on a hard error. */
static ssize_t capture_read(struct capture *c)
{
	char buf[READ_CHUNK];
	ssize_t n;

	do {
		n = read(c->fd, buf, sizeof(buf));
	} while (n < 0 && errno == EINTR);
	if (n > 0)
		capture_add(c, buf, (size_t)n);
	else if (n == 0 || errno != EAGAIN)
		close_fd(&c->fd);
	return n;
}

/* After the child is gone: what it wrote is already in the pipe, so read
 * until it would block rather than wait for an EOF a grandchild may hold. */
static void capture_drain(struct capture *c)
{
	int i;
	for (i = 0; c->fd >= 0 && i < DRAIN_MAX_READS; i++)
		if (capture_read(c) <= 0)
			break;
	close_fd(&c->fd);
}

static void add_duration(struct strbuf *sb, int64_t ms)
{
	if (ms % 1000 == 0)
		strbuf_addf(sb, "%llds", (long long)(ms / 1000));
	else
		strbuf_addf(sb, "%lldms", (long long)ms);
}

static int open_devnull(void)
{
	return fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
}

/* What the child's error pipe says: EOF means exec succeeded (the write
 * end was close-on-exec); a report names the stage that failed. */
static int exec_outcome(int report_fd, const char *name, const char *cwd, struct ops_error *err)
{
	struct child_report rep;
	ssize_t n;

	do {
		n = read(report_fd, &rep, sizeof(rep));
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(rep))
		return 0;
	if (rep.stage == STAGE_CHDIR)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s' in '%s': %s", name, cwd,
				     ops_strerror(rep.err));
	return ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", name, ops_strerror(rep.err));
}

static int run(const char *const *argv, const char *name, const struct proc_opts *opts,
	       struct proc_result *res, struct strbuf *stderr_tail, struct ops_error *err)
{
	static const struct proc_opts no_opts;
	char **env = NULL;
	int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	int report[2] = { -1, -1 };
	int devnull = -1, pidfd = -1, reaped = 0, status = 0, ret = 0;
	int term_sent = 0, kill_sent = 0, got_epipe = 0, sigpipe_was_pending = 0;
	struct capture cap[2];
	const char *in_data;
	size_t in_left, cap_max;
	int64_t start, deadline = 0, kill_at = 0;
	sigset_t pipe_set, old_mask, pending;
	pid_t pid = -1;
	ssize_t n;
	int i;

	if (!opts)
		opts = &no_opts;
	memset(res, 0, sizeof(*res));
	cap_max = opts->capture_max ? opts->capture_max : DEFAULT_CAPTURE_MAX;
	in_data = opts->stdin_data;
	in_left = in_data ? opts->stdin_len : 0;
	cap[0] = (struct capture){ -1, opts->out, cap_max, 0, NULL };
	cap[1] = (struct capture){ -1, opts->errout, cap_max, 0, stderr_tail };

	/* A child that exits without reading its stdin must not kill us. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
	sigpending(&pending);
	sigpipe_was_pending = sigismember(&pending, SIGPIPE);

	if (!argv || !argv[0]) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run an empty command");
		goto out;
	}
	if (opts->env_add)
		env = build_env(opts->env_add);
	if ((devnull = open_devnull()) < 0 || make_pipe(report) < 0 ||
	    (in_data && make_pipe(in_pipe) < 0) ||
	    (!opts->inherit_stdio && opts->out && make_pipe(out_pipe) < 0) ||
	    (!opts->inherit_stdio && (opts->errout || stderr_tail) && make_pipe(err_pipe) < 0)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", name,
				    ops_strerror(errno));
		goto out;
	}

	start = monotonic_ms();
	pid = fork();
	if (pid < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", name,
				    ops_strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_exec(argv, env ? env : environ, opts->cwd,
			   in_pipe[0] >= 0 ? in_pipe[0] : devnull,
			   opts->inherit_stdio ? -1 : out_pipe[1] >= 0 ? out_pipe[1] : devnull,
			   opts->inherit_stdio ? -1 : err_pipe[1] >= 0 ? err_pipe[1] : devnull,
			   report[1]);
	if (opts->on_start)
		opts->on_start(pid, opts->on_start_data);

	close_fd(&in_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&err_pipe[1]);
	close_fd(&report[1]);
	close_fd(&devnull);

	ret = exec_outcome(report[0], name, opts->cwd, err);
	if (ret < 0)
		goto out;

#ifdef SYS_pidfd_open
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	if (in_pipe[1] >= 0) {
		set_nonblock(in_pipe[1]);
		if (!in_left)
			close_fd(&in_pipe[1]);
	}
	cap[0].fd = out_pipe[0];
	cap[1].fd = err_pipe[0];
	out_pipe[0] = err_pipe[0] = -1;
	for (i = 0; i < 2; i++)
		if (cap[i].fd >= 0)
			set_nonblock(cap[i].fd);
	if (opts->timeout_ms > 0)
		deadline = start + opts->timeout_ms;

	for (;;) {
		struct pollfd pfd[4];
		int nfds = 0, wait_ms = -1, in_idx = -1, cap_idx[2] = { -1, -1 };
		int64_t now;
		pid_t w;

		do {
			w = waitpid(pid, &status, WNOHANG);
		} while (w < 0 && errno == EINTR);
		if (w == pid) {
			reaped = 1;
			break;
		}
		if (w < 0) {
			/* SIGCHLD set to SIG_IGN: the kernel reaped it for us. */
			reaped = 1;
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot wait for '%s': %s", name,
					    ops_strerror(errno));
			goto out;
		}

		now = monotonic_ms();
		if (deadline && !term_sent && now >= deadline) {
			kill(pid, SIGTERM);
			term_sent = 1;
			kill_at = now + KILL_GRACE_MS;
		}
		if (term_sent && !kill_sent && now >= kill_at) {
			kill(pid, SIGKILL);
			kill_sent = 1;
		}
		if (deadline && !term_sent)
			wait_ms = (int)(deadline - now < 60000 ? deadline - now : 60000);
		else if (term_sent && !kill_sent)
			wait_ms = (int)(kill_at - now);
		if (pidfd < 0 && (wait_ms < 0 || wait_ms > REAP_TICK_MS))
			wait_ms = REAP_TICK_MS;

		if (in_pipe[1] >= 0) {
			in_idx = nfds;
			pfd[nfds++] = (struct pollfd){ in_pipe[1], POLLOUT, 0 };
		}
		for (i = 0; i < 2; i++) {
			if (cap[i].fd < 0)
				continue;
			cap_idx[i] = nfds;
			pfd[nfds++] = (struct pollfd){ cap[i].fd, POLLIN, 0 };
		}
		if (pidfd >= 0)
			pfd[nfds++] = (struct pollfd){ pidfd, POLLIN, 0 };

		if (poll(pfd, (nfds_t)nfds, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", name,
					    ops_strerror(errno));
			goto out;
		}
		if (in_idx >= 0 && pfd[in_idx].revents) {
			size_t chunk = in_left < 65536 ? in_left : 65536;
			do {
				n = write(in_pipe[1], in_data, chunk);
			} while (n < 0 && errno == EINTR);
			if (n > 0) {
				in_data += n;
				in_left -= (size_t)n;
			} else if (n < 0 && errno != EAGAIN) {
				got_epipe = errno == EPIPE;
				in_left = 0; /* the child stopped reading: not our failure */
			}
			if (!in_left)
				close_fd(&in_pipe[1]);
		}
		for (i = 0; i < 2; i++)
			if (cap_idx[i] >= 0 && pfd[cap_idx[i]].revents)
				capture_read(&cap[i]);
	}

	for (i = 0; i < 2; i++)
		capture_drain(&cap[i]);
	res->elapsed_ms = monotonic_ms() - start;
	res->exited = WIFEXITED(status);
	res->status = res->exited ? WEXITSTATUS(status) : WTERMSIG(status);
	res->timed_out = term_sent;
	if (term_sent) {
		struct strbuf d = STRBUF_INIT;
		add_duration(&d, opts->timeout_ms);
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "'%s' did not finish within %s",
				    name, d.buf);
		strbuf_release(&d);
	}
out:
	if (pid > 0 && !reaped) {
		/* Only on our own failures: never leave a zombie or a runaway. */
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	for (i = 0; i < 2; i++)
		close_fd(&cap[i].fd);
	close_fd(&in_pipe[0]);
	close_fd(&in_pipe[1]);
	close_fd(&out_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&err_pipe[0]);
	close_fd(&err_pipe[1]);
	close_fd(&report[0]);
	close_fd(&report[1]);
	close_fd(&devnull);
	close_fd(&pidfd);
	if (got_epipe && !sigpipe_was_pending) {
		struct timespec zero = { 0, 0 };
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	free(env);
	return ret;
}

int proc_run(const char *const *argv, const struct proc_opts *opts, struct proc_result *res,
	     struct ops_error *err)
{
	struct proc_result local;
	return run(argv, argv && argv[0] ? argv[0] : "", opts, res ? res : &local, NULL, err);
}

/* How a shell command is named in messages: the whole line when it is
 * short, else its first word. */
static char *shell_name(const char *cmdline)
{
	size_t len;
	while (*cmdline == ' ' || *cmdline == '\t')
		cmdline++;
	if (strlen(cmdline) < 40)
		return xstrdup(cmdline);
	len = strcspn(cmdline, " \t\n");
	return xstrndup(cmdline, len);
}

/* The line of stderr that says what went wrong: the last one with "error:"
 * (any case) or "FATAL:" (pg_dump and psql follow it with "detail:",
 * "LINE"/"HINT:" lines that make no sense alone), else the last line. The
 * parallel pg_dump/pg_restore leader's "a worker process died unexpectedly"
 * only when no worker said why. Points into tail (NUL-terminates that line). */
static const char *last_error_line(struct strbuf *tail)
{
	char *line = NULL, *p = tail->buf;
	while (p && *p) {
		char *nl = strchr(p, '\n');
		const char *hit = strcasestr(p, "error:");
		if (!hit)
			hit = strstr(p, "FATAL:");
		if (hit && (!nl || hit < nl)) {
			size_t len = nl ? (size_t)(nl - p) : strlen(p);
			static const char consequence[] = "a worker process died unexpectedly";
			if (!line || !memmem(p, len, consequence, sizeof(consequence) - 1))
				line = p;
		}
		p = nl ? nl + 1 : NULL;
	}
	if (!line) {
		line = memrchr(tail->buf, '\n', tail->len);
		return line ? line + 1 : tail->buf;
	}
	line[strcspn(line, "\n")] = '\0';
	return line;
}

/* 0 for exit status 0, else the error naming the program and quoting the
 * line of its stderr that says why (tail, which is trimmed). */
static int report_status(const char *name, const struct proc_result *res, struct strbuf *tail,
			 struct ops_error *err)
{
	const char *line;

	if (res->exited && res->status == 0)
		return 0;
	if (!res->exited)
		return ops_error_set(err, OPS_EXIT_FAILED, "'%s' was killed by signal %d (%s)", name,
				     res->status, strsignal(res->status));
	strbuf_rtrim(tail);
	line = last_error_line(tail);
	if (*line)
		return ops_error_set(err, OPS_EXIT_FAILED, "'%s' failed with exit status %d: %s",
				     name, res->status, line);
	return ops_error_set(err, OPS_EXIT_FAILED, "'%s' failed with exit status %d", name,
			     res->status);
}

static int run_checked(const char *const *argv, const char *name, const struct proc_opts *opts,
		       struct proc_result *res, struct ops_error *err)
{
	struct strbuf tail = STRBUF_INIT;
	struct proc_result local;
	int ret;

	if (!res)
		res = &local;
	ret = run(argv, name, opts, res, opts && opts->inherit_stdio ? NULL : &tail, err);
	if (!ret)
		ret = report_status(name, res, &tail, err);
	strbuf_release(&tail);
	return ret;
}

int proc_run_shell(const char *cmdline, const struct proc_opts *opts, struct proc_result *res,
		   struct ops_error *err)
{
	const char *argv[] = { "/bin/sh", "-c", cmdline, NULL };
	struct proc_result local;
	char *name = shell_name(cmdline);
	int ret = run(argv, name, opts, res ? res : &local, NULL, err);
	free(name);
	return ret;
}

int proc_run_checked(const char *const *argv, const struct proc_opts *opts,
		     struct proc_result *res, struct ops_error *err)
{
	return run_checked(argv, argv && argv[0] ? argv[0] : "", opts, res, err);
}

int proc_run_shell_checked(const char *cmdline, const struct proc_opts *opts,
			   struct proc_result *res, struct ops_error *err)
{
	const char *argv[] = { "/bin/sh", "-c", cmdline, NULL };
	char *name = shell_name(cmdline);
	int ret = run_checked(argv, name, opts, res, err);
	free(name);
	return ret;
}

unsigned long long proc_start_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long ticks = 0;
	const char *p;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* after "pid (comm) ": state is field 3, starttime field 22 */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	if (p[1] == ' ' && p[2] == 'Z')
		return 0; /* a zombie has finished */
	for (field = 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field == 22)
		ticks = strtoull(p, NULL, 10);
	return ticks;
}

int proc_wait_gone(pid_t pid, unsigned long long start_ticks, int64_t timeout_ms)
{
	int64_t deadline = timeout_ms >= 0 ? monotonic_ms() + timeout_ms : 0;
	struct timespec ts = { 0, 50 * 1000000L };

	if (pid <= 0 || !start_ticks)
		return 1;
	while (proc_start_ticks(pid) == start_ticks) {
		if (timeout_ms >= 0 && monotonic_ms() >= deadline)
			return 0;
		nanosleep(&ts, NULL);
	}
	return 1;
}

/* Streaming children (proc_start/proc_finish/proc_kill). */

/* A new deadline sent to the supervisor over its control pipe. */
struct stream_deadline {
	int64_t at;      /* absolute, monotonic_ms(); 0 = none */
	int64_t label_ms; /* what the timeout message says */
	int after_stream; /* the proc_finish deadline rather than opts->timeout_ms */
	int quiet;        /* proc_kill: not a timeout to report */
};

struct proc_stream {
	char *name;
	pid_t pid;
	int pidfd;
	int ctl[2];            /* deadlines: we write ctl[1], the supervisor reads ctl[0] */
	pthread_t thread;
	struct capture err;    /* stderr; owned by the supervisor until joined */
	struct strbuf tail;
	int64_t start_ms;
	int sigpipe_guarded;
	/* written by the supervisor, read after the join */
	struct stream_deadline fired; /* the deadline that made it send SIGTERM */
	int term_sent;
	int wait_errno;        /* waitid failed (SIGCHLD ignored: already reaped) */
};

/* SIGPIPE stays blocked in a thread while any stream with a stdin pipe that it
 * started is open; the count makes overlapping streams nest. */
static _Thread_local unsigned sigpipe_depth;
static _Thread_local int sigpipe_unblock_at_end;
static _Thread_local int sigpipe_pending_before;

static void sigpipe_guard_enter(void)
{
	sigset_t set, old, pending;

	if (sigpipe_depth++)
		return;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sigpipe_unblock_at_end = !sigismember(&old, SIGPIPE);
	sigpending(&pending);
	sigpipe_pending_before = sigismember(&pending, SIGPIPE);
}

static void sigpipe_guard_leave(void)
{
	struct timespec zero = { 0, 0 };
	sigset_t set, pending;

	if (!sigpipe_depth || --sigpipe_depth)
		return;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigpending(&pending);
	if (!sigpipe_pending_before && sigismember(&pending, SIGPIPE))
		sigtimedwait(&set, NULL, &zero);
	if (sigpipe_unblock_at_end)
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* 1 once pid has exited (left a zombie for us to reap: WNOWAIT), 0 while it
 * runs, -1 with *wait_errno set when it cannot be waited for. */
static int pid_exited(pid_t pid, int *wait_errno)
{
	siginfo_t si;

	for (;;) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
			return si.si_pid == pid;
		if (errno != EINTR) {
			*wait_errno = errno;
			return -1;
		}
	}
}

static int stream_exited(struct proc_stream *s)
{
	return pid_exited(s->pid, &s->wait_errno);
}

/* The supervisor thread: drains stderr, applies deadlines, and returns once
 * the child has exited. It never reaps, so the pid cannot be reused while it
 * may still send a signal. */
static void *stream_supervise(void *arg)
{
	struct proc_stream *s = arg;
	struct stream_deadline dl = { 0, 0, 0, 0 }, msg;
	int ctl_fd = s->ctl[0], kill_sent = 0;
	int64_t kill_at = 0;
	ssize_t n;

	for (;;) {
		struct pollfd pfd[3];
		int nfds = 0, wait_ms = -1, err_idx = -1, ctl_idx = -1;
		int64_t now;

		if (stream_exited(s))
			break;
		now = monotonic_ms();
		if (dl.at && !s->term_sent && now >= dl.at) {
			kill(s->pid, SIGTERM);
			s->term_sent = 1;
			s->fired = dl;
			kill_at = now + KILL_GRACE_MS;
		}
		if (s->term_sent && !kill_sent && now >= kill_at) {
			kill(s->pid, SIGKILL);
			kill_sent = 1;
		}
		if (dl.at && !s->term_sent)
			wait_ms = (int)(dl.at - now < 60000 ? dl.at - now : 60000);
		else if (s->term_sent && !kill_sent)
			wait_ms = (int)(kill_at - now);
		if (s->pidfd < 0 && (wait_ms < 0 || wait_ms > REAP_TICK_MS))
			wait_ms = REAP_TICK_MS;

		if (s->err.fd >= 0) {
			err_idx = nfds;
			pfd[nfds++] = (struct pollfd){ s->err.fd, POLLIN, 0 };
		}
		if (ctl_fd >= 0) {
			ctl_idx = nfds;
			pfd[nfds++] = (struct pollfd){ ctl_fd, POLLIN, 0 };
		}
		if (s->pidfd >= 0)
			pfd[nfds++] = (struct pollfd){ s->pidfd, POLLIN, 0 };
		if (poll(pfd, (nfds_t)nfds, wait_ms) < 0)
			continue; /* EINTR; nothing else is expected with valid fds */
		if (ctl_idx >= 0 && pfd[ctl_idx].revents) {
			do {
				n = read(ctl_fd, &msg, sizeof(msg));
			} while (n < 0 && errno == EINTR);
			if (n == (ssize_t)sizeof(msg)) {
				/* The earlier of two deadlines wins; one already fired stays. */
				if (!s->term_sent && (!dl.at || msg.at < dl.at))
					dl = msg;
			} else {
				ctl_fd = -1;
			}
		}
		if (err_idx >= 0 && pfd[err_idx].revents)
			capture_read(&s->err);
	}
	capture_drain(&s->err);
	return NULL;
}

static void stream_send_deadline(struct proc_stream *s, const struct stream_deadline *dl)
{
	ssize_t n;
	do {
		n = write(s->ctl[1], dl, sizeof(*dl));
	} while (n < 0 && errno == EINTR);
}

/* Closes our ends, sends the last deadline, joins the supervisor and reaps
 * the child; fills res. The stream itself is freed by stream_free. */
static void stream_stop(struct proc_child *c, const struct stream_deadline *dl,
			struct proc_result *res)
{
	struct proc_stream *s = c->priv;
	int status = 0;

	close_fd(&c->in_fd);
	close_fd(&c->out_fd);
	stream_send_deadline(s, dl);
	pthread_join(s->thread, NULL);
	while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
		;
	memset(res, 0, sizeof(*res));
	res->elapsed_ms = monotonic_ms() - s->start_ms;
	res->exited = WIFEXITED(status);
	res->status = res->exited ? WEXITSTATUS(status) : WTERMSIG(status);
	res->timed_out = s->term_sent && !s->fired.quiet;
}

static void stream_free(struct proc_stream *s)
{
	if (!s)
		return;
	close_fd(&s->err.fd);
	close_fd(&s->ctl[0]);
	close_fd(&s->ctl[1]);
	close_fd(&s->pidfd);
	if (s->sigpipe_guarded)
		sigpipe_guard_leave();
	strbuf_release(&s->tail);
	free(s->name);
	free(s);
}

int proc_start(const char *const *argv, const struct proc_stream_opts *opts,
	       struct proc_child *c, struct ops_error *err)
{
	static const struct proc_stream_opts no_opts;
	struct proc_stream *s = NULL;
	char **env = NULL;
	int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	int report[2] = { -1, -1 };
	int devnull = -1, ret = 0, rc;
	sigset_t all, old_mask;

	c->in_fd = c->out_fd = -1;
	c->pid = -1;
	c->priv = NULL;
	if (!opts)
		opts = &no_opts;
	if (!argv || !argv[0])
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot run an empty command");

	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(argv[0]);
	s->pid = -1;
	s->pidfd = -1;
	s->ctl[0] = s->ctl[1] = -1;
	strbuf_init(&s->tail, 0);
	s->err = (struct capture){ -1, opts->errout,
				   opts->capture_max ? opts->capture_max : DEFAULT_CAPTURE_MAX, 0,
				   &s->tail };
	if (opts->pipes & PROC_PIPE_STDIN) {
		sigpipe_guard_enter();
		s->sigpipe_guarded = 1;
	}
	if (opts->env_add)
		env = build_env(opts->env_add);
	if ((devnull = open_devnull()) < 0 || make_pipe(report) < 0 || make_pipe(err_pipe) < 0 ||
	    make_pipe(s->ctl) < 0 ||
	    ((opts->pipes & PROC_PIPE_STDIN) && make_pipe(in_pipe) < 0) ||
	    ((opts->pipes & PROC_PIPE_STDOUT) && make_pipe(out_pipe) < 0)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", s->name,
				    ops_strerror(errno));
		goto out;
	}

	s->start_ms = monotonic_ms();
	s->pid = fork();
	if (s->pid < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", s->name,
				    ops_strerror(errno));
		goto out;
	}
	if (s->pid == 0)
		child_exec(argv, env ? env : environ, opts->cwd,
			   in_pipe[0] >= 0 ? in_pipe[0] : devnull,
			   out_pipe[1] >= 0 ? out_pipe[1] : devnull, err_pipe[1], report[1]);
	close_fd(&in_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&err_pipe[1]);
	close_fd(&report[1]);
	close_fd(&devnull);

	ret = exec_outcome(report[0], s->name, opts->cwd, err);
	if (ret < 0)
		goto out;

#ifdef SYS_pidfd_open
	s->pidfd = (int)syscall(SYS_pidfd_open, s->pid, 0);
#endif
	s->err.fd = err_pipe[0];
	err_pipe[0] = -1;
	set_nonblock(s->err.fd);

	/* Signals go to the caller's threads, never to the supervisor. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old_mask);
	rc = pthread_create(&s->thread, NULL, stream_supervise, s);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (rc) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot run '%s': %s", s->name,
				    ops_strerror(rc));
		goto out;
	}
	if (opts->timeout_ms > 0) {
		struct stream_deadline dl = { s->start_ms + opts->timeout_ms, opts->timeout_ms, 0, 0 };
		stream_send_deadline(s, &dl);
	}

	c->in_fd = in_pipe[1];
	c->out_fd = out_pipe[0];
	in_pipe[1] = out_pipe[0] = -1;
	c->pid = s->pid;
	c->priv = s;
	s = NULL;
out:
	if (s && s->pid > 0) {
		kill(s->pid, SIGKILL);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	stream_free(s);
	close_fd(&in_pipe[0]);
	close_fd(&in_pipe[1]);
	close_fd(&out_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&err_pipe[0]);
	close_fd(&err_pipe[1]);
	close_fd(&report[0]);
	close_fd(&report[1]);
	close_fd(&devnull);
	free(env);
	return ret;
}

int proc_exited(const struct proc_child *c)
{
	int ignored; /* proc_finish will say why it cannot be waited for */

	return !c->priv || pid_exited(c->priv->pid, &ignored) != 0;
}

int proc_wait_exit(const struct proc_child *c, int wait_ms)
{
	struct pollfd pfd;

	if (proc_exited(c))
		return 1;
	if (c->priv->pidfd >= 0) {
		pfd = (struct pollfd){ c->priv->pidfd, POLLIN, 0 };
		poll(&pfd, 1, wait_ms); /* EINTR: looked at again below */
	} else {
		struct timespec ts = { 0, (long)(wait_ms < REAP_TICK_MS ? wait_ms : REAP_TICK_MS) * 1000000L };
		nanosleep(&ts, NULL);
	}
	return proc_exited(c);
}

int proc_finish(struct proc_child *c, int64_t timeout_ms, struct proc_result *res,
		struct ops_error *err)
{
	struct stream_deadline dl = { 0, timeout_ms, 1, 0 };
	struct proc_result local;
	struct proc_stream *s = c->priv;
	int ret = 0;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (!s)
		return 0;
	if (timeout_ms > 0)
		dl.at = monotonic_ms() + timeout_ms;
	stream_stop(c, &dl, res);

	if (s->wait_errno) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot wait for '%s': %s", s->name,
				    ops_strerror(s->wait_errno));
	} else if (res->timed_out) {
		struct strbuf d = STRBUF_INIT;
		add_duration(&d, s->fired.label_ms);
		ret = ops_error_set(err, OPS_EXIT_UNREACHABLE, "'%s' did not finish within %s%s",
				    s->name, d.buf,
				    s->fired.after_stream ? " after the stream ended" : "");
		strbuf_release(&d);
	} else {
		ret = report_status(s->name, res, &s->tail, err);
	}
	stream_free(s);
	c->priv = NULL;
	c->pid = -1;
	return ret;
}

void proc_kill(struct proc_child *c)
{
	struct stream_deadline dl = { 0, 0, 0, 1 };
	struct proc_result res;

	if (!c->priv)
		return;
	dl.at = monotonic_ms();
	stream_stop(c, &dl, &res);
	stream_free(c->priv);
	c->priv = NULL;
	c->pid = -1;
}
