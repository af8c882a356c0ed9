/* A test-only driver of lib/adapters/s3 for tests/integration/t6000-s3-adapter.sh,
 * until `opsctl backup` uploads offsite itself. Reads [storage "NAME"] from a
 * config (and the env file beside it), runs one operation, prints its result
 * as one JSON document, and exits with the error's code (S3_NOT_FOUND: 44).
 *
 *   s3tool -c CONF [-e ENV] [-s NAME] [options] put KEY FILE [STATE]
 *   s3tool ... put-sha KEY FILE SHA256 [STATE]   (s3_put_file with want_sha256)
 *                                                 get KEY FILE|- [SHA256]
 *                                                 head KEY | list [PREFIX]
 *                                                 delete KEY... | abandon STATE
 *                                                 settings
 *   options: --part-size BYTES --concurrency N --limit-rate BYTES/S
 *            --attempts N --backoff-ms MS --page-size N --progress
 * Build-only-for-tests: not installed, not part of opsctl. */
#include "adapters/http.h"
#include "adapters/s3.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_NOT_FOUND 44

struct tool {
	const char *conf, *env, *storage;
	uint64_t part_size, rate;
	long concurrency, attempts, backoff_ms, page_size;
	int progress;
};

static void on_progress(void *data, uint64_t done, uint64_t total)
{
	(void)data;
	fprintf(stderr, "progress %llu %llu\n", (unsigned long long)done, (unsigned long long)total);
}

static cJSON *object_json(const struct s3_object *o)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "key", o->key ? o->key : "");
	cJSON_AddNumberToObject(j, "size", (double)o->size);
	cJSON_AddStringToObject(j, "etag", o->etag);
	cJSON_AddNumberToObject(j, "last_modified", (double)o->last_modified);
	return j;
}

static int run(struct s3_client *c, int argc, char **argv, cJSON *out, struct ops_error *err)
{
	const char *cmd = argv[0];

	if ((!strcmp(cmd, "put") && (argc == 3 || argc == 4)) || (!strcmp(cmd, "put-sha") && (argc == 4 || argc == 5))) {
		struct s3_put_result res;
		int sha = !strcmp(cmd, "put-sha");
		const char *state = argc == 4 + sha ? argv[3 + sha] : NULL;
		int ret = s3_put_file(c, argv[1], argv[2], state, sha ? argv[3] : NULL, &res, err);
		cJSON_AddNumberToObject(out, "retries", res.retries);
		cJSON_AddBoolToObject(out, "source_damaged", res.source_damaged);
		if (ret < 0)
			return ret;
		cJSON_AddNumberToObject(out, "size", (double)res.size);
		cJSON_AddStringToObject(out, "etag", res.etag);
		cJSON_AddNumberToObject(out, "parts", res.parts);
		cJSON_AddNumberToObject(out, "parts_resumed", res.parts_resumed);
		return 0;
	}
	if (!strcmp(cmd, "get") && (argc == 3 || argc == 4)) {
		char sha[65];
		uint64_t size = 0;
		int ret = s3_get_file(c, argv[1], strcmp(argv[2], "-") ? argv[2] : NULL, argc == 4 ? argv[3] : NULL,
				      sha, &size, err);
		if (ret < 0)
			return ret;
		cJSON_AddStringToObject(out, "sha256", sha);
		cJSON_AddNumberToObject(out, "size", (double)size);
		return 0;
	}
	if (!strcmp(cmd, "head") && argc == 2) {
		struct s3_object o;
		int ret = s3_head(c, argv[1], &o, err);
		if (ret == 0)
			cJSON_AddItemToObject(out, "object", object_json(&o));
		s3_object_release(&o);
		return ret;
	}
	if (!strcmp(cmd, "list") && argc <= 2) {
		struct s3_list l = S3_LIST_INIT;
		cJSON *arr = cJSON_AddArrayToObject(out, "objects");
		int ret = s3_list(c, argc == 2 ? argv[1] : NULL, &l, err);
		for (size_t i = 0; ret == 0 && i < l.nr; i++)
			cJSON_AddItemToArray(arr, object_json(&l.items[i]));
		s3_list_release(&l);
		return ret;
	}
	if (!strcmp(cmd, "delete") && argc >= 2)
		return s3_delete_many(c, (const char *const *)argv + 1, (size_t)argc - 1, err);
	if (!strcmp(cmd, "abandon") && argc == 2)
		return s3_put_abandon(c, argv[1], err);
	if (!strcmp(cmd, "settings") && argc == 1) {
		const struct s3_settings *s = c->set;
		cJSON_AddStringToObject(out, "endpoint", s->endpoint);
		cJSON_AddStringToObject(out, "bucket", s->bucket);
		cJSON_AddStringToObject(out, "prefix", s->prefix);
		cJSON_AddStringToObject(out, "region", s->region);
		cJSON_AddBoolToObject(out, "path_style", s->path_style);
		cJSON_AddBoolToObject(out, "verify_tls", s->verify_tls);
		cJSON_AddStringToObject(out, "credentials_from", s->credentials_from);
		cJSON_AddNumberToObject(out, "part_size", (double)s->part_size);
		cJSON_AddNumberToObject(out, "concurrency", s->concurrency);
		cJSON_AddNumberToObject(out, "timeout_ms", (double)s->timeout_ms);
		return 0;
	}
	return ops_error_set(err, OPS_EXIT_USAGE, "unknown command or wrong arguments: '%s'", cmd);
}

static int parse_options(struct tool *t, int argc, char **argv, int *next, struct ops_error *err)
{
	int i;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int ret = 0;
		if (!strcmp(o, "--progress")) {
			t->progress = 1;
			continue;
		}
		if (!v)
			return ops_error_set(err, OPS_EXIT_USAGE, "option '%s' needs a value", o);
		i++;
		if (!strcmp(o, "-c"))
			t->conf = v;
		else if (!strcmp(o, "-e"))
			t->env = v;
		else if (!strcmp(o, "-s"))
			t->storage = v;
		else if (!strcmp(o, "--part-size"))
			ret = parse_size(v, &t->part_size, err);
		else if (!strcmp(o, "--limit-rate"))
			ret = parse_size(v, &t->rate, err);
		else if (!strcmp(o, "--concurrency"))
			ret = parse_int(v, 1, S3_MAX_CONCURRENCY, &t->concurrency, err);
		else if (!strcmp(o, "--attempts"))
			ret = parse_int(v, 1, 100, &t->attempts, err);
		else if (!strcmp(o, "--backoff-ms"))
			ret = parse_int(v, 1, 600000, &t->backoff_ms, err);
		else if (!strcmp(o, "--page-size"))
			ret = parse_int(v, 1, 1000, &t->page_size, err);
		else
			return ops_error_set(err, OPS_EXIT_USAGE, "unknown option '%s'", o);
		if (ret < 0)
			return ret;
	}
	*next = i;
	if (!t->conf || i >= argc)
		return ops_error_set(err, OPS_EXIT_USAGE, "usage: s3tool -c CONF [-e ENV] [-s NAME] [options] CMD ARGS...");
	return 0;
}

int main(int argc, char **argv)
{
	struct tool t = { .storage = "test" };
	struct ops_error err = OPS_ERROR_INIT;
	struct config cfg;
	struct envfile env;
	struct s3_settings set;
	struct s3_client c;
	cJSON *out = cJSON_CreateObject();
	int next = 0, ret, code;

	config_init(&cfg);
	envfile_init(&env);
	s3_settings_init(&set);
	s3_client_init(&c, &set);
	if ((ret = parse_options(&t, argc, argv, &next, &err)) < 0 || (ret = http_global_init(&err)) < 0)
		goto out;
	if (t.env && (ret = envfile_load(&env, t.env, &err)) < 0)
		goto out;
	if ((ret = config_load(&cfg, t.conf, t.env ? &env : NULL, &err)) < 0 ||
	    (ret = s3_settings_load(&set, &cfg, t.storage, t.env ? &env : NULL, &err)) < 0)
		goto out;
	/* below S3's 5 MiB minimum only here: s3rver takes small parts, which
	 * keeps a many-part test quick */
	if (t.part_size)
		set.part_size = t.part_size;
	if (t.concurrency)
		set.concurrency = t.concurrency;
	c.rate_limit = t.rate;
	if (t.attempts)
		c.max_attempts = (int)t.attempts;
	if (t.backoff_ms)
		c.backoff_ms = t.backoff_ms;
	c.list_page_size = (unsigned)t.page_size;
	if (t.progress)
		c.progress = on_progress;
	ret = run(&c, argc - next, argv + next, out, &err);
out:
	code = ret == S3_NOT_FOUND ? EXIT_NOT_FOUND : ret < 0 ? err.code : 0;
	cJSON_AddNumberToObject(out, "exit", code);
	if (ret < 0) {
		cJSON_AddStringToObject(out, "error", err.msg.buf);
		fprintf(stderr, "s3tool: error: %s\n", err.msg.buf);
		if (err.hint.len)
			fprintf(stderr, "hint: %s\n", err.hint.buf);
	}
	{
		char *text = cJSON_Print(out);
		puts(text);
		free(text);
	}
	cJSON_Delete(out);
	s3_client_release(&c);
	s3_settings_release(&set);
	envfile_release(&env);
	config_release(&cfg);
	ops_error_release(&err);
	http_global_cleanup();
	return code;
}
