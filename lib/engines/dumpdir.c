#include "engines/dumpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/hash.h"
#include "base/exitcode.h"
#include "base/strbuf.h"
#include "system/clock.h"
#include "system/fs.h"

#define FOLLOW_CHUNK (1024 * 1024)
#define PUNCH_EVERY (16 * 1024 * 1024) /* give back the disk space of what was read */
#define TAIL_WAIT_MS 5                 /* at the end of a file still being written */

void dd_files_release(struct dd_file *files, size_t n)
{
	for (size_t i = 0; files && i < n; i++)
		free(files[i].name);
	free(files);
}

int dd_is_data_name(const char *name)
{
	const char *p = name;
	if (starts_with(name, "blob_"))
		p = name + 5;
	if (!ends_with(name, ".dat") || p == name + strlen(name) - 4)
		return 0;
	for (; p < name + strlen(name) - 4; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

/* Every signal blocked in our threads: SIGINT stays with the caller's thread,
 * and a write to a pipe whose reader died fails with EPIPE. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1024 * 1024);
	r = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/* ---- backup: following pg_dump ---- */

struct follow_file {
	char *name;             /* "3021.dat" */
	int taken;              /* a worker has it */
	atomic_int closed;      /* pg_dump has closed it (or exited) */
	int done;
	uint64_t in_bytes, out_bytes;
	char sha256[65];
};

struct dd_follow {
	char *dir;
	enum zs_codec codec;
	int level, zthreads;
	int ino;                /* inotify descriptor (lost events are harmless: dd_follow_finish
				 * reads the directory again and marks every file closed) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct follow_file **files;
	size_t nfiles, alloc;
	int finishing;          /* no more files will come: workers leave when none is left */
	atomic_int stop;        /* abort */
	struct ops_error err;   /* the first worker failure (under lock) */
	atomic_int failed;
	atomic_uint_fast64_t bytes;
	pthread_t *threads;
	int nthreads;
};

static void follow_fail(struct dd_follow *f, const struct ops_error *e)
{
	pthread_mutex_lock(&f->lock);
	if (!atomic_load(&f->failed))
		ops_error_set(&f->err, e->code, "%s", e->msg.buf);
	atomic_store(&f->failed, 1);
	pthread_mutex_unlock(&f->lock);
}

/* Compresses one data file while it is written; removes it when done. */
static int follow_one(struct dd_follow *f, struct follow_file *ff, char *buf, struct ops_error *err)
{
	char *src = xstrfmt("%s/%s", f->dir, ff->name);
	char *dst = xstrfmt("%s%s", src, zs_codec_suffix(f->codec));
	struct zs_writer w = ZS_WRITER_INIT;
	uint64_t off = 0, punched = 0;
	int in = -1, out = -1, ret = 0;

	in = open(src, O_RDWR | O_CLOEXEC); /* writable for hole punching */
	if (in < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot open '%s': %s", src, ops_strerror(errno));
		goto out;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", dst, ops_strerror(errno));
		goto out;
	}
	ret = zs_writer_open(&w, out, dst, f->codec, f->level, f->zthreads, err);
	while (ret == 0) {
		int closed = atomic_load(&ff->closed);
		ssize_t n;

		if (atomic_load(&f->stop)) {
			ret = ops_error_set(err, OPS_EXIT_ABORTED, "interrupted");
			break;
		}
		n = read(in, buf, FOLLOW_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", src, ops_strerror(errno));
			break;
		}
		if (n > 0) {
			ret = zs_write(&w, buf, (size_t)n, err);
			off += (uint64_t)n;
			atomic_fetch_add(&f->bytes, (uint64_t)n);
			if (off - punched >= PUNCH_EVERY) {
				/* best effort: a filesystem without holes keeps the blocks */
				fallocate(in, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)punched,
					  (off_t)(off - punched));
				punched = off;
			}
			continue;
		}
		if (closed)
			break; /* the end, read after pg_dump had closed the file */
		pthread_mutex_lock(&f->lock);
		if (!atomic_load(&ff->closed) && !atomic_load(&f->stop)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += TAIL_WAIT_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&f->cond, &f->lock, &ts);
		}
		pthread_mutex_unlock(&f->lock);
	}
	if (ret == 0)
		ret = zs_writer_close(&w, ff->sha256, err);
	if (ret == 0 && fsync(out) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot sync '%s': %s", dst, ops_strerror(errno));
	if (ret == 0 && unlink(src) < 0)
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot remove '%s': %s", src, ops_strerror(errno));
	if (ret == 0) {
		ff->in_bytes = w.in_bytes;
		ff->out_bytes = w.out_bytes;
	}
out:
	zs_writer_release(&w);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(src);
	free(dst);
	return ret;
}

static void *follow_worker(void *arg)
{
	struct dd_follow *f = arg;
	char *buf = xmalloc(FOLLOW_CHUNK);

	for (;;) {
		struct follow_file *ff = NULL;
		struct ops_error e = OPS_ERROR_INIT;

		pthread_mutex_lock(&f->lock);
		for (;;) {
			for (size_t i = 0; i < f->nfiles && !ff; i++)
				if (!f->files[i]->taken)
					ff = f->files[i];
			if (ff || f->finishing || atomic_load(&f->stop))
				break;
			pthread_cond_wait(&f->cond, &f->lock);
		}
		if (ff)
			ff->taken = 1;
		pthread_mutex_unlock(&f->lock);
		if (!ff || atomic_load(&f->stop))
			break;
		if (follow_one(f, ff, buf, &e) < 0) {
			follow_fail(f, &e);
			ops_error_release(&e);
			break;
		}
		pthread_mutex_lock(&f->lock);
		ff->done = 1;
		pthread_mutex_unlock(&f->lock);
	}
	free(buf);
	return NULL;
}

/* Under f->lock. */
static struct follow_file *follow_find(struct dd_follow *f, const char *name)
{
	for (size_t i = 0; i < f->nfiles; i++)
		if (!strcmp(f->files[i]->name, name))
			return f->files[i];
	return NULL;
}

static void follow_add(struct dd_follow *f, const char *name)
{
	struct follow_file *ff;

	pthread_mutex_lock(&f->lock);
	if (!follow_find(f, name)) {
		if (f->nfiles == f->alloc) {
			f->alloc = f->alloc ? 2 * f->alloc : 64;
			f->files = xrealloc(f->files, f->alloc * sizeof(*f->files));
		}
		ff = xcalloc(1, sizeof(*ff));
		ff->name = xstrdup(name);
		f->files[f->nfiles++] = ff;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
}

static void follow_closed(struct dd_follow *f, const char *name)
{
	struct follow_file *ff;

	pthread_mutex_lock(&f->lock);
	ff = follow_find(f, name);
	if (ff) {
		atomic_store(&ff->closed, 1);
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
}

void dd_follow_abort(struct dd_follow *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	atomic_store(&f->stop, 1);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	for (int i = 0; i < f->nthreads; i++)
		pthread_join(f->threads[i], NULL);
	for (size_t i = 0; i < f->nfiles; i++) {
		free(f->files[i]->name);
		free(f->files[i]);
	}
	if (f->ino >= 0)
		close(f->ino);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	ops_error_release(&f->err);
	free(f->files);
	free(f->threads);
	free(f->dir);
	free(f);
}

int dd_follow_start(struct dd_follow **out, const char *dir, enum zs_codec codec, int level,
		    int workers, int zthreads, struct ops_error *err)
{
	struct dd_follow *f = xcalloc(1, sizeof(*f));
	int ret = 0;

	*out = NULL;
	f->dir = xstrdup(dir);
	f->codec = codec;
	f->level = level;
	f->zthreads = zthreads;
	f->ino = -1;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	ops_error_init(&f->err);
	if (codec != ZS_NONE) {
		f->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (f->ino < 0 || inotify_add_watch(f->ino, dir, IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot watch '%s': %s", dir, ops_strerror(errno));
			goto out;
		}
		f->threads = xcalloc((size_t)(workers > 0 ? workers : 1), sizeof(*f->threads));
		for (int i = 0; i < (workers > 0 ? workers : 1); i++) {
			if (start_thread(&f->threads[i], follow_worker, f) != 0) {
				ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot start a compression thread");
				goto out;
			}
			f->nthreads++;
		}
	}
out:
	if (ret < 0)
		dd_follow_abort(f);
	else
		*out = f;
	return ret;
}

int dd_follow_poll(struct dd_follow *f, int wait_ms, struct ops_error *err)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd p;
	ssize_t n;

	if (f->ino < 0) {
		if (wait_ms > 0)
			clock_sleep_ms(wait_ms);
		return 0;
	}
	if (atomic_load(&f->failed))
		goto failed;
	p.fd = f->ino;
	p.events = POLLIN;
	if (poll(&p, 1, wait_ms) <= 0)
		return 0;
	while ((n = read(f->ino, buf, sizeof(buf))) > 0) {
		for (char *q = buf; q < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)q;
			q += sizeof(*ev) + ev->len;
			if (!ev->len || !dd_is_data_name(ev->name))
				continue;
			if (ev->mask & (IN_CREATE | IN_MOVED_TO))
				follow_add(f, ev->name);
			if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
				follow_closed(f, ev->name);
		}
	}
	if (!atomic_load(&f->failed))
		return 0;
failed:
	pthread_mutex_lock(&f->lock);
	n = ops_error_set(err, f->err.code, "%s", f->err.msg.buf);
	pthread_mutex_unlock(&f->lock);
	return (int)n;
}

uint64_t dd_follow_bytes(const struct dd_follow *f)
{
	return atomic_load(&((struct dd_follow *)f)->bytes);
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct dd_file *)a)->name, ((const struct dd_file *)b)->name);
}

int dd_follow_finish(struct dd_follow *f, struct dd_file **files, size_t *nfiles, uint64_t *plain_bytes,
		     struct ops_error *err)
{
	struct dd_file *list = NULL;
	size_t n = 0, alloc = 0;
	uint64_t plain = 0;
	DIR *d = NULL;
	struct dirent *de;
	int ret = 0;

	*files = NULL;
	*nfiles = 0;
	ret = dd_follow_poll(f, 0, err);
	if (ret < 0)
		goto out;
	if (f->ino >= 0) {
		/* pg_dump has exited: every file it wrote is complete, seen or not */
		d = opendir(f->dir);
		while (d && (de = readdir(d)))
			if (dd_is_data_name(de->d_name))
				follow_add(f, de->d_name);
		if (d)
			closedir(d);
		d = NULL;
		pthread_mutex_lock(&f->lock);
		for (size_t i = 0; i < f->nfiles; i++)
			atomic_store(&f->files[i]->closed, 1);
		f->finishing = 1;
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		for (int i = 0; i < f->nthreads; i++)
			pthread_join(f->threads[i], NULL);
		f->nthreads = 0;
		if (atomic_load(&f->failed)) {
			ret = ops_error_set(err, f->err.code, "%s", f->err.msg.buf);
			goto out;
		}
	}
	d = opendir(f->dir);
	if (!d) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot read '%s': %s", f->dir, ops_strerror(errno));
		goto out;
	}
	while ((de = readdir(d))) {
		struct follow_file *ff = NULL;
		char *path;
		char suffixless[NAME_MAX + 1];
		size_t len = strlen(de->d_name), sl = strlen(zs_codec_suffix(f->codec));

		if (de->d_name[0] == '.')
			continue;
		if (f->codec != ZS_NONE && dd_is_data_name(de->d_name)) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "'%s/%s' was left uncompressed", f->dir, de->d_name);
			goto out;
		}
		if (n == alloc) {
			alloc = alloc ? 2 * alloc : 64;
			list = xrealloc(list, alloc * sizeof(*list));
		}
		memset(&list[n], 0, sizeof(list[n]));
		list[n].name = xstrdup(de->d_name);
		n++;
		if (sl && len > sl && ends_with(de->d_name, zs_codec_suffix(f->codec))) {
			memcpy(suffixless, de->d_name, len - sl);
			suffixless[len - sl] = '\0';
			ff = follow_find(f, suffixless);
		}
		if (ff && ff->done) {
			list[n - 1].size = ff->out_bytes;
			memcpy(list[n - 1].sha256, ff->sha256, 65);
			plain += ff->in_bytes;
			continue;
		}
		/* toc.dat, blobs.toc, and everything when pg_dump's files stay as they are */
		path = xstrfmt("%s/%s", f->dir, de->d_name);
		ret = hash_sha256_file(path, list[n - 1].sha256, &list[n - 1].size, err);
		if (ret == 0) {
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || fsync(fd) < 0)
				ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot sync '%s': %s", path,
						    ops_strerror(errno));
			if (fd >= 0)
				close(fd);
		}
		free(path);
		if (ret < 0)
			goto out;
		plain += list[n - 1].size;
	}
	ret = fs_fsync_dir(f->dir, err);
	if (ret < 0)
		goto out;
	if (n)
		qsort(list, n, sizeof(*list), cmp_file);
	*files = list;
	*nfiles = n;
	*plain_bytes = plain;
	list = NULL;
out:
	if (d)
		closedir(d);
	dd_files_release(list, n);
	dd_follow_abort(f);
	return ret;
}

/* ---- restore: a plain directory for pg_restore ---- */

struct unpack_job {
	const struct dd_file *file;
	char *src, *dst;
	int plain;             /* copied (hashed on the way), not decompressed */
};

struct unpack {
	struct unpack_job *jobs;
	size_t njobs;
	size_t next;           /* under lock */
	pthread_mutex_t lock;
	atomic_int stop;
	struct ops_error err;  /* the first failure (under lock) */
	atomic_int failed;
	const atomic_int *cancel;
};

/* Copies in to out, hashing what it reads. */
static int copy_fd(int in, const char *in_name, int out, const char *out_name, char sha256_hex[65],
		   struct ops_error *err)
{
	struct hash_sha256_ctx h;
	unsigned char digest[32];
	char *buf = xmalloc(FOLLOW_CHUNK);
	ssize_t n;
	int ret = 0;

	hash_sha256_init(&h);
	while ((n = read(in, buf, FOLLOW_CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "cannot read '%s': %s", in_name, ops_strerror(errno));
			goto out;
		}
		hash_sha256_update(&h, buf, (size_t)n);
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, buf + done, (size_t)(n - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot write '%s': %s", out_name,
						    ops_strerror(errno));
				goto out;
			}
			done += w;
		}
	}
	hash_sha256_final(&h, digest);
	hash_hex(digest, 32, sha256_hex);
out:
	hash_sha256_release(&h);
	free(buf);
	return ret;
}

static int unpack_one(struct unpack_job *j, struct ops_error *err)
{
	struct zs_decompress_opts zo;
	struct zs_decompress_stats st;
	int in = -1, out = -1, ret = 0;

	in = open(j->src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "cannot read '%s': %s", j->src, ops_strerror(errno));
		goto out;
	}
	out = open(j->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot create '%s': %s", j->dst, ops_strerror(errno));
		goto out;
	}
	memset(&st, 0, sizeof(st));
	if (j->plain) {
		ret = copy_fd(in, j->src, out, j->dst, st.in_sha256, err);
	} else {
		memset(&zo, 0, sizeof(zo));
		zo.in_name = j->src;
		zo.out_name = j->dst;
		ret = zs_decompress(in, out, &zo, &st, err);
	}
	if (ret == 0 && strcmp(st.in_sha256, j->file->sha256))
		ret = ops_error_set(err, OPS_EXIT_INTEGRITY, "'%s' changed since it was verified", j->src);
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ret;
}

static void *unpack_worker(void *arg)
{
	struct unpack *u = arg;

	for (;;) {
		struct unpack_job *j = NULL;
		struct ops_error e = OPS_ERROR_INIT;

		pthread_mutex_lock(&u->lock);
		if (u->next < u->njobs && !atomic_load(&u->failed))
			j = &u->jobs[u->next++];
		pthread_mutex_unlock(&u->lock);
		if (!j)
			break;
		if (unpack_one(j, &e) < 0) {
			pthread_mutex_lock(&u->lock);
			if (!atomic_load(&u->failed))
				ops_error_set(&u->err, e.code, "%s", e.msg.buf);
			atomic_store(&u->failed, 1);
			pthread_mutex_unlock(&u->lock);
		}
		ops_error_release(&e);
	}
	return NULL;
}

static int cmp_job_size(const void *a, const void *b)
{
	const struct unpack_job *x = a, *y = b;
	return x->file->size < y->file->size ? 1 : x->file->size > y->file->size ? -1 : 0;
}

int dd_unpack(const char *src_dir, const struct dd_file *files, size_t nfiles, const char *dst_dir,
	      int workers, struct ops_error *err)
{
	struct unpack u;
	pthread_t *threads = NULL;
	int nthreads = 0, ret = 0;

	memset(&u, 0, sizeof(u));
	pthread_mutex_init(&u.lock, NULL);
	ops_error_init(&u.err);
	u.jobs = xcalloc(nfiles + 1, sizeof(*u.jobs));
	for (size_t i = 0; i < nfiles; i++) {
		const char *name = files[i].name;
		size_t len = strlen(name);
		struct unpack_job *j = &u.jobs[u.njobs++];
		j->file = &files[i];
		j->src = xstrfmt("%s/%s", src_dir, name);
		/* NNNN.dat.zst and NNNN.dat.gz become NNNN.dat; toc.dat, blobs.toc
		 * and the data files of an uncompressed dump are copied */
		size_t sl = ends_with(name, ".zst") ? 4 : ends_with(name, ".gz") ? 3 : 0;
		j->plain = !sl || len <= sl;
		j->dst = !j->plain ? xstrfmt("%s/%.*s", dst_dir, (int)(len - sl), name)
				   : xstrfmt("%s/%s", dst_dir, name);
	}
	qsort(u.jobs, u.njobs, sizeof(*u.jobs), cmp_job_size); /* the biggest first */
	if (workers < 1)
		workers = 1;
	threads = xcalloc((size_t)workers, sizeof(*threads));
	for (int i = 0; i < workers; i++) {
		if (start_thread(&threads[i], unpack_worker, &u) != 0) {
			pthread_mutex_lock(&u.lock);
			u.next = u.njobs; /* the others stop */
			pthread_mutex_unlock(&u.lock);
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot start a decompression thread");
			break;
		}
		nthreads++;
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	if (ret == 0 && atomic_load(&u.failed))
		ret = ops_error_set(err, u.err.code, "%s", u.err.msg.buf);
	for (size_t i = 0; i < u.njobs; i++) {
		free(u.jobs[i].src);
		free(u.jobs[i].dst);
	}
	free(u.jobs);
	free(threads);
	ops_error_release(&u.err);
	pthread_mutex_destroy(&u.lock);
	return ret;
}
