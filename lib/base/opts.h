/* One option table per command, declared as data and parsed by one parser,
 * so -h, the man pages' SYNOPSIS and the completions come from the same
 * table (after git's parse-options). */
#ifndef OPSCTL_OPTS_H
#define OPSCTL_OPTS_H

#include <stdint.h>
#include <stdio.h>
#include "base/error.h"

enum opt_type {
	OPT_END = 0,
	OPT_BOOL,      /* int*: set to 1 (or 0 with --no-NAME when OPTF_NEG) */
	OPT_COUNT,     /* int*: incremented (-v -v) */
	OPT_STRING,    /* const char**: the argument */
	OPT_INT,       /* long*: whole number */
	OPT_DURATION,  /* int64_t*: milliseconds */
	OPT_SIZE,      /* uint64_t*: bytes */
	OPT_LIST,      /* struct opt_list*: repeatable string */
	OPT_CHOICE,    /* const char**: one of ->choices ("text|json") */
};

#define OPTF_NEG 1        /* also accepts --no-NAME */
#define OPTF_HIDDEN 2     /* not in -h */

struct opt_list {
	const char **items;
	size_t nr, alloc;
};
void opt_list_release(struct opt_list *l);

struct opt {
	enum opt_type type;
	char short_name;        /* 0 = none */
	const char *long_name;  /* NULL = none */
	void *value;
	const char *argh;       /* argument placeholder for -h: "DURATION" */
	const char *help;
	int flags;
	const char *choices;    /* OPT_CHOICE: "text|json" */
};

#define OPT_END_MARK { OPT_END, 0, NULL, NULL, NULL, NULL, 0, NULL }

/* Parser flags */
#define OPTS_STOP_AT_NON_OPTION 1  /* global options: stop at the command name */

/* Parses argv[1..argc-1] (argv[0] is the command name). Options and their
 * values are removed; the remaining operands are left in argv[0..n-1] order
 * starting at index 0 and their count returned (>= 0). "--" ends options.
 * -h/--help returns OPTS_HELP. Errors: -OPS_EXIT_USAGE with
 * "unknown option '--x'" / "option '--wait' needs a value" /
 * "invalid duration ...". */
#define OPTS_HELP (-1000)
int opts_parse(const struct opt *opts, int argc, const char **argv, int flags,
	       struct ops_error *err);

/* Usage text: the usage lines, then one line per option, aligned. */
void opts_usage(FILE *f, const char *const *usage_lines, const struct opt *opts);
/* The option words ("-q --quiet --wait=") for completion scripts/tests. */
void opts_words(FILE *f, const struct opt *opts);

#endif
