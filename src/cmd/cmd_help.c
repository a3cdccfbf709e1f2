/* The command table, `flowd help` and `flowd version`. A command is added by declaring its
 * function in cmd.h and adding a row here. */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

#ifndef FLOWD_VERSION
#define FLOWD_VERSION "0.1.0"
#endif

const struct cmd cmd_table[] = {
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
	{ "version", cmd_version, "print the version", "usage: flowd version\n" },
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
