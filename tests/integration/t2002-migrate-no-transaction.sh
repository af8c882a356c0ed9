#!/usr/bin/env bash
# migrate: `-- opsctl:no-transaction` files (CREATE INDEX CONCURRENTLY, a
# failure part way: which statements ran, "partial 2/4", resume after a fix,
# exit 5 when a statement that already ran was edited), and the statement
# splitter on real files: dollar-quoted plpgsql bodies with ';' and nested
# $inner$ quotes, E'' strings, quoted identifiers, comments with ';',
# BEGIN ATOMIC bodies, CRLF line ends and a trailing comment.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

om() {
	"$OPSCTL" --db "$TEST_PG_URL" "$@"
}
no_table() {
	expect_sql "SELECT to_regclass('$1') IS NULL" t
}

mkdir migrations
cat >migrations/001_people.sql <<'SQL'
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO people (name) SELECT 'p' || g FROM generate_series(1, 500) g;
SQL

# ---- CREATE INDEX CONCURRENTLY ----------------------------------------------
cat >migrations/002_people_name_idx.sql <<'SQL'
-- opsctl:no-transaction
-- builds without blocking writes
CREATE INDEX CONCURRENTLY people_name_idx ON people (name);
SQL
# the same statement in an ordinary (transactional) file fails, and says why
cp migrations/002_people_name_idx.sql tx.sql
sed -i 1d migrations/002_people_name_idx.sql
expect_exit 1 om migrate
expect_grep 'migrations/002_people_name_idx\.sql:2: .*CREATE INDEX CONCURRENTLY cannot run inside a transaction block' err
expect_applied "001"
no_table people_name_idx
cp tx.sql migrations/002_people_name_idx.sql
expect_exit 0 om migrate
expect_grep '^applied 002_people_name_idx\.sql' out
expect_applied "001,002"
expect_sql "SELECT indisvalid FROM pg_index WHERE indexrelid = 'people_name_idx'::regclass" t
expect_sql "SELECT checksum FROM schema_migrations WHERE version = '002'" \
	"$(sha256sum migrations/002_people_name_idx.sql | cut -d' ' -f1)"
# nothing left in the progress table once a file is done
expect_sql "SELECT count(*) FROM schema_migrations_progress" 0
expect_exit 0 om migrate status --exit-code
expect_grep '^002 +people_name_idx +applied' out

# ---- a failure at statement 3 of 4 ----------------------------------------
cat >migrations/003_tags.sql <<'SQL'
-- opsctl:no-transaction
CREATE TABLE tags (id int PRIMARY KEY, label text);
INSERT INTO tags VALUES (1, 'one');
INSERT INTO tags VALUES (2, 'two', 'too many values');
CREATE INDEX CONCURRENTLY tags_label_idx ON tags (label);
SQL
expect_exit 1 om migrate
expect_grep 'migrations/003_tags\.sql:4: ' err
expect_grep 'statement 3 of 4 failed' err
expect_grep 'statements 1-2 ran and are committed' err
expect_grep 'resumes at statement 3' err
expect_applied "001,002"
# statements 1-2 are committed (no transaction), 3-4 did not run
expect_sql "SELECT string_agg(id || ':' || label, ',') FROM tags" "1:one"
no_table tags_label_idx
expect_sql "SELECT statements_done || '/' || statements_total FROM schema_migrations_progress WHERE version = '003'" "2/4"
expect_exit 9 om migrate status --exit-code
expect_grep '^003 +tags +partial 2/4' out
expect_exit 0 om --output json migrate status
expect_json out '[m for m in d["migrations"] if m["version"] == "003"][0]["state"] == "partial"'
expect_json out '[m for m in d["migrations"] if m["version"] == "003"][0]["statements_done"] == 2'
expect_json out '[m for m in d["migrations"] if m["version"] == "003"][0]["statements_total"] == 4'
expect_exit 5 om migrate validate
expect_grep 'partial +migrations/003_tags\.sql: stopped after statement 2 of 4' out
# the same failure again: still 2/4, nothing ran twice
expect_exit 1 om migrate
expect_grep 'migrations/003_tags\.sql:4: ' err
expect_sql "SELECT count(*) FROM tags" 1
expect_exit 9 om migrate status --exit-code
expect_grep '^003 +tags +partial 2/4' out
# --dry-run shows it as still to apply
expect_exit 0 om -n migrate
expect_grep 'would apply 003_tags\.sql' out

# editing a statement that already ran: exit 5, nothing runs
sed -i "s/VALUES (1, 'one')/VALUES (1, 'uno')/; s/, 'too many values'//" migrations/003_tags.sql
expect_exit 5 om migrate
expect_grep 'migrations/003_tags\.sql' err
expect_grep 'already ran were edited' err
expect_sql "SELECT string_agg(id || ':' || label, ',') FROM tags" "1:one"
expect_sql "SELECT statements_done FROM schema_migrations_progress WHERE version = '003'" 2
# ... put back as it ran, with statement 3 fixed: resumes at statement 3
sed -i "s/VALUES (1, 'uno')/VALUES (1, 'one')/" migrations/003_tags.sql
expect_exit 0 om --output json migrate
expect_json out '[m["version"] for m in d["applied"]] == ["003"]'
expect_sql "SELECT string_agg(id || ':' || label, ',' ORDER BY id) FROM tags" "1:one,2:two"
expect_sql "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tags_label_idx'::regclass" t
expect_applied "001,002,003"
expect_sql "SELECT checksum FROM schema_migrations WHERE version = '003'" \
	"$(sha256sum migrations/003_tags.sql | cut -d' ' -f1)"
expect_sql "SELECT count(*) FROM schema_migrations_progress" 0
expect_exit 0 om migrate validate
expect_exit 0 om migrate status --exit-code
expect_grep '^003 +tags +applied' out

# a failure in the first statement: nothing ran; fixed, it runs from the start
cat >migrations/004_first_fails.sql <<'SQL'
-- opsctl:no-transaction
CREATE INDEX CONCURRENTLY tags_missing_idx ON tags (no_such_column);
INSERT INTO tags VALUES (4, 'four');
SQL
expect_exit 1 om migrate
expect_grep 'migrations/004_first_fails\.sql:2: .*no_such_column' err
expect_grep 'statement 1 of 2 failed' err
expect_no_grep 'ran and are committed' err
expect_sql "SELECT count(*) FROM tags" 2
sed -i 's/no_such_column/label, id/' migrations/004_first_fails.sql
expect_exit 0 om migrate
expect_sql "SELECT count(*) FROM tags" 3
expect_applied "001,002,003,004"

# `migrate repair` forgets a partial run that was cleaned up by hand
cat >migrations/005_repaired.sql <<'SQL'
-- opsctl:no-transaction
CREATE TABLE r5 (id int);
SELECT 1/0;
CREATE TABLE r5b (id int);
SQL
expect_exit 1 om migrate
expect_exit 9 om migrate status --exit-code
expect_grep '^005 +repaired +partial 1/3' out
pg_psql "DROP TABLE r5" >/dev/null
expect_exit 0 om migrate repair
expect_exit 9 om migrate status --exit-code
expect_grep '^005 +repaired +pending' out
printf -- '-- opsctl:no-transaction\nCREATE TABLE r5 (id int);\nCREATE TABLE r5b (id int);\n' >migrations/005_repaired.sql
expect_exit 0 om migrate
expect_applied "001,002,003,004,005"
expect_sql "SELECT count(*) FROM pg_tables WHERE tablename IN ('r5', 'r5b')" 2

# transaction control is refused in a no-transaction file too
printf -- '-- opsctl:no-transaction\nCREATE TABLE n6 (id int);\nBEGIN;\nCREATE TABLE n6b (id int);\nCOMMIT;\n' \
	>migrations/006_no_tx_begin.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_no_tx_begin\.sql:3: ' err
no_table n6
rm migrations/006_no_tx_begin.sql

# ---- the splitter on real files -------------------------------------------
# ';' inside dollar quotes (with a nested $inner$), E'' strings, '' escapes,
# quoted identifiers, comments (line, block, nested block), in an ordinary
# file and in a no-transaction file.
write_tricky() { # FILE SUFFIX [FIRST-LINE]
	{
		[ -z "${3:-}" ] || printf '%s\n' "$3"
		cat <<'SQL' | sed "s/SUFFIX/$2/g"
-- a comment; with a semicolon
CREATE TABLE "odd;name_SUFFIX" (v text);
/* a block comment; /* nested; */ still the comment; */
CREATE FUNCTION semi_SUFFIX(x text) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  s text := 'a;b';   -- ; in a comment in the body
  q text;
BEGIN
  q := $inner$it's; "inner"$inner$;
  EXECUTE $q$SELECT 'x;y'$q$ INTO s;
  RETURN x || ';' || s || ';' || q;
END;
$fn$;
INSERT INTO "odd;name_SUFFIX" VALUES (E'back\\slash;\'quote'), ('it''s;'), ($$dollar;$$);
DO $$
BEGIN
  INSERT INTO "odd;name_SUFFIX" VALUES ('from do;');
END
$$;
CREATE FUNCTION atomic_SUFFIX(a int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT a + 1;
END;
INSERT INTO "odd;name_SUFFIX" VALUES (semi_SUFFIX('z')), (atomic_SUFFIX(41)::text);
-- a trailing comment; after the last statement
SQL
	} >"$1"
}
write_tricky migrations/007_tricky_tx.sql tx
write_tricky migrations/008_tricky_notx.sql notx '-- opsctl:no-transaction'
expect_exit 0 om --output json migrate
expect_json out '[(m["version"], m["statements"]) for m in d["applied"]] == [("007", 6), ("008", 6)]'
expect_applied "001,002,003,004,005,007,008"
for s in tx notx; do
	expect_sql "SELECT string_agg(v, '|' ORDER BY v) FROM \"odd;name_$s\"" \
		"42|back\\slash;'quote|dollar;|from do;|it's;|z;x;y;it's; \"inner\""
	expect_sql "SELECT semi_$s('q')" "q;x;y;it's; \"inner\""
done
expect_exit 0 om migrate validate

# a failure after a dollar-quoted body: the line is right
cat >migrations/009_after_body.sql <<'SQL'
CREATE FUNCTION f9() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  -- ; ; ;
  RETURN 1;
END;
$$;
CREATE TABLE t9 (id int);
SELECT f9(), missing_col FROM t9;
SQL
expect_exit 1 om migrate
expect_grep 'migrations/009_after_body\.sql:8: .*missing_col' err
expect_sql "SELECT count(*) FROM pg_proc WHERE proname = 'f9'" 0
no_table t9
# the same with CRLF line ends: the same line number
sed -i 's/$/\r/' migrations/009_after_body.sql
expect_exit 1 om migrate
expect_grep 'migrations/009_after_body\.sql:8: .*missing_col' err
# ... and in a no-transaction file: statements 1-2 ran
{ printf -- '-- opsctl:no-transaction\r\n'; cat migrations/009_after_body.sql; } >x && mv x migrations/009_after_body.sql
expect_exit 1 om migrate
expect_grep 'migrations/009_after_body\.sql:9: .*missing_col' err
expect_grep 'statement 3 of 3 failed' err
expect_exit 9 om migrate status --exit-code
expect_grep '^009 +after_body +partial 2/3' out
sed -i 's/, missing_col//' migrations/009_after_body.sql
expect_exit 0 om migrate
expect_applied "001,002,003,004,005,007,008,009"

test_done
