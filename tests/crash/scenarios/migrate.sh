# shellcheck shell=bash
# Crash scenario: `opsctl migrate` (up) applying 002-005 (see
# tests/crash/lib/migrate-common.bash), signalled at a random moment.
# Recovery (opsctl-migrate(1), "One transaction per migration", "Statements
# that cannot run in a transaction"): run `opsctl migrate` again; it waits for
# the killed session's advisory lock, finishes the work, resumes a partial
# no-transaction file. Invariants: right after the signal (once the killed
# run's sessions are gone) and after the rerun, schema_migrations matches the
# schema; after the rerun all of 001-005 are applied exactly once (2000 rows,
# valid indexes), no progress row, no advisory lock, validate clean, no
# opsctl lock held, history.jsonl parses.
. "$CRASH_DIR/lib/migrate-common.bash"

CRASH_WINDOW_MS=1000

crash_setup() {
	mig_setup
}

crash_prepare() {
	expect_exit 0 om --yes --lock-wait 60s rollback --schema 1
}

crash_run() {
	exec "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" migrate
}

crash_recover() {
	mig_wait_sessions
	mig_check_consistent "after SIG$1 (exit $2), before the rerun"
	expect_exit 0 om migrate
}

crash_check() {
	mig_check_final "001,002,003,004,005"
}
