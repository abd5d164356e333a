import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { post, startTestServer, type TestServer, uiJsonPayload } from './support.ts';

const TOKEN = 'tk_log_0123456789abcdef0123456789abcdef01';

describe('request log', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      auth: {
        tokens: [
          { name: 'ci', sha256: tokenSha256Hex(TOKEN), namespaces: ['*'], operations: ['encode', 'decode'] },
        ],
      },
    });
  });
  afterAll(() => s.close());

  const accessLines = (id: string) => s.logs.filter((l) => (l.req as { id?: string } | undefined)?.id === id);

  it('writes one line per codec request, access and audit together: id, method, path without query, status, time, audit; no headers', async () => {
    const res = await post(
      `${s.url}/default/encode?preserveStorageRefs=true`,
      { payloads: [uiJsonPayload(1)] },
      {
        authorization: `Bearer ${TOKEN}`,
        'x-request-id': 'log-ok-1',
      },
    );
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    await expect.poll(() => accessLines('log-ok-1').length).toBe(1);
    const line = accessLines('log-ok-1')[0]!;
    expect(line.level).toBe(30);
    expect(line.channel).toBe('audit');
    expect(line.msg).toBe('encode ok');
    expect(line.audit).toMatchObject({
      requestId: 'log-ok-1',
      operation: 'encode',
      outcome: 'ok',
      payloads: 1,
    });
    expect(s.logs.filter((l) => (l.audit as { requestId?: string })?.requestId === 'log-ok-1')).toHaveLength(
      1,
    );
    expect(line.req).toEqual({
      id: 'log-ok-1',
      method: 'POST',
      path: '/default/encode',
      remoteAddress: expect.any(String),
    });
    expect(line.res).toEqual({ statusCode: 200 });
    expect(line.responseTime).toBeGreaterThanOrEqual(0);
    expect(s.rawLogs()).not.toContain(TOKEN);
    expect(s.rawLogs()).not.toContain('preserveStorageRefs');
  });

  it('logs client errors as warn, keeps a tame X-Request-Id and replaces a wild one', async () => {
    const denied = await post(`${s.url}/default/decode`, { payloads: [] }, { 'x-request-id': 'log-401' });
    expect(denied.status).toBe(401);
    expect(denied.headers.get('x-request-id')).toBe('log-401');
    await expect.poll(() => accessLines('log-401').length).toBe(1);
    expect(accessLines('log-401')[0]!).toMatchObject({
      level: 40,
      channel: 'audit',
      msg: 'decode error',
      audit: { outcome: 'error', status: 401, code: 'ERR_UNAUTHENTICATED' },
    });
    const health = await fetch(`${s.url}/healthz`, { headers: { 'x-request-id': 'log-health' } });
    expect(health.status).toBe(200);
    await expect.poll(() => accessLines('log-health').length).toBe(1);
    expect(accessLines('log-health')[0]!).toMatchObject({ level: 30, msg: 'request completed' });
    expect(accessLines('log-health')[0]!.channel).toBeUndefined();

    const wild = await post(`${s.url}/default/decode`, { payloads: [] }, { 'x-request-id': 'a b\u00e9/../' });
    const id = wild.headers.get('x-request-id')!;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await expect.poll(() => accessLines(id).length).toBe(1);
  });
});
