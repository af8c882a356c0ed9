#!/usr/bin/env bash
# An offsite upload killed after its multipart upload was completed on the
# storage but before its state file was removed (issue 8, found by
# tests/crash/scenarios/backup-offsite.sh: a SIGKILL while s3rver assembled
# the object; OPSCTL_TEST_KILL_AT=offsite-completed makes it exact). The next
# run finds every part recorded, sends CompleteMultipartUpload again, and
# the storage no longer knows the upload: S3 and MinIO answer NoSuchUpload,
# s3rver 500 InternalError. Either way the object is there, whole, with the
# ETag of the recorded parts: the run must take it as uploaded (before the
# fix: five 500s, exit 4, and every later backup failed the same way until
# the set was pruned).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
s3_start backups

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g" >/dev/null ||
	fail "seeding shop"
mkdir data
head -c 12000000 /dev/urandom >data/blob.bin   # incompressible: 3 parts of 5 MiB
printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
cat >opsctl.conf <<CONF
[app]
name = shop
env_file = $TEST_SCRATCH/app.env

[database]
url = $(pg_db_url shop)

[backup]
dir = backups
paths = $TEST_SCRATCH/data
offsite = minio

[storage "minio"]
type = s3
endpoint = $S3_URL
bucket = $S3_BUCKET
prefix = p
region = us-east-1
path_style = yes
access_key_env = MINIO_ACCESS_KEY
secret_key_env = MINIO_SECRET_KEY
part_size = 5M
concurrency = 2
timeout = 5s
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }

OPSCTL_TEST_KILL_AT=offsite-completed expect_exit 137 ob backup
id=$(ls backups | grep '^shop-')
[ -n "$id" ] || fail "no local set"
# the multipart upload is complete on the storage, its state still recorded
expect_grep 'uploadId=.* 200 ' "$S3_LOG"
TEST_CHECKS=$((TEST_CHECKS + 1))
ls "$OPSCTL_STATE_DIR/offsite/$id/"*.upload.json >/dev/null 2>&1 || fail "no upload state left in $OPSCTL_STATE_DIR/offsite/$id"
[ -f "$(s3_object_file "p/$id/files.tar.zst")" ] || fail "files.tar.zst is not on the storage"
s3_wait_quiet
mark=$(wc -l <"$S3_LOG")

# the next run takes the completed object as uploaded, and finishes the set
expect_exit 0 ob backup upload
expect_grep "^uploaded $id to 'minio'" err
# no part was sent again
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(tail -n "+$((mark + 1))" "$S3_LOG" | grep -c 'partNumber=')" = 0 ] || fail "parts were sent again"
expect_exit 0 ob backup list --remote
expect_grep "^$id " out
expect_exit 0 ob backup verify --remote --deep "$id"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ -f "backups/$id/offsite.json" ] || fail "the set has no offsite.json"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ ! -e "$OPSCTL_STATE_DIR/offsite/$id" ] || fail "the upload state of $id is still there"

test_done
