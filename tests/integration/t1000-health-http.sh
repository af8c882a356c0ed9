#!/usr/bin/env bash
# health against HTTP endpoints: status codes and the body formats of
# DESIGN.md section 6 (Spring Actuator v2/v3, IETF health+json, the seeds'
# {"status":"healthy"}, plain text), require, expect, bad bodies.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
httpd_start

# Unreachable: nothing listens on the port.
closed=$(free_port)
expect_exit 4 opsctl health --timeout 3s "http://127.0.0.1:$closed/health"
expect_grep 'unreachable' out
expect_grep "127\.0\.0\.1:$closed" out err

# Status codes and the Actuator body.
httpd_set /down503 503 '{"status":"DOWN"}'
expect_exit 1 opsctl health "$HTTPD_URL/down503"
expect_grep 'fail' out

httpd_set /down200 200 '{"status":"DOWN"}'
expect_exit 1 opsctl health "$HTTPD_URL/down200"

httpd_set /oos 200 '{"status":"OUT_OF_SERVICE"}'
expect_exit 1 opsctl health "$HTTPD_URL/oos"

httpd_set /up 200 '{"status":"UP"}'
expect_exit 0 opsctl health "$HTTPD_URL/up"
expect_grep '^CHECK +TYPE +STATUS +TIME +DETAIL' out
expect_grep ' pass ' out

httpd_set /unknown 200 '{"status":"UNKNOWN"}'
expect_exit 6 opsctl health "$HTTPD_URL/unknown"
expect_grep ' warn ' out

# A body of a JSON type that is not JSON at the start is still JSON by Content-Type.
httpd_set /up-vnd 200 ' {"status":"UP"}' 0 'application/vnd.spring-boot.actuator.v3+json'
expect_exit 0 opsctl health "$HTTPD_URL/up-vnd"

# Status codes without a body; 3xx passes, 4xx/5xx fail.
httpd_set /empty204 204 ''
expect_exit 0 opsctl health "$HTTPD_URL/empty204"
httpd_set /notfound 404 'not here'
expect_exit 1 opsctl health "$HTTPD_URL/notfound"
expect_grep '404' out
httpd_set /err500 500 'boom'
expect_exit 1 opsctl health "$HTTPD_URL/err500"

# --expect narrows (or widens) the accepted codes.
expect_exit 1 opsctl health --expect 200 "$HTTPD_URL/empty204"
expect_exit 0 opsctl health --expect 200,204 "$HTTPD_URL/empty204"
expect_exit 0 opsctl health --expect 200-299 "$HTTPD_URL/empty204"
expect_exit 0 opsctl health --expect 404 "$HTTPD_URL/notfound"

# Actuator components: v3 "components" and v2 "details", with require.
v3='{"status":"UP","components":{"db":{"status":"UP","details":{"database":"PostgreSQL"}},"redis":{"status":"DOWN","details":{"error":"refused"}},"diskSpace":{"status":"UP"}}}'
v2='{"status":"UP","details":{"db":{"status":"UP"},"redis":{"status":"DOWN"}}}'
httpd_set /v3 200 "$v3"
httpd_set /v2 200 "$v2"
cat >opsctl.conf <<CONF
[check "v3-db"]
url = $HTTPD_URL/v3
require = db

[check "v3-redis"]
url = $HTTPD_URL/v3
require = db redis

[check "v3-kafka"]
url = $HTTPD_URL/v3
require = kafka

[check "v3-none"]
url = $HTTPD_URL/v3

[check "v2-db"]
url = $HTTPD_URL/v2
require = db

[check "v2-redis"]
url = $HTTPD_URL/v2
require = db, redis

[check "v2-kafka"]
url = $HTTPD_URL/v2
require = kafka
CONF
for name in v3-db v3-none v2-db; do
	expect_exit 0 opsctl -c opsctl.conf health "$name"
done
for name in v3-redis v2-redis; do
	expect_exit 1 opsctl -c opsctl.conf health "$name"
	expect_grep 'redis' out
done
for name in v3-kafka v2-kafka; do
	expect_exit 1 opsctl -c opsctl.conf health "$name"
	expect_grep 'kafka' out
done
# --require does the same for ad hoc URLs.
expect_exit 0 opsctl health --require db "$HTTPD_URL/v3"
expect_exit 1 opsctl health --require db,redis "$HTTPD_URL/v3"
expect_exit 1 opsctl health --require 'db kafka' "$HTTPD_URL/v2"

# IETF health+json (draft-inadarei-api-health-check).
ietf=application/health+json
httpd_set /ietf-pass 200 '{"status":"pass","version":"1","checks":{"db:responseTime":[{"status":"pass"}]}}' 0 $ietf
httpd_set /ietf-warn 200 '{"status":"warn","checks":{"disk:utilization":[{"status":"warn"}]}}' 0 $ietf
httpd_set /ietf-fail 503 '{"status":"fail","output":"db down"}' 0 $ietf
httpd_set /ietf-fail200 200 '{"status":"fail"}' 0 $ietf
expect_exit 0 opsctl health "$HTTPD_URL/ietf-pass"
expect_exit 6 opsctl health "$HTTPD_URL/ietf-warn"
expect_grep ' warn ' out
expect_exit 1 opsctl health "$HTTPD_URL/ietf-fail"
expect_exit 1 opsctl health "$HTTPD_URL/ietf-fail200"

# The seeds' own shape (004: {"status":"healthy","components":{...}}).
httpd_set /seed-ok 200 '{"status":"healthy","components":{"database":"healthy","redis":"healthy"}}'
httpd_set /seed-degraded 200 '{"status":"degraded","components":{"database":"healthy","llm":"degraded"}}'
httpd_set /seed-bad 503 '{"status":"unhealthy","components":{"database":"unhealthy"}}'
httpd_set /seed-bad200 200 '{"status":"unhealthy"}'
expect_exit 0 opsctl health "$HTTPD_URL/seed-ok"
expect_exit 0 opsctl health --require database "$HTTPD_URL/seed-ok"
expect_exit 6 opsctl health "$HTTPD_URL/seed-degraded"
expect_exit 1 opsctl health "$HTTPD_URL/seed-bad"
expect_exit 1 opsctl health "$HTTPD_URL/seed-bad200"

# Plain text is judged by the status code alone.
httpd_set /plain 200 'OK'
expect_exit 0 opsctl health "$HTTPD_URL/plain"
httpd_set /plain-html 200 '<html><body>fine</body></html>' 0 text/html
expect_exit 0 opsctl health "$HTTPD_URL/plain-html"

# Bad bodies fail with a reason, they do not crash or pass.
httpd_set /malformed 200 '{"status": "UP",' 0 application/json
expect_exit 1 opsctl health "$HTTPD_URL/malformed"
expect_grep 'malformed JSON' out err
httpd_set /malformed2 200 '{"status": UP}'
expect_exit 1 opsctl health "$HTTPD_URL/malformed2"
expect_grep 'malformed JSON' out err
httpd_set /notobject 200 '["UP"]' 0 application/json
expect_exit 0,1,6 opsctl health "$HTTPD_URL/notobject"
httpd_set /nostatus 200 '{"foo":"bar"}' 0 application/json
expect_exit 0,1,6 opsctl health "$HTTPD_URL/nostatus"
httpd_set /nonstring 200 '{"status":42}' 0 application/json
expect_exit 0,1,6 opsctl health "$HTTPD_URL/nonstring"

httpd_control path=/huge status=200 body_size=10485760 content_type=application/json
expect_exit 1 opsctl health --timeout 20s "$HTTPD_URL/huge"
expect_grep 'larger than' out err
httpd_control path=/huge-text status=200 body_size=10485760 content_type=text/plain
expect_exit 1 opsctl health --timeout 20s "$HTTPD_URL/huge-text"
expect_grep 'larger than' out err
# Just under the limit is fine.
httpd_control path=/big-ok status=200 body_size=60000 content_type=text/plain
expect_exit 0 opsctl health "$HTTPD_URL/big-ok"

# A server that closes the connection without answering is unreachable.
httpd_control path=/close mode=close
expect_exit 4 opsctl health --timeout 3s "$HTTPD_URL/close"

# Several targets at once: the worst one decides (fail > unreachable > warn > pass).
expect_exit 0 opsctl health "$HTTPD_URL/up" "$HTTPD_URL/plain"
expect_exit 6 opsctl health "$HTTPD_URL/up" "$HTTPD_URL/unknown"
expect_exit 4 opsctl health --timeout 3s "$HTTPD_URL/unknown" "http://127.0.0.1:$closed/"
expect_exit 1 opsctl health --timeout 3s "$HTTPD_URL/down503" "http://127.0.0.1:$closed/" "$HTTPD_URL/unknown"
[ "$(grep -cE ' (pass|warn|fail|unreachable) ' out)" -eq 3 ] || fail "expected 3 result rows in the table"

test_done
