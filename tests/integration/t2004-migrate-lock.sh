#!/usr/bin/env bash
# migrate's session advisory lock: a second run waits --lock-wait /
# [migrations] lock_timeout and exits 75 naming the holder (pid, application,
# since); four runs started at once apply 20 migrations exactly once; a run
# killed with -9 in the middle of a migration leaves nothing half-applied and
# a re-run finishes the job without duplicating anything.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD

newdb() {
	pg_psql "CREATE DATABASE $1" >/dev/null || fail "CREATE DATABASE $1"
	printf 'postgresql://postgres:%s@127.0.0.1:%s/%s' "$pw" "$TEST_PG_PORT" "$1"
}
dbsql() { # DB SQL
	"$TEST_PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d "$1" -c "$2"
}
expect_db() { # DB SQL EXPECTED
	TEST_CHECKS=$((TEST_CHECKS + 1))
	local got
	got=$(dbsql "$1" "$2" 2>&1)
	[ "$got" = "$3" ] || fail "SQL in $1: $2
    expected: $(printf '%s' "$3" | tr '\n' '/')
    got:      $(printf '%s' "$got" | tr '\n' '/')"
}
# no sanitizer report and the expected exit code from a background run
check_bg() { # NAME PID WANT
	local code=0
	wait "$2" || code=$?
	TEST_CHECKS=$((TEST_CHECKS + 1))
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$1.err"; then
		show_file "$1.err" "$1.err"
		fail "sanitizer report from background run $1"
	fi
	[ "$code" = "$3" ] || {
		show_file "$1.out" "$1.out"
		show_file "$1.err" "$1.err"
		fail "background run $1: expected exit $3, got $code"
	}
}
advisory_holder() { # DB: pid of the session holding an advisory lock there
	dbsql "$1" "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.granted AND d.datname = '$1'"
}
lock_held() {
	[ -n "$(advisory_holder "$1")" ]
}

# ---- a second run while the first is busy ----------------------------------
url=$(newdb locks)
mkdir -p lk
printf 'CREATE TABLE slow (id int);\nSELECT pg_sleep(4);\nINSERT INTO slow VALUES (1);\n' >lk/001_slow.sql
"$OPSCTL" --db "$url" migrate --dir lk >first.out 2>first.err </dev/null &
first=$!
wait_for 20 lock_held locks || fail "the first run never took the lock"
holder=$(advisory_holder locks)
key=$(dbsql locks "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $holder")
expect_db locks "SELECT application_name FROM pg_stat_activity WHERE pid = $holder" "opsctl migrate"
expect_exit 75 "$OPSCTL" --db "$url" --lock-wait 1s migrate --dir lk
expect_slower 1000
expect_faster 3000
expect_grep "pid $holder" err
expect_grep 'opsctl migrate' err
expect_grep 'since [0-9]{4}-[0-9]{2}-[0-9]{2}' err
expect_no_grep "$pw" out err
# the same as JSON
expect_exit 75 "$OPSCTL" --db "$url" --lock-wait 200ms --output json migrate --dir lk
expect_json out 'd["exit"] == 75 and "pid '"$holder"'" in d["error"]["message"]'
# status and validate need no lock
expect_exit 9 "$OPSCTL" --db "$url" migrate status --exit-code --dir lk
expect_faster 3000
check_bg first "$first" 0
expect_db locks "SELECT count(*) FROM slow" 1
expect_db locks "SELECT count(*) FROM schema_migrations" 1
# the lock is released at the end of a run
expect_db locks "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'" 0

# ---- a psql session holding the lock; [migrations] lock_timeout -------------
[ -n "$key" ] || fail "could not read the lock key"
PGAPPNAME=held-by-psql "$TEST_PG_BINDIR/psql" -X -q -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres \
	-d locks -c "SELECT pg_advisory_lock($key)" -c "SELECT pg_sleep(60)" >psql.out 2>&1 </dev/null &
psql_pid=$!
wait_for 20 lock_held locks || fail "the psql session did not take the lock"
psql_backend=$(advisory_holder locks)
cat >lock.conf <<CONF
[database]
url = $url

[migrations]
dir = lk
lock_timeout = 1500ms
CONF
printf 'CREATE TABLE second (id int);\n' >lk/002_second.sql
expect_exit 75 opsctl -c lock.conf migrate
expect_slower 1500
expect_faster 3500
expect_grep "pid $psql_backend" err
expect_grep 'held-by-psql' err
expect_db locks "SELECT to_regclass('second') IS NULL" t
expect_db locks "SELECT count(*) FROM schema_migrations" 1
# --lock-wait beats the config
expect_exit 75 opsctl -c lock.conf --lock-wait 300ms migrate
expect_faster 1400
# down and repair and baseline wait for the same lock
printf 'DROP TABLE slow;\n' >lk/001_slow.down.sql
mkdir -p lk/rollback && mv lk/001_slow.down.sql lk/rollback/
expect_exit 75 opsctl -c lock.conf --yes migrate down
expect_db locks "SELECT count(*) FROM slow" 1
expect_exit 75 opsctl -c lock.conf migrate repair
# the holder goes away: the run goes through
dbsql locks "SELECT pg_terminate_backend($psql_backend)" >/dev/null
wait "$psql_pid" 2>/dev/null
expect_exit 0 opsctl -c lock.conf migrate
expect_db locks "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations" "001,002"
# a holder that lets go while a run waits: the run gets it
PGAPPNAME=held-by-psql "$TEST_PG_BINDIR/psql" -X -q -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres \
	-d locks -c "SELECT pg_advisory_lock($key)" -c "SELECT pg_sleep(1.5)" >psql.out 2>&1 </dev/null &
psql_pid=$!
wait_for 20 lock_held locks || fail "the psql session did not take the lock"
printf 'CREATE TABLE third (id int);\n' >lk/003_third.sql
expect_exit 0 opsctl -c lock.conf --lock-wait 20s migrate
expect_slower 500
wait "$psql_pid"
expect_db locks "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations" "001,002,003"

# ---- four runs at once, 20 migrations ---------------------------------------
url=$(newdb race)
mkdir race
# 20 migrations, each inserting one row; the first also creates the table
printf 'CREATE TABLE hits (version text NOT NULL, backend int DEFAULT pg_backend_pid());\n' >race/001_m1.sql
for i in $(seq 1 20); do
	v=$(printf '%03d' "$i")
	printf "INSERT INTO hits (version) VALUES ('%s');\nSELECT pg_sleep(0.02);\n" "$v" >>"race/${v}_m$i.sql"
done
pids=()
for n in 1 2 3 4; do
	"$OPSCTL" --db "$url" migrate --dir race >"race$n.out" 2>"race$n.err" </dev/null &
	pids+=($!)
done
for n in 1 2 3 4; do
	check_bg "race$n" "${pids[$((n - 1))]}" 0
done
expect_db race "SELECT count(*) || ' ' || count(DISTINCT version) FROM schema_migrations" "20 20"
expect_db race "SELECT count(*) || ' ' || count(DISTINCT version) FROM hits" "20 20"
expect_db race "SELECT count(*) FROM (SELECT version FROM hits GROUP BY version HAVING count(*) <> 1) x" 0
[ "$(cat race1.out race2.out race3.out race4.out | grep -c '^applied ')" = 20 ] ||
	fail "the four runs reported $(cat race*.out | grep -c '^applied ') applied migrations, not 20"
expect_exit 0 "$OPSCTL" --db "$url" migrate status --exit-code --dir race

# ---- kill -9 in the middle of a long migration ------------------------------
url=$(newdb killed)
mkdir kill
printf 'CREATE TABLE k (id int);\nINSERT INTO k VALUES (1);\n' >kill/001_k.sql
printf 'INSERT INTO k VALUES (2);\nSELECT pg_sleep(3);\nINSERT INTO k VALUES (3);\n' >kill/002_slow.sql
printf 'INSERT INTO k VALUES (4);\n' >kill/003_after.sql
sleeping() {
	[ -n "$(dbsql killed "SELECT pid FROM pg_stat_activity WHERE datname = 'killed' AND query LIKE '%pg_sleep%' AND state = 'active' AND application_name = 'opsctl migrate'")" ]
}
"$OPSCTL" --db "$url" migrate --dir kill >kill1.out 2>kill1.err </dev/null &
victim=$!
wait_for 20 sleeping || fail "the run never reached pg_sleep"
kill -9 "$victim"
wait "$victim" 2>/dev/null
# 001 committed; 002 not (its first INSERT is invisible), 003 never started
expect_db killed "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations" "001"
expect_db killed "SELECT string_agg(id::text, ',' ORDER BY id) FROM k" "1"
expect_exit 9 "$OPSCTL" --db "$url" migrate status --exit-code --dir kill
expect_grep '^002 +slow +pending' out
# the re-run waits for the dead client's session to end, then applies 002 once
expect_exit 0 "$OPSCTL" --db "$url" migrate --dir kill
expect_grep '^applied 002_slow\.sql' out
expect_grep '^applied 003_after\.sql' out
expect_db killed "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations" "001,002,003"
expect_db killed "SELECT string_agg(id::text, ',' ORDER BY id) FROM k" "1,2,3,4"

# ... and in the middle of a no-transaction file: the statements before the
# kill stay committed and are not run again
cat >kill/004_notx.sql <<'SQL'
-- opsctl:no-transaction
INSERT INTO k VALUES (5);
SELECT pg_sleep(3);
INSERT INTO k VALUES (6);
SQL
"$OPSCTL" --db "$url" migrate --dir kill >kill2.out 2>kill2.err </dev/null &
victim=$!
wait_for 20 sleeping || fail "the run never reached pg_sleep"
kill -9 "$victim"
wait "$victim" 2>/dev/null
expect_db killed "SELECT string_agg(id::text, ',' ORDER BY id) FROM k" "1,2,3,4,5"
expect_exit 9 "$OPSCTL" --db "$url" migrate status --exit-code --dir kill
expect_grep '^004 +notx +partial 1/3' out
expect_exit 0 "$OPSCTL" --db "$url" migrate --dir kill
expect_db killed "SELECT string_agg(id::text, ',' ORDER BY id) FROM k" "1,2,3,4,5,6"
expect_db killed "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations" "001,002,003,004"
expect_exit 0 "$OPSCTL" --db "$url" migrate validate --dir kill

test_done
