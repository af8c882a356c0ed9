#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Ctrl-C (SIGINT) or SIGTERM during a long offsite transfer stops it within
# a second or two instead of letting it run to the end: `opsctl backup`
# interrupted in its upload exits 10 with the local set complete and listed,
# says the upload resumes, keeps the multipart state, and the next `backup
# upload` sends only the parts that were missing; `restore ID` interrupted
# while it downloads a set exits 10 with nothing of the download left and
# the database untouched.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/offsite-lib.sh"
require_opsctl
pg_start
s3_start backups

offsite_setup minio

# bg_signal SIG NAME: the background run BG_PID gets SIG; it must end within
# 3 s with exit 10 and no sanitizer report
bg_signal() {
	local code=0 start
	start=$(now_ms)
	kill "-$1" "$BG_PID"
	wait "$BG_PID" || code=$?
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$code" = 10 ] || { show_file "$2.err" "$2.err"; fail "$2: expected exit 10 after SIG$1, got $code"; }
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ $(($(now_ms) - start)) -lt 3000 ] || fail "$2: took $(($(now_ms) - start)) ms to stop after SIG$1"
	expect_no_grep 'AddressSanitizer|LeakSanitizer|runtime error:' "$2.err"
}

say "SIGINT during the upload: exit 10, the set kept, the upload resumed later"
"$OPSCTL" -c opsctl.conf backup --limit-rate 4M >up.out 2>up.err </dev/null &
BG_PID=$!
wait_for 40 parts_recorded 1 || { show_file up.err up.err; fail "no part recorded within 40 s"; }
state=$(state_file)
id=$(basename "$(dirname "$state")")
bg_signal INT up
expect_grep "^opsctl: error: backup '$id' is complete here, but its upload to 'minio' failed: .*interrupted" up.err
expect_grep "^hint: the local set is intact; the next 'opsctl backup' uploads it again" up.err
[ -f "$state" ] || fail "the interrupted upload's state is gone: it cannot resume"
done_parts=$(state_parts "$state")
expect_exit 0 ob backup verify "$id"
expect_exit 0 ob backup list --remote
expect_no_grep "^$id " out
s3_wait_quiet
mark=$(log_lines)
expect_exit 0 ob backup upload
expect_grep "^uploaded $id to 'minio' \(.*, resumed\)$" err
expect_parts_not_resent "$mark" "$done_parts"
expect_exit 0 ob backup verify --remote --deep "$id"

say "SIGTERM while restore downloads the set: exit 10, nothing left, the database untouched"
before=$(pg_db_fingerprint shop)
mv "backups/$id" away
# the download, slowed down by a proxy that passes 1 MiB of each GET and then stalls
stall_start() { # the tests' stall.py in proxy mode before s3rver
	"$TEST_PYTHON" "$TEST_LIB_DIR/stall.py" --port-file stall.port --mode proxy --upstream "127.0.0.1:$S3_PORT" \
		--match '^GET .*files\.tar\.zst' --after 1048576 --parent-pid $$ --max-seconds 120 --log stall.log \
		</dev/null >/dev/null 2>stall.err &
	wait_for 10 test -s stall.port || fail "stall.py did not start"
}
stall_start
sed "s|^endpoint = .*|endpoint = http://127.0.0.1:$(cat stall.port)|" opsctl.conf >slow.conf
"$OPSCTL" -c slow.conf --yes restore "$id" >rs.out 2>rs.err </dev/null &
BG_PID=$!
wait_for 30 grep -q ' stall ' stall.log || { show_file rs.err rs.err; fail "the download never reached the stall"; }
bg_signal TERM rs
expect_grep 'interrupted' rs.err
[ -z "$(ls -A backups 2>/dev/null | grep -v '^\.lock$')" ] || fail "the interrupted download left $(ls -A backups)"
[ "$(pg_db_fingerprint shop)" = "$before" ] || fail "the interrupted restore changed the database"
expect_databases "shop%" shop
mv away "backups/$id"

test_done
