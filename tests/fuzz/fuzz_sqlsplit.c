/* libFuzzer target for the SQL splitter: the pieces tile the input (their
 * concatenation is exactly the input), bodies sit inside their pieces with
 * the right lines (LF, CRLF or a lone CR), every piece but the last ends at
 * its ';', and a piece (or one of the first 32 bodies) split on its own
 * splits the same way again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/exitcode.h"
#include "base/sqlsplit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* text split alone must give one piece with its body at body_off, body_len long */
static void check_alone(const char *text, size_t len, size_t body_off, size_t body_len)
{
	struct sql_script s;
	struct ops_error err = OPS_ERROR_INIT;

	if (sql_split(text, len, &s, &err) < 0)
		abort();
	if (s.nr != 1 || s.stmts[0].start != 0 || s.stmts[0].len != len ||
	    s.stmts[0].body_start != body_off || s.stmts[0].body_len != body_len)
		abort();
	sql_script_release(&s);
	ops_error_release(&err);
}

static void check_char_to_byte(const char *text, size_t len)
{
	size_t k, b, prev = 0;

	for (k = 1; k <= len + 2; k++) {
		b = sql_char_to_byte(text, len, k);
		if (b > len || b < prev || (b == prev && k > 1 && prev < len))
			abort();
		prev = b;
		if (k > 64)
			break;
	}
	if (sql_char_to_byte(text, len, SIZE_MAX) != len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct sql_script s;
	struct ops_error err = OPS_ERROR_INIT;
	size_t i, next = 0, line_at = 0;
	int line = 1;

	check_char_to_byte(text, size);
	if (sql_split(text, size, &s, &err) < 0) {
		if (err.code != OPS_EXIT_CONFIG || strncmp(err.msg.buf, "unterminated ", 13) || s.nr)
			abort();
		goto out;
	}
	if (size == 0 && s.nr != 0)
		abort();
	for (i = 0; i < s.nr; i++) {
		const struct sql_stmt *st = &s.stmts[i];
		size_t end = st->start + st->len;

		if (st->start != next || st->len == 0)
			abort();
		next = end;
		if (st->body_start < st->start || st->body_len > end - st->body_start)
			abort();
		if (st->body_len == 0 && st->body_start != st->start)
			abort();
		if (st->body_len && (is_blank(data[st->body_start]) ||
				     is_blank(data[st->body_start + st->body_len - 1])))
			abort();
		/* the line, counted on from the previous body (sql_line_at on each
		 * would make this check quadratic) */
		for (; line_at < st->body_start; line_at++)
			line += data[line_at] == '\n' ||
				(data[line_at] == '\r' && (line_at + 1 == size || data[line_at + 1] != '\n'));
		if (st->line != line || (i < 16 && st->line != sql_line_at(text, size, st->body_start)))
			abort();
		/* every piece but the last ends the statement at a ';' */
		if (i + 1 < s.nr && data[end - 1] != ';')
			abort();
		check_alone(text + st->start, st->len, st->body_start - st->start, st->body_len);
		/* each body once more: the first ones (a third split of the input) */
		if (st->body_len && i < 32)
			check_alone(text + st->body_start, st->body_len, 0, st->body_len);
		(void)sql_is_transaction_control(text + st->body_start, st->body_len);
	}
	if (next != size)
		abort();
	if (sql_count_statements(&s) > s.nr)
		abort();
	sql_script_release(&s);
out:
	ops_error_release(&err);
	return 0;
}
