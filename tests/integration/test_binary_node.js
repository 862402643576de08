#!/usr/bin/env node
// test_binary_node.js -- Node's `ws` client (npm) and binary, JSON and
// permessage-deflate (issue 14): ws offers permessage-deflate by default
// and ferryd takes it (no context takeover either side); bytes published
// with application/octet-stream arrive as one binary frame equal to them
// (a 1 MiB random blob, and compressible bytes that travel compressed);
// JSON arrives as a JSON value in the envelope; a client publishes bytes
// (publish with "encoding":"binary", then a binary frame, compressed by ws)
// and another client gets them intact. Bounded by a timer.
'use strict';

const crypto = require('crypto');
const http = require('http');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, withTimeout } = harness;

const WebSocket = harness.load('ws');
const OVERALL_MS = 30000;
const WAIT_MS = 5000;
const tally = new harness.Tally();
let server = null;

const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS + ' ms');
  process.exit(1);
}, OVERALL_MS);

function client(url) {
  const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 }, maxPayload: 64 << 20 });
  const queue = [], waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    if (waiters.length) waiters.shift()(m); else queue.push(m);
  });
  ws.on('error', (e) => { ws.lastError = e; });
  ws.next = (what) => withTimeout(new Promise((resolve) => {
    if (queue.length) resolve(queue.shift()); else waiters.push(resolve);
  }), WAIT_MS, what || 'a message');
  ws.nextJSON = async () => {
    const m = await ws.next();
    assert(!m.isBinary, 'a binary frame where a text one was due');
    return JSON.parse(m.data.toString());
  };
  ws.opened = withTimeout(new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); }),
    WAIT_MS, 'the WebSocket to open');
  return ws;
}

function publish(port, channel, body, type) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/ferry/publish/' + channel,
      agent: false, headers: { 'Content-Type': type, 'Content-Length': body.length } }, (res) => {
      const c = [];
      res.on('data', (d) => c.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  }), WAIT_MS, 'publish');
}

async function subscribed(ws) {
  await ws.opened;
  const open = await ws.nextJSON();
  assert(open.type === 'open', JSON.stringify(open));
  const sub = await ws.nextJSON();
  assert(sub.type === 'subscribed', JSON.stringify(sub));
}

async function binaryFrames(port) {
  const ws = client('ws://127.0.0.1:' + port + '/ferry/ws?ch=bin');
  await subscribed(ws);
  assert(/permessage-deflate/.test(ws.extensions), 'deflate not negotiated: ' + ws.extensions);
  const blob = crypto.randomBytes(1 << 20);
  const soft = Buffer.alloc(200000, 'abcdefgh');
  for (const b of [blob, soft]) {
    const r = await publish(port, 'bin', b, 'application/octet-stream');
    assert(r.status === 200, 'publish ' + r.status + ' ' + r.body);
    const head = await ws.nextJSON();
    assert(head.encoding === 'binary' && head.size === b.length && head.id === JSON.parse(r.body).id,
      'head ' + JSON.stringify(head));
    const m = await ws.next('the binary frame');
    assert(m.isBinary && Buffer.compare(m.data, b) === 0, 'the frame differs from the bytes');
  }
  const r = await publish(port, 'bin', Buffer.from('{"a": [1, {"b": null}]}'), 'application/json');
  assert(r.status === 200, 'publish json ' + r.status);
  const j = await ws.nextJSON();
  assert(JSON.stringify(j.data) === '{"a":[1,{"b":null}]}', 'JSON data ' + JSON.stringify(j));
  ws.close();
  return 'one binary frame per message (1 MiB random, 200 KB compressible), JSON value, ' + ws.extensions;
}

async function clientSendsBinary(port) {
  const a = client('ws://127.0.0.1:' + port + '/ferry/ws?ch=up');
  const b = client('ws://127.0.0.1:' + port + '/ferry/ws');
  await subscribed(a);
  await b.opened;
  await b.nextJSON();
  const bytes = Buffer.concat([crypto.randomBytes(1000), Buffer.alloc(50000, 1)]);
  b.send(JSON.stringify({ type: 'publish', channel: 'up', encoding: 'binary', ref: 4 }));
  b.send(bytes, { binary: true, compress: true });
  const ack = await b.nextJSON();
  assert(ack.type === 'ack' && ack.ref === 4, 'ack ' + JSON.stringify(ack));
  await a.nextJSON();
  const m = await a.next('the binary frame');
  assert(m.isBinary && Buffer.compare(m.data, bytes) === 0, 'bytes differ');
  a.close();
  b.close();
  return 'publish + compressed binary frame reached a subscriber intact';
}

async function main() {
  const t0 = Date.now();
  server = await harness.startFerryd(['--client-publish', '--max-body', '2M', '--out-queue-max', '8M']);
  await tally.run('ws gets published bytes as one binary frame, with permessage-deflate', () => binaryFrames(server.port));
  await tally.run('ws publishes binary', () => clientSendsBinary(server.port));
  await harness.stop(server, 'SIGTERM', 10000);
  console.log(tally.summary(t0));
}

main().then(() => { clearTimeout(overall); process.exit(tally.failures ? 1 : 0); },
  (e) => { console.log('not ok - ' + (e && e.stack || e)); process.exit(99); });
