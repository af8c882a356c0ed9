#!/usr/bin/env bash
# rotate-secret with kind = random (issue 6): base64 / base64url / hex of the
# configured length, previous_env keeping the outgoing value, the env file
# rewritten with only the key's assignments changed (CRLF, quotes holding
# # and =, export prefixes, duplicate keys, no trailing newline, a missing key
# appended; mode and owner kept), the demo service restarted and reading the
# new value, --no-restart / restart = no, --dry-run, --output json, --list
# (text and JSON), the history (a fingerprint, never the value), the lock
# (75), usage and config errors, a read-only env file, and a failing restart
# or health gate (exit 1, the old value back in place). No value ever in
# stdout, stderr, the history, the state files or a child's argv/environ.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl

STATE=$OPSCTL_STATE_DIR
port=$(free_port)
demo_release rel v1 "{\"env_file\": \"$TEST_SCRATCH/app.env\"}"

printf '%s\n' \
	'# demo app settings' \
	'export APP_NAME=demo' \
	'JWT_SECRET=jwt-old-value-0123456789abcdef # the signing key' \
	'HEX_KEY="quoted#with=signs and spaces"' \
	"URL_KEY='single=quoted # not a comment'" \
	'SPARE_KEY=spare-value-never-rotated' \
	'DUP_KEY=dup-first-value' \
	'OTHER=x=y' \
	'DUP_KEY="dup-second-value"   # duplicated on purpose' \
	'' \
	'# the end' >app.env
chmod 640 app.env
owner=$(stat -c %u:%g app.env)
if [ "$(id -u)" -eq 0 ]; then
	chown 65534:65534 app.env # an owner that is not the one running opsctl
	owner=65534:65534
fi

cat >opsctl.conf <<EOF
[app]
name = demo
env_file = app.env

[service]
restart = $DEMO_CTL restart app $port $TEST_SCRATCH/rel
timeout = 20s

[health]
wait = 10s
interval = 100ms
consecutive = 1
timeout = 2s

[check "api"]
url = http://127.0.0.1:$port/actuator/health

[secret "jwt"]
env = JWT_SECRET
previous_env = JWT_SECRET_PREVIOUS

[secret "hexkey"]
env = HEX_KEY
encoding = hex
bytes = 20

[secret "urlkey"]
env = URL_KEY
encoding = base64url
bytes = 40
restart = no

[secret "dup"]
env = DUP_KEY
bytes = 16

[secret "missing"]
env = NEW_KEY
bytes = 8
encoding = hex

[secret "spare"]
env = SPARE_KEY
EOF
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
with_conf() { # SED-EXPR ARGS...: opsctl with a variant of opsctl.conf
	local expr=$1
	shift
	sed "$expr" opsctl.conf >variant.conf
	"$OPSCTL" -c "$TEST_SCRATCH/variant.conf" "$@"
}
demo_json() { # FIELD: a field of the demo service's GET / (env.KEY for a fingerprint)
	curl -fsS --max-time 5 "http://127.0.0.1:$port/" |
		"$TEST_PYTHON" -c 'import json, sys
d = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    d = d.get(part) if isinstance(d, dict) else None
print(d)' "$1"
}
# no_leak VALUE...: none of the values in the last command's output, the
# history or the state directory's files
no_leak() {
	local v
	for v in "$@"; do
		expect_secret_absent "$v" out err "$STATE/history.jsonl" "$STATE"/secrets/*
	done
}

demo_start app "$port" rel
old=$(env_get app.env JWT_SECRET)
old_fp=$(env_fp app.env JWT_SECRET)
[ "$(demo_json env.JWT_SECRET)" = "$old_fp" ] || fail "the demo service does not show the env file's JWT_SECRET"
pid_before=$(demo_json pid)

# ---- base64 with previous_env, restarted and health-gated ---------------------
cp -p app.env before.env
secret_watch_start
expect_exit 0 opsctl rotate-secret --reason "monthly rotation" jwt
secret_watch_stop
new=$(env_get app.env JWT_SECRET)
new_fp=$(env_fp app.env JWT_SECRET)
[ "$new_fp" = "$(value_fp "$new")" ] || fail "fingerprint helpers disagree"
expect_grep "^rotated 'jwt': JWT_SECRET $old_fp -> $new_fp \(service restarted, health gate passed\)\$" out
expect_env_rotated before.env app.env JWT_SECRET JWT_SECRET_PREVIOUS
expect_decoded_len app.env JWT_SECRET base64 32
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(env_get app.env JWT_SECRET_PREVIOUS)" = "$old" ] || fail "JWT_SECRET_PREVIOUS is not the old JWT_SECRET"
expect_mode app.env 640 "$owner"
# the service was restarted and read the new value
[ "$(demo_json pid)" != "$pid_before" ] || fail "the demo service was not restarted"
[ "$(demo_json env.JWT_SECRET)" = "$new_fp" ] || fail "the demo service does not have the new JWT_SECRET"
[ "$(demo_json env.JWT_SECRET_PREVIOUS)" = "$old_fp" ] || fail "the demo service does not have the old key as JWT_SECRET_PREVIOUS"
history_last
expect_json last.json 'd["command"] == "rotate-secret" and d["secret"] == "jwt" and d["kind"] == "random" and d["env"] == "JWT_SECRET"'
expect_json last.json 'd["fingerprint"] == "'"$new_fp"'" and d["previous_fingerprint"] == "'"$old_fp"'"'
# (the history's "outcome" is the standard one, the exit code's name)
expect_json last.json 'd["outcome"] == "ok" and d["exit"] == 0 and d["restarted"] is True and d["gate"] == "passed" and d["reason"] == "monthly rotation"'
expect_json last.json 'all(k in d for k in ("strategy", "role", "previous_role", "rotated_at", "duration_ms"))'
expect_mode "$STATE/secrets/jwt.json" 600
expect_json "$STATE/secrets/jwt.json" '"'"$new_fp"'" in str(d)'
expect_grep '"rotated_at"' "$STATE/secrets/jwt.json"
expect_no_pending
no_leak "$old" "$new"
expect_secret_absent "$new" "$WATCH_LOG" "$DEMO_STATE_DIR/app.log"
expect_secret_absent "$old" "$WATCH_LOG"

# ---- hex, --output json, restarted ----------------------------------------------
cp -p app.env before.env
hex_old=$(env_get app.env HEX_KEY)
hex_old_fp=$(env_fp app.env HEX_KEY)
expect_exit 0 opsctl --output json rotate-secret hexkey
hex_new=$(env_get app.env HEX_KEY)
hex_new_fp=$(env_fp app.env HEX_KEY)
expect_env_rotated before.env app.env HEX_KEY
expect_decoded_len app.env HEX_KEY hex 20
expect_grep '^HEX_KEY="[0-9a-f]{40}"$' app.env # the double quotes kept
expect_json out 'all(k in d for k in ("secret", "kind", "strategy", "env", "env_file", "role", "previous_role", "fingerprint", "previous_fingerprint", "rotated_at", "outcome", "restarted", "gate", "steps", "recovered", "dry_run", "plan", "setup", "duration_ms", "error"))'
expect_json out 'd["secret"] == "hexkey" and d["kind"] == "random" and d["env"] == "HEX_KEY" and d["env_file"].endswith("/app.env")'
expect_json out 'd["fingerprint"] == "'"$hex_new_fp"'" and d["previous_fingerprint"] == "'"$hex_old_fp"'"'
expect_json out 'd["outcome"] == "rotated" and d["restarted"] is True and d["gate"] == "passed" and d["recovered"] is None and d["dry_run"] is False'
expect_json out 'd["error"] is None and isinstance(d["duration_ms"], int) and d["rotated_at"].startswith("20")'
expect_json out '"write" in [s["step"] for s in d["steps"]] and all(set(s) >= {"step", "ms", "status"} for s in d["steps"])'
[ "$(demo_json env.HEX_KEY)" = "$hex_new_fp" ] || fail "the demo service does not have the new HEX_KEY"
expect_mode app.env 640 "$owner"
no_leak "$hex_old" "$hex_new"

# ---- base64url, [secret] restart = no: not restarted --------------------------
cp -p app.env before.env
pid_before=$(demo_json pid)
url_old=$(env_get app.env URL_KEY)
expect_exit 0 opsctl --output json rotate-secret urlkey
url_new=$(env_get app.env URL_KEY)
expect_env_rotated before.env app.env URL_KEY
expect_decoded_len app.env URL_KEY base64url 40
expect_grep "^URL_KEY='[A-Za-z0-9_=-]+'\$" app.env # the single quotes kept
expect_json out 'd["outcome"] == "rotated" and d["restarted"] is False'
[ "$(demo_json pid)" = "$pid_before" ] || fail "restart = no restarted the service"
no_leak "$url_old" "$url_new"

# ---- duplicate keys, --no-restart: every assignment changes -----------------------
cp -p app.env before.env
dup_old=$(env_get app.env DUP_KEY)
expect_exit 0 opsctl rotate-secret --no-restart dup
expect_env_rotated before.env app.env DUP_KEY
expect_decoded_len app.env DUP_KEY base64 16
[ "$(grep -c '^DUP_KEY=' app.env)" = 2 ] || fail "DUP_KEY does not appear twice any more"
expect_no_grep 'dup-first-value|dup-second-value' app.env
expect_no_grep 'service restarted' out
[ "$(demo_json pid)" = "$pid_before" ] || fail "--no-restart restarted the service"
no_leak "$dup_old" "$(env_get app.env DUP_KEY)"

# ---- CRLF, export prefixes, quoted values with # and =, duplicates -----------------
printf '%s\r\n' \
	'# CRLF file' \
	'export JWT_SECRET="a#b=c old value"' \
	"JWT_SECRET_PREVIOUS='prev=1 # x'" \
	'PLAIN=value # comment' \
	'export JWT_SECRET=second-assignment-old' \
	'' \
	'TAIL=end' >crlf.env
cp -p crlf.env before.env
crlf_old=$(env_get crlf.env JWT_SECRET)
expect_exit 0 opsctl --env-file crlf.env rotate-secret --no-restart jwt
expect_env_rotated before.env crlf.env JWT_SECRET JWT_SECRET_PREVIOUS
expect_decoded_len crlf.env JWT_SECRET base64 32
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(env_get crlf.env JWT_SECRET_PREVIOUS)" = "$crlf_old" ] || fail "CRLF: JWT_SECRET_PREVIOUS is not the old (last) JWT_SECRET"
[ "$(grep -c $'\r$' crlf.env)" = 7 ] || fail "CRLF: not every line ends in CRLF any more"
no_leak "$crlf_old" "$(env_get crlf.env JWT_SECRET)"

# ---- spaces around =, a multi-line quoted value, tabs, blank lines -----------------
printf '%s\n' \
	'CERT="-----BEGIN-----' \
	'abc\"def' \
	'-----END-----"' \
	'	JWT_SECRET  =  spaced-old-value	# tab before the comment' \
	'' '' \
	"JWT_SECRET_PREVIOUS=\"older \\\"quoted\\\" value\"" \
	'AFTER=1' >multi.env
cp multi.env before.env
expect_exit 0 opsctl --env-file multi.env rotate-secret --no-restart jwt
expect_env_rotated before.env multi.env JWT_SECRET JWT_SECRET_PREVIOUS
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(env_get multi.env JWT_SECRET_PREVIOUS)" = spaced-old-value ] || fail "multi.env: JWT_SECRET_PREVIOUS is not the old value"

# ---- a missing key is appended; files without a final newline ----------------------
printf 'FIRST=1\nLAST=no-newline' >nonl.env
cp nonl.env before.env
expect_exit 0 opsctl --env-file nonl.env rotate-secret --no-restart missing
expect_env_rotated before.env nonl.env NEW_KEY
expect_decoded_len nonl.env NEW_KEY hex 8
expect_grep '^LAST=no-newline$' nonl.env
printf 'FIRST=1\r\nLAST=no-newline' >crlf-nonl.env
cp crlf-nonl.env before.env
expect_exit 0 opsctl --env-file crlf-nonl.env rotate-secret --no-restart missing
expect_env_rotated before.env crlf-nonl.env NEW_KEY
printf '' >empty.env
cp empty.env before.env
expect_exit 0 opsctl --env-file empty.env rotate-secret --no-restart missing
expect_env_rotated before.env empty.env NEW_KEY

# ---- an env file behind a symlink: the file it points to is rewritten -------------
mkdir -p shared
printf 'JWT_SECRET=linked-old-value-0123\n' >shared/real.env
chmod 600 shared/real.env
ln -s shared/real.env link.env
cp -p shared/real.env before.env
expect_exit 0 opsctl --env-file link.env rotate-secret --no-restart jwt
[ -L link.env ] && [ "$(readlink link.env)" = shared/real.env ] || fail "the symlink was replaced"
expect_env_rotated before.env shared/real.env JWT_SECRET JWT_SECRET_PREVIOUS
expect_mode shared/real.env 600

# ---- --show on a terminal prints the new value (and only there) ---------------------
if command -v script >/dev/null 2>&1; then
	printf 'JWT_SECRET=shown-old-value-0123\n' >show.env
	expect_exit 0 script -qefc "$OPSCTL --env-file show.env rotate-secret --show --no-restart jwt" /dev/null
	TEST_CHECKS=$((TEST_CHECKS + 1))
	tr -d '\r' <out | grep -qxF -f <(env_get show.env JWT_SECRET; echo) ||
		{ show_file "the terminal" out; fail "--show on a terminal did not print the new value on a line of its own"; }
	expect_secret_absent "$(env_get show.env JWT_SECRET)" "$STATE/history.jsonl" "$STATE"/secrets/*
else
	say "no script(1): --show on a terminal not tested"
fi

# ---- --dry-run: the plan, nothing changed ------------------------------------------
cp -p app.env before.env
cp "$STATE/secrets/jwt.json" jwt-state.before
rotations() { grep -c '"outcome": *"rotated"' "$STATE/history.jsonl"; }
rotations_before=$(rotations)
pid_before=$(demo_json pid)
expect_exit 0 opsctl --dry-run rotate-secret jwt
expect_grep . out
expect_exit 0 opsctl -n --output json rotate-secret jwt
expect_json out 'd["dry_run"] is True and d["outcome"] == "planned" and len(d["plan"]) >= 2'
expect_file_same before.env app.env
expect_file_same jwt-state.before "$STATE/secrets/jwt.json"
[ "$(demo_json pid)" = "$pid_before" ] || fail "--dry-run restarted the service"
expect_no_pending
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$(rotations)" = "$rotations_before" ] || fail "--dry-run recorded a rotation in the history"

# ---- --list ------------------------------------------------------------------------
jwt_fp=$(env_fp app.env JWT_SECRET)
spare_fp=$(env_fp app.env SPARE_KEY)
expect_exit 0 opsctl rotate-secret --list
expect_grep '^NAME +KIND +ENV +FINGERPRINT +ROTATED +AGE *$' out
expect_grep "^jwt +random +JWT_SECRET +$jwt_fp +20[0-9]{2}-[0-9]{2}-[0-9]{2}T[^ ]+ +[^ ]+ *\$" out
expect_grep "^spare +random +SPARE_KEY +$spare_fp +never +- *\$" out
expect_exit 0 opsctl --output json rotate-secret --list
expect_json out 'sorted(s["name"] for s in d["secrets"]) == ["dup", "hexkey", "jwt", "missing", "spare", "urlkey"]'
expect_json out 'all(set(s) >= {"name", "kind", "env", "fingerprint", "rotated_at", "age_s", "pending"} for s in d["secrets"])'
expect_json out '[s for s in d["secrets"] if s["name"] == "jwt"][0]["fingerprint"] == "'"$jwt_fp"'"'
expect_json out '[(s["kind"], s["env"], s["pending"]) for s in d["secrets"] if s["name"] == "jwt"][0] == ("random", "JWT_SECRET", False)'
expect_json out '0 <= [s for s in d["secrets"] if s["name"] == "jwt"][0]["age_s"] < 600'
expect_json out '[s for s in d["secrets"] if s["name"] == "jwt"][0]["rotated_at"].startswith("20")'
expect_json out '[(s["fingerprint"], s["rotated_at"], s["age_s"]) for s in d["secrets"] if s["name"] == "spare"][0] == ("'"$spare_fp"'", None, None)'
no_leak "$(env_get app.env JWT_SECRET)" "$(env_get app.env SPARE_KEY)"
expect_exit 2 opsctl rotate-secret --list jwt

# ---- usage and configuration errors: nothing changes --------------------------------
cp -p app.env before.env
expect_exit 3 opsctl rotate-secret nope
expect_grep 'no \[secret "nope"\]' err
expect_exit 2 opsctl rotate-secret
expect_exit 2 opsctl rotate-secret --show jwt # stdout is a file, not a terminal
expect_grep 'terminal' err
expect_exit 3 with_conf 's/^encoding = hex$/encoding = base32/' rotate-secret hexkey
expect_grep 'base32' err
expect_exit 3 with_conf 's/^bytes = 20$/bytes = 4/' rotate-secret hexkey
expect_exit 3 with_conf 's/^bytes = 20$/bytes = 2000/' rotate-secret hexkey
expect_exit 3 with_conf 's/^env = SPARE_KEY$/&\nkind = symmetric/' rotate-secret spare
expect_exit 3 with_conf '/^env = SPARE_KEY$/d' rotate-secret spare
expect_exit 3 with_conf '/^env_file = /d' rotate-secret jwt
expect_grep 'env.file' err
expect_file_same before.env app.env
expect_no_pending

# ---- a read-only env file: refused (even for root), nothing changed ----------------
chmod 444 app.env
cp -p app.env before.env
expect_exit 1 opsctl rotate-secret jwt
expect_grep "env file '[^']*app\.env' is read-only" err
expect_file_same before.env app.env
expect_mode app.env 444 "$owner"
expect_no_pending
chmod 640 app.env

# ---- the lock: another run holds it -> 75; --lock-wait queues ------------------------
lock=$STATE/locks/rotate-secret.lock
mkdir -p "$STATE/locks"
flock -o "$lock" sleep 3 &
holder=$!
wait_for 5 bash -c '! flock -n "$1" true' _ "$lock" || fail "flock did not take $lock"
expect_exit 75 opsctl rotate-secret jwt
expect_file_same before.env app.env
expect_faster 2500
wait "$holder"
flock -o "$lock" sleep 1.5 &
holder=$!
wait_for 5 bash -c '! flock -n "$1" true' _ "$lock" || fail "flock did not take $lock"
expect_exit 0 opsctl --lock-wait 20s rotate-secret --no-restart jwt
expect_slower 500
wait "$holder"

# ---- a failing restart: exit 1, the old value back in place -------------------------
# the restart fails once (the app does not come up), the one that puts the
# old value back works
cat >flaky-restart.sh <<EOF
#!/bin/sh
if [ ! -e $TEST_SCRATCH/restart-failed ]; then
	: >$TEST_SCRATCH/restart-failed
	echo "the app did not start" >&2
	exit 1
fi
exec $DEMO_CTL restart app $port $TEST_SCRATCH/rel
EOF
chmod +x flaky-restart.sh
cp -p app.env before.env
jwt_now=$(env_get app.env JWT_SECRET)
pid_before=$(demo_json pid)
expect_exit 1 with_conf "s|^restart = .*|restart = $TEST_SCRATCH/flaky-restart.sh|" rotate-secret jwt
[ "$(demo_json pid)" != "$pid_before" ] || fail "the service was not restarted on the old value"
[ "$(demo_json env.JWT_SECRET)" = "$(env_fp app.env JWT_SECRET)" ] || fail "the service does not run with the old value"
expect_grep 'the old value is back in place' err
expect_file_same before.env app.env
expect_mode app.env 640 "$owner"
expect_no_pending
history_last
expect_json last.json 'd["secret"] == "jwt" and d["outcome"] == "failed" and d["exit"] == 1 and d["error"]'
no_leak "$jwt_now"

# ---- a failing health gate: the service restarted again with the old value --------
dead=$(free_port)
expect_exit 1 with_conf "s|^url = .*|url = http://127.0.0.1:$dead/actuator/health|; s|^wait = .*|wait = 2s|" --output json rotate-secret jwt
expect_json out 'd["gate"] == "failed" and d["outcome"] == "reverted" and d["error"]["message"]'
expect_json out '"the old value is back in place" in str(d["error"])'
expect_file_same before.env app.env
expect_no_pending
[ "$(demo_json env.JWT_SECRET)" = "$(env_fp app.env JWT_SECRET)" ] ||
	fail "after the failed gate the service does not run with the old value (not restarted again?)"
no_leak "$jwt_now"

test_done
