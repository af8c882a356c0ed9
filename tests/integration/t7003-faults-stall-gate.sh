#!/usr/bin/env bash
# Resource faults (issue 8): the deploy gate against a service that accepts
# and never answers (the test HTTP service's mode=hang). The gate gives up
# at [health] wait (each probe bounded by [health] timeout), not one stall
# per probe:
#   the new release stalls          exit 7 within wait + timeout + the rollback's
#                                   gate; the previous release current and serving
#   the rollback's gate stalls too  exit 8 within two gates; the message says what
#                                   to check
# and the next deploy, with the service answering, succeeds.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/fault-lib.sh"
require_opsctl
httpd_start
httpd_control path=/health status=200 'body={"status":"UP"}'
export HTTPD_URL
cat >restart.sh <<'SH'
#!/bin/sh
# the service as the release says: a release with a file 'hang' (or the
# test's hang-everything) accepts and never answers
cd "$(dirname "$0")" || exit 1
echo "$OPSCTL_RELEASE" >>restarts.log
if [ -e app/current/hang ] || [ -e hang-everything ]; then
	set -- --data-urlencode path=/health --data-urlencode mode=hang
else
	set -- --data-urlencode path=/health --data-urlencode status=200 --data-urlencode 'body={"status":"UP"}'
fi
curl -fsS --max-time 5 "$@" "$HTTPD_URL/__control" >/dev/null
SH
chmod +x restart.sh
cat >opsctl.conf <<CONF
[app]
name = demo
[deploy]
root = app
backup = no
migrate = no
min_free = 0
[service]
restart = $TEST_SCRATCH/restart.sh
timeout = 20s
[health]
wait = 4s
interval = 100ms
consecutive = 1
timeout = 2s
[check "api"]
url = $HTTPD_URL/health
CONF
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
mkrel() { # NAME [hang]
	rm -rf "src-$1" && mkdir "src-$1"
	echo "$1" >"src-$1/version"
	[ -z "${2:-}" ] || touch "src-$1/hang"
	tar -C "src-$1" -czf "$1.tar.gz" .
}
mkrel v1
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)

say "the new release accepts and never answers: rolled back, exit 7, within its deadlines"
mkrel v2 hang
: >restarts.log
expect_exit 7 opsctl deploy v2.tar.gz
# the gate: 4s wait (its last probe cut to what is left of it); the rollback's gate passes at once
expect_between 3900 10000 "deploy whose service stalls"
expect_grep "did not pass its health gate: 'api' unreachable: no answer within [0-9]+ms" err
expect_grep "rolled back to '$id1', which passed its health gate" err
TEST_CHECKS=$((TEST_CHECKS + 3))
[ "$(readlink app/current)" = "releases/$id1" ] || fail "stalled gate: current -> $(readlink app/current)"
[ "$(cat app/current/version)" = v1 ] || fail "stalled gate: the current release is not v1"
[ "$(wc -l <restarts.log)" = 2 ] || fail "expected two restarts (the new release, then the old one): $(cat restarts.log)"
expect_exit 0 opsctl health
tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >last.json
expect_json last.json 'd["command"] == "deploy" and d["exit"] == 7 and d["outcome"] == "rolled-back" and d["rolled_back_to"] == "'"$id1"'"'
[ ! -e "$OPSCTL_STATE_DIR/deploy/journal.json" ] || fail "stalled gate: a journal was left"

say "the rollback's gate stalls too: exit 8 within two gates, what to check"
mkrel v3 hang
touch hang-everything
expect_exit 8 opsctl deploy v3.tar.gz
expect_between 7900 18000 "deploy whose service and rollback stall"
expect_grep "rollback to '$id1' failed too: 'api' unreachable: no answer within [0-9]+ms" err
expect_grep "^hint: an operator must check the service" err
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(readlink app/current)" = "releases/$id1" ] || fail "stalled rollback: current -> $(readlink app/current)"
rm -f hang-everything

say "with the service answering again, the next deploy succeeds"
mkrel v4
expect_exit 0 opsctl deploy v4.tar.gz
id4=$(cat out)
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(readlink app/current)" = "releases/$id4" ] && [ "$(cat app/current/version)" = v4 ] ||
	fail "the deploy after the stalls: current -> $(readlink app/current)"
expect_exit 0 opsctl health

test_done
