# shellcheck shell=bash
# Crash scenario: `opsctl --yes rollback --schema 1` undoing 005-002 (see
# tests/crash/lib/migrate-common.bash), signalled at a random moment.
# Recovery (opsctl-rollback(1), opsctl-migrate(1) "Undoing"): run the same
# rollback again; each down file and its row deletion are one transaction, so
# the rerun undoes what is left. The down file of the no-transaction 003 runs
# outside a transaction (only the row's deletion is one), so a signal in it
# leaves 003 recorded with one of its two indexes dropped; the rerun runs
# that down file again from its first statement (hence its IF EXISTS).
# Invariants: right after the signal (once the killed run's sessions are
# gone; 003 may be partly undone, counted in the notes) and after the rerun,
# schema_migrations matches the schema; afterwards only 001 is applied, nothing of 002-005
# remains, no progress row, no advisory lock, validate clean, no opsctl lock
# held, history.jsonl parses.
. "$CRASH_DIR/lib/migrate-common.bash"

CRASH_WINDOW_MS=550

crash_setup() {
	mig_setup
}

crash_prepare() {
	expect_exit 0 om --lock-wait 60s migrate
}

crash_run() {
	exec "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --yes rollback --schema 1
}

crash_recover() {
	mig_wait_sessions
	mig_check_consistent "after SIG$1 (exit $2), before the rerun" undo
	expect_exit 0 om --yes rollback --schema 1
}

crash_check() {
	mig_check_final "001"
	CRASH_NOTE="undos of the no-transaction 003 cut part way (recorded, one index dropped; the rerun finished them): $MIG_PARTIAL_UNDOS"
}
