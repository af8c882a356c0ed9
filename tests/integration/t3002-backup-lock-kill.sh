#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# backup under cron (DESIGN.md sections 5 and 6, issue 4): the flock(2) lock
# (a second concurrent run exits 75 naming the holder's pid; --lock-wait
# queues it; prune and restore respect the same lock), and kill -9 in the
# middle of a backup (no listed backup, the lock released by the kernel, the
# next run works and removes the .tmp-* left behind, which is never listed).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "CREATE TABLE items AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v
	FROM generate_series(1, 5000) g" >/dev/null || fail "seeding shop"

# pg_dump slowed down: it waits for SLOW_SECONDS before dumping, and with
# SLOW_AFTER_BYTES stalls in the middle of the stream (after that many bytes)
cat >slow_pg_dump <<EOF
#!/bin/bash
echo \$\$ >"$TEST_SCRATCH/slow.pid"
sleep "\${SLOW_SECONDS:-0}"
if [ -n "\${SLOW_AFTER_BYTES:-}" ]; then
	"$TEST_PG_BINDIR/pg_dump" "\$@" | { head -c "\$SLOW_AFTER_BYTES"; touch "$TEST_SCRATCH/stalled"; sleep 60; cat; }
	exit "\${PIPESTATUS[0]}"
fi
exec "$TEST_PG_BINDIR/pg_dump" "\$@"
EOF
chmod +x slow_pg_dump
mkdir metrics
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url shop)

[backup]
dir = backups
pg_dump = $TEST_SCRATCH/slow_pg_dump
keep_last = 10
metrics_file = metrics/backup.prom
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
lockfile=$OPSCTL_STATE_DIR/locks/backup.lock
hf=$OPSCTL_STATE_DIR/history.jsonl
sets() { ls backups 2>/dev/null | grep -c '^shop-'; }
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
note_pid() { sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$lockfile" 2>/dev/null; }
holds_lock() { [ "$(note_pid)" = "$1" ]; }

expect_exit 0 ob backup
[ "$(sets)" -eq 1 ] || fail "the first backup did not make a set"
metrics_before=$(cat metrics/backup.prom)

# ---- a second run while the first one works: 75, naming the holder -------------------
SLOW_SECONDS=5 "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" backup >first.out 2>first.err </dev/null &
first=$!
wait_for 20 holds_lock "$first" || fail "the first run never took the lock"
expect_exit 75 ob backup
expect_faster 3000
expect_grep "lock 'backup' is held by pid $first \(opsctl backup\)" err
expect_grep 'since [0-9]{4}-[0-9]{2}-[0-9]{2}T' err
expect_grep 'hint: .*--lock-wait' err
[ ! -s out ] || fail "a refused run printed on stdout"
expect_exit 75 ob -q backup
expect_grep "pid $first" err
expect_exit 75 ob --output json backup
expect_json out 'd["exit"] == 75 and "pid '"$first"'" in d["error"]["message"] and "id" not in d'
# prune and restore wait for the same lock
expect_exit 75 ob backup prune
expect_grep "pid $first" err
expect_exit 75 ob --yes restore latest
expect_grep "pid $first" err
expect_databases 'shop%' shop
# a refused run changes nothing: no set, no history line, the metrics as they were
[ "$(cat metrics/backup.prom)" = "$metrics_before" ] || fail "a run refused by the lock rewrote the metrics file"
[ "$(grep -c '"exit":75' "$hf")" -eq 0 ] || fail "a run refused by the lock wrote a history line"
[ -z "$(ls -A backups | grep -v '^shop-' | grep -v "^\.tmp-shop-")" ] || fail "stray files in backups/: $(ls -A backups)"

# --lock-wait: queues behind the first and succeeds
start=$(now_ms)
"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --lock-wait 30s backup >second.out 2>second.err </dev/null &
second=$!
check_bg first "$first" 0
check_bg second "$second" 0
elapsed=$(($(now_ms) - start))
expect_grep '^shop-[0-9]{8}T[0-9]{6}Z(-[0-9]+)?  ' first.out second.out
[ "$(sets)" -eq 3 ] || fail "expected 3 sets after the queued run, have $(sets)"
[ "$elapsed" -ge 2500 ] || fail "the queued run finished in $elapsed ms: it did not wait for the first"
# the two ran one after the other: the queued one started after the first finished
first_id=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' first.out)
second_id=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' second.out)
[ -n "$first_id" ] && [ -n "$second_id" ] && [ "$first_id" != "$second_id" ] || fail "ids: '$first_id' '$second_id'"
"$TEST_PYTHON" -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
sys.exit(0 if b["started_at"] >= a["finished_at"] else 1)' "backups/$first_id/manifest.json" "backups/$second_id/manifest.json" ||
	fail "the queued backup started before the first one finished"
# --lock-wait with too short a wait: 75 after about that long
SLOW_SECONDS=4 "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" backup >third.out 2>third.err </dev/null &
third=$!
wait_for 20 holds_lock "$third" || fail "the third run never took the lock"
expect_exit 75 ob --lock-wait 1s backup
expect_slower 900
expect_faster 3500
check_bg third "$third" 0
[ "$(sets)" -eq 4 ] || fail "expected 4 sets, have $(sets)"

# ---- kill -9 in the middle of a backup ----------------------------------------------------
before=$(ls backups | sort)
ok_time=$(sed -n 's/^opsctl_backup_last_success_timestamp_seconds{app="shop"} //p' metrics/backup.prom)
rm -f stalled
SLOW_AFTER_BYTES=60000 setsid "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" backup --compression none \
	>killed.out 2>killed.err </dev/null &
victim=$!
wait_for 20 test -e stalled || fail "the dump never got going"
tmpdir=$(ls -d backups/.tmp-* 2>/dev/null | head -n 1)
[ -n "$tmpdir" ] || fail "no .tmp-* directory while the backup runs"
[ "$(stat -c %s "$tmpdir"/db.dump 2>/dev/null || echo 0)" -ge 60000 ] || say "note: the partial dump is $(stat -c %s "$tmpdir"/db.dump 2>/dev/null) bytes"
{ kill -9 "$victim"; wait "$victim"; } 2>/dev/null
# the rest of its process group (our slow pg_dump wrapper) goes too
kill -9 -- "-$victim" 2>/dev/null
# nothing new is listed
expect_exit 0 ob backup list
[ "$(grep -c '^shop-' out)" -eq 4 ] || fail "after kill -9: backup list shows $(grep -c '^shop-' out) sets, expected 4"
expect_no_grep '\.tmp' out err
expect_exit 0 ob --output json backup list
expect_json out 'len(d["backups"]) == 4 and not any(b["id"].startswith(".") for b in d["backups"])'
[ "$(ls backups | sort)" = "$before" ] || fail "after kill -9: the visible sets changed"
expect_exit 2 ob backup verify "$(basename "$tmpdir")"
expect_exit 2 ob --yes restore "$(basename "$tmpdir")"
leftover=$(ls -d backups/.tmp-* 2>/dev/null)
[ -n "$leftover" ] && say "after kill -9 the partial set stays as $leftover (not listed)"
# the lock died with the process: the next run works at once (and prunes nothing it should keep)
expect_exit 0 ob backup
expect_faster 20000
new_id=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
[ -f "backups/$new_id/manifest.json" ] || fail "the run after kill -9 made no set"
expect_exit 0 ob backup verify "$new_id"
[ "$(sets)" -eq 5 ] || fail "expected 5 sets after the run that followed kill -9, have $(sets)"
expect_grep '^opsctl_backup_success\{app="shop"\} 1$' metrics/backup.prom
new_time=$(sed -n 's/^opsctl_backup_last_success_timestamp_seconds{app="shop"} //p' metrics/backup.prom)
[ "$new_time" -ge "$ok_time" ] || fail "last success time went back: $new_time < $ok_time"
# the next run (holding the lock) removed the killed run's .tmp-*
TEST_CHECKS=$((TEST_CHECKS + 1))
! ls -d backups/.tmp-* >/dev/null 2>&1 ||
	fail "the .tmp-* directory of the killed backup is still there after the next successful run: $(ls -d backups/.tmp-*)"
expect_exit 0 ob backup prune
expect_exit 0 ob backup list
expect_no_grep '\.tmp' out err

test_done
