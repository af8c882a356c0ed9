#!/usr/bin/env bash
# rotate-secret with kind = postgres-password, strategy single (issue 6): the
# new password set as a SCRAM verifier computed client-side (pg.log, with
# log_statement = all, has the ALTER ROLE with the verifier and never the
# value), proved by a fresh login, written to the env file, the demo service
# restarted and healthy with it; the old password refused. Nothing leaks to
# stdout/stderr, the history or any child's argv/environ. Failures put the
# old value back (exit 1: env file byte for byte, the old password logs in):
# the role missing, the restart failing, the health gate failing, the admin
# lacking CREATEROLE; the database unreachable is exit 4, nothing changed.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl

STATE=$OPSCTL_STATE_DIR
TEST_PG_CONF_EXTRA="log_statement = 'all'"
shop_setup shop_app
demo_start app "$DEMO_PORT" rel
expect_demo_healthy

{
	shop_config 5s
	cat <<EOF
[secret "db"]
env = DB_PASSWORD
kind = postgres-password
role = shop_app

[secret "ghost"]
env = DB_PASSWORD
kind = postgres-password
role = no_such_role
EOF
} >opsctl.conf
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
with_conf() { # SED-EXPR ARGS...: opsctl with a variant of opsctl.conf
	local expr=$1
	shift
	sed "$expr" opsctl.conf >variant.conf
	"$OPSCTL" -c "$TEST_SCRATCH/variant.conf" "$@"
}
alters() { grep -c 'ALTER ROLE' pg.log; }
# unchanged WHAT: the env file byte for byte, its password still the role's
# and the service still healthy with it
unchanged() {
	expect_file_same before.env app.env
	expect_mode app.env 600
	expect_login app.env "$1: the old password"
	expect_demo_healthy
	expect_no_pending
}

# ---- a rotation ---------------------------------------------------------------------
cp -p app.env before.env
old=$(env_get app.env DB_PASSWORD)
old_fp=$(env_fp app.env DB_PASSWORD)
: >pg.log.mark
alters_before=$(alters)
secret_watch_start
expect_exit 0 opsctl rotate-secret db
secret_watch_stop
new=$(env_get app.env DB_PASSWORD)
new_fp=$(env_fp app.env DB_PASSWORD)
expect_grep "^rotated 'db': DB_PASSWORD $old_fp -> $new_fp( for role shop_app)? \(service restarted, health gate passed\)\$" out
expect_env_rotated before.env app.env DB_PASSWORD
expect_decoded_len app.env DB_PASSWORD base64url 24
expect_mode app.env 600
expect_login app.env "the new password"
expect_no_login before.env "the old password"
expect_demo_healthy
expect_demo_env app.env DB_PASSWORD
# only the verifier reached the server
expect_grep "ALTER ROLE .*shop_app.* PASSWORD 'SCRAM-SHA-256\\\$[0-9]+:[A-Za-z0-9+/=]+\\\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+'" pg.log
[ "$(alters)" -gt "$alters_before" ] || fail "no ALTER ROLE in pg.log (is log_statement on?)"
for v in "$new" "$old"; do
	expect_secret_absent "$v" out err pg.log "$STATE/history.jsonl" "$STATE"/secrets/* \
		"$WATCH_LOG" "$DEMO_STATE_DIR/app.log"
done
expect_grep '^cmdline [0-9]+ .*demo-ctl' "$WATCH_LOG" # the watcher saw the restart
history_last
expect_json last.json 'd["command"] == "rotate-secret" and d["secret"] == "db" and d["kind"] == "postgres-password" and d["strategy"] == "single"'
expect_json last.json 'd["role"] == "shop_app" and d["env"] == "DB_PASSWORD" and d["outcome"] == "ok" and d["exit"] == 0 and d["restarted"] is True and d["gate"] == "passed"'
expect_json last.json 'd["fingerprint"] == "'"$new_fp"'" and d["previous_fingerprint"] == "'"$old_fp"'"'
expect_mode "$STATE/secrets/db.json" 600
expect_no_pending

# ---- again, as JSON: the steps of the staged protocol -----------------------------
cp -p app.env before.env
expect_exit 0 opsctl --output json rotate-secret db
expect_json out 'd["secret"] == "db" and d["kind"] == "postgres-password" and d["strategy"] == "single" and d["role"] == "shop_app"'
expect_json out 'd["outcome"] == "rotated" and d["restarted"] is True and d["gate"] == "passed" and d["error"] is None'
expect_json out '[s["step"] for s in d["steps"] if s["step"] in ("pending", "set", "test", "write", "restart", "gate")] == ["pending", "set", "test", "write", "restart", "gate"]'
expect_json out 'all(s["status"] == "ok" and isinstance(s["ms"], int) for s in d["steps"])'
expect_json out 'd["fingerprint"] == "'"$(env_fp app.env DB_PASSWORD)"'" and d["previous_fingerprint"] == "'"$new_fp"'"'
expect_env_rotated before.env app.env DB_PASSWORD
expect_login app.env "the second new password"
expect_no_login before.env "the first new password"
expect_demo_healthy
expect_secret_absent "$(env_get app.env DB_PASSWORD)" out err pg.log "$STATE/history.jsonl"

# ---- --dry-run: nothing changes ------------------------------------------------------
cp -p app.env before.env
alters_before=$(alters)
expect_exit 0 opsctl --dry-run --output json rotate-secret db
expect_json out 'd["dry_run"] is True and d["outcome"] == "planned" and len(d["plan"]) >= 3'
[ "$(alters)" = "$alters_before" ] || fail "--dry-run ran an ALTER ROLE"
unchanged "--dry-run"

# ---- configuration errors: exit 3 ------------------------------------------------
expect_exit 3 with_conf 's/^role = shop_app$/&\nprevious_env = DB_PASSWORD_OLD/' rotate-secret db
expect_exit 3 with_conf 's/^role = shop_app$//' rotate-secret db
expect_exit 3 with_conf 's/^kind = postgres-password$/&\nstrategy = sideways/' rotate-secret db
unchanged "configuration errors"

# ---- the role does not exist: exit 1, nothing changed -----------------------------
cp -p app.env before.env
alters_before=$(alters)
expect_exit 1 opsctl rotate-secret ghost
expect_grep "no_such_role" err
[ "$(alters)" = "$alters_before" ] || fail "an ALTER ROLE ran for a role that does not exist"
unchanged "a missing role"

# ---- the restart fails: exit 1, the old password set again ------------------------
# once (the app does not come up with the new value; it does with the old one)
cat >flaky-restart.sh <<EOF
#!/bin/sh
if [ ! -e $TEST_SCRATCH/restart-failed ]; then
	: >$TEST_SCRATCH/restart-failed
	echo "the app did not start" >&2
	exit 1
fi
exec $DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/rel
EOF
chmod +x flaky-restart.sh
cp -p app.env before.env
alters_before=$(alters)
expect_exit 1 with_conf "s|^restart = .*|restart = $TEST_SCRATCH/flaky-restart.sh|" rotate-secret db
expect_grep 'the old value is back in place' err
[ "$(alters)" -ge $((alters_before + 2)) ] || fail "expected the new password set and the old one set again (ALTER ROLE twice)"
unchanged "a failed restart"
expect_demo_env app.env DB_PASSWORD
expect_secret_absent "$(env_get app.env DB_PASSWORD)" out err pg.log
history_last
expect_json last.json 'd["secret"] == "db" and d["exit"] == 1 and d["outcome"] == "failed" and d["error"]'
# always: exit 1, the env file and the password back (the service cannot be
# restarted on the old value either: the pending file stays for --recover)
cp -p app.env before.env
expect_exit 1 with_conf 's|^restart = .*|restart = sh -c "echo cannot start >\&2; exit 1"|' rotate-secret db
expect_grep 'cannot start' err
expect_file_same before.env app.env
expect_login app.env "a restart that always fails: the old password"
expect_exit 0 opsctl --output json rotate-secret --recover
expect_json out 'd["recovered"] is None or d["recovered"]["action"] == "reverted"'
unchanged "a restart that always fails, recovered"

# ---- the health gate fails: reverted and restarted with the old password ----------
cp -p app.env before.env
dead=$(free_port)
expect_exit 1 with_conf "s|^url = http.*|url = http://127.0.0.1:$dead/actuator/health|; s|^wait = .*|wait = 2s|" \
	--output json rotate-secret db
expect_json out 'd["gate"] == "failed" and d["outcome"] == "reverted" and d["restarted"] is True'
expect_json out '"the old value is back in place" in str(d["error"])'
unchanged "a failed health gate"
expect_demo_env app.env DB_PASSWORD

# ---- the admin lacks CREATEROLE: exit 1, nothing changed --------------------------
printf 'DB_PASSWORD=%s\n' "$(random_pw)" >weak.env
pg_psql "CREATE ROLE weak LOGIN NOCREATEROLE" >/dev/null || fail "CREATE ROLE weak"
pg_set_password weak weak.env
weak_url="postgresql://weak:$(env_get weak.env DB_PASSWORD)@127.0.0.1:$TEST_PG_PORT/postgres"
cp -p app.env before.env
expect_exit 1 with_conf "s|^url = postgresql.*|url = $weak_url|" rotate-secret db
expect_grep 'permission denied|CREATEROLE' err
unchanged "an admin without CREATEROLE"

# ---- the database is unreachable: exit 4, nothing changed -------------------------
cp -p app.env before.env
free=$(free_port)
expect_exit 4 with_conf "s|^url = postgresql.*|url = postgresql://postgres@127.0.0.1:$free/postgres|" rotate-secret db
expect_file_same before.env app.env
expect_no_pending
pg_stop
expect_exit 4 opsctl rotate-secret db
expect_file_same before.env app.env
expect_no_pending
pg_resume
expect_login app.env "after the unreachable database: the password"

test_done
