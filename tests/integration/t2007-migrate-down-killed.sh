#!/usr/bin/env bash
# migrate down / rollback --schema killed with SIGKILL (issue 8, found by
# tests/crash/scenarios/rollback-schema.sh): a transactional down file and
# the deletion of its row are one transaction, so a kill in it changes
# nothing; a `-- opsctl:no-transaction` down file runs statement by
# statement and only the row's deletion is a transaction, so a kill between
# its statements leaves the migration recorded with part of it undone (as
# opsctl-migrate(1) says); running the same rollback again runs that down
# file from its first statement (IF EXISTS makes that harmless) and finishes.
# The kill point is exact: the test waits until the first statement's effect
# is visible while the second (a pg_sleep) runs.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

om() {
	"$OPSCTL" --db "$TEST_PG_URL" "$@"
}
indexes() {
	pg_psql "SELECT coalesce(string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text), '') FROM pg_index WHERE indrelid = 'items'::regclass AND NOT indisprimary"
}

mkdir -p migrations/rollback
cat >migrations/001_items.sql <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, name text, grp int);
INSERT INTO items SELECT g, 'item ' || g, g % 7 FROM generate_series(1, 1000) g;
SQL
echo 'DROP TABLE items;' >migrations/rollback/001_items.down.sql
cat >migrations/002_items_idx.sql <<'SQL'
-- opsctl:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_idx ON items (name);
CREATE INDEX CONCURRENTLY IF NOT EXISTS items_grp_idx ON items (grp);
SQL
cat >migrations/rollback/002_items_idx.down.sql <<'SQL'
-- opsctl:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS items_grp_idx;
SELECT pg_sleep(30);
DROP INDEX CONCURRENTLY IF EXISTS items_name_idx;
SQL
cat >migrations/003_items_note.sql <<'SQL'
ALTER TABLE items ADD COLUMN note text;
SQL
cat >migrations/rollback/003_items_note.down.sql <<'SQL'
ALTER TABLE items DROP COLUMN note;
SELECT pg_sleep(30);
SQL

expect_exit 0 om migrate
expect_applied "001,002,003"
expect_sql "SELECT '$(indexes)'" "items_grp_idx,items_name_idx"

# sessions of the killed opsctl: gone once their pg_sleep is cancelled
killed_sessions_gone() {
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%'")" = 0 ]
}
end_sleepers() {
	pg_psql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%' AND query LIKE '%pg_sleep%'" >/dev/null
	wait_for 30 killed_sessions_gone || fail "the killed run's session did not go away"
}

# ---- a transactional down file: killed inside it, nothing changed --------------------
"$OPSCTL" --db "$TEST_PG_URL" --yes rollback --schema 1 >out 2>err </dev/null &
pid=$!
note_sleeping() {
	[ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%' AND query LIKE '%pg_sleep%'")" = 1 ]
}
wait_for 30 note_sleeping || fail "the down file of 003 did not start"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
end_sleepers
expect_applied "001,002,003"
expect_sql "SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'note' AND NOT attisdropped" 1

# ---- a no-transaction down file: killed between its statements -------------------------
printf 'ALTER TABLE items DROP COLUMN note;\n' >migrations/rollback/003_items_note.down.sql
"$OPSCTL" --db "$TEST_PG_URL" --yes rollback --schema 1 >out 2>err </dev/null &
pid=$!
grp_dropped() {
	[ "$(indexes)" = items_name_idx ] && note_sleeping
}
wait_for 30 grp_dropped || fail "the down file of 002 did not get to its second statement"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
end_sleepers
# 003 undone (its own transaction), 002 still recorded with one index gone
expect_applied "001,002"
expect_sql "SELECT '$(indexes)'" "items_name_idx"
expect_exit 0 om migrate status
expect_grep '^002 .* applied ' out

# the same rollback again: the down file of 002 from its first statement
sed -i 's/pg_sleep(30)/pg_sleep(0)/' migrations/rollback/002_items_idx.down.sql
expect_exit 0 om --yes rollback --schema 1
expect_grep '^undid 002_items_idx\.sql' out
expect_applied "001"
expect_sql "SELECT '$(indexes)'" ""
expect_exit 0 om migrate
expect_applied "001,002,003"
expect_sql "SELECT '$(indexes)'" "items_grp_idx,items_name_idx"

test_done
