# shellcheck shell=bash
# Crash scenario: `opsctl rotate-secret db`, kind = postgres-password,
# strategy single ($SC_STRATEGY = alternating: rotate-alternating.sh): the
# password set as a SCRAM verifier, tested on a fresh login, the env file
# written, the demo service (which logs in with the env file's DB_* on every
# health check) restarted and gated, state written, pending wiped. Signalled
# at a random moment (SIGTERM/SIGINT revert: exit 10), then the documented
# recovery: `opsctl rotate-secret --recover`.
# Invariants: the env file parses, holds DB_PASSWORD once, is as before byte
# for byte or rotated (only DB_PASSWORD, and DB_USER when alternating,
# changed; the state file names the new value); its credentials log in; the
# service runs with them and is healthy; no pending or temporary file; no
# lock held; history.jsonl parses.
. "$CRASH_DIR/lib/secret-common.bash"

CRASH_WINDOW_MS=480
SC_SECRET=db SC_KEY=DB_PASSWORD
SC_STRATEGY=${SC_STRATEGY:-single}
if [ "$SC_STRATEGY" = alternating ]; then SC_KEYS="DB_PASSWORD DB_USER"; else SC_KEYS=DB_PASSWORD; fi

crash_setup() {
	shop_setup shop_app
	demo_start app "$DEMO_PORT" rel
	{
		shop_config 10s
		printf '[secret "db"]\nenv = DB_PASSWORD\nkind = postgres-password\n'
		if [ "$SC_STRATEGY" = alternating ]; then
			printf 'strategy = alternating\nrole_a = shop_a\nrole_b = shop_b\nowner = shop_app\n'
		else
			printf 'role = shop_app\n'
		fi
	} >opsctl.conf
	export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
	if [ "$SC_STRATEGY" = alternating ]; then
		expect_exit 0 opsctl rotate-secret --setup db || return 1
	else
		expect_exit 0 opsctl rotate-secret db || return 1
	fi
	expect_login app.env "after the first rotation"
	sc_check_service $SC_KEYS
}

crash_prepare() { sc_prepare; }
crash_run() { sc_run; }
crash_recover() { sc_recover "$@"; }

crash_check() {
	sc_check_env
	expect_login app.env "the env file's credentials"
	sc_check_service $SC_KEYS
	wait_for 10 curl -fsS --max-time 3 -o /dev/null "$(demo_url /actuator/health)" ||
		fail "the demo service is not healthy (its database login): $(curl -sS --max-time 3 "$(demo_url /actuator/health)" 2>&1 | head -c 300)"
	crash_check_locks
	crash_check_history
}
