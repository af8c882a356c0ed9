/* libFuzzer target for judging HTTP health bodies: any bytes, any status,
 * never a crash, and the verdict is one of the four states with a detail
 * line that starts with the HTTP status. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char db[] = "db", redis[] = "redis";
	char *const require[] = { db, redis };
	struct strbuf detail = STRBUF_INIT;
	char prefix[32];
	long status = size ? 100 + data[0] % 500 : 200;
	enum probe_state st;

	st = probe_judge_http(status, size > 1 && (data[1] & 1) ? "application/json" : NULL,
			      (const char *)data, size, NULL, require, size > 2 ? data[2] % 3 : 0, &detail);
	if (st != PROBE_PASS && st != PROBE_WARN && st != PROBE_FAIL && st != PROBE_UNREACHABLE)
		abort();
	snprintf(prefix, sizeof(prefix), "HTTP %ld", status);
	if (strncmp(detail.buf, prefix, strlen(prefix)))
		abort();
	if (!probe_status_expected(status, NULL) && st != PROBE_FAIL)
		abort();
	strbuf_release(&detail);
	return 0;
}
