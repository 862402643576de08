#!/usr/bin/env node
// test_ws_node.js -- Node's `ws` client (npm, pinned in tests/package.json)
// against a ferryd this script starts itself on a free loopback port:
// URL subscribe, HTTP publish, client publish + ack, a fragmented echo,
// ws.ping(), and the drain on SIGTERM (close 1012 "retry=<ms>").
// Exits non-zero on any failure; the whole run is bounded by a timer.
'use strict';

const http = require('http');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, withTimeout } = harness;

const WebSocket = harness.load('ws');

const OVERALL_MS = 30000;
const WAIT_MS = 5000;
const RECONNECT_DELAY_MS = 3000;

let server = null;   // ferryd: harness.startFerryd()
const tally = new harness.Tally();

// The first failure ends the run (ferryd is killed at exit, by its PID).
function fail(msg) {
  tally.notOk(msg);
  if (server && server.log) console.log('---- ferryd log ----\n' + server.log.slice(-4000));
  console.log(tally.summary());
  process.exit(1);
}

const overall = setTimeout(() => fail('the test did not finish within ' + OVERALL_MS + ' ms'), OVERALL_MS);

// A ws client whose messages are queued, so a test can await the next one.
function client(url, protocols) {
  const ws = new WebSocket(url, protocols, { handshakeTimeout: WAIT_MS });
  const queue = [];
  const waiters = [];
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    if (waiters.length) waiters.shift()(m);
    else queue.push(m);
  });
  ws.on('error', (e) => { ws.lastError = e; });
  ws.next = (what) => withTimeout(new Promise((resolve) => {
    if (queue.length) resolve(queue.shift());
    else waiters.push(resolve);
  }), WAIT_MS, what || 'a message');
  ws.nextJSON = async (what) => {
    const m = await ws.next(what);
    assert(!m.isBinary, 'ferry sent a binary frame');
    return JSON.parse(m.data.toString());
  };
  ws.opened = withTimeout(new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  }), WAIT_MS, 'the WebSocket to open');
  return ws;
}

function httpPublish(port, channel, body) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/ferry/publish/' + channel,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) } },
    (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  }), WAIT_MS, 'the publish response');
}

async function main() {
  server = await harness.startFerryd(['--echo', '--client-publish', '--drain-window', '500ms',
    '--drain-timeout', '5s', '--reconnect-delay', RECONNECT_DELAY_MS + 'ms']);
  const port = server.port;
  const base = 'ws://127.0.0.1:' + port;

  // 1. subscribe with ?ch=: the ferry.v1 subprotocol, then "open", then "subscribed"
  const sub = client(base + '/ferry/ws?ch=news', ['ferry.v1']);
  await sub.opened;
  assert(sub.protocol === 'ferry.v1', 'subprotocol ' + JSON.stringify(sub.protocol));
  let m = await sub.nextJSON('"open"');
  assert(m.type === 'open' && m.version === 1 && /^[0-9a-f]+$/.test(m.session), 'first frame ' + JSON.stringify(m));
  m = await sub.nextJSON('"subscribed"');
  assert(m.type === 'subscribed' && m.channel === 'news', 'second frame ' + JSON.stringify(m));
  tally.ok('subscribe via ?ch=news: subprotocol ferry.v1, "open" then "subscribed"');

  // 2. a message published with an HTTP POST reaches the subscriber
  const res = await httpPublish(port, 'news', 'hello from http ✓');
  assert(res.status === 200, 'publish status ' + res.status + ' ' + res.body);
  const id = JSON.parse(res.body).id;
  assert(/^[0-9a-f]{8}:1$/.test(id), 'id ' + id);
  m = await sub.nextJSON('the published message');
  assert(m.type === 'message' && m.channel === 'news' && m.id === id && m.data === 'hello from http ✓',
    'got ' + JSON.stringify(m));
  tally.ok('HTTP POST /ferry/publish/news delivered with its id');

  // 3. publish through the JSON protocol (--client-publish): ack + the message
  sub.send(JSON.stringify({ type: 'publish', channel: 'news', data: 'from node', ref: 7 }));
  const two = [await sub.nextJSON('ack or message'), await sub.nextJSON('ack or message')];
  const ack = two.find((x) => x.type === 'ack');
  const msg = two.find((x) => x.type === 'message');
  assert(ack && ack.ref === 7 && ack.channel === 'news', 'ack ' + JSON.stringify(two));
  assert(msg && msg.id === ack.id && msg.data === 'from node', 'message ' + JSON.stringify(two));
  assert(ack.id === id.split(':')[0] + ':2', 'ack id ' + ack.id + ' after ' + id);
  tally.ok('client publish: ack ref 7 and the message with the same id');

  // 4. fragmented messages to /ferry/echo come back whole
  const echo = client(base + '/ferry/echo');
  await echo.opened;
  echo.send('frag one, ', { fin: false });
  echo.send('frag two, ', { fin: false });
  echo.send('κόσμε', { fin: true });
  m = await echo.next('the echo of the fragmented text');
  assert(!m.isBinary && m.data.toString() === 'frag one, frag two, κόσμε', 'echo ' + m.data);
  const blob = Buffer.alloc(200000);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 7) & 0xff;
  echo.send(blob.subarray(0, 70000), { binary: true, fin: false });
  echo.send(blob.subarray(70000), { binary: true, fin: true });
  m = await echo.next('the echo of the fragmented binary');
  assert(m.isBinary && Buffer.compare(Buffer.from(m.data), blob) === 0, 'binary echo differs');
  tally.ok('fragmented text and binary messages echoed whole by /ferry/echo');

  // 5. ws.ping() gets a pong with the same payload
  const pong = withTimeout(new Promise((resolve) => echo.once('pong', resolve)), WAIT_MS, 'the pong');
  echo.ping(Buffer.from('node-ping'));
  const pdata = await pong;
  assert(pdata.toString() === 'node-ping', 'pong payload ' + pdata);
  const pong2 = withTimeout(new Promise((resolve) => sub.once('pong', resolve)), WAIT_MS, 'the pong');
  sub.ping();
  await pong2;
  tally.ok('ws.ping() answered by a pong (echo and ferry endpoints)');

  // 6. drain on SIGTERM: every client gets close 1012 "retry=<ms>"
  server.proc.kill('SIGTERM');
  const [c1, c2] = await withTimeout(Promise.all([sub.closed, echo.closed]), 8000, 'the drain closes');
  for (const [name, c] of [['subscriber', c1], ['echo', c2]]) {
    assert(c.code === 1012, name + ' close code ' + c.code + ' reason ' + JSON.stringify(c.reason));
    const r = /^retry=(\d+)$/.exec(c.reason);
    assert(r, name + ' close reason ' + JSON.stringify(c.reason));
    assert(Number(r[1]) < RECONNECT_DELAY_MS, name + ' retry ' + r[1] + ' >= --reconnect-delay');
  }
  tally.ok('SIGTERM: clients closed with 1012 and reason retry=<ms> (' + c1.reason + ', ' + c2.reason + ')');

  const ex = await withTimeout(server.exited, 8000, 'ferryd to exit');
  assert(ex.code === 0, 'ferryd exit ' + JSON.stringify(ex));
  assert(!/AddressSanitizer|runtime error/.test(server.log), 'sanitizer report in the ferryd log');
  tally.ok('ferryd exited 0 after the drain');
}

main().then(() => {
  clearTimeout(overall);
  console.log(tally.summary());
  process.exit(0);
}, (e) => fail(e && e.stack ? e.stack : String(e)));
