# shellcheck shell=bash
# Crash scenario: `opsctl --yes restore ID` of a set S (data A) over the live
# database `shop` (data B: A with rows added, changed and deleted),
# signalled at a random moment.
# What restore promises (opsctl-restore(1)): the set is loaded into a new
# database NAME_restore_TS, checked, and only then swapped in (live renamed
# to NAME_pre_restore_TS, the new one to NAME); any failure or interrupt
# (SIGINT, SIGTERM) before the renames drops the new database and leaves
# the live one as it was; a work directory .restore-* left by a killed
# restore beside the sets is removed by the next `opsctl backup`.
# Recovery: run the restore again, then `opsctl backup` (into the same
# directory, no retention).
# Invariants: right after the signal the live database `shop` exists and
# holds exactly A or exactly B (fingerprint of every table); after SIGTERM /
# SIGINT no shop_restore_* database is left; after the rerun it holds A;
# after the backup no .restore-* work directory is left; no opsctl lock
# held; history.jsonl parses; no shop_restore_* database is left (one a
# SIGKILL left carries the in-progress marker and the rerun drops it; they
# are counted in the results' notes). Found here and fixed: a kill between
# the two renames of the swap left no database 'shop' (now one
# transaction), and a killed restore's database stayed forever and made a
# rerun in the same second fail with exit 2 (now dropped by the next
# restore); see tests/integration/t3008-restore-kill.sh.
. "$CRASH_DIR/lib/backup-common.bash"

CRASH_WINDOW_MS=1000
RS_LEFT_BY_KILL=0

rs_dbs() { # PATTERN
	pg_psql "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_database WHERE datname LIKE '$1'"
}

rs_make_b() {
	pg_dbsql shop "
		INSERT INTO items (name) SELECT 'after ' || g FROM generate_series(1, 50) g;
		UPDATE items SET name = name || ' (changed)' WHERE id % 97 = 0;
		DELETE FROM orders WHERE id % 5 = 0;" >/dev/null || fail "changing shop to B"
}

crash_setup() {
	pg_start || return 1
	bk_seed_db 30000
	cat >opsctl.conf <<-CONF
	[app]
	name = shop

	[database]
	url = $(pg_db_url shop)

	[backup]
	dir = sets
	CONF
	expect_exit 0 ob backup || return 1
	RS_SET=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
	[ -n "$RS_SET" ] || fail "no set id in: $(cat out)"
	RS_A=$(pg_db_fingerprint shop)
	rs_make_b
	RS_B=$(pg_db_fingerprint shop)
	[ "$RS_A" != "$RS_B" ] || fail "A and B do not differ"
}

crash_prepare() {
	local d fp
	# the operator's cleanup of what earlier trials kept: the old databases
	# (the way back)
	for d in $(rs_dbs 'shop\_pre\_restore\_%' | tr ',' ' '); do
		pg_psql "DROP DATABASE \"$d\" WITH (FORCE)" >/dev/null || fail "dropping $d"
	done
	fp=$(pg_db_fingerprint shop)
	if [ "$fp" = "$RS_A" ]; then
		rs_make_b
		fp=$(pg_db_fingerprint shop)
	fi
	[ "$fp" = "$RS_B" ] || fail "prepare: the live database is neither A nor B"
}

crash_run() {
	exec "$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --yes restore "$RS_SET"
}

crash_recover() {
	local fp left
	fp=$(pg_db_fingerprint shop 2>&1)
	if [ "$fp" = "$RS_A" ]; then
		RS_AFTER=A
	elif [ "$fp" = "$RS_B" ]; then
		RS_AFTER=B
	else
		RS_AFTER=other
		fail "after SIG$1 (exit $2): the live database shop is neither A nor B: $(printf '%s' "$fp" | head -c 300); databases: $(rs_dbs 'shop%')"
	fi
	case $2 in
	0 | 10 | 130 | 137 | 143) ;;
	*) fail "after SIG$1: unexpected exit $2"; show_file stderr "$CRASH_RUN_ERR" ;;
	esac
	if [ "$2" = 10 ]; then # interrupted and cleaned up: the work directory is removed
		left=$(cd sets && ls -A | grep -E '^\.restore-' | tr '\n' ' ')
		[ -z "$left" ] || fail "after SIG$1, exit 10 (cleaned up), a work directory is left: $left"
	fi
	left=$(rs_dbs 'shop\_restore\_%')
	if [ -n "$left" ]; then
		if [ "$1" = KILL ]; then
			RS_LEFT_BY_KILL=$((RS_LEFT_BY_KILL + 1))
			say "trial $CRASH_TRIAL: SIGKILL left $left (left so far: $RS_LEFT_BY_KILL)"
		else
			fail "after SIG$1 (exit $2): the new database was not dropped: $left"
		fi
	fi
	# at once: a rerun in the same second must not trip over what was left
	expect_exit 0 ob --yes --lock-wait 60s restore "$RS_SET"
	expect_exit 0 ob --lock-wait 60s backup
}

crash_check() {
	local fp left
	fp=$(pg_db_fingerprint shop 2>&1)
	[ "$fp" = "$RS_A" ] || fail "after the rerun: the live database does not hold A"
	left=$(rs_dbs 'shop\_restore\_%')
	[ -z "$left" ] || fail "after the rerun: databases of a killed restore are left: $left"
	left=$(cd sets && ls -A | grep -E '^\.(tmp|trash|restore)-' | tr '\n' ' ')
	[ -z "$left" ] || fail "work directories left after the next backup: $left"
	crash_check_locks
	crash_check_history
	CRASH_NOTE="shop_restore_* databases left by SIGKILL (dropped by the rerun): $RS_LEFT_BY_KILL"
}
