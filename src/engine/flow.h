/* The flow model: parses and validates a flow version in Activepieces' JSON shape
 * (shared/FLOWS.md §1) into a tree of steps that the walker (engine/engine.h) runs. The app uses
 * the same parser to validate pushed flows, so every error names the JSON path of what is wrong:
 * `trigger.nextAction.settings.items: expected a string`. */
#ifndef ENG_FLOW_H
#define ENG_FLOW_H

#include <jansson.h>
#include <stddef.h>

struct fl_err;

enum eng_step_type {
	ENG_STEP_TRIGGER, /* "PIECE_TRIGGER" */
	ENG_STEP_CODE,
	ENG_STEP_PIECE,
	ENG_STEP_LOOP,   /* "LOOP_ON_ITEMS" */
	ENG_STEP_ROUTER,
};

struct eng_branch {
	const char *name;
	int fallback;             /* branchType FALLBACK */
	const json_t *conditions; /* array of AND-groups (arrays of conditions); never NULL */
};

/* One step. Every pointer borrows from the flow's JSON document and lives as long as the flow. */
struct eng_step {
	enum eng_step_type type;
	const char *name;
	const char *display_name; /* the name when the flow gives none */
	int skip;
	const json_t *settings;

	/* TRIGGER and PIECE */
	const char *piece_name;
	const char *piece_version;  /* "" when absent */
	const char *action_name;    /* triggerName for the trigger */
	const json_t *input;        /* settings.input, {} when absent; CODE too */

	/* CODE */
	const char *code;
	int has_dependencies;       /* packageJson lists dependencies: not supported */

	/* CODE and PIECE */
	int continue_on_failure;
	int retry_on_failure;

	/* LOOP_ON_ITEMS */
	const char *items;
	struct eng_step *body;      /* firstLoopAction; NULL for an empty body */

	/* ROUTER */
	int execute_all;            /* EXECUTE_ALL_MATCH */
	size_t n_branches;
	struct eng_branch *branches;
	struct eng_step **children; /* n_branches entries, NULL for a branch that does nothing */

	struct eng_step *next;      /* nextAction */
	struct eng_step *parent;    /* the enclosing loop or router; NULL at the top level */
};

struct eng_flow {
	json_t *version;          /* the flow version (unwrapped from an export); owned */
	const char *display_name; /* "" when absent */
	struct eng_step *trigger;
	size_t n_steps;           /* trigger included */
};

enum {
	/* Accept a flow whose trigger is EMPTY (a draft): the app may store it; nothing runs it. */
	ENG_FLOW_ALLOW_EMPTY = 1 << 0,
};

/* Parses doc, which is a flow version, an export {"name","flows":[version, ...]} (the first is
 * taken) or {"name","template":version}. On success *out is a new flow that holds a reference to
 * the version and borrows from it: doc must not be modified while the flow lives. Returns 0, or
 * FL_EINVAL with err set to "<json path>: <problem>". An EMPTY trigger is an error unless flags
 * has ENG_FLOW_ALLOW_EMPTY. The app stores flow->version, the unwrapped flow version. */
int eng_flow_parse(const json_t *doc, int flags, struct eng_flow **out, struct fl_err *err);

/* Loads and parses the file path. Errors name the file: "'flow.json': 3:14: ..." for bad JSON,
 * "'flow.json': trigger.settings: expected an object" for a schema error. */
int eng_flow_load_file(const char *path, int flags, struct eng_flow **out, struct fl_err *err);

void eng_flow_free(struct eng_flow *flow);

/* The step called name, or NULL. */
struct eng_step *eng_flow_find_step(const struct eng_flow *flow, const char *name);

/* "PIECE_TRIGGER", "CODE", "PIECE", "LOOP_ON_ITEMS", "ROUTER": the step's type as the flow
 * JSON and run results spell it. */
const char *eng_step_type_name(enum eng_step_type type);

/* True when the router condition operator op is one that flowd knows (FLOWS.md §3). */
int eng_flow_known_operator(const char *op);

#endif
