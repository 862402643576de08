#!/usr/bin/env node
// test_errors.js -- honest failure and the server's word on transports
// (issue 19), in headless Chromium (playwright-core) against real ferryds:
//   1  the demo page on an origin ferryd does not allow (a copy of it on
//      another port), for each forced transport: an error event with reason
//      origin_not_allowed within the probe timeout (5 s), state closed, and
//      the demo shows the reason in words (#error);
//   2  a token refused (--jwt-secret, --require-token): invalid_token, and
//      token_required without one: state closed; with a token function the
//      state is retrying (a fresh token may do);
//   3  ferry unreachable (a closed port): unreachable, state retrying;
//   4  the page forces websocket, ferryd offers sse,poll (--transports):
//      transport_off, state closed, no WebSocket attempted;
//   5  ferryd --transports poll,sse: the page ends on poll (the server's
//      order) and never tries a WebSocket or an event stream first;
//   6  long-polling behind a proxy that answers one poll 503 with
//      Retry-After: 2: the next poll waits the 2 s, then messages flow.
// Everything binds to 127.0.0.1 on free ports; every wait is bounded; exit 77
// when Chromium or the npm packages are missing.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, skip, request } = harness;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OVERALL_MS = 120000;
const PROBE_MS = 5000;   // ferry.js's default probeTimeout

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM + ' (apt-get install chromium, or set CHROMIUM)');
const { chromium } = harness.load('playwright-core');
const tally = new harness.Tally();
const servers = [];
let chrome = null;

async function ferryd(args) {
  const s = await harness.startFerryd(['--log-level', 'warn'].concat(args || []));
  servers.push(s);
  return s;
}

async function withPage(fn, init) {
  const ctx = await chrome.browser.newContext();
  const page = await ctx.newPage();
  const seen = { websockets: [], requests: [] };
  page.on('websocket', (w) => seen.websockets.push(w.url()));
  page.on('request', (r) => seen.requests.push([Date.now(), r.method() + ' ' + r.url()]));
  page.on('response', (r) => seen.requests.push([Date.now(), 'answer ' + r.status() + ' ' + r.url()]));
  try {
    if (init) await ctx.addInitScript({ content: init });
    return await fn(page, seen);
  } finally {
    await ctx.close().catch(() => {});
  }
}

// A Ferry made in the page; resolves to its first error and its state then.
async function firstError(page, base, opts, ms) {
  return page.evaluate(([b, o, wait]) => new Promise((resolve) => {
    if (o.tokenFn) { o.token = function () { return 'bogus'; }; delete o.tokenFn; }
    o.share = false;
    const t0 = Date.now(), f = new Ferry(b, o);
    f.on('error', (e) => setTimeout(() => { resolve({ reason: e.reason, state: f.state, ms: Date.now() - t0 }); f.close(); }, 50));
    setTimeout(() => resolve({ reason: null, state: f.state, ms: wait }), wait);
  }), [base, opts || {}, ms || PROBE_MS + 1000]);
}

async function demo(page, url) {
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
}

async function main() {
  const t0 = Date.now();
  chrome = await harness.startChromium(chromium, CHROMIUM);
  const a = await ferryd();

  // the other origin: a copy of the demo page whose base is ferryd a
  const base = 'http://127.0.0.1:' + a.port + '/ferry/';
  const demoPage = (await request(a.port, 'GET', '/ferry/')).body
    .replace(/<script src="ferry\.js"><\/script>/, '<script src="' + base + 'ferry.js"></script>')
    .replace(/var base = [^;\n]*;/, 'var base = ' + JSON.stringify(base) + ';');
  assert(demoPage.indexOf(base + 'ferry.js') > 0 && demoPage.indexOf('var base = "') > 0,
    'the demo page no longer loads ferry.js or sets "var base": update this test');
  const site = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(demoPage);
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  const sitePort = site.address().port;

  for (const t of ['websocket', 'sse', 'poll']) {
    await tally.run('1 origin not allowed, ' + t, () => withPage(async (page, seen) => {
      const start = Date.now();
      await demo(page, 'http://127.0.0.1:' + sitePort + '/?transport=' + t);
      await page.waitForSelector('#error[data-reason]', { timeout: PROBE_MS });
      const ms = Date.now() - start;
      const shown = await page.evaluate(() => [document.getElementById('error').getAttribute('data-reason'),
        document.getElementById('error').textContent, ferry.state, document.getElementById('state').textContent]);
      assert(shown[0] === 'origin_not_allowed', 'reason ' + shown[0]);
      assert(/origin may not use ferry/.test(shown[1]), '#error says "' + shown[1] + '"');
      assert(shown[2] === 'closed' && shown[3] === 'closed', 'state ' + shown[2] + ' / #state ' + shown[3]);
      assert(seen.websockets.length === 0, 'a WebSocket was tried after the refusal');
      return 'origin_not_allowed after ' + ms + ' ms, state closed, #error: ' + shown[1];
    }));
  }

  const b = await ferryd(['--jwt-secret', 'test-secret-test-secret-test-secret!', '--require-token']);
  const bBase = 'http://127.0.0.1:' + b.port + '/ferry/';
  await tally.run('2 token refused', () => withPage(async (page) => {
    await demo(page, bBase);
    const bad = await firstError(page, '/ferry/', { token: 'bogus' });
    assert(bad.reason === 'invalid_token' && bad.state === 'closed', 'bogus token: ' + JSON.stringify(bad));
    const none = await firstError(page, '/ferry/', {});
    assert(none.reason === 'token_required' && none.state === 'closed', 'no token: ' + JSON.stringify(none));
    const fn = await firstError(page, '/ferry/', { tokenFn: true });
    assert(fn.reason === 'invalid_token' && fn.state === 'retrying', 'token function: ' + JSON.stringify(fn));
    return 'invalid_token in ' + bad.ms + ' ms (closed), token_required in ' + none.ms + ' ms (closed), ' +
      'token function: invalid_token (retrying)';
  }));

  await tally.run('3 ferry unreachable', () => withPage(async (page) => {
    await demo(page, base);
    const closedPort = await harness.freePort();
    const e = await firstError(page, 'http://127.0.0.1:' + closedPort + '/ferry/', {});
    assert(e.reason === 'unreachable' && e.state === 'retrying', JSON.stringify(e));
    return 'unreachable in ' + e.ms + ' ms, state retrying';
  }));

  const c = await ferryd(['--transports', 'sse,poll']);
  await tally.run('4 forced websocket, server offers sse,poll', () => withPage(async (page, seen) => {
    await demo(page, 'http://127.0.0.1:' + c.port + '/ferry/?transport=websocket');
    await page.waitForSelector('#error[data-reason]', { timeout: PROBE_MS });
    const r = await page.evaluate(() => [document.getElementById('error').getAttribute('data-reason'), ferry.state]);
    assert(r[0] === 'transport_off' && r[1] === 'closed', JSON.stringify(r));
    assert(seen.websockets.length === 0, 'a WebSocket was tried although the server does not offer it');
    return 'transport_off, state closed, no WebSocket tried';
  }));

  const d = await ferryd(['--transports', 'poll,sse']);
  await tally.run('5 --transports poll,sse: the server\'s order', () => withPage(async (page, seen) => {
    await demo(page, 'http://127.0.0.1:' + d.port + '/ferry/?channel=order');
    await page.waitForFunction(() => ferry.state === 'open', null, { timeout: 10000 });
    const t = await page.evaluate(() => ferry.transport);
    assert(t === 'poll', 'ended on ' + t);
    assert(seen.websockets.length === 0, 'a WebSocket was tried although the server does not offer it');
    assert(!seen.requests.some((r) => /\/ferry\/sse\?/.test(r[1])), 'an event stream was tried before poll');
    return 'poll, no WebSocket, no event stream';
  }));

  // 6: a proxy that answers the second poll 503 Retry-After: 2
  const e = await ferryd();
  let polls = 0, refusedAt = 0;
  const proxy = http.createServer((req, res) => {
    if (/^\/ferry\/poll\?/.test(req.url) && ++polls === 2) {
      refusedAt = Date.now();
      res.writeHead(503, { 'Retry-After': '2', 'Content-Type': 'text/plain' });
      res.end('busy\n');
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: e.port, method: req.method, path: req.url, headers: req.headers,
      agent: false }, (ur) => { res.writeHead(ur.statusCode, ur.headers); ur.pipe(res); });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  await tally.run('6 long-poll 503 Retry-After: 2', () => withPage(async (page, seen) => {
    await demo(page, 'http://127.0.0.1:' + proxy.address().port + '/ferry/?transport=poll&channel=ra');
    await page.waitForFunction(() => ferry.state === 'open', null, { timeout: 10000 });
    const deadline = Date.now() + 8000;
    while (polls < 3 && Date.now() < deadline) await sleep(50);
    assert(polls >= 3, 'no poll after the 503 within 8 s');
    const next = seen.requests.filter((r) => /^GET .*\/ferry\/poll\?/.test(r[1]))[2][0];
    const waited = next - refusedAt;
    assert(waited >= 1900, 'the next poll came ' + waited + ' ms after the 503 with Retry-After: 2');
    const r = await request(e.port, 'POST', '/ferry/publish/ra', 'after the wait');
    assert(r.status === 200, 'publish ' + r.status);
    await page.waitForFunction(() => document.querySelectorAll('div.msg').length === 1, null, { timeout: 10000 });
    return 'the next poll waited ' + waited + ' ms; a message arrived after';
  }));
  proxy.close();
  site.close();

  await chrome.close();
  for (const s of servers) {
    if (!(await harness.stop(s, 'SIGTERM', 20000)) || s.proc.exitCode !== 0) tally.notOk('ferryd did not exit 0 on SIGTERM');
    if (/AddressSanitizer|LeakSanitizer|runtime error/.test(s.log)) tally.notOk('ferryd reported a sanitizer error:\n' + s.log.slice(-3000));
  }
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
