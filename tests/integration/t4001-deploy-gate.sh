#!/usr/bin/env bash
# The health gate and the automatic rollback: a release that never becomes
# healthy (exit 7, the previous one restarted and serving), one that becomes
# healthy after 3 s (the gate waits), one whose restart fails (exit 7), a
# rollback whose own gate fails (exit 8 with what to check), the very first
# release failing (exit 8: nothing to go back to), and the hooks
# before_switch / after_switch / after_failure.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/deploy-lib.sh"
require_opsctl
DEPLOY_WAIT=6s
DEPLOY_EXTRA_CONFIG="after_failure = env | grep '^OPSCTL_' | sort >$TEST_SCRATCH/after_failure.env"
deploy_setup

# ---- the first release fails: nothing to go back to -----------------------------
make_release v0 status=503
expect_exit 8 opsctl deploy v0.tar.gz
expect_grep "did not pass its health gate: 'api' (fail|unreachable)" err
expect_grep "there is no previous release to return to" err
expect_grep '^hint: ' err
# after_failure ran with the release in its environment
expect_grep '^OPSCTL_RELEASE=2' after_failure.env
expect_grep '^OPSCTL_PREVIOUS=$' after_failure.env
rm -f after_failure.env app/current

make_release v1
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
expect_current "$id1" v1

# ---- never healthy: rolled back, exit 7 -----------------------------------------
make_release v2 status=503
: >restarts.log
expect_exit 7 opsctl deploy v2.tar.gz
expect_slower 6000
expect_grep "'20[0-9TZ-]+' did not pass its health gate: 'api' fail: HTTP 503" err
expect_grep "rolled back to '$id1', which passed its health gate" err
expect_current "$id1" v1
# restarted twice: the new release, then the old one again
[ "$(wc -l <restarts.log)" = 2 ] || fail "expected two restarts: $(cat restarts.log)"
expect_grep "^$id1 releases/$id1\$" restarts.log
expect_grep '^OPSCTL_PREVIOUS='"$id1"'$' after_failure.env
tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >last.json
expect_json last.json 'd["command"] == "deploy" and d["exit"] == 7 and d["outcome"] == "rolled-back" and d["rolled_back_to"] == "'"$id1"'" and "health gate" in d["error"]'
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["current"] == "'"$id1"'" and d["in_progress"] is None'

# ---- healthy only after 3 s: the gate waits ------------------------------------
make_release v3 after_ms=3000
expect_exit 0 opsctl deploy v3.tar.gz
expect_slower 3000
id3=$(cat out)
expect_current "$id3" v3

# ---- the restart fails: rolled back --------------------------------------------
make_release v4 restart_fail=1
expect_exit 7 opsctl --output json deploy v4.tar.gz
expect_json out 'd["exit"] == 7 and d["outcome"] == "rolled-back" and d["current"] == "'"$id3"'"'
expect_json out '[s["step"] for s in d["steps"]][-1] == "rollback" and d["error"]["message"].startswith("[service] restart")'
expect_json out '"cannot start the app" in d["error"]["message"]'
expect_current "$id3" v3

# ---- the rollback fails too: exit 8, what to check ------------------------------
make_release v5 status=503
touch break-everything
expect_exit 8 opsctl deploy v5.tar.gz
expect_grep "rollback to '$id3' failed too: 'api' fail: HTTP 503" err
expect_grep "^hint: an operator must check the service" err
expect_current "$id3" v3
rm break-everything
# the next deploy is not blocked by it
make_release v6
expect_exit 0 opsctl deploy v6.tar.gz
id6=$(cat out)
expect_current "$id6" v6

# ---- hooks -------------------------------------------------------------------
cat >>opsctl.conf <<EOF
[deploy]
before_switch = test ! -e $TEST_SCRATCH/fail-before && echo "before \$OPSCTL_RELEASE \$OPSCTL_PREVIOUS \$(readlink $TEST_SCRATCH/app/current)" >>$TEST_SCRATCH/hooks.log
after_switch = test ! -e $TEST_SCRATCH/fail-after && echo "after \$OPSCTL_RELEASE \$OPSCTL_PREVIOUS \$(readlink $TEST_SCRATCH/app/current)" >>$TEST_SCRATCH/hooks.log
EOF
make_release v7
expect_exit 0 opsctl deploy v7.tar.gz
id7=$(cat out)
expect_grep "^before $id7 $id6 releases/$id6\$" hooks.log
expect_grep "^after $id7 $id6 releases/$id7\$" hooks.log
# before_switch fails: nothing switched, nothing restarted
touch fail-before
: >restarts.log
make_release v8
expect_exit 7 opsctl deploy v8.tar.gz
expect_grep "before_switch: .* failed with exit status 1" err
expect_grep "nothing was switched, '$id7' serves on" err
expect_current "$id7" v7
[ ! -s restarts.log ] || fail "a failed before_switch restarted: $(cat restarts.log)"
rm fail-before
# after_switch fails: rolled back like a failed gate
touch fail-after
expect_exit 7 opsctl deploy v8.tar.gz
expect_grep "after_switch: .* failed with exit status 1" err
expect_grep "rolled back to '$id7'" err
expect_current "$id7" v7
rm fail-after

# [deploy] checks naming a [check] that does not exist: a config error (3), nothing switched
sed -i 's|^\[deploy\]$|[deploy]\nchecks = nosuch|' opsctl.conf
: >restarts.log
expect_exit 3 opsctl deploy v8.tar.gz
expect_grep "\[deploy\] checks names 'nosuch', but there is no \[check \"nosuch\"\]" err
expect_current "$id7" v7
[ ! -s restarts.log ] || fail "a deploy with an unknown check restarted: $(cat restarts.log)"
sed -i '/^checks = nosuch$/d' opsctl.conf

test_done
