/* history.jsonl: one JSON line per mutating command, appended and fsynced. */
#include "engines/history.h"
#include "adapters/hash.h"
#include "base/exitcode.h"
#include "system/clock.h"
#include "system/fs.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const standard_fields[] = {
	"time", "user", "host", "pid", "command", "outcome", "exit", NULL,
};

static int is_standard_field(const char *name)
{
	size_t i;
	for (i = 0; standard_fields[i]; i++)
		if (!strcmp(name, standard_fields[i]))
			return 1;
	return 0;
}

int history_append(const char *state_dir, const char *command, int exit_code,
		   cJSON *fields, struct ops_error *err)
{
	char host[HOST_NAME_MAX + 1], user[64];
	char when[32];
	cJSON *line = cJSON_CreateObject();
	char *text = NULL, *path = NULL;
	int ret;

	clock_rfc3339(when, time(NULL));
	clock_whoami(user, sizeof(user), host, sizeof(host));
	cJSON_AddStringToObject(line, "time", when);
	cJSON_AddStringToObject(line, "user", user);
	cJSON_AddStringToObject(line, "host", host);
	cJSON_AddNumberToObject(line, "pid", (double)getpid());
	cJSON_AddStringToObject(line, "command", command ? command : "");
	cJSON_AddStringToObject(line, "outcome", ops_exit_name(exit_code));
	cJSON_AddNumberToObject(line, "exit", exit_code);

	/* The standard fields are the contract; a caller's field of the same
	 * name would make the line ambiguous, so it is dropped. */
	while (cJSON_IsObject(fields) && fields->child) {
		cJSON *item = cJSON_DetachItemViaPointer(fields, fields->child);
		if (item->string && !is_standard_field(item->string))
			cJSON_AddItemToObject(line, item->string, item);
		else
			cJSON_Delete(item);
	}

	ret = fs_mkdir_p(state_dir, 0700, err);
	if (ret)
		goto out;
	text = cJSON_PrintUnformatted(line);
	if (!text) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot format the history line");
		goto out;
	}
	path = xstrfmt("%s/history.jsonl", state_dir);
	ret = fs_append_line(path, text, 0600, err);
out:
	free(path);
	free(text);
	cJSON_Delete(line);
	cJSON_Delete(fields);
	return ret;
}

void history_fingerprint(const char *value, size_t len, char out[20])
{
	unsigned char digest[32];
	char hex[65];

	hash_sha256(value, len, digest);
	hash_hex(digest, sizeof(digest), hex);
	memcpy(out, "sha256:", 7);
	memcpy(out + 7, hex, 12);
	out[19] = '\0';
}
