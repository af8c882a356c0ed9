/* Tar and zip archives through libarchive, loaded with dlopen on first use so
 * that commands which never touch an archive do not pay for it at start. */
#ifndef OPSCTL_ARCHIVE_H
#define OPSCTL_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

/* Whether libarchive is available: its version ("libarchive 3.6.2"), loading
 * it on the first call; NULL when libarchive.so.13 cannot be loaded. */
const char *arch_version(void);

/* Every arch_ function below loads libarchive on first use (once per process,
 * thread-safe) and fails with OPS_EXIT_FAILED and
 * "cannot load libarchive: <dlerror text>" when it cannot. */

enum arch_compression {
	ARCH_COMPRESS_NONE = 0,
	ARCH_COMPRESS_GZIP, /* .tar.gz, readable by gzip -dc | tar x */
	ARCH_COMPRESS_ZSTD, /* .tar.zst, readable by zstd -dc | tar x */
};

struct arch_progress {
	uint64_t entries; /* entries written so far */
	uint64_t bytes;   /* file content bytes so far (uncompressed) */
	const char *name; /* the entry being written, as stored in the archive */
};
/* Called after each entry and every few MiB inside a large file. A non-zero
 * return cancels the operation (OPS_EXIT_ABORTED, "... cancelled"). */
typedef int (*arch_progress_fn)(const struct arch_progress *p, void *data);

struct arch_stats {
	uint64_t entries;       /* entries in the archive (directories and links included) */
	uint64_t bytes;         /* file content bytes, uncompressed */
	uint64_t archive_bytes; /* arch_create: bytes written to the output (compressed) */
};

struct arch_create_opts {
	enum arch_compression compression;
	int level;                /* compression level; 0 = the filter's default */
	const char *base_dir;     /* relative paths are read from here; NULL = the working directory */
	arch_progress_fn progress; /* may be NULL */
	void *progress_data;
};

/* Writes a POSIX tar archive (pax restricted) of paths[0..n-1] to out_path,
 * which must not exist yet (created 0600, fsynced; removed again on failure).
 *
 * Naming, which arch_extract relies on to put things back: an entry's name is
 * the path as given, made relative and tidy — leading '/' removed, '//' and
 * '.' components dropped, trailing '/' removed — so "/opt/ai-chat/uploads" is
 * stored as "opt/ai-chat/uploads", its contents as "opt/ai-chat/uploads/..."
 * (directories recursively, in strcmp order, each directory before its
 * contents). arch_extract into a fresh directory D puts each one at D/NAME,
 * so a restore moves D/opt/ai-chat/uploads to /opt/ai-chat/uploads. The
 * directories above a given path ("opt", "opt/ai-chat") are not stored.
 * Relative paths are stored as given (read from base_dir when set). A path
 * with a '..' component, or one that names nothing ("/", "."), is refused
 * (OPS_EXIT_USAGE).
 *
 * Kept: regular files, directories and symlinks (stored as symlinks, never
 * followed, also when a given path is one), mode, mtime, numeric uid/gid (no
 * user or group names). A file with several hard links is stored once per
 * name, as a regular file. Sockets, FIFOs and devices are refused, as is the
 * output file itself when it lies inside a given directory (skipped).
 *
 * Errors: "cannot read 'PATH': permission denied" (the file as found on disk),
 * "'PATH' changed size while being archived", "cannot write 'OUT': ...";
 * OPS_EXIT_FAILED. stats may be NULL. */
int arch_create(const char *out_path, const char *const *paths, size_t n,
		const struct arch_create_opts *opts, struct arch_stats *stats,
		struct ops_error *err);
/* The same into an open descriptor (a pipe is fine); fd is neither fsynced
 * nor closed, and what was written before a failure stays written. */
int arch_create_fd(int fd, const char *const *paths, size_t n,
		   const struct arch_create_opts *opts, struct arch_stats *stats,
		   struct ops_error *err);

struct arch_extract_opts {
	uint64_t max_bytes;    /* limit on the total expanded size (holes count); 0 = none */
	uint64_t max_entries;  /* limit on the number of entries; 0 = none */
	int preserve_owner;    /* restore uid/gid; honoured only when running as root */
	arch_progress_fn progress; /* may be NULL */
	void *progress_data;
};

/* Extracts archive_path (tar, tar.gz, tar.zst or zip; detected from the
 * contents, not the name) into target_dir, which must be an existing, empty
 * directory: the caller makes a fresh one. Mode (setuid/setgid bits dropped
 * unless preserve_owner) and mtime are kept; files belong to the caller
 * unless preserve_owner as root. The target directory's own mode is not
 * changed by a "./" entry.
 *
 * Every entry is checked before anything is written for it, and the whole
 * extraction is refused with OPS_EXIT_INTEGRITY and a message naming the
 * archive and the entry when one is unsafe:
 *   refusing 'A': entry '/etc/x' has an absolute path
 *   refusing 'A': entry '../x' has a '..' component
 *   refusing 'A': symlink 'l' points outside the target directory ('/etc')
 *   refusing 'A': hardlink 'h' points outside the target directory ('/etc/passwd')
 *   refusing 'A': hardlink 'h' points to 'x', which is not a file extracted before it
 *   refusing 'A': entry 'dev/null' is a character device  (block device, fifo, socket)
 *   refusing 'A': entry 'l/x' goes through symlink 'l'
 *   refusing 'A': entry 'f/x' is inside 'f', which is not a directory
 *   refusing 'A': entry 'x' appears twice
 *   refusing 'A': entry 'x' expands past the limit of N bytes
 *   refusing 'A': entry 'x' holds more data than its header declares (N bytes)
 *   refusing 'A': more than N entries
 * Symlink targets may only go up ("..") at their start, and not above the
 * target directory, so an archive from arch_create of a tree holding
 * absolute symlinks is refused too. The size limit is checked against each
 * header's declared size before the entry is written, and against the bytes
 * actually decompressed while it is (holes of sparse files included); more
 * bytes than declared is refused, never cut short. A corrupt or unrecognised
 * archive is OPS_EXIT_INTEGRITY too ("cannot read 'A': ...").
 *
 * On any failure everything this call created inside target_dir is removed
 * again (target_dir itself stays, empty). stats may be NULL. */
int arch_extract(const char *archive_path, const char *target_dir,
		 const struct arch_extract_opts *opts, struct arch_stats *stats,
		 struct ops_error *err);

/* The pure check arch_extract makes on each entry's name (and link target):
 * returns 1 when safe, 0 when not. Unsafe: an empty or NULL name, an absolute
 * name, a ".." component in the name; for a hardlink, a link target that is
 * empty, absolute, has a ".." component or names the top directory; for a
 * symlink, a target that is empty or absolute, has a ".." after any other
 * component, or more leading ".." than the directories above the name
 * ("a/b/l" may point to "../../x", not to "../../../x"). A name of only "."
 * components ("./") is safe for a non-link (the target directory itself).
 * is_symlink and is_hardlink both set: unsafe. */
int arch_path_is_safe(const char *name, const char *link_target, int is_symlink,
		      int is_hardlink);

#endif
