import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { b64, startTestServer, type TestServer, uiJsonPayload, unb64 } from './support.ts';

/**
 * Requests exactly as the Temporal Web UI and the `temporal` CLI send them (see
 * ../shared/codec-protocol.md), with answers checked as the strict Go client checks them.
 */

const UI_ORIGIN = 'http://localhost:8233';
const TOKEN = 'tk_ui_0f1e2d3c4b5a69788796a5b4c3d2e1f0';

type JsonPayload = { metadata?: Record<string, string>; data?: string };
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** What Go's strict protojson and `codec.go` accept: 200 only, `{payloads}` only, same count, keys metadata/data, base64. */
async function strictGoCheck(res: Response, expectedCount: number): Promise<JsonPayload[]> {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['payloads']);
  const payloads = body.payloads as JsonPayload[];
  expect(payloads).toHaveLength(expectedCount);
  for (const p of payloads) {
    for (const key of Object.keys(p)) expect(['metadata', 'data']).toContain(key);
    for (const v of Object.values(p.metadata ?? {})) expect(v).toMatch(STD_BASE64);
    if (p.data !== undefined) expect(p.data).toMatch(STD_BASE64);
  }
  return payloads;
}

describe('as the Web UI and the CLI call it', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer(
      {
        pathPrefix: '/codec',
        cors: { origins: [UI_ORIGIN, 'https://cloud.temporal.io'], credentials: true },
        auth: {
          tokens: [
            {
              name: 'ui',
              sha256: tokenSha256Hex(TOKEN),
              namespaces: ['*'],
              operations: ['encode', 'decode'],
            },
          ],
        },
      },
      { namespaces: ['default', 'payments.prod'] },
    );
  });
  afterAll(() => s.close());

  /** The UI: preflight, then the POST, from the UI's origin, to endpoint + /op?preserveStorageRefs=true. */
  async function uiRequest(
    op: 'encode' | 'decode',
    namespace: string,
    payloads: JsonPayload[],
    origin = UI_ORIGIN,
  ) {
    const url = `${s.url}/codec/${op}?preserveStorageRefs=true`;
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: {
        Origin: origin,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,authorization-extras,content-type,x-namespace',
      },
    });
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        Origin: origin,
        'Content-Type': 'application/json',
        'X-Namespace': namespace,
        Authorization: `Bearer ${TOKEN}`,
        'Authorization-Extras': 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1aSJ9.c2ln',
      },
      body: JSON.stringify({ payloads }),
    });
    return { preflight, res };
  }

  it('answers the UI preflight for an allowed origin', async () => {
    const { preflight } = await uiRequest('decode', 'default', []);
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
    expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = preflight.headers.get('access-control-allow-headers')!.split(',');
    for (const h of ['content-type', 'x-namespace', 'authorization', 'authorization-extras'])
      expect(allowed).toContain(h);
    expect(preflight.headers.get('vary')).toMatch(/Origin/i);
  });

  it("answers Chrome's Private Network Access preflight for allowed origins only", async () => {
    const preflight = (origin: string) =>
      fetch(`${s.url}/codec/decode`, {
        method: 'OPTIONS',
        headers: {
          Origin: origin,
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'content-type,x-namespace',
          'Access-Control-Request-Private-Network': 'true',
        },
      });
    const ok = await preflight('https://cloud.temporal.io');
    expect(ok.headers.get('access-control-allow-private-network')).toBe('true');
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://cloud.temporal.io');
    const other = await preflight('https://evil.example');
    expect(other.headers.get('access-control-allow-private-network')).toBeNull();
  });

  it('encodes UI-built json/plain payloads and decodes them back', async () => {
    const inputs = [
      uiJsonPayload({ orderId: 42, items: ['a', 'b'] }),
      uiJsonPayload('hello'),
      uiJsonPayload(null),
    ];
    const { res } = await uiRequest('encode', 'payments.prod', inputs);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const encoded = await strictGoCheck(res, 3);
    for (const p of encoded) expect(unb64(p.metadata!['encryption-key-id']!)).toBe('payments.prod/v1');
    const { res: dec } = await uiRequest('decode', 'payments.prod', encoded);
    const decoded = await strictGoCheck(dec, 3);
    expect(decoded).toEqual(inputs);
    expect(JSON.parse(unb64(decoded[0]!.data!))).toEqual({ orderId: 42, items: ['a', 'b'] });
  });

  it('decodes a mixed history page: ours decrypted, others untouched, order kept', async () => {
    const { res: enc } = await uiRequest('encode', 'default', [uiJsonPayload(1), uiJsonPayload(3)]);
    const [one, three] = await strictGoCheck(enc, 2);
    const plain = { metadata: { encoding: b64('binary/plain') }, data: b64('raw bytes') };
    const nul = { metadata: { encoding: b64('binary/null') } };
    const { res } = await uiRequest('decode', 'default', [one!, plain, three!, nul]);
    expect(await strictGoCheck(res, 4)).toEqual([uiJsonPayload(1), plain, uiJsonPayload(3), nul]);
  });

  it('shows errors to the UI: CORS headers are on error answers too', async () => {
    const { res } = await uiRequest('decode', 'no-keys-here', [uiJsonPayload(1)]);
    expect(res.status).toBe(404);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
    const unauth = await fetch(`${s.url}/codec/decode`, {
      method: 'POST',
      headers: { Origin: UI_ORIGIN, 'Content-Type': 'application/json', 'X-Namespace': 'default' },
      body: '{"payloads":[]}',
    });
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
  });

  it.each([
    'https://evil.example',
    'null',
    'http://localhost:8233.evil.example',
    'http://evil.localhost:8233',
    'http://localhost:82330',
  ])('gives origin %s no Access-Control-Allow-Origin', async (origin) => {
    const { preflight, res } = await uiRequest('decode', 'default', [], origin);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('serves the CLI: {namespace} in the endpoint, Authorization verbatim, extra headers', async () => {
    const endpoint = `${s.url}/codec/{namespace}`.replaceAll('{namespace}', 'default');
    const headers = {
      'Content-Type': 'application/json',
      'X-Namespace': 'default',
      Authorization: TOKEN, // --codec-auth given without "Bearer"
      'X-Custom-Header': 'from --codec-header',
      'User-Agent': 'Go-http-client/1.1',
    };
    const memo = { metadata: { encoding: b64('json/plain') }, data: b64('{"note":"memo"}') };
    const enc = await fetch(`${endpoint}/encode`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ payloads: [memo] }),
    });
    const encoded = await strictGoCheck(enc, 1);
    const dec = await fetch(`${endpoint}/decode`, {
      method: 'POST',
      headers: { ...headers, Authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ payloads: encoded }),
    });
    expect(await strictGoCheck(dec, 1)).toEqual([memo]);
  });

  it('answers a burst of concurrent decode requests, as a history page sends them', async () => {
    const { res } = await uiRequest('encode', 'default', [uiJsonPayload('burst')]);
    const encoded = await strictGoCheck(res, 1);
    const answers = await Promise.all(
      Array.from({ length: 40 }, () =>
        fetch(`${s.url}/codec/decode?preserveStorageRefs=true`, {
          method: 'POST',
          headers: {
            Origin: UI_ORIGIN,
            'Content-Type': 'application/json',
            'X-Namespace': 'default',
            Authorization: `Bearer ${TOKEN}`,
          },
          body: JSON.stringify({ payloads: encoded }),
        }),
      ),
    );
    for (const a of answers) expect(await strictGoCheck(a, 1)).toEqual([uiJsonPayload('burst')]);
  });

  it('serves the UI when its endpoint still holds the CLI placeholder {namespace}', async () => {
    for (const placeholder of ['{namespace}', '%7Bnamespace%7D']) {
      const res = await fetch(`${s.url}/codec/${placeholder}/decode?preserveStorageRefs=true`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'X-Namespace': 'default',
          Authorization: `Bearer ${TOKEN}`,
        },
        body: JSON.stringify({ payloads: [uiJsonPayload(1)] }),
      });
      expect(await strictGoCheck(res, 1)).toEqual([uiJsonPayload(1)]);
    }
  });

  it('gives the CLI a status and a readable body on failure', async () => {
    const res = await fetch(`${s.url}/codec/default/decode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer wrong' },
      body: '{"payloads":[]}',
    });
    expect(res.status).toBe(401);
    expect(await res.text()).toMatch(/"code":"ERR_UNAUTHENTICATED"/);
  });

  it('round-trips through @temporalio/common: the codec server output decodes in an SDK data converter', async () => {
    const { defaultPayloadConverter } = await import('@temporalio/common');
    const payload = defaultPayloadConverter.toPayload({ from: 'sdk', n: [1, 2] });
    const asJson = {
      metadata: Object.fromEntries(
        Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
      ),
      data: Buffer.from(payload.data!).toString('base64'),
    };
    const { res } = await uiRequest('encode', 'default', [asJson]);
    const [encrypted] = await strictGoCheck(res, 1);
    const { res: back } = await uiRequest('decode', 'default', [encrypted!]);
    const [decoded] = await strictGoCheck(back, 1);
    const restored = {
      metadata: Object.fromEntries(
        Object.entries(decoded!.metadata!).map(([k, v]) => [k, Buffer.from(v, 'base64')]),
      ),
      data: Buffer.from(decoded!.data!, 'base64'),
    };
    expect(defaultPayloadConverter.fromPayload(restored)).toEqual({ from: 'sdk', n: [1, 2] });
  });
});
