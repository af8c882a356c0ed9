# shellcheck shell=bash
# Shared by the deploy crash scenarios (deploy-symlink, deploy-bluegreen,
# rollback): release archives with a manifest of every file, and the
# invariants of a deploy root after a run was signalled and recovered.
#
# A release vN is src-vN/ (demo-service.py's VERSION, a payload of small
# files and one larger one, its own .env replaced by the shared one, and
# migrations/ holding every migration so far: N creates table t_N), packed
# as vN.tar.gz; manifests/vN.sha lists the SHA-256 of every regular file.

# dc_payload: the files every release carries (made once).
dc_payload() {
	mkdir -p payload/static
	local i
	for i in $(seq 1 150); do
		head -c 3000 /dev/urandom >"payload/static/f$i.bin"
	done
	head -c 2000000 /dev/urandom >payload/app.jar
}

# dc_migration N: migrations/N_tN.sql (+ its down file) in ./mig, cumulative.
dc_migration() {
	mkdir -p mig/rollback
	printf 'CREATE TABLE t_%s (id int PRIMARY KEY, v text);\nINSERT INTO t_%s SELECT g, md5(g::text) FROM generate_series(1, 200) g;\n' "$1" "$1" >"mig/$1_t$1.sql"
	printf 'DROP TABLE t_%s;\n' "$1" >"mig/rollback/$1_t$1.down.sql"
}

# dc_release NAME [BEHAVIOUR_JSON]: src-NAME, NAME.tar.gz and manifests/NAME.sha.
dc_release() {
	local name=$1
	rm -rf "src-$name"
	demo_release "src-$name" "$name" "${2:-{\"latency_ms\": 1\}}"
	cp -r payload/. "src-$name/"
	echo "built for $name at $EPOCHREALTIME" >"src-$name/static/build-info.txt"
	echo "SECRET=from-the-artifact" >"src-$name/.env"
	[ ! -d mig ] || cp -r mig "src-$name/migrations"
	mkdir -p manifests
	(cd "src-$name" && find . -type f ! -name .env -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) \
		>"manifests/$name.sha" || fail "manifest of $name"
	tar -C "src-$name" -czf "$name.tar.gz" . || fail "cannot pack $name"
}

# dc_check_release DIR: DIR is a complete release (every file of its
# manifest, with its checksum, and nothing more), .env linked to shared/.
dc_check_release() {
	local dir=$1 ver n_have n_want
	ver=$(cat "$dir/VERSION" 2>/dev/null) || { fail "release $dir has no VERSION (incomplete)"; return 1; }
	[ -f "manifests/$ver.sha" ] || { fail "release $dir: unknown version '$ver'"; return 1; }
	(cd "$dir" && sha256sum --quiet --strict -c "$TEST_SCRATCH/manifests/$ver.sha") >dc.sum.err 2>&1 ||
		{ show_file sha256sum dc.sum.err; fail "release $dir ($ver) is not complete"; return 1; }
	n_have=$(cd "$dir" && find . -type f | wc -l)
	n_want=$(wc -l <"manifests/$ver.sha")
	[ "$n_have" = "$n_want" ] || fail "release $dir ($ver): $n_have files, its archive has $n_want"
	[ "$(readlink "$dir/.env")" = ../../shared/.env ] || fail "release $dir ($ver): .env is not the shared one"
}

# dc_check_root ROOT: every release complete, no staging or trash left, the
# links that exist point at releases that exist, no journal.
dc_check_root() {
	local root=$1 d l t
	for d in "$root"/releases/*; do
		[ -d "$d" ] || continue
		dc_check_release "$d"
	done
	l=$(cd "$root/releases" && ls -A | grep '^\.' | tr '\n' ' ')
	[ -z "$l" ] || fail "left in $root/releases after the recovery: $l"
	for l in "$root/current" "$root"/slots/*; do
		[ -L "$l" ] || continue
		t=$(readlink "$l")
		case $t in
		blue | green) [ "$l" = "$root/slots/live" ] || fail "$l -> $t" ;;
		releases/* | ../releases/*) [ -d "$(dirname "$l")/$t" ] || fail "$l -> $t, which does not exist" ;;
		*) fail "$l -> $t: not a release" ;;
		esac
	done
	[ ! -e "$OPSCTL_STATE_DIR/deploy/journal.json" ] || {
		show_file journal "$OPSCTL_STATE_DIR/deploy/journal.json"
		fail "the deploy journal is still there after the recovery"
	}
	l=$(ls -A "$OPSCTL_STATE_DIR/deploy" 2>/dev/null | grep -v '^journal\.json$' | tr '\n' ' ')
	[ -z "$l" ] || fail "left in $OPSCTL_STATE_DIR/deploy: $l"
}

# dc_serves URL DIR: the service at URL answers GET / with the release in DIR
# (its VERSION and real path) and its health is UP. Waits up to 15 s (a
# restart left running by the killed run may still be under way).
dc_serves_now() {
	local body want_ver want_dir
	want_ver=$(cat "$2/VERSION" 2>/dev/null) || return 1
	want_dir=$(realpath "$2") || return 1
	body=$(curl -fsS --max-time 3 "$1/" 2>/dev/null) || return 1
	"$TEST_PYTHON" -c 'import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if d["version"] == sys.argv[2] and d["release"] == sys.argv[3] else 1)' "$body" "$want_ver" "$want_dir" || return 1
	curl -fsS --max-time 3 -o /dev/null "$1/actuator/health" 2>/dev/null
}
dc_serves() {
	wait_for 15 dc_serves_now "$1" "$2" && return 0
	say "GET $1/: $(curl -sS --max-time 3 "$1/" 2>&1 | head -c 300)"
	fail "the service at $1 does not serve $(readlink -f "$2") ($(cat "$2/VERSION" 2>/dev/null)) healthy"
}

# dc_check_schema DB: schema_migrations names exactly the t_N tables, and
# every migration of the current release is applied.
dc_check_schema() {
	local applied tables
	applied=$(pg_dbsql "$1" "SELECT coalesce(string_agg(version, ',' ORDER BY version), '') FROM schema_migrations") ||
		{ fail "cannot read schema_migrations"; return 1; }
	tables=$(pg_dbsql "$1" "SELECT coalesce(string_agg(substr(tablename, 3), ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 't\_%'")
	[ "$applied" = "$tables" ] || fail "schema_migrations ($applied) does not match the tables (t_: $tables)"
	local f v
	for f in "$2"/migrations/*.sql; do
		[ -f "$f" ] || continue
		v=$(basename "$f"); v=${v%%_*}
		case ",$applied," in *",$v,"*) ;; *) fail "migration $v of the current release is not applied ($applied)" ;; esac
	done
}
