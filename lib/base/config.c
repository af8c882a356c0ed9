/* opsctl.conf: parsed with inih through our own line reader, which counts
 * lines and reads the [section "name"] headers, so every entry knows where it
 * came from. */
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "base/parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* inih needs its buffer 3 bytes longer than the longest line. */
#define CONFIG_MAX_LINE 65536

struct parse_state {
	struct config *cfg;
	const char *name;
	const char *text;
	size_t len, pos;
	int lineno;
	int at_line_start;
	char *section;          /* current header, lowercased; NULL before the first */
	char *subsection;
	size_t block_start;     /* first entry under the current header */
	const struct envfile *env;
	unsigned flags;         /* CONFIG_KEEP_UNDEFINED */
	struct ops_error *err;
	int failed;             /* err holds the reason; stop reading */
};

static void errno_text(char *buf, size_t n, int errnum)
{
	strlcpy_s(buf, ops_strerror(errnum), n);
	buf[0] = (char)tolower((unsigned char)buf[0]);
}

void config_init(struct config *cfg)
{
	cfg->path = NULL;
	cfg->entries = NULL;
	cfg->nr = cfg->alloc = 0;
}

void config_release(struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nr; i++) {
		struct config_entry *e = &cfg->entries[i];
		free(e->section);
		free(e->subsection);
		free(e->key);
		/* ${DB_PASSWORD} may have been expanded into a value */
		explicit_bzero(e->value, strlen(e->value));
		free(e->value);
	}
	free(cfg->entries);
	free(cfg->path);
	config_init(cfg);
}

static const char *path_or_default(const struct config *cfg)
{
	return cfg->path ? cfg->path : "(config)";
}

/* "health.timeout" or "check.api.timeout" */
static void add_display_key(struct strbuf *sb, const char *section, const char *subsection,
			    const char *key)
{
	strbuf_addstr(sb, section);
	if (subsection)
		strbuf_addf(sb, ".%s", subsection);
	strbuf_addf(sb, ".%s", key);
}

static int is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static int fail(struct parse_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parse_state *st, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	ops_error_set(st->err, OPS_EXIT_CONFIG, "%s:%d: %s", st->name, st->lineno, sb.buf);
	strbuf_release(&sb);
	st->failed = 1;
	return -1;
}

/*
 * Reads a header "[name]" or "[name "sub"]" (line without its ending) into
 * st. Lines that are not headers are left to inih, and so is a header with
 * no ']' at all: inih reports it as a syntax error.
 */
static int track_section(struct parse_state *st, const char *line, size_t len)
{
	struct strbuf sub = STRBUF_INIT;
	const char *p = line, *end = line + len, *close, *q, *name;
	char *lower;
	size_t name_len;
	int ret = 0;

	if (st->lineno == 1 && len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3))
		p += 3;
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (p == end || *p != '[')
		return 0;
	close = memchr(p, ']', (size_t)(end - p));
	if (!close)
		return 0;

	for (q = close + 1; q < end && isspace((unsigned char)*q); q++)
		;
	if (q < end && *q != ';' && *q != '#')
		goto malformed;
	for (q = p + 1; q < close && isspace((unsigned char)*q); q++)
		;
	name = q;
	while (q < close && is_name_char(*q))
		q++;
	name_len = (size_t)(q - name);
	if (!name_len)
		goto malformed;
	while (q < close && isspace((unsigned char)*q))
		q++;
	if (q < close) {
		if (*q != '"' || q == name + name_len)
			goto malformed;
		for (q++; q < close && *q != '"'; q++) {
			if (*q == '\\' && q + 1 < close)
				q++; /* \" and \\ as in git-config */
			strbuf_addch(&sub, *q);
		}
		if (q == close || !sub.len)
			goto malformed;
		for (q++; q < close && isspace((unsigned char)*q); q++)
			;
		if (q < close)
			goto malformed;
	}

	free(st->section);
	free(st->subsection);
	st->section = xstrndup(name, name_len);
	for (lower = st->section; *lower; lower++)
		*lower = (char)tolower((unsigned char)*lower);
	st->subsection = sub.len ? strbuf_detach(&sub, NULL) : NULL;
	st->block_start = st->cfg->nr;
	goto out;
malformed:
	ret = fail(st, "invalid section header '%.*s' (expected [section] or [section \"name\"])",
		   (int)(close + 1 - p), p);
out:
	strbuf_release(&sub);
	return ret;
}

/* inih's fgets: hands out the text line by line (long lines in pieces) and
 * counts lines as they start. Returning NULL early stops the parse. */
static char *config_reader(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	size_t n, avail;
	const char *nl;

	if (st->failed || st->pos >= st->len || num < 2)
		return NULL;
	avail = st->len - st->pos;
	if (st->at_line_start) {
		size_t line_len;

		nl = memchr(st->text + st->pos, '\n', avail);
		line_len = nl ? (size_t)(nl - (st->text + st->pos)) + 1 : avail;
		st->lineno++;
		if (memchr(st->text + st->pos, '\0', line_len)) {
			fail(st, "NUL byte in config file");
			return NULL;
		}
		if (line_len > CONFIG_MAX_LINE - 3) {
			fail(st, "line too long (over %d bytes)", CONFIG_MAX_LINE - 3);
			return NULL;
		}
		if (track_section(st, st->text + st->pos, nl ? line_len - 1 : line_len) < 0)
			return NULL;
	}
	n = (size_t)num - 1;
	if (n > avail)
		n = avail;
	nl = memchr(st->text + st->pos, '\n', n);
	if (nl)
		n = (size_t)(nl - (st->text + st->pos)) + 1;
	memcpy(str, st->text + st->pos, n);
	str[n] = '\0';
	st->pos += n;
	st->at_line_start = nl != NULL;
	return str;
}

static int is_var_start(char c)
{
	return isalpha((unsigned char)c) || c == '_';
}

static int is_var_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.';
}

/* ${VAR} from the environment, then from the env file; $$ is a literal $. */
static int expand_value(struct parse_state *st, const char *in, const char *display_key,
			struct strbuf *out)
{
	struct strbuf var = STRBUF_INIT;
	const char *p = in;
	int ret = 0;

	while (*p) {
		const char *close, *val, *q;

		if (*p != '$' || (p[1] != '$' && p[1] != '{')) {
			strbuf_addch(out, *p++);
			continue;
		}
		if (p[1] == '$') {
			strbuf_addch(out, '$');
			p += 2;
			continue;
		}
		close = strchr(p + 2, '}');
		if (!close) {
			ret = fail(st, "unterminated '${' in '%s'", display_key);
			ops_error_hint(st->err, "write $$ for a literal '$'");
			goto out;
		}
		strbuf_reset(&var);
		strbuf_add(&var, p + 2, (size_t)(close - p - 2));
		for (q = var.buf; *q && is_var_char(*q); q++)
			;
		if (!is_var_start(var.buf[0]) || *q) {
			ret = fail(st, "invalid variable name '%s' in '%s'", var.buf, display_key);
			ops_error_hint(st->err, "write $$ for a literal '$'");
			goto out;
		}
		val = getenv(var.buf);
		if (!val && st->env)
			val = envfile_get(st->env, var.buf);
		if (!val && (st->flags & CONFIG_KEEP_UNDEFINED)) {
			strbuf_add(out, p, (size_t)(close - p) + 1);
			p = close + 1;
			continue;
		}
		if (!val) {
			ret = fail(st, "undefined variable '%s' in '%s'", var.buf, display_key);
			ops_error_hint(st->err,
				       "set %s in the environment or in the env file, or write $$ for a literal '$'",
				       var.buf);
			goto out;
		}
		strbuf_addstr(out, val);
		p = close + 1;
	}
out:
	strbuf_release(&var);
	return ret;
}

static int config_handler(void *user, const char *inih_section, const char *name,
			  const char *value)
{
	struct parse_state *st = user;
	struct strbuf key = STRBUF_INIT, display = STRBUF_INIT, expanded = STRBUF_INIT;
	struct config_entry *e;
	const char *p;
	size_t i;
	int ok = 0;

	(void)inih_section; /* inih cuts names at 49 bytes; the reader tracks headers */
	if (!st->section) {
		fail(st, "key '%s' outside of any section", name);
		ops_error_hint(st->err, "put it under a [section] header");
		goto out;
	}
	for (p = name; *p; p++)
		strbuf_addch(&key, tolower((unsigned char)*p));
	if (!key.len || !isalpha((unsigned char)key.buf[0]) ||
	    key.buf[strspn(key.buf, "abcdefghijklmnopqrstuvwxyz0123456789_-")]) {
		fail(st, "invalid key name '%s'", name);
		ops_error_hint(st->err, "key names use letters, digits, '_' and '-'");
		goto out;
	}
	add_display_key(&display, st->section, st->subsection, key.buf);
	for (i = st->block_start; i < st->cfg->nr; i++) {
		if (!strcmp(st->cfg->entries[i].key, key.buf)) {
			fail(st, "duplicate key '%s' (first set on line %d)", display.buf,
			     st->cfg->entries[i].line);
			ops_error_hint(st->err, "remove one of the two lines");
			goto out;
		}
	}
	if (expand_value(st, value, display.buf, &expanded) < 0)
		goto out;

	if (st->cfg->nr == st->cfg->alloc) {
		st->cfg->alloc = st->cfg->alloc ? st->cfg->alloc * 2 : 32;
		st->cfg->entries = xrealloc(st->cfg->entries,
					    st->cfg->alloc * sizeof(*st->cfg->entries));
	}
	e = &st->cfg->entries[st->cfg->nr++];
	e->section = xstrdup(st->section);
	e->subsection = st->subsection ? xstrdup(st->subsection) : NULL;
	e->key = strbuf_detach(&key, NULL);
	e->value = strbuf_detach(&expanded, NULL);
	e->line = st->lineno;
	ok = 1;
out:
	strbuf_release(&key);
	strbuf_release(&display);
	strbuf_release_secret(&expanded);
	return ok;
}

/* inih keeps its options in globals (Debian builds it with runtime options);
 * they are set before every parse so nothing else can leave them changed. */
static void configure_inih(void)
{
	static char start_comments[] = ";#";
	static char inline_comments[] = ";#";

	ini_allow_multiline = false;
	ini_allow_bom = true;
	ini_start_comment_prefixes = start_comments;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_comments;
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_initial_alloc = 256;
	ini_max_line = CONFIG_MAX_LINE;
	ini_stop_on_first_error = true;
	ini_allow_no_value = false;
}

static int parse_text(struct config *cfg, const char *name, const char *text, size_t len,
		      const struct envfile *env, unsigned flags, struct ops_error *err)
{
	struct config parsed;
	struct parse_state st;
	int rc, ret = 0;

	config_init(&parsed);
	memset(&st, 0, sizeof(st));
	st.cfg = &parsed;
	st.name = name;
	st.text = text;
	st.len = len;
	st.at_line_start = 1;
	st.env = env;
	st.flags = flags;
	st.err = err;

	configure_inih();
	rc = ini_parse_stream(config_reader, &st, config_handler, &st);
	if (st.failed) {
		ret = err ? -err->code : -OPS_EXIT_CONFIG;
		goto out;
	}
	if (rc == -2) {
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "%s: out of memory while parsing", name);
		goto out;
	}
	if (rc != 0) {
		ret = ops_error_set(err, OPS_EXIT_CONFIG, "%s:%d: syntax error", name, rc);
		ops_error_hint(err, "expected 'key = value', '[section]' or '[section \"name\"]'");
		goto out;
	}
	config_release(cfg);
	parsed.path = xstrdup(name);
	*cfg = parsed;
	config_init(&parsed);
out:
	config_release(&parsed);
	free(st.section);
	free(st.subsection);
	return ret;
}

int config_load_string(struct config *cfg, const char *name, const char *text,
		       const struct envfile *env, struct ops_error *err)
{
	return parse_text(cfg, name, text, strlen(text), env, 0, err);
}

int config_load(struct config *cfg, const char *path, const struct envfile *env,
		struct ops_error *err)
{
	return config_load_flags(cfg, path, env, 0, err);
}

int config_load_flags(struct config *cfg, const char *path, const struct envfile *env,
		      unsigned flags, struct ops_error *err)
{
	struct strbuf buf = STRBUF_INIT;
	char reason[128];
	int fd = -1, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto read_error;
	for (;;) {
		ssize_t n;

		strbuf_grow(&buf, 8192);
		n = read(fd, buf.buf + buf.len, buf.alloc - buf.len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto read_error;
		if (n == 0)
			break;
		strbuf_setlen(&buf, buf.len + (size_t)n);
	}
	ret = parse_text(cfg, path, buf.buf, buf.len, env, flags, err);
	goto out;
read_error:
	errno_text(reason, sizeof(reason), errno);
	ret = ops_error_set(err, OPS_EXIT_CONFIG, "cannot read config file '%s': %s", path, reason);
out:
	if (fd >= 0)
		close(fd);
	strbuf_release(&buf);
	return ret;
}

int config_find(const char *explicit_path, char **out_path, struct ops_error *err)
{
	static const char *const defaults[] = { "opsctl.conf", "/etc/opsctl/opsctl.conf" };
	const char *env_path = getenv("OPSCTL_CONFIG");
	struct stat st;
	char reason[128];
	size_t i;

	*out_path = NULL;
	if (explicit_path) {
		if (stat(explicit_path, &st) < 0) {
			errno_text(reason, sizeof(reason), errno);
			return ops_error_set(err, OPS_EXIT_CONFIG, "cannot read config file '%s': %s",
					     explicit_path, reason);
		}
		*out_path = xstrdup(explicit_path);
		return 0;
	}
	if (env_path && *env_path) {
		if (stat(env_path, &st) < 0) {
			int ret;

			errno_text(reason, sizeof(reason), errno);
			ret = ops_error_set(err, OPS_EXIT_CONFIG, "cannot read config file '%s': %s",
					    env_path, reason);
			ops_error_hint(err, "$OPSCTL_CONFIG names it; unset it or fix the path");
			return ret;
		}
		*out_path = xstrdup(env_path);
		return 0;
	}
	for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		if (stat(defaults[i], &st) == 0) {
			*out_path = xstrdup(defaults[i]);
			return 0;
		}
	}
	return 0;
}

const struct config_entry *config_find_entry(const struct config *cfg, const char *section,
					     const char *subsection, const char *key)
{
	size_t i;

	for (i = cfg->nr; i-- > 0;) {
		const struct config_entry *e = &cfg->entries[i];

		if (strcasecmp(e->section, section) || strcasecmp(e->key, key))
			continue;
		if (!subsection != !e->subsection)
			continue;
		if (subsection && strcmp(subsection, e->subsection))
			continue;
		return e;
	}
	return NULL;
}

const char *config_get(const struct config *cfg, const char *section, const char *subsection,
		       const char *key)
{
	const struct config_entry *e = config_find_entry(cfg, section, subsection, key);
	return e ? e->value : NULL;
}

int config_error(const struct config *cfg, const struct config_entry *e, struct ops_error *err,
		 const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	int ret;

	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	ret = ops_error_set(err, OPS_EXIT_CONFIG, "%s:%d: %s", path_or_default(cfg), e->line,
			    sb.buf);
	strbuf_release(&sb);
	return ret;
}

/* The parse error, restated as a config error that names file, line and key. */
static int invalid_value(const struct config *cfg, const struct config_entry *e,
			 struct ops_error *parse_err, struct ops_error *err)
{
	struct strbuf key = STRBUF_INIT;
	int ret;

	add_display_key(&key, e->section, e->subsection, e->key);
	ret = config_error(cfg, e, err, "invalid value for '%s': %s", key.buf, parse_err->msg.buf);
	strbuf_release(&key);
	return ret;
}

int config_get_duration_ms(const struct config *cfg, const char *section, const char *subsection,
			   const char *key, int64_t *out, struct ops_error *err)
{
	struct ops_error perr = OPS_ERROR_INIT;
	const struct config_entry *e = config_find_entry(cfg, section, subsection, key);
	int ret = 0;

	if (e && parse_duration_ms(e->value, out, &perr) < 0)
		ret = invalid_value(cfg, e, &perr, err);
	ops_error_release(&perr);
	return ret;
}

int config_get_size(const struct config *cfg, const char *section, const char *subsection,
		    const char *key, uint64_t *out, struct ops_error *err)
{
	struct ops_error perr = OPS_ERROR_INIT;
	const struct config_entry *e = config_find_entry(cfg, section, subsection, key);
	int ret = 0;

	if (e && parse_size(e->value, out, &perr) < 0)
		ret = invalid_value(cfg, e, &perr, err);
	ops_error_release(&perr);
	return ret;
}

int config_get_percent(const struct config *cfg, const char *section, const char *subsection,
		       const char *key, double *out, struct ops_error *err)
{
	struct ops_error perr = OPS_ERROR_INIT;
	const struct config_entry *e = config_find_entry(cfg, section, subsection, key);
	int ret = 0;

	if (e && parse_percent(e->value, out, &perr) < 0)
		ret = invalid_value(cfg, e, &perr, err);
	ops_error_release(&perr);
	return ret;
}

int config_get_int(const struct config *cfg, const char *section, const char *subsection,
		   const char *key, long min, long max, long *out, struct ops_error *err)
{
	struct ops_error perr = OPS_ERROR_INIT;
	const struct config_entry *e = config_find_entry(cfg, section, subsection, key);
	int ret = 0;

	if (e && parse_int(e->value, min, max, out, &perr) < 0)
		ret = invalid_value(cfg, e, &perr, err);
	ops_error_release(&perr);
	return ret;
}

int config_get_bool(const struct config *cfg, const char *section, const char *subsection,
		    const char *key, int *out, struct ops_error *err)
{
	struct ops_error perr = OPS_ERROR_INIT;
	const struct config_entry *e = config_find_entry(cfg, section, subsection, key);
	int ret = 0;

	if (e && parse_bool(e->value, out, &perr) < 0)
		ret = invalid_value(cfg, e, &perr, err);
	ops_error_release(&perr);
	return ret;
}

size_t config_subsections(const struct config *cfg, const char *section, const char ***names)
{
	const char **list = NULL;
	size_t i, j, nr = 0;

	for (i = 0; i < cfg->nr; i++) {
		const struct config_entry *e = &cfg->entries[i];

		if (!e->subsection || strcasecmp(e->section, section))
			continue;
		for (j = 0; j < nr; j++)
			if (!strcmp(list[j], e->subsection))
				break;
		if (j < nr)
			continue;
		list = xrealloc(list, (nr + 1) * sizeof(*list));
		list[nr++] = e->subsection;
	}
	*names = list;
	return nr;
}

int config_has_subsection(const struct config *cfg, const char *section, const char *name)
{
	const char **names = NULL;
	size_t n = cfg ? config_subsections(cfg, section, &names) : 0;
	int found = 0;

	for (size_t i = 0; i < n && !found; i++)
		found = !strcmp(names[i], name);
	free(names);
	return found;
}
