import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWorkers, workerCount } from '../../codec-server/cluster.ts';
import { runServe, serverConfigInput } from '../../codec-server/serve-command.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { initShamirKeystore } from '../../src/kek/shamir-kek.ts';
import { openKeystore } from '../../src/keystore/open-keystore.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { type CliProcess, jsonLine as json, logged, spawnCli } from '../support/cli-process.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { uiJsonPayload } from './support.ts';

const KEK = Buffer.alloc(32, 9).toString('base64');
const TOKEN = 'workers-test-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };

type Proc = CliProcess;

/** Runs `temporal-keyring <args>` as a real process (bounded: killed after 50 s at the latest). */
const runCli = (args: string[], env: NodeJS.ProcessEnv = {}): Proc =>
  spawnCli(args, { env, killAfterMs: 50_000 });

/** The parts of encode, decode and rotate answers the test reads. */
interface Answer {
  payloads: { metadata: Record<string, string>; data: string }[];
  current: { version: number };
}

/** POST on a fresh connection (no keep-alive), so that the cluster may hand it to any worker. */
function postFresh(
  url: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<{ status: number; body: Answer }> {
  return new Promise((done, fail) => {
    const req = request(
      url,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...AUTH, ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          done({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) as Answer }),
        );
      },
    );
    req.on('error', fail);
    req.end(JSON.stringify(body));
  });
}

/** GET on a fresh connection: the cluster may hand it to any worker. */
function getFresh(url: string): Promise<{ status: number; text: string }> {
  return new Promise((done, fail) => {
    const req = request(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done({ status: res.statusCode!, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', fail);
    req.end();
  });
}

/** The sum of a metric's samples whose labels include every given pair. */
function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const wanted = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (wanted) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const versionOf = (payload: { metadata: Record<string, string> }) =>
  Number(Buffer.from(payload.metadata['encryption-key-version']!, 'base64').toString());

/**
 * `serve --workers 2` on `keystore` (seeded with namespace `orders` at v1): both workers answer,
 * usage adds up exactly, a rotation through the admin API reaches both, SIGTERM drains to exit 0.
 */
async function twoWorkers(config: string, keystore: string): Promise<void> {
  const proc = runCli(['--config', config, '--keystore', keystore, 'serve', '--workers', '2'], {
    TEMPORAL_KEYRING_KEK: KEK,
  });
  const ready = await logged(proc, 'codec server workers ready');
  const pids = ready.pids as number[];
  expect(new Set(pids).size).toBe(2);
  const url = (await logged(proc, 'codec server listening')).url as string;

  let encodes = 0;
  /** Encodes one payload per request, each on a new connection, tagged with a request id. */
  const encodeBatch = async (tag: string, count: number) => {
    const answers = [];
    for (let i = 0; i < count; i++) {
      const id = `${tag}-${i}`;
      const res = await postFresh(
        `${url}/encode`,
        { payloads: [uiJsonPayload({ i })] },
        {
          'x-namespace': 'orders',
          'x-request-id': id,
        },
      );
      expect(res.status).toBe(200);
      encodes++;
      answers.push({ id, version: versionOf(res.body.payloads[0]!), payloads: res.body.payloads });
    }
    return answers;
  };
  /** The pids that answered the given request ids, from the workers' request log lines. */
  const answeredBy = async (ids: string[]) => {
    for (;;) {
      const byId = new Map<string, number>();
      for (const l of proc.lines.map(json)) {
        const id = (l?.req as { id?: unknown } | undefined)?.id;
        if (typeof id === 'string' && typeof l?.pid === 'number') byId.set(id, l.pid);
      }
      if (ids.every((id) => byId.has(id))) return new Set(ids.map((id) => byId.get(id)!));
      await new Promise((r) => proc.child.stdout!.once('data', r));
    }
  };

  const first = await encodeBatch('a', 20);
  expect(first.every((a) => a.version === 1)).toBe(true);
  expect([...(await answeredBy(first.map((a) => a.id)))].sort()).toEqual([...pids].sort());
  const decoded = await postFresh(
    `${url}/decode`,
    { payloads: first[0]!.payloads },
    { 'x-namespace': 'orders' },
  );
  expect(decoded.body).toEqual({ payloads: [uiJsonPayload({ i: 0 })] });

  // A rotation through the admin API, answered by one worker, reaches the other through the
  // keystore's change watcher (a forced rotation skips the propagation delay, so a worker may
  // encode under v1 until its next poll, 200 ms: wait for a whole batch under v2).
  const rotated = await postFresh(
    `${url}/admin/namespaces/orders/keys/rotate`,
    { mode: 'immediate', force: true },
    {},
  );
  expect(rotated.status).toBe(200);
  expect(rotated.body.current.version).toBe(2);
  const deadline = Date.now() + 20_000;
  let after: Awaited<ReturnType<typeof encodeBatch>>;
  let round = 0;
  do {
    if (Date.now() > deadline) throw new Error('a worker kept encoding under v1');
    after = await encodeBatch(`b${round++}`, 10);
  } while (!after.every((a) => a.version === 2));
  const tail = await encodeBatch('c', 20);
  expect(tail.every((a) => a.version === 2)).toBe(true);
  expect([...(await answeredBy(tail.map((a) => a.id)))].sort()).toEqual([...pids].sort());

  // /metrics, whichever worker answers it, counts the whole host: the primary sums the workers'.
  for (let i = 0; i < 6; i++) {
    const scrape = await getFresh(`${url}/metrics`);
    expect(scrape.status).toBe(200);
    const labels = { namespace: 'orders', operation: 'encode' };
    expect(metricSum(scrape.text, 'temporal_keyring_payloads_total', labels)).toBe(encodes);
    expect(metricSum(scrape.text, 'temporal_keyring_payloads_total', { operation: 'decode' })).toBe(1);
  }

  proc.child.kill('SIGTERM');
  expect(await proc.exited).toBe(0);
  expect(proc.lines.filter((l) => json(l)?.msg === 'codec server stopped')).toHaveLength(2);

  // Each worker flushed its exact count on close: the keystore's used counts add up.
  const reopened = await openKeyring({ keystore, kek: { type: 'base64', value: KEK } });
  try {
    const v1 = await reopened.keyring.keystore.getUsage('orders', 1);
    const v2 = await reopened.keyring.keystore.getUsage('orders', 2);
    expect(v1.used + v2.used).toBe(encodes);
    expect(v2.used).toBeGreaterThanOrEqual(30);
    expect(v1.reserved).toBeGreaterThanOrEqual(v1.used);
    expect(v2.reserved).toBeGreaterThanOrEqual(v2.used);
  } finally {
    await reopened.close();
  }
}

/** Namespace `orders` (v1) on `keystore`, and a config whose token may encode, decode and administer. */
async function seed(keystore: string, config: string): Promise<void> {
  const seeded = await openKeyring({ keystore, createIfMissing: true, kek: { type: 'base64', value: KEK } });
  await seeded.keyring.createNamespace('orders');
  await seeded.close();
  const sha256 = createHash('sha256').update(TOKEN).digest('hex');
  const tokens = [{ name: 'ops', sha256, namespaces: ['*'], operations: ['encode', 'decode', 'admin'] }];
  writeFileSync(config, JSON.stringify({ server: { port: 0, auth: { tokens } } }));
}

describe('serve --workers: validation', () => {
  it('accepts 1..64 and auto, refuses anything else naming the flag or the env variable', () => {
    expect(parseWorkers('2', '--workers')).toBe(2);
    expect(parseWorkers('auto', '--workers')).toBe('auto');
    expect(workerCount('auto', () => 3)).toBe(3);
    expect(workerCount('auto', () => 500)).toBe(64);
    for (const bad of ['0', '65', '-1', '1.5', 'two', '']) {
      expect(() => serverConfigInput({ workers: bad }, {}, {})).toThrow(
        /^--workers: must be a whole number from 1 to 64, or auto/,
      );
    }
    expect(() => serverConfigInput({}, { TEMPORAL_KEYRING_WORKERS: '100' }, {})).toThrow(
      /^TEMPORAL_KEYRING_WORKERS: /,
    );
    expect(() => parseServerConfig({ workers: 0, dev: true })).toThrow(
      /^server\.workers: must be a whole number/,
    );
    expect(parseServerConfig({ dev: true }).workers).toBe(1);
  });

  it('refuses --workers > 1 in dev mode', () => {
    expect(() => parseServerConfig(serverConfigInput({ dev: true, workers: '2' }, {}, {}))).toThrow(
      /^server\.workers: dev mode runs one process/,
    );
  });
});

describe('serve --workers: sealed keystores', () => {
  const dir = tempDirSync('tk-workers-sealed-');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  it('refuses more than one worker with a sealed keystore (unsealing is per process); one starts sealed', async () => {
    const dataDir = join(dir, 'data');
    const keystore = await openKeystore(dataDir);
    await initShamirKeystore(keystore, { shares: 3, threshold: 2 });
    await keystore.close();
    const config = join(dir, 'codec.json');
    const tokens = [{ name: 'ops', sha256: 'a'.repeat(64), namespaces: ['*'], operations: ['decode'] }];
    writeFileSync(config, JSON.stringify({ server: { port: 0, auth: { tokens } } }));

    await expect(runServe({ config, dataDir, workers: '2', logLevel: 'silent' }, {}, dir)).rejects.toThrow(
      /^--workers: must be 1 with a sealed keystore .*replicas/,
    );
    const one = await runServe({ config, dataDir, workers: '1', logLevel: 'silent' }, {}, dir);
    await one.close();
  });
});

describe('serve --workers 2 (real processes)', () => {
  const dir = tempDirSync('tk-workers-');
  const dataDir = join(dir, 'data');
  const config = join(dir, 'codec.json');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  beforeAll(async () => {
    await seed(dataDir, config);
  });

  it('serves from both workers, meters usage exactly across them, spreads a rotation, drains on SIGTERM', async () => {
    await twoWorkers(config, dataDir);
  }, 55_000);

  it('logs and replaces a worker that crashes, then still drains to exit 0', async () => {
    const proc = runCli(['--config', config, '--data-dir', dataDir, 'serve', '--workers', '2'], {
      TEMPORAL_KEYRING_KEK: KEK,
    });
    const pids = (await logged(proc, 'codec server workers ready')).pids as number[];
    const url = (await logged(proc, 'codec server listening')).url as string;
    process.kill(pids[0]!, 'SIGKILL');
    const crashed = await logged(proc, 'codec server worker exited unexpectedly; starting a replacement');
    expect(crashed).toMatchObject({ pid: pids[0], signal: 'SIGKILL' });
    await logged(proc, 'codec server worker replaced');
    for (let i = 0; i < 4; i++) {
      const res = await postFresh(
        `${url}/encode`,
        { payloads: [uiJsonPayload({ i })] },
        { 'x-namespace': 'orders' },
      );
      expect(res.status).toBe(200);
    }
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.lines.filter((l) => json(l)?.msg === 'codec server stopped')).toHaveLength(2);
  }, 30_000);

  it('fails the whole command when a worker fails at startup (wrong KEK): its error, a non-zero exit, no restarts', async () => {
    const proc = runCli(['--config', config, '--data-dir', dataDir, 'serve', '--workers', '2'], {
      TEMPORAL_KEYRING_KEK: Buffer.alloc(32, 1).toString('base64'),
    });
    expect(await proc.exited).not.toBe(0);
    const output = proc.lines.join('\n');
    expect(output).toMatch(/ERR_KEK_MISMATCH|KEK/);
    expect(output).not.toContain('codec server listening');
    expect(output).not.toContain('replacement');
  }, 30_000);
});

describe('serve --workers 2 on PostgreSQL (real processes)', () => {
  const dir = tempDirSync('tk-workers-pg-');
  const config = join(dir, 'codec.json');
  let pg: TestPostgres | undefined;
  let url: string;
  beforeAll(async () => {
    pg = await startPostgres();
    url = await pg.newDatabase('workers');
    await seed(url, config);
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  it('serves from both workers, meters usage exactly across them, spreads a rotation (NOTIFY), drains on SIGTERM', async () => {
    await twoWorkers(config, url);
  }, 55_000);
});
