/* Kernel randomness: see rand.h. */
#include "core/rand.h"
#include "core/assert.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

void fl_random_bytes(void *out, size_t len)
{
	uint8_t *p = out;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			FL_ASSERT(errno == EINTR);
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
}

void fl_random_id(char out[22])
{
	static const char alphabet[] =
		"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	uint8_t raw[21];
	int letters;
	do {
		letters = 0;
		fl_random_bytes(raw, sizeof raw);
		for (int i = 0; i < 21; i++) {
			/* 248 = 4 * 62: rejecting the top bytes keeps the choice uniform. */
			while (raw[i] >= 248)
				fl_random_bytes(&raw[i], 1);
			out[i] = alphabet[raw[i] % 62];
			letters += raw[i] % 62 >= 10;
		}
	} while (!letters);
	out[21] = '\0';
}

void fl_uuid4(char out[37])
{
	uint8_t b[16];
	fl_random_bytes(b, sizeof b);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

void fl_random_hex(char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[64];
	size_t done = 0;
	while (done < len) {
		size_t n = len - done < sizeof b ? len - done : sizeof b;
		fl_random_bytes(b, n);
		for (size_t i = 0; i < n; i++) {
			out[2 * (done + i)] = hex[b[i] >> 4];
			out[2 * (done + i) + 1] = hex[b[i] & 15];
		}
		done += n;
	}
	out[2 * len] = '\0';
}
