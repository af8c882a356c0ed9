#!/usr/bin/env bash
# migrate adopts a database migrated by the seeds' migrate.sh (seed 001): the
# rows are kept, the table gains checksum/execution_ms/applied_by, checksums
# are filled, only new files run, and the seeds' script still works on the
# table afterwards. The script is extracted from the seed at test time.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl

seed=
for f in "$TEST_SRCDIR"/../shared/seeds/001_*.txt; do
	[ -f "$f" ] && seed=$f && break
done
[ -n "$seed" ] || skip_all "no seed 001 in $TEST_SRCDIR/../shared/seeds"
awk '/^创建 `migrate.sh`:/ { found = 1; next }
     found && !inside && /^```bash/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' "$seed" >seeds-migrate.sh
grep -q 'INSERT INTO' seeds-migrate.sh ||
	fail "could not extract migrate.sh from $seed"
chmod +x seeds-migrate.sh

pg_start
pg_psql "CREATE DATABASE ingenio" >/dev/null || fail "CREATE DATABASE"
url="postgresql://postgres:$TEST_PG_PASSWORD@127.0.0.1:$TEST_PG_PORT/ingenio"
db() {
	"$TEST_PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d ingenio -c "$1"
}
expect_db() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	local got
	got=$(db "$1" 2>&1)
	[ "$got" = "$2" ] || fail "SQL: $1
    expected: $(printf '%s' "$2" | tr '\n' '/')
    got:      $(printf '%s' "$got" | tr '\n' '/')"
}
seeds_migrate() {
	env PATH="$TEST_PG_BINDIR:$PATH" DB_HOST=127.0.0.1 DB_PORT="$TEST_PG_PORT" DB_NAME=ingenio \
		DB_USER=postgres PGPASSWORD="$TEST_PG_PASSWORD" bash ./seeds-migrate.sh
}
om() {
	"$OPSCTL" --db "$url" "$@"
}

mkdir -p migrations/rollback
cat >migrations/001_init_schema.sql <<'SQL'
CREATE TABLE projects (id serial PRIMARY KEY, name text NOT NULL);
SQL
cat >migrations/002_seed_data.sql <<'SQL'
INSERT INTO projects (name) VALUES ('first');
SQL
printf 'DROP TABLE projects;\n' >migrations/rollback/001_init_schema.down.sql
printf "DELETE FROM projects WHERE name = 'first';\n" >migrations/rollback/002_seed_data.down.sql

# ---- the seeds' script migrates the database ------------------------------
expect_exit 0 seeds_migrate
expect_db "SELECT string_agg(version || ':' || script_name, ',' ORDER BY id) FROM schema_migrations" \
	"001:001_init_schema.sql,002:002_seed_data.sql"
expect_db "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass AND attnum > 0" \
	"id,version,executed_at,script_name"
expect_db "SELECT count(*) FROM projects" 1
before=$(db "SELECT string_agg(id || '|' || version || '|' || executed_at, ',' ORDER BY id) FROM schema_migrations")

# status reads the seeds' table as it is, without changing it
expect_exit 0 om migrate status --exit-code
expect_grep '^001 +init_schema +applied' out
expect_grep '^002 +seed_data +applied' out
expect_exit 0 om migrate validate
expect_exit 0 om --output json migrate status
expect_json out 'd["applied"] == 2 and all("checksum" not in m for m in d["migrations"])'
expect_db "SELECT count(*) FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass AND attname = 'checksum'" 0
# so does a dry run
printf 'CREATE TABLE members (project_id int REFERENCES projects(id), who text);\n' >migrations/003_members.sql
printf "INSERT INTO members SELECT id, 'owner' FROM projects;\n" >>migrations/003_members.sql
printf 'DROP TABLE members;\n' >migrations/rollback/003_members.down.sql
expect_exit 0 om -n migrate
expect_grep '^would apply 003_members\.sql$' out
expect_no_grep '001|002' out
expect_db "SELECT count(*) FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass AND attname = 'checksum'" 0

# ---- opsctl migrate adopts it ---------------------------------------------
expect_exit 0 om --output json migrate
expect_json out '[m["script"] for m in d["applied"]] == ["003_members.sql"] and d["adopted"] == 2'
expect_exit 0 om migrate
expect_grep 'nothing to apply' err
# the seeds' rows are kept as they were, the columns are added
expect_db "SELECT string_agg(id || '|' || version || '|' || executed_at, ',' ORDER BY id) FROM schema_migrations WHERE version IN ('001', '002')" \
	"$before"
expect_db "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass AND attnum > 0 AND NOT attisdropped" \
	"id:integer,version:character varying(50),executed_at:timestamp without time zone,script_name:character varying(255),checksum:text,execution_ms:integer,applied_by:text"
# checksums filled (SHA-256 of the files), 001/002 did not run again
for v in 001_init_schema 002_seed_data 003_members; do
	expect_db "SELECT checksum FROM schema_migrations WHERE script_name = '$v.sql'" \
		"$(sha256sum "migrations/$v.sql" | cut -d' ' -f1)"
done
expect_db "SELECT count(*) FROM projects" 1
expect_db "SELECT count(*) FROM members" 1
expect_db "SELECT version || '|' || (execution_ms >= 0) || '|' || (applied_by LIKE '%@%') FROM schema_migrations WHERE version = '003'" \
	"003|true|true"
expect_db "SELECT count(*) FROM schema_migrations WHERE version IN ('001', '002') AND execution_ms IS NULL AND applied_by IS NULL" 2
expect_exit 0 om migrate validate
expect_exit 0 om migrate status --exit-code
expect_grep '^003 +members +applied' out

# an adopted file edited afterwards is drift like any other
printf -- '-- edited\n' >>migrations/002_seed_data.sql
expect_exit 5 om migrate
expect_grep 'migrations/002_seed_data\.sql' err
sed -i '/^-- edited$/d' migrations/002_seed_data.sql
expect_exit 0 om migrate

# ---- the seeds' script still works on the extended table ------------------
printf "INSERT INTO projects (name) VALUES ('fourth');\n" >migrations/004_more.sql
expect_exit 0 seeds_migrate
expect_grep '004_more\.sql' out
expect_db "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations" "001,002,003,004"
expect_db "SELECT count(*) FROM projects" 2
expect_db "SELECT count(*) FROM members" 1
# and opsctl adopts what it ran: nothing re-run, the checksum filled in
expect_exit 0 om --output json migrate
expect_json out 'd["applied"] == [] and d["adopted"] == 1'
expect_db "SELECT checksum FROM schema_migrations WHERE version = '004'" \
	"$(sha256sum migrations/004_more.sql | cut -d' ' -f1)"
expect_db "SELECT count(*) FROM projects" 2
# one more for the seeds' script after opsctl's, then opsctl again
printf "INSERT INTO projects (name) VALUES ('fifth');\n" >migrations/005_fifth.sql
expect_exit 0 om migrate
expect_exit 0 seeds_migrate
expect_db "SELECT count(*) FROM projects" 3
expect_db "SELECT count(*) FROM schema_migrations" 5

# ---- and rolls back what the seeds' script applied ------------------------
# 004 and 005 have no down file: refused before anything is undone
expect_exit 3 om --yes rollback --schema 1
expect_grep 'migrations/rollback/004_more\.down\.sql' err
expect_grep 'migrations/rollback/005_fifth\.down\.sql' err
expect_db "SELECT count(*) FROM schema_migrations" 5
expect_db "SELECT count(*) FROM projects" 3
printf "DELETE FROM projects WHERE name = 'fourth';\n" >migrations/rollback/004_more.down.sql
printf "DELETE FROM projects WHERE name = 'fifth';\n" >migrations/rollback/005_fifth.down.sql
expect_exit 0 om --yes rollback --schema 1
expect_grep '^undid 005_fifth\.sql' out
expect_grep '^undid 002_seed_data\.sql' out
expect_no_grep '001_init' out
[ "$(grep -o '^undid [0-9]*' out | tr '\n' ' ')" = "undid 005 undid 004 undid 003 undid 002 " ] ||
	fail "rollback order: $(tr '\n' ' ' <out)"
expect_db "SELECT string_agg(version, ',') FROM schema_migrations" "001"
expect_db "SELECT count(*) FROM projects" 0
expect_db "SELECT to_regclass('members') IS NULL" t
# the seeds' script re-applies what was undone, opsctl sees it as applied
expect_exit 0 seeds_migrate
expect_db "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations" "001,002,003,004,005"
expect_exit 0 om migrate status --exit-code
expect_exit 0 om migrate validate

test_done
