/* The worker's own HTTP endpoint in WORKER mode, on AP_PORT: GET /v1/health (200 while Redis is
 * reachable, 503 otherwise) and GET /metrics (Prometheus text). */
#ifndef WK_HEALTH_H
#define WK_HEALTH_H

struct fl_err;
struct wk_worker;
struct wk_health;

/* Listens on port (0: any; see wk_health_port). Returns NULL with err set when it cannot bind. */
struct wk_health *wk_health_start(struct wk_worker *w, int port, struct fl_err *err);
int wk_health_port(const struct wk_health *h);
void wk_health_stop(struct wk_health *h);

#endif
