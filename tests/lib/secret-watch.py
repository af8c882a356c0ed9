#!/usr/bin/env python3
"""Records the command lines and environments of a process tree, so a test
can show that a secret never reached a child's argv or environ (issue 6).

Usage: secret-watch.py --root-pid P --log FILE [--ready-file F] [--interval-ms 5]
                       [--parent-pid P] [--max-seconds 300]

Every --interval-ms it walks the tree below --root-pid (the test's shell:
opsctl, the shells and commands it runs, the service it restarts) through
/proc/PID/task/*/children, and reads /proc/PID/cmdline and /proc/PID/environ
of each process. A process once seen in the tree stays watched, with its
children, after its parent exits (a daemon reparented to init, like a
restarted service). Each distinct cmdline and each
distinct environ is appended to --log once, as text:
    cmdline PID COMM: arg1 arg2 ...
    environ PID COMM:
        NAME=value
        ...
(NUL separators turned into spaces and newlines; each environ entry on its
own line so grep finds a value with its neighbours). The test greps the log
afterwards for the values (expect_secret_absent); the watcher itself never
knows them. A process that exits between the listing and the read is missed
only if it lived less than an interval.

SIGTERM/SIGINT, --parent-pid gone (default: --root-pid) or --max-seconds:
a last scan, then a "# scans N processes M" line, and exit 0.
--ready-file is created after the first complete scan.
"""

import argparse
import os
import signal
import sys
import time

STATE = {"stop": False}


def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def stat_of(pid):
    """(ppid, starttime, comm) or None."""
    raw = read("/proc/%s/stat" % pid)
    if not raw:
        return None
    try:
        rp = raw.rindex(b")")
        comm = raw[raw.index(b"(") + 1:rp].decode("utf-8", "replace")
        fields = raw[rp + 2:].split()
        return int(fields[1]), fields[19].decode(), comm
    except (ValueError, IndexError):
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main():
    ap = argparse.ArgumentParser(description="opsctl test secret watcher")
    ap.add_argument("--root-pid", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready-file")
    ap.add_argument("--interval-ms", type=float, default=5)
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()
    parent = args.parent_pid or args.root_pid
    me = os.getpid()

    def on_signal(_signum, _frame):
        STATE["stop"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log = open(args.log, "ab", buffering=0)
    seen_cmdline = set()
    seen_environ = set()
    watched = set()           # (pid, starttime) of the live processes seen in the tree
    scans = 0
    deadline = time.monotonic() + args.max_seconds

    def children(pid):
        kids = []
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return kids
        for tid in tasks:
            raw = read("/proc/%d/task/%s/children" % (pid, tid))
            if raw:
                kids.extend(int(x) for x in raw.split())
        return kids

    def scan():
        # the tree from the root, and from every process once seen in it
        # (a service that its launcher left behind is reparented to init)
        todo = [args.root_pid] + [pid for pid, _ in watched]
        done = set()
        while todo:
            pid = todo.pop()
            if pid in done or pid == me:
                continue
            done.add(pid)
            st = stat_of(pid)
            if st is None:
                continue
            ppid, start, comm = st
            if pid != args.root_pid and (pid, start) not in watched:
                watched.add((pid, start))
            todo.extend(children(pid))
            cmd = read("/proc/%d/cmdline" % pid)
            env = read("/proc/%d/environ" % pid)
            out = []
            if cmd and cmd not in seen_cmdline:
                seen_cmdline.add(cmd)
                out.append(b"cmdline %d %s: %s\n" % (pid, comm.encode(), cmd.rstrip(b"\0").replace(b"\0", b" ")))
            if env and env not in seen_environ:
                seen_environ.add(env)
                out.append(b"environ %d %s:\n" % (pid, comm.encode()))
                out.extend(b"    " + e + b"\n" for e in env.split(b"\0") if e)
            if out:
                log.write(b"".join(out))
        # forget the dead (a pid may be reused by an unrelated process)
        for item in list(watched):
            st = stat_of(item[0])
            if st is None or st[1] != item[1]:
                watched.discard(item)
        return len(done)

    scan()
    scans += 1
    if args.ready_file:
        with open(args.ready_file, "w", encoding="ascii") as fh:
            fh.write("%d\n" % me)
    while not STATE["stop"]:
        time.sleep(args.interval_ms / 1000.0)
        scan()
        scans += 1
        if time.monotonic() > deadline or (parent > 1 and not pid_alive(parent)):
            break
    scan()
    log.write(b"# scans %d\n" % (scans + 1))
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
