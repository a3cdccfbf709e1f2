/* A minimal HTTP/1.1 server for the network-policy tests: binds any address (127.0.0.2, ::1...)
 * on a free port, serves on its own thread, and counts every connection that reaches it, those
 * still waiting in the listen queue included, so that a test can show that a refused request
 * never connected. "/redirect" answers 302 to the server's redirect_to; any other path answers
 * 200 with the server's name as body. */
#ifndef TEST_NETSRV_H
#define TEST_NETSRV_H

#include <pthread.h>
#include <stdatomic.h>

struct netsrv {
	const char *name;
	int fd;
	unsigned port;
	char redirect_to[256];
	atomic_int connections;
	atomic_int stop;
	pthread_t thread;
};

/* Starts a server on ip (numeric, any family). Returns 0 or -errno (e.g. no IPv6 here). */
int netsrv_start(struct netsrv *s, const char *name, const char *ip);
/* Stops the server and returns how many connections ever reached it. */
int netsrv_stop(struct netsrv *s);

#endif
