#!/usr/bin/env node
// test_share.js -- one connection per browser, shared by its tabs (issue 19).
// Headless Chromium (playwright-core) opens 8 tabs of one origin: ferryd in
// front of a small app (--upstream), each tab an app page that subscribes with
// ferry.js. For each transport (WebSocket, SSE, long-poll), what a user and an
// operator would check:
//   - ferryd's /ferry/metrics shows one connection of that transport for the
//     whole browser (ferry_connections{transport=...} is 1, and only 1 was
//     ever opened);
//   - every tab gets each of 20 published messages once and in order (the
//     ids the publish API answered);
//   - a ninth tab loads one of the app's pages at once (under 2 s): the
//     browser's 6 connections per host are not all held by streams;
//   - the leader tab is closed while 30 messages are being published: another
//     tab takes over within a bounded time and the 7 tabs left have all 30,
//     once each, in order. Once more with the leader frozen instead of
//     closed (its JavaScript stopped by CDP Debugger.pause, since headless
//     Chromium does not freeze a visible page on Page.setWebLifecycleState):
//     its heartbeat stops while its WebSocket stays open, a follower takes
//     over, and when it thaws it steps down and catches up.
// Then the same 8 tabs without BroadcastChannel (deleted by an init script):
// the localStorage bus carries it (WebSocket). And share:false keeps a
// connection per tab (the counter-check: 8 WebSockets).
//
// Everything binds to 127.0.0.1 on free ports; every wait is bounded; exit 77
// when Chromium or the npm packages are missing.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, skip, request } = harness;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OVERALL_MS = 170000;
const OPEN_MS = 15000;
const DELIVER_MS = 15000;
const HANDOVER_MS = 6000;   // close to a new leader's transport open (bye + election + connect)
const NINTH_MS = 2000;
const TABS = 8;

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM + ' (apt-get install chromium, or set CHROMIUM)');
const { chromium } = harness.load('playwright-core');
const tally = new harness.Tally();

// The app behind ferryd: a page that uses ferry.js, and a plain one.
const TAB_PAGE = `<!doctype html><meta charset="utf-8"><title>tab</title>
<link rel="icon" href="data:,">
<script src="/ferry/ferry.js"></script>
<script>
  var q = {};
  location.search.slice(1).split('&').forEach(function (kv) { var p = kv.split('='); q[p[0]] = decodeURIComponent(p[1] || ''); });
  window.got = []; window.log = [];
  var opts = { storage: false };
  if (q.transport) opts.transports = [q.transport];
  if (q.share === 'no') opts.share = false;
  window.ferry = new Ferry('/ferry/', opts);
  ferry.on('shared', function (r) { log.push(['shared', r, Date.now()]); });
  ferry.on('state', function (s) { log.push(['state', s, Date.now()]); });
  ferry.on('error', function (e) { log.push(['error', e.reason, Date.now()]); });
  ferry.subscribe(q.channel, function (data, m) { got.push(m.id); });
</script>`;
const PLAIN_PAGE = '<!doctype html><meta charset="utf-8"><title>plain</title><link rel="icon" href="data:,"><p>the app</p>';

let app = null, ferryd = null, chrome = null;

async function startApp() {
  const server = http.createServer((req, res) => {
    const p = req.url.split('?')[0];
    const body = p === '/app/tab.html' ? TAB_PAGE : p === '/app/plain.html' ? PLAIN_PAGE : null;
    res.writeHead(body ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(body || 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port };
}

async function metrics() {
  const r = await request(ferryd.port, 'GET', '/ferry/metrics');
  assert(r.status === 200, '/ferry/metrics answered ' + r.status);
  const get = (name, t) => {
    const m = new RegExp('^' + name + '\\{transport="' + t + '"\\} (\\d+)$', 'm').exec(r.body);
    return m ? parseInt(m[1], 10) : 0;
  };
  return { open: (t) => get('ferry_connections', t), total: (t) => get('ferry_connections_total', t) };
}

async function publish(channel, text) {
  const r = await request(ferryd.port, 'POST', '/ferry/publish/' + channel, text);
  assert(r.status === 200, 'publish answered ' + r.status + ': ' + r.body);
  return JSON.parse(r.body).id;
}

// The tabs' roles, once exactly one leads and all are open.
async function settled(pages, ms) {
  const deadline = Date.now() + ms;
  let roles = [];
  for (;;) {
    roles = await Promise.all(pages.map((p) => p.evaluate(() => [ferry.shared, ferry.state, ferry.transport])));
    const leaders = roles.filter((r) => r[0] === 'leader').length;
    if (leaders === 1 && roles.every((r) => r[1] === 'open' && r[0])) return roles;
    if (Date.now() > deadline) throw new Error('tabs not settled within ' + ms + ' ms: ' + JSON.stringify(roles));
    await sleep(100);
  }
}

async function waitAll(pages, ids, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await Promise.all(pages.map((p) => p.evaluate(() => window.got.slice())));
    if (got.every((g) => g.length >= ids.length)) return got;
    if (Date.now() > deadline) {
      throw new Error(what + ': not every tab got ' + ids.length + ' messages within ' + ms + ' ms: counts ' +
        got.map((g) => g.length).join(','));
    }
    await sleep(100);
  }
}

// exactly ids, in order, in every tab (after a pause for late duplicates)
async function checkExact(pages, ids, what) {
  await sleep(700);
  const got = await Promise.all(pages.map((p) => p.evaluate(() => window.got.slice())));
  let lost = 0, repeated = 0;
  got.forEach((g, i) => {
    const seen = new Set(g);
    repeated += g.length - seen.size;
    lost += ids.filter((id) => !seen.has(id)).length;
    assert(JSON.stringify(g) === JSON.stringify(ids), what + ': tab ' + i + ' got ' + JSON.stringify(g) +
      ', expected ' + JSON.stringify(ids));
  });
  return { lost, repeated };
}

async function openTabs(ctx, n, query) {
  const pages = [];
  for (let i = 0; i < n; i++) {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.log('# pageerror: ' + e.message));
    await page.goto('http://127.0.0.1:' + ferryd.port + '/app/tab.html?' + query, { waitUntil: 'load', timeout: 15000 });
    pages.push(page);
  }
  return pages;
}

async function scenario(transport, opts) {
  const o = opts || {};
  const ctx = await chrome.browser.newContext();
  const channel = 'share-' + transport + (o.tag || '');
  try {
    for (const s of o.init || []) await ctx.addInitScript({ content: s });
    const before = await metrics();
    const pages = await openTabs(ctx, TABS, 'transport=' + transport + '&channel=' + channel +
      (o.noShare ? '&share=no' : ''));
    if (o.noShare) {
      await Promise.all(pages.map((p) => p.waitForFunction(() => ferry.state === 'open', null, { timeout: OPEN_MS })));
      const m = await metrics();
      const opened = m.total(transport) - before.total(transport);
      assert(opened === TABS, 'share:false: ' + opened + ' ' + transport + ' connections opened, expected ' + TABS);
      return opened + ' connections for ' + TABS + ' tabs';
    }
    const roles = await settled(pages, OPEN_MS);
    assert(roles.every((r) => r[2] === transport), 'a tab is not on ' + transport + ': ' + JSON.stringify(roles));
    const m = await metrics();
    const opened = m.total(transport) - before.total(transport);
    // a long-poll is one request at a time: the first answers at once, a
    // change of channels completes the held one
    assert(m.open(transport) === 1 && (transport === 'poll' ? opened <= 3 : opened === 1),
      'ferry_connections{transport="' + transport + '"} is ' + m.open(transport) + ' and ' + opened +
      ' were opened for ' + TABS + ' tabs, expected 1');

    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(await publish(channel, 'm' + i));
    await waitAll(pages, ids, DELIVER_MS, transport);
    const first = await checkExact(pages, ids, transport);

    // a ninth tab: the app's own page, at once
    const ninth = await ctx.newPage();
    const t0 = Date.now();
    await ninth.goto('http://127.0.0.1:' + ferryd.port + '/app/plain.html', { waitUntil: 'load', timeout: 30000 });
    const ninthMs = Date.now() - t0;
    assert(ninthMs < NINTH_MS, 'the ninth tab took ' + ninthMs + ' ms to load the app page');
    await ninth.close();

    // close the leader mid-stream
    const leaderAt = roles.findIndex((r) => r[0] === 'leader');
    const rest = pages.filter((p, i) => i !== leaderAt);
    const ids2 = [];
    let closedAt = 0, cdp = null;
    for (let i = 0; i < 30; i++) {
      ids2.push(await publish(channel, 'n' + i));
      if (i === 9) {
        closedAt = Date.now();
        if (o.freeze) {
          cdp = await ctx.newCDPSession(pages[leaderAt]);
          await cdp.send('Debugger.enable');
          await cdp.send('Debugger.pause');
        } else {
          await pages[leaderAt].close();
        }
      }
      await sleep(40);
    }
    await settled(rest, HANDOVER_MS + 5000);
    await waitAll(rest, ids.concat(ids2), DELIVER_MS, transport + ' after the leader closed');
    const logs = await Promise.all(rest.map((p) => p.evaluate(() => window.log)));
    // from the close (or freeze) to the new leader's transport open
    let took = -1;
    for (const l of logs) {
      const won = l.filter((e) => e[0] === 'shared' && e[1] === 'leader' && e[2] > closedAt)[0];
      const open = won && l.filter((e) => e[0] === 'state' && e[1] === 'open' && e[2] >= won[2])[0];
      if (open) took = open[2] - closedAt;
    }
    assert(took >= 0, 'no tab took the lead after the leader ' + (o.freeze ? 'froze' : 'closed'));
    assert(took < HANDOVER_MS, 'handover took ' + took + ' ms');
    const second = await checkExact(rest, ids.concat(ids2), transport + ' after the leader closed');
    let thawed = '';
    if (o.freeze) {
      // the old leader wakes up, hears the new one, steps down, and catches up
      await cdp.send('Debugger.resume');
      const old = pages[leaderAt];
      await old.waitForFunction(() => ferry.shared === 'follower', null, { timeout: 10000 });
      const all = ids.concat(ids2);
      await waitAll([old], all, DELIVER_MS, 'the thawed leader');
      await checkExact([old], all, 'the thawed leader');
      await sleep(1500);
      const leaders = (await Promise.all(pages.map((p) => p.evaluate(() => ferry.shared)))).filter((r) => r === 'leader');
      assert(leaders.length === 1, 'after the thaw ' + leaders.length + ' tabs lead');
      thawed = '; thawed leader stepped down and has all 50 once';
    }
    return '1 ' + transport + ' connection for ' + TABS + ' tabs; 20 messages to every tab, lost ' + first.lost +
      ', repeated ' + first.repeated + '; ninth tab loaded in ' + ninthMs + ' ms; leader after 10 of 30 ' +
      (o.freeze ? 'frozen' : 'closed') + ': handover ' + took + ' ms, 7 tabs got all 50, lost ' + second.lost + ', repeated ' + second.repeated;
  } catch (e) {
    if (process.env.SHARE_DEBUG) {
      for (const p of ctx.pages()) {
        const l = await withTimeoutOrNull(p.evaluate(() => window.log));
        console.log('# ' + JSON.stringify(l));
      }
    }
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

function withTimeoutOrNull(promise) {
  return harness.withTimeout(promise, 2000, 'a page').catch(() => null);
}

const overall = setTimeout(() => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS + ' ms');
  process.exit(1);
}, OVERALL_MS);

async function main() {
  const t0 = Date.now();
  const only = process.argv.slice(2);
  app = await startApp();
  ferryd = await harness.startFerryd(['--upstream', 'http://127.0.0.1:' + app.port, '--log-level', 'warn']);
  chrome = await harness.startChromium(chromium, CHROMIUM);
  const cases = [
    ['8 tabs, websocket', () => scenario('websocket')],
    ['8 tabs, sse', () => scenario('sse')],
    ['8 tabs, poll', () => scenario('poll')],
    ['8 tabs without BroadcastChannel (localStorage bus), websocket',
      () => scenario('websocket', { tag: '-ls', init: ['delete window.BroadcastChannel;'] })],
    ['8 tabs, websocket, the leader frozen (its JavaScript stopped)',
      () => scenario('websocket', { tag: '-frozen', freeze: true })],
    ['8 tabs with share:false, websocket', () => scenario('websocket', { tag: '-own', noShare: true })],
  ];
  for (const [name, fn] of cases) {
    if (only.length && !only.some((o) => name.indexOf(o) >= 0)) continue;
    await tally.run(name, fn);
  }
  await chrome.close();
  if (!(await harness.stop(ferryd, 'SIGTERM', 20000)) || ferryd.proc.exitCode !== 0) tally.notOk('ferryd did not exit 0 on SIGTERM');
  if (/AddressSanitizer|LeakSanitizer|runtime error/.test(ferryd.log)) tally.notOk('ferryd reported a sanitizer error');
  if (tally.failures) console.log('---- ferryd log ----\n' + ferryd.log.slice(-3000));
  console.log(tally.summary(t0));
}

main().then(() => {
  clearTimeout(overall);
  app.server.close();
  process.exit(tally.failures ? 1 : 0);
}, (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  process.exit(99);
});
