/**
 * Concurrent rotations across processes sharing one keystore: every lifecycle change is a
 * compare-and-set against the namespace as read, so of two rotations decided on the same state
 * exactly one is performed and the other answers `performed: false` (200, not an error). Through
 * the admin API of two real `serve` processes and through two CLI processes, on the file and the
 * PostgreSQL keystore; and the forced-promotion race, where no second version may become active.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import type { KeyVersion } from '../../src/model/key-version.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { cli } from '../cli/run-cli.ts';
import { keystoreBackends } from '../support/keystore-backends.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'cli/main.ts');
const NS = 'race';
const ROUNDS = 50;

const backends = keystoreBackends('race');

interface Server {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** `temporal-keyring serve --dev` as a real process on a loopback port, without its rotator. */
async function serve(location: string, kek: string): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', MAIN, '--keystore', location, 'serve', '--dev', '--port', '0'],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        TEMPORAL_KEYRING_KEK: kek,
        TEMPORAL_KEYRING_ROTATOR: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  const kill = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const exited = new Promise<number | null>((done) =>
    child.on('exit', (code) => {
      clearTimeout(kill);
      done(code);
    }),
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    const collect = (chunk: Buffer) => {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      const line = lines.find((l) => l.includes('codec server listening'));
      if (line) resolveUrl((JSON.parse(line) as { url: string }).url);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    void exited.then((code) => reject(new Error(`serve exited (${code}): ${lines.join('\n')}`)));
  });
  return { url, child, exited };
}

async function stop(server: Server): Promise<void> {
  server.child.kill('SIGTERM');
  await server.exited;
}

async function post(server: Server, path: string, body: object): Promise<Record<string, unknown>> {
  const r = await fetch(`${server.url}/admin/namespaces/${NS}/keys/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await r.json()) as Record<string, unknown>;
  expect(r.status, JSON.stringify(json)).toBe(200);
  return json;
}

/** A keyring on the shared keystore, for setup and for reading the truth. */
async function observer(location: string, kek: string) {
  const opened = await openKeyring({
    keystore: location,
    createIfMissing: true,
    kek: { type: 'base64', value: kek },
    meter: false,
  });
  if ((await opened.keyring.versions(NS)).length === 0) await opened.keyring.manager.createNamespace(NS);
  const versions = () => opened.keyring.manager.versions(NS);
  const active = async () => (await versions()).find((v) => v.state === 'active')!;
  return { ...opened, versions, active };
}

/** No version became active without being prepublished first, unless it was created active (immediate). */
function assertOneActive(versions: KeyVersion[]): void {
  expect(versions.filter((v) => v.state === 'active').length).toBe(1);
  expect(versions.map((v) => v.version)).toEqual(versions.map((_, i) => i + 1));
}

describe.each(backends)('concurrent rotations across processes: $name', (backend) => {
  it(`through the admin API of two serve processes: one new version per round over ${ROUNDS} rounds, and forced promotions activate the prepublished version only`, {
    timeout: 170_000,
  }, async () => {
    const location = await backend.location();
    const kek = generateKekBase64();
    const o = await observer(location, kek);
    const servers = await Promise.all([serve(location, kek), serve(location, kek)]);
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const before = await o.active();
        const results = await Promise.all(
          servers.map((s) => post(s, 'rotate', { expectedActiveVersion: before.version })),
        );
        expect(results.map((r) => r.performed).sort(), `round ${round}`).toEqual([false, true]);
        const after = await o.versions();
        expect(after.length, `round ${round}`).toBe(before.version + 1);
        expect(after.at(-1)!.state).toBe('active');
        assertOneActive(after);
      }
      // Forced promotion race: after a prepublish, a forced rotate on one server and a forced
      // set-state active on the other. Exactly one activates the prepublished version; no other
      // version is created, let alone activated.
      for (let round = 0; round < ROUNDS; round++) {
        const before = await o.active();
        const pre = await post(servers[round % 2]!, 'rotate', {
          mode: 'prepublish',
          expectedActiveVersion: before.version,
        });
        const pending = (pre.current as KeyVersion).version;
        expect(pending).toBe(before.version + 1);
        const [a, b] = await Promise.all([
          post(servers[0]!, 'rotate', { force: true, expectedActiveVersion: before.version }),
          post(servers[1]!, `${pending}/state`, { state: 'active', force: true }),
        ]);
        expect([a.performed, b.performed].filter(Boolean).length, `round ${round}`).toBe(1);
        const after = await o.versions();
        expect(after.length, `round ${round}`).toBe(pending);
        expect(after.at(-1)).toMatchObject({ version: pending, state: 'active' });
        assertOneActive(after);
      }
    } finally {
      await Promise.all(servers.map(stop));
      await o.close();
    }
  });

  // Two CLI processes per round (about a second each here): bounded by the round count.
  it(`through two CLI processes: one new version per round over ${ROUNDS} rounds`, {
    timeout: 600_000,
  }, async () => {
    const location = await backend.location();
    const kek = generateKekBase64();
    const o = await observer(location, kek);
    const env = { TEMPORAL_KEYRING_KEYSTORE: location, TEMPORAL_KEYRING_KEK: kek };
    let rounds = 0;
    try {
      while (rounds < ROUNDS) {
        const before = await o.active();
        const args = [
          'keys',
          'rotate',
          '-n',
          NS,
          '--expected-active-version',
          String(before.version),
          '--json',
        ];
        const runs = await Promise.all([cli(args, { env }), cli(args, { env })]);
        for (const r of runs) expect(r.code, r.stderr).toBe(0);
        const performed = runs.map((r) => (JSON.parse(r.stdout) as { performed: boolean }).performed);
        expect(performed.sort(), `round ${rounds}`).toEqual([false, true]);
        const after = await o.versions();
        expect(after.length).toBe(before.version + 1);
        assertOneActive(after);
        rounds++;
      }
    } finally {
      await o.close();
    }
    expect(rounds).toBe(ROUNDS);
  });
});
