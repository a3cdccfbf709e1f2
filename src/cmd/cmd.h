/* Subcommands of the flowd binary. Each cmd_* parses its options into a config struct and calls
 * library code; no logic lives here. argv[0] is the subcommand's name. Each returns the process
 * exit code. */
#ifndef CMD_H
#define CMD_H

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary; /* one line for `flowd help` */
	const char *usage;   /* full text for `flowd help NAME` and `flowd NAME --help` */
};

/* Terminated by an entry whose name is NULL. */
extern const struct cmd cmd_table[];

const struct cmd *cmd_find(const char *name);
/* Prints usage of one command (or of flowd when c is NULL) to stdout. */
void cmd_print_usage(const struct cmd *c);
/* True when argv holds -h or --help before any "--". */
int cmd_wants_help(int argc, char **argv);

int cmd_help(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_engine(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_queue(int argc, char **argv);
int cmd_app(int argc, char **argv);
int cmd_flows(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);

#endif
