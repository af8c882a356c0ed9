/* libFuzzer target for backup manifests: whatever parses re-serialises to a
 * manifest that parses to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engines/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bk_manifest m, again;
	char *json;

	if (bk_manifest_parse((const char *)data, size, &m, NULL) < 0)
		return 0;
	json = bk_manifest_json(&m);
	if (bk_manifest_parse(json, strlen(json), &again, NULL) < 0)
		abort();
	if (strcmp(m.id, again.id) || m.nfiles != again.nfiles || m.ntables != again.ntables ||
	    m.started_at != again.started_at || bk_manifest_size(&m) != bk_manifest_size(&again))
		abort();
	for (size_t i = 0; i < m.nfiles; i++)
		if (strcmp(m.files[i].name, again.files[i].name) || strcmp(m.files[i].sha256, again.files[i].sha256))
			abort();
	free(json);
	bk_manifest_release(&m);
	bk_manifest_release(&again);
	return 0;
}
