import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { post, startTestServer, type TestServer, uiJsonPayload } from './support.ts';

const ISSUER = 'https://idp.test.invalid/';
const AUDIENCE = 'temporal-codec';
const STATIC_TOKEN = 'tk_cli_5f2d9a7c0e8b4a1f9d3c6e2b7a0f4d8c';

type Keys = Awaited<ReturnType<typeof generateKeyPair>>;

describe('authentication and authorization', () => {
  let jwksServer: Server;
  let jwksUrl: string;
  let rsa: Keys;
  let ec: Keys;
  let other: Keys;
  let s: TestServer;
  const clock = new ManualClock(Date.UTC(2026, 5, 1));
  const nowSeconds = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256', { extractable: true });
    ec = await generateKeyPair('ES256', { extractable: true });
    other = await generateKeyPair('RS256', { extractable: true });
    const keys: JWK[] = [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ];
    // The identity provider's JWKS, served by the test on loopback.
    jwksServer = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
    s = await startTestServer(
      {
        auth: {
          jwt: { jwksUrl, issuer: ISSUER, audience: AUDIENCE },
          tokens: [
            {
              name: 'cli',
              sha256: tokenSha256Hex(STATIC_TOKEN),
              namespaces: ['default'],
              operations: ['decode'],
            },
          ],
        },
      },
      { clock, namespaces: ['default', 'other'] },
    );
  });
  afterAll(async () => {
    await s?.close();
    jwksServer?.closeAllConnections();
    await new Promise((resolve) => jwksServer?.close(resolve));
  });

  async function jwt(
    claims: Record<string, unknown>,
    options: {
      key?: Keys;
      kid?: string;
      alg?: string;
      issuer?: string;
      audience?: string;
      expiresIn?: number;
    } = {},
  ): Promise<string> {
    const alg = options.alg ?? 'RS256';
    return new SignJWT(claims)
      .setProtectedHeader({ alg, kid: options.kid ?? (alg === 'ES256' ? 'ec-1' : 'rsa-1') })
      .setSubject('user@example.com')
      .setIssuer(options.issuer ?? ISSUER)
      .setAudience(options.audience ?? AUDIENCE)
      .setIssuedAt(nowSeconds())
      .setExpirationTime(nowSeconds() + (options.expiresIn ?? 300))
      .sign((options.key ?? (alg === 'ES256' ? ec : rsa)).privateKey);
  }

  const encodeWith = (
    authorization: string | undefined,
    ns = 'default',
    extra: Record<string, string> = {},
  ) =>
    post(
      `${s.url}/encode`,
      { payloads: [uiJsonPayload({ n: 1 })] },
      {
        'X-Namespace': ns,
        ...(authorization ? { Authorization: authorization } : {}),
        ...extra,
      },
    );
  const decodeWith = (authorization: string | undefined, ns = 'default') =>
    post(`${s.url}/${ns}/decode`, { payloads: [] }, authorization ? { Authorization: authorization } : {});

  it('accepts a valid RS256 or ES256 access token with the namespace permission', async () => {
    const token = await jwt({ permissions: ['default:write'] });
    const res = await encodeWith(`Bearer ${token}`, 'default', { 'Authorization-Extras': 'not-even-a-jwt' });
    expect(res.status).toBe(200);
    // write includes read, as in Temporal's own roles.
    expect((await decodeWith(`Bearer ${token}`)).status).toBe(200);
    const esToken = await jwt({ permissions: ['default:read'] }, { alg: 'ES256' });
    expect((await decodeWith(`Bearer ${esToken}`)).status).toBe(200);
    const audit = s.logs.filter((l) => l.channel === 'audit').at(-1)!.audit as { identity: unknown };
    expect(audit.identity).toEqual({ kind: 'jwt', subject: 'user@example.com' });
  });

  it('refuses a read-only token on /encode with 403, and a token for another namespace', async () => {
    const reader = await jwt({ permissions: ['default:read'] });
    const res = await encodeWith(`Bearer ${reader}`);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_FORBIDDEN');
    const otherNs = await jwt({ permissions: ['other:admin'] });
    expect((await decodeWith(`Bearer ${otherNs}`)).status).toBe(403);
    expect((await decodeWith(`Bearer ${otherNs}`, 'other')).status).toBe(200);
  });

  it('accepts an expired token within the 30 s tolerance and refuses it after', async () => {
    const token = await jwt({ permissions: ['default:read'] }, { expiresIn: 60 });
    clock.advance(75_000);
    expect((await decodeWith(`Bearer ${token}`)).status).toBe(200);
    clock.advance(60_000);
    const res = await decodeWith(`Bearer ${token}`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      code: 'ERR_UNAUTHENTICATED',
      message: 'invalid bearer token: token expired',
    });
  });

  it.each([
    ['wrong issuer', { issuer: 'https://evil.invalid/' }],
    ['wrong audience', { audience: 'someone-else' }],
    ['key not in the JWKS', { key: undefined as unknown as Keys, kid: 'rsa-1', useOther: true }],
    ['unknown kid', { kid: 'nope' }],
  ])('refuses a token with %s (401)', async (_name, opts) => {
    const options = { ...opts } as Parameters<typeof jwt>[1] & { useOther?: boolean };
    if (options.useOther) options.key = other;
    const token = await jwt({ permissions: ['default:admin'] }, options);
    const res = await decodeWith(`Bearer ${token}`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
  });

  it('refuses alg "none"', async () => {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const unsigned = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({
      sub: 'mallory',
      iss: ISSUER,
      aud: AUDIENCE,
      exp: nowSeconds() + 300,
      permissions: ['default:admin'],
    })}.`;
    expect((await decodeWith(`Bearer ${unsigned}`)).status).toBe(401);
  });

  it('refuses HS256 signed with the public key (algorithm confusion)', async () => {
    const publicPem = await exportSPKI(rsa.publicKey);
    const forged = await new SignJWT({ permissions: ['default:admin'] })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
      .setSubject('mallory')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(nowSeconds() + 300)
      .sign(new TextEncoder().encode(publicPem));
    expect((await decodeWith(`Bearer ${forged}`)).status).toBe(401);
  });

  it('accepts a scoped static token, with "Bearer" or verbatim, and nothing beyond its scope', async () => {
    expect((await decodeWith(`Bearer ${STATIC_TOKEN}`)).status).toBe(200);
    expect((await decodeWith(STATIC_TOKEN)).status).toBe(200);
    expect((await encodeWith(STATIC_TOKEN)).status).toBe(403);
    expect((await decodeWith(STATIC_TOKEN, 'other')).status).toBe(403);
    expect((await decodeWith('Bearer tk_cli_wrong')).status).toBe(401);
    const audit = s.logs.filter((l) => l.channel === 'audit');
    expect(
      audit.some((l) => (l.audit as { identity?: { subject: string } }).identity?.subject === 'cli'),
    ).toBe(true);
  });

  it('ignores credentials in the query string', async () => {
    const token = await jwt({ permissions: ['default:admin'] });
    for (const q of [
      `access_token=${token}`,
      `token=${STATIC_TOKEN}`,
      `authorization=Bearer%20${STATIC_TOKEN}`,
    ]) {
      const res = await post(`${s.url}/default/decode?${q}`, { payloads: [] });
      expect(res.status).toBe(401);
    }
  });

  it('applies the same checks to /encode and /decode, and grants the admin API to <ns>:admin', async () => {
    expect((await encodeWith(undefined)).status).toBe(401);
    expect((await decodeWith(undefined)).status).toBe(401);
    const admin = await jwt({ permissions: ['default:admin'] });
    const list = await fetch(`${s.url}/admin/namespaces/default/keys`, {
      headers: { Authorization: `Bearer ${admin}` },
    });
    expect(list.status).toBe(200);
    const writer = await jwt({ permissions: ['default:write'] });
    expect(
      (
        await fetch(`${s.url}/admin/namespaces/default/keys`, {
          headers: { Authorization: `Bearer ${writer}` },
        })
      ).status,
    ).toBe(403);
  });

  it('answers 503 (not 401) when the identity provider keys cannot be fetched', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/jwks.json`;
    await new Promise((resolve) => closed.close(resolve));
    const down = await startTestServer(
      { auth: { jwt: { jwksUrl: deadUrl, issuer: ISSUER, audience: AUDIENCE } } },
      { clock, namespaces: ['default'] },
    );
    try {
      const token = await jwt({ permissions: ['default:read'] });
      const res = await post(
        `${down.url}/default/decode`,
        { payloads: [] },
        { Authorization: `Bearer ${token}` },
      );
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe('ERR_AUTH_UNAVAILABLE');
    } finally {
      await down.close();
    }
  });

  it('never logs tokens', async () => {
    const raw = s.rawLogs();
    expect(raw).not.toContain(STATIC_TOKEN);
    expect(raw).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });
});
