#!/usr/bin/env python3
"""A demo web service standing in for the real app in the deploy tests and benchmarks.

Usage: demo-service.py --port N --release-dir DIR [--pid-file F] [--watch-pid PID]
                       [--max-seconds S] [--drain-ms MS] [--stop-timeout S] [--setsid]

It listens on 127.0.0.1:N only (threaded HTTP/1.1, keep-alive). What it does comes
from files in its release directory, read once at start-up (DIR is resolved first,
so DIR may be a symlink such as releases/current that is switched later):

  DIR/VERSION          one line, e.g. v2 (default "unknown"); served by GET /
                       (DIR/version, lower case, is read when there is no VERSION)
  DIR/behaviour.json   optional, a JSON object; every key is optional:
    {"healthy_after_ms": 3000}   /actuator/health answers DOWN (503) until 3 s
                                 after the process started, then UP (200)
    {"never_healthy": true}      /actuator/health always answers DOWN (503)
    {"crash_on_start": true}     exit 1 at once, before listening (a broken release)
    {"start_delay_ms": 2000}     sleep this long before listening (a slow JVM start)
    {"latency_ms": 20}           every GET / takes at least this long (work in flight)
    {"exit_code_on_term": 0}     the exit code after SIGTERM (default 0)
    {"env_file": "/abs/.env"}    read this env file once at start, as a real app does
                                 (appenv.py's dotenv rules: `export `, quotes, ` #`
                                 comments, CRLF, the last assignment wins); exit 1
                                 when it cannot be read or parsed. GET / then also
                                 returns "env": {KEY: "sha256:<12 hex>"} for every
                                 key (fingerprints only, never a value)
    {"db": true}                 with env_file: every /actuator/health opens a fresh
                                 PostgreSQL connection (libpq through ctypes) with
                                 DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD from the
                                 env file (connect_timeout 3 s), runs SELECT 1 and
                                 closes it, so a health check proves the credentials
                                 the app started with; answers 503
                                 {"status":"DOWN","components":{"db":{"status":"DOWN",
                                 "detail":"..."}}} when that fails, else 200 with
                                 "components":{"db":{"status":"UP"}}

Endpoints:
  GET /                  200 {"version": V, "port": N, "pid": P, "release": REALDIR}
                         (?sleep_ms=N, at most 10000, delays the answer: a slow request)
  GET /actuator/health   200 {"status":"UP"} or 503 {"status":"DOWN"} (with "components"
                         when "db" is on); /health is the same
  GET /version           200, the version as plain text
  anything else          404

Once listening it writes --pid-file (atomically), so "the pid file exists" means
"it accepts connections".

SIGTERM (and SIGINT) stop it gracefully: it stops accepting (connections already
queued in the listen backlog are still served), answers every request already
received or arriving on an open connection within --drain-ms (default 1000) with
"Connection: close", lets in-flight requests finish (at most --stop-timeout
seconds, default 30), removes its pid file and exits 0. So a proxy that no longer
routes new requests to it sees no failed request.

It exits by itself when --watch-pid is gone (the test that started it, even through
a detached launcher) or after --max-seconds (default 900), so a killed test never
leaves it behind.
"""

import argparse
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import appenv

STARTED = time.monotonic()
CONFIG = {}          # filled in main(): version, behaviour, port, release
STATE = {"draining": False, "drain_deadline": 0.0}
ACTIVE = {"connections": 0}
ACTIVE_LOCK = threading.Condition()


def log(msg):
    sys.stderr.write("%s demo-service[%d]: %s\n" % (
        time.strftime("%H:%M:%S", time.gmtime()), os.getpid(), msg))
    sys.stderr.flush()


def healthy():
    beh = CONFIG["behaviour"]
    if beh.get("never_healthy"):
        return False
    after = float(beh.get("healthy_after_ms", 0) or 0)
    return (time.monotonic() - STARTED) * 1000.0 >= after


def db_problem():
    """None when a fresh connection with the env file's DB_* logs in, else why not."""
    try:
        params = appenv.db_params(CONFIG["env"] or {}, timeout=3)
    except KeyError as exc:
        return str(exc.args[0])
    try:
        return appenv.check_login(params)
    except OSError as exc:  # no libpq.so.5
        return "libpq: %s" % exc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opsctl-demo-service"
    disable_nagle_algorithm = True   # no 40 ms delayed-ACK stalls on keep-alive

    def log_message(self, fmt, *args):  # quiet: the load client does the counting
        pass

    def reply(self, status, body, ctype="application/json", head_only=False):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Demo-Version", CONFIG["version"])
        if STATE["draining"]:
            self.send_header("Connection", "close")  # also sets close_connection
        # Headers and body in one write (end_headers would flush the headers alone).
        self._headers_buffer.append(b"\r\n")
        data = b"".join(self._headers_buffer) + (b"" if head_only else body)
        self._headers_buffer = []
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def serve(self, head_only=False):
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        if path == "/":
            beh = CONFIG["behaviour"]
            delay = float(beh.get("latency_ms", 0) or 0)
            query = urllib.parse.parse_qs(parts.query)
            try:
                delay = max(delay, min(10000.0, float(query.get("sleep_ms", ["0"])[-1])))
            except ValueError:
                return self.reply(400, '{"error":"bad sleep_ms"}\n', head_only=head_only)
            if delay > 0:
                time.sleep(delay / 1000.0)
            doc = {"version": CONFIG["version"], "port": CONFIG["port"],
                   "pid": os.getpid(), "release": CONFIG["release"]}
            if CONFIG["env"] is not None:
                doc["env"] = appenv.fingerprints(CONFIG["env"])
            body = json.dumps(doc)
            return self.reply(200, body + "\n", head_only=head_only)
        if path in ("/actuator/health", "/health"):
            if not healthy():
                return self.reply(503, '{"status":"DOWN"}\n', head_only=head_only)
            if not CONFIG["behaviour"].get("db"):
                return self.reply(200, '{"status":"UP"}\n', head_only=head_only)
            problem = db_problem()
            if problem:
                body = {"status": "DOWN", "components": {"db": {"status": "DOWN", "detail": problem}}}
                return self.reply(503, json.dumps(body) + "\n", head_only=head_only)
            body = {"status": "UP", "components": {"db": {"status": "UP"}}}
            return self.reply(200, json.dumps(body) + "\n", head_only=head_only)
        if path == "/version":
            return self.reply(200, CONFIG["version"] + "\n", "text/plain", head_only)
        return self.reply(404, '{"error":"not found"}\n', head_only=head_only)

    def do_GET(self):
        self.serve()

    def do_HEAD(self):
        self.serve(head_only=True)

    def do_POST(self):
        self.serve()

    def buffered(self):
        """True when a request (or EOF) can be read without waiting."""
        try:
            self.connection.settimeout(0.0)
            try:
                return len(self.rfile.peek(1)) > 0
            except (BlockingIOError, socket.timeout):
                return False
            finally:
                self.connection.settimeout(None)
        except OSError:
            return True  # let handle_one_request see the error and close

    def handle(self):
        # Like BaseHTTPRequestHandler.handle, but an idle keep-alive connection
        # waits in select() so that a graceful stop can close it once the drain
        # time is over, while a request that is already here is still answered.
        with ACTIVE_LOCK:
            ACTIVE["connections"] += 1
        try:
            self.close_connection = True
            while True:
                if not self.buffered():
                    try:
                        ready, _, _ = select.select([self.connection], [], [], 0.05)
                    except (OSError, ValueError):
                        break
                    if not ready:
                        if STATE["draining"] and time.monotonic() >= STATE["drain_deadline"]:
                            break
                        continue
                self.handle_one_request()
                if self.close_connection:
                    break
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
        finally:
            with ACTIVE_LOCK:
                ACTIVE["connections"] -= 1
                ACTIVE_LOCK.notify_all()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True    # a restart on the same port must not wait for TIME_WAIT
    request_queue_size = 256


def watchdog(watch_pid, deadline, stop):
    while not stop.is_set():
        time.sleep(0.5)
        if time.monotonic() > deadline:
            log("max-seconds reached, exiting")
            os._exit(0)
        if watch_pid:
            try:
                os.kill(watch_pid, 0)
            except ProcessLookupError:
                log("watched pid %d gone, exiting" % watch_pid)
                os._exit(0)
            except PermissionError:
                pass


def write_pid_file(path):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write("%d\n" % os.getpid())
    os.rename(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="opsctl test demo service")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--release-dir", required=True)
    ap.add_argument("--pid-file")
    ap.add_argument("--watch-pid", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--drain-ms", type=float, default=1000)
    ap.add_argument("--stop-timeout", type=float, default=30)
    ap.add_argument("--setsid", action="store_true", help="start a new session first")
    args = ap.parse_args()

    if args.setsid:
        try:
            os.setsid()
        except OSError:
            pass

    release = os.path.realpath(args.release_dir)
    if not os.path.isdir(release):
        log("release directory %s does not exist" % args.release_dir)
        return 1
    version = "unknown"
    for name in ("VERSION", "version"):
        try:
            with open(os.path.join(release, name), encoding="utf-8") as fh:
                version = fh.readline().strip() or "unknown"
            break
        except FileNotFoundError:
            continue
    behaviour = {}
    beh_path = os.path.join(release, "behaviour.json")
    if os.path.exists(beh_path):
        try:
            with open(beh_path, encoding="utf-8") as fh:
                behaviour = json.load(fh)
            if not isinstance(behaviour, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            log("bad %s: %s" % (beh_path, exc))
            return 1
    env = None
    if behaviour.get("env_file"):
        try:
            env = appenv.load(behaviour["env_file"])
        except (OSError, appenv.EnvError) as exc:
            log("cannot read env file %s: %s" % (behaviour["env_file"], exc))
            return 1
    elif behaviour.get("db"):
        log("behaviour \"db\" needs \"env_file\"")
        return 1
    CONFIG.update(version=version, behaviour=behaviour, port=args.port, release=release, env=env)

    stop = threading.Event()
    threading.Thread(target=watchdog, daemon=True,
                     args=(args.watch_pid, STARTED + args.max_seconds, stop)).start()

    if behaviour.get("crash_on_start"):
        log("release %s (%s): crash_on_start, exiting 1" % (version, release))
        return 1
    if behaviour.get("start_delay_ms"):
        time.sleep(float(behaviour["start_delay_ms"]) / 1000.0)

    try:
        server = Server(("127.0.0.1", args.port), Handler)
    except OSError as exc:
        log("cannot listen on 127.0.0.1:%d: %s" % (args.port, exc))
        return 1

    def on_signal(signum, _frame):
        if STATE["draining"]:
            return
        STATE["drain_deadline"] = time.monotonic() + args.drain_ms / 1000.0
        STATE["draining"] = True
        log("signal %d: stopping gracefully" % signum)
        # shutdown() waits for serve_forever to return: not from its own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    if args.pid_file:
        write_pid_file(args.pid_file)
    log("release %s (%s) listening on 127.0.0.1:%d" % (version, release, args.port))
    server.serve_forever(poll_interval=0.05)

    # Serve what already sits in the listen backlog, then stop listening.
    server.socket.setblocking(False)
    while True:
        try:
            conn, addr = server.socket.accept()
        except (BlockingIOError, InterruptedError, OSError):
            break
        conn.setblocking(True)
        server.process_request(conn, addr)
    server.socket.close()

    deadline = time.monotonic() + args.stop_timeout
    with ACTIVE_LOCK:
        while ACTIVE["connections"] > 0 and time.monotonic() < deadline:
            ACTIVE_LOCK.wait(0.05)
        left = ACTIVE["connections"]
    if left:
        log("%d connection(s) still open after %.0f s, exiting anyway" % (left, args.stop_timeout))
    stop.set()
    if args.pid_file:
        try:
            with open(args.pid_file, encoding="ascii") as fh:
                mine = fh.read().strip() == str(os.getpid())
            if mine:
                os.unlink(args.pid_file)
        except OSError:
            pass
    log("stopped")
    return int(behaviour.get("exit_code_on_term", 0) or 0)


if __name__ == "__main__":
    sys.exit(main())
