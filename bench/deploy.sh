#!/usr/bin/env bash
# deploy: `opsctl deploy` against what the seeds do, in the same run (DESIGN §8,
# issue 5): unpacking a ~200 MB artifact vs `tar xzf`; the unavailability of a
# symlink deploy vs the seeds' deploy.sh (stop, copy the jar, start, sleep 10);
# failed requests and p99 latency through nginx during a blue-green deploy and
# an automatic rollback vs the seeds' blue-green runbook done by a script.
#
#   bench/deploy.sh [ROUNDS]     ROUNDS alternating rounds, median (default 3)
#
# Environment (besides lib.sh's):
#   BENCH_ARTIFACT_MB=200     size of the generated tar.gz (bench/artifact.py:
#                             a fat jar, native libraries, images, ~1,200 JS/CSS
#                             chunks, ~600 small text files; ~380 MB unpacked)
#   BENCH_ARTIFACT_CACHE=DIR  keep the artifact in DIR and reuse it on the next
#                             run (it is deterministic; making it takes ~20 s)
#   BENCH_JAR_MB=100          the jar of the restart cases (the seeds copy it)
#   BENCH_SEED_SLEEP=10       the seeds' `sleep 10` after the start
#   BENCH_DEMO_START_MS=0     the demo release's start-up time before it listens
#                             (a Spring Boot service takes seconds)
#   BENCH_SKIP_CASES="unpack restart bluegreen"   leave those out
#   BENCH_NGINX_RELOAD=async  opsctl's proxy_reload: async = `nginx -s reload` as
#                             in production (returns before the old workers are
#                             gone; the runbook uses it too), sync = the test
#                             harness's nginx-reload.sh, which waits for them
#
# Lines: `case opsctl peer ratio` (ratio = peer / opsctl, above 1: opsctl
# better) and `# ...` comments, goals among them:
#   unpack-200MB/tar-xzf        median wall s: opsctl deploy (symlink, no backup,
#                               no migrate, restart = true, no checks) vs tar xzf
#                               into an empty directory   goal: opsctl <= 1.1x
#   unpack-200MB/tar-xzf-sync   the same vs tar xzf followed by syncfs (opsctl
#                               fsyncs the release before switching to it)
#   restart-gap-ms/seeds        median ms between the last answer of the old
#                               release and the first of the new one, seen by a
#                               client polling the port (tests/lib/load.py, 2
#                               connections): opsctl deploy --strategy symlink
#                               ([service] restart = demo-ctl.sh restart) vs the
#                               seeds' deploy.sh sequence on the same demo service
#   restart-failed/seeds        failed requests during that (sum over rounds)
#   restart-wall-s/seeds        median wall s of the whole deploy
#   bluegreen-failed/runbook    failed requests through nginx during a blue-green
#                               deploy (sum over rounds; goal 0) vs seed 001
#                               section 5.3 as a script: start the idle slot, poll
#                               its health, rewrite the upstream, nginx -s reload,
#                               stop the old slot
#   bluegreen-p99-ms/window     p99 ms during the switch (opsctl) vs steady state
#   rollback-failed             failed requests during a deploy of a release that
#                               never becomes healthy (exit 7; goal 0): it fails
#                               its slot's own gate, nginx is never switched
#   rollback-after-switch-failed  failed requests during a deploy rolled back
#                               after nginx was switched to the new slot (its
#                               after_switch hook fails: the old upstream put
#                               back, nginx reloaded, the old slot gated, the
#                               new one stopped; exit 7; goal 0)
#
# Everything runs on 127.0.0.1: nginx, tests/lib/demo-service.py and the load
# client from the test harness (tests/lib/test-lib.sh), stopped on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${1:-3}
ART_MB=${BENCH_ARTIFACT_MB:-200}
JAR_MB=${BENCH_JAR_MB:-100}
SEED_SLEEP=${BENCH_SEED_SLEEP:-10}
START_MS=${BENCH_DEMO_START_MS:-0}
for v in "$ROUNDS" "$ART_MB" "$JAR_MB"; do
	case $v in '' | *[!0-9]* | 0) bench_die "ROUNDS, BENCH_ARTIFACT_MB and BENCH_JAR_MB must be positive numbers" ;; esac
done
case $SEED_SLEEP$START_MS in *[!0-9]*) bench_die "BENCH_SEED_SLEEP and BENCH_DEMO_START_MS must be numbers" ;; esac
want_case() { case " ${BENCH_SKIP_CASES:-} " in *" $1 "*) return 1 ;; esac; }

bench_setup deploy
for tool in tar gzip zstd curl; do
	command -v "$tool" >/dev/null 2>&1 || bench_die "$tool is needed"
done
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || bench_die "nginx is needed (scripts/deps.sh)"

# The test harness brings nginx_start, demo_*, load_*; its EXIT trap replaces
# lib.sh's, so one trap runs both.
OPSCTL=$OPSCTL_BIN TEST_SRCDIR=$BENCH_REPO TEST_NAME=bench-deploy
export OPSCTL TEST_SRCDIR TEST_NAME
# shellcheck source=../tests/lib/test-lib.sh
. "$BENCH_REPO/tests/lib/test-lib.sh"
deploy_cleanup() {
	local code=$?
	set +e # test_cleanup is written for a shell without errexit
	bench_cleanup
	(exit "$code")
	test_cleanup
}
trap deploy_cleanup EXIT
W="$BENCH_TMP/work"
cd "$W" || exit 1
export HOME="$W"
PY=$TEST_PYTHON

# opsctl deploy exists? (The cases measure only the peers without it.)
HAVE_DEPLOY=
"$OPSCTL_BIN" deploy --help >/dev/null 2>&1 && HAVE_DEPLOY=1
[ -n "$HAVE_DEPLOY" ] || echo "# opsctl deploy: not in this opsctl; only the peers are measured"

# timed FILE CMD...: run CMD, append its wall seconds to FILE; a failure aborts.
timed() {
	local file=$1 t0 t1
	shift
	t0=$EPOCHREALTIME
	"$@" >"$W/timed.out" 2>&1 || {
		tail -n 20 "$W/timed.out" >&2
		bench_die "failed: $*"
	}
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }' >>"$file"
}
med() { bench_median <"$1"; }
sum() { awk '{ s += $1 } END { print s + 0 }' "$1"; }
# jget FILE EXPR: a value from a JSON file (d), printed by Python.
jget() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print("nan" if v is None else v)' "$1" "$2"; }

# ---- 1. unpacking a ~200 MB artifact --------------------------------------

make_artifact() {
	local dir=${BENCH_ARTIFACT_CACHE:-$W}
	ART=$dir/opsctl-bench-artifact-${ART_MB}MB.tar.gz
	mkdir -p "$dir"
	[ -s "$ART" ] && return 0
	bench_say "generating a ${ART_MB} MB artifact (bench/artifact.py, tar, gzip -6)"
	rm -rf "$W/art-tree"
	"$PY" "$BENCH_DIR/artifact.py" "$W/art-tree" --mb "$ART_MB" --version v1 || bench_die "artifact.py failed"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$W/art-tree" -cf - . |
		gzip -6 -n >"$ART.tmp.$$" || bench_die "tar czf failed"
	mv "$ART.tmp.$$" "$ART"
	rm -rf "$W/art-tree"
}

peer_tar() { tar xzf "$ART" -C "$W/x"; }
peer_tar_sync() { tar xzf "$ART" -C "$W/x" && sync -f "$W/x"; }

# opsctl_unpack_setup / opsctl_unpack: the opsctl side of the unpack case: a
# symlink deploy with nothing else to do (no backup, no migrations, restart =
# true, no checks), so its time is unpack + fsync + switch + bookkeeping.
opsctl_unpack_setup() {
	mkdir -p "$W/unpack-app"
	cat >"$W/unpack.conf" <<-EOF
	[app]
	name = bench-unpack
	state_dir = $W/unpack-state
	[deploy]
	root = $W/unpack-app
	strategy = symlink
	keep_releases = 1
	backup = no
	migrate = no
	[service]
	restart = /bin/true
	[health]
	wait = 5s
	EOF
}
opsctl_unpack() {
	"$OPSCTL_BIN" -q -c "$W/unpack.conf" deploy --no-backup --no-migrate "$ART"
}

case_unpack() {
	make_artifact
	local bytes files unpacked r
	bytes=$(stat -c %s "$ART")
	rm -rf "$W/x" && mkdir "$W/x"
	peer_tar # warm-up, and the shape of the tree
	files=$(find "$W/x" -type f | wc -l)
	unpacked=$(du -sm "$W/x" | cut -f1)
	echo "# unpack: $(awk -v b="$bytes" 'BEGIN { printf "%.0f MB", b / 1048576 }') tar.gz, $files files, ${unpacked} MB unpacked; $ROUNDS rounds, median wall s"
	if [ -n "$HAVE_DEPLOY" ]; then
		opsctl_unpack_setup
		opsctl_unpack >"$W/unpack.out" 2>&1 || {
			cat "$W/unpack.out" >&2
			bench_die "opsctl deploy of the artifact failed (warm-up)"
		}
		# the same tree as tar's, or opsctl is not timed doing the same job
		(cd "$W/x" && find . -type f -printf '%p %s\n' | sort) >"$W/tree.tar"
		(cd "$W/unpack-app/current/" && find . -type f -printf '%p %s\n' | sort) >"$W/tree.ops"
		cmp -s "$W/tree.tar" "$W/tree.ops" || bench_die "opsctl's release differs from tar's tree (names or sizes)"
	fi
	: >u.ops
	: >u.tar
	: >u.sync
	for ((r = 0; r < ROUNDS; r++)); do
		rm -rf "$W/x" && mkdir "$W/x" && sync
		timed u.tar peer_tar
		rm -rf "$W/x" && mkdir "$W/x" && sync
		timed u.sync peer_tar_sync
		if [ -n "$HAVE_DEPLOY" ]; then
			sync
			timed u.ops opsctl_unpack
		fi
	done
	rm -rf "$W/x"
	if [ -n "$HAVE_DEPLOY" ]; then
		bench_case "unpack-${ART_MB}MB/tar-xzf" "$(med u.ops)" "$(med u.tar)" 3
		bench_case "unpack-${ART_MB}MB/tar-xzf-sync" "$(med u.ops)" "$(med u.sync)" 3
		bench_goal "unpack opsctl / tar xzf (x)" "$(awk -v a="$(med u.ops)" -v b="$(med u.tar)" 'BEGIN { print a / b }')" "<=" 1.1
		rm -rf "$W/unpack-app" "$W/unpack-state"
	else
		echo "# unpack-${ART_MB}MB/tar-xzf: tar xzf $(med u.tar) s, tar xzf + syncfs $(med u.sync) s; opsctl pending"
	fi
}

# ---- 2. restart: unavailability of a symlink deploy vs the seeds ----------

# The seeds' deploy.sh (seed 000) on the demo service, from `systemctl stop` to
# the health check; its pg_dump (before the stop, outside the window) is left out.
write_seeds_deploy() {
	cat >"$W/seeds-deploy.sh" <<-'EOF'
	#!/bin/bash
	# deploy.sh of seed 000 with the demo service in place of systemd
	set -e
	PROJECT_DIR=$1 BACKUP_DIR=$2 SERVICE_PORT=$3 SLEEP=$4
	mkdir -p $BACKUP_DIR
	# 2. stop the service
	$DEMO_CTL stop seeds
	# 3. keep the current version
	if [ -f "$PROJECT_DIR/app.jar" ]; then
	    cp $PROJECT_DIR/app.jar $BACKUP_DIR/app_backup_$(date +%Y%m%d_%H%M%S).jar
	fi
	# 4. the new version
	cp target/ai-chat-*.jar $PROJECT_DIR/app.jar
	cp target/VERSION target/behaviour.json $PROJECT_DIR/
	# 5. start the service
	$DEMO_CTL start seeds $SERVICE_PORT $PROJECT_DIR
	sleep $SLEEP
	# 6. health check
	curl -f http://127.0.0.1:$SERVICE_PORT/actuator/health > /dev/null 2>&1
	EOF
}

# opsctl_symlink_setup PORT / opsctl_symlink_deploy ARTIFACT: the opsctl side.
opsctl_symlink_setup() {
	mkdir -p "$W/ops-app"
	cat >"$W/symlink.conf" <<-EOF
	[app]
	name = bench-symlink
	state_dir = $W/symlink-state
	[deploy]
	root = $W/ops-app
	strategy = symlink
	keep_releases = 2
	backup = no
	migrate = no
	[service]
	restart = $DEMO_CTL restart opsapp $1 $W/ops-app/current
	timeout = 60s
	[health]
	wait = 60s
	interval = 100ms
	consecutive = 1
	timeout = 2s
	[check "api"]
	url = http://127.0.0.1:$1/actuator/health
	EOF
}
opsctl_symlink_deploy() {
	"$OPSCTL_BIN" -q -c "$W/symlink.conf" deploy --no-backup --no-migrate "$1"
}

# release_tar VERSION [BEHAVIOUR [FILE]]: rel-VERSION.tar.zst with the jar,
# VERSION, behaviour.json and an empty FILE if given (zstd -1: quick to make;
# the deploy unpacks it before the stop).
release_tar() {
	local v=$1 beh=${2:-"{\"start_delay_ms\": $START_MS}"}
	rm -rf "$W/rel-src" && mkdir -p "$W/rel-src"
	ln "$W/target/ai-chat-1.0.jar" "$W/rel-src/app.jar" 2>/dev/null || cp "$W/target/ai-chat-1.0.jar" "$W/rel-src/app.jar"
	printf '%s\n' "$v" >"$W/rel-src/VERSION"
	printf '%s\n' "$beh" >"$W/rel-src/behaviour.json"
	[ -z "${3:-}" ] || : >"$W/rel-src/$3"
	tar -C "$W/rel-src" -cf - . | zstd -q -1 -T0 >"$W/rel-$v.tar.zst"
	rm -rf "$W/rel-src"
}

# restart_round NAME OUT_PREFIX PORT CMD...: CMD under a load polling PORT;
# appends the gap (ms), failures and wall s to OUT_PREFIX.{gap,failed,wall}.
restart_round() {
	local prefix=$1 port=$2
	shift 2
	load_start "http://127.0.0.1:$port/" --concurrency 2 --timeout 2 --fail-pause-ms 2
	sleep 0.5
	timed "$prefix.wall" "$@"
	sleep 0.5
	load_stop
	[ "$(jget "$LOAD_OUT" 'd["distinct_versions"][-1] != d["distinct_versions"][0]')" = True ] ||
		bench_die "$prefix: the load client did not see the version change ($LOAD_OUT)"
	jget "$LOAD_OUT" 'd["switch_gap_ms"]' >>"$prefix.gap"
	jget "$LOAD_OUT" 'd["failed"]' >>"$prefix.failed"
}

case_restart() {
	local sport oport r v
	rm -rf "$W/target" && "$PY" "$BENCH_DIR/artifact.py" "$W/target" --jar-only "$JAR_MB" --version v0 ||
		bench_die "artifact.py --jar-only failed"
	mv "$W/target/app.jar" "$W/target/ai-chat-1.0.jar"
	printf '{"start_delay_ms": %s}\n' "$START_MS" >"$W/target/behaviour.json"
	demo_setup
	write_seeds_deploy
	sport=$(free_port)
	oport=$(free_port)
	while [ "$oport" = "$sport" ]; do oport=$(free_port); done
	# the seeds' service, running v0
	mkdir -p "$W/seeds-app" && cp "$W/target/ai-chat-1.0.jar" "$W/seeds-app/app.jar"
	cp "$W/target/VERSION" "$W/target/behaviour.json" "$W/seeds-app/"
	demo_start seeds "$sport" "$W/seeds-app"
	if [ -n "$HAVE_DEPLOY" ]; then
		opsctl_symlink_setup "$oport"
		release_tar v0
		opsctl_symlink_deploy "$W/rel-v0.tar.zst" >/dev/null 2>&1 || bench_die "the first opsctl symlink deploy failed"
	fi
	echo "# restart: ${JAR_MB} MB jar, demo service start-up ${START_MS} ms, seeds' sleep ${SEED_SLEEP} s; $ROUNDS rounds; gap and wall: median, failed: sum"
	: >s.seeds.gap
	: >s.seeds.failed
	: >s.seeds.wall
	: >s.ops.gap
	: >s.ops.failed
	: >s.ops.wall
	for ((r = 1; r <= ROUNDS; r++)); do
		v=v$r
		printf '%s\n' "$v" >"$W/target/VERSION"
		rm -rf "$W/seeds-backups"
		cd "$W" # the seeds' script copies target/ai-chat-*.jar
		restart_round s.seeds "$sport" bash "$W/seeds-deploy.sh" "$W/seeds-app" "$W/seeds-backups" "$sport" "$SEED_SLEEP"
		if [ -n "$HAVE_DEPLOY" ]; then
			release_tar "$v"
			restart_round s.ops "$oport" opsctl_symlink_deploy "$W/rel-$v.tar.zst"
			rm -f "$W/rel-$v.tar.zst"
		fi
	done
	demo_stop seeds
	if [ -n "$HAVE_DEPLOY" ]; then
		demo_stop opsapp
		bench_case restart-gap-ms/seeds "$(med s.ops.gap)" "$(med s.seeds.gap)" 1
		bench_case restart-failed/seeds "$(sum s.ops.failed)" "$(sum s.seeds.failed)" 0
		bench_case restart-wall-s/seeds "$(med s.ops.wall)" "$(med s.seeds.wall)" 3
	else
		echo "# restart-gap-ms/seeds: seeds $(med s.seeds.gap) ms unavailable, $(sum s.seeds.failed) failed requests, $(med s.seeds.wall) s wall; opsctl pending"
	fi
}

# ---- 3. blue-green through nginx under load ------------------------------

# The seeds' runbook (seed 001 section 5.3) as a script: start the idle slot,
# poll its health (the seeds curl once), point the upstream at it (the seeds
# edit proxy_pass in vim: rewritten in place), nginx -s reload, stop the old
# slot (the seeds wait five minutes and pkill; a script does not wait).
write_runbook() {
	cat >"$W/runbook.sh" <<-'EOF'
	#!/bin/bash
	set -e
	NEW=$1 NEW_PORT=$2 OLD=$3 RELEASE=$4
	$DEMO_CTL start $NEW $NEW_PORT $RELEASE
	for i in $(seq 300); do
	    curl -fs http://127.0.0.1:$NEW_PORT/actuator/health > /dev/null && break
	    sleep 0.1
	done
	echo "server 127.0.0.1:$NEW_PORT;" > $NGINX_UPSTREAM_FILE
	$NGINX_RELOAD
	$DEMO_CTL stop $OLD
	EOF
}

# opsctl_bluegreen_setup BLUE_PORT GREEN_PORT / opsctl_bluegreen_deploy ARTIFACT
opsctl_bluegreen_setup() {
	mkdir -p "$W/bg-app"
	cat >"$W/bluegreen.conf" <<-EOF
	[app]
	name = bench-bluegreen
	state_dir = $W/bg-state
	[deploy]
	root = $W/bg-app
	strategy = blue-green
	keep_releases = 3
	backup = no
	migrate = no
	after_switch = test ! -e "\$OPSCTL_RELEASE_DIR/fail_after_switch"
	[deploy "blue-green"]
	slots = blue:$1 green:$2
	start = $DEMO_CTL start {slot} {port} $W/bg-app/releases/{release}
	stop = $DEMO_CTL stop {slot}
	health_url = http://127.0.0.1:{port}/actuator/health
	upstream_file = $NGINX_UPSTREAM_FILE
	upstream_template = server 127.0.0.1:{port};
	proxy_test = $NGINX_TEST
	proxy_reload = $([ "${BENCH_NGINX_RELOAD:-async}" = sync ] && echo "$NGINX_RELOAD_SYNC" || echo "$NGINX_RELOAD")
	timeout = 60s
	[health]
	wait = ${BENCH_ROLLBACK_WAIT:-5s}
	interval = 100ms
	consecutive = 2
	timeout = 2s
	[check "proxy"]
	url = $NGINX_URL/actuator/health
	EOF
}
opsctl_bluegreen_deploy() {
	"$OPSCTL_BIN" -q -c "$W/bluegreen.conf" deploy --no-backup --no-migrate "$1"
}

# bg_round PREFIX EXPECT_EXIT CMD...: CMD under load through nginx, with marks
# around it; appends failed, window p99 and steady p99.
bg_round() {
	local prefix=$1 want=$2 code=0
	shift 2
	load_start "$NGINX_URL/" --concurrency 4 --timeout 5
	sleep 0.5
	load_mark start
	"$@" >"$W/bg.out" 2>&1 || code=$?
	load_mark end
	sleep 0.5
	load_stop
	[ "$code" = "$want" ] || {
		tail -n 20 "$W/bg.out" >&2
		bench_die "$prefix: expected exit $want, got $code: $*"
	}
	jget "$LOAD_OUT" 'd["failed"]' >>"$prefix.failed"
	jget "$LOAD_OUT" '" ".join("%s=%d" % (k.replace(" ", "_"), n) for k, n in sorted(d["errors"].items())) or "-"' >>"$prefix.errors"
	jget "$LOAD_OUT" 'd["window"]["p99"]' >>"$prefix.wp99"
	jget "$LOAD_OUT" 'd["steady"]["p99"]' >>"$prefix.sp99"
}

case_bluegreen() {
	local bport gport r live=blue idle=green lport iport
	demo_setup
	write_runbook
	bport=$(free_port)
	gport=$(free_port)
	while [ "$gport" = "$bport" ]; do gport=$(free_port); done
	mkdir -p "$W/rb"
	demo_release "$W/rb/v0" v0 '{"latency_ms": 2}'
	demo_start blue "$bport" "$W/rb/v0"
	nginx_start "$bport"
	echo "# bluegreen: nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*version: //'), 2 workers, keep-alive upstream; load: 4 connections through nginx; $ROUNDS rounds, failed: sum, p99: median"
	: >b.rb.failed
	: >b.rb.wp99
	: >b.rb.sp99
	for ((r = 1; r <= ROUNDS; r++)); do
		demo_release "$W/rb/v$r" "v$r" '{"latency_ms": 2}'
		if [ "$live" = blue ]; then lport=$bport iport=$gport; else lport=$gport iport=$bport; fi
		idle=$([ "$live" = blue ] && echo green || echo blue)
		bg_round b.rb 0 bash "$W/runbook.sh" "$idle" "$iport" "$live" "$W/rb/v$r"
		live=$idle
		sleep 0.3 # let the reloaded nginx settle before the next round
	done
	demo_stop blue
	demo_stop green
	if [ -z "$HAVE_DEPLOY" ]; then
		echo "# bluegreen-failed/runbook: the runbook script $(sum b.rb.failed) failed requests; p99 $(med b.rb.wp99) ms during, $(med b.rb.sp99) ms steady; opsctl pending"
		return 0
	fi
	# opsctl: a first deploy into the blue slot, then ROUNDS deploys, then a rollback.
	[ -s "$W/target/ai-chat-1.0.jar" ] || {
		"$PY" "$BENCH_DIR/artifact.py" "$W/target" --jar-only 1 --version v0 && mv "$W/target/app.jar" "$W/target/ai-chat-1.0.jar"
	} || bench_die "artifact.py --jar-only failed"
	opsctl_bluegreen_setup "$bport" "$gport"
	release_tar b0 '{"latency_ms": 2}'
	opsctl_bluegreen_deploy "$W/rel-b0.tar.zst" >"$W/bg.out" 2>&1 || {
		tail -n 20 "$W/bg.out" >&2
		bench_die "the first opsctl blue-green deploy failed"
	}
	: >b.ops.failed
	: >b.ops.wp99
	: >b.ops.sp99
	for ((r = 1; r <= ROUNDS; r++)); do
		release_tar "b$r" '{"latency_ms": 2}'
		bg_round b.ops 0 opsctl_bluegreen_deploy "$W/rel-b$r.tar.zst"
	done
	: >b.rbk.failed
	: >b.rbk.wp99
	: >b.rbk.sp99
	release_tar bad '{"latency_ms": 2, "never_healthy": true}'
	bg_round b.rbk 7 opsctl_bluegreen_deploy "$W/rel-bad.tar.zst"
	bench_case bluegreen-failed/runbook "$(sum b.ops.failed)" "$(sum b.rb.failed)" 0
	bench_case bluegreen-p99-ms/window "$(med b.ops.wp99)" "$(med b.ops.sp99)" 2
	bench_case bluegreen-p99-ms/runbook-window "$(med b.ops.wp99)" "$(med b.rb.wp99)" 2
	bench_goal "bluegreen failed requests" "$(sum b.ops.failed)" "<=" 0
	echo "# rollback-failed: $(sum b.rbk.failed) failed requests during a deploy that rolled itself back (exit 7); p99 $(med b.rbk.wp99) ms during, $(med b.rbk.sp99) ms steady"
	bench_goal "rollback failed requests" "$(sum b.rbk.failed)" "<=" 0
	# a release that passes its own gate, takes over in nginx, then fails
	: >b.rbs.failed
	: >b.rbs.errors
	: >b.rbs.wp99
	: >b.rbs.sp99
	for ((r = 1; r <= ROUNDS; r++)); do
		release_tar "late$r" '{"latency_ms": 2}' fail_after_switch
		bg_round b.rbs 7 opsctl_bluegreen_deploy "$W/rel-late$r.tar.zst"
		sleep 0.3
	done
	echo "# rollback-after-switch-failed: $(sum b.rbs.failed) failed requests in $ROUNDS deploys rolled back after nginx was switched (after_switch failed; exit 7); p99 $(med b.rbs.wp99) ms during, $(med b.rbs.sp99) ms steady; errors per round: $(paste -sd '/' b.rbs.errors)"
	bench_goal "rollback after the switch failed requests" "$(sum b.rbs.failed)" "<=" 0
}

want_case unpack && case_unpack
want_case restart && case_restart
want_case bluegreen && case_bluegreen
exit 0
