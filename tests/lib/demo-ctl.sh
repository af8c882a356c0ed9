#!/usr/bin/env bash
# Start and stop tests/lib/demo-service.py the way systemd starts a unit: usable
# as opsctl's [service] restart/start/stop and [deploy "blue-green"] start/stop
# commands in a test configuration (no shell needed to run it).
#
#   demo-ctl.sh [-d STATE_DIR] [-w PID] [-t SECONDS] start   NAME PORT RELEASE_DIR
#   demo-ctl.sh [-d STATE_DIR] [-w PID] [-t SECONDS] restart NAME PORT RELEASE_DIR
#   demo-ctl.sh [-d STATE_DIR] [-t SECONDS]          stop    NAME [ignored...]
#   demo-ctl.sh [-d STATE_DIR]                       status  NAME
#
# NAME is the slot or service name (blue, green, app): one instance per NAME,
# its pid in STATE_DIR/NAME.pid, its output in STATE_DIR/NAME.log.
#   -d STATE_DIR  default $DEMO_STATE_DIR (one of the two is required)
#   -w PID        the service exits by itself when PID is gone (default
#                 $DEMO_WATCH_PID; the test harness sets it to the test's shell)
#   -t SECONDS    stop: SIGTERM, then SIGKILL after this long (default
#                 $DEMO_STOP_TIMEOUT or 10); start: how long to wait for the
#                 port to accept connections (default $DEMO_START_TIMEOUT or 10)
#
# start: runs the service detached (own session, stdin /dev/null, output to
# the log, immune to SIGHUP), waits until it accepts connections on
# 127.0.0.1:PORT, exit 0. If it exits first (a crash_on_start release, a port
# in use) or does not listen in time: the log's tail on stderr, exit 1.
# Already running under NAME: nothing is done, exit 0 (as systemctl start).
# stop: SIGTERM (the service finishes in-flight requests), SIGKILL after the
# deadline; exit 0, also when it was not running. restart = stop + start.
# status: exit 0 and the pid when running, else exit 3 (LSB "not running").
set -u

state_dir=${DEMO_STATE_DIR:-}
watch_pid=${DEMO_WATCH_PID:-}
timeout=
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=$(command -v /usr/bin/python3 || command -v python3)

die() {
	printf 'demo-ctl: %s\n' "$*" >&2
	exit 1
}

while getopts d:w:t: opt; do
	case $opt in
	d) state_dir=$OPTARG ;;
	w) watch_pid=$OPTARG ;;
	t) timeout=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || die "usage: demo-ctl.sh [-d STATE_DIR] start|stop|restart|status NAME [PORT RELEASE_DIR]"
cmd=$1 name=$2
[ -n "$state_dir" ] || die "no state directory (-d or DEMO_STATE_DIR)"
case $name in '' | */* | .*) die "bad name '$name'" ;; esac
mkdir -p "$state_dir" || die "cannot create $state_dir"
pidfile=$state_dir/$name.pid
logfile=$state_dir/$name.log

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

# running: the pid in the pid file is alive (and is a demo service); sets pid.
running() {
	pid=
	[ -s "$pidfile" ] || return 1
	read -r pid <"$pidfile" || return 1
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	alive "$pid" || return 1
	grep -q demo-service "/proc/$pid/cmdline" 2>/dev/null
}

# alive PID: the process exists and is not a zombie (a detached service is
# reaped by whatever PID 1 is, sometimes only seconds later).
alive() {
	local stat
	kill -0 "$1" 2>/dev/null || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

listening() { # PORT
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

do_stop() {
	local deadline
	if ! running; then
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	deadline=$(($(now_ms) + ${timeout:-${DEMO_STOP_TIMEOUT:-10}} * 1000))
	while alive "$pid"; do
		if [ "$(now_ms)" -ge "$deadline" ]; then
			printf 'demo-ctl: %s (pid %s) still running after SIGTERM, sending SIGKILL\n' "$name" "$pid" >&2
			kill -KILL "$pid" 2>/dev/null
			sleep 0.1
			break
		fi
		sleep 0.02
	done
	rm -f "$pidfile"
	return 0
}

do_start() {
	local port=$1 release=$2 child deadline args
	case $port in '' | *[!0-9]*) die "bad port '$port'" ;; esac
	[ -d "$release" ] || die "no release directory $release"
	if running; then
		printf 'demo-ctl: %s already running (pid %s)\n' "$name" "$pid" >&2
		return 0
	fi
	rm -f "$pidfile"
	args=(--port "$port" --release-dir "$release" --pid-file "$pidfile" --setsid
		--max-seconds "${DEMO_MAX_SECONDS:-900}")
	[ -z "$watch_pid" ] || args+=(--watch-pid "$watch_pid")
	printf -- '--- %s start %s port %s release %s\n' "$(date -u +%H:%M:%S)" "$name" "$port" "$release" >>"$logfile"
	nohup "$python" "$here/demo-service.py" "${args[@]}" </dev/null >>"$logfile" 2>&1 &
	child=$!
	deadline=$(($(now_ms) + ${timeout:-${DEMO_START_TIMEOUT:-10}} * 1000))
	while :; do
		if [ -s "$pidfile" ] && listening "$port"; then
			return 0
		fi
		if ! alive "$child"; then
			tail -n 5 "$logfile" | sed 's/^/    /' >&2
			die "$name exited during start-up (log: $logfile)"
		fi
		if [ "$(now_ms)" -ge "$deadline" ]; then
			tail -n 5 "$logfile" | sed 's/^/    /' >&2
			kill -KILL "$child" 2>/dev/null
			rm -f "$pidfile"
			die "$name did not listen on 127.0.0.1:$port in time (log: $logfile)"
		fi
		sleep 0.02
	done
}

case $cmd in
start)
	[ $# -ge 4 ] || die "usage: demo-ctl.sh start NAME PORT RELEASE_DIR"
	do_start "$3" "$4"
	;;
restart)
	[ $# -ge 4 ] || die "usage: demo-ctl.sh restart NAME PORT RELEASE_DIR"
	do_stop
	do_start "$3" "$4"
	;;
stop)
	do_stop
	;;
status)
	if running; then
		echo "$pid"
		exit 0
	fi
	exit 3
	;;
*)
	die "unknown command '$cmd' (start, stop, restart, status)"
	;;
esac
