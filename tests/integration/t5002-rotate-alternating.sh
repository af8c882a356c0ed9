#!/usr/bin/env bash
# rotate-secret strategy = alternating (issue 6): --setup creates role_a and
# role_b as members of the owner (not with an admin lacking CREATEROLE: exit
# 1, no role created), then each rotation gives the inactive role a new
# password and points DB_USER / DB_PASSWORD at it: role_a, role_b, role_a.
# The previous credentials keep working until the next rotation, so a client
# pool that read the env file before the rotation keeps its connections and
# opens new ones throughout without a single failure; the demo service
# restarts healthy with the new role each time.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl

STATE=$OPSCTL_STATE_DIR
TEST_PG_CONF_EXTRA="log_statement = 'all'"
shop_setup shop
demo_start app "$DEMO_PORT" rel
expect_demo_healthy

{
	shop_config 5s
	cat <<EOF
[secret "db"]
env = DB_PASSWORD
kind = postgres-password
strategy = alternating
role_a = shop_a
role_b = shop_b
owner = shop
EOF
} >opsctl.conf
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
with_conf() { # SED-EXPR ARGS...: opsctl with a variant of opsctl.conf
	local expr=$1
	shift
	sed "$expr" opsctl.conf >variant.conf
	"$OPSCTL" -c "$TEST_SCRATCH/variant.conf" "$@"
}
members() { # the members of shop, sorted, comma-joined
	pg_psql "SELECT coalesce(string_agg(m.rolname, ',' ORDER BY m.rolname), '')
		FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid
		WHERE g.rolname = 'shop'"
}

# ---- --setup with an admin lacking CREATEROLE: exit 1, nothing created ----------
printf 'DB_PASSWORD=%s\n' "$(random_pw)" >weak.env
pg_psql "CREATE ROLE weak LOGIN NOCREATEROLE" >/dev/null || fail "CREATE ROLE weak"
pg_set_password weak weak.env
cp -p app.env before.env
expect_exit 1 with_conf "s|^url = postgresql.*|url = postgresql://weak:$(env_get weak.env DB_PASSWORD)@127.0.0.1:$TEST_PG_PORT/postgres|" \
	rotate-secret --setup db
expect_grep 'permission denied|CREATEROLE' err
expect_sql "SELECT count(*) FROM pg_roles WHERE rolname IN ('shop_a', 'shop_b')" 0
expect_file_same before.env app.env
expect_login app.env "after the failed --setup: the app's credentials"
expect_no_pending

# ---- the roles do not exist yet and no --setup: exit 1, nothing changed ----------
expect_exit 1 opsctl rotate-secret db
expect_grep 'shop_a' err
expect_grep '--setup' err
expect_sql "SELECT count(*) FROM pg_roles WHERE rolname IN ('shop_a', 'shop_b')" 0
expect_file_same before.env app.env
expect_no_pending

# rotate WHAT ARGS...: one alternating rotation under a client pool holding
# the credentials of before it. Leaves before.env (the env file before) and
# checks: the pool never failed and kept opening connections, the env file
# changed only in DB_USER and DB_PASSWORD, both the old and the new
# credentials log in, the demo service restarted healthy with the new ones.
rotate() {
	local what=$1
	shift
	cp -p app.env before.env
	pool_start app.env --size 4 --churn-ms 100
	sleep 0.5
	expect_exit 0 opsctl --output json rotate-secret "$@" db
	local rotated_at=$EPOCHREALTIME
	sleep 1 # the pool goes on churning with the old credentials
	pool_stop
	expect_pool 'd["failed"] == 0 and d["errors"] == []'
	expect_pool 'd["connects"] >= 4 + 5 and d["queries"] > 100 and d["open"] == 4'
	expect_pool 'd["last_connect_at"] > '"${rotated_at/,/.}"' # new logins after the rotation'
	expect_env_rotated before.env app.env DB_PASSWORD DB_USER
	expect_decoded_len app.env DB_PASSWORD base64url 24
	expect_login app.env "$what: the new credentials"
	expect_login before.env "$what: the previous credentials"
	expect_demo_healthy
	expect_demo_env app.env DB_USER DB_PASSWORD
	expect_secret_absent "$(env_get app.env DB_PASSWORD)" out err pg.log "$STATE/history.jsonl" "$STATE"/secrets/*
	expect_no_pending
}

# ---- --setup as the superuser, then the first rotation: role_a --------------------
rotate "--setup" --setup
expect_json out 'd["strategy"] == "alternating" and d["role"] == "shop_a" and d["outcome"] == "rotated"'
expect_json out 'len(d["setup"]) >= 2 and any("shop_a" in s for s in map(str, d["setup"])) and any("shop_b" in s for s in map(str, d["setup"]))'
expect_sql "SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('shop_a', 'shop_b')" \
	"shop_a:true,shop_b:true"
[ "$(members)" = "shop_a,shop_b" ] || fail "the members of shop are '$(members)', expected shop_a,shop_b"
[ "$(env_get app.env DB_USER)" = shop_a ] || fail "the first rotation went to $(env_get app.env DB_USER), not shop_a"
expect_pool 'd["user"] == "shop"'
# role_a works as the app: the owner's tables through the membership
cat >items.py <<'EOF'
import sys
sys.path.insert(0, __import__("os").environ["TEST_SRCDIR"] + "/tests/lib")
import appenv
conn = appenv.Conn(appenv.db_params(appenv.load("app.env")))
conn.select1()
lib = appenv.libpq()
res = lib.PQexec(conn.conn, b"SELECT count(*) FROM items")
ok = res and lib.PQresultStatus(res) == appenv.PGRES_TUPLES_OK
print("ok" if ok else conn.error())
sys.exit(0 if ok else 1)
EOF
expect_exit 0 "$TEST_PYTHON" items.py
cp app.env rot1.env

# ---- second: role_b; role_a keeps working -------------------------------------------
rotate "the second rotation"
expect_json out 'd["role"] == "shop_b" and d["previous_role"] == "shop_a" and d["outcome"] == "rotated"'
[ "$(env_get app.env DB_USER)" = shop_b ] || fail "the second rotation went to $(env_get app.env DB_USER)"
expect_pool 'd["user"] == "shop_a"'
history_last
expect_json last.json 'd["strategy"] == "alternating" and d["role"] == "shop_b" and d["previous_role"] == "shop_a"'
cp app.env rot2.env

# ---- third: role_a again with a new password; role_b keeps working ------------------
rotate "the third rotation"
expect_json out 'd["role"] == "shop_a" and d["previous_role"] == "shop_b"'
[ "$(env_get app.env DB_USER)" = shop_a ] || fail "the third rotation went to $(env_get app.env DB_USER)"
expect_pool 'd["user"] == "shop_b"'
expect_no_login rot1.env "role_a's password of the first rotation"
expect_login rot2.env "role_b's password of the second rotation"

# ---- killed mid-way: the recovery keeps both roles working ------------------------
cp -p app.env before.env
OPSCTL_TEST_KILL_AT=tested expect_exit 137 opsctl rotate-secret db
expect_file_same before.env app.env
expect_exit 0 opsctl --output json rotate-secret --recover
expect_json out 'd["recovered"]["action"] == "reverted"'
expect_file_same before.env app.env
expect_login app.env "reverted after a kill: the active role"
# (the inactive role's password is not put back: the next rotation changes it anyway)
expect_no_pending
OPSCTL_TEST_KILL_AT=written expect_exit 137 opsctl rotate-secret db
cp -p app.env killed.env
expect_env_rotated before.env killed.env DB_PASSWORD DB_USER
expect_exit 0 opsctl --output json rotate-secret --recover
expect_json out 'd["recovered"]["action"] == "completed"'
expect_file_same killed.env app.env
[ "$(env_get app.env DB_USER)" = shop_b ] || fail "the completed rotation went to $(env_get app.env DB_USER)"
expect_login app.env "completed after a kill: the new role"
expect_login before.env "completed after a kill: the previous role"
expect_demo_healthy
expect_demo_env app.env DB_USER DB_PASSWORD
expect_no_pending

test_done
