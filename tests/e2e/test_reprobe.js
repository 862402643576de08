#!/usr/bin/env node
// test_reprobe.js -- the remembered fallback and the background re-probe
// (issue 19), in headless Chromium (playwright-core), with a stream running
// (a message published every 100 ms the whole time):
//   1  behind a small proxy that drops every WebSocket upgrade (it closes the
//      socket; all else is streamed through to ferryd), the page falls back
//      to SSE (ws_failed) and remembers it: localStorage "ferry.fallback" is
//      {transport: sse, reason: ws_failed} for 24 h;
//   2  the proxy is gone (it now relays upgrades byte for byte, as a plain
//      network path would); a reload starts on the remembered transport (the
//      first transport request is the event stream, no WebSocket before it),
//      then the background re-probe (reprobe: 3000 on the test page) opens a
//      WebSocket and switches to it (reason "upgrade"), and the memory is
//      cleared. Across the switch no message is lost or repeated: every id
//      published from the page's first message on arrives once, in order.
// Counts (sent, received, lost, repeated) are printed for both phases.
// Everything binds to 127.0.0.1 on free ports; every wait is bounded; exit 77
// when Chromium or the npm packages are missing.
'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, skip, request } = harness;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OVERALL_MS = 90000;
const REPROBE_MS = 3000;
const DAY_MS = 24 * 3600 * 1000;

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM + ' (apt-get install chromium, or set CHROMIUM)');
const { chromium } = harness.load('playwright-core');
const tally = new harness.Tally();

const PAGE = `<!doctype html><meta charset="utf-8"><title>reprobe</title><link rel="icon" href="data:,">
<script src="/ferry/ferry.js"></script>
<script>
  window.got = []; window.log = [];
  window.ferry = new Ferry('/ferry/', { reprobe: ${REPROBE_MS}, share: false });
  ferry.on('transport', function (t, why) { log.push([t, why, Date.now()]); });
  ferry.subscribe('reprobe', function (data, m) { got.push(m.id); });
</script>`;

let ferryd = null, chrome = null;

// The page's origin: serves /test.html, streams everything else to ferryd,
// and drops or relays WebSocket upgrades.
class UpgradeDroppingProxy {
  constructor() {
    this.dropUpgrades = true;
    this.upgrades = { dropped: 0, relayed: 0 };
  }
  async start() {
    this.server = http.createServer((req, res) => {
      if (req.url === '/test.html') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(PAGE);
        return;
      }
      const up = http.request({ host: '127.0.0.1', port: ferryd.port, method: req.method, path: req.url,
        headers: req.headers, agent: false }, (ur) => {
        const h = Object.assign({}, ur.headers);
        delete h.connection;
        delete h['keep-alive'];
        delete h['transfer-encoding'];
        res.writeHead(ur.statusCode, h);
        res.flushHeaders();
        ur.pipe(res);
        ur.on('error', () => res.destroy());
      });
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    });
    this.server.on('upgrade', (req, sock, head) => {
      sock.on('error', () => {});
      if (this.dropUpgrades) {
        this.upgrades.dropped++;
        sock.destroy();
        return;
      }
      this.upgrades.relayed++;
      const u = net.connect(ferryd.port, '127.0.0.1', () => {
        let raw = req.method + ' ' + req.url + ' HTTP/1.1\r\n';
        for (let i = 0; i < req.rawHeaders.length; i += 2) raw += req.rawHeaders[i] + ': ' + req.rawHeaders[i + 1] + '\r\n';
        u.write(raw + '\r\n');
        if (head && head.length) u.write(head);
        sock.pipe(u);
        u.pipe(sock);
      });
      u.on('error', () => sock.destroy());
      sock.on('close', () => u.destroy());
      u.on('close', () => sock.destroy());
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }
}

// A message every 100 ms until stopped; the ids, in publish order.
function stream() {
  const s = { ids: [], stop: false };
  s.done = (async () => {
    let n = 0;
    while (!s.stop) {
      const r = await request(ferryd.port, 'POST', '/ferry/publish/reprobe', 'm' + n++);
      assert(r.status === 200, 'publish ' + r.status);
      s.ids.push(JSON.parse(r.body).id);
      await sleep(100);
    }
  })();
  return s;
}

// sent: published from the page's first message to the end; lost, repeated
function count(sent, got) {
  const first = sent.indexOf(got[0]);
  assert(first >= 0, 'the page got ids that were never published: ' + got.slice(0, 3).join(','));
  const want = sent.slice(first);
  const seen = new Set(got);
  const lost = want.filter((id) => !seen.has(id)).length;
  const repeated = got.length - seen.size;
  const inOrder = JSON.stringify(got) === JSON.stringify(want);
  return { sent: want.length, received: got.length, lost, repeated, inOrder };
}

async function waitFor(page, fn, arg, ms, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch (e) {
    const st = await page.evaluate(() => [ferry.state, ferry.transport, JSON.stringify(window.log)]).catch(() => []);
    throw new Error('timed out after ' + ms + ' ms waiting for ' + what + ' (state ' + st.join(', ') + ')');
  }
}

async function main() {
  const t0 = Date.now();
  ferryd = await harness.startFerryd(['--log-level', 'warn']);
  const proxy = await new UpgradeDroppingProxy().start();
  chrome = await harness.startChromium(chromium, CHROMIUM);
  const ctx = await chrome.browser.newContext();
  const page = await ctx.newPage();
  const events = [];
  page.on('websocket', (w) => events.push(['ws', Date.now(), w.url()]));
  page.on('request', (r) => events.push(['req', Date.now(), r.url()]));
  const url = 'http://127.0.0.1:' + proxy.port + '/test.html';
  const s = stream();
  let mark = 0;
  try {
    await tally.run('1 upgrade dropped: falls back to sse and remembers', async () => {
      await page.goto(url, { waitUntil: 'load', timeout: 15000 });
      await waitFor(page, () => ferry.state === 'open' && ferry.transport === 'sse', null, 15000, 'sse');
      await sleep(1500);
      const mem = await page.evaluate(() => JSON.parse(localStorage.getItem('ferry.fallback') || 'null'));
      assert(mem && mem.transport === 'sse' && mem.reason === 'ws_failed', 'localStorage ferry.fallback: ' + JSON.stringify(mem));
      const left = mem.expires - Date.now();
      assert(left > DAY_MS - 120000 && left <= DAY_MS, 'remembered for ' + left + ' ms, expected 24 h');
      assert(proxy.upgrades.dropped >= 1, 'no WebSocket upgrade reached the proxy');
      const c = count(s.ids.slice(), await page.evaluate(() => window.got.slice()));
      assert(c.lost === 0 && c.repeated === 0 && c.inOrder, 'messages: ' + JSON.stringify(c));
      return 'sse (ws_failed), remembered for ' + (left / 3600000).toFixed(2) + ' h; sent ' + c.sent + ', received ' +
        c.received + ', lost ' + c.lost + ', repeated ' + c.repeated;
    });

    await tally.run('2 proxy gone, reload: starts on sse, re-probes, upgrades to websocket', async () => {
      proxy.dropUpgrades = false;
      mark = Date.now();
      await page.reload({ waitUntil: 'load', timeout: 15000 });
      await waitFor(page, () => ferry.state === 'open', null, 15000, 'open after the reload');
      const first = await page.evaluate(() => ferry.transport);
      assert(first === 'sse', 'the reload started on ' + first + ', not the remembered sse');
      const after = events.filter((e) => e[1] >= mark);
      const firstSse = after.findIndex((e) => e[0] === 'req' && /\/ferry\/sse\?/.test(e[2]));
      const firstWs = after.findIndex((e) => e[0] === 'ws');
      assert(firstSse >= 0 && (firstWs < 0 || firstWs > firstSse), 'a WebSocket was tried before the remembered sse');
      await waitFor(page, () => ferry.transport === 'websocket', null, REPROBE_MS + 10000, 'the upgrade to websocket');
      const log = await page.evaluate(() => window.log);
      const up = log.filter((l) => l[0] === 'websocket')[0];
      assert(up && up[1] === 'upgrade', 'switched to websocket with reason ' + (up && up[1]));
      const mem = await page.evaluate(() => localStorage.getItem('ferry.fallback'));
      assert(mem === null, 'the remembered fallback is still there: ' + mem);
      // a few more messages on the WebSocket, then count
      await sleep(1500);
      s.stop = true;
      await s.done;
      const last = s.ids[s.ids.length - 1];
      await waitFor(page, (id) => window.got[window.got.length - 1] === id, last, 10000, 'the last message');
      await sleep(500);
      const c = count(s.ids.slice(), await page.evaluate(() => window.got.slice()));
      assert(c.lost === 0 && c.repeated === 0 && c.inOrder, 'messages: ' + JSON.stringify(c));
      const m = (await request(ferryd.port, 'GET', '/ferry/metrics')).body;
      const open = (t) => parseInt((new RegExp('^ferry_connections\\{transport="' + t + '"\\} (\\d+)$', 'm').exec(m) || [0, '-1'])[1], 10);
      assert(open('websocket') === 1 && open('sse') === 0, 'connections: websocket ' + open('websocket') + ', sse ' + open('sse'));
      return 'sse first, websocket after ' + (up[2] - mark) + ' ms (upgrade), memory cleared; sent ' + c.sent +
        ', received ' + c.received + ', lost ' + c.lost + ', repeated ' + c.repeated + '; ' + proxy.upgrades.relayed +
        ' upgrade relayed';
    });
  } finally {
    s.stop = true;
    await s.done.catch(() => {});
    await chrome.close();
    proxy.server.close();
  }
  if (!(await harness.stop(ferryd, 'SIGTERM', 20000)) || ferryd.proc.exitCode !== 0) tally.notOk('ferryd did not exit 0 on SIGTERM');
  if (/AddressSanitizer|LeakSanitizer|runtime error/.test(ferryd.log)) tally.notOk('ferryd reported a sanitizer error');
  console.log(tally.summary(t0));
}

const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS + ' ms');
  process.exit(1);
}, OVERALL_MS);

main().then(() => {
  clearTimeout(overall);
  process.exit(tally.failures ? 1 : 0);
}, (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  process.exit(99);
});
