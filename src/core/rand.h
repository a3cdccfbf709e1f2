/* Randomness from the kernel (getrandom): run ids, lock tokens, secrets. */
#ifndef FL_RAND_H
#define FL_RAND_H

#include <stddef.h>

void fl_random_bytes(void *out, size_t len);
/* 21 random alphanumeric characters plus NUL into out[22]; never all digits, because BullMQ
 * rejects numeric custom ids. */
void fl_random_id(char out[22]);
/* An RFC 4122 version 4 UUID, lowercase, plus NUL into out[37]. */
void fl_uuid4(char out[37]);
/* len random bytes as lowercase hex plus NUL into out[2*len+1]. */
void fl_random_hex(char *out, size_t len);

#endif
