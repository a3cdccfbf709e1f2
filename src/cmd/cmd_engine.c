/* `flowd engine`: the engine process a worker starts for its jobs. It speaks the pipe protocol
 * of engine/proto.h on stdin and stdout, and logs to stderr. */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/config.h"
#include "engine/proto.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>

int cmd_engine(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "flowd engine: unexpected argument '%s'\n"
				"usage: flowd engine   (spoken to over pipes by the worker)\n",
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
