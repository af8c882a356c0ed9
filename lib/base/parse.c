/* Parsers and formatters for durations, sizes, percentages, numbers and booleans. */
#include "base/parse.h"
#include "base/exitcode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DURATION_EXPECTED "(expected e.g. 500ms, 30s, 5m, 2h)"
#define SIZE_EXPECTED "(expected e.g. 512K, 10M, 2G)"

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Reads "DIGITS[.DIGITS]" at *p. The whole part goes to *whole, the
 * fraction as *frac_num / *frac_den (den a power of ten, at most 10^9 so
 * the caller's products stay in range). Returns -1 when there is no number
 * or it is malformed, -2 when the whole part overflows.
 */
static int read_decimal(const char **p, uint64_t *whole, uint64_t *frac_num, uint64_t *frac_den)
{
	const char *s = *p;
	uint64_t w = 0, fn = 0, fd = 1;
	int digits = 0, overflow = 0;

	while (is_digit(*s)) {
		if (__builtin_mul_overflow(w, 10, &w) ||
		    __builtin_add_overflow(w, (uint64_t)(*s - '0'), &w))
			overflow = 1;
		s++;
		digits++;
	}
	if (!digits)
		return -1;
	if (*s == '.') {
		int fdigits = 0;
		s++;
		while (is_digit(*s)) {
			/* digits past the ninth cannot change a whole millisecond or byte
			 * count by more than the rounding the callers do anyway */
			if (fdigits < 9) {
				fn = fn * 10 + (uint64_t)(*s - '0');
				fd *= 10;
			}
			fdigits++;
			s++;
		}
		if (!fdigits)
			return -1;
	}
	*p = s;
	*whole = w;
	*frac_num = fn;
	*frac_den = fd;
	return overflow ? -2 : 0;
}

/* value = (whole + num/den) * unit, exact when the fraction lands on a whole
 * unit; returns -1 on overflow, 1 when the result is not a whole number. */
static int scale(uint64_t whole, uint64_t num, uint64_t den, uint64_t unit, uint64_t *out)
{
	uint64_t v, f_hi;
	unsigned __int128 f;

	if (__builtin_mul_overflow(whole, unit, &v))
		return -1;
	f = (unsigned __int128)num * unit;
	f_hi = (uint64_t)(f / den);
	if (__builtin_add_overflow(v, f_hi, &v))
		return -1;
	*out = v;
	return (f % den) ? 1 : 0;
}

struct duration_unit {
	const char *name;
	uint64_t ms;
};

/* Longest names first so "ms" is not read as "m" followed by junk. */
static const struct duration_unit duration_units[] = {
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
	{ "d", 24 * 60 * 60 * 1000 },
};

int parse_duration_ms(const char *s, int64_t *out_ms, struct ops_error *err)
{
	const char *p = s ? s : "";
	uint64_t total = 0, last_unit = UINT64_MAX;
	int groups = 0;

	if (!*p)
		goto invalid;
	while (*p) {
		uint64_t whole, fn, fd, v;
		const struct duration_unit *unit = NULL;
		size_t i;
		int rc = read_decimal(&p, &whole, &fn, &fd);

		if (rc == -1)
			goto invalid;
		if (!*p && groups == 0) {
			/* a bare number means seconds */
			unit = &duration_units[1];
		} else {
			for (i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
				size_t n = strlen(duration_units[i].name);
				if (!strncmp(p, duration_units[i].name, n)) {
					unit = &duration_units[i];
					p += n;
					break;
				}
			}
			if (!unit)
				goto invalid;
		}
		/* "1m30s" reads left to right from the largest unit down */
		if (unit->ms >= last_unit)
			goto invalid;
		last_unit = unit->ms;
		if (rc == -2)
			goto too_large;
		rc = scale(whole, fn, fd, unit->ms, &v);
		if (rc < 0)
			goto too_large;
		if (rc > 0)
			goto invalid;
		if (__builtin_add_overflow(total, v, &total) || total > INT64_MAX)
			goto too_large;
		groups++;
	}
	*out_ms = (int64_t)total;
	return 0;
invalid:
	return ops_error_set(err, OPS_EXIT_USAGE, "invalid duration '%s' " DURATION_EXPECTED,
			     s ? s : "");
too_large:
	return ops_error_set(err, OPS_EXIT_USAGE, "duration '%s' is too large", s);
}

int parse_size(const char *s, uint64_t *out_bytes, struct ops_error *err)
{
	static const char letters[] = "KMGTPE";
	const char *p = s ? s : "";
	uint64_t whole, fn, fd, unit = 1, v;
	const char *l;
	int rc;

	rc = read_decimal(&p, &whole, &fn, &fd);
	if (rc == -1)
		goto invalid;
	if (*p && (l = strchr(letters, *p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p)) != NULL) {
		int shift = (int)(l - letters + 1) * 10;
		unit = (uint64_t)1 << shift;
		p++;
		if (!strcasecmp(p, "ib"))
			p += 2;
		else if (!strcasecmp(p, "b"))
			p++;
	} else if (!strcasecmp(p, "b")) {
		p++;
	}
	if (*p)
		goto invalid;
	if (rc == -2 || scale(whole, fn, fd, unit, &v) < 0)
		goto too_large;
	/* a fraction of a byte ("0.1K") is rounded down */
	*out_bytes = v;
	return 0;
invalid:
	return ops_error_set(err, OPS_EXIT_USAGE, "invalid size '%s' " SIZE_EXPECTED, s ? s : "");
too_large:
	return ops_error_set(err, OPS_EXIT_USAGE, "size '%s' is too large", s);
}

int parse_percent(const char *s, double *out_pct, struct ops_error *err)
{
	const char *p = s ? s : "";
	uint64_t whole, fn, fd;
	double v;
	int rc;

	/* hand-rolled instead of strtod: no locale decimal comma, no "inf", no "1e2" */
	rc = read_decimal(&p, &whole, &fn, &fd);
	if (rc == -1)
		goto invalid;
	if (*p == '%')
		p++;
	if (*p)
		goto invalid;
	v = (double)whole + (double)fn / (double)fd;
	if (rc == -2 || whole > 100 || v > 100.0)
		return ops_error_set(err, OPS_EXIT_USAGE,
				     "percentage '%s' is out of range (expected 0%% to 100%%)", s);
	*out_pct = v;
	return 0;
invalid:
	return ops_error_set(err, OPS_EXIT_USAGE, "invalid percentage '%s' (expected e.g. 85%%)",
			     s ? s : "");
}

int parse_int(const char *s, long min, long max, long *out, struct ops_error *err)
{
	const char *p = s ? s : "";
	char *end;
	long v;

	if (*p == '-')
		p++;
	if (!is_digit(*p))
		goto invalid;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end)
		goto invalid;
	if (errno == ERANGE || v < min || v > max)
		return ops_error_set(err, OPS_EXIT_USAGE,
				     "number '%s' is out of range (expected %ld to %ld)", s, min, max);
	*out = v;
	return 0;
invalid:
	return ops_error_set(err, OPS_EXIT_USAGE, "invalid number '%s'", s ? s : "");
}

int parse_bool(const char *s, int *out, struct ops_error *err)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; s && i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return ops_error_set(err, OPS_EXIT_USAGE,
			     "invalid boolean '%s' (expected yes/no, true/false, on/off, 1/0)",
			     s ? s : "");
}

void format_duration_ms(struct strbuf *sb, int64_t ms)
{
	uint64_t v;

	if (ms < 0) {
		strbuf_addch(sb, '-');
		v = (uint64_t)0 - (uint64_t)ms;
	} else {
		v = (uint64_t)ms;
	}
	if (v < 1000) {
		strbuf_addf(sb, "%llums", (unsigned long long)v);
	} else if (v < 60 * 1000) {
		/* tenths are truncated so 59999 reads 59.9s, never 60.0s */
		unsigned long long tenths = (v % 1000) / 100;
		if (tenths)
			strbuf_addf(sb, "%llu.%llus", (unsigned long long)(v / 1000), tenths);
		else
			strbuf_addf(sb, "%llus", (unsigned long long)(v / 1000));
	} else if (v < 60ULL * 60 * 1000) {
		strbuf_addf(sb, "%llum%02llus", (unsigned long long)(v / 60000),
			    (unsigned long long)(v / 1000 % 60));
	} else if (v < 24ULL * 60 * 60 * 1000) {
		strbuf_addf(sb, "%lluh%02llum", (unsigned long long)(v / 3600000),
			    (unsigned long long)(v / 60000 % 60));
	} else {
		strbuf_addf(sb, "%llud%02lluh", (unsigned long long)(v / 86400000),
			    (unsigned long long)(v / 3600000 % 24));
	}
}

void format_size(struct strbuf *sb, uint64_t bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	size_t i = 0;
	double v;

	if (bytes < 1024) {
		strbuf_addf(sb, "%llu B", (unsigned long long)bytes);
		return;
	}
	v = (double)bytes / 1024.0;
	/* move up a unit when one decimal would round to 1024.0 */
	while (v >= 1023.95 && i + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		i++;
	}
	strbuf_addf(sb, "%.1f %s", v, units[i]);
}

void parse_words(const char *v, char ***out, size_t *n)
{
	while (v && *v) {
		size_t len;
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		len = strcspn(v, " \t,");
		if (!len)
			break;
		*out = xrealloc(*out, (*n + 1) * sizeof(char *));
		(*out)[(*n)++] = xstrndup(v, len);
		v += len;
	}
}
