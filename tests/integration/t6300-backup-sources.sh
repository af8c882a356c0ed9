#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Backup sources in `opsctl backup` / `opsctl restore` (issue 7), the real
# binary against a real redis-server (Debian's) and tests/lib/qdrant-fake.py,
# a stand-in for Qdrant's snapshot API (no Qdrant server is installable here):
# one set holds the database, sources/cache.rdb and
# sources/knowledge.snapshot, both in the manifest and hashed (backup verify);
# FLUSHALL and a dropped collection, then `restore` brings keys and points
# back with the database; --no-sources leaves them alone, --target-db does
# not restore them unless --sources; a failing source (qdrant answering 500,
# redis down) fails the whole backup: exit 1, nothing listed, no snapshot
# left on the server, nothing uploaded with offsite configured; a flipped
# byte in sources/cache.rdb is exit 5 for verify and restore; a Redis source
# without stop/start refuses the restore (exit 3) before anything changed.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	fail "no redis-server / redis-cli (scripts/deps.sh installs redis-server and redis-tools)"
pg_start

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 1000) g;" >/dev/null || fail "seeding shop"

redis_start
redis_cli SET greeting 'hello world' >/dev/null
redis_cli HSET user:1 name ada lang c >/dev/null
redis_cli RPUSH queue a b c >/dev/null
redis_cli -n 3 SET other-db yes >/dev/null

qdrant_start --api-key qd-key
qdrant_api PUT /collections/knowledge >/dev/null
qdrant_api PUT /collections/knowledge/points \
	'{"points":[{"id":1,"vector":[0.1,0.2],"payload":{"doc":"runbook"}},{"id":2,"vector":[0.3,0.4],"payload":{"doc":"faq"}}]}' >/dev/null
qdrant_api POST /collections/knowledge/points/scroll '{}' >points-before.json

printf 'QDRANT_API_KEY=qd-key\n' >app.env
# write_conf FILE [SKIP-PATTERN]: the config, without the lines matching SKIP-PATTERN
write_conf() {
	cat <<CONF | grep -v -E "${2:-^NEVER$}" >"$1"
[app]
name = shop
env_file = app.env

[database]
url = $(pg_db_url shop)

[backup]
dir = backups

[source "cache"]
type = redis
address = 127.0.0.1:$REDIS_PORT
stop = $REDIS_STOP
start = $REDIS_START
restore_check = keys-equal
timeout = 30s

[source "knowledge"]
type = http-snapshot
preset = qdrant
url = $QDRANT_URL
collection = knowledge
api_key_env = QDRANT_API_KEY
timeout = 20s
CONF
}
write_conf opsctl.conf
write_conf nostop.conf '^(stop|start) = '
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
local_ids() { ls -A backups | sort | tr '\n' ' '; }
points_back() { # FILE: the collection holds the points it held at the start
	qdrant_api POST /collections/knowledge/points/scroll '{}' >"$1"
	expect_json "$1" 'd["result"] == __import__("json").load(open("points-before.json"))["result"]'
}
keys_back() { # the keys of the backup, and nothing written after it
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(redis_cli GET greeting)" = 'hello world' ] && [ "$(redis_cli HGET user:1 lang)" = c ] &&
		[ "$(redis_cli LRANGE queue 0 -1 | tr '\n' ' ')" = 'a b c ' ] && [ "$(redis_cli -n 3 GET other-db)" = yes ] ||
		fail "the keys are not back: $(redis_cli KEYS '*' | tr '\n' ' ')"
	[ "$(redis_cli EXISTS written-later)" = 0 ] || fail "a key written after the backup survived the restore"
}
# lose_sources: the Redis data flushed (one later key written), the collection dropped
lose_sources() {
	redis_cli FLUSHALL >/dev/null
	redis_cli SET written-later 1 >/dev/null
	qdrant_api DELETE /collections/knowledge >/dev/null
}
sources_lost() { # WHAT: the state lose_sources left
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(redis_cli DBSIZE)" = 1 ] && [ "$(redis_cli EXISTS written-later)" = 1 ] ||
		fail "$1: redis was touched: $(redis_cli KEYS '*' | tr '\n' ' ')"
	[ ! -e "$QDRANT_DATA/collections/knowledge.json" ] || fail "$1: the collection was restored"
}

# ---- a set with both sources ------------------------------------------------------
say "backup: the database, the RDB and the snapshot in one set and one manifest"
expect_exit 0 ob backup
id1=$(last_id)
[ -n "$id1" ] || fail "no id in: $(cat out)"
set1=backups/$id1
m=$set1/manifest.json
expect_json "$m" '[(s["name"], s["type"], s["file"]) for s in d["sources"]] == [("cache", "redis", "sources/cache.rdb"), ("knowledge", "http-snapshot", "sources/knowledge.snapshot")]'
expect_json "$m" '[s["details"]["keys"] for s in d["sources"] if s["name"] == "cache"] == [4]'
expect_json "$m" '[s["details"]["server_snapshot_deleted"] for s in d["sources"] if s["name"] == "knowledge"] == [True]'
for f in sources/cache.rdb sources/knowledge.snapshot; do
	expect_json "$m" "[(x['role'], x['size'], x['sha256']) for x in d['files'] if x['name'] == '$f'] == [('source', $(stat -c %s "$set1/$f"), '$(sha256sum "$set1/$f" | cut -d' ' -f1)')]"
	expect_json "$m" "[(s['size'], s['sha256']) for s in d['sources'] if s['file'] == '$f'] == [($(stat -c %s "$set1/$f"), '$(sha256sum "$set1/$f" | cut -d' ' -f1)')]"
done
[ "$(head -c 5 "$set1/sources/cache.rdb")" = REDIS ] || fail "sources/cache.rdb is not an RDB"
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "the snapshot was left on the server"
expect_no_grep 'qd-key' out err "$m"
expect_exit 0 ob backup verify "$id1"
expect_grep "^$id1  ok \(checksums\)$" out
backup_fp=$(pg_db_fingerprint shop)

# ---- a damaged source file ---------------------------------------------------------
say "a flipped byte in sources/cache.rdb: verify and restore exit 5, nothing touched"
cp "$set1/sources/cache.rdb" cache.rdb.good
size=$(stat -c %s "$set1/sources/cache.rdb")
byte=$(dd if="$set1/sources/cache.rdb" bs=1 skip=$((size / 2)) count=1 status=none | od -An -tu1 | tr -d ' ')
printf "\\$(printf '%03o' $(((byte + 1) % 256)))" |
	dd of="$set1/sources/cache.rdb" bs=1 seek=$((size / 2)) conv=notrunc status=none
cmp -s cache.rdb.good "$set1/sources/cache.rdb" && fail "the byte was not flipped"
expect_exit 5 ob backup verify "$id1"
expect_grep "sources/cache\.rdb" err
redis_pid=$(cat "$REDIS_PID_FILE")
redis_cli SET after-backup 1 >/dev/null
expect_exit 5 ob -y restore "$id1"
expect_grep "sources/cache\.rdb" err
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "a refused restore changed the database"
[ "$(cat "$REDIS_PID_FILE")" = "$redis_pid" ] && [ "$(redis_cli EXISTS after-backup)" = 1 ] ||
	fail "a refused restore touched redis"
cp cache.rdb.good "$set1/sources/cache.rdb"
expect_exit 0 ob backup verify "$id1"
redis_cli DEL after-backup >/dev/null

# ---- a Redis source without stop/start ----------------------------------------------
say "a Redis source without stop/start: restore exit 3 before anything changed"
pg_dbsql shop "UPDATE items SET name = 'live' WHERE id <= 10" >/dev/null
live_fp=$(pg_db_fingerprint shop)
dbs_before=$(pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
lose_sources
redis_pid=$(cat "$REDIS_PID_FILE")
expect_exit 3 "$OPSCTL" -c "$TEST_SCRATCH/nostop.conf" -y restore "$id1"
expect_grep "source 'cache' cannot be restored: \[source \"cache\"\] has no stop and start commands" err
expect_grep "^hint: .*--no-sources; nothing was changed" err
TEST_CHECKS=$((TEST_CHECKS + 3))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "the refused restore changed the live database"
[ "$(pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")" = "$dbs_before" ] ||
	fail "the refused restore left databases: $(pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")"
[ "$(cat "$REDIS_PID_FILE")" = "$redis_pid" ] || fail "the refused restore restarted redis"
sources_lost "restore without stop/start"

# ---- restore with sources -----------------------------------------------------------
say "restore: the database, the Redis keys and the Qdrant points back"
expect_exit 0 ob --json -y restore "$id1"
expect_json out "d['id'] == '$id1' and d['sources'] == ['cache', 'knowledge'] and d['exit'] == 0"
expect_grep "restored source 'cache'" err
expect_grep "restored source 'knowledge'" err
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the database was not restored"
wait_for 10 redis_up || fail "redis does not answer after the restore"
keys_back
points_back points-after.json
qdrant_api GET /__stats >stats.json
expect_json stats.json '"restored knowledge priority=snapshot" in d["requests"]'
ls "$REDIS_DIR"/dump.rdb.pre_restore_* >/dev/null 2>&1 || fail "the previous RDB was not kept"
expect_dbsql postgres "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'" 1
tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >hist.json
expect_json hist.json "d['command'] == 'restore' and d['sources'] == ['cache', 'knowledge']"

say "restore --no-sources: the database only"
lose_sources
expect_exit 0 ob -y restore --no-sources "$id1"
expect_no_grep "restored source" err
sources_lost "restore --no-sources"

say "restore --target-db: no sources unless --sources"
expect_exit 0 ob restore --target-db shop_copy "$id1"
expect_no_grep "restored source" err
sources_lost "restore --target-db"
expect_same_data shop shop_copy
expect_exit 0 ob restore --target-db shop_copy2 --sources "$id1"
expect_grep "restored source 'cache'" err
wait_for 10 redis_up || fail "redis does not answer after the restore"
keys_back
points_back points-after2.json

# ---- a failing source fails the set ---------------------------------------------------
say "a source failing: backup exit 1, nothing listed, nothing uploaded"
s3_start backups
printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >>app.env
cat >>opsctl.conf <<CONF

[storage "minio"]
type = s3
endpoint = $S3_URL
bucket = $S3_BUCKET
prefix = nightly
path_style = yes
access_key_env = MINIO_ACCESS_KEY
secret_key_env = MINIO_SECRET_KEY
CONF
sed -i 's/^dir = backups$/dir = backups\noffsite = minio/' opsctl.conf
ids_before=$(local_ids)
s3_objects() { find "$S3_DIR" -name '*._S3rver_object' | wc -l; }
# after_failure WHAT: the backups are as before, nothing went to the storage
after_failure() {
	TEST_CHECKS=$((TEST_CHECKS + 3))
	[ "$(local_ids)" = "$ids_before" ] || fail "$1: backups/ holds $(local_ids), expected $ids_before"
	[ "$(s3_objects)" = 0 ] || fail "$1: objects on the storage: $(find "$S3_DIR" -name '*._S3rver_object')"
	grep -q '^PUT ' "$S3_LOG" && fail "$1: uploads: $(grep '^PUT ' "$S3_LOG" | tr '\n' ';')"
	expect_exit 0 ob backup list
	[ "$(grep -c '^shop-' out)" = 1 ] || fail "$1: backup list shows $(grep -c '^shop-' out) sets"
	tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >hist.json
	expect_json hist.json "d['command'] == 'backup create' and d['exit'] == 1 and 'id' not in d and d['uploaded'] == []"
}
qdrant_fault create 500
expect_exit 1 ob backup
expect_grep "^opsctl: error: source 'knowledge' \(qdrant http://127\.0\.0\.1:$QDRANT_PORT collection 'knowledge'\): creating the snapshot failed: .* answered 500" err
after_failure "qdrant answering 500"
qdrant_fault create 0
qdrant_fault download 500
expect_exit 1 ob backup
expect_grep "downloading the snapshot failed" err
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "a failed download left the snapshot on the server"
after_failure "the snapshot download failing"
qdrant_fault download 0
redis_stop "$REDIS_DIR"
expect_exit 1 ob backup
expect_grep "^opsctl: error: source 'cache' \(redis 127\.0\.0\.1:$REDIS_PORT\): cannot connect" err
after_failure "redis stopped"
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "a failed backup left a snapshot on the server"

# ---- offsite: the sources travel with the set ---------------------------------------
say "offsite: the sources are uploaded with the set, and come back from the storage"
sh -c "$REDIS_START" >/dev/null 2>&1 || fail "redis-server did not start again"
wait_for 10 redis_up || fail "redis does not answer after its start"
keys_back
expect_exit 0 ob backup
id2=$(last_id)
for f in sources/cache.rdb sources/knowledge.snapshot manifest.json; do
	expect_file_same "backups/$id2/$f" "$(s3_object_file "nightly/$id2/$f")"
done
expect_exit 0 ob backup verify --remote --deep "$id2"
lose_sources
rm -rf "backups/$id2"
expect_exit 0 ob -y restore "$id2"
expect_grep "fetching it from 'minio'" err
expect_grep "restored source 'cache'" err
expect_grep "restored source 'knowledge'" err
wait_for 10 redis_up || fail "redis does not answer after the restore"
keys_back
points_back points-after3.json

test_done
