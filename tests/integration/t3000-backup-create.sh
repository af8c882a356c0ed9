#!/usr/bin/env bash
# backup create (DESIGN.md sections 5 and 6 "backup / restore", issue 4):
# the set's layout DIR/APP-YYYYmmddTHHMMSSZ/, manifest.json (sha256 and size of
# every file as sha256sum/stat see them, server version, per-table row counts
# equal to count(*), times), every format x compression restored BY HAND with
# the standard tools (gunzip -c | psql, zstd -dc | pg_restore, ...), the paths
# archive, the output line, --output json, -q, --dry-run, backup list, the
# metrics file and history.jsonl; pg_dump gets no password on its command line.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD
for tool in zstd gzip sha256sum; do
	command -v "$tool" >/dev/null || skip_all "no $tool"
done
PSQL=$TEST_PG_BINDIR/psql
PG_RESTORE=$TEST_PG_BINDIR/pg_restore

seed() { # DB
	pg_psql "CREATE DATABASE $1" >/dev/null || fail "CREATE DATABASE $1"
	pg_dbsql "$1" "
		CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
		INSERT INTO customers (name, email) SELECT 'c' || g, 'c' || g || '@example.com' FROM generate_series(1, 50) g;
		CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers,
			total numeric(10,2), doc jsonb, note text);
		INSERT INTO orders (customer_id, total, doc, note)
			SELECT 1 + g % 50, g * 1.25, jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)),
			       E'line\ttab ''quote'' \\\\ back ' || g FROM generate_series(1, 300) g;
		CREATE INDEX orders_doc ON orders USING gin (doc);
		CREATE TABLE audit (id int);
		CREATE SCHEMA sales;
		CREATE TABLE sales.\"Line Items\" (\"Order\" int, qty int);
		INSERT INTO sales.\"Line Items\" SELECT g, g * 2 FROM generate_series(1, 7) g;
		CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;" >/dev/null ||
		fail "seeding $1"
}
newdb() {
	pg_psql "CREATE DATABASE $1" >/dev/null || fail "CREATE DATABASE $1"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }
# the only set created by the last command: its id from the output line
last_id() { sed -n 's/^\(shop-[0-9]\{8\}T[0-9]\{6\}Z\(-[0-9]*\)\?\)  .*/\1/p' out; }
no_secret() { expect_no_grep "$pw" out err; }
# manifest.json's tables as "schema.name|rows" lines, sorted
manifest_tables() {
	"$TEST_PYTHON" -c '
import json, sys
m = json.load(open(sys.argv[1]))
for t in sorted(m["tables"], key=lambda t: (t["schema"], t["name"])):
    print("%s.%s|%d" % (t["schema"], t["name"], t["rows"]))' "$1"
}
db_counts() { pg_db_fingerprint "$1" | cut -d'|' -f1,2; }

seed shop
mkdir -p uploads/img
printf 'hello\n' >uploads/a.txt
head -c 20000 /dev/urandom >uploads/img/photo.bin
ln -s a.txt uploads/link
# pg_dump through a wrapper that records its command line and environment
cat >pg_dump_spy <<EOF
#!/bin/sh
printf '%s\n' "\$*" >>"$TEST_SCRATCH/pg_dump.args"
env | grep -c '^PGPASSWORD=' >>"$TEST_SCRATCH/pg_dump.env"
exec "$TEST_PG_BINDIR/pg_dump" "\$@"
EOF
chmod +x pg_dump_spy
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url shop)

[backup]
dir = backups
paths = uploads
pg_dump = $TEST_SCRATCH/pg_dump_spy
metrics_file = metrics/opsctl_backup.prom
CONF
mkdir metrics
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }

# ---- --dry-run touches nothing -----------------------------------------------
expect_exit 0 ob -n backup
expect_grep "would back up the database and the paths into '.*backups' \(directory, zstd\)" out
[ ! -e backups ] || fail "backup --dry-run created the backup directory"
[ ! -e "$OPSCTL_STATE_DIR/history.jsonl" ] || fail "backup --dry-run wrote a history line"
[ ! -e metrics/opsctl_backup.prom ] || fail "backup --dry-run wrote the metrics file"

# ---- the default: directory format, zstd ------------------------------------
t0=$(date -u +%s)
expect_exit 0 ob backup
t1=$(date -u +%s)
no_secret
expect_grep '^shop-[0-9]{8}T[0-9]{6}Z  [0-9.]+ (B|KiB|MiB)  [0-9]+\.[0-9]s  [0-9]+\.[0-9]x$' out
[ "$(wc -l <out)" -eq 1 ] || fail "backup printed more than one line on stdout"
id=$(last_id)
[ -n "$id" ] || fail "no id in the output"
set=backups/$id
[ -d "$set" ] || fail "no set directory $set"
# exactly the dump directory, the paths archive and the manifest; nothing temporary
expect_exit 0 ls -A "$set"
[ "$(tr '\n' ' ' <out)" = "db files.tar.zst manifest.json " ] ||
	fail "unexpected files in the set: $(tr '\n' ' ' <out)"
[ "$(ls -A backups)" = "$id" ] || fail "unexpected entries in backups/: $(ls -A backups | tr '\n' ' ')"
[ "$(stat -c %a "$set/manifest.json")" = 600 ] || say "note: manifest mode is $(stat -c %a "$set/manifest.json")"
# db/: pg_dump's toc.dat and one zstd file per table with data; no plain data file left
(cd "$set/db" && ls -A) >dbfiles
expect_grep '^toc\.dat$' dbfiles
[ "$(grep -c '^[0-9]*\.dat\.zst$' dbfiles)" -ge 4 ] || fail "expected a .dat.zst per table: $(tr '\n' ' ' <dbfiles)"
[ "$(grep -v -c -e '^toc\.dat$' -e '^[0-9]*\.dat\.zst$' dbfiles)" -eq 0 ] || fail "unexpected files in db/: $(tr '\n' ' ' <dbfiles)"

# the manifest: every field of the contract
m=$set/manifest.json
expect_json "$m" 'd["id"] == "'"$id"'" and d["app"] == "shop" and d["database"] == "shop"'
expect_json "$m" 'd["tool"].startswith("opsctl ") and d["format"] == "directory" and d["compression"] == "zstd"'
expect_json "$m" 'd["server_version"] == "'"$(pg_psql 'SHOW server_version')"'"'
expect_json "$m" 'all(isinstance(d[k], int) and d[k] >= 0 for k in ("duration_ms", "dump_bytes", "size_bytes"))'
ts_re='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
expect_json "$m" '__import__("re").match(r"'"$ts_re"'", d["started_at"]) and __import__("re").match(r"'"$ts_re"'", d["finished_at"])'
expect_json "$m" '__import__("calendar").timegm(__import__("time").strptime(d["started_at"], "%Y-%m-%dT%H:%M:%SZ")) >= '"$t0"
expect_json "$m" '__import__("calendar").timegm(__import__("time").strptime(d["finished_at"], "%Y-%m-%dT%H:%M:%SZ")) <= '"$t1"
expect_json "$m" 'd["started_at"] <= d["finished_at"]'
# the id is the start time
expect_json "$m" 'd["id"] == "shop-" + d["started_at"].replace("-", "").replace(":", "")'
files="$(sed 's|^|db/|' dbfiles | sort | tr '\n' ' ')files.tar.zst"
expect_json "$m" '" ".join(f["name"] for f in d["files"]) == "'"$files"'"'
expect_json "$m" 'all(f["role"] == ("paths" if f["name"] == "files.tar.zst" else "database") for f in d["files"])'
total=0
for f in $files; do
	expect_json "$m" '[x for x in d["files"] if x["name"] == "'"$f"'"][0]["sha256"] == "'"$(sha "$set/$f")"'"'
	expect_json "$m" '[x for x in d["files"] if x["name"] == "'"$f"'"][0]["size"] == '"$(fsize "$set/$f")"
	total=$((total + $(fsize "$set/$f")))
done
expect_json "$m" 'd["size_bytes"] == '"$total"
expect_json "$m" 'd["dump_bytes"] == '"$(( $(cat "$set"/db/*.zst | zstd -dc | wc -c) + $(fsize "$set/db/toc.dat") ))"
expect_json "$m" 'd["paths"] == ["'"$TEST_SCRATCH/uploads"'"]'
# per-table row counts: every user table, equal to count(*)
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(manifest_tables "$m")" = "$(db_counts shop)" ] ||
	fail "manifest row counts differ from count(*):
$(diff <(manifest_tables "$m") <(db_counts shop))"
manifest_tables "$m" >tables.txt
expect_grep '^sales\.Line Items\|7$' tables.txt
expect_grep '^public\.audit\|0$' tables.txt
expect_no_grep "$pw" "$m"

# the dump is pg_dump's directory format with every data file in standard
# zstd: decompress a copy, pg_restore -j restores it by hand
for z in "$set"/db/*.zst; do
	expect_exit 0 zstd -t "$z"
done
cp -r "$set/db" handdir
zstd -d -q --rm handdir/*.zst || fail "zstd -d of the data files failed"
newdb hand_directory
"$PG_RESTORE" --exit-on-error -j 2 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -d hand_directory handdir \
	2>hand.err || { show_file hand.err hand.err; fail "pg_restore of the decompressed directory failed"; }
expect_same_data shop hand_directory
expect_dbsql hand_directory "SELECT count(*) FROM big_orders" "$(pg_dbsql shop 'SELECT count(*) FROM big_orders')"
expect_dbsql hand_directory "SELECT indexname FROM pg_indexes WHERE indexname = 'orders_doc'" orders_doc

# the paths archive: a tar (zstd) of the configured path, relative names
zstd -dc "$set/files.tar.zst" | tar -tvf - >tar.list 2>&1 || { show_file tar.list tar.list; fail "tar cannot read files.tar.zst"; }
rel=${TEST_SCRATCH#/}
expect_grep " $rel/uploads/a\.txt$" tar.list
expect_grep " $rel/uploads/img/photo\.bin$" tar.list
expect_grep " $rel/uploads/link -> a\.txt$" tar.list
expect_no_grep ' /' tar.list
mkdir untar && zstd -dc "$set/files.tar.zst" | tar -xf - -C untar || fail "tar -x failed"
expect_exit 0 diff -r --no-dereference uploads "untar/$rel/uploads"

# pg_dump: the password never on its command line (nor a URL)
expect_no_grep "$pw|postgresql://" pg_dump.args
expect_grep '--format=directory' pg_dump.args
expect_grep '--jobs=[0-9]+' pg_dump.args
expect_grep '--snapshot=' pg_dump.args

# backup list
expect_exit 0 ob backup list
expect_grep '^ID +TIME +SIZE +FORMAT +TABLES +VERIFIED' out
expect_grep "^$id +[0-9T:-]+Z +[0-9.]+ (B|KiB|MiB) +directory\+zstd +4 +no$" out

# the metrics file after a good run
prom=metrics/opsctl_backup.prom
fin=$("$TEST_PYTHON" -c 'import json,sys,calendar,time; print(calendar.timegm(time.strptime(json.load(open(sys.argv[1]))["finished_at"], "%Y-%m-%dT%H:%M:%SZ")))' "$m")
size=$("$TEST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["size_bytes"])' "$m")
expect_grep '^opsctl_backup_success\{app="shop"\} 1$' "$prom"
expect_grep "^opsctl_backup_last_success_timestamp_seconds\{app=\"shop\"\} $fin\$" "$prom"
expect_grep "^opsctl_backup_size_bytes\{app=\"shop\"\} $size\$" "$prom"
expect_grep '^opsctl_backup_duration_seconds\{app="shop"\} [0-9]+\.[0-9]+$' "$prom"
expect_grep '^# TYPE opsctl_backup_success gauge$' "$prom"
[ -z "$(find metrics -name '*.tmp*' -o -name '.*' -type f)" ] || fail "temporary files next to the metrics file"

# history.jsonl: one line for the run
hf=$OPSCTL_STATE_DIR/history.jsonl
[ "$(wc -l <"$hf")" -eq 1 ] || fail "expected 1 history line, got $(wc -l <"$hf")"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "backup create" and d["outcome"] == "ok" and d["exit"] == 0'
expect_json last.json 'd["id"] == "'"$id"'" and d["size_bytes"] == '"$size"' and d["duration_ms"] >= 0'
expect_json last.json 'all(k in d for k in ("time", "user", "host", "pid"))'

# the output line's ratio is dump bytes / set bytes
ratio=$("$TEST_PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print("%.1fx" % (m["dump_bytes"] / m["size_bytes"]))' "$m")
expect_exit 0 ob --output json backup list
expect_json out 'len(d["backups"]) == 1'

# ---- every format x compression, restored by hand with the standard tool -----
sleep 1 # distinct ids are not required, but keep the test readable
i=0
for format in directory custom plain; do
	for comp in none gzip zstd; do
		i=$((i + 1))
		expect_exit 0 ob backup --format "$format" --compression "$comp"
		cid=$(last_id)
		cset=backups/$cid
		case $comp in none) suf= ;; gzip) suf=.gz ;; zstd) suf=.zst ;; esac
		case $comp in
		none) cat_cmd=(cat) ;;
		gzip) cat_cmd=(gunzip -c); expect_exit 0 gzip -t "$cset/files.tar.gz" ;;
		zstd) cat_cmd=(zstd -dc) ;;
		esac
		[ -f "$cset/files.tar$suf" ] || fail "$format/$comp: no files.tar$suf"
		expect_json "$cset/manifest.json" 'd["format"] == "'"$format"'" and d["compression"] == "'"$comp"'"'
		# the archive is readable by tar after the same decompressor
		"${cat_cmd[@]}" "$cset/files.tar$suf" | tar -tf - >/dev/null 2>&1 || fail "$format/$comp: tar cannot read files.tar$suf"
		db=hand_${format}_$comp
		newdb "$db"
		if [ "$format" = directory ]; then
			# pg_restore reads .dat and .dat.gz itself; .zst files are decompressed first
			[ -f "$cset/db/toc.dat" ] || fail "$format/$comp: no db/toc.dat"
			ls "$cset/db" | grep -q "^[0-9]*\.dat$suf\$" || fail "$format/$comp: no db/*.dat$suf"
			rm -rf handdir && cp -r "$cset/db" handdir
			[ "$comp" != zstd ] || zstd -d -q --rm handdir/*.zst || fail "$format/$comp: zstd -d failed"
			"$PG_RESTORE" --exit-on-error -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -d "$db" handdir \
				2>hand.err || { show_file hand.err hand.err; fail "$format/$comp: pg_restore failed"; }
			expect_same_data shop "$db"
			continue
		fi
		case $format in custom) ext=dump ;; plain) ext=sql ;; esac
		dump=$cset/db.$ext$suf
		[ -f "$dump" ] || fail "$format/$comp: no $dump (have: $(ls "$cset" | tr '\n' ' '))"
		expect_json "$cset/manifest.json" 'd["files"][0]["sha256"] == "'"$(sha "$dump")"'" and d["files"][0]["size"] == '"$(fsize "$dump")"
		case $comp in
		gzip) expect_exit 0 gzip -t "$dump" ;;
		zstd) expect_exit 0 zstd -t "$dump" ;;
		esac
		if [ "$format" = plain ]; then
			[ "$("${cat_cmd[@]}" "$dump" | grep -c '^-- PostgreSQL database dump')" -ge 1 ] ||
				fail "$format/$comp: not a plain SQL dump"
			"${cat_cmd[@]}" "$dump" | "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" \
				-p "$TEST_PG_PORT" -U postgres -d "$db" >hand.out 2>hand.err ||
				{ show_file hand.err hand.err; fail "$format/$comp: ${cat_cmd[*]} | psql failed"; }
		else
			[ "$("${cat_cmd[@]}" "$dump" | head -c 5)" = PGDMP ] || fail "$format/$comp: not a custom-format dump"
			"${cat_cmd[@]}" "$dump" | "$PG_RESTORE" --exit-on-error -h "$TEST_PG_SOCKDIR" \
				-p "$TEST_PG_PORT" -U postgres -d "$db" 2>hand.err ||
				{ show_file hand.err hand.err; fail "$format/$comp: ${cat_cmd[*]} | pg_restore failed"; }
		fi
		expect_same_data shop "$db"
	done
done
# the seeds' way exactly: gunzip -c f.sql.gz | psql, into a fresh database
plain=$(ls -d backups/*/db.sql.gz | head -n 1)
newdb seeds_way
gunzip -c "$plain" | "$PSQL" -X -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres seeds_way >/dev/null 2>hand.err
expect_no_grep 'ERROR' hand.err
expect_same_data shop seeds_way
# [backup] format = plain gives gzip by default (like the seeds)
sed -i 's/^\[backup\]$/[backup]\nformat = plain/' opsctl.conf
expect_exit 0 ob backup
expect_grep '^shop-' out
[ -f "backups/$(last_id)/db.sql.gz" ] || fail "format = plain: expected db.sql.gz"
sed -i '/^format = plain$/d' opsctl.conf

# ---- --output json --------------------------------------------------------------
expect_exit 0 ob --output json backup
no_secret
jid=$(sed -n 's/^[[:space:]]*"id":[[:space:]]*"\([^"]*\)".*/\1/p' out)
jm=backups/$jid/manifest.json
[ -f "$jm" ] || fail "--output json: no set for id '$jid'"
expect_json out 'd["command"] == "backup create" and d["exit"] == 0 and d["pruned"] == []'
expect_json out 'd["path"].endswith("/'"$jid"'") and d["database"] == "shop" and d["format"] == "directory" and d["compression"] == "zstd"'
expect_json out 'd["size_bytes"] == '"$("$TEST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["size_bytes"])' "$jm")"
expect_json out 'd["dump_bytes"] > 0 and d["duration_ms"] >= 0 and d["tables"] == 4 and d["restore_tested"] is False'
expect_json out 'd["time"] == '"$("$TEST_PYTHON" -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))["started_at"]))' "$jm")"
expect_json out '"error" not in d'
[ ! -s err ] || { show_file err err; fail "--output json: something on stderr"; }

# ---- -q: silent on success -----------------------------------------------------
n_before=$(ls backups | wc -l)
expect_exit 0 ob -q backup
[ ! -s out ] && [ ! -s err ] || { show_file out out; show_file err err; fail "-q backup printed something"; }
[ "$(ls backups | wc -l)" -eq $((n_before + 1)) ] || fail "-q backup did not create a set"

# the ratio in the text line matches the manifest
expect_exit 0 ob backup --no-prune
lid=$(last_id)
ratio=$("$TEST_PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print("%.1fx" % (m["dump_bytes"] / m["size_bytes"]))' "backups/$lid/manifest.json")
dur=$("$TEST_PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print("%.1fs" % (m["duration_ms"] / 1000))' "backups/$lid/manifest.json")
expect_grep "^$lid  .*  $dur  $ratio\$" out

# every run is in the history, and no line holds the password
total=$(ls backups | wc -l)
[ "$(grep -c '"command":"backup create"' "$hf")" -eq "$total" ] ||
	fail "expected $total 'backup create' history lines, got $(grep -c '"command":"backup create"' "$hf")"
expect_no_grep "$pw" "$hf"
# list shows every set, newest first
expect_exit 0 ob --output json backup list
expect_json out 'len(d["backups"]) == '"$total"' and d["exit"] == 0'
expect_json out '[b["time"] for b in d["backups"]] == sorted([b["time"] for b in d["backups"]], reverse=True)'
expect_json out 'd["backups"][0]["id"] == "'"$lid"'"'
# no config at all: ./backups and the connection from DATABASE_URL
mkdir noconf && cd noconf || fail "cd noconf"
expect_exit 0 env DATABASE_URL="$(pg_db_url shop)" "$OPSCTL" backup
expect_grep '^opsctl-[0-9]{8}T[0-9]{6}Z  ' out
[ -f "backups/$(sed -n 's/^\(opsctl-[^ ]*\)  .*/\1/p' out)/db/toc.dat" ] || fail "no-config backup: no ./backups/ID/db/toc.dat"
cd .. || fail "cd .."

test_done
