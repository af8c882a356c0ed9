#!/usr/bin/env bash
# A tour of opsctl against a throwaway PostgreSQL and demo HTTP services:
# health checks, migrations, backup and restore (also from S3-compatible
# storage, a Redis in the same set), then a deploy of a good
# release and of a bad one that rolls itself back, then the rotation of the
# service's JWT key and database password. Everything lives in a temporary
# directory that is removed at the end.
# Exits 0 only when every step behaved as shown.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
src=$PWD

bash scripts/deps.sh || exit 1
bash scripts/build.sh || exit 1

export TEST_SRCDIR=$src OPSCTL=$src/build/opsctl TEST_NAME=demo
# The test harness: scratch directory (cwd from here on), pg_start,
# httpd_start/httpd_set, and the EXIT trap that stops everything.
# shellcheck source=tests/lib/test-lib.sh
. "$src/tests/lib/test-lib.sh"

step() { printf '\n==> %s\n' "$*" >&2; }
broken=0
# run WANT CMD...: run a demo command in the open (output shown as is) and
# check its exit code.
run() {
	local want=$1 code a line=""
	shift
	for a in "$@"; do
		case $a in
		'' | *[!A-Za-z0-9_./:=@%+,-]*) line+=" ${a@Q}" ;;
		*) line+=" $a" ;;
		esac
	done
	printf '$%s\n' "$line" | sed "s|$OPSCTL|opsctl|; s|$TEST_SCRATCH|\$DEMO|g" >&2
	"$@"
	code=$?
	if [ "$code" -eq "$want" ]; then
		printf '    (exit %d, as expected)\n' "$code" >&2
	else
		printf '    !! exit %d, expected %d\n' "$code" "$want" >&2
		broken=$((broken + 1))
	fi
}

step "starting a throwaway PostgreSQL cluster"
pg_start || exit 1
say "PostgreSQL $(pg_psql 'SHOW server_version') on 127.0.0.1:$TEST_PG_PORT (data in $TEST_PG_DATA)"

step "starting the demo service (its health answers are scripted)"
httpd_start || exit 1
httpd_set /actuator/health 200 \
	'{"status":"UP","components":{"db":{"status":"UP"},"diskSpace":{"status":"UP"}}}'
say "demo service on $HTTPD_URL"

usage=$(df -P . | awk 'NR == 2 { sub("%", "", $5); print $5 }')
disk_warn=$((usage < 90 ? 95 : 99))
step "writing $TEST_SCRATCH/opsctl.conf"
# The password stays out of the config and off the command line: DATABASE_URL.
export DATABASE_URL=$TEST_PG_URL
cat >opsctl.conf <<EOF
[health]
timeout = 5s

[check "api"]
url = $HTTPD_URL/actuator/health
require = db

[check "db"]
type = postgres

[check "scratch-disk"]
type = disk
path = $TEST_SCRATCH
warn = $disk_warn%
crit = 100%
EOF
sed 's/^/    /' opsctl.conf >&2

step "every check of the config, as a table"
run 0 opsctl -c opsctl.conf health

step "the same as one JSON document (IETF health+json shape)"
run 0 opsctl -c opsctl.conf --output json health
opsctl -c opsctl.conf --output json health | "$TEST_PYTHON" -m json.tool >/dev/null ||
	{ say "!! the JSON output does not parse"; broken=$((broken + 1)); }

step "as a Nagios/Icinga plugin"
run 0 opsctl -c opsctl.conf health --nagios

step "writing a Prometheus textfile for node_exporter"
run 0 opsctl -c opsctl.conf -q health --metrics-file "$TEST_SCRATCH/health.prom"
sed 's/^/    /' "$TEST_SCRATCH/health.prom" >&2

step "an ad hoc URL, no config needed"
run 0 opsctl health "$HTTPD_URL/actuator/health"

step "the database the config resolves (here DATABASE_URL)"
run 0 opsctl -c opsctl.conf health --db

step "a deploy gate: the service turns healthy 2 s from now; --wait keeps probing"
httpd_control path=/actuator/health status=503 'body={"status":"DOWN"}' after_ms=2000 \
	then_status=200 'then_body={"status":"UP","components":{"db":{"status":"UP"}}}'
start=$(now_ms)
run 0 opsctl health --wait 20s --interval 200ms "$HTTPD_URL/actuator/health"
say "healthy after $(($(now_ms) - start)) ms and $(httpd_hits /actuator/health) probes"

step "a failing check: the service reports DOWN, opsctl exits 1"
httpd_set /actuator/health 503 '{"status":"DOWN","components":{"db":{"status":"DOWN"}}}'
run 1 opsctl health "$HTTPD_URL/actuator/health"

step "an unreachable service: exit 4"
run 4 opsctl health --timeout 2s "http://127.0.0.1:$(free_port)/actuator/health"

step "migrations: the seeds' layout, NNN_name.sql and rollback/NNN_name.down.sql"
mkdir -p migrations/rollback
cat >migrations/001_create_users.sql <<'SQL'
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, profile jsonb DEFAULT '{}');
INSERT INTO users (email) VALUES ('ops@example.com');
SQL
echo 'DROP TABLE users;' >migrations/rollback/001_create_users.down.sql
cat >migrations/002_touch_function.sql <<'SQL'
CREATE FUNCTION touch_profile(uid bigint) RETURNS void AS $$
BEGIN
  UPDATE users SET profile = profile || '{"touched": true}' WHERE id = uid; -- a ';' in a function body
END;
$$ LANGUAGE plpgsql;
SQL
echo 'DROP FUNCTION touch_profile(bigint);' >migrations/rollback/002_touch_function.down.sql
cat >migrations/003_index_concurrently.sql <<'SQL'
-- opsctl:no-transaction
CREATE INDEX CONCURRENTLY users_profile_idx ON users USING gin (profile);
SQL
echo 'DROP INDEX users_profile_idx;' >migrations/rollback/003_index_concurrently.down.sql
run 9 opsctl migrate status --exit-code
run 0 opsctl migrate
run 0 opsctl migrate status

step "a migration that fails: nothing of it stays, the error names FILE:LINE"
cat >migrations/004_broken.sql <<'SQL'
ALTER TABLE users ADD COLUMN last_login timestamptz;
UPDATE users SET last_login = now();
SELECT no_such_column FROM users;
SQL
echo 'ALTER TABLE users DROP COLUMN last_login;' >migrations/rollback/004_broken.down.sql
run 1 opsctl migrate
run 0 opsctl migrate validate
sed -i 's/no_such_column/email/' migrations/004_broken.sql
run 0 opsctl migrate

step "an edited migration is refused until repaired"
echo '-- reviewed' >>migrations/001_create_users.sql
run 5 opsctl migrate
run 0 opsctl migrate repair
run 0 opsctl migrate

step "rolling the schema back to 002 (the down files run newest first)"
run 0 opsctl --yes rollback --schema 002
run 0 opsctl --output json migrate status
run 0 opsctl migrate

step "a backup set: the dump (custom format, zstd), the uploads, a manifest written last"
mkdir -p uploads && echo "avatar bytes" >uploads/avatar.png
cat >>opsctl.conf <<EOF

[app]
name = demo
state_dir = $TEST_SCRATCH/state

[backup]
dir = $TEST_SCRATCH/backups
paths = $TEST_SCRATCH/uploads
keep_last = 2
metrics_file = $TEST_SCRATCH/backup.prom
EOF
run 0 opsctl -c opsctl.conf backup
run 0 opsctl -c opsctl.conf backup --format plain
run 0 opsctl -c opsctl.conf backup list
sed 's/^/    /' "$TEST_SCRATCH/backup.prom" >&2

step "the weekly restore drill: restore into a scratch database, compare row counts"
run 0 opsctl -c opsctl.conf backup verify --restore-test

step "a damaged backup is refused before anything is touched"
cp -r "$TEST_SCRATCH/backups" "$TEST_SCRATCH/backups.good"
bad=$(ls "$TEST_SCRATCH/backups" | sort | tail -1)
printf 'X' | dd of="$TEST_SCRATCH/backups/$bad/db.sql.gz" bs=1 seek=100 conv=notrunc status=none
run 5 opsctl -c opsctl.conf backup verify "$bad"
run 5 opsctl -c opsctl.conf --yes restore "$bad"
rm -rf "$TEST_SCRATCH/backups" && mv "$TEST_SCRATCH/backups.good" "$TEST_SCRATCH/backups"

step "restore: into a new database, checked, then swapped in (the old one kept aside)"
pg_psql "DELETE FROM users"
run 0 opsctl -c opsctl.conf --yes restore latest
say "users after the restore: $(pg_psql 'SELECT count(*) FROM users'); databases: $(pg_psql "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'postgres%'")"

step "offsite: the set uploaded to S3-compatible storage (a local s3rver), a Redis in the same set"
# s3rver (from npm, installed by scripts/deps.sh) stands in for MinIO or AWS
# S3; a throwaway redis-server holds the service's sessions. A config of its
# own, so the deploys below keep backing up locally only.
s3_start demo-backups || exit 1
redis_start || exit 1
redis_cli MSET session:alice token-1 session:bob token-2 cart:alice '3 items' >/dev/null
say "s3rver on $S3_URL (bucket demo-backups); redis-server on 127.0.0.1:$REDIS_PORT with $(redis_cli DBSIZE) keys"
# the storage keys live in the env file, never in the config
printf 'S3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >offsite.env
chmod 600 offsite.env
cat >offsite.conf <<EOF
[app]
name = demo
state_dir = $TEST_SCRATCH/state
env_file = $TEST_SCRATCH/offsite.env

[backup]
dir = $TEST_SCRATCH/offsite-backups
keep_last = 2
offsite = s3rver                        ; upload every set to [storage "s3rver"]
metrics_file = $TEST_SCRATCH/offsite.prom

[storage "s3rver"]
type = s3
endpoint = $S3_URL
bucket = demo-backups
prefix = demo
path_style = yes                        ; MinIO and s3rver: ENDPOINT/BUCKET/KEY
access_key_env = S3_ACCESS_KEY          ; names of variables of the env file
secret_key_env = S3_SECRET_KEY

[source "cache"]
type = redis                            ; BGSAVE, then a copy of its RDB file
address = 127.0.0.1:$REDIS_PORT
stop = $REDIS_STOP
start = $REDIS_START
EOF
sed "s|$TEST_SCRATCH|\$DEMO|g; s/^/    /" offsite.conf >&2
say "steps: dump, Redis BGSAVE + RDB copy, manifest, then the upload: every file, the manifest last"
run 0 opsctl -c offsite.conf backup
run 0 opsctl -c offsite.conf backup list --remote
run 0 opsctl -c offsite.conf backup verify --remote --deep
grep offsite "$TEST_SCRATCH/offsite.prom" | sed 's/^/    /' >&2
grep -q '^opsctl_backup_offsite_success{.*} 1$' "$TEST_SCRATCH/offsite.prom" ||
	{ say "!! the metrics file does not say the upload succeeded"; broken=$((broken + 1)); }

step "the machine's copy is lost: restore from the remote, the database beside the live one, Redis in place"
offsite_id=$(ls "$TEST_SCRATCH/offsite-backups")
rm -rf "${TEST_SCRATCH:?}/offsite-backups/${offsite_id:?}"
redis_cli FLUSHALL >/dev/null
say "removed $offsite_id from \$DEMO/offsite-backups; after FLUSHALL Redis holds $(redis_cli DBSIZE) keys"
say "steps: download (each file checked against the manifest), verify, load into demo_from_s3,"
say "then Redis: stop, its RDB swapped for the backup's (the old one kept), start, keys checked"
run 0 opsctl -c offsite.conf restore --target-db demo_from_s3 --sources latest
say "users in demo_from_s3: $(pg_dbsql demo_from_s3 'SELECT count(*) FROM users') (live: $(pg_psql 'SELECT count(*) FROM users'));" \
	"Redis: $(redis_cli DBSIZE) keys, session:alice = $(redis_cli GET session:alice)"
[ "$(pg_dbsql demo_from_s3 'SELECT count(*) FROM users')" = "$(pg_psql 'SELECT count(*) FROM users')" ] &&
	[ "$(redis_cli GET session:alice)" = token-1 ] && [ "$(redis_cli DBSIZE)" = 3 ] &&
	[ -f "$TEST_SCRATCH/offsite-backups/$offsite_id/manifest.json" ] ||
	{ say "!! the data restored from the remote is not what was backed up"; broken=$((broken + 1)); }

step "the storage is down: the local set is made and kept, the upload fails (exit 4) and is sent later"
s3_stop
run 4 opsctl -c offsite.conf backup
run 0 opsctl -c offsite.conf backup list
grep '^opsctl_backup.*success{' "$TEST_SCRATCH/offsite.prom" | sed 's/^/    /' >&2
grep -q '^opsctl_backup_offsite_success{.*} 0$' "$TEST_SCRATCH/offsite.prom" ||
	{ say "!! the metrics file does not say the upload failed"; broken=$((broken + 1)); }
s3_resume || exit 1
say "s3rver is back: 'backup upload' sends what is missing (the next 'opsctl backup' would too)"
run 0 opsctl -c offsite.conf backup upload
run 0 opsctl -c offsite.conf backup list --remote
[ "$(opsctl -c offsite.conf --output json backup list --remote |
	"$TEST_PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')" = 2 ] ||
	{ say "!! expected both sets on the storage"; broken=$((broken + 1)); }

step "deploy: releases of the demo service, switched atomically and health-gated"
# tests/lib/demo-service.py stands in for the app: GET / answers with the
# version of the release it was started from, and /actuator/health as that
# release's behaviour.json says. demo-ctl.sh starts and stops it the way
# systemd would (detached, a pid file): it is opsctl's [service] restart.
# The symlink strategy needs no proxy (no nginx).
demo_setup
app_port=$(free_port)
mkdir -p app/shared/logs && echo "SECRET=kept-across-releases" >app/shared/.env
cat >>opsctl.conf <<EOF

[deploy]
root = $TEST_SCRATCH/app
shared = .env logs
keep_releases = 3
checks = app

[service]
restart = $DEMO_CTL restart app $app_port $TEST_SCRATCH/app/current
timeout = 30s

[health]
wait = 6s
interval = 200ms
consecutive = 2

[check "app"]
url = http://127.0.0.1:$app_port/actuator/health
EOF
sed -n '/^\[deploy\]/,$p' opsctl.conf | sed "s|$TEST_SCRATCH|\$DEMO|g; s/^/    /" >&2
# make_release NAME VERSION BEHAVIOUR: NAME.tar.gz as a CI build makes it: the
# demo service's VERSION and behaviour.json, and the migrations so far.
make_release() {
	rm -rf "build-$1" && mkdir -p "build-$1" &&
		printf '%s\n' "$2" >"build-$1/VERSION" && printf '%s\n' "$3" >"build-$1/behaviour.json" &&
		cp -r migrations "build-$1/" && tar -czf "$1.tar.gz" -C "build-$1" . && rm -rf "build-$1"
}
# serving: the version the demo service answers GET / with, or "nothing".
serving() {
	local v
	v=$(curl -fsS --max-time 5 "http://127.0.0.1:$app_port/" 2>/dev/null |
		"$TEST_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)
	echo "${v:-nothing}"
}
cat >migrations/005_create_orders.sql <<'SQL'
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint REFERENCES users (id), total numeric(10,2) NOT NULL);
SQL
echo 'DROP TABLE orders;' >migrations/rollback/005_create_orders.down.sql
make_release ai-chat-1.0 v1.0 '{"healthy_after_ms": 1500}' || exit 1
say "ai-chat-1.0.tar.gz, a good release: healthy 1.5 s after it starts; it brings migration 005"
say "steps: lock, preflight, backup, unpack, link shared/, migrate, switch, restart, gate, record"
run 0 opsctl -c opsctl.conf deploy --reason release-1.0 ai-chat-1.0.tar.gz
good=$(readlink app/current)
v=$(serving)
say "GET / answers version '$v'; current -> $good; table orders exists: $(pg_psql "SELECT to_regclass('orders') IS NOT NULL")"
[ "$v" = v1.0 ] || {
	say "!! expected v1.0 to serve"
	broken=$((broken + 1))
}

step "deploy: a bad release that never turns healthy rolls itself back (exit 7)"
make_release ai-chat-1.1 v1.1 '{"never_healthy": true}' || exit 1
say "ai-chat-1.1.tar.gz: its /actuator/health answers 503 DOWN for ever; the gate waits 6 s,"
say "then opsctl switches current back to $good, restarts it and gates it again"
run 7 opsctl -c opsctl.conf deploy --reason release-1.1 ai-chat-1.1.tar.gz
v=$(serving)
say "after the automatic rollback GET / answers version '$v'; current -> $(readlink app/current)"
[ "$v" = v1.0 ] && [ "$(readlink app/current)" = "$good" ] || {
	say "!! expected v1.0 ($good) to serve again"
	broken=$((broken + 1))
}

step "the deploy history: outcome, artifact checksum, migrations, backup, duration"
run 0 opsctl -c opsctl.conf deploy list
run 0 opsctl -c opsctl.conf deploy status

step "rotate-secret: the service's JWT key and database password, as the seeds left them"
# Release 1.2 of the demo service reads the shared .env when it starts, as an
# app under systemd's EnvironmentFile= does: GET / then reports a fingerprint
# of each key (never a value), and /actuator/health logs in to PostgreSQL
# with DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD from it. Its database role
# is what the seeds set up: one login role with a default password.
appenv() { "$TEST_PYTHON" "$TEST_LIB_DIR/appenv.py" "$@"; }
# app_env KEY: the fingerprint of KEY in the env file the running service read.
app_env() {
	curl -fsS --max-time 5 "http://127.0.0.1:$app_port/" 2>/dev/null |
		"$TEST_PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("env", {}).get(sys.argv[1], "absent"))' "$1" 2>/dev/null
}
# expect WHAT TEST...: count a broken step unless TEST succeeds.
expect() {
	local what=$1
	shift
	"$@" || {
		say "!! $what"
		broken=$((broken + 1))
	}
}
env_file=$TEST_SCRATCH/app/shared/.env
pg_psql "CREATE ROLE demo_app LOGIN PASSWORD 'change-me'" || exit 1
cat >>"$env_file" <<EOF
# as the seeds ship it
JWT_SECRET=change-me-in-production
DB_HOST=127.0.0.1
DB_PORT=$TEST_PG_PORT
DB_NAME=postgres
DB_USER=demo_app
DB_PASSWORD=change-me
EOF
chmod 600 "$env_file"
cat >>opsctl.conf <<EOF

[app]
env_file = $env_file

[secret "jwt"]
env = JWT_SECRET
kind = random
bytes = 32                              ; openssl rand -base64 32
previous_env = JWT_SECRET_PREVIOUS      ; tokens signed with the old key stay valid

[secret "db"]
env = DB_PASSWORD
kind = postgres-password
strategy = alternating                  ; DB_USER moves between demo_app_a and demo_app_b
owner = demo_app                        ; the role of today: both act as it
role_a = demo_app_a
role_b = demo_app_b
; the admin connection (ALTER ROLE, --setup) is DATABASE_URL: the superuser
EOF
sed -n '/^\[secret "jwt"\]/,$p' opsctl.conf | sed "s|$TEST_SCRATCH|\$DEMO|g; s/^/    /" >&2
make_release ai-chat-1.2 v1.2 "{\"env_file\": \"$env_file\", \"db\": true}" || exit 1
run 0 opsctl -c opsctl.conf deploy --reason "release-1.2: reads .env, checks the database" ai-chat-1.2.tar.gz
say "GET / answers version '$(serving)'; the service started with JWT_SECRET $(app_env JWT_SECRET), DB_USER demo_app"
run 0 opsctl -c opsctl.conf rotate-secret --list

step "rotate-secret jwt: a new key, the old one kept as JWT_SECRET_PREVIOUS, restart, health gate"
say "steps: lock, preflight, pending (0600), write .env atomically, restart, gate, finish"
old_jwt=$(appenv fingerprint "$env_file" JWT_SECRET)
(umask 077 && cp "$env_file" "$TEST_SCRATCH/env.before")
run 0 opsctl -c opsctl.conf rotate-secret --reason "replace the default key of the seeds" jwt
new_jwt=$(appenv fingerprint "$env_file" JWT_SECRET)
say "the env file: JWT_SECRET $old_jwt -> $new_jwt, JWT_SECRET_PREVIOUS $(appenv fingerprint "$env_file" JWT_SECRET_PREVIOUS)"
say "the restarted service runs with JWT_SECRET $(app_env JWT_SECRET), JWT_SECRET_PREVIOUS $(app_env JWT_SECRET_PREVIOUS)"
expect "expected a new JWT_SECRET, served by the restarted service, and the old one as JWT_SECRET_PREVIOUS" \
	test "$new_jwt" != "$old_jwt" -a "$(app_env JWT_SECRET)" = "$new_jwt" -a "$(app_env JWT_SECRET_PREVIOUS)" = "$old_jwt"
expect "more than the two keys changed in the env file" \
	appenv expect-rotated "$TEST_SCRATCH/env.before" "$env_file" JWT_SECRET JWT_SECRET_PREVIOUS
rm -f "$TEST_SCRATCH/env.before"

step "rotate-secret db --setup: two login roles that act as demo_app, then a new password"
say "--setup runs (as the superuser): CREATE ROLE demo_app_a LOGIN IN ROLE demo_app, the same for"
say "demo_app_b, ALTER ROLE ... SET role = demo_app (what they create belongs to demo_app)"
say "then the rotation: ALTER ROLE demo_app_a PASSWORD '<SCRAM verifier computed here>', a test"
say "login, DB_USER=demo_app_a and DB_PASSWORD written together, restart, gate (a fresh login)"
run 0 opsctl -c opsctl.conf rotate-secret --setup --reason "leave the default password" db
say "roles: $(pg_psql "SELECT string_agg(rolname || CASE WHEN rolcanlogin THEN '' ELSE ' (no login)' END, ', ' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'demo_app%'")"
say "DB_USER is now '$(appenv get "$env_file" DB_USER)', DB_PASSWORD $(appenv fingerprint "$env_file" DB_PASSWORD)"
expect "expected DB_USER=demo_app_a and a service that logs in with it" \
	test "$(appenv get "$env_file" DB_USER)" = demo_app_a
run 0 opsctl -c opsctl.conf health app
say "a session of demo_app_a: $(PGPASSWORD=$(appenv get "$env_file" DB_PASSWORD) "$TEST_PG_BINDIR/psql" -X -q -A -t \
	-h 127.0.0.1 -p "$TEST_PG_PORT" -U demo_app_a -d postgres -c "SELECT session_user || ' acting as ' || current_user")"

step "rotate-secret db again: demo_app_b gets a new password; demo_app_a keeps working until the next one"
# the env file as it was, to show that its credentials still log in afterwards
(umask 077 && cp "$env_file" "$TEST_SCRATCH/env.before")
run 0 opsctl -c opsctl.conf rotate-secret db
say "DB_USER is now '$(appenv get "$env_file" DB_USER)'"
expect "expected DB_USER=demo_app_b" test "$(appenv get "$env_file" DB_USER)" = demo_app_b
if appenv login "$TEST_SCRATCH/env.before"; then
	say "the previous credentials (demo_app_a) still log in: connections the app held never failed"
else
	say "!! the previous credentials (demo_app_a) no longer log in"
	broken=$((broken + 1))
fi
rm -f "$TEST_SCRATCH/env.before"

step "a rotation whose health gate fails puts the old value back (exit 1)"
say "PostgreSQL stops, so the restarted service never turns healthy: opsctl writes the"
say "old .env back byte for byte and restarts the service on it"
(umask 077 && cp "$env_file" "$TEST_SCRATCH/env.before")
pg_stop
run 1 opsctl -c opsctl.conf rotate-secret jwt
pg_resume
expect "the env file is not what it was before the failed rotation" cmp -s "$env_file" "$TEST_SCRATCH/env.before"
rm -f "$TEST_SCRATCH/env.before"
say "the env file is as it was; the service runs with JWT_SECRET $(app_env JWT_SECRET) again"
expect "the service does not run with the old JWT_SECRET" test "$(app_env JWT_SECRET)" = "$new_jwt"
say "PostgreSQL is back: the service turns healthy on the old values"
run 0 opsctl -c opsctl.conf health --wait 10s app

step "rotate-secret --list: fingerprints and ages; no value in the output, the history or the state"
run 0 opsctl -c opsctl.conf rotate-secret --list
leaked=0
for key in JWT_SECRET JWT_SECRET_PREVIOUS DB_PASSWORD; do
	value=$(appenv get "$env_file" "$key")
	[ -n "$value" ] && grep -rqF -- "$value" "$TEST_SCRATCH/state" && leaked=1
done
unset value
expect "a secret value is in $TEST_SCRATCH/state" test "$leaked" = 0
run 0 opsctl -c opsctl.conf --output json rotate-secret --list

step "stopping everything"
if [ "$broken" -gt 0 ]; then
	say "demo: $broken step(s) did not behave as expected"
	exit 1
fi
say "demo: every step behaved as expected"
exit 0
