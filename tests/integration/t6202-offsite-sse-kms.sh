#!/usr/bin/env bash
# Offsite backups to a bucket with SSE-KMS default encryption: S3 then
# answers with ETags that are not the MD5 of the bytes (its documentation
# says so for SSE-KMS and SSE-C objects) and says
# "x-amz-server-side-encryption: aws:kms". opsctl still sends Content-MD5
# with every PUT and part (S3 checks it), but does not compare those ETags
# with its MD5s: the upload succeeds, parts are not sent twice, a killed
# upload resumes from the MD5s it recorded beside the ETags, and `verify
# --remote --deep` checks the bytes. s3rver has no SSE-KMS, so
# tests/lib/s3rver-run.js --sse-kms rewrites the ETag headers and adds the
# encryption header as S3 does (the bytes stored are s3rver's as ever).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/offsite-lib.sh"
require_opsctl
pg_start
S3_SSE_KMS=1 s3_start backups

offsite_setup kms

# the server does answer as SSE-KMS does
echo probe >probe.txt
expect_exit 0 curl -sS -D headers -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T probe.txt "$S3_URL/$S3_BUCKET/probe.txt"
expect_grep '^x-amz-server-side-encryption: aws:kms' headers
TEST_CHECKS=$((TEST_CHECKS + 1))
grep -qi "^etag: \"$(md5sum probe.txt | cut -d' ' -f1)\"" headers && fail "the probe's ETag is its MD5: no SSE-KMS emulation"

say "backup with offsite: accepted, every part sent once"
mark=$(log_lines)
expect_exit 0 ob backup
id1=$(last_id)
expect_grep "^uploaded $id1 to 'kms'" err
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | grep -c "files.tar.zst?partNumber=.* 200 ")" = 6 ] ||
	fail "expected 6 parts, each once: $(after_mark "$mark" | grep partNumber | tr '\n' ';')"
expect_exit 0 ob backup verify --remote --deep "$id1"
expect_exit 0 ob backup list --remote
expect_grep "^$id1 " out

say "killed mid-upload: resumed from the MD5s recorded beside the ETags"
head -c 30000000 /dev/urandom >data/big.bin
"$OPSCTL" -c opsctl.conf backup --limit-rate 10M >killed.out 2>killed.err </dev/null &
pid=$!
wait_for 40 parts_recorded 2 || { show_file stderr killed.err; fail "no 2 parts recorded within 40 s"; }
kill -KILL "$pid"
wait "$pid" 2>/dev/null
state=$(state_file)
id2=$(basename "$(dirname "$state")")
done_parts=$(state_parts "$state")
expect_json "$state" 'all(len(p["md5"]) == 32 and p["md5"] != p["etag"] for p in d["parts"])'
s3_wait_quiet
mark=$(log_lines)
expect_exit 0 ob backup upload
expect_grep "^uploaded $id2 to 'kms' \(.*, resumed\)$" err
expect_parts_not_resent "$mark" "$done_parts"
after_mark "$mark" | grep -q '^POST .*?uploads=' && fail "the resumed upload started a new multipart upload"
expect_exit 0 ob backup verify --remote --deep "$id2"

test_done
