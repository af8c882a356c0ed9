/* The SQL splitter: the token rules of PostgreSQL's scan.l and psql's
 * psqlscan.l (PostgreSQL 16+), reduced to what decides where a statement ends. */
#include "base/sqlsplit.h"
#include "base/exitcode.h"
#include "base/strbuf.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct scanner {
	const char *s;
	size_t len;
	size_t pos;
	/* psql's state: a ';' splits only at paren depth 0 outside BEGIN ATOMIC */
	size_t paren_depth;
	size_t begin_depth;
	size_t word_count;      /* identifiers seen in this statement */
	char lead_words[4];     /* first letters of CREATE/OR/REPLACE/FUNCTION/PROCEDURE */
	struct ops_error *err;
};

/* Byte at i as 0..255, or -1 past the end: lookahead never needs a bounds check. */
static int at(const struct scanner *sc, size_t i)
{
	return i < sc->len ? (unsigned char)sc->s[i] : -1;
}

/* scan.l's {space}, with \v as in PostgreSQL 16 and later */
static int is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_horiz_space(int c)
{
	return c == ' ' || c == '\t' || c == '\f' || c == '\v';
}

static int is_newline(int c)
{
	return c == '\n' || c == '\r';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* {ident_start}; bytes >= 0x80 count as letters, as in scan.l */
static int is_ident_start(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c >= 0x80;
}

static int is_ident_cont(int c)
{
	return is_ident_start(c) || is_digit(c) || c == '$';
}

/* {dolq_cont}: like an identifier, but a tag cannot contain '$' */
static int is_dolq_cont(int c)
{
	return is_ident_start(c) || is_digit(c);
}

static int lower_ascii(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Whether w[0..n) is the lowercase keyword kw, ignoring ASCII case. */
static int word_is(const char *w, size_t n, const char *kw)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!kw[i] || lower_ascii((unsigned char)w[i]) != kw[i])
			return 0;
	return kw[n] == '\0';
}

static size_t line_comment_end(const char *s, size_t len, size_t i)
{
	while (i < len && !is_newline((unsigned char)s[i]))
		i++;
	return i;
}

/* End of the nested comment opened by the slash-star at i, or 0 when it
 * never closes. Each slash-star nests, each star-slash closes one level. */
static size_t block_comment_end(const char *s, size_t len, size_t i)
{
	size_t depth = 0;

	for (i += 2; i + 1 < len; i++) {
		if (s[i] == '/' && s[i + 1] == '*') {
			depth++;
			i++;
		} else if (s[i] == '*' && s[i + 1] == '/') {
			if (!depth)
				return i + 2;
			depth--;
			i++;
		}
	}
	return 0;
}

static int unterminated(struct scanner *sc, const char *what, size_t open)
{
	return ops_error_set(sc->err, OPS_EXIT_CONFIG, "unterminated %s starting at line %d",
			     what, sql_line_at(sc->s, sc->len, open));
}

/* scan.l's {quotecontinue}: after a closing quote at i - 1, whitespace
 * holding a newline (and only -- comments) then a quote continues the same
 * literal, in the same state (so E'a'<newline>'\'' keeps its escapes).
 * Returns the offset after the continuing quote, or 0. */
static size_t quote_continues(const struct scanner *sc, size_t i)
{
	for (;;) {
		if (is_horiz_space(at(sc, i)))
			i++;
		else if (at(sc, i) == '-' && at(sc, i + 1) == '-')
			i = line_comment_end(sc->s, sc->len, i);
		else
			break;
	}
	if (!is_newline(at(sc, i)))
		return 0;
	for (i++;;) {
		if (is_space(at(sc, i)))
			i++;
		else if (at(sc, i) == '-' && at(sc, i + 1) == '-')
			i = line_comment_end(sc->s, sc->len, i);
		else
			break;
	}
	return at(sc, i) == '\'' ? i + 1 : 0;
}

/* A '...' literal whose opening quote is at quote (open is where its
 * prefix, if any, starts). With backslashes (E'...'), a backslash escapes
 * the next byte, quotes included. */
static int skip_string(struct scanner *sc, size_t quote, int backslashes, size_t open)
{
	size_t i = quote + 1, next;
	int c;

	for (;;) {
		c = at(sc, i);
		if (c < 0)
			return unterminated(sc, "quoted string", open);
		if (backslashes && c == '\\') {
			i += 2;
			continue;
		}
		if (c != '\'') {
			i++;
			continue;
		}
		if (at(sc, i + 1) == '\'') {
			i += 2;
			continue;
		}
		next = quote_continues(sc, i + 1);
		if (!next) {
			sc->pos = i + 1;
			return 0;
		}
		/* an unterminated continuation is reported where its quote is */
		open = next - 1;
		i = next;
	}
}

/* A "..." identifier (or U&"...") with "" as the only escape. */
static int skip_quoted_ident(struct scanner *sc, size_t quote, size_t open)
{
	size_t i = quote + 1;
	const char *q;

	for (;;) {
		q = i < sc->len ? memchr(sc->s + i, '"', sc->len - i) : NULL;
		if (!q)
			return unterminated(sc, "quoted identifier", open);
		i = (size_t)(q - sc->s) + 1;
		if (at(sc, i) != '"') {
			sc->pos = i;
			return 0;
		}
		i++;
	}
}

/* $tag$...$tag$: the body ends at the first occurrence of the same
 * delimiter; nothing inside is special. */
static int skip_dollar_quote(struct scanner *sc, size_t open, size_t delim_len)
{
	const char *delim = sc->s + open, *d;
	size_t i = open + delim_len;

	while (i < sc->len && (d = memchr(sc->s + i, '$', sc->len - i))) {
		i = (size_t)(d - sc->s);
		if (sc->len - i >= delim_len && !memcmp(d, delim, delim_len)) {
			sc->pos = i + delim_len;
			return 0;
		}
		i++;
	}
	return unterminated(sc, "dollar-quoted string", open);
}

/* '$' outside quotes: a dollar quote, a $1 parameter, or a lone '$'. */
static int scan_dollar(struct scanner *sc)
{
	size_t p = sc->pos, e = p + 1;
	int c1 = at(sc, p + 1);

	if (is_digit(c1)) {
		/* {param}, or {param_junk} when an identifier follows: $1a$$ is one token */
		while (is_digit(at(sc, e)))
			e++;
		if (is_ident_start(at(sc, e)))
			while (is_ident_cont(at(sc, e)))
				e++;
		sc->pos = e;
		return 0;
	}
	if (c1 == '$')
		return skip_dollar_quote(sc, p, 2);
	if (is_ident_start(c1)) {
		while (is_dolq_cont(at(sc, e)))
			e++;
		if (at(sc, e) == '$')
			return skip_dollar_quote(sc, p, e + 1 - p);
	}
	/* {dolqfailed}: only the '$' is taken; "$begin" goes on as an identifier */
	sc->pos = p + 1;
	return 0;
}

static size_t max_size(size_t a, size_t b)
{
	return a > b ? a : b;
}

/* End of the {decinteger} at i (digits with single '_' between them), or i. */
static size_t decinteger_end(const struct scanner *sc, size_t i)
{
	if (!is_digit(at(sc, i)))
		return i;
	for (i++;;) {
		if (is_digit(at(sc, i)))
			i++;
		else if (at(sc, i) == '_' && is_digit(at(sc, i + 1)))
			i += 2;
		else
			return i;
	}
}

static size_t ident_run_end(const struct scanner *sc, size_t i)
{
	while (is_ident_cont(at(sc, i)))
		i++;
	return i;
}

/* The {*_junk} rules: digits from i followed by an identifier form one
 * token (12abc, 1$$ is not a dollar quote after 1a). 0 when none. */
static size_t junk_end(const struct scanner *sc, size_t i)
{
	while (is_digit(at(sc, i)))
		i++;
	return is_ident_start(at(sc, i)) ? ident_run_end(sc, i) : 0;
}

/* {real}, {realfail} and {real_junk} after a number ending at base. */
static size_t exponent_end(const struct scanner *sc, size_t base)
{
	size_t j = base + 1, d;
	int sign;

	if (at(sc, base) != 'e' && at(sc, base) != 'E')
		return base;
	sign = at(sc, j) == '+' || at(sc, j) == '-';
	if (sign)
		j++;
	d = decinteger_end(sc, j);
	if (d == j)
		return sign ? j : base;   /* {realfail} keeps the sign: 1e--x is no comment */
	return max_size(d, junk_end(sc, j));
}

/* flex's longest match among the number rules starting at p (a digit, or
 * '.' before a digit). Only its length matters here: it decides whether
 * what follows starts a quote, a comment or an identifier. */
static size_t number_end(const struct scanner *sc, size_t p)
{
	size_t best = 0, d, frac;

	if (at(sc, p) == '.') {
		frac = p + 1;
	} else {
		d = decinteger_end(sc, p);
		best = max_size(d, junk_end(sc, p));   /* also covers 0x1F, 0o7, 0b1 */
		best = max_size(best, exponent_end(sc, d));
		if (at(sc, d) != '.')
			return best;
		if (at(sc, d + 1) == '.')
			return d;   /* {numericfail}: 1..10 */
		frac = d + 1;
	}
	d = decinteger_end(sc, frac);
	best = max_size(best, d);
	best = max_size(best, junk_end(sc, frac));
	return max_size(best, exponent_end(sc, d));
}

/* psqlscan.l's heuristic for SQL-standard function bodies: in a statement
 * that starts CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN opens a block,
 * CASE inside one opens another and END closes one, at paren depth 0. */
static void note_identifier(struct scanner *sc, const char *w, size_t n)
{
	const char *lw = sc->lead_words;

	if (sc->word_count == 0)
		memset(sc->lead_words, 0, sizeof(sc->lead_words));
	if (word_is(w, n, "create") || word_is(w, n, "function") || word_is(w, n, "procedure") ||
	    word_is(w, n, "or") || word_is(w, n, "replace")) {
		if (sc->word_count < sizeof(sc->lead_words))
			sc->lead_words[sc->word_count] = (char)lower_ascii((unsigned char)w[0]);
	}
	if (sc->word_count < SIZE_MAX)
		sc->word_count++;

	if (lw[0] != 'c' || sc->paren_depth)
		return;
	if (!(lw[1] == 'f' || lw[1] == 'p' ||
	      (lw[1] == 'o' && lw[2] == 'r' && (lw[3] == 'f' || lw[3] == 'p'))))
		return;
	if (word_is(w, n, "begin")) {
		sc->begin_depth++;
	} else if (word_is(w, n, "case")) {
		if (sc->begin_depth)
			sc->begin_depth++;
	} else if (word_is(w, n, "end")) {
		if (sc->begin_depth)
			sc->begin_depth--;
	}
}

/* A token starting with a letter: a prefixed literal (E'', B'', X'', N'',
 * U&'', U&"") or an identifier/keyword. */
static int scan_word(struct scanner *sc)
{
	size_t p = sc->pos, end;
	int c = at(sc, p), c1 = at(sc, p + 1), c2;

	if (c1 == '\'') {
		switch (c) {
		case 'b': case 'B': case 'x': case 'X': case 'n': case 'N':
			return skip_string(sc, p + 1, 0, p);
		case 'e': case 'E':
			return skip_string(sc, p + 1, 1, p);
		}
	}
	if ((c == 'u' || c == 'U') && c1 == '&') {
		c2 = at(sc, p + 2);
		if (c2 == '\'')
			return skip_string(sc, p + 2, 0, p);
		if (c2 == '"')
			return skip_quoted_ident(sc, p + 2, p);
		sc->pos = p + 1;   /* {xufailed}: a lone "u", not an identifier */
		return 0;
	}
	end = ident_run_end(sc, p);
	note_identifier(sc, sc->s + p, end - p);
	sc->pos = end;
	return 0;
}

/* One token at sc->pos, which is neither whitespace, a comment nor a
 * statement-ending ';'. */
static int scan_token(struct scanner *sc)
{
	size_t p = sc->pos;
	int c = at(sc, p);

	switch (c) {
	case '(':
		sc->paren_depth++;
		sc->pos++;
		return 0;
	case ')':
		if (sc->paren_depth)
			sc->paren_depth--;
		sc->pos++;
		return 0;
	case '\'':
		return skip_string(sc, p, 0, p);
	case '"':
		return skip_quoted_ident(sc, p, p);
	case '$':
		return scan_dollar(sc);
	}
	if (is_digit(c) || (c == '.' && is_digit(at(sc, p + 1)))) {
		sc->pos = number_end(sc, p);
		return 0;
	}
	if (is_ident_start(c))
		return scan_word(sc);
	sc->pos++;
	return 0;
}

/* Counts lines forward from a remembered point, so numbering every
 * statement stays linear in the input. CRLF and a lone CR end one line. */
struct line_cursor {
	size_t offset;
	int line;
};

static int is_line_break(const char *s, size_t len, size_t i)
{
	return s[i] == '\n' || (s[i] == '\r' && (i + 1 >= len || s[i + 1] != '\n'));
}

static int line_cursor_at(struct line_cursor *lc, const char *s, size_t len, size_t offset)
{
	for (; lc->offset < offset; lc->offset++)
		if (is_line_break(s, len, lc->offset) && lc->line < INT_MAX)
			lc->line++;
	return lc->line;
}

static void add_stmt(struct sql_script *out, struct line_cursor *lc, const char *s, size_t len,
		     size_t start, size_t end, size_t body_start, size_t body_end)
{
	struct sql_stmt *st;

	while (body_end > body_start && is_space((unsigned char)s[body_end - 1]))
		body_end--;
	if (body_end == body_start)
		body_start = body_end = start;
	if (out->nr == out->alloc) {
		out->alloc = out->alloc ? out->alloc * 2 : 16;
		out->stmts = xrealloc(out->stmts, out->alloc * sizeof(*out->stmts));
	}
	st = &out->stmts[out->nr++];
	st->start = start;
	st->len = end - start;
	st->body_start = body_start;
	st->body_len = body_end - body_start;
	st->line = line_cursor_at(lc, s, len, body_start);
}

int sql_split(const char *text, size_t len, struct sql_script *out, struct ops_error *err)
{
	struct scanner sc;
	struct line_cursor lc = { 0, 1 };
	size_t piece_start = 0, body_start = 0, end;
	int have_body = 0, c;

	out->stmts = NULL;
	out->nr = out->alloc = 0;
	memset(&sc, 0, sizeof(sc));
	sc.s = text;
	sc.len = text ? len : 0;
	sc.err = err;

	while (sc.pos < sc.len) {
		c = at(&sc, sc.pos);
		if (is_space(c)) {
			sc.pos++;
			continue;
		}
		if (c == '-' && at(&sc, sc.pos + 1) == '-') {
			sc.pos = line_comment_end(text, sc.len, sc.pos);
			continue;
		}
		if (c == '/' && at(&sc, sc.pos + 1) == '*') {
			end = block_comment_end(text, sc.len, sc.pos);
			if (!end) {
				unterminated(&sc, "comment", sc.pos);
				goto fail;
			}
			sc.pos = end;
			continue;
		}
		if (!have_body) {
			have_body = 1;
			body_start = sc.pos;
		}
		if (c == ';' && !sc.paren_depth && !sc.begin_depth) {
			add_stmt(out, &lc, text, sc.len, piece_start, sc.pos + 1, body_start, sc.pos);
			piece_start = ++sc.pos;
			have_body = 0;
			sc.word_count = 0;
			continue;
		}
		if (scan_token(&sc) < 0)
			goto fail;
	}
	if (piece_start < sc.len)
		add_stmt(out, &lc, text, sc.len, piece_start, sc.len,
			 have_body ? body_start : piece_start, have_body ? sc.len : piece_start);
	return 0;

fail:
	sql_script_release(out);
	return -OPS_EXIT_CONFIG;
}

void sql_script_release(struct sql_script *s)
{
	free(s->stmts);
	s->stmts = NULL;
	s->nr = s->alloc = 0;
}

size_t sql_count_statements(const struct sql_script *s)
{
	size_t i, n = 0;

	for (i = 0; i < s->nr; i++)
		if (s->stmts[i].body_len)
			n++;
	return n;
}

int sql_line_at(const char *text, size_t len, size_t offset)
{
	struct line_cursor lc = { 0, 1 };

	if (offset > len)
		offset = len;
	return line_cursor_at(&lc, text, len, offset);
}

/* Bytes in the UTF-8 character starting at text[i]: a lead byte and the
 * continuation bytes it announces; any byte that fits no sequence is a
 * character of its own, as is a sequence cut short. */
static size_t utf8_char_len(const unsigned char *text, size_t len, size_t i)
{
	unsigned char c = text[i];
	size_t want, n = 1;

	if (c >= 0xC2 && c <= 0xDF)
		want = 1;
	else if (c >= 0xE0 && c <= 0xEF)
		want = 2;
	else if (c >= 0xF0 && c <= 0xF4)
		want = 3;
	else
		want = 0;
	while (want-- && i + n < len && (text[i + n] & 0xC0) == 0x80)
		n++;
	return n;
}

size_t sql_char_to_byte(const char *text, size_t len, size_t charpos)
{
	size_t i = 0, n;

	for (n = 1; n < charpos && i < len; n++)
		i += utf8_char_len((const unsigned char *)text, len, i);
	return i;
}

/* Offset of the first byte after whitespace and comments from i. */
static size_t skip_blank(const char *s, size_t len, size_t i)
{
	size_t end;

	while (i < len) {
		if (is_space((unsigned char)s[i])) {
			i++;
		} else if (i + 1 < len && s[i] == '-' && s[i + 1] == '-') {
			i = line_comment_end(s, len, i);
		} else if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
			end = block_comment_end(s, len, i);
			i = end ? end : len;
		} else {
			break;
		}
	}
	return i;
}

/* Takes the next word (after whitespace and comments) from *i: its start
 * in *word and its length as the return value, 0 when no word follows. */
static size_t next_word(const char *s, size_t len, size_t *i, const char **word)
{
	size_t p = skip_blank(s, len, *i), e = p;

	if (e < len && is_ident_start((unsigned char)s[e]))
		while (e < len && is_ident_cont((unsigned char)s[e]))
			e++;
	*word = s + p;
	*i = e;
	return e - p;
}

int sql_is_transaction_control(const char *body, size_t len)
{
	const char *w, *next;
	size_t i = 0, n, nn;

	n = next_word(body, len, &i, &w);
	nn = next_word(body, len, &i, &next);
	if (word_is(w, n, "begin"))
		return !word_is(next, nn, "atomic");
	if (word_is(w, n, "start") || word_is(w, n, "prepare"))
		return word_is(next, nn, "transaction");
	if (word_is(w, n, "commit") || word_is(w, n, "end") || word_is(w, n, "abort"))
		return 1;
	if (word_is(w, n, "rollback")) {
		if (word_is(next, nn, "work") || word_is(next, nn, "transaction"))
			nn = next_word(body, len, &i, &next);
		return !word_is(next, nn, "to");
	}
	return 0;
}
