#!/usr/bin/env bash
# Backup sources beside PostgreSQL (lib/engines/source) end to end, through
# the test-only driver tests/unit/sourcetool.c until `opsctl backup` runs
# them: a real redis-server (BGSAVE, the RDB into the set, FLUSHALL, restore,
# the keys back; unreachable, AUTH, AOF refused, a corrupted file) and
# tests/lib/qdrant-fake.py, a stand-in for Qdrant's snapshot API (no Qdrant
# server is installable here): snapshot created, downloaded, deleted on the
# server, restored by upload; failing endpoints leave no snapshot behind.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"

SOURCETOOL=
for candidate in "${TEST_BUILDDIR:-}/tests/sourcetool" "$TEST_SRCDIR/build-test/tests/sourcetool" \
	"$TEST_SRCDIR/build/tests/sourcetool"; do
	if [ -x "$candidate" ]; then
		SOURCETOOL=$candidate
		break
	fi
done
[ -n "$SOURCETOOL" ] || fail "no sourcetool (built with the tests: tests/CMakeLists.txt)"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	fail "no redis-server / redis-cli (scripts/deps.sh installs redis-server and redis-tools)"

sourcetool() {
	"$SOURCETOOL" "$@"
}

# expect_sha FILE JSON: the entry's size and sha256 are FILE's.
expect_sha() {
	local sum size
	sum=$(sha256sum "$1" | cut -d' ' -f1)
	size=$(stat -c %s "$1")
	expect_json "$2" "d['sha256'] == '$sum' and d['size'] == $size"
}

# ---- Redis -----------------------------------------------------------------

redis_start
cat >opsctl.conf <<CONF
[source "cache"]
type = redis
address = 127.0.0.1:$REDIS_PORT
stop = $REDIS_STOP
start = $REDIS_START
restore_check = keys-equal
timeout = 30s
CONF
redis_cli SET greeting 'hello world' >/dev/null
redis_cli HSET user:1 name ada lang c >/dev/null
redis_cli RPUSH queue a b c >/dev/null
redis_cli SET session:9 token EX 3600 >/dev/null
redis_cli -n 3 SET other-db yes >/dev/null

expect_exit 0 sourcetool -c opsctl.conf check cache
expect_grep '^redis redis 127\.0\.0\.1:[0-9]+$' out

mkdir set1
expect_exit 0 sourcetool -c opsctl.conf backup cache set1
cp out cache.json
expect_json cache.json 'd["name"] == "cache" and d["type"] == "redis" and d["file"] == "sources/cache.rdb"'
expect_json cache.json 'd["details"]["keys"] == 5 and d["details"]["lastsave"] > 0'
expect_json cache.json 'd["details"]["rdb_path"].endswith("/dump.rdb") and d["details"]["appendonly"] is False'
expect_sha set1/sources/cache.rdb cache.json
[ "$(head -c 5 set1/sources/cache.rdb)" = REDIS ] || fail "the copied RDB does not start with REDIS"
[ "$(stat -c %a set1/sources/cache.rdb)" = 600 ] || fail "the copied RDB is not mode 600"

# A second backup of the same server: LASTSAVE must move again.
mkdir set2
expect_exit 0 sourcetool -c opsctl.conf backup cache set2
expect_json out "d['details']['lastsave'] > $("$TEST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["details"]["lastsave"])' cache.json)"

# Lose the data, then restore: the keys are back, the post-backup key gone.
redis_cli FLUSHALL >/dev/null
redis_cli SET written-later 1 >/dev/null
expect_exit 0 sourcetool -c opsctl.conf restore cache set1/sources/cache.rdb cache.json
wait_for 10 redis_up || fail "redis does not answer after the restore"
[ "$(redis_cli GET greeting)" = 'hello world' ] || fail "greeting not restored"
[ "$(redis_cli HGET user:1 lang)" = c ] || fail "user:1 not restored"
[ "$(redis_cli LRANGE queue 0 -1 | tr '\n' ' ')" = 'a b c ' ] || fail "queue not restored"
[ "$(redis_cli -n 3 GET other-db)" = yes ] || fail "database 3 not restored"
[ "$(redis_cli EXISTS written-later)" = 0 ] || fail "a key written after the backup survived the restore"
ls "$REDIS_DIR"/dump.rdb.pre_restore_* >/dev/null 2>&1 || fail "the previous RDB was not kept"
expect_no_grep 'opsctl-restore' <(ls -a "$REDIS_DIR")

# A file that does not match the manifest entry: refused before anything stops.
cp set1/sources/cache.rdb bad.rdb
printf 'x' >>bad.rdb
pid_before=$(cat "$REDIS_PID_FILE")
expect_exit 5 sourcetool -c opsctl.conf restore cache bad.rdb cache.json
expect_grep "^error: source 'cache' \(redis 127\.0\.0\.1:$REDIS_PORT\): 'bad\.rdb' does not match the manifest" err
[ "$(cat "$REDIS_PID_FILE")" = "$pid_before" ] && redis_up || fail "redis was restarted for a bad file"

# The check after the restore fails (a key more than recorded): the previous RDB goes back.
redis_cli SET extra 1 >/dev/null
redis_cli SAVE >/dev/null
"$TEST_PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["details"]["keys"]=7; print(json.dumps(d))' \
	cache.json >cache-wrong.json
expect_exit 1 sourcetool -c opsctl.conf restore cache set1/sources/cache.rdb cache-wrong.json
expect_grep 'has 5 keys after the restore, the backup had 7' err
expect_grep '^hint: the previous RDB is back in place and the server was started again' err
wait_for 10 redis_up || fail "redis does not answer after the undo"
[ "$(redis_cli EXISTS extra)" = 1 ] || fail "the undo did not bring the previous data back"

# Unreachable: a closed port fails with the source named, and leaves no file.
closed=$(free_port)
cat >down.conf <<CONF
[source "down"]
type = redis
address = 127.0.0.1:$closed
connect_timeout = 2s
CONF
mkdir set-down
expect_exit 1 sourcetool -c down.conf backup down set-down
expect_grep "^error: source 'down' \(redis 127\.0\.0\.1:$closed\): cannot connect: " err
[ -z "$(ls -A set-down/sources 2>/dev/null)" ] || fail "a failed backup left a file"

# AUTH: the password from the env file; a wrong one is a clear error.
redis_start 'requirepass s3cret-pw'
printf 'REDIS_PASSWORD=s3cret-pw\n' >app.env
cat >auth.conf <<CONF
[source "locked"]
type = redis
address = 127.0.0.1:$REDIS_PORT
password_env = REDIS_PASSWORD
CONF
REDISCLI_AUTH=s3cret-pw redis_cli SET k v >/dev/null
mkdir set-auth
expect_exit 0 sourcetool -c auth.conf -e app.env backup locked set-auth
expect_json out 'd["details"]["keys"] == 1'
expect_no_grep 's3cret' out err
printf 'REDIS_PASSWORD=wrong\n' >wrong.env
expect_exit 1 sourcetool -c auth.conf -e wrong.env backup locked set-auth-2
expect_grep "^error: source 'locked' \(redis 127\.0\.0\.1:$REDIS_PORT\): AUTH failed: " err
expect_grep '^hint: check REDIS_PASSWORD in the env file' err
expect_exit 3 sourcetool -c auth.conf backup locked set-auth-3
expect_grep "auth\.conf:4: password_env names 'REDIS_PASSWORD', which is set neither in the env file nor in the environment" err
REDIS_PASSWORD=s3cret-pw expect_exit 0 sourcetool -c auth.conf backup locked set-auth-4

# A literal password in the config is refused.
printf '[source "x"]\ntype = redis\npassword = hunter2\n' >literal.conf
expect_exit 3 sourcetool -c literal.conf check x
expect_grep 'literal\.conf:3: a secret does not belong in the config file' err

# appendonly yes: Redis would load the AOF, so the restore refuses.
redis_start 'appendonly yes'
cat >aof.conf <<CONF
[source "aof"]
type = redis
address = 127.0.0.1:$REDIS_PORT
stop = $REDIS_STOP
start = $REDIS_START
CONF
redis_cli SET k v >/dev/null
mkdir set-aof
expect_exit 0 sourcetool -c aof.conf backup aof set-aof
cp out aof.json
expect_json aof.json 'd["details"]["appendonly"] is True'
pid_before=$(cat "$REDIS_PID_FILE")
expect_exit 1 sourcetool -c aof.conf restore aof set-aof/sources/aof.rdb aof.json
expect_grep 'the server runs with appendonly yes: it would load its AOF, not the restored RDB' err
expect_grep '^hint: CONFIG SET appendonly no' err
[ "$(cat "$REDIS_PID_FILE")" = "$pid_before" ] || fail "the AOF server was restarted"

# CONFIG renamed away (a hardened server): rdb_path says where the RDB is.
redis_start 'rename-command CONFIG ""'
redis_cli SET k v >/dev/null
printf '[source "hard"]\ntype = redis\naddress = 127.0.0.1:%s\n' "$REDIS_PORT" >hard.conf
expect_exit 1 sourcetool -c hard.conf backup hard set-hard
expect_grep "^error: source 'hard' \(redis 127\.0\.0\.1:$REDIS_PORT\): CONFIG GET failed: ERR unknown command 'CONFIG'" err
expect_grep '^hint: when CONFIG is renamed or disabled, set rdb_path in \[source "hard"\]' err
printf 'rdb_path = %s\n' "$REDIS_RDB" >>hard.conf
expect_exit 0 sourcetool -c hard.conf backup hard set-hard
expect_json out 'd["details"]["keys"] == 1 and "appendonly" not in d["details"]'

# ---- HTTP snapshots: the Qdrant preset against the stand-in -----------------

qdrant_start --api-key qd-key
qdrant_api PUT /collections/knowledge >/dev/null
qdrant_api PUT /collections/knowledge/points \
	'{"points":[{"id":1,"vector":[0.1,0.2],"payload":{"doc":"runbook"}},{"id":2,"vector":[0.3,0.4],"payload":{"doc":"faq"}}]}' >/dev/null
qdrant_api POST /collections/knowledge/points/scroll '{}' >points-before.json
printf 'QDRANT_API_KEY=qd-key\n' >qd.env
cat >qd.conf <<CONF
[source "knowledge"]
type = http-snapshot
preset = qdrant
url = $QDRANT_URL/
collection = knowledge
api_key_env = QDRANT_API_KEY
timeout = 20s

[source "generic"]
type = http-snapshot
url = $QDRANT_URL
collection = knowledge
create = {url}/collections/{collection}/snapshots
download = {url}/collections/{collection}/snapshots/{name}
delete = {url}/collections/{collection}/snapshots/{name}
restore = {url}/collections/{collection}/snapshots/upload?priority=snapshot
name_field = result.name
api_key_env = QDRANT_API_KEY
api_key_header = api-key
CONF

expect_exit 0 sourcetool -c qd.conf -e qd.env check knowledge
expect_grep "^http-snapshot qdrant http://127\.0\.0\.1:$QDRANT_PORT collection 'knowledge'$" out

mkdir qset1
expect_exit 0 sourcetool -c qd.conf -e qd.env backup knowledge qset1
cp out knowledge.json
expect_json knowledge.json 'd["type"] == "http-snapshot" and d["file"] == "sources/knowledge.snapshot"'
expect_json knowledge.json 'd["details"]["snapshot"].startswith("knowledge-") and d["details"]["server_snapshot_deleted"] is True'
expect_json knowledge.json 'd["details"]["server_checksum"] == d["sha256"] and d["details"]["collection"] == "knowledge"'
expect_sha qset1/sources/knowledge.snapshot knowledge.json
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "the snapshot was not deleted on the server"
expect_no_grep 'qd-key' out err

# Drop the collection, restore by upload: the same points are back.
qdrant_api DELETE /collections/knowledge >/dev/null
expect_exit 0 sourcetool -c qd.conf -e qd.env restore knowledge qset1/sources/knowledge.snapshot knowledge.json
qdrant_api POST /collections/knowledge/points/scroll '{}' >points-after.json
expect_json points-before.json 'len(d["result"]["points"]) == 2'
expect_json points-after.json 'd["result"] == __import__("json").load(open("points-before.json"))["result"]'
qdrant_api GET /__stats >stats.json
expect_json stats.json '"restored knowledge priority=snapshot" in d["requests"]'

# The generic templates against the same API.
mkdir qset-generic
expect_exit 0 sourcetool -c qd.conf -e qd.env backup generic qset-generic
expect_json out 'd["file"] == "sources/generic.snapshot" and d["details"]["server_snapshot_deleted"] is True'
expect_sha qset-generic/sources/generic.snapshot out
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "the generic backup left its snapshot on the server"

# The download fails (500): the backup fails, the snapshot is still deleted, no file stays.
qdrant_fault download 500
mkdir qset-fail
expect_exit 1 sourcetool -c qd.conf -e qd.env backup knowledge qset-fail
expect_grep "^error: source 'knowledge' \(qdrant http://127\.0\.0\.1:$QDRANT_PORT collection 'knowledge'\): downloading the snapshot failed: GET http://127\.0\.0\.1:$QDRANT_PORT/collections/knowledge/snapshots/knowledge-[^ ]+ answered 500: injected failure of download$" err
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "a failed download left the snapshot on the server"
[ -z "$(ls -A qset-fail/sources 2>/dev/null)" ] || fail "a failed download left a file in the set"

# A download that differs from the server's checksum: integrity error (5).
qdrant_fault download 0 corrupt
expect_exit 5 sourcetool -c qd.conf -e qd.env backup knowledge qset-fail
expect_grep "the downloaded snapshot's SHA-256 [0-9a-f]{64} is not the server's [0-9a-f]{64}" err
[ "$(qdrant_snapshots knowledge)" = 0 ] || fail "a corrupt download left the snapshot on the server"
[ -z "$(ls -A qset-fail/sources 2>/dev/null)" ] || fail "a corrupt download left a file in the set"
qdrant_fault download 0

# Creating fails: nothing to delete, the answer's error in the message.
qdrant_fault create 500
expect_exit 1 sourcetool -c qd.conf -e qd.env backup knowledge qset-fail
expect_grep "creating the snapshot failed: POST http://127\.0\.0\.1:$QDRANT_PORT/collections/knowledge/snapshots answered 500: injected failure of create" err
qdrant_fault create 0

# Deleting fails after a good download: the backup stands, with a warning.
qdrant_fault delete 500
mkdir qset-keep
expect_exit 0 sourcetool -c qd.conf -e qd.env backup knowledge qset-keep
expect_grep "^warning: source 'knowledge': the snapshot 'knowledge-[^']+' is still on the server: " err
expect_json out 'd["details"]["server_snapshot_deleted"] is False'
[ "$(qdrant_snapshots knowledge)" = 1 ] || fail "expected the undeletable snapshot on the server"
qdrant_fault delete 0

# A wrong API key: 401 and a hint.
printf 'QDRANT_API_KEY=nope\n' >qd-wrong.env
expect_exit 1 sourcetool -c qd.conf -e qd-wrong.env backup knowledge qset-fail
expect_grep 'answered 401: Must provide an API key' err
expect_grep '^hint: check api_key_env of \[source "knowledge"\]' err

# The upload fails: the restore fails, naming the step.
qdrant_fault upload 500
expect_exit 1 sourcetool -c qd.conf -e qd.env restore knowledge qset1/sources/knowledge.snapshot knowledge.json
expect_grep 'uploading the snapshot failed: POST .*/snapshots/upload\?priority=snapshot answered 500' err
qdrant_fault upload 0

# Unreachable server.
sed "s#$QDRANT_URL#http://127.0.0.1:$closed#" qd.conf >qd-down.conf
expect_exit 1 sourcetool -c qd-down.conf -e qd.env backup knowledge qset-fail
expect_grep "^error: source 'knowledge' \(qdrant http://127\.0\.0\.1:$closed collection 'knowledge'\): creating the snapshot failed: POST .*: cannot connect: connection refused" err

test_done
