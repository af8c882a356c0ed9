#!/usr/bin/env bash
# The deploy tests' infrastructure (issue 5) proves itself without opsctl
# deploy: a private nginx (nginx_start), demo-service.py releases started by
# demo-ctl.sh (demo_start), and the load client (load_start/load_stop). A
# blue-green switch done by hand as the runbook of seed 001 section 5.3 does it,
# but atomically and gracefully (upstream file written to a temporary name and
# renamed, nginx -t, a reload that waits for the old workers, the old slot
# stopped with SIGTERM) serves every request of a continuous load, and the
# negative controls show that the same measurement does count failures.
# NGINX_TEST and NGINX_RELOAD_SYNC are command lines as opsctl.conf holds them,
# split into words on purpose:
# shellcheck disable=SC2086
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || skip_all "no nginx (scripts/deps.sh installs it)"
command -v curl >/dev/null 2>&1 || skip_all "no curl"

demo_release rel/v1 v1 '{"latency_ms": 2}'
demo_release rel/v2 v2 '{"latency_ms": 2, "healthy_after_ms": 800}'
demo_release rel/down down '{"never_healthy": true}'
demo_release rel/crash crash '{"crash_on_start": true}'
blue=$(free_port)
green=$(free_port)
while [ "$green" = "$blue" ]; do green=$(free_port); done
closed=$(free_port)

# ---- the demo service and its launcher ------------------------------------

# A release that crashes on start: demo-ctl start fails, names it, leaves no pid file.
expect_exit 1 demo_ctl start crash "$closed" rel/crash
expect_grep 'crash exited during start-up' err
expect_exit 3 demo_ctl status crash
# A release that never becomes healthy still serves / but its health is DOWN.
expect_exit 0 demo_ctl start down "$closed" rel/down
expect_http "http://127.0.0.1:$closed/actuator/health" 503 '"status":"DOWN"'
expect_http "http://127.0.0.1:$closed/" 200 '"version": "down"'
expect_exit 0 demo_ctl stop down
expect_exit 3 demo_ctl status down
expect_exit 0 demo_ctl stop down # stopping a stopped service is fine

# A symlinked release dir is resolved at start: restart picks up the new target.
ln -s rel/v1 current
demo_start app "$closed" current
expect_http "http://127.0.0.1:$closed/" 200 '"version": "v1"'
pid1=$(demo_pid app)
expect_exit 0 demo_ctl start app "$closed" current # already running: nothing done
[ "$(demo_pid app)" = "$pid1" ] || fail "start on a running service replaced it"
# Restart under load, directly on the port (the symlink strategy): the load
# client sees the version switch and measures the gap.
load_start "http://127.0.0.1:$closed/" --concurrency 2 --timeout 2
ln -sfn rel/v2 current
expect_exit 0 demo_ctl restart app "$closed" current
serves() { [ "$(http_version "$1" 2>/dev/null)" = "$2" ]; }
wait_for 5 serves "http://127.0.0.1:$closed/" v2 || fail "restart did not switch to v2"
sleep 0.2
load_stop
expect_load 'd["distinct_versions"] == ["v1", "v2"] and d["last_version"] == "v2"'
expect_load 'd["switch_gap_ms"] is not None and d["switch_gap_ms"] > 0'
expect_load 'd["stop_reason"] == "signal" and d["ok"] > 0'
[ "$(demo_pid app)" != "$pid1" ] || fail "restart kept the old process"
expect_exit 0 demo_stop app

# A graceful stop finishes a request in flight.
demo_start slow "$closed" rel/v1
curl -sS --max-time 10 -o slow.body -w '%{http_code}\n' "http://127.0.0.1:$closed/?sleep_ms=800" >slow.code 2>&1 &
curl_pid=$!
sleep 0.3
expect_exit 0 demo_stop slow
expect_slower 400
wait "$curl_pid"
expect_grep '^200$' slow.code
expect_grep '"version": "v1"' slow.body
expect_exit 7 curl -sS --max-time 2 "http://127.0.0.1:$closed/" # nothing listens now

# ---- blue-green through nginx under load ------------------------------------

demo_start blue "$blue" rel/v1
nginx_start "$blue"
expect_http "$NGINX_URL/" 200 '"version": "v1"'
expect_grep "^server 127\.0\.0\.1:$blue;\$" "$NGINX_UPSTREAM_FILE"
load_start "$NGINX_URL/" --concurrency 4
sleep 0.5

# 1. the idle slot starts on its own port; 2. gated there until healthy.
demo_start green "$green" rel/v2
expect_http "http://127.0.0.1:$green/actuator/health" 503
wait_for 10 curl -fs --max-time 2 -o /dev/null "http://127.0.0.1:$green/actuator/health" ||
	fail "green never became healthy"
# A request in flight through nginx across the reload and the stop of blue.
curl -sS --max-time 10 -o inflight.body -w '%{http_code}\n' "$NGINX_URL/?sleep_ms=600" >inflight.code 2>&1 &
curl_pid=$!
sleep 0.1
# 3. upstream file written atomically; 4. nginx -t; 5. graceful reload.
load_mark switch-start
nginx_set_upstream "$green"
expect_exit 0 $NGINX_TEST
expect_exit 0 $NGINX_RELOAD_SYNC
# 6. gate through the proxy; 7. stop the old slot gracefully.
expect_http "$NGINX_URL/actuator/health" 200 '"status":"UP"'
expect_http "$NGINX_URL/" 200 '"version": "v2"'
expect_exit 0 demo_stop blue
load_mark switch-end
sleep 0.5
load_stop
wait "$curl_pid"
expect_grep '^200$' inflight.code
expect_grep '"version": "v1"' inflight.body

expect_load 'd["failed"] == 0 and d["errors"] == {}'
expect_load 'd["total"] >= 100 and d["steady"]["total"] > 0 and d["window"]["total"] > 0'
expect_load 'd["distinct_versions"] == ["v1", "v2"] and d["last_version"] == "v2"'
# every v1 answer came before blue was stopped, and v2 was served after
expect_load 'max(r["last"] for r in d["versions"] if r["version"] == "v1") < d["marks"]["switch-end"]'
expect_load 'd["versions"][-1]["last"] > d["marks"]["switch-end"]'
expect_exit 3 demo_pid blue
expect_no_grep '\[(error|crit|alert|emerg)\]' "$NGINX_ERROR_LOG"
expect_no_grep ' (5[0-9][0-9]) [0-9.]+ "GET ' "$NGINX_ACCESS_LOG"

# A configuration nginx rejects: nginx -t fails, the sync reload reports it and
# the old configuration keeps serving.
cp "$NGINX_UPSTREAM_FILE" upstream.good
printf 'server 127.0.0.1:%s weight=banana;\n' "$green" >"$NGINX_UPSTREAM_FILE"
expect_exit 1 $NGINX_TEST
expect_grep 'weight' err
expect_exit 1 $NGINX_RELOAD_SYNC
expect_grep 'rejected' err
expect_http "$NGINX_URL/" 200 '"version": "v2"'
mv upstream.good "$NGINX_UPSTREAM_FILE"
expect_exit 0 $NGINX_TEST
expect_exit 0 $NGINX_RELOAD_SYNC
: >"$NGINX_ERROR_LOG"

# ---- negative controls: the same measurement does see failures ---------------

# The backend killed outright under load: nginx answers 502, counted as failed.
load_start "$NGINX_URL/" --concurrency 2
kill -KILL "$(demo_pid green)"
sleep 0.3
load_stop
expect_load 'd["failed"] > 0 and d["errors"].get("http 502", 0) > 0'
expect_load 'd["window"] is None and d["first_failure"] is not None'
# Nothing listening: every request is a refused connection.
expect_exit 0 "$TEST_PYTHON" "$TEST_LIB_DIR/load.py" "http://127.0.0.1:$closed/" --count 20 --out refused.json
expect_json refused.json 'd["total"] == 20 and d["failed"] == 20 and d["errors"] == {"connection refused": 20}'
expect_json refused.json 'd["stop_reason"] == "count" and d["latency_ms"]["p50"] is None'
# Loopback only.
expect_exit 1 "$TEST_PYTHON" "$TEST_LIB_DIR/load.py" "http://192.0.2.1/" --count 1
expect_grep 'loopback' err

test_done
