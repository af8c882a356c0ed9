#!/usr/bin/env bash
# Run every benchmark in bench/ and print the results; writes nothing.
#
#   bench/run.sh                 all benchmarks, default runs
#   OPSCTL_BIN=path bench/run.sh measure that binary instead of building one
#   BENCH_FULL=1 bench/run.sh    backup/restore on the issue's 1 GB database
#                                (~20 more minutes); without it run.sh passes
#                                BENCH_DATASET_MB=256 (unless set) to backup.sh,
#                                whose own default is 1024
#   BENCH_SKIP="migrate backup"  leave those benchmarks out (also: startup health deploy offsite)
#
# Only loopback addresses are used; the test servers stop when this exits.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_NAME=run
bench_tools
bench_find_opsctl # build once here, so each benchmark measures the same binary

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
echo "# opsctl benchmarks  $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "# machine: $(uname -m), $(nproc) cores, ${cpu:-unknown CPU}, ${mem:-? RAM}, kernel $(uname -r)"
echo "# opsctl: $OPSCTL_BIN ($("$OPSCTL_BIN" --version | head -n 1))"
if [ -n "$HAVE_HYPERFINE" ]; then
	echo "# timer: $(hyperfine --version) (-N, no shell)"
else
	echo "# timer: bash \$EPOCHREALTIME loop"
fi
echo "# columns: case opsctl peer ratio (ratio = peer / opsctl; above 1: opsctl faster or smaller)"

status=0
if [ -z "${BENCH_FULL:-}" ]; then
	export BENCH_DATASET_MB=${BENCH_DATASET_MB:-256}
else
	export BENCH_DATASET_MB=${BENCH_DATASET_MB:-1024}
fi
for bench in startup health migrate backup deploy offsite; do
	case " ${BENCH_SKIP:-} " in *" $bench "*) echo "# $bench: skipped (BENCH_SKIP)"; continue ;; esac
	bash "$BENCH_DIR/$bench.sh" || {
		echo "# $bench: FAILED (exit $?)"
		status=1
	}
done
exit "$status"
