/* Descriptors passed over unix sockets (SCM_RIGHTS): the zygote's requests and replies, the
 * jobs handed to pre-started sandboxes, and the sockets the egress broker connects for engines. */
#ifndef FL_FDPASS_H
#define FL_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

/* Most descriptors one message carries. */
#define FL_FDPASS_MAX 72

/* Sends len bytes as one message with n_fds (at most FL_FDPASS_MAX) descriptors attached;
 * MSG_NOSIGNAL, retried on EINTR. Returns 0, -errno, or FL_EIO on a short send. */
int fl_send_fds(int sock, const void *data, size_t len, const int *fds, int n_fds);

/* Receives one message of at most size bytes. Up to max_fds attached descriptors (opened
 * O_CLOEXEC) land in fds and *n_fds says how many; extra ones are closed. Returns the length, 0 at
 * end of stream, or -errno; a truncated message gives -EMSGSIZE with its descriptors closed. */
ssize_t fl_recv_fds(int sock, void *data, size_t size, int *fds, int max_fds, int *n_fds);

#endif
