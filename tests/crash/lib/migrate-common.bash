# shellcheck shell=bash
# Shared by the crash scenarios migrate.sh and rollback-schema.sh: a database
# `app`, migrations 001 (base table) and 002-005 (the work), each with a down
# file, and the invariant "schema_migrations matches the schema".
#
#   002  transactional: a table of 2000 rows, then pg_sleep
#   003  -- opsctl:no-transaction: CREATE INDEX CONCURRENTLY IF NOT EXISTS on
#        it, a pg_sleep, a second CIC (the documented way to make a CIC file
#        rerunnable after a failure/kill: IF NOT EXISTS)
#   004  transactional: ALTER TABLE ADD COLUMN + UPDATE + CREATE TABLE AS, sleep
#   005  transactional: a function and a view, sleep
# Every down file undoes its migration (the 003 one outside a transaction).

MIG_VERSIONS="002 003 004 005"

mig_setup() {
	pg_start || return 1
	pg_psql "CREATE DATABASE app" >/dev/null || fail "CREATE DATABASE app"
	mkdir -p migrations/rollback
	cat >migrations/001_base.sql <<-'SQL'
	CREATE TABLE base (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO base SELECT g, 'b' || g FROM generate_series(1, 500) g;
	SQL
	echo 'DROP TABLE base;' >migrations/rollback/001_base.down.sql
	cat >migrations/002_items.sql <<-'SQL'
	CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, grp int NOT NULL);
	INSERT INTO items SELECT g, 'item ' || g, g % 17 FROM generate_series(1, 2000) g;
	SELECT pg_sleep(0.15);
	SQL
	cat >migrations/rollback/002_items.down.sql <<-'SQL'
	SELECT pg_sleep(0.1);
	DROP TABLE items;
	SQL
	cat >migrations/003_items_idx.sql <<-'SQL'
	-- opsctl:no-transaction
	CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_idx ON items (name);
	SELECT pg_sleep(0.15);
	CREATE INDEX CONCURRENTLY IF NOT EXISTS items_grp_idx ON items (grp);
	SQL
	cat >migrations/rollback/003_items_idx.down.sql <<-'SQL'
	-- opsctl:no-transaction
	DROP INDEX CONCURRENTLY IF EXISTS items_grp_idx;
	SELECT pg_sleep(0.1);
	DROP INDEX CONCURRENTLY IF EXISTS items_name_idx;
	SQL
	cat >migrations/004_items_extra.sql <<-'SQL'
	ALTER TABLE items ADD COLUMN weight int;
	UPDATE items SET weight = id * 2;
	CREATE TABLE item_groups AS SELECT grp, count(*) AS n FROM items GROUP BY grp;
	SELECT pg_sleep(0.15);
	SQL
	cat >migrations/rollback/004_items_extra.down.sql <<-'SQL'
	DROP TABLE item_groups;
	SELECT pg_sleep(0.1);
	ALTER TABLE items DROP COLUMN weight;
	SQL
	cat >migrations/005_items_view.sql <<-'SQL'
	CREATE FUNCTION item_label(i items) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT i.name || '/' || i.grp $$;
	CREATE VIEW item_labels AS SELECT id, item_label(items) AS label FROM items;
	SELECT pg_sleep(0.15);
	SQL
	cat >migrations/rollback/005_items_view.down.sql <<-'SQL'
	DROP VIEW item_labels;
	SELECT pg_sleep(0.1);
	DROP FUNCTION item_label(items);
	SQL
	cat >opsctl.conf <<-CONF
	[app]
	name = app

	[database]
	url = $(pg_db_url app)

	[migrations]
	dir = migrations
	lock_timeout = 60s
	CONF
	expect_exit 0 om migrate --to 1 || return 1
}

om() {
	"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"
}

mig_sql() {
	pg_dbsql app "$1"
}

# mig_recorded: the applied versions, comma-joined in version order
mig_recorded() {
	mig_sql "SELECT coalesce(string_agg(version, ',' ORDER BY version::bigint), '') FROM schema_migrations"
}

# mig_objects V: what of migration V's objects exist, as a word:
# all / none / partial(...)
mig_objects() {
	local q
	case $1 in
	002) q="SELECT (to_regclass('items') IS NOT NULL)::int" ;;
	003) q="SELECT ((SELECT count(*) FROM pg_index WHERE indexrelid IN (to_regclass('items_name_idx'), to_regclass('items_grp_idx'))))::int" ;;
	004) q="SELECT ((SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('items') AND attname = 'weight' AND NOT attisdropped) + (to_regclass('item_groups') IS NOT NULL)::int)::int" ;;
	005) q="SELECT ((SELECT count(*) FROM pg_proc WHERE proname = 'item_label') + (to_regclass('item_labels') IS NOT NULL)::int)::int" ;;
	esac
	mig_sql "$q"
}

mig_expected_parts() {
	case $1 in 002) echo 1 ;; *) echo 2 ;; esac
}

# mig_check_consistent WHEN [undo]: schema_migrations matches the schema:
# every recorded version's objects all exist (and are right: 2000 rows,
# valid indexes, weight filled), no object of an unrecorded transactional
# migration exists; an unrecorded no-transaction migration (003) may be
# partial (its statements commit one by one; the rerun resumes). With
# "undo" (right after a signalled rollback), a recorded 003 may be partly
# undone too: its down file runs outside a transaction and only the row's
# deletion is a transaction (opsctl-migrate(1)); counted in MIG_PARTIAL_UNDOS.
MIG_PARTIAL_UNDOS=0
mig_check_consistent() {
	local when=$1 rec v have want
	rec=",$(mig_recorded 2>&1),"
	case $rec in
	*ERROR*|*error*) fail "$when: cannot read schema_migrations: $rec"; return ;;
	esac
	case $rec in *,001,*) ;; *) fail "$when: 001 is not recorded ($rec)" ;; esac
	for v in $MIG_VERSIONS; do
		have=$(mig_objects "$v" 2>&1)
		want=$(mig_expected_parts "$v")
		case $rec in
		*,$v,*)
			if [ "$have" != "$want" ] && [ "$v" = 003 ] && [ "${2:-}" = undo ] && [ -n "$have" ]; then
				MIG_PARTIAL_UNDOS=$((MIG_PARTIAL_UNDOS + 1))
			else
				[ "$have" = "$want" ] || fail "$when: $v is recorded but $have of its $want objects exist"
			fi
			;;
		*)
			if [ "$have" != 0 ]; then
				if [ "$v" = 003 ]; then
					: # statements of a no-transaction file commit one by one;
					  # a rerun resumes (IF NOT EXISTS makes the rerun safe)
				else
					fail "$when: $v is not recorded but $have of its $want objects exist"
				fi
			fi
			;;
		esac
	done
	case $rec in
	*,002,*)
		have=$(mig_sql "SELECT count(*) FROM items")
		[ "$have" = 2000 ] || fail "$when: items has $have rows, not 2000"
		;;
	esac
	case $rec in
	*,003,*)
		have=$(mig_sql "SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready")
		[ "$have" = 0 ] || fail "$when: 003 is recorded but $have indexes are invalid: $(mig_sql "SELECT string_agg(indexrelid::regclass::text, ',') FROM pg_index WHERE NOT indisvalid OR NOT indisready")"
		;;
	esac
	case $rec in
	*,004,*)
		have=$(mig_sql "SELECT count(*) FROM items WHERE weight IS DISTINCT FROM id * 2")
		[ "$have" = 0 ] || fail "$when: 004 is recorded but $have rows have no weight"
		have=$(mig_sql "SELECT sum(n) FROM item_groups")
		[ "$have" = 2000 ] || fail "$when: item_groups sums to $have"
		;;
	esac
	# the recorded checksums are the files'
	for v in 001 $MIG_VERSIONS; do
		case $rec in *,$v,*) ;; *) continue ;; esac
		local f sum
		f=$(ls migrations/"$v"_*.sql)
		sum=$(mig_sql "SELECT checksum FROM schema_migrations WHERE version = '$v'")
		[ "$sum" = "$(sha256sum "$f" | cut -d' ' -f1)" ] || fail "$when: checksum of $v is '$sum'"
	done
}

# mig_check_final EXPECTED: after recovery, exactly EXPECTED is recorded,
# the schema matches, no progress row is left, no session of a killed run
# holds the advisory lock, status/validate are clean, locks and history ok.
mig_check_final() {
	local want=$1 got n
	got=$(mig_recorded 2>&1)
	[ "$got" = "$want" ] || fail "after recovery: recorded '$got', expected '$want'"
	mig_check_consistent "after recovery"
	n=$(mig_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
	[ "$n" = 0 ] || fail "after recovery: $n advisory locks are still held: $(mig_sql "SELECT string_agg(pid || ' ' || coalesce(application_name, ''), '; ') FROM pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')")"
	if [ -n "$(mig_sql "SELECT to_regclass('schema_migrations_progress')")" ]; then
		n=$(mig_sql "SELECT count(*) FROM schema_migrations_progress")
		[ "$n" = 0 ] || fail "after recovery: schema_migrations_progress has $n rows: $(mig_sql "SELECT * FROM schema_migrations_progress" | tr '\n' ';')"
	fi
	"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --lock-wait 0 migrate validate >validate.out 2>&1 ||
		fail "after recovery: migrate validate: $(tr '\n' ' ' <validate.out)"
	crash_check_locks
	crash_check_history
}

# mig_wait_sessions: wait (up to 30 s) until no backend of a killed opsctl is
# left on database app (PostgreSQL notices a dead client only when it next
# writes to it, e.g. after a pg_sleep), so the checks see the final state.
mig_wait_sessions() {
	local i n
	for ((i = 0; i < 300; i++)); do
		n=$(mig_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND pid <> pg_backend_pid() AND application_name LIKE 'opsctl%'")
		[ "$n" = 0 ] && return 0
		sleep 0.1
	done
	fail "sessions of a killed opsctl are still on database app after 30 s"
}
