#!/usr/bin/env bash
# Unsafe artifacts are refused (exit 5) before anything is switched: an
# absolute path, '..', a symlink or hardlink leaving the release, a device
# file, a fifo, and archives expanding past [deploy] max_unpack (a tar bomb
# and a zip bomb). Nothing is written outside the release directory, the
# half-written release is removed, 'current' still points at the complete
# previous release. .tar.zst and .zip artifacts unpack.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
. "$TEST_SRCDIR/tests/lib/deploy-lib.sh"
require_opsctl
DEPLOY_EXTRA_CONFIG="max_unpack = 1M"
deploy_setup

make_release v1
expect_exit 0 opsctl deploy v1.tar.gz
id1=$(cat out)
expect_current "$id1" v1

# evil KIND OUT: a malicious archive built with python's tarfile/zipfile;
# each one holds a harmless file first, so something was written before
# the refusal and must be removed.
evil() {
	"$TEST_PYTHON" - "$@" <<'PY'
import io, sys, tarfile, zipfile
kind, out = sys.argv[1], sys.argv[2]
def add(t, name, data=b"x", **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    else:
        t.addfile(ti)
if kind == "zipbomb":
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("version", "bomb\n")
        z.writestr("zeros.bin", b"\0" * (50 << 20))
    sys.exit(0)
with tarfile.open(out, "w:gz") as t:
    add(t, "version", b"evil\n")
    add(t, "lib/ok.txt", b"fine\n")
    if kind == "absolute":
        add(t, "/tmp/opsctl-evil-absolute")
    elif kind == "dotdot":
        add(t, "lib/../../../escaped-dotdot")
    elif kind == "symlink":
        add(t, "lib/link", type=tarfile.SYMTYPE, linkname="../../../..")
        add(t, "lib/link/escaped-symlink")
    elif kind == "symlink-abs":
        add(t, "conf", type=tarfile.SYMTYPE, linkname="/etc")
    elif kind == "hardlink":
        add(t, "passwd", type=tarfile.LNKTYPE, linkname="../../../../etc/passwd")
    elif kind == "device":
        add(t, "dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    elif kind == "fifo":
        add(t, "pipe", type=tarfile.FIFOTYPE)
    elif kind == "tarbomb":
        add(t, "big.bin", b"\0" * (3 << 20))
PY
}

for kind in absolute dotdot symlink symlink-abs hardlink device fifo tarbomb zipbomb; do
	case $kind in zipbomb) f=$kind.zip ;; *) f=$kind.tar.gz ;; esac
	evil "$kind" "$f" || fail "cannot build $f"
	before=$(ls app/releases)
	expect_exit 5 opsctl deploy "$f"
	case $kind in
	absolute) expect_grep "refusing '.*absolute\.tar\.gz': entry '/tmp/opsctl-evil-absolute' has an absolute path" err ;;
	dotdot) expect_grep "entry 'lib/\.\./\.\./\.\./escaped-dotdot' has a '\.\.' component" err ;;
	symlink) expect_grep "symlink 'lib/link' points outside the target directory" err ;;
	symlink-abs) expect_grep "symlink 'conf' points outside the target directory \('/etc'\)" err ;;
	hardlink) expect_grep "hardlink 'passwd' points outside the target directory" err ;;
	device) expect_grep "entry 'dev/null' is a character device" err ;;
	fifo) expect_grep "entry 'pipe' is a fifo" err ;;
	tarbomb) expect_grep "entry 'big\.bin' expands past the limit of 1048576 bytes" err ;;
	zipbomb) expect_grep "refusing '.*zipbomb\.zip': entry 'zeros\.bin' expands past the limit of 1048576 bytes" err ;;
	esac
	expect_current "$id1" v1
	[ "$(ls app/releases)" = "$before" ] || fail "$kind: a release was left: $(ls app/releases)"
	tail -n 1 "$OPSCTL_STATE_DIR/history.jsonl" >last.json
	expect_json last.json 'd["exit"] == 5 and d["outcome"] == "integrity" and "refusing" in d["error"]'
done
[ ! -e /tmp/opsctl-evil-absolute ] || fail "the absolute entry was written"
[ ! -e escaped-dotdot ] && [ ! -e app/escaped-dotdot ] && [ ! -e ../escaped-dotdot ] || fail "the '..' entry was written"
[ ! -e escaped-symlink ] && [ ! -e app/escaped-symlink ] || fail "the entry through the symlink was written"
[ ! -e "$OPSCTL_STATE_DIR/deploy/journal.json" ] || fail "a refused archive left the journal"

# ---- a limit high enough lets the same tar through ------------------------------
sed -i 's/^max_unpack = 1M/max_unpack = 8M/' opsctl.conf
expect_exit 0 opsctl deploy tarbomb.tar.gz
[ "$(stat -c %s app/current/big.bin)" = $((3 << 20)) ] || fail "big.bin not unpacked whole"

# ---- .tar.zst and .zip -----------------------------------------------------------
if command -v zstd >/dev/null 2>&1; then
	mkdir -p src-zst && echo zst >src-zst/version
	tar -C src-zst -cf - . | zstd -q -o v-zst.tar.zst
	expect_exit 0 opsctl deploy v-zst.tar.zst
	expect_current "$(cat out)" zst
fi
mkdir -p src-zip/bin && echo zip >src-zip/version && printf '#!/bin/sh\necho hi\n' >src-zip/bin/run && chmod 755 src-zip/bin/run
(cd src-zip && "$TEST_PYTHON" -c '
import os, zipfile
with zipfile.ZipFile("../v-zip.zip", "w") as z:
    for root, dirs, files in os.walk("."):
        for f in files:
            p = os.path.join(root, f)
            z.write(p, p[2:])
')
expect_exit 0 opsctl deploy v-zip.zip
expect_current "$(cat out)" zip
[ "$(cat app/current/.env)" = "SECRET=shared" ] || fail "shared .env not linked into the zip release"

test_done
