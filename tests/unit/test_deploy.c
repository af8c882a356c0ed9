/* Unit tests for lib/engines/deploy: symlink deploys of a plain file into a
 * temporary root, [service] restart as a shell command, health gates that
 * need no server (a tcp check against a socket the test listens on, a disk
 * check on a file of the release), the way back after a failed gate, a
 * rollback, interruption, the lock, and the recovery of killed runs from
 * their journal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/exitcode.h"
#include "engines/deploy.h"
#include "engines/release.h"
#include "system/fs.h"

struct fixture {
	char *dir;
	char *root, *state;
	struct dp_settings s;
	struct config cfg;
	int have_cfg;
	struct strbuf events;   /* "info: ...\n" per event */
	int stop_signal;        /* what stop_requested answers */
	int confirm_answer;
	struct dp_callbacks cb;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void on_event(void *data, enum ops_event kind, const char *msg)
{
	static const char *const names[] = { "info", "warning", "verbose", "progress", "done", "error", "hint" };
	struct fixture *f = data;
	if (kind == OPS_EVENT_PROGRESS || kind == OPS_EVENT_PROGRESS_DONE || kind == OPS_EVENT_VERBOSE)
		return;
	strbuf_addf(&f->events, "%s: %s\n", names[kind], msg);
}

static int on_stop(void *data)
{
	return ((struct fixture *)data)->stop_signal;
}

static int on_confirm(void *data, const char *question)
{
	(void)question;
	return ((struct fixture *)data)->confirm_answer;
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static char *read_text(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	if (fs_read_file(path, &sb, 0, &err) < 0)
		strbuf_reset(&sb);
	ops_error_release(&err);
	return strbuf_detach(&sb, NULL);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char *path;

	f->dir = xstrdup("/tmp/opsctl-test-deploy-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->root = xstrfmt("%s/root", f->dir);
	f->state = xstrfmt("%s/state", f->dir);
	strbuf_init(&f->events, 0);
	config_init(&f->cfg);
	dp_settings_init(&f->s);
	f->s.root = xstrdup(f->root);
	f->s.state_dir = xstrdup(f->state);
	f->s.strategy = xstrdup("symlink");
	f->s.backup = f->s.migrate = 0;
	f->s.keep = 3;
	f->s.min_free = 0;
	f->s.wait_ms = 1500;
	f->s.interval_ms = 100;
	f->s.probe_timeout_ms = 1000;
	/* every restart appends the release it was run for */
	f->s.restart = xstrfmt("echo \"$OPSCTL_RELEASE\" >>'%s/restarts'", f->dir);
	f->cb.event = on_event;
	f->cb.stop_requested = on_stop;
	f->cb.confirm = on_confirm;
	f->cb.data = f;
	path = xstrfmt("%s/app.bin", f->dir);
	write_file(path, "the application\n");
	free(path);
	path = xstrfmt("%s/broken.bin", f->dir);
	write_file(path, "not the application\n");
	free(path);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	dp_settings_release(&f->s);
	config_release(&f->cfg);
	strbuf_release(&f->events);
	free(f->dir);
	free(f->root);
	free(f->state);
	free(f);
	return 0;
}

static void use_config(struct fixture *f, const char *text)
{
	struct ops_error err = OPS_ERROR_INIT;
	assert_int_equal(config_load_string(&f->cfg, "test.conf", text, NULL, &err), 0);
	f->s.cfg = &f->cfg;
	ops_error_release(&err);
}

/* Deploys DIR/name; returns the exit code, the result in res. */
static int deploy(struct fixture *f, const char *name, struct dp_result *res, struct ops_error *err)
{
	struct dp_deploy_opts o;
	char *artifact = xstrfmt("%s/%s", f->dir, name);
	int code;

	memset(&o, 0, sizeof(o));
	o.artifact = artifact;
	o.reason = "unit test";
	dp_result_init(res);
	ops_error_clear(err);
	code = dp_deploy(&f->s, &o, &f->cb, res, err);
	free(artifact);
	return code;
}

static char *current(struct fixture *f)
{
	char *id = NULL;
	struct ops_error err = OPS_ERROR_INIT;
	assert_int_equal(rel_read_link(f->root, "current", &id, &err), 0);
	ops_error_release(&err);
	return id;
}

/* The last line of DIR/name, without its newline. */
static char *last_line(const char *dir, const char *name)
{
	char *path = xstrfmt("%s/%s", dir, name);
	char *text = read_text(path), *nl, *start;
	size_t len = strlen(text);

	free(path);
	while (len && text[len - 1] == '\n')
		text[--len] = '\0';
	nl = strrchr(text, '\n');
	start = xstrdup(nl ? nl + 1 : text);
	free(text);
	return start;
}

static cJSON *last_history(struct fixture *f)
{
	char *line = last_line(f->state, "history.jsonl");
	cJSON *j = cJSON_Parse(line);
	free(line);
	assert_non_null(j);
	return j;
}

static const char *jstr(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jint(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

static int has_step(const struct dp_result *res, const char *name, const char *status)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, res->steps)
		if (!strcmp(jstr(e, "step"), name) && (!status || (jstr(e, "status") && !strcmp(jstr(e, "status"), status))))
			return 1;
	return 0;
}

static void test_symlink_deploy_of_a_plain_file(void **state)
{
	struct fixture *f = *state;
	struct dp_result res;
	struct ops_error err = OPS_ERROR_INIT;
	char *path, *text, *cur, *line;
	cJSON *hist, *journal = (cJSON *)1;

	assert_int_equal(deploy(f, "app.bin", &res, &err), 0);
	assert_false(res.early);
	assert_non_null(res.release);
	assert_null(res.previous);
	assert_string_equal(res.command, "deploy");
	assert_string_equal(res.strategy, "symlink");
	assert_string_equal(res.current, res.release);
	assert_int_equal(strlen(res.sha256), 64);
	cur = current(f);
	assert_string_equal(cur, res.release);
	path = xstrfmt("%s/releases/%s/app.bin", f->root, res.release);
	text = read_text(path);
	assert_string_equal(text, "the application\n");
	free(text);
	free(path);
	line = last_line(f->dir, "restarts");
	assert_string_equal(line, res.release);
	free(line);
	assert_true(has_step(&res, "preflight", "ok"));
	assert_true(has_step(&res, "switch", "ok"));
	assert_true(has_step(&res, "restart", "ok"));
	assert_true(has_step(&res, "gate", "ok"));
	assert_true(has_step(&res, "prune", "ok"));
	assert_false(has_step(&res, "backup", NULL));
	assert_non_null(strstr(f->events.buf, "info: switching 'current' to '"));
	assert_non_null(strstr(f->events.buf, "info: restarting: echo"));
	assert_non_null(strstr(f->events.buf, "warning: no [check] sections: the health gate has nothing to check\n"));

	/* recorded, and the journal is gone */
	hist = last_history(f);
	assert_string_equal(jstr(hist, "command"), "deploy");
	assert_int_equal(jint(hist, "exit"), 0);
	assert_string_equal(jstr(hist, "release"), res.release);
	assert_string_equal(jstr(hist, "reason"), "unit test");
	cJSON_Delete(hist);
	assert_int_equal(rel_journal_read(f->state, &journal, &err), 0);
	assert_null(journal);
	free(cur);
	dp_result_release(&res);
	ops_error_release(&err);
}

static void test_deploy_then_rollback(void **state)
{
	struct fixture *f = *state;
	struct dp_result first, second, back;
	struct dp_rollback_opts o;
	struct ops_error err = OPS_ERROR_INIT;
	char *cur, *line;
	cJSON *hist;

	assert_int_equal(deploy(f, "app.bin", &first, &err), 0);
	assert_int_equal(deploy(f, "app.bin", &second, &err), 0);
	assert_string_equal(second.previous, first.release);
	assert_true(rel_id_cmp(first.release, second.release) < 0);

	memset(&o, 0, sizeof(o));
	dp_result_init(&back);
	assert_int_equal(dp_rollback(&f->s, &o, &f->cb, &back, &err), 0);
	assert_string_equal(back.command, "rollback");
	assert_string_equal(back.release, first.release);
	assert_string_equal(back.previous, second.release);
	cur = current(f);
	assert_string_equal(cur, first.release);
	line = last_line(f->dir, "restarts");
	assert_string_equal(line, first.release);
	hist = last_history(f);
	assert_string_equal(jstr(hist, "command"), "rollback");
	assert_int_equal(jint(hist, "exit"), 0);
	cJSON_Delete(hist);

	/* a dry run of going back again plans it and changes nothing */
	dp_result_release(&back);
	dp_result_init(&back);
	o.dry_run = 1;
	o.release = second.release;
	assert_int_equal(dp_rollback(&f->s, &o, &f->cb, &back, &err), 0);
	assert_true(back.dry_run);
	assert_non_null(back.plan);
	assert_int_equal(cJSON_GetArraySize(back.undo), 0);
	assert_non_null(strstr(cJSON_GetArrayItem(back.plan, 0)->valuestring, "switch '"));
	free(cur);
	cur = current(f);
	assert_string_equal(cur, first.release);

	/* the current release is not a target */
	dp_result_release(&back);
	dp_result_init(&back);
	o.dry_run = 0;
	o.release = first.release;
	assert_int_equal(dp_rollback(&f->s, &o, &f->cb, &back, &err), OPS_EXIT_USAGE);
	assert_true(back.early);
	assert_non_null(strstr(err.msg.buf, "is already the current release"));

	free(cur);
	free(line);
	dp_result_release(&first);
	dp_result_release(&second);
	dp_result_release(&back);
	ops_error_release(&err);
}

static void test_gate_on_a_listening_socket(void **state)
{
	struct fixture *f = *state;
	struct dp_result res;
	struct ops_error err = OPS_ERROR_INIT;
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	char *conf;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	conf = xstrfmt("[check \"port\"]\ntype = tcp\naddress = 127.0.0.1:%d\n", ntohs(sa.sin_port));
	use_config(f, conf);
	f->s.consecutive = 2;

	assert_int_equal(deploy(f, "app.bin", &res, &err), 0);
	assert_true(has_step(&res, "gate", "ok"));
	assert_non_null(strstr(f->events.buf, "info: gate: waiting for the checks (up to 2s, 2 in a row)\n"));
	assert_null(strstr(f->events.buf, "nothing to check"));

	close(fd);
	free(conf);
	dp_result_release(&res);
	ops_error_release(&err);
}

static void test_failing_gate_rolls_back(void **state)
{
	struct fixture *f = *state;
	struct dp_result good, bad;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf expect = STRBUF_INIT;
	char *conf, *cur, *restarts, *path;
	cJSON *hist;

	/* healthy when the current release has app.bin */
	conf = xstrfmt("[check \"app\"]\ntype = disk\npath = %s/current/app.bin\nwarn = 100%%\ncrit = 100%%\n", f->root);
	use_config(f, conf);
	assert_int_equal(deploy(f, "app.bin", &good, &err), 0);
	assert_int_equal(deploy(f, "broken.bin", &bad, &err), OPS_EXIT_ROLLED_BACK);
	assert_false(bad.early);
	assert_string_equal(bad.previous, good.release);
	assert_string_equal(bad.rolled_back_to, good.release);
	strbuf_addf(&expect, "'%s' did not pass its health gate: 'app' fail: cannot stat '%s/current/app.bin': "
		    "no such file or directory; rolled back to '%s', which passed its health gate",
		    bad.release, f->root, good.release);
	assert_string_equal(err.msg.buf, expect.buf);
	assert_int_equal(err.code, OPS_EXIT_ROLLED_BACK);
	assert_true(has_step(&bad, "gate", NULL));
	assert_true(has_step(&bad, "rollback", "ok"));
	cur = current(f);
	assert_string_equal(cur, good.release);
	assert_string_equal(bad.current, good.release);

	/* restarted for the new one, then for the old one again */
	path = xstrfmt("%s/restarts", f->dir);
	restarts = read_text(path);
	strbuf_reset(&expect);
	strbuf_addf(&expect, "%s\n%s\n%s\n", good.release, bad.release, good.release);
	assert_string_equal(restarts, expect.buf);

	hist = last_history(f);
	assert_string_equal(jstr(hist, "outcome"), "rolled-back");
	assert_int_equal(jint(hist, "exit"), OPS_EXIT_ROLLED_BACK);
	assert_string_equal(jstr(hist, "rolled_back_to"), good.release);
	assert_string_equal(jstr(hist, "error"), err.msg.buf);
	cJSON_Delete(hist);

	free(conf);
	free(cur);
	free(path);
	free(restarts);
	strbuf_release(&expect);
	dp_result_release(&good);
	dp_result_release(&bad);
	ops_error_release(&err);
}

static void test_failing_gate_without_previous(void **state)
{
	struct fixture *f = *state;
	struct dp_result res;
	struct ops_error err = OPS_ERROR_INIT;
	char *conf;

	conf = xstrfmt("[check \"app\"]\ntype = disk\npath = %s/current/app.bin\nwarn = 100%%\ncrit = 100%%\n", f->root);
	use_config(f, conf);
	assert_int_equal(deploy(f, "broken.bin", &res, &err), OPS_EXIT_ROLLBACK_FAILED);
	assert_non_null(strstr(err.msg.buf, "there is no previous release to return to"));
	assert_string_equal(err.hint.buf, "fix the release and deploy again; check the service and its log");
	free(conf);
	dp_result_release(&res);
	ops_error_release(&err);
}

static void test_interrupted_before_the_switch(void **state)
{
	struct fixture *f = *state;
	struct dp_result res;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf expect = STRBUF_INIT;
	char **ids = NULL, *path;
	size_t n = 0;

	f->stop_signal = 15;
	assert_int_equal(deploy(f, "app.bin", &res, &err), OPS_EXIT_ABORTED);
	strbuf_addf(&expect, "deploy of '%s': interrupted by signal 15", res.release);
	assert_string_equal(err.msg.buf, expect.buf);
	assert_false(res.early);
	assert_null(res.current);
	assert_int_equal(rel_list(f->root, &ids, &n, &err), 0);
	assert_int_equal(n, 0);
	path = xstrfmt("%s/restarts", f->dir);
	assert_false(fs_exists(path));
	free(path);
	rel_list_free(ids, n);
	strbuf_release(&expect);
	dp_result_release(&res);
	ops_error_release(&err);
}

static void test_locked(void **state)
{
	struct fixture *f = *state;
	struct dp_result res;
	struct ops_error err = OPS_ERROR_INIT;
	struct fs_lock lock = FS_LOCK_INIT;

	assert_int_equal(fs_lock_acquire(&lock, f->state, "deploy", "unit test", 0, &err), 0);
	assert_int_equal(deploy(f, "app.bin", &res, &err), OPS_EXIT_LOCKED);
	assert_true(res.early);
	fs_lock_release(&lock);
	dp_result_release(&res);
	ops_error_release(&err);
}

static void test_dry_run_plans(void **state)
{
	struct fixture *f = *state;
	struct dp_result res;
	struct dp_deploy_opts o;
	struct ops_error err = OPS_ERROR_INIT;
	char *artifact = xstrfmt("%s/app.bin", f->dir);
	const cJSON *e;
	int restart = 0;

	memset(&o, 0, sizeof(o));
	o.artifact = artifact;
	o.dry_run = 1;
	dp_result_init(&res);
	assert_int_equal(dp_deploy(&f->s, &o, &f->cb, &res, &err), 0);
	assert_true(res.dry_run);
	assert_non_null(res.release);
	cJSON_ArrayForEach(e, res.plan)
		if (starts_with(e->valuestring, "restart: echo"))
			restart = 1;
	assert_true(restart);
	assert_false(fs_exists(f->root));

	/* a wrong --sha256 is an integrity failure before anything */
	dp_result_release(&res);
	dp_result_init(&res);
	o.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
	assert_int_equal(dp_deploy(&f->s, &o, &f->cb, &res, &err), OPS_EXIT_INTEGRITY);
	assert_true(res.early);
	assert_non_null(strstr(err.msg.buf, "checksum mismatch for '"));
	free(artifact);
	dp_result_release(&res);
	ops_error_release(&err);
}

/* A journal as a run killed at step would have left it. */
static void kill_at(struct fixture *f, const char *step, const char *release, const char *previous)
{
	struct ops_error err = OPS_ERROR_INIT;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "kind", "deploy");
	cJSON_AddStringToObject(j, "step", step);
	cJSON_AddStringToObject(j, "release", release);
	cJSON_AddStringToObject(j, "previous", previous);
	cJSON_AddStringToObject(j, "strategy", "symlink");
	cJSON_AddStringToObject(j, "root", f->root);
	cJSON_AddNumberToObject(j, "pid", 12345);
	assert_int_equal(rel_journal_write(f->state, j, &err), 0);
	cJSON_Delete(j);
	ops_error_release(&err);
}

static char *stage(struct fixture *f)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct rel_stage_opts so;
	char *artifact = xstrfmt("%s/app.bin", f->dir);
	char *id = rel_new_id(f->root);
	memset(&so, 0, sizeof(so));
	assert_int_equal(rel_stage(f->root, id, artifact, &so, NULL, &err), 0);
	free(artifact);
	ops_error_release(&err);
	return id;
}

static void test_recovery_from_the_journal(void **state)
{
	struct fixture *f = *state;
	struct dp_result first;
	struct ops_error err = OPS_ERROR_INIT;
	cJSON *recovered = (cJSON *)1, *hist, *journal;
	char *killed, *cur, *line;

	/* nothing to do */
	assert_int_equal(dp_recover(&f->s, &f->cb, &recovered, &err), 0);
	assert_null(recovered);

	assert_int_equal(deploy(f, "app.bin", &first, &err), 0);

	/* killed before the switch: the new release goes */
	killed = stage(f);
	kill_at(f, "migrate", killed, first.release);
	strbuf_reset(&f->events);
	assert_int_equal(dp_recover(&f->s, &f->cb, &recovered, &err), 0);
	assert_string_equal(jstr(recovered, "action"), "discard");
	assert_string_equal(jstr(recovered, "step"), "migrate");
	assert_false(rel_exists(f->root, killed));
	cur = current(f);
	assert_string_equal(cur, first.release);
	free(cur);
	hist = last_history(f);
	assert_string_equal(jstr(hist, "release"), killed);
	assert_int_equal(jint(hist, "exit"), OPS_EXIT_ABORTED);
	cJSON_Delete(hist);
	assert_non_null(strstr(f->events.buf, "(pid 12345): undoing it\n"));
	assert_non_null(strstr(f->events.buf, "info: interrupted before the switch; undone\n"));
	assert_int_equal(rel_journal_read(f->state, &journal, &err), 0);
	assert_null(journal);
	cJSON_Delete(recovered);
	free(killed);

	/* killed in the gate: switched back to the previous release, restarted */
	killed = stage(f);
	assert_int_equal(rel_switch(f->root, "current", killed, &err), 0);
	kill_at(f, "gate", killed, first.release);
	assert_int_equal(dp_recover(&f->s, &f->cb, &recovered, &err), 0);
	assert_string_equal(jstr(recovered, "action"), "rollback");
	cur = current(f);
	assert_string_equal(cur, first.release);
	free(cur);
	line = last_line(f->dir, "restarts");
	assert_string_equal(line, first.release);
	free(line);
	hist = last_history(f);
	assert_int_equal(jint(hist, "exit"), OPS_EXIT_ROLLED_BACK);
	assert_string_equal(jstr(hist, "rolled_back_to"), first.release);
	cJSON_Delete(hist);
	cJSON_Delete(recovered);

	/* killed after the gate passed: finished where it was */
	assert_int_equal(rel_switch(f->root, "current", killed, &err), 0);
	kill_at(f, "prune", killed, first.release);
	assert_int_equal(dp_recover(&f->s, &f->cb, &recovered, &err), 0);
	assert_string_equal(jstr(recovered, "action"), "finish");
	cur = current(f);
	assert_string_equal(cur, killed);
	free(cur);
	hist = last_history(f);
	assert_int_equal(jint(hist, "exit"), 0);
	cJSON_Delete(hist);
	cJSON_Delete(recovered);

	free(killed);
	dp_result_release(&first);
	ops_error_release(&err);
}

static void test_status_and_list(void **state)
{
	struct fixture *f = *state;
	struct dp_result a, b;
	struct dp_status st;
	struct ops_error err = OPS_ERROR_INIT;
	cJSON *deploys = NULL;
	char *cur = NULL;

	assert_int_equal(deploy(f, "app.bin", &a, &err), 0);
	assert_int_equal(deploy(f, "app.bin", &b, &err), 0);
	assert_int_equal(dp_status(&f->s, &f->cb, &st, &err), 0);
	assert_false(st.in_progress);
	assert_string_equal(st.current, b.release);
	assert_int_equal(st.nreleases, 2);
	dp_status_release(&st);

	assert_int_equal(dp_list(&f->s, &deploys, &cur, &err), 0);
	assert_string_equal(cur, b.release);
	assert_int_equal(cJSON_GetArraySize(deploys), 2);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(deploys, 0), "current")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(deploys, 1), "current")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(deploys, 1), "on_disk")));
	cJSON_Delete(deploys);
	free(cur);
	dp_result_release(&a);
	dp_result_release(&b);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_symlink_deploy_of_a_plain_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deploy_then_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gate_on_a_listening_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_gate_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_gate_without_previous, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted_before_the_switch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dry_run_plans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovery_from_the_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_list, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
