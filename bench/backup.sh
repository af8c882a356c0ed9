#!/usr/bin/env bash
# backup: `opsctl backup` and `opsctl restore` against what the seeds do
# (`pg_dump | gzip`, `gunzip -c | psql`) and the standard tools (pg_dump -Fc,
# pg_dump | zstd, pg_restore -j2), on a generated chat-style database
# (bench/dataset.sh), all measured in the same run (DESIGN §8, issue 4).
#
#   bench/backup.sh [ROUNDS]   ROUNDS alternating rounds, median (default 3)
#
# Environment (besides lib.sh's):
#   BENCH_DATASET_MB=1024   database size on disk (bench/dataset.sh); the
#                           1 GB run takes ~15-20 minutes on 2 cores
#   BENCH_DATASET_JOBS=2    sessions generating it
#   BENCH_NO_RESTORE=1      backups only
#
# Lines: `case opsctl_s peer_s ratio` (median wall seconds, ratio =
# peer / opsctl), `size-* opsctl_bytes peer_bytes ratio`, and `# goal ...`.
#
# Backups (each round runs all eight, in a rotated order):
#   opsctl backup                     default: pg_dump -Fd -j2 -Z0, each table's
#                                     file compressed by opsctl's zstd (level 3)
#                                     while pg_dump writes it, row counts in the
#                                     snapshot, fsync, manifest
#   opsctl backup --format custom     pg_dump -Fc -Z0 piped into opsctl's zstd
#   opsctl backup --format plain      pg_dump -Fp into opsctl's gzip (-6, every core)
#   seeds    pg_dump DB | gzip > f.sql.gz
#   Fc       pg_dump -Fc -f f.dump DB            (pg_dump's own zlib, default level 6)
#   Fd       pg_dump -Fd -j2 -f f.dir DB         (the same, a file per table, 2 workers)
#   zstd     pg_dump DB | zstd -T0 -3 > f.sql.zst
#   floor    pg_dump -Fc -Z0 DB > /dev/null     (what reading the data costs; PostgreSQL
#            15's `-f /dev/null` fails: pg_dump fsyncs its -f file, /dev/null refuses)
# Restores (each into a new database; the peers' CREATE DATABASE is timed too):
#   opsctl --yes restore SET          the default (directory) set: verify,
#                                     create, then three steps: pg_restore
#                                     --section=pre-data (the schema); the table
#                                     data streamed, decompressed as it is read,
#                                     into COPY on --jobs connections (default: the
#                                     CPUs, at most 4), nothing decompressed to
#                                     disk; pg_restore --section=post-data -jN
#                                     (indexes, constraints); then the row-count
#                                     check (as many connections) and the swap
#   opsctl --yes restore CUSTOM-SET   pg_restore from the decompressed stream (one job)
#   psql     createdb; gunzip -c f.sql.gz | psql (the seeds' restore)
#   pgr-j2   createdb; pg_restore -j2 -d NEW f.dump
#   pgr-Fd-j2 createdb; pg_restore -j2 -d NEW f.dir
#
# The database is a throwaway cluster from the test harness (tests/lib/
# test-lib.sh pg_start: 127.0.0.1, scram-sha-256, fsync = off,
# synchronous_commit = off, full_page_writes = off), with these added for a
# 1 GB database: shared_buffers = 256MB, maintenance_work_mem = 256MB,
# max_wal_size = 8GB, checkpoint_timeout = 30min. Every side connects the same
# way (TCP, password) and runs the same binaries (/usr/lib/postgresql/N/bin,
# not Debian's Perl wrappers). Backup files go to the scratch directory on the
# same disk for every side; only opsctl fsyncs its files.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${1:-3}
MB=${BENCH_DATASET_MB:-1024}
for v in "$ROUNDS" "$MB"; do
	case $v in '' | *[!0-9]* | 0) bench_die "ROUNDS and BENCH_DATASET_MB must be positive numbers" ;; esac
done

bench_setup backup
for tool in gzip gunzip zstd; do
	command -v "$tool" >/dev/null 2>&1 || bench_die "$tool is needed (a peer)"
done

# ---- a throwaway PostgreSQL (the test harness) ----------------------------
OPSCTL=$OPSCTL_BIN TEST_SRCDIR=$BENCH_REPO TEST_NAME=bench-backup
export OPSCTL TEST_SRCDIR TEST_NAME
# shellcheck source=../tests/lib/test-lib.sh
. "$BENCH_REPO/tests/lib/test-lib.sh"
backup_cleanup() {
	local code=$?
	set +e # test_cleanup is written for a shell without errexit
	bench_cleanup
	(exit "$code")
	test_cleanup
}
trap backup_cleanup EXIT
pg_start
cat >>"$TEST_PG_DATA/postgresql.conf" <<EOF
# bench/backup.sh: a 1 GB database
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
EOF
pg_stop
pg_resume

W="$BENCH_TMP/work"
cd "$W" || exit 1
export HOME="$W"
# the real binaries for every side (opsctl runs pg_dump/pg_restore/psql from PATH)
export PATH="$TEST_PG_BINDIR:$PATH"
export PGHOST=127.0.0.1 PGPORT=$TEST_PG_PORT PGUSER=postgres PGPASSWORD=$TEST_PG_PASSWORD
export PGOPTIONS='-c client_min_messages=warning'
DB=chat
URL="postgresql://postgres:$TEST_PG_PASSWORD@127.0.0.1:$TEST_PG_PORT/$DB"
PGVER=$(pg_dump --version | awk '{ print $3 }')

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "${2:-postgres}" -c "$1"; }

bench_say "generating a ${MB} MB dataset"
q "CREATE DATABASE $DB"
PSQL=psql bash "$BENCH_DIR/dataset.sh" "$DB" >dataset.out || bench_die "bench/dataset.sh failed"
q "CHECKPOINT" >/dev/null

# What a restored database must hold (the same for every tool).
fingerprint() {
	q "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM conversations) || ' ' ||
	          (SELECT count(*) FROM messages) || ' ' || (SELECT count(*) FROM feedback) || ' ' ||
	          (SELECT sum(length(content)) FROM messages) || ' ' ||
	          (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') || ' idx ' ||
	          (SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace) || ' con'" "$1"
}
want=$(fingerprint "$DB")
dbsize=$(q "SELECT pg_database_size('$DB')")
# warm-up (untimed): reads every table into the cache, and the plain size
plain_bytes=$(pg_dump "$DB" | wc -c)

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo "# backup: $(sed 's/^dataset: //' dataset.out)"
echo "# database $(awk -v b="$dbsize" 'BEGIN { printf "%.0f MB", b / 1048576 }') on disk, plain dump $(awk -v b="$plain_bytes" 'BEGIN { printf "%.0f MB", b / 1048576 }'); PostgreSQL $PGVER; $(nproc) cores, ${cpu:-unknown CPU}"
echo "# $ROUNDS alternating rounds, median wall seconds; gzip $(gzip --version | awk 'NR == 1 { print $2 }'), zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n 1)"

# ---- the commands ---------------------------------------------------------
OPS_D="$W/ops-directory" OPS_C="$W/ops-custom" OPS_P="$W/ops-plain"
run_ops() { "$OPSCTL_BIN" -q --db "$URL" backup --no-prune --dir "$OPS_D"; }
run_ops_custom() { "$OPSCTL_BIN" -q --db "$URL" backup --no-prune --dir "$OPS_C" --format custom; }
run_ops_plain() { "$OPSCTL_BIN" -q --db "$URL" backup --no-prune --dir "$OPS_P" --format plain; }
run_seeds() { pg_dump "$DB" | gzip >"$W/f.sql.gz"; }
run_fc() { pg_dump -Fc -f "$W/f.dump" "$DB"; }
run_fd() { rm -rf "$W/f.dir" && pg_dump -Fd -j2 -f "$W/f.dir" "$DB"; }
run_zstd() { pg_dump "$DB" | zstd -q -T0 -3 >"$W/f.sql.zst"; }
run_floor() { pg_dump -Fc -Z0 "$DB" >/dev/null; }

# keep only the newest set of DIR (the one restored later)
keep_newest() {
	local sets
	mapfile -t sets < <(find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | sort)
	if [ "${#sets[@]}" -gt 1 ]; then rm -rf "${sets[@]:0:${#sets[@]}-1}"; fi
}
newest_set() { find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | sort | tail -n 1; }
set_db_file() { find "$(newest_set "$1")" -maxdepth 1 -name 'db.*' | head -n 1; }
set_db_bytes() { du -bs "$(newest_set "$1")/db" | cut -f1; }   # a directory dump's files

# timed NAME CMD...: run CMD, append its wall seconds to t.NAME; a failure aborts.
timed() {
	local name=$1 t0 t1
	shift
	t0=$EPOCHREALTIME
	"$@" >>"$W/cmd.log" 2>&1 || {
		tail -n 20 "$W/cmd.log" >&2
		bench_die "failed: $name ($*)"
	}
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>"$W/t.$name"
	bench_say "$name: $(tail -n 1 "$W/t.$name") s"
}
med() { bench_median <"$W/t.$1"; }

# ---- backups --------------------------------------------------------------
backups=(ops seeds ops_custom ops_plain fc fd zstd floor)
for ((r = 0; r < ROUNDS; r++)); do
	for ((i = 0; i < ${#backups[@]}; i++)); do
		b=${backups[(i + r) % ${#backups[@]}]} # rotated each round
		timed "$b" "run_$b"
		case $b in
		ops) keep_newest "$OPS_D" ;;
		ops_custom) keep_newest "$OPS_C" ;;
		ops_plain) keep_newest "$OPS_P" ;;
		esac
	done
done
sz() { stat -c %s "$1"; }
s_ops=$(set_db_bytes "$OPS_D")
s_ops_c=$(sz "$(set_db_file "$OPS_C")")
s_fd=$(du -bs "$W/f.dir" | cut -f1)
s_ops_p=$(sz "$(set_db_file "$OPS_P")")
s_seeds=$(sz "$W/f.sql.gz")
s_fc=$(sz "$W/f.dump")
s_zstd=$(sz "$W/f.sql.zst")
# the plain backup must be what `gunzip -c | psql` reads: the same SQL as pg_dump's
gunzip -t "$(set_db_file "$OPS_P")" || bench_die "opsctl's plain backup is not a valid gzip file"

tag="${MB}MB"
bench_case "backup-$tag/seeds-gzip" "$(med ops)" "$(med seeds)" 3
bench_case "backup-$tag/pg_dump-Fc" "$(med ops)" "$(med fc)" 3
bench_case "backup-$tag/pg_dump-Fd-j2" "$(med ops)" "$(med fd)" 3
bench_case "backup-$tag/pg_dump-zstd" "$(med ops)" "$(med zstd)" 3
bench_case "backup-$tag/floor-Fc-Z0" "$(med ops)" "$(med floor)" 3
bench_case "backup-custom-$tag/seeds-gzip" "$(med ops_custom)" "$(med seeds)" 3
bench_case "backup-custom-$tag/floor-Fc-Z0" "$(med ops_custom)" "$(med floor)" 3
bench_case "backup-plain-$tag/seeds-gzip" "$(med ops_plain)" "$(med seeds)" 3
bench_case "size-backup-$tag/seeds-gzip" "$s_ops" "$s_seeds" 0
bench_case "size-backup-$tag/pg_dump-Fc" "$s_ops" "$s_fc" 0
bench_case "size-backup-$tag/pg_dump-Fd" "$s_ops" "$s_fd" 0
bench_case "size-backup-$tag/pg_dump-zstd" "$s_ops" "$s_zstd" 0
bench_case "size-backup-custom-$tag/seeds-gzip" "$s_ops_c" "$s_seeds" 0
bench_case "size-backup-plain-$tag/seeds-gzip" "$s_ops_p" "$s_seeds" 0
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }
bench_goal "backup ≤ 0.3× the seeds' pg_dump | gzip, opsctl/seeds" "$(ratio "$(med ops)" "$(med seeds)")" "<=" 0.3
bench_goal "backup ≤ 1.5× the floor pg_dump -Fc -Z0, opsctl/floor" "$(ratio "$(med ops)" "$(med floor)")" "<=" 1.5
awk -v a="$s_ops" -v b="$s_seeds" 'BEGIN { # four digits: the two are close
	printf "# goal backup file ≤ gzip -6'"'"'s, opsctl/seeds bytes <= 1: %s (measured %.4f)\n", (a <= b ? "met" : "MISSED"), a / b }'
echo "# backup-plain (gzip): opsctl/seeds $(ratio "$(med ops_plain)" "$(med seeds)" | xargs printf '%.3g'), file $(ratio "$s_ops_p" "$s_seeds" | xargs printf '%.4g')× the seeds'"

[ -z "${BENCH_NO_RESTORE:-}" ] || exit 0

# ---- restores -------------------------------------------------------------
SET_D=$(newest_set "$OPS_D") SET_C=$(newest_set "$OPS_C")
FRESH=peer_restore
run_ops_restore() { "$OPSCTL_BIN" -q --yes --db "$URL" restore "$SET_D"; }
run_ops_restore_custom() { "$OPSCTL_BIN" -q --yes --db "$URL" restore "$SET_C"; }
run_psql() {
	createdb "$FRESH" && gunzip -c "$W/f.sql.gz" | psql -X -q -v ON_ERROR_STOP=1 -o /dev/null -d "$FRESH"
}
run_pgr_j2() { createdb "$FRESH" && pg_restore -j2 --exit-on-error -d "$FRESH" "$W/f.dump"; }
run_pgr_fd_j2() { createdb "$FRESH" && pg_restore -j2 --exit-on-error -d "$FRESH" "$W/f.dir"; }

# after each (untimed): the restored database holds what the original did;
# then the database set aside by opsctl's swap, or the peer's copy, is dropped
check_and_drop() {
	local got db
	case $1 in
	ops_*)
		got=$(fingerprint "$DB")
		for db in $(q "SELECT datname FROM pg_database WHERE datname LIKE '${DB}\_pre\_restore\_%'"); do
			q "DROP DATABASE $db" >/dev/null
		done
		;;
	*)
		got=$(fingerprint "$FRESH")
		q "DROP DATABASE $FRESH" >/dev/null
		;;
	esac
	[ "$got" = "$want" ] || bench_die "$1: the restored database differs: '$got', expected '$want'"
}

restores=(ops_restore psql ops_restore_custom pgr_j2 pgr_fd_j2)
for ((r = 0; r < ROUNDS; r++)); do
	for ((i = 0; i < ${#restores[@]}; i++)); do
		b=${restores[(i + r) % ${#restores[@]}]}
		timed "$b" "run_$b"
		check_and_drop "$b"
		q "CHECKPOINT" >/dev/null # each starts with no dirty buffers of the one before
	done
done
echo "# restore: $(fingerprint "$DB" | awk '{ print $3 " messages, " $6 " indexes, " $8 " constraints" }') checked after every run, on every side"
bench_case "restore-$tag/gunzip-psql" "$(med ops_restore)" "$(med psql)" 3
bench_case "restore-$tag/pg_restore-j2" "$(med ops_restore)" "$(med pgr_j2)" 3
bench_case "restore-$tag/pg_restore-Fd-j2" "$(med ops_restore)" "$(med pgr_fd_j2)" 3
bench_case "restore-custom-$tag/pg_restore-j2" "$(med ops_restore_custom)" "$(med pgr_j2)" 3
best=$(printf '%s\n%s\n%s\n' "$(med psql)" "$(med pgr_j2)" "$(med pgr_fd_j2)" | sort -g | head -n 1)
bench_goal "restore ≤ 1.05× the fastest standard restore, opsctl/fastest" "$(ratio "$(med ops_restore)" "$best")" "<=" 1.05
echo "# restore of a custom-format set (one job, streamed): opsctl/fastest $(ratio "$(med ops_restore_custom)" "$best" | xargs printf '%.3g')"
