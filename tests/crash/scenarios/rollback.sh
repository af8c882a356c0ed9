# shellcheck shell=bash
# Crash scenario: `opsctl rollback` (symlink strategy: back to the release
# that served before the current one, so successive rollbacks alternate
# between the two newest releases; every tenth trial deploys a new release
# first, unsignalled), with the demo service restarted and health-gated.
# Signalled at a random moment, then the documented recovery: `opsctl deploy
# status` finishes a killed rollback from its journal (its target switched
# to, restarted and gated). Invariants as deploy-symlink: current and every
# release complete, the service runs current's release and is healthy, no
# journal, staging or trash left, the schema consistent, no lock held,
# history.jsonl parses.
. "$CRASH_DIR/scenarios/deploy-symlink.sh"

CRASH_WINDOW_MS=330

crash_setup() {
	dc_symlink_setup || return 1
	dc_migration 1001
	dc_release v1
	expect_exit 0 opsctl deploy v1.tar.gz
}

crash_prepare() {
	[ $((CRASH_TRIAL % 10)) = 0 ] || return 0
	dc_migration $((2000 + CRASH_TRIAL))
	dc_release "w$CRASH_TRIAL"
	expect_exit 0 opsctl deploy "w$CRASH_TRIAL.tar.gz"
}

crash_run() {
	exec "$OPSCTL" rollback --reason "crash trial $CRASH_TRIAL"
}

crash_recover() {
	local ok
	case $1 in
	KILL) ok=",0,137," ;;
	TERM) ok=",0,143," ;;   # a rollback is the way back: it goes on (143: before the handler)
	INT) ok=",0,130," ;;
	esac
	case $ok in *",$2,"*) ;; *) fail "SIG$1 after ${CRASH_DELAY_MS} ms: rollback exited $2 (expected one of ${ok//,/ })" ;; esac
	expect_exit 0 opsctl deploy status
	cp out recover.out
	cp err recover.err
}
