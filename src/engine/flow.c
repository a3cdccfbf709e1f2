/* Flow parsing and validation: see flow.h. The parser walks the JSON once, building the step tree
 * and a flat list of steps (for name checks and lookup), with the JSON path of the value at hand
 * kept in a buffer so that any error can say exactly where it is. */
#include "engine/flow.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"

#include <string.h>

struct flow_impl {
	struct eng_flow pub;
	struct eng_step **all;
	size_t cap;
	json_t *empty_object; /* what an absent input points at */
	json_t *empty_array;  /* what a FALLBACK branch without conditions points at */
	json_t *names;        /* step name → true, to find duplicates */
};

struct parser {
	struct flow_impl *flow;
	struct fl_buf path;
	int flags;
	struct fl_err *err;
};

static const char *const operators[] = {
	"TEXT_CONTAINS", "TEXT_DOES_NOT_CONTAIN", "TEXT_EXACTLY_MATCHES",
	"TEXT_DOES_NOT_EXACTLY_MATCH", "TEXT_START_WITH", "TEXT_DOES_NOT_START_WITH",
	"TEXT_ENDS_WITH", "TEXT_DOES_NOT_END_WITH", "NUMBER_IS_GREATER_THAN", "NUMBER_IS_LESS_THAN",
	"NUMBER_IS_EQUAL_TO", "BOOLEAN_IS_TRUE", "BOOLEAN_IS_FALSE", "DATE_IS_BEFORE",
	"DATE_IS_EQUAL", "DATE_IS_AFTER", "LIST_CONTAINS", "LIST_DOES_NOT_CONTAIN", "LIST_IS_EMPTY",
	"LIST_IS_NOT_EMPTY", "EXISTS", "DOES_NOT_EXIST", NULL,
};

int eng_flow_known_operator(const char *op)
{
	for (int i = 0; operators[i]; i++)
		if (!strcmp(operators[i], op))
			return 1;
	return 0;
}

const char *eng_step_type_name(enum eng_step_type type)
{
	switch (type) {
	case ENG_STEP_TRIGGER: return "PIECE_TRIGGER";
	case ENG_STEP_CODE: return "CODE";
	case ENG_STEP_PIECE: return "PIECE";
	case ENG_STEP_LOOP: return "LOOP_ON_ITEMS";
	case ENG_STEP_ROUTER: return "ROUTER";
	}
	return "UNKNOWN";
}

/* Path helpers: push returns the old length, to restore with pop. */
static size_t push_key(struct parser *p, const char *key)
{
	size_t old = p->path.len;
	if (old)
		fl_buf_addch(&p->path, '.');
	fl_buf_adds(&p->path, key);
	return old;
}

static size_t push_index(struct parser *p, size_t i)
{
	size_t old = p->path.len;
	fl_buf_addf(&p->path, "[%zu]", i);
	return old;
}

static void pop(struct parser *p, size_t old)
{
	p->path.len = old;
	p->path.data[old] = '\0';
}

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *p, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* A very deep path keeps its tail, which says where, and leaves room for the problem. */
	const char *path = p->path.len ? p->path.data : "(root)";
	size_t len = strlen(path);
	const char *cut = len > 300 ? "..." : "";
	return fl_err_set(p->err, FL_EINVAL, "%s%s: %s", cut, len > 300 ? path + len - 297 : path,
			  msg);
}

static int fail_type(struct parser *p, const char *want, const json_t *got)
{
	return fail(p, "expected %s, got %s", want, got ? fl_json_type_name(got) : "nothing");
}

/* Looks up key in obj. Sets *out (NULL when absent or null and !required). */
static int get_field(struct parser *p, const json_t *obj, const char *key, json_type type,
		     int required, const json_t **out)
{
	const json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		size_t old = push_key(p, key);
		int rc = fail(p, "is required");
		pop(p, old);
		return rc;
	}
	int ok = type == JSON_TRUE ? json_is_boolean(v) : json_typeof(v) == type;
	if (!ok) {
		static const char *names[] = {
			[JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array",
			[JSON_STRING] = "a string", [JSON_INTEGER] = "an integer",
			[JSON_REAL] = "a number", [JSON_TRUE] = "a boolean",
		};
		size_t old = push_key(p, key);
		int rc = fail_type(p, names[type], v);
		pop(p, old);
		return rc;
	}
	*out = v;
	return 0;
}

static int get_string(struct parser *p, const json_t *obj, const char *key, int required,
		      const char **out)
{
	const json_t *v;
	int rc = get_field(p, obj, key, JSON_STRING, required, &v);
	*out = v ? json_string_value(v) : NULL;
	return rc;
}

static int get_bool(struct parser *p, const json_t *obj, const char *key, int *out)
{
	const json_t *v;
	int rc = get_field(p, obj, key, JSON_TRUE, 0, &v);
	*out = v ? json_is_true(v) : 0;
	return rc;
}

static struct eng_step *new_step(struct parser *p)
{
	struct flow_impl *f = p->flow;
	if (f->pub.n_steps == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 16;
		f->all = fl_realloc(f->all, f->cap * sizeof *f->all);
	}
	struct eng_step *s = fl_calloc(1, sizeof *s);
	f->all[f->pub.n_steps++] = s;
	return s;
}

static int parse_action_chain(struct parser *p, const json_t *v, struct eng_step *parent,
			      struct eng_step **out, int depth);

static const json_t *empty_object(struct parser *p)
{
	return p->flow->empty_object;
}

static int parse_error_handling(struct parser *p, const json_t *settings, struct eng_step *s)
{
	const json_t *eh;
	int rc = get_field(p, settings, "errorHandlingOptions", JSON_OBJECT, 0, &eh);
	if (rc || !eh)
		return rc;
	size_t old = push_key(p, "errorHandlingOptions");
	static const char *const keys[] = { "continueOnFailure", "retryOnFailure" };
	int *dst[] = { &s->continue_on_failure, &s->retry_on_failure };
	for (int i = 0; i < 2 && !rc; i++) {
		const json_t *o;
		rc = get_field(p, eh, keys[i], JSON_OBJECT, 0, &o);
		if (!rc && o) {
			size_t o2 = push_key(p, keys[i]);
			rc = get_bool(p, o, "value", dst[i]);
			pop(p, o2);
		}
	}
	pop(p, old);
	return rc;
}

static int parse_piece_settings(struct parser *p, const json_t *settings, struct eng_step *s,
				const char *action_key)
{
	int rc = get_string(p, settings, "pieceName", 1, &s->piece_name);
	if (!rc)
		rc = get_string(p, settings, "pieceVersion", 0, &s->piece_version);
	if (!rc)
		rc = get_string(p, settings, action_key, 1, &s->action_name);
	if (!rc) {
		const json_t *in;
		rc = get_field(p, settings, "input", JSON_OBJECT, 0, &in);
		s->input = in ? in : empty_object(p);
	}
	if (!s->piece_version)
		s->piece_version = "";
	return rc;
}

static int parse_code_settings(struct parser *p, const json_t *settings, struct eng_step *s)
{
	const json_t *src, *in;
	int rc = get_field(p, settings, "sourceCode", JSON_OBJECT, 1, &src);
	if (rc)
		return rc;
	size_t old = push_key(p, "sourceCode");
	rc = get_string(p, src, "code", 1, &s->code);
	/* packageJson is a JSON text; dependencies in it make the step fail when it runs. */
	const char *pkg = NULL;
	if (!rc)
		rc = get_string(p, src, "packageJson", 0, &pkg);
	pop(p, old);
	if (rc)
		return rc;
	if (pkg && *pkg) {
		json_t *pj = json_loads(pkg, 0, NULL);
		json_t *deps = pj ? json_object_get(pj, "dependencies") : NULL;
		s->has_dependencies = deps && json_is_object(deps) && json_object_size(deps) > 0;
		json_decref(pj);
	}
	rc = get_field(p, settings, "input", JSON_OBJECT, 0, &in);
	s->input = in ? in : empty_object(p);
	return rc;
}

static int parse_condition(struct parser *p, const json_t *c)
{
	if (!json_is_object(c))
		return fail_type(p, "an object", c);
	const char *op;
	int rc = get_string(p, c, "operator", 1, &op);
	if (rc)
		return rc;
	if (!eng_flow_known_operator(op)) {
		size_t old = push_key(p, "operator");
		rc = fail(p, "unknown operator '%s'", op);
		pop(p, old);
		return rc;
	}
	int cs;
	return get_bool(p, c, "caseSensitive", &cs);
}

static int parse_branch(struct parser *p, const json_t *b, struct eng_branch *out)
{
	if (!json_is_object(b))
		return fail_type(p, "an object", b);
	const char *type;
	int rc = get_string(p, b, "branchName", 1, &out->name);
	if (!rc)
		rc = get_string(p, b, "branchType", 1, &type);
	if (rc)
		return rc;
	if (!strcmp(type, "FALLBACK")) {
		out->fallback = 1;
	} else if (strcmp(type, "CONDITION")) {
		size_t old = push_key(p, "branchType");
		rc = fail(p, "expected CONDITION or FALLBACK, got '%s'", type);
		pop(p, old);
		return rc;
	}
	const json_t *conds;
	rc = get_field(p, b, "conditions", JSON_ARRAY, !out->fallback, &conds);
	if (rc)
		return rc;
	if (!conds) {
		out->conditions = p->flow->empty_array;
		return 0;
	}
	out->conditions = conds;
	size_t old = push_key(p, "conditions");
	size_t i, j;
	const json_t *group, *c;
	json_array_foreach(conds, i, group)
	{
		size_t o1 = push_index(p, i);
		if (!json_is_array(group)) {
			rc = fail_type(p, "an array", group);
		} else {
			json_array_foreach(group, j, c)
			{
				size_t o2 = push_index(p, j);
				rc = parse_condition(p, c);
				pop(p, o2);
				if (rc)
					break;
			}
		}
		pop(p, o1);
		if (rc)
			break;
	}
	pop(p, old);
	return rc;
}

static int parse_router_settings(struct parser *p, const json_t *settings, struct eng_step *s)
{
	const char *exec;
	int rc = get_string(p, settings, "executionType", 1, &exec);
	if (rc)
		return rc;
	if (!strcmp(exec, "EXECUTE_ALL_MATCH")) {
		s->execute_all = 1;
	} else if (strcmp(exec, "EXECUTE_FIRST_MATCH")) {
		size_t old = push_key(p, "executionType");
		rc = fail(p, "expected EXECUTE_FIRST_MATCH or EXECUTE_ALL_MATCH, got '%s'", exec);
		pop(p, old);
		return rc;
	}
	const json_t *branches;
	rc = get_field(p, settings, "branches", JSON_ARRAY, 1, &branches);
	if (rc)
		return rc;
	s->n_branches = json_array_size(branches);
	s->branches = fl_calloc(s->n_branches ? s->n_branches : 1, sizeof *s->branches);
	s->children = fl_calloc(s->n_branches ? s->n_branches : 1, sizeof *s->children);
	size_t old = push_key(p, "branches");
	for (size_t i = 0; i < s->n_branches && !rc; i++) {
		size_t o = push_index(p, i);
		rc = parse_branch(p, json_array_get(branches, i), &s->branches[i]);
		pop(p, o);
	}
	pop(p, old);
	if (rc)
		return rc;

	return rc;
}

/* children sits next to settings, on the action itself: one action (or null) per branch. */
static int parse_router_children(struct parser *p, const json_t *action, struct eng_step *s,
				 int depth)
{
	const json_t *children;
	int rc = get_field(p, action, "children", JSON_ARRAY, 0, &children);
	if (rc || !children)
		return rc;
	size_t old = push_key(p, "children");
	if (json_array_size(children) != s->n_branches)
		rc = fail(p, "expected %zu entries, one per branch, got %zu", s->n_branches,
			  json_array_size(children));
	for (size_t i = 0; i < s->n_branches && !rc; i++) {
		size_t o = push_index(p, i);
		rc = parse_action_chain(p, json_array_get(children, i), s, &s->children[i],
					depth + 1);
		pop(p, o);
	}
	pop(p, old);
	return rc;
}

/* Parses one action (p->path points at it), without its nextAction. */
static int parse_action(struct parser *p, const json_t *v, struct eng_step *parent,
			struct eng_step **out, int depth)
{
	if (!json_is_object(v))
		return fail_type(p, "an object (an action)", v);
	struct eng_step *s = new_step(p);
	*out = s;
	s->parent = parent;
	const char *type;
	int rc = get_string(p, v, "name", 1, &s->name);
	if (!rc)
		rc = get_string(p, v, "type", 1, &type);
	if (!rc)
		rc = get_string(p, v, "displayName", 0, &s->display_name);
	if (!rc)
		rc = get_bool(p, v, "skip", &s->skip);
	if (rc)
		return rc;
	if (!*s->name) {
		size_t old = push_key(p, "name");
		rc = fail(p, "must not be empty");
		pop(p, old);
		return rc;
	}
	if (!s->display_name)
		s->display_name = s->name;
	if (!strcmp(type, "CODE"))
		s->type = ENG_STEP_CODE;
	else if (!strcmp(type, "PIECE"))
		s->type = ENG_STEP_PIECE;
	else if (!strcmp(type, "LOOP_ON_ITEMS"))
		s->type = ENG_STEP_LOOP;
	else if (!strcmp(type, "ROUTER"))
		s->type = ENG_STEP_ROUTER;
	else {
		size_t old = push_key(p, "type");
		rc = fail(p, "expected CODE, PIECE, LOOP_ON_ITEMS or ROUTER, got '%s'", type);
		pop(p, old);
		return rc;
	}

	const json_t *settings;
	rc = get_field(p, v, "settings", JSON_OBJECT, 1, &settings);
	if (rc)
		return rc;
	s->settings = settings;
	size_t old = push_key(p, "settings");
	switch (s->type) {
	case ENG_STEP_CODE:
		rc = parse_code_settings(p, settings, s);
		if (!rc)
			rc = parse_error_handling(p, settings, s);
		break;
	case ENG_STEP_PIECE:
		rc = parse_piece_settings(p, settings, s, "actionName");
		if (!rc)
			rc = parse_error_handling(p, settings, s);
		break;
	case ENG_STEP_LOOP:
		rc = get_string(p, settings, "items", 1, &s->items);
		break;
	case ENG_STEP_ROUTER:
		rc = parse_router_settings(p, settings, s);
		break;
	case ENG_STEP_TRIGGER:
		break;
	}
	pop(p, old);
	if (rc)
		return rc;
	if (s->type == ENG_STEP_ROUTER)
		rc = parse_router_children(p, v, s, depth);
	if (s->type == ENG_STEP_LOOP) {
		const json_t *body = json_object_get(v, "firstLoopAction");
		if (body && !json_is_null(body)) {
			old = push_key(p, "firstLoopAction");
			rc = parse_action_chain(p, body, s, &s->body, depth + 1);
			pop(p, old);
		}
	}
	return rc;
}

/* Parses v and every nextAction after it, iteratively so that a long chain costs no stack. */
static int parse_action_chain(struct parser *p, const json_t *v, struct eng_step *parent,
			      struct eng_step **out, int depth)
{
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (depth > 64)
		return fail(p, "steps are nested more than 64 levels deep");
	size_t start = p->path.len;
	struct eng_step **link = out;
	int rc = 0;
	while (v && !json_is_null(v)) {
		rc = parse_action(p, v, parent, link, depth);
		if (rc)
			break;
		link = &(*link)->next;
		v = json_object_get(v, "nextAction");
		if (v && !json_is_null(v))
			push_key(p, "nextAction");
	}
	if (!rc)
		pop(p, start);
	return rc;
}

static int parse_trigger(struct parser *p, const json_t *version)
{
	const json_t *t;
	int rc = get_field(p, version, "trigger", JSON_OBJECT, 1, &t);
	if (rc)
		return rc;
	size_t old = push_key(p, "trigger");
	struct eng_step *s = new_step(p);
	s->type = ENG_STEP_TRIGGER;
	p->flow->pub.trigger = s;
	const char *type;
	rc = get_string(p, t, "name", 1, &s->name);
	if (!rc)
		rc = get_string(p, t, "type", 1, &type);
	if (!rc)
		rc = get_string(p, t, "displayName", 0, &s->display_name);
	if (rc)
		return rc;
	if (!s->display_name)
		s->display_name = s->name;
	if (!strcmp(type, "EMPTY")) {
		if (!(p->flags & ENG_FLOW_ALLOW_EMPTY))
			return fail(p, "the trigger is EMPTY: the flow is unfinished and cannot run; "
				       "choose a trigger first");
		s->piece_name = s->piece_version = s->action_name = "";
		s->input = empty_object(p);
	} else if (!strcmp(type, "PIECE_TRIGGER")) {
		const json_t *settings;
		rc = get_field(p, t, "settings", JSON_OBJECT, 1, &settings);
		if (rc)
			return rc;
		s->settings = settings;
		size_t o = push_key(p, "settings");
		rc = parse_piece_settings(p, settings, s, "triggerName");
		pop(p, o);
		if (rc)
			return rc;
	} else {
		size_t o = push_key(p, "type");
		rc = fail(p, "expected PIECE_TRIGGER or EMPTY, got '%s'", type);
		pop(p, o);
		return rc;
	}
	const json_t *next = json_object_get(t, "nextAction");
	if (next && !json_is_null(next)) {
		push_key(p, "nextAction");
		rc = parse_action_chain(p, next, NULL, &s->next, 0);
		if (rc)
			return rc;
	}
	pop(p, old);
	return 0;
}

/* The path of the step in the tree, rebuilt for an error about that step (duplicates are found
 * after the walk, when the parser's path has moved on). */
static void step_path(struct fl_buf *b, const struct eng_flow *f, const struct eng_step *target);

static int find_path(struct fl_buf *b, const struct eng_step *s, const struct eng_step *target)
{
	for (; s; s = s->next) {
		if (s == target)
			return 1;
		size_t old = b->len;
		if (s->body) {
			fl_buf_adds(b, ".firstLoopAction");
			if (find_path(b, s->body, target))
				return 1;
			b->len = old;
		}
		for (size_t i = 0; i < s->n_branches; i++) {
			fl_buf_addf(b, ".children[%zu]", i);
			if (find_path(b, s->children[i], target))
				return 1;
			b->len = old;
		}
		fl_buf_adds(b, ".nextAction");
	}
	return 0;
}

static void step_path(struct fl_buf *b, const struct eng_flow *f, const struct eng_step *target)
{
	fl_buf_adds(b, "trigger");
	if (target == f->trigger)
		return;
	fl_buf_adds(b, ".nextAction");
	if (!find_path(b, f->trigger->next, target))
		fl_buf_reset(b);
	b->data[b->len] = '\0';
}

static int check_names(struct parser *p)
{
	struct eng_flow *f = &p->flow->pub;
	for (size_t i = 0; i < f->n_steps; i++) {
		const char *name = p->flow->all[i]->name;
		if (!json_object_get(p->flow->names, name)) {
			json_object_set_new(p->flow->names, name, json_true());
			continue;
		}
		fl_buf_reset(&p->path);
		step_path(&p->path, f, p->flow->all[i]);
		fl_buf_adds(&p->path, ".name");
		return fail(p, "duplicate step name '%s'", name);
	}
	return 0;
}

/* Finds the flow version inside doc, with the path prefix errors should carry. */
static int unwrap(struct parser *p, const json_t *doc, const json_t **version)
{
	if (!json_is_object(doc))
		return fail_type(p, "an object (a flow version or an export)", doc);
	const json_t *flows = json_object_get(doc, "flows");
	const json_t *tmpl = json_object_get(doc, "template");
	if (!json_object_get(doc, "trigger") && flows) {
		if (!json_is_array(flows)) {
			push_key(p, "flows");
			return fail_type(p, "an array", flows);
		}
		if (!json_array_size(flows)) {
			push_key(p, "flows");
			return fail(p, "the export holds no flow");
		}
		push_key(p, "flows");
		push_index(p, 0);
		*version = json_array_get(flows, 0);
	} else if (!json_object_get(doc, "trigger") && tmpl) {
		push_key(p, "template");
		*version = tmpl;
	} else {
		*version = doc;
	}
	if (!json_is_object(*version))
		return fail_type(p, "an object (a flow version)", *version);
	return 0;
}

int eng_flow_parse(const json_t *doc, int flags, struct eng_flow **out, struct fl_err *err)
{
	*out = NULL;
	struct flow_impl *f = fl_calloc(1, sizeof *f);
	f->empty_object = json_object();
	f->empty_array = json_array();
	f->names = json_object();
	struct parser p = { .flow = f, .path = FL_BUF_INIT, .flags = flags, .err = err };
	const json_t *version = NULL;
	int rc = unwrap(&p, doc, &version);
	if (!rc) {
		f->pub.version = json_incref((json_t *)version);
		const char *dn;
		rc = get_string(&p, f->pub.version, "displayName", 0, &dn);
		f->pub.display_name = dn ? dn : "";
	}
	if (!rc)
		rc = parse_trigger(&p, f->pub.version);
	if (!rc)
		rc = check_names(&p);
	fl_buf_release(&p.path);
	if (rc) {
		eng_flow_free(&f->pub);
		return rc;
	}
	*out = &f->pub;
	return 0;
}

int eng_flow_load_file(const char *path, int flags, struct eng_flow **out, struct fl_err *err)
{
	*out = NULL;
	json_t *doc = fl_json_load_file(path, err);
	if (!doc)
		return err ? err->code : FL_EINVAL;
	int rc = eng_flow_parse(doc, flags, out, err);
	json_decref(doc);
	if (rc)
		fl_err_prefix(err, "'%s'", path);
	return rc;
}

void eng_flow_free(struct eng_flow *flow)
{
	if (!flow)
		return;
	struct flow_impl *f = (struct flow_impl *)flow;
	for (size_t i = 0; i < flow->n_steps; i++) {
		fl_free(f->all[i]->branches);
		fl_free(f->all[i]->children);
		fl_free(f->all[i]);
	}
	fl_free(f->all);
	json_decref(f->empty_object);
	json_decref(f->empty_array);
	json_decref(f->names);
	json_decref(flow->version);
	fl_free(f);
}

struct eng_step *eng_flow_find_step(const struct eng_flow *flow, const char *name)
{
	const struct flow_impl *f = (const struct flow_impl *)flow;
	for (size_t i = 0; i < flow->n_steps; i++)
		if (!strcmp(f->all[i]->name, name))
			return f->all[i];
	return NULL;
}
