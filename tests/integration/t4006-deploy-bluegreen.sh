#!/usr/bin/env bash
# The blue-green strategy behind a real nginx: the idle slot started on the
# new release and gated on its own port, the upstream file written
# atomically, nginx -t, a graceful reload, the gate through the proxy, the
# old slot stopped; a client sending requests through nginx all along sees
# zero failed requests, during a successful deploy and during an automatic
# rollback (a failing after_switch hook), with the plain asynchronous
# `nginx -s reload` and [deploy "blue-green"] drain. A release that never becomes
# healthy never reaches the proxy; a failing proxy_test puts the old
# upstream file back; rollback starts the old release in the idle slot; a
# deploy killed (SIGKILL) at each blue-green step is undone, rolled back or
# finished by `deploy status`, the proxy serving the right slot after each.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || skip_all "no nginx (scripts/deps.sh installs it)"
type nginx_start >/dev/null 2>&1 || skip_all "no nginx harness in test-lib.sh"

nginx_start
demo_setup
blue=$(free_port)
green=$(free_port)
while [ "$green" = "$blue" ]; do green=$(free_port); done

# release NAME [BEHAVIOUR_JSON]: NAME.tar.gz for demo-service.py
release() {
	demo_release "src-$1" "$1" "${2:-{\"latency_ms\": 2\}}"
	tar -C "src-$1" -czf "$1.tar.gz" .
}

cat >opsctl.conf <<EOF
[app]
name = bg
[deploy]
strategy = blue-green
keep_releases = 20
root = app
backup = no
migrate = no
after_switch = test ! -e $TEST_SCRATCH/fail-after
[deploy "blue-green"]
slots = blue:$blue green:$green
start = $DEMO_CTL start {slot} {port} $TEST_SCRATCH/app/releases/{release}
stop = $DEMO_CTL stop {slot}
health_url = http://127.0.0.1:{port}/actuator/health
upstream_file = $NGINX_UPSTREAM_FILE
proxy_test = $NGINX_TEST
proxy_reload = $NGINX_RELOAD
drain = 1500ms
timeout = 30s
[health]
wait = 10s
interval = 100ms
consecutive = 2
timeout = 2s
[check "api"]
url = $NGINX_URL/actuator/health
EOF
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf

# ---- the first release: blue ---------------------------------------------------------
release v1
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
[ "$(readlink app/slots/live)" = blue ] || fail "live slot: $(readlink app/slots/live)"
[ "$(readlink app/current)" = "releases/$id1" ] || fail "current: $(readlink app/current)"
expect_grep "^server 127\.0\.0\.1:$blue;\$" "$NGINX_UPSTREAM_FILE"
[ "$(http_version "$NGINX_URL/")" = v1 ] || fail "nginx does not serve v1"

# ---- v2 under load: zero failed requests -----------------------------------------------
release v2 '{"latency_ms": 2, "healthy_after_ms": 800}'
load_start "$NGINX_URL/" --concurrency 4 --timeout 5
load_mark start
expect_exit 0 opsctl --output json deploy v2.tar.gz
load_mark end
sleep 0.3
load_stop
id2=$("$TEST_PYTHON" -c 'import json; print(json.load(open("out"))["release"])')
expect_json out 'd["slot"] == "green" and d["exit"] == 0'
expect_load 'd["failed"] == 0 and d["ok"] > 20'
expect_load '"v1" in d["distinct_versions"] and d["last_version"] == "v2"'
[ "$(readlink app/slots/live)" = green ] || fail "live slot after v2: $(readlink app/slots/live)"
expect_grep "^server 127\.0\.0\.1:$green;\$" "$NGINX_UPSTREAM_FILE"
expect_exit 3 demo_ctl status blue
expect_exit 0 demo_ctl status green

# ---- an automatic rollback under load: zero failed requests ------------------------------
release v3
touch fail-after
load_start "$NGINX_URL/" --concurrency 4 --timeout 5
expect_exit 7 opsctl deploy v3.tar.gz
sleep 0.3
load_stop
rm fail-after
expect_grep "after_switch: .* failed" err
expect_grep "rolled back to '$id2'" err
expect_load 'd["failed"] == 0 and d["last_version"] == "v2"'
[ "$(readlink app/slots/live)" = green ] || fail "live slot after the rollback: $(readlink app/slots/live)"
[ "$(readlink app/current)" = "releases/$id2" ] || fail "current after the rollback: $(readlink app/current)"
expect_grep "^server 127\.0\.0\.1:$green;\$" "$NGINX_UPSTREAM_FILE"
expect_exit 3 demo_ctl status blue

# ---- SIGKILL at each blue-green step, then the recovery (deploy status) ----------------------
# before the switch: the new slot is stopped and discarded; from the switch on: the old
# upstream is put back and the old slot serves; at record: the deploy is finished
journal=$OPSCTL_STATE_DIR/deploy/journal.json
release v4
for step in start switch restart after_switch gate record; do
	live_before=$(readlink app/slots/live)
	up_before=$(cat "$NGINX_UPSTREAM_FILE")
	expect_exit 137 env OPSCTL_TEST_KILL_AT="$step" "$OPSCTL" deploy v4.tar.gz
	expect_json "$journal" 'd["step"] == "'"$step"'" and d["kind"] == "deploy"'
	expect_exit 0 opsctl --output json deploy status
	expect_json out 'd["recovered"]["step"] == "'"$step"'" and d["in_progress"] is None'
	[ ! -e "$journal" ] || fail "$step: the journal is still there"
	case $step in
	record)
		expect_json out 'd["recovered"]["action"] == "finish"'
		[ "$(readlink app/slots/live)" != "$live_before" ] || fail "$step: the finished deploy did not switch slots"
		[ "$(http_version "$NGINX_URL/")" = v4 ] || fail "$step: nginx does not serve v4 after the finish"
		;;
	*)
		[ "$(readlink app/slots/live)" = "$live_before" ] || fail "$step: live slot $(readlink app/slots/live), was $live_before"
		[ "$(cat "$NGINX_UPSTREAM_FILE")" = "$up_before" ] || fail "$step: the upstream file was not put back"
		[ "$(http_version "$NGINX_URL/")" = v2 ] || fail "$step: nginx no longer serves v2"
		;;
	esac
	idle=blue
	[ "$(readlink app/slots/live)" = blue ] && idle=green
	expect_exit 3 demo_ctl status "$idle"
done
# back to v2 on the slot it had, for what follows
expect_exit 0 opsctl rollback "$id2"
[ "$(http_version "$NGINX_URL/")" = v2 ] || fail "nginx does not serve v2 after the rollback"

# ---- never healthy: the proxy never sees it ----------------------------------------------
release bad '{"never_healthy": true}'
cp "$NGINX_UPSTREAM_FILE" upstream.before
expect_exit 7 opsctl deploy bad.tar.gz
expect_grep "slot 'blue' did not pass its health gate" err
expect_grep "the proxy was not switched" err
expect_file_same upstream.before "$NGINX_UPSTREAM_FILE"
expect_exit 3 demo_ctl status blue
[ "$(http_version "$NGINX_URL/")" = v2 ] || fail "nginx no longer serves v2"

# ---- proxy_test fails: the old upstream file is put back -----------------------------------
sed -i "s#^upstream_template = .*##; /^upstream_file/a upstream_template = server 127.0.0.1:{port} bogus;" opsctl.conf
expect_exit 7 opsctl deploy v1.tar.gz
expect_grep "proxy_test: .* failed" err
expect_grep "the old upstream file was put back" err
expect_file_same upstream.before "$NGINX_UPSTREAM_FILE"
[ "$(http_version "$NGINX_URL/")" = v2 ] || fail "nginx no longer serves v2"
sed -i '/^upstream_template/d' opsctl.conf

# ---- rollback: the previous release started in the idle slot ---------------------------------
expect_exit 0 opsctl rollback "$id1"
[ "$(readlink app/slots/live)" = blue ] || fail "live slot after rollback: $(readlink app/slots/live)"
[ "$(http_version "$NGINX_URL/")" = v1 ] || fail "nginx does not serve v1 after the rollback"
expect_exit 3 demo_ctl status green
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["live_slot"] == "blue" and d["slots"]["blue"] == "'"$id1"'" and d["current"] == "'"$id1"'"'

test_done
