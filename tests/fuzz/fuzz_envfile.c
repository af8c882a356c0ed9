/* libFuzzer target for the env file reader: whatever parses must serialize
 * back byte for byte, and setting a key must change only that key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/envfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envfile env, again;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf out = STRBUF_INIT;
	const char *key = "FUZZ_KEY";
	char *value;
	size_t i;

	envfile_init(&env);
	envfile_init(&again);
	if (envfile_parse(&env, "fuzz.env", (const char *)data, size, &err) < 0)
		goto out;
	envfile_serialize(&env, &out);
	if (out.len != size || memcmp(out.buf, data, size))
		abort();

	/* the value is the input's first line, NULs excluded; the key an existing one */
	value = xstrndup((const char *)data, size);
	value[strcspn(value, "\n")] = '\0';
	for (i = 0; i < env.nr; i++)
		if (env.lines[i].key && (data[0] & 1))
			key = env.lines[i].key;
	key = xstrdup(key);
	envfile_set(&env, key, value);
	if (strcmp(envfile_get(&env, key), value))
		abort();
	strbuf_reset(&out);
	envfile_serialize(&env, &out);
	if (envfile_parse(&again, "again.env", out.buf, out.len, &err) < 0)
		abort();
	if (strcmp(envfile_get(&again, key), value))
		abort();
	/* every other key still reads the same */
	for (i = 0; i < env.nr; i++) {
		const char *k = env.lines[i].key;
		if (k && strcmp(k, key) && strcmp(envfile_get(&env, k), envfile_get(&again, k)))
			abort();
	}
	free((char *)key);
	free(value);
out:
	envfile_release(&env);
	envfile_release(&again);
	strbuf_release(&out);
	ops_error_release(&err);
	return 0;
}
