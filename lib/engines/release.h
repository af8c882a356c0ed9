/* Releases on disk and the deploy journal: ROOT/releases/ID (complete or
 * absent, never half written), ROOT/shared entries linked into each, links
 * (ROOT/current, ROOT/slots/NAME) switched atomically, pruning; and
 * STATE/deploy/journal.json, the steps of the deploy in progress, from
 * which an interrupted one is finished or undone. */
#ifndef OPSCTL_RELEASE_H
#define OPSCTL_RELEASE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "adapters/archive.h"
#include "base/error.h"

/* The default of [deploy] max_unpack: an artifact that expands past this is
 * refused as a bomb. */
#define REL_DEFAULT_MAX_UNPACK (4ull << 30)
#define REL_DEFAULT_MAX_ENTRIES 1000000ull

/* 1 when the artifact is an archive by its name (.tar.gz .tgz .tar.zst .tzst
 * .tar .zip), 0 when it is a single file that is copied as it is (app.jar is
 * a zip inside, but it is the application, not a tree to unpack). */
int rel_is_archive(const char *artifact);

/* 1 when id can name a release: not empty, no '/', not starting with '.',
 * printable ASCII, at most 128 bytes. */
int rel_valid_id(const char *id);

/* A new release id from the UTC time, "20261121T221734Z", with "-2", "-3"...
 * when needed to sort after every release in ROOT/releases (so an id is never
 * given twice, even after pruning or when the clock went back). malloc'd. */
char *rel_new_id(const char *root);

/* Release ids compare as versions ("...Z" < "...Z-2" < "...Z-10"). */
int rel_id_cmp(const char *a, const char *b);

struct rel_stage_opts {
	uint64_t max_bytes;          /* archives: expansion limit (0 = REL_DEFAULT_MAX_UNPACK) */
	uint64_t max_entries;        /* archives: entry limit (0 = REL_DEFAULT_MAX_ENTRIES) */
	const char *const *shared;   /* names under ROOT/shared to link in; may be NULL */
	size_t nshared;
	arch_progress_fn progress;   /* may be NULL */
	void *progress_data;
};

/* Builds ROOT/releases/ID from the artifact: unpacked (arch_extract's
 * refusals, OPS_EXIT_INTEGRITY) or copied (a single file keeps its base name
 * and mode), the shared entries linked in, everything synced, then renamed
 * from ROOT/releases/.tmp-ID into place. On any failure the staging directory
 * is removed: ROOT/releases/ID either is complete or does not exist.
 * ROOT/releases/ID must not exist yet. stats may be NULL. */
int rel_stage(const char *root, const char *id, const char *artifact,
	      const struct rel_stage_opts *o, struct arch_stats *stats, struct ops_error *err);

/* Links ROOT/shared/NAME into dir for every name (an entry of the release of
 * the same name is replaced). A name that is absolute or has '..' is
 * OPS_EXIT_CONFIG; a missing ROOT/shared/NAME is OPS_EXIT_CONFIG naming it.
 * The links are relative (../../shared/NAME), so dir must be
 * ROOT/releases/SOMETHING. */
int rel_link_shared(const char *root, const char *dir, const char *const *names, size_t n,
		    struct ops_error *err);

/* The release a link under root points to: name is "current" or
 * "slots/blue". *id is the malloc'd release id, or NULL when the link does
 * not exist. A link that does not point at releases/ID is OPS_EXIT_FAILED. */
int rel_read_link(const char *root, const char *name, char **id, struct ops_error *err);

/* Points ROOT/name at releases/id atomically: a new symlink beside it, renamed
 * over it, the directory synced. id NULL removes the link. */
int rel_switch(const char *root, const char *name, const char *id, struct ops_error *err);

/* Points ROOT/name at an arbitrary relative target (slots/live -> blue),
 * atomically like rel_switch. */
int rel_switch_to(const char *root, const char *name, const char *target, struct ops_error *err);
/* readlink of ROOT/name into *target (malloc'd), NULL when it does not exist. */
int rel_read_target(const char *root, const char *name, char **target, struct ops_error *err);

/* Release ids under ROOT/releases, oldest first; staging and trash
 * directories are not listed. A missing directory is an empty list. */
int rel_list(const char *root, char ***ids, size_t *n, struct ops_error *err);
void rel_list_free(char **ids, size_t n);
int rel_exists(const char *root, const char *id);

/* Removes ROOT/releases/ID (renamed to .trash-ID first, so it is never seen
 * half removed). */
int rel_remove(const char *root, const char *id, struct ops_error *err);
/* Removes staging (.tmp-*) and trash (.trash-*) directories a killed run left. */
int rel_clean(const char *root, struct ops_error *err);

/* Removes the oldest releases beyond keep (>= 1), never one of protect[].
 * The removed ids are appended to *removed (malloc'd array of malloc'd
 * strings, *nremoved updated); free with rel_list_free. */
int rel_prune(const char *root, size_t keep, const char *const *protect, size_t nprotect,
	      char ***removed, size_t *nremoved, struct ops_error *err);

/* ---- the journal ---- */

/* The steps of a deploy, in order; the journal names the step that was about
 * to start (written before it starts). */
enum rel_step {
	REL_STEP_LOCK = 0,
	REL_STEP_PREFLIGHT,
	REL_STEP_BACKUP,
	REL_STEP_UNPACK,
	REL_STEP_MIGRATE,
	REL_STEP_START,          /* blue-green: the idle slot started on the release */
	REL_STEP_BEFORE_SWITCH,
	REL_STEP_SWITCH,         /* symlink: current; blue-green: the upstream file */
	REL_STEP_RESTART,        /* symlink: [service] restart; blue-green: proxy reload */
	REL_STEP_AFTER_SWITCH,
	REL_STEP_GATE,
	REL_STEP_ROLLBACK,       /* the gate (or a hook) failed: going back */
	REL_STEP_RECORD,         /* the gate passed */
	REL_STEP_PRUNE,
	REL_STEP_COUNT
};
const char *rel_step_name(enum rel_step s);
/* -1 when unknown. */
int rel_step_parse(const char *name);

/* What the next run does with a journal left behind by a killed one. */
enum rel_recovery {
	REL_RECOVER_NONE = 0,    /* no journal / nothing to do */
	REL_RECOVER_DISCARD,     /* nothing was switched: remove the new release,
				    undo the migrations it applied, stop its slot */
	REL_RECOVER_ROLLBACK,    /* switched but not proven healthy: switch back,
				    restart, gate the previous release */
	REL_RECOVER_FINISH,      /* the gate had passed: record it and prune */
};
/* Decides from the journal alone: kind "deploy" before the switch step is
 * DISCARD, from switch up to and including rollback is ROLLBACK, record and
 * prune are FINISH; kind "rollback" (a rollback command, which is itself the
 * way back) is FINISH from switch on (its target is switched to, restarted
 * and gated) and DISCARD before. An unreadable journal is NONE. */
enum rel_recovery rel_recovery_for(const cJSON *journal);
const char *rel_recovery_name(enum rel_recovery r);

/* STATE/deploy/journal.json, written atomically (0600). */
int rel_journal_write(const char *state_dir, const cJSON *journal, struct ops_error *err);
/* *journal is NULL when there is none; a damaged one is OPS_EXIT_INTEGRITY. */
int rel_journal_read(const char *state_dir, cJSON **journal, struct ops_error *err);
int rel_journal_clear(const char *state_dir, struct ops_error *err);
/* Sets "step" (and appends {"step", "at"} to "steps") then writes it. */
int rel_journal_step(const char *state_dir, cJSON *journal, enum rel_step step,
		     struct ops_error *err);

#endif
