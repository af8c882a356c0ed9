#!/usr/bin/env bash
# Secrets hygiene (issue 8): every command that touches a secret, run with
# PostgreSQL's log_statement = all and tests/lib/secret-watch.py sampling the
# argv and environment of every process of the test's tree (opsctl and each
# child it starts: pg_dump, pg_restore, psql, hooks, the service restarts)
# from the first command to the last, opsctl saying all it says (-vv).
# The secrets: the app's DB_PASSWORD (DB_* in the env file), a DATABASE_URL
# password that needs percent-encoding, the admin's password (a [secret]
# admin_url expanded from the env file), the S3 secret key of the offsite
# storage, a Redis requirepass (a redis check and a [source]), a Qdrant API
# key (an http-snapshot source), a random JWT key, every value rotate-secret
# writes (old and new), and wrong values of each (their errors name none).
# The commands: health (table, JSON, metrics file, wrong passwords), migrate
# (status, apply, a wrong password), backup (local + offsite + both sources,
# list/verify --remote [--deep], verify --restore-test, upload, a wrong Redis
# password, a wrong Qdrant key, a wrong DB password), restore (the swap with
# the sources, --target-db, from the storage), deploy (pre-deploy backup,
# migrations, restart, health gate), rollback --with-schema, deploy list,
# --dry-run plans, rotate-secret (random twice, postgres single, killed after
# "written" then --recover, --setup alternating, alternating, --list).
# No value may occur in the watcher's log, pg.log, opsctl's stdout/stderr,
# the state directory (the pending file of the killed rotation holds values
# by design: mode 0600 in a 0700 directory, gone after the recovery), the
# metrics files, the backup sets and their offsite copies, the logs of
# s3rver, redis, the Qdrant stand-in and the demo service. libpq's programs
# get the password through a passfile: no child has a PGPASSWORD.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	fail "no redis-server / redis-cli (scripts/deps.sh installs redis-server and redis-tools)"

STATE=$OPSCTL_STATE_DIR
TEST_PG_CONF_EXTRA="log_statement = 'all'"
# the servers first: their own command lines are the test's doing
shop_setup shop_app
pg_psql "ALTER ROLE shop_app CREATEDB" >/dev/null || fail "ALTER ROLE shop_app CREATEDB"
s3_start backups
REDIS_PW=rd-$(random_pw)
redis_start "requirepass $REDIS_PW"
QDRANT_SECRET=qd-$(random_pw)
qdrant_start --api-key "$QDRANT_SECRET"
qdrant_api PUT /collections/knowledge >/dev/null
qdrant_api PUT /collections/knowledge/points \
	'{"points":[{"id":1,"vector":[0.1,0.2],"payload":{"doc":"runbook"}}]}' >/dev/null
S3_SECRET=s3-$(random_pw)   # s3rver checks the access key, not the signature

# every value to look for, one per line (values never reach a command line)
: >secrets.list
chmod 600 secrets.list
remember() { printf '%s\n' "$1" >>secrets.list; }
remember "$TEST_PG_PASSWORD"
remember "$(env_get app.env DB_PASSWORD)"
remember "$REDIS_PW"
remember "$QDRANT_SECRET"
remember "$S3_SECRET"

# the app's env file: the DB_* of shop_setup, and the rest
cat >>app.env <<EOF
ADMIN_URL=$(pg_db_url postgres)
MINIO_ACCESS_KEY=$S3_ACCESS_KEY
MINIO_SECRET_KEY=$S3_SECRET
REDIS_PASSWORD=$REDIS_PW
QDRANT_API_KEY=$QDRANT_SECRET
EOF
remember "$(env_get app.env JWT_SECRET)"

# two releases of the demo service, reading app.env, with migrations
mkdir -p metrics
release() { # NAME MIGRATION... (N_name: "CREATE TABLE name" and its down file)
	local name=$1 m
	shift
	rm -rf "src-$name"
	mkdir -p "src-$name/migrations/rollback"
	printf '%s\n' "$name" >"src-$name/VERSION"
	printf '{"env_file": "%s", "db": true}\n' "$TEST_SCRATCH/app.env" >"src-$name/behaviour.json"
	for m in "$@"; do
		printf 'CREATE TABLE %s (id int);\n' "${m#*_}" >"src-$name/migrations/$m.sql"
		printf 'DROP TABLE %s;\n' "${m#*_}" >"src-$name/migrations/rollback/$m.down.sql"
	done
	tar -C "src-$name" -czf "$name.tar.gz" .
}
release v1 001_orders
release v2 001_orders 002_invoices

cat >opsctl.conf <<EOF
[app]
name = shop
env_file = app.env

[service]
restart = $DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/app/current
timeout = 20s

[health]
wait = 30s
interval = 100ms
consecutive = 1
; long enough for scripts/valgrind.sh, where a SCRAM login takes seconds
timeout = 15s

[check "api"]
url = $(demo_url /actuator/health)
require = db

[check "db"]
type = postgres

[check "cache"]
type = redis
address = 127.0.0.1:$REDIS_PORT
password_env = REDIS_PASSWORD

[migrations]
dir = src-v1/migrations

[deploy]
root = app
backup = yes
migrate = yes

[backup]
dir = backups
offsite = minio
metrics_file = metrics/backup.prom

[storage "minio"]
type = s3
endpoint = $S3_URL
bucket = $S3_BUCKET
prefix = shop
region = us-east-1
path_style = yes
access_key_env = MINIO_ACCESS_KEY
secret_key_env = MINIO_SECRET_KEY
timeout = 10s

[source "cache"]
type = redis
address = 127.0.0.1:$REDIS_PORT
password_env = REDIS_PASSWORD
stop = $REDIS_STOP
start = $REDIS_START
timeout = 30s

[source "knowledge"]
type = http-snapshot
preset = qdrant
url = $QDRANT_URL
collection = knowledge
api_key_env = QDRANT_API_KEY
timeout = 20s

[secret "jwt"]
env = JWT_SECRET
kind = random
bytes = 32
encoding = base64
previous_env = JWT_SECRET_PREVIOUS

[secret "db"]
env = DB_PASSWORD
kind = postgres-password
role = shop_app
admin_url = \${ADMIN_URL}

[secret "dbalt"]
env = DB_PASSWORD
kind = postgres-password
strategy = alternating
role_a = shop_a
role_b = shop_b
owner = shop_app
admin_url = \${ADMIN_URL}
EOF
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
# a DATABASE_URL with a password that needs percent-encoding (and a wrong one)
URL_PW="u:@%/?#x-$(random_pw)"
remember "$URL_PW"
pg_quiet_sql >/dev/null <<EOF || fail "CREATE ROLE url_user"
CREATE ROLE url_user LOGIN PASSWORD '$URL_PW';
EOF
urlenc() { "$TEST_PYTHON" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))'; }
printf 'DATABASE_URL=postgresql://url_user:%s@127.0.0.1:%s/shop\n' \
	"$(printf '%s' "$URL_PW" | urlenc)" "$TEST_PG_PORT" >url.env
WRONG_PW="wrong-$(random_pw)"
remember "$WRONG_PW"
printf 'DATABASE_URL=postgresql://url_user:%s@127.0.0.1:%s/shop\n' "$WRONG_PW" "$TEST_PG_PORT" >wrong.env
# one libpq cannot parse (its complaint quotes the URL)
printf 'DATABASE_URL=postgresql://url_user:%s@[::1:%s/shop\n' "$WRONG_PW" "$TEST_PG_PORT" >unparsable.env
chmod 600 url.env wrong.env unparsable.env
printf '[app]\nname = shop\n' >url.conf   # the database from --env-file's DATABASE_URL

: >outputs.log   # every stdout and stderr of opsctl, appended
keep() { cat out err >>outputs.log; }
oc() { # ARGS...: opsctl, saying all it says (-vv)
	"$OPSCTL" -vv "$@"
}

secret_watch_start

# ---- health ----------------------------------------------------------------------
expect_exit 0 oc deploy v1.tar.gz   # the first release: backup, 001, restart, gate
keep
expect_exit 0 oc health
keep
expect_exit 0 oc --output json health --metrics-file metrics/health.prom
keep
expect_json out 'd["status"] == "pass"'
expect_exit 0 oc -c url.conf --env-file url.env health --db
keep
expect_exit 1,4 oc -c url.conf --env-file wrong.env health --db
keep
expect_grep 'password authentication failed' out err
expect_exit 1,4 oc -c url.conf --env-file wrong.env --output json health --db
keep
expect_exit 3 oc -c url.conf --env-file unparsable.env health --db
keep
expect_grep 'invalid database URL' err

# ---- migrate ---------------------------------------------------------------------
expect_exit 0 oc migrate status
keep
expect_exit 0 oc --output json migrate
keep

# ---- backup: local, offsite, the sources ------------------------------------------
expect_exit 0 oc backup
keep
expect_exit 0 oc --output json backup
keep
expect_exit 0 oc backup list --remote
keep
expect_exit 0 oc backup verify --remote
keep
expect_exit 0 oc backup verify --restore-test
keep
# a set from the storage only
for latest in backups/shop-*; do :; done   # the newest (names sort by time)
latest=${latest#backups/}
rm -rf "backups/$latest"
expect_exit 0 oc backup verify --remote --deep "$latest"
keep
expect_exit 0 oc restore --target-db shop_remote --no-sources "$latest"
keep
expect_exit 0 oc backup upload
keep

# ---- restore: the swap, with the sources --------------------------------------------
expect_exit 0 oc --yes restore latest
keep
expect_exit 0 oc --output json restore --target-db shop_check --no-sources
keep

# ---- deploy and rollback ---------------------------------------------------------------
expect_exit 0 oc deploy v2.tar.gz    # backup, 002, restart, gate
keep
expect_exit 0 oc --yes rollback --with-schema
keep
expect_exit 0 oc --output json deploy list
keep

# ---- wrong credentials: the errors name no value ---------------------------------------
# (printf is a builtin: the values reach bad.env without an argv)
grep -vE '^(DB_PASSWORD|REDIS_PASSWORD|QDRANT_API_KEY|MINIO_SECRET_KEY)=' app.env >bad.env
BAD_DB=bad-db-$(random_pw) BAD_REDIS=bad-rd-$(random_pw) BAD_QDRANT=bad-qd-$(random_pw)
printf 'DB_PASSWORD=%s\nREDIS_PASSWORD=%s\nQDRANT_API_KEY=%s\nMINIO_SECRET_KEY=%s\n' \
	"$BAD_DB" "$BAD_REDIS" "$BAD_QDRANT" "$S3_SECRET" >>bad.env
chmod 600 bad.env
remember "$BAD_DB"
remember "$BAD_REDIS"
remember "$BAD_QDRANT"
expect_exit 1,4 oc --env-file bad.env health
keep
# the database right, the Redis password wrong, then the Qdrant key
grep -vE '^REDIS_PASSWORD=' app.env >badrd.env
printf 'REDIS_PASSWORD=%s\n' "$BAD_REDIS" >>badrd.env
grep -vE '^QDRANT_API_KEY=' app.env >badqd.env
printf 'QDRANT_API_KEY=%s\n' "$BAD_QDRANT" >>badqd.env
chmod 600 badrd.env badqd.env
expect_exit 1,4 oc --env-file badrd.env backup
keep
expect_grep "source 'cache'" err
expect_exit 1,4 oc --env-file badqd.env --output json backup
keep
expect_grep "source 'knowledge'" err
expect_exit 1,4 oc --env-file bad.env --output json migrate
keep

# ---- plans ------------------------------------------------------------------------------
expect_exit 0 oc --dry-run backup
keep
expect_exit 0 oc --dry-run --output json restore latest
keep
expect_exit 0 oc --dry-run deploy v2.tar.gz
keep
expect_exit 0 oc --dry-run --output json rotate-secret db
keep

# ---- rotate-secret ---------------------------------------------------------------------
expect_exit 0 oc rotate-secret jwt
keep
remember "$(env_get app.env JWT_SECRET)"
expect_exit 0 oc --output json rotate-secret jwt
keep
remember "$(env_get app.env JWT_SECRET)"
expect_exit 0 oc rotate-secret db
keep
remember "$(env_get app.env DB_PASSWORD)"
# killed once the env file holds the new value: the pending file (values by
# design) is private, and gone after the recovery
OPSCTL_TEST_KILL_AT=written expect_exit 137 oc rotate-secret db
keep
expect_mode "$STATE/secrets/db.pending.json" 600
expect_mode "$STATE/secrets" 700
remember "$(env_get app.env DB_PASSWORD)"
expect_exit 0 oc --output json rotate-secret --recover
keep
expect_no_pending
expect_exit 0 oc --output json rotate-secret --setup dbalt
keep
remember "$(env_get app.env DB_PASSWORD)"
expect_exit 0 oc rotate-secret dbalt
keep
remember "$(env_get app.env DB_PASSWORD)"
expect_exit 0 oc rotate-secret --list
keep
expect_login app.env "the last rotated credentials"
# the app still works with what the rotations left: health and a backup
expect_exit 0 oc health
keep
expect_exit 0 oc -q backup
keep

secret_watch_stop

# --db URL puts a password on opsctl's own command line: the operator's
# choice (so after the watch), but the history and the output keep none
expect_exit 0 oc --db "$(pg_db_url shop)" --output json migrate
keep
expect_exit 0 oc --db "$(pg_db_url shop)" -q backup
keep

# ---- the sweep ------------------------------------------------------------------------
expect_no_pending
# the watcher saw the children it had to see, and the server logged statements
expect_grep '^cmdline [0-9]+ pg_dump' "$WATCH_LOG"
expect_grep '^cmdline [0-9]+ pg_restore' "$WATCH_LOG"
expect_grep '^cmdline [0-9]+ .*demo-ctl' "$WATCH_LOG"
expect_grep "ALTER ROLE .*shop_app.* PASSWORD 'SCRAM-SHA-256" pg.log
# libpq's programs get the password through a private passfile, no child
# has a PGPASSWORD (an empty one overrides any of opsctl's environment)
expect_grep '^    PGPASSFILE=/proc/[0-9]+/fd/[0-9]+$' "$WATCH_LOG"
expect_no_grep '^    PGPASSWORD=.' "$WATCH_LOG"
# the Qdrant stand-in's command line holds its key (tests/lib/qdrant-fake.py's
# --api-key, the test's doing): its lines are left out of the sweep
awk -v skip="$QDRANT_PID" '/^[^ ]/ { drop = ($2 == skip) } !drop' "$WATCH_LOG" >watch.log
[ -s watch.log ] || fail "the watcher's log is empty"
sweep=(outputs.log watch.log pg.log "$S3_LOG" "$TEST_SCRATCH"/s3-*.err "$REDIS_DIR/redis.log"
	"$QDRANT_DATA.err" "$DEMO_STATE_DIR/app.log")
# the state directory, the backup sets, the metrics files, the offsite copies
# (s3rver's objects and their metadata)
mapfile -t -O "${#sweep[@]}" sweep < <(find "$STATE" backups metrics "$S3_DIR" -type f)
n=0
while IFS= read -r v; do
	n=$((n + 1))
	expect_secret_absent "$v" "${sweep[@]}"
done <secrets.list
# the access key is no secret to S3 (it names the account in every request's
# Authorization header, which s3rver's log does not hold): not in opsctl's own output
expect_secret_absent "$S3_ACCESS_KEY" outputs.log watch.log "$STATE/history.jsonl" metrics/*
say "$n values looked for in ${#sweep[@]} files"
test_done
