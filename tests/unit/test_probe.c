/* Unit tests for the probe engine's judging of HTTP answers and exit codes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "base/exitcode.h"
#include "engines/probe.h"

static enum probe_state judge(long status, const char *ct, const char *body, const char *req,
			      struct strbuf *detail)
{
	char *require[4] = { NULL, NULL, NULL, NULL };
	size_t n = 0;
	char buf[128];
	if (req) {
		strlcpy_s(buf, req, sizeof(buf));
		for (char *s = buf; *s;) {
			require[n++] = s;
			s += strcspn(s, " ");
			if (*s)
				*s++ = '\0';
		}
	}
	return probe_judge_http(status, ct, body, strlen(body), NULL, require, n, detail);
}

static void test_actuator_v3(void **state)
{
	struct strbuf d = STRBUF_INIT;
	const char *up = "{\"status\":\"UP\",\"components\":{\"db\":{\"status\":\"UP\"},\"redis\":{\"status\":\"UP\"}}}";
	const char *down = "{\"status\":\"DOWN\",\"components\":{\"db\":{\"status\":\"DOWN\"},\"redis\":{\"status\":\"UP\"}}}";
	(void)state;
	assert_int_equal(judge(200, "application/json", up, "db redis", &d), PROBE_PASS);
	assert_string_equal(d.buf, "HTTP 200, status UP");
	assert_int_equal(judge(200, "application/vnd.spring-boot.actuator.v3+json", down, NULL, &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 200, status DOWN (db DOWN)");
	assert_int_equal(judge(503, "application/json", down, "db", &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 503, status DOWN (required component 'db' is DOWN)");
	assert_int_equal(judge(200, "application/json", up, "mail", &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 200, status UP (required component 'mail' not reported)");
	strbuf_release(&d);
}

static void test_actuator_v2_details(void **state)
{
	struct strbuf d = STRBUF_INIT;
	const char *body = "{\"status\":\"UP\",\"details\":{\"db\":{\"status\":\"UP\",\"details\":{\"database\":\"PostgreSQL\"}},"
			   "\"diskSpace\":{\"status\":\"OUT_OF_SERVICE\"}}}";
	(void)state;
	assert_int_equal(judge(200, "application/json", body, "db", &d), PROBE_PASS);
	assert_string_equal(d.buf, "HTTP 200, status UP (diskSpace OUT_OF_SERVICE)");
	assert_int_equal(judge(200, "application/json", body, "diskSpace", &d), PROBE_FAIL);
	strbuf_release(&d);
}

static void test_ietf(void **state)
{
	struct strbuf d = STRBUF_INIT;
	(void)state;
	assert_int_equal(judge(200, "application/health+json", "{\"status\":\"pass\"}", NULL, &d), PROBE_PASS);
	assert_int_equal(judge(200, "application/health+json",
			       "{\"status\":\"warn\",\"checks\":{\"db:responseTime\":[{\"status\":\"warn\"}]}}", NULL, &d),
			 PROBE_WARN);
	assert_int_equal(judge(200, "application/health+json",
			       "{\"status\":\"pass\",\"checks\":{\"db:responseTime\":[{\"status\":\"pass\"},{\"status\":\"fail\"}]}}",
			       "db", &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 200, status pass (required component 'db' is fail)");
	assert_int_equal(judge(503, "application/health+json", "{\"status\":\"fail\"}", NULL, &d), PROBE_FAIL);
	strbuf_release(&d);
}

static void test_seed_shape(void **state)
{
	struct strbuf d = STRBUF_INIT;
	(void)state;
	assert_int_equal(judge(200, "application/json",
			       "{\"status\":\"healthy\",\"components\":{\"database\":\"healthy\",\"redis\":\"healthy\"},"
			       "\"timestamp\":\"2024-01-15T10:30:00Z\"}", "database", &d), PROBE_PASS);
	assert_int_equal(judge(200, NULL, "{\"status\":\"unhealthy\",\"components\":{\"database\":\"unhealthy\"}}",
			       NULL, &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 200, status unhealthy (database unhealthy)");
	assert_int_equal(judge(200, NULL, "{\"status\":\"degraded\"}", NULL, &d), PROBE_WARN);
	strbuf_release(&d);
}

static void test_plain_and_malformed(void **state)
{
	struct strbuf d = STRBUF_INIT;
	(void)state;
	assert_int_equal(judge(200, "text/plain", "OK", NULL, &d), PROBE_PASS);
	assert_string_equal(d.buf, "HTTP 200");
	assert_int_equal(judge(301, "text/html", "<html>", NULL, &d), PROBE_PASS);
	assert_int_equal(judge(404, "text/plain", "not found", NULL, &d), PROBE_FAIL);
	assert_int_equal(judge(200, "application/json", "{\"status\": \"UP\"", NULL, &d), PROBE_FAIL);
	assert_non_null(strstr(d.buf, "malformed JSON body"));
	assert_int_equal(judge(200, "text/plain", "OK", "db", &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 200, required component 'db' not reported (no JSON body)");
	assert_int_equal(judge(200, "application/json", "[1,2]", NULL, &d), PROBE_WARN);
	assert_int_equal(judge(200, "application/json", "{\"status\":\"purple\"}", NULL, &d), PROBE_WARN);
	assert_string_equal(d.buf, "HTTP 200, status purple (not a known health status)");
	strbuf_release(&d);
}

/* Found by tests/fuzz/fuzz_health_body (regress/health_body/): a line
 * break in a component's word or name made the detail two lines. */
static void test_control_chars(void **state)
{
	struct strbuf d = STRBUF_INIT;
	(void)state;
	assert_int_equal(judge(200, NULL, "{\"status\":\"unhealthy\",\"components\":{\"redis\":\"de\\ngraded\"}}",
			       NULL, &d), PROBE_FAIL);
	assert_string_equal(d.buf, "HTTP 200, status unhealthy (redis de?graded)");
	assert_int_equal(judge(200, NULL, "{\"status\":\"UP\\u001b[2J\",\"components\":{\"a\\r\\nb\":\"DOWN\"}}",
			       NULL, &d), PROBE_WARN);
	assert_string_equal(d.buf, "HTTP 200, status UP?[2J (not a known health status) (a??b DOWN)");
	strbuf_release(&d);
}

static void test_expect(void **state)
{
	(void)state;
	assert_true(probe_status_expected(200, NULL));
	assert_true(probe_status_expected(302, NULL));
	assert_false(probe_status_expected(404, NULL));
	assert_false(probe_status_expected(500, NULL));
	assert_true(probe_status_expected(204, "200,204"));
	assert_false(probe_status_expected(201, "200,204"));
	assert_true(probe_status_expected(503, "200-299, 503"));
	assert_true(probe_status_expected(418, "4xx"));
	assert_false(probe_status_expected(200, "4xx"));
}

static void test_targets_and_exit(void **state)
{
	struct probe_set set;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;
	probe_set_init(&set);
	assert_int_equal(probe_add_target(&set, "http://127.0.0.1:1/health", NULL, &err), 0);
	assert_int_equal(probe_add_target(&set, "redis://127.0.0.1:6379", NULL, &err), 0);
	assert_int_equal(probe_add_target(&set, "disk:/", NULL, &err), 0);
	assert_int_equal(probe_add_target(&set, "memory", NULL, &err), 0);
	assert_int_equal(probe_add_target(&set, "api", NULL, &err), 1);
	assert_int_equal(probe_add_target(&set, "tcp://nohostport", NULL, &err), -OPS_EXIT_USAGE);
	assert_string_equal(err.msg.buf, "invalid address 'nohostport' (expected HOST:PORT)");
	assert_int_equal(probe_add_target(&set, "ftp://x/y", NULL, &err), -OPS_EXIT_USAGE);
	assert_int_equal(set.nr, 4);
	assert_true(set.items[1].redis);
	assert_int_equal(set.items[2].type, PROBE_DISK);
	set.items[0].state = PROBE_PASS;
	set.items[1].state = PROBE_WARN;
	set.items[2].state = PROBE_PASS;
	set.items[3].state = PROBE_PASS;
	assert_int_equal(probe_exit_code(&set), OPS_EXIT_DEGRADED);
	set.items[2].state = PROBE_UNREACHABLE;
	assert_int_equal(probe_exit_code(&set), OPS_EXIT_UNREACHABLE);
	set.items[3].state = PROBE_FAIL;
	assert_int_equal(probe_exit_code(&set), OPS_EXIT_FAILED);
	probe_set_release(&set);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_actuator_v3),
		cmocka_unit_test(test_actuator_v2_details),
		cmocka_unit_test(test_ietf),
		cmocka_unit_test(test_seed_shape),
		cmocka_unit_test(test_plain_and_malformed),
		cmocka_unit_test(test_control_chars),
		cmocka_unit_test(test_expect),
		cmocka_unit_test(test_targets_and_exit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
