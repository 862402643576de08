#!/usr/bin/env node
// test_client.js -- client/ for application developers (issue 19):
//   types    tsc --noEmit on tests/client/uses_ferry.ts against client/ferry.d.ts
//            (strict; its @ts-expect-error lines must stay errors), and every
//            method ferry.d.ts declares exists on the real Ferry
//   size     client/size.js: minified (terser) + gzipped under its budget
//   npm      `npm install <path to client/>` into an empty project, offline:
//            require('ferry-client') is the Ferry class, types point at ferry.d.ts
// Exit 77 when typescript or terser (tests/package.json) are not installed.
'use strict';

const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const vm = require('vm');
const harness = require(path.join(__dirname, '..', 'lib', 'harness.js'));
const { assert } = harness;

const CLIENT = path.join(__dirname, '..', '..', 'client');
const tally = new harness.Tally();

function resolve(name) {
  try { return require.resolve(name); } catch (e) { return harness.skip('the npm package "' + name.split('/')[0] + '" is not installed: run `npm ci` in tests/'); }
}

async function main() {
  const tsc = resolve('typescript/bin/tsc');
  resolve('terser');

  await tally.run('types: tsc --noEmit on uses_ferry.ts', async () => {
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join(__dirname, 'tsconfig.json')], { encoding: 'utf8', timeout: 120000 });
    assert(r.status === 0, 'tsc exited ' + r.status + ':\n' + r.stdout + r.stderr);
    // the declared methods are the real ones
    const sandbox = { window: undefined, document: { readyState: 'loading' } };
    sandbox.window = sandbox;
    vm.runInNewContext(fs.readFileSync(path.join(CLIENT, 'ferry.js'), 'utf8'), sandbox);
    const F = sandbox.Ferry;
    assert(typeof F === 'function', 'ferry.js defines no global Ferry');
    const dts = fs.readFileSync(path.join(CLIENT, 'ferry.d.ts'), 'utf8');
    const cls = dts.slice(dts.indexOf('declare class Ferry'));
    const methods = [], statics = [];
    const re = /^ {2}(static )?(\w+)(<[^>]*>)?\(/gm;
    let m;
    while ((m = re.exec(cls)) !== null) (m[1] ? statics : methods).push(m[2]);
    for (const name of methods) assert(typeof F.prototype[name] === 'function', 'ferry.d.ts declares ' + name + '(), ferry.js has none');
    for (const name of statics) assert(typeof F[name] === 'function', 'ferry.d.ts declares static ' + name + '(), ferry.js has none');
    return 'strict, ' + methods.length + ' methods and ' + statics.length + ' static as declared';
  });

  await tally.run('size: minified + gzipped under the budget', async () => {
    const r = spawnSync(process.execPath, [path.join(CLIENT, 'size.js'), '--json'], { encoding: 'utf8', timeout: 60000 });
    assert(r.status === 0, 'client/size.js exited ' + r.status + ': ' + r.stdout + r.stderr);
    const s = JSON.parse(r.stdout.trim().split('\n')[0]);
    return s.minified_gzip + ' bytes of ' + s.budget + ' (minified ' + s.minified + ', source ' + s.source + ')';
  });

  await tally.run('npm install <path to client/>', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-npm-'));
    harness.atExit(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'package.json'), '{"name":"app","version":"1.0.0","private":true}\n');
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--install-links', CLIENT],
      { cwd: dir, stdio: 'pipe', timeout: 120000 });
    const pkg = path.join(dir, 'node_modules', 'ferry-client');
    const meta = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8'));
    assert(fs.existsSync(path.join(pkg, meta.types)), 'types ' + meta.types + ' not installed');
    const F = require(path.join(pkg, meta.main));
    assert(typeof F === 'function' && typeof F.prototype.subscribe === 'function', 'require("ferry-client") is not Ferry');
    const files = fs.readdirSync(pkg).sort().join(' ');
    return 'installed ' + files;
  });
  console.log(tally.summary());
}

main().then(() => process.exit(tally.failures ? 1 : 0), (e) => { console.log('not ok - ' + (e && e.stack || e)); process.exit(99); });
