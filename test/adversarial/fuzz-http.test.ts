import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { MAX_PAYLOADS_PER_REQUEST } from '../../codec-server/payload-json.ts';
import { KEY_STATES } from '../../src/model/key-version.ts';
import {
  type AdversarialServer,
  type Answer,
  b64,
  expectClientError,
  fcParams,
  jsonPayload,
  postJson,
  rawSocket,
  send,
  startServer,
} from './support/harness.ts';

/**
 * Bad HTTP input against the real codec server on loopback: whatever the body, content type or
 * framing, the answer is a 2xx for valid input or a 4xx `{code, message}`, never a 500, never a
 * hang, and the server keeps serving valid requests after every batch.
 */

const TOKEN = 'tk_fuzz_0c9a4e1f7b3d5a2c8e6f0b1d4a7c9e2f';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const ADMIN = 'tk_fuzz_admin_5a3c1e9f7d5b3a1c9e7f5d3b1a9c7e5f';

let s: AdversarialServer;

beforeAll(async () => {
  s = await startServer({
    auth: {
      tokens: [
        {
          name: 'fuzz',
          sha256: tokenSha256Hex(TOKEN),
          namespaces: ['default'],
          operations: ['encode', 'decode'],
        },
        { name: 'fuzz-admin', sha256: tokenSha256Hex(ADMIN), namespaces: ['default'], operations: ['admin'] },
      ],
    },
  });
});
afterAll(async () => {
  await s?.close();
});

/** 200 with a `payloads` array for valid input; otherwise a typed 4xx. Never 5xx. */
function expectSafe(answer: Answer, context: string): void {
  if (answer.status === 200) {
    expect(Array.isArray((answer.json as { payloads?: unknown }).payloads), context).toBe(true);
    return;
  }
  expectClientError(answer, context);
}

/** Encode then decode one value: the server still serves, and round-trips exactly. */
async function expectStillServing(): Promise<void> {
  const value = { still: 'serving', n: Math.random() };
  const encoded = await postJson(`${s.url}/default/encode`, { payloads: [jsonPayload(value)] }, AUTH);
  expect(encoded.status, encoded.text).toBe(200);
  const decoded = await postJson(`${s.url}/default/decode`, encoded.json, AUTH);
  expect(decoded.status, decoded.text).toBe(200);
  const [payload] = (decoded.json as { payloads: { data: string }[] }).payloads;
  expect(JSON.parse(Buffer.from(payload!.data, 'base64').toString('utf8'))).toEqual(value);
}

const op = fc.constantFrom('encode', 'decode');

// Metadata keys that matter to the codec, JavaScript's own special names, and anything else.
const metadataKey = fc.oneof(
  fc.constantFrom(
    'encoding',
    'encryption-key-id',
    'encryption-key-version',
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
    '',
  ),
  fc.string({ maxLength: 40, unit: 'binary' }),
);
const metadataValue = fc.oneof(
  fc.constantFrom(
    b64('binary/encrypted'),
    b64('json/plain'),
    b64('1'),
    b64('0'),
    b64('-1'),
    b64('99999999999999999999'),
    b64('default/v1'),
    b64('other/v1'),
    b64('../v1'),
    'AAAA',
    '====',
    '',
  ),
  fc.uint8Array({ maxLength: 64 }).map(b64),
  fc.string({ maxLength: 40, unit: 'binary' }),
  fc.jsonValue({ maxDepth: 2 }),
);
const dataValue = fc.oneof(
  fc.uint8Array({ maxLength: 512 }).map(b64),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.string({ maxLength: 80, unit: 'binary' }),
  fc.jsonValue({ maxDepth: 2 }),
);
const payloadish = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record(
      { metadata: fc.dictionary(metadataKey, metadataValue, { maxKeys: 6 }), data: dataValue },
      { requiredKeys: [] },
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record(
      { metadata: fc.jsonValue({ maxDepth: 2 }), data: fc.jsonValue({ maxDepth: 2 }) },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);
const bodyish = fc.oneof(
  { weight: 6, arbitrary: fc.record({ payloads: fc.array(payloadish, { maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ payloads: fc.jsonValue({ maxDepth: 3 }) }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

describe('fuzzed HTTP bodies against the codec server', () => {
  it('wrong types and shapes, invalid base64, special metadata keys: 200 or typed 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(op, bodyish, async (operation, body) => {
        const answer = await postJson(`${s.url}/default/${operation}`, body, AUTH);
        expectSafe(answer, `${operation} ${JSON.stringify(body).slice(0, 300)}`);
      }),
      fcParams(1200),
    );
    await expectStillServing();
  });

  it('malformed JSON text (random and mutated valid bodies): 400 ERR_MALFORMED_REQUEST or typed 4xx', async () => {
    const valid = JSON.stringify({ payloads: [jsonPayload({ a: [1, 2, { b: 'c' }] })] });
    const mutated = fc
      .tuple(fc.nat({ max: valid.length }), fc.nat({ max: 8 }), fc.string({ maxLength: 4, unit: 'binary' }))
      .map(([at, cut, insert]) => valid.slice(0, at) + insert + valid.slice(at + cut));
    await fc.assert(
      fc.asyncProperty(
        op,
        fc.oneof(fc.string({ maxLength: 200, unit: 'binary' }), mutated),
        async (operation, text) => {
          const answer = await postJson(`${s.url}/default/${operation}`, text, AUTH);
          expectSafe(answer, `${operation} ${JSON.stringify(text).slice(0, 300)}`);
        },
      ),
      fcParams(800),
    );
    const broken = await postJson(`${s.url}/default/decode`, '{"payloads": [', AUTH);
    expect(expectClientError(broken).code).toBe('ERR_MALFORMED_REQUEST');
    await expectStillServing();
  });

  it('non-UTF-8 and random bytes as the body, under random content types and charsets', async () => {
    const contentType = fc.oneof(
      fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'application/json; charset=latin1',
        'application/json; charset=utf-16',
        'application/json; charset=',
        'application/vnd.api+json',
        'text/plain',
        'text/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/octet-stream',
        'application/protobuf',
        '*/*',
        'application/json, text/plain',
      ),
      fc.string({ maxLength: 40 }).filter((t) => /^[\x20-\x7e]*$/.test(t)),
    );
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      // Valid JSON with invalid UTF-8 bytes inside a string.
      fc
        .uint8Array({ minLength: 1, maxLength: 8 })
        .map((bad) =>
          Buffer.concat([
            Buffer.from('{"payloads":[{"data":"'),
            Buffer.from(bad).fill(0xc3, 0, 1),
            Buffer.from('"}]}'),
          ]),
        ),
      fc.constant(Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('{"payloads":[]}')])),
    );
    await fc.assert(
      fc.asyncProperty(op, contentType, body, async (operation, type, bytes) => {
        const headers: Record<string, string> = { ...AUTH };
        if (type !== '') headers['content-type'] = type;
        const answer = await send(`${s.url}/default/${operation}`, { headers, body: bytes });
        expectSafe(answer, `${operation} ${type} ${Buffer.from(bytes).toString('hex').slice(0, 200)}`);
      }),
      fcParams(600),
    );
    await expectStillServing();
  });

  it('unknown or broken Content-Encoding, and a gzip bomb, are refused without inflating it all', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20)); // 64 MiB of spaces, ~64 KiB compressed
    const cases: [string, Uint8Array][] = [
      ['gzip', bomb],
      ['gzip', Buffer.from('not gzip at all')],
      ['deflate', Buffer.from([0x78, 0x9c, 0xff, 0xff])],
      ['br', Buffer.from('garbage')],
      ['x-unknown', Buffer.from('{"payloads":[]}')],
    ];
    for (const [encoding, body] of cases) {
      const answer = await send(`${s.url}/default/decode`, {
        headers: { ...AUTH, 'content-type': 'application/json', 'content-encoding': encoding },
        body,
      });
      const code = expectClientError(answer, `content-encoding ${encoding}`).code;
      expect(['ERR_PAYLOAD_TOO_LARGE', 'ERR_MALFORMED_REQUEST', 'ERR_UNSUPPORTED_MEDIA_TYPE']).toContain(
        code,
      );
    }
    // A well-formed gzip body is fine: compression itself is allowed.
    const gz = await send(`${s.url}/default/decode`, {
      headers: { ...AUTH, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(Buffer.from('{"payloads":[]}')),
    });
    expect(gz.status).toBe(200);
    await expectStillServing();
  });

  it('bodies beyond the limit, deep nesting and huge metadata maps', async () => {
    const limit = 8 * 1024 * 1024;
    const cases: [string, string][] = [
      ['over the limit', `{"payloads":[{"data":"${'A'.repeat(limit + 16)}"}]}`],
      ['array over the limit', `{"payloads":[${'{},'.repeat(limit / 3 + 10)}{}]}`],
      ['deep arrays', `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`],
      ['deep objects', `${'{"a":'.repeat(500_000)}1${'}'.repeat(500_000)}`],
      ['deep payloads', `{"payloads":${'['.repeat(400_000)}${']'.repeat(400_000)}}`],
      ['deep metadata', `{"payloads":[{"metadata":${'{"a":'.repeat(300_000)}"AAAA"${'}'.repeat(300_000)}}]}`],
      ['huge number', `{"payloads":[{"data":1e999999}]}`],
      ['duplicate keys', '{"payloads":[],"payloads":{"x":1}}'],
    ];
    const bigMap = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`k${i}`, 'AAAA']));
    cases.push(['50k metadata entries', JSON.stringify({ payloads: [{ metadata: bigMap, data: 'AAAA' }] })]);
    for (const operation of ['encode', 'decode']) {
      for (const [name, body] of cases) {
        const answer = await postJson(`${s.url}/default/${operation}`, body, AUTH);
        expectSafe(answer, `${operation} ${name}`);
        if (name.includes('over the limit'))
          expect(expectClientError(answer).code).toBe('ERR_PAYLOAD_TOO_LARGE');
      }
      await expectStillServing();
    }
  });

  it('broken HTTP framing on a raw socket gets a 4xx (or a closed socket), and the server keeps serving', async () => {
    const head = `POST /default/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\n`;
    const requests = [
      `${head}Content-Length: 100\r\nConnection: close\r\n\r\n{"payloads":[]}`,
      `${head}Content-Length: -1\r\n\r\n{}`,
      `${head}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}`,
      `${head}Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      `${head}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
      `${head}X-Namespace: de\0fault\r\nContent-Length: 2\r\n\r\n{}`,
      `POST /default/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${'A'.repeat(70_000)}\r\n\r\n`,
      'GARBAGE\r\n\r\n',
      `POST /${'a'.repeat(100_000)}/decode HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
    ];
    for (const request of requests) {
      // The server's timeouts close an incomplete request; a complete bad one gets an answer.
      const answer = await rawSocket(s.port, request).catch((e: Error) => e.message);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1];
      if (status !== undefined) {
        expect(
          Number(status),
          `${JSON.stringify(request.slice(0, 120))} → ${answer.slice(0, 200)}`,
        ).toBeLessThan(500);
      }
    }
    await expectStillServing();
  }, 60_000);

  it('the admin API and namespace names: random versions, bodies and names give 200 or a typed 4xx', async () => {
    const admin = { authorization: `Bearer ${ADMIN}` };
    const versionSegment = fc.oneof(
      fc.constantFrom(
        '1',
        '2',
        '0',
        '01',
        '-1',
        '1e3',
        '0x1',
        '1.0',
        '9007199254740993',
        '99999999999999999999',
        '%20',
        'NaN',
      ),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    const adminBody = fc.oneof(
      fc.record({ state: fc.constantFrom(...KEY_STATES, 'ACTIVE', '', 'destroyed ') }, { requiredKeys: [] }),
      fc.record({ mode: fc.constantFrom('immediate', 'prepublish', 'later', '') }, { requiredKeys: [] }),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const request = fc.oneof(
      fc.tuple(fc.constant('rotate'), fc.constant(''), adminBody),
      fc.tuple(fc.constant('state'), versionSegment, adminBody),
      fc.tuple(fc.constant('list'), fc.constant(''), fc.constant(null)),
    );
    await fc.assert(
      fc.asyncProperty(request, async ([kind, version, body]) => {
        const base = `${s.url}/admin/namespaces/default/keys`;
        const answer =
          kind === 'list'
            ? await send(base, { method: 'GET', headers: admin })
            : await send(kind === 'rotate' ? `${base}/rotate` : `${base}/${version}/state`, {
                headers: { ...admin, 'content-type': 'application/json' },
                body: JSON.stringify(body),
              });
        if (answer.status !== 200) expectClientError(answer, `${kind} ${version} ${JSON.stringify(body)}`);
      }),
      fcParams(300),
    );
    const name = fc.oneof(
      fc.string({ maxLength: 30, unit: 'binary' }),
      fc.string({ minLength: 195, maxLength: 205 }),
    );
    await fc.assert(
      fc.asyncProperty(name, fc.boolean(), async (ns, inPath) => {
        const answer = inPath
          ? await postJson(`${s.url}/${encodeURIComponent(ns)}/decode`, { payloads: [] }, AUTH)
          : await send(`${s.url}/decode`, {
              headers: { ...AUTH, 'content-type': 'application/json', 'x-namespace': encodeURIComponent(ns) },
              body: '{"payloads":[]}',
            });
        if (answer.status !== 200) expectClientError(answer, JSON.stringify(ns));
      }),
      fcParams(300),
    );
    await expectStillServing();
  });

  it('more payloads than one request may carry: 413 before any is encrypted (no amplification)', async () => {
    // Found by this suite: 20k empty payloads (60 KB) made the encode answer 10 MB after seconds of CPU.
    const list = (n: number) => `{"payloads":[${'{},'.repeat(n - 1)}{}]}`;
    const atLimit = await postJson(`${s.url}/default/decode`, list(MAX_PAYLOADS_PER_REQUEST), AUTH);
    expect(atLimit.status).toBe(200);
    for (const operation of ['decode', 'encode']) {
      for (const n of [MAX_PAYLOADS_PER_REQUEST + 1, 200_000]) {
        const answer = await postJson(`${s.url}/default/${operation}`, list(n), AUTH);
        expect(expectClientError(answer, `${operation} ${n}`).code).toBe('ERR_PAYLOAD_TOO_LARGE');
        expect(answer.status).toBe(413);
      }
    }
    await expectStillServing();
  });
});
