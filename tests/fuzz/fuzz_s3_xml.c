/* libFuzzer target for the S3 answers lib/adapters/s3 reads (Error,
 * InitiateMultipartUploadResult, ListBucketResult): any bytes, never a
 * crash or leak, and every listed key really starts below the prefix. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	struct s3_list l = S3_LIST_INIT;
	const char *xml = (const char *)data;

	s3_parse_error(xml, size, &a, &b);
	s3_parse_initiate(xml, size, &a, &err);
	if (s3_parse_list(xml, size, "p/", &l, &a, &err) == 0)
		for (size_t i = 0; i < l.nr; i++)
			if (!l.items[i].key || !l.items[i].key[0])
				abort();
	s3_list_release(&l);
	strbuf_release(&a);
	strbuf_release(&b);
	ops_error_release(&err);
	return 0;
}
