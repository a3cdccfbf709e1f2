/* The outbound HTTP client (net/http.h) on a libcurl easy handle. Redirects are followed by our
 * own loop rather than CURLOPT_FOLLOWLOCATION so that every hop goes through net_guard_hop()
 * first: that is where the network policy (net/policy.h) decides whether the next address may be
 * reached, and pins the connection to the address it checked. Each thread keeps one easy handle,
 * so that connections and TLS sessions are reused between requests of the same engine. */
#include "net/http.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/time.h"
#include "net/policy.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

/* Matches what browsers and axios allow before giving up on a redirect chain. */
#define MAX_REDIRECTS 20

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static _Thread_local CURL *thread_handle;
static pthread_key_t handle_key;

static void handle_destructor(void *h)
{
	curl_easy_cleanup(h);
}

static void curl_setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_key_create(&handle_key, handle_destructor);
}

/* The calling thread's easy handle, reset to defaults but with its connection cache intact. */
static CURL *get_handle(void)
{
	pthread_once(&curl_once, curl_setup);
	if (!thread_handle) {
		thread_handle = curl_easy_init();
		if (!thread_handle)
			return NULL;
		pthread_setspecific(handle_key, thread_handle);
	} else {
		curl_easy_reset(thread_handle);
	}
	return thread_handle;
}

struct resp_state {
	struct fl_buf body;
	struct net_header *headers;
	size_t n_headers, cap_headers;
};

static void clear_headers(struct resp_state *st)
{
	for (size_t i = 0; i < st->n_headers; i++) {
		fl_free(st->headers[i].name);
		fl_free(st->headers[i].value);
	}
	st->n_headers = 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct resp_state *st = arg;
	fl_buf_add(&st->body, data, size * nmemb);
	return size * nmemb;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct resp_state *st = arg;
	size_t len = size * nmemb;
	/* A status line starts a new response (100 Continue, or a proxy's CONNECT reply): only the
	 * headers of the final one are kept. */
	if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
		clear_headers(st);
		return len;
	}
	const char *colon = memchr(data, ':', len);
	if (!colon || colon == data)
		return len;
	size_t name_len = (size_t)(colon - data);
	const char *v = colon + 1, *end = data + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (st->n_headers == st->cap_headers) {
		st->cap_headers = st->cap_headers ? st->cap_headers * 2 : 16;
		st->headers = fl_realloc(st->headers, st->cap_headers * sizeof *st->headers);
	}
	struct net_header *hd = &st->headers[st->n_headers++];
	hd->name = fl_strndup(data, name_len);
	for (char *p = hd->name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	hd->value = fl_strndup(v, (size_t)(end - v));
	return len;
}

static int is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The scheme://host[:port] part of url, to tell whether a redirect leaves the origin. */
static char *origin_of(const char *url)
{
	const char *p = strstr(url, "://");
	if (!p)
		return fl_strdup(url);
	p += 3;
	size_t n = strcspn(p, "/?#");
	return fl_strndup(url, (size_t)(p - url) + n);
}

static int header_is(const struct net_header *h, const char *name)
{
	return !strcasecmp(h->name, name);
}

/* One hop of the request. Returns 0 with st filled, or a negative code. */
static int perform_hop(CURL *h, const struct net_http_request *req, const char *url,
		       const char *method, const char *body, size_t body_len, int keep_auth,
		       int64_t deadline_ms, struct resp_state *st, long *status, char **location,
		       struct fl_err *err)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_USERAGENT, "flowd/" "0.1");
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, st);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, st);
	if (deadline_ms) {
		int64_t left = deadline_ms - fl_mono_ms();
		if (left <= 0)
			return fl_err_set(err, FL_ETIMEOUT, "request to '%s' timed out", url);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
	}

	if (!strcmp(method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		if (strcmp(method, "POST"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	} else if (!strcmp(method, "GET")) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}

	struct curl_slist *list = NULL;
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct net_header *hd = &req->headers[i];
		if (!keep_auth && (header_is(hd, "authorization") || header_is(hd, "cookie")))
			continue;
		if (!body && req->body && header_is(hd, "content-type"))
			continue; /* the body was dropped by a 303 (or 301/302 after POST) */
		char *line = hd->value && *hd->value ? fl_asprintf("%s: %s", hd->name, hd->value)
						     : fl_asprintf("%s;", hd->name);
		list = curl_slist_append(list, line);
		fl_free(line);
	}
	/* curl would otherwise wait for a 100 Continue before sending a large body. */
	list = curl_slist_append(list, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);

	CURLcode rc = curl_easy_perform(h);
	curl_slist_free_all(list);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return fl_err_set(err, FL_ETIMEOUT, "request to '%s' timed out", url);
	if (rc != CURLE_OK)
		return fl_err_set(err, FL_EIO, "request to '%s' failed: %s", url,
				  *errbuf ? errbuf : curl_easy_strerror(rc));
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	*location = NULL;
	char *next = NULL;
	if (is_redirect(*status) && curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &next) == CURLE_OK &&
	    next)
		*location = fl_strdup(next);
	return 0;
}

int net_http_do(const struct net_http_request *req, struct net_http_response *resp,
		struct fl_err *err)
{
	memset(resp, 0, sizeof *resp);
	if (!req->url || !*req->url)
		return fl_err_set(err, FL_EINVAL, "request has no URL");
	CURL *h = get_handle();
	if (!h)
		return fl_err_set(err, FL_EIO, "cannot create an HTTP handle");

	const char *method = req->method ? req->method : "GET";
	const char *body = req->body;
	size_t body_len = req->body_len;
	int64_t deadline = req->timeout_ms > 0 ? fl_mono_ms() + req->timeout_ms : 0;
	char *url = fl_strdup(req->url);
	char *first_origin = origin_of(url);
	struct resp_state st = { .body = FL_BUF_INIT };
	long status = 0;
	int rc = 0;
	struct net_guard *guard = net_guard_new(req->policy);

	for (int hop = 0;; hop++) {
		rc = net_guard_hop(guard, h, url, err);
		if (rc)
			break;
		char *origin = origin_of(url);
		int keep_auth = !strcmp(origin, first_origin);
		fl_free(origin);
		clear_headers(&st);
		fl_buf_reset(&st.body);
		char *location = NULL;
		rc = perform_hop(h, req, url, method, body, body_len, keep_auth, deadline, &st,
				 &status, &location, err);
		if (rc) {
			/* A connect the guard refused surfaces as a curl error: report the refusal. */
			if (net_guard_refused(guard, err))
				rc = FL_EDENIED;
			break;
		}
		if (!req->follow_redirects || !location) {
			fl_free(location);
			break;
		}
		if (hop == MAX_REDIRECTS) {
			fl_free(location);
			rc = fl_err_set(err, FL_EIO, "request to '%s' failed: more than %d redirects",
					req->url, MAX_REDIRECTS);
			break;
		}
		/* As browsers do: 303 always, and 301/302 after a POST, turn into a GET without the
		 * body; 307 and 308 repeat the request as it was. */
		if ((status == 303 && strcmp(method, "HEAD")) ||
		    ((status == 301 || status == 302) && !strcmp(method, "POST"))) {
			method = "GET";
			body = NULL;
			body_len = 0;
		}
		fl_free(url);
		url = location;
	}
	fl_free(first_origin);
	net_guard_free(guard);

	if (rc) {
		clear_headers(&st);
		fl_free(st.headers);
		fl_buf_release(&st.body);
		fl_free(url);
		return rc;
	}
	resp->status = status;
	resp->headers = st.headers;
	resp->n_headers = st.n_headers;
	resp->body = fl_buf_detach(&st.body, &resp->body_len);
	resp->effective_url = url;
	return 0;
}

void net_http_response_release(struct net_http_response *resp)
{
	if (!resp)
		return;
	for (size_t i = 0; i < resp->n_headers; i++) {
		fl_free(resp->headers[i].name);
		fl_free(resp->headers[i].value);
	}
	fl_free(resp->headers);
	fl_free(resp->body);
	fl_free(resp->effective_url);
	memset(resp, 0, sizeof *resp);
}

const char *net_http_response_header(const struct net_http_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->n_headers; i++)
		if (!strcasecmp(resp->headers[i].name, name))
			return resp->headers[i].value;
	return NULL;
}
