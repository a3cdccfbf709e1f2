/* Entry point: finds the subcommand in cmd_table and runs it, git-style. */
#include "cmd/cmd.h"
#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	fl_alloc_init();
	if (argc < 2) {
		cmd_print_usage(NULL);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		cmd_print_usage(NULL);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	const struct cmd *c = cmd_find(argv[1]);
	if (!c) {
		fprintf(stderr, "flowd: unknown command '%s'; see 'flowd help'\n", argv[1]);
		return 2;
	}
	if (cmd_wants_help(argc - 1, argv + 1)) {
		cmd_print_usage(c);
		return 0;
	}
	return c->fn(argc - 1, argv + 1);
}
