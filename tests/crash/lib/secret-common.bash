# shellcheck shell=bash
# Shared by the rotate-secret crash scenarios (rotate-random, rotate-postgres,
# rotate-alternating). (tests/crash/lib: not a scenario.)
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"

# sc_prepare: keep the env file as it is before the trial (before.env) and
# the fingerprints of KEYs ($SC_KEYS) in sc_old_KEY.
sc_prepare() {
	local k
	cp -p app.env before.env
	for k in $SC_KEYS; do
		printf -v "sc_old_$k" '%s' "$(env_fp app.env "$k")"
	done
}

sc_run() {
	exec "$OPSCTL" rotate-secret --reason "crash trial $CRASH_TRIAL" "$SC_SECRET"
}

# sc_recover SIG EXIT: the signalled run's exit code, then the documented
# recovery of a killed run: rotate-secret --recover (exit 0).
sc_recover() {
	local ok
	case $1 in
	KILL) ok=",0,137," ;;
	TERM) ok=",0,10,143," ;;   # 10: reverted; 143: before opsctl's handler was installed
	INT) ok=",0,10,130," ;;
	esac
	case $ok in *",$2,"*) ;; *) fail "SIG$1 after ${CRASH_DELAY_MS} ms: the run exited $2 (expected one of ${ok//,/ })" ;; esac
	expect_exit 0 opsctl --output json rotate-secret --recover
	cp out recover.out
	cp err recover.err
}

# sc_check_env: the env file parses, holds KEY once, and is either the file
# of before the trial byte for byte (not rotated, or reverted) or that file
# with only $SC_KEYS changed, the new value being the one the state file
# names, with the old one's fingerprint as its previous. Sets SC_ROTATED.
sc_check_env() {
	local fp state=$OPSCTL_STATE_DIR/secrets/$SC_SECRET.json
	SC_ROTATED=
	appenv get app.env "$SC_KEY" >/dev/null 2>sc.err || { show_file appenv sc.err; fail "the env file does not parse or lacks $SC_KEY"; return 1; }
	[ "$(grep -cE "^(export )?$SC_KEY=" app.env)" = 1 ] || fail "$SC_KEY is assigned $(grep -cE "^(export )?$SC_KEY=" app.env) times"
	expect_mode app.env 600
	fp=$(env_fp app.env "$SC_KEY")
	local old_var=sc_old_$SC_KEY
	if cmp -s before.env app.env; then
		SC_ROTATED=no
	else
		SC_ROTATED=yes
		expect_env_rotated before.env app.env $SC_KEYS
		[ "$fp" != "${!old_var}" ] || fail "the env file changed but $SC_KEY did not"
		expect_json "$state" 'd["fingerprint"] == "'"$fp"'" and d["previous_fingerprint"] == "'"${!old_var}"'"'
	fi
	# no rotation in progress, and no temporary copy of a value left behind
	expect_no_pending
	local left
	left=$(ls -A "$(dirname "$(realpath app.env)")" | grep -E '^app\.env\.tmp' | tr '\n' ' ')
	[ -z "$left" ] || fail "left beside the env file: $left"
}

# sc_check_service KEY...: the demo service runs with the env file's KEYs
# (it was restarted after the last change; a restart left running by the
# killed run may still be under way).
sc_demo_has() {
	local k
	for k in "$@"; do
		[ "$(demo_env_fp "$k" 2>/dev/null)" = "$(env_fp app.env "$k")" ] || return 1
	done
}
sc_check_service() {
	wait_for 15 sc_demo_has "$@" && return 0
	show_file "the recovery's stderr" recover.err
	tail -n 15 "$DEMO_STATE_DIR/app.log" >demo-log.tail 2>&1
	show_file "the demo service's log" demo-log.tail
	ps -eo pid,ppid,etime,args | grep -E '[d]emo-(ctl|service)' >demo-ps.txt
	show_file "demo processes" demo-ps.txt
	fail "the demo service does not run with the env file's $* (GET /: $(curl -sS --max-time 3 "$(demo_url /)" 2>&1 | head -c 300))"
}
