/* The app's .env file: read, look up, change one key, and write back with
 * every other byte (comments, blank lines, quotes, `export ` prefixes, order,
 * line endings) exactly as it was. */
#ifndef OPSCTL_ENVFILE_H
#define OPSCTL_ENVFILE_H

#include "base/error.h"
#include "base/strbuf.h"

struct envfile_line {
	char *raw;       /* the whole line as read, with its line ending */
	char *key;       /* NULL for comments / blank / unparseable lines */
	char *value;     /* the unquoted, unescaped value */
};

struct envfile {
	char *path;
	struct envfile_line *lines;
	size_t nr, alloc;
};

void envfile_init(struct envfile *env);
/* Wipes values (they can be secrets) and frees. */
void envfile_release(struct envfile *env);

/* Reads path. A missing file is OPS_EXIT_CONFIG "cannot read env file 'P': ...";
 * a line that is neither blank, a comment nor KEY=VALUE is an error naming
 * "P:LINE". Accepts: KEY=value, export KEY=value, KEY="double \"quoted\"\n",
 * KEY='single', trailing " # comment" after unquoted values. */
int envfile_load(struct envfile *env, const char *path, struct ops_error *err);
int envfile_parse(struct envfile *env, const char *name, const char *text, size_t len,
		  struct ops_error *err);

/* Value of the last assignment of key, or NULL. */
const char *envfile_get(const struct envfile *env, const char *key);

/* 1 when key is a valid env file key: [A-Za-z_][A-Za-z0-9_.]* */
int envfile_key_valid(const char *key);

/* Sets key (which must satisfy envfile_key_valid; an invalid key changes
 * nothing): rewrites every line assigning that key (and no other), keeping
 * each one's export prefix and
 * quoting style (quoting is added if the new value needs it); appends
 * "KEY=value\n" when the key is absent. */
void envfile_set(struct envfile *env, const char *key, const char *value);

/* The whole file as it would be written. */
void envfile_serialize(const struct envfile *env, struct strbuf *out);

#endif
