/* `flowd engine`: the engine process a worker starts for its jobs. It speaks the pipe protocol
 * of engine/proto.h on stdin and stdout, and logs to stderr. `flowd engine --zygote` is the
 * sandbox zygote (sandbox/zygote.h): started once by a worker with the control socket on fd 3,
 * it forks each sandboxed engine from itself, JavaScriptCore already loaded. */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/config.h"
#include "engine/proto.h"
#include "sandbox/zygote.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

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
	if (argc > 1) {
		fprintf(stderr, "flowd engine: unexpected argument '%s'\n"
				"usage: flowd engine [--zygote]   (spoken to over pipes by the worker)\n",
			argv[1]);
		return 2;
	}
	struct fl_err err = { 0 };
	if (fl_config_setup_logging(&err)) {
		fprintf(stderr, "flowd engine: %s\n", err.msg);
		return 2;
	}
	/* A worker that goes away takes its engine with it; a closed pipe is then an error to
	 * handle, not a signal. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	return eng_proto_serve(stdin, stdout);
}
