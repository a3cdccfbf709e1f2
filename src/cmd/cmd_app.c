/* flowd app: the app role alone (AP_CONTAINER_TYPE=APP). Loads the configuration, starts the
 * app service and waits for SIGTERM or SIGINT, then stops gracefully. */
#include "app/service.h"
#include "cmd/cmd.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

int cmd_app(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "flowd app: unexpected argument '%s'; see 'flowd help app'\n", argv[1]);
		return 2;
	}
	struct fl_config cfg;
	struct fl_err err = { 0 };
	if (fl_config_load(&cfg, &err)) {
		fprintf(stderr, "flowd app: %s\n", err.msg);
		return 2;
	}
	cfg.container_type = FL_CONTAINER_APP;
	fl_log_setup((enum fl_log_level)cfg.log_level, cfg.log_pretty);

	/* Blocked before any thread exists, so that only sigwait below sees them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct app_service *svc = app_service_start(&cfg, cfg.redis_url, &err);
	if (!svc) {
		fprintf(stderr, "flowd app: %s\n", err.msg);
		fl_config_release(&cfg);
		return 1;
	}
	int sig = 0;
	sigwait(&set, &sig);
	fl_info("app", "received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	int grace = cfg.webhook_timeout_s * 1000;
	app_service_stop(svc, grace > 10000 ? 10000 : grace);
	fl_info("app", "stopped");
	fl_config_release(&cfg);
	return 0;
}
