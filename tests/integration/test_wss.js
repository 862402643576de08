#!/usr/bin/env node
// test_wss.js -- ferry's TLS listener (--tls-listen) with real clients:
//   - a throwaway self-signed certificate for 127.0.0.1/localhost (openssl CLI);
//   - Node's `ws` over wss:// trusting that certificate through `ca:` (never
//     rejectUnauthorized:false): subprotocol ferry.v1, TLS 1.3, a JSON
//     subscribe, 20 messages published with HTTPS POSTs, exactly once, in order;
//   - the same client without `ca:` is refused (the certificate is checked);
//   - a client capped at TLS 1.1 cannot connect, the same client at TLS 1.2 can;
//   - headless Chromium on https://127.0.0.1:PORT/ferry/ (the demo page) with
//     each transport forced (websocket over wss://, sse, poll) shows the 20
//     messages published over HTTPS exactly once, in order.
// Binds only 127.0.0.1; every wait is bounded; the whole run is bounded by
// OVERALL_MS; ferryd and Chromium are killed by PID at exit. Exit 0 = pass,
// 1 = a case failed, 77 = skipped (Chromium, openssl or npm packages missing).
'use strict';

const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tls = require('tls');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, withTimeout, skip } = harness;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OVERALL_MS = 60000;
const WAIT_MS = 10000;     // one step: a connection, a message, a page reaching "open"
const SETTLE_MS = 500;     // after the last expected message: time for a duplicate to show up
const COUNT = 20;          // messages per case

const WebSocket = harness.load('ws', { why: false });
const { chromium } = harness.load('playwright-core', { why: false });
if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM);

/* ---------------- helpers ---------------- */

let ferryd = null;        // harness.startFerryd(); killed by its PID at exit, as Chromium is
const tally = new harness.Tally();

const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS + ' ms');
  if (ferryd && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
  process.exit(1);
}, OVERALL_MS);

// GET or POST to 127.0.0.1:port, over https when given our CA (tlsOptions
// { ca }); resolves {status, body, protocol}
function request(port, method, urlPath, body, tlsOptions) {
  return harness.request(port, method, urlPath, body, { ms: WAIT_MS, https: tlsOptions });
}

let PORT = 0, TLS_PORT = 0, CA = null;

async function publish(channel, text) {
  const r = await request(TLS_PORT, 'POST', '/ferry/publish/' + channel, text, { ca: CA });
  assert(r.status === 200, 'HTTPS publish to ' + channel + ' answered ' + r.status + ': ' + r.body);
  return JSON.parse(r.body).id;
}

function texts(tag) {
  const out = [];
  for (let i = 1; i <= COUNT; i++) {
    let t = tag + ' #' + String(i).padStart(2, '0');
    if (i === 3) t += ' ünïcödé ✓ 日本';
    if (i === 7) t += ' <b>not bold</b> & "quoted"\nsecond line';
    if (i === 9) t += ' ' + 'x'.repeat(3000);
    out.push(t);
  }
  return out;
}

// got: [{id, data}] in arrival order; ids/want: what the publishes answered / sent
function checkExactlyOnceInOrder(got, ids, want) {
  const seen = got.map((m) => m.id);
  assert(new Set(seen).size === seen.length, 'duplicate messages: ' + seen.join(' '));
  assert(got.length === want.length, got.length + ' messages received, expected ' + want.length + ': ' +
    seen.join(' '));
  for (let i = 0; i < want.length; i++) {
    assert(got[i].id === ids[i], 'message ' + (i + 1) + ' has id ' + got[i].id + ', publish answered ' + ids[i]);
    assert(got[i].data === want[i], 'message ' + (i + 1) + ' data differs: ' + JSON.stringify(got[i].data.slice(0, 80)));
  }
}

/* ---------------- setup ---------------- */

async function setup() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-wss-'));
  harness.atExit(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const cert = path.join(tmp, 'cert.pem'), key = path.join(tmp, 'key.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'pipe', timeout: 20000 });
  } catch (e) {
    if (e.code === 'ENOENT') skip('the openssl CLI is not installed');
    throw new Error('openssl req failed: ' + (e.stderr || e.message));
  }
  CA = fs.readFileSync(cert);

  TLS_PORT = await harness.freePort();
  ferryd = await harness.startFerryd(['--tls-listen', '127.0.0.1:' + TLS_PORT, '--tls-cert', cert, '--tls-key', key,
    '--log-level', 'warn', '--drain-window', '200ms', '--drain-timeout', '3s'],
  { alsoListening: [TLS_PORT], ms: WAIT_MS });
  PORT = ferryd.port;
}

/* ---------------- cases ---------------- */

async function caseListeners() {
  const h = await request(PORT, 'GET', '/ferry/healthz');
  assert(h.status === 200, 'http healthz answered ' + h.status);
  const s = await request(TLS_PORT, 'GET', '/ferry/healthz', undefined, { ca: CA });
  assert(s.status === 200 && JSON.parse(s.body).status === 'ok', 'https healthz answered ' + s.status + ' ' + s.body);
  return 'http and https healthz 200; https over ' + s.protocol;
}

async function caseWss() {
  const ws = new WebSocket('wss://127.0.0.1:' + TLS_PORT + '/ferry/ws', ['ferry.v1'],
    { ca: CA, handshakeTimeout: WAIT_MS });
  const queue = [], waiters = [];
  let tlsVersion = null;
  ws.on('upgrade', (res) => { tlsVersion = res.socket.getProtocol(); });
  ws.on('message', (d, bin) => {
    const m = bin ? { type: 'binary?' } : JSON.parse(d.toString());
    if (waiters.length) waiters.shift()(m); else queue.push(m);
  });
  ws.on('error', () => {});
  const next = (what) => withTimeout(new Promise((r) => (queue.length ? r(queue.shift()) : waiters.push(r))),
    WAIT_MS, what);
  try {
    await withTimeout(new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); }),
      WAIT_MS, 'the wss:// WebSocket to open');
    assert(ws.protocol === 'ferry.v1', 'subprotocol ' + JSON.stringify(ws.protocol));
    assert(tlsVersion === 'TLSv1.3', 'negotiated ' + tlsVersion + ', expected TLSv1.3');
    let m = await next('"open"');
    assert(m.type === 'open' && m.version === 1, 'first frame ' + JSON.stringify(m));
    ws.send(JSON.stringify({ type: 'subscribe', channel: 'wss-node', ref: 1 }));
    m = await next('"subscribed"');
    assert(m.type === 'subscribed' && m.channel === 'wss-node' && m.ref === 1, 'answer ' + JSON.stringify(m));

    const want = texts('node'), ids = [];
    for (const t of want) ids.push(await publish('wss-node', t));
    const got = [];
    for (let i = 0; i < COUNT; i++) {
      m = await next('message ' + (i + 1) + ' of ' + COUNT);
      assert(m.type === 'message' && m.channel === 'wss-node', 'unexpected frame ' + JSON.stringify(m));
      got.push(m);
    }
    await sleep(SETTLE_MS);
    got.push(...queue.splice(0));
    checkExactlyOnceInOrder(got, ids, want);
    return tlsVersion + ', ferry.v1, ' + got.length + ' messages once, in order';
  } finally {
    ws.terminate();
  }
}

// the certificate really is verified: without `ca` the handshake must fail
async function caseUntrusted() {
  const ws = new WebSocket('wss://127.0.0.1:' + TLS_PORT + '/ferry/ws', ['ferry.v1'], { handshakeTimeout: WAIT_MS });
  const err = await withTimeout(new Promise((resolve) => {
    ws.on('open', () => resolve(null));
    ws.on('error', resolve);
  }), WAIT_MS, 'the untrusted wss:// connection to settle');
  ws.terminate();
  assert(err, 'a wss:// client without the CA connected');
  assert(/SELF_SIGNED|UNABLE_TO_VERIFY/.test(err.code || ''), 'unexpected error ' + err.code + ' ' + err.message);
  return 'refused: ' + err.code;
}

function tlsConnect(maxVersion) {
  return withTimeout(new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: TLS_PORT, ca: CA, minVersion: 'TLSv1', maxVersion,
      ciphers: 'DEFAULT@SECLEVEL=0' }, () => { const v = s.getProtocol(); s.destroy(); resolve({ version: v }); });
    s.on('error', (e) => { s.destroy(); resolve({ error: e }); });
  }), WAIT_MS, 'a ' + maxVersion + ' handshake');
}

async function caseOldTls() {
  const old = await tlsConnect('TLSv1.1');
  assert(old.error, 'a client capped at TLSv1.1 connected with ' + old.version);
  // the client must have offered TLS 1.0/1.1 and the server refused it, not the client refusing itself
  assert(!/NO_PROTOCOLS_AVAILABLE|NO_CIPHERS/.test(old.error.code || ''),
    'inconclusive: the client could not offer TLS 1.1 (' + old.error.code + ')');
  const ctl = await tlsConnect('TLSv1.2');
  assert(ctl.version === 'TLSv1.2', 'control: the same client capped at TLSv1.2 got ' +
    (ctl.version || ctl.error.code));
  return 'TLSv1.1 refused (' + (old.error.code || old.error.message) + '); TLSv1.2 control connects';
}

let browser = null;

async function caseBrowser(transport) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const diag = { requests: [], websockets: [], console: [] };
  try {
    const page = await ctx.newPage();
    page.on('request', (r) => diag.requests.push(r.url()));
    page.on('websocket', (w) => diag.websockets.push(w.url()));
    page.on('console', (m) => diag.console.push(m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => diag.console.push('pageerror: ' + e.message));
    const channel = 'wss-browser-' + transport;
    const origin = 'https://127.0.0.1:' + TLS_PORT;
    await page.goto(origin + '/ferry/?channel=' + channel + '&transport=' + transport,
      { waitUntil: 'load', timeout: WAIT_MS });
    await page.waitForFunction(() => window.ferry && window.ferry.state === 'open', null,
      { timeout: WAIT_MS, polling: 100 });
    const st = await page.evaluate(() => ({ t: window.ferry.transport, shown: document.getElementById('transport').textContent,
      proto: location.protocol }));
    assert(st.proto === 'https:', 'page protocol ' + st.proto);
    assert(st.t === transport && st.shown === transport, 'forced ' + transport + ', ferry.transport is ' + st.t +
      ', #transport shows ' + st.shown);

    const want = texts(transport), ids = [];
    for (const t of want) ids.push(await publish(channel, t));
    await page.waitForFunction((k) => document.querySelectorAll('div.msg').length >= k, COUNT,
      { timeout: WAIT_MS, polling: 100 });
    await sleep(SETTLE_MS);
    const got = await page.$$eval('div.msg', (els) => els.map((e) => ({ id: e.getAttribute('data-id'), data: e.textContent })));
    checkExactlyOnceInOrder(got, ids, want);

    const after = await page.evaluate(() => window.ferry.transport);
    assert(after === transport, 'ended on ' + after + ', forced ' + transport);
    const ferryReqs = diag.requests.filter((u) => /\/ferry\//.test(u));
    assert(ferryReqs.every((u) => u.indexOf(origin + '/') === 0), 'a request not to ' + origin + ': ' +
      ferryReqs.filter((u) => u.indexOf(origin + '/') !== 0).join(' '));
    if (transport === 'websocket') {
      assert(diag.websockets.length >= 1, 'no WebSocket opened');
      assert(diag.websockets.every((u) => u.indexOf('wss://127.0.0.1:' + TLS_PORT + '/ferry/ws') === 0),
        'WebSocket URLs: ' + diag.websockets.join(' '));
    } else {
      assert(diag.websockets.length === 0, 'a WebSocket was opened with ' + transport + ' forced');
      const re = transport === 'sse' ? /\/ferry\/sse\?/ : /\/ferry\/poll\?/;
      assert(ferryReqs.some((u) => re.test(u)), 'no ' + re + ' request');
      if (transport === 'poll') assert(!ferryReqs.some((u) => /\/ferry\/sse\?/.test(u)), 'an SSE request with poll forced');
    }
    return transport + (transport === 'websocket' ? ' (' + diag.websockets[0].split('?')[0] + ')' : '') + ', ' +
      got.length + ' messages once, in order';
  } catch (e) {
    e.message += '\n  requests: ' + diag.requests.slice(-15).join('\n    ') +
      (diag.console.length ? '\n  console: ' + diag.console.slice(-10).join('\n    ') : '');
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

async function caseShutdown() {
  ferryd.proc.kill('SIGTERM');
  const ex = await withTimeout(ferryd.exited, WAIT_MS, 'ferryd to exit after SIGTERM');
  assert(ex.code === 0, 'ferryd exited with ' + JSON.stringify(ex));
  assert(!/AddressSanitizer|LeakSanitizer|runtime error/.test(ferryd.log), 'sanitizer report in the ferryd log');
  return 'exit 0';
}

/* ---------------- main ---------------- */

async function main() {
  const t0 = Date.now();
  await setup();
  await tally.run('http and https listeners both answer', caseListeners);
  await tally.run('ws over wss:// with ca: TLSv1.3, ferry.v1, HTTPS publishes once and in order', caseWss);
  await tally.run('wss:// without the CA is refused', caseUntrusted);
  await tally.run('a client capped at TLS 1.1 cannot connect', caseOldTls);

  const chrome = await harness.startChromium(chromium, CHROMIUM, { server: true });
  browser = chrome.browser;
  for (const t of ['websocket', 'sse', 'poll']) {
    await tally.run('Chromium on https://, ' + t + ' forced: HTTPS publishes once and in order', () => caseBrowser(t));
  }
  await chrome.close();
  await tally.run('ferryd exits 0 on SIGTERM', caseShutdown);

  if (tally.failures && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
  console.log(tally.summary(t0));
}

main().then(() => {
  clearTimeout(overall);
  process.exit(tally.failures ? 1 : 0);
}, (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  if (ferryd && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
  clearTimeout(overall);
  process.exit(1);
});
