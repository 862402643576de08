// harness.js -- what the Node.js tests share (tests/integration/*.js,
// tests/e2e/*.js), as tests/lib/harness.py is for the Python ones:
// skipping (exit 77) when a tool or an npm package is missing, bounded waits,
// free loopback ports, child processes (ferryd, nginx, ...) that are killed by
// their PID at exit, headless Chromium through playwright-core, and the
// "ok - ..." / "not ok - ..." lines with their closing count.
//
// Everything binds to 127.0.0.1 only, and every wait here has a deadline.
// Load it with require(path.join(__dirname, '..', 'lib', 'harness.js')).
'use strict';

const { spawn } = require('child_process');
const http = require('http');
const https = require('https');
const net = require('net');
const path = require('path');

// The binary under test: `make check` sets FERRYD (AM_TESTS_ENVIRONMENT).
const FERRYD = process.env.FERRYD || path.join(__dirname, '..', '..', 'ferryd');

/* ---------------- skipping ---------------- */

// Exit 77: automake counts the test as skipped, not failed.
function skip(msg) {
  console.log('SKIP: ' + msg);
  process.exit(77);
}

// The npm package `name`, or null. From this file, require() searches
// tests/lib/node_modules, tests/node_modules (where `npm ci` in tests/ puts
// them) and NODE_PATH (which make check points at --with-node-modules).
function tryRequire(name) {
  try {
    return require(name);
  } catch (e) {
    return null;
  }
}

// The npm package `name`; skips the test when it cannot be loaded, with
// require()'s error in parentheses unless opts.why is false.
function load(name, opts) {
  try {
    return require(name);
  } catch (e) {
    const why = opts && opts.why === false ? '' : ' (' + e.message + ')';
    return skip('the npm package "' + name + '" is not installed: run `npm ci` in tests/' + why);
  }
}

/* ---------------- small helpers ---------------- */

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Seconds since `start` (a Date.now()), as "1.2".
function seconds(start) {
  return ((Date.now() - start) / 1000).toFixed(1);
}

// `promise`, or a rejection naming `what` once ms have passed.
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error('timed out after ' + ms + ' ms waiting for ' + what)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// A port the kernel just handed out on 127.0.0.1. Another process could take
// it before the caller binds it; on loopback in a test run that is rare.
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

// Whether 127.0.0.1:port accepts a TCP connection; a connect that hangs
// counts as "no" after a second.
function canConnect(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.setTimeout(1000, () => { c.destroy(); resolve(false); });
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

/* ---------------- cleanups at exit ---------------- */

const exitHooks = [];

// Runs fn when the process exits, however it exits (process.exit, the end of
// the event loop), after hooks added later. fn must be synchronous: nothing
// asynchronous runs in an 'exit' handler.
function atExit(fn) {
  exitHooks.push(fn);
}

process.on('exit', () => {
  while (exitHooks.length) {
    try { exitHooks.pop()(); } catch (e) { /* best effort: the others still run */ }
  }
});

/* ---------------- child processes ---------------- */

const children = [];

function running(proc) {
  return proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null;
}

function killByPid(proc) {
  if (running(proc)) {
    try { process.kill(proc.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
  }
}

// SIGKILLs, by PID, every child of spawnChild() still running. Also runs at exit.
function killChildren() {
  for (const c of children) killByPid(c.proc);
}
atExit(killChildren);

// Starts `cmd args` with its stdout and stderr collected in child.log.
// Returns { name, proc, log, exited }: exited resolves to { code, sig } when
// it exits. A failed spawn (no such file) is noted in the log, and leaves
// proc.exitCode set (negative), which waitListening() reports.
function spawnChild(name, cmd, args) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const child = { name, proc, log: '' };
  proc.stdout.on('data', (d) => { child.log += d; });
  proc.stderr.on('data', (d) => { child.log += d; });
  proc.on('error', (e) => { child.log += 'spawn error: ' + e.message + '\n'; });
  child.exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  children.push(child);
  return child;
}

// Resolves once 127.0.0.1 accepts on every port of `ports` (a number or an
// array), all within ms; rejects, with the child's log, if it exits first or
// the time runs out.
async function waitListening(ports, ms, child) {
  const deadline = Date.now() + ms;
  const p = child.proc;
  for (const port of [].concat(ports)) {
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null) {
        throw new Error(child.name + ' exited at startup (' + (p.exitCode !== null ? p.exitCode : p.signalCode) +
          '):\n' + child.log);
      }
      if (await canConnect(port)) break;
      if (Date.now() >= deadline) {
        throw new Error(child.name + ' did not listen on 127.0.0.1:' + port + ' within ' + ms + ' ms:\n' + child.log);
      }
      await sleep(50);
    }
  }
}

// Resolves true once proc has exited, false if it still runs after ms.
function waitExit(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    proc.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}

// Sends `signal` to the child's PID and waits up to ms for it to exit. If it
// does not, SIGKILLs it (waiting up to 5 s more) and resolves false. The
// caller checks the exit status: child.proc.exitCode, child.exited.
async function stop(child, signal, ms) {
  const p = child.proc;
  if (!running(p)) return true;
  try { process.kill(p.pid, signal); } catch (e) { /* exited meanwhile */ }
  if (await waitExit(p, ms)) return true;
  killByPid(p);
  await waitExit(p, 5000);
  return false;
}

// ferryd --listen 127.0.0.1:PORT followed by args, PORT being opts.port or a
// free port. Resolves to its child (see spawnChild), with .port, once it
// accepts on PORT and on the ports of opts.alsoListening, within opts.ms
// (default 10 s) for all of them.
async function startFerryd(args, opts) {
  const o = opts || {};
  const port = o.port || await freePort();
  const child = spawnChild('ferryd', FERRYD, ['--listen', '127.0.0.1:' + port].concat(args || []));
  child.port = port;
  await waitListening([port].concat(o.alsoListening || []), o.ms || 10000, child);
  return child;
}

/* ---------------- HTTP ---------------- */

// One request to 127.0.0.1:port on a connection of its own (no keep-alive),
// a string body sent as UTF-8 text/plain. Resolves { status, headers, body
// (UTF-8), protocol (the TLS version, or null) } within opts.ms (default
// 5 s). opts.https makes it HTTPS with those TLS options (e.g. { ca }).
function request(port, method, urlPath, body, opts) {
  const o = opts || {};
  const mod = o.https ? https : http;
  return withTimeout(new Promise((resolve, reject) => {
    const req = mod.request(Object.assign({ host: '127.0.0.1', port, method, path: urlPath, agent: false,
      headers: body === undefined ? {} : { 'Content-Type': 'text/plain; charset=utf-8' } }, o.https), (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        protocol: res.socket.getProtocol ? res.socket.getProtocol() : null }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : Buffer.from(body, 'utf8'));
  }), o.ms || 5000, method + ' ' + urlPath);
}

/* ---------------- Chromium ---------------- */

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

// Headless Chromium at executablePath, through playwright-core's `chromium`.
// Resolves { browser, close }; close() never rejects and takes at most 10 s
// a step. By default playwright's launch(), which ends Chromium when this
// process exits. With opts.server, launchServer() on 127.0.0.1 and a
// connect(): Chromium is then a process-group leader whose group is killed,
// by PID, at exit.
async function startChromium(chromium, executablePath, opts) {
  const launchOpts = { executablePath, args: CHROMIUM_ARGS };
  if (!(opts && opts.server)) {
    const browser = await withTimeout(chromium.launch(launchOpts), 30000, 'Chromium to start');
    return { browser, close: () => withTimeout(browser.close(), 10000, 'Chromium to close').catch(() => {}) };
  }
  const server = await withTimeout(chromium.launchServer(Object.assign({ host: '127.0.0.1' }, launchOpts)),
    30000, 'Chromium to start');
  atExit(() => {
    const cp = server.process();
    if (cp && running(cp)) {
      try { process.kill(-cp.pid, 'SIGKILL'); } catch (e) { /* gone */ }
      killByPid(cp);
    }
  });
  const browser = await withTimeout(chromium.connect(server.wsEndpoint()), 10000, 'playwright to connect');
  return {
    browser,
    close: async () => {
      await withTimeout(browser.close(), 10000, 'the browser connection to close').catch(() => {});
      await withTimeout(server.close(), 10000, 'Chromium to close').catch(() => {});
    },
  };
}

// Prints what a page did ({ requests, console, frames } of strings) after a
// failed case: the last `last` requests and WebSocket frames, the last 20
// console lines.
function printDiag(diag, last) {
  console.log('  requests:\n    ' + diag.requests.slice(-last).join('\n    '));
  if (diag.console.length) console.log('  console:\n    ' + diag.console.slice(-20).join('\n    '));
  if (diag.frames.length) console.log('  WebSocket frames:\n    ' + diag.frames.slice(-last).join('\n    '));
}

/* ---------------- pass/fail counting ---------------- */

// Counts results as it prints them, one line each: "ok - ..." or
// "not ok - ...".
class Tally {
  constructor() {
    this.passes = 0;
    this.failures = 0;
  }
  ok(what) {
    this.passes++;
    console.log('ok - ' + what);
  }
  notOk(what) {
    this.failures++;
    console.log('not ok - ' + what);
  }
  // Runs one case; fn resolves to a few words on what it saw. Prints
  // "ok - NAME (1.2 s; WORDS)" or "not ok - NAME (1.2 s): MESSAGE". Resolves
  // to the error of a failed case (for the caller's diagnostics), else null.
  async run(name, fn) {
    const start = Date.now();
    try {
      const what = await fn();
      this.ok(name + ' (' + seconds(start) + ' s; ' + what + ')');
      return null;
    } catch (e) {
      this.notOk(name + ' (' + seconds(start) + ' s): ' + e.message);
      return e;
    }
  }
  // "P passed, F failed", then " (T s)" when given the start of the run.
  summary(start) {
    const took = start === undefined ? '' : ' (' + seconds(start) + ' s)';
    return this.passes + ' passed, ' + this.failures + ' failed' + took;
  }
}

module.exports = {
  FERRYD, CHROMIUM_ARGS,
  skip, tryRequire, load,
  assert, sleep, seconds, withTimeout, freePort, canConnect,
  atExit, spawnChild, killChildren, waitListening, waitExit, stop, startFerryd,
  request, startChromium, printDiag,
  Tally,
};
