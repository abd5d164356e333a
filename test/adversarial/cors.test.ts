import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import {
  type AdversarialServer,
  type Answer,
  fcParams,
  rawPathRequest,
  startServer,
} from './support/harness.ts';

/**
 * CORS: only exactly configured origins get `Access-Control-Allow-Origin`; look-alikes (suffix,
 * prefix, scheme, port, case, `null`, lists, userinfo) and random origins are never reflected, on
 * simple requests, error answers and preflights alike.
 */

const TOKEN = 'tk_cors_2e4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e';
const ALLOWED = ['https://cloud.temporal.io', 'http://localhost:8233'];

const LOOK_ALIKES = [
  'null',
  'NULL',
  '*',
  '',
  'https://cloud.temporal.io.evil.test',
  'https://cloud.temporal.io.',
  'https://evilcloud.temporal.io',
  'https://evil.cloud.temporal.io',
  'https://cloud-temporal.io',
  'https://cloud.temporal.io%2eevil.test',
  'http://cloud.temporal.io',
  'https://cloud.temporal.io:443',
  'https://cloud.temporal.io:8443',
  'https://cloud.temporal.io/',
  'https://cloud.temporal.io/path',
  'HTTPS://CLOUD.TEMPORAL.IO',
  'https://Cloud.Temporal.io',
  'https://cloud.temporal.io https://evil.test',
  'https://cloud.temporal.io,https://evil.test',
  'https://evil.test, https://cloud.temporal.io',
  'https://user@cloud.temporal.io',
  'https://cloud.temporal.io@evil.test',
  'http://localhost:8233.evil',
  'http://localhost:8233.evil.test',
  'http://localhost:82330',
  'http://localhost:823',
  'https://localhost:8233',
  'http://localhost',
  'http://127.0.0.1:8233',
  'http://[::1]:8233',
  'http://localhost:8233@evil.test',
  'ws://localhost:8233',
  'file://',
  'chrome-extension://abcdefghijklmnop',
  'https://evil.test',
];

let s: AdversarialServer;

beforeAll(async () => {
  s = await startServer({
    cors: { origins: ALLOWED, credentials: true },
    auth: {
      tokens: [
        { name: 'cors', sha256: tokenSha256Hex(TOKEN), namespaces: ['default'], operations: ['decode'] },
      ],
    },
  });
});
afterAll(async () => {
  await s?.close();
});

const simple = (origin: string, authorized = true) =>
  rawPathRequest(s.port, '/default/decode', {
    headers: { origin, ...(authorized ? { authorization: `Bearer ${TOKEN}` } : {}) },
    body: '{"payloads":[]}',
  });

const preflight = (origin: string, path = '/default/decode') =>
  rawPathRequest(s.port, path, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type,x-namespace',
    },
    body: '',
  });

function expectNotAllowed(answer: Answer, origin: string, what: string): void {
  const allowOrigin = answer.headers.get('access-control-allow-origin');
  expect(allowOrigin, `${what} ${JSON.stringify(origin)}`).toBeNull();
  // (The \`cors\` package sends Access-Control-Allow-Credentials to every origin; without
  // Access-Control-Allow-Origin it grants nothing: the browser's CORS check fails on ACAO first.)
  expect(answer.headers.get('access-control-expose-headers'), `${what} ${origin}`).toBeNull();
  expect(answer.status, `${what} ${origin}`).toBeLessThan(500);
}

describe('CORS look-alike origins', () => {
  it('are never allowed: simple requests, error answers and preflights', async () => {
    for (const origin of LOOK_ALIKES) {
      if (origin === '') continue;
      expectNotAllowed(await simple(origin), origin, 'POST');
      expectNotAllowed(await simple(origin, false), origin, 'POST 401');
      expectNotAllowed(await preflight(origin), origin, 'OPTIONS');
      expectNotAllowed(await preflight(origin, '/encode'), origin, 'OPTIONS /encode');
      expectNotAllowed(
        await preflight(origin, '/admin/namespaces/default/keys/rotate'),
        origin,
        'OPTIONS admin',
      );
    }
  });

  it('the configured origins are allowed exactly, with Vary: Origin, on answers and errors', async () => {
    for (const origin of ALLOWED) {
      for (const answer of [await simple(origin), await simple(origin, false)]) {
        expect(answer.headers.get('access-control-allow-origin')).toBe(origin);
        expect(answer.headers.get('access-control-allow-credentials')).toBe('true');
        expect(answer.headers.get('vary')).toMatch(/origin/i);
      }
      const pre = await preflight(origin);
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
      expect(pre.headers.get('access-control-allow-methods')).toMatch(/POST/);
      expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/i);
      expect(pre.headers.get('access-control-allow-methods')).not.toMatch(/PUT|DELETE|PATCH/);
    }
  });

  it('random origins are never reflected (fuzzed)', async () => {
    const origin = fc.oneof(
      fc.webUrl().map((u) => new URL(u).origin),
      fc.webUrl(),
      fc
        .constantFrom(...ALLOWED)
        .chain((a) =>
          fc
            .tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }))
            .map(([pre, post]) => `${pre}${a}${post}`),
        ),
      fc.string({ maxLength: 60 }).filter((t) => /^[\x21-\x7e][\x20-\x7e]*$/.test(t)),
    );
    await fc.assert(
      fc.asyncProperty(origin, fc.boolean(), async (o, isPreflight) => {
        const answer = isPreflight ? await preflight(o) : await simple(o);
        const allowOrigin = answer.headers.get('access-control-allow-origin');
        if (ALLOWED.includes(o)) expect(allowOrigin).toBe(o);
        else {
          expect(allowOrigin, JSON.stringify(o)).toBeNull();
        }
        expect(answer.status).toBeLessThan(500);
      }),
      fcParams(400),
    );
  });
});

describe('CORS in dev mode', () => {
  let dev: AdversarialServer;
  beforeAll(async () => {
    dev = await startServer({ dev: true });
  });
  afterAll(async () => {
    await dev?.close();
  });

  it('allows only the local Web UI origins over http, never https look-alikes or other ports', async () => {
    const ask = (origin: string) =>
      rawPathRequest(dev.port, '/default/decode', {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
        body: '',
      });
    expect((await ask('http://localhost:8233')).headers.get('access-control-allow-origin')).toBe(
      'http://localhost:8233',
    );
    for (const origin of [
      'https://localhost:8233',
      'http://localhost:8233.evil',
      'http://localhost:9999',
      'null',
      'http://evil.test',
    ]) {
      const answer = await ask(origin);
      expect(answer.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });
});
