/* libFuzzer target for the env file reader and writer (lib/base/envfile):
 *  - whatever parses serialises back byte for byte;
 *  - after envfile_set of one key, the output re-reads as the same lines in
 *    the same order: every line that does not assign that key is byte for
 *    byte the line it was (the last one may only gain the file's line ending
 *    when the key is appended), every line that assigns it keeps its bytes
 *    up to the value (export prefix, key, '=' and blanks) and reads the new
 *    value, and an absent key is appended as one last line;
 *  - an invalid key changes nothing.
 * Input: the env file. The first byte picks the key (one of the file's, or
 * FUZZ_KEY) and the value: the input's first line (up to a NUL), an empty
 * one, one that needs quoting; or an invalid key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/envfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bytes of an assignment line before its value: up to the first '=' (a key
 * cannot hold one) and the blanks after it. */
static size_t value_offset(const char *raw)
{
	size_t n = strcspn(raw, "=");

	if (raw[n] == '=')
		n++;
	while (raw[n] == ' ' || raw[n] == '\t')
		n++;
	return n;
}

static void check_set(const struct envfile *before, const char *key, const char *value)
{
	struct envfile env, again;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf text = STRBUF_INIT, out = STRBUF_INIT;
	size_t i, assigned = 0;
	int valid = envfile_key_valid(key);

	/* a copy of before, read from its own serialisation */
	envfile_init(&env);
	envfile_init(&again);
	envfile_serialize(before, &text);
	if (envfile_parse(&env, "copy.env", text.buf, text.len, &err) < 0 || env.nr != before->nr)
		abort();

	envfile_set(&env, key, value);
	envfile_serialize(&env, &out);
	if (!valid) {
		if (out.len != text.len || memcmp(out.buf, text.buf, text.len))
			abort();
		goto out;
	}
	if (strcmp(envfile_get(&env, key), value))
		abort();
	if (envfile_parse(&again, "again.env", out.buf, out.len, &err) < 0)
		abort();
	if (strcmp(envfile_get(&again, key), value))
		abort();

	for (i = 0; i < before->nr; i++)
		if (before->lines[i].key && !strcmp(before->lines[i].key, key))
			assigned++;
	if (again.nr != before->nr + (assigned ? 0 : 1))
		abort();
	for (i = 0; i < before->nr; i++) {
		const struct envfile_line *old = &before->lines[i], *now = &again.lines[i];

		if (old->key && !strcmp(old->key, key)) {
			size_t n = value_offset(old->raw);

			/* rewritten in place: same prefix, the new value */
			if (!now->key || strcmp(now->key, key) || strcmp(now->value, value) ||
			    strncmp(now->raw, old->raw, n))
				abort();
			continue;
		}
		if (!strcmp(now->raw, old->raw))
			continue;
		/* only the last line, completed with a line ending before the appended one */
		if (assigned || i + 1 != before->nr)
			abort();
		{
			size_t n = strlen(old->raw), m = strlen(now->raw);

			if (m <= n || strncmp(now->raw, old->raw, n) || now->raw[m - 1] != '\n' ||
			    (strcmp(now->raw + n, "\n") && strcmp(now->raw + n, "\r\n")))
				abort();
		}
		/* and it reads as it did */
		if (!old->key != !now->key || (old->key && (strcmp(old->key, now->key) ||
							    strcmp(old->value, now->value))))
			abort();
	}
	if (!assigned) {
		const struct envfile_line *last = &again.lines[before->nr];

		if (!last->key || strcmp(last->key, key) || strcmp(last->value, value) ||
		    strncmp(last->raw, key, strlen(key)) || last->raw[strlen(key)] != '=')
			abort();
	}
out:
	envfile_release(&env);
	envfile_release(&again);
	strbuf_release(&text);
	strbuf_release(&out);
	ops_error_release(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envfile env;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf out = STRBUF_INIT;
	const char *key = "FUZZ_KEY";
	char *value;
	size_t i, nkeys = 0, pick;

	envfile_init(&env);
	if (envfile_parse(&env, "fuzz.env", (const char *)data, size, &err) < 0) {
		if (!err.code || !err.msg.len || strncmp(err.msg.buf, "fuzz.env:", 9))
			abort();
		goto out;
	}
	envfile_serialize(&env, &out);
	if (out.len != size || memcmp(out.buf, data, size))
		abort();
	for (i = 0; i < env.nr; i++) {
		const struct envfile_line *l = &env.lines[i];

		if (!l->raw || (l->key && (!envfile_key_valid(l->key) || !l->value)) ||
		    (!l->key && l->value))
			abort();
		if (!l->key)
			continue;
		/* the value read is the last assignment's (checked for the first
		 * keys only: it is quadratic) */
		if (nkeys++ < 32) {
			const char *last = l->value;

			for (size_t k = i + 1; k < env.nr; k++)
				if (env.lines[k].key && !strcmp(env.lines[k].key, l->key))
					last = env.lines[k].value;
			if (envfile_get(&env, l->key) != last)
				abort();
		}
	}

	value = xstrndup((const char *)data, size);
	value[strcspn(value, "\n")] = '\0';
	/* first byte: bit 0 an existing key (which one by bits 3-7) */
	pick = size ? data[0] >> 3 : 0;
	if (size && (data[0] & 1) && nkeys) {
		pick %= nkeys;
		for (i = 0; i < env.nr; i++)
			if (env.lines[i].key && !pick--) {
				key = env.lines[i].key;
				break;
			}
	}
	/* one set per input (each reads and writes the file twice); bits 1-2
	 * of the first byte pick: the value above, an empty one, one that
	 * needs quoting, or an invalid key (which changes nothing) */
	switch (size ? (data[0] >> 1) & 3 : 0) {
	case 0:
		check_set(&env, key, value);
		break;
	case 1:
		check_set(&env, key, "");
		break;
	case 2:
		check_set(&env, key, "a b#\"c'\\d\ne");
		break;
	default:
		check_set(&env, "1NVALID", value);
		break;
	}
	free(value);
out:
	envfile_release(&env);
	strbuf_release(&out);
	ops_error_release(&err);
	return 0;
}
