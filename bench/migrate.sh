#!/usr/bin/env bash
# migrate: `opsctl migrate` against the seeds' migrate.sh (and sqitch) on
# 1,000 generated migrations, and `opsctl migrate status` with 10,000 applied
# (DESIGN §8, issue 3).
#
#   bench/migrate.sh [ROUNDS]   ROUNDS fresh-database runs per tool for the
#                               1,000-migration case, median (default 3)
#
# Environment (besides lib.sh's):
#   MIGRATE_N=1000          migrations in the apply case
#   MIGRATE_STATUS_N=10000  applied migrations in the status case
#   MIGRATE_STATUS_RUNS=20  timed `status` runs (and as many peer runs)
#   BENCH_NO_SQITCH=1       skip sqitch (also skipped when it is missing and
#                           cannot be installed)
#
# Cases (one line each: case opsctl_s peer_s ratio, ratio = peer / opsctl):
#   migrate-1000/seeds       opsctl migrate vs the seeds' migrate.sh, each on a
#                            fresh database, all 1,000 migrations
#   migrate-1000/sqitch      the same opsctl runs vs `sqitch deploy`
#   migrate-1000-noop/seeds  re-run on the migrated database (nothing to do:
#                            what every deploy does), one run each
#   status-10000/psql-loop   opsctl migrate status vs psql + a bash loop
#                            comparing the versions with the files
#
# The database is a throwaway cluster from the test harness (tests/lib/
# test-lib.sh pg_start): 127.0.0.1, scram-sha-256, and fsync = off,
# synchronous_commit = off, full_page_writes = off, shared_buffers = 16MB.
# Every side connects the same way (TCP, password), so every commit is cheap
# for all of them alike; with fsync on, each side would pay a WAL flush per
# commit (opsctl: 1 per migration; seeds: 2 per migration).
#
# The seeds' migrate.sh is extracted at run time from
# ../shared/seeds/001_*.txt (the bash block after "创建 `migrate.sh`:") and
# never copied into the repo.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${1:-3}
N=${MIGRATE_N:-1000}
SN=${MIGRATE_STATUS_N:-10000}
SRUNS=${MIGRATE_STATUS_RUNS:-20}
for v in "$ROUNDS" "$N" "$SN" "$SRUNS"; do
	case $v in '' | *[!0-9]* | 0) bench_die "ROUNDS and MIGRATE_* must be positive numbers" ;; esac
done

bench_setup migrate
command -v python3 >/dev/null 2>&1 || bench_die "python3 is needed (the harness's free_port)"

# ---- the seeds' migrate.sh, extracted now --------------------------------
seed_txt=
for f in "$BENCH_REPO/../shared/seeds/001_"*.txt; do
	[ -f "$f" ] && seed_txt=$f && break
done
[ -n "$seed_txt" ] || bench_die "no ../shared/seeds/001_*.txt beside the repo: cannot extract the seeds' migrate.sh"
SEEDS_SH="$BENCH_TMP/seeds-migrate.sh"
awk '/创建 `migrate.sh`:/ { found = 1; next }
	found && !inblock && /^```/ { inblock = 1; next }
	inblock && /^```/ { exit }
	inblock { print }' "$seed_txt" >"$SEEDS_SH"
grep -q 'schema_migrations' "$SEEDS_SH" && grep -q 'for file in \$MIGRATION_DIR/\*.sql' "$SEEDS_SH" ||
	bench_die "could not extract migrate.sh from $seed_txt (the block after '创建 \`migrate.sh\`:')"

# ---- sqitch (optional) ---------------------------------------------------
SQITCH=
if [ -z "${BENCH_NO_SQITCH:-}" ]; then
	if ! command -v sqitch >/dev/null 2>&1 && [ -z "${BENCH_NO_INSTALL:-}" ]; then
		bench_say "installing sqitch (Debian package)"
		bench_install sqitch libdbd-pg-perl || bench_say "could not install sqitch"
	fi
	if command -v sqitch >/dev/null 2>&1 && perl -MDBD::Pg -e 1 2>/dev/null; then
		SQITCH=$(command -v sqitch)
	fi
fi

# ---- a throwaway PostgreSQL (the test harness) ----------------------------
# test-lib.sh brings pg_start/pg_psql; its EXIT trap replaces lib.sh's, so
# one trap runs both cleanups (servers first, then the scratch directories).
OPSCTL=$OPSCTL_BIN TEST_SRCDIR=$BENCH_REPO TEST_NAME=bench-migrate
export OPSCTL TEST_SRCDIR TEST_NAME
# shellcheck source=../tests/lib/test-lib.sh
. "$BENCH_REPO/tests/lib/test-lib.sh"
migrate_cleanup() {
	local code=$?
	set +e # test_cleanup is written for a shell without errexit
	bench_cleanup
	(exit "$code")
	test_cleanup
}
trap migrate_cleanup EXIT
pg_start
PSQL="$TEST_PG_BINDIR/psql"
export PGOPTIONS='-c client_min_messages=warning' # no NOTICEs from DROP ... IF EXISTS
W="$BENCH_TMP/work"
cd "$W" || exit 1
export HOME="$W"
PGVER=$("$PSQL" --version | awk '{ print $3 }')

db_url() { printf 'postgresql://postgres:%s@127.0.0.1:%s/%s' "$TEST_PG_PASSWORD" "$TEST_PG_PORT" "$1"; }
db_create() { pg_psql "DROP DATABASE IF EXISTS $1" >/dev/null && pg_psql "CREATE DATABASE $1" >/dev/null; }
db_drop() { pg_psql "DROP DATABASE IF EXISTS $1" >/dev/null; }
db_sql() {
	"$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TEST_PG_SOCKDIR" -p "$TEST_PG_PORT" \
		-U postgres -d "$1" -c "$2"
}

# ---- the migrations -------------------------------------------------------
# gen_realistic DIR N: N migrations NNNN_name.sql (and rollback/NNNN_name.down.sql),
# a fixed mix: CREATE TABLE (text, jsonb, timestamptz, a CHECK, a unique key,
# a btree and sometimes a GIN index), ALTER TABLE ADD COLUMN, INSERT of 3-5
# rows with JSONB documents, and plpgsql functions whose bodies hold ';'.
# Deterministic: the same N gives the same files, byte for byte.
gen_realistic() {
	mkdir -p "$1/rollback"
	awk -v dir="$1" -v n="$2" '
	function w(file, text) { printf "%s", text > file }
	BEGIN {
		width = length(n "") < 4 ? 4 : length(n "")
		split("customers orders invoices products shipments events accounts payments tickets audit_log", dom, " ")
		split("text|jsonb NOT NULL DEFAULT '"'"'{}'"'"'::jsonb|integer NOT NULL DEFAULT 0|timestamptz|numeric(12,2)|boolean NOT NULL DEFAULT false|text[]", coltype, "|")
		split("C I A F C A I C F I", pattern, " ")
		ntab = 0
		for (i = 1; i <= n; i++) {
			v = sprintf("%0" width "d", i)
			kind = pattern[(i - 1) % 10 + 1]
			if (ntab == 0) kind = "C"
			if (kind != "C") {
				k = 1 + (i * 7919) % ntab; t = tab[k]
			}
			if (kind == "C") {
				d = dom[(ntab % 10) + 1]
				t = "b_" d "_" v
				tab[++ntab] = t
				name = "create_" d
				up = sprintf("-- %s: the %s table\n", v, d)
				up = up sprintf("CREATE TABLE %s (\n", t)
				up = up "    id          bigserial PRIMARY KEY,\n"
				up = up "    external_id text NOT NULL,\n"
				up = up "    name        text NOT NULL,\n"
				up = up "    email       text,\n"
				up = up "    status      text NOT NULL DEFAULT '"'"'active'"'"'\n"
				up = up "                CHECK (status IN ('"'"'active'"'"', '"'"'suspended'"'"', '"'"'closed'"'"')),\n"
				up = up "    attrs       jsonb NOT NULL DEFAULT '"'"'{}'"'"'::jsonb,\n"
				up = up "    created_at  timestamptz NOT NULL DEFAULT now(),\n"
				up = up "    updated_at  timestamptz,\n"
				up = up sprintf("    CONSTRAINT %s_ext_key UNIQUE (external_id)\n", t)
				up = up ");\n"
				up = up sprintf("CREATE INDEX %s_email_idx ON %s (lower(email));\n", t, t)
				if (ntab % 2)
					up = up sprintf("CREATE INDEX %s_attrs_idx ON %s USING gin (attrs jsonb_path_ops);\n", t, t)
				up = up sprintf("COMMENT ON TABLE %s IS '"'"'%s, created by migration %s'"'"';\n", t, d, v)
				down = sprintf("DROP TABLE %s;\n", t)
			} else if (kind == "A") {
				ct = coltype[(i % 7) + 1]
				col = "c_" v
				name = "add_" col "_to_" substr(t, 3, length(t) - 2 - width - 1)
				up = sprintf("-- %s: a new column on %s\n", v, t)
				up = up sprintf("ALTER TABLE %s ADD COLUMN %s %s;\n", t, col, ct)
				if (i % 3 == 0)
					up = up sprintf("COMMENT ON COLUMN %s.%s IS '"'"'added by %s'"'"';\n", t, col, v)
				down = sprintf("ALTER TABLE %s DROP COLUMN %s;\n", t, col)
			} else if (kind == "I") {
				rows = 3 + i % 3
				name = "seed_" substr(t, 3, length(t) - 2 - width - 1)
				up = sprintf("-- %s: reference rows for %s\n", v, t)
				up = up sprintf("INSERT INTO %s (external_id, name, email, status, attrs) VALUES\n", t)
				for (r = 1; r <= rows; r++) {
					up = up sprintf("    ('"'"'m%s-%d'"'"', '"'"'Row %d of migration %s'"'"', '"'"'row%d.m%s@example.com'"'"', '"'"'%s'"'"',\n", v, r, r, v, r, v, (r % 3 ? "active" : "suspended"))
					up = up sprintf("     '"'"'{\"source\": \"migration\", \"version\": %d, \"tags\": [\"seed\", \"r%d\"], \"price\": {\"amount\": %d, \"currency\": \"EUR\"}, \"note\": \"it'"'"''"'"'s row %d; ok\"}'"'"')%s\n", i, r, (i * 37 + r * 101) % 100000, r, (r < rows ? "," : ";"))
				}
				down = sprintf("DELETE FROM %s WHERE external_id LIKE '"'"'m%s-%%'"'"';\n", t, v)
			} else {
				fn = "b_lookup_" v
				name = "fn_lookup_" substr(t, 3, length(t) - 2 - width - 1)
				up = sprintf("-- %s: a lookup function over %s\n", v, t)
				up = up sprintf("CREATE OR REPLACE FUNCTION %s(p_external_id text)\n", fn)
				up = up "RETURNS jsonb\nLANGUAGE plpgsql STABLE\nAS $fn$\nDECLARE\n    r jsonb;\nBEGIN\n"
				up = up "    -- a ; inside the body is not the end of the statement\n"
				up = up "    SELECT jsonb_build_object('"'"'id'"'"', id, '"'"'name'"'"', name, '"'"'status'"'"', status) || attrs\n"
				up = up sprintf("      INTO r\n      FROM %s\n     WHERE external_id = p_external_id;\n", t)
				up = up "    IF r IS NULL THEN\n"
				up = up "        RAISE NOTICE '"'"'no row for %; returning {}'"'"', p_external_id;\n"
				up = up "        RETURN '"'"'{}'"'"'::jsonb;\n    END IF;\n    RETURN r;\nEND;\n$fn$;\n"
				down = sprintf("DROP FUNCTION %s(text);\n", fn)
			}
			f = dir "/" v "_" name ".sql"
			w(f, up); close(f)
			f = dir "/rollback/" v "_" name ".down.sql"
			w(f, down); close(f)
		}
	}'
}

# gen_tiny DIR N: N one-line migrations (one table, then one INSERT each).
gen_tiny() {
	mkdir -p "$1/rollback"
	awk -v dir="$1" -v n="$2" 'BEGIN {
		width = length(n "") < 4 ? 4 : length(n "")
		for (i = 1; i <= n; i++) {
			v = sprintf("%0" width "d", i)
			f = dir "/" v "_tiny_" v ".sql"
			if (i == 1) printf "CREATE TABLE b_tiny (v integer PRIMARY KEY);\nINSERT INTO b_tiny (v) VALUES (1);\n" > f
			else printf "INSERT INTO b_tiny (v) VALUES (%d);\n", i > f
			close(f)
			f = dir "/rollback/" v "_tiny_" v ".down.sql"
			if (i == 1) printf "DROP TABLE b_tiny;\n" > f
			else printf "DELETE FROM b_tiny WHERE v = %d;\n", i > f
			close(f)
		}
	}'
}

# What a database holds after the migrations (the same for every tool):
# generated relations (tables, indexes, sequences), their columns, functions,
# and rows.
fingerprint() {
	db_sql "$1" "
	SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname LIKE 'b\_%')
	    || ' rel ' || (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'b\_%'
	           AND a.attnum > 0 AND NOT a.attisdropped)
	    || ' col ' || (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'b\_%')
	    || ' fn ' || (SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml(
	         format('SELECT count(*) AS c FROM %s', c.oid::regclass), false, true, '')))[1]::text::int), 0)
	         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'b\_%')
	    || ' rows'"
}

M="$W/m$N"     # the seeds' layout: run migrate.sh from $M, it reads ./migrations
gen_realistic "$M/migrations" "$N"
nfiles=$(find "$M/migrations" -maxdepth 1 -name '*.sql' | wc -l)
[ "$nfiles" -eq "$N" ] || bench_die "generated $nfiles migrations, wanted $N"

# The peers run the real psql, not Debian's Perl wrapper /usr/bin/psql (which
# would add a Perl start-up to each of their ~3,000 psql calls).
PEER_PATH="$TEST_PG_BINDIR:$PATH"

run_opsctl() { # DB
	"$OPSCTL_BIN" --db "$(db_url "$1")" migrate up --dir "$M/migrations"
}
run_seeds() { # DB
	(cd "$M" && env PATH="$PEER_PATH" DB_HOST=127.0.0.1 DB_PORT="$TEST_PG_PORT" DB_NAME="$1" \
		DB_USER=postgres PGPASSWORD="$TEST_PG_PASSWORD" bash "$SEEDS_SH")
}

# sqitch: a project whose deploy/revert scripts are the same files
# (symlinks), and a plan listing them in order.
SQ="$W/sqitch"
if [ -n "$SQITCH" ]; then
	mkdir -p "$SQ/deploy" "$SQ/revert"
	cat >"$SQ/sqitch.conf" <<-EOF
	[core]
	    engine = pg
	    plan_file = sqitch.plan
	    top_dir = .
	[engine "pg"]
	    client = $TEST_PG_BINDIR/psql
	[user]
	    name = Bench
	    email = bench@example.invalid
	[deploy]
	    verify = false
	EOF
	{
		printf '%%syntax-version=1.0.0\n%%project=opsctl_bench\n\n'
		for f in "$M/migrations/"*.sql; do
			b=${f##*/}
			c="m${b%.sql}"
			ln -s "$f" "$SQ/deploy/$c.sql"
			ln -s "$M/migrations/rollback/${b%.sql}.down.sql" "$SQ/revert/$c.sql"
			printf '%s 2026-11-21T00:00:00Z Bench <bench@example.invalid> # %s\n' "$c" "$b"
		done
	} >"$SQ/sqitch.plan"
	SQITCH_VERSION=$("$SQITCH" --version 2>/dev/null | awk '{ print $NF }')
fi
run_sqitch() { # DB
	(cd "$SQ" && env PATH="$PEER_PATH" PGPASSWORD="$TEST_PG_PASSWORD" \
		"$SQITCH" deploy --no-verify "db:pg://postgres@127.0.0.1:$TEST_PG_PORT/$1")
}

# time_once FILE LABEL CMD...: append CMD's wall seconds to FILE; CMD's
# output goes to LABEL.out/.err; a failure aborts the benchmark.
time_once() {
	local file=$1 label=$2 t0 t1
	shift 2
	t0=$EPOCHREALTIME
	if ! "$@" >"$W/$label.out" 2>"$W/$label.err" </dev/null; then
		tail -n 20 "$W/$label.err" >&2
		bench_die "failed: $label ($*)"
	fi
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }' >>"$file"
}

# check DB LABEL: the database holds what the migrations make, and the tool
# reported no error (the seeds' psql -f goes on after an error).
want=
check() {
	local fp
	fp=$(fingerprint "$1")
	if [ -z "$want" ]; then
		want=$fp
	elif [ "$fp" != "$want" ]; then
		bench_die "$2 left '$fp', expected '$want' (see $W/$2.err)"
	fi
	if grep -E '(^|[^_])(ERROR|FATAL)' "$W/$2.err" "$W/$2.out" >/dev/null 2>&1; then
		grep -E 'ERROR|FATAL' "$W/$2.err" "$W/$2.out" | head -n 5 >&2
		bench_die "$2 reported an error"
	fi
}

# ---- case 1: 1,000 migrations on fresh databases --------------------------
tools=(opsctl seeds)
[ -n "$SQITCH" ] && tools+=(sqitch)
for t in "${tools[@]}"; do : >"$W/t.$t"; done
for ((r = 1; r <= ROUNDS; r++)); do
	# rotate the order each round, so a burst of load does not always hit one tool
	for ((k = 0; k < ${#tools[@]}; k++)); do
		t=${tools[$(((k + r - 1) % ${#tools[@]}))]}
		db="b_${t}_$r"
		db_create "$db"
		time_once "$W/t.$t" "$t-$r" "run_$t" "$db"
		check "$db" "$t-$r"
		case $t in
		opsctl) [ "$(db_sql "$db" 'SELECT count(*) FROM schema_migrations')" = "$N" ] ;;
		seeds) [ "$(db_sql "$db" 'SELECT count(*) FROM schema_migrations')" = "$N" ] ;;
		sqitch) [ "$(db_sql "$db" 'SELECT count(*) FROM sqitch.changes')" = "$N" ] ;;
		esac || bench_die "$t-$r: the bookkeeping does not list $N migrations"
		# keep the last round's databases for the no-op re-run
		[ "$r" -eq "$ROUNDS" ] || db_drop "$db"
	done
done
bench_say "fingerprint of every database after $N migrations: $want"

ops_med=$(bench_median <"$W/t.opsctl")
seeds_med=$(bench_median <"$W/t.seeds")
echo "# migrate: $N generated migrations (CREATE TABLE + indexes, ADD COLUMN, INSERT jsonb rows, plpgsql functions), each on a fresh database, median of $ROUNDS"
echo "# migrate: PostgreSQL $PGVER on 127.0.0.1, scram-sha-256, fsync=off synchronous_commit=off full_page_writes=off (test harness)"
echo "# migrate: every database after the run: $want"
echo "# migrate: opsctl runs: $(tr '\n' ' ' <"$W/t.opsctl")s; seeds: $(tr '\n' ' ' <"$W/t.seeds")s"
bench_case "migrate-$N/seeds" "$ops_med" "$seeds_med" 3
if [ -n "$SQITCH" ]; then
	sq_med=$(bench_median <"$W/t.sqitch")
	echo "# migrate: sqitch $SQITCH_VERSION runs: $(tr '\n' ' ' <"$W/t.sqitch")s"
	bench_case "migrate-$N/sqitch" "$ops_med" "$sq_med" 3
else
	echo "# migrate: sqitch skipped (not installed and could not be installed, or BENCH_NO_SQITCH)"
fi
bench_goal "migrate-$N ≥ 20× faster than the seeds' migrate.sh, ratio" "$(awk -v a="$ops_med" -v b="$seeds_med" 'BEGIN { print b / a }')" ">=" 20

# Re-run on the migrated databases: nothing to apply (every deploy does this).
: >"$W/t.noop-opsctl"
: >"$W/t.noop-seeds"
time_once "$W/t.noop-opsctl" noop-opsctl run_opsctl "b_opsctl_$ROUNDS"
time_once "$W/t.noop-seeds" noop-seeds run_seeds "b_seeds_$ROUNDS"
check "b_opsctl_$ROUNDS" noop-opsctl
check "b_seeds_$ROUNDS" noop-seeds
bench_case "migrate-$N-noop/seeds" "$(cat "$W/t.noop-opsctl")" "$(cat "$W/t.noop-seeds")" 3
for t in "${tools[@]}"; do db_drop "b_${t}_$ROUNDS"; done

# ---- case 2: status with 10,000 applied ----------------------------------
S="$W/s$SN"
gen_tiny "$S/migrations" "$SN"
db_create b_status
: >"$W/t.apply-status"
time_once "$W/t.apply-status" apply-status "$OPSCTL_BIN" --db "$(db_url b_status)" migrate up --dir "$S/migrations"
[ "$(db_sql b_status 'SELECT count(*) FROM schema_migrations')" = "$SN" ] &&
	[ "$(db_sql b_status 'SELECT count(*) FROM b_tiny')" = "$SN" ] ||
	bench_die "applying $SN tiny migrations did not record $SN rows"
echo "# status: $SN one-line migrations applied by opsctl in $(cat "$W/t.apply-status") s (one run, not compared)"

# The peer: what an operator does with the seeds' table: one query, then a
# loop over the files comparing versions (bash builtins only, no process per file).
cat >"$W/status-peer.sh" <<'EOF'
declare -A applied=()
while IFS= read -r v; do applied[$v]=1; done < <(psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -tAc "SELECT version FROM schema_migrations")
n_applied=0 n_pending=0
for file in "$1"/*.sql; do
	filename=${file##*/}
	version=${filename%%_*}
	if [ -n "${applied[$version]:-}" ]; then
		printf '%s %s applied\n' "$version" "$filename"
		n_applied=$((n_applied + 1))
	else
		printf '%s %s pending\n' "$version" "$filename"
		n_pending=$((n_pending + 1))
	fi
done
echo "$n_applied applied, $n_pending pending" >&2
EOF
peer_status=(env PATH="$PEER_PATH" DB_HOST=127.0.0.1 DB_PORT="$TEST_PG_PORT" DB_NAME=b_status
	DB_USER=postgres PGPASSWORD="$TEST_PG_PASSWORD" bash "$W/status-peer.sh" "$S/migrations")
# not a peer but a floor: the query alone, one psql process
floor_status=(env PGPASSWORD="$TEST_PG_PASSWORD" "$PSQL" -X -h 127.0.0.1 -p "$TEST_PG_PORT"
	-U postgres -d b_status -tAc "SELECT version FROM schema_migrations")
ops_status=("$OPSCTL_BIN" --db "$(db_url b_status)" migrate status --dir "$S/migrations")

# Both must say: all applied, none pending.
"${ops_status[@]}" >"$W/status.out" 2>"$W/status.err" || bench_die "opsctl migrate status failed: $(cat "$W/status.err")"
grep -q "$SN applied, 0 pending" "$W/status.err" "$W/status.out" ||
	bench_die "opsctl migrate status did not report $SN applied, 0 pending: $(tail -n 2 "$W/status.err")"
[ "$(grep -c ' applied' "$W/status.out" || true)" -ge "$SN" ] || bench_die "opsctl migrate status listed fewer than $SN rows"
"${peer_status[@]}" >"$W/peer.out" 2>"$W/peer.err" || bench_die "the status peer failed: $(cat "$W/peer.err")"
grep -q "^$SN applied, 0 pending" "$W/peer.err" || bench_die "the status peer did not see $SN applied: $(cat "$W/peer.err")"

# alternate in 4 rounds of SRUNS/4 runs (after one warm-up run each)
: >"$W/t.status-opsctl"
: >"$W/t.status-peer"
: >"$W/t.status-floor"
per=$(((SRUNS + 3) / 4))
for ((done_ = 0; done_ < SRUNS; done_ += per)); do
	k=$((SRUNS - done_ < per ? SRUNS - done_ : per))
	bench_sample "$W/t.status-opsctl" "$k" 1 "${ops_status[@]}"
	bench_sample "$W/t.status-peer" "$k" 1 "${peer_status[@]}"
	bench_sample "$W/t.status-floor" "$k" 1 "${floor_status[@]}"
done
st_ops=$(bench_median <"$W/t.status-opsctl")
st_peer=$(bench_median <"$W/t.status-peer")
st_floor=$(bench_median <"$W/t.status-floor")
echo "# status: $SN applied, $SRUNS runs each, median; floor (the SELECT alone, one psql): $(bench_ms "$st_floor") ms"
bench_case "status-$SN/psql-loop" "$st_ops" "$st_peer" 4
bench_goal "status-$SN opsctl ≤ 100 ms, ms" "$(bench_ms "$st_ops")" "<=" 100
