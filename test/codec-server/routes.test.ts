import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { KeystoreUnavailableError } from '../../src/errors.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { b64, post, startTestServer, type TestServer, uiJsonPayload, unb64 } from './support.ts';

const ADMIN_TOKEN = 'tk_admin_0123456789abcdef0123456789abcdef';
const CODEC_TOKEN = 'tk_codec_0123456789abcdef0123456789abcdef';
const METRICS_TOKEN = 'tk_metrics_0123456789abcdef0123456789abcd';

/** A keystore that can be switched off, like a database going away. */
class FlakyKeystore extends MemoryKeystore {
  down = false;
  override async ping(): Promise<void> {
    if (this.down) throw new KeystoreUnavailableError('keystore unreachable (test)');
  }
  override async getVersions(namespace: string) {
    if (this.down) throw new KeystoreUnavailableError('keystore unreachable (test)');
    return super.getVersions(namespace);
  }
}

describe('codec routes (dev mode, no auth)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ dev: true });
  });
  afterAll(() => s.close());

  it('encodes and decodes through X-Namespace, keeping count and order', async () => {
    const input = { payloads: [uiJsonPayload({ a: 1 }), uiJsonPayload('second'), uiJsonPayload([3])] };
    const enc = await post(`${s.url}/encode`, input, { 'X-Namespace': 'default' });
    expect(enc.status).toBe(200);
    expect(enc.headers.get('content-type')).toMatch(/^application\/json/);
    const encoded = (await enc.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(encoded.payloads).toHaveLength(3);
    for (const p of encoded.payloads) {
      expect(Object.keys(p).sort()).toEqual(['data', 'metadata']);
      expect(unb64(p.metadata.encoding!)).toBe('binary/encrypted');
      expect(unb64(p.metadata['encryption-key-id']!)).toBe('default/v1');
    }
    const dec = await post(`${s.url}/decode`, encoded, { 'X-Namespace': 'default' });
    expect(dec.status).toBe(200);
    expect(await dec.json()).toEqual(input);
  });

  it('takes the namespace from the path, with or without a matching X-Namespace, and a query string', async () => {
    const input = { payloads: [uiJsonPayload('x')] };
    const enc = await post(`${s.url}/default/encode?preserveStorageRefs=true`, input);
    expect(enc.status).toBe(200);
    const dec = await post(`${s.url}/default/decode?preserveStorageRefs=true`, await enc.json(), {
      'X-Namespace': 'default',
    });
    expect(await dec.json()).toEqual(input);
  });

  it('passes payloads that are not ours through /decode unchanged, and accepts an empty list', async () => {
    const foreign = {
      payloads: [{ metadata: { encoding: b64('binary/null') } }, uiJsonPayload({ plain: true })],
    };
    const res = await post(`${s.url}/default/decode`, foreign);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(foreign);
    const empty = await post(`${s.url}/default/decode`, { payloads: [] });
    expect(await empty.json()).toEqual({ payloads: [] });
  });

  it('creates a namespace on first encode in dev mode', async () => {
    const res = await post(`${s.url}/fresh-ns/encode`, { payloads: [uiJsonPayload(1)] });
    expect(res.status).toBe(200);
    expect((await s.keyring.versions('fresh-ns')).map((v) => v.state)).toEqual(['active']);
  });

  it.each([
    ['namespaces differ', '/default/decode', { 'X-Namespace': 'other' }, 400, 'ERR_NAMESPACE_MISMATCH'],
    ['no namespace', '/decode', {}, 400, 'ERR_NAMESPACE_REQUIRED'],
    ['invalid namespace in header', '/decode', { 'X-Namespace': '../etc' }, 400, 'ERR_INVALID_NAMESPACE'],
    ['invalid namespace in path', '/-bad/decode', {}, 400, 'ERR_INVALID_NAMESPACE'],
    ['unknown path', '/a/b/decode', {}, 404, 'ERR_NOT_FOUND'],
    ['unknown operation', '/default/compress', {}, 404, 'ERR_NOT_FOUND'],
    ['download', '/default/download', {}, 501, 'ERR_NOT_SUPPORTED'],
    ['download without namespace', '/download?preserveStorageRefs=true', {}, 501, 'ERR_NOT_SUPPORTED'],
  ] as const)('%s → %i', async (_name, path, headers, status, code) => {
    const res = await post(`${s.url}${path}`, { payloads: [] }, headers);
    expect(res.status).toBe(status);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe(code);
    expect(body.message.length).toBeGreaterThan(10);
    expect(Object.keys(body).sort()).toEqual(['code', 'message']);
  });

  it('GET on a codec route is 404', async () => {
    expect((await fetch(`${s.url}/default/decode`)).status).toBe(404);
  });

  it.each([
    ['not JSON', '{"payloads": [', 'ERR_MALFORMED_REQUEST'],
    ['not an object', '[1,2]', 'ERR_MALFORMED_REQUEST'],
    ['payloads not an array', '{"payloads": {"a": 1}}', 'ERR_MALFORMED_REQUEST'],
    ['payload not an object', '{"payloads": [5]}', 'ERR_MALFORMED_REQUEST'],
    ['bad base64 data', '{"payloads": [{"data": "***"}]}', 'ERR_MALFORMED_REQUEST'],
    ['bad base64 metadata', '{"payloads": [{"metadata": {"encoding": 5}}]}', 'ERR_MALFORMED_REQUEST'],
  ])('malformed body (%s) → 400', async (_name, body, code) => {
    const res = await post(`${s.url}/default/decode`, body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe(code);
  });

  it('refuses a non-JSON content type with 415', async () => {
    const res = await fetch(`${s.url}/default/encode`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '{"payloads":[]}',
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_UNSUPPORTED_MEDIA_TYPE');
  });

  it('accepts bodies up to the limit and refuses larger ones with 413', async () => {
    // 3 MiB of data in one payload: well under the 8 MiB default.
    const big = {
      payloads: [
        { metadata: { encoding: b64('binary/plain') }, data: Buffer.alloc(3 << 20, 1).toString('base64') },
      ],
    };
    const ok = await post(`${s.url}/default/decode`, big);
    expect(ok.status).toBe(200);
    const tooBig = { payloads: [{ data: Buffer.alloc(7 << 20, 1).toString('base64') }] };
    const res = await post(`${s.url}/default/decode`, tooBig);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_PAYLOAD_TOO_LARGE');
  });

  it('answers a tampered ciphertext with an opaque 400', async () => {
    const enc = (await (
      await post(`${s.url}/default/encode`, { payloads: [uiJsonPayload('secret-plaintext')] })
    ).json()) as {
      payloads: { metadata: Record<string, string>; data: string }[];
    };
    const data = Buffer.from(enc.payloads[0]!.data, 'base64');
    data[data.length - 5]! ^= 1;
    enc.payloads[0]!.data = data.toString('base64');
    const res = await post(`${s.url}/default/decode`, enc);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ code: 'ERR_DECRYPTION_FAILED', message: 'decryption failed' });
  });

  it('serves /healthz, /readyz and /metrics outside the codec routes', async () => {
    expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${s.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', keystore: 'memory' });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(
      /temporal_keyring_http_requests_total\{route="encode",method="POST",status="200"\} \d+/,
    );
    expect(metrics).toMatch(
      /temporal_keyring_payloads_total\{namespace="default",operation="encode",key_version="1"\} \d+/,
    );
    expect(metrics).toMatch(/temporal_keyring_errors_total\{code="ERR_NAMESPACE_MISMATCH"\} 1/);
    expect(metrics).toMatch(
      /temporal_keyring_http_request_duration_seconds_bucket\{le="0.005",route="decode"\}/,
    );
  });

  it('writes one audit record per codec request without payload content', async () => {
    const res = await post(
      `${s.url}/default/encode`,
      { payloads: [uiJsonPayload('audit-me-plaintext'), uiJsonPayload(2)] },
      {
        'X-Request-Id': 'req-audit-1',
      },
    );
    expect(res.headers.get('x-request-id')).toBe('req-audit-1');
    const record = s.logs.find(
      (l) => l.channel === 'audit' && (l.audit as { requestId: string }).requestId === 'req-audit-1',
    );
    expect(record?.audit).toEqual({
      requestId: 'req-audit-1',
      operation: 'encode',
      identity: { kind: 'anonymous', subject: 'anonymous' },
      namespace: 'default',
      payloads: 2,
      keyVersions: [1],
      outcome: 'ok',
      status: 200,
    });
    expect(s.rawLogs()).not.toContain('audit-me-plaintext');
    expect(s.rawLogs()).not.toContain(b64(JSON.stringify('audit-me-plaintext')));
  });

  it('refuses non-loopback Host names in dev mode without auth (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${s.url}/default/decode`, {
          method: 'POST',
          headers: { host, 'content-type': 'application/json' },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end('{"payloads":[]}');
      });
    expect(await status('evil.example:8888')).toBe(403);
    expect(await status('127.0.0.1.nip.io')).toBe(403);
    expect(await status('localhost:8888')).toBe(200);
    expect(await status('[::1]:8888')).toBe(200);
  });

  it('allows the admin API from loopback in dev mode', async () => {
    const res = await fetch(`${s.url}/admin/namespaces/default/keys`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { versions: { version: number; state: string }[] };
    expect(body.versions[0]).toMatchObject({ version: 1, state: 'active' });
  });

  it('destroys a prepublished version (it never encrypted anything), as README and docs/cli.md say', async () => {
    const json = { 'content-type': 'application/json' };
    const base = `${s.url}/admin/namespaces/dropped/keys`;
    await s.keyring.createNamespace('dropped');
    const pre = await post(`${base}/rotate`, { mode: 'prepublish' }, json);
    expect(pre.status).toBe(200);
    const versions = await s.keyring.versions('dropped');
    expect(versions.map((v) => `${v.version}:${v.state}`)).toEqual(['1:active', '2:prepublished']);
    const destroyed = await post(`${base}/2/state`, { state: 'destroyed' }, json);
    expect(destroyed.status).toBe(200);
    expect(await destroyed.json()).toMatchObject({ version: 2, state: 'destroyed' });
    // Encoding goes on under version 1; the next rotation makes version 3.
    expect((await post(`${s.url}/dropped/encode`, { payloads: [uiJsonPayload(1)] })).status).toBe(200);
    const next = await post(`${base}/rotate`, {}, json);
    expect(await next.json()).toMatchObject({ performed: true, current: { version: 3, state: 'active' } });
  });
});

describe('codec routes (tokens, path prefix)', () => {
  let s: TestServer;
  let keystore: FlakyKeystore;
  beforeAll(async () => {
    keystore = new FlakyKeystore();
    s = await startTestServer(
      {
        pathPrefix: '/codec',
        auth: {
          tokens: [
            { name: 'admin', sha256: tokenSha256Hex(ADMIN_TOKEN), namespaces: ['*'], operations: ['admin'] },
            {
              name: 'codec',
              sha256: tokenSha256Hex(CODEC_TOKEN),
              namespaces: ['default', 'other'],
              operations: ['encode', 'decode'],
            },
          ],
        },
        metrics: { tokenSha256: tokenSha256Hex(METRICS_TOKEN) },
      },
      { namespaces: ['default'], keystore },
    );
  });
  afterAll(() => s.close());
  const auth = { Authorization: `Bearer ${CODEC_TOKEN}` };

  it('serves the codec under the prefix only', async () => {
    const enc = await post(
      `${s.url}/codec/encode`,
      { payloads: [uiJsonPayload(1)] },
      { ...auth, 'X-Namespace': 'default' },
    );
    expect(enc.status).toBe(200);
    const dec = await post(`${s.url}/codec/default/decode`, await enc.json(), auth);
    expect(await dec.json()).toEqual({ payloads: [uiJsonPayload(1)] });
    expect((await post(`${s.url}/default/decode`, { payloads: [] }, auth)).status).toBe(404);
  });

  it('answers 404 for a namespace without keys (no creation outside dev mode)', async () => {
    const res = await post(`${s.url}/codec/other/encode`, { payloads: [uiJsonPayload(1)] }, auth);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('ERR_NAMESPACE_NOT_FOUND');
    expect(body.message).toContain('temporal-keyring keys create --namespace other');
    expect(await s.keyring.versions('other')).toEqual([]);
  });

  it('authenticates /download before answering 501, and logs it at info, never at error', async () => {
    const before = s.logs.length;
    for (const path of ['/codec/download', '/codec/default/download?preserveStorageRefs=true']) {
      const anonymous = await post(`${s.url}${path}`, { payloads: [] });
      expect(anonymous.status).toBe(401);
      expect(((await anonymous.json()) as { code: string }).code).toBe('ERR_UNAUTHENTICATED');
      const authed = await post(`${s.url}${path}`, { payloads: [] }, auth);
      expect(authed.status).toBe(501);
      expect(((await authed.json()) as { code: string }).code).toBe('ERR_NOT_SUPPORTED');
    }
    const lines = s.logs.slice(before) as { level: number; res?: { statusCode: number } }[];
    const answered501 = lines.filter((l) => l.res?.statusCode === 501);
    expect(answered501).toHaveLength(2);
    for (const line of answered501) expect(line.level).toBe(30);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  });

  it('answers 401 without credentials and 403 outside the token scope', async () => {
    const none = await post(`${s.url}/codec/default/decode`, { payloads: [] });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const scoped = await post(`${s.url}/codec/third/decode`, { payloads: [] }, auth);
    expect(scoped.status).toBe(403);
    expect(((await scoped.json()) as { code: string }).code).toBe('ERR_FORBIDDEN');
  });

  it('protects /metrics with its token', async () => {
    expect((await fetch(`${s.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${s.url}/metrics`, { headers: auth })).status).toBe(401);
    const ok = await fetch(`${s.url}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('temporal_keyring_http_requests_total');
  });

  it('runs the admin API with the admin permission only', async () => {
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
    expect((await fetch(`${s.url}/admin/namespaces/default/keys`, { headers: auth })).status).toBe(403);
    expect((await fetch(`${s.url}/admin/namespaces/default/keys`)).status).toBe(401);

    const v1Payload = await (
      await post(`${s.url}/codec/default/encode`, { payloads: [uiJsonPayload('under v1')] }, auth)
    ).json();
    // Without a JSON content type (a "simple" cross-site POST a page could make): refused.
    const simple = await fetch(`${s.url}/admin/namespaces/default/keys/rotate`, {
      method: 'POST',
      headers: admin,
    });
    expect(simple.status).toBe(415);
    const rotated = await fetch(`${s.url}/admin/namespaces/default/keys/rotate`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
    });
    expect(rotated.status).toBe(200);
    expect(await rotated.json()).toMatchObject({
      performed: true,
      previous: { version: 1 },
      current: { version: 2, state: 'active' },
    });

    const deprecate = await fetch(`${s.url}/admin/namespaces/default/keys/1/state`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'deprecated' }),
    });
    expect(deprecate.status).toBe(200);
    expect(await deprecate.json()).toMatchObject({ version: 1, state: 'deprecated' });

    // A payload of the deprecated version no longer decodes (no allowDeprecatedDecrypt here).
    const refused = await post(`${s.url}/codec/default/decode`, v1Payload, auth);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { code: string }).code).toBe('ERR_KEY_VERSION_DEPRECATED');

    const invalid = await fetch(`${s.url}/admin/namespaces/default/keys/2/state`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'destroyed' }),
    });
    expect(invalid.status).toBe(409);
    expect(((await invalid.json()) as { code: string }).code).toBe('ERR_INVALID_STATE_TRANSITION');

    const bad = await fetch(`${s.url}/admin/namespaces/default/keys/1/state`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'gone' }),
    });
    expect(bad.status).toBe(400);

    const changes = s.logs.filter((l) => l.channel === 'audit' && String(l.msg).startsWith('admin'));
    expect(changes.map((l) => l.audit)).toEqual([
      expect.objectContaining({
        action: 'rotate',
        namespace: 'default',
        version: 2,
        identity: { kind: 'token', subject: 'admin' },
      }),
      expect.objectContaining({ action: 'set-state', namespace: 'default', version: 1, state: 'deprecated' }),
    ]);
    const list = await fetch(`${s.url}/admin/namespaces/default/keys`, { headers: admin });
    const body = (await list.json()) as {
      versions: { version: number; state: string; usage: { reserved: number } }[];
    };
    expect(body.versions.map((v) => [v.version, v.state])).toEqual([
      [1, 'deprecated'],
      [2, 'active'],
    ]);
    expect(body.versions[0]!.usage).toEqual({ reserved: 0, used: 0 });
  });

  it('refuses to activate a prepublished version over the admin API before its propagation delay', async () => {
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const rotate = (body: object) =>
      fetch(`${s.url}/admin/namespaces/default/keys/rotate`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify(body),
      });
    const next = (await s.keyring.versions('default')).length + 1;
    const prepublished = await rotate({ mode: 'prepublish' });
    expect(await prepublished.json()).toMatchObject({ current: { version: next, state: 'prepublished' } });
    const early = await rotate({});
    expect(early.status).toBe(409);
    const refusal = (await early.json()) as { code: string; message: string };
    expect(refusal.code).toBe('ERR_INVALID_STATE_TRANSITION');
    expect(refusal.message).toMatch(/propagation delay is 2 ?min.*"force": true/);
    s.clock.advance(2 * 60_000);
    expect(await (await rotate({})).json()).toMatchObject({ current: { version: next, state: 'active' } });
    await rotate({ mode: 'prepublish' });
    const forced = await rotate({ force: true });
    expect(await forced.json()).toMatchObject({ current: { version: next + 1, state: 'active' } });
  });

  it('answers 503 when the keystore is unavailable, on /readyz and on a codec request', async () => {
    keystore.down = true;
    try {
      const ready = await fetch(`${s.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'not ready', code: 'ERR_KEYSTORE_UNAVAILABLE' });
      const res = await post(
        `${s.url}/codec/never-seen/decode`,
        { payloads: [] },
        {
          Authorization: `Bearer ${ADMIN_TOKEN}`,
        },
      );
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe('ERR_KEYSTORE_UNAVAILABLE');
    } finally {
      keystore.down = false;
    }
    expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
  });

  it('never logs tokens or authorization headers', () => {
    const raw = s.rawLogs();
    for (const secret of [ADMIN_TOKEN, CODEC_TOKEN, METRICS_TOKEN]) expect(raw).not.toContain(secret);
    expect(raw.toLowerCase()).not.toContain('authorization');
  });
});
