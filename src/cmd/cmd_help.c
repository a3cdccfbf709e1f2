/* The command table, `flowd help` and `flowd version`. A command is added by declaring its
 * function in cmd.h and adding a row here. */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

#ifndef FLOWD_VERSION
#define FLOWD_VERSION "0.1.0"
#endif

const struct cmd cmd_table[] = {
	{ "app", cmd_app, "run the app alone: HTTP API, store, schedules, reaper",
	  "usage: flowd app\n"
	  "\n"
	  "Runs the app role only (as AP_CONTAINER_TYPE=APP): the HTTP API on AP_PORT, the store\n"
	  "(SQLite under AP_CONFIG_PATH, or PostgreSQL with AP_DB_TYPE=POSTGRES and\n"
	  "AP_POSTGRES_URL), schema migrations at start, schedule triggers and the reaper. Jobs go\n"
	  "to the BullMQ queue on AP_REDIS_URL, which is required. Workers (flowd worker) run them.\n"
	  "\n"
	  "Without AP_API_KEY a key is generated on first start, kept 0600 in\n"
	  "AP_CONFIG_PATH/api-key and printed once; AP_JWT_SECRET likewise in jwt-secret.\n"
	  "SIGTERM or SIGINT stops it gracefully: no new connections, sync webhook calls get up\n"
	  "to AP_WEBHOOK_TIMEOUT_SECONDS (at most 10 s) to be answered.\n" },
	{ "engine", cmd_engine, "internal: the engine process, driven over pipes by a worker",
	  "usage: flowd engine [--zygote]\n\n"
	  "Reads operations as JSON lines on stdin and writes events as JSON lines on stdout\n"
	  "(see src/engine/proto.h). Started by the worker; not meant to be run by hand.\n"
	  "With --zygote it is the sandbox zygote instead (src/sandbox/zygote.h): it serves\n"
	  "spawn requests on fd 3 and forks each sandboxed engine from itself.\n" },
	{ "flows", cmd_flows, "push and list flows through the app's API",
	  "usage: flowd flows push FILE [--json]\n"
	  "       flowd flows ls [--limit N] [--json]\n"
	  "\n"
	  "  push   validate and store FILE (a flow version, an export or a template) as a new\n"
	  "         flow, or as a new version of flow ID with --id ID; prints its id and webhook URL\n"
	  "  ls     the flows, oldest first\n"
	  "\n"
	  "The app is AP_APP_URL (default http://127.0.0.1:AP_PORT); the key is AP_API_KEY or the\n"
	  "file AP_CONFIG_PATH/api-key. Exit status: 0 done, 1 the app refused or failed, 2 bad\n"
	  "usage.\n" },
	{ "help", cmd_help, "show help for flowd or one command",
	  "usage: flowd help [COMMAND]\n" },
	{ "queue", cmd_queue, "inspect and operate the BullMQ queue",
	  "usage: flowd queue stats [--json]\n"
	  "       flowd queue ls STATE [--offset N] [--limit N] [--json]\n"
	  "       flowd queue retry [--limit N] [--json]\n"
	  "       flowd queue clean STATE --grace SECONDS [--limit N] [--json]\n"
	  "       flowd queue pause|resume [--json]\n"
	  "\n"
	  "Works on queue AP_QUEUE_NAME (workerJobs) under key prefix AP_REDIS_PREFIX (bull) on\n"
	  "AP_REDIS_URL, or on the embedded Redis under AP_CONFIG_PATH when that is unset.\n"
	  "\n"
	  "  stats   jobs per state: the numbers BullMQ's getJobCounts gives\n"
	  "  ls      jobs in STATE, next or newest first (default limit 100)\n"
	  "  retry   move failed jobs back to waiting (all, or --limit N)\n"
	  "  clean   delete jobs in STATE older than --grace SECONDS (finish time for completed\n"
	  "          and failed, creation time otherwise)\n"
	  "  pause   stop every worker fetching; resume restarts them\n"
	  "\n"
	  "STATE is waiting, active, delayed, prioritized, completed, failed or paused (active\n"
	  "cannot be cleaned). Exit status: 0 done, 1 Redis failed, 2 bad usage.\n" },
	{ "run", cmd_run, "run one flow once, locally, with no Redis and no app",
	  "usage: flowd run FLOW.json [--payload FILE|JSON] [--json]\n\n"
	  "Runs the flow in FLOW.json (a flow version, an export or a template) once, in this\n"
	  "process. The payload is the trigger step's output as later steps see it; for a webhook\n"
	  "flow {\"body\",\"headers\",\"queryParams\",\"method\"}. Default: {}.\n\n"
	  "  --payload FILE|JSON  the trigger output, from a file, inline JSON, or - for stdin\n"
	  "  --json               print the run result as JSON instead of a line per step\n\n"
	  "Store entries live in memory for the run. A step that pauses (a long delay, an\n"
	  "approval) ends the run PAUSED.\n"
	  "Exit status: 0 SUCCEEDED or PAUSED, 1 any other run status, 2 unusable input.\n" },
	{ "runs", cmd_runs, "list, show, retry and cancel flow runs through the app's API",
	  "usage: flowd runs ls [--flow ID] [--status S[,S...]] [--limit N] [--json]\n"
	  "       flowd runs show RUN_ID [--json]\n"
	  "       flowd runs retry RUN_ID [--strategy FROM_FAILED_STEP|ON_LATEST_VERSION] [--json]\n"
	  "       flowd runs cancel RUN_ID [--json]\n"
	  "\n"
	  "  ls      runs, newest first\n"
	  "  show    one run: its status, attempts (which worker ran each), and a timeline of its\n"
	  "          steps saying which attempt executed each step and which replayed it\n"
	  "  retry   FROM_FAILED_STEP (default) runs the failed run again from its failed step;\n"
	  "          ON_LATEST_VERSION starts a new run on the flow's latest version\n"
	  "  cancel  cancels a QUEUED or PAUSED run\n"
	  "\n"
	  "The app is AP_APP_URL (default http://127.0.0.1:AP_PORT); the key is AP_API_KEY or the\n"
	  "file AP_CONFIG_PATH/api-key. Exit status: 0 done, 1 the app refused or failed, 2 bad\n"
	  "usage.\n" },
	{ "sandbox", cmd_sandbox, "check which AP_EXECUTION_MODE sandboxes this host supports",
	  "usage: flowd sandbox check [--json]\n"
	  "\n"
	  "Probes the host as a worker does at start: user namespaces, a network namespace,\n"
	  "seccomp, a cgroup (v2, else v1) where a sandbox cgroup with a memory limit can be made,\n"
	  "then runs a whole sandbox. Prints, for every AP_EXECUTION_MODE and AP_NETWORK_MODE,\n"
	  "\"ok\" or what the host lacks. Exit status: 1 when the mode set in AP_EXECUTION_MODE\n"
	  "(with AP_NETWORK_MODE) is refused, else 0; 2 bad usage.\n" },
	{ "serve", cmd_serve, "run the app and a worker together (AP_CONTAINER_TYPE)",
	  "usage: flowd serve [--grace SECONDS]\n\n"
	  "Runs the roles AP_CONTAINER_TYPE names (default WORKER_AND_APP: the app and a worker in\n"
	  "one process tree). Without AP_REDIS_URL a private redis-server is started on a unix\n"
	  "socket under AP_CONFIG_PATH and stopped on exit. On SIGTERM or SIGINT no new job is\n"
	  "fetched, running jobs get --grace seconds (default 25) to finish, and the rest are\n"
	  "handed back to the queue at once.\n" },
	{ "version", cmd_version, "print the version", "usage: flowd version\n" },
	{ "worker", cmd_worker, "run a worker alone: jobs from the queue, engines, results to the app",
	  "usage: flowd worker [--grace SECONDS]\n\n"
	  "Takes EXECUTE_FLOW jobs from the BullMQ queue (AP_REDIS_URL, AP_QUEUE_NAME), runs up to\n"
	  "AP_WORKER_CONCURRENCY at once, each in an engine process, and reports to the app at\n"
	  "AP_APP_URL with tokens signed by AP_JWT_SECRET (or the jwt-secret file under\n"
	  "AP_CONFIG_PATH). Serves GET /v1/health and GET /metrics on AP_PORT. On SIGTERM or SIGINT\n"
	  "no new job is fetched, running jobs get --grace seconds (default 25) to finish, and the\n"
	  "rest are handed back to the queue at once.\n" },
	{ 0, 0, 0, 0 },
};

const struct cmd *cmd_find(const char *name)
{
	for (const struct cmd *c = cmd_table; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

int cmd_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return 0;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return 1;
	}
	return 0;
}

void cmd_print_usage(const struct cmd *c)
{
	if (c) {
		fputs(c->usage, stdout);
		return;
	}
	printf("usage: flowd COMMAND [ARGS]\n\n"
	       "flowd runs automation flows (Activepieces flow JSON) on stateless workers fed by a\n"
	       "BullMQ queue in Redis.\n\ncommands:\n");
	for (const struct cmd *t = cmd_table; t->name; t++)
		printf("  %-10s %s\n", t->name, t->summary);
	printf("\nRun 'flowd help COMMAND' for a command's options. Configuration is read from AP_*\n"
	       "environment variables; see README.md.\n");
}

int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		cmd_print_usage(NULL);
		return 0;
	}
	const struct cmd *c = cmd_find(argv[1]);
	if (!c) {
		fprintf(stderr, "flowd: unknown command '%s'; see 'flowd help'\n", argv[1]);
		return 2;
	}
	cmd_print_usage(c);
	return 0;
}

int cmd_version(int argc, char **argv)
{
	printf("flowd %s\n", FLOWD_VERSION);
	return 0;
}
