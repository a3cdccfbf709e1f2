/* Internals shared by js.c (runtime, contexts, values, expressions) and js_code.c (CODE steps:
 * the event loop, timers, fetch, console and the other globals a step gets). */
#ifndef ENG_JS_INT_H
#define ENG_JS_INT_H

#include "engine/js.h"

#include <JavaScriptCore/JavaScript.h>
#include <stdbool.h>

struct fl_buf;

/* JavaScriptCore exports these but declares them only in JSContextRefPrivate.h, which the
 * Debian package does not ship. The declarations match WebKit's. */
typedef bool (*JSShouldTerminateCallback)(JSContextRef ctx, void *context);
void JSContextGroupSetExecutionTimeLimit(JSContextGroupRef group, double limit,
					 JSShouldTerminateCallback callback, void *context);
void JSContextGroupClearExecutionTimeLimit(JSContextGroupRef group);
void JSLock(JSContextRef ctx);
void JSUnlock(JSContextRef ctx);
void JSGlobalContextSetUnhandledRejectionCallback(JSGlobalContextRef ctx, JSObjectRef function,
						  JSValueRef *exception);

struct js_runtime {
	JSContextGroupRef group;
	JSClassRef scope_class;   /* global object of expression contexts */
	JSClassRef code_class;    /* global object of code-step contexts */
	int64_t time_limit_ms;
	int64_t code_wall_limit_ms;
	const struct net_policy *policy;
	/* Set by the watchdog callback when it stopped a script. Cleared before each entry. */
	bool terminated;
	/* JSC::VM::drainMicrotasks(), looked up at run time; NULL when this JavaScriptCore does
	 * not export it, and then promise jobs run only when a call returns to the top level. */
	void (*drain)(void *vm);
	struct js_nested_eval *nested_eval; /* the evaluation js_eval_script is running */
	/* A context that lives as long as the runtime, holding the unhandled-rejection handler
	 * every code step's context points to (js_code.c). */
	JSGlobalContextRef host_ctx;
	struct js_global *host_global;
	JSObjectRef rejection_handler;
	struct js_code_run *current_run;
	JSGlobalContextRef spare_code_ctx; /* js_prepare_code_context; NULL when none waits */
};

/* A scope name bound lazily on first use in one context. */
struct js_binding {
	const char *name;         /* borrowed from the scope object's key */
	JSValueRef value;         /* protected while the context lives */
};

/* What a global object created with scope_class or code_class carries as private data. */
struct js_global {
	struct js_runtime *rt;
	const json_t *scope;      /* borrowed; NULL for code steps */
	struct js_binding *bindings;
	size_t n_bindings, cap_bindings;
	JSValueRef helpers;       /* flattenNestedKeys, created on first use; protected */
	struct js_code_run *run;  /* set for code steps */
};

/* Creates the VM and the classes if that has not happened yet. */
void js_start(struct js_runtime *rt);
/* Runs before every top-level entry into the VM. */
void js_enter(struct js_runtime *rt);
/* After a top-level entry: if the watchdog stopped a script, clears what JavaScriptCore
 * leaves pending (a termination raised inside a microtask surfaces at the next entry) and
 * returns true. */
bool js_leave_terminated(struct js_runtime *rt, JSContextRef ctx);

/* Runs the promise jobs queued so far, inside the current VM entry (rt->drain must be set). */
void js_drain(struct js_runtime *rt, JSContextRef ctx);

/* Conversion between jansson and JavaScript values. js_from_json never fails. js_to_json
 * returns 0 with *out NULL for undefined, functions and symbols, or FL_EJS (with the JS error
 * text in err) when the value cannot be written as JSON (a cycle, a BigInt). */
JSValueRef js_from_json(JSContextRef ctx, const json_t *v);
int js_to_json(JSContextRef ctx, JSValueRef v, json_t **out, struct fl_err *err);

/* A JS string as a heap UTF-8 string (fl_free); *len may be NULL. */
char *js_string_utf8(JSStringRef s, size_t *len);
/* A JS string from len bytes of UTF-8 that may hold NULs or invalid sequences (each invalid
 * byte becomes U+FFFD, as TextDecoder does). */
JSValueRef js_string_from_utf8(JSContextRef ctx, const char *s, size_t len);
/* String(v) as heap UTF-8; never fails (an exception in toString gives "[object]"). */
char *js_value_utf8(JSContextRef ctx, JSValueRef v, size_t *len);
/* The text of a thrown value: "Error: message" for errors, String(value) otherwise. */
void js_exception_text(JSContextRef ctx, JSValueRef exc, struct fl_buf *out);

/* Evaluates source (len bytes) in ctx as a top-level script. Returns 0 with *result set,
 * FL_EJS with err set to the exception text, or FL_ETIMEOUT. */
int js_eval_script(struct js_runtime *rt, JSContextRef ctx, const char *source, size_t len,
		   JSValueRef *result, struct fl_err *err);

/* Creates the code-step global class (js_code.c). */
JSClassRef js_code_class_create(void);
/* Releases what js_code.c keeps per runtime. */
void js_code_runtime_release(struct js_runtime *rt);

#endif
