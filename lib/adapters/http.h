/* HTTP through libcurl's multi interface: many requests at once, each with
 * its own deadline and a cap on the body it will keep. */
#ifndef OPSCTL_HTTP_H
#define OPSCTL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "base/error.h"
#include "base/strbuf.h"

struct http_request {
	/* in */
	const char *url;
	int64_t timeout_ms;      /* whole request; 0 = 30 s */
	size_t max_body;         /* bytes kept; more is an error (0 = 64 KiB) */
	/* out */
	int done;
	int unreachable;         /* could not connect / timed out / no such host */
	int too_large;           /* body exceeded max_body */
	long status;             /* HTTP status, 0 if none */
	struct strbuf body;
	char *content_type;      /* malloc'd or NULL */
	double elapsed_ms;
	struct ops_error err;    /* set when the transfer failed */
};

void http_request_init(struct http_request *r, const char *url, int64_t timeout_ms, size_t max_body);
void http_request_release(struct http_request *r);

/* Performs all n requests concurrently and returns when every one has
 * finished or hit its deadline. Each request's outcome is in the request;
 * the return value is an error only when curl itself could not run. */
int http_perform_all(struct http_request **reqs, size_t n, struct ops_error *err);

/* curl_global_init; call once from main before threads start. */
int http_global_init(struct ops_error *err);
void http_global_cleanup(void);
/* "libcurl/7.88.1 OpenSSL/3.0.x zlib/1.2.13 ..." */
const char *http_version(void);

#endif
