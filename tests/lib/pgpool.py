#!/usr/bin/env python3
"""A database client pool standing in for an app's (HikariCP-like) pool in the
rotate-secret tests: it must never fail while a password rotates under it.

Usage: pgpool.py --env-file F --size N --out JSON [--ready-file F] [--parent-pid P]
                 [--churn-ms 200] [--max-seconds 120] [--pause-ms 5]
                 [--user-key DB_USER] [--password-key DB_PASSWORD]

It reads DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD from the env file ONCE at
start (as an app's pool does: the credentials it started with are the ones it
keeps using), opens N connections over TCP (libpq through ctypes, appenv.py),
creates --ready-file, then loops until stopped:
  - SELECT 1 on every open connection;
  - every --churn-ms: close the oldest connection and open a new one with the
    same credentials (a pool replacing connections past their max lifetime),
    so new logins are exercised all along, not only at start.
A failed query closes that connection; it is replaced at the next churn.
If the first N connections cannot be opened it exits 1 with the error on
stderr and no ready file.

SIGTERM/SIGINT, --parent-pid gone or --max-seconds: write the summary to --out
(atomically) and exit 0:
  {"queries": Q, "connects": C (new connections, the first N included),
   "failed": F (failed queries + failed connects), "failed_connects",
   "failed_queries", "errors": [the first 10 messages], "open": connections
   open at the end, "user": the role it logged in as, "last_connect_at": epoch
   seconds of the last successful new connection, "elapsed_s", "stop_reason"}
"""

import argparse
import json
import os
import signal
import sys
import time

import appenv

STATE = {"stop": None}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main():
    ap = argparse.ArgumentParser(description="opsctl test PostgreSQL client pool")
    ap.add_argument("--env-file", required=True)
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready-file")
    ap.add_argument("--parent-pid", type=int, default=os.getppid())
    ap.add_argument("--churn-ms", type=float, default=200)
    ap.add_argument("--pause-ms", type=float, default=5)
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--user-key", default="DB_USER")
    ap.add_argument("--password-key", default="DB_PASSWORD")
    args = ap.parse_args()

    def on_signal(signum, _frame):
        STATE["stop"] = STATE["stop"] or "signal"

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        params = appenv.db_params(appenv.load(args.env_file), args.user_key, args.password_key)
    except (OSError, appenv.EnvError, KeyError) as exc:
        sys.stderr.write("pgpool: %s: %s\n" % (args.env_file, exc))
        return 1

    stats = {"queries": 0, "connects": 0, "failed_connects": 0, "failed_queries": 0,
             "last_connect_at": None}
    errors = []

    def record(msg):
        if len(errors) < 10:
            errors.append(msg)

    def connect():
        try:
            conn = appenv.Conn(params)
        except appenv.PgError as exc:
            stats["failed_connects"] += 1
            record("connect: %s" % exc)
            return None
        stats["connects"] += 1
        stats["last_connect_at"] = round(time.time(), 6)
        return conn

    pool = []
    for _ in range(args.size):
        conn = connect()
        if conn is None:
            sys.stderr.write("pgpool: cannot open the pool: %s\n" % errors[-1])
            for c in pool:
                c.close()
            return 1
        pool.append(conn)
    if args.ready_file:
        with open(args.ready_file, "w", encoding="ascii") as fh:
            fh.write("%d\n" % os.getpid())

    started = time.monotonic()
    next_churn = started + args.churn_ms / 1000.0
    while STATE["stop"] is None:
        for conn in list(pool):
            try:
                conn.select1()
                stats["queries"] += 1
            except appenv.PgError as exc:
                stats["failed_queries"] += 1
                record("query: %s" % exc)
                conn.close()
                pool.remove(conn)
        now = time.monotonic()
        if args.churn_ms > 0 and now >= next_churn:
            next_churn = now + args.churn_ms / 1000.0
            if len(pool) >= args.size:
                pool.pop(0).close()
            while len(pool) < args.size:
                conn = connect()
                if conn is None:
                    break
                pool.append(conn)
        if now - started > args.max_seconds:
            STATE["stop"] = "max-seconds"
        elif args.parent_pid > 1 and not pid_alive(args.parent_pid):
            STATE["stop"] = "parent-gone"
        elif args.pause_ms > 0:
            time.sleep(args.pause_ms / 1000.0)

    summary = dict(stats)
    summary.update(failed=stats["failed_connects"] + stats["failed_queries"], errors=errors,
                   open=len(pool), user=params["user"],
                   elapsed_s=round(time.monotonic() - started, 3), stop_reason=STATE["stop"])
    for conn in pool:
        conn.close()
    tmp = "%s.tmp.%d" % (args.out, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
        fh.write("\n")
    os.rename(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
