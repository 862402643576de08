#!/usr/bin/env node
// test_binary.js -- binary and JSON messages in headless Chromium (issue 14).
//
// One ferryd over a real redis-server (--client-publish). For each transport
// ferry.js can end on (websocket, sse, poll; the demo page's ?transport=
// forces it), the page subscribes and the app publishes a 1 MiB random blob
// and then 100 random 16 KiB chunks (POST /ferry/publish, application/
// octet-stream): the page must get them as Uint8Array, with the same sha256,
// in order, each once (data ids = the ids the publish API answered). A JSON
// object published with application/json reaches the page as an object.
// Then the page publishes a random binary chunk and a JSON object
// (ferry.publish with a Uint8Array / an object): a backend service
// subscribed to ferry:in:CHANNEL on Redis reads them intact (base64 with
// "kind":"binary"; "kind":"json").
//
// Over WebSocket, Chromium negotiates permessage-deflate (the JSON travels
// compressed, the random bytes as they are).
//
// Everything binds to 127.0.0.1 on free ports; every wait is bounded. Exit
// 77 (skipped) when Chromium, redis-server or the npm packages are missing.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, skip } = harness;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const REDIS = process.env.REDIS_SERVER || '/usr/bin/redis-server';
const OVERALL_MS = 170000;
const DEBUG = !!process.env.DEBUG;
const OPEN_MS = 20000;
const DELIVER_MS = 40000;
const SETTLE_MS = 700;

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM);
if (!fs.existsSync(REDIS)) skip('redis-server not found at ' + REDIS);
const { chromium } = harness.load('playwright-core');
const tally = new harness.Tally();

function sha(b) { return crypto.createHash('sha256').update(b).digest('hex'); }

function post(port, urlPath, body, type) {
  return harness.withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: urlPath, agent: false,
      headers: { 'Content-Type': type, 'Content-Length': body.length } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  }), 10000, 'POST ' + urlPath);
}

async function publish(port, channel, body, type) {
  const r = await post(port, '/ferry/publish/' + channel, body, type || 'application/octet-stream');
  assert(r.status === 200, 'publish: ' + r.status + ' ' + r.body);
  return JSON.parse(r.body).id;
}

// A backend service's view: SUBSCRIBE on a raw RESP connection; next()
// resolves with the next pub/sub payload (a Buffer).
class RedisSubscriber {
  constructor(port, channel) {
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    this.got = [];
    this.sock = net.connect(port, '127.0.0.1');
    const ch = Buffer.from(channel);
    this.sock.write('*2\r\n$9\r\nSUBSCRIBE\r\n$' + ch.length + '\r\n' + channel + '\r\n');
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    this.sock.on('error', () => {});
  }
  // pub/sub pushes only: *3 $7 message $N channel $M payload (and the subscribe answer)
  parse() {
    for (;;) {
      const items = [];
      let at = 0;
      const nl = this.buf.indexOf('\r\n');
      if (this.buf[0] !== 0x2a || nl < 0) return;
      const n = parseInt(this.buf.slice(1, nl).toString(), 10);
      at = nl + 2;
      for (let i = 0; i < n; i++) {
        const e = this.buf.indexOf('\r\n', at);
        if (e < 0) return;
        const kind = String.fromCharCode(this.buf[at]);
        const v = this.buf.slice(at + 1, e).toString();
        if (kind === ':') { items.push(parseInt(v, 10)); at = e + 2; continue; }
        const len = parseInt(v, 10);
        if (this.buf.length < e + 2 + len + 2) return;
        items.push(this.buf.slice(e + 2, e + 2 + len));
        at = e + 2 + len + 2;
      }
      this.buf = this.buf.slice(at);
      if (String(items[0]) === 'message') {
        if (this.waiting.length) this.waiting.shift()(items[2]);
        else this.got.push(items[2]);
      }
    }
  }
  next(ms) {
    if (this.got.length) return Promise.resolve(this.got.shift());
    return harness.withTimeout(new Promise((resolve) => this.waiting.push(resolve)), ms || 10000,
      'a message on ferry:in');
  }
  close() { this.sock.destroy(); }
}

let chrome = null, ferryd = null, redis = null;

async function openPage(transport) {
  const page = await chrome.browser.newPage();
  page.on('pageerror', (e) => console.log('  page error: ' + e));
  await page.goto('http://127.0.0.1:' + ferryd.port + '/ferry/?channel=warm-' + transport +
    '&transport=' + transport);
  const deadline = Date.now() + OPEN_MS;
  let st = null;
  while (Date.now() < deadline) {
    st = await page.evaluate(() => window.ferry ? { state: window.ferry.state, transport: window.ferry.transport } : null);
    if (st && st.state === 'open' && st.transport) break;
    await sleep(100);
  }
  assert(st && st.state === 'open' && st.transport === transport, 'page on ' + JSON.stringify(st));
  return page;
}

// Subscribe the page to channel, keeping every (id, data) it is handed.
async function pageSubscribe(page, channel) {
  await page.evaluate((ch) => new Promise((resolve) => {
    window.got = window.got || {};
    window.got[ch] = [];
    window.ferry.subscribe(ch, (data, m) => { window.got[ch].push({ id: m.id, data }); });
    // subscribed once the channel has a cursor (long-poll has no subscribed event)
    const t = setInterval(() => {
      const sub = window.ferry.subs[ch];
      if (sub && sub.cursor) { clearInterval(t); resolve(); }
    }, 50);
  }), channel);
}

async function waitCount(page, channel, n) {
  const deadline = Date.now() + DELIVER_MS;
  let c = 0;
  while (Date.now() < deadline) {
    c = await page.evaluate((ch) => window.got[ch].length, channel);
    if (c >= n) break;
    await sleep(100);
  }
  assert(c >= n, channel + ': ' + c + ' of ' + n + ' messages on the page');
  await sleep(SETTLE_MS);
}

async function binaryCase(transport) {
  const page = await openPage(transport);
  try {
    const ch = 'bin-' + transport;
    let ext = '';
    if (transport === 'websocket') {
      // Chromium offers permessage-deflate; ferryd takes it
      ext = await page.evaluate(() => window.ferry.conn.ws.extensions);
      assert(/^permessage-deflate/.test(ext), 'Chromium negotiated "' + ext + '"');
      ext = '; ' + ext;
    }
    await pageSubscribe(page, ch);
    const sent = [crypto.randomBytes(1 << 20)];
    for (let i = 0; i < 100; i++) sent.push(crypto.randomBytes(16 << 10));
    const ids = [];
    for (const b of sent) ids.push(await publish(ferryd.port, ch, b));
    if (DEBUG) console.log('  published ' + ids.length);
    await waitCount(page, ch, sent.length);
    const got = await page.evaluate(async (c) => {
      const out = [];
      for (const m of window.got[c]) {
        const ok = m.data instanceof Uint8Array;
        const h = ok ? Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', m.data)))
          .map((x) => x.toString(16).padStart(2, '0')).join('') : String(m.data).slice(0, 40);
        out.push({ id: m.id, bytes: ok, len: ok ? m.data.byteLength : -1, sha: h });
      }
      return out;
    }, ch);
    assert(got.length === sent.length, 'got ' + got.length + ' messages, sent ' + sent.length + ' (duplicates?)');
    assert(got.every((m) => m.bytes), 'not a Uint8Array: ' + JSON.stringify(got.find((m) => !m.bytes)));
    assert(JSON.stringify(got.map((m) => m.id)) === JSON.stringify(ids), 'ids differ or out of order');
    for (let i = 0; i < sent.length; i++)
      assert(got[i].sha === sha(sent[i]), 'message ' + i + ': sha256 differs (' + got[i].len + ' bytes)');

    // JSON from the app: an object on the page
    const jch = 'json-' + transport;
    await pageSubscribe(page, jch);
    const obj = { t: transport, list: [1, 2, { x: null }], ok: true };
    await publish(ferryd.port, jch, Buffer.from(JSON.stringify(obj)), 'application/json');
    await waitCount(page, jch, 1);
    const j = await page.evaluate((c) => window.got[c][0].data, jch);
    assert(typeof j === 'object' && JSON.stringify(j) === JSON.stringify(obj), 'JSON on the page: ' + JSON.stringify(j));

    // the page publishes binary and JSON: a backend service reads them over Redis
    const up = 'up-' + transport;
    const sub = new RedisSubscriber(redis.port, 'ferry:in:' + up);
    try {
      await sleep(200);
      const chunk = crypto.randomBytes(48 << 10);
      const err = await page.evaluate(({ c, bytes }) => new Promise((resolve) => {
        const b = Uint8Array.from(atob(bytes), (x) => x.charCodeAt(0));
        window.ferry.publish(c, b, (e) => resolve(e ? JSON.stringify(e) : null));
      }), { c: up, bytes: chunk.toString('base64') });
      assert(err === null, 'page publish failed: ' + err);
      const m = JSON.parse((await sub.next()).toString());
      assert(m.kind === 'binary' && m.encoding === 'base64', 'inbound: ' + JSON.stringify(m).slice(0, 200));
      assert(sha(Buffer.from(m.data, 'base64')) === sha(chunk), 'the chunk the service read differs');
      const err2 = await page.evaluate((c) => new Promise((resolve) => {
        window.ferry.publish(c, { hello: [1, 2] }, (e) => resolve(e ? JSON.stringify(e) : null));
      }), up);
      assert(err2 === null, 'page JSON publish failed: ' + err2);
      const m2 = JSON.parse((await sub.next()).toString());
      assert(m2.kind === 'json' && m2.data === '{"hello":[1,2]}', 'inbound JSON: ' + JSON.stringify(m2));
    } finally {
      sub.close();
    }
    return '101 messages (1 MiB + 100 x 16 KiB) identical, in order, once; JSON object; page -> Redis intact' + ext;
  } finally {
    await page.close().catch(() => {});
  }
}

const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS / 1000 + ' s');
  harness.killChildren();
  process.exit(1);
}, OVERALL_MS);

async function main() {
  const t0 = Date.now();
  const rport = await harness.freePort();
  redis = harness.spawnChild('redis-server', REDIS, ['--port', String(rport), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no']);
  redis.port = rport;
  await harness.waitListening(rport, 10000, redis);
  ferryd = await harness.startFerryd(['--redis', 'redis://127.0.0.1:' + rport, '--client-publish',
    '--max-body', '2M', '--out-queue-max', '8M']);
  chrome = await harness.startChromium(chromium, CHROMIUM);
  const only = process.argv.slice(2);
  for (const t of ['websocket', 'sse', 'poll'].filter((x) => !only.length || only.includes(x)))
    await tally.run('binary and JSON over ' + t, () => binaryCase(t));
  await chrome.close();
  chrome = null;
  await harness.stop(ferryd, 'SIGTERM', 10000);
  await harness.stop(redis, 'SIGTERM', 10000);
  console.log(tally.summary(t0));
}

main().then(() => {
  clearTimeout(overall);
  process.exit(tally.failures ? 1 : 0);
}, async (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  if (chrome) await chrome.close();
  clearTimeout(overall);
  harness.killChildren();
  process.exit(99);
});
