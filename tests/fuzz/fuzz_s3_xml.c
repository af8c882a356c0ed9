/* libFuzzer target for the S3 answers lib/adapters/s3 reads (Error,
 * InitiateMultipartUploadResult, ListBucketResult): any bytes, never a
 * crash or leak, and:
 *  - an accepted UploadId is non-empty and has no control characters or
 *    blanks (it goes into URLs and the state file);
 *  - a listing read with the storage prefix "p/" stripped holds exactly the
 *    objects of the whole listing whose key starts with "p/" and has more
 *    after it, in the same order, with that prefix removed and the same
 *    size, ETag (NUL-terminated) and time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has(const uint8_t *data, size_t size, const char *word)
{
	return memmem(data, size, word, strlen(word)) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	struct s3_list l = S3_LIST_INIT;
	const char *xml = (const char *)data;

	struct s3_list all = S3_LIST_INIT;

	/* Each reader wants its root element, whose name must be in the text
	 * (an entity cannot stand for the root): the others are not run, as
	 * every libxml2 parse is most of an execution's time. */
	if (has(data, size, "Error"))
		s3_parse_error(xml, size, &a, &b);
	if (has(data, size, "InitiateMultipartUploadResult") && s3_parse_initiate(xml, size, &a, &err) == 0) {
		if (!a.len || strlen(a.buf) != a.len)
			abort();
		for (size_t i = 0; i < a.len; i++)
			if ((unsigned char)a.buf[i] <= ' ' || a.buf[i] == 0x7f)
				abort();
	}
	if (has(data, size, "ListBucketResult") && s3_parse_list(xml, size, NULL, &all, &a, &err) == 0) {
		size_t k = 0;

		if (s3_parse_list(xml, size, "p/", &l, &b, &err) < 0 || strcmp(a.buf, b.buf))
			abort();
		for (size_t i = 0; i < all.nr; i++) {
			const struct s3_object *o = &all.items[i], *p;

			if (!o->key || !o->key[0] || strnlen(o->etag, sizeof(o->etag)) == sizeof(o->etag))
				abort();
			if (strncmp(o->key, "p/", 2) || !o->key[2])
				continue;
			if (k >= l.nr)
				abort();
			p = &l.items[k++];
			if (strcmp(p->key, o->key + 2) || p->size != o->size ||
			    strcmp(p->etag, o->etag) || p->last_modified != o->last_modified)
				abort();
		}
		if (k != l.nr)
			abort();
	}
	s3_list_release(&l);
	s3_list_release(&all);
	strbuf_release(&a);
	strbuf_release(&b);
	ops_error_release(&err);
	return 0;
}
