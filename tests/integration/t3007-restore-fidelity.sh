#!/usr/bin/env bash
# A restore gives back exactly what was dumped, whatever the schema holds
# (issue 4): names with quotes, spaces and a newline, generated and identity
# columns, a partitioned table, an empty table, sequences moved on, a large
# object, a materialized view, row security, triggers, unlogged tables, and
# text with tabs, backslashes and newlines, and one table far bigger than
# the rest. Each format (directory, whose
# table data opsctl streams into psql itself; custom; plain), the directory
# one with 1, 2 and 3 jobs, is restored beside the source and compared with
# it: every row, sequence values, large objects, and pg_dump --schema-only.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
PG_DUMP=$TEST_PG_BINDIR/pg_dump

pg_psql "CREATE DATABASE src" >/dev/null || fail "CREATE DATABASE src"
pg_dbsql src "
	CREATE SCHEMA \"We ird\";
	CREATE TABLE \"We ird\".\"ta\"\"ble
nl\" (id int PRIMARY KEY, \"col
nl\" text, \"Tab	Col\" text);
	INSERT INTO \"We ird\".\"ta\"\"ble
nl\" SELECT g, 'line1' || chr(10) || 'line2 \\ back' || chr(9) || 'tab', 'x' FROM generate_series(1, 300) g;
	CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, price numeric(10,2),
		qty int, total numeric GENERATED ALWAYS AS (price * qty) STORED, tags text[], doc jsonb, raw bytea);
	INSERT INTO items (price, qty, tags, doc, raw) SELECT g / 7.0, g % 13, ARRAY['a' || g, 'b\"q'],
		jsonb_build_object('k', g, 's', 'quote\" back\\\\ slash'), decode(md5(g::text), 'hex')
		FROM generate_series(1, 5000) g;
	CREATE TABLE events (id bigserial, at date NOT NULL, what text) PARTITION BY RANGE (at);
	CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
	CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
	INSERT INTO events (at, what) SELECT date '2025-06-01' + (g % 400), 'e' || g FROM generate_series(1, 4000) g;
	CREATE TABLE empty_one (a int, b text);
	CREATE UNLOGGED TABLE scratchpad AS SELECT g AS n FROM generate_series(1, 50) g;
	CREATE SEQUENCE counter START 100;
	SELECT nextval('counter') FROM generate_series(1, 42);
	CREATE TABLE owned (id int REFERENCES items (id), note text);
	INSERT INTO owned SELECT g, 'n' || g FROM generate_series(1, 100) g;
	CREATE MATERIALIZED VIEW item_totals AS SELECT qty, sum(total) AS s FROM items GROUP BY qty;
	CREATE TABLE secret (id int, owner text);
	INSERT INTO secret SELECT g, 'u' || (g % 3) FROM generate_series(1, 60) g;
	ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
	CREATE POLICY only_u1 ON secret USING (owner = 'u1');
	CREATE FUNCTION no_insert() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''no''; END';
	CREATE TRIGGER guard BEFORE INSERT ON owned FOR EACH ROW EXECUTE FUNCTION no_insert();
	SELECT lo_from_bytea(424242, convert_to(repeat('large object ', 5000), 'UTF8'));
	CREATE INDEX items_doc ON items USING gin (doc);
	-- one table far bigger than the rest (one lane loads it alone), a
	-- foreign key to it and a materialized view of it
	CREATE TABLE big (id int PRIMARY KEY, payload text);
	INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 300000) g;
	CREATE TABLE big_refs (big_id int REFERENCES big (id));
	INSERT INTO big_refs SELECT g * 7 FROM generate_series(1, 1000) g;
	CREATE MATERIALIZED VIEW big_count AS SELECT count(*) AS n FROM big;
" >/dev/null || fail "seeding src"

cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url src)

[backup]
dir = backups
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
schema() { # DB: the schema as pg_dump prints it, without the lines that differ by design
	"$PG_DUMP" --schema-only -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres "$1" |
		grep -v -e '^\\restrict' -e '^\\unrestrict' -e '^-- Dumped'
}
extras() { # DB: what a row fingerprint does not show
	pg_dbsql "$1" "SELECT last_value || '/' || is_called FROM counter" &&
		pg_dbsql "$1" "SELECT last_value FROM items_id_seq" &&
		pg_dbsql "$1" "SELECT last_value FROM events_id_seq" &&
		pg_dbsql "$1" "SELECT md5(lo_get(424242))" &&
		pg_dbsql "$1" "SELECT count(*) FROM item_totals" &&
		pg_dbsql "$1" "SELECT relrowsecurity FROM pg_class WHERE relname = 'secret'" &&
		pg_dbsql "$1" "SELECT n FROM big_count"
}
src_rows=$(pg_db_fingerprint src)
src_schema=$(schema src)
src_extras=$(extras src)
[ "$(pg_dbsql src "SELECT count(*) FROM \"We ird\".\"ta\"\"ble
nl\"")" = 300 ] || fail "the source table with a newline in its name"

same_as_src() { # DB WHAT
	TEST_CHECKS=$((TEST_CHECKS + 3))
	[ "$(pg_db_fingerprint "$1")" = "$src_rows" ] ||
		fail "$2: the rows differ:
$(diff <(echo "$src_rows") <(pg_db_fingerprint "$1"))"
	[ "$(extras "$1")" = "$src_extras" ] || fail "$2: sequences, large object or view differ: $(extras "$1" | tr '\n' ' ') vs $(echo "$src_extras" | tr '\n' ' ')"
	[ "$(schema "$1")" = "$src_schema" ] ||
		fail "$2: the schema differs:
$(diff <(echo "$src_schema") <(schema "$1") | head -n 40)"
}

expect_exit 0 ob backup
dir_id=$(last_id)
[ -d "backups/$dir_id/db" ] || fail "the default backup is not a directory dump"
for jobs in 1 2 3; do
	expect_exit 0 ob restore "$dir_id" --target-db "dir_j$jobs" --jobs "$jobs"
	same_as_src "dir_j$jobs" "directory, --jobs $jobs"
done
# the trigger that refuses inserts exists after the restore (made after the data)
expect_exit 1 env PGPASSWORD="$TEST_PG_PASSWORD" "$TEST_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
	-h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -d dir_j2 -c "INSERT INTO owned VALUES (1, 'x')"
expect_grep "ERROR: +no" err

sleep 1
expect_exit 0 ob backup --format custom
cus_id=$(last_id)
expect_exit 0 ob restore "$cus_id" --target-db custom_j1
same_as_src custom_j1 "custom"
expect_exit 0 ob restore "$cus_id" --target-db custom_j2 --jobs 2
same_as_src custom_j2 "custom, --jobs 2"

sleep 1
expect_exit 0 ob backup --format plain
pl_id=$(last_id)
expect_exit 0 ob restore "$pl_id" --target-db plain
same_as_src plain "plain"

# the restore test (a scratch database) of each passes and leaves nothing
for id in "$dir_id" "$cus_id" "$pl_id"; do
	expect_exit 0 ob backup verify --restore-test "$id"
done
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'opsctl_restore_test_%'" 0
[ -z "$(ls -A backups | grep '^\.')" ] || fail "work directories left in backups/: $(ls -A backups | tr '\n' ' ')"

# ---- the row counts of a directory set: what each COPY loaded (the big
# table's summed over the connections it was split over), and count(*) for a
# partitioned table's parent, which no COPY fills; a manifest that says
# otherwise is exit 5 either way, nothing left behind
set_rows() { # SET SCHEMA TABLE ROWS: a copy of dir_id whose manifest says ROWS
	rm -rf "backups/$1" && cp -a "backups/$dir_id" "backups/$1" && rm -f "backups/$1/verified.json"
	"$TEST_PYTHON" - "backups/$1/manifest.json" "$2" "$3" "$4" <<'EOF'
import json, sys
path, schema, name, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
m = json.load(open(path))
hit = [t for t in m["tables"] if t["schema"] == schema and t["name"] == name]
assert len(hit) == 1, hit
hit[0]["rows"] = rows
json.dump(m, open(path, "w"), indent=1)
EOF
}
set_rows shop-20250101T000000Z public big 299999
for jobs in 1 2; do
	expect_exit 5 ob restore shop-20250101T000000Z --target-db miscounted --jobs "$jobs"
	expect_grep 'restored table public\.big has 300000 rows, the backup had 299999' err
done
set_rows shop-20250102T000000Z public events 1
expect_exit 5 ob restore shop-20250102T000000Z --target-db miscounted --jobs 2
expect_grep 'restored table public\.events has 0 rows, the backup had 1' err
set_rows shop-20250103T000000Z public events_2026 4001
expect_exit 5 ob restore shop-20250103T000000Z --target-db miscounted --jobs 2
expect_grep 'restored table public\.events_2026 has [0-9]+ rows, the backup had 4001' err
expect_sql "SELECT count(*) FROM pg_database WHERE datname = 'miscounted'" 0
[ -z "$(ls -A backups | grep '^\.')" ] || fail "work directories left in backups/: $(ls -A backups | tr '\n' ' ')"

test_done
