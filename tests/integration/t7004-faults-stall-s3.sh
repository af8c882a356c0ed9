#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Resource faults (issue 8): an S3 endpoint that stalls (tests/lib/stall.py).
# Each request is given up [storage] timeout after the last byte moved (also
# in the middle of a body), tried 5 times in all, then exit 4 with nothing lost:
#   backup (offsite)      endpoint silent          exit 4 after 5 attempts (~13 s with
#                                                   timeout = 1s), the local set kept, verified
#                                                   and listed; `backup upload` sends it once
#                                                   the storage answers
#   restore (remote)      GET stalls mid-body      always: exit 4, nothing fetched, the live
#                                                   database untouched; once: retried, restored
#                         GET trickles mid-body    (a byte every 0.4 s: never a second without
#                                                   one) under 1 KiB per timeout: exit 4 as above
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/fault-lib.sh"
require_opsctl
stall_start silent
silent_url=$STALL_URL
silent_log=$STALL_LOG

# ---- S3 endpoint that stalls: backup with offsite ------------------------------------------
pg_start
s3_start backups
pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g || ' ' || md5(g::text) FROM generate_series(1, 20000) g;" >/dev/null ||
	fail "seeding shop"
printf 'K=%s\nS=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
# write_conf FILE ENDPOINT [EXTRA BACKUP LINES]
write_conf() {
	local file=$1 endpoint=$2
	shift 2
	{
		printf '[app]\nname = shop\nenv_file = app.env\n\n'
		printf '[database]\nurl = %s\n\n' "$(pg_db_url shop)"
		printf '[backup]\ndir = backups\nkeep_last = 10\nmetrics_file = backup.prom\noffsite = s3\n'
		printf '%s\n' "$@"
		printf '\n[storage "s3"]\ntype = s3\nendpoint = %s\nbucket = %s\nprefix = p\n' "$endpoint" "$S3_BUCKET"
		printf 'region = us-east-1\npath_style = yes\naccess_key_env = K\nsecret_key_env = S\ntimeout = 1s\n'
	} >"$file"
}
write_conf good.conf "$S3_URL"
write_conf stalled.conf "$silent_url"
og() { "$OPSCTL" -c "$TEST_SCRATCH/good.conf" "$@"; }
ost() { "$OPSCTL" -c "$TEST_SCRATCH/stalled.conf" "$@"; }
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }

expect_exit 0 og backup
first=$(last_id)
sleep 1
say "backup with an S3 endpoint that never answers: exit 4 after the retries, the local set kept"
conns_before=$(STALL_LOG=$silent_log stall_count conn)
expect_exit 4 ost backup
# 5 attempts of at most 1s each, 0.5+1+2+4 s between them
expect_between 10000 20000 "backup against a silent S3 endpoint"
stalled_id=$(ls backups | sort | tail -n 1)
[ "$stalled_id" != "$first" ] || fail "no local set was made"
expect_grep "^opsctl: error: .*'$silent_url' did not answer or stalled for 1s \(timeout of \[storage \"s3\"\]\) \(5 attempts\)" err
expect_grep "$stalled_id" out err
conns=$(($(STALL_LOG=$silent_log stall_count conn) - conns_before))
[ "$conns" -ge 5 ] || fail "expected at least 5 connections to the stalled endpoint, got $conns"
expect_exit 0 og backup verify "$stalled_id"
expect_exit 0 og backup list
expect_grep "^$stalled_id " out
expect_grep "^$first " out
[ -z "$(ls -A backups | grep '^\.')" ] || fail "work files left in backups/: $(ls -A backups | tr '\n' ' ')"
expect_grep '^opsctl_backup_offsite_success\{app="shop"\} 0$|offsite.* 0$' backup.prom
say "the storage answers again: backup upload sends the set"
expect_exit 0 og backup upload
expect_exit 0 og backup list --remote
expect_grep "^$stalled_id " out

# ---- an S3 GET that stalls mid-body: restore of a remote set -----------------------------------
pg_dbsql shop "UPDATE items SET name = 'changed ' || id WHERE id <= 100" >/dev/null
backup_fp=$(pg_db_fingerprint shop)
sleep 1
expect_exit 0 og backup
rid=$(last_id)
expect_exit 0 og backup list --remote
expect_grep "^$rid " out
pg_dbsql shop "UPDATE items SET name = 'live ' || id WHERE id <= 50" >/dev/null
live_fp=$(pg_db_fingerprint shop)
dbs() { pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"; }
dbs_before=$(dbs)
big=$("$TEST_PYTHON" -c 'import json,sys; print(max(json.load(open(sys.argv[1]))["files"], key=lambda f: f["size"])["name"])' "backups/$rid/manifest.json")
big_size=$(stat -c %s "backups/$rid/$big")
[ "$big_size" -gt 20000 ] || fail "the biggest file of $rid ($big) has only $big_size bytes"
rm -rf "backups/$rid"

say "the biggest object stalls after 10000 bytes, every time: exit 4, nothing fetched, the live database untouched"
stall_start proxy --upstream "127.0.0.1:$S3_PORT" --match "^GET /$S3_BUCKET/p/$rid/$big" --after 10000
write_conf proxy.conf "$STALL_URL"
expect_exit 4 "$OPSCTL" -c "$TEST_SCRATCH/proxy.conf" --yes restore "$rid"
# 5 attempts, each given up 1-2s after the last byte moved (curl calls back
# once a second when idle), 0.5+1+2+4 s between them
expect_between 10000 20000 "restore whose download stalls"
expect_grep "fetching '$rid' from 's3'" err
expect_grep "did not answer or stalled for 1s .*\(5 attempts\)" err
[ "$(stall_count stall)" -ge 5 ] || fail "expected 5 stalled downloads, the proxy saw $(stall_count stall)"
TEST_CHECKS=$((TEST_CHECKS + 3))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "a restore that could not fetch the set changed the live database"
[ "$(dbs)" = "$dbs_before" ] || fail "databases changed: $(dbs), were $dbs_before"
[ -z "$(ls -A backups | grep -e '^\.' -e "^$rid\$")" ] || fail "the stalled fetch left: $(ls -A backups | tr '\n' ' ')"

say "the biggest object trickles after 10000 bytes (a byte every 0.4 s, never 1 s without one): exit 4, nothing fetched"
stall_start proxy --upstream "127.0.0.1:$S3_PORT" --match "^GET /$S3_BUCKET/p/$rid/$big" --after 10000 --trickle 0.4
write_conf proxy.conf "$STALL_URL"
expect_exit 4 "$OPSCTL" -c "$TEST_SCRATCH/proxy.conf" --yes restore "$rid"
expect_between 10000 25000 "restore whose download trickles"
expect_grep "moved under 1024 bytes in 1s .*\(5 attempts\)" err
[ "$(stall_count trickle)" -ge 5 ] || fail "expected 5 trickled downloads, the proxy saw $(stall_count trickle)"
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "a restore that could not fetch the set changed the live database"
[ -z "$(ls -A backups | grep -e '^\.' -e "^$rid\$")" ] || fail "the trickled fetch left: $(ls -A backups | tr '\n' ' ')"

say "it stalls once: retried, and the restore succeeds"
stall_start proxy --upstream "127.0.0.1:$S3_PORT" --match "^GET /$S3_BUCKET/p/$rid/$big" --after 10000 --count 1
write_conf proxy.conf "$STALL_URL"
expect_exit 0 "$OPSCTL" -c "$TEST_SCRATCH/proxy.conf" --yes restore "$rid"
expect_between 900 30000 "restore with one stalled download"
[ "$(stall_count stall)" -eq 1 ] || fail "expected one stalled download, the proxy saw $(stall_count stall)"
expect_grep "^restored $rid into shop" out
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the restored database differs from the backup"
expect_exit 0 og backup verify "$rid"
for d in $(pg_psql "SELECT datname FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'"); do
	pg_psql "DROP DATABASE $d" >/dev/null
done


test_done
