import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import {
  type AdversarialServer,
  type Answer,
  expectClientError,
  jsonPayload,
  postJson,
  rawPathRequest,
  rawSocket,
  send,
  startServer,
} from './support/harness.ts';

/**
 * Attempts to get past the codec server's authentication and authorization: forged, confused and
 * out-of-date JWTs, credentials in the wrong place, tokens used beyond their scope, a namespace
 * forged between path and header, the admin API without admin rights, and DNS rebinding in dev
 * mode. Every attempt ends in 401/403/400 with a stable code, and never echoes the credential.
 */

const ISSUER = 'https://idp.test.invalid/';
const AUDIENCE = 'temporal-codec';
const DECODE_TOKEN = 'tk_adv_decode_1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a';
const ADMIN_TOKEN = 'tk_adv_admin_9e7c5a3f1d0b8e6c4a2f0d9b7e5c3a1f';
const METRICS_TOKEN = 'tk_adv_metrics_4c2a0e8f6d4b2a0c8e6f4d2b0a8c6e4f';

type Keys = Awaited<ReturnType<typeof generateKeyPair>>;
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

let jwks: Server;
let rsa: Keys;
let attacker: Keys;
let rsaPublicJwk: JWK;
let s: AdversarialServer;
const clock = new ManualClock(Date.UTC(2026, 5, 1));
const now = () => Math.floor(clock.now() / 1000);

beforeAll(async () => {
  rsa = await generateKeyPair('RS256', { extractable: true });
  attacker = await generateKeyPair('RS256', { extractable: true });
  rsaPublicJwk = { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' };
  jwks = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [rsaPublicJwk] }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  s = await startServer(
    {
      auth: {
        jwt: { jwksUrl, issuer: ISSUER, audience: AUDIENCE },
        tokens: [
          {
            name: 'decoder',
            sha256: tokenSha256Hex(DECODE_TOKEN),
            namespaces: ['default'],
            operations: ['decode'],
          },
          {
            name: 'other-admin',
            sha256: tokenSha256Hex(ADMIN_TOKEN),
            namespaces: ['other'],
            operations: ['admin'],
          },
        ],
      },
      metrics: { tokenSha256: tokenSha256Hex(METRICS_TOKEN) },
    },
    { clock, namespaces: ['default', 'other'] },
  );
});
afterAll(async () => {
  await s?.close();
  jwks?.closeAllConnections();
  await new Promise((resolve) => jwks?.close(resolve));
});

interface TokenOptions {
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  key?: Keys;
  issuer?: string | null;
  audience?: string | string[] | null;
  exp?: number | null;
  nbf?: number;
}

async function jwt(options: TokenOptions = {}): Promise<string> {
  const builder = new SignJWT({ permissions: ['default:write'], ...options.claims })
    .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1', ...options.header })
    .setSubject('mallory@example.com')
    .setIssuedAt(now());
  if (options.issuer !== null) builder.setIssuer(options.issuer ?? ISSUER);
  if (options.audience !== null) builder.setAudience(options.audience ?? AUDIENCE);
  if (options.exp !== null) builder.setExpirationTime(options.exp ?? now() + 300);
  if (options.nbf !== undefined) builder.setNotBefore(options.nbf);
  return builder.sign((options.key ?? rsa).privateKey);
}

/** A JWT assembled by hand: any header, any claims, any signature. */
function handmade(header: Record<string, unknown>, claims: Record<string, unknown>, signature = ''): string {
  return `${b64url(header)}.${b64url(claims)}.${signature}`;
}

const validClaims = () => ({
  iss: ISSUER,
  aud: AUDIENCE,
  sub: 'mallory@example.com',
  exp: now() + 300,
  iat: now(),
  permissions: ['default:admin'],
});

/** A JWT with any header, validly signed RS256 by the identity provider's own key. */
async function signedByUs(header: Record<string, unknown>, claims: Record<string, unknown>): Promise<string> {
  const input = `${b64url(header)}.${b64url(claims)}`;
  const signature = await crypto.subtle.sign(
    'RSASSA-PKCS1-v1_5',
    rsa.privateKey as Parameters<typeof crypto.subtle.sign>[1],
    Buffer.from(input),
  );
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

/** HS256 over header.claims with `secret`: the classic RS/HS confusion token. */
async function hs256(secret: Uint8Array, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(validClaims()).setProtectedHeader({ alg: 'HS256', ...header }).sign(secret);
}

const encode = (
  authorization: string | undefined,
  path = '/default/encode',
  headers: Record<string, string> = {},
) =>
  postJson(
    `${s.url}${path}`,
    { payloads: [jsonPayload({ n: 1 })] },
    {
      ...(authorization === undefined ? {} : { authorization }),
      ...headers,
    },
  );

function expectRefused(answer: Answer, status: number, code: string, context: string, secret?: string) {
  const body = expectClientError(answer, context);
  expect(answer.status, `${context}: ${answer.text}`).toBe(status);
  expect(body.code, context).toBe(code);
  if (status === 401) expect(answer.headers.get('www-authenticate')).toMatch(/^Bearer /);
  if (secret) {
    expect(answer.text).not.toContain(secret);
    expect(s.rawLogs()).not.toContain(secret);
  }
}

describe('forged and confused JWTs', () => {
  it('the control: a valid RS256 token with default:write encodes', async () => {
    expect((await encode(`Bearer ${await jwt()}`)).status).toBe(200);
    // And the hand-signed form the crit test builds on.
    expect(
      (await encode(`Bearer ${await signedByUs({ alg: 'RS256', kid: 'rsa-1' }, validClaims())}`)).status,
    ).toBe(200);
  });

  it('alg "none" (any case, with or without a kid or signature) is refused', async () => {
    const claims = validClaims();
    const tokens = [
      handmade({ alg: 'none', typ: 'JWT' }, claims),
      handmade({ alg: 'none', kid: 'rsa-1' }, claims),
      handmade({ alg: 'None' }, claims),
      handmade({ alg: 'NONE' }, claims),
      handmade({ alg: 'none' }, claims, 'c2lnbmF0dXJl'),
      handmade({}, claims),
      `${handmade({ alg: 'none' }, claims)}.`,
    ];
    for (const token of tokens)
      expectRefused(await encode(`Bearer ${token}`), 401, 'ERR_UNAUTHENTICATED', token, token);
  });

  it('HS256 signed with the RSA public key as the secret (PEM and JWK forms) is refused', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const secrets = [
      pem,
      `${pem}\n`,
      pem.trim(),
      JSON.stringify(rsaPublicJwk),
      JSON.stringify({ kty: rsaPublicJwk.kty, n: rsaPublicJwk.n, e: rsaPublicJwk.e }),
      rsaPublicJwk.n!,
    ];
    for (const secret of secrets) {
      for (const header of [{}, { kid: 'rsa-1' }]) {
        const token = await hs256(Buffer.from(secret, 'utf8'), header);
        expectRefused(
          await encode(`Bearer ${token}`),
          401,
          'ERR_UNAUTHENTICATED',
          `HS256 ${secret.slice(0, 30)}`,
          token,
        );
      }
    }
    // The DER bytes of the public key as the secret.
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expectRefused(
      await encode(`Bearer ${await hs256(der, { kid: 'rsa-1' })}`),
      401,
      'ERR_UNAUTHENTICATED',
      'HS256 DER',
    );
  });

  it('another signing key: an attacker key under our kid, an embedded jwk, a jku, an unknown kid, PS256', async () => {
    const attackerJwk = await exportJWK(attacker.publicKey);
    const cases: [string, string][] = [
      ['attacker key, our kid', await jwt({ key: attacker })],
      ['embedded jwk', await jwt({ key: attacker, header: { jwk: attackerJwk } })],
      ['embedded jwk, no kid', await jwt({ key: attacker, header: { jwk: attackerJwk, kid: undefined } })],
      ['jku', await jwt({ key: attacker, header: { jku: 'http://127.0.0.1:1/jwks.json' } })],
      ['x5u', await jwt({ key: attacker, header: { x5u: 'http://127.0.0.1:1/cert.pem' } })],
      ['unknown kid', await jwt({ header: { kid: 'nope' } })],
      ['kid traversal', await jwt({ header: { kid: '../../../../dev/null' } })],
      // Signed by our own key, but with a critical extension the verifier does not know.
      [
        'crit header',
        await signedByUs({ alg: 'RS256', kid: 'rsa-1', crit: ['x-unknown'], 'x-unknown': 1 }, validClaims()),
      ],
      [
        'b64 false',
        await signedByUs({ alg: 'RS256', kid: 'rsa-1', b64: false, crit: ['b64'] }, validClaims()),
      ],
    ];
    // A valid RS256 token relabelled PS256 (an allowed-looking RSA algorithm that is not configured).
    const [, body, signature] = (await jwt()).split('.');
    cases.push(['relabelled PS256', `${b64url({ alg: 'PS256', kid: 'rsa-1' })}.${body}.${signature}`]);
    cases.push(['relabelled RS512', `${b64url({ alg: 'RS512', kid: 'rsa-1' })}.${body}.${signature}`]);
    for (const [what, token] of cases)
      expectRefused(await encode(`Bearer ${token}`), 401, 'ERR_UNAUTHENTICATED', what, token);
    // A valid token whose signature was replaced, truncated, or moved to another payload.
    const good = await jwt();
    const [h, p, sig] = good.split('.') as [string, string, string];
    const escalated = b64url({ ...validClaims(), permissions: ['other:admin'] });
    for (const [what, token] of [
      ['no signature', `${h}.${p}.`],
      ['truncated signature', `${h}.${p}.${sig.slice(0, -4)}`],
      ['payload swapped', `${h}.${escalated}.${sig}`],
      ['trailing part', `${good}.extra`],
    ] as const) {
      expectRefused(await encode(`Bearer ${token}`), 401, 'ERR_UNAUTHENTICATED', what, token);
    }
  });
});

describe('claims', () => {
  it('expired, not yet valid, wrong issuer, wrong audience, missing exp: 401', async () => {
    const cases: [string, TokenOptions][] = [
      ['expired beyond the tolerance', { exp: now() - 120 }],
      ['not yet valid (nbf in 10 minutes)', { nbf: now() + 600 }],
      ['wrong issuer', { issuer: 'https://evil.test/' }],
      ['issuer without the trailing slash', { issuer: 'https://idp.test.invalid' }],
      ['issuer missing', { issuer: null }],
      ['wrong audience', { audience: 'another-service' }],
      ['audience list without ours', { audience: ['a', 'b'] }],
      ['audience missing', { audience: null }],
      // Decided: a token without exp would be valid forever. It must be refused.
      ['missing exp', { exp: null }],
      ['exp as a string', { claims: { exp: String(now() + 300) }, exp: null }],
    ];
    for (const [what, options] of cases) {
      const token = await jwt(options);
      expectRefused(await encode(`Bearer ${token}`), 401, 'ERR_UNAUTHENTICATED', what, token);
    }
    // The control for the audience list: ours among others is accepted.
    expect((await encode(`Bearer ${await jwt({ audience: ['other', AUDIENCE] })}`)).status).toBe(200);
  });

  it('a valid token for another namespace, or with a permission that only looks right: 403', async () => {
    const permissions: unknown[] = [
      ['other:admin'],
      ['default:read'],
      ['*:admin'],
      ['default*:admin'],
      ['DEFAULT:admin'],
      ['Default:write'],
      ['default :write'],
      ['default:write:extra'],
      ['default:writer'],
      ['defaul:write'],
      ['default.x:write'],
      [{ namespace: 'default', role: 'write' }],
      'other:admin',
      { default: 'write' },
      [],
    ];
    for (const p of permissions) {
      const token = await jwt({ claims: { permissions: p } });
      expectRefused(await encode(`Bearer ${token}`), 403, 'ERR_FORBIDDEN', JSON.stringify(p), token);
    }
  });
});

describe('credentials in the wrong place or the wrong shape', () => {
  it('a valid token in the query string, a cookie or another header is not looked at: 401', async () => {
    const token = await jwt();
    for (const query of ['token', 'access_token', 'authorization', 'jwt', 'auth']) {
      const answer = await rawPathRequest(s.port, `/default/encode?${query}=${token}`, {
        body: JSON.stringify({ payloads: [jsonPayload(1)] }),
      });
      expectRefused(answer, 401, 'ERR_UNAUTHENTICATED', query, token);
    }
    const url = await rawPathRequest(
      s.port,
      `/default/encode?authorization=${encodeURIComponent(`Bearer ${token}`)}`,
    );
    expectRefused(url, 401, 'ERR_UNAUTHENTICATED', 'authorization query', token);
    const elsewhere: Record<string, string>[] = [
      { cookie: `token=${token}` },
      { 'authorization-extras': token },
      { 'x-authorization': `Bearer ${token}` },
      { 'proxy-authorization': `Bearer ${token}` },
    ];
    for (const headers of elsewhere) {
      expectRefused(
        await encode(undefined, '/default/encode', headers),
        401,
        'ERR_UNAUTHENTICATED',
        JSON.stringify(Object.keys(headers)),
        token,
      );
    }
  });

  it('empty, garbage or malformed Authorization values: 401', async () => {
    const token = await jwt();
    const values = [
      '',
      ' ',
      'Bearer',
      'Bearer ',
      'Bearer    ',
      'bearer garbage',
      'Bearer a.b.c',
      'Bearer ..',
      'Bearer .',
      'Bearer null',
      'Bearer undefined',
      'Basic dXNlcjpwYXNz',
      `Basic ${Buffer.from(`x:${DECODE_TOKEN}`).toString('base64')}`,
      `Bearer ${token}x`,
      `Bearer x${token}`,
      `Bearer ${token} ${token}`,
      `Bearer ${token}, Bearer ${token}`,
      `Token ${DECODE_TOKEN}`,
      `Bearer ${DECODE_TOKEN.toUpperCase()}`,
      `Bearer ${DECODE_TOKEN.slice(0, -1)}`,
      `Bearer ${'A'.repeat(8000)}`,
      `Bearer ${'a.'.repeat(3000)}a`,
    ];
    for (const value of values) {
      const answer = await encode(value === '' ? undefined : value, '/default/decode');
      expectRefused(answer, 401, 'ERR_UNAUTHENTICATED', JSON.stringify(value.slice(0, 60)));
      expect(answer.text).not.toContain(DECODE_TOKEN.slice(0, -1));
    }
  });
});

describe('scopes', () => {
  it('a static token only does what it is scoped to', async () => {
    const decoder = `Bearer ${DECODE_TOKEN}`;
    expect(
      (await postJson(`${s.url}/default/decode`, { payloads: [] }, { authorization: decoder })).status,
    ).toBe(200);
    expectRefused(await encode(decoder), 403, 'ERR_FORBIDDEN', 'decode token encodes', DECODE_TOKEN);
    expectRefused(
      await postJson(`${s.url}/other/decode`, { payloads: [] }, { authorization: decoder }),
      403,
      'ERR_FORBIDDEN',
      'decode token, other namespace',
      DECODE_TOKEN,
    );
    // An admin token of "other" may not encode or decode "default".
    expectRefused(
      await encode(`Bearer ${ADMIN_TOKEN}`),
      403,
      'ERR_FORBIDDEN',
      'other admin on default',
      ADMIN_TOKEN,
    );
  });

  it('a namespace forged between the path and X-Namespace is refused, not picked', async () => {
    const token = `Bearer ${await jwt({ claims: { permissions: ['default:write'] } })}`;
    expectRefused(
      await encode(token, '/other/encode', { 'x-namespace': 'default' }),
      400,
      'ERR_NAMESPACE_MISMATCH',
      'path other, header default',
    );
    expectRefused(
      await encode(token, '/default/encode', { 'x-namespace': 'other' }),
      400,
      'ERR_NAMESPACE_MISMATCH',
      'path default, header other',
    );
    expectRefused(
      await encode(token, '/encode', { 'x-namespace': 'other' }),
      403,
      'ERR_FORBIDDEN',
      'header other',
    );
    expect((await encode(token, '/encode', { 'x-namespace': 'default' })).status).toBe(200);
  });

  it('the admin API needs the admin permission on that namespace', async () => {
    const versionsBefore = (await s.keyring.versions('default')).length;
    const get = (authorization?: string, ns = 'default') =>
      send(`${s.url}/admin/namespaces/${ns}/keys`, {
        method: 'GET',
        headers: authorization ? { authorization } : {},
      });
    const rotate = (authorization?: string, ns = 'default') =>
      send(`${s.url}/admin/namespaces/${ns}/keys/rotate`, {
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: '{}',
      });
    expectRefused(await get(), 401, 'ERR_UNAUTHENTICATED', 'admin get, no auth');
    expectRefused(await rotate(), 401, 'ERR_UNAUTHENTICATED', 'admin rotate, no auth');
    const nonAdmins = [
      `Bearer ${DECODE_TOKEN}`,
      `Bearer ${ADMIN_TOKEN}`, // admin of "other" only
      `Bearer ${await jwt({ claims: { permissions: ['default:write'] } })}`,
      `Bearer ${await jwt({ claims: { permissions: ['other:admin'] } })}`,
      `Bearer ${await jwt({ claims: { permissions: ['*:admin'] } })}`,
    ];
    for (const auth of nonAdmins) {
      expectRefused(await get(auth), 403, 'ERR_FORBIDDEN', `admin get ${auth.slice(0, 30)}`);
      expectRefused(await rotate(auth), 403, 'ERR_FORBIDDEN', `admin rotate ${auth.slice(0, 30)}`);
      const setState = await send(`${s.url}/admin/namespaces/default/keys/1/state`, {
        headers: { 'content-type': 'application/json', authorization: auth },
        body: '{"state":"destroyed"}',
      });
      expectRefused(setState, 403, 'ERR_FORBIDDEN', `admin set-state ${auth.slice(0, 30)}`);
    }
    // Traversal in the admin path cannot reach "other" with default's rights, nor the reverse.
    const otherAdmin = `Bearer ${ADMIN_TOKEN}`;
    for (const path of [
      '/admin/namespaces/other%2F..%2Fdefault/keys',
      '/admin/namespaces/..%2Fdefault/keys',
    ]) {
      const answer = await rawPathRequest(s.port, path, {
        method: 'GET',
        headers: { authorization: otherAdmin },
      });
      expect(answer.status, path).toBeGreaterThanOrEqual(400);
      expect(answer.status, path).toBeLessThan(500);
    }
    expect((await s.keyring.versions('default')).length).toBe(versionsBefore);
    expect((await s.keyring.versions('default'))[0]!.state).toBe('active');
    // The control: admin of "default" may.
    const admin = `Bearer ${await jwt({ claims: { permissions: ['default:admin'] } })}`;
    expect((await get(admin)).status).toBe(200);
    expect((await get(otherAdmin, 'other')).status).toBe(200);
  });

  it('/metrics needs its own token; a codec token does not open it', async () => {
    for (const auth of [
      undefined,
      `Bearer ${DECODE_TOKEN}`,
      `Bearer ${await jwt({ claims: { permissions: ['default:admin'] } })}`,
    ]) {
      const answer = await send(`${s.url}/metrics`, {
        method: 'GET',
        headers: auth ? { authorization: auth } : {},
      });
      expectRefused(answer, 401, 'ERR_UNAUTHENTICATED', `metrics ${auth?.slice(0, 20)}`);
    }
    const ok = await send(`${s.url}/metrics`, {
      method: 'GET',
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('temporal_keyring_http_requests_total');
  });
});

describe('dev mode without auth', () => {
  let dev: AdversarialServer;
  beforeAll(async () => {
    dev = await startServer({ dev: true });
  });
  afterAll(async () => {
    await dev?.close();
  });

  it('answers only loopback Host names (DNS rebinding), and anonymous callers cannot use the admin API remotely', async () => {
    for (const host of [
      'evil.test',
      'localhost.evil.test',
      '127.0.0.1.evil.test',
      'evil.test:8888',
      '[::2]',
      '0.0.0.0',
      '127.0.0.1@evil.test',
    ]) {
      const answer = await rawPathRequest(dev.port, '/default/encode', {
        headers: { host },
        body: JSON.stringify({ payloads: [jsonPayload(1)] }),
      });
      expect(answer.status, `Host ${host}: ${answer.text}`).toBeGreaterThanOrEqual(400);
      expect(answer.status).toBeLessThan(500);
      expect(answer.text).not.toContain('binary/encrypted');
    }
    // No Host at all (HTTP/1.0) and an empty one: not loopback names either.
    const body = JSON.stringify({ payloads: [jsonPayload(1)] });
    for (const head of [
      'POST /default/encode HTTP/1.0\r\n',
      'POST /default/encode HTTP/1.1\r\nHost: \r\nConnection: close\r\n',
    ]) {
      const answer = await rawSocket(
        dev.port,
        `${head}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(answer)?.[1]);
      expect(status, answer.slice(0, 200)).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    }
    for (const host of ['localhost', `127.0.0.1:${dev.port}`, `localhost:${dev.port}`]) {
      const answer = await rawPathRequest(dev.port, '/default/encode', {
        headers: { host },
        body: JSON.stringify({ payloads: [jsonPayload(1)] }),
      });
      expect(answer.status, `Host ${host}`).toBe(200);
    }
  });
});
