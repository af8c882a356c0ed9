#!/usr/bin/env bash
# shellcheck disable=SC2010  # ls | grep on directories whose names the test chose
# Retention (DESIGN.md section 6 "backup / restore", issue 4): keep_last,
# keep_daily, keep_weekly (ISO weeks), keep_monthly, by the manifest's time
# (UTC), never below keep_last; `backup prune -n` lists exactly what would go
# and removes nothing, `backup prune` removes exactly that; nothing is pruned
# after a failed backup; a good backup prunes (unless --no-prune); prune
# without any keep_* is a configuration error (exit 3).
#
# The sets are synthetic: one real set copied 16 times, its manifest's id and
# times rewritten (the manifest carries no checksum of itself), spread over
# four months of 2024 (and one older set whose name sorts last).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
pg_start

pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 10) g" >/dev/null || fail "seeding"

mkdir metrics
write_conf() { # FILE KEY=VALUE...: a config with these [backup] keys
	local file=$1 kv
	shift
	{
		printf '[app]\nname = shop\n\n[database]\nurl = %s\n\n[backup]\ndir = backups\nmetrics_file = %s\n' \
			"$(pg_db_url shop)" "$TEST_SCRATCH/metrics/backup.prom"
		for kv in "$@"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"; done
	} >"$file"
}
write_conf none.conf
write_conf policy.conf keep_last=2 keep_daily=3 keep_weekly=3 keep_monthly=3
write_conf floor.conf keep_last=5 keep_daily=1
write_conf monthly.conf keep_monthly=2
o() { # CONF ARGS...
	local conf=$1
	shift
	"$OPSCTL" -c "$TEST_SCRATCH/$conf" "$@"
}

# the template: one real set, made elsewhere
expect_exit 0 o none.conf backup --dir template
tpl=template/$(ls template)
[ -f "$tpl/manifest.json" ] || fail "no template set"

# index -> id and start time; newest first
times=(
	""
	2024-04-22T03:00:00Z 2024-04-22T02:00:00Z 2024-04-21T02:00:00Z 2024-04-20T02:00:00Z
	2024-04-19T02:00:00Z 2024-04-14T02:00:00Z 2024-04-08T02:00:00Z 2024-04-01T02:00:00Z
	2024-03-31T02:00:00Z 2024-03-15T02:00:00Z 2024-03-01T02:00:00Z 2024-02-29T02:00:00Z
	2024-02-10T02:00:00Z 2024-01-31T02:00:00Z 2024-01-05T02:00:00Z 2023-12-01T02:00:00Z
)
id_of() { # INDEX
	if [ "$1" -eq 16 ]; then
		echo shop-imported # sorts after every other name, but is the oldest
	else
		local t=${times[$1]}
		t=${t//-/}
		echo "shop-${t//:/}"
	fi
}
ids_of() { # INDEX...: ids, sorted, one per line
	local i
	for i in "$@"; do id_of "$i"; done | sort
}
synth() { # DIR: the 16 sets
	local dir=$1 i id
	rm -rf "$dir"
	mkdir -p "$dir"
	for i in $(seq 1 16); do
		id=$(id_of "$i")
		cp -a "$tpl" "$dir/$id"
		rm -f "$dir/$id/verified.json"
		"$TEST_PYTHON" - "$dir/$id/manifest.json" "$id" "${times[$i]}" <<'EOF' || fail "rewriting $id"
import calendar, json, sys, time
path, ident, started = sys.argv[1:]
m = json.load(open(path))
t = calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")) + 300
m["id"], m["started_at"] = ident, started
m["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
json.dump(m, open(path, "w"), indent=1)
EOF
	done
}
listed() { ls "$1" | sort; }
expect_ids() { # WHAT GOT EXPECTED
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$2" = "$3" ] && return 0
	fail "$1:
    expected: $(printf '%s' "$3" | tr '\n' ' ')
    got:      $(printf '%s' "$2" | tr '\n' ' ')
$(diff <(printf '%s\n' "$3") <(printf '%s\n' "$2") | sed 's/^/    /')"
}

synth backups
expect_exit 0 o policy.conf backup list
[ "$(grep -c '^shop-' out)" -eq 16 ] || fail "backup list shows $(grep -c '^shop-' out) of the 16 synthetic sets"
# listed by manifest time, newest first: shop-imported (oldest) comes last
expect_exit 0 o policy.conf --output json backup list
expect_json out '[b["id"] for b in d["backups"]][0] == "'"$(id_of 1)"'" and d["backups"][-1]["id"] == "shop-imported"'
expect_json out '[b["time"] for b in d["backups"]][:2] == ["2024-04-22T03:00:00Z", "2024-04-22T02:00:00Z"]'
all=$(listed backups)

# ---- keep_last=2 keep_daily=3 keep_weekly=3 keep_monthly=3 ---------------------------
# last 2:        #1 #2
# daily 3:       04-22 #1, 04-21 #3, 04-20 #4
# weekly 3:      2024-W17 #1, W16 #3 (Sun 04-21), W15 #6 (Sun 04-14)
# monthly 3:     2024-04 #1, 2024-03 #9 (03-31), 2024-02 #12 (02-29)
# kept: 1 2 3 4 6 9 12; everything else goes, the oldest "shop-imported" too
want_keep=$(ids_of 1 2 3 4 6 9 12)
want_gone=$(ids_of 5 7 8 10 11 13 14 15 16)

expect_exit 0 o policy.conf -n backup prune
expect_ids "prune -n: would remove" "$(sed -n 's/^would remove //p' out | sort)" "$want_gone"
[ "$(grep -vc '^would remove ' out)" -eq 0 ] || fail "prune -n printed other lines on stdout"
expect_grep 'would remove 9 backups, keeping 7' err
expect_ids "prune -n changed nothing" "$(listed backups)" "$all"
[ ! -e "$OPSCTL_STATE_DIR/history.jsonl" ] || [ "$(grep -c 'backup prune' "$OPSCTL_STATE_DIR/history.jsonl")" -eq 0 ] ||
	fail "prune -n wrote a history line"
# -v says which rule keeps each
expect_exit 0 o policy.conf -n -v backup prune
expect_grep "keeping $(id_of 6) \(weekly\)" err
expect_grep "keeping $(id_of 12) \(monthly\)" err
expect_grep "keeping $(id_of 2) \(last\)" err
# as JSON
expect_exit 0 o policy.conf -n --output json backup prune
expect_json out 'd["dry_run"] is True and d["exit"] == 0 and sorted(d["removed"]) == '"$("$TEST_PYTHON" -c 'import sys; print(sorted(sys.argv[1].split()))' "$want_gone")"
expect_ids "prune -n --output json changed nothing" "$(listed backups)" "$all"

expect_exit 0 o policy.conf backup prune
expect_ids "prune: removed" "$(sed -n 's/^removed //p' out | sort)" "$want_gone"
expect_ids "prune: what is left" "$(listed backups)" "$want_keep"
[ -z "$(ls -A backups | grep '^\.')" ] || fail "prune left hidden entries: $(ls -A backups | grep '^\.')"
tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >last.json
expect_json last.json 'd["command"] == "backup prune" and d["outcome"] == "ok" and sorted(d["removed"]) == '"$("$TEST_PYTHON" -c 'import sys; print(sorted(sys.argv[1].split()))' "$want_gone")"
# the survivors are intact
for id in $want_keep; do
	expect_exit 0 o policy.conf backup verify "$id"
done
# pruning again removes nothing
expect_exit 0 o policy.conf backup prune
[ ! -s out ] || fail "a second prune removed something: $(cat out)"
expect_ids "second prune" "$(listed backups)" "$want_keep"

# ---- never below keep_last: keep_last=5 keep_daily=1 -------------------------------------
synth backups
expect_exit 0 o floor.conf backup prune
expect_ids "keep_last=5 keep_daily=1" "$(listed backups)" "$(ids_of 1 2 3 4 5)"
# keep_monthly=2 alone: the newest set always stays (keep_last defaults to 1)
synth backups
expect_exit 0 o monthly.conf backup prune
expect_ids "keep_monthly=2" "$(listed backups)" "$(ids_of 1 9)"

# ---- no retention policy: exit 3, nothing removed ------------------------------------------
synth backups
expect_exit 3 o none.conf backup prune
expect_grep 'no retention policy' err
expect_grep 'hint: .*keep_last' err
expect_exit 3 o none.conf -n backup prune
expect_exit 3 o none.conf --output json backup prune
expect_json out 'd["command"] == "backup prune" and d["exit"] == 3 and "no retention policy" in d["error"]["message"]'
expect_ids "prune without a policy" "$(listed backups)" "$all"
# a backup without a policy prunes nothing
expect_exit 0 o none.conf backup
[ "$(ls backups | wc -l)" -eq 17 ] || fail "a backup without a policy removed sets"
rm -rf "backups/$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)"
# a bad value: exit 3 naming the file and the key
write_conf bad.conf keep_daily=soon
expect_exit 3 o bad.conf backup prune
expect_grep 'bad\.conf.*keep_daily' err
expect_exit 3 o bad.conf backup
expect_ids "bad config" "$(listed backups)" "$all"

# ---- nothing pruned after a failed backup ----------------------------------------------------
expect_exit 1 o policy.conf --db "$(pg_db_url no_such_db)" backup
expect_ids "after a failed backup" "$(listed backups)" "$all"
printf '#!/bin/sh\necho "pg_dump: error: simulated" >&2\nexit 1\n' >bad_pg_dump
chmod +x bad_pg_dump
write_conf failing.conf keep_last=1 "pg_dump=$TEST_SCRATCH/bad_pg_dump"
expect_exit 1 o failing.conf backup
expect_ids "after a failed pg_dump" "$(listed backups)" "$all"
expect_no_grep '^removed ' out

# ---- --no-prune, then a good backup prunes --------------------------------------------------
expect_exit 0 o policy.conf backup --no-prune
made=$(sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out)
expect_no_grep '^removed ' out
[ "$(ls backups | wc -l)" -eq 17 ] || fail "--no-prune removed sets"
rm -rf "backups/$made"
# now N (today, a later month) is the newest:
# last 2: N #1; daily 3: N, #1, #3; weekly 3: N, #1 (W17), #3 (W16);
# monthly 3: N, #1 (2024-04), #9 (2024-03)  => kept N 1 3 9
expect_exit 0 o policy.conf backup
made=$(sed -n 's/^\(shop-[0-9][^ ]*\)  .*/\1/p' out)
[ -n "$made" ] || fail "no id in the output of the pruning backup"
expect_ids "a good backup prunes" "$(listed backups)" "$({ echo "$made"; ids_of 1 3 9; } | sort)"
expect_ids "a good backup prunes: removed" "$(sed -n 's/^removed //p' out | sort)" "$(ids_of 2 4 5 6 7 8 10 11 12 13 14 15 16)"
# in JSON the pruned ids are in the document
synth backups
expect_exit 0 o policy.conf --output json backup
expect_json out 'd["exit"] == 0 and sorted(d["pruned"]) == sorted('"$("$TEST_PYTHON" -c 'import sys; print(sys.argv[1].split())' "$(ids_of 2 4 5 6 7 8 10 11 12 13 14 15 16)")"') and d["id"] not in d["pruned"]'
# -q: silent even when it prunes
synth backups
expect_exit 0 o policy.conf -q backup
[ ! -s out ] && [ ! -s err ] || { show_file out out; show_file err err; fail "-q backup that pruned printed something"; }
[ "$(ls backups | wc -l)" -eq 4 ] || fail "-q backup: expected 4 sets after pruning, have $(ls backups | wc -l)"

test_done
