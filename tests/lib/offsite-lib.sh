# shellcheck shell=bash
# Shared setup of the small offsite tests (t6202, t6203), sourced after
# test-lib.sh with PostgreSQL and s3rver started: a database "shop" with a
# table, a 30 MB incompressible file under data/ (files.tar.zst of 6 parts of
# 5 MiB), app.env with s3rver's keys, and opsctl.conf with [backup] offsite
# to the [storage "NAME"] of offsite_setup's argument; helpers to read
# s3rver's request log and the upload state of a run in flight.

# offsite_setup STORAGE-NAME
offsite_setup() {
	pg_psql "CREATE DATABASE shop" >/dev/null || fail "CREATE DATABASE shop"
	pg_dbsql shop "CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g;" >/dev/null ||
		fail "seeding shop"
	mkdir -p data
	head -c 30000000 /dev/urandom >data/big.bin
	printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
	cat >opsctl.conf <<-CONF
	[app]
	name = shop
	env_file = app.env

	[database]
	url = $(pg_db_url shop)

	[backup]
	dir = backups
	paths = $TEST_SCRATCH/data
	offsite = $1

	[storage "$1"]
	type = s3
	endpoint = $S3_URL
	bucket = $S3_BUCKET
	path_style = yes
	access_key_env = MINIO_ACCESS_KEY
	secret_key_env = MINIO_SECRET_KEY
	part_size = 5M
	concurrency = 2
	CONF
}
ob() { "$OPSCTL" -c opsctl.conf "$@"; }
last_id() { sed -n 's/^\(shop-[^ ]*\)  .*/\1/p' out; }
log_lines() { wc -l <"$S3_LOG"; }
after_mark() { tail -n "+$(($1 + 1))" "$S3_LOG"; }
# the upload state of files.tar.zst of a run in flight, and its parts
state_file() { find "$OPSCTL_STATE_DIR/offsite" -name files.tar.zst.upload.json 2>/dev/null | head -n 1; }
state_parts() { # FILE: the part numbers recorded, space-separated
	"$TEST_PYTHON" -c 'import json, sys; print(" ".join(str(p["part"]) for p in json.load(open(sys.argv[1]))["parts"]))' "$1"
}
parts_recorded() { # N: the upload in flight has recorded at least N parts
	local f
	f=$(state_file)
	[ -n "$f" ] && [ "$(state_parts "$f" 2>/dev/null | wc -w)" -ge "$1" ]
}
expect_parts_not_resent() { # MARK PARTS: none of PARTS of files.tar.zst sent after log line MARK
	local n
	for n in $2; do
		after_mark "$1" | grep -q "files.tar.zst?partNumber=$n&" && fail "part $n was recorded but sent again"
	done
	TEST_CHECKS=$((TEST_CHECKS + 1))
}
