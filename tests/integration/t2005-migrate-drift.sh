#!/usr/bin/env bash
# migrate: checksums of applied files (an edit -> up exit 5 naming the file;
# a CRLF-only change is not drift), `migrate validate` (changed, missing,
# out-of-order, exit 5; --output json), `migrate repair`, and out-of-order
# pending versions (exit 1 with a hint; --allow-out-of-order applies them).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

om() {
	"$OPSCTL" --db "$TEST_PG_URL" "$@"
}
sha() {
	sha256sum "$1" | cut -d' ' -f1
}

mkdir migrations
printf 'CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n' >migrations/001_a.sql
printf 'CREATE TABLE b (id int);\n' >migrations/002_b.sql
printf 'CREATE TABLE d (id int);\n' >migrations/004_d.sql
expect_exit 0 om migrate
expect_applied "001,002,004"
expect_exit 0 om migrate validate
expect_grep 'no drift, nothing missing' err
sum001=$(sha migrations/001_a.sql)

# ---- CRLF line ends are not drift -----------------------------------------
sed -i 's/$/\r/' migrations/001_a.sql
[ "$(sha migrations/001_a.sql)" != "$sum001" ] || fail "sed did not change the file"
expect_exit 0 om migrate validate
expect_exit 0 om migrate
expect_exit 0 om migrate status --exit-code
expect_grep '^001 +a +applied' out
expect_sql "SELECT checksum FROM schema_migrations WHERE version = '001'" "$sum001"
# lone CRs too (old Mac line ends)
tr -d '\n' <migrations/001_a.sql >x && mv x migrations/001_a.sql
expect_exit 0 om migrate validate
# ... but not trailing whitespace, or a changed statement
printf 'CREATE TABLE a (id int);\nINSERT INTO a VALUES (1); \n' >migrations/001_a.sql
expect_exit 5 om migrate validate
printf 'CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n' >migrations/001_a.sql
expect_exit 0 om migrate validate

# ---- an edited applied file ------------------------------------------------
printf 'CREATE TABLE e (id int);\n' >migrations/005_e.sql
printf 'CREATE TABLE a (id bigint);\nINSERT INTO a VALUES (1);\n' >migrations/001_a.sql
expect_exit 5 om migrate
expect_grep "migrations/001_a\\.sql" err
expect_grep 'changed' err
expect_grep 'migrate repair' err
expect_applied "001,002,004"                 # 005 did not run either
expect_sql "SELECT to_regclass('e') IS NULL" t
expect_exit 5 om --output json migrate
expect_json out 'd["exit"] == 5 and "001_a.sql" in d["error"]["message"] and d["applied"] == []'
expect_exit 0 om migrate status          # status shows it, without failing
expect_grep '^001 +a +changed' out
expect_exit 9 om migrate status --exit-code
expect_exit 0 om -n migrate repair
expect_grep 'would accept 001_a\.sql' out
expect_sql "SELECT checksum FROM schema_migrations WHERE version = '001'" "$sum001"

# ---- validate: changed, missing, out-of-order, gaps -------------------------
mv migrations/002_b.sql removed-002_b.sql
printf 'CREATE TABLE c (id int);\n' >migrations/003_c.sql
expect_exit 5 om migrate validate
expect_grep '^changed +migrations/001_a\.sql' out
expect_grep '^missing +002_b\.sql' out
expect_grep '^out-of-order +migrations/003_c\.sql' out
expect_no_grep '004_d|005_e' out
expect_grep '3 problems' err
expect_exit 5 om --output json migrate validate
expect_json out 'd["command"] == "migrate validate" and d["exit"] == 5 and d["problems"] == 3'
expect_json out '{m["version"]: m["state"] for m in d["migrations"]} == {"001": "changed", "002": "missing", "003": "out-of-order", "004": "applied", "005": "pending"}'
expect_exit 0 om migrate status
expect_grep '^002 +002_b\.sql +missing' out
expect_grep '^003 +c +out-of-order' out
expect_grep '^005 +e +pending' out
# a missing file is not a reason to refuse up, but drift is
expect_exit 5 om migrate
expect_applied "001,002,004"

# ---- repair accepts the edit ----------------------------------------------
expect_exit 0 om migrate repair
expect_grep 'accepted 1 change' err
expect_sql "SELECT checksum FROM schema_migrations WHERE version = '001'" "$(sha migrations/001_a.sql)"
expect_sql "SELECT count(*) FROM a" 1     # repair runs nothing
# repair does not make the missing file or the out-of-order one go away
expect_exit 5 om migrate validate
expect_no_grep '^changed' out
expect_grep '^missing +002_b\.sql' out

# ---- out-of-order ------------------------------------------------------------
expect_exit 1 om migrate
expect_grep "migrations/003_c\\.sql' is pending but a later version is already applied" err
expect_grep 'allow-out-of-order' err
expect_applied "001,002,004"
expect_sql "SELECT count(*) FROM pg_tables WHERE tablename IN ('c', 'e')" 0
expect_exit 0 om -n migrate --allow-out-of-order
expect_grep '^would apply 003_c\.sql$' out
expect_grep '^would apply 005_e\.sql$' out
expect_exit 0 om migrate --allow-out-of-order --to 3
expect_applied "001,002,004,003"
expect_sql "SELECT count(*) FROM pg_tables WHERE tablename IN ('c', 'e')" 1
expect_exit 0 om migrate
expect_applied "001,002,004,003,005"
# put the missing file back: everything is clean
mv removed-002_b.sql migrations/002_b.sql
expect_exit 0 om migrate validate
expect_exit 0 om migrate
expect_grep 'nothing to apply' err
expect_exit 0 om --output json migrate validate
expect_json out 'd["problems"] == 0 and d["exit"] == 0 and all(m["state"] == "applied" for m in d["migrations"])'

# ---- repair after several edits; then up and validate pass ------------------
printf -- '-- reformatted\nCREATE TABLE b (id int);\n' >migrations/002_b.sql
printf -- 'CREATE TABLE c (id int); -- comment\n' >migrations/003_c.sql
printf 'CREATE TABLE f (id int);\n' >migrations/006_f.sql
expect_exit 5 om migrate
expect_grep '002_b\.sql' err
expect_grep '003_c\.sql' err
expect_exit 0 om --output json migrate repair
expect_json out 'sorted(m["version"] for m in d["accepted"]) == ["002", "003"] and d["exit"] == 0'
expect_exit 0 om migrate validate
expect_exit 0 om migrate
expect_applied "001,002,004,003,005,006"
expect_exit 0 om migrate validate
expect_exit 0 om migrate repair
expect_grep 'nothing to repair' err
for f in migrations/00[1-6]_*.sql; do
	v=$(basename "$f" | cut -c1-3)
	expect_sql "SELECT checksum FROM schema_migrations WHERE version = '$v'" "$(sha "$f")"
done

test_done
