#!/usr/bin/env bash
# A deploy killed with SIGKILL at each journaled step (OPSCTL_TEST_KILL_AT:
# killed just after the step was written to deploy/journal.json) is undone
# (before the switch) or rolled back (switch .. gate) or finished (record,
# prune) by the next 'deploy status', 'deploy' or 'rollback', from the journal
# alone. Also a real SIGKILL in the middle of the restart, and SIGTERM/SIGINT
# mid-deploy (rolled back like a failed gate: exit 7; before the switch:
# cleaned up, exit 10).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/deploy-lib.sh"
require_opsctl
DEPLOY_WAIT=4s
DEPLOY_EXTRA_CONFIG="before_switch = true
after_switch = true"
deploy_setup
journal=$OPSCTL_STATE_DIR/deploy/journal.json

make_release v1
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
make_release v2

# killed_at STEP: a deploy of v2 killed at STEP; the journal names it
killed_at() {
	expect_exit 137 env OPSCTL_TEST_KILL_AT="$1" "$OPSCTL" deploy v2.tar.gz
	expect_json "$journal" 'd["step"] == "'"$1"'" and d["kind"] == "deploy" and d["previous"] == "'"$id1"'"'
	killed_release=$("$TEST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["release"])' "$journal")
}

recovered_by=(status deploy rollback)
n=0
for step in lock preflight unpack before_switch switch restart after_switch gate record prune; do
	killed_at "$step"
	: >restarts.log
	how=${recovered_by[$((n % 3))]}
	n=$((n + 1))
	case $step in
	lock|preflight|unpack|before_switch) action=discard ;;
	switch|restart|after_switch|gate) action=rollback ;;
	*) action=finish ;;
	esac
	say "killed at $step, recovered by $how: $action"
	case $how in
	status)
		expect_exit 0 opsctl --output json deploy status
		expect_json out 'd["recovered"]["action"] == "'"$action"'" and d["recovered"]["step"] == "'"$step"'" and d["in_progress"] is None'
		;;
	deploy)
		# the recovery, then a deploy of its own
		make_release v1b
		expect_exit 0 opsctl deploy v1b.tar.gz
		expect_grep "a deploy of '$killed_release' was interrupted at step '$step'" err
		;;
	rollback)
		expect_exit 0,1 opsctl rollback
		expect_grep "a deploy of '$killed_release' was interrupted at step '$step'" err
		;;
	esac
	[ ! -e "$journal" ] || fail "$step: the journal is still there"
	grep '"recovered"' "$OPSCTL_STATE_DIR/history.jsonl" | tail -n 1 >rec.json
	expect_json rec.json 'd["recovered"]["action"] == "'"$action"'" and d["release"] == "'"$killed_release"'"'
	case $action in
	discard)
		# (the deploy that recovered may reuse the free id for its own v1b)
		[ ! -e "app/releases/$killed_release" ] || [ "$(cat "app/releases/$killed_release/version")" = v1b ] ||
			fail "$step: the unswitched release is still there"
		[ ! -s restarts.log ] || [ "$how" != status ] || fail "$step: a discard restarted: $(cat restarts.log)"
		;;
	rollback)
		# killed at 'switch', before the rename: current never moved, no restart needed
		[ "$step" = switch ] || expect_grep "^$id1 releases/$id1\$" restarts.log
		;;
	finish)
		[ -d "app/releases/$killed_release" ] || fail "$step: the finished release is gone"
		;;
	esac
	# back to a known state: v1 current
	if [ "$(readlink app/current)" != "releases/$id1" ]; then
		expect_exit 0 opsctl rollback "$id1"
	fi
	expect_current "$id1" v1
done

# ---- a real SIGKILL while the restart runs -------------------------------------
cat >>opsctl.conf <<EOF
[service]
restart = touch $TEST_SCRATCH/restarting; while [ -e $TEST_SCRATCH/hold ]; do sleep 0.05; done; $TEST_SCRATCH/restart.sh
EOF
touch hold
"$OPSCTL" deploy v2.tar.gz >bg.out 2>bg.err &
pid=$!
wait_for 20 test -e restarting || fail "the restart never began"
kill -9 "$pid"
wait "$pid" 2>/dev/null
expect_json "$journal" 'd["step"] == "restart"'
[ "$(readlink app/current)" != "releases/$id1" ] || fail "current was not switched before the restart"
rm -f hold restarting
expect_exit 0 opsctl deploy status
expect_grep "interrupted at step 'restart'" err
expect_current "$id1" v1

# ---- SIGTERM during the gate: rolled back, exit 7 --------------------------------
make_release v3 status=503
sed -i 's/^wait = .*/wait = 30s/' opsctl.conf
"$OPSCTL" deploy v3.tar.gz >bg.out 2>bg.err &
pid=$!
wait_for 20 grep -qE '"step":[[:space:]]*"gate"' "$journal" || fail "the gate never began"
sleep 0.3
kill -TERM "$pid"
wait "$pid"
code=$?
[ "$code" = 7 ] || { show_file bg.err bg.err; fail "SIGTERM during the gate: exit $code, expected 7"; }
expect_grep "interrupted while waiting for checks" bg.err
expect_grep "rolled back to '$id1'" bg.err
expect_current "$id1" v1
[ ! -e "$journal" ] || fail "the journal stayed after SIGTERM"

# ---- SIGINT before the switch: cleaned up, exit 10 ---------------------------------
cat >>opsctl.conf <<EOF
[deploy]
before_switch = touch $TEST_SCRATCH/in-hook; sleep 1
EOF
rm -f in-hook
"$OPSCTL" deploy v2.tar.gz >bg.out 2>bg.err &
pid=$!
wait_for 20 test -e in-hook || fail "before_switch never began"
kill -INT "$pid"
wait "$pid"
code=$?
[ "$code" = 10 ] || { show_file bg.err bg.err; fail "SIGINT before the switch: exit $code, expected 10"; }
expect_grep "interrupted by signal 2; nothing was switched, '$id1' serves on" bg.err
expect_current "$id1" v1

test_done
