#!/usr/bin/env bash
# health output formats: the table, --output json (IETF health+json), --nagios,
# --metrics-file (Prometheus text, written atomically), -q.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
umask 022
httpd_start
httpd_set /api 200 '{"status":"UP"}'
httpd_set /warn 200 '{"status":"UNKNOWN"}'
httpd_set /down 503 '{"status":"DOWN"}'
closed=$(free_port)
cat >opsctl.conf <<CONF
[check "api"]
url = $HTTPD_URL/api

[check "slowpoke"]
url = $HTTPD_URL/warn

[check "broken"]
url = $HTTPD_URL/down

[check "gone"]
url = http://127.0.0.1:$closed/
timeout = 2s
CONF

# ---- text
expect_exit 0 opsctl health api
expect_grep '^CHECK +TYPE +STATUS +TIME +DETAIL *$' out
expect_grep '^api +http +pass +[0-9.]+ ?(ms|s)( |$)' out
expect_no_grep $'\033' out err
# -q: cron wants nothing at all on success (DESIGN.md section 1), and still
# hears about a failure.
expect_exit 0 opsctl -q health api
expect_no_grep . out err
expect_exit 1 opsctl -q health broken
grep -q . out err || fail "-q health printed nothing about a failed check"

# ---- json
expect_exit 0 opsctl --output json health api
expect_json out 'd["status"] == "pass" and d["exit"] == 0 and isinstance(d["checks"], dict)'
expect_json out 'list(d["checks"]) == ["api:http"]'
expect_json out 'd["checks"]["api:http"][0]["componentId"] == "api"'
expect_json out 'd["checks"]["api:http"][0]["componentType"] == "http"'
expect_json out 'd["checks"]["api:http"][0]["status"] == "pass" and d["checks"]["api:http"][0]["state"] == "pass"'
expect_json out 'isinstance(d["checks"]["api:http"][0]["observedValue"], (int, float)) and d["checks"]["api:http"][0]["observedUnit"] == "ms"'
expect_json out '__import__("re").match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", d["checks"]["api:http"][0]["time"])'
expect_json out 'isinstance(d["output"], str)'
expect_no_grep . err
# --json and -o json are the same thing.
mv out json1
expect_exit 0 opsctl --json health api
expect_json out 'd["status"] == "pass" and list(d["checks"]) == ["api:http"]'
expect_exit 0 opsctl -o json health api
expect_json out 'd["status"] == "pass"'

expect_exit 1 opsctl --output json health
expect_json out 'd["status"] == "fail" and d["exit"] == 1'
expect_json out 'sorted(d["checks"]) == ["api:http", "broken:http", "gone:http", "slowpoke:http"]'
expect_json out 'd["checks"]["slowpoke:http"][0]["status"] == "warn"'
expect_json out 'd["checks"]["broken:http"][0]["status"] == "fail"'
# unreachable is a fail in IETF terms, but keeps its own state.
expect_json out 'd["checks"]["gone:http"][0]["status"] == "fail" and d["checks"]["gone:http"][0]["state"] == "unreachable"'
expect_json out 'all(isinstance(c[0].get("output", ""), str) for c in d["checks"].values())'
expect_json out 'd["checks"]["broken:http"][0]["output"] != ""'

expect_exit 6 opsctl --output json health api slowpoke
expect_json out 'd["status"] == "warn" and d["exit"] == 6'
expect_exit 4 opsctl --output json health api gone
expect_json out 'd["status"] == "fail" and d["exit"] == 4'

# Errors stay JSON-free on stdout: usage errors print nothing there.
expect_exit 2 opsctl --output json health nope
expect_grep "unknown check 'nope'" err

# ---- nagios
expect_exit 0 opsctl health --nagios api
expect_grep '^HEALTH OK - .* \| .*=' out
[ "$(wc -l <out)" -eq 1 ] || fail "--nagios printed more than one line"
expect_exit 1 opsctl health --nagios api slowpoke
expect_grep '^HEALTH WARNING - .*slowpoke' out
expect_exit 2 opsctl health --nagios api broken
expect_grep '^HEALTH CRITICAL - .*broken' out
expect_exit 2 opsctl health --nagios api gone
expect_grep '^HEALTH CRITICAL - .*gone' out
expect_exit 2 opsctl health --nagios
expect_grep '^HEALTH CRITICAL - ' out
[ "$(wc -l <out)" -eq 1 ] || fail "--nagios printed more than one line"
# A usage/config problem is UNKNOWN (3) in the plugin contract.
expect_exit 3 opsctl health --nagios nope
expect_grep '^HEALTH UNKNOWN - ' out

# ---- metrics file
mkdir textfile
expect_exit 1 opsctl health --metrics-file textfile/health.prom
prom=textfile/health.prom
[ -f "$prom" ] || fail "no metrics file written"
expect_grep '^opsctl_check_up\{check="api"\} 1$' $prom
expect_grep '^opsctl_check_up\{check="slowpoke"\} 1$' $prom
expect_grep '^opsctl_check_up\{check="broken"\} 0$' $prom
expect_grep '^opsctl_check_up\{check="gone"\} 0$' $prom
expect_grep '^opsctl_check_status\{check="api"\} 0$' $prom
expect_grep '^opsctl_check_status\{check="slowpoke"\} 1$' $prom
expect_grep '^opsctl_check_status\{check="broken"\} 2$' $prom
expect_grep '^opsctl_check_status\{check="gone"\} 3$' $prom
expect_grep '^opsctl_check_duration_seconds\{check="api"\} [0-9.e+-]+$' $prom
expect_grep '^opsctl_health_last_run_timestamp_seconds [0-9.e+]+$' $prom
expect_grep '^# TYPE opsctl_check_up gauge$' $prom
# The timestamp is now (within a minute).
ts=$(awk '/^opsctl_health_last_run_timestamp_seconds /{ printf "%d", $2 }' $prom)
[ $((${ts:-0} - $(date +%s))) -le 60 ] && [ $(($(date +%s) - ${ts:-0})) -le 60 ] ||
	fail "opsctl_health_last_run_timestamp_seconds is not now: $ts"
# Valid exposition format, ends with a newline.
[ "$(tail -c 1 $prom | od -An -c | tr -d ' ')" = '\n' ] || fail "metrics file does not end in a newline"
if grep -vqE '^(#.*|[a-z_]+(\{[^}]*\})? ([-+0-9.eE]+|NaN|[+-]Inf))$' $prom; then
	show_file metrics $prom
	fail "lines that are not Prometheus text format in $prom"
fi

# Written atomically: a run replaces the whole file and leaves no temporary behind.
printf 'stale content\n' >$prom
expect_exit 0 opsctl health --metrics-file $prom api
expect_no_grep 'stale' $prom
expect_no_grep 'broken' $prom
expect_grep '^opsctl_check_up\{check="api"\} 1$' $prom
[ "$(ls -A textfile)" = "health.prom" ] || fail "leftovers in the textfile directory: $(ls -A textfile)"
# node_exporter reads it while it is replaced: a reader never sees a partial file.
ino1=$(stat -c %i $prom)
expect_exit 0 opsctl health --metrics-file $prom api
ino2=$(stat -c %i $prom)
[ "$ino1" != "$ino2" ] || fail "metrics file rewritten in place (same inode), not renamed into place"
# ... and readable by node_exporter, which runs as another user (umask 022 here).
[ "$(stat -c %a $prom)" = 644 ] || fail "metrics file mode is $(stat -c %a $prom), node_exporter cannot read it"

# Metrics and --output json together.
expect_exit 0 opsctl --output json health --metrics-file $prom api
expect_json out 'd["status"] == "pass"'
expect_grep 'opsctl_check_up' $prom
# An unwritable metrics path is an error, not silence.
expect_exit 1,3 opsctl health --metrics-file /nonexistent-dir/x.prom api
expect_grep '^opsctl: error: .*nonexistent-dir' err

test_done
