#!/usr/bin/env python3
"""A server that stalls, for the resource-fault tests (t700x).

Usage: stall.py --port-file FILE --mode MODE [--parent-pid PID] [--max-seconds S]
                [--log FILE] [--upstream HOST:PORT] [--match REGEX]
                [--after BYTES] [--count N] [--trickle SECONDS]

It listens on 127.0.0.1, on a free port it picks itself, written to --port-file
(atomically) once it listens. Every connection is held open until the client
goes away; nothing is ever closed by the server. Modes:

  silent   accept, never read, never answer (an HTTP service, an S3 endpoint
           or a PostgreSQL server that hangs: the client's connect succeeds)
  headers  read the HTTP request head, answer "200 OK" with a JSON content
           type and Content-Length: 1000, send 16 bytes of the body, stall
  proxy    a TCP proxy to --upstream; when a request line sent by the client
           matches --match (a regex on "METHOD PATH"), the answer to it is
           passed on for --after bytes and then stalls (the connection stays
           open, nothing more is forwarded); only the first --count matching
           requests stall (default: all), the others pass; with --trickle S
           the rest of the answer is not held back but passed on one byte
           every S seconds (a peer that never quite stalls)

The log (--log) gets one line per event: "conn N", "request N METHOD PATH",
"stall N" (the proxy stopped forwarding on connection N).

It exits on its own when the parent process (--parent-pid) is gone, or after
--max-seconds, so a killed test never leaves it behind.
"""

import argparse
import os
import random
import re
import socket
import sys
import threading
import time

LOCK = threading.Lock()
LOG = None
CONNS = 0
STALLS = 0


def log(msg):
    if LOG is None:
        return
    with LOCK:
        LOG.write("%.3f %s\n" % (time.time(), msg))
        LOG.flush()


def hold(sock):
    """Keep the connection open, reading nothing, until the peer closes it."""
    try:
        while True:
            time.sleep(3600)
    finally:
        sock.close()


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


def serve_headers(sock, n):
    head = read_head(sock)
    if head is None:
        sock.close()
        return
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    log("request %d %s" % (n, " ".join(line.split(" ")[:2])))
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"status":"UP", ')
    log("stall %d" % n)
    hold(sock)


class Proxy:
    def __init__(self, args):
        self.upstream = args.upstream.rsplit(":", 1)
        self.match = re.compile(args.match) if args.match else None
        self.after = args.after
        self.count = args.count
        self.trickle = args.trickle

    def take_stall(self):
        global STALLS
        with LOCK:
            if self.count >= 0 and STALLS >= self.count:
                return False
            STALLS += 1
            return True

    def trickle_rest(self, client, up, pending):
        """The rest of the answer, a byte every --trickle seconds."""
        try:
            while True:
                while not pending:
                    pending = up.recv(65536)
                    if not pending:
                        return
                client.sendall(pending[:1])
                pending = pending[1:]
                time.sleep(self.trickle)
        except OSError:
            pass
        finally:
            client.close()
            up.close()

    def serve(self, client, n):
        up = socket.create_connection((self.upstream[0], int(self.upstream[1])))
        state = {"armed": False, "sent": 0, "stalled": False}

        def c2u():
            buf = b""
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    if state["stalled"]:
                        continue  # swallowed
                    buf = (buf + data)[-8192:]
                    for m in re.finditer(rb"(?:^|\r\n)([A-Z]+) (\S+) HTTP/1\.[01]\r\n", buf):
                        req = "%s %s" % (m.group(1).decode(), m.group(2).decode("latin-1"))
                        log("request %d %s" % (n, req))
                        if self.match and self.match.search(req) and self.take_stall():
                            state["armed"] = True
                            state["sent"] = 0
                        buf = b""
                        break
                    up.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    up.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=c2u, daemon=True)
        t.start()
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                if state["armed"]:
                    room = self.after - state["sent"]
                    if len(data) >= room and self.trickle > 0:
                        client.sendall(data[:room])
                        log("trickle %d" % n)
                        self.trickle_rest(client, up, data[room:])
                        return
                    if len(data) >= room:
                        client.sendall(data[:room])
                        state["stalled"] = True
                        log("stall %d" % n)
                        up.close()
                        hold(client)
                        return
                    state["sent"] += len(data)
                client.sendall(data)
        except OSError:
            pass
        t.join(timeout=1)
        client.close()
        up.close()


def main():
    global LOG, CONNS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--mode", choices=("silent", "headers", "proxy"), required=True)
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--log")
    ap.add_argument("--upstream")
    ap.add_argument("--match")
    ap.add_argument("--after", type=int, default=0)
    ap.add_argument("--count", type=int, default=-1)
    ap.add_argument("--trickle", type=float, default=0)
    args = ap.parse_args()
    if args.mode == "proxy" and not args.upstream:
        ap.error("--mode proxy needs --upstream")
    if args.log:
        LOG = open(args.log, "a", encoding="utf-8")

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for _ in range(200):
        port = random.randint(20000, 60000)
        try:
            srv.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    else:
        sys.exit("stall.py: no free port")
    srv.listen(128)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, args.port_file)

    start = time.monotonic()

    def watchdog():
        while True:
            time.sleep(0.5)
            if args.parent_pid:
                try:
                    os.kill(args.parent_pid, 0)
                except OSError:
                    os._exit(0)
            if time.monotonic() - start > args.max_seconds:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    proxy = Proxy(args) if args.mode == "proxy" else None
    while True:
        client, _ = srv.accept()
        with LOCK:
            CONNS += 1
            n = CONNS
        log("conn %d" % n)
        if args.mode == "silent":
            target, targs = hold, (client,)
        elif args.mode == "headers":
            target, targs = serve_headers, (client, n)
        else:
            target, targs = proxy.serve, (client, n)
        threading.Thread(target=target, args=targs, daemon=True).start()


if __name__ == "__main__":
    main()
