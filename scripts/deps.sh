#!/usr/bin/env bash
# Install the Debian packages opsctl needs to build and test, when any is missing.
# Idempotent and quiet when everything is there; never starts system services.
#
#   scripts/deps.sh [--fuzz] [--bench]
#     --fuzz   also clang and the libFuzzer runtime (tests/fuzz)
#     --bench  also hyperfine (bench/)
#
# Test tools from the npm registry (s3rver, the S3 server of the storage
# tests) go into .cache/npm/ in the source tree, pinned, only when missing.
set -euo pipefail

packages=(build-essential cmake pkg-config libpq-dev libcurl4-openssl-dev libcjson-dev
	zlib1g-dev libzstd-dev zstd libarchive-dev libssl-dev libinih-dev libcmocka-dev libhiredis-dev
	postgresql postgresql-client nginx-light redis-server redis-tools python3 curl procps util-linux libxml2-dev)
# npm installs the test tools below; Debian's nodejs/npm only when no npm is
# there already (a node from elsewhere brings its own npm, which Debian's would conflict with)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

for arg in "$@"; do
	case $arg in
	--fuzz) packages+=(clang libclang-rt-14-dev) ;;
	--bench) packages+=(hyperfine) ;;
	-h | --help)
		sed -n '2,7s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "deps.sh: unknown option '$arg'" >&2
		exit 2
		;;
	esac
done

say() { printf 'deps: %s\n' "$*" >&2; }

# Pinned npm test tools, installed into the source tree (gitignored) so no
# global node_modules is touched; a tool already at its version is left alone.
npm_root="$(cd "$(dirname "$0")/.." && pwd)/.cache/npm"
npm_tools=(s3rver@3.7.1)
install_npm_tools() {
	local tool name version have
	for tool in "${npm_tools[@]}"; do
		name=${tool%@*}
		version=${tool##*@}
		have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$npm_root/node_modules/$name/package.json" 2>/dev/null || true)
		[ "$have" != "$version" ] || continue
		command -v npm >/dev/null 2>&1 || {
			say "no npm: cannot install $tool (tests/lib/test-lib.sh's s3_start needs it)"
			exit 1
		}
		say "npm install $tool into $npm_root"
		mkdir -p "$npm_root"
		if ! npm install --prefix "$npm_root" --no-save --no-audit --no-fund --loglevel=error \
			"$tool" </dev/null >"$npm_root/install.log" 2>&1; then
			cat "$npm_root/install.log" >&2
			say "npm install $tool failed"
			exit 1
		fi
	done
}

command -v dpkg-query >/dev/null 2>&1 || {
	say "no dpkg-query: this script installs Debian packages; install the equivalents of: ${packages[*]}"
	exit 1
}

installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for pkg in "${packages[@]}"; do
	grep -qx "$pkg installed" <<<"$installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
	install_npm_tools
	exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		say "missing packages (${missing[*]}) and not root, no sudo: install them and rerun"
		exit 1
	}
	as_root=(sudo -n)
fi

# apt's own chatter goes to a log, shown only when something fails.
log=$(mktemp "${TMPDIR:-/tmp}/opsctl-deps.XXXXXX")
policy=/usr/sbin/policy-rc.d
created_policy=
cleanup() {
	rm -f "$log"
	if [ -n "$created_policy" ]; then
		"${as_root[@]}" rm -f "$policy"
		say "removed $policy"
	fi
}
trap cleanup EXIT

# Debian's maintainer scripts start services through invoke-rc.d; without a
# running systemd (containers, CI sandboxes) a policy-rc.d answering 101
# ("action forbidden") keeps them from starting. One already there is kept.
if [ ! -d /run/systemd/system ] && [ ! -e "$policy" ]; then
	say "no systemd running: writing $policy so package scripts start no services"
	printf '#!/bin/sh\n# written by opsctl scripts/deps.sh for the duration of an install\nexit 101\n' |
		"${as_root[@]}" tee "$policy" >/dev/null
	"${as_root[@]}" chmod 755 "$policy"
	created_policy=1
fi

apt() {
	if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" </dev/null >"$log" 2>&1; then
		cat "$log" >&2
		say "apt-get $1 failed"
		exit 1
	fi
}
say "apt-get update"
apt update
say "apt-get install ${missing[*]}"
apt install -y --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
say "installed ${#missing[@]} package(s)"
install_npm_tools
