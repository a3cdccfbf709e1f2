/* SANDBOX_CODE_ONLY for the tests: applies sb_code_only_enter to itself, as the engine does,
 * then runs sb_escape in-process.
 *
 * usage: sb_code_only_helper [--deny-inet] [--procs N] [--cpu S] [--fsize B] -- sb_escape ARGS */
#include "core/alloc.h"
#include "core/err.h"
#include "sandbox/sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sb_escape_main(int argc, char **argv);

int main(int argc, char **argv)
{
	fl_alloc_init();
	struct sb_code_only_opts opts;
	sb_code_only_opts_init(&opts);
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--deny-inet"))
			opts.flags |= SB_DENY_INET;
		else if (!strcmp(argv[i], "--procs") && i + 1 < argc)
			opts.limits.procs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--cpu") && i + 1 < argc)
			opts.limits.cpu_seconds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--fsize") && i + 1 < argc)
			opts.limits.file_size_bytes = atoll(argv[++i]);
	}
	struct fl_err err;
	if (sb_code_only_enter(&opts, &err)) {
		fprintf(stderr, "sb_code_only_helper: %s\n", err.msg);
		return 1;
	}
	return sb_escape_main(argc - i, argv + i);
}
