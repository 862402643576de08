#!/usr/bin/env node
// test_sse_node.js -- real EventSource implementations from npm against a
// ferryd this script starts itself on a free loopback port:
//   - `eventsource` (2.x, the plain EventSource API for Node), and
//   - `event-source-polyfill` (EventSourcePolyfill; in Node 18+ it streams
//     with the global fetch).
// Each one reads `new EventSource('/ferry/sse?ch=NAME')` through a tiny TCP
// proxy of this script. Mid-sequence the proxy cuts the connection (as a
// network failure would); the EventSource reconnects on its own and must end
// up with every published message exactly once, in order.
// Exits non-zero on any failure; the whole run is bounded by a timer.
'use strict';

const http = require('http');
const net = require('net');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, withTimeout } = harness;

const EventSourceLib = harness.tryRequire('eventsource');
const polyfillLib = harness.tryRequire('event-source-polyfill');
if (!EventSourceLib && !polyfillLib) {
  harness.skip('neither "eventsource" nor "event-source-polyfill" is installed: run `npm ci` in tests/');
}

const OVERALL_MS = 60000;
const WAIT_MS = 10000;
const COUNT = 30;       // messages published per run
const CUT_AFTER = 10;   // the proxy cuts the stream once this many arrived

let server = null;   // ferryd: harness.startFerryd(); killed at exit by its PID
const tally = new harness.Tally();

function finish() {
  console.log(tally.summary());
  process.exit(tally.failures ? 1 : 0);
}

const overall = setTimeout(() => {
  tally.notOk('the test did not finish within ' + OVERALL_MS + ' ms');
  if (server && server.log) console.log('---- ferryd log ----\n' + server.log.slice(-4000));
  finish();
}, OVERALL_MS);

function notOk(name, err) {
  tally.notOk(name + ': ' + (err && err.message ? err.message : err));
}

// Resolves once cond() is true (checked every 20 ms), or rejects after ms.
// `what` may be a function, called at the timeout, to describe the state then.
function until(cond, ms, what) {
  let t;
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() > deadline) {
        return reject(new Error('timed out after ' + ms + ' ms waiting for ' +
          (typeof what === 'function' ? what() : what)));
      }
      t = setTimeout(tick, 20);
    };
    tick();
  }).finally(() => clearTimeout(t));
}

// A TCP proxy in front of ferryd whose connections can be cut on demand.
function startProxy(targetPort) {
  const pairs = new Set();
  const requests = []; // first line of each connection's request
  let accepted = 0;
  const srv = net.createServer((client) => {
    accepted++;
    client.once('data', (d) => requests.push(d.toString('latin1').split('\r\n')[0]));
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      resolve({
        port: srv.address().port,
        accepted: () => accepted,
        requests,
        open: () => pairs.size,
        cut() { // a network failure: both sides just go away
          for (const p of [...pairs]) {
            p.client.destroy();
            p.upstream.destroy();
            pairs.delete(p);
          }
        },
        close: () => new Promise((r) => { for (const p of pairs) { p.client.destroy(); p.upstream.destroy(); } srv.close(() => r()); }),
      });
    });
  });
}

function httpPublish(port, channel, body) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/ferry/publish/' + channel,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) } },
    (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error('publish: ' + res.statusCode + ' ' + text));
        else resolve(JSON.parse(text).id);
      });
    });
    req.on('error', reject);
    req.end(body);
  }), WAIT_MS, 'the publish response');
}

// One run: an EventSource (made by makeES(url)) reads channel `channel`
// through the proxy; COUNT messages are published 100 ms apart; the proxy
// cuts the stream after CUT_AFTER arrived. Every message, once, in order.
async function runReader(name, makeES, ferrydPort, channel) {
  const proxy = await startProxy(ferrydPort);
  const url = 'http://127.0.0.1:' + proxy.port + '/ferry/sse?ch=' + channel;
  const got = [];      // { data, lastEventId }
  const opens = [];    // ferry "open" control events
  const errors = [];
  let es = null;
  try {
    es = makeES(url);
    es.addEventListener('message', (e) => got.push({ data: e.data, lastEventId: e.lastEventId }));
    es.addEventListener('ferry', (e) => {
      const c = JSON.parse(e.data);
      if (c.type === 'open') opens.push(c);
    });
    es.onerror = (e) => errors.push(e);
    await until(() => opens.length === 1, WAIT_MS, name + ': the ferry "open" event');

    const ids = [];
    let cutAt = -1;
    for (let i = 1; i <= COUNT; i++) {
      ids.push(await httpPublish(ferrydPort, channel, name + ' message ' + i + '\nsecond line ' + i));
      if (cutAt < 0 && got.length >= CUT_AFTER) {
        cutAt = i;
        proxy.cut();
      }
      await sleep(100);
    }
    assert(cutAt > 0, name + ': only ' + got.length + ' messages arrived before the end of publishing');
    await until(() => got.length >= COUNT, WAIT_MS + 5000, () =>
      name + ': all ' + COUNT + ' messages (have ' + got.length + ', cut after message ' + cutAt +
      '; ' + proxy.accepted() + ' connections, ' + opens.length + ' "open" events, ' + errors.length +
      ' error events; last id ' + JSON.stringify(got.length ? got[got.length - 1].lastEventId : null) + ')');
    await sleep(300); // a duplicate would arrive now
    const want = ids.map((id, i) => name + ' message ' + (i + 1) + '\nsecond line ' + (i + 1));
    const datas = got.map((g) => g.data);
    assert(JSON.stringify(datas) === JSON.stringify(want),
      name + ': lost, duplicated or reordered: ' + JSON.stringify(datas.map((d) => d.split('\n')[0])));
    for (let i = 0; i < COUNT; i++) {
      assert(got[i].lastEventId === channel + ',' + ids[i],
        name + ': lastEventId ' + JSON.stringify(got[i].lastEventId) + ' for id ' + ids[i]);
    }
    assert(proxy.accepted() >= 2 && opens.length >= 2,
      name + ': no reconnect happened (' + proxy.accepted() + ' connections, ' + opens.length + ' opens)');
    assert(errors.length >= 1, name + ': the cut was not reported as an error event');
    return { cutAt, reconnects: proxy.accepted() - 1 };
  } catch (e) {
    e.message += '\n    requests: ' + JSON.stringify(proxy.requests);
    throw e;
  } finally {
    if (es) es.close();
    await proxy.close();
  }
}

async function main() {
  server = await harness.startFerryd(['--drain-window', '200ms', '--drain-timeout', '5s']);
  const port = server.port;

  // 1. the `eventsource` package: Last-Event-ID header on its reconnect
  if (EventSourceLib) {
    try {
      const r = await runReader('eventsource', (url) => new EventSourceLib(url), port, 'es-news');
      tally.ok('eventsource: ' + COUNT + ' messages in order across a cut connection (cut after #' + r.cutAt +
        ', ' + r.reconnects + ' reconnect)');
    } catch (e) {
      notOk('eventsource', e);
    }
  } else {
    console.log('ok - # SKIP eventsource: the npm package is not installed');
  }

  // 2. `event-source-polyfill`: needs fetch (Node 18+) or a global XMLHttpRequest
  const Polyfill = polyfillLib && polyfillLib.EventSourcePolyfill;
  const canStream = typeof fetch === 'function' && typeof Response === 'function' &&
    typeof TextDecoder === 'function' && typeof AbortController === 'function';
  if (!Polyfill) {
    console.log('ok - # SKIP event-source-polyfill: the npm package is not installed');
  } else if (!canStream && typeof XMLHttpRequest === 'undefined') {
    console.log('ok - # SKIP event-source-polyfill: this Node has neither fetch nor XMLHttpRequest');
  } else {
    try {
      const r = await runReader('polyfill', (url) => new Polyfill(url, { heartbeatTimeout: 60000 }), port,
        'pf-news');
      tally.ok('event-source-polyfill: ' + COUNT + ' messages in order across a cut connection (cut after #' +
        r.cutAt + ', ' + r.reconnects + ' reconnect)');
    } catch (e) {
      notOk('event-source-polyfill', e);
    }
    // The polyfill cannot send a Last-Event-ID header (a CORS preflight);
    // it puts the id in the query instead, under a name the page chooses.
    // Naming it "ch" makes it replace the channel parameter with
    // "ch=NAME,CURSOR", which ferryd reads: a one-channel workaround.
    try {
      const r = await runReader('polyfill-ch', (url) => new Polyfill(url, { heartbeatTimeout: 60000,
        lastEventIdQueryParameterName: 'ch' }), port, 'pf-ch');
      tally.ok('event-source-polyfill (lastEventIdQueryParameterName "ch"): ' + COUNT +
        ' messages in order across a cut connection (cut after #' + r.cutAt + ')');
    } catch (e) {
      notOk('event-source-polyfill (lastEventIdQueryParameterName "ch")', e);
    }
  }

  // ferryd drains and exits 0
  server.proc.kill('SIGTERM');
  const exit = await withTimeout(server.exited, WAIT_MS, 'ferryd to exit');
  if (exit.code !== 0 || /AddressSanitizer|runtime error/.test(server.log)) {
    notOk('ferryd exit', 'code ' + exit.code + ' signal ' + exit.sig + '\n' + server.log.slice(-4000));
  } else {
    tally.ok('ferryd exited 0 after SIGTERM');
  }
  if (tally.failures && server.log) console.log('---- ferryd log ----\n' + server.log.slice(-4000));
  clearTimeout(overall);
  finish();
}

main().catch((e) => {
  notOk('unexpected', e && e.stack ? e.stack : e);
  finish();
});
