#!/usr/bin/env bash
# migrate: the layout (DIR/NNN_name.sql, DIR/rollback/NNN_name.down.sql),
# up / status / --exit-code / --output json, an empty or missing directory,
# timestamps as versions, duplicate versions, --to, --dry-run, new, baseline,
# history.jsonl, bad usage and an unreachable database (DESIGN.md section 6).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD

om() {
	"$OPSCTL" --db "$TEST_PG_URL" "$@"
}
no_secret() {
	expect_no_grep "$pw" out err
}
no_table() {
	expect_sql "SELECT to_regclass('$1') IS NULL" t
}

# ---- an empty, then a missing migrations directory ----------------------
# (in a database of its own)
pg_psql "CREATE DATABASE empty" >/dev/null || fail "CREATE DATABASE empty"
empty_url="postgresql://postgres:$pw@127.0.0.1:$TEST_PG_PORT/empty"
emptysql() {
	"$TEST_PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d empty -c "$1"
}
mkdir empty
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate status --dir empty
expect_no_grep '[0-9]{3}' out
expect_grep '0 applied, 0 pending' err
# status never creates anything
[ "$(emptysql "SELECT to_regclass('schema_migrations') IS NULL")" = t ] || fail "status created the table"
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate status --exit-code --dir empty
expect_exit 0 "$OPSCTL" --db "$empty_url" --output json migrate status --dir empty
expect_json out 'd["migrations"] == [] and d["applied"] == 0 and d["pending"] == 0 and d["exit"] == 0'
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate --dir empty
expect_grep 'nothing to apply' err
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate up --dir empty
expect_grep 'nothing to apply' err
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate validate --dir empty
[ "$(emptysql "SELECT count(*) FROM schema_migrations")" = 0 ] || fail "empty dir: rows in schema_migrations"
no_secret
# a directory that does not exist is an empty set too
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate up --dir no-such-dir
expect_grep 'nothing to apply' err
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate status --exit-code --dir no-such-dir
# a re-run prints no server NOTICEs (ALTER TABLE ... IF NOT EXISTS, skipping)
expect_exit 0 "$OPSCTL" --db "$empty_url" migrate up --dir no-such-dir
expect_no_grep 'NOTICE' err

# ---- the layout -----------------------------------------------------------
mkdir migrations
cat >migrations/001_create_users.sql <<'SQL'
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO users (email) VALUES ('a@example.com');
SQL
cat >migrations/002_add_name.sql <<'SQL'
ALTER TABLE users ADD COLUMN name text;
SQL
cat >migrations/003_orders.sql <<'SQL'
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users(id));
SQL
mkdir migrations/rollback
printf 'DROP TABLE users;\n' >migrations/rollback/001_create_users.down.sql
printf 'ALTER TABLE users DROP COLUMN name;\n' >migrations/rollback/002_add_name.down.sql
printf 'DROP TABLE orders;\n' >migrations/rollback/003_orders.down.sql
# not migrations: wrong names, stray files
printf 'SELECT 1/0;\n' >migrations/README.sql
printf 'SELECT 1/0;\n' >migrations/abc_x.sql
printf 'SELECT 1/0;\n' >migrations/004_notes.txt

# status before anything ran: all pending, no table yet
expect_exit 0 om migrate status
expect_grep '^001 +create_users +pending' out
expect_grep '^002 +add_name +pending' out
expect_grep '^003 +orders +pending' out
expect_no_grep 'README|abc|notes' out
expect_grep '0 applied, 3 pending' err
expect_grep 'no migration table yet' err
expect_exit 9 om migrate status --exit-code
no_table schema_migrations

# --dry-run (-n): the plan, and nothing changes (the table is not even created)
expect_exit 0 om -n migrate
expect_grep '^would apply 001_create_users.sql$' out
expect_grep '^would apply 003_orders.sql$' out
no_table schema_migrations
no_table users
expect_exit 0 om --dry-run --output json migrate up
expect_json out 'd["plan"] == ["001_create_users.sql", "002_add_name.sql", "003_orders.sql"] and d["dry_run"] is True'
no_table schema_migrations

# up --to 2: only 001 and 002
expect_exit 0 om migrate up --to 2
expect_grep '^applied 001_create_users.sql' out
expect_grep '^applied 002_add_name.sql' out
expect_no_grep '003' out
expect_sql "SELECT version || ' ' || script_name FROM schema_migrations ORDER BY id" \
	"001 001_create_users.sql
002 002_add_name.sql"
no_table orders
expect_exit 9 om migrate status --exit-code
expect_grep '^003 +orders +pending' out

# everything; the bookkeeping columns are filled
expect_exit 0 om --output json migrate
expect_json out 'd["command"] == "migrate up" and [m["script"] for m in d["applied"]] == ["003_orders.sql"]'
expect_json out 'd["applied"][0]["version"] == "003" and d["exit"] == 0 and "ms" in d["applied"][0]'
expect_json out 'd["table"] == "schema_migrations" and d["dir"] == "migrations"'
no_secret
sha=$(sha256sum migrations/003_orders.sql | cut -d' ' -f1)
expect_sql "SELECT checksum FROM schema_migrations WHERE version = '003'" "$sha"
expect_sql "SELECT count(*) FROM schema_migrations WHERE checksum ~ '^[0-9a-f]{64}\$' AND execution_ms >= 0 AND applied_by LIKE '%@%' AND executed_at IS NOT NULL" 3
expect_sql "SELECT count(*) FROM users" 1
# up again: nothing to do, nothing re-run, no server NOTICEs
expect_exit 0 om migrate
expect_grep 'nothing to apply' err
expect_no_grep 'NOTICE' err
expect_sql "SELECT count(*) FROM users" 1
expect_sql "SELECT count(*) FROM schema_migrations" 3
expect_exit 0 om migrate status --exit-code
expect_grep '^001 +create_users +applied' out
expect_grep '^003 +orders +applied' out
expect_grep '3 applied, 0 pending' err
expect_exit 0 om -n migrate
expect_grep 'nothing to apply' err

# status --output json: every field
expect_exit 0 om --output json migrate status
expect_json out 'd["command"] == "migrate status" and d["applied"] == 3 and d["pending"] == 0 and d["problems"] == 0'
expect_json out '[m["version"] for m in d["migrations"]] == ["001", "002", "003"]'
expect_json out 'all(m["state"] == "applied" for m in d["migrations"])'
expect_json out 'd["migrations"][2]["script"] == "003_orders.sql" and d["migrations"][2]["file"] == "migrations/003_orders.sql"'
expect_json out 'd["migrations"][2]["down_file"] == "migrations/rollback/003_orders.down.sql"'
expect_json out 'd["migrations"][2]["checksum"] == "'"$sha"'"'
expect_json out 'all(k in m for m in d["migrations"] for k in ("applied_at", "execution_ms", "applied_by"))'
no_secret
printf 'SELECT 1;\n' >migrations/004_later.sql
expect_exit 9 om --output json migrate status --exit-code
expect_json out 'd["pending"] == 1 and d["migrations"][3]["state"] == "pending" and d["exit"] == 9'
expect_json out '"applied_at" not in d["migrations"][3]'
rm migrations/004_later.sql

# ---- migrate new ----------------------------------------------------------
expect_exit 0 om migrate new add_index
expect_grep '^migrations/004_add_index\.sql$' out
expect_grep '^migrations/rollback/004_add_index\.down\.sql$' out
[ -f migrations/004_add_index.sql ] || fail "migrate new did not create the up file"
[ -f migrations/rollback/004_add_index.down.sql ] || fail "migrate new did not create the down file"
# the new (comment-only) file is pending and would be refused as empty
expect_exit 3 om migrate
expect_grep 'migrations/004_add_index\.sql.*no SQL statements' err
expect_sql "SELECT count(*) FROM schema_migrations" 3
printf 'CREATE TABLE idx_demo (id int);\n' >>migrations/004_add_index.sql
printf 'DROP TABLE idx_demo;\n' >>migrations/rollback/004_add_index.down.sql
expect_exit 0 om migrate
expect_sql "SELECT count(*) FROM schema_migrations" 4

# after 009 comes 010, zero-padded like the existing ones
mkdir nine nine/rollback
printf 'SELECT 1;\n' >nine/009_nine.sql
expect_exit 0 om --output json migrate new "Add Users Table" --dir nine
expect_json out 'd["up_file"] == "nine/010_add_users_table.sql" and d["down_file"] == "nine/rollback/010_add_users_table.down.sql"'
if [ ! -f nine/010_add_users_table.sql ] || [ ! -f nine/rollback/010_add_users_table.down.sql ]; then
	fail "migrate new: 010 files missing"
fi
# four digits stay four digits
mkdir four
printf 'SELECT 1;\n' >four/0041_x.sql
expect_exit 0 om migrate new y --dir four
expect_grep '^four/0042_y\.sql$' out
# timestamps: the next one is a timestamp too
mkdir stamps
printf 'SELECT 1;\n' >stamps/20261121093000_first.sql
expect_exit 0 om migrate new second --dir stamps
expect_grep '^stamps/[0-9]{14}_second\.sql$' out
stamp=$(sed -n 's|^stamps/\([0-9]*\)_second\.sql$|\1|p' out)
[ "${stamp:-0}" -gt 20261121093000 ] || fail "migrate new: timestamp $stamp is not after 20261121093000"
[ -f "stamps/rollback/${stamp}_second.down.sql" ] || fail "migrate new: timestamp down file missing"
# no directory yet: 001 and the directories are created
expect_exit 0 om migrate new first --dir fresh
expect_grep '^fresh/001_first\.sql$' out
[ -d fresh/rollback ] || fail "migrate new did not create DIR/rollback"
# bad names
expect_exit 2 om migrate new '!!!' --dir fresh
expect_grep 'invalid migration name' err
expect_exit 2 om migrate new '' --dir fresh
expect_exit 2 om migrate new --dir fresh
expect_exit 2 om migrate new a b --dir fresh
for f in fresh/*; do
	case $f in
	fresh/001_first.sql | fresh/rollback) ;;
	*) fail "a refused name left a file: $f" ;;
	esac
done
# a name cannot leave the directory
expect_exit 0,2 om migrate new '../../escape' --dir fresh
[ -z "$(find . -name '*escape*' -not -path './fresh/*')" ] ||
	fail "migrate new wrote outside the directory: $(find . -name '*escape*')"

# timestamps as versions apply in numeric order, and mix with nothing else
mkdir ts
printf 'CREATE TABLE ts_log (v text);\n' >ts/20261121093000_a.sql
printf "INSERT INTO ts_log VALUES ('b');\n" >ts/20261121100000_b.sql
printf "INSERT INTO ts_log VALUES ('c');\n" >ts/20270101000000_c.sql
expect_exit 0 om migrate --dir ts
expect_sql "SELECT string_agg(v, ',') FROM ts_log" "b,c"
expect_sql "SELECT string_agg(version, ',' ORDER BY id) FROM schema_migrations WHERE length(version) = 14" \
	"20261121093000,20261121100000,20270101000000"
expect_exit 0 om migrate status --dir ts
expect_grep '^20270101000000 +c +applied' out

# ---- duplicate versions: exit 3 naming both files -----------------------
mkdir dup
printf 'CREATE TABLE dup_a (id int);\n' >dup/001_a.sql
printf 'CREATE TABLE dup_b (id int);\n' >dup/01_b.sql
for sub in "migrate" "migrate status" "migrate validate" "-n migrate"; do
	# shellcheck disable=SC2086
	expect_exit 3 om $sub --dir dup
	expect_grep 'dup/001_a\.sql' err
	expect_grep 'dup/01_b\.sql' err
done
no_table dup_a
no_table dup_b

# ---- baseline -------------------------------------------------------------
createdb() {
	pg_psql "CREATE DATABASE $1" >/dev/null || fail "CREATE DATABASE $1"
}
createdb base
base_url="postgresql://postgres:$pw@127.0.0.1:$TEST_PG_PORT/base"
basesql() {
	"$TEST_PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d base -c "$1"
}
mkdir bl
printf 'CREATE TABLE bl1 (id int);\n' >bl/001_one.sql
printf 'CREATE TABLE bl2 (id int);\n' >bl/002_two.sql
printf 'CREATE TABLE bl3 (id int);\n' >bl/003_three.sql
expect_exit 0 "$OPSCTL" --db "$base_url" -n migrate baseline 2 --dir bl
expect_grep 'would mark 001_one.sql' out
expect_grep 'would mark 002_two.sql' out
expect_no_grep '003' out
[ "$(basesql "SELECT to_regclass('schema_migrations') IS NULL")" = t ] || fail "baseline --dry-run created the table"
expect_exit 0 "$OPSCTL" --db "$base_url" migrate baseline 2 --dir bl
[ "$(basesql "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")" = "001,002" ] ||
	fail "baseline 2 did not mark 001 and 002: $(basesql 'TABLE schema_migrations')"
[ "$(basesql "SELECT count(*) FROM pg_tables WHERE tablename IN ('bl1', 'bl2')")" = 0 ] ||
	fail "baseline ran the files it marked"
expect_exit 9 "$OPSCTL" --db "$base_url" migrate status --exit-code --dir bl
expect_grep '^001 +one +applied' out
expect_grep '^003 +three +pending' out
expect_exit 0 "$OPSCTL" --db "$base_url" migrate --dir bl
expect_grep 'applied 003_three.sql' out
expect_no_grep '001|002' out
[ "$(basesql "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bl_'")" = 1 ] || fail "after baseline: only bl3 should exist"
# baseline on a database that already has migrations is refused
expect_exit 1 "$OPSCTL" --db "$base_url" migrate baseline 3 --dir bl
expect_grep 'already has 3 applied' err
expect_exit 2 "$OPSCTL" --db "$base_url" migrate baseline --dir bl
expect_exit 2 "$OPSCTL" --db "$base_url" migrate baseline v2 --dir bl
expect_grep "invalid version 'v2'" err

# ---- usage ----------------------------------------------------------------
expect_exit 2 om migrate frobnicate
expect_grep "unknown subcommand 'migrate frobnicate'" err
expect_exit 2 om migrate status extra
expect_exit 2 om migrate status --to 3
expect_exit 2 om migrate up --exit-code
expect_exit 2 om migrate --no-such-option
expect_exit 2 om migrate up --to abc
expect_grep "invalid version 'abc'" err
expect_exit 2 om rollback
expect_grep 'needs --schema' err
expect_exit 0 om migrate -h
expect_grep 'opsctl migrate' out
expect_sql "SELECT count(*) FROM schema_migrations" 7

# ---- the database unreachable: exit 4 --------------------------------------
closed=$(free_port)
bad_url="postgresql://postgres:$pw@127.0.0.1:$closed/postgres"
for sub in "migrate" "migrate status" "migrate validate" "--yes migrate down" "migrate repair"; do
	# shellcheck disable=SC2086
	expect_exit 4 "$OPSCTL" --db "$bad_url" $sub
	no_secret
done
expect_exit 4 "$OPSCTL" --db "$bad_url" --output json migrate up
expect_json out 'd["exit"] == 4 and "error" in d'
no_secret
# status and validate answer in JSON too, like up/down do
expect_exit 4 "$OPSCTL" --db "$bad_url" --output json migrate status
expect_json out 'd["exit"] == 4 and "error" in d'
expect_exit 4 "$OPSCTL" --db "$bad_url" --output json migrate validate
expect_json out 'd["exit"] == 4 and "error" in d'
no_secret

# ---- history.jsonl --------------------------------------------------------
createdb hist
mkdir hist
cat >hist/opsctl.conf <<CONF
[app]
name = histapp
state_dir = state

[database]
url = postgresql://postgres:$pw@127.0.0.1:$TEST_PG_PORT/hist

[migrations]
dir = m
CONF
mkdir hist/m
printf 'CREATE TABLE h1 (id int);\n' >hist/m/001_h1.sql
printf 'CREATE TABLE h2 (id int);\n' >hist/m/002_h2.sql
expect_exit 0 opsctl -c hist/opsctl.conf migrate
hf=hist/state/history.jsonl
[ -f "$hf" ] || fail "no history.jsonl in [app] state_dir (relative to the config)"
[ "$(wc -l <"$hf")" -eq 1 ] || fail "expected 1 history line, got $(wc -l <"$hf")"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "migrate up" and d["outcome"] == "ok" and d["exit"] == 0'
expect_json last.json '[m["version"] for m in d["migrations"]] == ["001", "002"]'
expect_json last.json 'all("ms" in m and "script" in m for m in d["migrations"]) and "duration_ms" in d'
expect_json last.json 'all(k in d for k in ("time", "user", "host", "pid", "database"))'
# read-only commands and dry runs leave no line
expect_exit 0 opsctl -c hist/opsctl.conf migrate status
expect_exit 0 opsctl -c hist/opsctl.conf migrate validate
printf 'CREATE TABLE h3 (id int);\n' >hist/m/003_h3.sql
expect_exit 0 opsctl -c hist/opsctl.conf -n migrate
[ "$(wc -l <"$hf")" -eq 1 ] || fail "status/validate/--dry-run wrote history lines"
# a failed run is recorded with its error
printf 'CREATE TABLE h3 (id int);\nSELECT 1/0;\n' >hist/m/003_h3.sql
expect_exit 1 opsctl -c hist/opsctl.conf migrate
tail -n 1 "$hf" >last.json
expect_json last.json 'd["outcome"] == "failed" and d["exit"] == 1 and "003_h3.sql:2" in d["error"]'
expect_json last.json 'd["migrations"] == []'
printf 'CREATE TABLE h3 (id int);\n' >hist/m/003_h3.sql
mkdir hist/m/rollback
printf 'DROP TABLE h3;\n' >hist/m/rollback/003_h3.down.sql
expect_exit 0 opsctl -c hist/opsctl.conf migrate
expect_exit 0 opsctl -c hist/opsctl.conf --yes migrate down
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "migrate down" and d["outcome"] == "ok" and [m["version"] for m in d["migrations"]] == ["003"]'
[ "$(wc -l <"$hf")" -eq 4 ] || fail "expected 4 history lines, got $(wc -l <"$hf")"
expect_no_grep "$pw" "$hf"
# without [app] state_dir: $OPSCTL_STATE_DIR (the harness points it into the scratch dir)
sed -i '/^state_dir/d' hist/opsctl.conf
expect_exit 0 opsctl -c hist/opsctl.conf migrate
[ -f "$OPSCTL_STATE_DIR/history.jsonl" ] || fail "no history.jsonl in \$OPSCTL_STATE_DIR"
expect_json <(tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl") 'd["command"] == "migrate up"'

test_done
