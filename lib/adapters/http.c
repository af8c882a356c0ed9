/* libcurl multi adapter: concurrent GETs with per-request deadlines and body caps. */
#include "adapters/http.h"
#include "base/exitcode.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* ---- one request at a time: http_call ---- */

void http_call_init(struct http_call *c, const char *method, const char *url, int64_t timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->method = method;
	c->url = url;
	c->timeout_ms = timeout_ms;
	strbuf_init(&c->body, 0);
	ops_error_init(&c->err);
}

void http_call_release(struct http_call *c)
{
	strbuf_release(&c->body);
	ops_error_release(&c->err);
}

void http_describe(struct strbuf *out, const char *method, const char *url)
{
	const char *scheme_end = strstr(url, "://");
	const char *host = scheme_end ? scheme_end + 3 : url;
	const char *at = strchr(host, '@');
	const char *slash = strchr(host, '/');

	strbuf_addf(out, "%s ", method ? method : "GET");
	if (at && (!slash || at < slash)) {
		strbuf_add(out, url, (size_t)(host - url));
		strbuf_addstr(out, at + 1);
	} else {
		strbuf_addstr(out, url);
	}
}

void http_escape(struct strbuf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			strbuf_addch(out, ch);
		} else {
			strbuf_addch(out, '%');
			strbuf_addch(out, hex[ch >> 4]);
			strbuf_addch(out, hex[ch & 15]);
		}
	}
}

struct call_state {
	struct http_call *c;
	CURL *easy;
	int to_sink;    /* -1 undecided, 0 body, 1 sink */
	int too_large;
};

static size_t on_call_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct call_state *st = userp;
	struct http_call *c = st->c;
	size_t n = size * nmemb;
	size_t cap = c->max_body ? c->max_body : HTTP_DEFAULT_MAX_BODY;

	if (st->to_sink < 0) {
		long status = 0;
		curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &status);
		st->to_sink = c->sink && status >= 200 && status < 300;
	}
	if (st->to_sink) {
		if (c->sink(c->sink_data, data, n)) {
			c->sink_failed = 1;
			return 0;
		}
		c->sunk += n;
		return n;
	}
	if (c->body.len + n > cap) {
		st->too_large = 1;
		return 0;
	}
	strbuf_add(&c->body, data, n);
	return n;
}

static size_t on_call_read(char *buf, size_t size, size_t nitems, void *userp)
{
	FILE *f = userp;
	size_t n = fread(buf, 1, size * nitems, f);
	if (n == 0 && ferror(f))
		return CURL_READFUNC_ABORT;
	return n;
}

static void call_error(struct call_state *st, CURLcode rc, const char *errbuf)
{
	struct http_call *c = st->c;
	int64_t timeout = c->timeout_ms > 0 ? c->timeout_ms : 30000;

	c->unreachable = is_unreachable(rc);
	if (c->sink_failed) {
		if (!c->err.code)
			ops_error_set(&c->err, OPS_EXIT_FAILED, "the download was aborted");
		return;
	}
	if (st->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		size_t cap = c->max_body ? c->max_body : HTTP_DEFAULT_MAX_BODY;
		ops_error_set(&c->err, OPS_EXIT_FAILED, "response body is larger than %zu KiB", cap / 1024);
	} else if (rc == CURLE_COULDNT_CONNECT) {
		long os_errno = 0;
		curl_easy_getinfo(st->easy, CURLINFO_OS_ERRNO, &os_errno);
		ops_error_set(&c->err, OPS_EXIT_UNREACHABLE, "cannot connect: %s",
			      os_errno ? ops_strerror((int)os_errno) : "no answer");
	} else if (rc == CURLE_COULDNT_RESOLVE_HOST) {
		ops_error_set(&c->err, OPS_EXIT_UNREACHABLE, "cannot resolve the host name");
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		ops_error_set(&c->err, OPS_EXIT_UNREACHABLE, "no answer within %lldms", (long long)timeout);
	} else {
		ops_error_set(&c->err, c->unreachable ? OPS_EXIT_UNREACHABLE : OPS_EXIT_FAILED, "%s",
			      errbuf[0] ? errbuf : curl_easy_strerror(rc));
		/* curl's messages start with a capital letter; ours don't */
		if (c->err.msg.buf[0] >= 'A' && c->err.msg.buf[0] <= 'Z' &&
		    !(c->err.msg.buf[1] >= 'A' && c->err.msg.buf[1] <= 'Z'))
			c->err.msg.buf[0] = (char)(c->err.msg.buf[0] - 'A' + 'a');
	}
}

int http_call_perform(struct http_call *c, struct ops_error *err)
{
	struct call_state st = { c, NULL, -1, 0 };
	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	FILE *upload = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	const char *method = c->method ? c->method : "GET";
	long timeout = (long)(c->timeout_ms > 0 ? c->timeout_ms : 30000);
	long connect_timeout = (long)(c->connect_timeout_ms > 0 ? c->connect_timeout_ms : 10000);
	CURLcode rc;
	int ret = 0;

	c->status = 0;
	c->unreachable = c->sink_failed = 0;
	c->sunk = 0;
	strbuf_reset(&c->body);
	ops_error_clear(&c->err);
	st.easy = curl_easy_init();
	if (!st.easy) {
		ops_error_set(&c->err, OPS_EXIT_FAILED, "cannot initialise libcurl");
		goto out;
	}
	for (const char *const *h = c->headers; h && *h; h++)
		hdrs = curl_slist_append(hdrs, *h);
	curl_easy_setopt(st.easy, CURLOPT_URL, c->url);
	curl_easy_setopt(st.easy, CURLOPT_WRITEFUNCTION, on_call_body);
	curl_easy_setopt(st.easy, CURLOPT_WRITEDATA, &st);
	curl_easy_setopt(st.easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(st.easy, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(st.easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout < timeout ? connect_timeout : timeout);
	curl_easy_setopt(st.easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(st.easy, CURLOPT_USERAGENT, "opsctl/" OPSCTL_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(st.easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(st.easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (!c->sink)
		curl_easy_setopt(st.easy, CURLOPT_MAXFILESIZE_LARGE,
				 (curl_off_t)(c->max_body ? c->max_body : HTTP_DEFAULT_MAX_BODY));
	if (c->upload_path && c->form_field) {
		curl_mimepart *part;
		mime = curl_mime_init(st.easy);
		part = curl_mime_addpart(mime);
		curl_mime_name(part, c->form_field);
		if (curl_mime_filedata(part, c->upload_path) != CURLE_OK) {
			ops_error_set(&c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", c->upload_path,
				      ops_strerror(errno));
			goto out;
		}
		curl_mime_type(part, "application/octet-stream");
		curl_easy_setopt(st.easy, CURLOPT_MIMEPOST, mime);
	} else if (c->upload_path) {
		struct stat sb;
		upload = fopen(c->upload_path, "rbe");
		if (!upload || fstat(fileno(upload), &sb) < 0) {
			ops_error_set(&c->err, OPS_EXIT_FAILED, "cannot read '%s': %s", c->upload_path,
				      ops_strerror(errno));
			goto out;
		}
		curl_easy_setopt(st.easy, CURLOPT_READFUNCTION, on_call_read);
		curl_easy_setopt(st.easy, CURLOPT_READDATA, upload);
		if (!strcmp(method, "PUT")) {
			curl_easy_setopt(st.easy, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(st.easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)sb.st_size);
		} else {
			curl_easy_setopt(st.easy, CURLOPT_POST, 1L);
			curl_easy_setopt(st.easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sb.st_size);
		}
		hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	} else if (c->data || !strcmp(method, "POST") || !strcmp(method, "PUT")) {
		curl_easy_setopt(st.easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(c->data ? c->data_len : 0));
		curl_easy_setopt(st.easy, CURLOPT_COPYPOSTFIELDS, c->data ? c->data : "");
	}
	if (strcmp(method, "GET") && strcmp(method, "POST") && !(upload && !strcmp(method, "PUT")))
		curl_easy_setopt(st.easy, CURLOPT_CUSTOMREQUEST, method);
	else if (!strcmp(method, "GET"))
		curl_easy_setopt(st.easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(st.easy, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(st.easy);
	curl_easy_getinfo(st.easy, CURLINFO_RESPONSE_CODE, &c->status);
	if (rc != CURLE_OK)
		call_error(&st, rc, errbuf);
out:
	if (c->err.code)
		ret = ops_error_set(err, c->err.code, "%s", c->err.msg.buf);
	if (upload)
		fclose(upload);
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	if (st.easy)
		curl_easy_cleanup(st.easy);
	return ret;
}
