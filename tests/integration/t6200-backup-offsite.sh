#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Offsite backups (issue 7) with the real binary against a real s3rver on
# loopback: `opsctl backup` with [backup] offsite puts every file of the set
# under PREFIX/ID/ with manifest.json last; `backup list --remote` (text and
# JSON), `backup verify --remote` and `--deep`; a 50 MB file goes up in 5 MiB
# parts; SIGKILL mid-upload, then `backup upload` sends only the parts and
# files the first run did not finish (counted in s3rver's request log); the
# server stopped mid-upload (retries, exit 4, the local set intact and listed,
# metrics offsite 0; the next `backup` uploads both sets); a wrong access key
# (exit 4, named, at once); remote retention (remote_keep_last = 1 beside
# keep_last = 3) and `backup prune --dry-run` / `prune`; `restore ID` with the
# local copy gone (fetched, the same data back); a corrupted or missing remote
# object (verify --remote exit 5, and restore exit 5 with the live database
# untouched and nothing left behind). s3rver checks that an access key exists,
# not the SigV4 signature.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
s3_start backups

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	CREATE TABLE items (id serial PRIMARY KEY, name text, doc jsonb);
	INSERT INTO items (name, doc) SELECT 'item ' || g || ' ' || md5(g::text), jsonb_build_object('n', g) FROM generate_series(1, 3000) g;
	CREATE TABLE orders (id int PRIMARY KEY, item_id int REFERENCES items);
	INSERT INTO orders SELECT g, 1 + g % 3000 FROM generate_series(1, 2000) g;" >/dev/null || fail "seeding shop"

mkdir data metrics
printf 'original\n' >data/a.txt
printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
printf 'MINIO_ACCESS_KEY=NOT-A-KEY\nMINIO_SECRET_KEY=%s\n' "$S3_SECRET_KEY" >wrong.env
PREFIX=nightly
# write_conf FILE ENVFILE [BACKUP-LINE...]
write_conf() {
	local file=$1 envfile=$2 line
	shift 2
	{
		printf '[app]\nname = shop\nenv_file = %s\n\n' "$envfile"
		printf '[database]\nurl = %s\n\n' "$(pg_db_url shop)"
		printf '[backup]\ndir = backups\npaths = %s/data\nmetrics_file = metrics/backup.prom\n' "$TEST_SCRATCH"
		printf 'offsite = minio\n'
		for line in "$@"; do printf '%s\n' "$line"; done
		cat <<CONF

[storage "minio"]
type = s3
endpoint = $S3_URL
bucket = $S3_BUCKET
prefix = $PREFIX
region = us-east-1
path_style = yes
access_key_env = MINIO_ACCESS_KEY
secret_key_env = MINIO_SECRET_KEY
part_size = 5M
concurrency = 2
timeout = 5s
CONF
	} >"$file"
}
write_conf opsctl.conf app.env 'keep_last = 20'
write_conf wrong.conf wrong.env 'keep_last = 20'
write_conf retention.conf app.env 'keep_last = 3' 'remote_keep_last = 1'
conf=$TEST_SCRATCH/opsctl.conf
ob() { "$OPSCTL" -c "$conf" "$@"; }
obw() { "$OPSCTL" -c "$TEST_SCRATCH/wrong.conf" "$@"; }
obr() { "$OPSCTL" -c "$TEST_SCRATCH/retention.conf" "$@"; }
prom=metrics/backup.prom
hf=$OPSCTL_STATE_DIR/history.jsonl
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
log_lines() { wc -l <"$S3_LOG"; }
after_mark() { tail -n "+$(($1 + 1))" "$S3_LOG"; }
kill_now() {
	kill -KILL "$1"
	wait "$1" 2>/dev/null
} 2>/dev/null
# local_ids / remote_ids: the sets, oldest first, one line (the remote ones:
# those whose manifest is on the server)
local_ids() { ls backups | grep -v '^\.' | sort | tr '\n' ' '; }
remote_ids() {
	(cd "$S3_DIR/$S3_BUCKET/$PREFIX" 2>/dev/null && ls -d -- */manifest.json._S3rver_object 2>/dev/null) |
		sed 's|/.*||' | sort | tr '\n' ' '
}
# remote_keys ID: the keys stored below PREFIX/ID/, sorted
remote_keys() {
	(cd "$S3_DIR/$S3_BUCKET/$PREFIX/$1" 2>/dev/null && find . -name '*._S3rver_object' | sed -e 's|^\./||' -e 's|\._S3rver_object$||') | sort
}
# manifest_files SET-DIR: the files a set's manifest names, and manifest.json, sorted
manifest_files() {
	"$TEST_PYTHON" -c 'import json, sys; print("\n".join(sorted([f["name"] for f in json.load(open(sys.argv[1] + "/manifest.json"))["files"]] + ["manifest.json"])))' "$1"
}
# expect_remote_copy ID: every file of the local set (and its manifest) is on
# the server, byte for byte, and nothing else is
expect_remote_copy() {
	local f
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(remote_keys "$1")" = "$(manifest_files "backups/$1")" ] ||
		fail "remote $1 holds [$(remote_keys "$1" | tr '\n' ' ')], the set [$(manifest_files "backups/$1" | tr '\n' ' ')]"
	for f in $(manifest_files "backups/$1"); do
		expect_file_same "backups/$1/$f" "$(s3_object_file "$PREFIX/$1/$f")"
	done
}
# upload states of a run in flight: STATE/offsite/ID/files.tar.zst.upload.json
state_file() { ls "$OPSCTL_STATE_DIR"/offsite/*/files.tar.zst.upload.json 2>/dev/null | head -n 1; }
state_parts() {
	"$TEST_PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["parts"]))' "$1" 2>/dev/null || echo 0
}
parts_recorded() { # N: the upload in flight has recorded N parts
	local f
	f=$(state_file)
	[ -n "$f" ] && [ "$(state_parts "$f")" -ge "$1" ]
}
offsite_metric() { expect_grep "^opsctl_backup_offsite_success\{app=\"shop\",storage=\"minio\"\} $1\$" "$prom"; }

# ---- one backup, uploaded ---------------------------------------------------------
say "backup with offsite: every file under $PREFIX/ID/, the manifest last"
expect_exit 0 ob backup
id1=$(last_id)
[ -n "$id1" ] || fail "no id in: $(cat out)"
expect_grep "^uploaded $id1 to 'minio' \(" err
expect_remote_copy "$id1"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(grep "^PUT /$S3_BUCKET/$PREFIX/$id1/" "$S3_LOG" | tail -n 1 | cut -d' ' -f2)" = "/$S3_BUCKET/$PREFIX/$id1/manifest.json" ] ||
	fail "manifest.json was not the last object put: $(grep "^PUT " "$S3_LOG" | tr '\n' ';')"
[ "$(grep -c "^PUT /$S3_BUCKET/$PREFIX/$id1/manifest.json 200" "$S3_LOG")" = 1 ] || fail "the manifest was put more than once"
expect_json "backups/$id1/offsite.json" 'd["storage"] == "minio" and d["bucket"] == "backups" and d["prefix"] == "nightly"'
offsite_metric 1
expect_grep '^opsctl_backup_success\{app="shop"\} 1$' "$prom"
tail -n 1 "$hf" >hist.json
expect_json hist.json "d['command'] == 'backup create' and d['offsite'] == 'minio' and d['offsite_ok'] is True and d['uploaded'] == ['$id1']"

say "backup list --remote, text and JSON"
expect_exit 0 ob backup list --remote
expect_grep '^ID +TIME +SIZE +FORMAT +TABLES +WHERE$' out
expect_grep "^$id1 +[0-9T:-]+Z +[0-9.]+ KiB +directory\+zstd +2 +minio$" out
[ "$(grep -c '^shop-' out)" = 1 ] || fail "backup list --remote shows $(grep -c '^shop-' out) sets"
size1=$("$TEST_PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(f["size"] for f in m["files"]))' "backups/$id1/manifest.json")
expect_exit 0 ob --json backup list --remote
expect_json out "[b['id'] for b in d['backups']] == ['$id1'] and d['storage'] == 'minio' and d['exit'] == 0"
expect_json out "d['backups'][0]['path'] == 's3://backups/nightly/$id1' and d['backups'][0]['size_bytes'] == $size1 and d['backups'][0]['tables'] == 2"

say "verify --remote checks sizes (HEAD), --deep downloads every file and hashes it"
mark=$(log_lines)
expect_exit 0 ob backup verify --remote
expect_grep "^$id1  ok in 'minio' \(every file, with its size\)$" out
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | grep -c "^HEAD /$S3_BUCKET/$PREFIX/$id1/")" = "$(($(manifest_files "backups/$id1" | wc -l) - 1))" ] ||
	fail "expected one HEAD per file: $(after_mark "$mark" | tr '\n' ';')"
after_mark "$mark" | grep -q "^GET /$S3_BUCKET/$PREFIX/$id1/files.tar.zst " && fail "verify without --deep downloaded a file"
mark=$(log_lines)
expect_exit 0 ob backup verify --remote --deep "$id1"
expect_grep "^$id1  ok in 'minio' \(every byte against the checksums\)$" out
for f in $(manifest_files "backups/$id1" | grep -v '^manifest.json$'); do
	after_mark "$mark" | grep -q "^GET /$S3_BUCKET/$PREFIX/$id1/$f 200 " || fail "verify --deep did not download $f"
done
expect_exit 0 ob --json backup verify --remote --deep
expect_json out "d['id'] == '$id1' and d['ok'] is True and d['storage'] == 'minio' and d['exit'] == 0"
expect_exit 2 ob backup verify --deep
expect_exit 2 ob backup prune --remote
expect_exit 2 ob backup --limit-rate fast

say "backup upload with everything uploaded sends nothing"
mark=$(log_lines)
expect_exit 0 ob backup upload
expect_grep "every backup is in 'minio' already" err
after_mark "$mark" | grep -q '^PUT ' && fail "backup upload sent something: $(after_mark "$mark" | tr '\n' ';')"

# ---- multipart, SIGKILL, resume ---------------------------------------------------
say "a 50 MB set in 5 MiB parts, killed mid-upload"
head -c 50000000 /dev/urandom >data/big.bin # incompressible: files.tar.zst stays ~50 MB
"$OPSCTL" -c "$conf" backup --limit-rate 20M >killed.out 2>killed.err </dev/null &
pid=$!
wait_for 40 parts_recorded 3 || { show_file stderr killed.err; fail "no 3 parts recorded within 40 s"; }
kill_now "$pid"
state=$(state_file)
id2=$(basename "$(dirname "$state")")
done_parts=$("$TEST_PYTHON" -c 'import json, sys; print(" ".join(str(p["part"]) for p in json.load(open(sys.argv[1]))["parts"]))' "$state")
ndone=$(echo "$done_parts" | wc -w)
size=$(stat -c %s "backups/$id2/files.tar.zst")
nparts=$(((size + 5242880 - 1) / 5242880))
say "killed with parts $done_parts of $nparts recorded ($size bytes)"
[ "$ndone" -lt "$nparts" ] || fail "the upload finished before it was killed"
done_files=$("$TEST_PYTHON" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))))' "$(dirname "$state")/done.json" 2>/dev/null)
[ -n "$done_files" ] || fail "the small files of $id2 were not recorded as done"
expect_exit 0 ob backup list
expect_grep "^$id2 " out
[ ! -e "backups/$id2/offsite.json" ] || fail "$id2 marked uploaded"
expect_exit 0 ob backup verify "$id2"
expect_exit 0 ob backup list --remote
expect_no_grep "^$id2 " out
expect_grep "warning: 1 set in 'minio' without a valid manifest" err
s3_wait_quiet
mark=$(log_lines)
expect_exit 0 ob backup upload
expect_grep "^uploaded $id2 to 'minio' \(.*, resumed\)$" err
TEST_CHECKS=$((TEST_CHECKS + 1))
sent=$(after_mark "$mark" | grep -c "^PUT /$S3_BUCKET/$PREFIX/$id2/files.tar.zst?partNumber=.* 200 ")
[ "$sent" = $((nparts - ndone)) ] || fail "expected $((nparts - ndone)) parts sent after the kill, saw $sent"
for n in $done_parts; do
	after_mark "$mark" | grep -q "^PUT .*/files.tar.zst?partNumber=$n&" && fail "part $n was recorded but sent again"
done
after_mark "$mark" | grep -q '^POST .*?uploads=' && fail "the resumed upload started a new multipart upload"
for f in $done_files; do
	after_mark "$mark" | grep -q "^PUT /$S3_BUCKET/$PREFIX/$id2/$f " && fail "$f was uploaded already, and sent again"
done
[ "$(after_mark "$mark" | grep -c "^PUT /$S3_BUCKET/$PREFIX/$id2/manifest.json 200")" = 1 ] || fail "no manifest put by the resumed run"
expect_remote_copy "$id2"
[ -z "$(ls -A "$OPSCTL_STATE_DIR/offsite")" ] || fail "resume state left behind: $(ls -A "$OPSCTL_STATE_DIR/offsite")"
[ "$(grep -c "^POST /$S3_BUCKET/$PREFIX/$id2/files.tar.zst?uploads= 200" "$S3_LOG")" = 1 ] || fail "expected one multipart upload of files.tar.zst"
expect_exit 0 ob backup verify --remote --deep "$id2"

# ---- the server stopped mid-upload ------------------------------------------------
say "s3rver stopped mid-upload: retries, exit 4, the local set intact"
start=$(now_ms)
"$OPSCTL" -c "$conf" backup --limit-rate 20M >stopped.out 2>stopped.err </dev/null &
pid=$!
wait_for 40 parts_recorded 2 || { show_file stderr stopped.err; fail "no 2 parts recorded within 40 s"; }
id3=$(basename "$(dirname "$(state_file)")")
s3_stop
wait "$pid"
code=$?
elapsed=$(($(now_ms) - start))
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$code" = 4 ] || { show_file stderr stopped.err; fail "expected exit 4 with the server gone, got $code"; }
[ "$elapsed" -lt 40000 ] || fail "gave up only after $elapsed ms"
expect_grep "^$id3 " stopped.out
expect_grep "^opsctl: error: backup '$id3' is complete here, but its upload to 'minio' failed: .*connection refused \([0-9]+ attempts\)" stopped.err
expect_grep "^hint: is the storage server up\\?.*; the local set is intact, and the next 'opsctl backup' uploads it again \\(or run 'opsctl backup upload $id3'\\)$" stopped.err
offsite_metric 0
expect_grep '^opsctl_backup_success\{app="shop"\} 1$' "$prom"
tail -n 1 "$hf" >hist.json
expect_json hist.json "d['id'] == '$id3' and d['offsite_ok'] is False and d['uploaded'] == [] and d['exit'] == 4"
expect_exit 0 ob backup list
expect_grep "^$id3 " out
expect_exit 0 ob backup verify "$id3"
[ ! -e "backups/$id3/offsite.json" ] || fail "$id3 marked uploaded"
rm data/big.bin # the next sets are small again
s3_resume
expect_exit 0 ob --json backup
id4=$("$TEST_PYTHON" -c 'import json; print(json.load(open("out"))["id"])')
expect_json out "d['offsite']['ok'] is True and sorted(d['offsite']['uploaded']) == sorted(['$id3', '$id4']) and d['offsite']['storage'] == 'minio'"
offsite_metric 1
expect_grep "^uploaded $id3 to 'minio' \\(.*, resumed\\)$" err
[ "$(grep -c "^POST /$S3_BUCKET/$PREFIX/$id3/files.tar.zst?uploads= 200" "$S3_LOG")" = 1 ] ||
	fail "the upload of $id3 was started over instead of resumed"
expect_remote_copy "$id3"
expect_remote_copy "$id4"
expect_exit 0 ob backup verify --remote "$id3"

# ---- a wrong access key -----------------------------------------------------------
say "a wrong access key: exit 4 at once, the credentials named, the set kept"
mark=$(log_lines)
expect_exit 4 obw backup
expect_faster 15000
id5=$(last_id)
expect_grep "^opsctl: error: backup '$id5' is complete here, but its upload to 'minio' failed: .*storage 'minio' refused the credentials: InvalidAccessKeyId" err
expect_grep "^hint: check MINIO_ACCESS_KEY and MINIO_SECRET_KEY \\(access_key_env and secret_key_env of \\[storage \"minio\"\\]\\) in '$TEST_SCRATCH/wrong.env'; the local set is intact" err
offsite_metric 0
after_mark "$mark" | grep -q '^PUT .* 200 ' && fail "a PUT with a wrong key succeeded"
expect_exit 0 ob backup list
expect_grep "^$id5 " out
expect_exit 4 obw backup list --remote
expect_grep "refused the credentials: InvalidAccessKeyId" err
expect_exit 4 obw backup verify --remote
expect_exit 0 ob --json backup upload
expect_json out "d['uploaded'] == ['$id5'] and d['exit'] == 0"
expect_remote_copy "$id5"
mark=$(log_lines)
expect_exit 0 ob backup upload "$id1" # once more, on request
after_mark "$mark" | grep -q "^PUT /$S3_BUCKET/$PREFIX/$id1/manifest.json 200" || fail "backup upload ID did not upload it again"
expect_exit 2 ob backup upload shop-nope
expect_grep "no backup 'shop-nope'" err

say "backup upload of a set that rotted on disk: exit 5, never completed, the remote copy as it was"
rotten=backups/$id2/files.tar.zst
cp "$rotten" rotten.good
printf 'X' | dd of="$rotten" bs=1 seek=40000000 conv=notrunc status=none # same size; part 8 of 10
mark=$(log_lines)
expect_exit 5 ob backup upload "$id2"
expect_grep "^opsctl: error: backup '$id2' is damaged: the SHA-256 of 'files\.tar\.zst' does not match the manifest$" err
expect_grep "^hint: nothing of it was kept on the storage" err
TEST_CHECKS=$((TEST_CHECKS + 1))
after_mark "$mark" | grep -q "^PUT /$S3_BUCKET/$PREFIX/$id2/files\.tar\.zst?partNumber=" ||
	fail "the parts were not sent while the file was checked: $(after_mark "$mark" | tr '\n' ';')"
TEST_CHECKS=$((TEST_CHECKS + 1))
if after_mark "$mark" | grep -q "^POST /$S3_BUCKET/$PREFIX/$id2/files\.tar\.zst?uploadId=" ||
	after_mark "$mark" | grep -q "^PUT /$S3_BUCKET/$PREFIX/$id2/manifest\.json"; then
	fail "a damaged set was completed on the storage: $(after_mark "$mark" | tr '\n' ';')"
fi
expect_file_same rotten.good "$(s3_object_file "$PREFIX/$id2/files.tar.zst")"
mv rotten.good "$rotten"
expect_exit 0 ob backup verify --remote --deep "$id2"

# ---- retention --------------------------------------------------------------------
say "remote retention: remote_keep_last = 1 beside keep_last = 3"
all="$id1 $id2 $id3 $id4 $id5 "
[ "$(local_ids)" = "$all" ] || fail "local sets: $(local_ids), expected $all"
[ "$(remote_ids)" = "$all" ] || fail "remote sets: $(remote_ids), expected $all"
expect_exit 0 obr -n backup prune
for i in "$id1" "$id2"; do expect_grep "^would remove $i$" out; done
for i in "$id1" "$id2" "$id3" "$id4"; do expect_grep "^would remove $i from 'minio'$" out; done
expect_no_grep "$id5" out
[ "$(local_ids)" = "$all" ] && [ "$(remote_ids)" = "$all" ] || fail "prune --dry-run removed something"
expect_exit 0 obr --json backup prune
expect_json out "d['removed'] == ['$id2', '$id1'] or d['removed'] == ['$id1', '$id2']"
expect_json out "sorted(d['removed_remote']) == sorted(['$id1', '$id2', '$id3', '$id4'])"
[ "$(local_ids)" = "$id3 $id4 $id5 " ] || fail "after prune, local sets: $(local_ids)"
[ "$(remote_ids)" = "$id5 " ] || fail "after prune, remote sets: $(remote_ids)"
for i in "$id1" "$id2" "$id3" "$id4"; do
	[ -z "$(remote_keys "$i")" ] || fail "objects of pruned $i are still on the server: $(remote_keys "$i" | tr '\n' ' ')"
done
pg_dbsql shop "UPDATE items SET name = 'v6 ' || id WHERE id <= 100" >/dev/null
backup_fp=$(pg_db_fingerprint shop)
expect_exit 0 obr backup
id6=$(last_id)
[ "$(local_ids)" = "$id4 $id5 $id6 " ] || fail "after a backup, local sets: $(local_ids)"
[ "$(remote_ids)" = "$id6 " ] || fail "after a backup, remote sets: $(remote_ids)"
expect_grep "^removed $id5 from 'minio'$" out
expect_exit 0 obr backup list --remote
[ "$(grep -c '^shop-' out)" = 1 ] && grep -q "^$id6 " out || fail "backup list --remote: $(cat out)"
expect_exit 0 obr backup list
[ "$(grep -c '^shop-' out)" = 3 ] || fail "backup list: $(cat out)"

# ---- restore from the remote ------------------------------------------------------
say "restore with the local copy gone: fetched, verified, the same data back"
printf 'changed\n' >data/a.txt
pg_dbsql shop "DELETE FROM orders WHERE id > 1000; UPDATE items SET name = 'live' WHERE id <= 10" >/dev/null
live_fp=$(pg_db_fingerprint shop)
[ "$live_fp" != "$backup_fp" ] || fail "the live change did not change the fingerprint"
rm -rf "backups/$id6"
mark=$(log_lines)
expect_exit 0 obr -n restore "$id6"
expect_grep "^would fetch $id6 from 'minio' into '.*backups' \\(every file checked\\), then restore it into shop \\(the current one kept aside\\)$" out
[ ! -e "backups/$id6" ] || fail "restore --dry-run fetched the set"
after_mark "$mark" | grep -q "^GET /$S3_BUCKET/$PREFIX/$id6/files.tar.zst" && fail "restore --dry-run downloaded files.tar.zst"
mark=$(log_lines)
expect_exit 0 obr -y restore "$id6"
expect_grep "backup '$id6' is not in '.*backups': fetching it from 'minio'" err
expect_grep "^restored $id6 into shop " out
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the restored database differs from the backup"
prev=$(pg_psql "SELECT datname FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'")
[ -n "$prev" ] && [ "$(pg_db_fingerprint "$prev")" = "$live_fp" ] || fail "the previous database was not kept as it was"
[ "$(cat data/a.txt)" = original ] || fail "the files were not restored"
after_mark "$mark" | grep -q "^GET /$S3_BUCKET/$PREFIX/$id6/files.tar.zst 200 " || fail "files.tar.zst was not downloaded"
expect_exit 0 obr backup verify "$id6" # a local set again
[ -z "$(ls -A backups | grep '^\.')" ] || fail "work directories left: $(ls -A backups | tr '\n' ' ')"
pg_psql "DROP DATABASE $prev" >/dev/null

# ---- corrupted and missing remote objects ----------------------------------------
say "a corrupted remote object: verify --remote --deep and restore exit 5, nothing touched"
big=$("$TEST_PYTHON" -c 'import json,sys; print(max(json.load(open(sys.argv[1]))["files"], key=lambda f: f["size"])["name"])' "backups/$id6/manifest.json")
obj=$(s3_object_file "$PREFIX/$id6/$big")
[ "$(stat -c %s "$obj")" -gt 100 ] || fail "$big is too small to corrupt"
printf 'CORRUPT' | dd of="$obj" bs=1 seek=50 conv=notrunc status=none
expect_exit 0 obr backup verify --remote "$id6" # the size is right
expect_exit 5 obr backup verify --remote --deep "$id6"
expect_grep "error: .*'$PREFIX/$id6/$big'|error: .*'$id6/$big'" err
expect_grep "does not match its checksum|checksum mismatch" err
rm -rf "backups/$id6"
pg_dbsql shop "UPDATE items SET name = 'live again' WHERE id <= 5" >/dev/null
live_fp=$(pg_db_fingerprint shop)
dbs_before=$(pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
expect_exit 5 obr -y restore "$id6"
expect_grep "fetching '$id6' from 'minio'" err
expect_grep "checksum" err
TEST_CHECKS=$((TEST_CHECKS + 3))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "a refused restore changed the live database"
[ "$(pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")" = "$dbs_before" ] ||
	fail "databases changed: $(pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")"
[ -z "$(ls -A backups | grep -e '^\.' -e "^$id6\$")" ] || fail "the refused fetch left: $(ls -A backups | tr '\n' ' ')"
[ "$(cat data/a.txt)" = original ] || fail "a refused restore touched the files"

say "a missing remote object: verify --remote exit 5"
rm -f "$(s3_object_file "$PREFIX/$id6/files.tar.zst")" "$(s3_object_file "$PREFIX/$id6/files.tar.zst")".md5 \
	"$S3_DIR/$S3_BUCKET/$PREFIX/$id6/files.tar.zst._S3rver_metadata.json"
expect_exit 5 obr backup verify --remote "$id6"
expect_grep "remote set '$id6' is missing 'files.tar.zst'" err

test_done
