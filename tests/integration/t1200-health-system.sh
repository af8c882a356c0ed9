#!/usr/bin/env bash
# health's tcp, redis, disk and memory checks.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl
httpd_start
closed=$(free_port)

# ---- tcp
expect_exit 0 opsctl health "tcp://127.0.0.1:$HTTPD_PORT"
expect_grep ' tcp +pass( |$)' out
expect_exit 4 opsctl health --timeout 2s "tcp://127.0.0.1:$closed"
expect_grep ' tcp +unreachable( |$)' out
cat >opsctl.conf <<CONF
[check "web-port"]
type = tcp
address = 127.0.0.1:$HTTPD_PORT

[check "gone-port"]
type = tcp
address = 127.0.0.1:$closed
timeout = 2s
CONF
expect_exit 0 opsctl health web-port
expect_grep '^web-port +tcp +pass( |$)' out
expect_exit 4 opsctl health gone-port
expect_exit 2,3 opsctl health "tcp://127.0.0.1"

# ---- redis: a fake server that speaks just enough RESP.
cat >fake-redis.py <<'PY'
import os, socket, sys, threading, time
password = sys.argv[2] if len(sys.argv) > 2 else ""
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write("%d\n" % srv.getsockname()[1])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
parent = os.getppid()
def watchdog():
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
def commands(f):
    while True:
        line = f.readline()
        if not line:
            return
        if line.startswith(b"*"):
            args = []
            for _ in range(int(line[1:])):
                f.readline()
                args.append(f.readline().rstrip(b"\r\n"))
            yield [a.decode() for a in args]
        else:
            yield line.decode().split()
def serve(conn):
    authed = not password
    with conn, conn.makefile("rb") as f:
        for args in commands(f):
            cmd = args[0].upper() if args else ""
            if cmd == "AUTH":
                authed = args[-1] == password
                conn.sendall(b"+OK\r\n" if authed else b"-WRONGPASS invalid username-password pair\r\n")
            elif not authed:
                conn.sendall(b"-NOAUTH Authentication required.\r\n")
            elif cmd == "PING":
                conn.sendall(b"+PONG\r\n")
            else:
                conn.sendall(b"-ERR unknown command\r\n")
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
"$TEST_PYTHON" fake-redis.py redis.port </dev/null >/dev/null 2>&1 &
redis_pid=$!
"$TEST_PYTHON" fake-redis.py redis-auth.port s3cret-redis </dev/null >/dev/null 2>&1 &
redis_auth_pid=$!
wait_for 20 test -s redis.port && wait_for 20 test -s redis-auth.port || fail "fake redis did not start"
redis_port=$(cat redis.port)
redis_auth_port=$(cat redis-auth.port)

expect_exit 0 opsctl health "redis://127.0.0.1:$redis_port"
expect_grep 'pass( |$)' out
# Something that is not Redis on the port: connected, but no +PONG -> fail.
expect_exit 1 opsctl health --timeout 3s "redis://127.0.0.1:$HTTPD_PORT"
expect_exit 4 opsctl health --timeout 2s "redis://127.0.0.1:$closed"
# AUTH with the password from the named environment variable.
cat >redis.conf <<CONF
[check "cache"]
type = redis
address = 127.0.0.1:$redis_auth_port
password_env = CACHE_PASSWORD
CONF
expect_exit 0 env CACHE_PASSWORD=s3cret-redis "$OPSCTL" -c redis.conf health cache
expect_grep '^cache +redis +pass( |$)|^cache +tcp +pass( |$)' out
expect_no_grep 's3cret-redis' out err
expect_exit 1 env CACHE_PASSWORD=badpass-xyz "$OPSCTL" -c redis.conf health cache
expect_no_grep badpass-xyz out err
# NOAUTH without a password: never a pass (warn: it is up but unverified, or fail).
expect_exit 1,6 opsctl health "redis://127.0.0.1:$redis_auth_port"
kill "$redis_pid" "$redis_auth_pid" 2>/dev/null

# ---- disk: thresholds around the scratch filesystem's current usage (df's Use%).
usage=$(df -P . | awk 'NR == 2 { sub("%", "", $5); print $5 }')
say "scratch filesystem is $usage% used"
expect_exit 0 opsctl health --warn 99% --crit 100% "disk:$TEST_SCRATCH"
expect_grep ' disk +pass( |$)' out
expect_exit 0 opsctl --output json health --warn 99% --crit 100% "disk:$TEST_SCRATCH"
expect_json out 'list(d["checks"].values())[0][0]["observedUnit"] == "%"'
expect_json out 'abs(list(d["checks"].values())[0][0]["observedValue"] - '"$usage"') <= 2'
if [ "$usage" -ge 6 ] && [ "$usage" -le 94 ]; then
	expect_exit 6 opsctl health --warn $((usage - 4))% --crit 99% "disk:$TEST_SCRATCH"
	expect_grep ' disk +warn( |$)' out
	expect_exit 1 opsctl health --warn 1% --crit $((usage - 4))% "disk:$TEST_SCRATCH"
	expect_grep ' disk +fail( |$)' out
	cat >disk.conf <<CONF
[check "scratch-ok"]
type = disk
path = $TEST_SCRATCH
warn = 99%
crit = 100%

[check "scratch-warn"]
type = disk
path = $TEST_SCRATCH
warn = $((usage - 4))%
crit = 99%

[check "scratch-crit"]
type = disk
path = $TEST_SCRATCH
warn = 1%
crit = $((usage - 4))%
CONF
	expect_exit 0 opsctl -c disk.conf health scratch-ok
	expect_exit 6 opsctl -c disk.conf health scratch-warn
	expect_grep '^scratch-warn +disk +warn( |$)' out
	expect_exit 1 opsctl -c disk.conf health scratch-crit
	expect_grep '^scratch-crit +disk +fail( |$)' out
	expect_exit 1 opsctl -c disk.conf health
else
	say "disk usage $usage% leaves no room for warn/crit thresholds below it; skipped those"
fi
# Defaults (80%/90%) apply without --warn/--crit.
if [ "$usage" -lt 75 ]; then
	expect_exit 0 opsctl health "disk:$TEST_SCRATCH"
fi
expect_exit 1,4 opsctl health "disk:$TEST_SCRATCH/does-not-exist"
expect_grep 'does-not-exist' out err
expect_exit 2 opsctl health --warn 90% --crit 80% "disk:$TEST_SCRATCH"
expect_exit 2 opsctl health --warn lots "disk:$TEST_SCRATCH"

# ---- memory
mem=$(awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { printf "%d", (t - a) * 100 / t }' /proc/meminfo)
say "memory is $mem% used"
expect_exit 0 opsctl health --warn 99% --crit 100% memory
expect_grep '^memory +memory +pass( |$)| memory +pass( |$)' out
expect_exit 0 opsctl --output json health --warn 99% --crit 100% memory
expect_json out 'list(d["checks"].values())[0][0]["componentType"] == "memory" and list(d["checks"].values())[0][0]["observedUnit"] == "%"'
if [ "$mem" -ge 8 ] && [ "$mem" -le 90 ]; then
	expect_exit 6 opsctl health --warn $((mem - 5))% --crit 99% memory
	expect_exit 1 opsctl health --warn 1% --crit $((mem - 5))% memory
fi
cat >mem.conf <<CONF
[check "ram"]
type = memory
warn = 99%
crit = 100%
CONF
expect_exit 0 opsctl -c mem.conf health ram

test_done
