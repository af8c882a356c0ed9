/* A test-only driver for the backup sources (lib/engines/source) while
 * `opsctl backup` does not run them yet: built in the test build only, used by
 * tests/integration/t6100-sources.sh.
 *
 *   sourcetool -c CONFIG [-e ENVFILE] check NAME
 *   sourcetool -c CONFIG [-e ENVFILE] backup NAME SET_DIR       (entry JSON on stdout)
 *   sourcetool -c CONFIG [-e ENVFILE] restore NAME FILE [ENTRY_JSON_FILE]
 *
 * Errors go to stderr as opsctl prints them ("error: ...", "hint: ..."); the
 * exit status is the error's code. */
#include "adapters/http.h"
#include "base/config.h"
#include "base/envfile.h"
#include "engines/source.h"
#include "system/fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_event(void *data, enum ops_event kind, const char *msg)
{
	(void)data;
	fprintf(stderr, "%s%s\n", kind == OPS_EVENT_WARNING ? "warning: " : "", msg);
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct envfile env;
	struct src_settings s;
	struct src_entry entry, parsed;
	struct ops_error err = OPS_ERROR_INIT;
	struct src_callbacks cb = { on_event, NULL, NULL, NULL };
	const char *conf = NULL, *envpath = NULL;
	int opt, ret = 0, have_env = 0;

	config_init(&cfg);
	envfile_init(&env);
	src_settings_init(&s);
	src_entry_init(&entry);
	src_entry_init(&parsed);
	while ((opt = getopt(argc, argv, "c:e:")) != -1) {
		if (opt == 'c')
			conf = optarg;
		else if (opt == 'e')
			envpath = optarg;
		else
			return 2;
	}
	argc -= optind;
	argv += optind;
	if (!conf || argc < 2) {
		fprintf(stderr, "usage: sourcetool -c CONFIG [-e ENVFILE] check|backup|restore NAME [ARGS]\n");
		return 2;
	}
	if (http_global_init(&err) < 0)
		goto out;
	if (envpath) {
		if (envfile_load(&env, envpath, &err) < 0)
			goto out;
		have_env = 1;
	}
	if (config_load(&cfg, conf, have_env ? &env : NULL, &err) < 0 ||
	    src_settings_load(&s, &cfg, have_env ? &env : NULL, argv[1], &err) < 0)
		goto out;
	if (!strcmp(argv[0], "check")) {
		printf("%s %s\n", src_type_name(s.type), s.display);
	} else if (!strcmp(argv[0], "backup") && argc == 3) {
		cJSON *j;
		char *text;
		if (src_backup(&s, argv[2], &cb, &entry, &err) < 0)
			goto out;
		j = src_entry_json(&entry);
		text = cJSON_Print(j);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(j);
	} else if (!strcmp(argv[0], "restore") && (argc == 3 || argc == 4)) {
		struct src_restore_opts o = { 0 };
		if (argc == 4) {
			struct strbuf text = STRBUF_INIT;
			cJSON *j = NULL;
			if (fs_read_file(argv[3], &text, 0, &err) == 0) {
				j = cJSON_Parse(text.buf);
				if (src_entry_parse(j, &parsed, &err) == 0)
					o.entry = &parsed;
			}
			cJSON_Delete(j);
			strbuf_release(&text);
			if (err.code)
				goto out;
		}
		if (src_restore(&s, argv[2], &o, &cb, &err) < 0)
			goto out;
		printf("restored %s\n", s.name);
	} else {
		fprintf(stderr, "sourcetool: unknown command or wrong arguments\n");
		ret = 2;
	}
out:
	if (err.code) {
		fprintf(stderr, "error: %s\n", err.msg.buf);
		if (err.hint.len)
			fprintf(stderr, "hint: %s\n", err.hint.buf);
		ret = err.code;
	}
	if (fflush(stdout) != 0 && !ret)
		ret = 1;
	src_entry_release(&entry);
	src_entry_release(&parsed);
	src_settings_release(&s);
	config_release(&cfg);
	envfile_release(&env);
	ops_error_release(&err);
	http_global_cleanup();
	return ret;
}
