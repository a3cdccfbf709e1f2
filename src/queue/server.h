/* The private redis-server that `flowd serve` starts when AP_REDIS_URL is unset: a child process
 * listening only on a unix socket under AP_CONFIG_PATH (no TCP port), with append-only
 * persistence in the same directory so that delayed resumes survive restarts, and
 * noeviction as BullMQ requires. It dies with flowd (PR_SET_PDEATHSIG). */
#ifndef BQ_SERVER_H
#define BQ_SERVER_H

#include <sys/types.h>

struct fl_err;

/* The server's directory under AP_CONFIG_PATH; bq_embedded_redis_url (bq.h) points into it. */
#define BQ_SERVER_SUBDIR "redis"

struct bq_server {
	pid_t pid;
	char *dir;
	char *url; /* "unix://<dir>/redis.sock", for bq_queue_new and bq_worker_new */
};

/* Starts redis-server (found on PATH) with its data and socket in dir, and waits until it
 * answers PING (up to 10 s). Returns 0, or a negative code with err saying what failed
 * (redis-server missing, socket path too long, it exited, it never answered). */
int bq_server_start(struct bq_server *s, const char *dir, struct fl_err *err);

/* SIGTERMs the server, waits up to 5 s for it to save and exit, then SIGKILLs it. Safe on a
 * server that never started. */
void bq_server_stop(struct bq_server *s);

#endif
