#!/usr/bin/env bash
# A throwaway Ceph RADOS Gateway on 127.0.0.1, for bench/offsite.sh: a real
# S3 implementation whose CompleteMultipartUpload does not copy the data
# (s3rver's does), from Debian's packages (ceph-mon, ceph-osd, radosgw;
# installed here when missing, about 260 MiB). One monitor, one OSD with
# osd_objectstore = memstore (the objects live in ceph-osd's memory, no
# block device), no authentication inside the cluster, RGW's beast frontend.
#
#   bench/rgw.sh DIR          start it under DIR (a fresh directory); writes
#                             DIR/port, DIR/access_key, DIR/secret_key; the
#                             bucket "bench" exists
#   bench/rgw.sh --down DIR   stop every daemon started for DIR
#
# Environment: RGW_MEMSTORE_BYTES (default 8 GiB: keep the live data well
# below it; ceph-osd uses about twice the data in memory), RGW_PORT (default:
# a free port), RGW_CEPH_CONF_EXTRA (appended to ceph.conf),
# RGW_KEEP_ON_FAIL=1 (leave the daemons up when the start fails).
#
# Quirks that matter to an S3 client: curl 7.88 does not send
# x-amz-content-sha256 unless told to (RGW then answers 403
# SignatureDoesNotMatch), `?uploads` must be written `?uploads=`, the answer
# to CompleteMultipartUpload has an empty ETag, and deleted objects are freed
# only by `radosgw-admin -c DIR/ceph.conf gc process --include-all`.
set -euo pipefail

PKGS=(ceph-mon ceph-osd radosgw)   # ceph-common/ceph-base come as dependencies; no ceph-mgr needed

die() {
	echo "rgw.sh: $*" >&2
	exit 1
}
log() { echo "rgw.sh: [${SECONDS}s] $*" >&2; }

# Every process we start has "-c $DIR/ceph.conf" in its argv and its pid in $DIR/pids.
down() {
	local dir=$1 pid pids=() p
	[ -d "$dir" ] || return 0
	dir=$(cd "$dir" && pwd)
	if [ -f "$dir/pids" ]; then
		while read -r pid; do
			[ -n "$pid" ] || continue
			# only kill it if it is still ours (argv mentions our conf)
			if { tr "\0" " " <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "-c $dir/ceph.conf"; then
				pids+=("$pid")
			fi
		done <"$dir/pids"
	fi
	# stragglers (e.g. a daemon that forked): scan /proc for our conf path
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = "$$" ] && continue
		if { tr "\0" " " <"$p/cmdline"; } 2>/dev/null | grep -qF -- "-c $dir/ceph.conf"; then
			case " ${pids[*]:-} " in *" $pid "*) ;; *) pids+=("$pid") ;; esac
		fi
	done
	[ ${#pids[@]} -gt 0 ] || { rm -f "$dir/pids"; return 0; }
	# one at a time, newest first: rgw (it unwatches its control objects, so the osd must
	# still be up), osd (it tells the mon it is going down, ~6 s if the mon is already gone),
	# mon. Each takes ~2 s for a clean exit; SIGKILL after 10 s. Nothing is persisted (memstore).
	local i n
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[$i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for ((n = 0; n < 100; n++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -f "$dir/pids"
	log "stopped ${#pids[@]} process(es) for $dir"
}

if [ "${1:-}" = "--down" ]; then
	[ $# -eq 2 ] || die "usage: $0 --down DIR"
	down "$2"
	exit 0
fi
[ $# -eq 1 ] || die "usage: $0 DIR | $0 --down DIR"
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, daemons)"

mkdir -p "$1"
DIR=$(cd "$1" && pwd)
[ ! -e "$DIR/ceph.conf" ] || die "$DIR already holds a cluster; run '$0 --down $DIR' and use a fresh dir"

# ---------- packages ----------
missing=()
for p in "${PKGS[@]}" curl; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$DIR/apt.log" 2>&1 || { cat "$DIR/apt.log" >&2; die "apt-get failed"; }
fi

PY=/usr/bin/python3   # pulled in by ceph-common
free_port() { "$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

MON_PORT=$(free_port)
RGW_PORT=${RGW_PORT:-$(free_port)}
"$PY" -c 'import socket,sys;s=socket.socket();s.bind(("127.0.0.1",int(sys.argv[1])))' "$RGW_PORT" 2>/dev/null \
	|| die "port $RGW_PORT on 127.0.0.1 is already in use"
FSID=$(uuidgen)
CONF=$DIR/ceph.conf
MEMBYTES=${RGW_MEMSTORE_BYTES:-$((8 << 30))}
mkdir -p "$DIR"/{run,log,mon,osd,rgw,crash,tmp}
: >"$DIR/pids"

# shellcheck disable=SC2154 # rc is set inside the trap
trap 'rc=$?; if [ $rc != 0 ]; then log "failed (rc=$rc); logs in $DIR/log"; [ -n "${RGW_KEEP_ON_FAIL:-}" ] || down "$DIR"; fi' EXIT

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon_initial_members = a
mon_host = v2:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_msgr2 = true
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = $DIR/keyring
run_dir = $DIR/run
admin_socket = $DIR/run/\$cluster-\$name.asok
pid_file = $DIR/run/\$cluster-\$name.pid
log_file = $DIR/log/\$cluster-\$name.log
crash_dir = $DIR/crash
log_to_stderr = false
err_to_stderr = true
mon_cluster_log_file = $DIR/log/\$cluster.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
# throwaway cluster: commit map changes fast (RGW creates 7 pools at first start)
paxos_propose_interval = 0.1

[mon]
mon_data = $DIR/mon/\$cluster-\$id

[osd]
osd_data = $DIR/osd/\$cluster-\$id
osd_objectstore = memstore
memstore_device_bytes = $MEMBYTES
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $DIR/rgw/\$cluster-\$id
rgw_thread_pool_size = 64
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 10
rgw_gc_processor_max_time = 10
rgw_enable_usage_log = false
# radosgw defaults to ms_mon_client_mode=secure + auth_client_required=cephx; with auth none that fails (-13)
ms_mon_client_mode = crc
auth_client_required = none
EOF
# extra ceph.conf text (may contain its own [section] headers), appended verbatim
[ -z "${RGW_CEPH_CONF_EXTRA:-}" ] || printf '%s\n' "$RGW_CEPH_CONF_EXTRA" >>"$CONF"

CEPH=(ceph -c "$CONF" --connect-timeout 20)

start() {  # start NAME cmd... : foreground daemon in its own session, pid recorded
	local name=$1; shift
	setsid "$@" -f >"$DIR/log/$name.out" 2>&1 </dev/null &
	echo $! >>"$DIR/pids"
}
alive() {  # alive NAME : die early (with the log tail) if the daemon started last has exited
	kill -0 "$(tail -n 1 "$DIR/pids")" 2>/dev/null && return 0
	tail -n 20 "$DIR/log/$1.out" "$DIR"/log/ceph-*.log >&2 2>/dev/null || true
	die "$1 exited during start-up"
}

T0=$(date +%s.%N)
# ---------- mon ----------
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/tmp/monmap" >/dev/null
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/tmp/monmap" --keyring "$DIR/keyring" >"$DIR/log/mon-mkfs.out" 2>&1
start mon ceph-mon -c "$CONF" -i a
for i in $(seq 1 60); do
	alive mon
	"${CEPH[@]}" mon stat >/dev/null 2>&1 && break
	[ "$i" = 60 ] && die "mon did not come up"
	sleep 0.5
done
log "mon up on 127.0.0.1:$MON_PORT"

# ---------- osd (memstore: data lives in ceph-osd's RAM) ----------
OSD_UUID=$(uuidgen)
OSD_ID=$("${CEPH[@]}" osd new "$OSD_UUID")
mkdir -p "$DIR/osd/ceph-$OSD_ID"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.out" 2>&1
start osd ceph-osd -c "$CONF" -i "$OSD_ID"
for i in $(seq 1 120); do
	alive osd
	"${CEPH[@]}" osd dump 2>/dev/null | grep -q "^osd.$OSD_ID up" && break
	[ "$i" = 120 ] && die "osd did not come up"
	sleep 0.5
done
log "osd.$OSD_ID up"

# ---------- rgw ----------
start rgw radosgw -c "$CONF" -n client.rgw.a
for i in $(seq 1 240); do
	alive rgw
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RGW_PORT/" || true)
	[ "$code" = 200 ] && break
	[ "$i" = 240 ] && die "rgw did not answer on port $RGW_PORT"
	sleep 0.5
done
T1=$(date +%s.%N)
log "rgw up on 127.0.0.1:$RGW_PORT ($("$PY" -c "print(round($T1-$T0,1))") s for mon+osd+rgw start)"

# ---------- user + bucket ----------
radosgw-admin -c "$CONF" user create --uid=bench --display-name=bench >"$DIR/tmp/user.json" 2>"$DIR/log/radosgw-admin.out"
AK=$("$PY" -c 'import json,sys;print(json.load(open(sys.argv[1]))["keys"][0]["access_key"])' "$DIR/tmp/user.json")
SK=$("$PY" -c 'import json,sys;print(json.load(open(sys.argv[1]))["keys"][0]["secret_key"])' "$DIR/tmp/user.json")
# curl 7.88 signs the empty-body hash but does not send x-amz-content-sha256; RGW then assumes
# UNSIGNED-PAYLOAD -> SignatureDoesNotMatch. Sending the header explicitly fixes it.
curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "http://127.0.0.1:$RGW_PORT/bench" >/dev/null
echo "$RGW_PORT" >"$DIR/port"
echo "$AK" >"$DIR/access_key"
echo "$SK" >"$DIR/secret_key"
chmod 600 "$DIR/secret_key"
trap - EXIT
log "ready: http://127.0.0.1:$RGW_PORT/bench  (stop with: $0 --down $DIR)"
