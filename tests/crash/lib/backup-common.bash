# shellcheck shell=bash
# Shared by the crash scenarios backup.sh, backup-offsite.sh and restore.sh:
# a database `shop` (PostgreSQL of pg_start) with a few tables, a files
# directory for [backup] paths, and the invariants on the sets.

bk_seed_db() { # ROWS
	pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
	pg_dbsql shop "
		CREATE TABLE items (id serial PRIMARY KEY, name text, doc jsonb);
		INSERT INTO items (name, doc) SELECT 'item ' || g || ' ' || md5(g::text), jsonb_build_object('n', g, 'h', md5((g * 3)::text)) FROM generate_series(1, $1) g;
		CREATE TABLE orders (id int PRIMARY KEY, item_id int REFERENCES items, note text);
		INSERT INTO orders SELECT g, 1 + g % $1, md5((g * 7)::text) FROM generate_series(1, $1) g;
		CREATE INDEX items_name ON items (name);
		CREATE TABLE ticks (id serial PRIMARY KEY, trial int, at timestamptz DEFAULT now());" >/dev/null ||
		fail "seeding shop"
}

ob() {
	"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" "$@"
}

# bk_local_ids: the ids of `backup list --json`, one per line
bk_local_ids() {
	"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --output json backup list >list.json 2>list.err ||
		{ fail "backup list failed: $(tr '\n' ' ' <list.err)"; return 1; }
	"$TEST_PYTHON" -c 'import json,sys; [print(b["id"]) for b in json.load(open(sys.argv[1]))["backups"]]' list.json
}

# bk_remote_ids: the ids of `backup list --remote --json`
bk_remote_ids() {
	"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" --output json backup list --remote >rlist.json 2>rlist.err ||
		{ fail "backup list --remote failed: $(tr '\n' ' ' <rlist.err)"; return 1; }
	"$TEST_PYTHON" -c 'import json,sys; [print(b["id"]) for b in json.load(open(sys.argv[1]))["backups"]]' rlist.json
}

# bk_check_local: every listed set passes `backup verify ID`; no work
# directory (.tmp-*, .trash-*, .restore-*) is left once a create ran.
bk_check_local() {
	local id ids n=0 left
	ids=$(bk_local_ids) || return
	for id in $ids; do
		n=$((n + 1))
		"$OPSCTL" -c "$TEST_SCRATCH/opsctl.conf" backup verify "$id" >verify.out 2>&1 ||
			fail "listed set $id fails verify: $(tr '\n' ' ' <verify.out)"
	done
	[ "$n" -gt 0 ] || fail "no set is listed"
	left=$(cd backups && ls -A | grep -E '^\.(tmp|trash|restore)-' | tr '\n' ' ')
	[ -z "$left" ] || fail "work directories left after a successful create: $left"
	BK_LOCAL_COUNT=$n
}
