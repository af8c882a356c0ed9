#!/usr/bin/env bash
# Violations found by the crash tests (tests/crash, issue 8), each at a
# precise kill point: a rollback killed after it switched 'current' but
# before its restart ran is finished by the next run with the restart
# (the service runs the release 'current' points to, not the one it left),
# and gated; a deploy killed while it pruned leaves no half-removed release;
# a restart the killed run left running ends before the recovery restarts.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl

demo_setup
port=$(free_port)
mkdir -p app/shared
echo SECRET=shared >app/shared/.env
cat >opsctl.conf <<EOF2
[app]
name = demo
[deploy]
root = app
shared = .env
backup = no
migrate = no
[service]
restart = $DEMO_CTL restart app $port $TEST_SCRATCH/app/current
timeout = 20s
[health]
wait = 10s
interval = 100ms
consecutive = 1
timeout = 2s
[check "api"]
url = http://127.0.0.1:$port/actuator/health
EOF2
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
journal=$OPSCTL_STATE_DIR/deploy/journal.json
release() {
	demo_release "src-$1" "$1"
	tar -C "src-$1" -czf "$1.tar.gz" .
}
serves() { # VERSION: the service answers GET / with VERSION
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(http_version "http://127.0.0.1:$port/")" = "$1" ] ||
		fail "the service serves '$(http_version "http://127.0.0.1:$port/")', expected '$1'"
}

release v1
release v2
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
expect_exit 0 opsctl deploy v2.tar.gz
id2=$(cat out)
serves v2

# ---- a rollback killed between its switch and its restart --------------------------
# (journaled 'restart', current already moved, the command not started): the
# service stays on v2 while current points to v1 until the recovery restarts it
expect_exit 137 env OPSCTL_TEST_KILL_AT=restart "$OPSCTL" rollback
expect_json "$journal" 'd["kind"] == "rollback" and d["step"] == "restart"'
[ "$(readlink app/current)" = "releases/$id1" ] || fail "the killed rollback did not switch current"
serves v2
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["recovered"]["action"] == "finish" and d["recovered"]["step"] == "restart" and d["recovered"]["exit"] == 0'
[ ! -e "$journal" ] || fail "the journal is still there"
[ "$(readlink app/current)" = "releases/$id1" ] || fail "current -> $(readlink app/current) after the recovery"
serves v1

# ---- a rollback killed before its gate: the recovery gates the target -------------
# (a target that does not pass is reported and recorded as a failed rollback,
# exit 8, not as a finished one)
expect_exit 0 opsctl rollback "$id2"
serves v2
echo '{"never_healthy": true}' >"app/releases/$id1/behaviour.json"
expect_exit 137 env OPSCTL_TEST_KILL_AT=gate "$OPSCTL" rollback
expect_json "$journal" 'd["kind"] == "rollback" and d["step"] == "gate"'
sed -i 's/^wait = .*/wait = 2s/' opsctl.conf
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["recovered"]["action"] == "finish" and d["recovered"]["step"] == "gate" and d["recovered"]["exit"] == 8'
grep '"recovered"' "$OPSCTL_STATE_DIR/history.jsonl" | tail -n 1 >rec.json
expect_json rec.json 'd["exit"] == 8 and d["release"] == "'"$id1"'"'
expect_grep 'did not pass|checks failed' err
[ ! -e "$journal" ] || fail "the journal is still there"
rm "app/releases/$id1/behaviour.json"
sed -i 's/^wait = .*/wait = 10s/' opsctl.conf
expect_exit 0 opsctl rollback "$id2"
serves v2

# ---- killed during its restart: the recovery waits for that restart first ---------
# (the killed run's restart goes on; this one refuses a second restart at the
# same time, as the recovery's would be: two demo-ctl restarts racing for the
# port and the pid file can leave the service stopped)
cat >slow-restart.sh <<EOF2
#!/bin/sh
mkdir $TEST_SCRATCH/restarting 2>/dev/null || { echo "another restart is running" >&2; exit 1; }
while [ -e $TEST_SCRATCH/hold ]; do sleep 0.05; done
$DEMO_CTL restart app $port $TEST_SCRATCH/app/current
code=\$?
rmdir $TEST_SCRATCH/restarting
exit \$code
EOF2
chmod +x slow-restart.sh
sed "s|^restart = .*|restart = $TEST_SCRATCH/slow-restart.sh|" opsctl.conf >slow.conf
serves v2
release v4
touch hold
"$OPSCTL" -c slow.conf deploy v4.tar.gz >bg.out 2>bg.err &
pid=$!
wait_for 20 test -d restarting || { show_file stderr bg.err; fail "the restart never began"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null
(sleep 1; rm -f "$TEST_SCRATCH/hold") &
expect_exit 0 opsctl -c slow.conf --output json deploy status
expect_grep "waiting for a command of the interrupted run" err
expect_json out 'd["recovered"]["action"] == "rollback" and d["recovered"]["exit"] == 7'
[ "$(readlink app/current)" = "releases/$id2" ] || fail "current -> $(readlink app/current) after the recovery"
serves v2

# ---- a deploy killed while it pruned: the half-removed release goes --------------
# (rel_remove renames releases/ID to .trash-ID, then removes the tree; a kill
# in between leaves the trash: OPSCTL_TEST_KILL_AT=prune, then the trash
# made by hand as that kill would have left it)
release v3
expect_exit 137 env OPSCTL_TEST_KILL_AT=prune "$OPSCTL" deploy v3.tar.gz
mkdir -p app/releases/.trash-20200101T000000Z/static
echo half >app/releases/.trash-20200101T000000Z/static/f1
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["recovered"]["action"] == "finish" and d["recovered"]["step"] == "prune"'
[ -z "$(ls -A app/releases | grep '^\.')" ] || fail "left in app/releases: $(ls -A app/releases | grep '^\.')"
serves v3

test_done
