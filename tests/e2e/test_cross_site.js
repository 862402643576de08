#!/usr/bin/env node
// test_cross_site.js -- a real browser page on another origin against ferry.
//
// Headless Chromium (launched as tests/e2e/test_browser.js does) loads a page
// from a second loopback port (a foreign origin: same host 127.0.0.1, another
// port) and tries, with everything a page has, to read and write ferry's
// channels on the first port:
//   read   WebSocket, EventSource (SSE), fetch of a long-poll, a JSONP
//          <script> (ferryd runs with --jsonp)
//   write  fetch POST publish/NAME and POST send, no-cors (no preflight), the
//          way a CSRF page would
// None may get a byte of channel data into the page, and ferryd's access log
// must show each of those requests refused with 403, and nothing published.
// Then ferry behind a real nginx with nginx's default proxy config (only the
// WebSocket upgrade lines; Host is ferryd's own address) and --public-origin:
// the demo page loaded through nginx must end on WebSocket.
// Exits 77 (skipped) when Chromium, nginx or the npm packages are missing.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, skip, request } = harness;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const NGINX = process.env.NGINX || '/usr/sbin/nginx';
const OVERALL_MS = 90000;
const OPEN_MS = 20000;

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM);
if (!fs.existsSync(NGINX)) skip('nginx not found at ' + NGINX);
const { chromium } = harness.load('playwright-core');

const tally = new harness.Tally();
let chrome = null;

async function stopFerryd(server) {
  const p = server.proc;
  if (!(await harness.stop(server, 'SIGTERM', 20000))) throw new Error('ferryd did not exit within 20 s of SIGTERM');
  if (p.exitCode !== 0) throw new Error('ferryd exited with ' + (p.exitCode === null ? p.signalCode : p.exitCode));
  if (/AddressSanitizer|LeakSanitizer|runtime error/.test(server.log)) throw new Error('ferryd reported a sanitizer error');
}

// A static site on a port of its own: the foreign origin.
async function foreignSite(html) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(html);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port };
}

// What the foreign page runs: every way to read or write, each reporting
// what it got into window.__got (data it could read) and window.__done.
function attack({ ferry, secret, client }) {
  var got = window.__got = [];
  var done = window.__done = {};
  function finish(what, how) { if (!done[what]) done[what] = how; }
  function data(what, text) { if (String(text).indexOf(secret) >= 0 || /"cursors"|"events"|"type"/.test(text)) got.push(what + ': ' + text); }

  var ws = new WebSocket('ws://' + ferry + '/ferry/ws?ch=news', ['ferry.v1']);
  ws.onmessage = function (e) { data('ws', e.data); };
  ws.onerror = function () { finish('ws', 'error'); };
  ws.onclose = function () { finish('ws', 'closed'); };

  var es = new EventSource('http://' + ferry + '/ferry/sse?ch=news');
  es.onmessage = function (e) { data('sse', e.data); };
  es.addEventListener('ferry', function (e) { data('sse', e.data); });
  es.onerror = function () { es.close(); finish('sse', 'error'); };

  fetch('http://' + ferry + '/ferry/poll?ch=news').then(function (r) { return r.text(); })
    .then(function (t) { data('poll', t); finish('poll', 'read'); }, function () { finish('poll', 'blocked'); });

  window.steal = function (x) { data('jsonp', JSON.stringify(x)); finish('jsonp', 'called'); };
  var s = document.createElement('script');
  s.src = 'http://' + ferry + '/ferry/poll?ch=news&callback=steal';
  s.onerror = function () { finish('jsonp', 'error'); };
  s.onload = function () { setTimeout(function () { finish('jsonp', 'loaded'); }, 100); };
  document.head.appendChild(s);

  fetch('http://' + ferry + '/ferry/publish/news', { method: 'POST', mode: 'no-cors', body: 'pwned by publish' })
    .then(function () { finish('publish', 'sent'); }, function () { finish('publish', 'failed'); });
  fetch('http://' + ferry + '/ferry/send', { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
    body: JSON.stringify({ client: client, ops: [{ seq: 1, type: 'publish', channel: 'news', data: 'pwned by send' }] }) })
    .then(function () { finish('send', 'sent'); }, function () { finish('send', 'failed'); });
}

async function foreignPageCase() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-e2e-xs-'));
  harness.atExit(() => fs.rmSync(dir, { recursive: true, force: true }));
  const accessLog = path.join(dir, 'access.log');
  const ferryd = await harness.startFerryd(['--jsonp', '--client-publish', '--poll-timeout', '2s',
    '--access-log', accessLog, '--log-level', 'warn', '--drain-window', '200ms']);
  const secret = 'secret-' + Date.now();
  const pub = await request(ferryd.port, 'POST', '/ferry/publish/news', secret);
  assert(pub.status === 200, 'publish from the test answered ' + pub.status);
  const site = await foreignSite('<!doctype html><title>elsewhere</title><p>a page on another origin');
  const page = await chrome.browser.newPage();
  try {
    await page.goto('http://127.0.0.1:' + site.port + '/');
    // a real id, as the attacker's own server could negotiate one: only the Origin refuses it
    const neg = await request(ferryd.port, 'GET', '/ferry/negotiate');
    const client = JSON.parse(neg.body).client;
    await page.evaluate(attack, { ferry: '127.0.0.1:' + ferryd.port, secret, client });
    const want = ['ws', 'sse', 'poll', 'jsonp', 'publish', 'send'];
    const deadline = Date.now() + OPEN_MS;
    let done = {};
    while (Date.now() < deadline) {
      done = await page.evaluate(() => window.__done);
      if (want.every((k) => done[k])) break;
      await sleep(100);
    }
    await sleep(500);   // anything late still shows
    const got = await page.evaluate(() => window.__got);
    assert(want.every((k) => done[k]), 'not every attempt finished: ' + JSON.stringify(done));
    assert(got.length === 0, 'the foreign page read channel data: ' + JSON.stringify(got));
    assert(done.jsonp !== 'called', 'the JSONP callback ran');
    // ferryd's side: each route answered 403, and nothing was published
    await sleep(200);
    const lines = fs.readFileSync(accessLog, 'utf8').split('\n').filter((l) => l);
    for (const [route, re] of [['ws', / "GET \/ferry\/ws\?/], ['sse', / "GET \/ferry\/sse\?/],
      ['poll', / "GET \/ferry\/poll\?ch=news HTTP/], ['jsonp', / "GET \/ferry\/poll\?ch=news&callback=steal /],
      ['publish', / "POST \/ferry\/publish\/news /], ['send', / "POST \/ferry\/send /]]) {
      const mine = lines.filter((l) => re.test(l) && !/^127\.0\.0\.1 .* "-" "-" /.test(l));
      assert(mine.length > 0, route + ': not in the access log:\n' + lines.join('\n'));
      for (const l of mine) assert(/" 403 /.test(l), route + ' was not refused: ' + l);
    }
    const poll = await request(ferryd.port, 'GET', '/ferry/poll?ch=news,0:0');
    assert(poll.status === 200 && poll.body.indexOf('pwned') < 0, 'something was published: ' + poll.body);
    return Object.keys(done).map((k) => k + ' ' + done[k]).join(', ') + '; all 403';
  } finally {
    await page.close().catch(() => {});
    site.server.close();
    await stopFerryd(ferryd);
  }
}

async function behindDefaultNginxCase() {
  const nport = await harness.freePort();
  const origin = 'http://127.0.0.1:' + nport;
  const ferryd = await harness.startFerryd(['--public-origin', origin, '--log-level', 'warn', '--drain-window', '200ms']);
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-e2e-nginx-'));
  fs.chmodSync(d, 0o755);
  harness.atExit(() => fs.rmSync(d, { recursive: true, force: true }));
  const conf = path.join(d, 'nginx.conf');
  fs.writeFileSync(conf, [
    'worker_processes 1;', 'worker_shutdown_timeout 1s;', 'events { worker_connections 64; }', 'http {',
    '  access_log off;', '  client_body_temp_path ' + d + '/client_body;', '  proxy_temp_path ' + d + '/proxy;',
    '  fastcgi_temp_path ' + d + '/fastcgi;', '  uwsgi_temp_path ' + d + '/uwsgi;', '  scgi_temp_path ' + d + '/scgi;',
    '  server {', '    listen 127.0.0.1:' + nport + ';', '    location /ferry/ {',
    '      proxy_pass http://127.0.0.1:' + ferryd.port + ';',
    // nginx's manual's WebSocket lines, and nothing else: Host stays $proxy_host
    '      proxy_http_version 1.1;', '      proxy_set_header Upgrade $http_upgrade;',
    '      proxy_set_header Connection "upgrade";', '    }', '  }', '}', ''].join('\n'));
  const nginx = harness.spawnChild('nginx', NGINX, ['-p', d + '/', '-e', 'stderr', '-c', conf,
    '-g', 'daemon off; pid ' + d + '/nginx.pid; error_log stderr warn;']);
  const page = await chrome.browser.newPage();
  try {
    await harness.waitListening(nport, 10000, nginx);
    await page.goto(origin + '/ferry/');
    const deadline = Date.now() + OPEN_MS;
    let st = null;
    while (Date.now() < deadline) {
      st = await page.evaluate(() => window.ferry ? { state: window.ferry.state, transport: window.ferry.transport } : null);
      if (st && st.state === 'open' && st.transport) break;
      await sleep(100);
    }
    assert(st && st.state === 'open', 'ferry.js did not open behind nginx: ' + JSON.stringify(st));
    assert(st.transport === 'websocket', 'ferry.js ended on ' + st.transport + ', not websocket');
    return 'ended on ' + st.transport;
  } finally {
    await page.close().catch(() => {});
    await harness.stop(nginx, 'SIGQUIT', 10000);
    await stopFerryd(ferryd);
  }
}

const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS / 1000 + ' s');
  harness.killChildren();
  process.exit(1);
}, OVERALL_MS);

async function main() {
  const t0 = Date.now();
  chrome = await harness.startChromium(chromium, CHROMIUM);
  await tally.run('a page on another origin can neither read nor write a channel', foreignPageCase);
  await tally.run('behind nginx\'s default proxy config with --public-origin, ferry.js ends on WebSocket',
    behindDefaultNginxCase);
  await chrome.close();
  chrome = null;
  console.log(tally.summary(t0));
}

main().then(() => {
  clearTimeout(overall);
  process.exit(tally.failures ? 1 : 0);
}, async (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  if (chrome) await chrome.close();
  clearTimeout(overall);
  process.exit(99);
});
