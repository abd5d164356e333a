/**
 * The package as npm users get it: `npm pack` (which builds through `prepare`), then the tarball
 * installed into a fresh app beside nothing but the registry's packages (from npm's cache when it
 * has them). Checks what README "Install" promises: `import`, `require`, types under
 * `tsc --module nodenext` (ESM and CJS files), the `bin`, and embedding the server from
 * `temporal-keyring/server`. One pack and one install for the whole file; every step bounded.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDirSync } from '../support/temp-dir.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

function run(command: string, args: string[], cwd: string, timeoutMs = 240_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const env = { ...process.env };
    // A test runner started by `npm test` passes npm's own settings down; the app is a new project.
    for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
    for (const k of Object.keys(env)) if (k.startsWith('TEMPORAL_KEYRING_')) delete env[k];
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe('the packed tarball in a fresh app', () => {
  const work = tempDirSync('tk-pack-');
  const app = join(work, 'app');

  beforeAll(async () => {
    const packed = await run('npm', ['pack', '--silent', '--pack-destination', work], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    expect(tarball).toBeDefined();
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    const installed = await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, tarball!)],
      app,
    );
    expect(installed.code, installed.stderr).toBe(0);
  }, 300_000);

  afterAll(() => rmSync(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }));

  it('imports as ESM and round-trips a payload', async () => {
    writeFileSync(
      join(app, 'esm.mjs'),
      `import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { EncryptionCodec, generateKekBase64, openKeyring } from 'temporal-keyring';
const dir = await mkdtemp(join(process.cwd(), 'keys-'));
const { keyring, close } = await openKeyring({ keystore: dir, kek: { type: 'base64', value: generateKekBase64() } });
await keyring.createNamespace('default');
const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
const [sealed] = await codec.encode([{ metadata: { encoding: new TextEncoder().encode('json/plain') }, data: new TextEncoder().encode('"hi"') }]);
const [opened] = await codec.decode([sealed]);
console.log(new TextDecoder().decode(sealed.metadata.encoding), new TextDecoder().decode(opened.data));
await close();
`,
    );
    const r = await run('node', ['esm.mjs'], app);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('binary/encrypted "hi"');
  }, 60_000);

  it('loads with require() (Node >= 20.19 runs require(esm) by default), without warnings', async () => {
    writeFileSync(
      join(app, 'cjs.cjs'),
      `const tk = require('temporal-keyring');
const server = require('temporal-keyring/server');
console.log(typeof tk.openKeyring, typeof tk.EncryptionCodec, typeof server.startServer);
`,
    );
    const r = await run('node', ['cjs.cjs'], app);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('function function function');
    expect(r.stderr).not.toMatch(/Warning/);
  }, 60_000);

  it('type-checks under tsc --module nodenext, from ESM and from CJS', async () => {
    const body = `
const opened = await openKeyring({ keystore: '/tmp/none', kek: { type: 'base64', value: generateKekBase64() } });
const codec: EncryptionCodec = new EncryptionCodec({ namespace: 'default', keys: opened.keyring });
const v: number = codec.format;
const s: Promise<RunningServer> = startServer({ config: parseServerConfig({ dev: true }), keyring: opened.keyring });
// The types are real, not \`any\`: a wrong call is an error.
// @ts-expect-error namespace must be a string
new EncryptionCodec({ namespace: 1, keys: opened.keyring });
export { v, s };
`;
    writeFileSync(
      join(app, 'check.mts'),
      `import { EncryptionCodec, generateKekBase64, openKeyring } from 'temporal-keyring';
import { parseServerConfig, type RunningServer, startServer } from 'temporal-keyring/server';
${body}`,
    );
    writeFileSync(
      join(app, 'check.cts'),
      `import tk = require('temporal-keyring');
import server = require('temporal-keyring/server');
const k: typeof tk.openKeyring = tk.openKeyring;
const p: typeof server.startServer = server.startServer;
// @ts-expect-error a keystore is a location string or a Keystore
void tk.openKeyring({ keystore: 1 });
export { k, p };
`,
    );
    const r = await run(
      'node',
      [
        TSC,
        '--noEmit',
        '--strict',
        // Temporal's own declarations need @types/ms, which apps add themselves; ours are real
        // (the @ts-expect-error lines fail if they resolved to \`any\`).
        '--skipLibCheck',
        '--module',
        'nodenext',
        '--target',
        'es2022',
        '--types',
        'node',
        '--typeRoots',
        join(app, 'node_modules/@types'),
        'check.mts',
        'check.cts',
      ],
      app,
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
  }, 120_000);

  it('runs the bin: npx temporal-keyring', async () => {
    const help = await run('npx', ['--no-install', 'temporal-keyring', 'keys', 'create', '--help'], app);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('--namespace');
    const kek = await run('npx', ['--no-install', 'temporal-keyring', 'keygen'], app);
    expect(kek.code, kek.stderr).toBe(0);
    expect(Buffer.from(kek.stdout.trim(), 'base64')).toHaveLength(32);
  }, 60_000);

  it('embeds the codec server from temporal-keyring/server', async () => {
    writeFileSync(
      join(app, 'server.mjs'),
      `import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKekBase64, openKeyring } from 'temporal-keyring';
import { parseServerConfig, startServer } from 'temporal-keyring/server';
import pino from 'pino';
const dir = await mkdtemp(join(process.cwd(), 'keys-'));
const { keyring, close } = await openKeyring({ keystore: dir, kek: { type: 'base64', value: generateKekBase64() } });
await keyring.createNamespace('default');
const running = await startServer({ config: parseServerConfig({ dev: true, port: 0 }), keyring, closeKeyring: close, logger: pino({ level: 'silent' }) });
const body = JSON.stringify({ payloads: [{ metadata: { encoding: 'anNvbi9wbGFpbg==' }, data: 'ImhpIg==' }] });
const enc = await (await fetch(running.url + '/default/encode', { method: 'POST', headers: { 'content-type': 'application/json' }, body })).json();
const dec = await (await fetch(running.url + '/default/decode', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(enc) })).json();
console.log(Buffer.from(enc.payloads[0].metadata.encoding, 'base64').toString(), Buffer.from(dec.payloads[0].data, 'base64').toString());
await running.close();
`,
    );
    const r = await run('node', ['server.mjs'], app);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('binary/encrypted "hi"');
  }, 60_000);
});
