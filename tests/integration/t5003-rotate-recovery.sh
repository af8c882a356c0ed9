#!/usr/bin/env bash
# rotate-secret killed part way (issue 6): OPSCTL_TEST_KILL_AT makes opsctl
# SIGKILL itself after each step; `rotate-secret --recover` then undoes the
# rotation when the env file does not hold the new value yet (pending, set,
# tested: the old password set again, the env file byte for byte as before)
# and completes it when it does (written, restarted, gated: the new password
# in force, the service restarted and gated). No pending file is left and
# the lock is free. A plain `rotate-secret db` after a kill recovers first;
# SIGTERM during the health gate reverts (exit 10).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/secret-lib.sh"
require_opsctl

STATE=$OPSCTL_STATE_DIR
PENDING=$STATE/secrets/db.pending.json
shop_setup shop_app
demo_start app "$DEMO_PORT" rel
demo_release slow v-slow "{\"env_file\": \"$TEST_SCRATCH/app.env\", \"db\": true, \"healthy_after_ms\": 4000}"

{
	shop_config 20s
	cat <<EOF
[secret "db"]
env = DB_PASSWORD
kind = postgres-password
role = shop_app
EOF
} >opsctl.conf
export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf

# killed_at STEP: a rotation that SIGKILLs itself after STEP; leaves before.env
# and killed.env (the env files before the run and after the kill).
killed_at() {
	cp -p app.env before.env
	OPSCTL_TEST_KILL_AT=$1 expect_exit 137 opsctl rotate-secret db
	cp -p app.env killed.env
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ -f "$PENDING" ] || fail "killed after '$1': no $PENDING"
	expect_mode "$PENDING" 600
	expect_mode "$STATE/secrets" 700
	expect_mode app.env 600
}

# opsctl makes its state files private whatever the umask (cron's may be 000)
umask 000

# ---- nothing to recover ------------------------------------------------------------
expect_exit 0 opsctl --output json rotate-secret --recover
expect_json out 'd["recovered"] is None'

# ---- SIGKILL after each step, then --recover -----------------------------------------
for step in pending set tested written restarted gated; do
	case $step in
	pending | set | tested) action=reverted ;;
	*) action=completed ;;
	esac
	killed_at "$step"
	case $step in
	pending) expect_file_same before.env app.env
	         expect_login app.env "killed after pending: the old password" ;;
	set | tested) expect_file_same before.env app.env
	         expect_no_login app.env "killed after $step: the old password (the role has the new one)" ;;
	*) expect_env_rotated before.env app.env DB_PASSWORD
	   expect_login app.env "killed after $step: the new password" ;;
	esac
	expect_exit 0 opsctl --output json rotate-secret --list
	expect_json out '[s["pending"] for s in d["secrets"] if s["name"] == "db"] == [True]'
	expect_exit 0 opsctl rotate-secret --list
	expect_grep '^db .*pending' out

	expect_exit 0 opsctl --output json rotate-secret --recover
	expect_json out 'd["recovered"] is not None and d["recovered"]["secret"] == "db" and d["recovered"]["action"] == "'"$action"'"'
	expect_json out 'd["recovered"]["step"] == "'"$step"'"'
	expect_no_pending
	if [ "$action" = reverted ]; then
		expect_file_same before.env app.env
		expect_login app.env "recovered after $step: the old password"
	else
		expect_file_same killed.env app.env
		expect_login app.env "recovered after $step: the new password"
		expect_no_login before.env "recovered after $step: the old password"
	fi
	expect_demo_healthy
	expect_demo_env app.env DB_PASSWORD
	expect_secret_absent "$(env_get app.env DB_PASSWORD)" out err "$STATE/history.jsonl" "$STATE"/secrets/*
	expect_secret_absent "$(env_get before.env DB_PASSWORD)" out err "$STATE/history.jsonl" "$STATE"/secrets/*
	# the lock is free and the state consistent: a rotation works
	cp -p app.env before.env
	expect_exit 0 opsctl rotate-secret db
	expect_env_rotated before.env app.env DB_PASSWORD
	expect_login app.env "a rotation after recovering from $step"
done

expect_mode "$STATE/history.jsonl" 600
expect_mode "$STATE/secrets/db.json" 600

# ---- a plain rotation after a kill: recover (revert), then rotate --------------------
killed_at set
expect_exit 0 opsctl --output json rotate-secret db
expect_json out 'd["recovered"]["action"] == "reverted" and d["outcome"] == "rotated"'
expect_env_rotated before.env app.env DB_PASSWORD
expect_login app.env "recovered and rotated: the new password"
expect_no_login before.env "recovered and rotated: the old password"
expect_demo_healthy
expect_no_pending

# ---- a plain rotation after a kill past the write: the recovery is the result -------
killed_at written
expect_exit 0 opsctl --output json rotate-secret db
expect_json out 'd["recovered"]["action"] == "completed"'
expect_json out 'd["outcome"] in ("recovered", "rotated")'
expect_file_same killed.env app.env # completed, not rotated once more
expect_login app.env "completed: the new password"
expect_demo_healthy
expect_demo_env app.env DB_PASSWORD
expect_no_pending

# ---- SIGTERM during the health gate: reverted, exit 10 ------------------------------
sed "s|^restart = .*|restart = $DEMO_CTL restart app $DEMO_PORT $TEST_SCRATCH/slow|" opsctl.conf >slow.conf
cp -p app.env before.env
"$OPSCTL" -c "$TEST_SCRATCH/slow.conf" rotate-secret db >out 2>err </dev/null &
rotating=$!
# the slow release answers GET / at once and its health only after 4 s
wait_for 20 bash -c '[ "$(curl -fsS --max-time 1 "$1" 2>/dev/null | grep -o v-slow)" = v-slow ]' _ "$(demo_url /)" ||
	fail "the slow release was not started"
sleep 0.5
kill -TERM "$rotating"
wait "$rotating"
code=$?
TEST_CHECKS=$((TEST_CHECKS + 1))
[ "$code" = 10 ] || { show_file stderr err; fail "SIGTERM during the gate: exit $code, expected 10"; }
expect_no_grep 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' err
expect_grep 'the old value is back in place' err
expect_file_same before.env app.env
expect_login app.env "after SIGTERM: the old password"
expect_no_pending
history_last
expect_json last.json 'd["secret"] == "db" and d["exit"] == 10 and d["outcome"] == "aborted"'
demo_ctl restart app "$DEMO_PORT" rel >/dev/null 2>&1 || fail "demo restart"
expect_demo_healthy
expect_demo_env app.env DB_PASSWORD
cp -p app.env before.env
expect_exit 0 opsctl rotate-secret db # and nothing is left locked
expect_env_rotated before.env app.env DB_PASSWORD

test_done
