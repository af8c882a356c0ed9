#!/usr/bin/env bash
# health deadlines: per-check timeouts, checks running concurrently, --wait
# with --interval and --consecutive (the deploy gate).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
httpd_start

# A slow endpoint past its timeout is unreachable, and opsctl does not wait for it.
httpd_set /slow 200 '{"status":"UP"}' 3000
expect_exit 4 opsctl health --timeout 500ms "$HTTPD_URL/slow"
expect_faster 2500
expect_grep 'unreachable' out
# ... within its timeout it passes.
httpd_set /slowish 200 '{"status":"UP"}' 300
expect_exit 0 opsctl health --timeout 5s "$HTTPD_URL/slowish"

# Accepting the connection and never answering is the same.
httpd_control path=/hang mode=hang
expect_exit 4 opsctl health --timeout 1s "$HTTPD_URL/hang"
expect_faster 3000

# The timeout from the config, per check and from [health].
cat >opsctl.conf <<CONF
[health]
timeout = 700ms

[check "slow-default"]
url = $HTTPD_URL/slow

[check "slow-own"]
url = $HTTPD_URL/slow
timeout = 10s
CONF
expect_exit 4 opsctl -c opsctl.conf health slow-default
expect_faster 2500
expect_exit 0 opsctl -c opsctl.conf health slow-own
expect_slower 2900
# The command line beats the file.
expect_exit 4 opsctl -c opsctl.conf health --timeout 500ms slow-own
expect_faster 2500

# Checks run concurrently: 10 endpoints of 1 s each take about 1 s, not 10.
urls=()
for i in 0 1 2 3 4 5 6 7 8 9; do
	httpd_set "/c$i" 200 '{"status":"UP"}' 1000
	urls+=("$HTTPD_URL/c$i")
done
expect_exit 0 opsctl health --timeout 8s "${urls[@]}"
expect_slower 1000
expect_faster 2500
[ "$(grep -c ' pass ' out)" -eq 10 ] || fail "expected 10 passing rows"

# --wait: the service turns healthy 2 s after it is set; opsctl keeps probing.
httpd_control path=/turns status=503 'body={"status":"DOWN"}' after_ms=2000 \
	'then_body={"status":"UP"}' then_status=200
expect_exit 0 opsctl health --wait 10s --interval 200ms "$HTTPD_URL/turns"
expect_slower 1800
expect_faster 9000
[ "$(httpd_hits /turns)" -ge 3 ] || fail "expected several probes before it turned healthy"

# --consecutive 3: three passes in a row after it turned healthy.
httpd_control path=/turns2 status=503 'body={"status":"DOWN"}' after_ms=1000 \
	'then_body={"status":"UP"}' then_status=200
expect_exit 0 opsctl health --wait 15s --interval 200ms --consecutive 3 "$HTTPD_URL/turns2"
hits_then=$(httpd_hits /turns2 hits_then)
[ "$hits_then" -ge 3 ] || fail "--consecutive 3 returned after $hits_then healthy probe(s)"

# [health] consecutive/interval from the config; [health] wait is the deploy
# gate's default, so a plain `opsctl health` waits only with --wait.
httpd_control path=/turns3 status=503 'body={"status":"DOWN"}' after_ms=1000 \
	'then_body={"status":"UP"}' then_status=200
cat >gate.conf <<CONF
[health]
wait = 15s
interval = 200ms
consecutive = 2

[check "gate"]
url = $HTTPD_URL/turns3
CONF
expect_exit 1 opsctl -c gate.conf health gate
expect_exit 0 opsctl -c gate.conf health --wait 15s gate
expect_slower 900
hits_then=$(httpd_hits /turns3 hits_then)
[ "$hits_then" -ge 2 ] || fail "[health] consecutive = 2 returned after $hits_then healthy probe(s)"

# --wait on a service that never turns healthy gives up at the deadline.
httpd_set /never 503 '{"status":"DOWN"}'
expect_exit 1,4 opsctl health --wait 1s --interval 200ms "$HTTPD_URL/never"
expect_slower 900
expect_faster 3000
[ "$(httpd_hits /never)" -ge 2 ] || fail "--wait 1s probed only once"

# --wait on something unreachable: exit 4 at the deadline, not before.
closed=$(free_port)
expect_exit 4 opsctl health --wait 2s --interval 200ms --timeout 500ms "http://127.0.0.1:$closed/"
expect_slower 1800
expect_faster 5000

# A bounded --wait is not stretched by a long per-check timeout.
expect_exit 4 opsctl health --wait 1s --timeout 10s "$HTTPD_URL/hang"
expect_faster 4000

# Bad durations are usage errors.
expect_exit 2 opsctl health --timeout 5parsecs "$HTTPD_URL/never"
expect_grep "5parsecs" err
expect_exit 2 opsctl health --wait -1s "$HTTPD_URL/never"

test_done
