/* libFuzzer target for the opsctl.conf reader (inih plus our line reader,
 * section headers and ${VAR} expansion) and the typed getters. Properties:
 *  - an error is OPS_EXIT_CONFIG "fuzz.conf:LINE: ..." with LINE within the
 *    input's lines;
 *  - every entry has a lowercase section ([A-Za-z0-9_.-] names), a
 *    lowercase key ([a-z][a-z0-9_-]*), a non-empty subsection or none, a
 *    line within the input, lines in file order, and a value without '\n';
 *  - config_find_entry finds, for each entry's names, the last entry with
 *    those names (so every other is shadowed by a later one);
 *  - ${VAR} expansion does not change the file's shape: when the input
 *    holds "${", the same file read with DB_PASSWORD set to "${HOST}$$"
 *    instead of "pw" reads as the same entries (names and lines); and no
 *    value holds "${" unless the input did;
 *  - the typed getters and config_subsections never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char env_text[] = "DB_PASSWORD=pw\nHOST=db.internal\n";
	static const char env2_text[] = "DB_PASSWORD='${HOST}$$'\nHOST=db.internal\n";
	struct envfile env, env2;
	struct config cfg, cfg2;
	long lines;
	int vars;
	struct ops_error err = OPS_ERROR_INIT;
	char *text = xstrndup((const char *)data, size);
	size_t i;

	envfile_init(&env);
	envfile_init(&env2);
	config_init(&cfg);
	config_init(&cfg2);
	if (envfile_parse(&env, ".env", env_text, sizeof(env_text) - 1, &err) < 0)
		abort();
	lines = 1;
	for (i = 0; text[i]; i++)
		lines += text[i] == '\n';
	if (envfile_parse(&env2, ".env", env2_text, sizeof(env2_text) - 1, &err) < 0)
		abort();
	if (config_load_string(&cfg, "fuzz.conf", text, &env, &err) < 0) {
		long at;

		if (err.code != OPS_EXIT_CONFIG || !err.msg.len || strncmp(err.msg.buf, "fuzz.conf:", 10))
			abort();
		at = strtol(err.msg.buf + 10, NULL, 10);
		if (at < 0 || at > lines)
			abort();
		goto out;
	}
	/* the second reading only where a variable can make a difference */
	vars = strstr(text, "${") != NULL;
	if (vars && (config_load_string(&cfg2, "fuzz.conf", text, &env2, &err) < 0 || cfg2.nr != cfg.nr))
		abort();
	for (i = 0; i < cfg.nr; i++) {
		const struct config_entry *e = &cfg.entries[i], *e2 = vars ? &cfg2.entries[i] : e, *last = e;
		const char **names = NULL;
		int64_t ms;
		uint64_t bytes;
		double pct;
		long n;
		int b;

		if (strcmp(e->section, e2->section) || strcmp(e->key, e2->key) || e->line != e2->line ||
		    !e->subsection != !e2->subsection || (e->subsection && strcmp(e->subsection, e2->subsection)))
			abort();
		if (!e->section[0] || e->section[strspn(e->section, "abcdefghijklmnopqrstuvwxyz0123456789_-.")])
			abort();
		if (!(e->key[0] >= 'a' && e->key[0] <= 'z') ||
		    e->key[strspn(e->key, "abcdefghijklmnopqrstuvwxyz0123456789_-")])
			abort();
		if ((e->subsection && !e->subsection[0]) || e->line < 1 || e->line > lines ||
		    (i && e->line < cfg.entries[i - 1].line))
			abort();
		if (strchr(e->value, '\n') || (!strstr(text, "${") && strstr(e->value, "${")))
			abort();
		/* the rest is linear per entry: the first entries only */
		if (i >= 32)
			continue;
		for (size_t k = i + 1; k < cfg.nr; k++) {
			const struct config_entry *o = &cfg.entries[k];

			if (!strcmp(o->section, e->section) && !strcmp(o->key, e->key) &&
			    !o->subsection == !e->subsection &&
			    (!e->subsection || !strcmp(o->subsection, e->subsection)))
				last = o;
		}
		if (config_find_entry(&cfg, e->section, e->subsection, e->key) != last)
			abort();
		/* the getters wrap lib/base/parse (fuzz_parse): a few entries do */
		if (i >= 4)
			continue;
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
	config_release(&cfg2);
	envfile_release(&env);
	envfile_release(&env2);
	ops_error_release(&err);
	free(text);
	return 0;
}
