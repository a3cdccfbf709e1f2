/* The JavaScriptCore runtime: one context group (one VM) per engine process with a watchdog
 * for runaway scripts, fresh global contexts for every session, lazy binding of step outputs,
 * and the conversions between jansson values and JavaScript values. CODE steps live in
 * js_code.c. */
#include "engine/js_int.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"

#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIME_LIMIT_MS 10000
#define DEFAULT_CODE_WALL_LIMIT_MS 600000

/* The watchdog calls this on the engine's thread once a script has used its CPU time. */
static bool on_time_limit(JSContextRef ctx, void *data)
{
	struct js_runtime *rt = data;
	rt->terminated = true;
	return true;
}

static JSValueRef scope_get_property(JSContextRef ctx, JSObjectRef object, JSStringRef name,
				     JSValueRef *exception);

struct js_runtime *js_runtime_new(const struct js_runtime_opts *opts)
{
	struct js_runtime *rt = fl_calloc(1, sizeof *rt);
	rt->time_limit_ms = opts && opts->time_limit_ms > 0 ? opts->time_limit_ms
							    : DEFAULT_TIME_LIMIT_MS;
	rt->code_wall_limit_ms = opts && opts->code_wall_limit_ms > 0
					 ? opts->code_wall_limit_ms
					 : DEFAULT_CODE_WALL_LIMIT_MS;
	rt->policy = opts ? opts->policy : NULL;
	return rt;
}

/* The VM is created on first use: loading JavaScriptCore's VM costs milliseconds and starts
 * its threads, which a flow whose templates are all plain paths never needs. */
void js_start(struct js_runtime *rt)
{
	if (rt->group)
		return;
	/* JavaScriptCore stops JIT code for the watchdog by default through a SIGSEGV handler of
	 * its own, which breaks as soon as anything else installs one after it (ASan, a test
	 * harness, a crash reporter): a stopped script then crashes the process. Polling traps
	 * cost one check per loop iteration and need no signal. Options are read once, when the
	 * first VM is created; an explicit setting in the environment wins. */
	setenv("JSC_usePollingTraps", "true", 0);
	rt->group = JSContextGroupCreate();
	/* A JSContextGroupRef is the VM itself (JavaScriptCore's APICast.h), so the exported
	 * C++ member function can be called with it as `this`. FLOWD_JS_TOP_LEVEL_JOBS=1 turns
	 * this off, to test the fallback. */
	const char *off = getenv("FLOWD_JS_TOP_LEVEL_JOBS");
	if (!off || strcmp(off, "1") != 0)
		rt->drain = (void (*)(void *))dlsym(RTLD_DEFAULT, "_ZN3JSC2VM15drainMicrotasksEv");
	JSContextGroupSetExecutionTimeLimit(rt->group, (double)rt->time_limit_ms / 1000.0,
					    on_time_limit, rt);

	JSClassDefinition def = kJSClassDefinitionEmpty;
	def.className = "global";
	def.getProperty = scope_get_property;
	rt->scope_class = JSClassCreate(&def);
	rt->code_class = js_code_class_create();
}

void js_runtime_free(struct js_runtime *rt)
{
	if (!rt)
		return;
	if (rt->group) {
		js_code_runtime_release(rt);
		JSClassRelease(rt->scope_class);
		JSClassRelease(rt->code_class);
		JSContextGroupRelease(rt->group);
	}
	fl_free(rt);
}

void js_enter(struct js_runtime *rt)
{
	rt->terminated = false;
}

bool js_leave_terminated(struct js_runtime *rt, JSContextRef ctx)
{
	if (!rt->terminated)
		return false;
	/* A termination raised while JavaScriptCore drained microtasks is not reported to the
	 * call that was running; it is thrown at the next entry instead. Take it here, so that
	 * the next script starts clean. */
	JSStringRef zero = JSStringCreateWithUTF8CString("0");
	for (int i = 0; i < 2; i++) {
		JSValueRef exc = NULL;
		rt->terminated = false;
		JSEvaluateScript(ctx, zero, NULL, NULL, 1, &exc);
		if (!exc)
			break;
	}
	JSStringRelease(zero);
	rt->terminated = false;
	return true;
}

/* ---- strings and values ---- */

char *js_string_utf8(JSStringRef s, size_t *len)
{
	size_t max = JSStringGetMaximumUTF8CStringSize(s);
	char *buf = fl_malloc(max);
	size_t n = JSStringGetUTF8CString(s, buf, max); /* counts the NUL */
	if (len)
		*len = n ? n - 1 : 0;
	return buf;
}

JSValueRef js_string_from_utf8(JSContextRef ctx, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	JSChar stackbuf[256] = { 0 };
	JSChar *out = len < 256 ? stackbuf : fl_malloc(len * sizeof *out);
	size_t n = 0;
	while (p < end) {
		uint32_t c = *p, min;
		int more;
		if (c < 0x80) {
			out[n++] = (JSChar)c;
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			c &= 0x1f, more = 1, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			c &= 0x0f, more = 2, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			c &= 0x07, more = 3, min = 0x10000;
		} else {
			out[n++] = 0xfffd;
			p++;
			continue;
		}
		const unsigned char *q = p + 1;
		for (int i = 0; i < more; i++, q++) {
			if (q >= end || (*q & 0xc0) != 0x80)
				break;
			c = (c << 6) | (*q & 0x3f);
		}
		if (q - p != more + 1 || c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
			out[n++] = 0xfffd;
			p++;
			continue;
		}
		if (c >= 0x10000) {
			c -= 0x10000;
			out[n++] = (JSChar)(0xd800 | (c >> 10));
			out[n++] = (JSChar)(0xdc00 | (c & 0x3ff));
		} else {
			out[n++] = (JSChar)c;
		}
		p = q;
	}
	JSStringRef str = JSStringCreateWithCharacters(out, n);
	if (out != stackbuf)
		fl_free(out);
	JSValueRef v = JSValueMakeString(ctx, str);
	JSStringRelease(str);
	return v;
}

char *js_value_utf8(JSContextRef ctx, JSValueRef v, size_t *len)
{
	JSValueRef exc = NULL;
	JSStringRef s = JSValueToStringCopy(ctx, v, &exc);
	if (!s) {
		if (len)
			*len = 8;
		return fl_strdup("[object]");
	}
	char *out = js_string_utf8(s, len);
	JSStringRelease(s);
	return out;
}

static JSValueRef get_named(JSContextRef ctx, JSObjectRef obj, const char *name)
{
	JSStringRef n = JSStringCreateWithUTF8CString(name);
	JSValueRef v = JSObjectGetProperty(ctx, obj, n, NULL);
	JSStringRelease(n);
	return v;
}

static bool is_error_object(JSContextRef ctx, JSValueRef v)
{
	if (!JSValueIsObject(ctx, v))
		return false;
	JSValueRef ctor = get_named(ctx, JSContextGetGlobalObject(ctx), "Error");
	if (!ctor || !JSValueIsObject(ctx, ctor))
		return false;
	return JSValueIsInstanceOfConstructor(ctx, v, (JSObjectRef)ctor, NULL);
}

void js_exception_text(JSContextRef ctx, JSValueRef exc, struct fl_buf *out)
{
	size_t len;
	char *text = NULL;
	if (JSValueIsObject(ctx, exc) && !is_error_object(ctx, exc) &&
	    !JSObjectIsFunction(ctx, (JSObjectRef)exc)) {
		/* A thrown plain object reads better as JSON than as "[object Object]". */
		JSStringRef json = JSValueCreateJSONString(ctx, exc, 0, NULL);
		if (json) {
			text = js_string_utf8(json, &len);
			JSStringRelease(json);
		}
	}
	if (!text)
		text = js_value_utf8(ctx, exc, &len);
	fl_buf_add(out, text, len);
	fl_free(text);
}

JSValueRef js_from_json(JSContextRef ctx, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_NULL: return JSValueMakeNull(ctx);
	case JSON_TRUE: return JSValueMakeBoolean(ctx, true);
	case JSON_FALSE: return JSValueMakeBoolean(ctx, false);
	case JSON_INTEGER: return JSValueMakeNumber(ctx, (double)json_integer_value(v));
	case JSON_REAL: return JSValueMakeNumber(ctx, json_real_value(v));
	case JSON_STRING: return js_string_from_utf8(ctx, json_string_value(v), json_string_length(v));
	case JSON_OBJECT:
	case JSON_ARRAY: break;
	}
	/* One JSON text parsed by JavaScriptCore's own parser beats building the tree through
	 * the API one property at a time (each property would need its own JSStringRef). */
	char *text = fl_json_dump(v);
	JSStringRef s = JSStringCreateWithUTF8CString(text);
	JSValueRef r = JSValueMakeFromJSONString(ctx, s);
	JSStringRelease(s);
	free(text);
	return r ? r : JSValueMakeNull(ctx);
}

static json_t *number_to_json(double d)
{
	if (!isfinite(d))
		return json_null(); /* as JSON.stringify writes NaN and Infinity */
	if (d == trunc(d) && fabs(d) < 9007199254740992.0)
		return json_integer((json_int_t)d);
	return json_real(d);
}

/* JSON.stringify(v) as UTF-8 in *text (heap; NULL when the result is undefined, as toJSON may
 * make it). FL_EJS with the exception's text when it throws. */
static int stringify(JSContextRef ctx, JSValueRef v, char **text, size_t *len, struct fl_err *err)
{
	*text = NULL;
	JSValueRef exc = NULL;
	JSStringRef json = JSValueCreateJSONString(ctx, v, 0, &exc);
	if (exc) {
		struct fl_buf b = FL_BUF_INIT;
		js_exception_text(ctx, exc, &b);
		fl_err_set(err, FL_EJS, "%s", b.data);
		fl_buf_release(&b);
		if (json)
			JSStringRelease(json);
		return FL_EJS;
	}
	if (json) {
		*text = js_string_utf8(json, len);
		JSStringRelease(json);
	}
	return 0;
}

int js_to_json(JSContextRef ctx, JSValueRef v, json_t **out, struct fl_err *err)
{
	*out = NULL;
	switch (JSValueGetType(ctx, v)) {
	case kJSTypeUndefined:
	case kJSTypeSymbol: return 0;
	case kJSTypeNull: *out = json_null(); return 0;
	case kJSTypeBoolean: *out = json_boolean(JSValueToBoolean(ctx, v)); return 0;
	case kJSTypeNumber: *out = number_to_json(JSValueToNumber(ctx, v, NULL)); return 0;
	case kJSTypeString: {
		size_t len;
		char *s = js_value_utf8(ctx, v, &len);
		*out = json_stringn_nocheck(s, len);
		fl_free(s);
		return 0;
	}
	case kJSTypeObject:
		if (JSObjectIsFunction(ctx, (JSObjectRef)v))
			return 0;
		break;
	default: break; /* BigInt: JSON.stringify throws, as it should */
	}
	size_t len;
	char *text;
	int rc = stringify(ctx, v, &text, &len, err);
	if (rc || !text)
		return rc;
	json_error_t je;
	*out = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!*out) /* an integer beyond 64 bits, written out in full by JSON.stringify */
		*out = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL |
				  JSON_DECODE_INT_AS_REAL, &je);
	fl_free(text);
	if (!*out)
		return fl_err_set(err, FL_EJS, "value cannot be written as JSON: %s", je.text);
	return 0;
}

/* ---- scripts ---- */

void js_drain(struct js_runtime *rt, JSContextRef ctx)
{
	/* A C callback runs without the VM's heap access; the API functions take it back
	 * through the API lock, and so must we before running JavaScript from here. */
	JSLock(ctx);
	rt->drain((void *)rt->group);
	JSUnlock(ctx);
}

struct js_nested_eval {
	JSStringRef source;
	JSValueRef result, exception;
};

/* Runs inside a VM entry of its own: evaluates the script, then its promise jobs, so that the
 * watchdog covers both. */
static JSValueRef nested_eval_entry(JSContextRef ctx, JSObjectRef fn, JSObjectRef self,
				    size_t argc, const JSValueRef argv[], JSValueRef *exception)
{
	struct js_global *g = JSObjectGetPrivate(JSContextGetGlobalObject(ctx));
	struct js_runtime *rt = g->rt;
	struct js_nested_eval *ne = rt->nested_eval;
	ne->result = JSEvaluateScript(ctx, ne->source, NULL, NULL, 1, &ne->exception);
	if (!rt->terminated)
		js_drain(rt, ctx);
	return JSValueMakeUndefined(ctx);
}

int js_eval_script(struct js_runtime *rt, JSContextRef ctx, const char *source, size_t len,
		   JSValueRef *result, struct fl_err *err)
{
	char stackbuf[512];
	char *text = len < sizeof stackbuf ? stackbuf : fl_malloc(len + 1);
	memcpy(text, source, len);
	text[len] = '\0';
	JSStringRef src = JSStringCreateWithUTF8CString(text);
	if (text != stackbuf)
		fl_free(text);

	JSValueRef exc = NULL, r;
	js_enter(rt);
	if (rt->drain && JSObjectGetPrivate(JSContextGetGlobalObject(ctx))) {
		/* Promise jobs run at the top level would each get a fresh time limit, and an
		 * endless chain of them (`for (;;) await null`) could never be stopped. */
		struct js_nested_eval ne = { .source = src };
		rt->nested_eval = &ne;
		JSObjectRef fn = JSObjectMakeFunctionWithCallback(ctx, NULL, nested_eval_entry);
		JSObjectCallAsFunction(ctx, fn, NULL, 0, NULL, &exc);
		rt->nested_eval = NULL;
		r = ne.result;
		if (!exc)
			exc = ne.exception;
	} else {
		r = JSEvaluateScript(ctx, src, NULL, NULL, 1, &exc);
	}
	JSStringRelease(src);
	if (js_leave_terminated(rt, ctx))
		return fl_err_set(err, FL_ETIMEOUT, "script ran past its time limit of %lld ms",
				  (long long)rt->time_limit_ms);
	if (exc) {
		struct fl_buf b = FL_BUF_INIT;
		js_exception_text(ctx, exc, &b);
		fl_err_set(err, FL_EJS, "%s", b.data);
		fl_buf_release(&b);
		return FL_EJS;
	}
	*result = r;
	return 0;
}

/* ---- scope binding ---- */

static const char flatten_source[] =
	"(function flattenNestedKeys(data, path) {\n"
	"  if (!Array.isArray(path)) path = [];\n"
	"  if (Array.isArray(data))\n"
	"    return data.flatMap((d) => flattenNestedKeys(d, path));\n"
	"  if (data !== null && typeof data === 'object') {\n"
	"    if (path.length > 0 && Object.keys(data).includes(String(path[0])))\n"
	"      return flattenNestedKeys(data[path[0]], path.slice(1));\n"
	"    return [];\n"
	"  }\n"
	"  return path.length === 0 ? [data] : [];\n"
	"})";

/* step_<digits>: the names the platform gives steps. One that is not in scope was skipped or
 * has not run yet, and reads as undefined. */
static bool is_step_name(const char *s)
{
	if (strncmp(s, "step_", 5) != 0 || !s[5])
		return false;
	for (s += 5; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static JSValueRef bind(JSContextRef ctx, struct js_global *g, const char *name, JSValueRef v)
{
	if (g->n_bindings == g->cap_bindings) {
		g->cap_bindings = g->cap_bindings ? 2 * g->cap_bindings : 8;
		g->bindings = fl_realloc(g->bindings, g->cap_bindings * sizeof *g->bindings);
	}
	JSValueProtect(ctx, v);
	g->bindings[g->n_bindings++] = (struct js_binding){ .name = name, .value = v };
	return v;
}

/* Called for every global name a script looks up, before the built-in globals; NULL means
 * "not mine" and lets the lookup go on to JSON, Math and the rest. */
static JSValueRef scope_get_property(JSContextRef ctx, JSObjectRef object, JSStringRef name,
				     JSValueRef *exception)
{
	struct js_global *g = JSObjectGetPrivate(object);
	if (!g)
		return NULL;
	char stackbuf[128];
	char *key = stackbuf;
	if (JSStringGetMaximumUTF8CStringSize(name) > sizeof stackbuf)
		key = js_string_utf8(name, NULL);
	else
		JSStringGetUTF8CString(name, stackbuf, sizeof stackbuf);

	JSValueRef r = NULL;
	for (size_t i = 0; i < g->n_bindings; i++)
		if (strcmp(g->bindings[i].name, key) == 0) {
			r = g->bindings[i].value;
			goto out;
		}
	if (g->scope) {
		void *iter = json_object_iter_at((json_t *)g->scope, key);
		if (iter) {
			r = bind(ctx, g, json_object_iter_key(iter),
				 js_from_json(ctx, json_object_iter_value(iter)));
			goto out;
		}
	}
	if (strcmp(key, "flattenNestedKeys") == 0) {
		if (!g->helpers) {
			JSStringRef src = JSStringCreateWithUTF8CString(flatten_source);
			g->helpers = JSEvaluateScript(ctx, src, NULL, NULL, 1, exception);
			JSStringRelease(src);
			if (g->helpers)
				JSValueProtect(ctx, g->helpers);
		}
		r = g->helpers;
		goto out;
	}
	if (g->scope && is_step_name(key))
		r = JSValueMakeUndefined(ctx);
out:
	if (key != stackbuf)
		fl_free(key);
	return r;
}

/* ---- sessions ---- */

struct js_session {
	struct js_runtime *rt;
	JSGlobalContextRef ctx;
	struct js_global g;
};

struct js_session *js_session_new(struct js_runtime *rt, const json_t *scope)
{
	struct js_session *s = fl_calloc(1, sizeof *s);
	s->rt = rt;
	s->g.rt = rt;
	s->g.scope = scope;
	return s;
}

void js_session_free(struct js_session *s)
{
	if (!s)
		return;
	if (s->ctx) {
		for (size_t i = 0; i < s->g.n_bindings; i++)
			JSValueUnprotect(s->ctx, s->g.bindings[i].value);
		if (s->g.helpers)
			JSValueUnprotect(s->ctx, s->g.helpers);
		JSObjectSetPrivate(JSContextGetGlobalObject(s->ctx), NULL);
		JSGlobalContextRelease(s->ctx);
	}
	fl_free(s->g.bindings);
	fl_free(s);
}

static JSContextRef session_ctx(struct js_session *s)
{
	if (!s->ctx) {
		js_start(s->rt);
		s->ctx = JSGlobalContextCreateInGroup(s->rt->group, s->rt->scope_class);
		JSObjectSetPrivate(JSContextGetGlobalObject(s->ctx), &s->g);
	}
	return s->ctx;
}

/* Evaluates expr as an expression: the parentheses make `{"a":1}` an object literal rather
 * than a block, and the newlines keep a trailing // comment from swallowing them. */
static int session_eval_value(struct js_session *s, const char *expr, size_t len,
			      JSValueRef *result, struct fl_err *err)
{
	JSContextRef ctx = session_ctx(s);
	char stackbuf[256];
	char *src = len + 4 < sizeof stackbuf ? stackbuf : fl_malloc(len + 4);
	src[0] = '(';
	src[1] = '\n';
	memcpy(src + 2, expr, len);
	src[len + 2] = '\n';
	src[len + 3] = ')';
	int rc = js_eval_script(s->rt, ctx, src, len + 4, result, err);
	if (src != stackbuf)
		fl_free(src);
	return rc;
}

int js_session_eval(struct js_session *s, const char *expr, size_t len, json_t **out,
		    struct fl_err *err)
{
	*out = NULL;
	JSValueRef v;
	int rc = session_eval_value(s, expr, len, &v, err);
	if (rc)
		return rc;
	return js_to_json(s->ctx, v, out, err);
}

int js_session_eval_text(struct js_session *s, const char *expr, size_t len, struct fl_buf *out,
			 struct fl_err *err)
{
	JSValueRef v;
	int rc = session_eval_value(s, expr, len, &v, err);
	if (rc)
		return rc;
	JSContextRef ctx = s->ctx;
	JSType t = JSValueGetType(ctx, v);
	if (t == kJSTypeUndefined || t == kJSTypeSymbol ||
	    (t == kJSTypeObject && JSObjectIsFunction(ctx, (JSObjectRef)v)))
		return 0;
	size_t n;
	char *text;
	if (t == kJSTypeString) {
		text = js_value_utf8(ctx, v, &n);
	} else {
		rc = stringify(ctx, v, &text, &n, err);
		if (rc || !text)
			return rc;
	}
	fl_buf_add(out, text, n);
	fl_free(text);
	return 0;
}

int js_eval(struct js_runtime *rt, const char *expr, const json_t *scope, json_t **out,
	    struct fl_err *err)
{
	struct js_session *s = js_session_new(rt, scope);
	int rc = js_session_eval(s, expr, strlen(expr), out, err);
	js_session_free(s);
	return rc;
}
