#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Resource faults (issue 8): the disk fills up (a small tmpfs, as root; skipped
# otherwise). Each time: exit 1, a message saying "No space left on device"
# and naming what could not be written, nothing lost (the previous state
# intact and usable, no temporary file left, nothing locked), and the same
# command succeeds once there is room again:
#   restore: the download of a remote set (local copy gone; [backup] dir full)
#   deploy: the unpack of a release bigger than the room left (the previous
#           release stays current, complete and serving), and the preflight
#           refusal of one that obviously does not fit
#   rotate-secret: the env file rewrite (random key and PostgreSQL password:
#           the env file keeps its bytes, the old password still logs in)
# The disk filling up during `backup` itself is t3001's (every format and
# compression, nothing listed, temporary files removed, metrics and history).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/fault-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl
[ "$(id -u)" -eq 0 ] || skip_all "mounting a small tmpfs needs root (running as $(id -un))"
tmpfs_mount "$TEST_SCRATCH/probe" 1m || skip_all "cannot mount a tmpfs here"

pg_start
s3_start backups
hf=$OPSCTL_STATE_DIR/history.jsonl
no_locks_held() { # WHAT: no lock file of the state dir is held (flock -n succeeds on each)
	local f
	for f in "$OPSCTL_STATE_DIR"/locks/*.lock; do
		[ -e "$f" ] || continue
		TEST_CHECKS=$((TEST_CHECKS + 1))
		flock -n "$f" true || fail "$1: $f is still locked"
	done
}

# ---- restore: the download of a remote set fills the disk -------------------------------
say "restore of a remote set into a [backup] dir with no room for it"
pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
# about 8 MB of random hex text: more than 2 MB however it is compressed
pg_dbsql shop "CREATE TABLE items (id int PRIMARY KEY, a text);
	INSERT INTO items SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text)
	FROM generate_series(1, 80000) g;" >/dev/null || fail "seeding shop"
printf 'K=%s\nS=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
write_conf() { # FILE DIR
	cat >"$1" <<CONF
[app]
name = shop
env_file = $TEST_SCRATCH/app.env
[database]
url = $(pg_db_url shop)
[backup]
dir = $2
offsite = s3
[storage "s3"]
type = s3
endpoint = $S3_URL
bucket = $S3_BUCKET
prefix = p
region = us-east-1
path_style = yes
access_key_env = K
secret_key_env = S
timeout = 5s
CONF
}
write_conf big.conf "$TEST_SCRATCH/backups"
small=$TEST_SCRATCH/small
tmpfs_mount "$small" 2m || fail "cannot mount a 2 MB tmpfs"
mkdir "$small/backups"
write_conf small.conf "$small/backups"
expect_exit 0 "$OPSCTL" -c big.conf backup
id=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
backup_fp=$(pg_db_fingerprint shop)
size=$(du -sk "backups/$id" | cut -f1)
[ "$size" -gt 2500 ] || fail "the set is only $size KiB: it would fit the 2 MB tmpfs"
pg_dbsql shop "UPDATE items SET a = 'live' WHERE id <= 100" >/dev/null
live_fp=$(pg_db_fingerprint shop)
dbs() { pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"; }
dbs_before=$(dbs)
expect_exit 1 "$OPSCTL" -c small.conf --yes restore "$id"
expect_grep "backup '$id' is not in '$small/backups': fetching it from 's3'" err
expect_grep "^opsctl: error: fetching '$id' from 's3': .*[Nn]o space left on device" err
expect_grep "cannot write '$small/backups/\.tmp-$id/[^']*': no space left on device" err
expect_no_grep "attempts\)" err # a full disk is not retried
TEST_CHECKS=$((TEST_CHECKS + 4))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "restore, disk full: the live database changed"
[ "$(dbs)" = "$dbs_before" ] || fail "restore, disk full: databases are now $(dbs), were $dbs_before"
[ -z "$(ls -A "$small/backups")" ] || fail "restore, disk full: left in the backup dir: $(ls -A "$small/backups" | tr '\n' ' ')"
[ "$(df -k --output=used "$small" | tail -n 1)" -lt 64 ] || fail "restore, disk full: the partial download still takes room"
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "restore" and d["outcome"] == "failed" and d["exit"] == 1'
no_locks_held "restore, disk full"
expect_exit 0 "$OPSCTL" -c big.conf backup verify --remote "$id"
say "with room again, the same restore succeeds"
mount -o remount,size=64m "$small" || fail "cannot grow the tmpfs"
expect_exit 0 "$OPSCTL" -c small.conf --yes restore "$id"
expect_grep "^restored $id into shop" out
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "the restore after the disk-full one restored other data"
expect_exit 0 "$OPSCTL" -c small.conf backup verify "$id"
tmpfs_umount_all
s3_stop

# ---- deploy: the unpack fills the disk ----------------------------------------------------
say "deploy of a release that expands past the room left in [deploy] root"
httpd_start
httpd_control path=/health status=200 'body={"status":"UP"}'
tmpfs_mount "$TEST_SCRATCH/app" 4m || fail "cannot mount a 4 MB tmpfs"
mkdir -p app/shared
echo SECRET=shared >app/shared/.env
cat >restart.sh <<'SH'
#!/bin/sh
echo "$OPSCTL_RELEASE" >>"$(dirname "$0")/restarts.log"
SH
chmod +x restart.sh
write_deploy_conf() { # MIN_FREE
	cat >deploy.conf <<CONF
[app]
name = demo
[deploy]
root = $TEST_SCRATCH/app
keep_releases = 3
shared = .env
backup = no
migrate = no
${1:+min_free = $1}
[service]
restart = $TEST_SCRATCH/restart.sh
[health]
wait = 5s
interval = 100ms
consecutive = 1
timeout = 2s
[check "api"]
url = $HTTPD_URL/health
CONF
}
write_deploy_conf 0
od() { "$OPSCTL" -c "$TEST_SCRATCH/deploy.conf" "$@"; }
mkrel() { # NAME MB-OF-TEXT (not zeros: libarchive would write a sparse file)
	rm -rf "src-$1" && mkdir "src-$1"
	echo "$1" >"src-$1/version"
	printf '#!/bin/sh\necho %s\n' "$1" >"src-$1/run.sh"
	[ "$2" -eq 0 ] || yes "release $1 data line" | head -c "$(($2 * 1024 * 1024))" >"src-$1/data.bin"
	tar -C "src-$1" -czf "$1.tar.gz" .
}
mkrel v1 0
expect_exit 0 od deploy v1.tar.gz
id1=$(cat out)
rel_sums() { (cd "app/releases/$id1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
sums1=$(rel_sums)
mkrel v2 8 # 8 MB of text: a few KB compressed, passes the preflight (3x the artifact)
: >restarts.log
expect_exit 1 od deploy v2.tar.gz
expect_between 0 30000 "deploy whose unpack fills the disk"
expect_grep "^opsctl: error: cannot write '.*/app/releases/\.tmp-[^/]*/data\.bin': no space left on device" err
expect_grep "^hint: nothing was switched: '$id1' is still the current release" err
TEST_CHECKS=$((TEST_CHECKS + 4))
[ "$(readlink app/current)" = "releases/$id1" ] || fail "deploy, disk full: current -> $(readlink app/current)"
[ "$(ls app/releases)" = "$id1" ] || fail "deploy, disk full: releases/ holds $(ls -A app/releases | tr '\n' ' ')"
[ "$(rel_sums)" = "$sums1" ] || fail "deploy, disk full: the current release changed"
[ ! -s restarts.log ] || fail "deploy, disk full: the service was restarted: $(cat restarts.log)"
[ "$(df -k --output=used app | tail -n 1)" -lt 256 ] || fail "deploy, disk full: the partial release still takes room ($(df -k --output=used app | tail -n 1) KiB)"
[ ! -e "$OPSCTL_STATE_DIR/deploy/journal.json" ] || fail "deploy, disk full: a journal was left"
no_locks_held "deploy, disk full"
expect_exit 0 od deploy status
expect_exit 0 od deploy list
expect_grep "$id1" out
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "deploy" and d["outcome"] != "ok" and d["exit"] == 1'
say "the default min_free (100M): refused by the preflight, before anything"
write_deploy_conf ""
expect_exit 1 od deploy v2.tar.gz
expect_grep "^opsctl: error: not enough free space in '.*app': [0-9.]+ ?[KMG]?i?B free, [0-9.]+ ?[KMG]?i?B needed" err
expect_grep "^hint: .*min_free" err
[ "$(readlink app/current)" = "releases/$id1" ] || fail "deploy, preflight: current moved"
say "with room again, the release deploys"
write_deploy_conf 0
mount -o remount,size=64m app || fail "cannot grow the tmpfs"
expect_exit 0 od deploy v2.tar.gz
id2=$(cat out)
[ "$(readlink app/current)" = "releases/$id2" ] && [ "$(cat app/current/version)" = v2 ] ||
	fail "the deploy after the disk-full one: current -> $(readlink app/current)"
tmpfs_umount_all

# ---- rotate-secret: the env file rewrite finds no room -------------------------------------
say "rotate-secret with the env file on a full disk: random key and PostgreSQL password"
envdir=$TEST_SCRATCH/envdir
tmpfs_mount "$envdir" 1m || fail "cannot mount a 1 MB tmpfs"
pg_psql "CREATE ROLE shop_app LOGIN" >/dev/null || fail "CREATE ROLE shop_app"
cat >"$envdir/app.env" <<EOF
# shop settings
DB_HOST=127.0.0.1
DB_PORT=$TEST_PG_PORT
DB_NAME=shop
DB_USER=shop_app
DB_PASSWORD=$(random_pw)
JWT_SECRET=jwt-old-value-0123456789abcdef
EOF
chmod 600 "$envdir/app.env"
pg_set_password shop_app "$envdir/app.env"
cat >rotate.conf <<CONF
[app]
name = shop
env_file = $envdir/app.env
[database]
url = $(pg_db_url postgres)
connect_timeout = 3s
[secret "jwt"]
env = JWT_SECRET
previous_env = JWT_SECRET_PREVIOUS
[secret "db"]
env = DB_PASSWORD
kind = postgres-password
role = shop_app
CONF
orot() { "$OPSCTL" -c "$TEST_SCRATCH/rotate.conf" "$@"; }
cp -p "$envdir/app.env" before.env
expect_login "$envdir/app.env" "the password before"
tmpfs_fill "$envdir"
[ "$(df -k --output=avail "$envdir" | tail -n 1)" -eq 0 ] || fail "the tmpfs is not full"
for name in jwt db; do
	expect_exit 1 orot rotate-secret "$name" --no-restart
	expect_grep "^opsctl: error: .*'$envdir/[^']*': [Nn]o space left on device" err
	expect_file_same before.env "$envdir/app.env"
	expect_mode "$envdir/app.env" 600
	expect_login "$envdir/app.env" "rotate-secret $name, disk full: the old password"
	expect_no_pending
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ -z "$(ls -A "$envdir" | grep -v -e '^app\.env$' -e '^\.filler')" ] ||
		fail "rotate-secret $name, disk full: left in the env dir: $(ls -A "$envdir" | tr '\n' ' ')"
	no_locks_held "rotate-secret $name, disk full"
	tail -n 1 "$hf" >last.json
	expect_json last.json 'd["command"] == "rotate-secret" and d["outcome"] == "failed" and d["exit"] == 1'
done
expect_exit 0 orot rotate-secret --list
say "with room again, both rotate"
tmpfs_unfill "$envdir"
expect_exit 0 orot rotate-secret jwt --no-restart
expect_exit 0 orot rotate-secret db --no-restart
[ "$(env_get "$envdir/app.env" JWT_SECRET_PREVIOUS)" = jwt-old-value-0123456789abcdef ] ||
	fail "the rotation after the disk-full one did not keep the previous JWT key"
expect_login "$envdir/app.env" "the rotated password"
expect_no_login before.env "the password before the rotation"
tmpfs_umount_all

test_done
