/* Monotonic deadlines, sleeps, UTC timestamps and who-is-running-this. */
#include "system/clock.h"
#include "base/strbuf.h"

#include <pwd.h>
#include <stdio.h>
#include <unistd.h>

int64_t clock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_sleep_ms(int64_t ms)
{
	struct timespec ts;
	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

void clock_rfc3339(char out[32], time_t t)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void clock_whoami(char *user, size_t user_len, char *host, size_t host_len)
{
	struct passwd *pw = getpwuid(geteuid());
	if (user && user_len) {
		if (pw)
			strlcpy_s(user, pw->pw_name, user_len);
		else
			snprintf(user, user_len, "%u", (unsigned)geteuid());
	}
	if (host && host_len) {
		host[0] = '\0';
		if (gethostname(host, host_len - 1) < 0)
			strlcpy_s(host, "localhost", host_len);
		host[host_len - 1] = '\0';
	}
}
