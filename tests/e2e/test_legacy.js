#!/usr/bin/env node
// test_legacy.js -- the legacy app behind ferry, in a real browser: headless
// Chromium (playwright-core, Debian's /usr/bin/chromium) talks to ferry's port
// only, and ferry serves both the app's pages (--upstream) and its own routes.
//
// Started here: tests/integration/legacy_app.py (its CLI, on a free port,
// --ferry-url and --publish-key so its POST /publish goes to ferry) and
//   ferryd --upstream http://APP --publish-key KEY --callback publish:chat=/hooks/publish
// (no --client-publish: the app decides what happens to chat messages).
//
// Checked, once per transport (websocket, sse, poll; forced with the page's
// ?transport=), each in a fresh browser context:
//   - GET / through ferry is the app's page (X-Legacy-App), its ferry.js comes
//     from ferry, and the page ends on the forced transport;
//   - messages the app publishes, each with ONE POST /ferry/publish/news (the
//     test asks the app to, on its own port), appear on the page in order,
//     exactly once;
//   - a message typed into the page's chat form goes out with
//     ferry.publish('chat', ...) (WebSocket publish, or POST /ferry/send), reaches
//     the app as POST /hooks/publish, and the app's reply is shown on the page;
//     nothing is published on chat;
//   - every request of the page went to ferry's port.
// Then the app's HTML form (/form) is submitted in the browser and the echoed
// page checked, and /download?size=N (Content-Length and chunked) is fetched
// by the page through ferry, its size and sha256 checked against
// legacy_app.body_sha256.
//
// Everything binds to 127.0.0.1 on free ports; every wait is bounded, the
// whole run by OVERALL_MS; every process started is killed by its PID on
// exit. Exit 0 (passed), 1 (failed), 77 (skipped: no Chromium, python3 or
// npm packages).
'use strict';

const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, withTimeout, skip, request } = harness;

const HERE = __dirname;
const LEGACY_APP = path.join(HERE, '..', 'integration', 'legacy_app.py');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PYTHON3 = process.env.PYTHON3 || '/usr/bin/python3';

const OVERALL_MS = 90000;
const OPEN_MS = 15000;      // page load to a trusted transport
const DELIVER_MS = 10000;   // a message or a reply on the page
const SETTLE_MS = 500;      // after the last message: time for a duplicate to show up
const KEY = 'legacy-e2e-key-' + process.pid;
const DOWNLOAD_SIZE = 3 * 1024 * 1024 + 12345;

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM + ' (apt-get install chromium, or set CHROMIUM)');
if (!fs.existsSync(PYTHON3)) skip('python3 not found at ' + PYTHON3);
const { chromium } = harness.load('playwright-core');

// Every process started here (the app, ferryd) is a harness child: SIGKILLed
// by its PID at exit if it still runs.
let chrome = null;     // harness.startChromium()
let browser = null;    // chrome.browser
const tally = new harness.Tally();

/* ------------------------------------------------------------------ */
/* the app and ferryd                                                   */

const ports = { app: 0, ferry: 0 };
let app = null;
let ferryd = null;

async function startAll() {
  ports.app = await harness.freePort();
  ports.ferry = await harness.freePort();
  app = harness.spawnChild('legacy_app.py', PYTHON3, [LEGACY_APP, '--port', String(ports.app),
    '--ferry-url', 'http://127.0.0.1:' + ports.ferry, '--publish-key', KEY]);
  ferryd = await harness.startFerryd(['--upstream', 'http://127.0.0.1:' + ports.app, '--publish-key', KEY,
    '--callback', 'publish:chat=/hooks/publish',
    '--drain-window', '200ms', '--drain-timeout', '3s', '--log-level', 'warn'], { port: ports.ferry });
  await harness.waitListening(ports.app, 10000, app);
}

// The app publishes: it makes one POST /ferry/publish/news (with its key).
async function appPublishes(text) {
  const r = await request(ports.app, 'POST', '/publish?channel=news', text);
  assert(r.status === 200, 'the app\'s POST /publish answered ' + r.status + ': ' + r.body);
  const id = JSON.parse(r.body).id;
  assert(typeof id === 'string' && /:/.test(id), 'ferry answered the app no id: ' + r.body);
  return id;
}

async function hooksSeen() {
  const r = await request(ports.app, 'GET', '/hooks/seen');
  assert(r.status === 200, 'GET /hooks/seen answered ' + r.status);
  return JSON.parse(r.body);
}

/* ------------------------------------------------------------------ */
/* in the browser                                                      */

async function newPage(diag) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('request', (r) => diag.requests.push(r.method() + ' ' + r.url()));
  page.on('console', (m) => diag.console.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => diag.console.push('pageerror: ' + e.message));
  page.on('websocket', (w) => {
    diag.websockets.push(w.url());
    w.on('framesent', (f) => diag.frames.push('> ' + String(f.payload).slice(0, 160)));
    w.on('framereceived', (f) => diag.frames.push('< ' + String(f.payload).slice(0, 160)));
  });
  return { ctx, page };
}

function newDiag() {
  return { requests: [], console: [], websockets: [], frames: [] };
}

function onlyFerry(diag) {
  const origin = 'http://127.0.0.1:' + ports.ferry + '/';
  const wsOrigin = 'ws://127.0.0.1:' + ports.ferry + '/';
  const stray = diag.requests.filter((r) => r.split(' ')[1].indexOf(origin) !== 0)
    .concat(diag.websockets.filter((u) => u.indexOf(wsOrigin) !== 0));
  assert(stray.length === 0, 'the page made requests elsewhere than ferry\'s port: ' + stray.join(', '));
}

async function pageState(page) {
  return page.evaluate(() => ({
    state: window.ferry ? window.ferry.state : null,
    transport: window.ferry ? window.ferry.transport : null,
    shown: document.getElementById('transport').textContent,
    cursor: window.ferry && window.ferry.subs.news ? window.ferry.subs.news.cursor : null,
  }));
}

async function newsOnPage(page) {
  return page.$$eval('#news li', (els) => els.map((e) => e.textContent));
}

// One transport: the page, news from the app, chat to the app and back.
async function transportCase(transport) {
  const diag = newDiag();
  const { ctx, page } = await newPage(diag);
  try {
    const resp = await page.goto('http://127.0.0.1:' + ports.ferry + '/?transport=' + transport,
      { waitUntil: 'load', timeout: 15000 });
    assert(resp && resp.status() === 200, 'GET / through ferry answered ' + (resp && resp.status()));
    assert(resp.headers()['x-legacy-app'] === '1', 'GET / was not answered by the app (no X-Legacy-App)');
    assert((await page.title()) === 'Legacy app', 'the page title is "' + (await page.title()) + '"');
    const js = await request(ports.ferry, 'GET', '/ferry/ferry.js');
    assert(js.status === 200 && !js.headers['x-legacy-app'] && /Ferry/.test(js.body),
      '/ferry/ferry.js was not served by ferry (' + js.status + ')');
    assert(diag.requests.some((r) => /\/ferry\/ferry\.js$/.test(r)), 'the page did not load /ferry/ferry.js');

    try {
      await page.waitForFunction((t) => window.ferry && window.ferry.state === 'open' &&
        window.ferry.transport === t && window.ferry.subs.news && window.ferry.subs.news.cursor,
      transport, { timeout: OPEN_MS, polling: 100 });
    } catch (e) {
      const st = await pageState(page).catch(() => ({}));
      throw new Error('the page did not get subscribed to news over ' + transport + ' within ' + OPEN_MS +
        ' ms (state ' + st.state + ', transport ' + st.transport + ', cursor ' + st.cursor + ')');
    }
    const st = await pageState(page);
    assert(st.shown === transport, '#transport shows "' + st.shown + '", expected ' + transport);

    // news: the app publishes, the page shows
    const want = [];
    for (let i = 1; i <= 3; i++) {
      const t = transport + ' news #' + i + (i === 2 ? ' ünïcödé ✓ <b>&amp;</b>' : '');
      await appPublishes(t);
      want.push(t);
    }
    try {
      await page.waitForFunction((n) => document.querySelectorAll('#news li').length >= n, want.length,
        { timeout: DELIVER_MS, polling: 100 });
    } catch (e) {
      throw new Error('only ' + (await newsOnPage(page)).length + ' of ' + want.length +
        ' news items on the page after ' + DELIVER_MS + ' ms');
    }
    await sleep(SETTLE_MS);
    const got = await newsOnPage(page);
    assert(JSON.stringify(got) === JSON.stringify(want), 'news on the page: ' + JSON.stringify(got) +
      ', the app published ' + JSON.stringify(want));

    // chat: the browser publishes, the app answers the sender
    const before = (await hooksSeen()).length;
    const said = transport + ' says hi ' + process.pid + ' ✓';
    await page.fill('#chat-text', said);
    await page.click('#chat-form button[type=submit]');
    try {
      await page.waitForFunction(() => document.getElementById('reply').textContent !== '', null,
        { timeout: DELIVER_MS, polling: 100 });
    } catch (e) {
      throw new Error('no reply shown on the page within ' + DELIVER_MS + ' ms');
    }
    const reply = await page.$eval('#reply', (e) => e.textContent);
    assert(reply === 'app got: ' + said, '#reply shows ' + JSON.stringify(reply) + ', expected ' +
      JSON.stringify('app got: ' + said));
    const hooks = (await hooksSeen()).slice(before);
    assert(hooks.length === 1 && hooks[0].channel === 'chat' && hooks[0].data === said &&
      hooks[0].event === 'publish', 'POST /hooks/publish received ' + JSON.stringify(hooks));
    const sentVia = transport === 'websocket'
      ? diag.frames.some((f) => /^> .*"type":"publish".*"channel":"chat"/.test(f))
      : diag.requests.some((r) => /^POST http:\/\/127\.0\.0\.1:\d+\/ferry\/send/.test(r));
    assert(sentVia, 'the chat message did not go out over ' +
      (transport === 'websocket' ? 'the WebSocket' : 'POST /ferry/send'));
    // the app only replied: nothing was published on chat
    const p = await request(ports.ferry, 'GET', '/ferry/poll?ch=chat');
    assert(p.status === 200 && /:0$/.test(JSON.parse(p.body).cursors.chat),
      'something was published on chat: ' + p.body);

    // the transport really was the forced one
    if (transport === 'websocket') {
      assert(diag.websockets.some((u) => /\/ferry\/ws/.test(u)), 'no WebSocket to /ferry/ws');
    } else {
      assert(diag.websockets.length === 0, 'a WebSocket was opened although ' + transport + ' was forced');
      const re = transport === 'sse' ? /^GET [^ ]*\/ferry\/sse\?/ : /^GET [^ ]*\/ferry\/poll\?/;
      assert(diag.requests.some((r) => re.test(r)), 'no ' + transport + ' request');
    }
    onlyFerry(diag);
    return transport + ', ' + want.length + ' news, reply shown';
  } catch (e) {
    e.diag = diag;
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

async function formCase() {
  const diag = newDiag();
  const { ctx, page } = await newPage(diag);
  try {
    const resp = await page.goto('http://127.0.0.1:' + ports.ferry + '/form', { waitUntil: 'load', timeout: 15000 });
    assert(resp && resp.status() === 200 && resp.headers()['x-legacy-app'] === '1',
      'GET /form through ferry: ' + (resp && resp.status()));
    const name = 'Zoë & <co> ' + process.pid;
    const comment = 'line one\nline two = 2 + 2 ✓';
    await page.fill('input[name=name]', name);
    await page.fill('textarea[name=comment]', comment);
    const [nav] = await Promise.all([
      page.waitForNavigation({ waitUntil: 'load', timeout: 15000 }),
      page.click('button[type=submit]'),
    ]);
    assert(nav && nav.status() === 200 && nav.headers()['x-legacy-app'] === '1',
      'POST /form through ferry: ' + (nav && nav.status()));
    assert(nav.request().method() === 'POST', 'the form was not POSTed');
    const h1 = await page.$eval('h1', (e) => e.textContent);
    assert(h1 === 'Received', 'the echoed page says ' + JSON.stringify(h1));
    const fields = await page.$$eval('li', (els) => els.map((e) =>
      [e.querySelector('b').textContent, e.querySelector('span').textContent]));
    // (a textarea sends CRLF; the HTML parser turns the echoed CRLF back into LF)
    const want = [['name', name], ['comment', comment]];
    assert(JSON.stringify(fields) === JSON.stringify(want), 'the app echoed ' + JSON.stringify(fields) +
      ', expected ' + JSON.stringify(want));
    onlyFerry(diag);
    return 'echoed ' + fields.length + ' fields';
  } catch (e) {
    e.diag = diag;
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

async function downloadCase() {
  const expected = execFileSync(PYTHON3, ['-c',
    'import sys; sys.path.insert(0, sys.argv[1]); import legacy_app; print(legacy_app.body_sha256(int(sys.argv[2])))',
    path.dirname(LEGACY_APP), String(DOWNLOAD_SIZE)], { timeout: 20000 }).toString().trim();
  assert(/^[0-9a-f]{64}$/.test(expected), 'legacy_app.body_sha256 printed ' + expected);
  const diag = newDiag();
  const { ctx, page } = await newPage(diag);
  try {
    await page.goto('http://127.0.0.1:' + ports.ferry + '/form', { waitUntil: 'load', timeout: 15000 });
    const results = [];
    for (const q of ['', '&chunked=1']) {
      const r = await withTimeout(page.evaluate(async (url) => {
        const res = await fetch(url, { cache: 'no-store' });
        const buf = await res.arrayBuffer();
        const digest = await crypto.subtle.digest('SHA-256', buf);
        const hex = Array.prototype.map.call(new Uint8Array(digest),
          (b) => ('0' + b.toString(16)).slice(-2)).join('');
        return { status: res.status, app: res.headers.get('x-legacy-app'), length: res.headers.get('content-length'),
          size: buf.byteLength, sha256: hex };
      }, '/download?size=' + DOWNLOAD_SIZE + q), 30000, 'the download in the page');
      assert(r.status === 200 && r.app === '1', 'GET /download' + q + ' through ferry: ' + JSON.stringify(r));
      assert(r.size === DOWNLOAD_SIZE, 'downloaded ' + r.size + ' bytes' + q + ', expected ' + DOWNLOAD_SIZE);
      assert(r.sha256 === expected, 'sha256 of the download' + q + ' is ' + r.sha256 + ', expected ' + expected);
      if (!q) assert(r.length === String(DOWNLOAD_SIZE), 'Content-Length ' + r.length);
      results.push(r.size);
    }
    onlyFerry(diag);
    return results.length + ' downloads of ' + DOWNLOAD_SIZE + ' bytes, sha256 ok';
  } catch (e) {
    e.diag = diag;
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

const cases = [
  ['websocket: app page, news from the app, chat reply from the app', () => transportCase('websocket')],
  ['sse: app page, news from the app, chat reply from the app', () => transportCase('sse')],
  ['poll: app page, news from the app, chat reply from the app', () => transportCase('poll')],
  ['the app\'s HTML form submitted through ferry', formCase],
  ['a download through ferry, fetched by the page', downloadCase],
];

/* ------------------------------------------------------------------ */

let current = '(startup)';
const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS + ' ms (running: ' + current + ')');
  if (ferryd && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
  process.exit(1);
}, OVERALL_MS);

async function stopAll() {
  if (chrome) await chrome.close();
  chrome = browser = null;
  if (ferryd && ferryd.proc.exitCode === null && ferryd.proc.signalCode === null) {
    if (!(await harness.stop(ferryd, 'SIGTERM', 10000))) {
      tally.notOk('ferryd did not exit within 10 s of SIGTERM');
    } else if (ferryd.proc.exitCode !== 0) {
      tally.notOk('ferryd exited with ' + (ferryd.proc.exitCode === null ? ferryd.proc.signalCode : ferryd.proc.exitCode));
    }
  }
  if (ferryd && /AddressSanitizer|LeakSanitizer|runtime error/.test(ferryd.log)) {
    tally.notOk('ferryd reported a sanitizer error');
  }
  harness.killChildren();
}

async function main() {
  const t0 = Date.now();
  const only = process.argv.slice(2);
  await startAll();
  chrome = await harness.startChromium(chromium, CHROMIUM);
  browser = chrome.browser;
  for (const [name, fn] of cases) {
    if (only.length && !only.some((o) => name.indexOf(o) === 0)) continue;
    current = name;
    const e = await tally.run(name, fn);
    if (e && e.diag) harness.printDiag(e.diag, 30);
  }
  current = '(shutdown)';
  await stopAll();
  if (tally.failures) {
    console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
    if (app.log) console.log('---- legacy_app.py log ----\n' + app.log.slice(-2000));
  }
  console.log(tally.summary(t0));
}

main().then(() => {
  clearTimeout(overall);
  process.exit(tally.failures ? 1 : 0);
}, async (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  if (ferryd && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
  if (app && app.log) console.log('---- legacy_app.py log ----\n' + app.log.slice(-2000));
  await stopAll().catch(() => {});
  clearTimeout(overall);
  process.exit(1);
});
