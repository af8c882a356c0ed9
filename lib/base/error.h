/* The error record that lib/ fills and cmd/ renders: a code (an exit code of
 * exitcode.h), a one-line message and an optional hint. */
#ifndef OPSCTL_ERROR_H
#define OPSCTL_ERROR_H

#include "base/strbuf.h"

struct ops_error {
	int code;            /* 0 when no error; otherwise an enum ops_exit value */
	struct strbuf msg;   /* "cannot connect to 'x': connection refused" */
	struct strbuf hint;  /* optional; empty when there is none */
};

#define OPS_ERROR_INIT { 0, STRBUF_INIT, STRBUF_INIT }

void ops_error_init(struct ops_error *e);
void ops_error_release(struct ops_error *e);
void ops_error_clear(struct ops_error *e);

/* Sets code and message (replacing any earlier one) and clears the hint.
 * Returns -code, so `return ops_error_set(err, OPS_EXIT_CONFIG, ...)` reads
 * naturally. err may be NULL. */
int ops_error_set(struct ops_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Adds (replaces) the hint. */
void ops_error_hint(struct ops_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* strerror with the first letter lowercased, as every opsctl message is:
 * "cannot read 'x': no such file or directory". Thread-safe (a per-thread
 * buffer, valid until the next call in the same thread). */
const char *ops_strerror(int errnum);

/* Puts "prefix: " in front of the current message (context added on the way up). */
void ops_error_prefix(struct ops_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
