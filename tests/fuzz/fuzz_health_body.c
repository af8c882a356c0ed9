/* libFuzzer target for judging HTTP health bodies (probe_judge_http): any
 * bytes, any status, never a crash, and
 *  - the verdict is pass, warn or fail, with a detail that starts with
 *    "HTTP <status>" and is one line (no line break: it is printed as is);
 *  - a status outside the expected ones always fails;
 *  - requiring more components never makes the verdict better (severity
 *    pass < warn < fail);
 *  - the same answer judged twice gives the same verdict and detail.
 * Input bytes: [0] status, [1] bit 0 JSON content type, [2] components
 * required (0..2 of "db", "redis"); the whole input is also the body. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int severity(enum probe_state st)
{
	switch (st) {
	case PROBE_PASS:
		return 0;
	case PROBE_WARN:
		return 1;
	case PROBE_FAIL:
		return 2;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char db[] = "db", redis[] = "redis";
	char *const require[] = { db, redis };
	struct strbuf detail = STRBUF_INIT, again = STRBUF_INIT;
	char prefix[32];
	long status = size ? 100 + data[0] % 500 : 200;
	const char *ctype = size > 1 && (data[1] & 1) ? "application/json" : NULL;
	size_t nreq = size > 2 ? data[2] % 3 : 0;
	enum probe_state st, prev = PROBE_PASS;

	for (size_t n = 0; n <= 2; n++) {
		enum probe_state s2;

		st = probe_judge_http(status, ctype, (const char *)data, size, NULL, require, n, &detail);
		severity(st);
		snprintf(prefix, sizeof(prefix), "HTTP %ld", status);
		if (strncmp(detail.buf, prefix, strlen(prefix)) || strlen(detail.buf) != detail.len)
			abort();
		if (strpbrk(detail.buf, "\r\n"))
			abort();
		if (!probe_status_expected(status, NULL) && st != PROBE_FAIL)
			abort();
		if (n && severity(st) < severity(prev))
			abort();
		prev = st;
		if (n == nreq) {
			s2 = probe_judge_http(status, ctype, (const char *)data, size, NULL, require, n, &again);
			if (s2 != st || strcmp(again.buf, detail.buf))
				abort();
		}
	}
	strbuf_release(&detail);
	strbuf_release(&again);
	return 0;
}
