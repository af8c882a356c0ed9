#!/usr/bin/env bash
# Violations found by the crash tests (tests/crash, issue 8) in blue-green
# deploys, each at a precise kill point: a deploy killed while it stopped the
# old slot (the gate through nginx had passed) is finished by the next run,
# not rolled back to the slot being stopped (which left nothing serving); a
# deploy undone before its switch gives the idle slot's link back the
# release it held (it pointed at the removed release); the temporary file of
# a journal write killed before its rename is removed by the next run.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || skip_all "no nginx (scripts/deps.sh installs it)"

nginx_start
demo_setup
blue=$(free_port)
green=$(free_port)
while [ "$green" = "$blue" ]; do green=$(free_port); done
release() {
	demo_release "src-$1" "$1"
	tar -C "src-$1" -czf "$1.tar.gz" .
}
# the stop command waits while ./hold exists (and says so in ./stopping)
cat >opsctl.conf <<EOF2
[app]
name = bg
[deploy]
strategy = blue-green
keep_releases = 10
root = app
backup = no
migrate = no
before_switch = true
[deploy "blue-green"]
slots = blue:$blue green:$green
start = $DEMO_CTL start {slot} {port} $TEST_SCRATCH/app/releases/{release}
stop = touch $TEST_SCRATCH/stopping; while [ -e $TEST_SCRATCH/hold ]; do sleep 0.05; done; $DEMO_CTL stop {slot}
health_url = http://127.0.0.1:{port}/actuator/health
upstream_file = $NGINX_UPSTREAM_FILE
proxy_test = $NGINX_TEST
proxy_reload = $NGINX_RELOAD_SYNC
drain = 0
timeout = 30s
[health]
wait = 10s
interval = 100ms
consecutive = 1
timeout = 2s
[check "api"]
url = $NGINX_URL/actuator/health
EOF2
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
journal=$OPSCTL_STATE_DIR/deploy/journal.json
serves() { # VERSION: nginx answers GET / with VERSION
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(http_version "$NGINX_URL/")" = "$1" ] || fail "nginx serves '$(http_version "$NGINX_URL/")', expected '$1'"
}

release v1
release v2
release v3
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
expect_exit 0 opsctl deploy v2.tar.gz
id2=$(cat out)
serves v2
[ "$(readlink app/slots/live)" = green ] || fail "live: $(readlink app/slots/live)"
[ "$(readlink app/slots/blue)" = "../releases/$id1" ] || fail "slots/blue -> $(readlink app/slots/blue)"

# ---- undone before the switch: the idle slot's link is given back ----------------
# (killed at before_switch: blue linked to the new release, started, gated)
expect_exit 137 env OPSCTL_TEST_KILL_AT=before_switch "$OPSCTL" deploy v3.tar.gz
killed=$("$TEST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["release"])' "$journal")
[ "$(readlink app/slots/blue)" = "../releases/$killed" ] || fail "the killed deploy did not link blue: $(readlink app/slots/blue)"
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["recovered"]["action"] == "discard"'
[ ! -e "app/releases/$killed" ] || fail "the discarded release is still there"
[ "$(readlink app/slots/blue)" = "../releases/$id1" ] || fail "slots/blue -> $(readlink app/slots/blue) after the discard, expected ../releases/$id1"
serves v2
expect_exit 3 demo_ctl status blue

# ---- killed while the old slot stops (the gate had passed) ----------------------
touch hold
rm -f stopping
"$OPSCTL" deploy v3.tar.gz >bg.out 2>bg.err &
pid=$!
wait_for 30 test -e stopping || { show_file stderr bg.err; fail "the old slot's stop never began"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null
id3=$("$TEST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["release"])' "$journal")
expect_json "$journal" 'd["step"] == "record"'
# the killed run's stop goes on and stops green, the old slot
rm hold
wait_for 15 bash -c '! bash "$1" -d "$2" status green >/dev/null' _ "$TEST_LIB_DIR/demo-ctl.sh" "$DEMO_STATE_DIR" ||
	fail "the old slot was not stopped"
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["recovered"]["action"] == "finish" and d["recovered"]["exit"] == 0'
[ ! -e "$journal" ] || fail "the journal is still there"
[ "$(readlink app/slots/live)" = blue ] || fail "live: $(readlink app/slots/live), expected blue"
[ "$(readlink app/current)" = "releases/$id3" ] || fail "current -> $(readlink app/current)"
serves v3
expect_exit 3 demo_ctl status green

# ---- killed at record: the old slot, still running, is stopped by the recovery ----
expect_exit 137 env OPSCTL_TEST_KILL_AT=record "$OPSCTL" deploy v2.tar.gz
expect_exit 0 demo_ctl status blue
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["recovered"]["action"] == "finish"'
[ "$(readlink app/slots/live)" = green ] || fail "live: $(readlink app/slots/live), expected green"
serves v2
expect_exit 3 demo_ctl status blue

# ---- a journal write killed before its rename ----------------------------------------
echo '{"kind": "deploy", "step": "swi' >"$OPSCTL_STATE_DIR/deploy/journal.json.tmp-AbC123"
expect_exit 0 opsctl deploy status
[ -z "$(ls -A "$OPSCTL_STATE_DIR/deploy")" ] || fail "left in the state's deploy directory: $(ls -A "$OPSCTL_STATE_DIR/deploy")"

test_done
