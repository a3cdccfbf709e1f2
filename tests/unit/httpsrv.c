/* The unit tests' local HTTP server: see httpsrv.h. */
#include "httpsrv.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PATHS 128

struct httpsrv {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t lock;
	char *paths[MAX_PATHS];
	int hits[MAX_PATHS];
	int n_paths;
};

struct conn_state {
	char *body;
	size_t len;
};

static void count(struct httpsrv *s, const char *path)
{
	pthread_mutex_lock(&s->lock);
	int i;
	for (i = 0; i < s->n_paths; i++)
		if (!strcmp(s->paths[i], path))
			break;
	if (i == s->n_paths && s->n_paths < MAX_PATHS)
		s->paths[s->n_paths++] = strdup(path);
	if (i < MAX_PATHS)
		s->hits[i]++;
	pthread_mutex_unlock(&s->lock);
}

int httpsrv_hits(struct httpsrv *s, const char *path)
{
	pthread_mutex_lock(&s->lock);
	int n = 0;
	for (int i = 0; i < s->n_paths; i++)
		if (!strcmp(s->paths[i], path))
			n = s->hits[i];
	pthread_mutex_unlock(&s->lock);
	return n;
}

void httpsrv_reset(struct httpsrv *s)
{
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n_paths; i++)
		free(s->paths[i]);
	s->n_paths = 0;
	memset(s->hits, 0, sizeof s->hits);
	pthread_mutex_unlock(&s->lock);
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
				  const char *value)
{
	json_array_append_new(cls, json_pack("[ss]", key, value ? value : ""));
	return MHD_YES;
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *value)
{
	char **q = cls;
	size_t old = *q ? strlen(*q) : 0;
	size_t n = old + strlen(key) + (value ? strlen(value) : 0) + 3;
	*q = realloc(*q, n);
	snprintf(*q + old, n - old, "%s%s=%s", old ? "&" : "", key, value ? value : "");
	return MHD_YES;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     const void *data, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
	if (type)
		MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

struct flaky {
	char key[64];
	int seen;
};
static struct flaky flaky_keys[64];
static pthread_mutex_t flaky_lock = PTHREAD_MUTEX_INITIALIZER;

static int flaky_hit(const char *key)
{
	pthread_mutex_lock(&flaky_lock);
	int i;
	for (i = 0; i < 64 && flaky_keys[i].key[0]; i++)
		if (!strcmp(flaky_keys[i].key, key))
			break;
	int n = 0;
	if (i < 64) {
		if (!flaky_keys[i].key[0])
			snprintf(flaky_keys[i].key, sizeof flaky_keys[i].key, "%s", key);
		n = ++flaky_keys[i].seen;
	}
	pthread_mutex_unlock(&flaky_lock);
	return n;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct httpsrv *s = cls;
	struct conn_state *cs = *con_cls;
	if (!cs) {
		cs = calloc(1, sizeof *cs);
		*con_cls = cs;
		return MHD_YES;
	}
	if (*upload_size) {
		cs->body = realloc(cs->body, cs->len + *upload_size + 1);
		memcpy(cs->body + cs->len, upload, *upload_size);
		cs->len += *upload_size;
		cs->body[cs->len] = 0;
		*upload_size = 0;
		return MHD_YES;
	}
	count(s, url);

	if (!strncmp(url, "/status/", 8)) {
		unsigned st = (unsigned)atoi(url + 8);
		char buf[64];
		int n = snprintf(buf, sizeof buf, "{\"status\":%u}", st);
		return reply(c, st, "application/json", buf, (size_t)n);
	}
	if (!strcmp(url, "/echo")) {
		json_t *hdrs = json_array();
		MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, hdrs);
		char *q = NULL;
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &q);
		char *full = NULL;
		if (q && asprintf(&full, "%s?%s", url, q) < 0)
			full = NULL;
		json_t *o = json_pack("{s:s, s:s, s:o, s:s#}", "method", method, "url",
				      full ? full : url, "headers", hdrs, "body",
				      cs->body ? cs->body : "", cs->len);
		free(q);
		free(full);
		char *text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		enum MHD_Result r = reply(c, 200, "application/json", text, strlen(text));
		free(text);
		return r;
	}
	if (!strncmp(url, "/redirect/", 10)) {
		const char *to = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to");
		struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, "Location", to ? to : url); /* no target: a loop */
		enum MHD_Result ret = MHD_queue_response(c, (unsigned)atoi(url + 10), r);
		MHD_destroy_response(r);
		return ret;
	}
	if (!strcmp(url, "/slow")) {
		const char *ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
		usleep((useconds_t)(ms ? atoi(ms) : 1000) * 1000);
		return reply(c, 200, "text/plain", "slow", 4);
	}
	if (!strcmp(url, "/binary")) {
		unsigned char bytes[256];
		for (int i = 0; i < 256; i++)
			bytes[i] = (unsigned char)i;
		return reply(c, 200, "application/octet-stream", bytes, sizeof bytes);
	}
	if (!strcmp(url, "/text"))
		return reply(c, 200, "text/plain", "hello", 5);
	if (!strncmp(url, "/flaky/", 7)) {
		char key[64];
		int fails = 0;
		if (sscanf(url + 7, "%63[^/]/%d", key, &fails) == 2 && flaky_hit(key) <= fails)
			return reply(c, 500, "application/json", "{\"flaky\":true}", 14);
		return reply(c, 200, "application/json", "{\"ok\":true}", 11);
	}
	return reply(c, 404, "text/plain", "not found", 9);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct conn_state *cs = *con_cls;
	if (cs) {
		free(cs->body);
		free(cs);
		*con_cls = NULL;
	}
}

struct httpsrv *httpsrv_start(void)
{
	struct httpsrv *s = calloc(1, sizeof *s);
	pthread_mutex_init(&s->lock, NULL);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
					MHD_USE_ERROR_LOG,
				0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, &addr,
				MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
	if (!s->d) {
		fprintf(stderr, "httpsrv: cannot start\n");
		abort();
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info->port;
	return s;
}

void httpsrv_stop(struct httpsrv *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	httpsrv_reset(s);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int httpsrv_port(const struct httpsrv *s)
{
	return s->port;
}

const char *httpsrv_url(const struct httpsrv *s, const char *path)
{
	static char buf[1024];
	snprintf(buf, sizeof buf, "http://127.0.0.1:%d%s", s->port, path);
	return buf;
}
