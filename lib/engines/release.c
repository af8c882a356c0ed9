/* Release directories, atomic links and the deploy journal (see release.h). */
#include "engines/release.h"
#include "base/exitcode.h"
#include "base/strbuf.h"
#include "system/clock.h"
#include "system/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COPY_BLOCK (256 * 1024)
#define JOURNAL_MAX (1u << 20)

static const char *const archive_suffixes[] = {
	".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.zstd", ".tar", ".zip", NULL,
};

int rel_is_archive(const char *artifact)
{
	for (size_t i = 0; archive_suffixes[i]; i++)
		if (ends_with(artifact, archive_suffixes[i]))
			return 1;
	return 0;
}

int rel_valid_id(const char *id)
{
	size_t len;

	if (!id || !*id || id[0] == '.')
		return 0;
	len = strlen(id);
	if (len > 128)
		return 0;
	for (const char *c = id; *c; c++)
		if (*c == '/' || *c <= ' ' || *c > '~')
			return 0;
	return 1;
}

int rel_id_cmp(const char *a, const char *b)
{
	return strverscmp(a, b);
}

int rel_exists(const char *root, const char *id)
{
	char *path = xstrfmt("%s/releases/%s", root, id);
	struct stat st;
	int ret = lstat(path, &st) == 0 && S_ISDIR(st.st_mode);

	free(path);
	return ret;
}

/* Taken: a release of that name, or one being staged. */
static int id_taken(const char *root, const char *id)
{
	char *tmp = xstrfmt("%s/releases/.tmp-%s", root, id);
	int there = rel_exists(root, id) || fs_exists(tmp);

	free(tmp);
	return there;
}

char *rel_new_id(const char *root)
{
	char stamp[32], *id, **ids = NULL;
	time_t now = time(NULL);
	struct tm tm;
	size_t n = 0, slen;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	slen = strlen(stamp);
	/* newer than every release there is: a pruned id of this second is never
	 * given again (it would sort as the oldest), nor is an id older than the
	 * newest when the clock went back */
	if (rel_list(root, &ids, &n, NULL) < 0)
		n = 0;
	if (n && strlen(ids[n - 1]) >= slen && strncmp(ids[n - 1], stamp, slen) > 0)
		memcpy(stamp, ids[n - 1], slen);
	id = xstrdup(stamp);
	for (int k = 2; id_taken(root, id) || (n && rel_id_cmp(id, ids[n - 1]) <= 0); k++) {
		free(id);
		id = xstrfmt("%s-%d", stamp, k);
	}
	rel_list_free(ids, n);
	return id;
}

/* ---- staging ---- */

static int copy_file(const char *src, const char *dst, struct ops_error *err)
{
	char *buf = xmalloc(COPY_BLOCK);
	struct stat st;
	int in = -1, out = -1, ret = 0;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0 || fstat(in, &st) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", src, ops_strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = ops_error_set(err, OPS_EXIT_USAGE, "'%s' is not a regular file", src);
		goto out;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
	if (out < 0)
		goto write_fail;
	for (;;) {
		ssize_t n = read(in, buf, COPY_BLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", src, ops_strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (fs_write_all(out, buf, (size_t)n) < 0)
			goto write_fail;
	}
	if (fchmod(out, st.st_mode & 0777) < 0 || fsync(out) < 0)
		goto write_fail;
	goto out;
write_fail:
	ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", dst, ops_strerror(errno));
out:
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0 && ret == 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", dst, ops_strerror(errno));
	free(buf);
	return ret;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

int rel_link_shared(const char *root, const char *dir, const char *const *names, size_t n,
		    struct ops_error *err)
{
	struct strbuf target = STRBUF_INIT, link = STRBUF_INIT, src = STRBUF_INIT;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		const char *name = names[i], *slash;
		size_t ups = 2;
		struct stat st;

		if (!arch_path_is_safe(name, NULL, 0, 0) || !strcmp(name, ".")) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG,
					    "shared entry '%s' must be a relative path inside the release", name);
			goto out;
		}
		strbuf_reset(&src);
		strbuf_addf(&src, "%s/shared/%s", root, name);
		if (lstat(src.buf, &st) < 0) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG, "shared entry '%s' does not exist", src.buf);
			ops_error_hint(err, "create it once (a directory such as logs/ or a file such as .env); every release links to it");
			goto out;
		}
		for (slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/'))
			if (slash[1] && slash[1] != '/')
				ups++;
		strbuf_reset(&target);
		for (size_t u = 0; u < ups; u++)
			strbuf_addstr(&target, "../");
		strbuf_addf(&target, "shared/%s", name);
		strbuf_reset(&link);
		strbuf_addf(&link, "%s/%s", dir, name);
		if (fs_remove_tree(link.buf, err) < 0) {
			ret = -err->code;
			goto out;
		}
		slash = strrchr(link.buf, '/');
		if (slash && slash > link.buf + strlen(dir)) {
			char *parent = xstrndup(link.buf, (size_t)(slash - link.buf));
			ret = fs_mkdir_p(parent, 0755, err);
			free(parent);
			if (ret < 0)
				goto out;
		}
		if (symlink(target.buf, link.buf) < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot link '%s': %s", link.buf,
					    ops_strerror(errno));
			goto out;
		}
	}
out:
	strbuf_release(&target);
	strbuf_release(&link);
	strbuf_release(&src);
	return ret;
}

int rel_stage(const char *root, const char *id, const char *artifact,
	      const struct rel_stage_opts *o, struct arch_stats *stats, struct ops_error *err)
{
	static const struct rel_stage_opts no_opts;
	char *releases = xstrfmt("%s/releases", root);
	char *tmp = xstrfmt("%s/.tmp-%s", releases, id);
	char *final = xstrfmt("%s/%s", releases, id);
	char *dst = NULL;
	struct arch_extract_opts xo;
	int made = 0, fd = -1, ret;

	if (!o)
		o = &no_opts;
	if (!rel_valid_id(id)) {
		ret = ops_error_set(err, OPS_EXIT_USAGE, "invalid release id '%s'", id);
		goto out;
	}
	if ((ret = fs_mkdir_p(releases, 0755, err)) < 0)
		goto out;
	if (fs_exists(final)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "release '%s' already exists", final);
		goto out;
	}
	if ((ret = fs_remove_tree(tmp, err)) < 0)
		goto out;
	if (mkdir(tmp, 0755) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create directory '%s': %s", tmp,
				    ops_strerror(errno));
		goto out;
	}
	made = 1;
	if (rel_is_archive(artifact)) {
		memset(&xo, 0, sizeof(xo));
		xo.max_bytes = o->max_bytes ? o->max_bytes : REL_DEFAULT_MAX_UNPACK;
		xo.max_entries = o->max_entries ? o->max_entries : REL_DEFAULT_MAX_ENTRIES;
		xo.progress = o->progress;
		xo.progress_data = o->progress_data;
		if ((ret = arch_extract(artifact, tmp, &xo, stats, err)) < 0)
			goto out;
	} else {
		struct stat st;
		dst = xstrfmt("%s/%s", tmp, base_name(artifact));
		if ((ret = copy_file(artifact, dst, err)) < 0)
			goto out;
		if (stats && stat(dst, &st) == 0) {
			stats->entries = 1;
			stats->bytes = (uint64_t)st.st_size;
			stats->archive_bytes = (uint64_t)st.st_size;
		}
	}
	if (o->nshared && (ret = rel_link_shared(root, tmp, o->shared, o->nshared, err)) < 0)
		goto out;
	/* Everything unpacked reaches the disk before the name says it is complete. */
	fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || syncfs(fd) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot sync '%s': %s", tmp, ops_strerror(errno));
		goto out;
	}
	if (rename(tmp, final) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot rename '%s' to '%s': %s", tmp, final,
				    ops_strerror(errno));
		goto out;
	}
	made = 0;
	ret = fs_fsync_dir(releases, err);
out:
	if (fd >= 0)
		close(fd);
	if (made && ret < 0) {
		struct ops_error ignored = OPS_ERROR_INIT;
		fs_remove_tree(tmp, &ignored);
		ops_error_release(&ignored);
	}
	free(dst);
	free(releases);
	free(tmp);
	free(final);
	return ret;
}

/* ---- links ---- */

int rel_read_target(const char *root, const char *name, char **target, struct ops_error *err)
{
	char *path = xstrfmt("%s/%s", root, name);
	char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	int ret = 0;

	*target = NULL;
	if (n < 0) {
		struct stat st;
		if (errno == ENOENT)
			goto out;
		if (errno == EINVAL && lstat(path, &st) == 0)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s' is not a symlink", path);
		else
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read link '%s': %s", path,
					    ops_strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	*target = xstrdup(buf);
out:
	free(path);
	return ret;
}

int rel_read_link(const char *root, const char *name, char **id, struct ops_error *err)
{
	char *target = NULL;
	const char *rest;
	int ret = rel_read_target(root, name, &target, err);

	*id = NULL;
	if (ret < 0 || !target)
		goto out;
	rest = target;
	while (starts_with(rest, "../"))
		rest += 3;
	if (!starts_with(rest, "releases/") || !rel_valid_id(rest + 9)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s/%s' points to '%s', not to a release", root,
				    name, target);
		ops_error_hint(err, "move the application into %s/releases/ID and point the link there", root);
		goto out;
	}
	*id = xstrdup(rest + 9);
out:
	free(target);
	return ret;
}

int rel_switch_to(const char *root, const char *name, const char *target, struct ops_error *err)
{
	char *path = xstrfmt("%s/%s", root, name);
	char *tmp = xstrfmt("%s.tmp-%ld", path, (long)getpid());
	char *dir = NULL;
	const char *slash = strrchr(path, '/');
	struct stat st;
	int ret = 0;

	dir = xstrndup(path, (size_t)(slash - path));
	if (!target) {
		if (unlink(path) < 0 && errno != ENOENT) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path,
					    ops_strerror(errno));
			goto out;
		}
		ret = fs_fsync_dir(dir, err);
		goto out;
	}
	if (lstat(path, &st) == 0 && !S_ISLNK(st.st_mode)) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s' is not a symlink: it would be replaced", path);
		ops_error_hint(err, "move it into %s/releases/ID and link it there, once, by hand", root);
		goto out;
	}
	if ((ret = fs_mkdir_p(dir, 0755, err)) < 0)
		goto out;
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, path) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot point '%s' at '%s': %s", path, target,
				    ops_strerror(errno));
		unlink(tmp);
		goto out;
	}
	ret = fs_fsync_dir(dir, err);
out:
	free(path);
	free(tmp);
	free(dir);
	return ret;
}

int rel_switch(const char *root, const char *name, const char *id, struct ops_error *err)
{
	struct strbuf target = STRBUF_INIT;
	int ret;

	if (id && !rel_valid_id(id))
		return ops_error_set(err, OPS_EXIT_USAGE, "invalid release id '%s'", id);
	if (id) {
		for (const char *c = name; *c; c++)
			if (*c == '/')
				strbuf_addstr(&target, "../");
		strbuf_addf(&target, "releases/%s", id);
	}
	ret = rel_switch_to(root, name, id ? target.buf : NULL, err);
	strbuf_release(&target);
	return ret;
}

/* ---- listing, removing, pruning ---- */

static int cmp_ids(const void *a, const void *b)
{
	return rel_id_cmp(*(char *const *)a, *(char *const *)b);
}

int rel_list(const char *root, char ***ids, size_t *n, struct ops_error *err)
{
	char *dir = xstrfmt("%s/releases", root);
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t alloc = 0;
	int ret = 0;

	*ids = NULL;
	*n = 0;
	if (!d) {
		if (errno != ENOENT)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", dir, ops_strerror(errno));
		goto out;
	}
	while ((de = readdir(d))) {
		if (!rel_valid_id(de->d_name) || !rel_exists(root, de->d_name))
			continue;
		if (*n == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			*ids = xrealloc(*ids, alloc * sizeof(char *));
		}
		(*ids)[(*n)++] = xstrdup(de->d_name);
	}
	if (*n)
		qsort(*ids, *n, sizeof(char *), cmp_ids);
out:
	if (d)
		closedir(d);
	free(dir);
	return ret;
}

void rel_list_free(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int rel_remove(const char *root, const char *id, struct ops_error *err)
{
	char *path = xstrfmt("%s/releases/%s", root, id);
	char *trash = xstrfmt("%s/releases/.trash-%s", root, id);
	int ret = 0;

	if (!rel_valid_id(id)) {
		ret = ops_error_set(err, OPS_EXIT_USAGE, "invalid release id '%s'", id);
		goto out;
	}
	if ((ret = fs_remove_tree(trash, err)) < 0)
		goto out;
	if (rename(path, trash) < 0) {
		if (errno != ENOENT)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path,
					    ops_strerror(errno));
		goto out;
	}
	ret = fs_remove_tree(trash, err);
out:
	free(path);
	free(trash);
	return ret;
}

int rel_clean(const char *root, struct ops_error *err)
{
	char *dir = xstrfmt("%s/releases", root);
	DIR *d = opendir(dir);
	struct dirent *de;
	int ret = 0;

	if (!d)
		goto out;
	while ((de = readdir(d)) && ret == 0) {
		if (starts_with(de->d_name, ".tmp-") || starts_with(de->d_name, ".trash-")) {
			char *path = xstrfmt("%s/%s", dir, de->d_name);
			ret = fs_remove_tree(path, err);
			free(path);
		}
	}
	closedir(d);
out:
	free(dir);
	return ret;
}

int rel_prune(const char *root, size_t keep, const char *const *protect, size_t nprotect,
	      char ***removed, size_t *nremoved, struct ops_error *err)
{
	char **ids = NULL;
	size_t n = 0, kept = 0;
	int ret;

	if (keep < 1)
		keep = 1;
	if ((ret = rel_list(root, &ids, &n, err)) < 0)
		goto out;
	/* newest first: the newest `keep` stay, and every protected one */
	for (size_t i = n; i-- > 0;) {
		int prot = 0;
		for (size_t j = 0; j < nprotect; j++)
			if (protect[j] && !strcmp(protect[j], ids[i]))
				prot = 1;
		if (prot || kept < keep) {
			kept++;
			continue;
		}
		if ((ret = rel_remove(root, ids[i], err)) < 0)
			goto out;
		*removed = xrealloc(*removed, (*nremoved + 1) * sizeof(char *));
		(*removed)[(*nremoved)++] = xstrdup(ids[i]);
	}
out:
	rel_list_free(ids, n);
	return ret;
}

/* ---- journal ---- */

static const char *const step_names[REL_STEP_COUNT] = {
	"lock", "preflight", "backup", "unpack", "migrate", "start", "before_switch", "switch",
	"restart", "after_switch", "gate", "rollback", "record", "prune",
};

const char *rel_step_name(enum rel_step s)
{
	return (unsigned)s < REL_STEP_COUNT ? step_names[s] : "unknown";
}

int rel_step_parse(const char *name)
{
	for (int i = 0; name && i < REL_STEP_COUNT; i++)
		if (!strcmp(step_names[i], name))
			return i;
	return -1;
}

enum rel_recovery rel_recovery_for(const cJSON *journal)
{
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(journal, "kind");
	const cJSON *step = cJSON_GetObjectItemCaseSensitive(journal, "step");
	int s;

	if (!cJSON_IsString(kind) || !cJSON_IsString(step))
		return REL_RECOVER_NONE;
	s = rel_step_parse(step->valuestring);
	if (s < 0)
		return REL_RECOVER_NONE;
	if (!strcmp(kind->valuestring, "rollback"))
		return s < REL_STEP_SWITCH ? REL_RECOVER_DISCARD : REL_RECOVER_FINISH;
	if (strcmp(kind->valuestring, "deploy"))
		return REL_RECOVER_NONE;
	if (s < REL_STEP_SWITCH)
		return REL_RECOVER_DISCARD;
	if (s <= REL_STEP_ROLLBACK)
		return REL_RECOVER_ROLLBACK;
	return REL_RECOVER_FINISH;
}

const char *rel_recovery_name(enum rel_recovery r)
{
	switch (r) {
	case REL_RECOVER_NONE: return "none";
	case REL_RECOVER_DISCARD: return "discard";
	case REL_RECOVER_ROLLBACK: return "rollback";
	case REL_RECOVER_FINISH: return "finish";
	}
	return "none";
}

static char *journal_path(const char *state_dir)
{
	return xstrfmt("%s/deploy/journal.json", state_dir);
}

int rel_journal_write(const char *state_dir, const cJSON *journal, struct ops_error *err)
{
	char *dir = xstrfmt("%s/deploy", state_dir), *path = journal_path(state_dir);
	char *text = cJSON_Print(journal);
	int ret;

	if (!text) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot format the deploy journal");
		goto out;
	}
	if ((ret = fs_mkdir_p(dir, 0700, err)) < 0)
		goto out;
	ret = fs_write_atomic(path, text, strlen(text), 0600, err);
out:
	free(text);
	free(dir);
	free(path);
	return ret;
}

int rel_journal_read(const char *state_dir, cJSON **journal, struct ops_error *err)
{
	char *path = journal_path(state_dir);
	struct strbuf sb = STRBUF_INIT;
	int ret = 0;

	*journal = NULL;
	if (!fs_exists(path))
		goto out;
	if ((ret = fs_read_file(path, &sb, JOURNAL_MAX, err)) < 0)
		goto out;
	*journal = cJSON_Parse(sb.buf);
	if (!cJSON_IsObject(*journal) || rel_recovery_for(*journal) == REL_RECOVER_NONE) {
		cJSON_Delete(*journal);
		*journal = NULL;
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "the deploy journal '%s' is damaged", path);
		ops_error_hint(err, "check 'current' and the service by hand, then remove the file");
	}
out:
	strbuf_release(&sb);
	free(path);
	return ret;
}

int rel_journal_clear(const char *state_dir, struct ops_error *err)
{
	char *path = journal_path(state_dir), *dir = xstrfmt("%s/deploy", state_dir);
	int ret = 0;

	/* a run killed while it wrote the journal left its temporary file */
	fs_remove_stale_tmp(path, 0);
	if (unlink(path) < 0) {
		if (errno != ENOENT)
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", path,
					    ops_strerror(errno));
		goto out;
	}
	ret = fs_fsync_dir(dir, err);
out:
	free(path);
	free(dir);
	return ret;
}

int rel_journal_step(const char *state_dir, cJSON *journal, enum rel_step step,
		     struct ops_error *err)
{
	cJSON *steps = cJSON_GetObjectItemCaseSensitive(journal, "steps"), *e;
	char when[32];

	clock_rfc3339(when, time(NULL));
	if (!cJSON_IsArray(steps))
		steps = cJSON_AddArrayToObject(journal, "steps");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "step", rel_step_name(step));
	cJSON_AddStringToObject(e, "at", when);
	cJSON_AddItemToArray(steps, e);
	cJSON_DeleteItemFromObjectCaseSensitive(journal, "step");
	cJSON_AddStringToObject(journal, "step", rel_step_name(step));
	return rel_journal_write(state_dir, journal, err);
}
