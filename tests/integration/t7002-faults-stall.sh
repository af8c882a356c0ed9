#!/usr/bin/env bash
# Resource faults (issue 8): a peer that accepts and never answers, or that
# answers and then stalls mid-body (tests/lib/stall.py). Each command ends
# within its deadline with the documented exit code and a message naming what
# stalled, and nothing is lost:
#   health URL            silent / body stalled   exit 4 in ~timeout
#   health --wait         silent                  exit 4 in ~wait
#   health --db / check   PostgreSQL that stalls  exit 4 in ~timeout
#   migrate, migrate status   PostgreSQL that stalls  exit 4 in ~connect_timeout
#   backup [source]       Redis / HTTP snapshot that stalls   exit 1 (a failed source fails the set,
#                                                   opsctl-backup(1)) within its deadline, no set left,
#                                                   the older one intact; the next backup works
# (The deploy gate against a service that stalls is t7003, an S3 endpoint that stalls t7004.)
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/fault-lib.sh"
require_opsctl

# ---- health against an HTTP service that stalls ------------------------------------------
stall_start silent
silent_url=$STALL_URL
silent_log=$STALL_LOG
say "health: a service that accepts and never answers"
expect_exit 4 opsctl health --timeout 2s "$silent_url/actuator/health"
expect_between 1900 4000 "health --timeout 2s against a silent service"
expect_grep "no answer within 2000ms" out err
[ "$(stall_count conn)" -ge 1 ] || fail "the health check never connected to the stall server"
expect_exit 4 opsctl --output json health --timeout 1s "$silent_url/h"
expect_between 900 3000 "health --timeout 1s (json)"
expect_json out 'd["status"] == "fail"'
say "health --nagios: CRITICAL (2) within the timeout"
expect_exit 2 opsctl health --nagios --timeout 1s "$silent_url/h"
expect_between 900 3000 "health --nagios"
say "health --wait: the deadline of the wait, not one probe per stall"
expect_exit 4 opsctl health --wait 3s --timeout 10s "$silent_url/h"
expect_between 2900 5500 "health --wait 3s --timeout 10s against a silent service"

stall_start headers
say "health: a service that answers 200 and stalls in the middle of the body"
expect_exit 4 opsctl health --timeout 2s "$STALL_URL/actuator/health"
expect_between 1900 4000 "health against a stalled body"
expect_grep "no answer within 2000ms" out err
[ "$(stall_count stall)" -ge 1 ] || fail "the stall server never sent the headers"

# ---- PostgreSQL that accepts and never answers -------------------------------------------
stall_start silent
pgstall=$STALL_PORT
pgstall_url="postgresql://postgres:pw@127.0.0.1:$pgstall/shop"
say "health --db against a PostgreSQL that never answers"
expect_exit 4 env DATABASE_URL="$pgstall_url" "$OPSCTL" health --db --timeout 2s
expect_between 1900 4000 "health --db --timeout 2s"
expect_grep "127\.0\.0\.1:$pgstall" out err
expect_no_grep ':pw@' out err
say "migrate against a PostgreSQL that never answers: connect_timeout"
mkdir migrations
printf 'CREATE TABLE t (id int);\n' >migrations/001_t.sql
cat >pgstall.conf <<CONF
[database]
url = $pgstall_url
connect_timeout = 2s
[migrations]
dir = migrations
CONF
expect_exit 4 opsctl -c pgstall.conf migrate
expect_between 1900 4000 "migrate with connect_timeout = 2s"
expect_grep "^opsctl: error: cannot connect to '.*127\.0\.0\.1:$pgstall.*': no answer within 2000ms" err
expect_no_grep ':pw@' out err
expect_exit 4 opsctl -c pgstall.conf migrate status --exit-code
expect_between 1900 4000 "migrate status with connect_timeout = 2s"
# no connect_timeout: libpq's own default would be forever; opsctl's is 10s
expect_exit 4 env DATABASE_URL="$pgstall_url" "$OPSCTL" migrate status
expect_between 9900 13000 "migrate status with the default connect timeout (10s)"
expect_grep "no answer within 10000ms" err

# ---- sources that stall: a Redis and an HTTP snapshot service ----------------------------------
pg_start
pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
pg_dbsql shop "CREATE TABLE items (id serial PRIMARY KEY, name text);
	INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 2000) g;" >/dev/null || fail "seeding shop"
cat >plain.conf <<CONF
[app]
name = shop
[database]
url = $(pg_db_url shop)
[backup]
dir = backups
keep_last = 10
CONF
og() { "$OPSCTL" -c "$TEST_SCRATCH/plain.conf" "$@"; }
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
expect_exit 0 og backup
first=$(last_id)
say "a [source] Redis that accepts and never answers: the set fails within connect_timeout"
stall_start silent
before_sets=$(backup_sets)
cat >redis.conf <<CONF
[app]
name = shop
[database]
url = $(pg_db_url shop)
[backup]
dir = backups
keep_last = 10
[source "cache"]
type = redis
address = 127.0.0.1:$STALL_PORT
connect_timeout = 2s
timeout = 20s
CONF
# exit 1: a [source] that fails fails the set, its server unreachable too (opsctl-backup(1))
expect_exit 1 "$OPSCTL" -c "$TEST_SCRATCH/redis.conf" backup
expect_between 1900 6000 "backup with a stalled Redis source"
expect_grep "^opsctl: error: source 'cache' \(redis 127\.0\.0\.1:$STALL_PORT\): [A-Z]+ failed: no answer within 2000ms" err
expect_sets_kept "$before_sets" "a failed set"

say "an HTTP snapshot source (qdrant preset) that never answers"
cat >snap.conf <<CONF
[app]
name = shop
[database]
url = $(pg_db_url shop)
[backup]
dir = backups
keep_last = 10
[source "knowledge"]
type = http-snapshot
preset = qdrant
url = $STALL_URL
collection = knowledge
connect_timeout = 2s
timeout = 4s
CONF
expect_exit 1 "$OPSCTL" -c "$TEST_SCRATCH/snap.conf" backup
expect_between 3900 7000 "backup with a stalled HTTP snapshot source"
expect_grep "^opsctl: error: source 'knowledge' \(qdrant $STALL_URL collection 'knowledge'\): creating the snapshot failed: POST $STALL_URL/collections/knowledge/snapshots: no answer within 4000ms" err
expect_sets_kept "$before_sets" "a failed set"
expect_exit 0 og backup verify "$first"
say "with the stalled sources gone, the next backup works"
expect_exit 0 og backup
expect_exit 0 og backup verify "$(last_id)"

test_done
