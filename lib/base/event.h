/* What an engine tells its caller while it works (deploy, rotate-secret,
 * backup sources): one set of kinds for every engine, so cmd/ renders them
 * all the same way. */
#ifndef OPSCTL_EVENT_H
#define OPSCTL_EVENT_H

enum ops_event {
	OPS_EVENT_INFO,          /* progress notes, silenced by -q */
	OPS_EVENT_WARNING,
	OPS_EVENT_VERBOSE,       /* only with -v */
	OPS_EVENT_PROGRESS,      /* a line that redraws itself (a gate's rounds) */
	OPS_EVENT_PROGRESS_DONE, /* msg is "" */
	OPS_EVENT_ERROR,         /* a failure reported without stopping (a recovery, a revert step) */
	OPS_EVENT_HINT,          /* follows an ERROR */
};

#endif
