#!/usr/bin/env bash
# migrate up when a migration fails: exit 1, FILE:LINE of the error (with and
# without a position from PostgreSQL), earlier migrations stay, the failing
# one leaves no trace; files wrapped in BEGIN/COMMIT; files that are refused
# before anything runs (exit 3): COMMIT in the middle, not UTF-8, empty,
# comment-only, an unterminated dollar quote.
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
cat >migrations/001_base.sql <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE, name text);
INSERT INTO accounts VALUES (1, 'a@example.com', 'A'), (2, 'b@example.com', 'B');
SQL
cat >migrations/002_ok.sql <<'SQL'
CREATE TABLE second (id int);
SQL
# statements 1-3 succeed, line 4 refers to an unknown column
cat >migrations/003_unknown_column.sql <<'SQL'
CREATE TABLE t3 (id int PRIMARY KEY, name text);
INSERT INTO t3 VALUES (1, 'a');
UPDATE accounts SET name = 'changed by 003' WHERE id = 1;
SELECT id, no_such_column FROM t3;
SQL

# ---- unknown column at line 4 -------------------------------------------
expect_exit 1 om migrate
expect_grep '^applied 001_base\.sql' out
expect_grep '^applied 002_ok\.sql' out
expect_grep 'migrations/003_unknown_column\.sql:4: .*no_such_column' err
expect_no_grep 'migrations/003_unknown_column\.sql:[1235]' err
expect_applied "001,002"
no_table t3
expect_sql "SELECT name FROM accounts WHERE id = 1" A
expect_sql "SELECT to_regclass('second') IS NOT NULL" t
expect_exit 9 om migrate status --exit-code
expect_grep '^003 +unknown_column +pending' out
# --output json carries the error
expect_exit 1 om --output json migrate
expect_json out 'd["exit"] == 1 and d["applied"] == [] and "003_unknown_column.sql:4" in d["error"]["message"]'
expect_applied "001,002"
no_table t3

# ---- the path as given with --dir -------------------------------------------
mkdir -p db
cp -r migrations db/mig
expect_exit 1 om migrate --dir db/mig
expect_grep 'db/mig/003_unknown_column\.sql:4: ' err
expect_exit 1 om migrate --dir db/mig/
expect_grep 'db/mig/003_unknown_column\.sql:4: ' err
expect_no_grep 'mig//' err
expect_exit 1 om migrate --dir "$TEST_SCRATCH/db/mig"
expect_grep "$TEST_SCRATCH/db/mig/003_unknown_column\\.sql:4: " err
rm -rf db

# ---- a syntax error, positioned inside a multi-line statement -------------
cat >migrations/003_unknown_column.sql <<'SQL'
-- 003: a table
-- (two comment lines first)
CREATE TABLE t3 (
    id int PRIMARY KEY,
    name text,,
    note text
);
SQL
expect_exit 1 om migrate
expect_grep 'migrations/003_unknown_column\.sql:5: .*syntax error' err
expect_applied "001,002"
no_table t3

# an unknown column on the 3rd line of a statement whose first line holds
# multi-byte characters (the error position is in characters, not bytes)
cat >migrations/003_unknown_column.sql <<'SQL'
CREATE TABLE t3 (id int PRIMARY KEY, name text);
INSERT INTO t3 (id, name) VALUES (1, 'ééééééééééééééééééééééééééééééééééééééééé'),
  (2, 'x'),
  (3, bogus_column);
SQL
expect_exit 1 om migrate
expect_grep 'migrations/003_unknown_column\.sql:4: .*bogus_column' err
expect_applied "001,002"
no_table t3

# the error token at the very start of a line: that line, not the one before
cat >migrations/003_unknown_column.sql <<'SQL'
CREATE TABLE t3 (id int PRIMARY KEY, name text);
SELECT id,
first_column_typo
FROM t3;
SQL
expect_exit 1 om migrate
expect_grep 'migrations/003_unknown_column\.sql:3: .*first_column_typo' err
expect_applied "001,002"
no_table t3

# ---- a unique violation: no position, the line where the statement starts --
cat >migrations/003_unknown_column.sql <<'SQL'
CREATE TABLE t3 (id int PRIMARY KEY);
INSERT INTO t3 VALUES (1);

INSERT INTO accounts (id, email, name)
    SELECT 3, 'c@example.com', 'C'
    UNION ALL
    SELECT 4, 'a@example.com', 'dup';
SQL
expect_exit 1 om migrate
expect_grep 'migrations/003_unknown_column\.sql:4: .*(duplicate key|unique)' err
expect_grep 'already exists' err   # the DETAIL is shown
expect_applied "001,002"
no_table t3
expect_sql "SELECT count(*) FROM accounts" 2

# ---- a runtime error in a later statement after DDL ----------------------
cat >migrations/003_unknown_column.sql <<'SQL'
CREATE TABLE t3 (id int PRIMARY KEY);
INSERT INTO t3 VALUES (1);
DELETE FROM accounts WHERE id = 2;
SELECT 1 / (SELECT count(*) - 1 FROM t3);
SQL
expect_exit 1 om migrate
expect_grep 'migrations/003_unknown_column\.sql:4: .*division by zero' err
expect_applied "001,002"
no_table t3
expect_sql "SELECT count(*) FROM accounts" 2

# fixed: applies
printf 'CREATE TABLE t3 (id int PRIMARY KEY);\nINSERT INTO t3 VALUES (1);\n' >migrations/003_unknown_column.sql
expect_exit 0 om migrate
expect_applied "001,002,003"
expect_sql "SELECT count(*) FROM t3" 1

# ---- a file wrapped in BEGIN; ... COMMIT; ----------------------------------
cat >migrations/004_wrapped.sql <<'SQL'
BEGIN;
CREATE TABLE wrapped (id int PRIMARY KEY);
INSERT INTO wrapped VALUES (1);
INSERT INTO wrapped VALUES (1);
COMMIT;
SQL
expect_exit 1 om migrate
expect_grep 'migrations/004_wrapped\.sql:4: .*duplicate key' err
expect_applied "001,002,003"
no_table wrapped
# lower case, START TRANSACTION / END
cat >migrations/004_wrapped.sql <<'SQL'
start transaction;
create table wrapped (id int primary key);
insert into wrapped values (1);
insert into wrapped values (2);
end;
SQL
expect_exit 0 om migrate
expect_applied "001,002,003,004"
expect_sql "SELECT count(*) FROM wrapped" 2
expect_sql "SELECT count(*) FROM pg_prepared_xacts" 0
expect_exit 0 om migrate status --exit-code
expect_grep '^004 +wrapped +applied' out

# ---- refused before anything runs: exit 3 --------------------------------
# 005 is fine; 006 is bad; neither runs.
printf 'CREATE TABLE t5 (id int);\n' >migrations/005_fine.sql

# a COMMIT in the middle
cat >migrations/006_bad.sql <<'SQL'
CREATE TABLE t6a (id int);
INSERT INTO t6a VALUES (1);
COMMIT;
CREATE TABLE t6b (id int);
SQL
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql:3: .*transaction control' err
expect_applied "001,002,003,004"
no_table t5
no_table t6a
# ... also inside a wrapped file
cat >migrations/006_bad.sql <<'SQL'
BEGIN;
CREATE TABLE t6a (id int);
COMMIT;
BEGIN;
CREATE TABLE t6b (id int);
COMMIT;
SQL
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql:3: ' err
expect_applied "001,002,003,004"
no_table t5
no_table t6a
# ROLLBACK in the middle, indented
printf 'CREATE TABLE t6a (id int);\n\n   ROLLBACK;\nCREATE TABLE t6b (id int);\n' >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql:3: ' err
no_table t5

# not UTF-8 (Latin-1 'é' on line 3)
printf 'CREATE TABLE t6a (id int);\n-- caf\xc3\xa9 is fine here\nINSERT INTO t6a VALUES (1); -- caf\xe9\nSELECT 1;\n' >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql:3: .*UTF-8' err
expect_applied "001,002,003,004"
no_table t5
no_table t6a
expect_exit 3 om migrate status
expect_grep 'migrations/006_bad\.sql:3' err
# a UTF-8 BOM is fine
printf '\xef\xbb\xbfCREATE TABLE t6a (id int);\n' >migrations/006_bad.sql
expect_exit 0 om -n migrate
expect_grep 'would apply 006_bad.sql' out

# empty
: >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql: no SQL statements' err
expect_applied "001,002,003,004"
no_table t5
# whitespace only
printf '\n   \n\t\n' >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql: no SQL statements' err
# comment-only (with semicolons in the comments)
printf -- '-- nothing here yet;\n/* TODO: write it; later */\n;\n' >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql: no SQL statements' err
expect_applied "001,002,003,004"
no_table t5

# an unterminated dollar quote (and quote, and comment)
cat >migrations/006_bad.sql <<'SQL'
CREATE TABLE t6a (id int);
CREATE FUNCTION f6() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
  RETURN 1;
END;
$bdy$;
SQL
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql: .*unterminated dollar' err
expect_grep 'line 2' err
expect_applied "001,002,003,004"
no_table t5
no_table t6a
printf "CREATE TABLE t6a (id int);\nINSERT INTO t6a VALUES ('oops);\n" >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql: .*unterminated' err
printf "CREATE TABLE t6a (id int);\n/* never closed;\nSELECT 1;\n" >migrations/006_bad.sql
expect_exit 3 om migrate
expect_grep 'migrations/006_bad\.sql: .*unterminated' err
no_table t5
expect_applied "001,002,003,004"
# dry run refuses the same way
expect_exit 3 om -n migrate
expect_grep 'migrations/006_bad\.sql' err

# fixed: 005 and 006 apply
printf 'CREATE TABLE t6a (id int);\n' >migrations/006_bad.sql
expect_exit 0 om migrate
expect_applied "001,002,003,004,005,006"
# no transaction or session left behind
expect_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl%'" 0

# ---- an error PostgreSQL reports only at COMMIT (a deferred constraint) ----
cat >migrations/007_deferred.sql <<'SQL'
CREATE TABLE parent7 (id int PRIMARY KEY);
CREATE TABLE child7 (parent_id int REFERENCES parent7 (id) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO child7 VALUES (7);
SQL
expect_exit 1 om migrate
expect_grep 'migrations/007_deferred\.sql(:[0-9]+)?: .*foreign key' err
expect_no_grep 'WARNING|no transaction in progress' err
expect_applied "001,002,003,004,005,006"
no_table parent7
rm migrations/007_deferred.sql

# ---- session state set by one migration does not leak into the next one or
# into the bookkeeping (the seeds' migrate.sh ran every file in its own psql)
cat >migrations/007_timeout.sql <<'SQL'
SET statement_timeout = '100ms';
CREATE TABLE in_public (id int);
SQL
printf 'SELECT pg_sleep(0.3);\n' >migrations/008_slow.sql
expect_exit 0 om migrate
expect_applied "001,002,003,004,005,006,007,008"
pg_psql "CREATE SCHEMA app" >/dev/null
cat >migrations/009_app_schema.sql <<'SQL'
SET search_path TO app;
CREATE TABLE in_app (id int);
SQL
printf 'CREATE TABLE in_public2 (id int);\n' >migrations/010_after.sql
expect_exit 0 om migrate
expect_applied "001,002,003,004,005,006,007,008,009,010"
expect_sql "SELECT to_regclass('app.in_app') IS NOT NULL AND to_regclass('public.in_public2') IS NOT NULL" t
expect_sql "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'" 1

test_done
