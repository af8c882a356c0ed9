#!/usr/bin/env python3
"""A stand-in for Qdrant's snapshot API, for the backup source tests.

No Qdrant server is installable here (it is not packaged by Debian and the
tests run offline), so this small service implements the endpoints opsctl's
`[source] type = http-snapshot, preset = qdrant` uses, with the shapes of
Qdrant's REST API (v1.x):

  PUT    /collections/{c}                          create a collection
  DELETE /collections/{c}                          drop it
  PUT    /collections/{c}/points                   upsert {"points": [{"id", "vector", "payload"}]}
  POST   /collections/{c}/points/scroll            {"result": {"points": [...], "next_page_offset": null}}
  POST   /collections/{c}/snapshots                {"result": {"name", "creation_time", "size", "checksum"}}
  GET    /collections/{c}/snapshots                {"result": [ ...descriptions ]}
  GET    /collections/{c}/snapshots/{name}         the snapshot file
  DELETE /collections/{c}/snapshots/{name}         {"result": true}
  POST   /collections/{c}/snapshots/upload?priority=snapshot
                                                   multipart/form-data, field "snapshot":
                                                   replaces the collection's points

Errors answer like Qdrant: {"status": {"error": "..."}, "time": 0}.
A collection's points live in DATA/collections/{c}.json and snapshots in
DATA/snapshots/{c}/{name}, so a test can check both from the shell. A
snapshot is a JSON document (not Qdrant's tar), padded with --pad bytes.

Test controls:
  POST /__fault   {"op": "create"|"download"|"delete"|"upload", "status": 500}
                  the next requests of that op answer this status (until
                  cleared with status 0); {"op": "download", "mode": "corrupt"}
                  sends the snapshot with one byte changed (checksum mismatch)
  GET  /__stats   {"requests": ["POST /collections/k/snapshots", ...]}
  GET  /__ping    "pong"

--api-key KEY makes every API request need the header `api-key: KEY` (401
otherwise), as Qdrant's service.api_key does.

Usage: qdrant-fake.py --port-file FILE --data DIR [--parent-pid PID]
                      [--max-seconds S] [--api-key KEY] [--pad BYTES]
It listens on 127.0.0.1 on a port the kernel picks and writes it to
--port-file once listening. It exits when --parent-pid is gone or after
--max-seconds, so a killed test never leaves it behind.
"""

import argparse
import datetime
import email.parser
import email.policy
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
FAULTS = {}      # op -> {"status": N, "mode": "..."}
REQUESTS = []    # "METHOD /path" in arrival order
ARGS = None


def coll_path(c):
    return os.path.join(ARGS.data, "collections", c + ".json")


def snap_dir(c):
    return os.path.join(ARGS.data, "snapshots", c)


def write_atomic(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_points(c):
    with open(coll_path(c), "rb") as f:
        return json.load(f)["points"]


def save_points(c, points):
    points = sorted(points, key=lambda p: str(p.get("id")))
    write_atomic(coll_path(c), json.dumps({"points": points}, sort_keys=True).encode())


def describe(c, name):
    path = os.path.join(snap_dir(c), name)
    with open(path, "rb") as f:
        data = f.read()
    mtime = datetime.datetime.utcfromtimestamp(os.path.getmtime(path))
    return {"name": name, "creation_time": mtime.strftime("%Y-%m-%dT%H:%M:%S"),
            "size": len(data), "checksum": hashlib.sha256(data).hexdigest()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj=None, raw=None, ctype="application/json"):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def ok(self, result):
        self.answer(200, {"result": result, "status": "ok", "time": 0.001})

    def error(self, status, msg):
        self.answer(status, {"status": {"error": msg}, "time": 0.0})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def fault(self, op):
        with LOCK:
            f = FAULTS.get(op)
        if f and f.get("status"):
            self.error(int(f["status"]), "injected failure of %s" % op)
            return True
        return False

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        with LOCK:
            REQUESTS.append("%s %s" % (self.command, url.path))
        data = self.body()
        if path == "/__ping":
            return self.answer(200, raw=b"pong", ctype="text/plain")
        if path == "/__stats":
            with LOCK:
                return self.answer(200, {"requests": list(REQUESTS)})
        if path == "/__fault":
            obj = json.loads(data or b"{}")
            with LOCK:
                FAULTS[obj["op"]] = obj
            return self.answer(200, {"ok": True})
        if ARGS.api_key and self.headers.get("api-key") != ARGS.api_key:
            return self.error(401, "Must provide an API key or an Authorization bearer token")
        m = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not m:
            return self.error(404, "Not found: %s" % path)
        c, rest = m.group(1), m.group(2) or ""
        exists = os.path.exists(coll_path(c))
        if rest == "" and self.command == "PUT":
            if not exists:
                save_points(c, [])
            return self.ok(True)
        if rest == "" and self.command == "DELETE":
            if exists:
                os.unlink(coll_path(c))
            return self.ok(exists)
        if rest == "/snapshots/upload" and self.command == "POST":
            return self.upload(c, data)
        if not exists:
            return self.error(404, "Not found: Collection `%s` doesn't exist!" % c)
        if rest == "/points" and self.command == "PUT":
            points = {str(p["id"]): p for p in load_points(c)}
            for p in json.loads(data)["points"]:
                points[str(p["id"])] = p
            save_points(c, list(points.values()))
            return self.ok({"operation_id": 1, "status": "completed"})
        if rest == "/points/scroll" and self.command == "POST":
            return self.ok({"points": load_points(c), "next_page_offset": None})
        if rest == "/snapshots" and self.command == "POST":
            if self.fault("create"):
                return None
            return self.create(c)
        if rest == "/snapshots" and self.command == "GET":
            d = snap_dir(c)
            names = sorted(os.listdir(d)) if os.path.isdir(d) else []
            return self.ok([describe(c, n) for n in names if not n.endswith(".tmp")])
        m = re.fullmatch(r"/snapshots/([^/]+)", rest)
        if m:
            name = m.group(1)
            spath = os.path.join(snap_dir(c), name)
            if not os.path.exists(spath) or name.startswith("."):
                return self.error(404, "Not found: Snapshot %s not found" % name)
            if self.command == "GET":
                if self.fault("download"):
                    return None
                with open(spath, "rb") as f:
                    raw = f.read()
                with LOCK:
                    mode = (FAULTS.get("download") or {}).get("mode")
                if mode == "corrupt":
                    raw = raw[:-2] + bytes([raw[-2] ^ 1]) + raw[-1:]
                return self.answer(200, raw=raw, ctype="application/octet-stream")
            if self.command == "DELETE":
                if self.fault("delete"):
                    return None
                os.unlink(spath)
                return self.ok(True)
        return self.error(404, "Not found: %s %s" % (self.command, path))

    def create(self, c):
        stamp = datetime.datetime.utcnow().strftime("%Y-%m-%d-%H-%M-%S")
        name = "%s-%d-%s.snapshot" % (c, int(time.time() * 1000) % 10**9, stamp)
        doc = {"format": "qdrant-fake snapshot 1", "collection": c, "points": load_points(c),
               "pad": "x" * ARGS.pad}
        write_atomic(os.path.join(snap_dir(c), name), json.dumps(doc, sort_keys=True).encode())
        return self.ok(describe(c, name))

    def upload(self, c, data):
        if self.fault("upload"):
            return None
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            return self.error(400, "Bad request: expected multipart/form-data, got %r" % ctype)
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + data)
        snap = None
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "snapshot":
                snap = part.get_payload(decode=True)
        if snap is None:
            return self.error(400, "Bad request: no 'snapshot' field")
        try:
            doc = json.loads(snap)
            points = doc["points"]
        except (ValueError, KeyError):
            return self.error(400, "Bad request: not a snapshot")
        save_points(c, points)
        with LOCK:
            REQUESTS.append("restored %s priority=%s" % (c, ",".join(q.get("priority", []))))
        return self.ok(True)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def watch(parent, deadline):
    while time.time() < deadline:
        if parent:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
        time.sleep(0.5)
    os._exit(0)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--pad", type=int, default=4096)
    ARGS = ap.parse_args()
    os.makedirs(os.path.join(ARGS.data, "collections"), exist_ok=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=watch, args=(ARGS.parent_pid, time.time() + ARGS.max_seconds),
                     daemon=True).start()
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
