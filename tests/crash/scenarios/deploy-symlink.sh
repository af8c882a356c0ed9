# shellcheck shell=bash
# Crash scenario: `opsctl deploy vN.tar.gz`, symlink strategy, with the
# release's own migrations (one new table per release) and the demo service
# restarted on ROOT/current and health-gated. Signalled at a random moment
# (SIGKILL; SIGTERM/SIGINT roll back: exit 7, or 10 before the switch), then
# the documented recovery: `opsctl deploy status` takes the lock and undoes,
# rolls back or finishes the killed run from its journal.
# Invariants: current (and every release on disk) is a complete release, the
# service runs the release current points at and is healthy, no journal,
# staging or trash left, schema_migrations matches the tables and holds the
# current release's migrations, no lock held, history.jsonl parses.
. "$CRASH_DIR/lib/deploy-common.bash"

CRASH_WINDOW_MS=1000

# (rollback.sh reuses it)
dc_symlink_setup() {
	pg_start
	pg_psql "CREATE DATABASE app" >/dev/null || fail "CREATE DATABASE app"
	demo_setup
	DC_PORT=$(free_port)
	mkdir -p app/shared
	echo SECRET=shared >app/shared/.env
	cat >opsctl.conf <<-EOF2
	[app]
	name = demo
	[database]
	url = $(pg_db_url app)
	connect_timeout = 3s
	[deploy]
	root = app
	keep_releases = 4
	shared = .env
	backup = no
	migrate = yes
	[service]
	restart = $DEMO_CTL restart app $DC_PORT $TEST_SCRATCH/app/current
	timeout = 30s
	[health]
	wait = 15s
	interval = 100ms
	consecutive = 2
	timeout = 2s
	[check "api"]
	url = http://127.0.0.1:$DC_PORT/actuator/health
	EOF2
	export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf DC_PORT
	dc_payload
	dc_migration 1000
	dc_release v0
	expect_exit 0 opsctl deploy v0.tar.gz || return 1
	dc_serves "http://127.0.0.1:$DC_PORT" app/current
}

crash_setup() { dc_symlink_setup; }

crash_prepare() {
	dc_migration $((1000 + CRASH_TRIAL))
	dc_release "v$CRASH_TRIAL"
}

crash_run() {
	exec "$OPSCTL" deploy --reason "crash trial $CRASH_TRIAL" "v$CRASH_TRIAL.tar.gz"
}

# dc_expect_exit SIG EXIT: what the signalled deploy may exit with.
dc_expect_run_exit() {
	local ok
	case $1 in
	KILL) ok=",0,137," ;;
	TERM) ok=",0,7,10,143," ;;   # 143: before opsctl's handler was installed
	INT) ok=",0,7,10,130," ;;
	esac
	case $ok in *",$2,"*) return 0 ;; esac
	fail "SIG$1 after ${CRASH_DELAY_MS} ms: the run exited $2 (expected one of ${ok//,/ })"
}

crash_recover() {
	dc_expect_run_exit "$1" "$2"
	expect_exit 0 opsctl deploy status
	cp out recover.out
	cp err recover.err
}

crash_check() {
	dc_check_root app
	[ -L app/current ] || fail "no current link"
	dc_check_release app/current
	dc_serves "http://127.0.0.1:$DC_PORT" app/current
	dc_check_schema app app/current
	crash_check_locks
	crash_check_history
}
