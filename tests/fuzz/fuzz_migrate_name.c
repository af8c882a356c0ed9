/* libFuzzer target for migration file names (mig_parse_name, what mig_scan
 * reads DIR/NNN_name.sql and DIR/rollback/NNN_name.down.sql with) and the
 * file checksum. Input: a file name, optionally NUL and a file's content.
 * Properties, for both suffixes:
 *  - an accepted name is exactly VERSION "_" NAME SUFFIX: the version is the
 *    1 to 19 digits before the first '_', the name the non-empty rest;
 *  - the number is the version's value: mig_parse_version reads the same,
 *    and printed with the version's width (leading zeros) it is the version;
 *  - a rejected name really does not fit that shape;
 *  - a down file's name is also an up file's name, with ".down" in its name;
 *  - mig_checksum ignores line endings: CRLF and a lone CR hash as LF. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "engines/migrate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether fname has the shape, judged independently of mig_parse_name. */
static int fits(const char *fname, const char *suffix)
{
	size_t digits = strspn(fname, "0123456789");
	size_t flen = strlen(fname), slen = strlen(suffix);

	return digits >= 1 && digits <= 19 && fname[digits] == '_' &&
	       flen > digits + 1 + slen && !strcmp(fname + flen - slen, suffix);
}

static void check_name(const char *fname, const char *suffix)
{
	struct ops_error err = OPS_ERROR_INIT;
	char *version = NULL, *name = NULL, buf[32];
	uint64_t number = UINT64_MAX, back;
	struct strbuf whole = STRBUF_INIT;
	int ok = mig_parse_name(fname, suffix, &version, &number, &name);

	if (ok != fits(fname, suffix))
		abort();
	if (!ok) {
		if (version || name)
			abort();
		return;
	}
	if (!version || !name || !version[0] || !name[0] || strlen(version) > 19 ||
	    strspn(version, "0123456789") != strlen(version))
		abort();
	strbuf_addf(&whole, "%s_%s%s", version, name, suffix);
	if (strcmp(whole.buf, fname))
		abort();
	if (strtoull(version, NULL, 10) != number)
		abort();
	if (mig_parse_version(version, &back, &err) < 0 || back != number)
		abort();
	snprintf(buf, sizeof(buf), "%0*" PRIu64, (int)strlen(version), number);
	if (strcmp(buf, version))
		abort();
	if (!strcmp(suffix, ".down.sql")) {
		char *v2 = NULL, *n2 = NULL;
		uint64_t num2;

		if (!mig_parse_name(fname, ".sql", &v2, &num2, &n2) || num2 != number ||
		    strcmp(v2, version) || strncmp(n2, name, strlen(name)) ||
		    strcmp(n2 + strlen(name), ".down"))
			abort();
		free(v2);
		free(n2);
	}
	strbuf_release(&whole);
	free(version);
	free(name);
	ops_error_release(&err);
}

static void check_checksum(const char *text, size_t len)
{
	char a[65], b[65];
	char *norm = xmalloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\r') {
			norm[n++] = '\n';
			if (i + 1 < len && text[i + 1] == '\n')
				i++;
		} else {
			norm[n++] = text[i];
		}
	}
	mig_checksum(text, len, a);
	mig_checksum(norm, n, b);
	if (strcmp(a, b) || strlen(a) != 64 || strspn(a, "0123456789abcdef") != 64)
		abort();
	free(norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *fname = xstrndup((const char *)data, size);
	const char *nul = memchr(data, '\0', size);

	check_name(fname, ".sql");
	check_name(fname, ".down.sql");
	if (nul)
		check_checksum(nul + 1, size - (size_t)(nul + 1 - (const char *)data));
	free(fname);
	return 0;
}
