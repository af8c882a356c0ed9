/* history.jsonl: the append-only audit log of every mutating command. */
#ifndef OPSCTL_HISTORY_H
#define OPSCTL_HISTORY_H

#include <cjson/cJSON.h>
#include "base/error.h"

/* Appends one line to STATE_DIR/history.jsonl: the fields of `fields` (taken
 * over: the function frees it) plus "time" (RFC 3339 UTC), "user", "host",
 * "pid", "command", "outcome" (the exit name) and "exit". Never put secret
 * values in fields; use history_fingerprint. */
int history_append(const char *state_dir, const char *command, int exit_code,
		   cJSON *fields, struct ops_error *err);
/* "sha256:" + first 12 hex digits of SHA-256(value). out must hold 20 bytes. */
void history_fingerprint(const char *value, size_t len, char out[20]);

#endif
