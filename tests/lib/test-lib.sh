# shellcheck shell=bash
# Sourced by every integration test (and scripts/demo.sh): a scratch directory,
# cleanup of every server the test started, and small assertion helpers.
#
# Environment (ctest sets the first two):
#   OPSCTL        the binary under test (default: build-test/opsctl, then build/opsctl)
#   TEST_SRCDIR   the source tree (default: two levels above this file)
#   TEST_KEEP=1   keep the scratch directory (and say where it is)
#   TEST_CONTINUE=1  report every failed expectation instead of stopping at the first
#   TEST_VERBOSE=1   show the output of every command run by expect_exit

# ---- setup ---------------------------------------------------------------

TEST_SRCDIR=${TEST_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
if [ -z "${OPSCTL:-}" ]; then
	for candidate in "$TEST_SRCDIR/build-test/opsctl" "$TEST_SRCDIR/build/opsctl"; do
		if [ -x "$candidate" ]; then
			OPSCTL=$candidate
			break
		fi
	done
fi
export OPSCTL TEST_SRCDIR
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
TEST_LIB_DIR="$TEST_SRCDIR/tests/lib"
TEST_PYTHON=$(command -v /usr/bin/python3 || command -v python3)

# A test sees only what it sets up itself.
unset OPSCTL_CONFIG DATABASE_URL NO_COLOR \
	PGHOST PGHOSTADDR PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGSERVICEFILE \
	PGPASSFILE PGSSLMODE PGCONNECT_TIMEOUT PGOPTIONS PGAPPNAME \
	DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD
export LC_ALL=C LANG=C TZ=UTC

TEST_SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/opsctl-$TEST_NAME.XXXXXX") || {
	echo "$TEST_NAME: cannot create a scratch directory" >&2
	exit 1
}
chmod 755 "$TEST_SCRATCH"     # the postgres user must be able to enter it
export HOME="$TEST_SCRATCH"    # no ~/.pgpass or ~/.psqlrc from the real user
export OPSCTL_STATE_DIR="$TEST_SCRATCH/state"   # history and locks stay in the scratch dir, even as root
cd "$TEST_SCRATCH" || exit 1

TEST_FAILURES=0
TEST_CHECKS=0
TEST_SERVERS=()     # "pg DATADIR", "httpd PID", "nginx PID", "demo STATEDIR",
                    # "load PID", "pool PID", "watch PID" or "s3 PID", stopped in reverse order
TEST_WATCHDOG_PID=

# ---- messages ------------------------------------------------------------

say() {
	printf '# %s\n' "$*" >&2
}

fail() {
	TEST_FAILURES=$((TEST_FAILURES + 1))
	printf 'FAIL %s: %s\n' "$TEST_NAME" "$*" >&2
	if [ -z "${TEST_CONTINUE:-}" ]; then
		exit 1
	fi
	return 1
}

skip_all() {
	say "skipping $TEST_NAME: $*"
	exit 0
}

# Indented copy of a file for failure messages (at most 40 lines).
show_file() {
	local label=$1 file=$2
	if [ -s "$file" ]; then
		printf -- '--- %s (%s):\n' "$label" "$file" >&2
		head -c 4000 "$file" | head -n 40 | sed 's/^/    /' >&2
		printf '\n' >&2
	else
		printf -- '--- %s: (empty)\n' "$label" >&2
	fi
}

# ---- assertions ----------------------------------------------------------

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	printf '%s\n' "$((t / 1000))"
}

# expect_exit CODE[,CODE...] CMD ARGS...
# Runs CMD with stdout in ./out and stderr in ./err; fails, showing both, when
# the exit code is not one of CODEs or a sanitizer reported anything.
# Sets LAST_EXIT and LAST_ELAPSED_MS.
expect_exit() {
	local want=$1 start code
	shift
	TEST_CHECKS=$((TEST_CHECKS + 1))
	start=$(now_ms)
	"$@" >out 2>err </dev/null
	code=$?
	LAST_ELAPSED_MS=$(($(now_ms) - start))
	LAST_EXIT=$code
	if [ -n "${TEST_VERBOSE:-}" ]; then
		say "\$ $* -> exit $code in ${LAST_ELAPSED_MS} ms"
		sed 's/^/    out: /' out >&2
		sed 's/^/    err: /' err >&2
	fi
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' err; then
		show_file stderr err
		fail "sanitizer report from: $*"
		return 1
	fi
	case ",$want," in
	*",$code,"*) return 0 ;;
	esac
	show_file stdout out
	show_file stderr err
	fail "expected exit $want, got $code (${LAST_ELAPSED_MS} ms): $*"
}

# expect_faster MS: the last expect_exit took less than MS milliseconds.
expect_faster() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$LAST_ELAPSED_MS" -lt "$1" ] ||
		fail "expected the command to finish within $1 ms, took $LAST_ELAPSED_MS ms"
}

# expect_slower MS: the last expect_exit took at least MS milliseconds.
expect_slower() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$LAST_ELAPSED_MS" -ge "$1" ] ||
		fail "expected the command to take at least $1 ms, took $LAST_ELAPSED_MS ms"
}

# expect_grep ERE FILE...: some line of some FILE matches.
expect_grep() {
	local pattern=$1 f
	shift
	TEST_CHECKS=$((TEST_CHECKS + 1))
	grep -qE -e "$pattern" -- "$@" && return 0
	for f in "$@"; do show_file "$f" "$f"; done
	fail "expected /$pattern/ in $*"
}

# expect_no_grep ERE FILE...: no line of any FILE matches.
expect_no_grep() {
	local pattern=$1 f
	shift
	TEST_CHECKS=$((TEST_CHECKS + 1))
	grep -qE -e "$pattern" -- "$@" || return 0
	for f in "$@"; do show_file "$f" "$f"; done
	fail "did not expect /$pattern/ in $*"
}

expect_file_same() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	cmp -s -- "$1" "$2" && return 0
	diff -u -- "$1" "$2" | head -n 40 >&2
	fail "files differ: $1 $2"
}

# expect_json FILE PYTHON-EXPR: FILE is one JSON document (bound to d) and the
# expression is true, e.g. expect_json out 'd["status"] == "pass"'.
expect_json() {
	local file=$1 expr=$2
	TEST_CHECKS=$((TEST_CHECKS + 1))
	local msg
	msg=$("$TEST_PYTHON" -c '
import json, sys
try:
    d = json.load(open(sys.argv[1], encoding="utf-8"))
except Exception as exc:
    print("not valid JSON: %s" % exc); sys.exit(1)
try:
    ok = eval(sys.argv[2], {"d": d})
except Exception as exc:
    print("%s: %s" % (type(exc).__name__, exc)); sys.exit(1)
if not ok:
    print("false"); sys.exit(1)
' "$file" "$expr" 2>&1) && return 0
	show_file "$file" "$file"
	fail "expect_json $file: $expr: $msg"
}

# ---- ports ---------------------------------------------------------------

# free_port: print a port in 20000-60000 on 127.0.0.1 that nothing listens on now.
free_port() {
	if [ -n "$TEST_PYTHON" ]; then
		"$TEST_PYTHON" -c '
import random, socket
for _ in range(500):
    port = random.randint(20000, 60000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    c = socket.socket()
    c.settimeout(0.2)
    try:
        if c.connect_ex(("127.0.0.1", port)) != 0:
            print(port); break
    finally:
        c.close()
'
		return
	fi
	local port i
	for i in $(seq 500); do
		port=$((20000 + RANDOM % 40001))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# wait_for SECONDS CMD ARGS...: poll CMD every 0.1 s until it succeeds.
wait_for() {
	local deadline=$(($(now_ms) + $1 * 1000))
	shift
	until "$@"; do
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# ---- cleanup ---------------------------------------------------------------

# A detached watchdog stops the PostgreSQL clusters and removes the scratch
# directory if this shell is killed without running its EXIT trap (a ctest
# timeout), and the nginx, demo services and load clients of the t4* tests.
# httpd.py, load.py and demo-service.py (through DEMO_WATCH_PID) also watch
# the test's shell themselves.
test_start_watchdog() {
	[ -z "$TEST_WATCHDOG_PID" ] || return 0
	setsid bash -c '
		while kill -0 "$1" 2>/dev/null; do sleep 1; done
		while read -r kind arg; do
			case $kind in
			pg) pid=$(head -n 1 "$arg/postmaster.pid" 2>/dev/null)
			    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null ;;
			nginx|load|pool|watch|s3) kill -TERM "$arg" 2>/dev/null ;;
			redis) pid=$(head -n 1 "$arg/redis.pid" 2>/dev/null)
			       [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null ;;
			demo) for f in "$arg"/*.pid; do
			          pid=$(head -n 1 "$f" 2>/dev/null)
			          [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
			      done ;;
			esac
		done < "$2/.servers"
		sleep 1
		[ -n "$3" ] || rm -rf "$2"
	' test-watchdog "$$" "$TEST_SCRATCH" "${TEST_KEEP:-}" </dev/null >/dev/null 2>&1 &
	TEST_WATCHDOG_PID=$!
}

test_register_server() {
	TEST_SERVERS+=("$1 $2")
	printf '%s %s\n' "$1" "$2" >>"$TEST_SCRATCH/.servers"
	test_start_watchdog
}

test_cleanup() {
	local code=$? i kind arg
	trap - EXIT
	cd / || true
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		read -r kind arg <<<"${TEST_SERVERS[$i]}"
		case $kind in
		pg) pg_stop "$arg" ;;
		httpd) httpd_stop "$arg" ;;
		nginx) nginx_stop "$arg" ;;
		demo) demo_stop_all "$arg" ;;
		load) load_stop "$arg" ;;
		pool) pool_stop "$arg" ;;
		watch) secret_watch_stop "$arg" ;;
		s3) s3_stop "$arg" ;;
		redis) redis_stop "$arg" ;;
		qdrant) qdrant_stop "$arg" ;;
		esac
	done
	if [ -n "$TEST_WATCHDOG_PID" ]; then
		kill "$TEST_WATCHDOG_PID" 2>/dev/null
		wait "$TEST_WATCHDOG_PID" 2>/dev/null
	fi
	if [ "$code" -eq 0 ] && [ "$TEST_FAILURES" -gt 0 ]; then
		code=1
	fi
	if [ -n "${TEST_KEEP:-}" ]; then
		say "scratch directory kept: $TEST_SCRATCH"
	else
		rm -rf "$TEST_SCRATCH"
	fi
	exit "$code"
}
trap test_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# test_done: the last line of every test.
test_done() {
	if [ "$TEST_FAILURES" -gt 0 ]; then
		say "$TEST_NAME: $TEST_FAILURES of $TEST_CHECKS checks failed"
		exit 1
	fi
	if [ "$TEST_CHECKS" -gt 0 ]; then
		say "$TEST_NAME: all $TEST_CHECKS checks passed"
	else
		say "$TEST_NAME: passed"
	fi
	exit 0
}

# require_opsctl: stop early with a clear message when there is no binary.
require_opsctl() {
	[ -n "${OPSCTL:-}" ] && [ -x "$OPSCTL" ] ||
		fail "no opsctl binary (set OPSCTL, or build into build-test/ or build/)"
}

# ---- PostgreSQL ----------------------------------------------------------

pg_find_bindir() {
	local dir
	dir=$(pg_config --bindir 2>/dev/null)
	if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
		echo "$dir"
		return 0
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n -r); do
		if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
			echo "$dir"
			return 0
		fi
	done
	dir=$(dirname "$(command -v initdb 2>/dev/null)" 2>/dev/null)
	[ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

# pg_as_owner CMD...: run as the cluster's owner (postgres when we are root).
pg_as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_start: a throwaway cluster in ./pg, listening on 127.0.0.1:TEST_PG_PORT
# (scram-sha-256 with TEST_PG_PASSWORD) and on a unix socket in ./pgsock (trust).
# Sets TEST_PG_BINDIR TEST_PG_DATA TEST_PG_SOCKDIR TEST_PG_PORT TEST_PG_PASSWORD
# TEST_PG_URL. Exports nothing. TEST_PG_CONF_EXTRA, when set, is appended to
# postgresql.conf as it is (lines of settings), e.g.
#   TEST_PG_CONF_EXTRA="log_statement = 'all'"   every statement in $TEST_SCRATCH/pg.log
pg_start() {
	local attempt
	TEST_PG_BINDIR=$(pg_find_bindir) || true
	[ -n "$TEST_PG_BINDIR" ] || fail "pg_start: no initdb/pg_ctl found (is postgresql installed?)"
	TEST_PG_DATA=$TEST_SCRATCH/pg
	TEST_PG_SOCKDIR=$TEST_SCRATCH/pgsock
	TEST_PG_PASSWORD="pw-$RANDOM$RANDOM-secret"
	mkdir -p "$TEST_PG_DATA" "$TEST_PG_SOCKDIR" || fail "pg_start: mkdir"
	printf '%s\n' "$TEST_PG_PASSWORD" >"$TEST_SCRATCH/pg.pw"
	: >"$TEST_SCRATCH/pg.log"
	chmod 700 "$TEST_PG_DATA"
	chmod 600 "$TEST_SCRATCH/pg.pw"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || fail "pg_start: running as root but there is no postgres user"
		chown postgres: "$TEST_PG_DATA" "$TEST_PG_SOCKDIR" "$TEST_SCRATCH/pg.pw" "$TEST_SCRATCH/pg.log"
	fi
	pg_as_owner "$TEST_PG_BINDIR/initdb" -D "$TEST_PG_DATA" -U postgres \
		--pwfile="$TEST_SCRATCH/pg.pw" --auth-local=trust --auth-host=scram-sha-256 \
		-E UTF8 --locale=C --no-sync --no-instructions >"$TEST_SCRATCH/initdb.log" 2>&1 || {
		show_file initdb.log "$TEST_SCRATCH/initdb.log"
		fail "pg_start: initdb failed"
		return 1
	}
	rm -f "$TEST_SCRATCH/pg.pw"
	cat >>"$TEST_PG_DATA/postgresql.conf" <<-EOF
	# opsctl test harness
	listen_addresses = '127.0.0.1'
	unix_socket_directories = '$TEST_PG_SOCKDIR'
	fsync = off
	synchronous_commit = off
	full_page_writes = off
	shared_buffers = 16MB
	max_connections = 40
	password_encryption = 'scram-sha-256'
	log_min_messages = warning
	EOF
	[ -z "${TEST_PG_CONF_EXTRA:-}" ] || printf '%s\n' "$TEST_PG_CONF_EXTRA" >>"$TEST_PG_DATA/postgresql.conf"
	for attempt in 1 2 3 4 5; do
		TEST_PG_PORT=$(free_port)
		if pg_as_owner "$TEST_PG_BINDIR/pg_ctl" -D "$TEST_PG_DATA" -l "$TEST_SCRATCH/pg.log" \
			-o "-p $TEST_PG_PORT" -w -t 60 start >"$TEST_SCRATCH/pg_ctl.out" 2>&1; then
			test_register_server pg "$TEST_PG_DATA"
			TEST_PG_URL="postgresql://postgres:$TEST_PG_PASSWORD@127.0.0.1:$TEST_PG_PORT/postgres"
			return 0
		fi
		grep -q 'already in use' "$TEST_SCRATCH/pg.log" 2>/dev/null || break
		say "pg_start: port $TEST_PG_PORT taken, trying another"
	done
	show_file pg_ctl "$TEST_SCRATCH/pg_ctl.out"
	show_file pg.log "$TEST_SCRATCH/pg.log"
	fail "pg_start: pg_ctl start failed"
}

# pg_resume: start the cluster of the last pg_start again, on the same port.
pg_resume() {
	pg_as_owner "$TEST_PG_BINDIR/pg_ctl" -D "$TEST_PG_DATA" -l "$TEST_SCRATCH/pg.log" \
		-o "-p $TEST_PG_PORT" -w -t 60 start >"$TEST_SCRATCH/pg_ctl.out" 2>&1 || {
		show_file pg_ctl "$TEST_SCRATCH/pg_ctl.out"
		fail "pg_resume: pg_ctl start failed"
		return 1
	}
	test_register_server pg "$TEST_PG_DATA"
}

# pg_stop [DATADIR]
pg_stop() {
	local data=${1:-$TEST_PG_DATA} i
	[ -n "$data" ] && [ -f "$data/postmaster.pid" ] || return 0
	pg_as_owner "$TEST_PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		pg_as_owner "$TEST_PG_BINDIR/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "pg $data" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
}

# pg_psql SQL: run SQL as postgres over the unix socket; rows on stdout,
# unaligned, tuples only.
pg_psql() {
	local psql="$TEST_PG_BINDIR/psql"
	[ -x "$psql" ] || psql=psql
	"$psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d postgres -c "$1"
}

# ---- the controllable HTTP service ---------------------------------------

# httpd_start: start tests/lib/httpd.py; sets HTTPD_PORT, HTTPD_URL, HTTPD_PID.
httpd_start() {
	local portfile="$TEST_SCRATCH/httpd.port"
	rm -f "$portfile"
	"$TEST_PYTHON" "$TEST_LIB_DIR/httpd.py" --port-file "$portfile" --parent-pid $$ \
		--max-seconds 900 --log "$TEST_SCRATCH/httpd.log" </dev/null >/dev/null 2>"$TEST_SCRATCH/httpd.err" &
	HTTPD_PID=$!
	test_register_server httpd "$HTTPD_PID"
	wait_for 30 test -s "$portfile" || {
		show_file httpd.err "$TEST_SCRATCH/httpd.err"
		fail "httpd_start: the test HTTP service did not start"
		return 1
	}
	HTTPD_PORT=$(cat "$portfile")
	HTTPD_URL="http://127.0.0.1:$HTTPD_PORT"
	curl -fsS --max-time 10 "$HTTPD_URL/__ping" >/dev/null || fail "httpd_start: no answer on $HTTPD_URL"
}

# httpd_stop [PID]
httpd_stop() {
	local pid=${1:-$HTTPD_PID} i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "httpd $pid" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
	return 0
}

# httpd_control FIELD=VALUE...: configure a path (see httpd.py for the fields),
# e.g. httpd_control path=/health status=503 after_ms=2000 then_status=200.
httpd_control() {
	local args=() kv
	for kv in "$@"; do
		args+=(--data-urlencode "$kv")
	done
	curl -fsS --max-time 10 "${args[@]}" "$HTTPD_URL/__control" >/dev/null ||
		fail "httpd_control $*: the control request failed"
}

# httpd_set PATH STATUS BODY [DELAY_MS] [CONTENT_TYPE]
httpd_set() {
	httpd_control "path=$1" "status=$2" "body=$3" "delay_ms=${4:-0}" "content_type=${5:-}"
}

# httpd_hits PATH [FIELD]: how many requests PATH got (FIELD hits_then: answered
# with the then_* spec) since it was last set.
httpd_hits() {
	curl -fsS --max-time 10 "$HTTPD_URL/__stats?path=$1" |
		"$TEST_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "${2:-hits}"
}

# ---- nginx, the demo service and the load client (deploy tests, t4*) -------
#
# A blue-green setup on loopback: nginx_start runs a private nginx whose
# upstream is included from NGINX_UPSTREAM_FILE (the shape opsctl's
# [deploy "blue-green"] expects); demo_start runs tests/lib/demo-service.py
# releases through tests/lib/demo-ctl.sh; load_start runs tests/lib/load.py
# against a URL and load_stop leaves its JSON summary in LOAD_OUT. All of them
# are stopped by test_cleanup (and by the watchdog if the test is killed).

# nginx_start [PORT...]: a throwaway nginx in ./nginx (its own prefix, conf,
# pid, logs and temp dirs; `daemon off;`, a child of the test's shell, two
# workers), listening on 127.0.0.1:NGINX_PORT, proxying everything to
# `upstream app { include NGINX_UPSTREAM_FILE; keepalive 16; }` with HTTP/1.1
# keep-alive to the upstream and `proxy_next_upstream error timeout`. The
# upstream file starts with `server 127.0.0.1:PORT;` per PORT (none: one
# `down` placeholder, every request answers 502). GET /__nginx_ping is answered
# by nginx itself. Sets and exports:
#   NGINX_BIN NGINX_PREFIX NGINX_CONF NGINX_PORT NGINX_URL NGINX_PID
#   NGINX_PID_FILE NGINX_UPSTREAM_FILE NGINX_ERROR_LOG NGINX_ACCESS_LOG
#   NGINX_TEST         command for opsctl's proxy_test:  nginx -t -q -p P -c C -e E
#   NGINX_RELOAD       command for proxy_reload, as in production: nginx -s reload ...
#                      (only signals the master; returns before the reload is done)
#   NGINX_RELOAD_SYNC  command for proxy_reload that returns once the old workers
#                      are gone (tests/lib/nginx-reload.sh; exit 1 if nginx
#                      rejected the configuration)
nginx_start() {
	local attempt i
	NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
	[ -x "$NGINX_BIN" ] || {
		fail "nginx_start: no nginx binary (scripts/deps.sh installs it)"
		return 1
	}
	NGINX_PREFIX=$TEST_SCRATCH/nginx
	NGINX_CONF=$NGINX_PREFIX/conf/nginx.conf
	NGINX_UPSTREAM_FILE=$NGINX_PREFIX/conf/upstream.conf
	NGINX_ERROR_LOG=$NGINX_PREFIX/logs/error.log
	NGINX_ACCESS_LOG=$NGINX_PREFIX/logs/access.log
	NGINX_PID_FILE=$NGINX_PREFIX/logs/nginx.pid
	mkdir -p "$NGINX_PREFIX/conf" "$NGINX_PREFIX/logs" "$NGINX_PREFIX/tmp" || fail "nginx_start: mkdir"
	nginx_set_upstream "$@"
	local nginx_args=(-p "$NGINX_PREFIX/" -c "$NGINX_CONF" -e "$NGINX_ERROR_LOG")
	NGINX_TEST="$NGINX_BIN -t -q ${nginx_args[*]}"
	NGINX_RELOAD="$NGINX_BIN -s reload ${nginx_args[*]}"
	NGINX_RELOAD_SYNC="bash $TEST_LIB_DIR/nginx-reload.sh $NGINX_PID_FILE $NGINX_ERROR_LOG"
	for attempt in 1 2 3 4 5; do
		NGINX_PORT=$(free_port)
		NGINX_URL="http://127.0.0.1:$NGINX_PORT"
		nginx_write_conf
		"$NGINX_BIN" -t -q "${nginx_args[@]}" >"$NGINX_PREFIX/logs/test.out" 2>&1 || {
			show_file "nginx -t" "$NGINX_PREFIX/logs/test.out"
			fail "nginx_start: nginx -t rejected $NGINX_CONF"
			return 1
		}
		: >"$NGINX_ERROR_LOG"
		"$NGINX_BIN" "${nginx_args[@]}" </dev/null >"$NGINX_PREFIX/logs/stdout" 2>&1 &
		NGINX_PID=$!
		test_register_server nginx "$NGINX_PID"
		for ((i = 0; i < 300; i++)); do
			if [ "$(cat "$NGINX_PID_FILE" 2>/dev/null)" = "$NGINX_PID" ] &&
				curl -fsS --max-time 2 -o /dev/null "$NGINX_URL/__nginx_ping" 2>/dev/null; then
				export NGINX_BIN NGINX_PREFIX NGINX_CONF NGINX_PORT NGINX_URL NGINX_PID \
					NGINX_PID_FILE NGINX_UPSTREAM_FILE NGINX_ERROR_LOG NGINX_ACCESS_LOG \
					NGINX_TEST NGINX_RELOAD NGINX_RELOAD_SYNC
				return 0
			fi
			kill -0 "$NGINX_PID" 2>/dev/null || break
			sleep 0.05
		done
		nginx_stop "$NGINX_PID"
		grep -q 'Address already in use' "$NGINX_ERROR_LOG" 2>/dev/null || break
		say "nginx_start: port $NGINX_PORT taken, trying another"
	done
	show_file nginx.error.log "$NGINX_ERROR_LOG"
	show_file nginx.stdout "$NGINX_PREFIX/logs/stdout"
	fail "nginx_start: nginx did not start"
}

# nginx_write_conf: (re)write NGINX_CONF for NGINX_PORT (nginx_start does it).
nginx_write_conf() {
	local user_line=''
	[ "$(id -u)" -ne 0 ] || user_line='user root;'
	cat >"$NGINX_CONF" <<-EOF
	# opsctl test harness (tests/lib/test-lib.sh nginx_start)
	daemon off;
	master_process on;
	worker_processes 2;
	worker_shutdown_timeout 10s;
	$user_line
	pid $NGINX_PID_FILE;
	error_log $NGINX_ERROR_LOG info;
	events {
	    worker_connections 1024;
	}
	http {
	    client_body_temp_path $NGINX_PREFIX/tmp/body;
	    proxy_temp_path $NGINX_PREFIX/tmp/proxy;
	    fastcgi_temp_path $NGINX_PREFIX/tmp/fastcgi;
	    uwsgi_temp_path $NGINX_PREFIX/tmp/uwsgi;
	    scgi_temp_path $NGINX_PREFIX/tmp/scgi;
	    log_format upstream '\$msec \$pid \$status \$request_time "\$request" '
	                        'upstream=\$upstream_addr \$upstream_status \$upstream_response_time';
	    access_log $NGINX_ACCESS_LOG upstream;
	    keepalive_timeout 60s;
	    keepalive_requests 100000;

	    upstream app {
	        include $NGINX_UPSTREAM_FILE;
	        keepalive 16;
	        keepalive_timeout 60s;
	    }

	    server {
	        listen 127.0.0.1:$NGINX_PORT;
	        server_name localhost;

	        location = /__nginx_ping {
	            access_log off;
	            default_type text/plain;
	            return 200 "pong\n";
	        }
	        location / {
	            proxy_pass http://app;
	            proxy_http_version 1.1;
	            proxy_set_header Connection "";
	            proxy_set_header Host \$host;
	            proxy_next_upstream error timeout;
	            proxy_next_upstream_tries 3;
	            proxy_connect_timeout 2s;
	            proxy_send_timeout 10s;
	            proxy_read_timeout 30s;
	        }
	    }
	}
	EOF
}

# nginx_set_upstream [PORT...]: replace NGINX_UPSTREAM_FILE atomically (a
# temporary file renamed into place) with `server 127.0.0.1:PORT;` per PORT
# (opsctl's default upstream_template); no PORT: a `down` placeholder. It does
# not reload: nginx_test, then nginx_reload.
nginx_set_upstream() {
	local tmp="$NGINX_UPSTREAM_FILE.tmp.$$" port
	{
		echo "# written by the opsctl test harness"
		[ $# -gt 0 ] || echo "server 127.0.0.1:1 down;"
		for port in "$@"; do
			echo "server 127.0.0.1:$port;"
		done
	} >"$tmp" && mv -f "$tmp" "$NGINX_UPSTREAM_FILE" ||
		fail "nginx_set_upstream: cannot write $NGINX_UPSTREAM_FILE"
}

# nginx_test: nginx -t on the current files (0: the configuration is valid);
# nginx's complaint on stderr.
nginx_test() {
	"$NGINX_BIN" -t -q -p "$NGINX_PREFIX/" -c "$NGINX_CONF" -e "$NGINX_ERROR_LOG"
}

# nginx_reload: a graceful reload (SIGHUP) that returns when the old workers
# have finished their in-flight requests and exited; fails when nginx rejected
# the configuration.
nginx_reload() {
	bash "$TEST_LIB_DIR/nginx-reload.sh" "$NGINX_PID_FILE" "$NGINX_ERROR_LOG" ||
		fail "nginx_reload: the reload did not complete"
}

# nginx_stop [PID]: graceful stop (SIGQUIT), SIGTERM after 10 s, SIGKILL after 15 s.
nginx_stop() {
	local pid=${1:-${NGINX_PID:-}} i
	[ -n "$pid" ] || return 0
	kill -QUIT "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		[ "$i" -ne 200 ] || kill -TERM "$pid" 2>/dev/null || true
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "nginx $pid" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
	return 0
}

# demo_setup: the state directory of the demo services (idempotent; the other
# demo_* helpers call it). Sets and exports DEMO_STATE_DIR (pid and log files,
# NAME.pid NAME.log), DEMO_WATCH_PID (this shell: the services exit when it is
# gone) and DEMO_CTL, the launcher as a command line for opsctl configs:
#   [service]  restart = $DEMO_CTL restart app PORT ROOT/current
#   [deploy "blue-green"]  start = $DEMO_CTL start {slot} {port} {release}
#                          stop = $DEMO_CTL stop {slot}
# (see tests/lib/demo-ctl.sh; it needs no environment, -d and -w are in DEMO_CTL).
demo_setup() {
	[ -z "${TEST_DEMO_READY:-}" ] || return 0
	TEST_DEMO_READY=1
	DEMO_STATE_DIR=$TEST_SCRATCH/demo
	DEMO_WATCH_PID=$$
	DEMO_CTL="bash $TEST_LIB_DIR/demo-ctl.sh -d $DEMO_STATE_DIR -w $DEMO_WATCH_PID"
	export DEMO_STATE_DIR DEMO_WATCH_PID DEMO_CTL
	mkdir -p "$DEMO_STATE_DIR" || fail "demo_setup: mkdir $DEMO_STATE_DIR"
	test_register_server demo "$DEMO_STATE_DIR"
}

# demo_release DIR VERSION [BEHAVIOUR_JSON]: make a release directory for
# demo-service.py: DIR/VERSION and, when given, DIR/behaviour.json, e.g.
#   demo_release rel/v2 v2 '{"healthy_after_ms": 3000}'
#   demo_release rel/bad bad '{"never_healthy": true}'   (or crash_on_start,
#   start_delay_ms, latency_ms; see tests/lib/demo-service.py)
demo_release() {
	demo_setup
	mkdir -p "$1" && printf '%s\n' "$2" >"$1/VERSION" || fail "demo_release: cannot write $1"
	[ $# -lt 3 ] || printf '%s\n' "$3" >"$1/behaviour.json" || fail "demo_release: cannot write $1"
}

# demo_ctl start|stop|restart|status NAME [PORT RELEASE_DIR]: tests/lib/demo-ctl.sh.
demo_ctl() {
	demo_setup
	bash "$TEST_LIB_DIR/demo-ctl.sh" -d "$DEMO_STATE_DIR" -w "$DEMO_WATCH_PID" "$@"
}

# demo_start NAME PORT RELEASE_DIR: start a demo service and wait until it
# accepts connections on 127.0.0.1:PORT (fails the test if it does not).
demo_start() {
	demo_ctl start "$@" || fail "demo_start $*: the demo service did not start"
}

# demo_stop NAME: graceful stop (SIGTERM: in-flight requests finish), SIGKILL
# after DEMO_STOP_TIMEOUT (10) seconds.
demo_stop() {
	demo_ctl stop "$1"
}

# demo_pid NAME: the pid of a running demo service (status 3 if not running).
demo_pid() {
	demo_ctl status "$1"
}

# demo_stop_all [STATE_DIR]: stop every demo service with a pid file there.
demo_stop_all() {
	local dir=${1:-${DEMO_STATE_DIR:-}} f name
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	for f in "$dir"/*.pid; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .pid)
		bash "$TEST_LIB_DIR/demo-ctl.sh" -d "$dir" -t 5 stop "$name" >/dev/null 2>&1 || true
	done
	return 0
}

# expect_http URL STATUS [ERE]: GET URL answers STATUS (and the body matches ERE).
expect_http() {
	local code
	TEST_CHECKS=$((TEST_CHECKS + 1))
	code=$(curl -sS --max-time 10 -o "$TEST_SCRATCH/http.body" -w '%{http_code}' "$1" 2>"$TEST_SCRATCH/http.err")
	if [ "$code" != "$2" ]; then
		show_file body "$TEST_SCRATCH/http.body"
		show_file curl "$TEST_SCRATCH/http.err"
		fail "GET $1: expected HTTP $2, got $code"
		return 1
	fi
	[ $# -lt 3 ] || grep -qE -e "$3" "$TEST_SCRATCH/http.body" || {
		show_file body "$TEST_SCRATCH/http.body"
		fail "GET $1: body does not match /$3/"
	}
}

# http_version URL: the "version" a demo service answers at URL (via curl).
http_version() {
	curl -fsS --max-time 10 "$1" | "$TEST_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["version"])'
}

# load_start URL [LOAD_PY_ARGS...]: run tests/lib/load.py URL in the background
# (default --concurrency 4 --max-seconds 120; add --duration S, --count N,
# --rate R ...) and wait until it got a first successful response. Sets
# LOAD_PID, LOAD_OUT (the summary, ./load-N.json, written when it stops) and
# LOAD_MARKS (the --mark-file, see load_mark). One run at a time.
LOAD_RUNS=0
load_start() {
	local url=$1 i
	shift
	LOAD_RUNS=$((LOAD_RUNS + 1))
	LOAD_OUT=$TEST_SCRATCH/load-$LOAD_RUNS.json
	LOAD_MARKS=$TEST_SCRATCH/load-$LOAD_RUNS.marks
	local ready=$TEST_SCRATCH/load-$LOAD_RUNS.ready
	rm -f "$LOAD_OUT" "$LOAD_MARKS" "$ready"
	"$TEST_PYTHON" "$TEST_LIB_DIR/load.py" "$url" --concurrency 4 --max-seconds 120 \
		--out "$LOAD_OUT" --mark-file "$LOAD_MARKS" --ready-file "$ready" \
		--parent-pid $$ "$@" </dev/null >/dev/null 2>"$TEST_SCRATCH/load-$LOAD_RUNS.err" &
	LOAD_PID=$!
	test_register_server load "$LOAD_PID"
	for ((i = 0; i < 200; i++)); do
		[ -e "$ready" ] && return 0
		[ ! -e "$LOAD_OUT" ] && kill -0 "$LOAD_PID" 2>/dev/null || break
		sleep 0.05
	done
	[ -e "$ready" ] && return 0
	show_file load.err "$TEST_SCRATCH/load-$LOAD_RUNS.err"
	fail "load_start: no successful response from $url within 10 s"
}

# load_mark LABEL: record a timestamp in LOAD_MARKS; the summary's "window"
# covers the requests between the first and the last mark.
load_mark() {
	printf '%s %s\n' "$1" "$EPOCHREALTIME" >>"$LOAD_MARKS"
}

# load_stop [PID]: stop the load client (SIGTERM: it completes the requests in
# flight) and wait for its summary in LOAD_OUT; load_wait waits for a run
# bounded by --duration/--count to end by itself.
load_stop() {
	local pid=${1:-${LOAD_PID:-}}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	load_wait "$pid"
}

load_wait() {
	local pid=${1:-${LOAD_PID:-}} i
	[ -n "$pid" ] || return 0
	wait "$pid" 2>/dev/null || true
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "load $pid" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
	if [ "$pid" = "${LOAD_PID:-}" ] && [ ! -s "$LOAD_OUT" ]; then
		show_file load.err "$TEST_SCRATCH/load-$LOAD_RUNS.err"
		fail "load client $pid wrote no summary ($LOAD_OUT)"
	fi
	return 0
}

# expect_load PYTHON-EXPR: the last load summary (bound to d) satisfies EXPR,
# e.g. expect_load 'd["failed"] == 0 and d["last_version"] == "v2"'.
expect_load() {
	expect_json "$LOAD_OUT" "$1"
}

# ---- database client pool and secret watcher (rotate-secret tests, t5*) -------

# pool_start ENV_FILE [PGPOOL_PY_ARGS...]: run tests/lib/pgpool.py in the
# background with the DB_* credentials of ENV_FILE, read once (default --size 4
# --churn-ms 200 --max-seconds 120), and wait until its connections are open.
# Sets POOL_PID and POOL_OUT (the summary, ./pool-N.json, written when it stops).
POOL_RUNS=0
pool_start() {
	local env_file=$1 i
	shift
	POOL_RUNS=$((POOL_RUNS + 1))
	POOL_OUT=$TEST_SCRATCH/pool-$POOL_RUNS.json
	local ready=$TEST_SCRATCH/pool-$POOL_RUNS.ready err=$TEST_SCRATCH/pool-$POOL_RUNS.err
	rm -f "$POOL_OUT" "$ready"
	"$TEST_PYTHON" "$TEST_LIB_DIR/pgpool.py" --env-file "$env_file" --size 4 --churn-ms 200 \
		--max-seconds 120 --out "$POOL_OUT" --ready-file "$ready" --parent-pid $$ "$@" \
		</dev/null >/dev/null 2>"$err" &
	POOL_PID=$!
	test_register_server pool "$POOL_PID"
	for ((i = 0; i < 200; i++)); do
		[ -e "$ready" ] && return 0
		kill -0 "$POOL_PID" 2>/dev/null || break
		sleep 0.05
	done
	show_file pool.err "$err"
	fail "pool_start: the pool did not open its connections with $env_file"
}

# pool_stop [PID]: SIGTERM, then wait for the summary in POOL_OUT.
pool_stop() {
	local pid=${1:-${POOL_PID:-}} i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "pool $pid" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
	if [ "$pid" = "${POOL_PID:-}" ] && [ ! -s "$POOL_OUT" ]; then
		show_file pool.err "$TEST_SCRATCH/pool-$POOL_RUNS.err"
		fail "pool client $pid wrote no summary ($POOL_OUT)"
	fi
	return 0
}

# expect_pool PYTHON-EXPR: the last pool summary (bound to d) satisfies EXPR,
# e.g. expect_pool 'd["failed"] == 0 and d["connects"] > 4'.
expect_pool() {
	expect_json "$POOL_OUT" "$1"
}

# secret_watch_start: run tests/lib/secret-watch.py on this shell's process
# tree (every child's /proc/PID/cmdline and environ, sampled every 5 ms) until
# secret_watch_stop. Sets WATCH_PID and WATCH_LOG (./secret-watch-N.log); grep
# it afterwards with expect_secret_absent. Nothing the test runs while the
# watcher runs may carry a value on its command line or in its environment.
WATCH_RUNS=0
secret_watch_start() {
	local i ready
	WATCH_RUNS=$((WATCH_RUNS + 1))
	WATCH_LOG=$TEST_SCRATCH/secret-watch-$WATCH_RUNS.log
	ready=$TEST_SCRATCH/secret-watch-$WATCH_RUNS.ready
	rm -f "$WATCH_LOG" "$ready"
	"$TEST_PYTHON" "$TEST_LIB_DIR/secret-watch.py" --root-pid $$ --log "$WATCH_LOG" \
		--ready-file "$ready" --interval-ms 5 --max-seconds 300 \
		</dev/null >/dev/null 2>"$TEST_SCRATCH/secret-watch-$WATCH_RUNS.err" &
	WATCH_PID=$!
	test_register_server watch "$WATCH_PID"
	for ((i = 0; i < 200; i++)); do
		[ -e "$ready" ] && return 0
		kill -0 "$WATCH_PID" 2>/dev/null || break
		sleep 0.05
	done
	show_file secret-watch.err "$TEST_SCRATCH/secret-watch-$WATCH_RUNS.err"
	fail "secret_watch_start: the watcher did not start"
}

# secret_watch_stop [PID]: stop the watcher (after a last scan).
secret_watch_stop() {
	local pid=${1:-${WATCH_PID:-}} i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "watch $pid" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
	if [ "$pid" = "${WATCH_PID:-}" ] && ! grep -q '^# scans ' "$WATCH_LOG" 2>/dev/null; then
		show_file secret-watch.err "$TEST_SCRATCH/secret-watch-$WATCH_RUNS.err"
		fail "the secret watcher $pid did not finish its log ($WATCH_LOG)"
	fi
	return 0
}

# expect_secret_absent VALUE FILE...: VALUE (and its URL-encoded form) occurs
# in none of the FILEs (missing files count as empty). On failure it names the
# files, never the value. VALUE never reaches a command line: grep reads it
# through a pipe.
expect_secret_absent() {
	local value=$1 f found=() enc='' i c
	shift
	TEST_CHECKS=$((TEST_CHECKS + 1))
	if [ ${#value} -lt 6 ]; then
		fail "expect_secret_absent: no value (or one too short) to look for"
		return 1
	fi
	for ((i = 0; i < ${#value}; i++)); do
		c=${value:i:1}
		case $c in
		[A-Za-z0-9._~-]) enc+=$c ;;
		*) printf -v c '%%%02X' "'$c"; enc+=$c ;;
		esac
	done
	for f in "$@"; do
		[ -e "$f" ] || continue
		grep -qF -f <(printf '%s\n%s\n' "$value" "$enc") -- "$f" && found+=("$f")
	done
	[ ${#found[@]} -eq 0 ] && return 0
	fail "a secret value (${#value} characters) occurs in: ${found[*]}"
}

# ---- S3 storage (s3rver) ----------------------------------------------------

# s3_start [BUCKET]: a fresh s3rver (installed into .cache/npm by
# scripts/deps.sh) on a free loopback port, its data in a new directory, the
# bucket (default: backups) created, run through tests/lib/s3rver-run.js.
# Sets S3_PORT S3_URL (http://127.0.0.1:PORT, for path_style = yes),
# S3_VHOST_URL (http://s3.localhost:PORT, for virtual-host-style requests to
# BUCKET.s3.localhost, which curl resolves to loopback), S3_DIR (the data directory: an
# object is S3_DIR/BUCKET/KEY._S3rver_object) S3_BUCKET S3_LOG S3_PID, and
# S3_ACCESS_KEY / S3_SECRET_KEY (s3rver's only account, S3RVER/S3RVER; it
# checks that the key exists but not the signature). S3_LOG gets one line per
# request, "METHOD URL STATUS HOST" (status 0: the client went away mid-request).
# S3_SSE_KMS=1 answers as a bucket with SSE-KMS default encryption does: ETags
# that are not MD5s of the bytes (see s3rver-run.js).
S3_RUNS=0
s3_start() {
	local module=$TEST_SRCDIR/.cache/npm/node_modules/s3rver portfile
	command -v node >/dev/null 2>&1 && [ -f "$module/package.json" ] || {
		fail "s3_start: no s3rver in $TEST_SRCDIR/.cache/npm (scripts/deps.sh installs it)"
		return 1
	}
	S3_RUNS=$((S3_RUNS + 1))
	S3_BUCKET=${1:-backups}
	S3_DIR=$TEST_SCRATCH/s3-$S3_RUNS
	S3_LOG=$TEST_SCRATCH/s3-$S3_RUNS.log
	portfile=$TEST_SCRATCH/s3-$S3_RUNS.port
	mkdir -p "$S3_DIR" || fail "s3_start: mkdir $S3_DIR"
	: >"$S3_LOG"
	# s3rver's ListObjectsV2 continuation tokens are DES-encrypted, which
	# node's OpenSSL 3 keeps in its legacy provider
	node --openssl-legacy-provider "$TEST_LIB_DIR/s3rver-run.js" --module "$module" --dir "$S3_DIR" --bucket "$S3_BUCKET" \
		--port-file "$portfile" --log "$S3_LOG" --parent-pid $$ --max-seconds 900 \
		${S3_SSE_KMS:+--sse-kms 1} </dev/null >/dev/null 2>"$TEST_SCRATCH/s3-$S3_RUNS.err" &
	S3_PID=$!
	test_register_server s3 "$S3_PID"
	wait_for 30 test -s "$portfile" || {
		show_file s3rver.err "$TEST_SCRATCH/s3-$S3_RUNS.err"
		fail "s3_start: s3rver did not start"
		return 1
	}
	S3_PORT=$(cat "$portfile")
	S3_URL="http://127.0.0.1:$S3_PORT"
	S3_VHOST_URL="http://s3.localhost:$S3_PORT"
	S3_ACCESS_KEY=S3RVER
	S3_SECRET_KEY=S3RVER
}

# s3_resume: start s3rver again on the data directory and port of the last
# s3_start (after s3_stop), so a client configured for S3_URL finds it again.
s3_resume() {
	local module=$TEST_SRCDIR/.cache/npm/node_modules/s3rver portfile
	portfile=$TEST_SCRATCH/s3-$S3_RUNS.port
	rm -f "$portfile"
	node --openssl-legacy-provider "$TEST_LIB_DIR/s3rver-run.js" --module "$module" --dir "$S3_DIR" --port "$S3_PORT" \
		--port-file "$portfile" --log "$S3_LOG" --parent-pid $$ --max-seconds 900 \
		</dev/null >/dev/null 2>>"$TEST_SCRATCH/s3-$S3_RUNS.err" &
	S3_PID=$!
	test_register_server s3 "$S3_PID"
	wait_for 30 test -s "$portfile" || {
		show_file s3rver.err "$TEST_SCRATCH/s3-$S3_RUNS.err"
		fail "s3_resume: s3rver did not start again on port $S3_PORT"
		return 1
	}
}

# s3_stop [PID]: stop s3rver (SIGTERM; SIGKILL after 5 s), also one a test
# left stopped (SIGSTOP). The data stays.
s3_stop() {
	local pid=${1:-${S3_PID:-}} i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	kill -CONT "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for ((i = ${#TEST_SERVERS[@]} - 1; i >= 0; i--)); do
		[ "${TEST_SERVERS[$i]}" != "s3 $pid" ] || unset 'TEST_SERVERS[i]'
	done
	TEST_SERVERS=("${TEST_SERVERS[@]}")
	return 0
}

# s3_count METHOD [ERE]: how many requests of METHOD (whose URL matches ERE)
# s3rver has answered so far, e.g. the parts uploaded:
#   s3_count PUT 'partNumber='
s3_count() {
	local method=$1 pattern=${2:-}
	awk -v m="$method" -v p="$pattern" '$1 == m && (p == "" || $2 ~ p) { n++ } END { print n + 0 }' "$S3_LOG"
}

# s3_wait_quiet: wait (up to 30 s) until S3_LOG has not grown for half a
# second: the requests of a client that was killed are logged only when the
# server notices it is gone, and must not be counted as the next run's.
s3_wait_quiet() {
	local before after i
	for ((i = 0; i < 60; i++)); do
		before=$(wc -l <"$S3_LOG")
		sleep 0.5
		after=$(wc -l <"$S3_LOG")
		[ "$before" != "$after" ] || return 0
	done
	fail "s3_wait_quiet: s3rver is still busy after 30 s"
}

# s3_object_file KEY: the file in which s3rver keeps an object of S3_BUCKET
# (to corrupt it behind the server's back).
s3_object_file() {
	printf '%s/%s/%s._S3rver_object' "$S3_DIR" "$S3_BUCKET" "$1"
}

# ---- Redis and the Qdrant stand-in (backup source tests, t61*) --------------

# redis_start [CONF_LINE...]: a throwaway redis-server (Debian's) on a free
# loopback port, in its own directory with its own config, RDB, pid file and
# log; daemonized, no save points, no AOF (CONF_LINEs are appended to the
# config, e.g. 'requirepass s3cret' or 'appendonly yes'). Registered for
# cleanup (and the watchdog). Sets REDIS_PORT REDIS_DIR REDIS_CONF REDIS_RDB
# REDIS_PID_FILE, and REDIS_START / REDIS_STOP: shell command lines for a
# [source] start / stop (stop returns before the server is gone, like
# `systemctl stop --no-block`).
REDIS_RUNS=0
redis_start() {
	local bin line
	bin=$(command -v redis-server || echo /usr/bin/redis-server)
	[ -x "$bin" ] || {
		fail "redis_start: no redis-server (scripts/deps.sh installs it)"
		return 1
	}
	REDIS_RUNS=$((REDIS_RUNS + 1))
	REDIS_DIR=$TEST_SCRATCH/redis-$REDIS_RUNS
	REDIS_CONF=$REDIS_DIR/redis.conf
	REDIS_RDB=$REDIS_DIR/dump.rdb
	REDIS_PID_FILE=$REDIS_DIR/redis.pid
	REDIS_PORT=$(free_port)
	mkdir -p "$REDIS_DIR" || fail "redis_start: mkdir $REDIS_DIR"
	{
		printf 'bind 127.0.0.1\nport %s\nprotected-mode yes\n' "$REDIS_PORT"
		printf 'dir %s\ndbfilename dump.rdb\n' "$REDIS_DIR"
		printf 'pidfile %s\nlogfile %s/redis.log\ndaemonize yes\n' "$REDIS_PID_FILE" "$REDIS_DIR"
		printf 'save ""\nappendonly no\n'
		for line in "$@"; do
			printf '%s\n' "$line"
		done
	} >"$REDIS_CONF"
	REDIS_START="$bin '$REDIS_CONF'"
	REDIS_STOP="kill \$(cat '$REDIS_PID_FILE')"
	test_register_server redis "$REDIS_DIR"
	"$bin" "$REDIS_CONF" >"$REDIS_DIR/start.out" 2>&1 || {
		show_file redis-server "$REDIS_DIR/start.out"
		fail "redis_start: redis-server did not start"
		return 1
	}
	wait_for 10 redis_up || {
		show_file redis.log "$REDIS_DIR/redis.log"
		fail "redis_start: no answer on 127.0.0.1:$REDIS_PORT"
		return 1
	}
}

# redis_up: the server of the last redis_start answers PING (and has loaded
# its data); one with requirepass answering NOAUTH counts.
redis_up() {
	case $(redis_cli PING 2>&1) in
	PONG | *NOAUTH*) return 0 ;;
	*) return 1 ;;
	esac
}

# redis_cli ARGS...: redis-cli against the last redis_start (REDISCLI_AUTH
# from the environment when set).
redis_cli() {
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

# redis_stop DIR: stop the redis-server of DIR (SIGTERM, SIGKILL after 5 s).
redis_stop() {
	local dir=${1:-$REDIS_DIR} pid i
	pid=$(head -n 1 "$dir/redis.pid" 2>/dev/null)
	if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	return 0
}

# qdrant_start [ARGS...]: tests/lib/qdrant-fake.py (Qdrant's snapshot API;
# no Qdrant server is installable here) with its data in ./qdrant-N; ARGS go
# to it (--api-key KEY, --pad BYTES). Sets QDRANT_PORT QDRANT_URL QDRANT_DATA
# QDRANT_PID, and QDRANT_KEY (the --api-key, which qdrant_api sends).
QDRANT_RUNS=0
qdrant_start() {
	local portfile arg prev=
	QDRANT_KEY=
	for arg in "$@"; do
		[ "$prev" != --api-key ] || QDRANT_KEY=$arg
		prev=$arg
	done
	QDRANT_RUNS=$((QDRANT_RUNS + 1))
	QDRANT_DATA=$TEST_SCRATCH/qdrant-$QDRANT_RUNS
	portfile=$QDRANT_DATA.port
	"$TEST_PYTHON" "$TEST_LIB_DIR/qdrant-fake.py" --port-file "$portfile" --data "$QDRANT_DATA" \
		--parent-pid $$ --max-seconds 900 "$@" </dev/null >/dev/null 2>"$QDRANT_DATA.err" &
	QDRANT_PID=$!
	test_register_server qdrant "$QDRANT_PID"
	wait_for 30 test -s "$portfile" || {
		show_file qdrant-fake.err "$QDRANT_DATA.err"
		fail "qdrant_start: the Qdrant stand-in did not start"
		return 1
	}
	QDRANT_PORT=$(cat "$portfile")
	QDRANT_URL="http://127.0.0.1:$QDRANT_PORT"
}

# qdrant_stop [PID]
qdrant_stop() {
	local pid=${1:-$QDRANT_PID}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	return 0
}

# qdrant_api METHOD PATH [JSON]: one request to the stand-in; the answer on stdout.
qdrant_api() {
	curl -fsS --max-time 10 -X "$1" -H 'Content-Type: application/json' -H "api-key: $QDRANT_KEY" \
		${3:+--data "$3"} "$QDRANT_URL$2"
}

# qdrant_fault OP STATUS [MODE]: make the next create|download|delete|upload
# requests answer STATUS (0 clears it); MODE corrupt: download one byte off.
qdrant_fault() {
	qdrant_api POST /__fault "{\"op\":\"$1\",\"status\":$2,\"mode\":\"${3:-}\"}" >/dev/null ||
		fail "qdrant_fault $*: the control request failed"
}

# qdrant_snapshots COLLECTION: how many snapshots the server keeps for it.
qdrant_snapshots() {
	local d=$QDRANT_DATA/snapshots/$1
	if [ -d "$d" ]; then
		find "$d" -name '*.snapshot' | wc -l
	else
		echo 0
	fi
}

# ---- opsctl --------------------------------------------------------------

# opsctl ARGS...: the binary under test (for use with expect_exit).
opsctl() {
	"$OPSCTL" "$@"
}

# ---- helpers for the migrate tests (t2*) -----------------------------------

# expect_sql SQL EXPECTED: pg_psql SQL prints exactly EXPECTED (rows joined by
# newlines, unaligned, '|' between columns).
expect_sql() {
	local got
	TEST_CHECKS=$((TEST_CHECKS + 1))
	got=$(pg_psql "$1" 2>&1)
	[ "$got" = "$2" ] && return 0
	fail "SQL: $1
    expected: $(printf '%s' "$2" | tr '\n' '/')
    got:      $(printf '%s' "$got" | tr '\n' '/')"
}

# expect_applied VERSIONS: schema_migrations holds exactly these versions, in
# the order they were applied ("001,002"; "" for none).
expect_applied() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	local got
	got=$(pg_psql "SELECT coalesce(string_agg(version, ',' ORDER BY id), '') FROM schema_migrations")
	[ "$got" = "$1" ] || fail "applied versions: expected '$1', got '$got'"
}

# ---- helpers for the backup/restore tests (t3*) ------------------------------

# pg_dbsql DB SQL: like pg_psql, in database DB.
pg_dbsql() {
	local psql="$TEST_PG_BINDIR/psql"
	[ -x "$psql" ] || psql=psql
	"$psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d "$1" -c "$2"
}

# expect_dbsql DB SQL EXPECTED: pg_dbsql DB SQL prints exactly EXPECTED.
expect_dbsql() {
	local got
	TEST_CHECKS=$((TEST_CHECKS + 1))
	got=$(pg_dbsql "$1" "$2" 2>&1)
	[ "$got" = "$3" ] && return 0
	fail "SQL in $1: $2
    expected: $(printf '%s' "$3" | tr '\n' '/')
    got:      $(printf '%s' "$got" | tr '\n' '/')"
}

# pg_db_url DB: a postgresql:// URL for DB over TCP, as postgres with the password.
pg_db_url() {
	printf 'postgresql://postgres:%s@127.0.0.1:%s/%s' "$TEST_PG_PASSWORD" "$TEST_PG_PORT" "$1"
}

# pg_db_fingerprint DB: one line per user table, "schema.table|rows|md5 of
# the rows", sorted: equal output means equal data.
pg_db_fingerprint() {
	pg_dbsql "$1" "SELECT n.nspname || '.' || c.relname || '|' ||
		(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname), false, true, '')))[1]::text || '|' ||
		(xpath('/row/h/text()', query_to_xml(format('SELECT md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '''')) AS h FROM ONLY %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
}

# expect_same_data DB1 DB2: the two databases hold the same tables and rows.
expect_same_data() {
	local a b
	TEST_CHECKS=$((TEST_CHECKS + 1))
	a=$(pg_db_fingerprint "$1" 2>&1)
	b=$(pg_db_fingerprint "$2" 2>&1)
	[ -n "$a" ] && [ "$a" = "$b" ] && return 0
	fail "databases $1 and $2 differ:
$(diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | sed 's/^/    /')"
}

# expect_databases PATTERN EXPECTED: the names in pg_database LIKE PATTERN,
# sorted and comma-joined, are EXPECTED.
expect_databases() {
	expect_sql "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_database WHERE datname LIKE '$1'" "$2"
}
