/* The error record filled by lib/ and rendered by cmd/, and exit-code names. */
#include "base/error.h"
#include "base/exitcode.h"

#include <stdarg.h>
#include <string.h>

void ops_error_init(struct ops_error *e)
{
	e->code = 0;
	strbuf_init(&e->msg, 0);
	strbuf_init(&e->hint, 0);
}

void ops_error_release(struct ops_error *e)
{
	strbuf_release(&e->msg);
	strbuf_release(&e->hint);
	e->code = 0;
}

void ops_error_clear(struct ops_error *e)
{
	e->code = 0;
	strbuf_reset(&e->msg);
	strbuf_reset(&e->hint);
}

int ops_error_set(struct ops_error *e, int code, const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT;
	va_list ap;
	if (!e)
		return -code;
	/* formatted aside first: callers wrap the previous message
	 * ("cannot read x: %s", err->msg.buf), so an argument may be e->msg */
	va_start(ap, fmt);
	strbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	e->code = code;
	strbuf_release(&e->msg);
	e->msg = msg;
	strbuf_reset(&e->hint);
	return -code;
}

void ops_error_hint(struct ops_error *e, const char *fmt, ...)
{
	struct strbuf hint = STRBUF_INIT;
	va_list ap;
	if (!e)
		return;
	va_start(ap, fmt);
	strbuf_vaddf(&hint, fmt, ap); /* an argument may be e->hint itself */
	va_end(ap);
	strbuf_release(&e->hint);
	e->hint = hint;
}

void ops_error_prefix(struct ops_error *e, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	if (!e)
		return;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	strbuf_addstr(&sb, ": ");
	strbuf_addbuf(&sb, &e->msg);
	strbuf_release(&e->msg);
	e->msg = sb;
}

const char *ops_strerror(int errnum)
{
	static __thread char buf[128];
	char *msg = strerror_r(errnum, buf, sizeof(buf)); /* GNU: may return a static string */
	if (msg != buf)
		strlcpy_s(buf, msg, sizeof(buf));
	/* "No such file" -> "no such file", but keep "ELF ..." style acronyms */
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

const char *ops_exit_name(int code)
{
	switch (code) {
	case OPS_EXIT_OK: return "ok";
	case OPS_EXIT_FAILED: return "failed";
	case OPS_EXIT_USAGE: return "usage";
	case OPS_EXIT_CONFIG: return "config";
	case OPS_EXIT_UNREACHABLE: return "unreachable";
	case OPS_EXIT_INTEGRITY: return "integrity";
	case OPS_EXIT_DEGRADED: return "degraded";
	case OPS_EXIT_ROLLED_BACK: return "rolled-back";
	case OPS_EXIT_ROLLBACK_FAILED: return "rollback-failed";
	case OPS_EXIT_PENDING: return "pending";
	case OPS_EXIT_ABORTED: return "aborted";
	case OPS_EXIT_LOCKED: return "locked";
	default: return "unknown";
	}
}
