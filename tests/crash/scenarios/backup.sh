# shellcheck shell=bash
# Crash scenario: `opsctl backup` (create, directory format, zstd, a files
# archive, keep_last = 3 so the retention runs too), signalled at a random
# moment. The pg_dump a killed opsctl started may outlive it.
# Recovery (opsctl-backup(1), "The manifest"): the next `opsctl backup`; it
# removes the .tmp-* (and .trash-*, .restore-*) left behind, holding the
# lock. Invariants: right after the signal, every listed set passes
# `backup verify ID` (a killed run leaves nothing listed); after the next
# create, every listed set verifies, no work directory is left, at most
# keep_last sets; no opsctl lock held; history.jsonl parses.
. "$CRASH_DIR/lib/backup-common.bash"

CRASH_WINDOW_MS=550

crash_setup() {
	pg_start || return 1
	bk_seed_db 40000
	mkdir -p data/sub
	head -c 3000000 /dev/urandom >data/blob.bin
	printf 'hello\n' >data/sub/a.txt
	cat >opsctl.conf <<-CONF
	[app]
	name = shop

	[database]
	url = $(pg_db_url shop)

	[backup]
	dir = backups
	paths = $TEST_SCRATCH/data
	keep_last = 3
	CONF
	expect_exit 0 ob backup
}

crash_prepare() {
	# new data for the set, and a new second for its id
	pg_dbsql shop "INSERT INTO ticks (trial) VALUES ($CRASH_TRIAL)" >/dev/null || fail "insert tick"
	printf '%s\n' "$CRASH_TRIAL" >data/sub/trial.txt
	sleep 1
}

crash_run() {
	exec "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" backup
}

crash_recover() {
	local left
	# the sets as the signal left them: whatever is listed verifies
	local id
	for id in $(bk_local_ids); do
		ob backup verify "$id" >verify.out 2>&1 ||
			fail "after SIG$1 (exit $2): listed set $id fails verify: $(tr '\n' ' ' <verify.out)"
	done
	# exit 10: "interrupted (SIGINT, SIGTERM) and cleaned up: the work
	# directory is removed" (opsctl-backup(1), EXIT STATUS)
	if [ "$2" = 10 ]; then
		left=$(cd backups && ls -A | grep -E '^\.tmp-' | tr '\n' ' ')
		[ -z "$left" ] || fail "after SIG$1, exit 10 (cleaned up), a work directory is left: $left"
	fi
	case $2 in
	0 | 10 | 130 | 137 | 143) ;;
	*) fail "after SIG$1: unexpected exit $2"; show_file stderr "$CRASH_RUN_ERR" ;;
	esac
	sleep 1 # a new id
	expect_exit 0 ob --lock-wait 60s backup
}

crash_check() {
	bk_check_local
	[ "${BK_LOCAL_COUNT:-0}" -le 3 ] || fail "$BK_LOCAL_COUNT sets listed, keep_last is 3"
	crash_check_locks
	crash_check_history
}
