#!/usr/bin/env bash
# deploy with the symlink strategy: releases/ID complete before 'current'
# moves, shared entries linked in, single-file artifacts copied, --sha256
# (exit 5, nothing changed), keep_releases pruning (never current or
# previous), --dry-run, deploy list/status (text and JSON), history lines
# with who and why.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/deploy-lib.sh"
require_opsctl
deploy_setup

make_release v1
expect_exit 0 opsctl deploy --reason "first one" v1.tar.gz
id1=$(cat out)
expect_current "$id1" v1
[ -L app/current ] || fail "current is not a symlink"
[ "$(readlink app/current)" = "releases/$id1" ] || fail "current -> $(readlink app/current)"
# shared entries: links into shared/, the release's own .env replaced
[ "$(readlink app/releases/$id1/.env)" = "../../shared/.env" ] || fail ".env link: $(readlink app/releases/$id1/.env)"
[ "$(cat app/current/.env)" = "SECRET=shared" ] || fail "the release's .env was not replaced by the shared one"
[ "$(readlink app/releases/$id1/var/logs)" = "../../../shared/var/logs" ] || fail "nested shared link: $(readlink app/releases/$id1/var/logs)"
echo hello >app/current/var/logs/x.log
[ -f app/shared/var/logs/x.log ] || fail "the shared logs directory is not the release's"
expect_grep "^$id1 releases/$id1\$" restarts.log
[ ! -e "$OPSCTL_STATE_DIR/deploy/journal.json" ] || fail "the journal stayed after a finished deploy"

# ---- a second release; the first stays as the previous ------------------------
make_release v2
expect_exit 0 opsctl deploy v2.tar.gz
id2=$(cat out)
[ "$id2" != "$id1" ] || fail "two deploys got the same id"
expect_current "$id2" v2
[ -d "app/releases/$id1" ] || fail "the previous release was removed"

# ---- a single file is copied as it is ------------------------------------------
head -c 10000 /dev/urandom >app.jar
chmod 750 app.jar
expect_exit 0 opsctl deploy app.jar
id3=$(cat out)
expect_file_same app.jar "app/releases/$id3/app.jar"
[ "$(stat -c %a "app/releases/$id3/app.jar")" = 750 ] || fail "the jar lost its mode"
[ "$(readlink app/current)" = "releases/$id3" ] || fail "current is not the jar's release"

# ---- --sha256 ------------------------------------------------------------------
make_release v4
expect_exit 5 opsctl deploy --sha256 "$(printf '0%.0s' $(seq 64))" v4.tar.gz
expect_grep "checksum mismatch for '.*v4\.tar\.gz': expected 0{64}, got [0-9a-f]{64}" err
expect_grep 'nothing was changed' err
[ "$(readlink app/current)" = "releases/$id3" ] || fail "a checksum mismatch moved current"
[ "$(ls app/releases | wc -l)" = 3 ] || fail "a checksum mismatch left a release: $(ls app/releases)"
expect_exit 2 opsctl deploy --sha256 abc v4.tar.gz
expect_grep 'needs 64 hex digits' err
sum=$(sha256sum v4.tar.gz | cut -d' ' -f1)
expect_exit 0 opsctl deploy --sha256 "$(echo "$sum" | tr a-f A-F)" v4.tar.gz
id4=$(cat out)
expect_current "$id4" v4

# ---- keep_releases = 3: the oldest go, never current or previous ---------------
make_release v5
expect_exit 0 opsctl deploy v5.tar.gz
id5=$(cat out)
ls app/releases >releases
[ "$(wc -l <releases)" = 3 ] || fail "keep_releases=3 kept: $(tr '\n' ' ' <releases)"
grep -qx "$id5" releases && grep -qx "$id4" releases && grep -qx "$id3" releases ||
	fail "pruned the wrong ones: $(tr '\n' ' ' <releases)"
# a rollback makes an old release current; pruning never takes it or its successor
expect_exit 0 opsctl rollback "$id3"
expect_current "$id3" ""
make_release v6
expect_exit 0 opsctl --output json deploy v6.tar.gz
expect_json out 'd["exit"] == 0 and d["previous"] == "'"$id3"'" and "'"$id3"'" not in d["pruned"]'
id6=$(python3 -c 'import json; print(json.load(open("out"))["release"])')
[ -d "app/releases/$id3" ] || fail "the previous release was pruned"
[ -d "app/releases/$id6" ] || fail "the new release was pruned"

# ---- --dry-run: the plan, nothing changed --------------------------------------
make_release v7
before=$(ls app/releases | tr '\n' ' ')
expect_exit 0 opsctl deploy --dry-run v7.tar.gz
expect_grep "^would unpack '.*v7\.tar\.gz' into '.*/app/releases/" out
expect_grep "^would switch '.*/app/current' from '$id6' to " out
expect_grep '^would link .*shared/\.env' out
expect_exit 0 opsctl -n --output json deploy v7.tar.gz
expect_json out 'd["dry_run"] is True and d["previous"] == "'"$id6"'" and len(d["plan"]) > 3'
[ "$(ls app/releases | tr '\n' ' ')" = "$before" ] || fail "--dry-run changed the releases"
[ "$(readlink app/current)" = "releases/$id6" ] || fail "--dry-run moved current"

# ---- deploy list / status ------------------------------------------------------
expect_exit 0 opsctl deploy list
expect_grep "^RELEASE +TIME +COMMAND +OUTCOME" out
expect_grep "^$id1 .* deploy +ok " out
expect_grep "^$id4 .*deploy +ok +${sum:0:12} " out
expect_grep "^$id6 .* current\$" out
expect_exit 0 opsctl --output json deploy list
expect_json out 'd["current"] == "'"$id6"'" and [e["release"] for e in d["deploys"]].count("'"$id1"'") == 1'
expect_json out '[e for e in d["deploys"] if e["release"] == "'"$id1"'"][0]["reason"] == "first one"'
expect_json out '[e for e in d["deploys"] if e["release"] == "'"$id1"'"][0]["on_disk"] is False'
expect_json out 'all(e["user"] and e["time"] and "duration_ms" in e for e in d["deploys"])'
expect_exit 0 opsctl deploy status
expect_grep "^current +$id6\$" out
expect_exit 0 opsctl --output json deploy status
expect_json out 'd["current"] == "'"$id6"'" and d["in_progress"] is None and "'"$id6"'" in d["releases"]'

# ---- usage and configuration errors --------------------------------------------
expect_exit 2 opsctl deploy
expect_grep "needs an ARTIFACT" err
expect_exit 2 opsctl deploy nope.tar.gz
expect_grep "cannot read artifact 'nope.tar.gz'" err
expect_exit 2 opsctl deploy --strategy canary v7.tar.gz
printf '[app]\nname = x\n' >empty.conf
expect_exit 3 opsctl -c empty.conf deploy v7.tar.gz
expect_grep 'no \[deploy\] root' err

test_done
