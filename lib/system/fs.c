/* Crash-safe files: atomic replace, fsynced appends, mkdir -p and flock(2)
 * locks that carry a JSON note naming their holder. */
#include "system/fs.h"
#include "base/exitcode.h"
#include "system/clock.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_POLL_MS 100
#define LOCK_NOTE_MAX 4096

/* The directory part of path ("." when there is none), for the directory fsync. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int fs_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int fs_fsync_dir(const char *dir, struct ops_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot open directory '%s': %s",
				     dir, ops_strerror(errno));
	/* Some filesystems cannot sync a directory; their renames are as
	 * durable as they get, so that is not an error. */
	if (fsync(fd) < 0 && errno != EINVAL && errno != ENOTSUP)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot sync directory '%s': %s",
				    dir, ops_strerror(errno));
	close(fd);
	return ret;
}

static int write_replace(const char *path, const void *data, size_t len, int mode, int durable,
			 struct ops_error *err)
{
	struct strbuf tmp = STRBUF_INIT;
	char *dir = dir_of(path);
	struct stat st;
	int have_old, tmp_made = 0, fd = -1, ret = 0;

	have_old = stat(path, &st) == 0;
	if (have_old && !S_ISREG(st.st_mode)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': not a regular file", path);
		goto out;
	}
	strbuf_addf(&tmp, "%s.tmp-XXXXXX", path);
	fd = mkostemp(tmp.buf, O_CLOEXEC);
	if (fd < 0)
		goto fail;
	tmp_made = 1;
	if (have_old) {
		if (fchmod(fd, st.st_mode & 07777) < 0)
			goto fail;
		/* An env file owned by the app user must stay readable by it after
		 * root edits it; refuse rather than silently change the owner. */
		if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
		    fchown(fd, st.st_uid, st.st_gid) < 0)
			goto fail;
	} else if (fchmod(fd, mode < 0 ? 0644 : (mode_t)mode) < 0) {
		goto fail;
	}
	if (fs_write_all(fd, data, len) < 0 || (durable && fsync(fd) < 0))
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp.buf, path) < 0)
		goto fail;
	tmp_made = 0;
	ret = durable ? fs_fsync_dir(dir, err) : 0;
	goto out;

fail:
	ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", path, ops_strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	if (tmp_made)
		unlink(tmp.buf);
	strbuf_release(&tmp);
	free(dir);
	return ret;
}

int fs_write_atomic(const char *path, const void *data, size_t len, int mode, struct ops_error *err)
{
	return write_replace(path, data, len, mode, 1, err);
}

int fs_write_replace(const char *path, const void *data, size_t len, int mode, struct ops_error *err)
{
	return write_replace(path, data, len, mode, 0, err);
}

void fs_zero_fd(int fd)
{
	struct stat st;
	char zeros[4096];
	off_t left;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0)
		return;
	memset(zeros, 0, sizeof(zeros));
	for (left = st.st_size; left > 0;) {
		size_t n = left > (off_t)sizeof(zeros) ? sizeof(zeros) : (size_t)left;
		if (fs_write_all(fd, zeros, n) < 0)
			break;
		left -= (off_t)n;
	}
	fsync(fd);
}

int fs_remove_stale_tmp(const char *path, int wipe)
{
	char *dir = dir_of(path);
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t blen = strlen(base);
	DIR *d = opendir(dir);
	struct dirent *de;
	int removed = 0;

	if (!d) {
		free(dir);
		return 0;
	}
	while ((de = readdir(d))) {
		/* exactly what write_replace's mkostemp makes: BASE.tmp-XXXXXX */
		if (strlen(de->d_name) != blen + 11 || strncmp(de->d_name, base, blen) ||
		    strncmp(de->d_name + blen, ".tmp-", 5))
			continue;
		char *tmp = xstrfmt("%s/%s", dir, de->d_name);
		if (wipe) {
			int fd = open(tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
			if (fd >= 0) {
				fs_zero_fd(fd);
				close(fd);
			}
		}
		if (unlink(tmp) == 0)
			removed++;
		free(tmp);
	}
	closedir(d);
	free(dir);
	return removed;
}

/* A write(2) of a line cut short by SIGKILL (the kernel stops a write
 * between pages when a fatal signal is pending) leaves a line without its
 * '\n' at the end of the file: it is cut off, back to the last whole line,
 * so that the next line does not continue it. */
static void drop_torn_tail(int fd)
{
	struct stat st;
	char buf[4096];
	off_t off;

	if (fstat(fd, &st) < 0 || st.st_size <= 0)
		return;
	if (pread(fd, buf, 1, st.st_size - 1) != 1 || buf[0] == '\n')
		return;
	for (off = st.st_size; off > 0;) {
		size_t chunk = off > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)off;
		ssize_t got = pread(fd, buf, chunk, off - (off_t)chunk);
		if (got != (ssize_t)chunk)
			return;
		for (size_t i = chunk; i-- > 0;)
			if (buf[i] == '\n') {
				if (ftruncate(fd, off - (off_t)chunk + (off_t)i + 1) < 0) {
					/* the next line then follows the fragment: no worse */
				}
				return;
			}
		off -= (off_t)chunk;
	}
	if (ftruncate(fd, 0) < 0) {
		/* as above */
	}
}

int fs_append_line(const char *path, const char *line, int mode, struct ops_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	int created = !fs_exists(path);
	int fd, ret = 0;
	ssize_t n;

	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, mode < 0 ? 0644 : (mode_t)mode);
	if (fd < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot open '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	/* Appenders take turns (a flock of the file itself, released by close
	 * or by the kernel when the holder dies), so that the one after a
	 * killed one can repair its torn line. */
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	drop_torn_tail(fd);
	strbuf_addstr(&sb, line);
	if (!sb.len || sb.buf[sb.len - 1] != '\n')
		strbuf_addch(&sb, '\n');
	/* One write(2) so concurrent appenders never interleave within a line. */
	do {
		n = write(fd, sb.buf, sb.len);
	} while (n < 0 && errno == EINTR);
	if (n < 0 || (size_t)n != sb.len) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", path,
				    n < 0 ? ops_strerror(errno) : "short write");
		goto out;
	}
	if (fsync(fd) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	if (created) {
		char *dir = dir_of(path);
		ret = fs_fsync_dir(dir, err);
		free(dir);
	}
out:
	if (fd >= 0)
		close(fd);
	strbuf_release(&sb);
	return ret;
}

int fs_read_file(const char *path, struct strbuf *out, size_t max, struct ops_error *err)
{
	size_t start = out->len;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", path, ops_strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t n;
		strbuf_grow(out, 8192);
		n = read(fd, out->buf + out->len, out->alloc - out->len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", path,
					    ops_strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		strbuf_setlen(out, out->len + (size_t)n);
		if (max && out->len - start > max) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "file '%s' is larger than %zu bytes",
					    path, max);
			goto out;
		}
	}
out:
	if (ret)
		strbuf_setlen(out, start);
	if (fd >= 0)
		close(fd);
	return ret;
}

int fs_mkdir_p(const char *path, int mode, struct ops_error *err)
{
	char *p = xstrdup(path);
	char *s = p;
	int ret = 0;

	for (;;) {
		char saved;
		struct stat st;

		while (*s == '/')
			s++;
		while (*s && *s != '/')
			s++;
		saved = *s;
		*s = '\0';
		if (mkdir(p, mode < 0 ? 0755 : (mode_t)mode) < 0) {
			int e = errno;
			if (e != EEXIST || stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
				ret = ops_error_set(err, OPS_EXIT_FAILED,
						    "cannot create directory '%s': %s", p,
						    e == EEXIST ? ops_strerror(ENOTDIR) : ops_strerror(e));
				goto out;
			}
		}
		*s = saved;
		if (!saved)
			break;
		while (*s == '/')
			s++;
		if (!*s)
			break;
	}
out:
	free(p);
	return ret;
}

static void lock_describe_holder(int fd, const char *name, struct ops_error *err)
{
	char buf[LOCK_NOTE_MAX];
	struct strbuf msg = STRBUF_INIT;
	cJSON *note = NULL;
	const cJSON *pid, *cmd, *host, *since;
	ssize_t n;

	do {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		buf[n] = '\0';
		note = cJSON_Parse(buf);
	}
	pid = cJSON_GetObjectItemCaseSensitive(note, "pid");
	cmd = cJSON_GetObjectItemCaseSensitive(note, "command");
	host = cJSON_GetObjectItemCaseSensitive(note, "host");
	since = cJSON_GetObjectItemCaseSensitive(note, "since");

	strbuf_addf(&msg, "lock '%s' is held by ", name);
	/* The holder may be between taking the lock and writing its note. */
	if (cJSON_IsNumber(pid))
		strbuf_addf(&msg, "pid %lld", (long long)pid->valuedouble);
	else
		strbuf_addstr(&msg, "another process");
	if (cJSON_IsString(cmd))
		strbuf_addf(&msg, " (%s)", cmd->valuestring);
	if (cJSON_IsString(host))
		strbuf_addf(&msg, " on %s", host->valuestring);
	if (cJSON_IsString(since))
		strbuf_addf(&msg, " since %s", since->valuestring);

	ops_error_set(err, OPS_EXIT_LOCKED, "%s", msg.buf);
	ops_error_hint(err, "wait for it to finish, or queue behind it with --lock-wait DURATION");
	cJSON_Delete(note);
	strbuf_release(&msg);
}

static void lock_write_note(int fd, const char *command)
{
	char host[HOST_NAME_MAX + 1], user[64];
	char since[32];
	cJSON *note = cJSON_CreateObject();
	char *text = NULL;

	clock_whoami(user, sizeof(user), host, sizeof(host));
	clock_rfc3339(since, time(NULL));
	cJSON_AddNumberToObject(note, "pid", (double)getpid());
	cJSON_AddStringToObject(note, "command", command ? command : "opsctl");
	cJSON_AddStringToObject(note, "user", user);
	cJSON_AddStringToObject(note, "host", host);
	cJSON_AddStringToObject(note, "since", since);
	text = cJSON_PrintUnformatted(note);
	/* The note is advice for people and for the next run's message; the lock
	 * itself is the flock, so a failed write is not worth failing for. */
	if (text && ftruncate(fd, 0) == 0) {
		size_t len = strlen(text);
		if (pwrite(fd, text, len, 0) < 0) {
			/* ignored: see above */
		}
	}
	free(text);
	cJSON_Delete(note);
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fs_lock_acquire(struct fs_lock *lock, const char *state_dir, const char *name,
		    const char *command, int64_t wait_ms, struct ops_error *err)
{
	char *dir = xstrfmt("%s/locks", state_dir);
	char *path = NULL;
	int64_t deadline = wait_ms > 0 ? monotonic_ms() + wait_ms : 0;
	int fd = -1, ret;

	ret = fs_mkdir_p(state_dir, 0700, err);
	if (!ret)
		ret = fs_mkdir_p(dir, 0700, err);
	if (ret)
		goto out;
	path = xstrfmt("%s/%s.lock", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot open lock file '%s': %s", path,
				    ops_strerror(errno));
		goto out;
	}
	for (;;) {
		int64_t left;
		struct timespec ts;

		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot lock '%s': %s", path,
					    ops_strerror(errno));
			goto out;
		}
		left = wait_ms < 0 ? LOCK_POLL_MS : deadline - monotonic_ms();
		if (wait_ms == 0 || left <= 0) {
			lock_describe_holder(fd, name, err);
			ret = -OPS_EXIT_LOCKED;
			goto out;
		}
		if (left > LOCK_POLL_MS)
			left = LOCK_POLL_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000L;
		nanosleep(&ts, NULL);
	}
	lock_write_note(fd, command);
	lock->fd = fd;
	lock->path = path;
	fd = -1;
	path = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	free(dir);
	return ret;
}

void fs_lock_release(struct fs_lock *lock)
{
	/* The file stays: unlinking it would let a waiter lock the old inode
	 * while a newcomer locks a new one. */
	if (lock->fd >= 0) {
		flock(lock->fd, LOCK_UN);
		close(lock->fd);
	}
	lock->fd = -1;
	free(lock->path);
	lock->path = NULL;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int fs_remove_tree(const char *path, struct ops_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path,
							   ops_strerror(errno));
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path, ops_strerror(errno));
	return 0;
}
