/* Messages on stderr, colour decisions, one-line progress and text tables. */
#include "system/term.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void term_setup(struct term *t, int quiet, int verbose, int no_color, int json_output)
{
	const char *nc = getenv("NO_COLOR");
	const char *tm = getenv("TERM");
	int color_ok = !no_color && !(nc && *nc) && !(tm && !strcmp(tm, "dumb"));

	t->err = stderr;
	t->quiet = quiet;
	t->verbose = verbose;
	t->color_err = color_ok && isatty(STDERR_FILENO);
	t->color_out = color_ok && !json_output && isatty(STDOUT_FILENO);
	t->progress = color_ok && !quiet && !json_output && isatty(STDERR_FILENO);
}

const char *term_color(int enabled, enum term_color c)
{
	static const char *const codes[] = {
		[TC_RESET] = "\033[0m", [TC_RED] = "\033[31m", [TC_GREEN] = "\033[32m",
		[TC_YELLOW] = "\033[33m", [TC_BOLD] = "\033[1m", [TC_DIM] = "\033[2m",
	};
	return enabled ? codes[c] : "";
}

static void vmsg(const struct term *t, const char *prefix, enum term_color c,
		 const char *fmt, va_list ap)
{
	FILE *f = t && t->err ? t->err : stderr;
	int col = t && t->color_err;
	struct strbuf sb = STRBUF_INIT;

	strbuf_addf(&sb, "%s%s%s", term_color(col, c), prefix, term_color(col, TC_RESET));
	strbuf_vaddf(&sb, fmt, ap);
	strbuf_addch(&sb, '\n');
	fwrite(sb.buf, 1, sb.len, f);
	fflush(f);
	strbuf_release(&sb);
}

void term_error(const struct term *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(t, "opsctl: error: ", TC_RED, fmt, ap);
	va_end(ap);
}

void term_warning(const struct term *t, const char *fmt, ...)
{
	va_list ap;
	if (t && t->quiet)
		return;
	va_start(ap, fmt);
	vmsg(t, "opsctl: warning: ", TC_YELLOW, fmt, ap);
	va_end(ap);
}

void term_hint(const struct term *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(t, "hint: ", TC_DIM, fmt, ap);
	va_end(ap);
}

void term_info(const struct term *t, const char *fmt, ...)
{
	va_list ap;
	if (t && t->quiet)
		return;
	va_start(ap, fmt);
	vmsg(t, "", TC_RESET, fmt, ap);
	va_end(ap);
}

void term_verbose(const struct term *t, const char *fmt, ...)
{
	va_list ap;
	if (!t || t->quiet || t->verbose < 1)
		return;
	va_start(ap, fmt);
	vmsg(t, "opsctl: ", TC_DIM, fmt, ap);
	va_end(ap);
}

void term_report(const struct term *t, const struct ops_error *e)
{
	term_error(t, "%s", e->msg.len ? e->msg.buf : "unknown error");
	if (e->hint.len)
		term_hint(t, "%s", e->hint.buf);
}

void term_progress(const struct term *t, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	if (!t || !t->progress)
		return;
	va_start(ap, fmt);
	strbuf_addstr(&sb, "\r\033[K");
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	fwrite(sb.buf, 1, sb.len, t->err);
	fflush(t->err);
	strbuf_release(&sb);
}

void term_progress_done(const struct term *t)
{
	if (!t || !t->progress)
		return;
	fputs("\r\033[K", t->err);
	fflush(t->err);
}

void table_init(struct table *tb, size_t ncols, const char *const *header)
{
	memset(tb, 0, sizeof(*tb));
	tb->ncols = ncols;
	table_add_row(tb, TC_BOLD, header);
}

void table_add_row(struct table *tb, int color, const char *const *cells)
{
	size_t i;
	if (tb->nrows == tb->alloc) {
		tb->alloc = tb->alloc ? tb->alloc * 2 : 8;
		tb->cells = xrealloc(tb->cells, tb->alloc * tb->ncols * sizeof(char *));
		tb->row_color = xrealloc(tb->row_color, tb->alloc * sizeof(int));
	}
	for (i = 0; i < tb->ncols; i++)
		tb->cells[tb->nrows * tb->ncols + i] = xstrdup(cells[i] ? cells[i] : "");
	tb->row_color[tb->nrows] = color;
	tb->nrows++;
}

/* Display width of UTF-8 text: counts code points, which is right for the
 * Latin and CJK-free text opsctl puts in tables. */
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

void table_render(const struct table *tb, struct strbuf *out, int color)
{
	size_t *width = xcalloc(tb->ncols, sizeof(size_t));
	size_t r, c;

	for (r = 0; r < tb->nrows; r++)
		for (c = 0; c < tb->ncols; c++) {
			size_t w = display_width(tb->cells[r * tb->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (r = 0; r < tb->nrows; r++) {
		int rc = tb->row_color[r];
		if (rc)
			strbuf_addstr(out, term_color(color, (enum term_color)rc));
		for (c = 0; c < tb->ncols; c++) {
			const char *cell = tb->cells[r * tb->ncols + c];
			strbuf_addstr(out, cell);
			if (c + 1 < tb->ncols) {
				size_t pad = width[c] - display_width(cell) + 2;
				while (pad--)
					strbuf_addch(out, ' ');
			}
		}
		if (rc)
			strbuf_addstr(out, term_color(color, TC_RESET));
		strbuf_rtrim(out);
		strbuf_addch(out, '\n');
	}
	free(width);
}

void table_release(struct table *tb)
{
	size_t i;
	for (i = 0; i < tb->nrows * tb->ncols; i++)
		free(tb->cells[i]);
	free(tb->cells);
	free(tb->row_color);
	memset(tb, 0, sizeof(*tb));
}
