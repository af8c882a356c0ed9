#!/usr/bin/env bash
# offsite: uploading a backup set to S3-compatible storage (issue 7): `opsctl
# backup upload ID` (multipart, Content-MD5 on every part, ETags checked, the
# resume state written after every part, the set's SHA-256 checked in the
# same read, the manifest last) vs `curl -T` of the same file in one PUT
# (SigV4 signed by curl, no checksum, no resume), both against the same
# server on loopback, alternating, in the same run.
#
#   bench/offsite.sh [ROUNDS]     ROUNDS alternating rounds, median (default 3)
#
# Environment (besides lib.sh's):
#   BENCH_OFFSITE_MB=1024   size of the set's one big file (random bytes, so no
#                           compression anywhere changes the amount sent)
#   BENCH_OFFSITE_SERVER=s3rver   the storage: s3rver (the tests' server, npm)
#                           or rgw (Ceph's RADOS Gateway from Debian's
#                           packages, started by bench/rgw.sh: a real S3
#                           implementation whose CompleteMultipartUpload does
#                           not copy the parts, as S3's and MinIO's do not,
#                           where s3rver reads and writes every byte again)
#
# The set is synthetic: DIR/ID/files.tar (random bytes) and a manifest.json
# listing it with its SHA-256, i.e. exactly what `opsctl backup` leaves for
# a paths archive with compression = none. No database is involved.
#
# Lines: `case opsctl peer ratio` (ratio = peer / opsctl; above 1: opsctl faster):
#   upload-NMB[-rgw]/curl-T          median wall s   goal: ratio >= 1.0 (no slower)
#   upload-NMB[-rgw]/curl-multipart  the same file sent by one curl process as
#                              a multipart upload by hand (initiate, 8 MiB parts
#                              one after the other on one connection, complete;
#                              no checksums, no resume): what the storage itself
#                              takes for the multipart protocol opsctl must use
#                              for a large file
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_NAME=offsite
ROUNDS=${1:-3}
MB=${BENCH_OFFSITE_MB:-1024}
bench_find_opsctl

SERVER=${BENCH_OFFSITE_SERVER:-s3rver}
work=$BENCH_TMP/offsite
mkdir -p "$work/backups"
command -v curl >/dev/null || bench_die "no curl"
case $SERVER in
s3rver)
	module=$BENCH_REPO/.cache/npm/node_modules/s3rver
	[ -f "$module/package.json" ] || bash "$BENCH_REPO/scripts/deps.sh" >&2 ||
		bench_die "no s3rver in $BENCH_REPO/.cache/npm (scripts/deps.sh installs it)"
	command -v node >/dev/null || bench_die "no node"
	s3dir=$work/s3
	mkdir -p "$s3dir"
	# the s3rver of the tests, on a free port, gone with this script
	node --openssl-legacy-provider "$BENCH_REPO/tests/lib/s3rver-run.js" --module "$module" --dir "$s3dir" \
		--bucket bench --port-file "$work/port" --log "$work/s3.log" --parent-pid $$ --max-seconds 7200 \
		</dev/null >/dev/null 2>"$work/s3.err" &
	BENCH_PIDS+=($!)
	for _ in $(seq 1 300); do
		[ -s "$work/port" ] && break
		sleep 0.1
	done
	[ -s "$work/port" ] || bench_die "s3rver did not start: $(cat "$work/s3.err")"
	AK=S3RVER
	SK=S3RVER
	label=
	;;
rgw)
	[ "$(id -u)" = 0 ] || bench_die "rgw: bench/rgw.sh installs Debian packages and needs root"
	rgwdir=$work/rgw
	bash "$BENCH_DIR/rgw.sh" "$rgwdir" >&2 || bench_die "the RADOS Gateway did not start (logs in $rgwdir/log)"
	rgw_down() { bash "$BENCH_DIR/rgw.sh" --down "$rgwdir" >&2 || true; }
	trap 'rgw_down; bench_cleanup' EXIT
	cp "$rgwdir/port" "$work/port"
	AK=$(cat "$rgwdir/access_key")
	SK=$(cat "$rgwdir/secret_key")
	label=-rgw
	;;
*) bench_die "BENCH_OFFSITE_SERVER: s3rver or rgw, not '$SERVER'" ;;
esac
port=$(cat "$work/port")
url="http://127.0.0.1:$port"
# curl as an S3 client: SigV4, and the payload hash header curl 7.88 does not
# send by itself (RGW refuses the signature without it; s3rver ignores it)
s3curl() {
	curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" "$@"
}

# the set: one big incompressible file and its manifest
id=bench-20261122T000000Z
set_dir=$work/backups/$id
mkdir -p "$set_dir"
bench_say "writing ${MB} MB of random bytes"
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$set_dir/files.tar"
sum=$(sha256sum "$set_dir/files.tar" | cut -d' ' -f1)
size=$(stat -c %s "$set_dir/files.tar")
cat >"$set_dir/manifest.json" <<EOF
{"manifest_version": 1, "id": "$id", "app": "bench", "tool": "opsctl bench", "database": "bench",
 "server_version": "15", "format": "custom", "compression": "none",
 "started_at": "2026-11-22T00:00:00Z", "finished_at": "2026-11-22T00:00:01Z",
 "duration_ms": 1000, "dump_bytes": $size, "size_bytes": $size,
 "files": [{"name": "files.tar", "role": "paths", "size": $size, "sha256": "$sum"}],
 "tables": [], "paths": ["/srv/bench"]}
EOF
cat >"$work/.env" <<EOF
BENCH_AK=$AK
BENCH_SK=$SK
EOF
cat >"$work/opsctl.conf" <<EOF
[app]
name = bench
env_file = .env
state_dir = state
[backup]
dir = backups
offsite = bench
[storage "bench"]
type = s3
endpoint = $url
bucket = bench
path_style = yes
access_key_env = BENCH_AK
secret_key_env = BENCH_SK
EOF

clean_remote() {
	# what the last upload left on the storage, so each round starts empty
	if [ "$SERVER" = s3rver ]; then
		find "$s3dir/bench" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
	else
		local k
		for k in files.tar manifest.json; do
			s3curl -o /dev/null -X DELETE -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$url/bench/$id/$k" 2>/dev/null || true
		done
		radosgw-admin -c "$rgwdir/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
	fi
	rm -f "$set_dir/offsite.json"
	rm -rf "$work/state/offsite"
	sync
}

t_opsctl=()
t_curl=()
t_mp=()
empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
# curl_multipart FILE KEY: initiate, the parts in turn over one connection
# (one curl process, -K), complete
curl_multipart() {
	local key=$2 uid n=0 f
	uid=$(s3curl -X POST -H "x-amz-content-sha256: $empty_sha" "$url/bench/$key?uploads=" |
		sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
	[ -n "$uid" ] || return 1
	: >"$work/parts.cfg"
	for f in "$work"/parts/part.*; do
		n=$((n + 1))
		printf 'upload-file = "%s"\nurl = "%s"\noutput = "/dev/null"\n' "$f" \
			"$url/bench/$key?partNumber=$n&uploadId=$uid" >>"$work/parts.cfg"
	done
	s3curl -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -D "$work/parts.headers" -K "$work/parts.cfg" || return 1
	n=0
	{
		printf '<CompleteMultipartUpload>'
		tr -d '\r' <"$work/parts.headers" | sed -n 's/^[Ee][Tt][Aa][Gg]: //p' | while read -r et; do
			n=$((n + 1))
			printf '<Part><PartNumber>%s</PartNumber><ETag>%s</ETag></Part>' "$n" "$et"
		done
		printf '</CompleteMultipartUpload>'
	} >"$work/complete.xml"
	s3curl -o /dev/null -X POST -H "x-amz-content-sha256: $(sha256sum "$work/complete.xml" | cut -d' ' -f1)" \
		--data-binary @"$work/complete.xml" "$url/bench/$key?uploadId=$uid"
}
# the parts, cut once (not timed)
mkdir -p "$work/parts"
split -b 8388608 -d -a 4 "$set_dir/files.tar" "$work/parts/part."
for round in $(seq 1 "$ROUNDS"); do
	clean_remote
	t0=$EPOCHREALTIME
	(cd "$work" && "$OPSCTL_BIN" -q -c opsctl.conf backup upload "$id") || bench_die "opsctl backup upload failed"
	t1=$EPOCHREALTIME
	t_opsctl+=("$(echo "$t1 - $t0" | bc -l)")
	clean_remote
	t0=$EPOCHREALTIME
	s3curl -o /dev/null -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$set_dir/files.tar" \
		"$url/bench/$id/files.tar" || bench_die "curl -T failed"
	t1=$EPOCHREALTIME
	t_curl+=("$(echo "$t1 - $t0" | bc -l)")
	clean_remote
	t0=$EPOCHREALTIME
	curl_multipart "$set_dir/files.tar" "$id/files.tar" || bench_die "curl multipart failed"
	t1=$EPOCHREALTIME
	t_mp+=("$(echo "$t1 - $t0" | bc -l)")
	bench_say "round $round: opsctl ${t_opsctl[-1]} s, curl -T ${t_curl[-1]} s, curl multipart ${t_mp[-1]} s"
done
clean_remote

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mo=$(median "${t_opsctl[@]}")
mc=$(median "${t_curl[@]}")
mm=$(median "${t_mp[@]}")
echo "# offsite: ${MB} MB set to $SERVER on loopback, $ROUNDS alternating rounds, median wall s"
echo "# goal: opsctl backup upload (multipart, checksums, resume state) no slower than one curl -T PUT"
printf 'upload-%sMB%s/curl-T %.2f %.2f %.2f\n' "$MB" "$label" "$mo" "$mc" "$(echo "$mc / $mo" | bc -l)"
printf 'upload-%sMB%s/curl-multipart %.2f %.2f %.2f\n' "$MB" "$label" "$mo" "$mm" "$(echo "$mm / $mo" | bc -l)"
