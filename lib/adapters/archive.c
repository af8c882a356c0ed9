/* Tar/zip archives with libarchive, reached through dlopen so that the binary
 * does not link it: backups of paths, and safe unpacking of artifacts. */
#include "adapters/archive.h"
#include "base/exitcode.h"
#include "base/strbuf.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARCH_LIBRARY "libarchive.so.13"
#define ARCH_BLOCK (64 * 1024)
#define ARCH_PROGRESS_STEP (4u << 20)

/* Every libarchive function used here; each becomes a pointer of the same
 * name and type in struct arch_lib. The header is only read for its types:
 * __typeof__ does not reference the symbol, so nothing reaches the linker. */
#define ARCH_SYMBOLS(X) \
	X(archive_version_string) \
	X(archive_error_string) \
	X(archive_errno) \
	X(archive_filter_bytes) \
	X(archive_entry_new) \
	X(archive_entry_free) \
	X(archive_entry_clear) \
	X(archive_entry_copy_stat) \
	X(archive_entry_copy_pathname) \
	X(archive_entry_copy_symlink) \
	X(archive_entry_copy_hardlink) \
	X(archive_entry_pathname) \
	X(archive_entry_symlink) \
	X(archive_entry_hardlink) \
	X(archive_entry_filetype) \
	X(archive_entry_mode) \
	X(archive_entry_set_mode) \
	X(archive_entry_set_size) \
	X(archive_entry_size) \
	X(archive_entry_size_is_set) \
	X(archive_write_new) \
	X(archive_write_set_format_pax_restricted) \
	X(archive_write_add_filter_gzip) \
	X(archive_write_add_filter_zstd) \
	X(archive_write_set_filter_option) \
	X(archive_write_set_bytes_in_last_block) \
	X(archive_write_open_fd) \
	X(archive_write_header) \
	X(archive_write_data) \
	X(archive_write_data_block) \
	X(archive_write_finish_entry) \
	X(archive_write_close) \
	X(archive_write_free) \
	X(archive_write_disk_new) \
	X(archive_write_disk_set_options) \
	X(archive_read_new) \
	X(archive_read_support_format_tar) \
	X(archive_read_support_format_zip) \
	X(archive_read_support_filter_gzip) \
	X(archive_read_support_filter_zstd) \
	X(archive_read_open_fd) \
	X(archive_read_next_header) \
	X(archive_read_data_block) \
	X(archive_read_free)

struct arch_lib {
#define ARCH_FIELD(sym) __typeof__(sym) *sym;
	ARCH_SYMBOLS(ARCH_FIELD)
#undef ARCH_FIELD
};

static struct arch_lib L;
static int arch_loaded;
static char arch_load_error[512];
static pthread_once_t arch_once = PTHREAD_ONCE_INIT;

static void arch_load_once(void)
{
	const char *why;
	void *h = dlopen(ARCH_LIBRARY, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		goto fail;
#define ARCH_LOAD(sym) \
	if (!(L.sym = (__typeof__(L.sym))dlsym(h, #sym))) \
		goto fail;
	ARCH_SYMBOLS(ARCH_LOAD)
#undef ARCH_LOAD
	arch_loaded = 1;
	return;
fail:
	why = dlerror();
	snprintf(arch_load_error, sizeof(arch_load_error), "cannot load libarchive: %s",
		 why ? why : "unknown error");
	if (h)
		dlclose(h);
	memset(&L, 0, sizeof(L));
}

static int arch_load(struct ops_error *err)
{
	pthread_once(&arch_once, arch_load_once);
	if (!arch_loaded)
		return ops_error_set(err, OPS_EXIT_FAILED, "%s", arch_load_error);
	return 0;
}

const char *arch_version(void)
{
	if (arch_load(NULL) < 0)
		return NULL;
	return L.archive_version_string();
}

/* "cannot WHAT 'PATH': libarchive's message", its first letter lowercased
 * like every opsctl message ("Truncated tar archive" -> "truncated ..."). */
static int set_lib_error(struct ops_error *err, int code, struct archive *a, const char *what,
			 const char *path)
{
	const char *msg = L.archive_error_string(a);
	char first[2] = "";
	int errnum = L.archive_errno(a);

	if (!msg || !*msg)
		msg = errnum > 0 ? ops_strerror(errnum) : "unknown error";
	if (isupper((unsigned char)msg[0]) && islower((unsigned char)msg[1])) {
		first[0] = (char)tolower((unsigned char)msg[0]);
		msg++;
	}
	if (path)
		return ops_error_set(err, code, "cannot %s '%s': %s%s", what, path, first, msg);
	return ops_error_set(err, code, "cannot %s: %s%s", what, first, msg);
}

/* ---- names ---- */

/* The next '/'-separated component of s at or after *pos ("" at the end). */
static const char *next_component(const char *s, size_t *pos, size_t *len)
{
	while (s[*pos] == '/')
		(*pos)++;
	*len = strcspn(s + *pos, "/");
	s += *pos;
	*pos += *len;
	return s;
}

static int is_dot(const char *c, size_t len)
{
	return len == 1 && c[0] == '.';
}

static int is_dotdot(const char *c, size_t len)
{
	return len == 2 && c[0] == '.' && c[1] == '.';
}

/* Writes path relative and tidy into out ("//a/./b/" -> "a/b") and returns
 * the number of components, or -1 when one of them is "..". */
static int tidy_path(const char *path, struct strbuf *out)
{
	size_t pos = 0, len;
	const char *c;
	int depth = 0;

	strbuf_reset(out);
	while (*(c = next_component(path, &pos, &len))) {
		if (is_dot(c, len))
			continue;
		if (is_dotdot(c, len))
			return -1;
		if (out->len)
			strbuf_addch(out, '/');
		strbuf_add(out, c, len);
		depth++;
	}
	return depth;
}

enum path_verdict {
	PATH_SAFE = 0,
	PATH_EMPTY,
	PATH_ABSOLUTE,
	PATH_DOTDOT,
	PATH_LINK_OUTSIDE,
	PATH_LINK_DOTDOT,
};

static enum path_verdict check_path(const char *name, const char *link, int is_symlink,
				    int is_hardlink)
{
	size_t pos = 0, len;
	const char *c;
	int depth = 0, up = 0, leading = 1;

	if (!name || !*name)
		return PATH_EMPTY;
	if (name[0] == '/')
		return PATH_ABSOLUTE;
	while (*(c = next_component(name, &pos, &len))) {
		if (is_dotdot(c, len))
			return PATH_DOTDOT;
		if (!is_dot(c, len))
			depth++;
	}
	if (!is_symlink && !is_hardlink)
		return PATH_SAFE;
	if (depth == 0)
		return PATH_EMPTY; /* a link cannot replace the target directory */
	if ((is_symlink && is_hardlink) || !link || !*link || link[0] == '/')
		return PATH_LINK_OUTSIDE;
	pos = 0;
	if (is_hardlink) {
		int link_depth = 0;
		while (*(c = next_component(link, &pos, &len))) {
			if (is_dotdot(c, len))
				return PATH_LINK_OUTSIDE;
			if (!is_dot(c, len))
				link_depth++;
		}
		return link_depth ? PATH_SAFE : PATH_LINK_OUTSIDE;
	}
	/* A ".." after a name could climb out of whatever that name turns out to
	 * be (a symlink to "."), so only leading ones are allowed, and no more
	 * of them than there are directories above the link. */
	while (*(c = next_component(link, &pos, &len))) {
		if (is_dot(c, len))
			continue;
		if (!is_dotdot(c, len)) {
			leading = 0;
			continue;
		}
		if (!leading)
			return PATH_LINK_DOTDOT;
		up++;
	}
	return up > depth - 1 ? PATH_LINK_OUTSIDE : PATH_SAFE;
}

int arch_path_is_safe(const char *name, const char *link_target, int is_symlink,
		      int is_hardlink)
{
	return check_path(name, link_target, is_symlink, is_hardlink) == PATH_SAFE;
}

static int call_progress(arch_progress_fn fn, void *data, const struct arch_stats *st,
			 const char *name)
{
	struct arch_progress p = { st->entries, st->bytes, name };
	return fn ? fn(&p, data) : 0;
}

/* ---- create ---- */

struct create_ctx {
	struct archive *a;
	struct archive_entry *entry;
	const struct arch_create_opts *opts;
	const char *out_name;  /* NULL when writing to a caller's fd */
	struct stat out_st;    /* the output, never archived into itself */
	int have_out_st;
	struct arch_stats st;
	uint64_t next_progress;
	char *buf;
	struct ops_error *err;
};

static int write_error(struct create_ctx *c)
{
	return set_lib_error(c->err, OPS_EXIT_FAILED, c->a,
			     c->out_name ? "write" : "write the archive", c->out_name);
}

static int cancelled(struct create_ctx *c, const char *name)
{
	if (!call_progress(c->opts->progress, c->opts->progress_data, &c->st, name))
		return 0;
	return ops_error_set(c->err, OPS_EXIT_ABORTED, "archive cancelled at '%s'", name);
}

static int write_header(struct create_ctx *c, const struct stat *st, const char *name,
			const char *symlink)
{
	L.archive_entry_clear(c->entry);
	L.archive_entry_copy_stat(c->entry, st);
	L.archive_entry_copy_pathname(c->entry, name);
	if (!S_ISREG(st->st_mode))
		L.archive_entry_set_size(c->entry, 0);
	if (symlink)
		L.archive_entry_copy_symlink(c->entry, symlink);
	if (L.archive_write_header(c->a, c->entry) < ARCHIVE_WARN)
		return write_error(c);
	return 0;
}

static int add_file(struct create_ctx *c, const char *fspath, const char *name)
{
	struct stat st;
	uint64_t left;
	int fd, ret = 0;

	fd = open(fspath, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = ops_error_set(c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", fspath,
				    ops_strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = ops_error_set(c->err, OPS_EXIT_FAILED,
				    "'%s' changed type while being archived", fspath);
		goto out;
	}
	/* the size of the open file is the one the header promises */
	if ((ret = write_header(c, &st, name, NULL)) < 0)
		goto out;
	for (left = (uint64_t)st.st_size; left > 0;) {
		size_t want = left < ARCH_BLOCK ? (size_t)left : ARCH_BLOCK;
		ssize_t n = read(fd, c->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ops_error_set(c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", fspath,
					    ops_strerror(errno));
			goto out;
		}
		if (n == 0) {
			ret = ops_error_set(c->err, OPS_EXIT_FAILED,
					    "'%s' changed size while being archived", fspath);
			goto out;
		}
		if (L.archive_write_data(c->a, c->buf, (size_t)n) != n) {
			ret = write_error(c);
			goto out;
		}
		left -= (uint64_t)n;
		c->st.bytes += (uint64_t)n;
		if (c->st.bytes >= c->next_progress) {
			c->next_progress = c->st.bytes + ARCH_PROGRESS_STEP;
			if ((ret = cancelled(c, name)) < 0)
				goto out;
		}
	}
	if (L.archive_write_finish_entry(c->a) < ARCHIVE_WARN)
		ret = write_error(c);
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static int compare_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static int add_tree(struct create_ctx *c, struct strbuf *fspath, struct strbuf *name);

static int add_dir(struct create_ctx *c, struct strbuf *fspath, struct strbuf *name)
{
	DIR *dir = NULL;
	struct dirent *de;
	char **names = NULL;
	size_t nr = 0, alloc = 0, i, fs_len = fspath->len, name_len = name->len;
	int ret = 0;

	if (!(dir = opendir(fspath->buf))) {
		ret = ops_error_set(c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", fspath->buf,
				    ops_strerror(errno));
		goto out;
	}
	for (errno = 0; (de = readdir(dir)); errno = 0) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (nr == alloc) {
			alloc = alloc ? 2 * alloc : 32;
			names = xrealloc(names, alloc * sizeof(*names));
		}
		names[nr++] = xstrdup(de->d_name);
	}
	if (errno) {
		ret = ops_error_set(c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", fspath->buf,
				    ops_strerror(errno));
		goto out;
	}
	closedir(dir);
	dir = NULL;
	if (nr)
		qsort(names, nr, sizeof(*names), compare_names);
	for (i = 0; i < nr; i++) {
		strbuf_setlen(fspath, fs_len);
		strbuf_setlen(name, name_len);
		strbuf_addf(fspath, "/%s", names[i]);
		strbuf_addf(name, "/%s", names[i]);
		if ((ret = add_tree(c, fspath, name)) < 0)
			goto out;
	}
out:
	strbuf_setlen(fspath, fs_len);
	strbuf_setlen(name, name_len);
	for (i = 0; i < nr; i++)
		free(names[i]);
	free(names);
	if (dir)
		closedir(dir);
	return ret;
}

static int read_symlink(const char *path, struct strbuf *target)
{
	size_t size = 256;

	for (;;) {
		ssize_t n;
		strbuf_reset(target);
		strbuf_grow(target, size);
		n = readlink(path, target->buf, size);
		if (n < 0)
			return -1;
		if ((size_t)n < size) {
			strbuf_setlen(target, (size_t)n);
			return 0;
		}
		size *= 2;
	}
}

static int add_tree(struct create_ctx *c, struct strbuf *fspath, struct strbuf *name)
{
	struct strbuf target = STRBUF_INIT;
	struct stat st;
	int ret = 0;

	if (lstat(fspath->buf, &st) < 0) {
		ret = ops_error_set(c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", fspath->buf,
				    ops_strerror(errno));
		goto out;
	}
	if (c->have_out_st && st.st_dev == c->out_st.st_dev && st.st_ino == c->out_st.st_ino)
		goto out;
	if (S_ISREG(st.st_mode)) {
		ret = add_file(c, fspath->buf, name->buf);
	} else if (S_ISDIR(st.st_mode)) {
		if ((ret = write_header(c, &st, name->buf, NULL)) < 0)
			goto out;
		c->st.entries++;
		ret = add_dir(c, fspath, name);
		goto out;
	} else if (S_ISLNK(st.st_mode)) {
		if (read_symlink(fspath->buf, &target) < 0) {
			ret = ops_error_set(c->err, OPS_EXIT_FAILED, "cannot read '%s': %s",
					    fspath->buf, ops_strerror(errno));
			goto out;
		}
		ret = write_header(c, &st, name->buf, target.buf);
	} else {
		ret = ops_error_set(c->err, OPS_EXIT_FAILED,
				    "cannot archive '%s': sockets, fifos and devices are not supported",
				    fspath->buf);
	}
	if (ret < 0)
		goto out;
	c->st.entries++;
	ret = cancelled(c, name->buf);
out:
	strbuf_release(&target);
	return ret;
}

static int create_into(int fd, const char *out_name, const char *const *paths, size_t n,
		       const struct arch_create_opts *opts, struct arch_stats *stats,
		       struct ops_error *err)
{
	static const struct arch_create_opts no_opts;
	struct create_ctx c = { 0 };
	struct strbuf fspath = STRBUF_INIT, name = STRBUF_INIT;
	char level[16];
	size_t i;
	int r, ret;

	if ((ret = arch_load(err)) < 0)
		return ret;
	c.opts = opts ? opts : &no_opts;
	c.out_name = out_name;
	c.err = err;
	c.next_progress = ARCH_PROGRESS_STEP;
	c.have_out_st = fstat(fd, &c.out_st) == 0 && S_ISREG(c.out_st.st_mode);
	c.buf = xmalloc(ARCH_BLOCK);
	c.entry = L.archive_entry_new();
	c.a = L.archive_write_new();
	if (!c.a || !c.entry)
		abort(); /* only on out-of-memory, like xmalloc */

	/* names first: a bad one fails before anything is written */
	for (i = 0; i < n; i++) {
		if ((r = tidy_path(paths[i], &name)) <= 0) {
			ret = ops_error_set(err, OPS_EXIT_USAGE, "cannot archive '%s': %s", paths[i],
					    r < 0 ? "the path has a '..' component" :
					    "the path names no file");
			goto out;
		}
	}

	r = L.archive_write_set_format_pax_restricted(c.a);
	if (r == ARCHIVE_OK && c.opts->compression == ARCH_COMPRESS_GZIP)
		r = L.archive_write_add_filter_gzip(c.a);
	else if (r == ARCHIVE_OK && c.opts->compression == ARCH_COMPRESS_ZSTD)
		r = L.archive_write_add_filter_zstd(c.a);
	if (r == ARCHIVE_OK && c.opts->level && c.opts->compression != ARCH_COMPRESS_NONE) {
		snprintf(level, sizeof(level), "%d", c.opts->level);
		r = L.archive_write_set_filter_option(c.a, NULL, "compression-level", level);
	}
	if (r == ARCHIVE_OK)
		r = L.archive_write_set_bytes_in_last_block(c.a, 1);
	if (r == ARCHIVE_OK)
		r = L.archive_write_open_fd(c.a, fd);
	if (r != ARCHIVE_OK) {
		ret = write_error(&c);
		goto out;
	}

	for (i = 0; i < n; i++) {
		tidy_path(paths[i], &name);
		strbuf_reset(&fspath);
		if (paths[i][0] == '/')
			strbuf_addch(&fspath, '/');
		else if (c.opts->base_dir)
			strbuf_addf(&fspath, "%s/", c.opts->base_dir);
		strbuf_addbuf(&fspath, &name);
		if ((ret = add_tree(&c, &fspath, &name)) < 0)
			goto out;
	}
	if (L.archive_write_close(c.a) != ARCHIVE_OK) {
		ret = write_error(&c);
		goto out;
	}
	c.st.archive_bytes = (uint64_t)L.archive_filter_bytes(c.a, -1);
	if (stats)
		*stats = c.st;
out:
	L.archive_write_free(c.a);
	L.archive_entry_free(c.entry);
	free(c.buf);
	strbuf_release(&fspath);
	strbuf_release(&name);
	return ret;
}

int arch_create_fd(int fd, const char *const *paths, size_t n,
		   const struct arch_create_opts *opts, struct arch_stats *stats,
		   struct ops_error *err)
{
	return create_into(fd, NULL, paths, n, opts, stats, err);
}

int arch_create(const char *out_path, const char *const *paths, size_t n,
		const struct arch_create_opts *opts, struct arch_stats *stats,
		struct ops_error *err)
{
	int fd, ret;

	if ((ret = arch_load(err)) < 0)
		return ret;
	fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", out_path,
				     ops_strerror(errno));
	ret = create_into(fd, out_path, paths, n, opts, stats, err);
	if (ret == 0 && fsync(fd) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", out_path,
				    ops_strerror(errno));
	if (close(fd) < 0 && ret == 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", out_path,
				    ops_strerror(errno));
	if (ret < 0)
		unlink(out_path);
	return ret;
}

/* ---- extract ---- */

struct extract_ctx {
	const char *archive_path;
	const struct arch_extract_opts *opts;
	int root_fd;            /* the target directory: our own checks use *at() */
	struct strbuf root;     /* its real path: libarchive gets ROOT/NAME */
	struct strbuf name;     /* tidy entry name */
	struct strbuf link;     /* tidy hardlink target */
	struct strbuf scratch;
	struct arch_stats st;
	uint64_t next_progress;
	struct ops_error *err;
};

static int refuse(struct extract_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(struct extract_ctx *x, const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT;
	va_list ap;
	int ret;

	va_start(ap, fmt);
	strbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	ret = ops_error_set(x->err, OPS_EXIT_INTEGRITY, "refusing '%s': %s", x->archive_path,
			    msg.buf);
	strbuf_release(&msg);
	return ret;
}

static const char *type_name(mode_t type)
{
	switch (type) {
	case AE_IFCHR: return "a character device";
	case AE_IFBLK: return "a block device";
	case AE_IFIFO: return "a fifo";
	case AE_IFSOCK: return "a socket";
	default: return "of an unknown type";
	}
}

/* Every directory above name (tidy, relative to the root) must be a real
 * directory or not exist yet: never a symlink, whatever it points at. */
static int check_parents(struct extract_ctx *x, const char *what, const char *name)
{
	const char *slash;
	struct stat st;

	for (slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
		strbuf_reset(&x->scratch);
		strbuf_add(&x->scratch, name, (size_t)(slash - name));
		if (fstatat(x->root_fd, x->scratch.buf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				return 0;
			return ops_error_set(x->err, OPS_EXIT_FAILED, "cannot check '%s/%s': %s",
					     x->root.buf, x->scratch.buf, ops_strerror(errno));
		}
		if (S_ISLNK(st.st_mode))
			return refuse(x, "%s '%s' goes through symlink '%s'", what, name,
				      x->scratch.buf);
		if (!S_ISDIR(st.st_mode))
			return refuse(x, "%s '%s' is inside '%s', which is not a directory", what,
				      name, x->scratch.buf);
	}
	return 0;
}

static int check_entry(struct extract_ctx *x, struct archive_entry *e, int *skip)
{
	const char *name = L.archive_entry_pathname(e);
	const char *hardlink = L.archive_entry_hardlink(e);
	const char *symlink = L.archive_entry_symlink(e);
	mode_t type = (mode_t)L.archive_entry_filetype(e);
	int is_symlink = !hardlink && type == AE_IFLNK;
	int64_t size;
	struct stat st;
	int ret;

	*skip = 0;
	if (!name)
		return refuse(x, "an entry has a name that cannot be read");
	if (!hardlink && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
		return refuse(x, "entry '%s' is %s", name, type_name(type));
	switch (check_path(name, is_symlink ? symlink : hardlink, is_symlink, !!hardlink)) {
	case PATH_SAFE:
		break;
	case PATH_EMPTY:
		return refuse(x, "entry '%s' names the target directory itself", name);
	case PATH_ABSOLUTE:
		return refuse(x, "entry '%s' has an absolute path", name);
	case PATH_DOTDOT:
		return refuse(x, "entry '%s' has a '..' component", name);
	case PATH_LINK_OUTSIDE:
		return refuse(x, "%s '%s' points outside the target directory ('%s')",
			      hardlink ? "hardlink" : "symlink", name,
			      (hardlink ? hardlink : symlink) ? (hardlink ? hardlink : symlink) : "");
	case PATH_LINK_DOTDOT:
		return refuse(x, "symlink '%s' has a '..' after the start of its target ('%s')",
			      name, symlink);
	}
	tidy_path(name, &x->name);
	if (!x->name.len) {
		if (type != AE_IFDIR)
			return refuse(x, "entry '%s' names the target directory itself", name);
		*skip = 1; /* "./": the caller's directory keeps its mode */
		return 0;
	}
	if ((ret = check_parents(x, "entry", x->name.buf)) < 0)
		return ret;
	if (fstatat(x->root_fd, x->name.buf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !(S_ISDIR(st.st_mode) && type == AE_IFDIR && !hardlink))
		return refuse(x, "entry '%s' appears twice", name);
	if (hardlink) {
		tidy_path(hardlink, &x->link);
		if ((ret = check_parents(x, "hardlink", x->link.buf)) < 0)
			return ret;
		/* a regular file only: a hardlink to a symlink would move the
		 * symlink somewhere its target no longer stays inside */
		if (fstatat(x->root_fd, x->link.buf, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			return refuse(x, "hardlink '%s' points to '%s', which is not a file extracted before it",
				      name, hardlink);
	}
	size = L.archive_entry_size_is_set(e) ? L.archive_entry_size(e) : 0;
	if (x->opts->max_bytes && size > 0 &&
	    (uint64_t)size > x->opts->max_bytes - x->st.bytes)
		return refuse(x, "entry '%s' expands past the limit of %llu bytes", name,
			      (unsigned long long)x->opts->max_bytes);
	return 0;
}

/* Copies the entry's data, counting what really comes out of the
 * decompressor (holes included) rather than what the header said. */
static int copy_data(struct extract_ctx *x, struct archive *in, struct archive *disk,
		     struct archive_entry *e, const char *name)
{
	uint64_t entry_bytes = 0, before = x->st.bytes;
	int64_t declared = L.archive_entry_size_is_set(e) ? L.archive_entry_size(e) : -1;

	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t offset;
		int r = L.archive_read_data_block(in, &buf, &size, &offset);

		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return set_lib_error(x->err, OPS_EXIT_INTEGRITY, in, "read", x->archive_path);
		if (offset < 0)
			offset = 0;
		if ((uint64_t)offset + size > entry_bytes)
			entry_bytes = (uint64_t)offset + size;
		if (x->opts->max_bytes && entry_bytes > x->opts->max_bytes - before)
			return refuse(x, "entry '%s' expands past the limit of %llu bytes", name,
				      (unsigned long long)x->opts->max_bytes);
		/* libarchive would quietly cut the file at the declared size */
		if (declared >= 0 && entry_bytes > (uint64_t)declared)
			return refuse(x, "entry '%s' holds more data than its header declares (%lld bytes)",
				      name, (long long)declared);
		r = (int)L.archive_write_data_block(disk, buf, size, offset); /* libarchive 4: the size */
		if (r < ARCHIVE_OK) {
			/* a failed write(2) (a full disk) is only ARCHIVE_WARN to
			 * libarchive, the file quietly cut short: it fails the unpack */
			int errnum = L.archive_errno(disk);
			if (errnum > 0)
				return ops_error_set(x->err, OPS_EXIT_FAILED, "cannot write '%s': %s",
						     L.archive_entry_pathname(e), ops_strerror(errnum));
			return set_lib_error(x->err, OPS_EXIT_FAILED, disk, "extract", name);
		}
		x->st.bytes = before + entry_bytes;
		if (x->st.bytes >= x->next_progress) {
			x->next_progress = x->st.bytes + ARCH_PROGRESS_STEP;
			if (call_progress(x->opts->progress, x->opts->progress_data, &x->st, name))
				return ops_error_set(x->err, OPS_EXIT_ABORTED,
						     "extraction of '%s' cancelled", x->archive_path);
		}
	}
}

static int extract_entry(struct extract_ctx *x, struct archive *in, struct archive *disk,
			 struct archive_entry *e)
{
	const char *name = L.archive_entry_pathname(e);
	int skip, ret;

	if (x->opts->max_entries && x->st.entries >= x->opts->max_entries)
		return refuse(x, "more than %llu entries", (unsigned long long)x->opts->max_entries);
	if ((ret = check_entry(x, e, &skip)) < 0 || skip)
		return ret;
	name = xstrdup(name); /* the entry's own copy goes with the rewrite below */
	if (!x->opts->preserve_owner || geteuid() != 0)
		L.archive_entry_set_mode(e, L.archive_entry_mode(e) & ~(mode_t)(S_ISUID | S_ISGID));
	strbuf_reset(&x->scratch);
	strbuf_addf(&x->scratch, "%s/%s", x->root.buf, x->name.buf);
	L.archive_entry_copy_pathname(e, x->scratch.buf);
	if (L.archive_entry_hardlink(e)) {
		strbuf_reset(&x->scratch);
		strbuf_addf(&x->scratch, "%s/%s", x->root.buf, x->link.buf);
		L.archive_entry_copy_hardlink(e, x->scratch.buf);
	}
	if (L.archive_write_header(disk, e) < ARCHIVE_WARN) {
		ret = set_lib_error(x->err, OPS_EXIT_FAILED, disk, "extract", name);
		goto out;
	}
	if ((ret = copy_data(x, in, disk, e, name)) < 0)
		goto out;
	ret = L.archive_write_finish_entry(disk);
	/* ARCHIVE_WARN too when the file's last bytes (a sparse tail) could not be written */
	if (ret < ARCHIVE_WARN || (ret == ARCHIVE_WARN && (L.archive_errno(disk) == ENOSPC ||
							   L.archive_errno(disk) == EDQUOT ||
							   L.archive_errno(disk) == EIO))) {
		ret = set_lib_error(x->err, OPS_EXIT_FAILED, disk, "extract", name);
		goto out;
	}
	ret = 0;
	x->st.entries++;
	if (call_progress(x->opts->progress, x->opts->progress_data, &x->st, name))
		ret = ops_error_set(x->err, OPS_EXIT_ABORTED, "extraction of '%s' cancelled",
				    x->archive_path);
out:
	free((char *)name);
	return ret;
}

/* The directory fd's entries other than "." and "..", read through a
 * descriptor of their own (a dup would share, and use up, fd's offset). */
static DIR *open_listing(int fd)
{
	int own = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = own >= 0 ? fdopendir(own) : NULL;

	if (!dir && own >= 0)
		close(own);
	return dir;
}

static struct dirent *next_listed(DIR *dir)
{
	struct dirent *de;

	while ((de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			return de;
	return NULL;
}

/* Removes name inside parent_fd and everything under it, without following
 * symlinks; directories made read-only by the archive are opened up first. */
static void remove_tree_at(int parent_fd, const char *name)
{
	struct dirent *de;
	DIR *dir = NULL;
	int fd;

	if (unlinkat(parent_fd, name, 0) == 0 || errno != EISDIR)
		return;
	fchmodat(parent_fd, name, S_IRWXU, 0);
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		goto out;
	}
	while ((de = next_listed(dir)))
		remove_tree_at(dirfd(dir), de->d_name);
out:
	if (dir)
		closedir(dir);
	unlinkat(parent_fd, name, AT_REMOVEDIR);
}

/* 1 when the directory has no entries, 0 when it has, -1 on error. */
static int dir_is_empty(int fd)
{
	DIR *dir = open_listing(fd);
	int ret;

	if (!dir)
		return -1;
	ret = next_listed(dir) == NULL;
	closedir(dir);
	return ret;
}

static void empty_dir(int fd)
{
	struct dirent *de;
	DIR *dir = open_listing(fd);

	if (!dir)
		return;
	while ((de = next_listed(dir)))
		remove_tree_at(fd, de->d_name);
	closedir(dir);
}

int arch_extract(const char *archive_path, const char *target_dir,
		 const struct arch_extract_opts *opts, struct arch_stats *stats,
		 struct ops_error *err)
{
	static const struct arch_extract_opts no_opts;
	struct extract_ctx x = { 0 };
	struct archive *in = NULL, *disk = NULL;
	struct archive_entry *e;
	char *real = NULL;
	int fd = -1, flags, r, ret, started = 0;

	if ((ret = arch_load(err)) < 0)
		return ret;
	x.archive_path = archive_path;
	x.opts = opts ? opts : &no_opts;
	x.root_fd = -1;
	x.err = err;
	x.next_progress = ARCH_PROGRESS_STEP;
	strbuf_init(&x.root, 0);
	strbuf_init(&x.name, 0);
	strbuf_init(&x.link, 0);
	strbuf_init(&x.scratch, 0);

	/* the real path has no symlinks in it for SECURE_SYMLINKS to trip on */
	if (!(real = realpath(target_dir, NULL)) ||
	    (x.root_fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot extract into '%s': %s", target_dir,
				    ops_strerror(errno));
		goto out;
	}
	strbuf_addstr(&x.root, strcmp(real, "/") ? real : "");
	if ((r = dir_is_empty(x.root_fd)) <= 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot extract into '%s': %s", target_dir,
				    r < 0 ? ops_strerror(errno) : "directory is not empty");
		goto out;
	}
	if ((fd = open(archive_path, O_RDONLY | O_CLOEXEC)) < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", archive_path,
				    ops_strerror(errno));
		goto out;
	}

	in = L.archive_read_new();
	disk = L.archive_write_disk_new();
	if (!in || !disk)
		abort(); /* only on out-of-memory, like xmalloc */
	L.archive_read_support_format_tar(in);
	L.archive_read_support_format_zip(in);
	L.archive_read_support_filter_gzip(in);
	L.archive_read_support_filter_zstd(in);
	/* Our checks above come first; libarchive's own are a second line. Its
	 * NOABSOLUTEPATHS is left out because every path handed to it is
	 * ROOT/NAME, absolute by construction: the alternative, chdir(), would
	 * move the whole process's working directory under other threads. */
	flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		ARCHIVE_EXTRACT_SECURE_SYMLINKS;
	if (x.opts->preserve_owner && geteuid() == 0)
		flags |= ARCHIVE_EXTRACT_OWNER;
	L.archive_write_disk_set_options(disk, flags);
	if (L.archive_read_open_fd(in, fd, ARCH_BLOCK) != ARCHIVE_OK) {
		ret = set_lib_error(err, OPS_EXIT_INTEGRITY, in, "read", archive_path);
		goto out;
	}
	started = 1;
	for (;;) {
		r = L.archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			ret = set_lib_error(err, OPS_EXIT_INTEGRITY, in, "read", archive_path);
			goto out;
		}
		if ((ret = extract_entry(&x, in, disk, e)) < 0)
			goto out;
	}
	/* directory modes and times are set at close */
	if (L.archive_write_close(disk) != ARCHIVE_OK) {
		ret = set_lib_error(err, OPS_EXIT_FAILED, disk, "extract into", target_dir);
		goto out;
	}
	if (stats)
		*stats = x.st;
out:
	if (in)
		L.archive_read_free(in);
	if (disk)
		L.archive_write_free(disk);
	if (ret < 0 && started)
		empty_dir(x.root_fd);
	if (fd >= 0)
		close(fd);
	if (x.root_fd >= 0)
		close(x.root_fd);
	free(real);
	strbuf_release(&x.root);
	strbuf_release(&x.name);
	strbuf_release(&x.link);
	strbuf_release(&x.scratch);
	return ret;
}
