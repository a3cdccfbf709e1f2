/* CODE steps on JavaScriptCore. The step's module is rewritten into a plain script (the C API
 * has no module loader), run in a fresh global context that has console, timers, fetch,
 * atob/btoa and crypto and nothing else of the host, and driven by a small event loop here:
 * timers are kept in C, fetches are performed between script entries with net_http_do, and
 * JavaScriptCore drains promise jobs each time a call returns to the top level. */
#include "engine/js_int.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/codec.h"
#include "core/err.h"
#include "core/rand.h"
#include "core/time.h"
#include "net/http.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONSOLE_MAX (1 << 20) /* bytes of console output kept per step */
#define PAST_DEADLINE 1       /* the next timer is due after the step's wall limit */
#define NEVER_SETTLES 2       /* nothing is left that could settle the step's promise */

struct timer {
	double id;
	int64_t due_us;
	uint64_t seq;           /* orders timers due at the same time by creation */
	int64_t interval_ms;    /* < 0: a timeout */
	JSObjectRef fn;
	JSValueRef *args;
	size_t n_args;
};

struct fetch {
	JSObjectRef resolve, reject;
	char *method, *url, *body;
	size_t body_len;
	struct net_header *headers;
	size_t n_headers;
	int follow_redirects;
};

struct js_code_run {
	struct js_global g;
	struct js_runtime *rt;
	JSGlobalContextRef ctx;
	const struct js_code_ctx *cctx;
	struct fl_buf console;
	JSValueRef console_obj, crypto_obj, response_factory;

	struct timer *timers;
	size_t n_timers, cap_timers;
	double next_timer_id;
	uint64_t timer_seq;

	struct fetch *fetches;
	size_t n_fetches, cap_fetches;

	bool nested;            /* inside one VM entry, draining promise jobs ourselves */
	int64_t deadline_us;    /* the step's wall limit */
	JSObjectRef driver;
	JSValueRef driver_args[3];
	int loop_rc;

	int settled;            /* 1 fulfilled, 2 rejected */
	bool finished;          /* the outcome is decided; later failures do not count */
	JSValueRef result;      /* the fulfilled value or the rejection reason */
	struct fl_buf failure;  /* an unhandled rejection or a throw in a timer */
};

static struct js_code_run *run_of(JSContextRef ctx)
{
	struct js_global *g = JSObjectGetPrivate(JSContextGetGlobalObject(ctx));
	return g ? g->run : NULL;
}

static void keep(struct js_code_run *run, JSValueRef v)
{
	JSValueProtect(run->ctx, v);
}

static void unkeep(struct js_code_run *run, JSValueRef v)
{
	if (v)
		JSValueUnprotect(run->ctx, v);
}

static JSValueRef throw_error(JSContextRef ctx, JSValueRef *exception, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static JSValueRef throw_error(JSContextRef ctx, JSValueRef *exception, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	JSStringRef s = JSStringCreateWithUTF8CString(msg);
	JSValueRef arg = JSValueMakeString(ctx, s);
	JSStringRelease(s);
	*exception = JSObjectMakeError(ctx, 1, &arg, NULL);
	return NULL;
}

static JSValueRef make_string(JSContextRef ctx, const char *utf8)
{
	JSStringRef s = JSStringCreateWithUTF8CString(utf8);
	JSValueRef v = JSValueMakeString(ctx, s);
	JSStringRelease(s);
	return v;
}

static void set_named(JSContextRef ctx, JSObjectRef obj, const char *name, JSValueRef v)
{
	JSStringRef n = JSStringCreateWithUTF8CString(name);
	JSObjectSetProperty(ctx, obj, n, v, kJSPropertyAttributeNone, NULL);
	JSStringRelease(n);
}

static JSValueRef get_named(JSContextRef ctx, JSObjectRef obj, const char *name)
{
	JSStringRef n = JSStringCreateWithUTF8CString(name);
	JSValueRef v = JSObjectGetProperty(ctx, obj, n, NULL);
	JSStringRelease(n);
	return v;
}

/* ---- console ---- */

static void console_add_value(JSContextRef ctx, struct fl_buf *b, JSValueRef v)
{
	JSType t = JSValueGetType(ctx, v);
	if (t == kJSTypeObject && !JSObjectIsFunction(ctx, (JSObjectRef)v)) {
		JSValueRef exc = NULL;
		JSStringRef json = JSValueCreateJSONString(ctx, v, 0, &exc);
		if (json && !exc) {
			size_t n;
			char *s = js_string_utf8(json, &n);
			JSStringRelease(json);
			fl_buf_add(b, s, n);
			fl_free(s);
			return;
		}
		if (json)
			JSStringRelease(json);
	}
	js_exception_text(ctx, v, b);
}

static JSValueRef console_write(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
				const JSValueRef argv[], JSValueRef *exception)
{
	struct js_code_run *run = run_of(ctx);
	if (!run || run->console.len >= CONSOLE_MAX)
		return JSValueMakeUndefined(ctx);
	for (size_t i = 0; i < argc; i++) {
		if (i)
			fl_buf_addch(&run->console, ' ');
		console_add_value(ctx, &run->console, argv[i]);
	}
	fl_buf_addch(&run->console, '\n');
	return JSValueMakeUndefined(ctx);
}

static const JSStaticFunction console_functions[] = {
	{ "log", console_write, kJSPropertyAttributeDontDelete },
	{ "info", console_write, kJSPropertyAttributeDontDelete },
	{ "warn", console_write, kJSPropertyAttributeDontDelete },
	{ "error", console_write, kJSPropertyAttributeDontDelete },
	{ "debug", console_write, kJSPropertyAttributeDontDelete },
	{ "trace", console_write, kJSPropertyAttributeDontDelete },
	{ 0, 0, 0 },
};

/* ---- crypto ---- */

static JSValueRef crypto_random_uuid(JSContextRef ctx, JSObjectRef fn, JSObjectRef self,
				     size_t argc, const JSValueRef argv[], JSValueRef *exception)
{
	char uuid[37];
	fl_uuid4(uuid);
	return make_string(ctx, uuid);
}

static JSValueRef crypto_get_random_values(JSContextRef ctx, JSObjectRef fn, JSObjectRef self,
					   size_t argc, const JSValueRef argv[],
					   JSValueRef *exception)
{
	if (argc < 1 || JSValueGetTypedArrayType(ctx, argv[0], NULL) == kJSTypedArrayTypeNone ||
	    JSValueGetTypedArrayType(ctx, argv[0], NULL) == kJSTypedArrayTypeArrayBuffer)
		return throw_error(ctx, exception, "TypeError: getRandomValues needs a typed array");
	JSObjectRef arr = (JSObjectRef)argv[0];
	size_t len = JSObjectGetTypedArrayByteLength(ctx, arr, NULL);
	if (len > 65536)
		return throw_error(ctx, exception,
				   "QuotaExceededError: getRandomValues fills at most 65536 bytes");
	uint8_t *bytes = JSObjectGetTypedArrayBytesPtr(ctx, arr, NULL);
	if (bytes)
		fl_random_bytes(bytes + JSObjectGetTypedArrayByteOffset(ctx, arr, NULL), len);
	return arr;
}

static const JSStaticFunction crypto_functions[] = {
	{ "randomUUID", crypto_random_uuid, kJSPropertyAttributeDontDelete },
	{ "getRandomValues", crypto_get_random_values, kJSPropertyAttributeDontDelete },
	{ 0, 0, 0 },
};

static JSClassRef console_class, crypto_class;

/* ---- timers ---- */

static JSValueRef add_timer(JSContextRef ctx, size_t argc, const JSValueRef argv[],
			    JSValueRef *exception, bool repeat)
{
	struct js_code_run *run = run_of(ctx);
	if (!run)
		return JSValueMakeUndefined(ctx);
	if (argc < 1 || !JSValueIsObject(ctx, argv[0]) ||
	    !JSObjectIsFunction(ctx, (JSObjectRef)argv[0]))
		return throw_error(ctx, exception, "TypeError: the callback must be a function");
	double delay = argc > 1 ? JSValueToNumber(ctx, argv[1], NULL) : 0;
	if (!(delay >= 1))
		delay = repeat ? 1 : 0; /* NaN, negative, and Node's minimum for intervals */
	if (delay > 2147483647.0)
		delay = 1; /* as Node does with an overflowing delay */
	if (run->n_timers == run->cap_timers) {
		run->cap_timers = run->cap_timers ? 2 * run->cap_timers : 8;
		run->timers = fl_realloc(run->timers, run->cap_timers * sizeof *run->timers);
	}
	struct timer *t = &run->timers[run->n_timers++];
	*t = (struct timer){
		.id = ++run->next_timer_id,
		.due_us = fl_mono_us() + (int64_t)(delay * 1000),
		.seq = run->timer_seq++,
		.interval_ms = repeat ? (int64_t)delay : -1,
		.fn = (JSObjectRef)argv[0],
	};
	keep(run, t->fn);
	if (argc > 2) {
		t->n_args = argc - 2;
		t->args = fl_malloc(t->n_args * sizeof *t->args);
		for (size_t i = 0; i < t->n_args; i++) {
			t->args[i] = argv[i + 2];
			keep(run, t->args[i]);
		}
	}
	return JSValueMakeNumber(ctx, t->id);
}

static void timer_release(struct js_code_run *run, struct timer *t)
{
	unkeep(run, t->fn);
	for (size_t i = 0; i < t->n_args; i++)
		unkeep(run, t->args[i]);
	fl_free(t->args);
}

static void remove_timer(struct js_code_run *run, size_t i)
{
	timer_release(run, &run->timers[i]);
	run->timers[i] = run->timers[--run->n_timers];
}

static JSValueRef set_timeout(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			      const JSValueRef argv[], JSValueRef *exception)
{
	return add_timer(ctx, argc, argv, exception, false);
}

static JSValueRef set_interval(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			       const JSValueRef argv[], JSValueRef *exception)
{
	return add_timer(ctx, argc, argv, exception, true);
}

static JSValueRef clear_timer(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			      const JSValueRef argv[], JSValueRef *exception)
{
	struct js_code_run *run = run_of(ctx);
	if (!run || argc < 1 || !JSValueIsNumber(ctx, argv[0]))
		return JSValueMakeUndefined(ctx);
	double id = JSValueToNumber(ctx, argv[0], NULL);
	for (size_t i = 0; i < run->n_timers; i++)
		if (run->timers[i].id == id) {
			remove_timer(run, i);
			break;
		}
	return JSValueMakeUndefined(ctx);
}

/* ---- atob / btoa ---- */

static JSValueRef js_btoa(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			  const JSValueRef argv[], JSValueRef *exception)
{
	JSStringRef s = JSValueToStringCopy(ctx, argc ? argv[0] : JSValueMakeUndefined(ctx),
					    exception);
	if (!s)
		return NULL;
	size_t n = JSStringGetLength(s);
	const JSChar *c = JSStringGetCharactersPtr(s);
	/* Each character is one byte (Latin-1); anything wider cannot be encoded. */
	unsigned char *bytes = fl_malloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		if (c[i] > 0xff) {
			JSStringRelease(s);
			fl_free(bytes);
			return throw_error(ctx, exception,
					   "InvalidCharacterError: btoa takes only characters "
					   "up to U+00FF");
		}
		bytes[i] = (unsigned char)c[i];
	}
	JSStringRelease(s);
	char *out = fl_base64_encode(bytes, n);
	fl_free(bytes);
	JSValueRef r = make_string(ctx, out);
	fl_free(out);
	return r;
}

static int b64_value(JSChar c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* The forgiving base64 decode of the HTML standard: ASCII whitespace is ignored, padding is
 * optional, anything else malformed throws. */
static JSValueRef js_atob(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			  const JSValueRef argv[], JSValueRef *exception)
{
	JSStringRef s = JSValueToStringCopy(ctx, argc ? argv[0] : JSValueMakeUndefined(ctx),
					    exception);
	if (!s)
		return NULL;
	size_t n = JSStringGetLength(s);
	const JSChar *c = JSStringGetCharactersPtr(s);
	JSChar *clean = fl_malloc((n + 1) * sizeof *clean);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (c[i] != ' ' && c[i] != '\t' && c[i] != '\n' && c[i] != '\f' && c[i] != '\r')
			clean[m++] = c[i];
	JSStringRelease(s);
	if (m % 4 == 0 && m && clean[m - 1] == '=') {
		m--;
		if (clean[m - 1] == '=')
			m--;
	}
	bool bad = m % 4 == 1;
	for (size_t i = 0; i < m && !bad; i++)
		bad = b64_value(clean[i]) < 0;
	if (bad) {
		fl_free(clean);
		return throw_error(ctx, exception,
				   "InvalidCharacterError: the string to decode is not valid base64");
	}
	JSChar *out = fl_malloc((m * 3 / 4 + 1) * sizeof *out);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < m; i++) {
		acc = (acc << 6) | (uint32_t)b64_value(clean[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (JSChar)((acc >> bits) & 0xff);
		}
	}
	fl_free(clean);
	JSStringRef r = JSStringCreateWithCharacters(out, o);
	fl_free(out);
	JSValueRef v = JSValueMakeString(ctx, r);
	JSStringRelease(r);
	return v;
}

/* ---- fetch ---- */

static const char response_source[] =
	"(function (status, statusText, url, redirected, pairs, body, bytes) {\n"
	"  const map = new Map();\n"
	"  for (const [k, v] of pairs) map.set(k, map.has(k) ? map.get(k) + ', ' + v : v);\n"
	"  const headers = {\n"
	"    get: (n) => { const v = map.get(String(n).toLowerCase()); return v === undefined ? null : v; },\n"
	"    has: (n) => map.has(String(n).toLowerCase()),\n"
	"    forEach: (f, self) => map.forEach((v, k) => f.call(self, v, k, headers)),\n"
	"    entries: () => map.entries(), keys: () => map.keys(), values: () => map.values(),\n"
	"    [Symbol.iterator]: () => map.entries(),\n"
	"  };\n"
	"  let used = false;\n"
	"  const take = (value) => {\n"
	"    if (used) return Promise.reject(new TypeError('body stream already read'));\n"
	"    used = true;\n"
	"    return Promise.resolve(value);\n"
	"  };\n"
	"  return {\n"
	"    status, statusText, url, redirected, headers, ok: status >= 200 && status < 300,\n"
	"    get bodyUsed() { return used; },\n"
	"    text: () => take(body),\n"
	"    json: () => take(body).then((t) => JSON.parse(t)),\n"
	"    arrayBuffer: () => take(bytes),\n"
	"  };\n"
	"})";

static void free_bytes(void *bytes, void *context)
{
	fl_free(bytes);
}

static void fetch_release(struct js_code_run *run, struct fetch *f)
{
	unkeep(run, f->resolve);
	unkeep(run, f->reject);
	fl_free(f->method);
	fl_free(f->url);
	fl_free(f->body);
	for (size_t i = 0; i < f->n_headers; i++) {
		fl_free(f->headers[i].name);
		fl_free(f->headers[i].value);
	}
	fl_free(f->headers);
}

static void fetch_add_header(struct fetch *f, const char *name, const char *value)
{
	f->headers = fl_realloc(f->headers, (f->n_headers + 1) * sizeof *f->headers);
	f->headers[f->n_headers].name = fl_strdup(name);
	f->headers[f->n_headers].value = fl_strdup(value);
	f->n_headers++;
}

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s == ':' || *s == 0x7f)
			return false;
	return true;
}

/* init.headers: a plain object, an array of [name, value] pairs, or anything with forEach
 * that calls back (value, name), like a Headers object. */
static int fetch_read_headers(JSContextRef ctx, struct fetch *f, JSValueRef hv,
			      JSValueRef *exception)
{
	if (!JSValueIsObject(ctx, hv))
		return 0;
	JSObjectRef h = (JSObjectRef)hv;
	if (JSValueIsArray(ctx, hv)) {
		JSValueRef lenv = get_named(ctx, h, "length");
		size_t n = (size_t)JSValueToNumber(ctx, lenv, NULL);
		for (size_t i = 0; i < n; i++) {
			JSValueRef pair = JSObjectGetPropertyAtIndex(ctx, h, (unsigned)i, NULL);
			if (!JSValueIsObject(ctx, pair))
				continue;
			char *k = js_value_utf8(ctx, JSObjectGetPropertyAtIndex(ctx, (JSObjectRef)pair, 0, NULL), NULL);
			char *v = js_value_utf8(ctx, JSObjectGetPropertyAtIndex(ctx, (JSObjectRef)pair, 1, NULL), NULL);
			if (header_name_ok(k))
				fetch_add_header(f, k, v);
			fl_free(k);
			fl_free(v);
		}
		return 0;
	}
	JSPropertyNameArrayRef names = JSObjectCopyPropertyNames(ctx, h);
	size_t n = JSPropertyNameArrayGetCount(names);
	for (size_t i = 0; i < n; i++) {
		JSStringRef name = JSPropertyNameArrayGetNameAtIndex(names, i);
		JSValueRef v = JSObjectGetProperty(ctx, h, name, exception);
		if (*exception)
			break;
		if (JSValueIsUndefined(ctx, v) ||
		    (JSValueIsObject(ctx, v) && JSObjectIsFunction(ctx, (JSObjectRef)v)))
			continue;
		char *k = js_string_utf8(name, NULL);
		char *s = js_value_utf8(ctx, v, NULL);
		if (header_name_ok(k))
			fetch_add_header(f, k, s);
		fl_free(k);
		fl_free(s);
	}
	JSPropertyNameArrayRelease(names);
	return *exception ? -1 : 0;
}

static JSValueRef js_fetch(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			   const JSValueRef argv[], JSValueRef *exception)
{
	struct js_code_run *run = run_of(ctx);
	if (!run)
		return JSValueMakeUndefined(ctx);
	if (argc < 1)
		return throw_error(ctx, exception, "TypeError: fetch needs a URL");
	struct fetch f = { .follow_redirects = 1 };
	JSValueRef input = argv[0];
	if (JSValueIsObject(ctx, input)) {
		JSValueRef u = get_named(ctx, (JSObjectRef)input, "url");
		if (u && JSValueIsString(ctx, u))
			input = u; /* a Request-like object */
	}
	f.url = js_value_utf8(ctx, input, NULL);
	if (argc > 1 && JSValueIsObject(ctx, argv[1])) {
		JSObjectRef init = (JSObjectRef)argv[1];
		JSValueRef m = get_named(ctx, init, "method");
		if (m && !JSValueIsUndefined(ctx, m) && !JSValueIsNull(ctx, m)) {
			f.method = js_value_utf8(ctx, m, NULL);
			for (char *p = f.method; *p; p++)
				*p = (char)toupper((unsigned char)*p);
		}
		if (fetch_read_headers(ctx, &f, get_named(ctx, init, "headers"), exception)) {
			fetch_release(run, &f);
			return NULL;
		}
		JSValueRef b = get_named(ctx, init, "body");
		if (b && !JSValueIsUndefined(ctx, b) && !JSValueIsNull(ctx, b))
			f.body = js_value_utf8(ctx, b, &f.body_len);
		JSValueRef r = get_named(ctx, init, "redirect");
		if (r && JSValueIsString(ctx, r)) {
			char *mode = js_value_utf8(ctx, r, NULL);
			f.follow_redirects = strcmp(mode, "manual") != 0;
			fl_free(mode);
		}
	}
	if (!f.method)
		f.method = fl_strdup("GET");
	if (strncasecmp(f.url, "http://", 7) && strncasecmp(f.url, "https://", 8)) {
		char url[128];
		snprintf(url, sizeof url, "%s", f.url);
		fetch_release(run, &f);
		return throw_error(ctx, exception, "TypeError: fetch supports only http and https "
				   "URLs, not '%s'", url);
	}
	JSObjectRef promise = JSObjectMakeDeferredPromise(ctx, &f.resolve, &f.reject, exception);
	if (!promise) {
		fetch_release(run, &f);
		return NULL;
	}
	keep(run, f.resolve);
	keep(run, f.reject);
	if (run->n_fetches == run->cap_fetches) {
		run->cap_fetches = run->cap_fetches ? 2 * run->cap_fetches : 4;
		run->fetches = fl_realloc(run->fetches, run->cap_fetches * sizeof *run->fetches);
	}
	run->fetches[run->n_fetches++] = f;
	return promise;
}

/* ---- queueMicrotask ---- */

/* Queues fn as a promise job; a throw in it is then an unhandled rejection, which fails the
 * step as an uncaught exception would in Node. */
static JSValueRef queue_microtask(JSContextRef ctx, JSObjectRef fn, JSObjectRef self,
				  size_t argc, const JSValueRef argv[], JSValueRef *exception)
{
	if (argc < 1 || !JSValueIsObject(ctx, argv[0]) ||
	    !JSObjectIsFunction(ctx, (JSObjectRef)argv[0]))
		return throw_error(ctx, exception, "TypeError: the callback must be a function");
	JSObjectRef resolve, reject;
	JSObjectRef promise = JSObjectMakeDeferredPromise(ctx, &resolve, &reject, exception);
	if (!promise)
		return NULL;
	JSValueRef then = get_named(ctx, promise, "then");
	if (!then || !JSValueIsObject(ctx, then))
		return NULL;
	if (!JSObjectCallAsFunction(ctx, (JSObjectRef)then, promise, 1, argv, exception))
		return NULL;
	if (!JSObjectCallAsFunction(ctx, resolve, NULL, 0, NULL, exception))
		return NULL;
	return JSValueMakeUndefined(ctx);
}

/* ---- the global object ---- */

static JSValueRef code_get_property(JSContextRef ctx, JSObjectRef object, JSStringRef name,
				    JSValueRef *exception)
{
	struct js_global *g = JSObjectGetPrivate(object);
	if (!g || !g->run)
		return NULL;
	struct js_code_run *run = g->run;
	if (JSStringIsEqualToUTF8CString(name, "console")) {
		if (!run->console_obj) {
			run->console_obj = JSObjectMake(ctx, console_class, NULL);
			keep(run, run->console_obj);
		}
		return run->console_obj;
	}
	if (JSStringIsEqualToUTF8CString(name, "crypto")) {
		if (!run->crypto_obj) {
			run->crypto_obj = JSObjectMake(ctx, crypto_class, NULL);
			keep(run, run->crypto_obj);
		}
		return run->crypto_obj;
	}
	return NULL;
}

static const JSStaticFunction code_functions[] = {
	{ "setTimeout", set_timeout, kJSPropertyAttributeDontEnum },
	{ "setInterval", set_interval, kJSPropertyAttributeDontEnum },
	{ "clearTimeout", clear_timer, kJSPropertyAttributeDontEnum },
	{ "clearInterval", clear_timer, kJSPropertyAttributeDontEnum },
	{ "atob", js_atob, kJSPropertyAttributeDontEnum },
	{ "btoa", js_btoa, kJSPropertyAttributeDontEnum },
	{ "fetch", js_fetch, kJSPropertyAttributeDontEnum },
	{ "queueMicrotask", queue_microtask, kJSPropertyAttributeDontEnum },
	{ 0, 0, 0 },
};

JSClassRef js_code_class_create(void)
{
	if (!console_class) {
		JSClassDefinition def = kJSClassDefinitionEmpty;
		def.className = "Console";
		def.staticFunctions = console_functions;
		console_class = JSClassCreate(&def);
		def = kJSClassDefinitionEmpty;
		def.className = "Crypto";
		def.staticFunctions = crypto_functions;
		crypto_class = JSClassCreate(&def);
	}
	JSClassDefinition def = kJSClassDefinitionEmpty;
	def.className = "global";
	def.getProperty = code_get_property;
	def.staticFunctions = code_functions;
	return JSClassCreate(&def);
}

/* ---- the module ---- */

static bool word_at(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);
	return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 &&
	       (p + n == end || !(isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '$'));
}

static const char *skip_space(const char *p, const char *end)
{
	while (p < end && isspace((unsigned char)*p))
		p++;
	return p;
}

/* Turns the step's module into a script: `export` before a declaration is dropped, `export
 * default` becomes `const code =`, and `export { ... }` lists are blanked. Strings, template
 * literals and comments are copied untouched. An import fails: there is nothing to import. */
static int rewrite_module(const char *src, struct fl_buf *out, struct fl_err *err)
{
	const char *p = src, *end = src + strlen(src);
	bool stmt_start = true; /* only at the start of a statement is export a keyword */
	while (p < end) {
		char c = *p;
		if (c == '/' && p + 1 < end && (p[1] == '/' || p[1] == '*')) {
			const char *e = p[1] == '/' ? memchr(p, '\n', (size_t)(end - p))
						    : strstr(p + 2, "*/");
			e = e ? e + (p[1] == '*' ? 2 : 0) : end;
			fl_buf_add(out, p, (size_t)(e - p));
			p = e;
			continue;
		}
		if (c == '"' || c == '\'' || c == '`') {
			const char *q = p + 1;
			while (q < end && *q != c)
				q += *q == '\\' ? 2 : 1;
			q = q < end ? q + 1 : end;
			fl_buf_add(out, p, (size_t)(q - p));
			p = q;
			stmt_start = false;
			continue;
		}
		if (stmt_start && word_at(p, end, "export")) {
			const char *q = skip_space(p + 6, end);
			if (word_at(q, end, "default")) {
				fl_buf_adds(out, "const code =");
				p = q + 7;
			} else if (q < end && *q == '{') {
				const char *e = memchr(q, '}', (size_t)(end - q));
				p = e ? e + 1 : end;
			} else {
				p += 6;
			}
			continue;
		}
		if (stmt_start && word_at(p, end, "import")) {
			const char *q = skip_space(p + 6, end);
			if (q < end && *q != '(' && *q != '.')
				return fl_err_set(err, FL_EJS,
						  "import is not supported: a code step can use only "
						  "what JavaScript itself provides");
		}
		if (c == ';' || c == '{' || c == '}' || c == '\n')
			stmt_start = true;
		else if (!isspace((unsigned char)c))
			stmt_start = false;
		fl_buf_addch(out, c);
		p++;
	}
	fl_buf_addch(out, '\n');
	return 0;
}

/* ---- the event loop ---- */

static JSValueRef on_settled(JSContextRef ctx, JSObjectRef fn, size_t argc,
			     const JSValueRef argv[], int how)
{
	struct js_code_run *run = run_of(ctx);
	if (run && !run->settled) {
		run->settled = how;
		run->result = argc ? argv[0] : JSValueMakeUndefined(ctx);
		keep(run, run->result);
	}
	return JSValueMakeUndefined(ctx);
}

static JSValueRef on_fulfilled(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			       const JSValueRef argv[], JSValueRef *exception)
{
	return on_settled(ctx, fn, argc, argv, 1);
}

static JSValueRef on_rejected(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			      const JSValueRef argv[], JSValueRef *exception)
{
	return on_settled(ctx, fn, argc, argv, 2);
}

static JSValueRef on_unhandled_rejection(JSContextRef ctx, JSObjectRef fn, JSObjectRef self,
					 size_t argc, const JSValueRef argv[],
					 JSValueRef *exception)
{
	struct js_global *g = JSObjectGetPrivate(JSContextGetGlobalObject(ctx));
	struct js_code_run *run = !g ? NULL : g->run ? g->run : g->rt->current_run;
	if (run && !run->failure.len && !run->finished) {
		fl_buf_adds(&run->failure, "unhandled promise rejection: ");
		if (argc > 1) /* in the step's realm, where its Error is Error */
			js_exception_text(run->ctx, argv[1], &run->failure);
	}
	return JSValueMakeUndefined(ctx);
}

/* Appended to the step's script, so that one evaluation both defines `code` and yields the
 * function that starts it; the call to code happens in a promise job, so that a synchronous
 * throw and a rejection end the same way. */
static const char driver_source[] =
	"\n;(function (inputs, fulfilled, rejected) {\n"
	"  if (typeof code !== 'function')\n"
	"    throw new TypeError('the code step must export a function named code');\n"
	"  Promise.resolve().then(() => code(inputs)).then(fulfilled, rejected);\n"
	"})\n";

enum call_kind { CALL_DRIVER, CALL_TIMER, CALL_SETTLE };

/* Calls fn and lets the promise jobs it queued run. At the top level JavaScriptCore drains
 * them as the call returns; nested (run->nested) we drain them here, inside the same VM
 * entry, so that the watchdog still counts their time. A throw from the driver or a timer is
 * recorded as the step's failure. Returns 0, FL_EJS or FL_ETIMEOUT. */
static int call_js(struct js_code_run *run, JSObjectRef fn, size_t argc, const JSValueRef argv[],
		   enum call_kind kind)
{
	struct js_runtime *rt = run->rt;
	JSValueRef exc = NULL;
	if (!run->nested)
		js_enter(rt);
	JSObjectCallAsFunction(run->ctx, fn, NULL, argc, argv, &exc);
	if (run->nested) {
		if (rt->terminated)
			return FL_ETIMEOUT;
		js_drain(rt, run->ctx);
		if (rt->terminated)
			return FL_ETIMEOUT;
	} else if (js_leave_terminated(rt, run->ctx)) {
		return FL_ETIMEOUT;
	}
	if (!exc)
		return 0;
	if (kind != CALL_SETTLE && !run->failure.len && !run->finished) {
		if (kind == CALL_TIMER)
			fl_buf_adds(&run->failure, "uncaught exception in a timer: ");
		js_exception_text(run->ctx, exc, &run->failure);
	}
	return FL_EJS;
}

static JSValueRef response_factory(struct js_code_run *run)
{
	if (!run->response_factory) {
		JSStringRef src = JSStringCreateWithUTF8CString(response_source);
		JSValueRef v = JSEvaluateScript(run->ctx, src, NULL, NULL, 1, NULL);
		JSStringRelease(src);
		if (v) {
			run->response_factory = v;
			keep(run, v);
		}
	}
	return run->response_factory;
}

static int run_fetch(struct js_code_run *run)
{
	int64_t deadline_us = run->deadline_us;
	struct fetch f = run->fetches[0];
	memmove(run->fetches, run->fetches + 1, --run->n_fetches * sizeof *run->fetches);
	JSContextRef ctx = run->ctx;

	bool user_key = false;
	for (size_t i = 0; i < f.n_headers; i++)
		user_key |= strcasecmp(f.headers[i].name, "idempotency-key") == 0;
	/* n counts every request of the step, as the http piece counts its own, so that a
	 * replay of the same code sends the same keys */
	int n = 1;
	if (run->cctx && run->cctx->request_count)
		n = ++*run->cctx->request_count;
	if (!user_key && run->cctx && run->cctx->run_id) {
		char key[512];
		snprintf(key, sizeof key, "%s:%s:%d", run->cctx->run_id,
			 run->cctx->step_path ? run->cctx->step_path : "", n);
		fetch_add_header(&f, "Idempotency-Key", key);
	}
	int64_t left_ms = (deadline_us - fl_mono_us()) / 1000;
	struct net_http_request req = {
		.method = f.method,
		.url = f.url,
		.headers = f.headers,
		.n_headers = f.n_headers,
		.body = f.body,
		.body_len = f.body_len,
		.timeout_ms = left_ms > 0 ? left_ms : 1,
		.follow_redirects = f.follow_redirects,
		.policy = run->rt->policy,
	};
	struct net_http_response resp;
	struct fl_err nerr = { 0 };
	int rc = net_http_do(&req, &resp, &nerr);
	JSValueRef arg;
	JSObjectRef settle;
	if (rc == 0) {
		JSValueRef *pairs = fl_malloc((resp.n_headers + 1) * sizeof *pairs);
		for (size_t i = 0; i < resp.n_headers; i++) {
			JSValueRef kv[2] = { make_string(ctx, resp.headers[i].name),
					     make_string(ctx, resp.headers[i].value) };
			pairs[i] = JSObjectMakeArray(ctx, 2, kv, NULL);
		}
		/* the body as bytes for arrayBuffer(), and as UTF-8 text for text() and json() */
		void *copy = fl_malloc(resp.body_len ? resp.body_len : 1);
		memcpy(copy, resp.body, resp.body_len);
		JSObjectRef bytes = JSObjectMakeArrayBufferWithBytesNoCopy(
			ctx, copy, resp.body_len, free_bytes, NULL, NULL);
		JSValueRef args[7] = {
			JSValueMakeNumber(ctx, (double)resp.status),
			make_string(ctx, ""),
			make_string(ctx, resp.effective_url ? resp.effective_url : f.url),
			JSValueMakeBoolean(ctx, resp.effective_url &&
						       strcmp(resp.effective_url, f.url) != 0),
			JSObjectMakeArray(ctx, resp.n_headers, pairs, NULL),
			js_string_from_utf8(ctx, resp.body ? resp.body : "", resp.body_len),
			bytes ? (JSValueRef)bytes : JSValueMakeUndefined(ctx),
		};
		fl_free(pairs);
		net_http_response_release(&resp);
		JSValueRef factory = response_factory(run);
		arg = factory ? JSObjectCallAsFunction(ctx, (JSObjectRef)factory, NULL, 7, args, NULL)
			      : NULL;
		if (!arg)
			arg = JSValueMakeUndefined(ctx);
		settle = f.resolve;
	} else {
		char msg[600];
		snprintf(msg, sizeof msg, "fetch failed: %s", nerr.msg[0] ? nerr.msg : fl_strerror(rc));
		JSValueRef m = make_string(ctx, msg);
		arg = JSObjectMakeError(ctx, 1, &m, NULL);
		set_named(ctx, (JSObjectRef)arg, "name", make_string(ctx, "TypeError"));
		settle = f.reject;
	}
	rc = call_js(run, settle, 1, &arg, CALL_SETTLE);
	fetch_release(run, &f);
	return rc == FL_ETIMEOUT ? rc : 0;
}

static int run_next_timer(struct js_code_run *run)
{
	int64_t deadline_us = run->deadline_us;
	size_t best = 0;
	for (size_t i = 1; i < run->n_timers; i++) {
		struct timer *a = &run->timers[i], *b = &run->timers[best];
		if (a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq))
			best = i;
	}
	struct timer *t = &run->timers[best];
	int64_t now = fl_mono_us();
	if (t->due_us > deadline_us)
		return PAST_DEADLINE;
	if (t->due_us > now)
		fl_sleep_ms((t->due_us - now + 999) / 1000);
	struct timer fired = *t;
	if (fired.interval_ms >= 0) {
		/* keep it armed; the callback may clear it by id */
		t->due_us = fl_mono_us() + fired.interval_ms * 1000;
		t->seq = run->timer_seq++;
		for (size_t i = 0; i < fired.n_args; i++)
			keep(run, fired.args[i]);
		keep(run, fired.fn);
		if (fired.n_args) {
			fired.args = fl_malloc(fired.n_args * sizeof *fired.args);
			memcpy(fired.args, t->args, fired.n_args * sizeof *fired.args);
		}
	} else {
		run->timers[best] = run->timers[--run->n_timers];
	}
	int rc = call_js(run, fired.fn, fired.n_args, fired.args, CALL_TIMER);
	timer_release(run, &fired);
	return rc == FL_ETIMEOUT ? rc : 0;
}

static void run_release(struct js_code_run *run)
{
	for (size_t i = 0; i < run->n_timers; i++)
		timer_release(run, &run->timers[i]);
	fl_free(run->timers);
	for (size_t i = 0; i < run->n_fetches; i++)
		fetch_release(run, &run->fetches[i]);
	fl_free(run->fetches);
	unkeep(run, run->result);
	unkeep(run, run->console_obj);
	unkeep(run, run->crypto_obj);
	unkeep(run, run->response_factory);
	JSObjectSetPrivate(JSContextGetGlobalObject(run->ctx), NULL);
	JSGlobalContextRelease(run->ctx);
	fl_buf_release(&run->console);
	fl_buf_release(&run->failure);
}

static JSObjectRef make_function(JSContextRef ctx, const char *name,
				 JSObjectCallAsFunctionCallback cb)
{
	JSStringRef n = JSStringCreateWithUTF8CString(name);
	JSObjectRef f = JSObjectMakeFunctionWithCallback(ctx, n, cb);
	JSStringRelease(n);
	return f;
}

/* Starts the step and runs timers and fetches until its promise settles. Returns 0 (settled,
 * or a failure recorded in run->failure), FL_ETIMEOUT, PAST_DEADLINE or NEVER_SETTLES. */
static int event_loop(struct js_code_run *run)
{
	int rc = call_js(run, run->driver, 3, run->driver_args, CALL_DRIVER);
	if (rc)
		return rc == FL_ETIMEOUT ? rc : 0;
	while (!run->settled && !run->failure.len) {
		if (fl_mono_us() > run->deadline_us)
			return PAST_DEADLINE;
		if (run->n_fetches)
			rc = run_fetch(run);
		else if (run->n_timers)
			rc = run_next_timer(run);
		else
			return NEVER_SETTLES;
		if (rc)
			return rc;
	}
	/* In Node a request goes out the moment fetch is called, awaited or not: send the ones
	 * the code started and left behind, without letting them change the step's outcome. */
	run->finished = true;
	while (run->n_fetches && fl_mono_us() < run->deadline_us)
		if (run_fetch(run) == FL_ETIMEOUT)
			break;
	return 0;
}

static JSValueRef loop_entry(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
			     const JSValueRef argv[], JSValueRef *exception)
{
	struct js_code_run *run = run_of(ctx);
	if (run)
		run->loop_rc = event_loop(run);
	return JSValueMakeUndefined(ctx);
}

static int run_step(struct js_code_run *run, const char *source, const json_t *inputs,
		    json_t **out, struct fl_err *err)
{
	struct js_runtime *rt = run->rt;
	JSContextRef ctx = run->ctx;
	run->deadline_us = fl_mono_us() + rt->code_wall_limit_ms * 1000;

	struct fl_buf script = FL_BUF_INIT;
	int rc = rewrite_module(source, &script, err);
	JSValueRef driver = NULL;
	if (!rc) {
		fl_buf_adds(&script, driver_source);
		rc = js_eval_script(rt, ctx, script.data, script.len, &driver, err);
	}
	fl_buf_release(&script);
	if (rc)
		return rc;
	run->driver = (JSObjectRef)driver;
	run->driver_args[0] = js_from_json(ctx, inputs ? inputs : json_null());
	run->driver_args[1] = make_function(ctx, "fulfilled", on_fulfilled);
	run->driver_args[2] = make_function(ctx, "rejected", on_rejected);

	if (rt->drain) {
		/* The whole step runs inside one VM entry: the watchdog then counts the CPU time
		 * of everything the step does, and can stop an endless chain of promise jobs,
		 * which JavaScriptCore would otherwise run as separate entries, each with a
		 * fresh limit. */
		JSObjectRef entry = make_function(ctx, "run", loop_entry);
		JSValueRef exc = NULL;
		run->nested = true;
		js_enter(rt);
		JSObjectCallAsFunction(ctx, entry, NULL, 0, NULL, &exc);
		run->nested = false;
		if (js_leave_terminated(rt, ctx))
			goto timeout;
		rc = run->loop_rc;
	} else {
		rc = event_loop(run);
	}
	switch (rc) {
	case FL_ETIMEOUT: goto timeout;
	case PAST_DEADLINE:
		return fl_err_set(err, FL_ETIMEOUT, "code step did not finish within %lld ms",
				  (long long)rt->code_wall_limit_ms);
	case NEVER_SETTLES:
		return fl_err_set(err, FL_EJS, "the code's promise never settled: it waits for "
				  "something that nothing will do");
	}
	if (run->failure.len)
		return fl_err_set(err, FL_EJS, "%s", run->failure.data);
	if (run->settled == 2) {
		struct fl_buf b = FL_BUF_INIT;
		js_exception_text(ctx, run->result, &b);
		fl_err_set(err, FL_EJS, "%s", b.data);
		fl_buf_release(&b);
		return FL_EJS;
	}
	return js_to_json(ctx, run->result, out, err);
timeout:
	return fl_err_set(err, FL_ETIMEOUT, "code ran past its time limit of %lld ms",
			  (long long)rt->time_limit_ms);
}

int js_run_code(struct js_runtime *rt, const char *source, const json_t *inputs,
		const struct js_code_ctx *ctx, json_t **out, struct fl_buf *console,
		struct fl_err *err)
{
	*out = NULL;
	struct js_code_run run = { .rt = rt, .cctx = ctx };
	fl_buf_init(&run.console);
	fl_buf_init(&run.failure);
	run.g.rt = rt;
	run.g.run = &run;
	js_start(rt);
	run.ctx = rt->spare_code_ctx ? rt->spare_code_ctx
				     : JSGlobalContextCreateInGroup(rt->group, rt->code_class);
	rt->spare_code_ctx = NULL;
	JSObjectSetPrivate(JSContextGetGlobalObject(run.ctx), &run.g);
	/* The context holds its unhandled-rejection callback as a GC root: a function of its own
	 * would keep the whole context alive forever, so every step gets the runtime's one. */
	if (!rt->host_ctx) {
		rt->host_global = fl_calloc(1, sizeof *rt->host_global);
		rt->host_global->rt = rt;
		rt->host_ctx = JSGlobalContextCreateInGroup(rt->group, rt->scope_class);
		JSObjectSetPrivate(JSContextGetGlobalObject(rt->host_ctx), rt->host_global);
		rt->rejection_handler =
			make_function(rt->host_ctx, "unhandledRejection", on_unhandled_rejection);
		JSValueProtect(rt->host_ctx, rt->rejection_handler);
	}
	rt->current_run = &run;
	JSGlobalContextSetUnhandledRejectionCallback(run.ctx, rt->rejection_handler, NULL);

	struct fl_err local = { 0 };
	if (!err)
		err = &local;
	int rc = run_step(&run, source ? source : "", inputs, out, err);
	if (rc) {
		json_decref(*out);
		*out = NULL;
		if (run.console.len) {
			/* the console output helps whoever reads the failed step */
			size_t used = strlen(err->msg);
			snprintf(err->msg + used, sizeof err->msg - used, "\n%.*s",
				 (int)(run.console.len - 1), run.console.data);
		}
	}
	if (console)
		fl_buf_add(console, run.console.data, run.console.len);
	run_release(&run);
	rt->current_run = NULL;
	return rc;
}

void js_prepare_code_context(struct js_runtime *rt)
{
	if (rt->group && !rt->spare_code_ctx)
		rt->spare_code_ctx = JSGlobalContextCreateInGroup(rt->group, rt->code_class);
}

void js_code_runtime_release(struct js_runtime *rt)
{
	if (rt->spare_code_ctx) {
		JSGlobalContextRelease(rt->spare_code_ctx);
		rt->spare_code_ctx = NULL;
	}
	if (!rt->host_ctx)
		return;
	JSValueUnprotect(rt->host_ctx, rt->rejection_handler);
	JSObjectSetPrivate(JSContextGetGlobalObject(rt->host_ctx), NULL);
	JSGlobalContextRelease(rt->host_ctx);
	rt->host_ctx = NULL;
	fl_free(rt->host_global);
}
