/* The opsctl.conf reader: a git-config shaped INI file ([section] and
 * [section "name"], key = value, ; and # comments, ${VAR} expansion), parsed
 * with inih. Every value remembers its file and line for error messages. */
#ifndef OPSCTL_CONFIG_H
#define OPSCTL_CONFIG_H

#include <stdint.h>
#include "base/error.h"

struct envfile;

struct config_entry {
	char *section;     /* "check" */
	char *subsection;  /* "api", or NULL for a plain [section] */
	char *key;         /* lowercased */
	char *value;       /* after ${VAR} expansion */
	int line;
};

struct config {
	char *path;        /* the file it came from; NULL for an empty config */
	struct config_entry *entries;
	size_t nr, alloc;
};

/* Lookup order of DESIGN.md section 3: explicit (from -c), $OPSCTL_CONFIG,
 * ./opsctl.conf, /etc/opsctl/opsctl.conf. Writes the found path (malloc'd) or
 * NULL when none exists and none was asked for. An explicit path or
 * $OPSCTL_CONFIG that does not exist is an error (OPS_EXIT_CONFIG). */
int config_find(const char *explicit_path, char **out_path, struct ops_error *err);

/* Parses path into cfg (which must be config_init'ed). ${VAR} is looked up in
 * the process environment, then in env (may be NULL). An unknown variable, a
 * syntax error or a duplicate key in one section is OPS_EXIT_CONFIG with the
 * message "FILE:LINE: ..." naming the key. */
int config_load(struct config *cfg, const char *path, const struct envfile *env,
		struct ops_error *err);
/* config_load with flags: CONFIG_KEEP_UNDEFINED leaves an undefined ${VAR}
 * as it is instead of failing (the first pass that only needs to find
 * [app] env_file before the env file can be read). */
#define CONFIG_KEEP_UNDEFINED 1u
int config_load_flags(struct config *cfg, const char *path, const struct envfile *env,
		      unsigned flags, struct ops_error *err);
/* Same, from memory (tests, fuzzing); name is used in messages. */
int config_load_string(struct config *cfg, const char *name, const char *text,
		       const struct envfile *env, struct ops_error *err);

void config_init(struct config *cfg);
void config_release(struct config *cfg);

/* Last value for section/subsection/key (subsection NULL = plain section), or NULL. */
const struct config_entry *config_find_entry(const struct config *cfg, const char *section,
					     const char *subsection, const char *key);
const char *config_get(const struct config *cfg, const char *section,
		       const char *subsection, const char *key);

/* Typed getters: leave *out untouched when the key is absent and return 0;
 * a bad value is OPS_EXIT_CONFIG "FILE:LINE: invalid value for 'health.timeout': ..." */
int config_get_duration_ms(const struct config *cfg, const char *section, const char *subsection,
			   const char *key, int64_t *out, struct ops_error *err);
int config_get_size(const struct config *cfg, const char *section, const char *subsection,
		    const char *key, uint64_t *out, struct ops_error *err);
int config_get_percent(const struct config *cfg, const char *section, const char *subsection,
		       const char *key, double *out, struct ops_error *err);
int config_get_int(const struct config *cfg, const char *section, const char *subsection,
		   const char *key, long min, long max, long *out, struct ops_error *err);
int config_get_bool(const struct config *cfg, const char *section, const char *subsection,
		    const char *key, int *out, struct ops_error *err);

/* The distinct subsection names of a section type, in file order
 * (e.g. all [check "NAME"]). Returns the count; *names is malloc'd, the
 * strings inside belong to cfg. */
size_t config_subsections(const struct config *cfg, const char *section, const char ***names);
/* 1 when cfg (may be NULL) has a [section "name"]. */
int config_has_subsection(const struct config *cfg, const char *section, const char *name);

/* Reports a bad value of an entry in the standard form: returns -OPS_EXIT_CONFIG. */
int config_error(const struct config *cfg, const struct config_entry *e, struct ops_error *err,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
