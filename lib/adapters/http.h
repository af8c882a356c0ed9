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

/* One request performed now (curl easy), for callers that talk to an API
 * step by step (snapshot endpoints): any method, extra headers, a body from
 * memory, a file sent as multipart/form-data or as the raw body, and the
 * answer kept in memory or, for a 2xx answer, streamed to a sink. */
struct http_call {
	/* in */
	const char *method;            /* "GET", "POST", "PUT", "DELETE"...; NULL = GET */
	const char *url;
	const char *const *headers;    /* NULL-terminated "Name: value", borrowed; may be NULL */
	const char *data;              /* request body from memory (borrowed), or NULL */
	size_t data_len;
	const char *upload_path;       /* a file sent as the body, streamed; NULL = none */
	const char *form_field;        /* with upload_path: send it as this multipart/form-data
					* field; NULL = the raw body (application/octet-stream) */
	int64_t timeout_ms;            /* whole request; 0 = 30 s */
	int64_t connect_timeout_ms;    /* 0 = the smaller of timeout_ms and 10 s */
	size_t max_body;               /* bytes of answer kept in body (0 = 64 KiB): more is an
					* error, except past a sink (only an error body is kept) */
	/* a 2xx answer's body goes here instead of body; a non-zero return aborts
	 * the transfer (err then says "the download was aborted": the sink keeps
	 * its own reason) */
	int (*sink)(void *data, const void *buf, size_t len);
	void *sink_data;
	/* out */
	long status;                   /* HTTP status, 0 if none */
	int unreachable;               /* could not connect / timed out / no such host */
	int sink_failed;               /* the sink returned non-zero */
	uint64_t sunk;                 /* bytes given to the sink */
	struct strbuf body;            /* the answer (without a sink, or a non-2xx one) */
	struct ops_error err;          /* the transport failure, when there was one */
};

/* Zeroes c and sets method, url and timeout. */
void http_call_init(struct http_call *c, const char *method, const char *url, int64_t timeout_ms);
void http_call_release(struct http_call *c);
/* Performs c. Returns 0 when an answer came, whatever its status (check
 * c->status); otherwise the transport error, copied into err and c->err
 * ("cannot connect: connection refused", "no answer within 30000ms",
 * OPS_EXIT_UNREACHABLE for those; "cannot read 'F': ..." for upload_path). */
int http_call_perform(struct http_call *c, struct ops_error *err);
/* "METHOD URL" as messages show it: the URL without user:password@. The
 * text is appended to out. */
void http_describe(struct strbuf *out, const char *method, const char *url);
/* Percent-encodes s for a URL path segment or query value (RFC 3986
 * unreserved characters stay as they are); appended to out. */
void http_escape(struct strbuf *out, const char *s);

#endif
