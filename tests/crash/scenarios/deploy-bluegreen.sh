# shellcheck shell=bash
# Crash scenario: `opsctl deploy vN.tar.gz` with the blue-green strategy
# behind a private nginx (test-lib's nginx_start): the idle slot started on
# the new release (demo-ctl), gated on its port, the upstream file written,
# nginx -t, reload, the gate through nginx, drain, the old slot stopped.
# Signalled at a random moment, then the documented recovery: `opsctl deploy
# status` (the new slot stopped before the switch; the old upstream put back
# and the old slot gated from the switch to the gate; recorded after it).
# Invariants: current, slots/blue, slots/green point at complete releases;
# slots/live names a slot whose release is current's; the upstream file sends
# to that slot's port; that slot runs current's release, healthy, and nginx
# serves it; the idle slot is not running; no journal, staging or trash; no
# lock held; history.jsonl parses.
. "$CRASH_DIR/lib/deploy-common.bash"

CRASH_WINDOW_MS=1200

crash_setup() {
	{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || { fail "no nginx"; return 1; }
	nginx_start
	demo_setup
	DC_BLUE=$(free_port)
	DC_GREEN=$(free_port)
	while [ "$DC_GREEN" = "$DC_BLUE" ]; do DC_GREEN=$(free_port); done
	mkdir -p app/shared
	echo SECRET=shared >app/shared/.env
	cat >opsctl.conf <<-EOF2
	[app]
	name = bg
	[deploy]
	strategy = blue-green
	keep_releases = 4
	root = app
	shared = .env
	backup = no
	migrate = no
	[deploy "blue-green"]
	slots = blue:$DC_BLUE green:$DC_GREEN
	start = $DEMO_CTL start {slot} {port} $TEST_SCRATCH/app/releases/{release}
	stop = $DEMO_CTL stop {slot}
	health_url = http://127.0.0.1:{port}/actuator/health
	upstream_file = $NGINX_UPSTREAM_FILE
	proxy_test = $NGINX_TEST
	proxy_reload = $NGINX_RELOAD
	drain = 400ms
	timeout = 30s
	[health]
	wait = 15s
	interval = 100ms
	consecutive = 2
	timeout = 2s
	[check "api"]
	url = $NGINX_URL/actuator/health
	EOF2
	export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
	dc_payload
	dc_release v0
	expect_exit 0 opsctl deploy v0.tar.gz || return 1
	crash_check
}

crash_prepare() {
	dc_release "v$CRASH_TRIAL"
}

crash_run() {
	exec "$OPSCTL" deploy --reason "crash trial $CRASH_TRIAL" "v$CRASH_TRIAL.tar.gz"
}

crash_recover() {
	local ok
	case $1 in
	KILL) ok=",0,137," ;;
	TERM) ok=",0,7,10,143," ;;
	INT) ok=",0,7,10,130," ;;
	esac
	case $ok in *",$2,"*) ;; *) fail "SIG$1 after ${CRASH_DELAY_MS} ms: the run exited $2 (expected one of ${ok//,/ })" ;; esac
	expect_exit 0 opsctl deploy status
	cp out recover.out
	cp err recover.err
}

# bg_upstream_port: the port of the upstream file's server line
bg_upstream_port() {
	sed -n 's/^server 127\.0\.0\.1:\([0-9]*\);$/\1/p' "$NGINX_UPSTREAM_FILE"
}

bg_nginx_serves_now() { # VERSION
	[ "$(http_version "$NGINX_URL/" 2>/dev/null)" = "$1" ] &&
		curl -fsS --max-time 3 -o /dev/null "$NGINX_URL/actuator/health" 2>/dev/null
}

crash_check() {
	local live port idle idle_port ver cur
	dc_check_root app
	[ -L app/current ] || { fail "no current link"; return 1; }
	dc_check_release app/current
	cur=$(readlink app/current)
	live=$(readlink app/slots/live)
	case $live in
	blue) port=$DC_BLUE idle=green idle_port=$DC_GREEN ;;
	green) port=$DC_GREEN idle=blue idle_port=$DC_BLUE ;;
	*) fail "slots/live -> '$live'"; return 1 ;;
	esac
	[ "$(readlink "app/slots/$live")" = "../$cur" ] ||
		fail "the live slot $live -> $(readlink "app/slots/$live"), current -> $cur"
	[ "$(bg_upstream_port)" = "$port" ] ||
		{ show_file upstream "$NGINX_UPSTREAM_FILE"; fail "the upstream file does not send to the live slot $live ($port)"; }
	dc_serves "http://127.0.0.1:$port" app/current
	ver=$(cat app/current/VERSION)
	wait_for 10 bg_nginx_serves_now "$ver" ||
		fail "nginx does not serve $ver healthy (GET / -> $(http_version "$NGINX_URL/" 2>&1 | head -c 200))"
	# the idle slot is stopped (its stop may still be under way)
	wait_for 10 bash -c '! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null' _ "$idle_port" ||
		fail "the idle slot $idle still answers on port $idle_port"
	crash_check_locks
	crash_check_history
}
