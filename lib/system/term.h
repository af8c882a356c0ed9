/* The terminal side of output: the message API (error/warning/hint/info/
 * verbose/progress, all on stderr), colour decisions and table rendering.
 * stdout only ever carries results, and only cmd/ writes them. */
#ifndef OPSCTL_TERM_H
#define OPSCTL_TERM_H

#include <stdint.h>
#include <stdio.h>
#include "base/error.h"
#include "base/strbuf.h"

struct term {
	FILE *err;          /* stderr; tests may point it elsewhere */
	int quiet;          /* -q: only errors */
	int verbose;        /* -v count */
	int color_err;      /* colour on stderr */
	int color_out;      /* colour on stdout (text tables) */
	int progress;       /* progress bars allowed (stderr is a TTY, not quiet, not json) */
};

/* Decides colour/progress from isatty, NO_COLOR, TERM=dumb, --no-color,
 * -q and the output mode. */
void term_setup(struct term *t, int quiet, int verbose, int no_color, int json_output);

void term_error(const struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void term_warning(const struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void term_hint(const struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Progress notes ("waiting for 'api' (3/90s)"): silenced by -q. */
void term_info(const struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Only with -v. */
void term_verbose(const struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Renders an ops_error: "opsctl: error: MSG" and "hint: HINT". */
void term_report(const struct term *t, const struct ops_error *e);

/* A one-line progress display that redraws itself with \r on a TTY and is a
 * no-op otherwise. */
void term_progress(const struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void term_progress_done(const struct term *t);

/* Colour wrappers: return "" when colour is off. */
enum term_color { TC_RESET, TC_RED, TC_GREEN, TC_YELLOW, TC_BOLD, TC_DIM };
const char *term_color(int enabled, enum term_color c);

/* A text table: columns sized to content, header in bold on a TTY. */
struct table {
	size_t ncols;
	size_t nrows, alloc;
	char **cells;        /* row-major, ncols per row; row 0 is the header */
	int *row_color;      /* enum term_color per row (0 = none) */
};
void table_init(struct table *tb, size_t ncols, const char *const *header);
void table_add_row(struct table *tb, int color, const char *const *cells);
void table_render(const struct table *tb, struct strbuf *out, int color);
void table_release(struct table *tb);

#endif
