#!/usr/bin/env bash
# Reload the test nginx and return only when the reload is complete.
#
#   nginx-reload.sh PID_FILE ERROR_LOG [TIMEOUT_S]
#
# `nginx -s reload` only signals the master and returns at once: for a moment
# the old workers still accept requests with the old configuration. This sends
# SIGHUP to the master in PID_FILE and waits (at most TIMEOUT_S, default 10)
# until every worker that existed before has exited, i.e. new workers with the
# new configuration took over and the old ones finished their in-flight
# requests (a graceful reload). Exit 1, with the log lines, when the master
# rejected the new configuration (an [emerg] logged after the signal; the old
# configuration stays in force) or the old workers outlived the deadline.
set -u
[ $# -ge 2 ] || {
	echo "usage: nginx-reload.sh PID_FILE ERROR_LOG [TIMEOUT_S]" >&2
	exit 2
}
pid_file=$1 error_log=$2 timeout=${3:-10}

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

read -r master <"$pid_file" 2>/dev/null || {
	echo "nginx-reload: no pid in $pid_file" >&2
	exit 1
}
case $master in '' | *[!0-9]*)
	echo "nginx-reload: bad pid in $pid_file" >&2
	exit 1
	;;
esac
children() {
	if [ -r "/proc/$master/task/$master/children" ]; then
		cat "/proc/$master/task/$master/children"
	else
		ps -o pid= --ppid "$master"
	fi
}

old=$(children)
log_size=$(stat -c %s "$error_log" 2>/dev/null || echo 0)
kill -HUP "$master" || {
	echo "nginx-reload: cannot signal nginx master $master" >&2
	exit 1
}
deadline=$(($(now_ms) + timeout * 1000))
while :; do
	# A rejected configuration is logged as [emerg] by the master.
	new_lines=$(tail -c +"$((log_size + 1))" "$error_log" 2>/dev/null)
	if grep -q '\[emerg\]' <<<"$new_lines"; then
		grep '\[emerg\]' <<<"$new_lines" >&2
		echo "nginx-reload: nginx rejected the new configuration (still running the old one)" >&2
		exit 1
	fi
	left=0
	for pid in $old; do
		# Still a child of the master (not a recycled pid)?
		if [ -e "/proc/$pid" ] && grep -qw "$pid" <<<"$(children)"; then
			left=1
			break
		fi
	done
	if [ "$left" = 0 ] && [ -n "$(children)" ]; then
		exit 0
	fi
	kill -0 "$master" 2>/dev/null || {
		echo "nginx-reload: nginx master $master is gone" >&2
		exit 1
	}
	if [ "$(now_ms)" -ge "$deadline" ]; then
		echo "nginx-reload: old workers ($old) still running after ${timeout}s" >&2
		exit 1
	fi
	sleep 0.01
done
