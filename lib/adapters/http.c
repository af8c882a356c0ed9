/* libcurl multi adapter: concurrent GETs with per-request deadlines and body caps. */
#include "adapters/http.h"
#include "base/exitcode.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_DEFAULT_MAX_BODY (64 * 1024)

struct transfer {
	struct http_request *req;
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
};

void http_request_init(struct http_request *r, const char *url, int64_t timeout_ms, size_t max_body)
{
	memset(r, 0, sizeof(*r));
	r->url = url;
	r->timeout_ms = timeout_ms;
	r->max_body = max_body;
	strbuf_init(&r->body, 0);
	ops_error_init(&r->err);
}

void http_request_release(struct http_request *r)
{
	strbuf_release(&r->body);
	free(r->content_type);
	r->content_type = NULL;
	ops_error_release(&r->err);
}

int http_global_init(struct ops_error *err)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return ops_error_set(err, OPS_EXIT_FAILED, "cannot initialise libcurl");
	return 0;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

const char *http_version(void)
{
	return curl_version();
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_request *r = userp;
	size_t n = size * nmemb;
	size_t cap = r->max_body ? r->max_body : HTTP_DEFAULT_MAX_BODY;

	if (r->body.len + n > cap) {
		r->too_large = 1;
		return 0; /* aborts the transfer: we will not buffer an unbounded body */
	}
	strbuf_add(&r->body, data, n);
	return n;
}

static int is_unreachable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static void finish(struct transfer *t, CURLcode rc)
{
	struct http_request *r = t->req;
	char *ct = NULL;
	curl_off_t us = 0;

	r->done = 1;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &us);
	r->elapsed_ms = (double)us / 1000.0;
	if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		r->content_type = xstrdup(ct);
	if (rc == CURLE_OK)
		return;
	if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		size_t cap = r->max_body ? r->max_body : HTTP_DEFAULT_MAX_BODY;
		r->too_large = 1;
		ops_error_set(&r->err, OPS_EXIT_FAILED, "response body is larger than %zu KiB", cap / 1024);
		return;
	}
	r->unreachable = is_unreachable(rc);
	if (rc == CURLE_COULDNT_CONNECT) {
		long os_errno = 0;
		curl_easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &os_errno);
		ops_error_set(&r->err, OPS_EXIT_UNREACHABLE, "cannot connect: %s",
			      os_errno ? ops_strerror((int)os_errno) : "no answer");
		return;
	}
	if (rc == CURLE_COULDNT_RESOLVE_HOST) {
		ops_error_set(&r->err, OPS_EXIT_UNREACHABLE, "cannot resolve the host name");
		return;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT)
		ops_error_set(&r->err, OPS_EXIT_UNREACHABLE, "no answer within %lldms",
			      (long long)(r->timeout_ms ? r->timeout_ms : 30000));
	else
		ops_error_set(&r->err, r->unreachable ? OPS_EXIT_UNREACHABLE : OPS_EXIT_FAILED, "%s",
			      t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
	/* curl's messages start with a capital letter; ours don't */
	if (r->err.msg.len && r->err.msg.buf[0] >= 'A' && r->err.msg.buf[0] <= 'Z' &&
	    !(r->err.msg.buf[1] >= 'A' && r->err.msg.buf[1] <= 'Z'))
		r->err.msg.buf[0] = (char)(r->err.msg.buf[0] - 'A' + 'a');
}

int http_perform_all(struct http_request **reqs, size_t n, struct ops_error *err)
{
	CURLM *multi = curl_multi_init();
	struct transfer *ts = xcalloc(n, sizeof(*ts));
	int running = 0, ret = 0;

	if (!multi) {
		ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot initialise libcurl");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct http_request *r = reqs[i];
		struct transfer *t = &ts[i];
		size_t cap = r->max_body ? r->max_body : HTTP_DEFAULT_MAX_BODY;
		long timeout = (long)(r->timeout_ms > 0 ? r->timeout_ms : 30000);

		t->req = r;
		t->easy = curl_easy_init();
		if (!t->easy) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "cannot initialise libcurl");
			goto out;
		}
		curl_easy_setopt(t->easy, CURLOPT_URL, r->url);
		curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
		curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
		curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, timeout);
		curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout);
		curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(t->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
		curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "opsctl/" OPSCTL_VERSION);
		curl_easy_setopt(t->easy, CURLOPT_ACCEPT_ENCODING, "");
		curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, NULL);
#if LIBCURL_VERSION_NUM >= 0x075500
		curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
		curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
		curl_multi_add_handle(multi, t->easy);
	}
	do {
		CURLMcode mc = curl_multi_perform(multi, &running);
		CURLMsg *msg;
		int left;
		if (mc == CURLM_OK && running)
			mc = curl_multi_poll(multi, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK) {
			ret = ops_error_set(err, OPS_EXIT_FAILED, "libcurl: %s", curl_multi_strerror(mc));
			goto out;
		}
		while ((msg = curl_multi_info_read(multi, &left))) {
			struct transfer *t = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
			finish(t, msg->data.result);
		}
	} while (running);
out:
	for (size_t i = 0; i < n; i++)
		if (ts[i].easy) {
			if (multi)
				curl_multi_remove_handle(multi, ts[i].easy);
			curl_easy_cleanup(ts[i].easy);
		}
	if (multi)
		curl_multi_cleanup(multi);
	free(ts);
	return ret;
}
