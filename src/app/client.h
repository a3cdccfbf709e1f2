/* A client of the app's management API for the terminal commands (flowd flows, flowd runs):
 * one blocking libcurl request per call, and the text renderings those commands print. */
#ifndef APP_CLIENT_H
#define APP_CLIENT_H

#include <jansson.h>
#include <stdio.h>

struct fl_config;
struct fl_err;

struct app_client {
	char *base_url; /* no trailing slash */
	char *api_key;
};

/* Base URL from AP_APP_URL (else http://127.0.0.1:AP_PORT); key from AP_API_KEY, else the file
 * AP_CONFIG_PATH/api-key. Returns 0, or FL_ECONFIG / FL_ENOTFOUND with err saying what to set. */
int app_client_init(struct app_client *c, const struct fl_config *cfg, struct fl_err *err);
void app_client_release(struct app_client *c);

/* Sends method path (with query) and body (NULL: none). On an HTTP answer returns 0 with
 * *status and *out (the parsed JSON body, or NULL when it was empty or not JSON). Returns
 * FL_EIO when the app cannot be reached. */
int app_client_call(struct app_client *c, const char *method, const char *path,
		    const json_t *body, long *status, json_t **out, struct fl_err *err);

/* Text views. */
void app_client_print_flow(FILE *f, const json_t *flow);
void app_client_print_flows(FILE *f, const json_t *page);
void app_client_print_runs(FILE *f, const json_t *page);
/* A run with its attempts and a timeline of its steps, drawn as bars on a shared time axis,
 * each step marked executed (and in which attempt) or replayed. */
void app_client_print_run(FILE *f, const json_t *run);

#endif
