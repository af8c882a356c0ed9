#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Resource faults (issue 8): PostgreSQL restarts (`pg_ctl restart -m fast`)
# while a command is in the middle of its work. Each time: a clear error and
# the documented exit code, nothing half-applied, and the next run succeeds:
#   migrate        in a migration (pg_sleep): exit 4 ("lost the database
#                  connection", FILE:LINE), schema_migrations and the schema as
#                  before that migration; a no-transaction file resumes at the
#                  statement that was cut
#   backup         pg_dump waiting for a lock: exit 1, no set listed, no
#                  .tmp-* left, the older set intact
#   restore        while the data loads: exit 1, the live database untouched,
#                  no half-built database left (dropped over a new connection)
#   deploy         in the release's migration: exit 4, nothing switched (the
#                  hint says which release is still current), the database as before
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/fault-lib.sh"
require_opsctl
pg_start
pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
PSQL=$TEST_PG_BINDIR/psql
hf=$OPSCTL_STATE_DIR/history.jsonl

# pg_restart_fast: what the issue names; waits until the server is up again
pg_restart_fast() {
	pg_as_owner "$TEST_PG_BINDIR/pg_ctl" -D "$TEST_PG_DATA" -l "$TEST_SCRATCH/pg.log" -m fast -w -t 60 \
		restart >"$TEST_SCRATCH/pg_ctl.out" 2>&1 || {
		show_file pg_ctl "$TEST_SCRATCH/pg_ctl.out"
		fail "pg_ctl restart -m fast failed"
	}
}
# busy SQL-CONDITION: some backend of pg_stat_activity matches (other than ours)
busy() {
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND ($1)" 2>/dev/null)" -gt 0 ] 2>/dev/null
}
# run_bg NAME CMD...: CMD in the background, stdout/stderr in NAME.out/NAME.err
run_bg() {
	local name=$1
	shift
	BG_START=$(now_ms)
	"$@" >"$name.out" 2>"$name.err" </dev/null &
	BG_PID=$!
}
# wait_bg NAME WANT: the background run ends with WANT (LAST_ELAPSED_MS set);
# its output becomes ./out and ./err
wait_bg() {
	local code=0
	wait "$BG_PID" || code=$?
	LAST_ELAPSED_MS=$(($(now_ms) - BG_START))
	LAST_EXIT=$code
	cp "$1.out" out
	cp "$1.err" err
	TEST_CHECKS=$((TEST_CHECKS + 1))
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' err; then
		show_file stderr err
		fail "sanitizer report from $1"
	fi
	[ "$code" = "$2" ] && return 0
	show_file stdout out
	show_file stderr err
	fail "$1: expected exit $2, got $code (${LAST_ELAPSED_MS} ms)"
}

# ---- migrate -------------------------------------------------------------------------------
say "migrate: the server restarts in the middle of a migration"
url=$(pg_db_url shop)
mkdir -p migrations/rollback
printf 'CREATE TABLE a (id int);\n' >migrations/001_a.sql
# pg_sleep only while the test wants it (a database setting): the file never changes
cat >migrations/002_slow.sql <<'EOF'
CREATE TABLE b (id int);
INSERT INTO b VALUES (1);
SELECT pg_sleep(coalesce(nullif(current_setting('opsctl_test.sleep', true), ''), '0')::float);
INSERT INTO b VALUES (2);
EOF
printf 'CREATE TABLE c (id int);\n' >migrations/003_c.sql
cat >migrate.conf <<CONF
[database]
url = $url
connect_timeout = 5s
[migrations]
dir = migrations
CONF
om() { "$OPSCTL" -c "$TEST_SCRATCH/migrate.conf" "$@"; }
in_sleep="query LIKE '%pg_sleep%' AND application_name LIKE 'opsctl%'"
pg_psql "ALTER DATABASE shop SET opsctl_test.sleep = '30'" >/dev/null
run_bg m1 om migrate
wait_for 30 busy "$in_sleep" || fail "migration 002 never got to its pg_sleep"
pg_restart_fast
# exit 4: the database went away (DESIGN.md 4), the error names FILE:LINE
wait_bg m1 4
expect_between 0 20000 "migrate cut by a restart"
expect_grep "^opsctl: error: .*/migrations/002_slow\.sql:3: lost the database connection: server closed the connection unexpectedly" err
expect_no_grep "$TEST_PG_PASSWORD" out err
expect_dbsql shop "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001"
expect_dbsql shop "SELECT count(*) FROM pg_tables WHERE tablename IN ('b', 'c')" "0"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "migrate up" and d["outcome"] == "unreachable" and d["exit"] == 4 and [m["version"] for m in d["migrations"]] == ["001"]'
expect_exit 9 om migrate status --exit-code
expect_exit 0 om migrate validate
say "migrate: the next run applies 002 and 003"
pg_psql "ALTER DATABASE shop SET opsctl_test.sleep = '0'" >/dev/null
expect_exit 0 om migrate
expect_dbsql shop "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001,002,003"
expect_dbsql shop "SELECT string_agg(id::text, ',' ORDER BY id) FROM b" "1,2"

say "migrate: the restart cuts a no-transaction migration between its statements"
cat >migrations/004_nt.sql <<'EOF'
-- opsctl:no-transaction
CREATE TABLE d (id int);
SELECT pg_sleep(coalesce(nullif(current_setting('opsctl_test.sleep', true), ''), '0')::float);
CREATE INDEX CONCURRENTLY d_id ON d (id);
EOF
pg_psql "ALTER DATABASE shop SET opsctl_test.sleep = '30'" >/dev/null
run_bg m4 om migrate
wait_for 30 busy "$in_sleep" || fail "migration 004 never got to its pg_sleep"
pg_restart_fast
wait_bg m4 4
expect_grep "^opsctl: error: .*/migrations/004_nt\.sql:3: lost the database connection" err
expect_grep "^hint: statement 2 of 3 failed; statement 1 ran and is committed \(no transaction\).*resumes at statement 2" err
expect_dbsql shop "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001,002,003"
expect_dbsql shop "SELECT count(*) FROM pg_tables WHERE tablename = 'd'" "1"
pg_psql "ALTER DATABASE shop SET opsctl_test.sleep = '0'" >/dev/null
say "migrate: with the server up again, the next run resumes 004 where it was cut"
expect_exit 0 om migrate
expect_dbsql shop "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001,002,003,004"
expect_dbsql shop "SELECT count(*) FROM pg_indexes WHERE indexname = 'd_id'" "1"
expect_exit 0 om migrate validate

# ---- backup ----------------------------------------------------------------------------------
say "backup: the server restarts while pg_dump waits for a table"
pg_dbsql shop "CREATE TABLE items (id int PRIMARY KEY, name text);
	INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;" >/dev/null || fail "seeding items"
cat >backup.conf <<CONF
[app]
name = shop
[database]
url = $url
connect_timeout = 5s
[backup]
dir = backups
keep_last = 5
metrics_file = backup.prom
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/backup.conf" "$@"; }
expect_exit 0 ob backup
old=$(ls backups)
old_sums=$(cd backups && find . -type f ! -name verified.json -print0 | sort -z | xargs -0 sha256sum)
sleep 1
"$PSQL" -X -q -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -d shop \
	-c "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;" >locker.out 2>&1 &
locker=$!
wait_for 20 busy "query LIKE '%LOCK TABLE items%'" || fail "the locking session never started"
run_bg b1 ob backup
wait_for 30 busy "wait_event_type = 'Lock' AND datname = 'shop'" || fail "the backup never waited for the lock"
pg_restart_fast
wait "$locker" 2>/dev/null
wait_bg b1 1
expect_between 0 30000 "backup cut by a restart"
expect_grep "^opsctl: error: .*(pg_dump|terminat|connection)" err
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$(ls -A backups)" = "$old" ] || fail "backup cut by a restart: backups/ holds $(ls -A backups | tr '\n' ' ')"
[ "$(cd backups && find . -type f ! -name verified.json -print0 | sort -z | xargs -0 sha256sum)" = "$old_sums" ] ||
	fail "backup cut by a restart: the older set changed"
expect_exit 0 ob backup list
[ "$(grep -c '^shop-' out)" -eq 1 ] || fail "backup list shows $(grep -c '^shop-' out) sets"
expect_grep '^opsctl_backup_success\{app="shop"\} 0$' backup.prom
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "backup create" and d["outcome"] == "failed" and d["exit"] == 1'
say "backup: the next run works"
expect_exit 0 ob backup
new=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
expect_exit 0 ob backup verify "$new"

# ---- restore ----------------------------------------------------------------------------------
say "restore: the server restarts while the data loads"
pg_dbsql shop "CREATE TABLE big (id int PRIMARY KEY, a text);
	INSERT INTO big SELECT g, md5(g::text) || md5((g + 1)::text) || repeat('x', 200) FROM generate_series(1, 400000) g;" >/dev/null ||
	fail "seeding big"
sleep 1
expect_exit 0 ob backup
rid=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
backup_fp=$(pg_db_fingerprint shop)
pg_dbsql shop "UPDATE items SET name = 'live' WHERE id <= 10" >/dev/null
live_fp=$(pg_db_fingerprint shop)
oid_before=$(pg_psql "SELECT oid FROM pg_database WHERE datname = 'shop'")
dbs() { pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"; }
dbs_before=$(dbs)
run_bg r1 ob --yes restore "$rid"
wait_for 60 busy "query LIKE 'COPY %' AND datname <> 'shop'" || fail "the restore never started loading"
pg_restart_fast
wait_bg r1 1
expect_between 0 60000 "restore cut by a restart"
expect_grep "^opsctl: error: " err
expect_grep "terminat|server closed the connection|connection|pg_restore" err
TEST_CHECKS=$((TEST_CHECKS + 3))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "restore cut by a restart: the live database changed"
[ "$(pg_psql "SELECT oid FROM pg_database WHERE datname = 'shop'")" = "$oid_before" ] ||
	fail "restore cut by a restart: 'shop' is another database now"
[ "$(dbs)" = "$dbs_before" ] || fail "restore cut by a restart: databases are $(dbs), were $dbs_before (a half-built one left?)"
[ -z "$(ls -A backups | grep '^\.')" ] || fail "restore cut by a restart: left in backups/: $(ls -A backups | tr '\n' ' ')"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "restore" and d["outcome"] == "failed" and d["exit"] == 1'
say "restore: the next run works"
expect_exit 0 ob --yes restore "$rid"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the restore after the cut one restored other data"
for d in $(pg_psql "SELECT datname FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'"); do
	pg_psql "DROP DATABASE $d" >/dev/null
done
pg_psql "ALTER DATABASE shop SET opsctl_test.sleep = '0'" >/dev/null

# ---- deploy ----------------------------------------------------------------------------------
say "deploy: the server restarts in the release's migration"
httpd_start
httpd_control path=/health status=200 'body={"status":"UP"}'
pg_psql "CREATE DATABASE app" >/dev/null || fail "CREATE DATABASE app"
cat >restart.sh <<'SH'
#!/bin/sh
echo "$OPSCTL_RELEASE" >>"$(dirname "$0")/restarts.log"
SH
chmod +x restart.sh
cat >deploy.conf <<CONF
[app]
name = demo
[deploy]
root = $TEST_SCRATCH/app
backup = no
migrate = yes
min_free = 0
[database]
url = $(pg_db_url app)
connect_timeout = 5s
[service]
restart = $TEST_SCRATCH/restart.sh
[health]
wait = 5s
interval = 100ms
consecutive = 1
timeout = 2s
[check "api"]
url = $HTTPD_URL/health
CONF
od() { "$OPSCTL" -c "$TEST_SCRATCH/deploy.conf" "$@"; }
mkrel() { # NAME FILE SQL...
	local name=$1 file=$2
	shift 2
	mkdir -p "src-$name/migrations"
	echo "$name" >"src-$name/version"
	[ -z "$file" ] || printf '%s\n' "$@" >"src-$name/migrations/$file"
	tar -C "src-$name" -czf "$name.tar.gz" .
}
mkrel v1 001_users.sql "CREATE TABLE users (id int);"
expect_exit 0 od deploy v1.tar.gz
id1=$(cat out)
cp -r "src-v1" src-v2
rm -f v2.tar.gz
mkrel v2 002_slow.sql "CREATE TABLE orders (id int);" \
	"SELECT pg_sleep(coalesce(nullif(current_setting('opsctl_test.sleep', true), ''), '0')::float);"
pg_psql "ALTER DATABASE app SET opsctl_test.sleep = '30'" >/dev/null
: >restarts.log
run_bg d1 od deploy v2.tar.gz
wait_for 30 busy "query LIKE '%pg_sleep%' AND datname = 'app'" || fail "the release's migration never got to its pg_sleep"
pg_restart_fast
wait_bg d1 4
expect_between 0 20000 "deploy cut by a restart"
expect_grep "^opsctl: error: .*/migrations/002_slow\.sql:2: lost the database connection" err
expect_grep "^hint: nothing was switched: '$id1' is still the current release" err
TEST_CHECKS=$((TEST_CHECKS + 3))
[ "$(readlink app/current)" = "releases/$id1" ] || fail "deploy cut by a restart: current -> $(readlink app/current)"
[ "$(ls app/releases)" = "$id1" ] || fail "deploy cut by a restart: releases/ holds $(ls -A app/releases | tr '\n' ' ')"
[ ! -s restarts.log ] || fail "deploy cut by a restart: the service was restarted"
expect_dbsql app "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001"
expect_dbsql app "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'" "0"
[ ! -e "$OPSCTL_STATE_DIR/deploy/journal.json" ] || fail "deploy cut by a restart: a journal was left"
say "deploy: the next run works"
pg_psql "ALTER DATABASE app SET opsctl_test.sleep = '0'" >/dev/null
expect_exit 0 od deploy v2.tar.gz
id2=$(cat out)
[ "$(readlink app/current)" = "releases/$id2" ] || fail "the deploy after the cut one: current -> $(readlink app/current)"
expect_dbsql app "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001,002"


# ---- rotate-secret postgres-password ---------------------------------------------------------
say "rotate-secret: the server restarts after ALTER ROLE, and the service restart fails: all undone"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
pg_psql "CREATE ROLE shop_app LOGIN" >/dev/null || fail "CREATE ROLE shop_app"
cat >app.env <<EOF
DB_HOST=127.0.0.1
DB_PORT=$TEST_PG_PORT
DB_NAME=shop
DB_USER=shop_app
DB_PASSWORD=$(random_pw)
EOF
chmod 600 app.env
pg_set_password shop_app app.env
cp -p app.env before.env
# the service restart: the database restarts under opsctl, then the service fails to start
cat >svc-restart.sh <<SH
#!/bin/sh
$(declare -f pg_as_owner)
pg_as_owner "$TEST_PG_BINDIR/pg_ctl" -D "$TEST_PG_DATA" -l "$TEST_SCRATCH/pg.log" -m fast -w -t 60 restart >/dev/null 2>&1
echo "the app cannot start" >&2
exit 3
SH
chmod +x svc-restart.sh
cat >rotate.conf <<CONF
[app]
name = shop
env_file = $TEST_SCRATCH/app.env
[database]
url = $(pg_db_url postgres)
connect_timeout = 5s
[service]
restart = $TEST_SCRATCH/svc-restart.sh
timeout = 60s
[secret "db"]
env = DB_PASSWORD
kind = postgres-password
role = shop_app
CONF
orot() { "$OPSCTL" -c "$TEST_SCRATCH/rotate.conf" "$@"; }
expect_exit 1 orot rotate-secret db
expect_grep "the app cannot start" err
expect_file_same before.env app.env
expect_login app.env "after the undone rotation: the old password"
expect_no_pending
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "rotate-secret" and d["outcome"] == "failed" and d["exit"] == 1'
say "rotate-secret: with a service that starts, the next rotation works"
sed -i "s|^restart = .*|restart = true|" rotate.conf
expect_exit 0 orot rotate-secret db
expect_login app.env "the rotated password"
expect_no_login before.env "the password before the rotation"

test_done
