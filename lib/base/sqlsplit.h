/* Splits an SQL script into statements the way PostgreSQL's own lexer sees
 * them: ';' ends a statement except inside '...' (with '' escapes), E'...'
 * (with backslash escapes), "..." identifiers, $tag$...$tag$ dollar quotes,
 * -- and nested C-style comments, parentheses, and the BEGIN ATOMIC ... END
 * body of a SQL-standard CREATE FUNCTION/PROCEDURE. Used for
 * `-- opsctl:no-transaction` migrations and to map errors to FILE:LINE. */
#ifndef OPSCTL_SQLSPLIT_H
#define OPSCTL_SQLSPLIT_H

#include <stddef.h>
#include "base/error.h"

struct sql_stmt {
	/* The piece of the input this statement owns: pieces are contiguous and
	 * their concatenation is exactly the input. It includes the whitespace
	 * and comments before the statement and its terminating ';'. */
	size_t start, len;
	/* The statement itself: from its first significant character to just
	 * before the ';' (or the end of input), trailing whitespace trimmed.
	 * body_len == 0 for a piece that holds only whitespace/comments (or an
	 * empty statement, a lone ';'); body_start == start then. */
	size_t body_start, body_len;
	int line;   /* 1-based line of body_start (of start when body_len == 0) */
};

struct sql_script {
	struct sql_stmt *stmts;
	size_t nr, alloc;
};

#define SQL_SCRIPT_INIT { NULL, 0, 0 }

/* Splits text (need not be NUL-terminated). An unterminated quote, dollar
 * quote or comment is OPS_EXIT_CONFIG: "unterminated dollar-quoted string
 * starting at line 12" (the caller adds the file name). out is overwritten,
 * not appended to (it need not be initialised), and is left empty on error;
 * empty input gives nr == 0. The caller owns out->stmts: release it with
 * sql_script_release. Lines end at LF, CRLF or a lone CR. Strings follow
 * standard_conforming_strings = on; psql's backslash commands and :variables
 * are not special. */
int sql_split(const char *text, size_t len, struct sql_script *out, struct ops_error *err);
void sql_script_release(struct sql_script *s);

/* Number of statements with a body (comment-only pieces not counted). */
size_t sql_count_statements(const struct sql_script *s);

/* 1-based line number of byte offset in text. */
int sql_line_at(const char *text, size_t len, size_t offset);

/* PostgreSQL reports error positions as 1-based character (not byte)
 * positions in the statement it was sent. Converts such a position within
 * text[0..len) to a byte offset (clamped to len). UTF-8 aware. */
size_t sql_char_to_byte(const char *text, size_t len, size_t charpos);

/* Whether a statement body is transaction control (BEGIN, START
 * TRANSACTION, COMMIT, END, ROLLBACK, ABORT, but not BEGIN ATOMIC or
 * ROLLBACK TO SAVEPOINT), case-insensitive, ignoring leading comments.
 * COMMIT PREPARED, ROLLBACK PREPARED and PREPARE TRANSACTION count too. */
int sql_is_transaction_control(const char *body, size_t len);

#endif
