#!/usr/bin/env python3
"""Generate a release tree shaped like a Spring Boot service's artifact, deterministically.

Usage: artifact.py DIR [--mb N] [--version V] [--seed S] [--jar-only MB]

Writes into DIR (which must not exist) a tree whose tar.gz is about N MB
(default 200), the same bytes for the same N and seed on every machine:

  app.jar                 a real zip (a "fat jar"): BOOT-INF/lib/*.jar stored
                          (nested jars are already compressed: random bytes),
                          BOOT-INF/classes/**.class deflated; ~45 % of the size
  lib/native/*.so         binary blobs, partly incompressible (~10 %)
  static/js, static/css   minified-looking JavaScript and CSS text, in chunks
                          of 5-200 KB (~1,200 files); compresses ~3.5:1
  static/img, static/fonts  images and fonts: incompressible (~10 %)
  templates/*.html, config/*.yml, config/*.properties, i18n/*.properties
                          small text files (~600)
  VERSION                 V (default v1), what tests/lib/demo-service.py serves

With --jar-only MB only app.jar (MB megabytes, incompressible like a real fat
jar) and VERSION are written: the seeds' deploy.sh copies one jar.
"""

import argparse
import os
import random
import sys
import zipfile

WORDS = (
    "function return const let var this that value index length object array string "
    "number boolean null undefined true false if else for while switch case break "
    "continue new class extends super import export default from async await promise "
    "then catch finally try throw error message conversation user assistant token "
    "model request response status header content type json data payload config "
    "render component props state effect memo callback ref context provider store "
    "dispatch action reducer selector route path params query fetch post get put "
    "delete session cookie storage local remote cache timeout retry interval delay "
    "width height margin padding border color background font size weight display "
    "flex grid position absolute relative top left right bottom transform opacity "
    "transition animation hover active focus disabled hidden visible overflow auto"
).split()
CSS_PROPS = ("display:flex", "margin:0 auto", "padding:8px 12px", "color:#333",
             "background:#fafafa", "border:1px solid #e5e5e5", "font-size:14px",
             "line-height:1.5", "border-radius:4px", "position:relative",
             "overflow:hidden", "opacity:.85", "transition:all .2s ease")


def line_pool(rnd, n, kind):
    pool = []
    for _ in range(n):
        if kind == "css":
            sel = ".%s-%s" % (rnd.choice(WORDS), rnd.choice(WORDS))
            props = ";".join(rnd.sample(CSS_PROPS, rnd.randint(2, 6)))
            pool.append("%s{%s}" % (sel, props))
        else:
            k = rnd.randint(6, 18)
            words = [rnd.choice(WORDS) if rnd.random() < 0.8 else "%s%d" % (rnd.choice(WORDS), rnd.randint(0, 9999))
                     for _ in range(k)]
            op = rnd.choice(("=", "(", ".", ":", "=>", ","))
            pool.append("%s%s%s;" % (words[0], op, " ".join(words[1:])))
    return pool


def text_blob(rnd, pool, size):
    out = []
    n = 0
    while n < size:
        chunk = rnd.choices(pool, k=256)
        s = "\n".join(chunk) + "\n"
        out.append(s)
        n += len(s)
    return "".join(out)[:size].encode("ascii")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def make_jar(path, rnd, size):
    """A zip shaped like a Spring Boot fat jar, about size bytes."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/MANIFEST.MF",
                   "Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.JarLauncher\n"
                   "Start-Class: com.example.chat.Application\n", zipfile.ZIP_DEFLATED)
        classes = max(1, size // 200) // 1000   # ~0.5 % of the size in classes
        for i in range(min(classes, 400) + 20):
            body = b"\xca\xfe\xba\xbe\x00\x00\x00\x3d" + bytes(rnd.choices(range(32, 127), k=rnd.randint(800, 6000)))
            z.writestr("BOOT-INF/classes/com/example/chat/%s/%s%d.class"
                       % (rnd.choice(WORDS), rnd.choice(WORDS).capitalize(), i), body, zipfile.ZIP_DEFLATED)
        left = size
        i = 0
        while left > 0:
            n = min(left, rnd.randint(200_000, 6_000_000))
            z.writestr("BOOT-INF/lib/%s-%s-%d.%d.%d.jar" % (rnd.choice(WORDS), rnd.choice(WORDS), rnd.randint(1, 6),
                                                            rnd.randint(0, 20), rnd.randint(0, 9)),
                       rnd.randbytes(n), zipfile.ZIP_STORED)
            left -= n
            i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--version", default="v1")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--jar-only", type=float, default=0)
    args = ap.parse_args()
    if os.path.exists(args.dir):
        sys.exit("artifact.py: %s exists" % args.dir)
    rnd = random.Random(args.seed)
    mb = 1 << 20
    root = args.dir
    os.makedirs(root)
    write(os.path.join(root, "VERSION"), (args.version + "\n").encode())
    if args.jar_only:
        make_jar(os.path.join(root, "app.jar"), rnd, int(args.jar_only * mb))
        return 0
    total = args.mb * mb
    # compressed size ~ incompressible + text / 3.5; incompressible 65 %.
    incompressible = 0.65 * total
    text = (total - incompressible) * 3.5
    make_jar(os.path.join(root, "app.jar"), rnd, int(incompressible * 0.7))
    # native libraries: random with runs of zeros (ELF padding)
    for i in range(6):
        n = int(incompressible * 0.15 / 6)
        parts = []
        while sum(len(p) for p in parts) < n:
            parts.append(rnd.randbytes(rnd.randint(4096, 65536)))
            parts.append(b"\0" * rnd.randint(256, 4096))
        write(os.path.join(root, "lib/native/lib%s%d.so" % (rnd.choice(WORDS), i)), b"\x7fELF" + b"".join(parts)[:n])
    # images and fonts
    left = int(incompressible * 0.15)
    i = 0
    while left > 0:
        n = min(left, rnd.randint(2_000, 400_000))
        ext = rnd.choice(("png", "jpg", "webp", "woff2"))
        sub = "fonts" if ext == "woff2" else "img"
        write(os.path.join(root, "static/%s/%s-%d.%s" % (sub, rnd.choice(WORDS), i, ext)), rnd.randbytes(n))
        left -= n
        i += 1
    # JavaScript and CSS chunks
    js_pool = line_pool(rnd, 30000, "js")
    css_pool = line_pool(rnd, 8000, "css")
    left = int(text * 0.97)
    i = 0
    while left > 0:
        n = min(left, rnd.randint(5_000, 200_000))
        if i % 5 == 4:
            write(os.path.join(root, "static/css/%s.%08x.css" % (rnd.choice(WORDS), rnd.getrandbits(32))),
                  text_blob(rnd, css_pool, n))
        else:
            write(os.path.join(root, "static/js/chunk-%s.%08x.js" % (rnd.choice(WORDS), rnd.getrandbits(32))),
                  text_blob(rnd, js_pool, n))
        left -= n
        i += 1
    # small text files: templates, configuration, messages
    for i in range(600):
        kind = i % 3
        n = rnd.randint(300, 8000)
        if kind == 0:
            path = "templates/%s/%s-%d.html" % (rnd.choice(WORDS), rnd.choice(WORDS), i)
            body = "<!doctype html>\n<html><body>\n" + text_blob(rnd, js_pool, n).decode() + "</body></html>\n"
        elif kind == 1:
            path = "config/%s-%d.yml" % (rnd.choice(WORDS), i)
            body = "".join("%s:\n  %s: %d\n" % (rnd.choice(WORDS), rnd.choice(WORDS), rnd.randint(0, 99999))
                           for _ in range(n // 30))
        else:
            path = "i18n/messages_%d.properties" % i
            body = "".join("%s.%s=%s\n" % (rnd.choice(WORDS), rnd.choice(WORDS), " ".join(rnd.choices(WORDS, k=6)))
                           for _ in range(n // 50))
        write(os.path.join(root, path), body.encode())
    write(os.path.join(root, "config/application.yml"),
          b"server:\n  port: ${PORT:8080}\nspring:\n  datasource:\n    url: jdbc:postgresql://localhost:5432/ai_chat\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
