/**
 * Crash suite, rotator: a real process running the `Rotator` (two-phase rotations of three
 * namespaces, back to back) is SIGKILLed at random points while it holds the rotator lease, on the
 * file keystore and on PostgreSQL. After each kill, a successor rotator (with a ManualClock, so no
 * test waits for time to pass) is refused while the dead holder's lease runs, takes it once it has
 * expired, finishes any half-done rotation, and releases it for the next process. The store keeps
 * one active version per namespace, at most one prepublished, and every version the killed
 * process reported as created, with material that unwraps.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { Rotator } from '../../src/rotation/rotator.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { tempDir } from '../support/temp-dir.ts';

const CHILD = fileURLToPath(new URL('./fixtures/crash-rotator-child.ts', import.meta.url));
const NAMESPACES = ['r1', 'r2', 'r3'];
const KILLS = 8;
const LEASE_TTL_MS = 60_000;

let pgServer: TestPostgres;
let dir: string;
const children: ChildProcess[] = [];
beforeAll(async () => {
  pgServer = await startPostgres();
  dir = await tempDir('tk-crash-rotator-');
}, 120_000);
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await pgServer?.stop();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

/** Starts the rotator child; kills it during check `n + 1`. Returns the versions it reported. */
async function runAndKill(
  env: Record<string, string>,
  n: number,
): Promise<{ ns: string; version: number }[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, ...env, LEASE_TTL_MS: String(LEASE_TTL_MS) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const limit = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const created: { ns: string; version: number }[] = [];
  const stepTimes: number[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (text) => {
      const line = JSON.parse(text) as { ev: string; ns?: string; version?: number };
      if (line.ev === 'created') created.push({ ns: line.ns!, version: line.version! });
      if (line.ev === 'step' && stepTimes.push(performance.now()) === n) resolve();
    });
    exited.then(() => reject(new Error(`rotator exited (${child.exitCode ?? child.signalCode}): ${stderr}`)));
  });
  const stepMs = n >= 2 ? stepTimes[n - 1]! - stepTimes[n - 2]! : 20;
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 1.2 * stepMs));
  child.kill('SIGKILL');
  await exited;
  clearTimeout(limit);
  expect({ signal: child.signalCode, stderr }).toEqual({ signal: 'SIGKILL', stderr: '' });
  return created;
}

const backends: [string, () => Promise<{ env: Record<string, string>; open: () => Promise<Keystore> }>][] = [
  [
    'file',
    async () => {
      const store = await mkdtemp(join(dir, 'store-'));
      return { env: { DIR: store }, open: () => FileKeystore.open({ dir: store }) };
    },
  ],
  [
    'postgres',
    async () => {
      const url = await pgServer.newDatabase('rotator');
      return {
        env: { PG_URL: url },
        open: () => PostgresKeystore.open({ connectionString: url, pollIntervalMs: 3_600_000 }),
      };
    },
  ],
];

describe.each(backends)('a rotator SIGKILLed mid-rotation (%s keystore)', (_name, makeBackend) => {
  it('leaves a consistent store and a lease the next rotator takes over once expired', async () => {
    const backend = await makeBackend();
    const kekBase64 = generateKekBase64();
    const kek = LocalKek.fromBase64(kekBase64);
    const seedStore = await backend.open();
    const seed = await Keyring.open({ keystore: seedStore, kek });
    for (const ns of NAMESPACES) await seed.createNamespace(ns);
    await seed.close();
    await seedStore.close();

    const created: { ns: string; version: number }[] = [];
    let takeovers = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      created.push(
        ...(await runAndKill({ ...backend.env, KEK: kekBase64 }, 1 + Math.floor(Math.random() * 6))),
      );

      const keystore = await backend.open();
      const keyring = await Keyring.open({ keystore, kek, refreshIntervalMs: 3_600_000 });
      const clock = new ManualClock(Date.now());
      const successor = new Rotator({
        keyring,
        keystore,
        clock,
        policies: () => ({
          enabled: true,
          maxEncryptions: 2 ** 31,
          maxAge: 1,
          leadTime: 0,
          propagationDelay: 0,
        }),
        checkIntervalMs: 30_000,
        leaseTtlMs: LEASE_TTL_MS,
      });
      try {
        // The dead process's lease still runs: the successor must not act yet.
        expect((await successor.runOnce()).leader).toBe(false);
        clock.advance(LEASE_TTL_MS + 1);
        const run = await successor.runOnce();
        expect(run.leader).toBe(true);
        expect(run.actions.filter((a) => a.action === 'failed')).toEqual([]);
        for (const a of run.actions)
          if (a.action === 'prepublished') created.push({ ns: a.namespace, version: a.version! });
        takeovers++;

        for (const ns of NAMESPACES) {
          const versions = await keystore.getVersions(ns);
          expect(
            versions.filter((v) => v.state === 'active'),
            ns,
          ).toHaveLength(1);
          expect(versions.filter((v) => v.state === 'prepublished').length, ns).toBeLessThanOrEqual(1);
          for (const v of versions)
            expect((await keyring.decryptionKey(ns, v.version)).exportMaterial()).toHaveLength(32);
        }
        for (const c of created) {
          const versions = await keystore.getVersions(c.ns);
          expect(
            versions.some((v) => v.version === c.version),
            `${c.ns} v${c.version}`,
          ).toBe(true);
        }
      } finally {
        await successor.stop(); // releases the lease for the next process
        await keyring.close();
        await keystore.close();
      }
    }
    if (process.env.SHOW_NUMBERS) console.log({ kills: KILLS, takeovers, created: created.length });
    expect(takeovers).toBe(KILLS);
    expect(created.length).toBeGreaterThan(KILLS);
  }, 180_000);
});
