/* Offsite copies of backup sets on S3-compatible storage ([backup] offsite =
 * NAME, [storage "NAME"]): a set goes up file by file under PREFIX/ID/ with
 * its manifest last, so a remote set without a manifest is not a backup
 * (exactly as a local .tmp-ID directory is not). Uploads resume: each large
 * file's multipart state lives in STATE/offsite/ID/, and a set whose upload
 * failed is uploaded by the next run. Remote sets are listed, verified
 * (sizes; --deep: SHA-256 of every byte), pruned by their own retention,
 * and fetched back into a local directory for the normal verified restore.
 * Built on adapters/s3 and engines/backup. Nothing here prints. */
#ifndef OPSCTL_OFFSITE_H
#define OPSCTL_OFFSITE_H

#include <stdint.h>
#include <time.h>
#include "adapters/s3.h"
#include "base/error.h"
#include "engines/backup.h"

#define OFF_MARK "offsite.json"   /* in a local set: when and where it was uploaded */

struct off_settings {
	struct s3_settings s3;
	char *state_dir;            /* STATE: resume states go to STATE/offsite/ */
	uint64_t rate_limit;        /* bytes/s for all uploads together; 0: none */
	int workers;                /* files uploaded at the same time (default 2) */
	struct bk_policy policy;    /* remote_keep_*: default the local policy */
	int have_policy;            /* a remote_keep_* or a local keep_* is set: else keep all */
	int (*stop)(void *data);    /* may be NULL: non-zero once a signal asks to stop (s3_client's) */
	void *stop_data;
};

void off_settings_init(struct off_settings *o);
void off_settings_release(struct off_settings *o);
/* [storage "name"] (adapters/s3) and the remote_keep_* of [backup], whose
 * defaults are local (the local policy; have_local says whether there is one). */
int off_settings_load(struct off_settings *o, const struct config *cfg, const char *name,
		      const struct envfile *env, const struct bk_policy *local, int have_local,
		      struct ops_error *err);

/* done of total bytes of the set sent so far. */
typedef void off_progress_fn(void *data, uint64_t done, uint64_t total);

struct off_upload_result {
	uint64_t bytes;             /* of the set */
	unsigned files;             /* sent by this call */
	unsigned skipped;           /* already there from an earlier, interrupted run */
	unsigned parts_resumed;     /* multipart parts an earlier run had sent */
	unsigned retries;
	int64_t duration_ms;
	int damaged;                /* failed: a file does not match the manifest (verify) */
};

/* Uploads the local set e: every file of its manifest (those an earlier run
 * of the same set completed are not sent again), then manifest.json, then
 * writes OFF_MARK into the set. Errors: OPS_EXIT_UNREACHABLE (storage down,
 * credentials refused), OPS_EXIT_INTEGRITY (a file changed since the backup),
 * OPS_EXIT_FAILED. The local set is never touched but for OFF_MARK.
 * verify: check each file sent against the manifest's SHA-256 in the same
 * read that computes its MD5s (a set made by an earlier run may have rotted
 * on disk): a file that does not match is not completed on the storage
 * ("backup 'ID' is damaged: ...", OPS_EXIT_INTEGRITY), and the manifest is
 * not sent. */
int off_upload(const struct off_settings *o, const struct bk_entry *e, int verify, off_progress_fn *progress,
	       void *progress_data, struct off_upload_result *res, struct ops_error *err);

/* Whether the local set was uploaded to storage name (its OFF_MARK). */
int off_uploaded(const struct bk_entry *e, const char *storage);

/* The remote sets (those with a manifest), newest first, as a bk_list whose
 * entries' path is "s3://BUCKET/PREFIX/ID" (for messages only). skipped
 * counts IDs with files but no valid manifest (an upload in progress or cut
 * short). */
int off_list(const struct off_settings *o, struct bk_list *l, struct ops_error *err);

/* Checks remote set e (from off_list) against its manifest: every file
 * there with its size; deep also downloads each one and checks its SHA-256.
 * OPS_EXIT_INTEGRITY naming the first file that differs or is missing. */
int off_verify(const struct off_settings *o, const struct bk_entry *e, int deep, struct ops_error *err);

/* Deletes remote set e: its manifest first (so it is never listed half
 * deleted), then its files. */
int off_remove(const struct off_settings *o, const struct bk_entry *e, struct ops_error *err);

/* Downloads remote set id into DIR/ID (through DIR/.tmp-ID, every file
 * checked against the manifest's SHA-256 as it arrives, the manifest last,
 * then renamed into place, marked as uploaded) and reads it into out:
 * afterwards it is a local set like any other. OPS_EXIT_INTEGRITY for a corrupted object. */
int off_fetch(const struct off_settings *o, const struct bk_entry *remote, const char *dir,
	      off_progress_fn *progress, void *progress_data, struct bk_entry *out, struct ops_error *err);

#endif
