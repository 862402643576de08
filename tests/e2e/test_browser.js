#!/usr/bin/env node
// test_browser.js -- end-to-end browser tests: headless Chromium (driven by
// playwright-core from npm, pinned in tests/package-lock.json) loads ferry's
// demo chat page, and the test checks what a user of the page would check:
// which transport the page ends on (#transport and window.ferry.transport),
// and that messages published with POST /ferry/publish/CHANNEL -- 10 before a
// forced disconnect, 5 while the page is cut off, 5 after -- all show up as
// div.msg elements, complete, in order, exactly once (data-id = the ids the
// publish API answered).
//
// One ferryd (default origin policy) serves every scenario but 6, which needs
// --allow-origin for its page's origin; each scenario has its own channel, its own
// browser context (fresh localStorage) and its own way of reaching ferryd:
//   1  direct (a byte-for-byte TCP pass-through standing in for the network,
//      so it can be cut): ends on websocket
//   2a WebSocket deleted from the page: sse (EventSource)
//   2b WebSocket and EventSource deleted: sse (XHR stream, pad=1)
//   2c ... and XHR without partial responseText (old browsers): poll
//   3  nginx without WebSocket upgrade config, proxy_buffering off: sse
//   4  nginx buffering whole responses, no upgrade: poll
//   5  a proxy that completes the WebSocket handshake itself, then passes
//      nothing (all else streamed to ferryd): sse
//   6  old IE emulated (no WebSocket, no EventSource, XHR without CORS, an
//      XDomainRequest stand-in that withholds progress until 2 KiB), page on
//      another origin (ferryd --allow-origin): sse over XDomainRequest
//   7  ?transport=poll forces long-polling; ferry_fallbacks_total counted the
//      fallbacks of scenarios 3-5
// plus: client/ferry.js (and the copy ferryd serves) parses as ES5 (acorn).
//
// Disconnects: the pass-through / Node proxy drop every connection and refuse
// new ones for a second; nginx is stopped (SIGQUIT, worker_shutdown_timeout
// 1s) and started again on the same port. The memory backend's history stays,
// so the page must resume from its cursors.
//
// Everything binds to 127.0.0.1 on free ports; every wait is bounded; the
// whole run is bounded by OVERALL_MS. Exit 77 (skipped) only when Chromium,
// nginx or the npm packages are not installed.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert, sleep, skip, request } = harness;

const HERE = __dirname;
const FERRY_JS = path.join(HERE, '..', '..', 'client', 'ferry.js');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const NGINX = process.env.NGINX || '/usr/sbin/nginx';

const OVERALL_MS = 145000;
const OPEN_MS = 20000;      // page load to a trusted transport (a 5 s probe deadline or two)
const DELIVER_MS = 20000;   // all messages on the page, including a reconnect with backoff
const OUTAGE_MS = 1000;     // how long the network stays cut
const SETTLE_MS = 700;      // after the last message: time for a late duplicate to show up

if (!fs.existsSync(CHROMIUM)) skip('Chromium not found at ' + CHROMIUM + ' (apt-get install chromium, or set CHROMIUM)');
if (!fs.existsSync(NGINX)) skip('nginx not found at ' + NGINX + ' (apt-get install nginx-light, or set NGINX)');
const { chromium } = harness.load('playwright-core');
const acorn = harness.load('acorn');

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

// Processes started here (ferryd, nginx) are harness children: SIGKILLed by
// their PID at exit if they still run; the nginx folders go then too.
const tally = new harness.Tally();

/* ids are "<epoch>:<position>", the position "N" or "MS-N" */
function position(id) {
  const p = String(id).slice(String(id).lastIndexOf(':') + 1).split('-').map((x) => parseInt(x, 10));
  return p.length === 1 ? [0, p[0]] : p;
}
function idAfter(a, b) {
  const x = position(a), y = position(b);
  return x[0] !== y[0] ? x[0] > y[0] : x[1] > y[1];
}

/* ------------------------------------------------------------------ */
/* ferryd                                                              */

// A ferryd on a free port: the harness's, with these defaults before args.
function startFerryd(args) {
  return harness.startFerryd(['--drain-window', '200ms', '--drain-timeout', '3s', '--log-level', 'warn']
    .concat(args || []));
}

// SIGTERM; throws unless ferryd exited 0 without a sanitizer report
async function stopFerryd(server) {
  const p = server.proc;
  if (!(await harness.stop(server, 'SIGTERM', 20000))) throw new Error('ferryd did not exit within 20 s of SIGTERM');
  if (p.exitCode !== 0) throw new Error('ferryd exited with ' + (p.exitCode === null ? p.signalCode : p.exitCode));
  if (/AddressSanitizer|LeakSanitizer|runtime error/.test(server.log)) {
    throw new Error('ferryd reported a sanitizer error');
  }
}

// the ferryd of every scenario but 6 (default origin policy: same host only)
let ferryd = null;

async function publish(channel, text, server) {
  const r = await request((server || ferryd).port, 'POST', '/ferry/publish/' + channel, text);
  assert(r.status === 200, 'POST /ferry/publish/' + channel + ' answered ' + r.status + ': ' + r.body);
  const id = JSON.parse(r.body).id;
  assert(typeof id === 'string' && /:/.test(id), 'publish answered no id: ' + r.body);
  return id;
}

async function fallbackCounts() {
  const r = await request(ferryd.port, 'GET', '/ferry/metrics');
  assert(r.status === 200, '/ferry/metrics answered ' + r.status);
  const counts = {};
  const re = /^ferry_fallbacks_total\{reason="([^"]+)"\} (\d+)$/gm;
  let m;
  while ((m = re.exec(r.body)) !== null) counts[m[1]] = parseInt(m[2], 10);
  assert(Object.keys(counts).length > 0, '/ferry/metrics has no ferry_fallbacks_total lines:\n' + r.body);
  return counts;
}

/* ------------------------------------------------------------------ */
/* ways to reach ferryd that the test can cut                          */

// Tracks a server's client sockets; cut() drops them all and refuses new
// connections for a while, like a network outage.
class Cuttable {
  constructor() {
    this.sockets = new Set();
    this.down = false;
    this.accepted = 0;
    this.acceptedAfterCut = 0;
    this.cuts = 0;
  }
  admit(sock) {
    if (this.down) { sock.destroy(); return false; }
    this.accepted++;
    if (this.cuts) this.acceptedAfterCut++;
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    return true;
  }
  async outage(ms) {
    this.down = true;
    this.cuts++;
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return { cut: n, heal: async () => { await sleep(ms); this.down = false; } };
  }
}

// A byte-for-byte TCP pass-through to ferryd: HTTP-wise the page talks to
// ferryd directly.
class Relay extends Cuttable {
  constructor(server) {
    super();
    this.target = server || ferryd;
  }
  async start() {
    this.server = net.createServer((c) => {
      if (!this.admit(c)) return;
      const u = net.connect(this.target.port, '127.0.0.1');
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
      c.on('close', () => u.destroy());
      u.on('close', () => c.destroy());
      c.pipe(u);
      u.pipe(c);
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }
  async stop() {
    this.down = true;
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// An HTTP proxy that answers every WebSocket upgrade itself (101 with a
// correct Sec-WebSocket-Accept and the offered subprotocol) and then passes
// nothing, in either direction; everything else is proxied to ferryd,
// streaming (each chunk forwarded as it arrives).
class BlackholeWsProxy extends Cuttable {
  async start() {
    this.upgrades = 0;
    this.server = http.createServer((req, res) => {
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
    this.server.on('connection', (sock) => this.admit(sock));
    this.server.on('upgrade', (req, sock) => {
      this.upgrades++;
      const key = req.headers['sec-websocket-key'] || '';
      const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      const offered = String(req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
      sock.on('data', () => {});   // swallow the client's frames; forward nothing
      sock.on('error', () => {});
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Accept: ' + accept + '\r\n' +
        (offered.indexOf('ferry.v1') >= 0 ? 'Sec-WebSocket-Protocol: ferry.v1\r\n' : '') + '\r\n');
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }
  async stop() {
    this.down = true;
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// A real nginx of our own, on a free port, proxying /ferry/ to ferryd.
class Nginx {
  constructor(name, locationDirectives) {
    this.name = name;
    this.directives = locationDirectives;
    this.runs = [];   // a harness child per start: stop() and start() again is an outage
  }
  get log() {
    return this.runs.map((c) => c.log).join('');
  }
  async start() {
    if (!this.dir) {
      this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-e2e-nginx-'));
      fs.chmodSync(this.dir, 0o755);   // workers may run as another user
      this.port = await harness.freePort();
      const d = this.dir;
      this.conf = path.join(d, 'nginx.conf');
      fs.writeFileSync(this.conf, [
        'worker_processes 1;',
        'worker_shutdown_timeout 1s;',
        'events { worker_connections 256; }',
        'http {',
        '  access_log off;',
        '  client_body_temp_path ' + d + '/client_body;',
        '  proxy_temp_path ' + d + '/proxy;',
        '  fastcgi_temp_path ' + d + '/fastcgi;',
        '  uwsgi_temp_path ' + d + '/uwsgi;',
        '  scgi_temp_path ' + d + '/scgi;',
        '  server {',
        '    listen 127.0.0.1:' + this.port + ';',
        '    location /ferry/ {',
        '      proxy_pass http://127.0.0.1:' + ferryd.port + ';',
        '      proxy_http_version 1.1;',
        '      proxy_set_header Host $http_host;',
        '      proxy_read_timeout 60s;',
      ].concat(this.directives.map((x) => '      ' + x), ['    }', '  }', '}', '']).join('\n'));
      const dir = this.dir;
      harness.atExit(() => fs.rmSync(dir, { recursive: true, force: true }));
    }
    this.child = harness.spawnChild('nginx (' + this.name + ')', NGINX, ['-p', this.dir + '/', '-e', 'stderr',
      '-c', this.conf, '-g', 'daemon off; pid ' + this.dir + '/nginx.pid; error_log stderr warn;']);
    this.runs.push(this.child);
    await harness.waitListening(this.port, 10000, this.child);
    return this;
  }
  // graceful stop, bounded by worker_shutdown_timeout (the streams never end)
  async stop() {
    if (!this.child) return;
    if (!(await harness.stop(this.child, 'SIGQUIT', 10000))) {
      throw new Error('nginx (' + this.name + ') did not stop within 10 s of SIGQUIT:\n' + this.log);
    }
  }
  async outage() {
    await this.stop();
    return { cut: 1, heal: async () => { await this.start(); } };
  }
}

/* ------------------------------------------------------------------ */
/* what runs inside the page                                           */

const NO_WEBSOCKET = 'delete window.WebSocket;';
const NO_EVENTSOURCE = 'delete window.EventSource;';

// Browsers whose XHR shows no partial responseText (readyState 3): an event
// stream over XHR then delivers nothing until it ends.
const NO_XHR_STREAMING = '(' + function () {
  var d = Object.getOwnPropertyDescriptor(XMLHttpRequest.prototype, 'responseText');
  Object.defineProperty(XMLHttpRequest.prototype, 'responseText', {
    configurable: true,
    get: function () { return this.readyState === 4 ? d.get.call(this) : ''; },
  });
} + ')();';

// IE8/9: no WebSocket, no EventSource, an XMLHttpRequest that cannot go
// cross-origin (no withCredentials; cross-origin open() is denied), and
// XDomainRequest, which fires no progress event before 2 KiB have arrived.
// The stand-in is built on the real XHR (which does CORS underneath).
const OLD_IE = '(' + function () {
  var RealXHR = window.XMLHttpRequest;
  var log = window.__xdr = { created: 0, urls: [], withheld: 0, released: 0 };
  delete window.WebSocket;
  delete window.EventSource;

  function crossOrigin(url) {
    var a = document.createElement('a');
    a.href = url;
    return a.protocol !== location.protocol || a.host !== location.host;
  }

  function OldXHR() {
    var self = this, x = new RealXHR();
    this._x = x;
    this.readyState = 0;
    this.status = 0;
    this.responseText = '';
    this.timeout = 0;
    x.onreadystatechange = function () {
      self.readyState = x.readyState;
      if (x.readyState >= 2) self.status = x.status;
      if (x.readyState >= 3) self.responseText = x.responseText;
      if (self.onreadystatechange) self.onreadystatechange();
    };
    x.ontimeout = function () { if (self.ontimeout) self.ontimeout(); };
  }
  OldXHR.prototype.open = function (method, url, async) {
    if (crossOrigin(url)) throw new Error('Access is denied.');
    this._x.open(method, url, async !== false);
  };
  OldXHR.prototype.setRequestHeader = function (k, v) { this._x.setRequestHeader(k, v); };
  OldXHR.prototype.getResponseHeader = function (k) { return this._x.getResponseHeader(k); };
  OldXHR.prototype.getAllResponseHeaders = function () { return this._x.getAllResponseHeaders(); };
  OldXHR.prototype.send = function (body) {
    if (this.timeout) this._x.timeout = this.timeout;
    this._x.send(body === undefined ? null : body);
  };
  OldXHR.prototype.abort = function () { this._x.abort(); };
  window.XMLHttpRequest = OldXHR;

  function XDomainRequest() {
    log.created++;
    this.timeout = 0;
    this.responseText = '';
    this.contentType = '';
    this.onload = this.onerror = this.ontimeout = this.onprogress = null;
  }
  XDomainRequest.prototype.open = function (method, url) {
    if (!/^https?:/.test(url)) throw new Error('Invalid argument.');
    this._method = method;
    this._url = url;
    log.urls.push(method + ' ' + url);
  };
  XDomainRequest.prototype.send = function (body) {
    var self = this, x = this._x = new RealXHR(), released = false;
    x.open(this._method, this._url, true);
    if (this.timeout) x.timeout = this.timeout;
    x.onprogress = function () {
      var text = x.responseText;
      if (!released && text.length < 2048) { log.withheld++; return; }
      if (!released) log.released++;
      released = true;
      self.responseText = text;
      if (self.onprogress) self.onprogress();
    };
    x.onload = function () {
      self.responseText = x.responseText;
      self.contentType = x.getResponseHeader('Content-Type') || '';
      if (x.status >= 200 && x.status < 300) { if (self.onload) self.onload(); }
      else if (self.onerror) self.onerror();
    };
    x.onerror = function () { if (self.onerror) self.onerror(); };
    x.ontimeout = function () { if (self.ontimeout) self.ontimeout(); };
    x.send(body === undefined || body === null ? null : String(body));
  };
  XDomainRequest.prototype.abort = function () {
    var x = this._x;
    if (!x) return;
    x.onprogress = x.onload = x.onerror = x.ontimeout = null;
    x.abort();
  };
  window.XDomainRequest = XDomainRequest;
} + ')();';

/* ------------------------------------------------------------------ */
/* the chat check, common to every scenario                            */

let chrome = null;    // harness.startChromium()
let browser = null;   // chrome.browser
const fallbackDelta = {};   // scenario id -> { reason: count } counted during it

async function pageState(page) {
  return page.evaluate(() => ({
    state: window.ferry ? window.ferry.state : null,
    transport: window.ferry ? window.ferry.transport : null,
    shown: document.getElementById('transport').textContent,
    stateShown: document.getElementById('state').textContent,
  }));
}

async function messagesOnPage(page) {
  return page.$$eval('div.msg', (els) => els.map((e) => ({ id: e.getAttribute('data-id'), text: e.textContent })));
}

function texts(sid, phase, from, to) {
  const out = [];
  for (let i = from; i <= to; i++) {
    let t = sid + ' #' + String(i).padStart(2, '0') + ' ' + phase;
    if (i === 3) t += ' ünïcödé ✓ 日本';
    if (i === 5) t += '\nsecond line\n\nfourth after an empty one';
    if (i === 7) t += ' <b>not bold</b> & "quoted"';
    if (i === 9) t += ' ' + 'x'.repeat(3000);
    out.push(t);
  }
  return out;
}

async function waitCount(page, n, ms, what) {
  try {
    await page.waitForFunction((k) => document.querySelectorAll('div.msg').length >= k, n,
      { timeout: ms, polling: 100 });
  } catch (e) {
    const got = await messagesOnPage(page).catch(() => []);
    const st = await pageState(page).catch(() => ({}));
    throw new Error('only ' + got.length + ' of ' + n + ' messages on the page ' + what + ' after ' + ms +
      ' ms (state ' + st.state + ', transport ' + st.transport + ')');
  }
}

// Load the page, check the transport, publish 10, cut, publish 5, heal,
// publish 5, check the 20 on the page.
async function chat(sid, opts) {
  const ctx = await browser.newContext();
  const diag = { requests: [], console: [], websockets: [], frames: [] };
  try {
    for (const s of opts.init || []) await ctx.addInitScript({ content: s });
    const page = await ctx.newPage();
    page.on('request', (r) => diag.requests.push(r.method() + ' ' + r.url()));
    page.on('console', (m) => diag.console.push(m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => diag.console.push('pageerror: ' + e.message));
    page.on('websocket', (w) => {
      const n = diag.websockets.push(w.url());
      w.on('framesent', (f) => diag.frames.push('ws' + n + ' > ' + String(f.payload).slice(0, 160)));
      w.on('framereceived', (f) => diag.frames.push('ws' + n + ' < ' + String(f.payload).slice(0, 160)));
      w.on('close', () => diag.frames.push('ws' + n + ' closed'));
    });
    const channel = 'e2e-' + sid;
    const url = opts.url + (opts.url.indexOf('?') < 0 ? '?' : '&') + 'channel=' + channel + (opts.query || '');

    await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    try {
      await page.waitForFunction(() => window.ferry && window.ferry.state === 'open', null,
        { timeout: OPEN_MS, polling: 100 });
    } catch (e) {
      const st = await pageState(page).catch(() => ({}));
      throw new Error('the page did not reach state "open" within ' + OPEN_MS + ' ms (state ' + st.state +
        ', transport ' + st.transport + ')');
    }
    let st = await pageState(page);
    assert(st.transport === opts.expect && st.shown === opts.expect,
      'transport: expected ' + opts.expect + ', window.ferry.transport is ' + st.transport +
      ' and #transport shows "' + st.shown + '"');
    assert(st.stateShown === 'open', '#state shows "' + st.stateShown + '", expected "open"');

    const want = [];
    const ids = [];
    async function send(list) {
      for (const t of list) {
        ids.push(await publish(channel, t, opts.server));
        want.push(t);
      }
    }
    await send(texts(sid, 'before', 1, 10));
    await waitCount(page, 10, DELIVER_MS, 'before the disconnect');

    const outage = await opts.via.outage(OUTAGE_MS);
    assert(outage.cut >= 1, 'the disconnect cut no connection: the page was not connected through the ' +
      'proxy under test');
    await send(texts(sid, 'while cut off', 11, 15));
    await outage.heal();
    await send(texts(sid, 'after', 16, 20));
    await waitCount(page, 20, DELIVER_MS, 'after the disconnect');
    await sleep(SETTLE_MS);

    const got = await messagesOnPage(page);
    const shownIds = got.map((m) => m.id);
    assert(new Set(shownIds).size === shownIds.length, 'duplicate messages on the page: ' + shownIds.join(' '));
    for (let i = 1; i < got.length; i++) {
      assert(idAfter(got[i].id, got[i - 1].id),
        'data-id not strictly increasing: ' + got[i - 1].id + ' then ' + got[i].id);
    }
    assert(got.length === want.length, got.length + ' messages on the page, expected ' + want.length + ': ' +
      shownIds.join(' '));
    for (let i = 0; i < want.length; i++) {
      assert(got[i].id === ids[i], 'message ' + (i + 1) + ' has data-id ' + got[i].id + ', publish answered ' +
        ids[i]);
      assert(got[i].text === want[i], 'message ' + (i + 1) + ' text differs: got ' +
        JSON.stringify(got[i].text.slice(0, 200)) + ', published ' + JSON.stringify(want[i].slice(0, 200)));
    }
    if (opts.via.acceptedAfterCut !== undefined) {
      assert(opts.via.acceptedAfterCut >= 1, 'no connection came back after the disconnect');
    }

    st = await pageState(page);
    assert(st.transport === opts.expect && st.shown === opts.expect,
      'after the disconnect: expected transport ' + opts.expect + ', window.ferry.transport is ' +
      st.transport + ' and #transport shows "' + st.shown + '"');
    if (opts.after) await opts.after(page, diag);
    return st.transport;
  } catch (e) {
    e.diag = diag;
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

function requested(diag, re) {
  return diag.requests.some((r) => re.test(r));
}

/* ------------------------------------------------------------------ */
/* scenarios                                                           */

const staticSite = { server: null, port: 0, page: null };

const scenarios = [
  ['es5: client/ferry.js and the served /ferry/ferry.js parse as ES5', async () => {
    const src = fs.readFileSync(FERRY_JS, 'utf8');
    try {
      acorn.parse(src, { ecmaVersion: 5, sourceType: 'script' });
    } catch (e) {
      throw new Error('client/ferry.js is not ES5: ' + e.message);
    }
    const r = await request(ferryd.port, 'GET', '/ferry/ferry.js');
    assert(r.status === 200, 'GET /ferry/ferry.js answered ' + r.status);
    try {
      acorn.parse(r.body, { ecmaVersion: 5, sourceType: 'script' });
    } catch (e) {
      throw new Error('the ferry.js that ferryd serves is not ES5: ' + e.message);
    }
    return 'ok';
  }],

  ['1 direct to ferryd: websocket', async () => {
    const relay = await new Relay().start();
    try {
      return await chat('s1', {
        url: 'http://127.0.0.1:' + relay.port + '/ferry/', via: relay, expect: 'websocket',
        after: async (page, diag) => {
          assert(diag.websockets.length >= 2, 'expected a WebSocket before and after the disconnect, saw ' +
            diag.websockets.length);
        },
      });
    } finally {
      await relay.stop();
    }
  }],

  ['2a WebSocket removed from the page: sse', async () => {
    const relay = await new Relay().start();
    try {
      return await chat('s2a', {
        url: 'http://127.0.0.1:' + relay.port + '/ferry/', via: relay, expect: 'sse', init: [NO_WEBSOCKET],
        after: async (page, diag) => {
          assert(diag.websockets.length === 0, 'a WebSocket was opened although the page has none');
          assert(requested(diag, /\/ferry\/sse\?/), 'no request to /ferry/sse');
        },
      });
    } finally {
      await relay.stop();
    }
  }],

  ['2b WebSocket and EventSource removed: sse over an XHR stream', async () => {
    const relay = await new Relay().start();
    try {
      return await chat('s2b', {
        url: 'http://127.0.0.1:' + relay.port + '/ferry/', via: relay, expect: 'sse',
        init: [NO_WEBSOCKET, NO_EVENTSOURCE],
        after: async (page, diag) => {
          assert(requested(diag, /\/ferry\/sse\?.*pad=1/), 'no XHR event stream (/ferry/sse?...pad=1) requested');
        },
      });
    } finally {
      await relay.stop();
    }
  }],

  ['2c ... and XHR without partial responseText: poll', async () => {
    const relay = await new Relay().start();
    try {
      return await chat('s2c', {
        url: 'http://127.0.0.1:' + relay.port + '/ferry/', via: relay, expect: 'poll',
        init: [NO_WEBSOCKET, NO_EVENTSOURCE, NO_XHR_STREAMING],
        after: async (page, diag) => {
          assert(requested(diag, /\/ferry\/poll\?.*fb=sse_no_data/), 'no /ferry/poll?...fb=sse_no_data request');
        },
      });
    } finally {
      await relay.stop();
    }
  }],

  ['3 nginx without WebSocket upgrade config: sse', async () => {
    const nginx = new Nginx('no upgrade', ['proxy_buffering off;']);
    await nginx.start();
    try {
      return await chat('s3', {
        url: 'http://127.0.0.1:' + nginx.port + '/ferry/', via: nginx, expect: 'sse',
        after: async (page, diag) => {
          assert(diag.websockets.length >= 1, 'the page never tried a WebSocket');
          assert(requested(diag, /\/ferry\/sse\?.*fb=ws_failed/), 'no /ferry/sse?...fb=ws_failed request');
        },
      });
    } catch (e) {
      if (nginx.log) e.message += '\n---- nginx log ----\n' + nginx.log.slice(-2000);
      throw e;
    } finally {
      await nginx.stop();
    }
  }],

  ['4 nginx buffering whole responses: poll', async () => {
    const nginx = new Nginx('buffering', ['proxy_buffering on;', 'proxy_ignore_headers X-Accel-Buffering;']);
    await nginx.start();
    try {
      return await chat('s4', {
        url: 'http://127.0.0.1:' + nginx.port + '/ferry/', via: nginx, expect: 'poll',
        after: async (page, diag) => {
          assert(requested(diag, /\/ferry\/sse\?.*fb=ws_failed/), 'no /ferry/sse?...fb=ws_failed request');
          assert(requested(diag, /\/ferry\/poll\?.*fb=sse_no_data/), 'no /ferry/poll?...fb=sse_no_data request');
        },
      });
    } catch (e) {
      if (nginx.log) e.message += '\n---- nginx log ----\n' + nginx.log.slice(-2000);
      throw e;
    } finally {
      await nginx.stop();
    }
  }],

  ['5 proxy that completes the WebSocket handshake and passes nothing: sse', async () => {
    const proxy = await new BlackholeWsProxy().start();
    try {
      return await chat('s5', {
        url: 'http://127.0.0.1:' + proxy.port + '/ferry/', via: proxy, expect: 'sse',
        after: async (page, diag) => {
          assert(proxy.upgrades >= 1, 'the page never attempted a WebSocket through the proxy');
          assert(requested(diag, /\/ferry\/sse\?.*fb=ws_no_data/), 'no /ferry/sse?...fb=ws_no_data request');
        },
      });
    } finally {
      await proxy.stop();
    }
  }],

  ['6 old IE emulated (XDomainRequest, page on another origin): sse over XDomainRequest', async () => {
    // its own ferryd, which allows the page's origin (--allow-origin
    // replaces the same-host default)
    const server = await startFerryd(['--allow-origin', 'http://127.0.0.1:' + staticSite.port]);
    const relay = await new Relay(server).start();
    try {
      const demo = (await request(relay.port, 'GET', '/ferry/')).body;
      const base = 'http://127.0.0.1:' + relay.port + '/ferry/';
      let copy = demo.replace(/<script src="ferry\.js"><\/script>/, '<script src="' + base + 'ferry.js"></script>');
      assert(copy !== demo, 'the demo page no longer loads <script src="ferry.js">: update scenario 6');
      const copy2 = copy.replace(/var base = [^;\n]*;/, 'var base = ' + JSON.stringify(base) + ';');
      assert(copy2 !== copy, 'the demo page no longer sets "var base = ...;": update scenario 6');
      staticSite.page = copy2;
      return await chat('s6', {
        url: 'http://127.0.0.1:' + staticSite.port + '/', via: relay, server, expect: 'sse', init: [OLD_IE],
        after: async (page) => {
          const xdr = await page.evaluate(() => window.__xdr);
          assert(xdr.urls.some((u) => /^GET http:\/\/127\.0\.0\.1:\d+\/ferry\/sse\?.*pad=1/.test(u)),
            'the event stream did not go over XDomainRequest with pad=1; XDomainRequest saw: ' +
            xdr.urls.join(', '));
          assert(xdr.released >= 1, 'no XDomainRequest got past 2 KiB');
        },
      });
    } catch (e) {
      if (server.log) e.message += '\n---- ferryd (scenario 6) log ----\n' + server.log.slice(-2000);
      throw e;
    } finally {
      staticSite.page = null;
      await relay.stop();
      await stopFerryd(server);
    }
  }],

  ['7 forced ?transport=poll; fallbacks of 3-5 in /ferry/metrics', async () => {
    const relay = await new Relay().start();
    try {
      await chat('s7', {
        url: 'http://127.0.0.1:' + relay.port + '/ferry/', query: '&transport=poll', via: relay, expect: 'poll',
        after: async (page, diag) => {
          assert(diag.websockets.length === 0, 'a WebSocket was opened although poll was forced');
          assert(!requested(diag, /\/ferry\/sse\?/), 'an event stream was opened although poll was forced');
        },
      });
    } finally {
      await relay.stop();
    }
    const d = fallbackDelta;
    const n = (sid, reason) => (d[sid] && d[sid][reason]) || 0;
    assert(d.s3 && d.s4 && d.s5, 'scenarios 3-5 did not run');
    const sum = (sid) => Object.keys(d[sid] || {}).reduce((a, k) => a + d[sid][k], 0);
    assert(sum('s1') === 0, 'fallbacks counted during scenario 1 (websocket): ' + JSON.stringify(d.s1));
    assert(n('s3', 'ws_failed') >= 1, 'scenario 3 counted no ws_failed fallback: ' + JSON.stringify(d.s3));
    assert(n('s3', 'sse_no_data') === 0, 'scenario 3 counted an sse_no_data fallback: ' + JSON.stringify(d.s3));
    assert(n('s4', 'ws_failed') >= 1, 'scenario 4 counted no ws_failed fallback: ' + JSON.stringify(d.s4));
    assert(n('s4', 'sse_no_data') >= 1, 'scenario 4 counted no sse_no_data fallback: ' + JSON.stringify(d.s4));
    assert(n('s5', 'ws_no_data') >= 1, 'scenario 5 counted no ws_no_data fallback: ' + JSON.stringify(d.s5));
    const total = await fallbackCounts();
    assert(total.ws_failed >= 2 && total.ws_no_data >= 1 && total.sse_no_data >= 1,
      'ferry_fallbacks_total too low: ' + JSON.stringify(total));
    return 'poll; fallbacks ' + JSON.stringify(total);
  }],
];

/* ------------------------------------------------------------------ */

// Processes and folders go at exit (harness.atExit); this closes the rest.
async function cleanup() {
  if (chrome) await chrome.close();
  chrome = browser = null;
  if (staticSite.server) staticSite.server.close();
}

let current = '(startup)';
const overall = setTimeout(async () => {
  console.log('not ok - the test did not finish within ' + OVERALL_MS + ' ms (running: ' + current + ')');
  process.exit(1);
}, OVERALL_MS);

async function main() {
  const t0 = Date.now();
  const only = process.argv.slice(2);

  // the other origin of scenario 6
  staticSite.server = http.createServer((req, res) => {
    if (staticSite.page && req.url.split('?')[0] === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(staticSite.page);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
    }
  });
  await new Promise((resolve) => staticSite.server.listen(0, '127.0.0.1', resolve));
  staticSite.port = staticSite.server.address().port;

  ferryd = await startFerryd();
  chrome = await harness.startChromium(chromium, CHROMIUM);
  browser = chrome.browser;

  for (const [name, fn] of scenarios) {
    const sid = (/^(\d+[a-z]?) /.exec(name) || [])[1];
    if (only.length && !only.some((o) => name.indexOf(o) === 0)) continue;
    current = name;
    const before = await fallbackCounts();
    const e = await tally.run(name, async () => 'ended on ' + await fn());
    if (e && e.diag) harness.printDiag(e.diag, 40);
    if (sid) {
      const after = await fallbackCounts();
      const delta = {};
      for (const k of Object.keys(after)) if (after[k] !== (before[k] || 0)) delta[k] = after[k] - (before[k] || 0);
      fallbackDelta['s' + sid] = delta;
    }
  }

  await chrome.close();
  chrome = browser = null;
  try {
    await stopFerryd(ferryd);
  } catch (e) {
    tally.notOk(e.message);
  }
  if (tally.failures && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-4000));
  console.log(tally.summary(t0));
}

main().then(async () => {
  await cleanup();
  clearTimeout(overall);
  process.exit(tally.failures ? 1 : 0);
}, async (e) => {
  console.log('not ok - ' + (e && e.stack || e));
  if (ferryd && ferryd.log) console.log('---- ferryd log ----\n' + ferryd.log.slice(-4000));
  await cleanup();
  clearTimeout(overall);
  process.exit(99);
});
