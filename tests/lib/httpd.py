#!/usr/bin/env python3
"""A small HTTP/1.1 server for the integration tests, whose answers the test controls.

Usage: httpd.py --port-file FILE [--port N] [--parent-pid PID] [--max-seconds S] [--log FILE]

It listens on 127.0.0.1 only. With --port 0 (the default) it picks a free port in
20000-60000 itself and writes it to --port-file (atomically, once it is listening),
so tests running in parallel never race for a port.

Every path answers 404 until the test configures it through the control endpoint:

  POST /__control   form-encoded (or a JSON object) with these fields:
    path          the path to configure, e.g. /health (query strings are ignored)
    status        HTTP status code (default 200)
    body          the body text (default empty)
    body_size     instead of body: N bytes of "x" (for huge-body tests)
    content_type  Content-Type header; default: application/json when the body
                  starts with '{' or '[', else text/plain; "none" sends none
    header        extra header "Name: value" (may repeat)
    delay_ms      wait this long before answering (default 0)
    mode          answer (default) | hang (accept, read the request, never answer)
                  | close (close the connection without answering)
    after_ms      with then_*: answer with this spec until after_ms after it was
                  set, then with the then_* spec ("turns healthy after N ms")
    then_status, then_body, then_body_size, then_content_type, then_delay_ms,
    then_mode, then_header
  POST /__reset     forget every path and counter
  GET  /__stats?path=/health   {"hits": N, "hits_then": M}  (M: answers from then_*)
  GET  /__ping      200 "pong"

It exits on its own when the parent process (--parent-pid) is gone, or after
--max-seconds, so a killed test never leaves it behind.
"""

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SPECS = {}   # path -> spec dict (with "set_at" monotonic seconds)
STATS = {}   # path -> {"hits": n, "hits_then": n}
LOG = None


def log(msg):
    if LOG is None:
        return
    with LOCK:
        LOG.write("%.3f %s\n" % (time.time(), msg))
        LOG.flush()


def parse_fields(handler, raw):
    """Form-encoded or JSON control fields -> dict of str -> list of str."""
    ctype = handler.headers.get("Content-Type", "")
    if "json" in ctype or raw.lstrip().startswith(b"{"):
        obj = json.loads(raw.decode("utf-8"))
        fields = {}
        for key, val in obj.items():
            if isinstance(val, dict) and key == "then":
                for k2, v2 in val.items():
                    fields.setdefault("then_" + k2, []).extend(v2 if isinstance(v2, list) else [v2])
                continue
            fields[key] = [str(v) for v in val] if isinstance(val, list) else [str(val)]
        return fields
    return urllib.parse.parse_qs(raw.decode("utf-8"), keep_blank_values=True)


def make_spec(fields, prefix):
    def one(name, default=None):
        vals = fields.get(prefix + name)
        return vals[-1] if vals else default

    spec = {
        "status": int(one("status", "200")),
        "delay_ms": int(one("delay_ms", "0") or 0),
        "mode": one("mode", "answer"),
        "headers": [],
    }
    if spec["mode"] not in ("answer", "hang", "close"):
        raise ValueError("unknown mode %r" % spec["mode"])
    size = one("body_size")
    if size:
        body = b"x" * int(size)
    else:
        body = one("body", "").encode("utf-8")
    spec["body"] = body
    ctype = one("content_type")
    if ctype is None or ctype == "":
        head = body.lstrip()[:1]
        ctype = "application/json" if head in (b"{", b"[") else "text/plain"
    spec["content_type"] = None if ctype == "none" else ctype
    for hdr in fields.get(prefix + "header", []):
        name, _, value = hdr.partition(":")
        spec["headers"].append((name.strip(), value.strip()))
    return spec


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opsctl-test-httpd"

    def log_message(self, fmt, *args):
        log("%s %s" % (self.address_string(), fmt % args))

    def reply(self, status, body, ctype="text/plain", headers=(), head_only=False):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def control(self, path):
        raw = self.read_body()
        if path == "/__reset":
            with LOCK:
                SPECS.clear()
                STATS.clear()
            return self.reply(200, b"ok\n")
        if path == "/__ping":
            return self.reply(200, b"pong\n")
        if path == "/__stats":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            want = query.get("path", ["/"])[-1]
            with LOCK:
                stats = dict(STATS.get(want, {"hits": 0, "hits_then": 0}))
            return self.reply(200, json.dumps(stats).encode() + b"\n", "application/json")
        if path == "/__control":
            try:
                fields = parse_fields(self, raw)
                target = fields["path"][-1]
                spec = make_spec(fields, "")
                if fields.get("after_ms"):
                    spec["after_ms"] = int(fields["after_ms"][-1])
                    spec["then"] = make_spec(fields, "then_")
                spec["set_at"] = time.monotonic()
            except (KeyError, ValueError) as exc:
                return self.reply(400, ("bad control request: %r\n" % exc).encode())
            with LOCK:
                SPECS[target] = spec
                STATS[target] = {"hits": 0, "hits_then": 0}
            log("control %s -> %s" % (target, {k: v for k, v in spec.items() if k != "body"}))
            return self.reply(200, b"ok\n")
        return self.reply(404, b"unknown control endpoint\n")

    def serve(self, head_only=False):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/__"):
            return self.control(path)
        self.read_body()
        with LOCK:
            spec = SPECS.get(path)
            stats = STATS.setdefault(path, {"hits": 0, "hits_then": 0})
            stats["hits"] += 1
            if spec is not None and "then" in spec:
                if time.monotonic() >= spec["set_at"] + spec["after_ms"] / 1000.0:
                    spec = spec["then"]
                    stats["hits_then"] += 1
        if spec is None:
            return self.reply(404, b"not found\n", head_only=head_only)
        if spec["delay_ms"] > 0:
            time.sleep(spec["delay_ms"] / 1000.0)
        if spec["mode"] == "hang":
            # Accept and never answer; the thread is a daemon, so it dies with us.
            while True:
                time.sleep(3600)
        if spec["mode"] == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        return self.reply(spec["status"], spec["body"], spec["content_type"],
                          spec["headers"], head_only)

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def do_PUT(self):
        self.serve()

    def do_HEAD(self):
        self.serve(head_only=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 128


def bind(port):
    if port:
        return Server(("127.0.0.1", port), Handler)
    last = None
    for _ in range(200):
        try:
            return Server(("127.0.0.1", random.randint(20000, 60000)), Handler)
        except OSError as exc:
            last = exc
    raise SystemExit("httpd.py: no free port found: %s" % last)


def watchdog(parent_pid, deadline):
    while True:
        time.sleep(0.5)
        if time.monotonic() > deadline:
            log("max-seconds reached, exiting")
            os._exit(0)
        if parent_pid:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                log("parent %d gone, exiting" % parent_pid)
                os._exit(0)
            except PermissionError:
                pass


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--parent-pid", type=int, default=os.getppid())
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--log")
    args = ap.parse_args()
    if args.log:
        LOG = open(args.log, "a", encoding="utf-8")
    server = bind(args.port)
    threading.Thread(target=watchdog, daemon=True,
                     args=(args.parent_pid, time.monotonic() + args.max_seconds)).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    log("listening on 127.0.0.1:%d" % server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
