/**
 * `temporal-keyring rewrap` as a real process: every encrypted payload of a history (inputs,
 * results, memos, headers, failures' encoded attributes) is re-encrypted under the active version,
 * every other byte is as it was, the old version can then be destroyed while the archive decodes,
 * and a history of hundreds of MB streams with flat memory.
 */
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Payload } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { PayloadScanner } from '../../cli/payload-scanner.ts';
import { EncryptionCodec, keyVersionOf } from '../../src/codec/encryption-codec.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { cli, tempDir } from './run-cli.ts';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const json = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v)])),
  data: b64(p.data ?? new Uint8Array()),
});
const fromJson = (j: { metadata?: Record<string, string>; data?: string }): Payload => ({
  metadata: Object.fromEntries(
    Object.entries(j.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]),
  ),
  data: Buffer.from(j.data ?? '', 'base64'),
});
const plain = (value: unknown): Payload => ({
  metadata: { encoding: Buffer.from('json/plain') },
  data: Buffer.from(JSON.stringify(value)),
});

/** A document split as the scanner sees it: raw byte runs and payload-shaped objects, in order. */
function split(bytes: Buffer): { raw: string; candidates: string[] } {
  let raw = '';
  const candidates: string[] = []; // payload-shaped objects: payloads, and leaf objects like {"name": "x"}
  const scanner = new PayloadScanner({
    onRaw: (b) => {
      raw += b.toString('latin1');
    },
    onCandidate: (b) => {
      candidates.push(b.toString('utf8'));
      raw += '\u0000';
    },
  });
  for (let i = 0; i < bytes.length; i += 7) scanner.write(bytes.subarray(i, i + 7)); // odd chunk edges
  scanner.end();
  return { raw, candidates };
}

async function setup() {
  const dir = await tempDir('tk-rewrap-');
  const kekB64 = generateKekBase64();
  const env = { TEMPORAL_KEYRING_KEK: kekB64, TEMPORAL_KEYRING_DATA_DIR: join(dir, 'keys') };
  const keystore = await FileKeystore.open({ dir: env.TEMPORAL_KEYRING_DATA_DIR });
  const keyring = await Keyring.open({ keystore, kek: LocalKek.fromBase64(kekB64) });
  await keyring.createNamespace('orders');
  const close = async () => {
    await keyring.close();
    await keystore.close();
  };
  return { dir, env, keyring, keystore, close };
}

describe('temporal-keyring rewrap', { timeout: 300_000 }, () => {
  it('re-encrypts every encrypted payload under the active version, leaves every other byte, then the old version can be destroyed', async () => {
    const { dir, env, keyring, keystore, close } = await setup();
    try {
      const f1 = new EncryptionCodec({ namespace: 'orders', keys: keyring, format: 1 });
      const f2 = new EncryptionCodec({ namespace: 'orders', keys: keyring, format: 2 });
      const [input, memo, header, failure] = await f1.encode([
        plain({ customer: 'Ada' }),
        plain('memo'),
        plain('trace-id'),
        plain({ message: 'card declined' }),
      ]);
      const [result] = await f2.encode([plain('charged')]);
      await keyring.rotate('orders');
      const [current] = await f1.encode([plain('already v2')]);
      const history = {
        events: [
          {
            eventId: '1',
            eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
            workflowExecutionStartedEventAttributes: {
              workflowType: { name: 'payment' },
              input: { payloads: [json(input!), json(plain('not encrypted')), json(current!)] },
              memo: { fields: { note: json(memo!) } },
              header: { fields: { trace: json(header!) } },
            },
          },
          {
            eventId: '2',
            eventType: 'EVENT_TYPE_ACTIVITY_TASK_FAILED',
            activityTaskFailedEventAttributes: {
              failure: {
                message: 'Encoded failure',
                encodedAttributes: json(failure!),
                applicationFailureInfo: {},
              },
            },
          },
          {
            eventId: '3',
            eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED',
            workflowExecutionCompletedEventAttributes: { result: { payloads: [json(result!)] } },
          },
        ],
      };
      const inFile = join(dir, 'history.json');
      const outFile = join(dir, 'rewrapped.json');
      await writeFile(inFile, `${JSON.stringify(history, null, 2)}\n`);
      const run = await cli(['rewrap', '--namespace', 'orders', inFile, '--output', outFile], { env });
      expect(run.stderr).toContain('rewrap: 5 payloads re-encrypted under orders/v2, 1 already under it');
      expect(run.code).toBe(0);

      const before = split(await readFile(inFile));
      const after = split(await readFile(outFile));
      expect(after.raw).toBe(before.raw); // everything but payload objects, byte for byte
      expect(after.candidates).toHaveLength(before.candidates.length);
      const old = before.candidates.map((c) => fromJson(JSON.parse(c)));
      const now = after.candidates.map((c) => fromJson(JSON.parse(c)));
      for (const [i, p] of old.entries()) {
        if (keyVersionOf(p) === 1) {
          expect(keyVersionOf(now[i])).toBe(2);
          // Same format: format 2 payloads stay without the key id.
          expect(now[i]!.metadata!['encryption-key-id'] === undefined).toBe(
            p.metadata!['encryption-key-id'] === undefined,
          );
        } else expect(after.candidates[i]).toBe(before.candidates[i]); // untouched, byte for byte
      }
      // Counted through the meter: the reservation of v2 covers the five encryptions.
      expect((await keystore.getUsage('orders', 2)).reserved).toBeGreaterThanOrEqual(5);

      // The old version goes; the rewrapped archive still decodes to the same plaintexts.
      await keyring.setState('orders', 1, 'deprecated');
      await keyring.setState('orders', 1, 'destroyed');
      const decoded = await f1.decode(now.filter((p) => p.metadata?.encoding !== undefined));
      expect(decoded.map((p) => Buffer.from(p.data!).toString())).toEqual([
        '{"customer":"Ada"}',
        '"not encrypted"',
        '"already v2"',
        '"memo"',
        '"trace-id"',
        '{"message":"card declined"}',
        '"charged"',
      ]);

      // --force re-encrypts current payloads too; the input is never overwritten.
      const forced = await cli(
        ['rewrap', '-n', 'orders', '--force', outFile, '-o', join(dir, 'forced.json')],
        { env },
      );
      expect(forced.stderr).toContain('rewrap: 6 payloads re-encrypted under orders/v2, 0 already under it');
      const same = await cli(['rewrap', '-n', 'orders', outFile, '-o', outFile], { env });
      expect(same.code).toBe(2);
      expect(same.stderr).toContain('--output: is the input file');
      const copy = await cli(['rewrap', '-n', 'orders', outFile], { env });
      expect(copy.code).toBe(0);
      expect(copy.stdout).toBe(await readFile(outFile, 'utf8')); // nothing left to rewrap: identical
    } finally {
      await close();
    }
  });

  it('streams a history of hundreds of MB with flat memory, showing progress on stderr', async () => {
    const { dir, env, keyring, close } = await setup();
    try {
      const codec = new EncryptionCodec({ namespace: 'orders', keys: keyring });
      const pool = (await codec.encode(Array.from({ length: 50 }, (_, i) => plain({ i })))).map(json);
      await keyring.rotate('orders');
      const inFile = join(dir, 'big.json');
      const outFile = join(dir, 'big-rewrapped.json');
      const MB = 320;
      await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(new URL('./fixtures/big-history.ts', import.meta.url))],
        { env: { ...process.env, OUT: inFile, MB: String(MB), ENCRYPTED: JSON.stringify(pool) } },
      );
      const size = (await stat(inFile)).size;
      expect(size).toBeGreaterThan(MB * 1024 * 1024);
      const started = Date.now();
      const { stderr } = await promisify(execFile)(
        process.execPath,
        [
          '--import',
          'data:text/javascript,process.on("exit",()=>process.stderr.write("maxrss="+process.resourceUsage().maxRSS+"\\n"))',
          resolve(import.meta.dirname, '../../bin/temporal-keyring.js'),
          'rewrap',
          '-n',
          'orders',
          inFile,
          '-o',
          outFile,
        ],
        { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 240_000, maxBuffer: 1 << 20 },
      );
      const seconds = (Date.now() - started) / 1000;
      const maxRssKb = Number(/maxrss=(\d+)/.exec(stderr)![1]);
      const encrypted = Number(/rewrap: (\d+) payloads re-encrypted/.exec(stderr)![1]);
      console.log(
        `rewrap of ${(size / 1048576).toFixed(0)} MiB: ${seconds.toFixed(1)} s, max RSS ${(maxRssKb / 1024).toFixed(0)} MiB, ${encrypted} payloads`,
      );
      expect(stderr).toMatch(/rewrap: 50% \(\d+ of \d+ MiB\)/);
      expect(encrypted).toBeGreaterThan(100);
      // Flat: measured ~210 MiB of RSS whether the file is 256 or 768 MiB (node, the ESDK and the
      // keyring are most of it); holding the file would take more than the file's size.
      expect(maxRssKb * 1024).toBeLessThan(size * 0.9);
      expect(Math.abs((await stat(outFile)).size - size)).toBeLessThan(size / 100);
    } finally {
      await close();
    }
  });
});
