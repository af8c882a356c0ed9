#!/usr/bin/env bash
# Ctrl-C and SIGTERM during migrate, migrate down and deploy's migrate step:
# the first signal cancels the running statement on the server (as psql
# does) instead of leaving it running, holding its locks, until the server
# notices the closed connection. The run stops with exit 10 and says what
# state it left: a transactional migration rolled back (nothing of it, no
# row), a no-transaction file's progress kept (the rerun resumes), a down
# file not undone; the advisory lock is released; a run waiting for the lock
# stops at once. Each signal is sent while the server is running the
# migration's pg_sleep (seen in pg_stat_activity), so opsctl is past its
# exec and past installing its handlers.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

sleeping() { # a backend of opsctl is in pg_sleep
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%' AND query LIKE '%pg_sleep%' AND state = 'active'")" != 0 ]
}
no_opsctl_query() { # no backend of opsctl runs a statement any more
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%' AND state = 'active'")" = 0 ]
}
# start_bg NAME CMD...: runs CMD in the background, output in NAME.out/.err
start_bg() {
	local name=$1
	shift
	"$@" >"$name.out" 2>"$name.err" </dev/null &
	BG_PID=$!
}
# finish_bg NAME WANT MAX_MS: the background run exits WANT within MAX_MS of
# the signal, with no sanitizer report
finish_bg() {
	local code=0 took
	wait "$BG_PID" || code=$?
	took=$(($(now_ms) - SIG_AT))
	TEST_CHECKS=$((TEST_CHECKS + 1))
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$1.err"; then
		show_file "$1.err" "$1.err"
		fail "sanitizer report from background run $1"
	fi
	[ "$code" = "$2" ] || {
		show_file "$1.out" "$1.out"
		show_file "$1.err" "$1.err"
		fail "background run $1: expected exit $2, got $code"
	}
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$took" -lt "$3" ] || fail "background run $1 took $took ms after the signal (limit $3 ms)"
}
signal_when_sleeping() { # SIG
	wait_for 30 sleeping || {
		show_file err "$(ls -- *.err | tail -n 1)"
		fail "opsctl never reached its pg_sleep"
	}
	SIG_AT=$(now_ms)
	kill "-$1" "$BG_PID"
}

mkdir -p migrations/rollback state
cat >opsctl.conf <<CONF
[app]
name = interrupt
state_dir = state

[database]
url = $TEST_PG_URL

[migrations]
dir = migrations
CONF

cat >migrations/001_accounts.sql <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 500) g;
SQL
echo 'DROP TABLE accounts;' >migrations/rollback/001_accounts.down.sql
expect_exit 0 opsctl -c opsctl.conf migrate
expect_applied 001

# ---- a transactional migration: SIGINT in its slow statement ---------------
# It holds an ACCESS EXCLUSIVE lock on accounts; without the cancel, the
# statement would go on (and readers of accounts would wait) for 60 s.
cat >migrations/002_ledger.sql <<'SQL'
CREATE TABLE ledger (id int PRIMARY KEY, account int REFERENCES accounts, amount int);
UPDATE accounts SET balance = balance - 1;
LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;
SELECT pg_sleep(60);
INSERT INTO ledger VALUES (1, 1, -1);
SQL
echo 'DROP TABLE ledger;' >migrations/rollback/002_ledger.down.sql
start_bg up "$OPSCTL" -c opsctl.conf migrate
signal_when_sleeping INT
finish_bg up 10 5000
expect_grep '002_ledger\.sql:4: interrupted by signal 2; the statement was cancelled' up.err
expect_grep 'nothing of 002_ledger\.sql was applied' up.err
expect_grep "opsctl migrate' applies it" up.err
# nothing of it stayed: no table, no row, balances as they were, no lock held
expect_applied 001
expect_sql "SELECT to_regclass('ledger') IS NULL" t
expect_sql "SELECT sum(balance) FROM accounts" 50000
expect_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'" 0
wait_for 5 no_opsctl_query || fail "a statement of the interrupted run still runs on the server"
# a reader of accounts is not kept waiting
expect_exit 0 env PGOPTIONS='-c lock_timeout=2s' "$TEST_PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
	-h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -c 'SELECT count(*) FROM accounts'
# the history has the run, exit 10
expect_grep '"command":"migrate up".*"exit":10' state/history.jsonl
# the rerun (the sleep taken out: the file was never applied) applies it
sed -i 's/SELECT pg_sleep(60);/SELECT 1;/' migrations/002_ledger.sql
expect_exit 0 opsctl -c opsctl.conf migrate
expect_applied 001,002
expect_sql "SELECT sum(balance), (SELECT count(*) FROM ledger) FROM accounts" "49500|1"

# ---- the same with SIGTERM, as JSON ----------------------------------------
printf 'CREATE TABLE audit (id int);\nSELECT pg_sleep(60);\n' >migrations/003_audit.sql
echo 'DROP TABLE audit;' >migrations/rollback/003_audit.down.sql
start_bg upj "$OPSCTL" -c opsctl.conf --output json migrate
signal_when_sleeping TERM
finish_bg upj 10 5000
expect_json upj.out 'd["exit"] == 10'
expect_json upj.out '"interrupted by signal 15" in d["error"]["message"] and d["applied"] == []'
expect_applied 001,002
expect_sql "SELECT to_regclass('audit') IS NULL" t
sed -i 's/SELECT pg_sleep(60);/SELECT 1;/' migrations/003_audit.sql

# ---- a no-transaction file: its progress is kept, the rerun resumes --------
cat >migrations/004_indexes.sql <<'SQL'
-- opsctl:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_balance_idx ON accounts (balance);
SELECT pg_sleep(60);
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_account_idx ON ledger (account);
SQL
start_bg notx "$OPSCTL" -c opsctl.conf migrate
signal_when_sleeping INT
finish_bg notx 10 5000
expect_grep 'applied 003_audit\.sql' notx.out
expect_grep '004_indexes\.sql:3: interrupted by signal 2; the statement was cancelled' notx.err
expect_grep 'statement 2 of 3 was cancelled; statement 1 ran and is committed' notx.err
expect_grep "resumes at statement 2" notx.err
expect_applied 001,002,003
expect_exit 0 opsctl -c opsctl.conf migrate status
expect_grep 'partial 1/3' out
expect_sql "SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_balance_idx'" 1
# statement 2 never ran, so it may change; the rerun starts there
sed -i 's/SELECT pg_sleep(60);/SELECT 1;/' migrations/004_indexes.sql
expect_exit 0 opsctl -c opsctl.conf migrate
expect_applied 001,002,003,004
expect_sql "SELECT count(*) FROM pg_indexes WHERE indexname IN ('accounts_balance_idx', 'ledger_account_idx')" 2

# ---- migrate down: the down file is not undone -----------------------------
printf 'SELECT pg_sleep(60);\nDROP TABLE audit;\n' >migrations/rollback/003_audit.down.sql
printf 'DROP INDEX IF EXISTS accounts_balance_idx;\nDROP INDEX IF EXISTS ledger_account_idx;\n' \
	>migrations/rollback/004_indexes.down.sql
start_bg down "$OPSCTL" -c opsctl.conf --yes rollback --schema 002
signal_when_sleeping INT
finish_bg down 10 5000
expect_grep 'undid 004_indexes\.sql' down.out
expect_grep '003_audit\.down\.sql:1: interrupted by signal 2; the statement was cancelled' down.err
expect_grep '003_audit\.sql was not undone' down.err
expect_applied 001,002,003
expect_sql "SELECT to_regclass('audit') IS NOT NULL" t
expect_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'" 0

# ---- waiting for the lock: a signal ends the wait at once ------------------
printf 'SELECT pg_sleep(60);\n' >migrations/rollback/003_audit.down.sql
start_bg holder "$OPSCTL" -c opsctl.conf --yes rollback --schema 002
wait_for 30 sleeping || fail "the lock holder never reached its pg_sleep"
holder=$BG_PID
two_sessions() {
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%'")" = 2 ]
}
start_bg waiter "$OPSCTL" -c opsctl.conf --lock-wait 60s migrate
wait_for 20 two_sessions || fail "the second run never connected"
sleep 0.5 # past its first try for the lock
SIG_AT=$(now_ms)
kill -INT "$BG_PID"
finish_bg waiter 10 3000
expect_grep 'interrupted by signal 2 while waiting for the lock of schema_migrations; nothing ran' waiter.err
BG_PID=$holder
SIG_AT=$(now_ms)
kill -TERM "$BG_PID"
finish_bg holder 10 5000
expect_grep 'interrupted by signal 15; the statement was cancelled' holder.err
expect_applied 001,002,003
expect_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'" 0

test_done
