import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { post, startTestServer, type TestServer } from './support.ts';

const ADMIN = 'tk_admin_export_0123456789abcdef0123456789';
const WORKER = 'tk_worker_export_0123456789abcdef012345678';

describe('admin API: exportable keys', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer(
      {
        auth: {
          tokens: [
            { name: 'admin', sha256: tokenSha256Hex(ADMIN), namespaces: ['*'], operations: ['admin'] },
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
  const admin = { authorization: `Bearer ${ADMIN}` };

  it('refuses export until marked, marks irreversibly, exports with no-store and audits without the keys', async () => {
    const url = `${s.url}/admin/namespaces/orders`;
    const refused = await post(`${url}/keys/export`, {}, admin);
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ code: 'ERR_NOT_EXPORTABLE' });
    expect((await post(`${url}/keys/export`, {}, { authorization: `Bearer ${WORKER}` })).status).toBe(403);
    expect(await (await fetch(`${url}/exportable`, { headers: admin })).json()).toEqual({
      namespace: 'orders',
      exportable: false,
      markedAt: null,
    });

    const marked = await post(`${url}/exportable`, { exportable: true }, admin);
    expect(marked.status).toBe(200);
    expect(await marked.json()).toEqual({
      namespace: 'orders',
      exportable: true,
      markedAt: '2026-01-01T00:00:00.000Z',
    });
    const unmark = await post(`${url}/exportable`, { exportable: false }, admin);
    expect(unmark.status).toBe(409);
    expect(await unmark.json()).toMatchObject({
      code: 'ERR_INVALID_STATE_TRANSITION',
      message: expect.stringContaining('cannot be unmarked'),
    });

    const exported = await post(`${url}/keys/export`, { version: 1 }, admin);
    expect(exported.status).toBe(200);
    expect(exported.headers.get('cache-control')).toBe('no-store');
    const body = (await exported.json()) as { versions: { version: number; material: string }[] };
    expect(body.versions.map((v) => v.version)).toEqual([1]);
    expect(Buffer.from(body.versions[0]!.material, 'base64')).toHaveLength(32);
    const audits = s.logs.filter((l) => (l.audit as { action?: string } | undefined)?.action);
    expect(
      audits.map((l) => [(l.audit as { action: string }).action, (l.audit as { outcome: string }).outcome]),
    ).toEqual([
      ['export', 'refused'],
      ['set-exportable', 'ok'],
      ['set-exportable', 'refused'],
      ['export', 'ok'],
    ]);
    expect(s.rawLogs()).not.toContain(body.versions[0]!.material);
  });
});
