/* Health and metrics of a worker: see health.h. */
#include "worker/health.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "worker/worker.h"

#include <errno.h>
#include <microhttpd.h>
#include <string.h>

struct wk_health {
	struct MHD_Daemon *daemon;
	struct wk_worker *w;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **state)
{
	struct wk_health *h = cls;
	struct fl_buf b = FL_BUF_INIT;
	unsigned status = 200;
	const char *type = "application/json";
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		status = 405;
		fl_buf_adds(&b, "{\"error\":\"method not allowed\"}");
	} else if (!strcmp(url, "/v1/health")) {
		int ok = wk_worker_healthy(h->w);
		status = ok ? 200 : 503;
		fl_buf_adds(&b, ok ? "{\"status\":\"ok\"}" : "{\"status\":\"redis unreachable\"}");
	} else if (!strcmp(url, "/metrics")) {
		type = "text/plain; version=0.0.4";
		wk_worker_metrics(h->w, &b);
	} else {
		status = 404;
		fl_buf_adds(&b, "{\"error\":\"not found\"}");
	}
	size_t len;
	char *body = fl_buf_detach(&b, &len);
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, "Content-Type", type);
	enum MHD_Result rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

struct wk_health *wk_health_start(struct wk_worker *w, int port, struct fl_err *err)
{
	struct wk_health *h = fl_calloc(1, sizeof *h);
	h->w = w;
	h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
				     (uint16_t)port, NULL, NULL, answer, h, MHD_OPTION_END);
	if (!h->daemon) {
		fl_err_set(err, FL_EIO, "cannot listen on port %d for health and metrics", port);
		fl_free(h);
		return NULL;
	}
	return h;
}

int wk_health_port(const struct wk_health *h)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	return info ? info->port : 0;
}

void wk_health_stop(struct wk_health *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	fl_free(h);
}
