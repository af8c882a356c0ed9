#!/usr/bin/env bash
# migrate down (one step), down --to V and rollback --schema V: confirmation
# (exit 10 without --yes and a terminal), every down file checked before
# anything runs (missing -> exit 3, nothing touched), undo in reverse order of
# application, a failing down file (exit 1, that migration stays applied),
# --dry-run and --output json.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

om() {
	"$OPSCTL" --db "$TEST_PG_URL" "$@"
}
tables() {
	expect_sql "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN ('schema_migrations', 'undo_log')" "$1"
}
undo_log() {
	expect_sql "SELECT coalesce(string_agg(version, ',' ORDER BY id), '') FROM undo_log" "$1"
}

# every down file logs itself, so the order of undoing can be checked
pg_psql "CREATE TABLE undo_log (id serial PRIMARY KEY, version text)" >/dev/null
mkdir -p migrations/rollback
for v in 1 2 3 4 5; do
	printf 'CREATE TABLE t%s (id int);\nINSERT INTO t%s VALUES (%s), (%s0);\n' "$v" "$v" "$v" "$v" >"migrations/00${v}_t$v.sql"
	printf "DROP TABLE t%s;\nINSERT INTO undo_log (version) VALUES ('00%s');\n" "$v" "$v" >"migrations/rollback/00${v}_t$v.down.sql"
done
# applied out of order: 001, 002, 004, 005, then 003
mv migrations/003_t3.sql later.sql
expect_exit 0 om migrate
mv later.sql migrations/003_t3.sql
expect_exit 0 om migrate --allow-out-of-order
expect_applied "001,002,004,005,003"
tables "t1,t2,t3,t4,t5"

# ---- confirmation ------------------------------------------------------------
expect_exit 10 om migrate down
expect_grep 'needs confirmation; nothing was undone' err
expect_grep 'pass [-]-yes' err
expect_exit 10 om migrate down --to 0
expect_exit 10 om rollback --schema 1
expect_exit 10 om --output json migrate down
expect_json out 'd["exit"] == 10 and d["undone"] == []'
expect_applied "001,002,004,005,003"
tables "t1,t2,t3,t4,t5"
undo_log ""
# -n needs no confirmation and shows the plan: newest application first
expect_exit 0 om -n migrate down --to 1
[ "$(tr '\n' ' ' <out)" = "would undo 003_t3.sql would undo 005_t5.sql would undo 004_t4.sql would undo 002_t2.sql " ] ||
	fail "down --to 1 --dry-run plan: $(tr '\n' ' ' <out)"
expect_exit 0 om -n --output json rollback --schema 3
expect_json out 'd["plan"] == ["005_t5.sql", "004_t4.sql"] and d["dry_run"] is True'
expect_applied "001,002,004,005,003"
undo_log ""

# ---- down: one step, the last applied (003, not 005) -------------------------
expect_exit 0 om --yes migrate down
expect_grep '^undid 003_t3\.sql' out
expect_no_grep '005' out
expect_applied "001,002,004,005"
tables "t1,t2,t4,t5"
undo_log "003"
expect_exit 9 om migrate status --exit-code
expect_grep '^003 +t3 +out-of-order' out

# ---- a missing down file: exit 3, nothing touched ------------------------------
mv migrations/rollback/002_t2.down.sql away.sql
expect_exit 3 om --yes migrate down --to 0
expect_grep "migrations/rollback/002_t2\\.down\\.sql" err
expect_grep 'nothing was changed' err
expect_applied "001,002,004,005"
tables "t1,t2,t4,t5"
expect_sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM t5" "5,50"
undo_log "003"
# two missing: both named
mv migrations/rollback/004_t4.down.sql away4.sql
expect_exit 3 om --yes rollback --schema 0
expect_grep "002_t2\\.down\\.sql" err
expect_grep "004_t4\\.down\\.sql" err
expect_applied "001,002,004,005"
undo_log "003"
# a down file that is not needed may be missing
expect_exit 0 om -n migrate down --to 4
expect_grep '^would undo 005_t5\.sql$' out
mv away.sql migrations/rollback/002_t2.down.sql
mv away4.sql migrations/rollback/004_t4.down.sql
# a down file that is refused (empty): exit 3, nothing touched
cp migrations/rollback/001_t1.down.sql keep1.sql
: >migrations/rollback/001_t1.down.sql
expect_exit 3 om --yes migrate down --to 0
expect_grep 'migrations/rollback/001_t1\.down\.sql: no SQL statements' err
expect_applied "001,002,004,005"
undo_log "003"
mv keep1.sql migrations/rollback/001_t1.down.sql

# ---- down --to V: reverse order of application ---------------------------------
expect_exit 0 om --yes --output json migrate down --to 1
expect_json out 'd["command"] == "migrate down" and [m["version"] for m in d["undone"]] == ["005", "004", "002"] and d["exit"] == 0'
expect_applied "001"
tables "t1"
undo_log "003,005,004,002"
expect_exit 0 om --yes migrate down --to 1
expect_grep 'nothing to undo' err
undo_log "003,005,004,002"

# ---- rollback --schema V -------------------------------------------------------
expect_exit 0 om migrate --allow-out-of-order
expect_applied "001,002,003,004,005"
expect_exit 0 om --yes rollback --schema 2
[ "$(grep -o '^undid [0-9_a-z.]*' out | tr '\n' ' ')" = "undid 005_t5.sql undid 004_t4.sql undid 003_t3.sql " ] ||
	fail "rollback --schema 2 order: $(tr '\n' ' ' <out)"
expect_applied "001,002"
tables "t1,t2"
undo_log "003,005,004,002,005,004,003"
expect_exit 9 om migrate status --exit-code
expect_grep '^003 +t3 +pending' out
expect_exit 0 om migrate
expect_applied "001,002,003,004,005"

# ---- a failing down file: exit 1, that migration stays applied -------------------
cat >migrations/rollback/004_t4.down.sql <<'SQL'
DROP TABLE t4;
INSERT INTO undo_log (version) VALUES ('004');
SELECT no_such_function();
SQL
expect_exit 1 om --yes migrate down --to 3
expect_grep '^undid 005_t5\.sql' out
expect_grep 'migrations/rollback/004_t4\.down\.sql:3: .*no_such_function' err
expect_applied "001,002,003,004"
tables "t1,t2,t3,t4"
expect_sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM t4" "4,40"
undo_log "003,005,004,002,005,004,003,005"
expect_exit 9 om migrate status --exit-code
expect_grep '^004 +t4 +applied' out
expect_grep '^005 +t5 +pending' out
# a failure in the first one: nothing undone, as JSON
expect_exit 1 om --yes --output json rollback --schema 0
expect_json out 'd["exit"] == 1 and d["undone"] == [] and "004_t4.down.sql:3" in d["error"]["message"]'
expect_applied "001,002,003,004"
tables "t1,t2,t3,t4"
# fixed: goes through
sed -i '/no_such_function/d' migrations/rollback/004_t4.down.sql
expect_exit 0 om --yes rollback --schema 0
expect_applied ""
tables ""
undo_log "003,005,004,002,005,004,003,005,004,003,002,001"

# ---- a down file wrapped in BEGIN/COMMIT, and a no-transaction down file -------
expect_exit 0 om migrate
printf 'BEGIN;\nDROP TABLE t5;\nINSERT INTO undo_log (version) VALUES (%s);\nCOMMIT;\n' "'005'" \
	>migrations/rollback/005_t5.down.sql
printf -- '-- opsctl:no-transaction\nDROP TABLE t4;\nINSERT INTO undo_log (version) VALUES (%s);\n' "'004'" \
	>migrations/rollback/004_t4.down.sql
expect_exit 0 om --yes migrate down --to 3
expect_applied "001,002,003"
tables "t1,t2,t3"
expect_sql "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'" 0

# usage
expect_exit 2 om migrate down 3
expect_exit 2 om migrate down --to x
expect_exit 2 om rollback --schema
expect_exit 2 om rollback 3
expect_applied "001,002,003"

test_done
