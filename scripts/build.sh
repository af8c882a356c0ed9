#!/usr/bin/env bash
# Configure and build opsctl with CMake.
#
#   scripts/build.sh              release build (RelWithDebInfo) in build/
#   scripts/build.sh --sanitize   Debug + ASan/UBSan in build-test/ (what the tests use)
#
# BUILD_JOBS overrides the number of parallel jobs (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPSCTL_SANITIZE=OFF)
for arg in "$@"; do
	case $arg in
	--sanitize)
		dir=build-test
		cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DOPSCTL_SANITIZE=ON)
		;;
	-h | --help)
		sed -n '2,7s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "build.sh: unknown option '$arg'" >&2
		exit 2
		;;
	esac
done

jobs=${BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
log=$(mktemp "${TMPDIR:-/tmp}/opsctl-build.XXXXXX")
trap 'rm -f "$log"' EXIT

echo "build: configuring $dir/ (${cmake_args[*]})" >&2
if ! cmake -S . -B "$dir" "${cmake_args[@]}" --log-level=WARNING >"$log" 2>&1; then
	cat "$log" >&2
	echo "build: cmake configure failed" >&2
	exit 1
fi

echo "build: compiling with $jobs jobs" >&2
# Keep compiler diagnostics, drop make's progress chatter.
set +e
cmake --build "$dir" --parallel "$jobs" -- --no-print-directory 2>&1 |
	grep -vE '^\[ *[0-9]+%\] (Building|Linking|Built target)|^Consolidate compiler generated dependencies|^Scanning dependencies' >&2
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
	echo "build: compilation failed" >&2
	exit "$status"
fi
echo "build: $dir/opsctl" >&2
