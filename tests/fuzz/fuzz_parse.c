/* libFuzzer target for the unit parsers; what format_duration_ms prints must
 * parse back. */
#include <stdint.h>
#include <stdlib.h>

#include "base/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	char *s = xstrndup((const char *)data, size);
	int64_t ms, back;
	uint64_t bytes;
	double pct;
	long n;
	int b;

	if (parse_duration_ms(s, &ms, &err) == 0) {
		if (ms < 0)
			abort();
		format_duration_ms(&sb, ms);
		if (parse_duration_ms(sb.buf, &back, &err) < 0 || back > ms)
			abort();
	}
	if (parse_size(s, &bytes, &err) == 0) {
		strbuf_reset(&sb);
		format_size(&sb, bytes);
	}
	if (parse_percent(s, &pct, &err) == 0 && !(pct >= 0.0 && pct <= 100.0))
		abort();
	if (parse_int(s, -1000, 1000, &n, &err) == 0 && (n < -1000 || n > 1000))
		abort();
	parse_bool(s, &b, &err);
	strbuf_release(&sb);
	ops_error_release(&err);
	free(s);
	return 0;
}
