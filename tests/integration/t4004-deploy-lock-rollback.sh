#!/usr/bin/env bash
# Two deploys at once: the second exits 75 naming the holder, or queues with
# --lock-wait. opsctl rollback [RELEASE]: the previous release (and back
# again), a named one, --dry-run, nothing to roll back to, an unknown one,
# a rollback whose gate fails (exit 8); rollback --schema stays the
# migrations' form (usage errors when mixed).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/deploy-lib.sh"
require_opsctl
deploy_setup

expect_exit 1 opsctl rollback
expect_grep "nothing to roll back: '.*app/current' does not exist" err

make_release v1
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
expect_exit 1 opsctl rollback
expect_grep "no release to roll back to: '$id1' is the only one" err

# ---- two deploys at once ------------------------------------------------------------
cp opsctl.conf opsctl.conf.orig
cat >>opsctl.conf <<EOF
[service]
restart = touch $TEST_SCRATCH/restarting; while [ -e $TEST_SCRATCH/hold ]; do sleep 0.05; done; $TEST_SCRATCH/restart.sh
EOF
make_release v2
make_release v3
touch hold
"$OPSCTL" deploy v2.tar.gz >first.out 2>first.err &
first=$!
wait_for 20 test -e restarting || fail "the first deploy never reached its restart"
expect_exit 75 opsctl deploy v3.tar.gz
expect_grep "lock 'deploy' is held by pid $first \(opsctl deploy v2\.tar\.gz\)" err
expect_grep "hint: .*--lock-wait" err
expect_exit 75 opsctl --output json deploy v3.tar.gz
expect_json out 'd["exit"] == 75 and "held by pid" in d["error"]["message"]'
expect_exit 75 opsctl rollback
# deploy status does not touch the running deploy's journal
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["in_progress"]["step"] == "restart" and d["in_progress"]["pid"] == '"$first"
expect_grep 'held by' err
# --lock-wait queues behind it
"$OPSCTL" --lock-wait 30s deploy v3.tar.gz >second.out 2>second.err &
second=$!
sleep 0.5
rm hold
wait "$first" || { show_file first.err first.err; fail "the first deploy failed"; }
wait "$second" || { show_file second.err second.err; fail "the queued deploy failed"; }
id2=$(cat first.out)
id3=$(cat second.out)
expect_current "$id3" v3
cp opsctl.conf.orig opsctl.conf

# ---- rollback: to the previous, and back again -------------------------------------
expect_exit 0 opsctl -n rollback
expect_grep "^would switch '.*app/current' from '$id3' to '$id2'" out
expect_current "$id3" v3
: >restarts.log
expect_exit 0 opsctl rollback --reason "v3 is slow"
expect_current "$id2" v2
expect_grep "^$id2 releases/$id2\$" restarts.log
expect_exit 0 opsctl --output json rollback
expect_json out 'd["command"] == "rollback" and d["release"] == "'"$id3"'" and d["previous"] == "'"$id2"'" and d["exit"] == 0'
expect_current "$id3" v3
expect_exit 0 opsctl rollback "$id1"
expect_current "$id1" v1
grep '"command":"rollback"' "$OPSCTL_STATE_DIR/history.jsonl" | head -n 1 >rb.json
expect_json rb.json 'd["reason"] == "v3 is slow" and d["release"] == "'"$id2"'" and d["previous"] == "'"$id3"'" and d["user"]'
expect_exit 0 opsctl deploy list
expect_grep "^$id2 .* rollback +ok " out

expect_exit 2 opsctl rollback "$id1"
expect_grep "'$id1' is already the current release" err
expect_exit 2 opsctl rollback 20000101T000000Z
expect_grep "no release '20000101T000000Z'" err
expect_exit 2 opsctl rollback ../etc
expect_grep "'\.\./etc' is not a release id" err
expect_exit 2 opsctl rollback "$id2" --schema 3
expect_exit 2 opsctl rollback --with-schema --schema 3
expect_exit 2 opsctl rollback a b

# ---- a rollback to a release that does not come up: exit 8 --------------------------
echo 503 >"app/releases/$id2/status"
expect_exit 8 opsctl rollback "$id2"
expect_grep "'$id2' did not pass its health gate after the rollback: 'api' fail: HTTP 503" err
expect_grep "^hint: an operator must check" err
rm "app/releases/$id2/status"
expect_exit 0 opsctl rollback "$id1"
expect_current "$id1" v1

test_done
