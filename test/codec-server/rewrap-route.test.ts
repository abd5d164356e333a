import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { b64, post, startTestServer, type TestServer, uiJsonPayload, unb64 } from './support.ts';

const REWRAP = 'tk_rewrap_0123456789abcdef0123456789abcdef';
const WORKER = 'tk_worker_0123456789abcdef0123456789abcdef';

describe('POST /rewrap', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer(
      {
        auth: {
          tokens: [
            {
              name: 'archiver',
              sha256: tokenSha256Hex(REWRAP),
              namespaces: ['orders'],
              operations: ['rewrap'],
            },
            {
              name: 'worker',
              sha256: tokenSha256Hex(WORKER),
              namespaces: ['*'],
              operations: ['encode', 'decode'],
            },
          ],
        },
      },
      { namespaces: ['orders'] },
    );
  });
  afterAll(() => s.close());

  it('re-encrypts under the active version with its own permission, audited; then the old version can go', async () => {
    const worker = { authorization: `Bearer ${WORKER}`, 'x-namespace': 'orders' };
    const encoded = (await (
      await post(`${s.url}/encode`, { payloads: [uiJsonPayload('a'), uiJsonPayload('b')] }, worker)
    ).json()) as {
      payloads: { metadata: Record<string, string>; data: string }[];
    };
    await s.keyring.rotate('orders');
    const other = uiJsonPayload('not encrypted');
    const body = { payloads: [...encoded.payloads, other] };

    expect((await post(`${s.url}/orders/rewrap`, body, worker)).status).toBe(403);
    const res = await post(`${s.url}/orders/rewrap`, body, { authorization: `Bearer ${REWRAP}` });
    expect(res.status).toBe(200);
    const out = (await res.json()) as {
      payloads: { metadata: Record<string, string> }[];
      rewrapped: number;
      activeVersion: number;
    };
    expect(out.rewrapped).toBe(2);
    expect(out.activeVersion).toBe(2);
    expect(out.payloads.map((p) => p.metadata['encryption-key-version'])).toEqual([
      b64('2'),
      b64('2'),
      undefined,
    ]);
    expect(out.payloads[2]).toEqual(other);

    await s.keyring.setState('orders', 1, 'deprecated');
    await s.keyring.setState('orders', 1, 'destroyed');
    const decoded = (await (await post(`${s.url}/decode`, { payloads: out.payloads }, worker)).json()) as {
      payloads: { data: string }[];
    };
    expect(decoded.payloads.map((p) => unb64(p.data))).toEqual(['"a"', '"b"', '"not encrypted"']);
    const again = await post(`${s.url}/rewrap`, body, {
      authorization: `Bearer ${REWRAP}`,
      'x-namespace': 'orders',
    });
    expect(again.status).toBe(400);
    expect(await again.json()).toMatchObject({ code: 'ERR_KEY_VERSION_DESTROYED' });

    const audits = s.logs
      .map((l) => l.audit as { operation?: string; outcome?: string; rewrapped?: number } | undefined)
      .filter((a) => a?.operation === 'rewrap');
    expect(audits.map((a) => [a!.outcome, a!.rewrapped])).toEqual([
      ['error', 0],
      ['ok', 2],
      ['error', 0],
    ]);
  });
});
