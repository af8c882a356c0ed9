#!/usr/bin/env bash
# Resource faults: a PostgreSQL that stops answering after the handshake,
# during a backup or a migration (the connect stall is t7002). [backup]
# stall_timeout bounds how long pg_dump may write nothing and how long each
# row count may run:
#   pg_dump waits for a lock another session holds   exit 4 in ~stall_timeout,
#     (directory and custom formats)                  nothing kept, the lock holder
#                                                     untouched; the next backup works
#   the whole server frozen (SIGSTOP) mid-dump        exit 4 as above, cleanup does not
#                                                     hang on the frozen server
#   the server frozen after pg_dump, during the       exit 4: the count is cancelled, and a
#     row counts                                      server that does not answer the cancel
#                                                     is given up 5 s later
#   migrate, the server frozen mid-statement: Ctrl-C  the cancel cannot go through; a second
#                                                     Ctrl-C still ends opsctl within ~2 s
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/fault-lib.sh"
require_opsctl
pg_start
pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 20000) g;
	CREATE TABLE orders (id serial PRIMARY KEY, item int);
	INSERT INTO orders (item) SELECT g FROM generate_series(1, 1000) g;" >/dev/null || fail "seeding shop"
fp=$(pg_db_fingerprint shop)
# write_conf FILE [EXTRA BACKUP LINES]
write_conf() {
	local file=$1
	shift
	{
		printf '[app]\nname = shop\n\n[database]\nurl = %s\n\n' "$(pg_db_url shop)"
		printf '[backup]\ndir = backups\nkeep_last = 10\nmetrics_file = backup.prom\nstall_timeout = 2s\n'
		printf '%s\n' "$@"
	} >"$file"
}
write_conf shop.conf
og() { "$OPSCTL" -c "$TEST_SCRATCH/shop.conf" "$@"; }
# pg_signal SIG: the postmaster and every process it started
pg_signal() {
	local pm
	pm=$(head -n 1 "$TEST_PG_DATA/postmaster.pid")
	# shellcheck disable=SC2046  # one pid per word
	kill "-$1" "$pm" $(pgrep -P "$pm")
}
pg_freeze() { pg_signal STOP; }
pg_thaw() { pg_signal CONT; }
# lock_items: a session holds ACCESS EXCLUSIVE on items until lock_release
lock_items() {
	pg_dbsql shop "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);" >/dev/null 2>&1 &
	wait_for 10 lock_held || fail "the lock on items was never taken"
}
lock_held() {
	[ "$(pg_dbsql shop "SELECT count(*) FROM pg_locks WHERE relation = 'items'::regclass AND mode = 'AccessExclusiveLock' AND granted")" = 1 ]
}
lock_release() {
	pg_dbsql shop "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()" >/dev/null
	wait_for 10 lock_free || fail "the session holding the lock did not end"
}
lock_free() { ! lock_held; }
dump_waits() {
	[ "$(pg_dbsql shop "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'")" -ge 1 ]
}
no_dump_left() {
	[ "$(pg_dbsql shop "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('pg_dump', 'opsctl backup')")" = 0 ]
}

say "stall_timeout must be a duration above 0: exit 3, naming the line"
printf '[database]\nurl = %s\n\n[backup]\ndir = backups\nstall_timeout = 0\n' "$(pg_db_url shop)" >zero.conf
expect_exit 3 opsctl -c zero.conf backup
expect_grep "^opsctl: error: zero\.conf:6: stall_timeout must be more than 0$" err
expect_exit 0 og backup
before=$(backup_sets)

for format in directory custom; do
	say "pg_dump ($format) waits for a lock another session holds: exit 4 after stall_timeout, nothing kept"
	lock_items
	expect_exit 4 og backup --format "$format"
	expect_between 1900 9000 "a $format backup whose pg_dump waits for a lock"
	expect_grep "^opsctl: error: pg_dump wrote nothing for 2s \(stall_timeout of \[backup\]\): the database does not answer, or pg_dump waits for a lock another session holds$" err
	expect_grep "^hint: pg_locks and pg_stat_activity show who holds a lock" err
	expect_sets_kept "$before" "a $format backup that stalled"
	expect_grep '^opsctl_backup_success\{app="shop"\} 0$' backup.prom
	lock_held || fail "the session holding the lock was disturbed"
	TEST_CHECKS=$((TEST_CHECKS + 1))
	lock_release
	# its backend waited for the lock; given it, it finds pg_dump gone
	wait_for 10 no_dump_left || fail "pg_dump's sessions outlived the backup: $(pg_dbsql shop "SELECT application_name, state, wait_event FROM pg_stat_activity")"
done
say "with the lock released, the next backup works"
expect_exit 0 og backup
expect_grep '^opsctl_backup_success\{app="shop"\} 1$' backup.prom
before=$(backup_sets)

say "the whole server freezes while pg_dump runs: exit 4, and the cleanup does not hang on it"
lock_items
start=$(now_ms)
"$OPSCTL" -c "$TEST_SCRATCH/shop.conf" backup >out 2>err &
bpid=$!
wait_for 10 dump_waits || fail "pg_dump never waited for the lock"
pg_freeze
code=0
wait "$bpid" || code=$?
elapsed=$(($(now_ms) - start))
pg_thaw
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$code" = 4 ] || { show_file err err; fail "expected exit 4 from a backup against a frozen server, got $code"; }
[ "$elapsed" -ge 1900 ] && [ "$elapsed" -lt 15000 ] || fail "a backup against a frozen server took $elapsed ms"
expect_grep "^opsctl: error: pg_dump wrote nothing for 2s \(stall_timeout of \[backup\]\)" err
expect_sets_kept "$before" "a backup against a frozen server"
lock_release
wait_for 15 no_dump_left || fail "pg_dump's sessions outlived the backup"
[ "$(pg_db_fingerprint shop)" = "$fp" ] || fail "the data changed"
TEST_CHECKS=$((TEST_CHECKS + 1))

say "the server freezes after pg_dump, while the rows are counted: the count is given up"
# a pg_dump that freezes the server (and the backup's own session) once it has dumped
cat >freezing-pg_dump <<SH
#!/bin/sh
"$TEST_PG_BINDIR/pg_dump" "\$@"
rc=\$?
pm=\$(head -n 1 "$TEST_PG_DATA/postmaster.pid")
echo \$pm \$(pgrep -P \$pm) >"$TEST_SCRATCH/pg.pids"
kill -STOP \$(cat "$TEST_SCRATCH/pg.pids")
exit \$rc
SH
chmod +x freezing-pg_dump
write_conf freeze.conf "pg_dump = $TEST_SCRATCH/freezing-pg_dump"
start=$(now_ms)
code=0
"$OPSCTL" -c "$TEST_SCRATCH/freeze.conf" backup >out 2>err || code=$?
elapsed=$(($(now_ms) - start))
pg_thaw
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$code" = 4 ] || { show_file err err; fail "expected exit 4 from a backup whose counts stalled, got $code"; }
# 2 s for the count, 5 s for the cancel nobody answers
[ "$elapsed" -ge 6500 ] && [ "$elapsed" -lt 15000 ] || { show_file err err; fail "a backup whose counts stalled took $elapsed ms"; }
expect_grep "^opsctl: error: (listing the tables to count|counting the rows of public\.[a-z]+): query did not finish within 2s, and the database did not answer its cancel within 5s \(is the server frozen\?\)$" err
expect_grep "^hint: each query of the count has stall_timeout of \[backup\]" err
expect_sets_kept "$before" "a backup whose counts stalled"
wait_for 15 no_dump_left || fail "the backup's sessions outlived it"

say "the server answers again: the next backup works, and restores"
expect_exit 0 og backup
expect_exit 0 og backup verify
[ "$(backup_sets)" != "$before" ] || fail "no new set"
TEST_CHECKS=$((TEST_CHECKS + 1))

say "migrate: the server freezes mid-statement; Ctrl-C sends the cancel, and a second Ctrl-C ends opsctl"
mkdir migrations
printf 'SELECT pg_sleep(120);\n' >migrations/001_slow.sql
printf '[database]\nurl = %s\n\n[migrations]\ndir = migrations\n' "$(pg_db_url shop)" >mig.conf
slow_runs() {
	[ "$(pg_dbsql shop "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'")" = 1 ]
}
"$OPSCTL" -c "$TEST_SCRATCH/mig.conf" migrate >mig.out 2>mig.err &
mpid=$!
wait_for 20 slow_runs || fail "the slow migration never ran"
pg_freeze
start=$(now_ms)
kill -INT "$mpid"
sleep 0.3
kill -INT "$mpid"
# the cancel cannot reach a frozen server; the handler waits for it 2 s at
# most, then the second Ctrl-C takes effect
wait_for 6 sh -c '! kill -0 "$0" 2>/dev/null' "$mpid" || { pg_thaw; fail "opsctl migrate did not end on a second Ctrl-C against a frozen server"; }
elapsed=$(($(now_ms) - start))
code=0
wait "$mpid" || code=$?
pg_thaw
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$code" = 130 ] || fail "expected opsctl to end by SIGINT (130), got $code"
[ "$elapsed" -lt 5000 ] || fail "a second Ctrl-C took $elapsed ms to end opsctl"
pg_dbsql shop "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%'" >/dev/null
test_done
