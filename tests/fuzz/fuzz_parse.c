/* libFuzzer target for the unit parsers of lib/base/parse. Properties:
 *  - durations: what format_duration_ms prints parses back, truncated by at
 *    most its precision (exact below 1s; 100 ms below 1 min; 1 s below 1 h;
 *    1 min below 1 d; 1 h above), never more than the value;
 *  - sizes: format_size is not exact ("1.2 MiB", one decimal, and a space
 *    parse_size does not take), so the stated weaker property: below 1024 it
 *    prints "N B", which parses back exactly without the space; above, the
 *    printed number with its unit ("1.2MiB") parses back to within half a
 *    tenth of the unit (plus the byte a fraction is rounded down by and the
 *    double's rounding in format_size, 2^-52 of the value), or is
 *    "too large" only when rounding carried it to 16.0 EiB = 2^64;
 *    a size of digits alone is that number;
 *  - percentages in 0..100, integers in the range asked for, booleans 0/1. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_duration(int64_t ms)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	int64_t back, step;

	format_duration_ms(&sb, ms);
	if (parse_duration_ms(sb.buf, &back, &err) < 0 || back > ms)
		abort();
	if (ms < 1000)
		step = 1;
	else if (ms < 60 * 1000)
		step = 100;
	else if (ms < 60LL * 60 * 1000)
		step = 1000;
	else if (ms < 24LL * 60 * 60 * 1000)
		step = 60 * 1000;
	else
		step = 60LL * 60 * 1000;
	if (ms - back >= step)
		abort();
	strbuf_release(&sb);
	ops_error_release(&err);
}

static void check_size(uint64_t bytes)
{
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;
	char *space;
	uint64_t back, unit = 1;
	int shift;

	format_size(&sb, bytes);
	space = strchr(sb.buf, ' ');
	if (!space)
		abort();
	memmove(space, space + 1, strlen(space));
	if (bytes < 1024) {
		if (parse_size(sb.buf, &back, &err) < 0 || back != bytes)
			abort();
		goto out;
	}
	if (!space[0] || !strchr("KMGTPE", space[0]))
		abort();
	shift = 10 * (int)(strchr("KMGTPE", space[0]) - "KMGTPE" + 1);
	unit = (uint64_t)1 << shift;
	if (parse_size(sb.buf, &back, &err) < 0) {
		/* only "16.0EiB" (2^64) is out of range */
		if (strcmp(sb.buf, "16.0EiB"))
			abort();
		goto out;
	}
	{
		long double diff = fabsl((long double)back - (long double)bytes);

		/* format_size divides a double: allow its rounding (2^-52 relative) */
		if (diff > (long double)unit * 0.05L + (long double)bytes * 1e-15L + 1.0L)
			abort();
	}
out:
	strbuf_release(&sb);
	ops_error_release(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *s = xstrndup((const char *)data, size);
	int64_t ms;
	uint64_t bytes;
	double pct;
	long n;
	int b;

	if (parse_duration_ms(s, &ms, &err) == 0) {
		if (ms < 0)
			abort();
		check_duration(ms);
	}
	if (parse_size(s, &bytes, &err) == 0) {
		check_size(bytes);
		if (s[0] && strspn(s, "0123456789") == strlen(s) && strtoull(s, NULL, 10) != bytes)
			abort();
	}
	if (parse_percent(s, &pct, &err) == 0 && !(pct >= 0.0 && pct <= 100.0))
		abort();
	if (parse_int(s, -1000, 1000, &n, &err) == 0 && (n < -1000 || n > 1000))
		abort();
	if (parse_bool(s, &b, &err) == 0 && b != 0 && b != 1)
		abort();
	/* the formatters over the whole range, from the input's first bytes */
	if (size >= 8) {
		uint64_t v;

		memcpy(&v, data, sizeof(v));
		check_size(v);
		check_duration((int64_t)(v >> 1));
	}
	ops_error_release(&err);
	free(s);
	return 0;
}
