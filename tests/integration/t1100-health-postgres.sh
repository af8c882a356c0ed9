#!/usr/bin/env bash
# health against a real PostgreSQL: every way of naming the database
# (DESIGN.md section 3), unreachable vs failed, connection thresholds, and
# --wait as CI's "wait for the database" step.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
# "15.20", without the distribution's "(Debian ...)" suffix.
server_version=$(pg_psql "SELECT split_part(current_setting('server_version'), ' ', 1)") ||
	fail "cannot read server_version"
version_re=${server_version//./\\.}
pw=$TEST_PG_PASSWORD
closed=$(free_port)

# No secret in anything opsctl prints.
no_secret() {
	expect_no_grep "$pw" out err
}

# --db with DATABASE_URL.
expect_exit 0 env DATABASE_URL="$TEST_PG_URL" "$OPSCTL" health --db
expect_grep ' postgres +pass( |$)' out
expect_grep "$version_re" out
no_secret
expect_exit 0 env DATABASE_URL="$TEST_PG_URL" "$OPSCTL" --output json health --db
expect_json out 'd["status"] == "pass" and len(d["checks"]) == 1'
expect_json out 'list(d["checks"].values())[0][0]["componentType"] == "postgres"'
# The result shows the server version and the connections in use.
expect_json out '"'"$server_version"'" in __import__("json").dumps(list(d["checks"].values())[0])'
expect_json out '"connection" in __import__("json").dumps(list(d["checks"].values())[0])'
no_secret

# Global --db URL (first in the lookup order, beats DATABASE_URL).
expect_exit 0 env DATABASE_URL="postgresql://postgres:wrong@127.0.0.1:$closed/postgres" \
	"$OPSCTL" --db "$TEST_PG_URL" health --db
no_secret

# [database] url, and [check] type = postgres using it.
cat >db.conf <<CONF
[database]
url = $TEST_PG_URL

[check "db"]
type = postgres
CONF
expect_exit 0 opsctl -c db.conf health --db
expect_exit 0 opsctl -c db.conf health db
expect_grep '^db +postgres +pass( |$)' out
no_secret
expect_exit 0 opsctl -c db.conf --output json health db
expect_json out 'd["checks"]["db:postgres"][0]["state"] == "pass"'
expect_json out 'd["checks"]["db:postgres"][0]["observedUnit"] == "ms"'
expect_json out '"'"$server_version"'" in __import__("json").dumps(d["checks"]["db:postgres"][0])'
expect_json out '"connection" in d["checks"]["db:postgres"][0]["output"]'
no_secret

# [check] with its own url.
cat >own.conf <<CONF
[check "db"]
type = postgres
url = $TEST_PG_URL
CONF
expect_exit 0 opsctl -c own.conf health db

# A postgresql:// or postgres:// target.
expect_exit 0 opsctl health "$TEST_PG_URL"
expect_exit 0 opsctl health "postgres://postgres:$pw@127.0.0.1:$TEST_PG_PORT/postgres"

# libpq's PG* variables.
expect_exit 0 env PGHOST=127.0.0.1 PGPORT="$TEST_PG_PORT" PGUSER=postgres PGPASSWORD="$pw" \
	PGDATABASE=postgres "$OPSCTL" health --db
no_secret

# The seeds' DB_* variables, from the environment and from the env file.
expect_exit 0 env DB_HOST=127.0.0.1 DB_PORT="$TEST_PG_PORT" DB_NAME=postgres DB_USER=postgres \
	DB_PASSWORD="$pw" "$OPSCTL" health --db
no_secret
printf 'DB_HOST=127.0.0.1\nDB_PORT=%s\nDB_NAME=postgres\nDB_USER=postgres\nDB_PASSWORD=%s\n' \
	"$TEST_PG_PORT" "$pw" >app.env
chmod 600 app.env
expect_exit 0 opsctl --env-file app.env health --db
no_secret

# Unreachable: nothing on the port -> 4, quickly.
expect_exit 4 opsctl --db "postgresql://postgres:$pw@127.0.0.1:$closed/postgres" health --db --timeout 3s
expect_faster 5000
expect_grep 'unreachable' out
no_secret

# Wrong password: the server answered and refused -> fail (1), not unreachable.
expect_exit 1 opsctl --db "postgresql://postgres:not-the-password@127.0.0.1:$TEST_PG_PORT/postgres" health --db
expect_grep ' fail( |$)' out
expect_grep 'password|auth' out err
expect_no_grep 'not-the-password' out err
# No such database: also a fail.
expect_exit 1 opsctl --db "postgresql://postgres:$pw@127.0.0.1:$TEST_PG_PORT/nosuchdb" health --db
expect_grep 'nosuchdb' out err

# Connection thresholds (max_connections = 40 in the harness).
cat >conn.conf <<CONF
[check "db-warn"]
type = postgres
url = $TEST_PG_URL
warn_connections = 1%
crit_connections = 100%

[check "db-crit"]
type = postgres
url = $TEST_PG_URL
warn_connections = 1%
crit_connections = 2%
CONF
expect_exit 6 opsctl -c conn.conf health db-warn
expect_grep '^db-warn +postgres +warn( |$)' out
expect_exit 1 opsctl -c conn.conf health db-crit
expect_grep '^db-crit +postgres +fail( |$)' out

# Both together: the worst decides.
expect_exit 1 opsctl -c conn.conf health db-warn db-crit

# --wait: the database comes up 2 s after opsctl starts waiting.
pg_stop
expect_exit 4 opsctl --db "$TEST_PG_URL" health --db --timeout 2s
(sleep 2 && pg_resume) >/dev/null 2>&1 &
starter=$!
expect_exit 0 opsctl --db "$TEST_PG_URL" health --db --wait 60s --interval 200ms --timeout 2s
expect_slower 1500
wait "$starter" || fail "the cluster did not start again"
TEST_SERVERS+=("pg $TEST_PG_DATA")
no_secret

test_done
