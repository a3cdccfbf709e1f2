/* Clocks. Wall time in ms is what BullMQ and the store record; the monotonic clock measures
 * durations and deadlines, which must not jump when the wall clock is set. */
#ifndef FL_TIME_H
#define FL_TIME_H

#include <stdint.h>
#include <stddef.h>

int64_t fl_now_ms(void);   /* wall clock, ms since the epoch */
int64_t fl_mono_us(void);  /* monotonic, µs */
int64_t fl_mono_ms(void);  /* monotonic, ms */
void fl_sleep_ms(int64_t ms);

/* Formats ms since the epoch as ISO 8601 UTC with milliseconds, "2026-11-28T12:00:00.000Z",
 * into out (at least 25 bytes). Returns out. */
char *fl_iso8601(int64_t ms, char *out, size_t size);
/* Parses an ISO 8601 date or date-time (with Z or ±hh:mm, optional fraction) into ms since the
 * epoch. Returns 0, or FL_EINVAL when s is not such a time. */
int fl_parse_iso8601(const char *s, int64_t *ms);

#endif
