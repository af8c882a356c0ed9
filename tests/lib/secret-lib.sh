# shellcheck shell=bash
# Helpers for the rotate-secret tests (t5*): read an env file the way the app
# does (tests/lib/appenv.py), log in with its DB_* credentials, set passwords
# without the statement reaching the server log. No helper puts a value on a
# command line or in an environment: values travel through files and pipes.

appenv() {
	"$TEST_PYTHON" "$TEST_LIB_DIR/appenv.py" "$@"
}

# env_get FILE KEY: the value of KEY in FILE (the last assignment).
env_get() {
	appenv get "$1" "$2"
}

# env_fp FILE KEY: sha256:<12 hex> of KEY's value ("absent" when none).
env_fp() {
	appenv fingerprint "$1" "$2"
}

# value_fp VALUE: the fingerprint of a value held in a shell variable (through
# a pipe, never an argument).
value_fp() {
	printf '%s' "$1" | sha256sum | sed 's/^\(.\{12\}\).*/sha256:\1/'
}

# expect_env_rotated BEFORE AFTER KEY...: AFTER is BEFORE with only the
# assignments of the KEYs changed (every one of them; missing ones appended),
# byte for byte (appenv.py expect-rotated), and every KEY's value changed.
expect_env_rotated() {
	local before=$1 after=$2 key
	shift 2
	TEST_CHECKS=$((TEST_CHECKS + 1))
	appenv expect-rotated "$before" "$after" "$@" 2>"$TEST_SCRATCH/appenv.err" || {
		show_file appenv "$TEST_SCRATCH/appenv.err"
		fail "$after is not $before with only $* changed"
		return 1
	}
}

# expect_decoded_len FILE KEY ENCODING BYTES: KEY's value is ENCODING of BYTES bytes.
expect_decoded_len() {
	local got
	TEST_CHECKS=$((TEST_CHECKS + 1))
	got=$(appenv decoded-len "$1" "$2" "$3" 2>&1)
	[ "$got" = "$4" ] || fail "$2 in $1: expected $3 of $4 bytes, got: $got"
}

# expect_mode FILE MODE [OWNER]: stat's %a (and %u:%g).
expect_mode() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(stat -c %a "$1")" = "$2" ] || fail "$1: mode $(stat -c %a "$1"), expected $2"
	[ $# -lt 3 ] || [ "$(stat -c %u:%g "$1")" = "$3" ] ||
		fail "$1: owner $(stat -c %u:%g "$1"), expected $3"
}

# pg_login ENV_FILE [USER_KEY PASSWORD_KEY]: log in over TCP (scram) with the
# file's DB_* values and run SELECT 1; libpq's complaint in ./login.err.
pg_login() {
	local args=("$1")
	[ $# -lt 3 ] || args+=(--user-key "$2" --password-key "$3")
	appenv login "${args[@]}" 2>"$TEST_SCRATCH/login.err"
}

# expect_login ENV_FILE [WHAT]: the file's credentials log in.
expect_login() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	pg_login "$1" && return 0
	show_file login.err "$TEST_SCRATCH/login.err"
	fail "${2:-the credentials of $1} do not log in"
}

# expect_no_login ENV_FILE [WHAT]: the file's credentials are refused
# (password authentication failed, not some other error).
expect_no_login() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	if pg_login "$1"; then
		fail "${2:-the credentials of $1} still log in"
		return 1
	fi
	grep -q 'password authentication failed' "$TEST_SCRATCH/login.err" && return 0
	show_file login.err "$TEST_SCRATCH/login.err"
	fail "${2:-the credentials of $1}: refused for another reason than the password"
}

# pg_quiet_sql: SQL from stdin as postgres over the unix socket, with
# log_statement off for the session, so a password in it stays out of pg.log.
pg_quiet_sql() {
	local psql="$TEST_PG_BINDIR/psql"
	[ -x "$psql" ] || psql=psql
	{
		echo "SET log_statement = 'none';"
		cat
	} | "$psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d postgres -f -
}

# pg_set_password ROLE ENV_FILE [PASSWORD_KEY]: ALTER ROLE ROLE PASSWORD to the
# file's DB_PASSWORD (unlogged).
pg_set_password() {
	local pw
	pw=$(env_get "$2" "${3:-DB_PASSWORD}") || fail "pg_set_password: no ${3:-DB_PASSWORD} in $2"
	pg_quiet_sql <<-EOF >/dev/null || fail "pg_set_password: ALTER ROLE $1 failed"
	ALTER ROLE "$1" PASSWORD '${pw//\'/\'\'}';
	EOF
}

# random_pw: a password-like value (letters, digits, - and _).
random_pw() {
	head -c 18 /dev/urandom | base64 | tr '+/' '-_'
}

# history_last [FILE]: the last line of STATE/history.jsonl into FILE (./last.json).
history_last() {
	tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >"${1:-last.json}" 2>/dev/null ||
		fail "no history in $OPSCTL_STATE_DIR"
}

# expect_no_pending: no STATE/secrets/*.pending.json (nor a temporary one).
expect_no_pending() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	local left
	left=$(ls -A "$OPSCTL_STATE_DIR/secrets" 2>/dev/null | grep -E 'pending|\.tmp' | tr '\n' ' ')
	[ -z "$left" ] || fail "left in $OPSCTL_STATE_DIR/secrets: $left"
}

# shop_setup [ROLE]: PostgreSQL (pg_start; set TEST_PG_CONF_EXTRA before),
# a login role ROLE (default shop_app) with a random password that only
# ./app.env holds (DB_HOST=127.0.0.1 DB_PORT DB_NAME=shop DB_USER DB_PASSWORD,
# mode 600, set without reaching pg.log), the database shop owned by it with a
# table, ./rel a demo release reading app.env with "db": true, and DEMO_PORT.
# Sets SHOP_ROLE.
shop_setup() {
	SHOP_ROLE=${1:-shop_app}
	pg_start
	cat >app.env <<-EOF2
	# shop settings
	DB_HOST=127.0.0.1
	DB_PORT=$TEST_PG_PORT
	DB_NAME=shop
	DB_USER=$SHOP_ROLE
	DB_PASSWORD=$(random_pw)
	JWT_SECRET=not-rotated-here
	EOF2
	chmod 600 app.env
	pg_psql "CREATE ROLE $SHOP_ROLE LOGIN" >/dev/null || fail "CREATE ROLE $SHOP_ROLE"
	pg_set_password "$SHOP_ROLE" app.env
	pg_psql "CREATE DATABASE shop OWNER $SHOP_ROLE" >/dev/null || fail "CREATE DATABASE shop"
	pg_dbsql shop "SET ROLE $SHOP_ROLE; CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g" >/dev/null ||
		fail "CREATE TABLE items"
	DEMO_PORT=$(free_port)
	demo_release rel v1 "{\"env_file\": \"$TEST_SCRATCH/app.env\", \"db\": true}"
}

# demo_url [PATH]: the demo service of shop_setup.
demo_url() {
	printf 'http://127.0.0.1:%s%s' "$DEMO_PORT" "${1:-/}"
}

# demo_env_fp KEY: the fingerprint of KEY the running demo service read at start.
demo_env_fp() {
	curl -fsS --max-time 5 "$(demo_url /)" |
		"$TEST_PYTHON" -c 'import json, sys; print(json.load(sys.stdin).get("env", {}).get(sys.argv[1], "absent"))' "$1"
}

# expect_demo_healthy: the demo service answers 200 with its db component UP
# (a fresh login with the credentials it started with).
expect_demo_healthy() {
	expect_http "$(demo_url /actuator/health)" 200 '"db": \{"status": "UP"\}'
}

# expect_demo_env ENV_FILE KEY...: the demo service runs with ENV_FILE's KEYs.
expect_demo_env() {
	local file=$1 key
	shift
	for key in "$@"; do
		TEST_CHECKS=$((TEST_CHECKS + 1))
		[ "$(demo_env_fp "$key")" = "$(env_fp "$file" "$key")" ] ||
			fail "the demo service does not run with the $key of $file (not restarted?)"
	done
}

# role_count SQL-LIKE-LIST: how many of the roles exist, e.g. role_count "'a','b'".
role_count() {
	pg_psql "SELECT count(*) FROM pg_roles WHERE rolname IN ($1)"
}

# shop_config WAIT: the config the postgres rotation tests share, up to
# their [secret] sections (printed on stdout): the database as postgres, the
# demo service restarted by [service] restart and gated through its
# /actuator/health (which logs in with the env file's credentials), with
# [health] wait = WAIT.
shop_config() {
	cat <<EOF
[app]
name = shop
env_file = app.env

[database]
url = $(pg_db_url postgres)
connect_timeout = 3s

[service]
restart = $DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/rel
timeout = 20s

[health]
wait = $1
interval = 100ms
consecutive = 1
timeout = 2s

[check "api"]
url = $(demo_url /actuator/health)
require = db

EOF
}
