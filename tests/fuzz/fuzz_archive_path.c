/* libFuzzer target for arch_path_is_safe: an accepted entry name is never
 * absolute and has no ".." component, and an accepted link target, resolved
 * here independently from the link's directory, stays inside the root. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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

	if (arch_path_is_safe(name, target, is_symlink, is_hardlink)) {
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
