#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# restore (DESIGN.md section 6 "backup / restore", issue 4): without a TTY and
# without --yes -> exit 10, nothing changed; on a TTY the database name must
# be typed; `--yes restore latest` restores into a new database and swaps it in
# (the live one renamed NAME_pre_restore_TS, same owner); a client connected
# to the live database is terminated; [service] stop/start run around the
# swap, in order; --target-db restores beside it (no swap, no stop/start);
# --jobs 2; --files / --no-files for the paths archive; --dry-run; history.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start
pw=$TEST_PG_PASSWORD
PSQL=$TEST_PG_BINDIR/psql

pg_psql "CREATE ROLE app LOGIN PASSWORD 'app-pw'" >/dev/null || fail "CREATE ROLE app"
pg_psql "CREATE DATABASE shop OWNER app" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "
	SET ROLE app;
	CREATE TABLE items (id serial PRIMARY KEY, name text, doc jsonb);
	INSERT INTO items (name, doc) SELECT 'item ' || g, jsonb_build_object('n', g) FROM generate_series(1, 3000) g;
	CREATE TABLE orders (id int PRIMARY KEY, item_id int REFERENCES items);
	INSERT INTO orders SELECT g, 1 + g % 3000 FROM generate_series(1, 2000) g;
	CREATE INDEX items_name ON items (name);" >/dev/null || fail "seeding shop"

mkdir uploads uploads/sub
printf 'original\n' >uploads/a.txt
printf 'deep\n' >uploads/sub/b.txt
cat >svc.sh <<EOF
#!/bin/sh
# [service] stop/start: log the step and the shop* databases at that moment
dbs=\$("$PSQL" -X -A -t -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" -U postgres -d postgres \
	-c "SELECT string_agg(regexp_replace(datname, '[0-9]{14}\$', 'TS'), ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'shop%'")
echo "\$1 \$dbs" >>"$TEST_SCRATCH/svc.log"
EOF
chmod +x svc.sh
cat >opsctl.conf <<CONF
[app]
name = shop

[database]
url = postgresql://app:app-pw@127.0.0.1:$TEST_PG_PORT/shop

[service]
stop = $TEST_SCRATCH/svc.sh stop
start = $TEST_SCRATCH/svc.sh start

[backup]
dir = backups
paths = $TEST_SCRATCH/uploads
CONF
ob() { "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"; }
hf=$OPSCTL_STATE_DIR/history.jsonl
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
dbs() { pg_psql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname NOT LIKE 'template%'"; }
# the app role may create databases (restore creates one as the live database's owner)
pg_psql "ALTER ROLE app CREATEDB" >/dev/null

expect_exit 0 ob backup
id=$(last_id)
backup_fp=$(pg_db_fingerprint shop)
# the live database moves on after the backup
pg_dbsql shop "INSERT INTO items (name) VALUES ('after the backup'); DELETE FROM orders WHERE id > 1000;" >/dev/null
printf 'changed\n' >uploads/a.txt
printf 'new file\n' >uploads/new.txt
live_fp=$(pg_db_fingerprint shop)
[ "$live_fp" != "$backup_fp" ] || fail "the live change did not change the fingerprint"
dbs_before=$(dbs)
untouched() { # WHAT
	TEST_CHECKS=$((TEST_CHECKS + 2))
	[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "$1: the live database changed"
	[ "$(dbs)" = "$dbs_before" ] || fail "$1: databases are now $(dbs), were $dbs_before"
}

# ---- no TTY, no --yes: exit 10, nothing changed -----------------------------------------
expect_exit 10 ob restore latest
expect_grep "restoring over 'shop' needs confirmation; nothing was changed" err
expect_grep 'hint: .*--yes' err
untouched "restore without --yes"
expect_exit 10 ob restore "$id"
expect_exit 10 ob --output json restore latest
expect_json out 'd["exit"] == 10 and "confirmation" in d["error"]["message"] and "--yes" in d["error"]["hint"]'
untouched "restore --output json without --yes"
[ ! -e svc.log ] || fail "the service was stopped by a refused restore"
[ "$(cat uploads/a.txt)" = changed ] || fail "the files were touched by a refused restore"

# ---- --dry-run --------------------------------------------------------------------------------
expect_exit 0 ob -n restore latest
expect_grep "would restore $id into shop \(the current one kept aside\)" out
untouched "restore --dry-run"

# ---- on a terminal: the database name must be typed ------------------------------------------
on_tty() { # ANSWER CMD...: run CMD on a pseudo-terminal, type ANSWER at the question
	"$TEST_PYTHON" - "$@" <<'EOF'
import os, pty, sys, time, select
answer = sys.argv[1].encode() + b"\n"
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
buf, sent, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        buf += data
    if not sent and b"Type the database name" in buf:
        os.write(fd, answer)
        sent = True
_, status = os.waitpid(pid, 0)
open("tty.out", "wb").write(buf)
sys.exit(os.waitstatus_to_exitcode(status))
EOF
}
expect_exit 10 on_tty wrong-name "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" restore latest
expect_grep "Type the database name to continue" tty.out
expect_grep "This replaces database 'shop' with backup '$id'" tty.out
expect_grep 'not confirmed; nothing was changed' tty.out
untouched "restore on a TTY, wrong name"
[ ! -e svc.log ] || fail "the service was stopped by an unconfirmed restore"

# ---- a client connected to the live database -----------------------------------------------
# (as the app, like the service's own connections)
PGPASSWORD=app-pw "$PSQL" -X -h 127.0.0.1 -p "$TEST_PG_PORT" -U app -d shop -c 'SELECT pg_sleep(60)' \
	>client.out 2>client.err </dev/null &
client=$!
client_connected() { [ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")" = 1 ]; }
wait_for 20 client_connected || fail "the client never connected"

# ---- --yes restore latest: restore beside, then swap ---------------------------------------------
before=$(date -u +%Y%m%d%H%M%S)
expect_exit 0 ob --yes restore latest
after=$(date -u +%Y%m%d%H%M%S)
expect_grep "^restored $id into shop in [0-9.]+s; the previous database is now shop_pre_restore_[0-9]{14}$" out
expect_no_grep "$pw|app-pw" out err
aside=$(sed -n 's/.*the previous database is now \(shop_pre_restore_[0-9]*\)$/\1/p' out)
stamp=${aside#shop_pre_restore_}
[ "$stamp" -ge "$before" ] && [ "$stamp" -le "$after" ] || fail "the stamp $stamp is not the time of the restore ($before..$after)"
expect_sql "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'shop%'" "shop,$aside"
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "shop does not hold the backup's data after the restore"
[ "$(pg_db_fingerprint "$aside")" = "$live_fp" ] || fail "$aside does not hold the previous live data"
# the restored database belongs to the live one's owner
expect_sql "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'" app
expect_dbsql shop "SELECT tableowner FROM pg_tables WHERE tablename = 'items'" app
expect_dbsql shop "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'" 1
# the client was disconnected
TEST_CHECKS=$((TEST_CHECKS + 1))
wait_for 10 eval '! kill -0 $client 2>/dev/null' || fail "the client session on the live database is still running"
wait "$client" && fail "the client's pg_sleep(60) finished normally: it was not terminated"
expect_grep 'terminat' client.err
expect_sql "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'shop%' AND pid <> pg_backend_pid()" 0
# the service: stopped once the new database was complete, started after the swap
expect_file_same svc.log <(printf 'stop shop,shop_restore_TS\nstart shop,shop_pre_restore_TS\n')
# the files came back too (the default with a full restore); the old ones are kept aside
[ "$(cat uploads/a.txt)" = original ] || fail "uploads/a.txt was not restored: $(cat uploads/a.txt)"
[ "$(cat uploads/sub/b.txt)" = deep ] || fail "uploads/sub/b.txt was not restored"
[ ! -e uploads/new.txt ] || fail "uploads/new.txt (made after the backup) is still in the restored directory"
old_files=$(ls -d uploads.pre_restore_* 2>/dev/null)
[ -n "$old_files" ] || fail "no uploads.pre_restore_* kept"
[ "$(cat "$old_files/a.txt")" = changed ] && [ -f "$old_files/new.txt" ] || fail "$old_files does not hold the old files"
[ -z "$(ls -A | grep opsctl-restore)" ] || fail "staging left behind: $(ls -A | grep opsctl-restore)"
# history
tail -n 1 "$hf" >last.json
expect_json last.json 'd["command"] == "restore" and d["outcome"] == "ok" and d["exit"] == 0 and d["id"] == "'"$id"'"'
expect_json last.json 'd["restored_as"] == "shop" and d["previous_as"] == "'"$aside"'" and d["duration_ms"] >= 0'
expect_no_grep "$pw|app-pw" "$hf"
# the set is still intact (and --jobs writes its temporary dump elsewhere or removes it)
expect_exit 0 ob backup verify "$id"

# ---- --target-db: beside the live database, no stop/start, no files, no question -------------------
rm -f svc.log
pg_dbsql shop "INSERT INTO items (name) VALUES ('second change')" >/dev/null
live_fp=$(pg_db_fingerprint shop)
printf 'changed again\n' >uploads/a.txt
dbs_before=$(dbs)
expect_exit 0 ob restore "$id" --target-db side
expect_grep "^restored $id into side in [0-9.]+s$" out
TEST_CHECKS=$((TEST_CHECKS + 2))
[ "$(pg_db_fingerprint side)" = "$backup_fp" ] || fail "side does not hold the backup's data"
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "restore --target-db changed the live database"
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop%'" 2
[ ! -e svc.log ] || fail "restore --target-db stopped/started the service: $(cat svc.log)"
[ "$(cat uploads/a.txt)" = 'changed again' ] || fail "restore --target-db restored the files"
expect_exit 0 ob --output json restore "$id" --target-db side2
expect_json out 'd["command"] == "restore" and d["exit"] == 0 and d["restored_as"] == "side2" and "previous_as" not in d and d["tables_checked"] == 2'
# an existing target is refused, and kept
expect_exit 2 ob restore "$id" --target-db side
expect_grep "database 'side' already exists" err
expect_exit 2 ob --yes restore "$id" --target-db shop
expect_sql "SELECT count(*) FROM pg_database WHERE datname IN ('side', 'side2')" 2
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$live_fp" ] || fail "a refused --target-db changed the live database"
# --target-db --files: only the files are restored into place
expect_exit 0 ob restore "$id" --target-db side3 --files
[ "$(cat uploads/a.txt)" = original ] || fail "--target-db --files did not restore the files"

# ---- --jobs 2 ------------------------------------------------------------------------------------
expect_exit 0 ob restore "$id" --target-db jobs2 --jobs 2
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint jobs2)" = "$backup_fp" ] || fail "--jobs 2 did not restore the same data"
[ -z "$(ls -A "backups/$id" | grep -v -e '^db$' -e '^files\.tar\.zst$' -e '^manifest\.json$' -e '^verified\.json$')" ] ||
	fail "--jobs 2 left files in the set: $(ls -A "backups/$id")"
expect_exit 0 ob backup verify "$id"
# a full swap with --jobs 2 and --no-files
printf 'keep me\n' >uploads/a.txt
rm -f svc.log
expect_exit 0 ob --yes restore latest --jobs 2 --no-files
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "--jobs 2 swap: shop does not hold the backup's data"
[ "$(cat uploads/a.txt)" = 'keep me' ] || fail "--no-files restored the files"
[ "$(ls -d uploads.pre_restore_* | wc -l)" -eq 2 ] || fail "--no-files moved the files aside"
expect_file_same svc.log <(printf 'stop shop,shop_pre_restore_TS,shop_restore_TS\nstart shop,shop_pre_restore_TS,shop_pre_restore_TS\n')
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'" 2
expect_exit 2 ob restore --jobs 0 latest
expect_exit 2 ob restore --jobs 99 latest

# ---- a plain-format set restores through psql, with the same swap -------------------------------------
expect_exit 0 ob backup --format plain
pid=$(last_id)
pg_dbsql shop "TRUNCATE orders" >/dev/null
sleep 1 # a new stamp for the database moved aside
expect_exit 0 ob --yes restore "$pid" --no-files
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "plain restore: shop does not hold the backup's data"
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'" 3

# ---- on a terminal, typing the name restores ----------------------------------------------------------
pg_dbsql shop "TRUNCATE orders" >/dev/null
sleep 1
expect_exit 0 on_tty shop "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" restore "$id" --no-files
expect_grep "restored $id into shop" tty.out
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(pg_db_fingerprint shop)" = "$backup_fp" ] || fail "TTY restore: shop does not hold the backup's data"
expect_sql "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_pre_restore_%'" 4

test_done
