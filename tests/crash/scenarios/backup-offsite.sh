# shellcheck shell=bash
# Crash scenario: `opsctl backup` with [backup] offsite to s3rver (multipart,
# part_size 5M, concurrency 2, an 11 MB incompressible files archive sent
# with --limit-rate 8M: about 3.6 s, most of it the upload, against 0.9 s
# unlimited), signalled at a random moment.
# Recovery (opsctl-backup(1), OFFSITE STORAGE "Resuming", "A failed
# upload"): the next `opsctl backup` makes a new set and uploads, oldest
# first, every local set the remote retention keeps that has no offsite.json
# yet, resuming the one cut short. Invariants: right after the signal, every
# set `backup list --remote` lists passes `backup verify --remote ID` (the
# newest, the one the signal may have hit, with --deep: every byte against
# the checksums) and every local set passes `backup verify ID`; after the next create, the
# same, plus: every local set is on the storage (offsite.json), no work
# directory left, at most 3 sets each side; no opsctl lock held;
# history.jsonl parses.
. "$CRASH_DIR/lib/backup-common.bash"

CRASH_WINDOW_MS=4000

crash_setup() {
	pg_start || return 1
	s3_start backups || return 1
	bk_seed_db 20000
	mkdir -p data
	head -c 11000000 /dev/urandom >data/blob.bin
	printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
	cat >opsctl.conf <<-CONF
	[app]
	name = shop
	env_file = $TEST_SCRATCH/app.env

	[database]
	url = $(pg_db_url shop)

	[backup]
	dir = backups
	paths = $TEST_SCRATCH/data
	keep_last = 3
	remote_keep_last = 3
	offsite = minio

	[storage "minio"]
	type = s3
	endpoint = $S3_URL
	bucket = $S3_BUCKET
	prefix = crash
	region = us-east-1
	path_style = yes
	access_key_env = MINIO_ACCESS_KEY
	secret_key_env = MINIO_SECRET_KEY
	part_size = 5M
	concurrency = 2
	timeout = 10s
	CONF
	expect_exit 0 ob backup
}

crash_prepare() {
	pg_dbsql shop "INSERT INTO ticks (trial) VALUES ($CRASH_TRIAL)" >/dev/null || fail "insert tick"
	sleep 1
}

crash_run() {
	exec "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" backup --limit-rate 8M
}

bko_check_remote() { # WHEN [--deep]: every remote set passes verify --remote
	local id newest=1             # (the newest one, which a signal may have hit, --deep)
	for id in $(bk_remote_ids); do
		if [ -n "$newest" ] && [ "${2:-}" = --deep ]; then
			ob backup verify --remote --deep "$id" >verify.out 2>&1 ||
				fail "$1: remote set $id fails verify --remote --deep: $(tr '\n' ' ' <verify.out)"
		else
			ob backup verify --remote "$id" >verify.out 2>&1 ||
				fail "$1: remote set $id fails verify --remote: $(tr '\n' ' ' <verify.out)"
		fi
		newest=
	done
}

crash_recover() {
	local id left
	for id in $(bk_local_ids); do
		ob backup verify "$id" >verify.out 2>&1 ||
			fail "after SIG$1 (exit $2): local set $id fails verify: $(tr '\n' ' ' <verify.out)"
	done
	bko_check_remote "after SIG$1 (exit $2)" --deep
	# exit 10: "interrupted (SIGINT, SIGTERM) and cleaned up: the work
	# directory is removed" (opsctl-backup(1), EXIT STATUS)
	if [ "$2" = 10 ]; then
		left=$(cd backups && ls -A | grep -E '^\.tmp-' | tr '\n' ' ')
		[ -z "$left" ] || fail "after SIG$1, exit 10 (cleaned up), a work directory is left: $left"
	fi
	case $2 in
	0 | 4 | 10 | 130 | 137 | 143) ;;
	*) fail "after SIG$1: unexpected exit $2"; show_file stderr "$CRASH_RUN_ERR" ;;
	esac
	s3_wait_quiet
	sleep 1
	expect_exit 0 ob --lock-wait 60s backup
}

crash_check() {
	local id remote n=0
	bk_check_local
	[ "${BK_LOCAL_COUNT:-0}" -le 3 ] || fail "$BK_LOCAL_COUNT local sets, keep_last is 3"
	bko_check_remote "after the next create"
	remote=" $(bk_remote_ids | tr '\n' ' ') "
	for id in $(bk_local_ids); do
		[ -f "backups/$id/offsite.json" ] || fail "local set $id has no offsite.json after a successful create"
		case $remote in *" $id "*) ;; *) fail "local set $id is not listed on the storage" ;; esac
	done
	for id in $remote; do n=$((n + 1)); done
	[ "$n" -le 3 ] || fail "$n remote sets, remote_keep_last is 3"
	crash_check_locks
	crash_check_history
}
