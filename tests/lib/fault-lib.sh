# shellcheck shell=bash
# Helpers for the resource-fault tests (t70*): servers that stall
# (tests/lib/stall.py), small tmpfs mounts that fill up, and timing checks.

# stall_start MODE [ARGS...]: tests/lib/stall.py in MODE (silent, headers,
# proxy; ARGS go to it, e.g. --upstream 127.0.0.1:PORT --match 'GET /x'
# --after 1000 --count 1). Sets STALL_PORT STALL_URL STALL_PID STALL_LOG.
# Registered for cleanup like the test HTTP service.
STALL_RUNS=0
stall_start() {
	local mode=$1 portfile
	shift
	STALL_RUNS=$((STALL_RUNS + 1))
	portfile=$TEST_SCRATCH/stall-$STALL_RUNS.port
	STALL_LOG=$TEST_SCRATCH/stall-$STALL_RUNS.log
	: >"$STALL_LOG"
	"$TEST_PYTHON" "$TEST_LIB_DIR/stall.py" --port-file "$portfile" --mode "$mode" --parent-pid $$ \
		--max-seconds 900 --log "$STALL_LOG" "$@" </dev/null >/dev/null 2>"$TEST_SCRATCH/stall-$STALL_RUNS.err" &
	STALL_PID=$!
	test_register_server httpd "$STALL_PID"
	wait_for 30 test -s "$portfile" || {
		show_file stall.err "$TEST_SCRATCH/stall-$STALL_RUNS.err"
		fail "stall_start: stall.py did not start"
		return 1
	}
	STALL_PORT=$(cat "$portfile")
	STALL_URL="http://127.0.0.1:$STALL_PORT"
}

# stall_count WHAT: lines of STALL_LOG starting with WHAT (conn, request, stall).
stall_count() {
	grep -c " $1 " "$STALL_LOG" 2>/dev/null || true
}

# expect_between MIN_MS MAX_MS WHAT: the last expect_exit took MIN..MAX ms.
expect_between() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$LAST_ELAPSED_MS" -ge "$1" ] && [ "$LAST_ELAPSED_MS" -lt "$2" ] && return 0
	fail "$3: took $LAST_ELAPSED_MS ms, expected $1..$2 ms"
}

# backup_sets: the sets in backups/, on one line
backup_sets() {
	ls backups | sort | tr '\n' ' '
}

# expect_sets_kept BEFORE WHAT: backups/ holds the sets BEFORE (backup_sets
# of then) and no work files (.tmp-*, ...) after a run that failed
expect_sets_kept() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(backup_sets)" = "$1" ] || fail "$2: sets are now $(backup_sets), were $1"
	# shellcheck disable=SC2010  # names the test chose
	[ -z "$(ls -A backups | grep '^\.')" ] || fail "$2: work files left: $(ls -A backups | tr '\n' ' ')"
}

# tmpfs_mount DIR SIZE: mount a tmpfs of SIZE on DIR (created), unmounted at
# exit. Returns 1 (and says why) when that is not possible (not root).
FAULT_MOUNTS=()
tmpfs_mount() {
	mkdir -p "$1" || return 1
	if [ "$(id -u)" -ne 0 ]; then
		say "cannot mount a tmpfs as $(id -un) (not root)"
		return 1
	fi
	mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1" 2>"$TEST_SCRATCH/mount.err" || {
		say "cannot mount a $2 tmpfs on $1: $(cat "$TEST_SCRATCH/mount.err")"
		return 1
	}
	FAULT_MOUNTS+=("$1")
	trap 'tmpfs_umount_all; test_cleanup' EXIT
}

tmpfs_umount_all() {
	local code=$? m
	for m in "${FAULT_MOUNTS[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	FAULT_MOUNTS=()
	return $code
}

# tmpfs_fill DIR: fill the filesystem of DIR up to the last block (./DIR/.filler).
tmpfs_fill() {
	dd if=/dev/zero of="$1/.filler" bs=64k status=none 2>/dev/null
	dd if=/dev/zero of="$1/.filler2" bs=4k status=none 2>/dev/null
	dd if=/dev/zero of="$1/.filler3" bs=512 status=none 2>/dev/null
	return 0
}

# tmpfs_unfill DIR
tmpfs_unfill() {
	rm -f "$1/.filler" "$1/.filler2" "$1/.filler3"
}
