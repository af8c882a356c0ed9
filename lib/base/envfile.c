/* The .env reader and writer: one line record per logical line, so a change
 * to one key leaves every other byte of the file as it was. */
#include "base/envfile.h"
#include "base/exitcode.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where a logical line's parts are, as offsets into the text it was read from. */
struct line_info {
	size_t end;        /* just past the line, its line ending included */
	int is_entry;      /* 0 for blank lines and comments */
	size_t key_start, key_len;
	size_t val_start, val_end; /* the value as written, quotes included */
	char quote;        /* '"', '\'' or 0 */
};

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int is_key_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_key_char(char c)
{
	return is_key_start(c) || (c >= '0' && c <= '9') || c == '.';
}

int envfile_key_valid(const char *key)
{
	if (!key || !is_key_start(*key))
		return 0;
	for (key++; *key; key++)
		if (!is_key_char(*key))
			return 0;
	return 1;
}

static size_t physical_line_end(const char *text, size_t len, size_t from)
{
	const char *nl = memchr(text + from, '\n', len - from);
	return nl ? (size_t)(nl - text) : len;
}

/* The end of a physical line's content: before "\n", "\r\n", or a final "\r". */
static size_t content_end(const char *text, size_t start, size_t eol)
{
	if (eol > start && text[eol - 1] == '\r')
		return eol - 1;
	return eol;
}

/*
 * Parses the logical line at pos (a quoted value may run over several
 * physical lines). Fills li and, for an entry, the unquoted value into value.
 * Returns 0, or -1 when the line is not blank, a comment or KEY=VALUE.
 */
static int scan_line(const char *text, size_t len, size_t pos, struct line_info *li,
		     struct strbuf *value)
{
	size_t eol = physical_line_end(text, len, pos);
	size_t cend = content_end(text, pos, eol);
	size_t p = pos;

	memset(li, 0, sizeof(*li));
	strbuf_reset(value);
	li->end = eol < len ? eol + 1 : len;
	if (memchr(text + pos, '\0', li->end - pos))
		return -1;

	while (p < cend && is_blank(text[p]))
		p++;
	if (p == cend || text[p] == '#')
		return 0;

	if (cend - p > 6 && !memcmp(text + p, "export", 6) && is_blank(text[p + 6])) {
		p += 6;
		while (p < cend && is_blank(text[p]))
			p++;
	}
	if (p == cend || !is_key_start(text[p]))
		return -1;
	li->key_start = p;
	while (p < cend && is_key_char(text[p]))
		p++;
	li->key_len = p - li->key_start;
	while (p < cend && is_blank(text[p]))
		p++;
	if (p == cend || text[p] != '=')
		return -1;
	p++;
	while (p < cend && is_blank(text[p]))
		p++;
	li->is_entry = 1;
	li->val_start = p;

	if (p < cend && (text[p] == '"' || text[p] == '\'')) {
		size_t i = p + 1;

		li->quote = text[p];
		while (i < len && text[i] != li->quote) {
			if (li->quote == '"' && text[i] == '\\' && i + 1 < len) {
				char c = text[i + 1];
				if (c == '"' || c == '\\')
					strbuf_addch(value, c);
				else if (c == 'n')
					strbuf_addch(value, '\n');
				else
					strbuf_add(value, text + i, 2); /* kept as written */
				i += 2;
				continue;
			}
			strbuf_addch(value, text[i]);
			i++;
		}
		if (i >= len)
			return -1; /* unterminated quote */
		li->val_end = i + 1;
		/* the closing quote may sit on a later physical line */
		eol = physical_line_end(text, len, li->val_end);
		cend = content_end(text, li->val_end, eol);
		li->end = eol < len ? eol + 1 : len;
		if (memchr(text + pos, '\0', li->end - pos))
			return -1;
		for (i = li->val_end; i < cend && is_blank(text[i]); i++)
			;
		if (i < cend && text[i] != '#')
			return -1;
		return 0;
	} else {
		/* unquoted: a '#' after whitespace starts a comment; trailing blanks go */
		int prev_blank = is_blank(text[p - 1]);
		size_t i, last = p;

		for (i = p; i < cend; i++) {
			if (text[i] == '#' && prev_blank)
				break;
			prev_blank = is_blank(text[i]);
			if (!prev_blank)
				last = i + 1;
		}
		li->val_end = last;
		strbuf_add(value, text + p, last - p);
	}
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void envfile_init(struct envfile *env)
{
	env->path = NULL;
	env->lines = NULL;
	env->nr = env->alloc = 0;
}

void envfile_release(struct envfile *env)
{
	size_t i;

	for (i = 0; i < env->nr; i++) {
		free_secret(env->lines[i].raw);
		free_secret(env->lines[i].key);
		free_secret(env->lines[i].value);
	}
	free(env->lines);
	free(env->path);
	envfile_init(env);
}

static struct envfile_line *add_line(struct envfile *env)
{
	if (env->nr == env->alloc) {
		env->alloc = env->alloc ? env->alloc * 2 : 16;
		env->lines = xrealloc(env->lines, env->alloc * sizeof(*env->lines));
	}
	memset(&env->lines[env->nr], 0, sizeof(env->lines[0]));
	return &env->lines[env->nr++];
}

int envfile_parse(struct envfile *env, const char *name, const char *text, size_t len,
		  struct ops_error *err)
{
	struct strbuf value = STRBUF_INIT;
	size_t pos = 0;
	int lineno = 1, ret = 0;

	envfile_release(env);
	env->path = xstrdup(name);
	while (pos < len) {
		struct line_info li;
		struct envfile_line *line;
		size_t i;

		if (scan_line(text, len, pos, &li, &value) < 0) {
			ret = ops_error_set(err, OPS_EXIT_CONFIG,
					    "%s:%d: invalid line in env file (expected KEY=VALUE)",
					    name, lineno);
			envfile_release(env);
			goto out;
		}
		line = add_line(env);
		line->raw = xstrndup(text + pos, li.end - pos);
		if (li.is_entry) {
			line->key = xstrndup(text + li.key_start, li.key_len);
			line->value = xstrndup(value.buf, value.len);
		}
		for (i = pos; i < li.end; i++)
			if (text[i] == '\n')
				lineno++;
		pos = li.end;
	}
out:
	strbuf_release_secret(&value);
	return ret;
}

/* Reads the whole file, sized up front so a secret is not left behind in
 * memory that realloc gave back. Returns -1 with errno set. */
static int read_whole_file(const char *path, struct strbuf *out)
{
	struct stat st;
	int fd, ret = -1, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		goto out;
	strbuf_grow(out, (size_t)st.st_size + 1);
	for (;;) {
		ssize_t n;

		if (out->alloc - out->len < 2)
			strbuf_grow(out, 8192);
		n = read(fd, out->buf + out->len, out->alloc - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->buf[out->len] = '\0';
	}
	ret = 0;
out:
	saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

int envfile_load(struct envfile *env, const char *path, struct ops_error *err)
{
	struct strbuf buf = STRBUF_INIT;
	int ret;

	if (read_whole_file(path, &buf) < 0) {
		char reason[128];

		strlcpy_s(reason, ops_strerror(errno), sizeof(reason));
		reason[0] = (char)tolower((unsigned char)reason[0]);
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "cannot read env file '%s': %s", path,
				    reason);
		goto out;
	}
	ret = envfile_parse(env, path, buf.buf, buf.len, err);
out:
	strbuf_release_secret(&buf);
	return ret;
}

const char *envfile_get(const struct envfile *env, const char *key)
{
	size_t i;

	for (i = env->nr; i-- > 0;)
		if (env->lines[i].key && !strcmp(env->lines[i].key, key))
			return env->lines[i].value;
	return NULL;
}

static int needs_quoting(const char *value)
{
	return value[strcspn(value, " \t#\"'\\\n\r")] != '\0';
}

/* Writes value in the given quote style ('"', '\'' or 0), switching to
 * double quotes when the style cannot hold the value. Returns the style used. */
static char add_value(struct strbuf *sb, const char *value, char quote)
{
	const char *p;

	if (quote == '\'' && strpbrk(value, "'\n"))
		quote = '"';
	if (!quote && needs_quoting(value))
		quote = '"';
	if (!quote) {
		strbuf_addstr(sb, value);
		return 0;
	}
	strbuf_addch(sb, quote);
	for (p = value; *p; p++) {
		if (quote == '"' && (*p == '"' || *p == '\\'))
			strbuf_addch(sb, '\\');
		if (quote == '"' && *p == '\n')
			strbuf_addstr(sb, "\\n");
		else
			strbuf_addch(sb, *p);
	}
	strbuf_addch(sb, quote);
	return quote;
}

/* The line ending new lines get: the one the file already uses. */
static const char *file_eol(const struct envfile *env)
{
	size_t i;

	for (i = 0; i < env->nr; i++) {
		const char *nl = strchr(env->lines[i].raw, '\n');
		if (nl)
			return nl > env->lines[i].raw && nl[-1] == '\r' ? "\r\n" : "\n";
	}
	return "\n";
}

/* Gives line (which assigns a key) the value, keeping everything else. */
static void rewrite_line(struct envfile_line *line, const char *value)
{
	struct strbuf raw = STRBUF_INIT, scratch = STRBUF_INIT;
	struct line_info li;
	const char *suffix;

	/* sized up front: a realloc would leave copies of the secret behind */
	strbuf_grow(&raw, strlen(line->raw) + 2 * strlen(value) + 16);
	/* it parsed when it was read, so it parses again */
	scan_line(line->raw, strlen(line->raw), 0, &li, &scratch);
	suffix = line->raw + li.val_end;
	strbuf_add(&raw, line->raw, li.val_start);
	/* "KEY= #c" set to "v" must not become "KEY= v#c" */
	if (!add_value(&raw, value, li.quote) && *suffix == '#')
		strbuf_addch(&raw, ' ');
	strbuf_addstr(&raw, suffix);
	free_secret(line->raw);
	free_secret(line->value);
	line->raw = strbuf_detach(&raw, NULL);
	line->value = xstrdup(value);
	strbuf_release_secret(&scratch);
}

void envfile_set(struct envfile *env, const char *key, const char *value)
{
	struct strbuf raw = STRBUF_INIT;
	struct envfile_line *line;
	const char *eol;
	int found = 0;

	if (!envfile_key_valid(key))
		return;
	/* every assignment: whichever one the app reads, and no old value left */
	for (size_t i = 0; i < env->nr; i++) {
		if (env->lines[i].key && !strcmp(env->lines[i].key, key)) {
			rewrite_line(&env->lines[i], value);
			found = 1;
		}
	}
	if (found)
		return;
	eol = file_eol(env);
	if (env->nr && !ends_with(env->lines[env->nr - 1].raw, "\n")) {
		struct envfile_line *last = &env->lines[env->nr - 1];
		size_t n = strlen(last->raw);
		/* a final "\r" was read as a line ending: complete it, don't double it */
		const char *nl = n && last->raw[n - 1] == '\r' ? "\n" : eol;
		size_t k = strlen(nl);
		char *joined = xmalloc(n + k + 1);

		memcpy(joined, last->raw, n);
		memcpy(joined + n, nl, k + 1);
		free_secret(last->raw);
		last->raw = joined;
	}
	strbuf_grow(&raw, strlen(key) + 2 * strlen(value) + 16);
	strbuf_addf(&raw, "%s=", key);
	add_value(&raw, value, 0);
	strbuf_addstr(&raw, eol);
	line = add_line(env);
	line->key = xstrdup(key);
	line->raw = strbuf_detach(&raw, NULL);
	line->value = xstrdup(value);
}

void envfile_serialize(const struct envfile *env, struct strbuf *out)
{
	size_t i;

	for (i = 0; i < env->nr; i++)
		strbuf_addstr(out, env->lines[i].raw);
}
