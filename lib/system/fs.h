/* Files that must survive a crash: atomic replace (temp, fsync, rename,
 * directory fsync), directories, and flock(2) locks with a holder note. */
#ifndef OPSCTL_FS_H
#define OPSCTL_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "base/error.h"
#include "base/strbuf.h"

/* Overwrites a regular file's bytes with zeros and fsyncs it (best effort:
 * for files that held secrets, before or after their name is removed). */
void fs_zero_fd(int fd);

/* Writes data to path atomically: a temporary file in the same directory,
 * fsync, rename over path, fsync of the directory. mode is used for a new
 * file; when path exists its mode and owner are kept (mode < 0: keep/0644). */
int fs_write_atomic(const char *path, const void *data, size_t len, int mode,
		    struct ops_error *err);
/* fs_write_atomic without the fsyncs: a reader sees the old or the new
 * bytes, also after the process is killed, but a power cut may lose the
 * change. For state that is only a shortcut (an upload's resume point),
 * written too often to wait for the disk each time. */
int fs_write_replace(const char *path, const void *data, size_t len, int mode, struct ops_error *err);
/* Removes the temporary files (PATH.tmp-XXXXXX) that writes of path killed
 * before their rename left beside it; wipe: overwritten with zeros first
 * (they may hold secrets). Call it holding the lock that guards path's
 * writers. Returns how many were removed. */
int fs_remove_stale_tmp(const char *path, int wipe);
/* write(2) until every byte is written (EINTR retried): 0, or -1 with errno. */
int fs_write_all(int fd, const void *data, size_t len);
/* Appends one line (adds '\n' if missing) with O_APPEND and fsyncs it,
 * under a flock of the file; a torn last line (a writer killed mid-write)
 * is cut off first. */
int fs_append_line(const char *path, const char *line, int mode, struct ops_error *err);
/* Reads a whole file (up to max bytes; 0 = no limit) into out. */
int fs_read_file(const char *path, struct strbuf *out, size_t max, struct ops_error *err);
/* mkdir -p with mode for the directories it creates. */
int fs_mkdir_p(const char *path, int mode, struct ops_error *err);
int fs_fsync_dir(const char *dir, struct ops_error *err);
int fs_exists(const char *path);
/* rm -rf: removes path and everything below it without following links.
 * A missing path is success. */
int fs_remove_tree(const char *path, struct ops_error *err);

struct fs_lock {
	int fd;      /* -1 when not held */
	char *path;
};
#define FS_LOCK_INIT { -1, NULL }

/* Takes an exclusive flock on DIR/locks/NAME.lock (creating the directories).
 * wait_ms: 0 = try once, >0 = poll until then, <0 = wait forever.
 * When another process holds it: OPS_EXIT_LOCKED with the holder's note
 * ("lock 'backup' is held by pid 123 (opsctl backup) on host since ...") and a
 * hint about --lock-wait. On success writes a JSON note (pid, command, user,
 * host, since) into the file. The kernel drops the lock if we die. */
int fs_lock_acquire(struct fs_lock *lock, const char *state_dir, const char *name,
		    const char *command, int64_t wait_ms, struct ops_error *err);
void fs_lock_release(struct fs_lock *lock);

#endif
