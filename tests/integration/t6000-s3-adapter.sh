#!/usr/bin/env bash
# The S3 storage adapter (lib/adapters/s3, issue 7) against a real s3rver on
# loopback, driven by the test-only tests/unit/s3tool until `opsctl backup`
# uploads offsite itself: one PUT, a 50 MB multipart upload, a resume after
# SIGKILL that sends no recorded part again (counted in s3rver's request log),
# a wrong access key (exit 4, named), the server stopped mid-upload (retries,
# exit 4, then resumed), a stalled server (deadline), list with continuation
# tokens, get, delete, and a corrupted object (exit 5, nothing written).
# s3rver checks that an access key exists but not the SigV4 signature, so
# signing itself is libcurl's and is not proven here.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"

S3TOOL=
for candidate in "${TEST_BUILDDIR:-}/tests/s3tool" "$TEST_SRCDIR/build-test/tests/s3tool" \
	"$TEST_SRCDIR/build/tests/s3tool"; do
	if [ -x "$candidate" ]; then
		S3TOOL=$candidate
		break
	fi
done
[ -n "$S3TOOL" ] || fail "no s3tool (built with the tests: cmake --build BUILD --target s3tool)"
s3_start backups

cat >s3.conf <<EOF
[storage "test"]
type = s3
endpoint = $S3_URL
bucket = $S3_BUCKET
prefix = ai-chat
path_style = yes
access_key_env = MINIO_ACCESS_KEY
secret_key_env = MINIO_SECRET_KEY
timeout = 3s
EOF
printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >app.env
printf 'MINIO_ACCESS_KEY=NOT-A-KEY\nMINIO_SECRET_KEY=%s\n' "$S3_SECRET_KEY" >wrong.env

s3tool() {
	"$S3TOOL" -c s3.conf -e app.env --attempts 3 --backoff-ms 100 "$@"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
# state_parts FILE: how many parts a resume state file records as done.
state_parts() {
	"$TEST_PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["parts"]))' "$1" 2>/dev/null ||
		echo 0
}
state_has() { [ "$(state_parts "$1")" -ge "$2" ]; }
log_lines() { wc -l <"$S3_LOG"; }
# kill_now PID: SIGKILL, as a crash or the OOM killer would, and reap it quietly.
kill_now() {
	kill -KILL "$1"
	wait "$1" 2>/dev/null
} 2>/dev/null
# after_mark N: the request log from line N+1 on.
after_mark() { tail -n "+$(($1 + 1))" "$S3_LOG"; }

head -c 50000000 /dev/urandom >big.bin
printf 'a small file\n' >small.txt

say "config: keys come from the env file or the environment, never from the config"
expect_exit 0 s3tool settings
expect_json out 'd["region"] == "us-east-1" and d["prefix"] == "ai-chat" and d["credentials_from"] == "'"'app.env'"'"'
{ cat s3.conf; echo 'access_key = S3RVER'; } >literal.conf
expect_exit 3 "$S3TOOL" -c literal.conf -e app.env settings
expect_grep "^s3tool: error: literal.conf:10: 'storage.test.access_key': keys are not kept in the config file; use access_key_env = VARIABLE$" err
expect_exit 3 "$S3TOOL" -c s3.conf settings
expect_grep "MINIO_ACCESS_KEY \(access_key_env\) is not set in the environment" err
expect_exit 0 env MINIO_ACCESS_KEY=S3RVER MINIO_SECRET_KEY=S3RVER "$S3TOOL" -c s3.conf settings
expect_json out 'd["credentials_from"] == "the environment"'

say "one PUT below the part size"
mark=$(log_lines)
expect_exit 0 s3tool put sets/small.txt small.txt small.state
expect_json out 'd["parts"] == 0 and d["size"] == 13 and d["etag"] == "'"$(md5sum small.txt | cut -d' ' -f1)"'"'
expect_file_same small.txt "$(s3_object_file ai-chat/sets/small.txt)"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | grep -c .)" = 1 ] && after_mark "$mark" | grep -q '^PUT /backups/ai-chat/sets/small.txt 200 ' ||
	fail "one PUT expected, the server saw: $(after_mark "$mark" | tr '\n' ';')"
[ ! -e small.state ] || fail "a single PUT left a state file"
expect_exit 0 s3tool head sets/small.txt
expect_json out 'd["object"]["size"] == 13 and d["object"]["key"] == "sets/small.txt"'

say "virtual-host-style URLs: BUCKET.s3.localhost"
sed -e "s|^endpoint = .*|endpoint = $S3_VHOST_URL|" -e 's|^path_style = yes|path_style = no|' s3.conf >vhost.conf
mark=$(log_lines)
expect_exit 0 "$S3TOOL" -c vhost.conf -e app.env put sets/vhost.txt small.txt
expect_exit 0 "$S3TOOL" -c vhost.conf -e app.env get sets/vhost.txt vhost.back
expect_file_same small.txt vhost.back
expect_exit 0 "$S3TOOL" -c vhost.conf -e app.env delete sets/vhost.txt
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | tr '\n' ';')" = "PUT /ai-chat/sets/vhost.txt 200 backups.s3.localhost:$S3_PORT;GET /ai-chat/sets/vhost.txt 200 backups.s3.localhost:$S3_PORT;DELETE /ai-chat/sets/vhost.txt 204 backups.s3.localhost:$S3_PORT;" ] ||
	fail "expected bucket-less paths (the bucket in the host name), saw: $(after_mark "$mark" | tr '\n' ';')"

say "a 50 MB file in 48 parts of 1 MiB, 4 at a time, each one's MD5 checked"
mark=$(log_lines)
expect_exit 0 s3tool --part-size 1M --progress put sets/big.bin big.bin big.state
expect_json out 'd["parts"] == 48 and d["parts_resumed"] == 0 and d["size"] == 50000000 and d["retries"] == 0'
expect_file_same big.bin "$(s3_object_file ai-chat/sets/big.bin)"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | grep -c '^PUT .*partNumber=.* 200 ')" = 48 ] ||
	fail "expected 48 part uploads, saw $(after_mark "$mark" | grep -c '^PUT .*partNumber=')"
[ "$(after_mark "$mark" | grep -c '^POST .*?uploads= 200 ')" = 1 ] || fail "expected one CreateMultipartUpload"
[ "$(after_mark "$mark" | grep -c '^POST .*?uploadId=.* 200 ')" = 1 ] || fail "expected one CompleteMultipartUpload"
[ ! -e big.state ] || fail "the state file outlived the completed upload"
expect_grep '^progress 50000000 50000000$' err

say "get: streamed, SHA-256 on the way, checked against the expected one"
expect_exit 0 s3tool get sets/big.bin big.back "$(sha big.bin)"
expect_json out 'd["sha256"] == "'"$(sha big.bin)"'" and d["size"] == 50000000'
expect_file_same big.bin big.back
expect_exit 44 s3tool get sets/missing.bin missing.back
expect_grep "^s3tool: error: no object 'sets/missing.bin' in storage 'test'$" err
[ ! -e missing.back ] || fail "a missing object left a file"

say "want_sha256: checked in the MD5 pass; a file that is not it is never completed"
mark=$(log_lines)
expect_exit 0 s3tool --part-size 1M put-sha sets/checked.bin big.bin "$(sha big.bin)" checked.state
expect_json out 'd["parts"] == 48 and d["source_damaged"] is False'
expect_file_same big.bin "$(s3_object_file ai-chat/sets/checked.bin)"
cp big.bin rotten.bin
printf 'X' | dd of=rotten.bin bs=1 seek=49000000 conv=notrunc status=none # in the last part
mark=$(log_lines)
expect_exit 5 s3tool --part-size 1M put-sha sets/rotten.bin rotten.bin "$(sha big.bin)" rotten.state
expect_grep "^s3tool: error: 'rotten\.bin' has SHA-256 $(sha rotten.bin), not the expected one$" err
expect_json out 'd["source_damaged"] is True'
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | grep -c '^POST .*?uploadId=')" = 0 ] || fail "a damaged file's upload was completed"
[ ! -e rotten.state ] || fail "a damaged file's upload left a state file to resume"
expect_exit 44 s3tool head sets/rotten.bin
# one PUT: not a byte sent
head -c 1000 big.bin >small-rotten.bin
mark=$(log_lines)
expect_exit 5 s3tool put-sha sets/small-rotten.bin small-rotten.bin "$(sha small.txt)"
TEST_CHECKS=$((TEST_CHECKS + 1))
[ -z "$(after_mark "$mark" | grep '^PUT ')" ] || fail "a damaged small file was sent: $(after_mark "$mark")"
expect_exit 0 s3tool put-sha sets/small-ok.bin small-rotten.bin "$(sha small-rotten.bin)"
expect_exit 0 s3tool delete sets/checked.bin sets/small-ok.bin

say "resume after SIGKILL: the parts the state file records are not sent again"
"$S3TOOL" -c s3.conf -e app.env --part-size 1M --limit-rate 8M put sets/resume.bin big.bin resume.state \
	>killed.out 2>killed.err </dev/null &
pid=$!
wait_for 20 state_has resume.state 6 || fail "no parts recorded within 20 s"
kill_now "$pid"
done_parts=$("$TEST_PYTHON" -c 'import json, sys; print(" ".join(str(p["part"]) for p in json.load(open(sys.argv[1]))["parts"]))' resume.state)
ndone=$(echo "$done_parts" | wc -w)
say "killed with $ndone parts recorded: $done_parts"
[ "$ndone" -lt 48 ] || fail "the upload finished before it was killed"
s3_wait_quiet
mark=$(log_lines)
expect_exit 0 s3tool --part-size 1M put sets/resume.bin big.bin resume.state
expect_json out "d['parts'] == 48 and d['parts_resumed'] == $ndone"
TEST_CHECKS=$((TEST_CHECKS + 1))
sent=$(after_mark "$mark" | grep -c '^PUT .*partNumber=')
[ "$sent" = $((48 - ndone)) ] || fail "expected $((48 - ndone)) parts sent after the restart, saw $sent"
for n in $done_parts; do
	after_mark "$mark" | grep -q "^PUT .*partNumber=$n&" && fail "part $n was recorded but sent again"
done
[ "$(after_mark "$mark" | grep -c '^POST .*?uploads=')" = 0 ] || fail "the resumed run started a new upload"
expect_file_same big.bin "$(s3_object_file ai-chat/sets/resume.bin)"
[ ! -e resume.state ] || fail "the state file outlived the completed upload"

say "a wrong access key: exit 4, the storage and the variables named, not retried"
mark=$(log_lines)
expect_exit 4 "$S3TOOL" -c s3.conf -e wrong.env put sets/small.txt small.txt
expect_grep "^s3tool: error: storage 'test' refused the credentials: InvalidAccessKeyId \(The AWS Access Key Id you provided does not exist in our records.\)$" err
expect_grep "^hint: check MINIO_ACCESS_KEY and MINIO_SECRET_KEY \(access_key_env and secret_key_env of \[storage \"test\"\]\) in 'wrong.env'$" err
expect_faster 5000
expect_no_grep "attempts" err
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | tr '\n' ';')" = "PUT /backups/ai-chat/sets/small.txt 403 127.0.0.1:$S3_PORT;" ] ||
	fail "a 403 is not retried; the server saw: $(after_mark "$mark" | tr '\n' ';')"
expect_exit 4 "$S3TOOL" -c s3.conf -e wrong.env list
expect_grep "refused the credentials: InvalidAccessKeyId" err

say "the server stopped mid-upload: retries, exit 4; started again, the upload resumes"
"$S3TOOL" -c s3.conf -e app.env --attempts 3 --backoff-ms 200 --part-size 1M --limit-rate 8M \
	put sets/stopped.bin big.bin stopped.state >stopped.out 2>stopped.err </dev/null &
pid=$!
wait_for 20 state_has stopped.state 4 || fail "no parts recorded within 20 s"
s3_stop
start=$(now_ms)
wait "$pid"
code=$?
elapsed=$(($(now_ms) - start))
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$code" = 4 ] || { show_file stderr stopped.err; fail "expected exit 4 with the server gone, got $code"; }
[ "$elapsed" -lt 15000 ] || fail "gave up only after $elapsed ms"
expect_grep "^s3tool: error: cannot upload part [0-9]+ of 'sets/stopped.bin' to storage 'test': cannot connect to '$S3_URL': connection refused \(3 attempts\)$" stopped.err
expect_grep "^hint: is the storage server up\?" stopped.err
expect_json stopped.out 'd["retries"] >= 2'
ndone=$(state_parts stopped.state)
s3_resume
expect_exit 0 s3tool --part-size 1M put sets/stopped.bin big.bin stopped.state
expect_json out "d['parts'] == 48 and d['parts_resumed'] == $ndone"
expect_file_same big.bin "$(s3_object_file ai-chat/sets/stopped.bin)"

say "a stalled server: the request fails within its deadline"
kill -STOP "$S3_PID"
expect_exit 4 "$S3TOOL" -c s3.conf -e app.env --attempts 2 --backoff-ms 100 head sets/small.txt
kill -CONT "$S3_PID"
expect_grep "'$S3_URL' did not answer or stalled for 3s \(timeout of \[storage \"test\"\]\) \(2 attempts\)" err
expect_faster 10000
expect_slower 5500
say "a small body sent at once, then no answer: a stall, not a trickle"
head -c 700 big.bin >tiny.bin
kill -STOP "$S3_PID"
expect_exit 4 "$S3TOOL" -c s3.conf -e app.env --attempts 2 --backoff-ms 100 put sets/tiny.bin tiny.bin
kill -CONT "$S3_PID"
expect_grep "'$S3_URL' did not answer or stalled for 3s \(timeout of \[storage \"test\"\]\) \(2 attempts\)" err
# the stopped server stores it once it runs again
wait_for 10 s3tool head sets/tiny.bin || fail "the stopped server never stored the delayed PUT"
expect_exit 0 s3tool delete sets/tiny.bin

say "list: every key below the prefix, across continuation tokens"
expect_exit 0 s3tool list sets/
expect_json out '[o["key"] for o in d["objects"]] == ["sets/big.bin", "sets/resume.bin", "sets/small.txt", "sets/stopped.bin"] and d["objects"][0]["size"] == 50000000'
cp out list.all
mark=$(log_lines)
expect_exit 0 s3tool --page-size 1 list sets/
expect_json out '[o["key"] for o in d["objects"]] == ["sets/big.bin", "sets/resume.bin", "sets/small.txt", "sets/stopped.bin"]'
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(after_mark "$mark" | grep -c '^GET .*continuation-token=.* 200 ')" -ge 3 ] || fail "expected continuation tokens in use"
expect_exit 0 s3tool list sets/b
expect_json out '[o["key"] for o in d["objects"]] == ["sets/big.bin"]'

say "delete: one, several, and one that is gone already"
expect_exit 0 s3tool delete sets/small.txt
expect_exit 44 s3tool head sets/small.txt
expect_exit 0 s3tool delete sets/small.txt
expect_exit 0 s3tool delete sets/resume.bin sets/stopped.bin
expect_exit 0 s3tool list
expect_json out '[o["key"] for o in d["objects"]] == ["sets/big.bin"]'

say "a corrupted object: exit 5, the download not kept"
obj=$(s3_object_file ai-chat/sets/big.bin)
printf 'CORRUPT' | dd of="$obj" bs=1 seek=25000000 conv=notrunc status=none
expect_exit 5 s3tool get sets/big.bin big.corrupt "$(sha big.bin)"
expect_grep "^s3tool: error: checksum mismatch for 'sets/big.bin' in storage 'test': expected SHA-256 $(sha big.bin), got $(sha "$obj")$" err
TEST_CHECKS=$((TEST_CHECKS + 1))
ls big.corrupt* >/dev/null 2>&1 && fail "the corrupted download was left behind: $(ls big.corrupt*)"
expect_exit 5 s3tool get sets/big.bin - "$(sha big.bin)"

say "abandon: the recorded upload is aborted on the server (s3rver cannot: 405) and its state removed"
"$S3TOOL" -c s3.conf -e app.env --part-size 1M --limit-rate 8M put sets/abandoned.bin big.bin abandoned.state \
	>/dev/null 2>&1 </dev/null &
pid=$!
wait_for 20 state_has abandoned.state 2 || fail "no parts recorded within 20 s"
kill_now "$pid"
upload_id=$("$TEST_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["upload_id"])' abandoned.state)
expect_exit 0 s3tool abandon abandoned.state
expect_grep "^DELETE /backups/ai-chat/sets/abandoned.bin\?uploadId=$upload_id (204|405) " "$S3_LOG"
[ ! -e abandoned.state ] || fail "abandon left the state file"
expect_exit 0 s3tool abandon abandoned.state

test_done
