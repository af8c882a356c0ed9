#!/usr/bin/env bash
# backup create when it cannot succeed (issue 4 "Tests"): pg_dump failing (a
# database that does not exist, a role that may not read a table, a pg_dump
# that fails, prints nothing or is missing), and the disk filling up mid-backup
# (a 2 MB tmpfs as [backup] dir). Each time: exit 1, a message that says why
# (pg_dump's own words), nothing listed, no .tmp-* left, the older backups
# intact and not pruned, the metrics file saying opsctl_backup_success 0 with
# the older last-success time, a failed history line. Also: a directory
# without a valid manifest is never listed.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 200) g;
	CREATE TABLE secret (id int, v text);
	INSERT INTO secret VALUES (1, 'hidden');
	CREATE ROLE reader LOGIN PASSWORD 'reader-pw';
	GRANT SELECT ON items TO reader;
	REVOKE ALL ON secret FROM PUBLIC;" >/dev/null || fail "seeding shop"

mkdir metrics
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url shop)

[backup]
dir = backups
keep_last = 1
metrics_file = metrics/backup.prom
CONF
conf=$TEST_SCRATCH/opsctl.conf
ob() { "$OPSCTL" -c "$conf" "$@"; }
prom=metrics/backup.prom
hf=$OPSCTL_STATE_DIR/history.jsonl

# two good backups, kept although keep_last = 1 (--no-prune)
expect_exit 0 ob backup --no-prune
sleep 1
expect_exit 0 ob backup --no-prune
good_ids=$(ls backups | sort | tr '\n' ' ')
[ "$(ls backups | wc -l)" -eq 2 ] || fail "expected two sets, have: $good_ids"
newest=$(ls backups | sort | tail -n 1)
last_ok=$(sed -n 's/^opsctl_backup_last_success_timestamp_seconds{app="shop"} //p' "$prom")
[ -n "$last_ok" ] && [ "$last_ok" -gt 0 ] || fail "no last-success time in the metrics file"
good_size=$(sed -n 's/^opsctl_backup_size_bytes{app="shop"} //p' "$prom")
(cd backups && find . -type f ! -name verified.json -print0 | sort -z | xargs -0 sha256sum) >good.sums
snapshot_dir() { (cd backups && find . -type f ! -name verified.json -print0 | sort -z | xargs -0 sha256sum); }

# after a failed run: the same sets, byte for byte, nothing temporary, the
# metrics file reporting the failure with the older success, a history line
after_failure() { # WHAT
	local what=$1 hist
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(ls -A backups | sort | tr '\n' ' ')" = "$good_ids" ] ||
		fail "$what: backups/ holds $(ls -A backups | tr '\n' ' '), expected only $good_ids"
	TEST_CHECKS=$((TEST_CHECKS + 1))
	snapshot_dir | cmp -s - good.sums || fail "$what: an older backup changed"
	expect_exit 0 ob backup list
	expect_grep "^$newest " out
	[ "$(grep -c '^shop-' out)" -eq 2 ] || fail "$what: backup list shows $(grep -c '^shop-' out) sets"
	expect_exit 0 ob backup verify "$newest"
	expect_grep '^opsctl_backup_success\{app="shop"\} 0$' "$prom"
	expect_grep "^opsctl_backup_last_success_timestamp_seconds\{app=\"shop\"\} $last_ok\$" "$prom"
	expect_grep "^opsctl_backup_size_bytes\{app=\"shop\"\} $good_size\$" "$prom"
	expect_grep '^opsctl_backup_duration_seconds\{app="shop"\} [0-9.]+$' "$prom"
	[ -z "$(find metrics -name '*tmp*')" ] || fail "$what: a temporary metrics file was left"
	hist=$(tail -n 1 "$hf")
	printf '%s\n' "$hist" >hist.json
	expect_json hist.json 'd["command"] == "backup create" and d["outcome"] == "failed" and d["exit"] == 1 and d["error"]'
	expect_json hist.json '"id" not in d'
	expect_no_grep "$pw|reader-pw" out err "$hf" "$prom"
	# a good run still works afterwards (and is not confused by leftovers)
}

# ---- a database that does not exist ----------------------------------------------
expect_exit 1 ob --db "$(pg_db_url no_such_db)" backup
expect_grep '^opsctl: error: .*database "no_such_db" does not exist' err
expect_no_grep "$pw" err
[ ! -s out ] || fail "a failed backup printed on stdout"
after_failure "no such database"
# the same in JSON
expect_exit 1 ob --db "$(pg_db_url no_such_db)" --output json backup
expect_json out 'd["exit"] == 1 and "no_such_db" in d["error"]["message"] and d["command"] == "backup create" and "id" not in d'
after_failure "no such database (json)"

# ---- a role that may not read a table: pg_dump itself fails ------------------------
reader_url="postgresql://reader:reader-pw@127.0.0.1:$TEST_PG_PORT/shop"
expect_exit 1 ob --db "$reader_url" backup
expect_grep "pg_dump" err
expect_grep 'permission denied for table secret' err
after_failure "permission denied"

# ---- pg_dump failing, empty, missing ------------------------------------------------
cat >fake_pg_dump <<'EOF'
#!/bin/sh
# writes part of a dump, complains, fails
printf 'PGDMP partial dump bytes\n'
echo "pg_dump: error: simulated failure: could not write to output" >&2
exit 1
EOF
cat >empty_pg_dump <<'EOF'
#!/bin/sh
exit 0
EOF
cat >killed_pg_dump <<'EOF'
#!/bin/sh
printf 'PGDMP'
kill -9 $$
EOF
chmod +x fake_pg_dump empty_pg_dump killed_pg_dump
with_pg_dump() { # PROGRAM ARGS...: backup with [backup] pg_dump = PROGRAM
	local prog=$1
	shift
	sed "s|^\[backup\]\$|[backup]\npg_dump = $prog|" opsctl.conf >pgdump.conf
	"$OPSCTL" -c "$TEST_SCRATCH/pgdump.conf" "$@"
}
expect_exit 1 with_pg_dump "$TEST_SCRATCH/fake_pg_dump" backup
expect_grep "fake_pg_dump.*exit status 1.*simulated failure: could not write to output" err
after_failure "pg_dump exit 1"
expect_exit 1 with_pg_dump "$TEST_SCRATCH/empty_pg_dump" backup
expect_grep 'empty dump' err
after_failure "empty dump"
expect_exit 1 with_pg_dump "$TEST_SCRATCH/killed_pg_dump" backup
expect_grep 'killed by signal 9' err
after_failure "pg_dump killed"
expect_exit 1 with_pg_dump "$TEST_SCRATCH/no/such/pg_dump" backup
expect_grep "cannot run '.*no/such/pg_dump'" err
after_failure "no pg_dump"

# ---- directories that are not backups are never listed ---------------------------
mkdir backups/shop-20200101T000000Z                        # no manifest
mkdir backups/shop-20200102T000000Z
printf '{"id": "shop-20200102T000000Z", "broken": ' >backups/shop-20200102T000000Z/manifest.json
mkdir backups/.tmp-shop-20200103T000000Z
cp "backups/$newest/manifest.json" backups/.tmp-shop-20200103T000000Z/
expect_exit 0 ob backup list
[ "$(grep -c '^shop-' out)" -eq 2 ] || fail "backup list shows a directory without a valid manifest"
expect_no_grep '2020010' out
expect_grep "2 directories in '.*backups' without a valid manifest" err
expect_exit 2 ob backup verify shop-20200101T000000Z
expect_grep "no backup 'shop-20200101T000000Z'" err
expect_exit 2 ob --yes restore shop-20200102T000000Z
rm -rf backups/shop-2020010[12]T000000Z backups/.tmp-shop-20200103T000000Z

# ---- the disk fills up mid-backup ----------------------------------------------------
small=$TEST_SCRATCH/small
small_mounted=
umount_small() {
	local code=$?
	if [ -n "$small_mounted" ]; then
		umount "$small" 2>/dev/null || umount -l "$small" 2>/dev/null
		small_mounted=
	fi
	return $code
}
trap 'umount_small; test_cleanup' EXIT
mkdir "$small"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=2m,mode=0755 tmpfs "$small" 2>mount.err; then
	say "skipping the disk-full case: cannot mount a 2 MB tmpfs ($(id -un); $(cat mount.err 2>/dev/null))"
else
	small_mounted=1
	# about 8 MB of random hex text: more than 2 MB however it is compressed
	pg_psql "CREATE DATABASE big" >/dev/null || fail "CREATE DATABASE big"
	pg_dbsql big "CREATE TABLE noise AS SELECT g AS id, md5(random()::text) || md5(random()::text) ||
		md5(random()::text) AS a FROM generate_series(1, 80000) g" >/dev/null || fail "seeding big"
	cat >small.conf <<CONF
[app]
name = shop

[database]
url = $(pg_db_url shop)

[backup]
dir = $small/backups
keep_last = 1
metrics_file = $TEST_SCRATCH/metrics/small.prom
CONF
	os() { "$OPSCTL" -c "$TEST_SCRATCH/small.conf" "$@"; }
	# a small good backup fits
	expect_exit 0 os backup
	old=$(ls "$small/backups")
	old_sums=$(cd "$small/backups" && find . -type f | sort | xargs sha256sum)
	old_ok=$(sed -n 's/^opsctl_backup_last_success_timestamp_seconds{app="shop"} //p' metrics/small.prom)
	used_before=$(df -k --output=used "$small" | tail -n 1)
	for fc in directory/zstd directory/none custom/zstd custom/none; do
		comp=${fc#*/}
		expect_exit 1 os --db "$(pg_db_url big)" backup --format "${fc%/*}" --compression "$comp"
		expect_grep '[Nn]o space left on device' err
		expect_grep "cannot write '$small/backups/\.tmp-shop-[^/]*/db|pg_dump.*could not write" err
		[ "$(ls -A "$small/backups")" = "$old" ] ||
			fail "disk full ($comp): $small/backups holds $(ls -A "$small/backups" | tr '\n' ' ')"
		[ "$(cd "$small/backups" && find . -type f | sort | xargs sha256sum)" = "$old_sums" ] ||
			fail "disk full ($comp): the older backup changed"
		used=$(df -k --output=used "$small" | tail -n 1)
		[ "$used" -le $((used_before + 64)) ] || fail "disk full ($comp): the partial dump was not removed ($used KiB used, $used_before before)"
		expect_exit 0 os backup list
		[ "$(grep -c '^shop-' out)" -eq 1 ] || fail "disk full ($comp): backup list shows $(grep -c '^shop-' out) sets"
		expect_grep '^opsctl_backup_success\{app="shop"\} 0$' metrics/small.prom
		expect_grep "^opsctl_backup_last_success_timestamp_seconds\{app=\"shop\"\} $old_ok\$" metrics/small.prom
		tail -n 1 "$hf" >hist.json
		expect_json hist.json 'd["outcome"] == "failed" and "no space left on device" in d["error"].lower()'
	done
	# with room again, the next backup works
	sleep 1
	expect_exit 0 os backup
	expect_grep '^shop-' out
	umount_small
fi

# ---- after all that, a good backup works and prunes to keep_last = 1 -------------------
sleep 1
expect_exit 0 ob backup
new=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
[ "$(ls -A backups)" = "$new" ] || fail "a good backup with keep_last = 1 should leave only $new, have: $(ls -A backups | tr '\n' ' ')"
expect_grep '^opsctl_backup_success\{app="shop"\} 1$' "$prom"

test_done
