#!/usr/bin/env bash
# The integration tests with every opsctl process under valgrind memcheck
# (issue 8: zero leaks "definitely lost", zero memory errors).
#
#   nice -n 10 scripts/valgrind.sh                 every integration test
#   nice -n 10 scripts/valgrind.sh -R 't3|t5'      the ones whose name matches (ctest -R)
#   scripts/valgrind.sh --no-build -R t1000        skip the (re)build of build-valgrind/
#   scripts/valgrind.sh --report DIR               only summarise the logs of an earlier run
#
# It builds build-valgrind/ (Debug, no sanitizers, tests on) with the
# integration tests' OPSCTL set to build-valgrind/valgrind/opsctl, a wrapper
# that execs (same PID: the tests send signals to it)
#   valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite
#            --errors-for-leak-kinds=definite --error-exitcode=99
#            --trace-children=no --num-callers=30 --suppressions=tests/valgrind.supp
#            --log-file=LOGS/TEST/vg.%p.log build-valgrind/opsctl "$@"
# then runs each integration test through ctest, one at a time (ctest -j1;
# TEST_BUILDDIR=build-valgrind, so t6000/t6100 use its s3tool/sourcetool).
# The logs go to build-valgrind/valgrind/logs/RUN/TEST/ (one per opsctl
# process; RUN is the start time). Every integration test takes about 45
# minutes on two busy cores, too long for CI: run it before a release.
#
# The verdict comes from the logs, not from the tests: it fails (exit 1) when
# a log has a "definitely lost" block or a memcheck error (invalid read/write/
# free, uninitialised value, overlap...). Valgrind is ~20-50x slower, so a few
# tests that assert timings or kill opsctl at a precise moment may fail under
# it; those are listed apart and do not change the verdict (TEST_CONTINUE=1:
# a failed expectation does not end the test, the rest still runs).
# A run that a test kills with SIGKILL writes no leak summary (one that kills
# itself, OPSCTL_TEST_KILL_AT, does: valgrind sees the signal it sends); a
# child opsctl forks has a log of its own, which ends when it execs.
# tests/valgrind.supp: suppressions, third-party libraries only.
# Valgrind 3.19 does not know pidfd_open (syscall 434; it warns in the logs):
# under it opsctl takes its fallback path for waiting on children.
#
# Environment: VALGRIND_TIMEOUT (seconds per test, default 1500),
# VALGRIND_EXTRA (more valgrind options, e.g. --track-origins=yes).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
src=$(pwd)
vgdir=$src/build-valgrind/valgrind
logroot=$vgdir/logs

build=1
report_only=
ctest_args=()
while [ $# -gt 0 ]; do
	case $1 in
	--no-build) build= ;;
	--report) report_only=$2; shift ;;
	-h | --help) sed -n '2,38s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) ctest_args+=("$1") ;;
	esac
	shift
done
builddir=$src/build-valgrind

# summarise DIR: one line per test directory and the totals; exit 1 on leaks/errors.
summarise() {
	local root=$1
	python3 - "$root" <<'EOF'
import os, re, sys
root = sys.argv[1]
err_re = re.compile(r"^==\d+== (Invalid (read|write|free)|Mismatched free|Conditional jump or move depends on uninitialised"
                    r"|Use of uninitialised value|Syscall param .* (uninitialised|unaddressable)|Source and destination overlap"
                    r"|Argument '.*' of function .* has a fishy|.*realloc\(\) with size 0|Jump to the invalid address"
                    r"|Process terminating with default action of signal (4|6|7|8|11) )")
lost_re = re.compile(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks")
supp_re = re.compile(r"ERROR SUMMARY: .*\(suppressed: ([\d,]+) from")
summary_re = re.compile(r"ERROR SUMMARY: ([\d,]+) errors")
tot = dict(tests=0, logs=0, runs=0, summaries=0, lost_bytes=0, lost_blocks=0, errors=0, flagged=0, suppressed=0)
bad = []
for test in sorted(os.listdir(root)):
    d = os.path.join(root, test)
    if not os.path.isdir(d):
        continue
    tot["tests"] += 1
    logs = [f for f in os.listdir(d) if f.startswith("vg.") and f.endswith(".log")]
    pids = {f[3:-4] for f in logs}
    t = dict(logs=len(logs), runs=0, summaries=0, lost_bytes=0, lost_blocks=0, errors=0, flagged=0)
    for f in sorted(logs):
        p = os.path.join(d, f)
        text = open(p, encoding="utf-8", errors="replace").read()
        # a log whose parent has a log too is a child opsctl forked (most
        # exec pg_dump, a hook...: no summary); the others are opsctl runs
        parent = re.search(r"^==\d+== Parent PID: (\d+)", text, re.M)
        if not (parent and parent.group(1) in pids):
            t["runs"] += 1
            if "ERROR SUMMARY:" in text:
                t["summaries"] += 1
        errs = sum(1 for line in text.splitlines() if err_re.match(line))
        lb = lbl = 0
        for m in lost_re.finditer(text):
            lb += int(m.group(1).replace(",", "")); lbl += int(m.group(2).replace(",", ""))
        # every error memcheck counted (leaks "definitely lost" included):
        # a kind the patterns above do not know still fails the run
        counted = sum(int(m.group(1).replace(",", "")) for m in summary_re.finditer(text))
        tot["suppressed"] += sum(int(m.group(1).replace(",", "")) for m in supp_re.finditer(text))
        t["lost_bytes"] += lb; t["lost_blocks"] += lbl; t["errors"] += errs
        if errs or lbl or counted:
            t["flagged"] += 1
            cmd = re.search(r"^==\d+== Command: (.*)$", text, re.M)
            bad.append("%s/%s: %d error(s), %d bytes in %d blocks definitely lost, ERROR SUMMARY %d  (%s)"
                       % (test, f, errs, lb, lbl, counted, cmd.group(1)[:160] if cmd else "?"))
    for k in t:
        tot[k] += t[k]
    print("%-34s %4d logs %4d runs %4d with a summary  definitely lost %6d bytes in %3d blocks  errors %d"
          % (test, t["logs"], t["runs"], t["summaries"], t["lost_bytes"], t["lost_blocks"], t["errors"]))
print()
print("valgrind: %(tests)d tests, %(logs)d opsctl processes checked: %(runs)d runs of opsctl "
      "(%(summaries)d ended with a leak summary, the others were sent SIGKILL by the test) and the children "
      "they forked (most exec'd pg_dump, a hook...), "
      "definitely lost: %(lost_bytes)d bytes in %(lost_blocks)d blocks, memcheck errors: %(errors)d, "
      "processes flagged: %(flagged)d (suppressed by tests/valgrind.supp: %(suppressed)d)" % tot)
for line in bad:
    print("  " + line)
sys.exit(1 if bad else 0)
EOF
}

if [ -n "$report_only" ]; then
	summarise "$report_only"
	exit $?
fi

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

mkdir -p "$vgdir"
wrapper=$vgdir/opsctl
cat >"$wrapper.tmp" <<EOF
#!/bin/sh
# Generated by scripts/valgrind.sh: opsctl under memcheck, same PID (exec).
logdir=\${OPSCTL_VG_LOGDIR:-$logroot/adhoc}
mkdir -p "\$logdir"
exec valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \\
	--errors-for-leak-kinds=definite --error-exitcode=99 --trace-children=no \\
	--num-callers=30 --suppressions=$src/tests/valgrind.supp \\
	--log-file="\$logdir/vg.%p.log" \${VALGRIND_EXTRA:-} $builddir/opsctl "\$@"
EOF
chmod 755 "$wrapper.tmp" && mv "$wrapper.tmp" "$wrapper"

if [ -n "$build" ]; then
	echo "valgrind.sh: building build-valgrind/" >&2
	cmake -S . -B "$builddir" -DCMAKE_BUILD_TYPE=Debug -DOPSCTL_SANITIZE=OFF -DOPSCTL_TESTS=ON \
		-DOPSCTL_TEST_WRAPPER="$wrapper" -DOPSCTL_TEST_TIMEOUT="${VALGRIND_TIMEOUT:-1500}" \
		--log-level=WARNING >"$vgdir/cmake.log" 2>&1 &&
		cmake --build "$builddir" --parallel "${BUILD_JOBS:-2}" >>"$vgdir/cmake.log" 2>&1
	status=$?
	[ "$status" -eq 0 ] || {
		tail -n 30 "$vgdir/cmake.log" >&2
		echo "valgrind.sh: build failed" >&2
		exit 2
	}
fi

run=$logroot/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$run"
mapfile -t tests < <(ctest --test-dir "$builddir" -N -L integration "${ctest_args[@]}" |
	sed -n 's/^ *Test *#[0-9]*: integration\/\(.*\)$/\1/p')
[ ${#tests[@]} -gt 0 ] || { echo "valgrind.sh: no integration test matches" >&2; exit 2; }
echo "valgrind.sh: ${#tests[@]} integration tests, logs in $run" >&2

# a failed expectation (a timing one, under valgrind) does not end a test:
# the commands after it still run, and are checked
export TEST_CONTINUE=1
failed=()
start=$SECONDS
for t in "${tests[@]}"; do
	mkdir -p "$run/$t"
	t0=$SECONDS
	OPSCTL_VG_LOGDIR=$run/$t ctest --test-dir "$builddir" -j1 -R "^integration/$t\$" \
		--output-on-failure >"$run/$t/ctest.out" 2>&1
	status=$?
	verdict=passed
	[ "$status" -eq 0 ] || { verdict=FAILED; failed+=("$t"); }
	printf 'valgrind.sh: %-32s %s in %ds (%d processes)\n' "$t" "$verdict" $((SECONDS - t0)) \
		"$(find "$run/$t" -name 'vg.*.log' | wc -l)" >&2
done
echo "valgrind.sh: all tests in $((SECONDS - start))s" >&2
echo
summarise "$run"
verdict=$?
if [ ${#failed[@]} -gt 0 ]; then
	echo "tests that failed under valgrind (timing, or see the memcheck errors above): ${failed[*]}"
	echo "  (their output: $run/TEST/ctest.out)"
fi
exit "$verdict"
