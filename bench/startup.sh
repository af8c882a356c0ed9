#!/usr/bin/env bash
# startup: what one opsctl process costs before it does any work — wall time
# and peak RSS of `opsctl --version` and of one local `opsctl health URL`,
# beside curl (and pg_isready) measured in the same run (DESIGN §8).
#
#   bench/startup.sh [RUNS]   RUNS timed runs per command, median (default 200)
#
# Lines: `case opsctl_s peer_s ratio` for time, `case opsctl_kb peer_kb ratio`
# for peak RSS (GNU time %M, median of 10 runs); ratio = peer / opsctl.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=${1:-200}
case $RUNS in '' | *[!0-9]* | 0) bench_die "RUNS must be a positive number" ;; esac
WARMUP=20
ROUNDS=5
MEM_RUNS=10

bench_setup startup
bench_httpd_start
bench_httpd_set /health 200 '{"status":"UP"}' 0
url="$BENCH_HTTPD_URL/health"

"$OPSCTL_BIN" --version >version.out || bench_die "opsctl --version failed"
"$OPSCTL_BIN" health "$url" >check.out 2>&1 || { cat check.out >&2; bench_die "opsctl health $url failed"; }
curl_bin=$(command -v curl) || bench_die "curl is needed as the peer"
# Debian's /usr/bin/pg_isready is a Perl wrapper (pg_wrapper); measure the real one.
pg_isready_bin=$(find /usr/lib/postgresql -path '*/bin/pg_isready' 2>/dev/null | sort -V | tail -n 1)
[ -n "$pg_isready_bin" ] || pg_isready_bin=$(command -v pg_isready || true)
true_bin=$(type -P true)

nlibs() { ldd "$1" 2>/dev/null | grep -c '=>' || true; }
echo "# startup: $RUNS runs each in $ROUNDS alternating rounds (warm-up $WARMUP per round), median wall seconds; peak RSS median of $MEM_RUNS runs"
echo "# shared libraries loaded: opsctl $(nlibs "$OPSCTL_BIN"), curl $(nlibs "$curl_bin")${pg_isready_bin:+, pg_isready $(nlibs "$pg_isready_bin")}"

# Alternate opsctl and its peers in ROUNDS rounds so that a burst of load on
# the machine (a build next door) hits every command alike.
per=$(((RUNS + ROUNDS - 1) / ROUNDS))
: >v.ops
: >v.curl
: >v.pg
: >v.true
for ((r = 0; r < ROUNDS; r++)); do
	bench_sample v.ops "$per" "$WARMUP" "$OPSCTL_BIN" --version
	bench_sample v.curl "$per" "$WARMUP" "$curl_bin" --version
	[ -z "$pg_isready_bin" ] || bench_sample v.pg "$per" "$WARMUP" "$pg_isready_bin" --version
	bench_sample v.true "$per" "$WARMUP" "$true_bin"
done
version_s=$(bench_median <v.ops)
bench_case startup-version/curl "$version_s" "$(bench_median <v.curl)" 5
[ -z "$pg_isready_bin" ] || bench_case startup-version/pg_isready "$version_s" "$(bench_median <v.pg)" 5
echo "# floor: $true_bin (fork+exec, libc only) $(bench_ms "$(bench_median <v.true)") ms"

if [ -n "$GNU_TIME" ]; then
	ops_kb=$(bench_peak_kb "$MEM_RUNS" "$OPSCTL_BIN" --version)
	peer_kb=$(bench_peak_kb "$MEM_RUNS" "$curl_bin" --version)
	bench_case mem-version/curl "$ops_kb" "$peer_kb" 0
	if [ -n "$pg_isready_bin" ]; then
		peer_kb=$(bench_peak_kb "$MEM_RUNS" "$pg_isready_bin" --version)
		bench_case mem-version/pg_isready "$ops_kb" "$peer_kb" 0
	fi
	version_kb=$ops_kb
fi

curl_get=("$curl_bin" -fsS -o /dev/null --max-time 5 "$url")
: >h.ops
: >h.curl
for ((r = 0; r < ROUNDS; r++)); do
	bench_sample h.ops "$per" "$WARMUP" "$OPSCTL_BIN" health "$url"
	bench_sample h.curl "$per" "$WARMUP" "${curl_get[@]}"
done
bench_case health-1-local/curl "$(bench_median <h.ops)" "$(bench_median <h.curl)" 5
if [ -n "$GNU_TIME" ]; then
	ops_kb=$(bench_peak_kb "$MEM_RUNS" "$OPSCTL_BIN" health "$url")
	peer_kb=$(bench_peak_kb "$MEM_RUNS" "${curl_get[@]}")
	bench_case mem-health-1-local/curl "$ops_kb" "$peer_kb" 0
fi

bench_goal "opsctl --version (ms)" "$(bench_ms "$version_s")" "<=" 5
if [ -n "${version_kb:-}" ]; then
	bench_goal "opsctl --version peak RSS (KiB)" "$version_kb" "<=" 10240
fi
