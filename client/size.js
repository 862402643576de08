#!/usr/bin/env node
// size.js -- how many bytes ferry.js costs a page: minified (terser, a dev
// tool from npm: `cd tests && npm ci`; ferry.js itself ships unminified, with
// no build step) and gzipped (level 9). Exits 1 when the minified+gzipped
// size is over BUDGET, so `make check` keeps it there (tests/client/test_size.sh).
//   node client/size.js [--json]
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const BUDGET = 9 * 1024; // bytes, minified + gzipped
const FILE = path.join(__dirname, 'ferry.js');

function load(name) {
  const tries = [name, path.join(__dirname, '..', 'tests', 'node_modules', name)];
  for (const t of tries) {
    try { return require(t); } catch (e) { /* next */ }
  }
  console.log('SKIP: the npm package "' + name + '" is not installed: run `npm ci` in tests/');
  process.exit(77);
}

async function main() {
  const { minify } = load('terser');
  const src = fs.readFileSync(FILE, 'utf8');
  const min = (await minify(src, { ecma: 5, compress: { passes: 2 }, mangle: true })).code;
  const gz = (s) => zlib.gzipSync(Buffer.from(s, 'utf8'), { level: 9 }).length;
  const r = { source: Buffer.byteLength(src), gzip: gz(src), minified: Buffer.byteLength(min), minified_gzip: gz(min),
    budget: BUDGET };
  if (process.argv.includes('--json')) console.log(JSON.stringify(r));
  else {
    console.log('ferry.js: ' + r.source + ' bytes, ' + r.gzip + ' gzipped; minified ' + r.minified + ', ' +
      r.minified_gzip + ' gzipped (budget ' + BUDGET + ')');
  }
  if (r.minified_gzip > BUDGET) {
    console.log('over budget by ' + (r.minified_gzip - BUDGET) + ' bytes');
    process.exit(1);
  }
}

main().catch((e) => { console.log(e && e.stack || e); process.exit(2); });
