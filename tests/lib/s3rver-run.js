// Runs s3rver (the npm package scripts/deps.sh installs) for the storage
// tests: on a port the kernel picks (or --port), written to --port-file once
// it listens; with --bucket created; every request logged to --log as
// "METHOD URL STATUS HOST", so a test can count what a client really sent
// (s3rver's own log truncates the URL); gone when --parent-pid is, so a
// killed test leaves no server behind.
//
//   node --openssl-legacy-provider s3rver-run.js --module DIR --dir DATA --port-file F --log L
//        [--port N] [--bucket NAME] [--parent-pid PID] [--max-seconds N]
'use strict';

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
