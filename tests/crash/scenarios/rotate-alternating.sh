# shellcheck shell=bash
# Crash scenario: `opsctl rotate-secret db` with kind = postgres-password and
# strategy = alternating (two login roles members of the owner; each
# rotation sets the inactive role's password and moves DB_USER/DB_PASSWORD
# to it). Signals, recovery and invariants as rotate-postgres.sh.
SC_STRATEGY=alternating
. "$CRASH_DIR/scenarios/rotate-postgres.sh"
