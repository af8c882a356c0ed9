/* The one option parser every command's option table goes through. */
#include "base/opts.h"
#include "base/exitcode.h"
#include "base/parse.h"
#include "base/strbuf.h"

#include <stdlib.h>
#include <string.h>

void opt_list_release(struct opt_list *l)
{
	free(l->items);
	l->items = NULL;
	l->nr = l->alloc = 0;
}

static int takes_arg(const struct opt *o)
{
	return o->type != OPT_BOOL && o->type != OPT_COUNT;
}

static void opt_name(struct strbuf *sb, const struct opt *o, int is_long)
{
	if (is_long || !o->short_name)
		strbuf_addf(sb, "--%s", o->long_name);
	else
		strbuf_addf(sb, "-%c", o->short_name);
}

static int set_value(const struct opt *o, const char *arg, int is_long, int negated,
		     struct ops_error *err)
{
	struct strbuf name = STRBUF_INIT;
	int ret = 0;

	opt_name(&name, o, is_long);
	switch (o->type) {
	case OPT_BOOL:
		*(int *)o->value = !negated;
		break;
	case OPT_COUNT:
		(*(int *)o->value)++;
		break;
	case OPT_STRING:
		*(const char **)o->value = arg;
		break;
	case OPT_CHOICE: {
		const char *p = o->choices;
		size_t al = strlen(arg);
		int found = 0;
		while (p && *p) {
			size_t n = strcspn(p, "|");
			if (n == al && !strncmp(p, arg, n))
				found = 1;
			p += n;
			if (*p == '|')
				p++;
		}
		if (!found) {
			ret = ops_error_set(err, OPS_EXIT_USAGE, "invalid value '%s' for '%s' (expected %s)",
					    arg, name.buf, o->choices);
			goto out;
		}
		*(const char **)o->value = arg;
		break;
	}
	case OPT_INT:
		ret = parse_int(arg, 0, 1000000000L, (long *)o->value, err);
		break;
	case OPT_DURATION:
		ret = parse_duration_ms(arg, (int64_t *)o->value, err);
		break;
	case OPT_SIZE:
		ret = parse_size(arg, (uint64_t *)o->value, err);
		break;
	case OPT_LIST: {
		struct opt_list *l = o->value;
		if (l->nr == l->alloc) {
			l->alloc = l->alloc ? l->alloc * 2 : 4;
			l->items = xrealloc(l->items, l->alloc * sizeof(*l->items));
		}
		l->items[l->nr++] = arg;
		break;
	}
	case OPT_END:
		break;
	}
	if (ret < 0)
		ops_error_prefix(err, "option '%s'", name.buf);
out:
	strbuf_release(&name);
	return ret;
}

static const struct opt *find_long(const struct opt *opts, const char *name, size_t len,
				   int *negated)
{
	const struct opt *o;
	*negated = 0;
	for (o = opts; o->type != OPT_END; o++)
		if (o->long_name && strlen(o->long_name) == len && !strncmp(o->long_name, name, len))
			return o;
	if (len > 3 && !strncmp(name, "no-", 3))
		for (o = opts; o->type != OPT_END; o++)
			if (o->long_name && (o->flags & OPTF_NEG) && strlen(o->long_name) == len - 3 &&
			    !strncmp(o->long_name, name + 3, len - 3)) {
				*negated = 1;
				return o;
			}
	return NULL;
}

static const struct opt *find_short(const struct opt *opts, char c)
{
	const struct opt *o;
	for (o = opts; o->type != OPT_END; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

int opts_parse(const struct opt *opts, int argc, const char **argv, int flags,
	       struct ops_error *err)
{
	int i, nout = 0, only_operands = 0;
	const char **operands = xcalloc((size_t)argc + 1, sizeof(char *));
	int ret = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_operands || a[0] != '-' || !a[1]) {
			if (flags & OPTS_STOP_AT_NON_OPTION) {
				for (; i < argc; i++)
					operands[nout++] = argv[i];
				break;
			}
			operands[nout++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_operands = 1;
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			int negated;
			const struct opt *o = find_long(opts, name, len, &negated);
			const char *arg = eq ? eq + 1 : NULL;
			if (!o && len == 4 && !strncmp(name, "help", 4)) {
				ret = OPTS_HELP;
				goto out;
			}
			if (!o) {
				ret = ops_error_set(err, OPS_EXIT_USAGE, "unknown option '--%.*s'", (int)len, name);
				goto out;
			}
			if (takes_arg(o) && !arg) {
				if (i + 1 >= argc) {
					ret = ops_error_set(err, OPS_EXIT_USAGE, "option '--%s' needs a value", o->long_name);
					goto out;
				}
				arg = argv[++i];
			} else if (!takes_arg(o) && arg) {
				ret = ops_error_set(err, OPS_EXIT_USAGE, "option '--%s' takes no value", o->long_name);
				goto out;
			}
			ret = set_value(o, arg, 1, negated, err);
			if (ret < 0)
				goto out;
			continue;
		}
		/* a bundle of short options: -qv, -c FILE, -cFILE */
		for (const char *p = a + 1; *p; p++) {
			const struct opt *o = find_short(opts, *p);
			const char *arg = NULL;
			if (!o && *p == 'h') {
				ret = OPTS_HELP;
				goto out;
			}
			if (!o) {
				ret = ops_error_set(err, OPS_EXIT_USAGE, "unknown option '-%c'", *p);
				goto out;
			}
			if (takes_arg(o)) {
				if (p[1])
					arg = p + 1;
				else if (i + 1 < argc)
					arg = argv[++i];
				else {
					ret = ops_error_set(err, OPS_EXIT_USAGE, "option '-%c' needs a value", *p);
					goto out;
				}
			}
			ret = set_value(o, arg, 0, 0, err);
			if (ret < 0)
				goto out;
			if (arg)
				break;
		}
	}
	for (i = 0; i < nout; i++)
		argv[i] = operands[i];
	argv[nout] = NULL;
	ret = nout;
out:
	free(operands);
	return ret;
}

static void opt_synopsis(struct strbuf *sb, const struct opt *o)
{
	if (o->short_name && o->long_name)
		strbuf_addf(sb, "-%c, --%s", o->short_name, o->long_name);
	else if (o->short_name)
		strbuf_addf(sb, "-%c", o->short_name);
	else if (o->flags & OPTF_NEG)
		strbuf_addf(sb, "--[no-]%s", o->long_name);
	else
		strbuf_addf(sb, "--%s", o->long_name);
	if (takes_arg(o))
		strbuf_addf(sb, " %s", o->argh ? o->argh : "VALUE");
}

void opts_usage(FILE *f, const char *const *usage_lines, const struct opt *opts)
{
	struct strbuf sb = STRBUF_INIT;
	const struct opt *o;
	size_t width = 0;

	for (size_t i = 0; usage_lines && usage_lines[i]; i++)
		fprintf(f, "%s %s\n", i ? "   or:" : "usage:", usage_lines[i]);
	for (o = opts; o && o->type != OPT_END; o++) {
		strbuf_reset(&sb);
		opt_synopsis(&sb, o);
		if (!(o->flags & OPTF_HIDDEN) && sb.len > width)
			width = sb.len;
	}
	if (opts && opts->type != OPT_END)
		fputc('\n', f);
	for (o = opts; o && o->type != OPT_END; o++) {
		if (o->flags & OPTF_HIDDEN)
			continue;
		strbuf_reset(&sb);
		opt_synopsis(&sb, o);
		fprintf(f, "    %-*s  %s\n", (int)width, sb.buf, o->help ? o->help : "");
	}
	strbuf_release(&sb);
}

void opts_words(FILE *f, const struct opt *opts)
{
	const struct opt *o;
	for (o = opts; o && o->type != OPT_END; o++) {
		if (o->flags & OPTF_HIDDEN)
			continue;
		if (o->short_name)
			fprintf(f, "-%c\n", o->short_name);
		if (o->long_name)
			fprintf(f, "--%s%s\n", o->long_name, takes_arg(o) ? "=" : "");
	}
}
