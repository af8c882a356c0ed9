/* Unit tests for lib/adapters/archive: create/extract round trips (tar, gzip,
 * zstd, zip) and hostile archives, built with python3, that must be refused
 * without a byte landing outside the target directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adapters/archive.h"
#include "base/exitcode.h"
#include "system/fs.h"
#include "system/proc.h"

#define MTIME 1700000000

/* Builds the archive named by argv[1] at argv[2]; argv[3] is the test dir. */
static const char *make_archive_py =
	"import io, sys, tarfile, zipfile\n"
	"case, out, base = sys.argv[1], sys.argv[2], sys.argv[3]\n"
	"def info(name, kind=tarfile.REGTYPE, link='', mode=0o644):\n"
	"    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = link; ti.mode = mode\n"
	"    ti.mtime = 1700000000; return ti\n"
	"def reg(name, data=b'x'):\n"
	"    ti = info(name); ti.size = len(data); return (ti, data)\n"
	"def sym(name, target): return (info(name, tarfile.SYMTYPE, target), None)\n"
	"def hard(name, target): return (info(name, tarfile.LNKTYPE, target), None)\n"
	"def d(name): return (info(name, tarfile.DIRTYPE, mode=0o755), None)\n"
	"def dev(name, kind):\n"
	"    ti = info(name, kind); ti.devmajor = 1; ti.devminor = 3; return (ti, None)\n"
	"def tar(members):\n"
	"    with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as t:\n"
	"        for ti, data in members:\n"
	"            t.addfile(ti, io.BytesIO(data) if data is not None else None)\n"
	"def zip_(names):\n"
	"    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n"
	"        for n, data in names: z.writestr(n, data)\n"
	"ok = reg('ok.txt')\n"
	"if case == 'absolute': tar([ok, reg(base + '/abs-victim')])\n"
	"elif case == 'dotdot': tar([ok, d('sub'), reg('sub/../../escape.txt')])\n"
	"elif case == 'symlink-etc': tar([ok, sym('etc', '/etc'), reg('etc/opsctl-pwned')])\n"
	"elif case == 'symlink-up': tar([ok, d('a'), sym('a/l', '../../escape')])\n"
	"elif case == 'symlink-middle': tar([ok, d('sub'), sym('sub/l', 'x/../../y')])\n"
	"elif case == 'through-symlink': tar([ok, d('sub'), sym('l', 'sub'), reg('l/x')])\n"
	"elif case == 'hardlink-passwd': tar([ok, hard('pw', '/etc/passwd')])\n"
	"elif case == 'hardlink-up': tar([ok, hard('pw', '../escape')])\n"
	"elif case == 'hardlink-ok': tar([ok, d('d'), hard('d/h', './ok.txt')])\n"
	"elif case == 'hardlink-symlink': tar([ok, sym('s', 'ok.txt'), hard('h', 's')])\n"
	"elif case == 'chardev': tar([ok, d('dev'), dev('dev/null', tarfile.CHRTYPE)])\n"
	"elif case == 'fifo': tar([ok, dev('pipe', tarfile.FIFOTYPE)])\n"
	"elif case == 'twice': tar([ok, reg('x'), reg('x', b'second')])\n"
	"elif case == 'not-dir': tar([ok, reg('f'), reg('f/x')])\n"
	"elif case == 'total': tar([ok, reg('a', b'a' * 600000), reg('b', b'b' * 600000)])\n"
	"elif case == 'big':\n"
	"    ti = info('big'); ti.size = 2 << 30\n"
	"    with open(out, 'wb') as f: f.write(ti.tobuf(tarfile.PAX_FORMAT) + bytes(1024))\n"
	"elif case == 'zip': zip_([('a.txt', 'alpha\\n'), ('sub/b.txt', 'beta\\n')])\n"
	"elif case == 'zip-slip': zip_([('ok.txt', 'x'), ('../../evil.txt', 'evil')])\n"
	"elif case == 'zip-lying':\n"
	"    zip_([('ok.txt', 'x'), ('bomb', bytes(2 << 20))])\n"
	"    raw = bytearray(open(out, 'rb').read())\n"
	"    for sig, off in ((b'PK\\x03\\x04', 22), (b'PK\\x01\\x02', 24)):\n"
	"        i = raw.find(sig)\n"
	"        while i >= 0:\n"
	"            if int.from_bytes(raw[i + off:i + off + 4], 'little') == 2 << 20:\n"
	"                raw[i + off:i + off + 4] = (100).to_bytes(4, 'little')\n"
	"            i = raw.find(sig, i + 1)\n"
	"    open(out, 'wb').write(raw)\n"
	"else: sys.exit('unknown case ' + case)\n";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup_dir(void **state)
{
	char *dir = xstrdup("/tmp/opsctl-test-arch-XXXXXX");
	if (!mkdtemp(dir) || chmod(dir, 0755) < 0)
		return -1;
	*state = dir;
	return 0;
}

static int teardown_dir(void **state)
{
	nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	return 0;
}

static void write_file(const char *path, const char *text, int mode)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct timespec times[2] = { { MTIME, 0 }, { MTIME, 0 } };
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, (mode_t)mode), 0);
	assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
	ops_error_release(&err);
}

static char *slurp(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	assert_int_equal(fs_read_file(path, &sb, 0, &err), 0);
	ops_error_release(&err);
	return strbuf_detach(&sb, NULL);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void assert_mode(const char *path, int mode)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, mode);
}

static char *mkdir_in(const char *dir, const char *name)
{
	char *path = xstrfmt("%s/%s", dir, name);
	assert_int_equal(mkdir(path, 0755), 0);
	return path;
}

static void make_archive(const char *dir, const char *kind, const char *out)
{
	const char *argv[] = { "python3", "-c", make_archive_py, kind, out, dir, NULL };
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf errout = STRBUF_INIT;
	struct proc_opts opts = { 0 };

	opts.errout = &errout;
	if (proc_run_checked(argv, &opts, NULL, &err) < 0)
		fail_msg("python3 could not build '%s': %s\n%s", kind, err.msg.buf, errout.buf);
	strbuf_release(&errout);
	ops_error_release(&err);
}

/* A tree with every kind of entry arch_create keeps:
 *   app/ (0750)  app/a.txt (0640)  app/bin/ (0700)  app/bin/run.sh (0755)
 *   app/empty/ (0755)  app/link -> a.txt  app/bin/up -> ../a.txt */
static char *make_tree(const char *dir)
{
	char *app = xstrfmt("%s/src/app", dir);
	char *p;

	free(mkdir_in(dir, "src"));
	assert_int_equal(mkdir(app, 0750), 0);
	assert_int_equal(chmod(app, 0750), 0);
	p = xstrfmt("%s/a.txt", app);
	write_file(p, "alpha\n", 0640);
	free(p);
	p = xstrfmt("%s/bin", app);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xstrfmt("%s/bin/run.sh", app);
	write_file(p, "#!/bin/sh\necho run\n", 0755);
	free(p);
	p = xstrfmt("%s/bin/up", app);
	assert_int_equal(symlink("../a.txt", p), 0);
	free(p);
	p = xstrfmt("%s/empty", app);
	assert_int_equal(mkdir(p, 0755), 0);
	free(p);
	p = xstrfmt("%s/link", app);
	assert_int_equal(symlink("a.txt", p), 0);
	free(p);
	return app;
}

/* Checks the tree of make_tree as extracted at root/prefix. */
static void check_tree(const char *root, const char *prefix)
{
	char *app = xstrfmt("%s/%s", root, prefix);
	char *p, *text, link[64];
	struct stat st;
	ssize_t n;

	assert_mode(app, 0750);
	p = xstrfmt("%s/a.txt", app);
	assert_mode(p, 0640);
	text = slurp(p);
	assert_string_equal(text, "alpha\n");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mtime, MTIME);
	free(text);
	free(p);
	p = xstrfmt("%s/bin", app);
	assert_mode(p, 0700);
	free(p);
	p = xstrfmt("%s/bin/run.sh", app);
	assert_mode(p, 0755);
	text = slurp(p);
	assert_string_equal(text, "#!/bin/sh\necho run\n");
	free(text);
	free(p);
	p = xstrfmt("%s/empty", app);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	free(p);
	p = xstrfmt("%s/link", app);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	n = readlink(p, link, sizeof(link) - 1);
	assert_int_equal(n, 5);
	link[n] = '\0';
	assert_string_equal(link, "a.txt");
	free(p);
	p = xstrfmt("%s/bin/up", app);
	text = slurp(p); /* through the symlink, inside the tree */
	assert_string_equal(text, "alpha\n");
	free(text);
	free(p);
	free(app);
}

static void round_trip(const char *dir, enum arch_compression compression,
		       const unsigned char *magic, size_t magic_len, size_t magic_at)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_create_opts copts = { 0 };
	struct arch_extract_opts xopts = { 0 };
	struct arch_stats st = { 0 }, xst = { 0 };
	char *app = make_tree(dir);
	char *out = xstrfmt("%s/backup.tar", dir);
	char *target = mkdir_in(dir, "restore");
	const char *paths[] = { app };
	unsigned char head[512];
	int fd;

	copts.compression = compression;
	assert_int_equal(arch_create(out, paths, 1, &copts, &st, &err), 0);
	assert_int_equal(st.entries, 7);
	assert_int_equal(st.bytes, 6 + 19);
	assert_mode(out, 0600);
	fd = open(out, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, head, sizeof(head)) >= (ssize_t)(magic_at + magic_len));
	close(fd);
	assert_memory_equal(head + magic_at, magic, magic_len);

	assert_int_equal(arch_extract(out, target, &xopts, &xst, &err), 0);
	assert_int_equal(xst.entries, 7);
	assert_int_equal(xst.bytes, 6 + 19);
	/* "/tmp/x/src/app" is stored as "tmp/x/src/app" */
	check_tree(target, app + 1);

	free(target);
	free(out);
	free(app);
	ops_error_release(&err);
}

static void test_round_trip_tar(void **state)
{
	round_trip(*state, ARCH_COMPRESS_NONE, (const unsigned char *)"ustar", 5, 257);
}

static void test_round_trip_gzip(void **state)
{
	static const unsigned char gz[] = { 0x1f, 0x8b };
	round_trip(*state, ARCH_COMPRESS_GZIP, gz, sizeof(gz), 0);
}

static void test_round_trip_zstd(void **state)
{
	static const unsigned char zst[] = { 0x28, 0xb5, 0x2f, 0xfd };
	round_trip(*state, ARCH_COMPRESS_ZSTD, zst, sizeof(zst), 0);
}

/* Relative paths are stored as given, read from base_dir; standard tar reads
 * the result. */
static void test_create_relative_names(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_create_opts opts = { 0 };
	struct strbuf listing = STRBUF_INIT;
	char *app = make_tree(dir);
	char *src = xstrfmt("%s/src", dir);
	char *out = xstrfmt("%s/rel.tar.gz", dir);
	const char *paths[] = { "./app//bin/" , "app/a.txt" };
	const char *argv[] = { "tar", "-tzf", out, NULL };
	struct proc_opts popts = { 0 };

	opts.compression = ARCH_COMPRESS_GZIP;
	opts.level = 9;
	opts.base_dir = src;
	assert_int_equal(arch_create(out, paths, 2, &opts, NULL, &err), 0);
	popts.out = &listing;
	assert_int_equal(proc_run_checked(argv, &popts, NULL, &err), 0);
	assert_string_equal(listing.buf, "app/bin/\napp/bin/run.sh\napp/bin/up\napp/a.txt\n");

	strbuf_release(&listing);
	free(out);
	free(src);
	free(app);
	ops_error_release(&err);
}

static void test_create_errors(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	char *out = xstrfmt("%s/x.tar", dir);
	char *missing = xstrfmt("%s/missing", dir);
	char *sock_dir = mkdir_in(dir, "run");
	char *sock_path = xstrfmt("%s/app.sock", sock_dir);
	const char *p1[] = { missing };
	const char *p2[] = { "/" };
	const char *p3[] = { "a/../../etc" };
	const char *p4[] = { sock_dir };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char *msg;
	int s;

	assert_int_equal(arch_create(out, p1, 1, NULL, NULL, &err), -OPS_EXIT_FAILED);
	msg = xstrfmt("cannot read '%s': no such file or directory", missing);
	assert_string_equal(err.msg.buf, msg);
	free(msg);
	assert_int_equal(fs_exists(out), 0); /* no half archive left behind */

	assert_int_equal(arch_create(out, p2, 1, NULL, NULL, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "cannot archive '/': the path names no file");
	assert_int_equal(arch_create(out, p3, 1, NULL, NULL, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "cannot archive 'a/../../etc': the path has a '..' component");
	assert_int_equal(fs_exists(out), 0);

	s = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(s >= 0);
	strlcpy_s(sun.sun_path, sock_path, sizeof(sun.sun_path));
	assert_int_equal(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(arch_create(out, p4, 1, NULL, NULL, &err), -OPS_EXIT_FAILED);
	msg = xstrfmt("cannot archive '%s': sockets, fifos and devices are not supported", sock_path);
	assert_string_equal(err.msg.buf, msg);
	free(msg);
	close(s);

	/* the output must be new */
	write_file(out, "keep", 0644);
	assert_int_equal(arch_create(out, p4, 1, NULL, NULL, &err), -OPS_EXIT_FAILED);
	msg = xstrfmt("cannot create '%s': file exists", out);
	assert_string_equal(err.msg.buf, msg);
	free(msg);
	msg = slurp(out);
	assert_string_equal(msg, "keep");
	free(msg);

	free(sock_path);
	free(sock_dir);
	free(missing);
	free(out);
	ops_error_release(&err);
}

/* root reads everything, so the unreadable file is tried as nobody */
static void test_create_unreadable_file(void **state)
{
	const char *dir = *state;
	char *app = mkdir_in(dir, "keys");
	char *secret = xstrfmt("%s/secret.key", app);
	char *expect = xstrfmt("cannot read '%s': permission denied", secret);
	char got[512] = "";
	int pipefd[2], status;
	ssize_t n;
	pid_t pid;

	write_file(secret, "k", 0000);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(app, 0755), 0);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ops_error err = OPS_ERROR_INIT;
		const char *paths[] = { app };
		int devnull = open("/dev/null", O_WRONLY);
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(2);
		if (arch_create_fd(devnull, paths, 1, NULL, NULL, &err) != -OPS_EXIT_FAILED)
			_exit(3);
		if (write(pipefd[1], err.msg.buf, err.msg.len) < 0)
			_exit(4);
		_exit(0);
	}
	close(pipefd[1]);
	n = read(pipefd[0], got, sizeof(got) - 1);
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(n > 0);
	got[n] = '\0';
	assert_string_equal(got, expect);
	free(expect);
	free(secret);
	free(app);
}

/* A symlink given as a path is stored as a symlink, not followed; the output
 * file inside an archived directory is skipped instead of archiving itself. */
static void test_create_symlink_path_and_self(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_stats st;
	char *link = xstrfmt("%s/current", dir);
	char *out = xstrfmt("%s/self.tar", dir);
	char *target = mkdir_in(dir, "x");
	char *got, buf[64];
	const char *paths[] = { link, dir };
	ssize_t n;

	assert_int_equal(symlink("releases/r1", link), 0); /* dangling */
	assert_int_equal(arch_create(out, paths, 1, NULL, &st, &err), 0);
	assert_int_equal(st.entries, 1);
	assert_int_equal(unlink(out), 0);

	assert_int_equal(arch_create(out, paths + 1, 1, NULL, &st, &err), 0);
	assert_int_equal(st.entries, 3); /* the directory, current, x/ - not self.tar */
	assert_int_equal(arch_extract(out, target, NULL, NULL, &err), 0);
	got = xstrfmt("%s/%s/current", target, dir + 1);
	n = readlink(got, buf, sizeof(buf) - 1);
	assert_int_equal(n, strlen("releases/r1"));
	buf[n] = '\0';
	assert_string_equal(buf, "releases/r1");
	free(got);
	got = xstrfmt("%s/%s/self.tar", target, dir + 1);
	assert_int_equal(fs_exists(got), 0);
	free(got);
	free(target);
	free(out);
	free(link);
	ops_error_release(&err);
}

static int cancel_after_two(const struct arch_progress *p, void *data)
{
	int *calls = data;
	(*calls)++;
	return p->entries >= 2;
}

static void test_progress_and_cancel(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_create_opts opts = { 0 };
	char *app = make_tree(dir);
	char *out = xstrfmt("%s/c.tar", dir);
	const char *paths[] = { app };
	int calls = 0;

	opts.progress = cancel_after_two;
	opts.progress_data = &calls;
	assert_int_equal(arch_create(out, paths, 1, &opts, NULL, &err), -OPS_EXIT_ABORTED);
	assert_int_equal(calls, 1); /* app/ is entry 1, a.txt entry 2 */
	assert_true(starts_with(err.msg.buf, "archive cancelled at '"));
	assert_true(ends_with(err.msg.buf, "/src/app/a.txt'"));
	assert_int_equal(fs_exists(out), 0);
	free(out);
	free(app);
	ops_error_release(&err);
}

static void test_extract_zip(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_stats st;
	char *zip = xstrfmt("%s/a.zip", dir);
	char *target = mkdir_in(dir, "out");
	char *p, *text;

	make_archive(dir, "zip", zip);
	assert_int_equal(arch_extract(zip, target, NULL, &st, &err), 0);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.bytes, 11);
	p = xstrfmt("%s/sub/b.txt", target);
	text = slurp(p);
	assert_string_equal(text, "beta\n");
	free(text);
	free(p);
	free(target);
	free(zip);
	ops_error_release(&err);
}

/* A hardlink to a file extracted before it is fine: the same inode. */
static void test_extract_hardlink_inside(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	char *tar = xstrfmt("%s/h.tar", dir);
	char *target = mkdir_in(dir, "out");
	char *a = xstrfmt("%s/ok.txt", target), *b = xstrfmt("%s/d/h", target);
	struct stat sa, sb;

	make_archive(dir, "hardlink-ok", tar);
	assert_int_equal(arch_extract(tar, target, NULL, NULL, &err), 0);
	assert_int_equal(stat(a, &sa), 0);
	assert_int_equal(stat(b, &sb), 0);
	assert_int_equal(sa.st_ino, sb.st_ino);
	assert_int_equal(sa.st_nlink, 2);
	free(b);
	free(a);
	free(target);
	free(tar);
	ops_error_release(&err);
}

static void test_extract_strips_setuid(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	char *src = mkdir_in(dir, "s");
	char *bin = xstrfmt("%s/tool", src);
	char *out = xstrfmt("%s/suid.tar", dir);
	char *target = mkdir_in(dir, "out");
	char *got = xstrfmt("%s/%s/tool", target, src + 1);
	const char *paths[] = { src };

	write_file(bin, "x", 04755);
	assert_mode(bin, 04755);
	assert_int_equal(arch_create(out, paths, 1, NULL, NULL, &err), 0);
	assert_int_equal(arch_extract(out, target, NULL, NULL, &err), 0);
	assert_mode(got, 0755);
	free(got);
	free(target);
	free(out);
	free(bin);
	free(src);
	ops_error_release(&err);
}

static void test_extract_target_errors(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	char *junk = xstrfmt("%s/junk.tar.gz", dir);
	char *tar = xstrfmt("%s/ok.tar", dir);
	char *target = mkdir_in(dir, "out");
	char *msg;

	make_archive(dir, "twice", tar);
	assert_int_equal(arch_extract(tar, dir, NULL, NULL, &err), -OPS_EXIT_FAILED);
	msg = xstrfmt("cannot extract into '%s': directory is not empty", dir);
	assert_string_equal(err.msg.buf, msg);
	free(msg);

	write_file(junk, "this is not an archive at all, just some text\n", 0644);
	assert_int_equal(arch_extract(junk, target, NULL, NULL, &err), -OPS_EXIT_INTEGRITY);
	msg = xstrfmt("cannot read '%s': unrecognized archive format", junk);
	assert_string_equal(err.msg.buf, msg);
	free(msg);
	assert_int_equal(count_entries(target), 0);

	free(target);
	free(tar);
	free(junk);
	ops_error_release(&err);
}

/* Builds the hostile archive KIND, extracts it with a 1 MiB limit and expects
 * exit code 5, "refusing 'ARCHIVE': WHY", an empty target directory after
 * (ok.txt, extracted first, removed again) and no victim file. */
static void expect_refused(const char *dir, const char *kind, const char *why,
			   const char *victim)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_extract_opts opts = { 0 };
	char *archive = xstrfmt("%s/%s.bad", dir, kind);
	char *target = xstrfmt("%s/out-%s", dir, kind);
	char *msg = xstrfmt("refusing '%s': %s", archive, why);

	assert_int_equal(mkdir(target, 0755), 0);
	make_archive(dir, kind, archive);
	opts.max_bytes = 1 << 20;
	assert_int_equal(arch_extract(archive, target, &opts, NULL, &err), -OPS_EXIT_INTEGRITY);
	assert_int_equal(err.code, OPS_EXIT_INTEGRITY);
	assert_string_equal(err.msg.buf, msg);
	assert_int_equal(count_entries(target), 0);
	if (victim)
		assert_int_equal(access(victim, F_OK), -1);
	free(msg);
	free(target);
	free(archive);
	ops_error_release(&err);
}

static void test_refuse_absolute(void **state)
{
	const char *dir = *state;
	char *victim = xstrfmt("%s/abs-victim", dir);
	char *why = xstrfmt("entry '%s' has an absolute path", victim);
	expect_refused(dir, "absolute", why, victim);
	free(why);
	free(victim);
}

static void test_refuse_dotdot(void **state)
{
	char *victim = xstrfmt("%s/escape.txt", (char *)*state);
	expect_refused(*state, "dotdot", "entry 'sub/../../escape.txt' has a '..' component", victim);
	free(victim);
}

static void test_refuse_symlink_to_etc(void **state)
{
	expect_refused(*state, "symlink-etc",
		       "symlink 'etc' points outside the target directory ('/etc')",
		       "/etc/opsctl-pwned");
}

static void test_refuse_symlink_up(void **state)
{
	expect_refused(*state, "symlink-up",
		       "symlink 'a/l' points outside the target directory ('../../escape')", NULL);
}

static void test_refuse_symlink_middle_dotdot(void **state)
{
	expect_refused(*state, "symlink-middle",
		       "symlink 'sub/l' has a '..' after the start of its target ('x/../../y')", NULL);
}

static void test_refuse_through_symlink(void **state)
{
	expect_refused(*state, "through-symlink", "entry 'l/x' goes through symlink 'l'", NULL);
}

static void test_refuse_hardlinks(void **state)
{
	struct stat before, after;

	assert_int_equal(stat("/etc/passwd", &before), 0);
	expect_refused(*state, "hardlink-passwd",
		       "hardlink 'pw' points outside the target directory ('/etc/passwd')", NULL);
	assert_int_equal(stat("/etc/passwd", &after), 0);
	assert_int_equal(after.st_nlink, before.st_nlink);
	expect_refused(*state, "hardlink-up",
		       "hardlink 'pw' points outside the target directory ('../escape')", NULL);
	expect_refused(*state, "hardlink-symlink",
		       "hardlink 'h' points to 's', which is not a file extracted before it", NULL);
}

static void test_refuse_devices(void **state)
{
	expect_refused(*state, "chardev", "entry 'dev/null' is a character device", NULL);
	expect_refused(*state, "fifo", "entry 'pipe' is a fifo", NULL);
}

static void test_refuse_twice_and_not_dir(void **state)
{
	expect_refused(*state, "twice", "entry 'x' appears twice", NULL);
	expect_refused(*state, "not-dir", "entry 'f/x' is inside 'f', which is not a directory", NULL);
}

static void test_refuse_size(void **state)
{
	/* the header claims 2 GiB and carries nothing: refused before reading */
	expect_refused(*state, "big", "entry 'big' expands past the limit of 1048576 bytes", NULL);
	/* each entry fits, together they do not */
	expect_refused(*state, "total", "entry 'b' expands past the limit of 1048576 bytes", NULL);
}

/* A zip whose headers say 100 bytes for 2 MiB of deflated zeros: the bytes
 * that come out of the decompressor are counted, not the header's claim
 * (libarchive alone would cut the file at 100 bytes and carry on). */
static void test_refuse_lying_zip(void **state)
{
	expect_refused(*state, "zip-lying",
		       "entry 'bomb' holds more data than its header declares (100 bytes)", NULL);
}

static void test_refuse_zip_slip(void **state)
{
	char *victim = xstrfmt("%s/../evil.txt", (char *)*state);
	expect_refused(*state, "zip-slip", "entry '../../evil.txt' has a '..' component", victim);
	free(victim);
}

static void test_max_entries(void **state)
{
	const char *dir = *state;
	struct ops_error err = OPS_ERROR_INIT;
	struct arch_extract_opts opts = { 0 };
	char *zip = xstrfmt("%s/a.zip", dir);
	char *target = mkdir_in(dir, "out");

	make_archive(dir, "zip", zip);
	opts.max_entries = 1;
	assert_int_equal(arch_extract(zip, target, &opts, NULL, &err), -OPS_EXIT_INTEGRITY);
	assert_true(ends_with(err.msg.buf, "a.zip': more than 1 entries"));
	assert_int_equal(count_entries(target), 0);
	free(target);
	free(zip);
	ops_error_release(&err);
}

static void test_path_is_safe_table(void **state)
{
	static const struct {
		const char *name, *link;
		int is_symlink, is_hardlink, safe;
	} cases[] = {
		{ "a.txt", NULL, 0, 0, 1 },
		{ "dir/sub/file", NULL, 0, 0, 1 },
		{ "./a", NULL, 0, 0, 1 },
		{ "./", NULL, 0, 0, 1 },          /* the target directory itself */
		{ "a//b/", NULL, 0, 0, 1 },
		{ "..a/b..", NULL, 0, 0, 1 },     /* dots inside names are fine */
		{ "...", NULL, 0, 0, 1 },
		{ "", NULL, 0, 0, 0 },
		{ NULL, NULL, 0, 0, 0 },
		{ "/etc/passwd", NULL, 0, 0, 0 },
		{ "//x", NULL, 0, 0, 0 },
		{ "..", NULL, 0, 0, 0 },
		{ "../x", NULL, 0, 0, 0 },
		{ "a/../b", NULL, 0, 0, 0 },
		{ "a/..", NULL, 0, 0, 0 },
		{ "a/b/../../..", NULL, 0, 0, 0 },
		{ "l", "target", 1, 0, 1 },
		{ "l", ".", 1, 0, 1 },
		{ "a/l", "..", 1, 0, 1 },
		{ "a/l", "../b/c", 1, 0, 1 },
		{ "a/b/l", "../../x", 1, 0, 1 },
		{ "a/./b/l", "./../../x", 1, 0, 1 },
		{ "l", "..", 1, 0, 0 },
		{ "l", "../x", 1, 0, 0 },
		{ "a/b/l", "../../../x", 1, 0, 0 },
		{ "a/l", "x/../..", 1, 0, 0 },
		{ "a/l", "x/../y", 1, 0, 0 },     /* x may be a symlink to "." */
		{ "l", "/etc", 1, 0, 0 },
		{ "l", "", 1, 0, 0 },
		{ "l", NULL, 1, 0, 0 },
		{ "./", "x", 1, 0, 0 },           /* a link cannot replace the target */
		{ "../l", "x", 1, 0, 0 },
		{ "h", "a.txt", 0, 1, 1 },
		{ "d/h", "d/a.txt", 0, 1, 1 },
		{ "h", "/etc/passwd", 0, 1, 0 },
		{ "h", "../x", 0, 1, 0 },
		{ "h", "d/../x", 0, 1, 0 },
		{ "h", ".", 0, 1, 0 },
		{ "h", "", 0, 1, 0 },
		{ "h", NULL, 0, 1, 0 },
		{ "h", "a", 1, 1, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = arch_path_is_safe(cases[i].name, cases[i].link, cases[i].is_symlink,
					    cases[i].is_hardlink);
		if (got != cases[i].safe)
			fail_msg("arch_path_is_safe('%s', '%s', %d, %d) = %d, want %d",
				 cases[i].name ? cases[i].name : "(null)",
				 cases[i].link ? cases[i].link : "(null)", cases[i].is_symlink,
				 cases[i].is_hardlink, got, cases[i].safe);
	}
}

static void test_version(void **state)
{
	const char *v = arch_version();
	(void)state;
	assert_non_null(v);
	assert_true(starts_with(v, "libarchive 3."));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_path_is_safe_table),
		cmocka_unit_test_setup_teardown(test_round_trip_tar, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_round_trip_gzip, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_round_trip_zstd, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_create_relative_names, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_create_errors, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_create_unreadable_file, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_create_symlink_path_and_self, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_progress_and_cancel, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_extract_zip, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_extract_hardlink_inside, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_extract_strips_setuid, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_extract_target_errors, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_absolute, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_dotdot, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_symlink_to_etc, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_symlink_up, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_symlink_middle_dotdot, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_through_symlink, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_hardlinks, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_devices, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_twice_and_not_dir, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_size, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_lying_zip, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuse_zip_slip, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_max_entries, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
