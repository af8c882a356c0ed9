/* Parsers for the human units of DESIGN.md section 2: durations, sizes, percentages. */
#ifndef OPSCTL_PARSE_H
#define OPSCTL_PARSE_H

#include <stdint.h>
#include "base/error.h"

/* "500ms", "30s", "5m", "2h", "1d", a bare number means seconds; also compound
 * "1m30s". Result in milliseconds. Errors (code OPS_EXIT_USAGE):
 *   invalid duration 'abc' (expected e.g. 500ms, 30s, 5m, 2h) */
int parse_duration_ms(const char *s, int64_t *out_ms, struct ops_error *err);
/* "512", "512K", "10M", "2G", "1T" (powers of 1024; "KB"/"KiB"/"k" accepted).
 * Result in bytes. */
int parse_size(const char *s, uint64_t *out_bytes, struct ops_error *err);
/* "85%" or "85" or "85.5%": 0..100. */
int parse_percent(const char *s, double *out_pct, struct ops_error *err);
/* Whole number in [min,max]. */
int parse_int(const char *s, long min, long max, long *out, struct ops_error *err);
/* yes/no/true/false/on/off/1/0 */
int parse_bool(const char *s, int *out, struct ops_error *err);

/* Renders for humans: "1.5s", "320ms", "2m05s"; "1.2 MiB". */
void format_duration_ms(struct strbuf *sb, int64_t ms);
void format_size(struct strbuf *sb, uint64_t bytes);
/* Appends the words of v (separated by spaces, tabs or commas: "api, db")
 * to *out (malloc'd copies; *n counts them). v may be NULL. */
void parse_words(const char *v, char ***out, size_t *n);

#endif
