#!/usr/bin/env bash
# deploy with a real PostgreSQL: the backup engine first (its id in the
# history and deploy list), the release's own migrations applied before the
# switch; a failing migration (exit 1, no switch, the database as before,
# also the migrations of the same deploy before it); the database
# unreachable (exit 4, nothing unpacked); SIGKILL in the migrate step (the
# next run undoes the migrations and the release); rollback --with-schema
# (undoes what the release being left applied; refused naming the down
# file when one is missing; confirmation); SIGINT in a slow migration (the
# statement cancelled on the server, the deploy undone, exit 10).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/deploy-lib.sh"
require_opsctl
pg_start
pg_psql "CREATE DATABASE app" >/dev/null
DEPLOY_BACKUP=yes
DEPLOY_MIGRATE=yes
deploy_setup
cat >>opsctl.conf <<EOF
[database]
url = $(pg_db_url app)
connect_timeout = 3s
[backup]
dir = backups
pg_dump = $TEST_PG_BINDIR/pg_dump
EOF
tables() {
	expect_dbsql app "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'" "$1"
}
applied() {
	expect_dbsql app "SELECT coalesce(string_agg(version, ',' ORDER BY id), '') FROM schema_migrations" "$1"
}
# migration NAME N SQL DOWN-SQL
migration() {
	mkdir -p "src-$1/migrations/rollback"
	printf '%s\n' "$3" >"src-$1/migrations/$2.sql"
	[ -z "$4" ] || printf '%s\n' "$4" >"src-$1/migrations/rollback/$2.down.sql"
}
pack() {
	echo "$1" >"src-$1/version"
	tar -C "src-$1" -czf "$1.tar.gz" .
}

migration v1 001_users "CREATE TABLE users (id int);" "DROP TABLE users;"
pack v1
expect_exit 0 opsctl --output json deploy v1.tar.gz
expect_json out 'd["exit"] == 0 and d["backup"].startswith("demo-") and [m["version"] for m in d["migrations"]] == ["001"]'
id1=$(python3 -c 'import json; print(json.load(open("out"))["release"])')
backup1=$(python3 -c 'import json; print(json.load(open("out"))["backup"])')
[ -f "backups/$backup1/manifest.json" ] || fail "no backup set '$backup1'"
tables users
applied 001

# ---- a failing migration: no switch, the database as before -----------------------
rm -rf src-v2 && cp -r src-v1 src-v2
migration v2 002_orders "CREATE TABLE orders (id int);" "DROP TABLE orders;"
migration v2 003_broken "CREATE TABLE broken (id int); SELECT * FROM no_such_table;" "DROP TABLE broken;"
pack v2
: >restarts.log
expect_exit 1 opsctl deploy v2.tar.gz
expect_grep '003_broken\.sql.*no_such_table' err
expect_grep 'undid the 1 migration applied before the failure' err
expect_current "$id1" v1
[ ! -s restarts.log ] || fail "a failed migration restarted the service"
tables users
applied 001
[ "$(ls app/releases)" = "$id1" ] || fail "the release of a failed migration stayed: $(ls app/releases)"

# ---- the database unreachable: exit 4, nothing unpacked --------------------------------
sed -i "s#^url = postgresql.*#url = postgresql://postgres@127.0.0.1:1/app#" opsctl.conf
expect_exit 4 opsctl deploy v2.tar.gz
expect_grep "cannot connect to" err
[ "$(ls app/releases)" = "$id1" ] || fail "an unreachable database still unpacked: $(ls app/releases)"
# --no-backup --no-migrate do not need it
rm -rf src-v2b && cp -r src-v1 src-v2b && pack v2b
expect_exit 0 opsctl deploy --no-backup --no-migrate v2b.tar.gz
expect_exit 0 opsctl rollback "$id1"
sed -i "s#^url = postgresql.*#url = $(pg_db_url app)#" opsctl.conf

# ---- SIGKILL after the migrate step, before the switch: the next run undoes it -------
rm -f src-v2/migrations/003_broken.sql src-v2/migrations/rollback/003_broken.down.sql
pack v2
cp opsctl.conf opsctl.conf.orig
printf '[deploy]\nbefore_switch = true\n' >>opsctl.conf
expect_exit 137 env OPSCTL_TEST_KILL_AT=before_switch "$OPSCTL" deploy v2.tar.gz
killed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["release"])' "$OPSCTL_STATE_DIR/deploy/journal.json")
[ -d "app/releases/$killed" ] || fail "the killed deploy had not unpacked"
tables orders,users
applied 001,002
expect_exit 0 opsctl deploy status
expect_grep "interrupted at step 'before_switch'" err
expect_grep "undid 1 migration of the interrupted deploy" err
tables users
applied 001
expect_current "$id1" v1
[ ! -e "app/releases/$killed" ] || fail "the interrupted release stayed"
cp opsctl.conf.orig opsctl.conf
# killed at the switch: rolled back like a failed gate, the schema stays
expect_exit 137 env OPSCTL_TEST_KILL_AT=switch "$OPSCTL" deploy v2.tar.gz
expect_exit 0 opsctl deploy status
expect_grep "interrupted at step 'switch'" err
tables orders,users
applied 001,002
expect_current "$id1" v1
expect_exit 0 opsctl --yes rollback --schema 1 --dir src-v2/migrations
applied 001

# ---- rollback --with-schema -------------------------------------------------------------
expect_exit 0 opsctl deploy v2.tar.gz
id2=$(cat out)
tables orders,users
applied 001,002
expect_exit 0 opsctl --output json deploy list
expect_json out '[e for e in d["deploys"] if e["release"] == "'"$id2"'" and e["exit"] == 0][0]["migrations"][0]["version"] == "002"'
# confirmation needed without a terminal
expect_exit 10 opsctl rollback --with-schema
expect_grep "needs confirmation; nothing was changed" err
expect_current "$id2" v2
# a missing down file: refused, naming it, nothing changed
mv "app/releases/$id2/migrations/rollback/002_orders.down.sql" away.sql
expect_exit 3 opsctl --yes rollback --with-schema
expect_grep "refusing to roll back with --with-schema: .*002_orders\.down\.sql" err
expect_current "$id2" v2
tables orders,users
mv away.sql "app/releases/$id2/migrations/rollback/002_orders.down.sql"
expect_exit 0 opsctl -n rollback --with-schema
expect_grep '^would undo migration 002$' out
expect_exit 0 opsctl --yes rollback --with-schema
expect_current "$id1" v1
tables users
applied 001
# the migrations' own form still works beside it
expect_exit 0 opsctl --yes rollback --schema 0 --dir "app/releases/$id1/migrations"
tables ""

# ---- SIGINT during a slow migration: cancelled on the server, undone, exit 10 ----
# Without the cancel the deploy would wait out the statement (60 s) before
# undoing anything.
rm -rf src-v3 && cp -r src-v1 src-v3
migration v3 002_slow "CREATE TABLE slow (id int); SELECT pg_sleep(60);" "DROP TABLE slow;"
pack v3
deploy_sleeping() {
	[ "$(pg_dbsql app "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opsctl deploy' AND query LIKE '%pg_sleep%' AND state = 'active'")" != 0 ]
}
"$OPSCTL" deploy v3.tar.gz >int.out 2>int.err </dev/null &
dpid=$!
wait_for 60 deploy_sleeping || { show_file int.err int.err; fail "the deploy never reached its slow migration"; }
sig_at=$(now_ms)
kill -INT "$dpid"
code=0
wait "$dpid" || code=$?
took=$(($(now_ms) - sig_at))
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$code" = 10 ] || { show_file int.err int.err; fail "SIGINT mid-migration: expected exit 10, got $code"; }
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$took" -lt 10000 ] || fail "the deploy took $took ms after SIGINT: the statement was not cancelled"
expect_no_grep 'AddressSanitizer|runtime error:' int.err
expect_grep '002_slow\.sql:1: interrupted by signal 2; the statement was cancelled' int.err
expect_grep 'undid the 1 migration applied before the failure' int.err
expect_current "$id1" v1
tables ""
applied ""
[ "$(pg_dbsql app "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opsctl deploy'")" = 0 ] ||
	fail "a session of the interrupted deploy is still there"

test_done
