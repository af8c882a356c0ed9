#!/usr/bin/env bash
# Crash testing (issue 8): runs each mutating opsctl command many times
# against real servers, sends it a signal at a random moment, runs the
# recovery path the docs promise, and checks invariants.
#
# Usage:
#   tests/crash/crash.sh [-n TRIALS] [--seed N] [--results FILE]
#                        [--first-trial K] [--trial K]... [SCENARIO...]
#
#   -n TRIALS        SIGKILL trials per scenario (default 50). TERM and INT
#                    trials come on top: the trial sequence is
#                    KILL KILL TERM KILL KILL INT KILL KILL TERM ... (every
#                    third trial is TERM or INT, alternating), and it ends
#                    after the TRIALS-th KILL trial plus, if due, one more
#                    TERM/INT trial. -n 50 gives 50 KILL + 13 TERM + 12 INT
#                    = 75 trials; -n 2 gives KILL KILL TERM.
#   --seed N         PRNG seed (default: from the clock; printed). The delay
#                    of trial T depends only on (seed, T), so a trial can be
#                    replayed alone.
#   --first-trial K  start the sequence at trial K (numbering and signals
#                    unchanged; -n still counts KILL trials from there).
#   --trial K        run exactly trial K (repeatable); for replaying a
#                    violation: crash.sh --seed S --trial K SCENARIO
#   --results FILE   append one markdown row per scenario to FILE (a header
#                    is written first when FILE does not exist)
#   SCENARIO         a name (migrate) or path of a file in
#                    tests/crash/scenarios/; default: all of them
#
# Environment: OPSCTL, TEST_SRCDIR (as for the integration tests),
# TEST_KEEP=1 keeps each scenario's scratch directory, CRASH_VERBOSE=1 shows
# every trial, CRASH_SIGNAL_TIMEOUT (default 60) seconds a signalled opsctl
# gets to exit before the driver SIGKILLs it (and counts a violation).
#
# A scenario file is sourced by a bash process of its own that has sourced
# tests/lib/test-lib.sh first (own scratch directory and servers, cleaned up
# at exit). It defines:
#   CRASH_WINDOW_MS         the delay is uniform in [0, CRASH_WINDOW_MS]
#   crash_setup             once: servers, config, baseline data
#   crash_prepare           before each trial: give the command work to do
#   crash_run               the command; its last step is `exec opsctl ...`
#                           (the driver signals that PID only; children such
#                           as pg_dump are not signalled by the driver)
#   crash_recover SIG EXIT  the documented recovery (SIG: KILL|TERM|INT;
#                           EXIT: the exit code of crash_run as wait saw it)
#   crash_check             the invariants; report violations with `fail`
#   CRASH_NOTE              (optional) a short note for the summary line and
#                           the results row, e.g. a count of something seen
# and may use CRASH_TRIAL, CRASH_SEED, CRASH_SIGNAL, CRASH_DELAY_MS,
# CRASH_SIGNALLED (1: the signal hit a running opsctl, 0: it had finished),
# CRASH_RUN_OUT / CRASH_RUN_ERR (stdout/stderr of the last crash_run), and
# the helpers crash_check_locks (every lock file in $OPSCTL_STATE_DIR/locks
# can be taken with flock -n) and crash_check_history (every line of
# $OPSCTL_STATE_DIR/history.jsonl is a JSON object).
# TEST_CONTINUE=1 is set after crash_setup, so `fail` counts a violation
# instead of ending the scenario; a failure in crash_setup ends it.
# Any `fail` during crash_recover or crash_check is a violation of that trial;
# one during crash_prepare is a harness error (counted apart, also fatal for
# the exit code).

CRASH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- the inner runner: one scenario, in its own process ----------------------

if [ "${1:-}" = --inner ]; then
	shift
	CRASH_SCENARIO_FILE=$1 CRASH_KILLS=$2 CRASH_SEED=$3 CRASH_FIRST=$4 CRASH_ONLY=$5 CRASH_SUMMARY=$6
	CRASH_SCENARIO=$(basename "$CRASH_SCENARIO_FILE" .sh)
	export TEST_NAME="crash-$CRASH_SCENARIO"
	# shellcheck source=../lib/test-lib.sh
	. "$CRASH_DIR/../lib/test-lib.sh"
	require_opsctl

	crash_check_locks() {
		local f
		[ -d "$OPSCTL_STATE_DIR/locks" ] || return 0
		for f in "$OPSCTL_STATE_DIR"/locks/*; do
			[ -f "$f" ] || continue
			flock -n "$f" true 2>/dev/null ||
				fail "lock file $f is still held: $(fuser "$f" 2>/dev/null)"
		done
		return 0
	}
	crash_check_history() {
		local h=$OPSCTL_STATE_DIR/history.jsonl msg
		[ -e "$h" ] || return 0
		msg=$("$TEST_PYTHON" -c '
import json, sys
bad = []
with open(sys.argv[1], "rb") as f:
    for n, line in enumerate(f, 1):
        try:
            d = json.loads(line.decode("utf-8"))
            if not isinstance(d, dict):
                raise ValueError("not an object")
        except Exception as exc:
            bad.append("line %d: %s: %r" % (n, exc, line[:120]))
if bad:
    print("; ".join(bad[:5])); sys.exit(1)
' "$h" 2>&1) || fail "history.jsonl does not parse line by line: $msg"
	}

	# a job started below must get SIGINT at its default (see the outer driver)
	# (read once the child is sleep(1) itself; and SIGKILL, never SIGTERM: a
	# forked shell not yet exec'd would run this shell's TERM and EXIT traps,
	# and test_cleanup would remove the scratch directory under us)
	set -m
	sleep 5 &
	probe=$!
	set +m
	for _ in $(seq 100); do
		[ "$(cat "/proc/$probe/comm" 2>/dev/null)" != sleep ] || break
		sleep 0.02
	done
	ign=$(awk '/^SigIgn:/ { print $2 }' "/proc/$probe/status" 2>/dev/null)
	kill -KILL "$probe" 2>/dev/null
	wait "$probe" 2>/dev/null
	if [ -n "$ign" ] && (((16#$ign >> 1) & 1)); then
		fail "SIGINT is ignored in this shell (started in the background?), and opsctl would inherit that; run crash.sh in the foreground or with coreutils' env --default-signal"
		exit 1
	fi

	CRASH_WINDOW_MS=1000
	# shellcheck disable=SC1090
	. "$CRASH_SCENARIO_FILE"
	for fn in crash_setup crash_prepare crash_run crash_recover crash_check; do
		declare -F "$fn" >/dev/null || fail "$CRASH_SCENARIO_FILE does not define $fn"
	done

	crash_setup || fail "crash_setup failed"
	[ "$TEST_FAILURES" -eq 0 ] || exit 1
	export TEST_CONTINUE=1

	CRASH_RUN_OUT=$TEST_SCRATCH/run.out
	CRASH_RUN_ERR=$TEST_SCRATCH/run.err
	declare -A sig_count=() exit_count=()
	trials=0 signalled=0 finished=0 violations=0 errors=0 kills=0 violated_trials=
	sanitizer=0

	crash_signal_of() { # trial number -> KILL|TERM|INT
		local t=$1
		if ((t % 3 != 0)); then echo KILL
		elif (((t / 3) % 2 == 1)); then echo TERM
		else echo INT
		fi
	}

	crash_one_trial() {
		local t=$1 before pid state code r1 r2 deadline_ms
		CRASH_TRIAL=$t
		CRASH_SIGNAL=$(crash_signal_of "$t")
		RANDOM=$((CRASH_SEED * 7919 + t))
		r1=$RANDOM r2=$RANDOM
		CRASH_DELAY_MS=$(((r1 * 32768 + r2) % (CRASH_WINDOW_MS + 1)))
		export CRASH_TRIAL CRASH_SIGNAL CRASH_DELAY_MS CRASH_SEED

		before=$TEST_FAILURES
		crash_prepare
		if [ "$TEST_FAILURES" -ne "$before" ]; then
			errors=$((errors + 1))
			printf 'ERROR crash %s: trial %d: crash_prepare failed (replay: %s --seed %s --trial %d %s)\n' \
				"$CRASH_SCENARIO" "$t" "$0" "$CRASH_SEED" "$t" "$CRASH_SCENARIO" >&2
			return 0
		fi

		set -m   # the job gets SIGINT/SIGQUIT at their defaults (and a process group of its own)
		crash_run >"$CRASH_RUN_OUT" 2>"$CRASH_RUN_ERR" </dev/null &
		pid=$!
		set +m
		# the delay starts once the job has exec'd opsctl: a signal to the
		# forked shell before that would hit this shell's TERM/EXIT traps
		# (test_cleanup: servers stopped, scratch removed), not opsctl
		for _ in $(seq 500); do
			[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = bash ] || break
			sleep 0.01
		done
		sleep "$(printf '%d.%03d' $((CRASH_DELAY_MS / 1000)) $((CRASH_DELAY_MS % 1000)))"
		state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)
		if [ -z "$state" ] || [ "$state" = Z ]; then
			CRASH_SIGNALLED=0
			finished=$((finished + 1))
		else
			CRASH_SIGNALLED=1
			signalled=$((signalled + 1))
			kill "-$CRASH_SIGNAL" "$pid" 2>/dev/null
		fi
		export CRASH_SIGNALLED
		if [ "$CRASH_SIGNAL" != KILL ] && [ "$CRASH_SIGNALLED" = 1 ]; then
			deadline_ms=$(($(now_ms) + ${CRASH_SIGNAL_TIMEOUT:-60} * 1000))
			while kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
				if [ "$(now_ms)" -ge "$deadline_ms" ]; then
					kill -KILL "$pid" 2>/dev/null
					fail "trial $t: opsctl did not exit within ${CRASH_SIGNAL_TIMEOUT:-60} s of SIG$CRASH_SIGNAL"
					break
				fi
				sleep 0.05
			done
		fi
		wait "$pid" 2>/dev/null
		code=$?
		CRASH_EXIT=$code
		export CRASH_EXIT
		trials=$((trials + 1))
		sig_count[$CRASH_SIGNAL]=$((${sig_count[$CRASH_SIGNAL]:-0} + 1))
		exit_count[$code]=$((${exit_count[$code]:-0} + 1))
		[ "$CRASH_SIGNAL" != KILL ] || kills=$((kills + 1))
		if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$CRASH_RUN_ERR"; then
			show_file "run stderr" "$CRASH_RUN_ERR"
			fail "trial $t: sanitizer report from the signalled run"
		fi
		if [ -n "${CRASH_VERBOSE:-}" ]; then
			say "trial $t: SIG$CRASH_SIGNAL after ${CRASH_DELAY_MS} ms ($([ "$CRASH_SIGNALLED" = 1 ] && echo running || echo finished)), exit $code"
		fi

		crash_recover "$CRASH_SIGNAL" "$code"
		crash_check
		if [ "$TEST_FAILURES" -ne "$before" ]; then
			violations=$((violations + TEST_FAILURES - before))
			violated_trials+="$t "
			show_file "run stderr (trial $t)" "$CRASH_RUN_ERR"
			printf 'VIOLATION crash %s: trial %d seed %s SIG%s delay %d ms (%s, exit %d): %d failed checks; replay: %s --seed %s --trial %d %s\n' \
				"$CRASH_SCENARIO" "$t" "$CRASH_SEED" "$CRASH_SIGNAL" "$CRASH_DELAY_MS" \
				"$([ "$CRASH_SIGNALLED" = 1 ] && echo signalled || echo "finished first")" "$code" \
				$((TEST_FAILURES - before)) "tests/crash/crash.sh" "$CRASH_SEED" "$t" "$CRASH_SCENARIO" >&2
		fi
	}

	started=$(now_ms)
	if [ -n "$CRASH_ONLY" ]; then
		for t in $CRASH_ONLY; do
			crash_one_trial "$t"
		done
	else
		t=$CRASH_FIRST
		while :; do
			if [ "$(crash_signal_of "$t")" = KILL ]; then
				[ "$kills" -lt "$CRASH_KILLS" ] || break
			elif [ "$kills" -ge "$CRASH_KILLS" ] && [ "$t" -gt "$CRASH_FIRST" ] &&
				[ "$(crash_signal_of $((t - 1)))" != KILL ]; then
				break
			fi
			crash_one_trial "$t"
			t=$((t + 1))
		done
	fi
	elapsed=$((($(now_ms) - started) / 1000))
	exits=
	for c in $(printf '%s\n' "${!exit_count[@]}" | sort -n); do
		exits+="${exits:+ }$c:${exit_count[$c]}"
	done
	{
		printf 'trials=%s\n' "$trials"
		printf 'kill=%s\nterm=%s\nint=%s\n' "${sig_count[KILL]:-0}" "${sig_count[TERM]:-0}" "${sig_count[INT]:-0}"
		printf 'signalled=%s\nfinished=%s\n' "$signalled" "$finished"
		printf 'exits=%s\n' "$exits"
		printf 'violations=%s\nerrors=%s\n' "$violations" "$errors"
		printf 'violated_trials=%s\n' "${violated_trials% }"
		printf 'window_ms=%s\nseconds=%s\n' "$CRASH_WINDOW_MS" "$elapsed"
		printf 'note=%s\n' "${CRASH_NOTE:-}" | tr -d '|'
	} >"$CRASH_SUMMARY"
	# the trials' failures are in the summary; the process's status says only
	# whether the scenario ran to the end
	TEST_FAILURES=0
	exit 0
fi

# ---- the outer driver ------------------------------------------------------------

usage() {
	sed -n '5,30p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

kills=50 seed= results= first=1 only= scenarios=()
while [ $# -gt 0 ]; do
	case $1 in
	-n) kills=${2:?}; shift 2 ;;
	-n*) kills=${1#-n}; shift ;;
	--seed) seed=${2:?}; shift 2 ;;
	--seed=*) seed=${1#--seed=}; shift ;;
	--results) results=${2:?}; shift 2 ;;
	--results=*) results=${1#--results=}; shift ;;
	--first-trial) first=${2:?}; shift 2 ;;
	--first-trial=*) first=${1#--first-trial=}; shift ;;
	--trial) only+="${only:+ }${2:?}"; shift 2 ;;
	--trial=*) only+="${only:+ }${1#--trial=}"; shift ;;
	-h | --help) usage ;;
	-*) echo "crash.sh: unknown option $1" >&2; usage ;;
	*) scenarios+=("$1"); shift ;;
	esac
done
case "$kills$first${only// /}" in
*[!0-9]*) echo "crash.sh: -n, --first-trial and --trial take numbers" >&2; exit 2 ;;
esac
[ -n "$seed" ] || seed=$(( $(date +%s) % 100000 ))
case $seed in *[!0-9]* | '') echo "crash.sh: --seed takes a number" >&2; exit 2 ;; esac

if [ ${#scenarios[@]} -eq 0 ]; then
	for f in "$CRASH_DIR"/scenarios/*.sh; do
		[ -f "$f" ] && scenarios+=("$f")
	done
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "crash.sh: no scenarios" >&2; exit 2; }

if [ -n "$results" ] && [ ! -s "$results" ]; then
	cat >"$results" <<-'EOF'
	# Crash-test results

	Produced by `tests/crash/crash.sh --results tests/crash/RESULTS.md` (see
	tests/crash/README.md). Each row is one scenario run: KILL/TERM/INT are the
	trials per signal, "signalled" the trials whose signal hit a running opsctl
	("finished" ones had exited before it), "exit codes" code:count as `wait`
	saw them (137 = SIGKILL, 143 = SIGTERM, 130 = SIGINT), "violations" the
	failed invariant checks.

	| date (UTC) | machine | scenario | seed | trials | KILL | TERM | INT | signalled | finished | exit codes | window ms | violations | seconds | notes |
	|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
	EOF
fi

machine="$(uname -m), $(nproc) cores"
default_signals=()
if env --default-signal=INT,QUIT true 2>/dev/null; then
	default_signals=(env --default-signal=INT,QUIT)
fi
status=0
summary_dir=$(mktemp -d "${TMPDIR:-/tmp}/opsctl-crash.XXXXXX")
trap 'rm -rf "$summary_dir"' EXIT
echo "crash.sh: seed $seed, $kills SIGKILL trials per scenario${only:+ (only trials $only)}" >&2
for s in "${scenarios[@]}"; do
	file=$s
	[ -f "$file" ] || file=$CRASH_DIR/scenarios/$s.sh
	[ -f "$file" ] || file=$CRASH_DIR/scenarios/$s
	if [ ! -f "$file" ]; then
		echo "crash.sh: no scenario $s" >&2
		status=1
		continue
	fi
	file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
	name=$(basename "$file" .sh)
	sum=$summary_dir/$name
	rm -f "$sum"
	# SIGINT at its default in the scenario's shell: a shell started in the
	# background (nohup ... &, cron) ignores it, bash cannot undo that, and
	# opsctl would inherit the ignore and shrug SIGINT off
	"${default_signals[@]}" bash "$CRASH_DIR/crash.sh" --inner "$file" "$kills" "$seed" "$first" "$only" "$sum"
	rc=$?
	if [ ! -s "$sum" ]; then
		echo "crash $name: the scenario did not run to the end (exit $rc)" >&2
		status=1
		[ -z "$results" ] || printf '| %s | %s | %s | %s | (did not run to the end, exit %s) | | | | | | | | | | |\n' \
			"$(date -u '+%Y-%m-%d %H:%M')" "$machine" "$name" "$seed" "$rc" >>"$results"
		continue
	fi
	declare -A r=()
	while IFS='=' read -r k v; do r[$k]=$v; done <"$sum"
	printf 'crash %s: %s trials (KILL %s, TERM %s, INT %s), signalled %s, finished first %s, exits [%s], violations %s, prepare errors %s, %s s%s%s\n' \
		"$name" "${r[trials]}" "${r[kill]}" "${r[term]}" "${r[int]}" "${r[signalled]}" "${r[finished]}" \
		"${r[exits]}" "${r[violations]}" "${r[errors]}" "${r[seconds]}" \
		"${r[violated_trials]:+ (trials ${r[violated_trials]})}" "${r[note]:+; ${r[note]}}"
	if [ -n "$results" ]; then
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
			"$(date -u '+%Y-%m-%d %H:%M')" "$machine" "$name" "$seed" "${r[trials]}" "${r[kill]}" "${r[term]}" "${r[int]}" \
			"${r[signalled]}" "${r[finished]}" "${r[exits]}" "${r[window_ms]}" "${r[violations]}" "${r[seconds]}" "${r[note]:-}" >>"$results"
	fi
	if [ "${r[violations]}" != 0 ] || [ "${r[errors]}" != 0 ]; then
		status=1
	fi
	unset r
done
exit "$status"
