#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# A restore that fails at any step leaves the live database exactly as it was
# and removes the half-built one (issue 4): a plain dump holding a bad
# statement (its checksum made to match), psql / pg_restore dying mid-way, a
# [service] stop that fails, a session the restoring role may not end; a
# failing [service] start after the swap is reported. Also: restore from a
# set's directory (PATH), an unknown id (exit 2), a directory that is not a
# backup, and relative [backup] paths.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD
PSQL=$TEST_PG_BINDIR/psql

pg_psql "CREATE ROLE app LOGIN CREATEDB PASSWORD 'app-pw'" >/dev/null || fail "CREATE ROLE app"
pg_psql "CREATE DATABASE shop OWNER app" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	SET ROLE app;
	CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g || ' ' || md5(g::text) FROM generate_series(1, 4000) g;
	CREATE TABLE orders (id int PRIMARY KEY, item_id int REFERENCES items);
	INSERT INTO orders SELECT g, 1 + g % 4000 FROM generate_series(1, 3000) g;" >/dev/null || fail "seeding shop"
mkdir uploads && printf 'original\n' >uploads/a.txt
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = postgresql://app:app-pw@127.0.0.1:$TEST_PG_PORT/shop

[service]
stop = echo stop >>$TEST_SCRATCH/svc.log
start = echo start >>$TEST_SCRATCH/svc.log

[backup]
dir = backups
paths = $TEST_SCRATCH/uploads
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
with_conf() { # SED-EXPR ARGS...: opsctl with a variant of opsctl.conf
	local expr=$1
	shift
	sed "$expr" opsctl.conf >variant.conf
	"$OPSCTL" -c "$TEST_SCRATCH/variant.conf" "$@"
}
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
dbs() { pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname NOT LIKE 'template%'"; }

mkdir tmp && export TMPDIR=$TEST_SCRATCH/tmp # where a restore may decompress
expect_exit 0 ob backup
custom=$(last_id) # the default, directory format
sleep 1
expect_exit 0 ob backup --format custom
single=$(last_id) # one custom-format file, streamed into pg_restore
expect_exit 0 ob backup --format plain
plain=$(last_id)
backup_fp=$(pg_db_fingerprint shop)
pg_dbsql shop "UPDATE items SET name = 'live ' || id WHERE id <= 10; INSERT INTO orders VALUES (99999, 1)" >/dev/null
printf 'live\n' >uploads/a.txt
live_fp=$(pg_db_fingerprint shop)
dbs_before=$(dbs)
oid_before=$(pg_psql "SELECT oid FROM pg_database WHERE datname = 'shop'")
untouched() { # WHAT: live data, its identity, the database list, the service and the files
	TEST_CHECKS=$((TEST_CHECKS + 5))
	[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "$1: the live database changed"
	[ "$(pg_psql "SELECT oid FROM pg_database WHERE datname = 'shop'")" = "$oid_before" ] ||
		fail "$1: 'shop' is not the same database any more"
	[ "$(dbs)" = "$dbs_before" ] || fail "$1: databases are now $(dbs), were $dbs_before (the half-built one not dropped?)"
	[ "$(cat uploads/a.txt)" = live ] && [ -z "$(ls -d uploads.pre_restore_* 2>/dev/null)" ] || fail "$1: the files were touched"
	[ -z "$(ls -A "backups/$custom" "backups/$single" "backups/$plain" | grep '^\.restore')" ] || fail "$1: a temporary dump was left in the set"
	[ -z "$(ls -A backups tmp | grep '^\.restore')" ] || fail "$1: a work directory was left: $(ls -A backups tmp | tr '\n' ' ')"
}

# reseal SET: the manifest's sizes and checksums made to match the files again
reseal() {
	"$TEST_PYTHON" - "$1" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
for f in m["files"]:
    data = open(os.path.join(d, f["name"]), "rb").read()
    f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
m["size_bytes"] = sum(f["size"] for f in m["files"])
m["id"] = os.path.basename(d)
json.dump(m, open(d + "/manifest.json", "w"), indent=1)
EOF
}

# ---- a plain dump with a bad statement in the middle (checksums made to match) ------------------
bad=shop-20250101T000000Z
cp -a "backups/$plain" "backups/$bad"
gunzip -c "backups/$plain/db.sql.gz" >dump.sql
# after the items data, before orders: a statement that fails
awk '/^COPY public.orders/ && !done { print "SELECT no_such_function_here();"; done = 1 } { print }' dump.sql >bad.sql
grep -q no_such_function_here bad.sql || fail "could not edit the dump"
gzip -c bad.sql >"backups/$bad/db.sql.gz"
reseal "backups/$bad"
expect_exit 0 ob backup verify "$bad"
rm -f svc.log
expect_exit 1 ob --yes restore "$bad"
expect_grep 'psql' err
expect_grep 'no_such_function_here\(\) does not exist' err
expect_no_grep "$pw|app-pw" out err
[ ! -s out ] || fail "a failed restore printed on stdout"
untouched "a bad statement in the dump"
[ ! -e svc.log ] || fail "the service was stopped for a restore that failed before the swap: $(cat svc.log)"
tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >last.json
expect_json last.json 'd["command"] == "restore" and d["outcome"] == "failed" and d["exit"] == 1 and "no_such_function_here" in d["error"]'
expect_json last.json '"previous_as" not in d'
expect_exit 1 ob --output json --yes restore "$bad"
expect_json out 'd["exit"] == 1 and "no_such_function_here" in d["error"]["message"] and "previous_as" not in d'
untouched "a bad statement in the dump (json)"
# --target-db: the half-built target is dropped too
expect_exit 1 ob restore "$bad" --target-db side
expect_sql "SELECT count(*) FROM pg_database WHERE datname = 'side'" 0
untouched "a bad statement, --target-db"
# and the restore test
expect_exit 1,5 ob backup verify --restore-test "$bad"
expect_databases 'opsctl_restore_test%' ''
untouched "a bad statement, --restore-test"

# ---- psql dying mid-way ---------------------------------------------------------------------------
cat >dying_psql <<EOF
#!/bin/sh
# feeds the first 40 kB to the real psql, then dies
head -c 40000 | "$PSQL" "\$@" >/dev/null 2>&1
echo "psql: simulated crash in the middle of the load" >&2
exit 2
EOF
cat >dying_pg_restore <<EOF
#!/bin/sh
# reads a little, restores nothing, dies
head -c 30000 >/dev/null
echo "pg_restore: error: simulated crash in the middle of the load" >&2
exit 1
EOF
chmod +x dying_psql dying_pg_restore
rm -f svc.log
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npsql = $TEST_SCRATCH/dying_psql|" --yes restore "$plain"
expect_grep 'simulated crash in the middle of the load' err
untouched "psql dying mid-way"
[ ! -e svc.log ] || fail "the service was stopped for a restore whose load failed"
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npg_restore = $TEST_SCRATCH/dying_pg_restore|" --yes restore "$custom"
expect_grep 'pg_restore.*simulated crash' err
untouched "pg_restore dying mid-way"
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npg_restore = $TEST_SCRATCH/dying_pg_restore|" --yes restore "$custom" --jobs 2
expect_grep 'simulated crash' err
untouched "pg_restore --jobs 2 dying"
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npg_restore = $TEST_SCRATCH/dying_pg_restore|" --yes restore "$single"
expect_grep 'pg_restore.*simulated crash' err
untouched "pg_restore dying mid-way (custom format)"
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npg_restore = $TEST_SCRATCH/dying_pg_restore|" --yes restore "$single" --jobs 2
expect_grep 'simulated crash' err
untouched "pg_restore --jobs 2 dying (custom format)"

# ---- no room to decompress a directory set: refused before pg_restore ------------------------------
if [ "$(id -u)" -eq 0 ] && mkdir small && mount -t tmpfs -o size=2m,mode=0755 tmpfs small 2>/dev/null; then
	trap 'umount small 2>/dev/null || umount -l small 2>/dev/null; test_cleanup' EXIT
	mkdir small/backups small/tmp && cp -a "backups/$custom" small/backups/
	expect_exit 1 env TMPDIR="$TEST_SCRATCH/small/tmp" "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --yes restore "$TEST_SCRATCH/small/backups/$custom"
	expect_grep "restoring needs [0-9.]+ GiB of temporary space for the dump's schema and large objects; '.*small/backups' and '.*small/tmp' have at most 0\.0 GiB free" err
	expect_grep '^hint: .*TMPDIR' err
	untouched "no room to decompress"
	[ -z "$(ls -A small/backups small/tmp | grep '^\.restore')" ] || fail "no room: a work directory was left"
	umount small 2>/dev/null || umount -l small
	trap test_cleanup EXIT
else
	say "skipping the no-room case: cannot mount a 2 MB tmpfs"
fi
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npg_restore = $TEST_SCRATCH/no/such/pg_restore|" --yes restore "$custom"
expect_grep "cannot run '.*no/such/pg_restore'" err
untouched "no pg_restore"
# a directory set whose table data the server refuses (its checksum made to match)
badd=shop-20250106T000000Z
cp -a "backups/$custom" "backups/$badd"
big=$(cd "backups/$badd" && ls -S db/*.zst | head -n 1)
zstd -q -dc "backups/$badd/$big" | sed '5s/^[0-9]*\t/not-a-number\t/' | zstd -q -c >bad.zst && mv bad.zst "backups/$badd/$big"
reseal "backups/$badd"
expect_exit 0 ob backup verify "$badd"
expect_exit 1 ob --yes restore "$badd" --jobs 2
expect_grep "loading '.*$big'.*invalid input syntax for type integer: \"not-a-number\"" err
untouched "table data the server refuses"
# the same file when the manifest says it is another one (its SHA-256 is
# checked as it is loaded, no question being asked): the damage is what is
# reported, not the server's refusal it caused
"$TEST_PYTHON" - "backups/$badd/manifest.json" "$big" <<'EOF' || fail "could not edit the manifest"
import hashlib, json, sys
m = json.load(open(sys.argv[1]))
f = [f for f in m["files"] if f["name"] == sys.argv[2]][0]
f["sha256"] = hashlib.sha256(b"another file").hexdigest()
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
rm -f svc.log
expect_exit 5 ob --yes restore "$badd" --jobs 2
expect_grep "backup '$badd' is damaged: the SHA-256 of '$(printf '%s' "$big" | sed 's/\./\\./g')' does not match the manifest" err
untouched "table data the server refuses, not the one of the manifest"
[ ! -e svc.log ] || fail "the service was stopped for a damaged set"
rm -rf "backups/$badd"
# and pg_restore failing while it prints the lanes' COPY statements
cat >lane_dying_pg_restore <<EOF
#!/bin/sh
case "\$*" in
*--file=-*) "$TEST_PG_BINDIR/pg_restore" "\$@" | head -c 300; echo "pg_restore: error: simulated crash while printing" >&2; exit 1 ;;
esac
exec "$TEST_PG_BINDIR/pg_restore" "\$@"
EOF
chmod +x lane_dying_pg_restore
expect_exit 1 with_conf "s|^\[backup\]\$|[backup]\npg_restore = $TEST_SCRATCH/lane_dying_pg_restore|" --yes restore "$custom"
expect_grep "lane_dying_pg_restore' failed with exit status 1: pg_restore: error: simulated crash while printing" err
untouched "pg_restore failing while it prints the COPY statements"

# ---- [service] stop fails: nothing swapped, the new database dropped --------------------------------
rm -f svc.log
expect_exit 1 with_conf 's|^stop = .*|stop = echo stop >>'"$TEST_SCRATCH"'/svc.log; echo "unit not found" >\&2; exit 5|' --yes restore "$custom"
expect_grep 'cannot stop the service' err
expect_grep 'unit not found' err
untouched "a failing service stop"
[ "$(cat svc.log)" = stop ] || fail "after a failing stop: svc.log is $(cat svc.log | tr '\n' ' ')"

# ---- a session the restoring role may not end: the swap fails, everything stays --------------------
"$PSQL" -X -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -d shop -c 'SELECT pg_sleep(60)' \
	>su.out 2>su.err </dev/null &
su_client=$!
su_connected() { [ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")" = 1 ]; }
wait_for 20 su_connected || fail "the superuser client never connected"
rm -f svc.log
expect_exit 1 ob --yes restore "$custom"
expect_grep 'terminate|permission denied|superuser' err
untouched "a session the role may not end"
# stopped and started again: the old data is in place
[ "$(tr '\n' ' ' <svc.log)" = "stop start " ] || fail "stop/start around a failed swap: $(tr '\n' ' ' <svc.log)"
kill "$su_client" 2>/dev/null
wait "$su_client" 2>/dev/null
pg_psql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop' AND pid <> pg_backend_pid()" >/dev/null

# ---- [service] start fails after the swap: reported, the new data in place --------------------------
rm -f svc.log
sleep 1
expect_exit 1 with_conf 's|^start = .*|start = echo start >>'"$TEST_SCRATCH"'/svc.log; exit 3|' --yes restore "$custom" --no-files
expect_grep 'cannot start the service' err
[ "$(tr '\n' ' ' <svc.log)" = "stop start " ] || fail "stop/start with a failing start: $(tr '\n' ' ' <svc.log)"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "a failing start after the swap: shop does not hold the restored data"
aside=$(pg_psql "SELECT datname FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'")
[ -n "$aside" ] && [ "$(pg_db_fingerprint "$aside")" = "$live_fp" ] || fail "the previous data is not in $aside"
# put the live data back for what follows
pg_psql "ALTER DATABASE shop RENAME TO shop_tmp_old" >/dev/null && pg_psql "ALTER DATABASE $aside RENAME TO shop" >/dev/null &&
	pg_psql "DROP DATABASE shop_tmp_old" >/dev/null || fail "could not put the live database back"
oid_before=$(pg_psql "SELECT oid FROM pg_database WHERE datname = 'shop'")
untouched "after putting the live database back"

# ---- restore from PATH -------------------------------------------------------------------------------
expect_exit 0 ob restore "$TEST_SCRATCH/backups/$custom" --target-db from_abs
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint from_abs)" = "$backup_fp" ] || fail "restore ABSOLUTE-PATH: wrong data"
expect_grep "^restored $custom into from_abs" out
mkdir elsewhere && cp -a "backups/$custom" elsewhere/
expect_exit 0 ob restore "elsewhere/$custom/" --target-db from_rel
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint from_rel)" = "$backup_fp" ] || fail "restore RELATIVE-PATH/: wrong data"
expect_exit 0 ob --output json restore "$TEST_SCRATCH/elsewhere/$custom" --target-db from_json
expect_json out 'd["id"] == "'"$custom"'" and d["restored_as"] == "from_json"'
pg_psql "DROP DATABASE from_abs" >/dev/null; pg_psql "DROP DATABASE from_rel" >/dev/null; pg_psql "DROP DATABASE from_json" >/dev/null
# a full restore from PATH swaps like one from an id
sleep 1
expect_exit 0 ob --yes restore "$TEST_SCRATCH/elsewhere/$custom" --no-files
expect_grep "the previous database is now shop_pre_restore_[0-9]{14}" out
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "a full restore from PATH: wrong data"
for d in $(pg_psql "SELECT datname FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'"); do
	pg_psql "DROP DATABASE $d" >/dev/null
done
live_fp=$(pg_db_fingerprint shop)
oid_before=$(pg_psql "SELECT oid FROM pg_database WHERE datname = 'shop'")
dbs_before=$(dbs)

# ---- unknown ids, paths that are not backups -------------------------------------------------------
expect_exit 2 ob --yes restore shop-19990101T000000Z
expect_grep "no backup 'shop-19990101T000000Z'" err
expect_grep "hint: .*backup list" err
untouched "an unknown id"
expect_exit 2 ob --output json --yes restore nope
expect_json out 'd["exit"] == 2 and "nope" in d["error"]["message"]' 
expect_exit 2 ob --yes restore --dir "$TEST_SCRATCH/no-backups-here" latest
expect_grep 'no backup yet' err
expect_exit 2 ob --yes restore a b
mkdir not-a-set
printf 'hello\n' >not-a-set/db.dump.zst
expect_exit 2,5 ob --yes restore "$TEST_SCRATCH/not-a-set"
expect_grep "not-a-set.*(not a backup|manifest)" err
untouched "restore of a directory without a manifest"
expect_exit 2,5 ob --yes restore "$TEST_SCRATCH/no/such/dir"
expect_grep "no/such/dir" err
untouched "restore of a path that does not exist"

# ---- relative [backup] paths: the manifest says where they really are ---------------------------------
mkdir conf && mkdir conf/files && printf 'rel\n' >conf/files/r.txt
sed -e "s|^paths = .*|paths = files|" -e "s|^dir = backups|dir = relsets|" opsctl.conf >conf/opsctl.conf
expect_exit 0 "$OPSCTL" -c conf/opsctl.conf backup
rid=$(last_id)
expect_json "conf/relsets/$rid/manifest.json" 'd["paths"] == ["'"$TEST_SCRATCH/conf/files"'"]'
# restored from another working directory, they go back where they came from
printf 'changed\n' >conf/files/r.txt
mkdir other && cd other || fail "cd other"
expect_exit 0 "$OPSCTL" -c ../conf/opsctl.conf restore "$rid" --target-db rel_db --files
cd .. || fail "cd .."
[ "$(cat conf/files/r.txt)" = rel ] || fail "relative paths: conf/files/r.txt was not restored ($(cat conf/files/r.txt))"
[ -z "$(find other -mindepth 1 ! -name out ! -name err | head -n 1)" ] || fail "relative paths: the restore wrote under the working directory: $(find other -mindepth 1 ! -name out ! -name err | head -n 3 | tr '\n' ' ')"
[ -z "$(ls -d /.opsctl-restore-* 2>/dev/null)" ] || fail "relative paths: staging left in /: $(ls -d /.opsctl-restore-*)"

test_done
