/* `flowd engine`: the engine process a worker starts for its jobs. It speaks the pipe protocol
 * of engine/proto.h on stdin and stdout, and logs to stderr. `flowd engine --zygote` is the
 * sandbox zygote (sandbox/zygote.h): started once by a worker with the control socket on fd 3,
 * it forks each sandboxed engine from itself, JavaScriptCore already loaded. `flowd engine
 * --code-only` confines itself first (SANDBOX_CODE_ONLY). */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/config.h"
#include "engine/proto.h"
#include "sandbox/sandbox.h"
#include "sandbox/zygote.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* A zygote's sandbox starts here, in place of main: its environment and fds are the job's. */
static int engine_entry(int argc, char **argv, void *arg)
{
	struct fl_err err = { 0 };
	if (fl_config_setup_logging(&err)) {
		fprintf(stderr, "flowd engine: %s\n", err.msg);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	return eng_proto_serve(stdin, stdout);
}

int cmd_engine(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--zygote"))
		return sb_zygote_serve(3, engine_entry, NULL) ? 1 : 0;
	int code_only = argc == 2 && !strcmp(argv[1], "--code-only");
	if (argc > 1 && !code_only) {
		fprintf(stderr, "flowd engine: unexpected argument '%s'\n"
				"usage: flowd engine [--zygote|--code-only]   (spoken to over pipes by "
				"the worker)\n",
			argv[1]);
		return 2;
	}
	pid_t worker = getppid();
	struct fl_err err = { 0 };
	if (fl_config_setup_logging(&err)) {
		fprintf(stderr, "flowd engine: %s\n", err.msg);
		return 2;
	}
	/* SANDBOX_CODE_ONLY: seccomp, no_new_privs, rlimits and no root, before any user code (and
	 * before the JavaScript VM exists, whose threads then inherit the filter). */
	if (code_only) {
		struct sb_code_only_opts co;
		sb_code_only_opts_init(&co);
		/* RLIMIT_NPROC counts every thread of the uid, and the engines of all slots share
		 * it; the filter already forbids new processes, so this only bounds threads. */
		co.limits.procs = 4096;
		if (sb_code_only_enter(&co, &err)) {
			fprintf(stderr, "flowd engine: cannot enter the code-only sandbox: %s\n", err.msg);
			return 1;
		}
	}
	/* A worker that goes away takes its engine with it; a closed pipe is then an error to
	 * handle, not a signal. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Dropping root above cleared the death signal the worker set before exec: a worker that
	 * died before it was set again would have left us running. */
	if (getppid() != worker)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	return eng_proto_serve(stdin, stdout);
}
