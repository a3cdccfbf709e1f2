/* The queue handle's layout, shared by queue.c and admin.c. */
#ifndef BQ_QUEUE_INT_H
#define BQ_QUEUE_INT_H

#include "queue/bq_int.h"

#include <pthread.h>

struct bq_queue {
	pthread_mutex_t mu; /* guards conn: the handle is shared by request threads */
	struct bq_conn conn;
	char *prefix;
	char *name;
	char *kp; /* "<prefix>:<name>:" */
};

/* bq_conn_eval / bq_conn_cmd under the handle's mutex. An error reply is freed, not returned. */
int bq_queue_eval(struct bq_queue *q, enum bq_script s, int argc, const char **argv,
		  const size_t *argvlen, redisReply **reply, struct fl_err *err);
int bq_queue_cmd(struct bq_queue *q, int argc, const char **argv, const size_t *argvlen,
		 redisReply **reply, struct fl_err *err);

#endif
