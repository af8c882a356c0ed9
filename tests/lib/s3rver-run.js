// Runs s3rver (the npm package scripts/deps.sh installs) for the storage
// tests: on a port the kernel picks (or --port), written to --port-file once
// it listens; with --bucket created; every request logged to --log as
// "METHOD URL STATUS HOST", so a test can count what a client really sent
// (s3rver's own log truncates the URL); gone when --parent-pid is, so a
// killed test leaves no server behind.
//
//   node --openssl-legacy-provider s3rver-run.js --module DIR --dir DATA --port-file F --log L
//        [--port N] [--bucket NAME] [--parent-pid PID] [--max-seconds N] [--sse-kms 1]
//
// --sse-kms 1 answers as S3 does for a bucket whose default encryption is
// SSE-KMS, which s3rver cannot do itself: every answer says
// "x-amz-server-side-encryption: aws:kms", and the ETag header of a PUT, a
// part, a HEAD or a GET is not the MD5 of the bytes (S3 documents that it is
// not, for SSE-KMS and SSE-C objects); it stays 32 hex digits (and "-N" for
// a multipart object), as S3's do. The bytes stored are s3rver's as ever.
'use strict';

const crypto = require('crypto');
const fs = require('fs');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
for (const required of ['module', 'dir', 'port-file', 'log']) {
  if (!args[required]) {
    process.stderr.write(`s3rver-run: --${required} is required\n`);
    process.exit(2);
  }
}

const S3rver = require(args.module);
const log = fs.openSync(args.log, 'a');

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(args.port || 0),
  silent: true,
  directory: args.dir,
  // virtual-host-style requests to BUCKET.s3.localhost (curl resolves any
  // *.localhost to loopback itself); path-style ones to 127.0.0.1 as before
  serviceEndpoint: 'localhost',
  configureBuckets: args.bucket ? [{ name: args.bucket, configs: [] }] : [],
});

server.run().then((address) => {
  // first in line: s3rver rewrites req.url of a virtual-host-style request
  server.httpServer.prependListener('request', (req, res) => {
    const url = req.url;
    // 'close' also fires for a client that went away mid-body (status 0 then)
    let logged = false;
    const record = () => {
      if (logged) return;
      logged = true;
      const status = res.writableFinished ? res.statusCode : 0;
      fs.writeSync(log, `${req.method} ${url} ${status} ${req.headers.host}\n`);
    };
    res.on('finish', record);
    res.on('close', record);
    if (args['sse-kms']) {
      const setHeader = res.setHeader.bind(res);
      res.setHeader = (name, value) => {
        if (String(name).toLowerCase() === 'etag') {
          const m = /^"?([0-9a-fA-F]{32})(-[0-9]+)?"?$/.exec(String(value));
          if (m) {
            const opaque = crypto.createHash('md5').update(`sse-kms:${m[1]}`).digest('hex');
            value = `"${opaque}${m[2] || ''}"`;
          }
        }
        return setHeader(name, value);
      };
      setHeader('x-amz-server-side-encryption', 'aws:kms');
    }
  });
  const tmp = `${args['port-file']}.tmp`;
  fs.writeFileSync(tmp, `${address.port}\n`);
  fs.renameSync(tmp, args['port-file']);
}, (err) => {
  process.stderr.write(`s3rver-run: ${err.stack || err}\n`);
  process.exit(1);
});

const parent = Number(args['parent-pid'] || 0);
const deadline = Date.now() + 1000 * Number(args['max-seconds'] || 900);
setInterval(() => {
  let parentGone = false;
  if (parent) {
    try {
      process.kill(parent, 0);
    } catch (err) {
      parentGone = err.code === 'ESRCH';
    }
  }
  if (parentGone || Date.now() > deadline) process.exit(0);
}, 1000).unref();

// keeps the event loop alive even between requests
process.on('SIGTERM', () => process.exit(0));
