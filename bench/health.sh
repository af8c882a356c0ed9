#!/usr/bin/env bash
# health: 20 endpoints answering after 300 ms, probed by one `opsctl health`
# (concurrent) against the seeds' way, a sequential curl loop (DESIGN §8).
#
#   bench/health.sh [RUNS]     RUNS timed runs per command, median (default 5)
#
# Cases (one line each: case opsctl_s peer_s ratio, ratio = peer / opsctl):
#   health-20x300ms             plain {"status":"UP"}; peer: curl -fsS loop
#   health-20x300ms-actuator    Spring Actuator bodies, --require db,diskSpace,redis;
#                               peer: curl | jq -e on the same components, in a loop
#   health-20x0ms-actuator      the same with no server delay: per-check overhead
#   health-20x300ms/curl-parallel  not a seed but a floor: one `curl --parallel`
#                               fetching the 20 plain URLs concurrently
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=${1:-5}
case $RUNS in '' | *[!0-9]* | 0) bench_die "RUNS must be a positive number" ;; esac
NURL=20
DELAY_MS=300

bench_setup health
command -v curl >/dev/null 2>&1 || bench_die "curl is needed as the peer"
command -v jq >/dev/null 2>&1 || bench_die "jq is needed for the Actuator peer (apt-get install jq)"
# --parallel-immediate appeared in curl 7.68.
have_parallel=
curl --help all 2>/dev/null | grep -q -- --parallel-immediate && have_parallel=1
bench_httpd_start

actuator='{"status":"UP","components":{"db":{"status":"UP","details":{"database":"PostgreSQL","validationQuery":"isValid()"}},"diskSpace":{"status":"UP","details":{"total":250685575168,"free":118201503744,"threshold":10485760,"path":"/app/.","exists":true}},"ping":{"status":"UP"},"redis":{"status":"UP","details":{"version":"7.2.4"}},"livenessState":{"status":"UP"},"readinessState":{"status":"UP"}},"groups":["liveness","readiness"]}'
require=db,diskSpace,redis

plain_urls=() act_urls=() fast_urls=()
for ((i = 0; i < NURL; i++)); do
	p=$(printf '%02d' "$i")
	bench_httpd_set "/plain/$p" 200 '{"status":"UP"}' "$DELAY_MS"
	bench_httpd_set "/actuator/$p/health" 200 "$actuator" "$DELAY_MS"
	bench_httpd_set "/fast/$p/health" 200 "$actuator" 0
	plain_urls+=("$BENCH_HTTPD_URL/plain/$p")
	act_urls+=("$BENCH_HTTPD_URL/actuator/$p/health")
	fast_urls+=("$BENCH_HTTPD_URL/fast/$p/health")
done
# One endpoint whose required component is down, for the sanity check below.
down=$(printf '%s' "$actuator" | sed 's/"redis":{"status":"UP"/"redis":{"status":"DOWN"/')
[ "$down" != "$actuator" ] || bench_die "could not make the DOWN body"
bench_httpd_set /actuator/down/health 200 "$down" 0

# The peers are scripts, the way the seeds run them.
cat >curl-loop.sh <<'EOF'
for u in "$@"; do curl -fsS -o /dev/null --max-time 5 "$u" || exit 1; done
EOF
# Not a seed, a floor: one curl doing all the transfers concurrently.
cat >curl-parallel.sh <<'EOF'
args=()
for u in "$@"; do args+=(-o /dev/null "$u"); done
exec curl -fsS --max-time 5 --parallel --parallel-immediate --parallel-max 50 "${args[@]}"
EOF
cat >curl-jq-loop.sh <<'EOF'
req=$1
shift
for u in "$@"; do
	curl -fsS --max-time 5 "$u" | jq -e --arg req "$req" \
		'.status == "UP" and ([($req | split(",")[]) as $c | .components[$c].status == "UP"] | all)' \
		>/dev/null || exit 1
done
EOF

# Sanity: every command passes on the healthy set, both sides reject a DOWN
# component, and opsctl really sent one request per URL.
"$OPSCTL_BIN" health --timeout 5s "${plain_urls[@]}" >check.out 2>&1 ||
	{ cat check.out >&2; bench_die "opsctl health failed on the healthy endpoints"; }
"$OPSCTL_BIN" health --timeout 5s --require "$require" "${act_urls[@]}" >check.out 2>&1 ||
	{ cat check.out >&2; bench_die "opsctl health --require failed on the healthy endpoints"; }
[ "$(bench_httpd_hits /actuator/07/health)" -eq 1 ] || bench_die "expected one request to /actuator/07/health"
if "$OPSCTL_BIN" health --require "$require" "$BENCH_HTTPD_URL/actuator/down/health" >/dev/null 2>&1; then
	bench_die "opsctl health --require $require passed although redis is DOWN"
fi
if bash curl-jq-loop.sh "$require" "$BENCH_HTTPD_URL/actuator/down/health" 2>/dev/null; then
	bench_die "the curl|jq peer passed although redis is DOWN"
fi
bash curl-loop.sh "${plain_urls[@]}" || bench_die "the curl loop failed"
if [ -n "$have_parallel" ]; then
	bash curl-parallel.sh "${fast_urls[@]}" 2>check.err || { cat check.err >&2; bench_die "curl --parallel failed"; }
fi
bash curl-jq-loop.sh "$require" "${fast_urls[@]}" || bench_die "the curl|jq loop failed on the healthy endpoints"

echo "# health: $NURL endpoints on one loopback httpd.py (threaded), $RUNS runs each, median wall seconds"
# run_case NAME PEER_SCRIPT URL...: opsctl and the peer alternate, one run
# each per round (plus one untimed warm-up round), so load bursts hit both.
run_case() {
	local name=$1 peer_script=$2 r warm
	shift 2
	local urls=("$@")
	local ops_cmd=("$OPSCTL_BIN" health --timeout 5s)
	local peer_cmd=(bash "$BENCH_TMP/work/$peer_script")
	if [ "$peer_script" = curl-jq-loop.sh ]; then
		ops_cmd+=(--require "$require")
		peer_cmd+=("$require")
	fi
	local f=${name//\//_}
	: >"$f.ops"
	: >"$f.peer"
	for ((r = 0; r < RUNS; r++)); do
		warm=$((r == 0 ? 1 : 0))
		bench_sample "$f.ops" 1 "$warm" "${ops_cmd[@]}" "${urls[@]}"
		bench_sample "$f.peer" 1 "$warm" "${peer_cmd[@]}" "${urls[@]}"
	done
	RESULT_OPS=$(bench_median <"$f.ops")
	RESULT_PEER=$(bench_median <"$f.peer")
	bench_case "$name" "$RESULT_OPS" "$RESULT_PEER" 3
}

run_case health-20x300ms curl-loop.sh "${plain_urls[@]}"
ratio=$(awk -v a="$RESULT_OPS" -v b="$RESULT_PEER" 'BEGIN { printf "%.1f", b / a }')
bench_goal "health-20x300ms speed-up (x)" "$ratio" ">=" 15
bench_goal "health-20x300ms opsctl (s)" "$RESULT_OPS" "<=" 0.4
if [ -n "$have_parallel" ]; then
	run_case health-20x300ms/curl-parallel curl-parallel.sh "${plain_urls[@]}"
else
	echo "# health-20x300ms/curl-parallel skipped: this curl has no --parallel-immediate"
fi
run_case health-20x300ms-actuator curl-jq-loop.sh "${act_urls[@]}"
bench_goal "health-20x300ms-actuator opsctl (s)" "$RESULT_OPS" "<=" 0.4
run_case health-20x0ms-actuator curl-jq-loop.sh "${fast_urls[@]}"
