import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { isKeyringError } from '../../src/errors.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { ValidatingKeystore } from '../../src/keystore/validating-keystore.ts';
import { MAX_NAMESPACE_LENGTH, validateNamespace } from '../../src/model/namespace.ts';
import { tempDir } from '../support/temp-dir.ts';
import {
  type AdversarialServer,
  expectClientError,
  fcParams,
  jsonPayload,
  postJson,
  rawPathRequest,
  rawSocket,
  startServer,
} from './support/harness.ts';

/**
 * Hostile namespace names at every entry point (URL path, X-Namespace header, keyring and keystore
 * APIs, CLI flags) over the file keystore: nothing is created outside the data directory, no other
 * namespace is reached, and the answer is a clear ERR_INVALID_NAMESPACE.
 */

/** Names that must all be refused: traversal, separators, encodings, control and look-alike characters. */
const EVIL_NAMES = [
  '.',
  '..',
  '../escape',
  '../../escape',
  '..\\escape',
  'a/../../escape',
  '/etc/passwd',
  'default/../other',
  'default/',
  '%2e%2e',
  '%2e%2e%2fescape',
  '..%2Fescape',
  'default%00',
  'de\0fault',
  'default\n',
  ' default',
  'default ',
  'def ault',
  '\tdefault',
  '-default',
  '_default',
  '.hidden',
  'a'.repeat(MAX_NAMESPACE_LENGTH + 1),
  'a'.repeat(100_000),
  'défault',
  'ｄｅｆａｕｌｔ', // fullwidth
  'dеfault', // Cyrillic е
  'default\u200b', // zero-width space
  '\u202edefault', // right-to-left override
  'default:admin',
  'default*',
  '*',
  '',
  'CON',
] as const;
// "CON" is a valid name here (letters only): on Linux it is an ordinary file name. Keep only the refused ones.
const REFUSED = EVIL_NAMES.filter((n) => n !== 'CON');

/** Every file and directory under `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map((e) => e.replaceAll('\\', '/')).sort();
}

describe('validateNamespace (fuzzed, 30k names)', () => {
  it('accepts only allow-listed names, and an accepted name always stays one path segment in its directory', () => {
    const evilUnit = fc.constantFrom(
      '.',
      '..',
      '/',
      '\\',
      '%',
      '%2e',
      '%2f',
      '%00',
      '\0',
      ' ',
      '\t',
      '\n',
      'a',
      'Z',
      '0',
      '-',
      '_',
      'é',
      '\u202e',
      '\u200b',
      ':',
      '*',
    );
    const name = fc.oneof(
      fc.string({ maxLength: 40, unit: 'binary' }),
      fc.array(evilUnit, { maxLength: 12 }).map((parts) => parts.join('')),
      fc.string({ minLength: 190, maxLength: 210, unit: fc.constantFrom('a', 'b', '.', '-') }),
    );
    const dataDir = resolve('/srv/keys/namespaces');
    fc.assert(
      fc.property(name, (ns) => {
        let accepted: string | undefined;
        try {
          accepted = validateNamespace(ns);
        } catch (error) {
          expect(isKeyringError(error) && error.code).toBe('ERR_INVALID_NAMESPACE');
          return;
        }
        expect(accepted).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
        expect(accepted.length).toBeLessThanOrEqual(MAX_NAMESPACE_LENGTH);
        const path = resolve(dataDir, accepted, 'versions.json');
        expect(relative(dataDir, path)).toBe(`${accepted}/versions.json`);
        expect(basename(resolve(dataDir, accepted))).toBe(accepted);
      }),
      fcParams(30_000),
    );
    for (const ns of REFUSED) expect(() => validateNamespace(ns), JSON.stringify(ns)).toThrow(/namespace/);
  });
});

describe('the codec server in dev mode over a file keystore (namespaces created on first use)', () => {
  let parent: string;
  let dataDir: string;
  let s: AdversarialServer;
  let before: string[];

  beforeAll(async () => {
    parent = await tempDir('tk-adv-ns-');
    dataDir = join(parent, 'data');
    const keystore = await FileKeystore.open({ dir: dataDir });
    s = await startServer({ dev: true }, { keystore, namespaces: ['default'] });
    before = await tree(parent);
  });
  afterAll(async () => {
    await s?.close();
  });

  it('refuses every hostile name in the URL path, raw and percent-encoded, and creates nothing', async () => {
    const paths = [
      ...REFUSED.filter((n) => !/[\0\n\t ]/.test(n) && n.length < 5000).map(
        (n) => `/${encodeURIComponent(n)}/encode`,
      ),
      '/../encode',
      '/..%2F..%2Fescape/encode',
      '/%2e%2e/encode',
      '/%2E%2E%2F%2E%2E%2Fescape/encode',
      '/default%2F..%2F..%2Fescape/encode',
      '/default%00/encode',
      '/%00/encode',
      '/%20default/encode',
      '/default%0a/encode',
      '/%zz/encode',
      '/%c0%ae%c0%ae/encode', // overlong UTF-8 "..": invalid UTF-8
      '/%ff/encode',
      `/${'a'.repeat(MAX_NAMESPACE_LENGTH + 1)}/encode`,
      '/d%C3%A9fault/encode',
      '/./encode',
      '/default/../escape/encode',
      '//encode',
      '/default;x/encode',
    ];
    for (const path of paths) {
      const answer = await rawPathRequest(s.port, path, {
        body: JSON.stringify({ payloads: [jsonPayload(1)] }),
      });
      const { code } = expectClientError(answer, path);
      expect(
        ['ERR_INVALID_NAMESPACE', 'ERR_NOT_FOUND', 'ERR_MALFORMED_REQUEST', 'ERR_NAMESPACE_REQUIRED'],
        path,
      ).toContain(code);
    }
    expect(await tree(parent)).toEqual(before);
    expect(await s.keyring.namespaces()).toEqual(['default']);
  });

  it('refuses every hostile name in X-Namespace (NUL and newlines on a raw socket), and creates nothing', async () => {
    for (const ns of REFUSED) {
      // Over 16 KiB of headers, Node answers 431 itself (no JSON body): covered by the path test.
      if (
        ns === '' ||
        ns.length > 5000 ||
        [...ns].some((c) => c === '\0' || c === '\n' || c.charCodeAt(0) > 0xff)
      )
        continue;
      const answer = await postJson(`${s.url}/encode`, { payloads: [jsonPayload(1)] }, { 'X-Namespace': ns });
      if (ns.trim() === 'default') {
        // HTTP strips whitespace around header values (RFC 9110 §5.5): this is plain "default".
        expect(answer.status).toBe(200);
        continue;
      }
      const { code } = expectClientError(answer, JSON.stringify(ns));
      expect(code, JSON.stringify(ns)).toBe(
        ns.trim() === '' ? 'ERR_NAMESPACE_REQUIRED' : 'ERR_INVALID_NAMESPACE',
      );
    }
    // Non-latin1 names as UTF-8 bytes in the header (fetch would refuse to send them).
    for (const ns of [
      'ｄｅｆａｕｌｔ',
      'dеfault',
      'default\u200b',
      '\u202edefault',
      'de\0fault',
      'default\r\nX-Namespace: other',
    ]) {
      const body = '{"payloads":[]}';
      const answer = await rawSocket(
        s.port,
        Buffer.concat([
          Buffer.from(
            `POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nX-Namespace: `,
          ),
          Buffer.from(ns, 'utf8'),
          Buffer.from(`\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
        ]),
      );
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
      expect(status, `${JSON.stringify(ns)} → ${answer.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    }
    expect(await tree(parent)).toEqual(before);
    expect(await s.keyring.namespaces()).toEqual(['default']);
  });

  it('a valid new name is created inside the data directory, and nowhere else', async () => {
    const answer = await postJson(`${s.url}/fresh.ns-1_x/encode`, { payloads: [jsonPayload(1)] });
    expect(answer.status).toBe(200);
    const after = await tree(parent);
    const added = after.filter((p) => !before.includes(p));
    expect(added.length).toBeGreaterThan(0);
    for (const p of added) expect(p, p).toMatch(/^data\/(namespaces|usage)\/fresh\.ns-1_x(\/|$)/);
  });
});

describe('keyring, codec and keystore APIs', () => {
  it('refuse hostile names with ERR_INVALID_NAMESPACE before touching the file keystore', async () => {
    const parent = await tempDir('tk-adv-ns-api-');
    const dir = join(parent, 'data');
    // As openKeystore and the keyring give it: behind the validating layer.
    const keystore = ValidatingKeystore.wrap(await FileKeystore.open({ dir }));
    const { Keyring } = await import('../../src/keyring/keyring.ts');
    const { LocalKek } = await import('../../src/kek/kek.ts');
    const keyring = await Keyring.open({ keystore, kek: LocalKek.fromBase64(generateKekBase64()) });
    await keyring.createNamespace('default');
    const before = await tree(parent);
    const calls: [string, (ns: string) => Promise<unknown>][] = [
      ['keyring.createNamespace', (ns) => keyring.createNamespace(ns)],
      ['keyring.rotate', (ns) => keyring.rotate(ns)],
      ['keyring.versions', (ns) => keyring.versions(ns)],
      ['keyring.encryptionKey', (ns) => keyring.encryptionKey(ns, 1)],
      ['keyring.decryptionKey', (ns) => keyring.decryptionKey(ns, 1)],
      ['keyring.setState', (ns) => keyring.setState(ns, 1, 'inactive')],
      ['keystore.getVersions', (ns) => keystore.getVersions(ns)],
      ['keystore.getMaterial', (ns) => keystore.getMaterial(ns, 1)],
      ['keystore.reserveUsage', (ns) => keystore.reserveUsage(ns, 1, 10, Date.now())],
      ['keystore.recordUsed', (ns) => keystore.recordUsed(ns, 1, 'h', 1, Date.now())],
      ['keystore.getUsage', (ns) => keystore.getUsage(ns, 1)],
      [
        'keystore.commit',
        (ns) => keystore.commit({ namespace: ns, add: { version: 1, state: 'active' } } as never),
      ],
      ['new EncryptionCodec', async (ns) => new EncryptionCodec({ namespace: ns, keys: keyring })],
    ];
    for (const ns of REFUSED) {
      for (const [name, call] of calls) {
        const error = await call(ns).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(
          isKeyringError(error) && error.code,
          `${name}(${JSON.stringify(ns.slice(0, 40))}): ${String(error)}`,
        ).toBe('ERR_INVALID_NAMESPACE');
      }
      const lease = await keystore.tryAcquireLease(ns, 'h', 1000, Date.now()).catch((e: unknown) => e);
      expect(isKeyringError(lease), `lease ${JSON.stringify(ns.slice(0, 40))}`).toBe(true);
    }
    expect(await tree(parent)).toEqual(before);
    expect(await keyring.namespaces()).toEqual(['default']);
    await keyring.close();
  });
});

describe('another namespace is never reached through a name', () => {
  const TOKEN = 'tk_ns_7a1c9e3b5d0f2a4c6e8b1d3f5a7c9e0b';
  let s: AdversarialServer;
  beforeAll(async () => {
    s = await startServer(
      {
        auth: {
          tokens: [
            {
              name: 'default-only',
              sha256: tokenSha256Hex(TOKEN),
              namespaces: ['default'],
              operations: ['encode', 'decode'],
            },
          ],
        },
      },
      { namespaces: ['default', 'other'] },
    );
  });
  afterAll(async () => {
    await s?.close();
  });

  it('a token for "default" cannot reach "other" by traversal, encoding, header or case', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const attempts: [string, Record<string, string>][] = [
      ['/default%2F..%2Fother/decode', {}],
      ['/default/..%2Fother/decode', {}],
      ['/default/../other/decode', {}],
      ['/other/decode', { 'x-namespace': 'default' }],
      ['/default/decode', { 'x-namespace': 'other' }],
      ['/decode', { 'x-namespace': 'default/../other' }],
      ['/decode', { 'x-namespace': 'other' }],
      ['/Other/decode', {}],
      ['/OTHER/decode', {}],
      ['/other%00/decode', {}],
    ];
    for (const [path, headers] of attempts) {
      const answer = await rawPathRequest(s.port, path, { headers: { ...auth, ...headers } });
      const { code } = expectClientError(answer, `${path} ${JSON.stringify(headers)}`);
      expect([
        'ERR_INVALID_NAMESPACE',
        'ERR_NAMESPACE_MISMATCH',
        'ERR_FORBIDDEN',
        'ERR_NOT_FOUND',
        'ERR_NAMESPACE_NOT_FOUND',
      ]).toContain(code);
    }
  });
});

describe('the CLI', () => {
  const BIN = resolve(import.meta.dirname, '../../bin/temporal-keyring.js');
  const run = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: 60_000 },
        (error, _stdout, stderr) => done({ code: error ? Number(error.code ?? -1) : 0, stderr }),
      );
    });

  it('refuses hostile --namespace values with exit code 2 and ERR_INVALID_NAMESPACE, writing nothing outside', async () => {
    const parent = await tempDir('tk-adv-ns-cli-');
    const env = {
      TEMPORAL_KEYRING_KEK: generateKekBase64(),
      TEMPORAL_KEYRING_KEYSTORE: join(parent, 'data'),
    };
    const results = await Promise.all([
      run(['keys', 'create', '--namespace', '../../escape'], env),
      run(['keys', 'rotate', '-n', 'a/b'], env),
      run(['keys', 'create', '-n', '%2e%2e'], env),
    ]);
    for (const r of results) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain('ERR_INVALID_NAMESPACE');
    }
    // The data directory may exist (opened before the name was checked), but holds no namespace.
    const files = await tree(parent);
    expect(files.filter((f) => !f.startsWith('data'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('data/namespaces/'))).toEqual([]);
  }, 90_000);
});
