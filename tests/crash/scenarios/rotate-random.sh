# shellcheck shell=bash
# Crash scenario: `opsctl rotate-secret jwt`, kind = random with
# previous_env: pending file, env file written atomically, the demo service
# (which reads the env file at start) restarted and health-gated, state
# written, pending file wiped. Signalled at a random moment (SIGTERM/SIGINT
# revert: exit 10), then the documented recovery of a killed run:
# `opsctl rotate-secret --recover` (undone when the env file does not hold
# the new value yet, completed when it does).
# Invariants: the env file parses and holds JWT_SECRET once; it is either as
# before byte for byte or rotated (only JWT_SECRET and JWT_SECRET_PREVIOUS
# changed, the state file naming the new value and the old one as previous);
# the service runs with the env file's values; no pending or temporary file;
# no lock held; history.jsonl parses.
. "$CRASH_DIR/lib/secret-common.bash"

CRASH_WINDOW_MS=480
SC_SECRET=jwt SC_KEY=JWT_SECRET SC_KEYS="JWT_SECRET JWT_SECRET_PREVIOUS"

crash_setup() {
	DEMO_PORT=$(free_port)
	demo_release rel v1 "{\"env_file\": \"$TEST_SCRATCH/app.env\"}"
	printf '%s\n' '# demo app settings' 'export APP_NAME=demo' \
		'JWT_SECRET=jwt-old-value-0123456789abcdef # the signing key' 'OTHER=x=y' >app.env
	chmod 600 app.env
	cat >opsctl.conf <<-EOF2
	[app]
	name = demo
	env_file = app.env
	[service]
	restart = $DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/rel
	timeout = 20s
	[health]
	wait = 10s
	interval = 100ms
	consecutive = 2
	timeout = 2s
	[check "api"]
	url = http://127.0.0.1:$DEMO_PORT/actuator/health
	[secret "jwt"]
	env = JWT_SECRET
	previous_env = JWT_SECRET_PREVIOUS
	EOF2
	export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
	demo_start app "$DEMO_PORT" rel
	expect_exit 0 opsctl rotate-secret jwt || return 1
	sc_check_service JWT_SECRET JWT_SECRET_PREVIOUS
}

crash_prepare() { sc_prepare; }
crash_run() { sc_run; }
crash_recover() { sc_recover "$@"; }

crash_check() {
	sc_check_env
	sc_check_service JWT_SECRET JWT_SECRET_PREVIOUS
	crash_check_locks
	crash_check_history
}
