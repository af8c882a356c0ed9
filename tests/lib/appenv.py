#!/usr/bin/env python3
"""What an app does with its .env file, for the rotate-secret tests: parse it
the way a dotenv library does, name values by fingerprint, and connect to
PostgreSQL with its DB_* credentials through libpq (ctypes, no psycopg).

Imported by demo-service.py and pgpool.py; also a command line for the tests.
No command prints a value unless asked with `get`, and none takes one as an
argument: secret-watch.py would (rightly) find it on the command line.

  appenv.py get FILE KEY            the value (no newline); exit 1 if absent
  appenv.py fingerprint FILE KEY    sha256:<12 hex> of the value ("absent" if none)
  appenv.py decoded-len FILE KEY ENC  the length of the value decoded as
                                    base64 | base64url | hex (exit 1 if it is not)
  appenv.py login FILE [--user-key K] [--password-key K] [--timeout S]
                                    connect over TCP with DB_HOST DB_PORT DB_NAME
                                    DB_USER DB_PASSWORD from FILE, SELECT 1;
                                    exit 0, or 1 with libpq's message on stderr
  appenv.py expect-rotated BEFORE AFTER KEY...
                                    AFTER is BEFORE with every assignment of each
                                    KEY given AFTER's value of KEY (same quoting,
                                    export prefix, comment and line ending; a KEY
                                    BEFORE lacks appended at the end in the file's
                                    line ending) and every other byte unchanged,
                                    and each KEY's value differs from BEFORE's;
                                    exit 0, or 1 naming the first difference by
                                    offset and line (values masked)

Parsing (the usual dotenv rules, as opsctl's own reader): blank lines and
`#` comments; `export ` prefix; KEY=value where an unquoted value ends at
` #` (a comment) and loses trailing blanks; 'single' quotes taken literally;
"double" quotes with \\" \\\\ and \\n escapes (a quoted value may span lines);
CRLF or LF line endings; the last assignment of a key wins.
"""

import base64
import binascii
import ctypes
import hashlib
import re
import sys

KEY_RE = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]*")


class EnvError(ValueError):
    pass


def _content_end(text, start, eol):
    return eol - 1 if eol > start and text[eol - 1:eol] == b"\r" else eol


def parse_entries(text):
    """Yields one dict per logical line: raw (bytes, with its line ending),
    start, end, and for an assignment key, value (str), val_start, val_end
    (the value as written, quotes included, offsets into text) and quote."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    pos, n, lineno = 0, len(text), 1
    while pos < n:
        nl = text.find(b"\n", pos)
        eol = nl if nl >= 0 else n
        cend = _content_end(text, pos, eol)
        end = eol + 1 if eol < n else n
        entry = {"start": pos, "line": lineno, "key": None}
        p = pos
        while p < cend and text[p] in b" \t":
            p += 1
        if p < cend and text[p:p + 1] != b"#":
            if text.startswith(b"export", p) and p + 6 < cend and text[p + 6] in b" \t":
                p += 6
                while p < cend and text[p] in b" \t":
                    p += 1
            m = KEY_RE.match(text, p, cend)
            if not m:
                raise EnvError("line %d: invalid line (expected KEY=VALUE)" % lineno)
            key = m.group(0).decode("ascii")
            p = m.end()
            while p < cend and text[p] in b" \t":
                p += 1
            if p >= cend or text[p:p + 1] != b"=":
                raise EnvError("line %d: invalid line (expected KEY=VALUE)" % lineno)
            p += 1
            while p < cend and text[p] in b" \t":
                p += 1
            val_start = p
            quote = text[p:p + 1] if p < cend and text[p:p + 1] in (b'"', b"'") else b""
            if quote:
                i, out = p + 1, bytearray()
                while i < n and text[i:i + 1] != quote:
                    if quote == b'"' and text[i:i + 1] == b"\\" and i + 1 < n:
                        c = text[i + 1:i + 2]
                        if c in (b'"', b"\\"):
                            out += c
                        elif c == b"n":
                            out += b"\n"
                        else:
                            out += text[i:i + 2]
                        i += 2
                        continue
                    out += text[i:i + 1]
                    i += 1
                if i >= n:
                    raise EnvError("line %d: unterminated quote" % lineno)
                val_end = i + 1
                nl = text.find(b"\n", val_end)
                eol = nl if nl >= 0 else n
                cend = _content_end(text, val_end, eol)
                end = eol + 1 if eol < n else n
                rest = text[val_end:cend].lstrip(b" \t")
                if rest and not rest.startswith(b"#"):
                    raise EnvError("line %d: text after the closing quote" % lineno)
                value = bytes(out)
            else:
                i, last, prev_blank = p, p, text[p - 1] in b" \t"
                while i < cend:
                    c = text[i]
                    if c == ord("#") and prev_blank:
                        break
                    prev_blank = c in b" \t"
                    if not prev_blank:
                        last = i + 1
                    i += 1
                val_end = last
                value = text[p:last]
            entry.update(key=key, value=value.decode("utf-8", "surrogateescape"),
                         val_start=val_start, val_end=val_end, quote=quote.decode("ascii"))
        entry["end"] = end
        entry["raw"] = text[pos:end]
        lineno += entry["raw"].count(b"\n")
        yield entry
        pos = end


def parse(text):
    """The env file as a dict (the last assignment of a key wins)."""
    env = {}
    for e in parse_entries(text):
        if e["key"] is not None:
            env[e["key"]] = e["value"]
    return env


def load(path):
    with open(path, "rb") as fh:
        return parse(fh.read())


def fingerprint(value):
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def fingerprints(env):
    return {k: fingerprint(v) for k, v in env.items()}


# ---- libpq through ctypes ----------------------------------------------------

CONNECTION_OK = 0
PGRES_TUPLES_OK = 2
_LIBPQ = None


def libpq():
    global _LIBPQ
    if _LIBPQ is None:
        lib = ctypes.CDLL("libpq.so.5")
        lib.PQconnectdbParams.restype = ctypes.c_void_p
        lib.PQconnectdbParams.argtypes = [ctypes.POINTER(ctypes.c_char_p),
                                          ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
        lib.PQstatus.restype = ctypes.c_int
        lib.PQstatus.argtypes = [ctypes.c_void_p]
        lib.PQerrorMessage.restype = ctypes.c_char_p
        lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
        lib.PQexec.restype = ctypes.c_void_p
        lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.PQresultStatus.restype = ctypes.c_int
        lib.PQresultStatus.argtypes = [ctypes.c_void_p]
        lib.PQclear.restype = None
        lib.PQclear.argtypes = [ctypes.c_void_p]
        lib.PQfinish.restype = None
        lib.PQfinish.argtypes = [ctypes.c_void_p]
        _LIBPQ = lib
    return _LIBPQ


def db_params(env, user_key="DB_USER", password_key="DB_PASSWORD", timeout=3):
    """libpq keywords from an app's DB_* variables; KeyError names a missing one."""
    missing = [k for k in ("DB_HOST", "DB_PORT", "DB_NAME", user_key, password_key) if k not in env]
    if missing:
        raise KeyError("the env file has no " + ", ".join(missing))
    return {"host": env["DB_HOST"], "port": env["DB_PORT"], "dbname": env["DB_NAME"],
            "user": env[user_key], "password": env[password_key],
            "connect_timeout": str(int(timeout)), "application_name": "opsctl-test-app",
            "sslmode": "disable"}


class PgError(Exception):
    pass


class Conn:
    """One libpq connection (a fresh login with the given parameters)."""

    def __init__(self, params):
        lib = libpq()
        keys = list(params)
        kw = (ctypes.c_char_p * (len(keys) + 1))(*[k.encode() for k in keys], None)
        vals = (ctypes.c_char_p * (len(keys) + 1))(
            *[str(params[k]).encode("utf-8", "surrogateescape") for k in keys], None)
        self.conn = lib.PQconnectdbParams(kw, vals, 0)
        if not self.conn:
            raise PgError("out of memory")
        if lib.PQstatus(self.conn) != CONNECTION_OK:
            msg = self.error()
            self.close()
            raise PgError(msg)

    def error(self):
        raw = libpq().PQerrorMessage(self.conn) if self.conn else b""
        return (raw or b"").decode("utf-8", "replace").strip().replace("\n", " ")

    def select1(self):
        lib = libpq()
        res = lib.PQexec(self.conn, b"SELECT 1")
        try:
            if not res or lib.PQresultStatus(res) != PGRES_TUPLES_OK:
                raise PgError(self.error() or "SELECT 1 failed")
        finally:
            if res:
                lib.PQclear(res)

    def close(self):
        if self.conn:
            libpq().PQfinish(self.conn)
            self.conn = None


def check_login(params):
    """None when a fresh connection logs in and answers SELECT 1, else the error."""
    try:
        conn = Conn(params)
    except PgError as exc:
        return str(exc) or "connection failed"
    try:
        conn.select1()
        return None
    except PgError as exc:
        return str(exc)
    finally:
        conn.close()


# ---- the command line ------------------------------------------------------------

def _eol_of(text):
    i = text.find(b"\n")
    if i < 0:
        return b"\n"
    return b"\r\n" if i > 0 and text[i - 1:i] == b"\r" else b"\n"


def _needs_quoting(value):
    return any(c in value for c in " \t#\"'\\\n\r")


def _written(value, quote):
    """value as opsctl's env writer puts it in a line written with quote."""
    if quote == "'" and ("'" in value or "\n" in value):
        quote = '"'
    if not quote and _needs_quoting(value):
        quote = '"'
    if not quote:
        return value.encode()
    if quote == '"':
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return (quote + value + quote).encode()


def expected_rotation(before, after_env, keys):
    out = bytearray()
    seen = set()
    for e in parse_entries(before):
        if e["key"] in keys:
            seen.add(e["key"])
            s, vs, ve = e["start"], e["val_start"], e["val_end"]
            new = _written(after_env[e["key"]], e["quote"])
            suffix = before[ve:e["end"]]
            out += before[s:vs] + new
            if not e["quote"] and not _needs_quoting(after_env[e["key"]]) and suffix.startswith(b"#"):
                out += b" "
            out += suffix
        else:
            out += e["raw"]
    eol = _eol_of(before)
    for k in keys:
        if k in seen:
            continue
        if out and not out.endswith(b"\n"):
            out += b"\n" if out.endswith(b"\r") else eol
        out += k.encode() + b"=" + _written(after_env[k], "") + eol
    return bytes(out)


def _decoded_len(value, enc):
    if enc == "hex":
        if not re.fullmatch(r"[0-9a-f]*", value) or len(value) % 2:
            raise ValueError("not lower-case hex")
        return len(binascii.unhexlify(value))
    if enc == "base64":
        if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value):
            raise ValueError("not base64")
        return len(base64.b64decode(value, validate=True))
    if enc == "base64url":
        if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):
            raise ValueError("not base64url")
        return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raise ValueError("unknown encoding " + enc)


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd in ("get", "fingerprint") and len(args) == 2:
        env = load(args[0])
        if args[1] not in env:
            if cmd == "fingerprint":
                print("absent")
                return 0
            return 1
        if cmd == "get":
            sys.stdout.write(env[args[1]])
        else:
            print(fingerprint(env[args[1]]))
        return 0
    if cmd == "decoded-len" and len(args) == 3:
        env = load(args[0])
        try:
            print(_decoded_len(env.get(args[1], ""), args[2]))
        except (ValueError, binascii.Error) as exc:
            sys.stderr.write("appenv: %s of %s: %s\n" % (args[2], args[1], exc))
            return 1
        return 0
    if cmd == "login" and args:
        import argparse
        ap = argparse.ArgumentParser(prog="appenv.py login")
        ap.add_argument("file")
        ap.add_argument("--user-key", default="DB_USER")
        ap.add_argument("--password-key", default="DB_PASSWORD")
        ap.add_argument("--timeout", type=int, default=5)
        a = ap.parse_args(args)
        try:
            params = db_params(load(a.file), a.user_key, a.password_key, a.timeout)
        except (OSError, EnvError, KeyError) as exc:
            sys.stderr.write("appenv: %s: %s\n" % (a.file, exc))
            return 2
        err = check_login(params)
        if err:
            sys.stderr.write("appenv: login as %s failed: %s\n" % (params["user"], err))
            return 1
        return 0
    if cmd == "expect-rotated" and len(args) >= 3:
        with open(args[0], "rb") as fh:
            before = fh.read()
        with open(args[1], "rb") as fh:
            after = fh.read()
        after_env = parse(after)
        keys = args[2:]
        for k in keys:
            if k not in after_env:
                sys.stderr.write("appenv: %s has no %s\n" % (args[1], k))
                return 1
        before_env = parse(before)
        same = [k for k in keys if before_env.get(k) == after_env[k]]
        if same:
            sys.stderr.write("appenv: %s: the value of %s did not change\n" % (args[1], ", ".join(same)))
            return 1
        want = expected_rotation(before, after_env, keys)
        if want == after:
            return 0
        i = next((i for i in range(min(len(want), len(after))) if want[i] != after[i]),
                 min(len(want), len(after)))
        line = after[:i].count(b"\n") + 1
        masked = set(after_env[k] for k in keys) | set(parse(before).get(k, "") for k in keys)

        def mask(b):
            s = b.decode("utf-8", "replace")
            for v in masked:
                if len(v) >= 4:
                    s = s.replace(v, "<value>")
            return repr(s)
        sys.stderr.write("appenv: %s differs from the expectation at byte %d (line %d): "
                         "expected %s, got %s (lengths %d, %d)\n" % (
                             args[1], i, line,
                             mask(want[want.rfind(b"\n", 0, i) + 1:i + 40]),
                             mask(after[after.rfind(b"\n", 0, i) + 1:i + 40]),
                             len(want), len(after)))
        return 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
