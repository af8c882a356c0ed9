/* pg_dump's directory format (-Fd) with our compression, so that a backup is
 * dumped by several pg_dump workers, compressed on every core, and restored
 * by a parallel pg_restore with nothing decompressed to disk first.
 *
 * Backup: pg_dump -Fd -Z0 writes one NNNN.dat per table into a directory. A
 * follower watches the directory (inotify), compresses each data file while
 * pg_dump is still writing it into NNNN.dat.zst (or .gz), returns the disk
 * space of what it has read (hole punching) and removes the original when
 * pg_dump has closed it. toc.dat and blobs.toc stay as they are. The result
 * is what pg_restore reads after `zstd -d` of every .zst file (pg_restore
 * reads .gz data files itself).
 *
 * Restore: pg_restore (since 15.20) reads data files only when they are
 * regular files, so the table data is not given to it: backup.c streams
 * each table's data, decompressed as it is read, into COPY FROM STDIN;
 * dd_unpack writes what pg_restore must read itself (toc.dat, large
 * objects) into a work directory. */
#ifndef OPSCTL_DUMPDIR_H
#define OPSCTL_DUMPDIR_H

#include <stddef.h>
#include <stdint.h>
#include "adapters/zstream.h"
#include "base/error.h"

struct dd_file {
	char *name;        /* relative to the directory: "toc.dat", "3021.dat.zst" */
	uint64_t size;
	char sha256[65];
};
void dd_files_release(struct dd_file *files, size_t n);

struct dd_follow;

/* Starts following dir (which must exist and be empty: pg_dump fills it).
 * workers threads compress, each file with zstd's own threads zthreads
 * (as zs_writer_open). codec ZS_NONE leaves the files as pg_dump wrote them. */
int dd_follow_start(struct dd_follow **out, const char *dir, enum zs_codec codec, int level,
		    int workers, int zthreads, struct ops_error *err);
/* Takes in what happened in the directory, waiting at most wait_ms for it.
 * Fails with the first compression error (the caller stops pg_dump). */
int dd_follow_poll(struct dd_follow *f, int wait_ms, struct ops_error *err);
/* Plain bytes compressed so far (progress). */
uint64_t dd_follow_bytes(const struct dd_follow *f);
/* Once pg_dump has exited successfully: compresses what is left, syncs every
 * file and the directory, and lists the directory's files, sorted by name,
 * with their sizes and SHA-256 (*files malloc'd; dd_files_release).
 * *plain_bytes is the size of the dump before compression. Frees f. */
int dd_follow_finish(struct dd_follow *f, struct dd_file **files, size_t *nfiles,
		     uint64_t *plain_bytes, struct ops_error *err);
/* Stops the workers and frees f, leaving whatever is in the directory
 * (the caller removes it). NULL is a no-op. */
void dd_follow_abort(struct dd_follow *f);

/* Writes the directory pg_restore reads into dst_dir (which exists): every
 * .zst file decompressed (NNNN.dat.zst -> NNNN.dat), everything else copied,
 * by workers threads, the biggest files first. The SHA-256 of every file
 * read is checked against files[] (OPS_EXIT_INTEGRITY: "changed since it was
 * verified"); bad data is OPS_EXIT_INTEGRITY too. On
 * failure dst_dir holds what was written: the caller removes it. */
int dd_unpack(const char *src_dir, const struct dd_file *files, size_t nfiles, const char *dst_dir,
	      int workers, struct ops_error *err);

/* 1 if name is a data file pg_dump -Fd writes ("3021.dat", "blob_16400.dat"),
 * which the follower compresses; toc.dat and blobs.toc are not. */
int dd_is_data_name(const char *name);

#endif
