/* libFuzzer target for the opsctl.conf reader (inih plus our line reader,
 * section headers and ${VAR} expansion) and the typed getters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/envfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char env_text[] = "DB_PASSWORD=pw\nHOST=db.internal\n";
	struct envfile env;
	struct config cfg;
	struct ops_error err = OPS_ERROR_INIT;
	char *text = xstrndup((const char *)data, size);
	size_t i;

	envfile_init(&env);
	config_init(&cfg);
	if (envfile_parse(&env, ".env", env_text, sizeof(env_text) - 1, &err) < 0)
		abort();
	if (config_load_string(&cfg, "fuzz.conf", text, &env, &err) < 0) {
		if (!err.code || !err.msg.len)
			abort();
		goto out;
	}
	for (i = 0; i < cfg.nr; i++) {
		const struct config_entry *e = &cfg.entries[i];
		const char **names = NULL;
		int64_t ms;
		uint64_t bytes;
		double pct;
		long n;
		int b;

		if (config_find_entry(&cfg, e->section, e->subsection, e->key) == NULL)
			abort();
		config_get_duration_ms(&cfg, e->section, e->subsection, e->key, &ms, &err);
		config_get_size(&cfg, e->section, e->subsection, e->key, &bytes, &err);
		config_get_percent(&cfg, e->section, e->subsection, e->key, &pct, &err);
		config_get_int(&cfg, e->section, e->subsection, e->key, 0, 100, &n, &err);
		config_get_bool(&cfg, e->section, e->subsection, e->key, &b, &err);
		config_subsections(&cfg, e->section, &names);
		free(names);
	}
out:
	config_release(&cfg);
	envfile_release(&env);
	ops_error_release(&err);
	free(text);
	return 0;
}
