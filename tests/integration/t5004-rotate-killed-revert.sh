#!/usr/bin/env bash
# Violations found by the crash tests (tests/crash, issue 8), each at a
# precise kill point: a rotation killed while it put the old value back
# (after the env file was restored, before the service was restarted with
# it) is finished by --recover with that restart, not forgotten (the pending
# file went only after the restart); a run killed while it wiped the pending
# file leaves nothing that blocks the next one (the name goes first); the
# temporary files of a pending file or env file write killed before its
# rename (which may hold values) are wiped and removed by the next run; a
# history line torn by a kill in its write is cut off by the next append; a
# restart the killed run left running ends before the recovery restarts.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl

STATE=$OPSCTL_STATE_DIR
DEMO_PORT=$(free_port)
demo_release rel v1 "{\"env_file\": \"$TEST_SCRATCH/app.env\"}"
printf 'JWT_SECRET=jwt-old-value-0123456789abcdef\nOTHER=1\n' >app.env
chmod 600 app.env
cat >opsctl.conf <<EOF2
[app]
name = demo
env_file = app.env
[service]
restart = $DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/rel
timeout = 20s
[health]
wait = 10s
interval = 100ms
consecutive = 1
timeout = 2s
[check "api"]
url = http://127.0.0.1:$DEMO_PORT/actuator/health
[secret "jwt"]
env = JWT_SECRET
EOF2
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
demo_start app "$DEMO_PORT" rel
expect_demo_env app.env JWT_SECRET

# ---- killed while reverting: the service had the new value -------------------------
# the gate fails (its check looks at a dead port), the old value goes back
# into the env file, and the run is killed before it restarts the service
dead=$(free_port)
sed "s|^url = .*|url = http://127.0.0.1:$dead/health|; s|^wait = .*|wait = 1s|" opsctl.conf >dead.conf
cp -p app.env before.env
expect_exit 137 env OPSCTL_TEST_KILL_AT=reverting "$OPSCTL" -c dead.conf rotate-secret jwt
expect_file_same before.env app.env
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(demo_env_fp JWT_SECRET)" != "$(env_fp app.env JWT_SECRET)" ] ||
	fail "the service was not restarted with the new value before the revert (test setup)"
[ -f "$STATE/secrets/jwt.pending.json" ] || fail "the pending file is gone before the service was restarted with the old value"
expect_exit 0 opsctl --output json rotate-secret --recover
expect_json out 'd["recovered"]["action"] == "reverted"'
expect_file_same before.env app.env
expect_demo_env app.env JWT_SECRET
expect_no_pending

# ---- killed in the wipe of the pending file ------------------------------------------
cp -p app.env before.env
expect_exit 137 env OPSCTL_TEST_KILL_AT=wipe "$OPSCTL" rotate-secret jwt
expect_no_pending
expect_env_rotated before.env app.env JWT_SECRET
expect_json "$STATE/secrets/jwt.json" 'd["fingerprint"] == "'"$(env_fp app.env JWT_SECRET)"'"'
expect_exit 0 opsctl --output json rotate-secret --recover
expect_json out 'd["recovered"] is None'
cp -p app.env before.env
expect_exit 0 opsctl rotate-secret jwt
expect_env_rotated before.env app.env JWT_SECRET
expect_demo_env app.env JWT_SECRET

# ---- the temporary files of killed writes are wiped and removed ------------------------
# (what a kill between mkostemp and rename leaves: a pending file's copy with
# both values, an env file's copy with the new one)
printf '{"new": "left-in-a-temporary-file"}\n' >"$STATE/secrets/jwt.pending.json.tmp-AbC123"
printf '{"fingerprint": "x"}\n' >"$STATE/secrets/jwt.json.tmp-XyZ789"
printf 'JWT_SECRET=left-in-a-temporary-file\n' >app.env.tmp-Qw3rTy
expect_exit 0 opsctl rotate-secret --recover
ls -A "$STATE/secrets" >left
expect_no_grep 'tmp' left
# the env file's copy goes with the recovery of the run that wrote it
cp -p app.env before.env
expect_exit 137 env OPSCTL_TEST_KILL_AT=pending "$OPSCTL" rotate-secret jwt
printf 'JWT_SECRET=left-in-a-temporary-file\n' >app.env.tmp-Qw3rTy
expect_exit 0 opsctl rotate-secret --recover
[ ! -e app.env.tmp-Qw3rTy ] || fail "the env file's temporary copy is still there"
expect_file_same before.env app.env
expect_no_pending

# ---- killed during its restart: the recovery waits for that restart first ----------
# (the killed run's restart goes on; a second restart at the same time, as
# the recovery's would be, is refused by this one, as it could leave the
# service stopped: two demo-ctl restarts race for the port and the pid file)
cat >slow-restart.sh <<EOF2
#!/bin/sh
mkdir $TEST_SCRATCH/restarting 2>/dev/null || { echo "another restart is running" >&2; exit 1; }
while [ -e $TEST_SCRATCH/hold ]; do sleep 0.05; done
$DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/rel
code=\$?
rmdir $TEST_SCRATCH/restarting
exit \$code
EOF2
chmod +x slow-restart.sh
sed "s|^restart = .*|restart = $TEST_SCRATCH/slow-restart.sh|" opsctl.conf >slow.conf
cp -p app.env before.env
touch hold
"$OPSCTL" -c slow.conf rotate-secret jwt >bg.out 2>bg.err &
pid=$!
wait_for 20 test -d restarting || { show_file stderr bg.err; fail "the restart never began"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null
(sleep 1; rm -f "$TEST_SCRATCH/hold") &
expect_exit 0 opsctl -c slow.conf --output json rotate-secret --recover
expect_grep "waiting for the interrupted run's restart" err
expect_json out 'd["recovered"]["action"] == "completed"'
expect_env_rotated before.env app.env JWT_SECRET
expect_demo_env app.env JWT_SECRET
expect_no_pending

# ---- a history line torn by a kill in its write(2) is cut off by the next run -------
# (the kernel stops a write between pages when SIGKILL is pending: the line
# lost its end and its newline, and the next line would have continued it)
printf '{"time":"2026-11-22T05:03:48Z","user":"root","command":"rotate-secret","outcome":"ok","exit":0,"' \
	>>"$STATE/history.jsonl"
expect_exit 0 opsctl rotate-secret --no-restart jwt
TEST_CHECKS=$((TEST_CHECKS + 1))
"$TEST_PYTHON" -c 'import json, sys
for n, line in enumerate(open(sys.argv[1], "rb"), 1):
    assert isinstance(json.loads(line), dict), n' "$STATE/history.jsonl" 2>py.err ||
	{ show_file python py.err; fail "history.jsonl does not parse line by line"; }
history_last
expect_json last.json 'd["command"] == "rotate-secret" and d["exit"] == 0'

test_done
