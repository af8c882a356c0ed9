#!/usr/bin/env bash
# backup verify and the integrity gate of restore (DESIGN.md section 6, issue
# 4): one flipped byte, a truncated or missing file -> `backup verify ID` exits
# 5 naming the file, `restore ID --yes` exits 5 and the live database is
# untouched (same rows, no extra database in pg_database); `backup verify
# --restore-test` restores into a scratch database, compares the row counts
# with the manifest and drops it (exit 5 when a count differs).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	CREATE TABLE items (id serial PRIMARY KEY, name text, doc jsonb);
	INSERT INTO items (name, doc) SELECT 'item ' || g, jsonb_build_object('n', g) FROM generate_series(1, 500) g;
	CREATE SCHEMA crm;
	CREATE TABLE crm.contacts (id int PRIMARY KEY, email text);
	INSERT INTO crm.contacts SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 40) g;
	CREATE TABLE empty_one (x int);" >/dev/null || fail "seeding shop"
mkdir metrics
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url shop)

[backup]
dir = backups
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
hf=$OPSCTL_STATE_DIR/history.jsonl
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
live_fp=$(pg_db_fingerprint shop)
dbs() { pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"; }
dbs_before=$(dbs)
live_untouched() { # WHAT
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "$1: the live database changed"
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(dbs)" = "$dbs_before" ] || fail "$1: pg_database is now $(dbs), was $dbs_before"
}
flip_byte() { # FILE [OFFSET]: XOR one byte (the middle one by default)
	"$TEST_PYTHON" - "$@" <<'EOF'
import os, sys
path = sys.argv[1]
size = os.path.getsize(path)
off = int(sys.argv[2]) if len(sys.argv) > 2 else size // 2
with open(path, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x01]))
EOF
}
copy_set() { # FROM NEWID
	cp -a "backups/$1" "backups/$2" && rm -f "backups/$2/verified.json"
}

mkdir uploads && printf 'x\n' >uploads/x.txt
sed -i 's|^dir = backups$|dir = backups\npaths = '"$TEST_SCRATCH"'/uploads|' opsctl.conf
expect_exit 0 ob backup
good=$(last_id)
expect_exit 0 ob backup --format plain
plain=$(last_id)
[ -n "$good" ] && [ -n "$plain" ] || fail "no sets"

# ---- good sets verify -----------------------------------------------------------------
expect_exit 0 ob backup verify "$good"
expect_grep "^$good  ok \(checksums\)$" out
expect_exit 0 ob backup verify
expect_grep "^$plain  ok" out
expect_exit 0 ob -q backup verify "$good"
[ ! -s out ] && [ ! -s err ] || fail "-q backup verify printed something"
expect_exit 0 ob --output json backup verify "$good"
expect_json out 'd["ok"] is True and d["id"] == "'"$good"'" and d["exit"] == 0 and d["command"] == "backup verify"'
expect_exit 0 ob backup list
expect_grep "^$good .* [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+Z$" out

# ---- one flipped byte in the dump ---------------------------------------------------------
# (the biggest data file of the directory dump)
big=$(cd "backups/$good" && ls -S db/*.zst | head -n 1)
big_re=$(printf '%s' "$big" | sed 's/\./\\./g')
[ -n "$big" ] || fail "no db/*.zst in $good"
bad=shop-20250101T000000Z
copy_set "$good" "$bad"
flip_byte "backups/$bad/$big"
expect_exit 5 ob backup verify "$bad"
expect_grep "backup '$bad' is damaged: the SHA-256 of '$big_re' does not match the manifest" err
expect_grep '^hint: ' err
[ ! -s out ] || fail "a failed verify printed on stdout"
expect_exit 5 ob --output json backup verify "$bad"
expect_json out 'd["ok"] is False and d["exit"] == 5 and "'"$big"'" in d["error"]["message"]'
[ ! -e "backups/$bad/verified.json" ] || fail "a damaged set was marked verified"
expect_exit 0 ob backup list
expect_grep "^$bad .* no$" out
# restore refuses it, the live database untouched (with --yes the table data
# is hashed as it is loaded: the same message, the half-built database
# dropped; without, every file is hashed first: no question for a damaged set)
expect_exit 5 ob --yes restore "$bad"
expect_grep "backup '$bad' is damaged: the SHA-256 of '$big_re' does not match the manifest" err
expect_grep '^hint: restore from another backup' err
expect_no_grep "$pw" out err
live_untouched "restore of a flipped byte"
[ -z "$(ls -A backups | grep '^\.restore')" ] || fail "a work directory was left: $(ls -A backups | tr '\n' ' ')"
expect_exit 5 ob restore "$bad"
expect_grep "backup '$bad' is damaged: the SHA-256 of '$big_re' does not match the manifest" err
expect_exit 5 ob --yes restore "$bad" --target-db side
live_untouched "restore --target-db of a flipped byte"
expect_exit 5 ob --yes restore "$TEST_SCRATCH/backups/$bad"
live_untouched "restore PATH of a flipped byte"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "restore" and d["outcome"] == "integrity" and d["exit"] == 5 and d["id"] == "'"$bad"'"'
# and the restore test refuses it too, without creating a database
expect_exit 5 ob backup verify --restore-test "$bad"
live_untouched "restore test of a flipped byte"

# a table data file that decompresses and loads cleanly but is not the one
# the manifest describes (its size right, its SHA-256 another): checked as it
# is loaded, it still stops the restore before the swap
subtle=shop-20250108T000000Z
copy_set "$good" "$subtle"
"$TEST_PYTHON" - "backups/$subtle/manifest.json" "$big" <<'EOF' || fail "could not edit the manifest"
import hashlib, json, sys
m = json.load(open(sys.argv[1]))
f = [f for f in m["files"] if f["name"] == sys.argv[2]][0]
f["sha256"] = hashlib.sha256(b"another file").hexdigest()
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
expect_exit 5 ob backup verify "$subtle"
expect_exit 5 ob --yes restore "$subtle" --target-db side
expect_grep "backup '$subtle' is damaged: the SHA-256 of '$big_re' does not match the manifest" err
live_untouched "restore --target-db of a table data file that loads"
expect_exit 5 ob --yes restore "$subtle"
expect_grep "backup '$subtle' is damaged: the SHA-256 of '$big_re' does not match the manifest" err
live_untouched "restore of a table data file that loads"
[ -z "$(ls -A backups | grep '^\.restore')" ] || fail "a work directory was left: $(ls -A backups | tr '\n' ' ')"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "restore" and d["outcome"] == "integrity" and d["exit"] == 5 and d["id"] == "'"$subtle"'"'
rm -rf "backups/$subtle"

# a flipped byte in the gzip dump, and in the files archive
bad_plain=shop-20250102T000000Z
copy_set "$plain" "$bad_plain"
flip_byte "backups/$bad_plain/db.sql.gz"
expect_exit 5 ob backup verify "$bad_plain"
expect_grep "'db\.sql\.gz'" err
expect_exit 5 ob --yes restore "$bad_plain"
live_untouched "restore of a damaged plain dump"
bad_files=shop-20250103T000000Z
copy_set "$good" "$bad_files"
flip_byte "backups/$bad_files/files.tar.zst"
expect_exit 5 ob backup verify "$bad_files"
expect_grep "'files\.tar\.zst'" err
expect_exit 5 ob --yes restore "$bad_files"
live_untouched "restore of a damaged files archive"
[ "$(cat uploads/x.txt)" = x ] && [ -z "$(ls -d uploads.pre_restore_* 2>/dev/null)" ] || fail "the files were touched"
# truncated, and missing
short=shop-20250104T000000Z
copy_set "$good" "$short"
truncate -s -1 "backups/$short/$big"
expect_exit 5 ob backup verify "$short"
expect_grep "'$big_re' has [0-9]+ bytes, the manifest says [0-9]+" err
gone=shop-20250105T000000Z
copy_set "$good" "$gone"
rm "backups/$gone/$big"
expect_exit 5 ob backup verify "$gone"
expect_grep "backup '$gone' is damaged: .*$big_re" err
expect_exit 5 ob --yes restore "$gone"
live_untouched "restore of a set with a missing dump"
# a manifest that is not valid: the set is not listed at all
broken=shop-20250106T000000Z
copy_set "$good" "$broken"
sed -i 's/"sha256":\t"\([0-9a-f]\{10\}\)/"sha256":\t"XYZ\1/' "backups/$broken/manifest.json"
expect_exit 2 ob backup verify "$broken"
expect_exit 0 ob backup list
expect_no_grep "^$broken " out
expect_grep 'without a valid manifest' err
# restore PATH of it: an integrity error naming the manifest
expect_exit 5 ob --yes restore "$TEST_SCRATCH/backups/$broken"
expect_grep "manifest" err
live_untouched "restore PATH of a set with a broken manifest"
rm -rf "backups/$broken"

# ---- --restore-test on good sets ------------------------------------------------------------------
for id in "$good" "$plain"; do
	expect_exit 0 ob backup verify --restore-test "$id"
	expect_grep "^$id  ok \(checksums and a restore test\)$" out
	expect_grep "restore test of '$id': 3 tables restored with the row counts of the manifest" err
	live_untouched "restore test of $id"
	expect_databases 'opsctl_restore_test%' ''
done
expect_exit 0 ob --output json backup list
expect_json out '[b for b in d["backups"] if b["id"] == "'"$good"'"][0]["restore_tested"] is True and "verified_at" in [b for b in d["backups"] if b["id"] == "'"$good"'"][0]'
expect_exit 0 ob backup list
expect_grep "^$good .*Z \+restore$" out
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "backup verify --restore-test" and d["outcome"] == "ok" and d["id"] == "'"$plain"'"'
# a plain checksum verify later keeps the restore-tested mark
expect_exit 0 ob backup verify "$good"
expect_exit 0 ob backup list
expect_grep "^$good .*\+restore$" out

# ---- --restore-test when the manifest's row count is wrong ---------------------------------------
edited=shop-20250107T000000Z
copy_set "$good" "$edited"
"$TEST_PYTHON" - "backups/$edited/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
for t in m["tables"]:
    if t["schema"] == "crm" and t["name"] == "contacts":
        t["rows"] = 41
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
# the checksums still match (the manifest does not checksum itself)
expect_exit 0 ob backup verify "$edited"
expect_exit 5 ob backup verify --restore-test "$edited"
expect_grep 'restored table crm\.contacts has 40 rows, the backup had 41' err
expect_databases 'opsctl_restore_test%' ''
live_untouched "failed restore test"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "backup verify --restore-test" and d["outcome"] == "integrity" and d["exit"] == 5'
# and a restore of it is refused after loading: exit 5, live database as it was
expect_exit 5 ob --yes restore "$edited"
expect_grep 'crm\.contacts has 40 rows, the backup had 41' err
live_untouched "restore whose row counts differ"
expect_databases 'shop%' shop

# ---- usage ----------------------------------------------------------------------------------------------
expect_exit 2 ob backup verify no-such-id
expect_grep "no backup 'no-such-id'" err
expect_exit 2 ob backup verify a b
expect_exit 2 ob backup list --restore-test
expect_exit 2 ob backup verify --dir "$TEST_SCRATCH/empty-dir"
expect_grep 'no backup yet' err

test_done
