#!/usr/bin/env python3
"""A load client for the deploy tests and benchmarks: continuous HTTP GETs, one JSON summary.

Usage: load.py URL [--concurrency N] [--duration S] [--count N] [--stop-file F]
               [--rate R] [--timeout S] [--out FILE] [--mark-file F] [--ready-file F]
               [--log FILE] [--no-keepalive] [--no-retry-stale] [--fail-pause-ms MS]
               [--max-seconds S] [--parent-pid PID]

URL must be http:// on a loopback address (127.0.0.0/8, ::1 or localhost).
N connections (default 4) each send GET URL in a loop, one request at a time,
HTTP/1.1 keep-alive (--no-keepalive: a new connection per request), until the
first of: --duration seconds, --count requests in all, --stop-file exists,
SIGTERM/SIGINT, --max-seconds (default 300; the bound when nothing else is
given), or the --parent-pid process (default: the one that started it) is gone.
Requests already sent are then completed (each bounded by --timeout, default 5 s)
and the summary written to --out (atomically: a temporary file renamed into
place, so "the file exists" means "the run is over") or stdout. Exit 0 whenever
the summary was written, however many requests failed: the caller asserts.

--rate R caps the total request rate at R per second (default 0: as fast as the
connections go). After a failed request a connection pauses --fail-pause-ms
(default 10) before the next one, so a refused port is not hammered at 20,000
requests a second (which would starve the restarting service of CPU).
--ready-file F is created after the first successful response.

A request fails on a connection error (refused, reset, timeout, end of stream
before a complete response) or a status outside 200-299. As every HTTP client
does for an idempotent request (RFC 9110 9.2.2, RFC 9112 9.3.1), a request that
fails on a REUSED keep-alive connection before a single byte of the response
arrived (the server closed the idle connection just as we sent) is retried once
on a new connection; those are counted in "stale_retries", and the request
fails only if the retry fails too. --no-retry-stale counts them as failures.

--mark-file F: lines "LABEL EPOCH_SECONDS" (e.g. "switch-start 1712345678.123",
written by the test, `printf '%s %s\\n' switch-start "$EPOCHREALTIME" >>F`), read
when the summary is written. The window runs from the earliest to the latest
mark (a single mark: from it to the end); "window" counts the requests whose
time overlaps it and "steady" the others.

Summary (times in ms, timestamps in epoch seconds):
  {"url", "started", "ended", "elapsed_s", "concurrency",
   "total", "ok", "failed", "stale_retries", "rps",
   "errors": {"http 502": 3, "connection refused": 1, ...},
   "latency_ms": {"p50", "p90", "p99", "max", "mean"}      (successful requests)
   "versions": [{"version": "v1", "count": 812, "first": t, "last": t}, ...]
        runs of the same version in the order the responses completed;
        "version" is the "version" field of a JSON body (null if none)
   "distinct_versions": ["v1", "v2"]   in order of first appearance
   "first_version", "last_version",
   "switch_gap_ms": between the last response of first_version and the first
        response of last_version after it (null unless they differ):
        the unavailability window of a restart
   "max_gap_ms": the longest time between two successful responses (any version)
   "first_failure", "last_failure": epoch seconds (or null)
   "marks": {"label": t, ...},
   "window": {"start", "end", "total", "ok", "failed", "p50", "p99", "max",
              "versions": [...]}  (null without marks)
   "steady": {"total", "ok", "failed", "p50", "p99", "max"}  (outside the window)
   "stop_reason": "duration" | "count" | "stop-file" | "signal" | "max-seconds"
                  | "parent-gone"}

--log FILE writes one line per request: start end status version error.
"""

import argparse
import http.client
import ipaddress
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

STOP = threading.Event()
LOCK = threading.Lock()
RESULTS = []          # (start, end, status_or_0, version, error_or_None)
COUNTERS = {"issued": 0, "stale_retries": 0}
STATE = {"stop_reason": None}


def set_stop(reason):
    with LOCK:
        if STATE["stop_reason"] is None:
            STATE["stop_reason"] = reason
    STOP.set()


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(math.ceil(p / 100.0 * len(sorted_vals))) - 1))
    return round(sorted_vals[k], 3)


def lat_stats(rows):
    lats = sorted((r[1] - r[0]) * 1000.0 for r in rows if r[4] is None)
    ok = len(lats)
    return {
        "total": len(rows), "ok": ok, "failed": len(rows) - ok,
        "p50": percentile(lats, 50), "p90": percentile(lats, 90),
        "p99": percentile(lats, 99), "max": round(lats[-1], 3) if lats else None,
        "mean": round(sum(lats) / ok, 3) if ok else None,
    }


def version_runs(rows):
    runs = []
    for r in rows:
        if r[4] is not None:
            continue
        if runs and runs[-1]["version"] == r[3]:
            runs[-1]["count"] += 1
            runs[-1]["last"] = round(r[1], 6)
        else:
            runs.append({"version": r[3], "count": 1, "first": round(r[1], 6), "last": round(r[1], 6)})
    return runs


def classify(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed before response"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete body"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    return type(exc).__name__ + (": " + str(exc) if str(exc) else "")


class Pacer:
    """Spaces request starts 1/rate apart across all workers."""

    def __init__(self, rate):
        self.rate = rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + 1.0 / self.rate
        delay = slot - now
        if delay > 0:
            STOP.wait(delay)


def worker(args, host, port, target, pacer):
    conn = None
    used = 0  # responses received on conn

    def new_conn():
        return http.client.HTTPConnection(host, port, timeout=args.timeout)

    while not STOP.is_set():
        with LOCK:
            if args.count and COUNTERS["issued"] >= args.count:
                break
            COUNTERS["issued"] += 1
        pacer.wait()
        if STOP.is_set():
            with LOCK:
                COUNTERS["issued"] -= 1
            break
        start = time.time()
        status, version, error = 0, None, None
        for attempt in (1, 2):
            if conn is None:
                conn = new_conn()
                used = 0
            got_bytes = False
            try:
                headers = {} if args.keepalive else {"Connection": "close"}
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
                got_bytes = True
                body = resp.read()
                status = resp.status
                used += 1
                if resp.will_close or not args.keepalive:
                    conn.close()
                    conn = None
                try:
                    doc = json.loads(body.decode("utf-8"))
                    if isinstance(doc, dict):
                        version = doc.get("version")
                except ValueError:
                    pass
                error = None if 200 <= status < 300 else "http %d" % status
                break
            except Exception as exc:  # noqa: BLE001 - every failure is data here
                reused = used > 0
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                error = classify(exc)
                if attempt == 1 and reused and not got_bytes and args.retry_stale and \
                        isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError,
                                         BrokenPipeError)):
                    with LOCK:
                        COUNTERS["stale_retries"] += 1
                    continue
                break
        end = time.time()
        with LOCK:
            RESULTS.append((start, end, status, version, error))
        if error is not None and args.fail_pause_ms > 0:
            # Do not spin on refused connections: that would starve the very
            # service being restarted of CPU and stretch the gap we measure.
            STOP.wait(args.fail_pause_ms / 1000.0)
        if error is None and args.ready_file and not os.path.exists(args.ready_file):
            try:
                with open(args.ready_file, "a", encoding="ascii"):
                    pass
            except OSError:
                pass
    if conn is not None:
        conn.close()


def read_marks(path):
    marks = {}
    if not path:
        return marks
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 2:
                    continue
                try:
                    marks[parts[0]] = float(parts[1].replace(",", "."))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return marks


def summary(args, started, ended):
    with LOCK:
        rows = sorted(RESULTS, key=lambda r: r[1])
        stale = COUNTERS["stale_retries"]
    errors = {}
    for r in rows:
        if r[4] is not None:
            errors[r[4]] = errors.get(r[4], 0) + 1
    overall = lat_stats(rows)
    runs = version_runs(rows)
    distinct = []
    for run in runs:
        if run["version"] not in distinct:
            distinct.append(run["version"])
    first_v = runs[0]["version"] if runs else None
    last_v = runs[-1]["version"] if runs else None
    switch_gap = None
    if runs and first_v != last_v:
        last_old = max(r["last"] for r in runs if r["version"] == first_v)
        later_new = [r["first"] for r in runs if r["version"] == last_v and r["first"] >= last_old]
        if later_new:
            switch_gap = round((min(later_new) - last_old) * 1000.0, 3)
    ok_ends = [r[1] for r in rows if r[4] is None]
    max_gap = None
    if len(ok_ends) >= 2:
        max_gap = round(max(b - a for a, b in zip(ok_ends, ok_ends[1:])) * 1000.0, 3)
    failures = [r[1] for r in rows if r[4] is not None]
    marks = read_marks(args.mark_file)
    window = None
    steady = None
    if marks:
        w0 = min(marks.values())
        w1 = max(marks.values()) if len(marks) > 1 else ended
        inside = [r for r in rows if r[1] >= w0 and r[0] <= w1]
        outside = [r for r in rows if not (r[1] >= w0 and r[0] <= w1)]
        window = lat_stats(inside)
        del window["p90"], window["mean"]
        window.update(start=w0, end=w1, versions=version_runs(inside))
        steady = lat_stats(outside)
        del steady["p90"], steady["mean"]
    elapsed = max(ended - started, 1e-9)
    return {
        "url": args.url, "started": round(started, 6), "ended": round(ended, 6),
        "elapsed_s": round(elapsed, 3), "concurrency": args.concurrency,
        "total": overall["total"], "ok": overall["ok"], "failed": overall["failed"],
        "stale_retries": stale, "rps": round(overall["total"] / elapsed, 1),
        "errors": errors,
        "latency_ms": {k: overall[k] for k in ("p50", "p90", "p99", "max", "mean")},
        "versions": runs, "distinct_versions": distinct,
        "first_version": first_v, "last_version": last_v,
        "switch_gap_ms": switch_gap, "max_gap_ms": max_gap,
        "first_failure": round(failures[0], 6) if failures else None,
        "last_failure": round(failures[-1], 6) if failures else None,
        "marks": marks, "window": window, "steady": steady,
        "stop_reason": STATE["stop_reason"],
    }


def check_url(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit("load.py: only http:// URLs: %s" % url)
    host = parts.hostname
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise SystemExit("load.py: loopback addresses only: %s" % url) from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return host, parts.port or 80, target


def main():
    ap = argparse.ArgumentParser(description="opsctl test load client")
    ap.add_argument("url")
    ap.add_argument("--concurrency", "-c", type=int, default=4)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--stop-file")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--out")
    ap.add_argument("--mark-file")
    ap.add_argument("--ready-file")
    ap.add_argument("--log")
    ap.add_argument("--no-keepalive", dest="keepalive", action="store_false")
    ap.add_argument("--no-retry-stale", dest="retry_stale", action="store_false")
    ap.add_argument("--fail-pause-ms", type=float, default=10)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--parent-pid", type=int, default=os.getppid())
    args = ap.parse_args()
    host, port, target = check_url(args.url)
    if args.concurrency < 1:
        raise SystemExit("load.py: --concurrency must be at least 1")

    signal.signal(signal.SIGTERM, lambda *_: set_stop("signal"))
    signal.signal(signal.SIGINT, lambda *_: set_stop("signal"))
    pacer = Pacer(args.rate)
    started = time.time()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(args, host, port, target, pacer), daemon=True)
               for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    while not STOP.is_set():
        now = time.monotonic()
        if args.duration and now - t0 >= args.duration:
            set_stop("duration")
        elif now - t0 >= args.max_seconds:
            set_stop("max-seconds")
        elif args.stop_file and os.path.exists(args.stop_file):
            set_stop("stop-file")
        elif not any(t.is_alive() for t in threads):
            set_stop("count")
        elif args.parent_pid > 1 and not pid_alive(args.parent_pid):
            set_stop("parent-gone")
        else:
            STOP.wait(0.02)
    for t in threads:
        t.join(args.timeout * 2 + 1)
    ended = time.time()
    doc = summary(args, started, ended)
    text = json.dumps(doc, indent=1) + "\n"
    if args.log:
        with LOCK, open(args.log, "w", encoding="utf-8") as fh:
            for r in sorted(RESULTS, key=lambda r: r[0]):
                fh.write("%.6f %.6f %d %s %s\n" % (r[0], r[1], r[2], r[3], r[4] or "-"))
    if args.out:
        tmp = "%s.tmp.%d" % (args.out, os.getpid())
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.rename(tmp, args.out)
    else:
        sys.stdout.write(text)
    return 0


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


if __name__ == "__main__":
    sys.exit(main())
