/* Time as opsctl needs it: a monotonic clock for deadlines, sleeping, and
 * UTC timestamps for people and JSON. */
#ifndef OPSCTL_CLOCK_H
#define OPSCTL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock: for deadlines and durations only. */
int64_t clock_now_ms(void);
/* Sleeps; a signal ends the sleep early (callers re-check their stop flag). */
void clock_sleep_ms(int64_t ms);
/* "2026-11-21T22:17:34Z" into out (at least 21 bytes). */
void clock_rfc3339(char out[32], time_t t);

/* "user" (or the uid) and the host name, for lock notes, history and
 * applied_by. */
void clock_whoami(char *user, size_t user_len, char *host, size_t host_len);

#endif
