/* libFuzzer target for arch_path_is_safe, the check arch_extract makes on
 * every entry of a release archive. Input: a flags byte (bit 0 symlink,
 * bit 1 hardlink), the entry name, NUL, the link target.
 *  - an accepted entry name is never absolute and has no ".." component, and
 *    an accepted link target, resolved here independently from the link's
 *    directory, stays inside the release root;
 *  - the verdict is exactly the rule archive.h documents, re-implemented
 *    here from that text (model_safe). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/archive.h"
#include "base/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_dotdot(const char *s)
{
	size_t len;

	for (;;) {
		s += strspn(s, "/");
		len = strcspn(s, "/");
		if (!len)
			return 0;
		if (len == 2 && s[0] == '.' && s[1] == '.')
			return 1;
		s += len;
	}
}

/* Depth after walking path's components from depth, or -1 when a ".."
 * climbs above the root. With dirname_only the last component is skipped. */
static long walk(const char *s, long depth, int dirname_only)
{
	size_t len;

	for (;;) {
		s += strspn(s, "/");
		len = strcspn(s, "/");
		if (!len || (dirname_only && !s[len + strspn(s + len, "/")]))
			return depth;
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			if (--depth < 0)
				return -1;
		} else if (!(len == 1 && s[0] == '.')) {
			depth++;
		}
		s += len;
	}
}

/* Components of s that are not "." (".." counted too), and the number of
 * leading ".." ones; *dotdot_after_name when a ".." follows another one. */
static long count(const char *s, long *leading_up, int *dotdot_after_name, int *has_up)
{
	long n = 0, up = 0;
	int named = 0;
	size_t len;

	*dotdot_after_name = *has_up = 0;
	for (;;) {
		s += strspn(s, "/");
		len = strcspn(s, "/");
		if (!len)
			break;
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			*has_up = 1;
			if (named)
				*dotdot_after_name = 1;
			else
				up++;
			n++;
		} else if (!(len == 1 && s[0] == '.')) {
			named = 1;
			n++;
		}
		s += len;
	}
	if (leading_up)
		*leading_up = up;
	return n;
}

/* archive.h's rule, from its comment. */
static int model_safe(const char *name, const char *target, int is_symlink, int is_hardlink)
{
	long depth, up;
	int after, has_up;

	if (!name || !*name || name[0] == '/')
		return 0;
	depth = count(name, NULL, &after, &has_up);
	if (has_up)
		return 0;
	if (!is_symlink && !is_hardlink)
		return 1;
	if (depth == 0 || (is_symlink && is_hardlink))
		return 0;
	if (!target || !*target || target[0] == '/')
		return 0;
	if (is_hardlink)
		return count(target, &up, &after, &has_up) > 0 && !has_up;
	count(target, &up, &after, &has_up);
	return !after && up <= depth - 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int safe;

	char *name, *target;
	const char *nul;
	int is_symlink, is_hardlink;

	if (size < 1)
		return 0;
	is_symlink = data[0] & 1;
	is_hardlink = (data[0] >> 1) & 1;
	/* name NUL target: names in archives cannot hold a NUL either */
	name = xstrndup((const char *)data + 1, size - 1);
	nul = memchr(data + 1, '\0', size - 1);
	target = nul ? xstrndup(nul + 1, size - 1 - (size_t)(nul + 1 - (const char *)(data + 1)))
		     : NULL;

	safe = arch_path_is_safe(name, target, is_symlink, is_hardlink);
	if (safe != model_safe(name, target, is_symlink, is_hardlink))
		abort();
	/* without the link flags, the name alone decides */
	if (arch_path_is_safe(name, NULL, 0, 0) != model_safe(name, NULL, 0, 0))
		abort();
	if (safe) {
		if (name[0] == '/' || has_dotdot(name))
			abort();
		if (is_symlink && is_hardlink)
			abort();
		if ((is_symlink || is_hardlink) && (!target || target[0] == '/'))
			abort();
		if (is_hardlink && (has_dotdot(target) || walk(target, 0, 0) <= 0))
			abort();
		/* the link sits in dirname(name); its target must not climb out */
		if (is_symlink && walk(target, walk(name, 0, 1), 0) < 0)
			abort();
	}
	free(name);
	free(target);
	return 0;
}
