/* The management API client and its text views: see client.h. */
#include "app/client.h"
#include "app/service.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/secret.h"
#include "core/time.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

int app_client_init(struct app_client *c, const struct fl_config *cfg, struct fl_err *err)
{
	memset(c, 0, sizeof *c);
	const char *url = getenv("AP_APP_URL");
	if (url && *url)
		c->base_url = fl_strdup(url);
	else if (cfg->app_url)
		c->base_url = fl_strdup(cfg->app_url);
	else
		c->base_url = fl_asprintf("http://127.0.0.1:%d", cfg->port);
	size_t n = strlen(c->base_url);
	while (n && c->base_url[n - 1] == '/')
		c->base_url[--n] = '\0';
	if (cfg->api_key) {
		c->api_key = fl_strdup(cfg->api_key);
		return 0;
	}
	int rc = fl_secret_read(cfg->config_path, APP_API_KEY_FILE, &c->api_key, NULL);
	if (rc) {
		app_client_release(c);
		return fl_err_set(err, rc == FL_ENOTFOUND ? FL_ENOTFOUND : rc,
				  "no API key: set AP_API_KEY, or AP_CONFIG_PATH to the app's "
				  "directory (no '%s/%s')",
				  cfg->config_path, APP_API_KEY_FILE);
	}
	return 0;
}

void app_client_release(struct app_client *c)
{
	fl_free(c->base_url);
	fl_free(c->api_key);
	memset(c, 0, sizeof *c);
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	fl_buf_add(ud, data, size * n);
	return size * n;
}

int app_client_call(struct app_client *c, const char *method, const char *path,
		    const json_t *body, long *status, json_t **out, struct fl_err *err)
{
	*out = NULL;
	*status = 0;
	CURL *h = curl_easy_init();
	if (!h)
		return fl_err_set(err, FL_EIO, "cannot start libcurl");
	char *url = fl_asprintf("%s%s", c->base_url, path);
	char *auth = fl_asprintf("Authorization: Bearer %s", c->api_key);
	struct curl_slist *headers = curl_slist_append(NULL, auth);
	headers = curl_slist_append(headers, "Accept: application/json");
	char *text = NULL;
	if (body) {
		text = fl_json_dump(body);
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
	}
	struct fl_buf resp = FL_BUF_INIT;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	CURLcode cc = curl_easy_perform(h);
	int rc = 0;
	if (cc != CURLE_OK) {
		rc = fl_err_set(err, FL_EIO, "cannot reach the app at '%s': %s", c->base_url,
				curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
		if (resp.len)
			*out = json_loadb(resp.data, resp.len, 0, NULL);
	}
	fl_buf_release(&resp);
	free(text);
	curl_slist_free_all(headers);
	fl_free(auth);
	fl_free(url);
	curl_easy_cleanup(h);
	return rc;
}

/* ---- views ---- */

static const char *str(const json_t *o, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : def;
}

/* "2026-01-02T03:04:05.678Z" -> "03:04:05.678" */
static const char *clock_of(const char *iso)
{
	const char *t = iso ? strchr(iso, 'T') : NULL;
	return t ? t + 1 : (iso ? iso : "-");
}

void app_client_print_flow(FILE *f, const json_t *flow)
{
	const json_t *v = json_object_get(flow, "version");
	fprintf(f, "%s  %s  (version %lld %s)\n", str(flow, "id", "?"), str(flow, "displayName", ""),
		(long long)json_integer_value(json_object_get(v, "number")), str(v, "id", "?"));
	fprintf(f, "  webhook: %s\n", str(flow, "webhookUrl", "-"));
	const json_t *s = json_object_get(flow, "schedule");
	if (s)
		fprintf(f, "  schedule: %s (%s), next run %s\n", str(s, "cronExpression", "?"),
			str(s, "timezone", "UTC"), str(s, "nextRunAt", "-"));
}

void app_client_print_flows(FILE *f, const json_t *page)
{
	const json_t *data = json_object_get(page, "data");
	if (!json_array_size(data)) {
		fprintf(f, "no flows\n");
		return;
	}
	fprintf(f, "%-22s %-8s %-24s %s\n", "ID", "VERSION", "UPDATED", "NAME");
	size_t i;
	const json_t *fl;
	json_array_foreach(data, i, fl)
	{
		fprintf(f, "%-22s %-8lld %-24s %s\n", str(fl, "id", "?"),
			(long long)json_integer_value(
				json_object_get(json_object_get(fl, "version"), "number")),
			str(fl, "updatedAt", "-"), str(fl, "displayName", ""));
	}
}

void app_client_print_runs(FILE *f, const json_t *page)
{
	const json_t *data = json_object_get(page, "data");
	if (!json_array_size(data)) {
		fprintf(f, "no runs\n");
		return;
	}
	fprintf(f, "%-22s %-22s %-22s %-24s %10s\n", "ID", "FLOW", "STATUS", "CREATED", "DURATION");
	size_t i;
	const json_t *r;
	json_array_foreach(data, i, r)
	{
		const json_t *d = json_object_get(r, "duration");
		char dur[32] = "-";
		if (json_is_integer(d))
			snprintf(dur, sizeof dur, "%lld ms", (long long)json_integer_value(d));
		fprintf(f, "%-22s %-22s %-22s %-24s %10s\n", str(r, "id", "?"), str(r, "flowId", "?"),
			str(r, "status", "?"), str(r, "created", "-"), dur);
	}
	const char *next = str(page, "next", NULL);
	if (next)
		fprintf(f, "(more: --cursor %s)\n", next);
}

static int64_t ms_of(const char *iso)
{
	int64_t ms = 0;
	if (!iso || fl_parse_iso8601(iso, &ms))
		return 0;
	return ms;
}

#define AXIS 40

void app_client_print_run(FILE *f, const json_t *run)
{
	fprintf(f, "run %s  %s\n", str(run, "id", "?"), str(run, "status", "?"));
	fprintf(f, "  flow %s  version %s\n", str(run, "flowId", "?"), str(run, "flowVersionId", "?"));
	const json_t *d = json_object_get(run, "duration");
	fprintf(f, "  created %s  started %s  finished %s", str(run, "created", "-"),
		str(run, "startTime", "-"), str(run, "finishTime", "-"));
	if (json_is_integer(d))
		fprintf(f, "  (%lld ms)", (long long)json_integer_value(d));
	fputc('\n', f);
	const json_t *peak = json_object_get(run, "peakMemoryKb");
	if (json_is_integer(peak))
		fprintf(f, "  engine peak memory %lld KiB\n", (long long)json_integer_value(peak));

	const json_t *attempts = json_object_get(run, "attemptHistory");
	size_t i;
	const json_t *a;
	if (json_array_size(attempts)) {
		fprintf(f, "\nattempts\n");
		json_array_foreach(attempts, i, a)
		{
			fprintf(f, "  #%lld  %-8s worker %-20s %s -> %s  %s  (executed %zu, replayed %lld)\n",
				(long long)json_integer_value(json_object_get(a, "attempt")),
				str(a, "executionType", "?"), str(a, "worker", "-"),
				clock_of(str(a, "startTime", NULL)),
				clock_of(str(a, "finishTime", NULL)), str(a, "status", "RUNNING"),
				json_array_size(json_object_get(a, "executedSteps")),
				(long long)json_integer_value(json_object_get(a, "replayedSteps")));
		}
	}

	const json_t *records = json_object_get(run, "stepRecords");
	if (json_array_size(records)) {
		/* A shared axis from the earliest step start to the latest step end. */
		int64_t t0 = INT64_MAX, t1 = 0;
		const json_t *s;
		json_array_foreach(records, i, s)
		{
			int64_t end = ms_of(str(s, "updatedAt", NULL));
			int64_t start = end - json_integer_value(json_object_get(s, "duration"));
			if (end && start < t0)
				t0 = start;
			if (end > t1)
				t1 = end;
		}
		int64_t span = t1 > t0 ? t1 - t0 : 1;
		fprintf(f, "\nsteps (%lld ms from the first step's start to the last step's end)\n",
			(long long)(t1 > t0 ? t1 - t0 : 0));
		json_array_foreach(records, i, s)
		{
			const char *path = str(s, "path", "?");
			int depth = 0;
			for (const char *p = path; *p; p++)
				depth += *p == '.';
			int64_t dur = json_integer_value(json_object_get(s, "duration"));
			int64_t end = ms_of(str(s, "updatedAt", NULL));
			int from = (int)((end - dur - t0) * AXIS / span);
			int to = (int)((end - t0) * AXIS / span);
			if (from < 0)
				from = 0;
			if (from > AXIS - 1)
				from = AXIS - 1;
			if (to > AXIS)
				to = AXIS;
			char bar[AXIS + 1];
			for (int k = 0; k < AXIS; k++)
				bar[k] = k >= from && k < (to > from ? to : from + 1) ? '#' : '.';
			bar[AXIS] = '\0';
			const char *st = str(s, "status", "?");
			const char *mark = !strcmp(st, "SUCCEEDED") ? "ok"
					   : !strcmp(st, "FAILED")  ? "!!"
					   : !strcmp(st, "PAUSED")  ? "||"
								    : "..";
			char label[64];
			snprintf(label, sizeof label, "%*s%s", depth * 2, "", path);
			fprintf(f, "  %s %-28s %-10s %7lld ms |%s| attempt %lld", mark, label, st,
				(long long)dur, bar,
				(long long)json_integer_value(json_object_get(s, "executedInAttempt")));
			const json_t *rep = json_object_get(s, "replayedInAttempts");
			if (json_array_size(rep)) {
				fprintf(f, ", replayed in");
				size_t k;
				const json_t *n;
				json_array_foreach(rep, k, n)
				fprintf(f, " #%lld", (long long)json_integer_value(n));
			}
			fputc('\n', f);
		}
	}
	const json_t *failed = json_object_get(run, "failedStep");
	if (json_is_object(failed))
		fprintf(f, "\nfailed at %s: %s\n", str(failed, "name", "?"), str(failed, "message", ""));
	const json_t *wp = json_object_get(run, "waitpoint");
	if (json_is_object(wp))
		fprintf(f, "\npaused; resume with %s\n", str(wp, "resumeUrl", "?"));
	const json_t *resp = json_object_get(run, "response");
	if (json_is_object(resp)) {
		char *body = fl_json_dump(json_object_get(resp, "body"));
		fprintf(f, "\nresponse %lld %s\n",
			(long long)json_integer_value(json_object_get(resp, "status")),
			body ? body : "");
		free(body);
	}
}
