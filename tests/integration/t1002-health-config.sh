#!/usr/bin/env bash
# health and its configuration: which checks run, errors that name the file
# and line, unknown names, no config at all.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
httpd_start
httpd_set /api 200 '{"status":"UP"}'
httpd_set /worker 200 '{"status":"UNKNOWN"}'
closed=$(free_port)

# No config and no target: usage error with a hint.
mkdir empty && cd empty || fail "cd empty"
expect_exit 2 opsctl health
expect_grep '^opsctl: error: ' err
expect_grep '^hint: ' err
expect_no_grep . out
cd .. || fail "cd .."

cat >opsctl.conf <<CONF
# the demo service
[check "api"]
url = $HTTPD_URL/api

[check "worker"]
url = $HTTPD_URL/worker   ; answers UNKNOWN -> warn
CONF

# No target: every [check] of the config, found as ./opsctl.conf.
expect_exit 6 opsctl health
expect_grep '^api +http +pass( |$)' out
expect_grep '^worker +http +warn( |$)' out
# Named targets: only those.
expect_exit 0 opsctl health api
expect_no_grep '^worker ' out
# -c and OPSCTL_CONFIG find it from elsewhere.
mkdir elsewhere && cd elsewhere || fail "cd elsewhere"
expect_exit 0 opsctl -c ../opsctl.conf health api
expect_exit 0 env OPSCTL_CONFIG=../opsctl.conf "$OPSCTL" health api
cd .. || fail "cd .."
# Names and URLs mix.
expect_exit 0 opsctl health api "$HTTPD_URL/api"

# An unknown check name is a usage error that names it.
expect_exit 2 opsctl health nope
expect_grep "unknown check 'nope'" err
expect_no_grep . out

# A missing config file given with -c is a config error.
expect_exit 3 opsctl -c does-not-exist.conf health api
expect_grep 'does-not-exist\.conf' err

# A bad line: exit 3, naming the file and the line.
cat >bad.conf <<CONF
[check "api"]
url = $HTTPD_URL/api
this line is not an assignment
CONF
expect_exit 3 opsctl -c bad.conf health api
expect_grep '^opsctl: error: .*bad\.conf:3' err

# A bad value names the line and the key.
cat >badval.conf <<CONF
[check "api"]
url = $HTTPD_URL/api

[health]
timeout = soon
CONF
expect_exit 3 opsctl -c badval.conf health api
expect_grep 'badval\.conf:5' err
expect_grep 'timeout' err

cat >badtype.conf <<CONF
[check "x"]
type = ftp
url = ftp://127.0.0.1/
CONF
expect_exit 3 opsctl -c badtype.conf health x
expect_grep 'badtype\.conf:2' err
expect_grep 'ftp' err

# A check without what it needs.
cat >nourl.conf <<CONF
[check "x"]
type = http
CONF
expect_exit 3 opsctl -c nourl.conf health x
expect_grep 'nourl\.conf' err

# The error names the config file in the message users see, as opsctl.conf:LINE.
mkdir named && cd named || fail "cd named"
printf '[check "api"]\nurl = %s/api\n[oops\n' "$HTTPD_URL" >opsctl.conf
expect_exit 3 opsctl health api
expect_grep 'opsctl\.conf:3' err
cd .. || fail "cd .."

# ${VAR} in the config is expanded from the environment.
cat >env.conf <<'CONF'
[check "api"]
url = http://127.0.0.1:${DEMO_PORT}/api
CONF
expect_exit 0 env DEMO_PORT="$HTTPD_PORT" "$OPSCTL" -c env.conf health api

# Unreachable and failing checks from the config.
cat >mixed.conf <<CONF
[check "api"]
url = $HTTPD_URL/api

[check "gone"]
url = http://127.0.0.1:$closed/health
timeout = 2s
CONF
expect_exit 4 opsctl -c mixed.conf health
expect_grep '^gone +http +unreachable( |$)' out
expect_grep '^api +http +pass( |$)' out

test_done
