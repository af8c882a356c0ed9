#!/usr/bin/env bash
# The whole test suite, as CI runs it: dependencies, a sanitizer build in
# build-test/, then every unit and integration test and a short run of each
# fuzz target (fuzz/short, built with clang in build-test/fuzz) through ctest.
#
#   scripts/test.sh [CTEST ARGS...]     e.g. scripts/test.sh -R health -V
#
# Leak detection is on. Where LeakSanitizer cannot run (it needs ptrace, which
# some sandboxes forbid), OPSCTL_DETECT_LEAKS=0 turns it off explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh --fuzz   # clang for the fuzz/short test (scripts/fuzz.sh)
bash scripts/build.sh --sanitize

export ASAN_OPTIONS="detect_leaks=${OPSCTL_DETECT_LEAKS:-1}:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if [ "${OPSCTL_DETECT_LEAKS:-1}" = 0 ]; then
	echo "test: leak detection is OFF (OPSCTL_DETECT_LEAKS=0)" >&2
fi

set +e
ctest --test-dir build-test --output-on-failure -j "${CTEST_JOBS:-2}" "$@"
status=$?
set -e
exit "$status"
