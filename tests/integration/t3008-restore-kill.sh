#!/usr/bin/env bash
# restore killed with SIGKILL (issue 8, found by tests/crash/scenarios/restore.sh):
# - between the two renames of the swap (OPSCTL_TEST_KILL_AT=restore-swap):
#   the renames are one transaction, so the live database keeps its name and
#   its data (before the fix: no database 'shop' at all, the old one renamed
#   to shop_pre_restore_TS and the new one still shop_restore_TS);
# - right after CREATE DATABASE (OPSCTL_TEST_KILL_AT=restore-created), and
#   while pg_restore loads (a stalled wrapper): the live database untouched;
# the new database such a kill leaves behind carries a mark (CONNECTION LIMIT
# 999999 from its CREATE DATABASE on, and a comment), and the next restore
# drops it (before the fix: it stayed forever, and a rerun in the
# same second failed with exit 2 "database 'shop_restore_TS' already
# exists"); a database of a similar name without the marker is left alone.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 2000) g;
	CREATE TABLE orders (id int PRIMARY KEY, item_id int REFERENCES items);
	INSERT INTO orders SELECT g, 1 + g % 2000 FROM generate_series(1, 1000) g;" >/dev/null || fail "seeding shop"

# pg_restore that stalls (before loading anything into the new database)
# while $TEST_SCRATCH/stall exists
cat >slow_pg_restore <<WRAPPER
#!/bin/bash
if [ -e "$TEST_SCRATCH/stall" ] && [[ " \$* " = *" --dbname"* || " \$* " = *" -d "* ]]; then
	touch "$TEST_SCRATCH/stalled"
	sleep 60
fi
exec "$TEST_PG_BINDIR/pg_restore" "\$@"
WRAPPER
chmod +x slow_pg_restore
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url shop)

[backup]
dir = backups
pg_restore = $TEST_SCRATCH/slow_pg_restore
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
dbs() { pg_psql "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_database WHERE datname LIKE 'shop%'"; }
# settled: no other client session is left (the killed run's open
# transaction, if any, rolled back)
settled() {
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")" = 0 ]
}

expect_exit 0 ob backup
id=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
backup_fp=$(pg_db_fingerprint shop)
pg_dbsql shop "INSERT INTO items (name) VALUES ('after the backup'); DELETE FROM orders WHERE id > 500;" >/dev/null
live_fp=$(pg_db_fingerprint shop)
[ "$live_fp" != "$backup_fp" ] || fail "the change did not change the fingerprint"

# ---- SIGKILL between the two renames ------------------------------------------------
OPSCTL_TEST_KILL_AT=restore-swap expect_exit 137 ob --yes restore "$id"
wait_for 30 settled || fail "the killed restore's sessions did not go away"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop 2>&1)" = "$live_fp" ] ||
	fail "after a kill in the swap, 'shop' does not hold the live data; databases: $(dbs)"
expect_sql "SELECT coalesce(string_agg(regexp_replace(datname, '[0-9]{14}', 'TS'), ','), '') FROM pg_database WHERE datname LIKE 'shop\_%'" "shop_restore_TS"
expect_sql "SELECT shobj_description(oid, 'pg_database') LIKE 'opsctl: restore in progress%', datconnlimit FROM pg_database WHERE datname LIKE 'shop\_restore\_%'" "t|999999"
# a look-alike without the marker is not ours
pg_psql "CREATE DATABASE shop_restore_manual" >/dev/null || fail "CREATE DATABASE shop_restore_manual"

# the next restore drops what the killed one left, and swaps
expect_exit 0 ob --yes restore "$id"
expect_grep "^restored $id into shop" out
expect_sql "SELECT string_agg(regexp_replace(datname, '[0-9]{14}', 'TS'), ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'shop%'" \
	"shop,shop_pre_restore_TS,shop_restore_manual"
expect_sql "SELECT count(*) FROM pg_database WHERE (shobj_description(oid, 'pg_database') IS NOT NULL OR datconnlimit <> -1) AND datname LIKE 'shop%'" 0
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the rerun did not restore the set"
pg_psql "DROP DATABASE shop_restore_manual" >/dev/null

# ---- SIGKILL right after CREATE DATABASE (no comment yet; the mark is its ---------
# CONNECTION LIMIT), then a rerun at once, possibly within the same second
live_fp=$(pg_db_fingerprint shop)
OPSCTL_TEST_KILL_AT=restore-created expect_exit 137 ob --yes restore "$id"
wait_for 30 settled || fail "the killed restore's sessions did not go away"
expect_sql "SELECT shobj_description(oid, 'pg_database') IS NULL, datconnlimit FROM pg_database WHERE datname LIKE 'shop\_restore\_%'" "t|999999"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "a kill after CREATE DATABASE changed the live database"
expect_exit 0 ob --yes restore "$id"
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop\_restore\_%'" 0
expect_sql "SELECT datconnlimit FROM pg_database WHERE datname = 'shop'" -1
pg_psql "SELECT 'DROP DATABASE ' || quote_ident(datname) FROM pg_database WHERE datname LIKE 'shop\_pre\_restore\_%'" |
	while read -r sql; do pg_psql "$sql" >/dev/null; done

# ---- SIGKILL while pg_restore loads (a stalled pg_restore) ---------------------------
pg_dbsql shop "DELETE FROM orders WHERE id > 800" >/dev/null
live_fp=$(pg_db_fingerprint shop)
touch stall
"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --yes restore "$id" >out 2>err </dev/null &
pid=$!   # opsctl's own
wait_for 30 test -e stalled || fail "pg_restore did not start"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
pkill -KILL -f "^/bin/bash $TEST_SCRATCH/slow_pg_restore" 2>/dev/null   # the orphaned wrapper (this test's only)
rm -f stall stalled
wait_for 30 settled || fail "the killed restore's sessions did not go away"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "a kill during the load changed the live database"
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop\_restore\_%'" 1
# the same rerun at once (possibly within the same second): it drops the leftover first
expect_exit 0 ob --yes restore "$id"
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop\_restore\_%'" 0
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the rerun did not restore the set"

test_done
