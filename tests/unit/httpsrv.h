/* A local HTTP server for unit tests (libmicrohttpd on 127.0.0.1, a free port, its own thread).
 * Routes:
 *   /status/<n>            answers status n with {"status":n} (JSON)
 *   /echo[?...]            200 {"method","url","headers":[[name,value],...],"body"} in the order received
 *   /redirect/<n>?to=<u>   answers status n with Location: <u> (without to: itself)
 *   /slow?ms=<n>           waits n ms, then 200 "slow"
 *   /binary                200 application/octet-stream, the bytes 0..255
 *   /text                  200 text/plain "hello"
 *   /flaky/<k>/<n>         fails with 500 n times per key k, then answers 200 {"ok":true}
 * Every request is counted per path (without the query). */
#ifndef TEST_HTTPSRV_H
#define TEST_HTTPSRV_H

struct httpsrv;

struct httpsrv *httpsrv_start(void);
void httpsrv_stop(struct httpsrv *s);
int httpsrv_port(const struct httpsrv *s);
/* "http://127.0.0.1:<port>" + path, in a static buffer that the next call overwrites. */
const char *httpsrv_url(const struct httpsrv *s, const char *path);
/* How many requests reached path since the start or the last reset. */
int httpsrv_hits(struct httpsrv *s, const char *path);
void httpsrv_reset(struct httpsrv *s);

#endif
