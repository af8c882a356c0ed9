# shellcheck shell=bash
# Shared helpers for the benchmarks in bench/ (sourced, not run).
#
# Environment:
#   OPSCTL_BIN         the opsctl to measure; default: a Release build made here
#   BENCH_BUILD_DIR    where that build goes (default: build-bench/ in the repo)
#   BENCH_NO_INSTALL=1 never install hyperfine or GNU time; fall back or skip
#   BENCH_NO_HYPERFINE=1  time with the shell loop even when hyperfine is there
#
# Each benchmark prints one line per case, `case opsctl peer ratio`, with
# ratio = peer / opsctl (above 1: opsctl is faster or smaller). Lines starting
# with '#' are comments: goals, notes, what was measured.

export LC_ALL=C LANG=C TZ=UTC
unset OPSCTL_CONFIG NO_COLOR

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(cd "$BENCH_DIR/.." && pwd)
BENCH_HTTPD="$BENCH_REPO/tests/lib/httpd.py"
BENCH_PIDS=()
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/opsctl-bench.XXXXXX")
BENCH_TMP=$(cd "$BENCH_TMP" && pwd)
HAVE_HYPERFINE=
GNU_TIME=

bench_say() { printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
bench_die() {
	bench_say "$*"
	exit 1
}

bench_cleanup() {
	local pid
	for pid in "${BENCH_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${BENCH_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	BENCH_PIDS=()
	rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'bench_cleanup; trap - INT; kill -INT $$' INT
trap 'bench_cleanup; exit 143' TERM

# ---- the binary under test ----------------------------------------------

# bench_find_opsctl: set OPSCTL_BIN to a release build (made if needed).
bench_find_opsctl() {
	if [ -n "${OPSCTL_BIN:-}" ]; then
		[ -x "$OPSCTL_BIN" ] || bench_die "OPSCTL_BIN='$OPSCTL_BIN' is not an executable"
	else
		local dir=${BENCH_BUILD_DIR:-$BENCH_REPO/build-bench}
		local log="$BENCH_TMP/build.log"
		bench_say "building a Release opsctl in $dir"
		if ! { cmake -S "$BENCH_REPO" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
			-DOPSCTL_SANITIZE=OFF -DOPSCTL_TESTS=OFF &&
			cmake --build "$dir" --parallel "$(nproc 2>/dev/null || echo 2)"; } >"$log" 2>&1; then
			tail -n 30 "$log" >&2
			bench_die "build failed (full log above, last 30 lines)"
		fi
		OPSCTL_BIN="$dir/opsctl"
	fi
	OPSCTL_BIN=$(cd "$(dirname "$OPSCTL_BIN")" && pwd)/$(basename "$OPSCTL_BIN")
	export OPSCTL_BIN
	# A sanitizer build is several times slower and bigger: refuse to report it
	# as opsctl's figures.
	if ldd "$OPSCTL_BIN" 2>/dev/null | grep -Eq 'lib(asan|ubsan|tsan)'; then
		bench_die "$OPSCTL_BIN is a sanitizer build; benchmark a Release build (unset OPSCTL_BIN)"
	fi
	local cache
	cache="$(dirname "$OPSCTL_BIN")/CMakeCache.txt"
	if [ -f "$cache" ] && ! grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$cache"; then
		bench_say "warning: $OPSCTL_BIN is not a Release build ($(grep '^CMAKE_BUILD_TYPE' "$cache"))"
	fi
	if [ -e /etc/opsctl/opsctl.conf ]; then
		bench_say "warning: /etc/opsctl/opsctl.conf exists and will be read by 'opsctl health'"
	fi
}

# ---- tools ----------------------------------------------------------------

bench_install() {
	[ -z "${BENCH_NO_INSTALL:-}" ] || return 1
	local as_root=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || return 1
		as_root=(sudo -n)
	fi
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
		--no-install-recommends "$@" </dev/null >"$BENCH_TMP/apt.log" 2>&1
}

# bench_tools: find (or install) hyperfine and GNU time.
bench_tools() {
	if [ -z "${BENCH_NO_HYPERFINE:-}" ]; then
		if ! command -v hyperfine >/dev/null 2>&1 && [ -z "${BENCH_NO_INSTALL:-}" ]; then
			bench_say "installing hyperfine"
			if [ -x "$BENCH_REPO/scripts/deps.sh" ] || [ -f "$BENCH_REPO/scripts/deps.sh" ]; then
				bash "$BENCH_REPO/scripts/deps.sh" --bench >&2 || true
			else
				bench_install hyperfine || true
			fi
		fi
		# -N (no intermediate shell) needs hyperfine 1.13 or later.
		if command -v hyperfine >/dev/null 2>&1 &&
			hyperfine --help 2>/dev/null | grep -q -- '--shell <'; then
			hyperfine -N --runs 1 --style none true >/dev/null 2>&1 && HAVE_HYPERFINE=1
		fi
		[ -n "$HAVE_HYPERFINE" ] || bench_say "no usable hyperfine: timing with a shell loop"
	fi
	if [ ! -x /usr/bin/time ] && [ -z "${BENCH_NO_INSTALL:-}" ]; then
		bench_say "installing GNU time"
		bench_install time || true
	fi
	if [ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1; then
		GNU_TIME=/usr/bin/time
	else
		bench_say "no GNU time (/usr/bin/time -f %M): memory cases skipped"
	fi
	command -v python3 >/dev/null 2>&1 || bench_die "python3 is needed (the test HTTP server)"
}

# ---- timing ---------------------------------------------------------------

# bench_median: the median of the numbers on stdin.
bench_median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_sample FILE RUNS WARMUP CMD [ARG...]: time CMD RUNS times (after
# WARMUP untimed runs) and append each wall time in seconds to FILE. CMD's
# output is discarded; a failing run aborts the benchmark, so a fast failure
# can never pass for a fast success. Callers alternate between opsctl and its
# peer in rounds, so a burst of load on the machine hits both alike.
bench_sample() {
	local file=$1 runs=$2 warmup=$3 i t0 t1
	shift 3
	if [ -n "$HAVE_HYPERFINE" ]; then
		local cmd json="$BENCH_TMP/hyperfine.json"
		cmd=$(printf '%q ' "$@")
		if ! hyperfine -N --style none --runs "$runs" --warmup "$warmup" \
			--export-json "$json" -- "$cmd" >"$BENCH_TMP/hyperfine.out" 2>&1; then
			cat "$BENCH_TMP/hyperfine.out" >&2
			bench_die "failed: $*"
		fi
		python3 -c 'import json,sys
for t in json.load(open(sys.argv[1]))["results"][0]["times"]: print("%.6f" % t)' "$json" >>"$file"
		return
	fi
	for ((i = 0; i < warmup; i++)); do
		"$@" >/dev/null 2>&1 || bench_die "failed: $*"
	done
	for ((i = 0; i < runs; i++)); do
		t0=$EPOCHREALTIME
		"$@" >/dev/null 2>&1 || bench_die "failed: $*"
		t1=$EPOCHREALTIME
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }' >>"$file"
	done
}

# bench_time RUNS WARMUP CMD [ARG...]: the median wall time of CMD in seconds.
bench_time() {
	local file="$BENCH_TMP/samples.$RANDOM"
	: >"$file"
	bench_sample "$file" "$@"
	bench_median <"$file"
	rm -f "$file"
}

# bench_peak_kb RUNS CMD [ARG...]: the median peak RSS of CMD in KiB (GNU time %M).
bench_peak_kb() {
	local runs=$1 i out="$BENCH_TMP/time.out" samples="$BENCH_TMP/samples"
	shift
	: >"$samples"
	for ((i = 0; i < runs; i++)); do
		"$GNU_TIME" -f %M -o "$out" "$@" >/dev/null 2>&1 || bench_die "failed: $*"
		tail -n 1 "$out" >>"$samples"
	done
	bench_median <"$samples"
}

# bench_case NAME OPSCTL PEER [DIGITS]: print `name opsctl peer ratio`.
bench_case() {
	awk -v n="$1" -v a="$2" -v b="$3" -v d="${4:-4}" 'BEGIN {
		fmt = "%-30s %." d "f %." d "f %.2f\n"
		if (d == 0) fmt = "%-30s %d %d %.2f\n"
		printf fmt, n, a, b, (a > 0 ? b / a : 0) }'
}

# bench_goal TEXT VALUE OP LIMIT: print `# goal TEXT: met|MISSED`.
bench_goal() {
	local verdict
	verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN {
		ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "met" : "MISSED" }')
	printf '# goal %s %s %s: %s (measured %s)\n' "$1" "$3" "$4" "$verdict" "$(awk -v v="$2" 'BEGIN { printf (v >= 100 ? "%d" : "%.3g"), v }')"
}

bench_ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }

# ---- the controllable HTTP server (tests/lib/httpd.py) --------------------

# bench_httpd_start: start httpd.py on a free loopback port; sets
# BENCH_HTTPD_URL. It also exits by itself when this shell is gone.
bench_httpd_start() {
	local portfile="$BENCH_TMP/httpd.port" i
	[ -f "$BENCH_HTTPD" ] || bench_die "missing $BENCH_HTTPD"
	rm -f "$portfile"
	python3 "$BENCH_HTTPD" --port-file "$portfile" --parent-pid $$ \
		--max-seconds "${BENCH_HTTPD_MAX_SECONDS:-1800}" 2>"$BENCH_TMP/httpd.err" &
	BENCH_PIDS+=($!)
	for ((i = 0; i < 200; i++)); do
		[ -s "$portfile" ] && break
		sleep 0.05
	done
	[ -s "$portfile" ] || {
		cat "$BENCH_TMP/httpd.err" >&2
		bench_die "httpd.py did not start within 10 s"
	}
	BENCH_HTTPD_URL="http://127.0.0.1:$(cat "$portfile")"
	curl -fsS --max-time 5 -o /dev/null "$BENCH_HTTPD_URL/__ping" || bench_die "httpd.py does not answer"
}

# bench_httpd_set PATH STATUS BODY [DELAY_MS]
bench_httpd_set() {
	curl -fsS --max-time 5 -o /dev/null "$BENCH_HTTPD_URL/__control" \
		--data-urlencode "path=$1" --data-urlencode "status=$2" \
		--data-urlencode "body=$3" --data-urlencode "delay_ms=${4:-0}" ||
		bench_die "cannot configure $1 on the test server"
}

bench_httpd_hits() {
	curl -fsS --max-time 5 "$BENCH_HTTPD_URL/__stats?path=$1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["hits"])'
}

# bench_setup NAME: everything a benchmark needs, in its own scratch directory
# (so no ./opsctl.conf is picked up).
bench_setup() {
	BENCH_NAME=$1
	bench_tools
	bench_find_opsctl
	mkdir -p "$BENCH_TMP/work"
	cd "$BENCH_TMP/work" || exit 1
	export HOME="$BENCH_TMP/work"
}
