/* strbuf: a growable, always NUL-terminated byte buffer (after git's strbuf). */
#ifndef OPSCTL_STRBUF_H
#define OPSCTL_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	size_t alloc;
	size_t len;
	char *buf; /* never NULL once initialised; points at a shared "" until first growth */
};

extern char strbuf_slopbuf[];
#define STRBUF_INIT { 0, 0, strbuf_slopbuf }

void strbuf_init(struct strbuf *sb, size_t hint);
/* Frees the memory and leaves sb as STRBUF_INIT. */
void strbuf_release(struct strbuf *sb);
/* Like strbuf_release but overwrites the bytes first (secrets). */
void strbuf_release_secret(struct strbuf *sb);
/* Hands the buffer to the caller (free() it); sb is left as STRBUF_INIT. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_setlen(struct strbuf *sb, size_t len);
#define strbuf_reset(sb) strbuf_setlen((sb), 0)

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, int c);
void strbuf_addbuf(struct strbuf *sb, const struct strbuf *other);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
/* Appends s with shell-unsafe characters escaped for display only (never executed). */
void strbuf_addquoted(struct strbuf *sb, const char *s);

void strbuf_trim(struct strbuf *sb);
void strbuf_rtrim(struct strbuf *sb);
int strbuf_starts_with(const struct strbuf *sb, const char *prefix);

/* Small string helpers used everywhere. */
int starts_with(const char *s, const char *prefix);
int ends_with(const char *s, const char *suffix);
/* Copies into dst of size n, always NUL-terminates; returns strlen(src). */
size_t strlcpy_s(char *dst, const char *src, size_t n);
/* malloc/strdup that abort on out-of-memory are the only place opsctl gives up:
 * there is nothing sensible to return when the heap is gone. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xstrfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
