#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz/: builds them with clang into
# build-fuzz/ (CC=clang -DOPSCTL_FUZZ=ON -DOPSCTL_TESTS=OFF), then
#
#   scripts/fuzz.sh --ci [SECONDS]     every target SECONDS (default 20) over a
#                                      temporary copy of its corpus, then the
#                                      crash regressions (what the suite runs)
#   scripts/fuzz.sh --campaign [--runs N] [--max-time S] [TARGET...]
#                                      each target (default all) until N
#                                      executions (default 10000000) or S
#                                      seconds (default 1800), one at a time,
#                                      then a markdown table for RESULTS.md
#   scripts/fuzz.sh --replay           only the regressions
#   scripts/fuzz.sh --build            only the build
#
#   --build-dir DIR (or FUZZ_BUILD_DIR) builds elsewhere (the suite does);
#   FUZZ_NICE (default 10) is the nice level of the fuzzers.
#
# Seeds are tests/fuzz/corpus/NAME/ (never written to: runs work on a copy),
# dictionaries tests/fuzz/dict/NAME.dict, crash regressions
# tests/fuzz/regress/NAME/* (each replayed once). Exit status 1 on any crash,
# leak, timeout or out-of-memory, naming the target and the reproducer.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

mode=
seconds=20
runs=10000000
max_time=1800
build=${FUZZ_BUILD_DIR:-build-fuzz}
only=()
while [ $# -gt 0 ]; do
	case $1 in
	--ci)
		mode=ci
		if [ $# -gt 1 ] && [[ $2 =~ ^[0-9]+$ ]]; then
			seconds=$2
			shift
		fi
		;;
	--campaign) mode=campaign ;;
	--replay) mode=replay ;;
	--build) mode=build ;;
	--runs) runs=$2; shift ;;
	--max-time) max_time=$2; shift ;;
	--build-dir) build=$2; shift ;;
	-h | --help)
		sed -n '2,22s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	-*)
		echo "fuzz.sh: unknown option '$1'" >&2
		exit 2
		;;
	*) only+=("$1") ;;
	esac
	shift
done
if [ -z "$mode" ]; then
	echo "fuzz.sh: give --ci, --campaign, --replay or --build (see --help)" >&2
	exit 2
fi
case $build in /*) ;; *) build=$src/$build ;; esac

# -max_len per target: inputs as large as real ones, so the mutations are
# spent where the parsers' structure is. opsctl.conf files are 1-2 KB (the
# man page's full example is 1.5 KB), .env files under 1 KB; a health body
# or an S3 answer a few KB; a manifest of a directory dump one line per
# table; file names at most NAME_MAX (255) plus a little content for the
# checksum; a unit ("1m30s", "10G") a few bytes.
declare -A max_len=(
	[archive_path]=512 [config]=4096 [envfile]=2048 [health_body]=8192
	[manifest]=8192 [migrate_name]=512 [parse]=64 [s3_xml]=8192 [sqlsplit]=4096
)
# per input: the slowest legitimate input takes milliseconds
timeout_s=10
rss_mb=2048
nice_level=${FUZZ_NICE:-10}
leaks=1
[ "${OPSCTL_DETECT_LEAKS:-1}" = 0 ] && leaks=0
# the suite exports ASAN_OPTIONS for its own binaries; libFuzzer's flags rule here
export ASAN_OPTIONS="detect_leaks=$leaks:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

do_build() {
	local cc=${CC:-clang}
	case $cc in *clang*) ;; *) cc=clang ;; esac
	if ! command -v "$cc" >/dev/null; then
		echo "fuzz.sh: clang not found (scripts/deps.sh --fuzz installs it)" >&2
		exit 2
	fi
	if [ ! -f "$build/CMakeCache.txt" ]; then
		CC=$cc cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
			-DOPSCTL_FUZZ=ON -DOPSCTL_TESTS=OFF >"$build.configure.log" 2>&1 ||
			{ cat "$build.configure.log" >&2; exit 2; }
		rm -f "$build.configure.log"
	fi
	cmake --build "$build" -j "${FUZZ_BUILD_JOBS:-2}" >"$build/build.log" 2>&1 ||
		{ tail -n 40 "$build/build.log" >&2; exit 2; }
}

all_targets() {
	local f
	for f in "$src"/tests/fuzz/fuzz_*.c; do
		f=${f##*/fuzz_}
		echo "${f%.c}"
	done
}

# libFuzzer flags of target $1
flags() {
	local name=$1 dict=$src/tests/fuzz/dict/$1.dict
	printf '%s\n' -max_len="${max_len[$name]:-4096}" -timeout="$timeout_s" \
		-rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" -detect_leaks="$leaks" \
		-print_final_stats=1
	[ -f "$dict" ] && printf '%s\n' -dict="$dict"
	return 0
}

failed=0
# Reports a failed run of target $1 with log $2 and artifacts in $3.
report() {
	local name=$1 log=$2 dir=$3 f found=0
	echo "FAIL fuzz_$name" >&2
	grep -E 'ERROR: |SUMMARY: |runtime error|==[0-9]+==' "$log" | head -n 20 >&2 || true
	for f in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
		[ -e "$f" ] || continue
		found=1
		echo "  reproducer: $f ($(stat -c %s "$f") bytes)" >&2
		od -A d -c "$f" | head -n 12 | sed 's/^/    /' >&2
		echo "  replay: $build/tests/fuzz/fuzz_$name $f" >&2
		echo "  keep it: cp $f tests/fuzz/regress/$name/" >&2
	done
	[ "$found" = 1 ] || echo "  (no reproducer written; log: $log)" >&2
	failed=1
}

# Runs target $1 over a copy of its corpus with the extra flags $2...;
# the log and any reproducer go to $build/fuzz-out/NAME/.
fuzz_one() {
	local name=$1 out=$build/fuzz-out/$1 bin=$build/tests/fuzz/fuzz_$1 rc fl
	shift
	mapfile -t fl < <(flags "$name")
	rm -rf "$out"
	mkdir -p "$out/corpus" "$out/artifacts"
	if [ -d "$src/tests/fuzz/corpus/$name" ]; then
		cp -r "$src/tests/fuzz/corpus/$name/." "$out/corpus/"
	fi
	set +e
	nice -n "$nice_level" "$bin" "${fl[@]}" "$@" -artifact_prefix="$out/artifacts/" \
		"$out/corpus" >"$out/log" 2>&1
	rc=$?
	set -e
	if [ "$rc" != 0 ] || compgen -G "$out/artifacts/[clot][reo]*-*" >/dev/null; then
		report "$name" "$out/log" "$out/artifacts"
		return 1
	fi
	return 0
}

# "executions seconds exec/s cov ft" of a finished run's log
stats() {
	local log=$1 execs secs eps cov ft
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
	ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
	echo "${execs:-?} ${secs:-?} ${eps:-?} ${cov:-?} ${ft:-?}"
}

replay() {
	local name dir bin n files fl
	for dir in "$src"/tests/fuzz/regress/*/; do
		[ -d "$dir" ] || continue
		name=$(basename "$dir")
		bin=$build/tests/fuzz/fuzz_$name
		mapfile -t files < <(find "$dir" -maxdepth 1 -type f ! -name '.*' | sort)
		n=${#files[@]}
		[ "$n" -gt 0 ] || continue
		if [ ! -x "$bin" ]; then
			echo "FAIL regress/$name: no target fuzz_$name" >&2
			failed=1
			continue
		fi
		mapfile -t fl < <(flags "$name")
		if "$bin" "${fl[@]}" "${files[@]}" >"$build/replay-$name.log" 2>&1; then
			echo "ok   regress/$name: $n input(s)"
		else
			echo "FAIL regress/$name: a regression input fails again" >&2
			grep -E 'Running: |ERROR: |SUMMARY: |runtime error' "$build/replay-$name.log" | head -n 20 >&2
			failed=1
		fi
	done
}

do_build
[ "$mode" = build ] && exit 0
[ ${#only[@]} -gt 0 ] || mapfile -t only < <(all_targets)

case $mode in
ci)
	for name in "${only[@]}"; do
		if fuzz_one "$name" -max_total_time="$seconds"; then
			read -r execs secs eps cov ft < <(stats "$build/fuzz-out/$name/log")
			echo "ok   fuzz_$name: $execs runs in ${secs}s, cov $cov ft $ft"
		fi
	done
	replay
	;;
replay)
	replay
	;;
campaign)
	rows=()
	for name in "${only[@]}"; do
		start=$(date +%s)
		echo "campaign: fuzz_$name (-runs=$runs -max_total_time=$max_time) from $(date -u +%H:%M:%S)" >&2
		crashes=0
		fuzz_one "$name" -runs="$runs" -max_total_time="$max_time" || crashes=1
		wall=$(($(date +%s) - start))
		read -r execs secs eps cov ft < <(stats "$build/fuzz-out/$name/log")
		corp=$(find "$build/fuzz-out/$name/corpus" -type f | wc -l)
		rows+=("| fuzz_$name | ${max_len[$name]:-4096} | $execs | $wall | $eps | $cov | $ft | $corp | $crashes |")
		echo "campaign: fuzz_$name: $execs runs in ${wall}s, $eps exec/s, cov $cov ft $ft, crashes $crashes" >&2
	done
	echo
	echo "| target | max_len | executions | seconds | exec/s | cov | ft | corpus | crashes |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
	;;
esac
exit "$failed"
