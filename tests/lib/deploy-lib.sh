# shellcheck shell=bash
# Helpers for the deploy tests (t4*): an app root, a config, a restart
# script that makes the test HTTP service answer as the release says, and
# release artifacts.

# deploy_setup [EXTRA CONFIG LINES]: ./app with shared/.env and
# shared/var/logs, ./opsctl.conf, restart.sh; starts the HTTP service.
deploy_setup() {
	httpd_start
	httpd_set /health 200 '{"status":"UP"}'
	mkdir -p app/shared/var/logs
	echo SECRET=shared >app/shared/.env
	cat >restart.sh <<-'SH'
	#!/bin/sh
	# a service restart: the health endpoint answers as the release in
	# current says (status, after_ms); a release with restart_fail fails
	cd "$(dirname "$0")" || exit 1
	echo "$OPSCTL_RELEASE $(readlink app/current)" >>restarts.log
	[ -e app/current/restart_fail ] && { echo "cannot start the app" >&2; exit 3; }
	[ -e break-everything ] && st=503 || st=$(cat app/current/status 2>/dev/null || echo 200)
	after=$(cat app/current/after_ms 2>/dev/null || echo 0)
	if [ "$after" -gt 0 ]; then
		set -- status=503 'body={"status":"DOWN"}' after_ms="$after" then_status="$st" 'then_body={"status":"UP"}'
	else
		set -- status="$st" 'body={"status":"UP"}'
	fi
	args=""
	for kv in "$@"; do args="$args --data-urlencode $(printf '%s' "$kv" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"; done
	eval curl -fsS --max-time 5 --data-urlencode path=/health $args "$HTTPD_URL/__control" >/dev/null
	SH
	chmod +x restart.sh
	export HTTPD_URL
	cat >opsctl.conf <<-EOF
	[app]
	name = demo
	[deploy]
	root = app
	keep_releases = 3
	shared = .env var/logs
	backup = ${DEPLOY_BACKUP:-no}
	migrate = ${DEPLOY_MIGRATE:-no}
	$DEPLOY_EXTRA_CONFIG
	[service]
	restart = $TEST_SCRATCH/restart.sh
	timeout = 20s
	[health]
	wait = ${DEPLOY_WAIT:-3s}
	interval = 100ms
	consecutive = 2
	timeout = 2s
	[check "api"]
	url = $HTTPD_URL/health
	EOF
	export OPSCTL_CONFIG=$TEST_SCRATCH/opsctl.conf
}

# make_release NAME [FILE=CONTENT...]: NAME.tar.gz holding version (NAME),
# a .env of its own (replaced by the shared one) and the given files.
make_release() {
	local name=$1 kv
	shift
	rm -rf "src-$name"
	mkdir -p "src-$name"
	echo "$name" >"src-$name/version"
	echo "SECRET=from-the-artifact" >"src-$name/.env"
	for kv in "$@"; do
		mkdir -p "$(dirname "src-$name/${kv%%=*}")"
		printf '%s\n' "${kv#*=}" >"src-$name/${kv%%=*}"
	done
	tar -C "src-$name" -czf "$name.tar.gz" .
}

# expect_current ID VERSION: current points at releases/ID, a complete
# release (version file VERSION unless empty).
expect_current() {
	TEST_CHECKS=$((TEST_CHECKS + 1))
	[ "$(readlink app/current)" = "releases/$1" ] ||
		fail "current -> '$(readlink app/current)', expected 'releases/$1'"
	[ -z "$2" ] || [ "$(cat app/current/version 2>/dev/null)" = "$2" ] ||
		fail "current/version is '$(cat app/current/version 2>/dev/null)', expected '$2'"
	[ -z "$(ls -A app/releases | grep '^\.')" ] || fail "staging left in app/releases: $(ls -A app/releases)"
}
