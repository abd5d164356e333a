import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { b64, post, startTestServer, type TestServer, uiJsonPayload } from './support.ts';

const TOKEN = 'tk_route_0123456789abcdef0123456789abcdef';
const ORIGIN = 'http://localhost:8233';

/**
 * The app serves the codec requests' usual form on a lean path ahead of Express (codec-route.ts)
 * and everything else through Express. These tests send the same requests to the whole app and to
 * its Express part alone, and require the same answers and the same log lines: the lean path is
 * an optimisation, never a second behaviour.
 */
describe('codec route: the lean path answers as Express does', () => {
  let s: TestServer;
  let expressOnly: http.Server;
  let expressUrl: string;
  let expressCalls = 0;

  beforeAll(async () => {
    s = await startTestServer(
      {
        cors: { origins: [ORIGIN] },
        auth: {
          tokens: [
            {
              name: 'route',
              sha256: tokenSha256Hex(TOKEN),
              namespaces: ['default'],
              operations: ['encode', 'decode'],
            },
          ],
        },
        bodyLimit: 4 * 1024 * 1024,
      },
      { namespaces: ['default', 'other'] },
    );
    // Counts what reaches Express from either server (`handle` is Express's entry, untyped).
    const app = s.app.express as unknown as { handle: (...args: unknown[]) => unknown };
    const handle = app.handle.bind(app);
    app.handle = (...args: unknown[]) => {
      expressCalls++;
      return handle(...args);
    };
    expressOnly = http.createServer(s.app.express).listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => expressOnly.once('listening', resolve));
    expressUrl = `http://127.0.0.1:${(expressOnly.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    expressOnly.closeAllConnections();
    await new Promise<void>((resolve) => expressOnly.close(() => resolve()));
    await s.close();
  });

  const auth = { authorization: `Bearer ${TOKEN}`, origin: ORIGIN };
  const HEADERS = [
    'content-type',
    'content-length',
    'access-control-allow-origin',
    'access-control-allow-credentials',
    'vary',
    'www-authenticate',
  ];

  async function both(path: string, body: unknown, headers: Record<string, string>) {
    const answer = async (base: string) => {
      const before = s.logs.length;
      const res = await post(`${base}${path}`, body, headers);
      const text = await res.text();
      // The request's one line is written when the response closes, just after the client has it.
      await expect.poll(() => s.logs.length).toBeGreaterThan(before);
      const line = s.logs.at(-1)!;
      const req = line.req as Record<string, unknown>;
      const audit = line.audit as Record<string, unknown> | undefined;
      return {
        status: res.status,
        text,
        headers: Object.fromEntries(HEADERS.map((h) => [h, res.headers.get(h)])),
        requestId: res.headers.get('x-request-id'),
        line: {
          level: line.level,
          msg: line.msg,
          channel: line.channel,
          req: { method: req.method, path: req.path },
          res: line.res,
          audit: audit && { ...audit, requestId: typeof audit.requestId },
        },
      };
    };
    const calls = expressCalls;
    const lean = await answer(s.url);
    const leanReachedExpress = expressCalls > calls;
    const viaExpress = await answer(expressUrl);
    return { lean, viaExpress, leanReachedExpress };
  }

  const encoded = async () => {
    const res = await post(`${s.url}/default/encode`, { payloads: [uiJsonPayload({ a: 1 })] }, auth);
    expect(res.status).toBe(200);
    return res.json();
  };

  it('serves the forms the Web UI and the CLI send without Express, with equal answers and log lines', async () => {
    const body = await encoded();
    for (const [path, headers] of [
      ['/decode', { ...auth, 'x-namespace': 'default' }],
      ['/default/decode', auth],
      ['/%7Bnamespace%7D/decode', { ...auth, 'x-namespace': 'default' }],
      ['/default/decode?preserveStorageRefs=true', auth],
    ] as const) {
      const { lean, viaExpress, leanReachedExpress } = await both(path, body, headers);
      expect(leanReachedExpress, path).toBe(false);
      expect(lean.status, path).toBe(200);
      expect(lean.text).toBe(viaExpress.text);
      expect(lean.headers).toEqual(viaExpress.headers);
      expect(lean.line).toEqual(viaExpress.line);
      expect(lean.requestId).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('answers every refusal alike, with the same code, headers and audit line', async () => {
    const body = await encoded();
    const cases: [string, unknown, Record<string, string>][] = [
      ['/default/decode', body, { origin: ORIGIN }], // 401
      ['/default/decode', body, { ...auth, authorization: 'Bearer nope' }], // 401
      ['/other/decode', body, auth], // 403: the token is scoped to default
      ['/missing/decode', body, { ...auth }], // 403 before 404: scope first
      ['/bad%20name/decode', body, auth], // 400 invalid namespace
      ['/default/decode', body, { ...auth, 'x-namespace': 'other' }], // 400 mismatch
      ['/decode', body, auth], // 400 no namespace
      ['/default/decode', '{"payloads": [', auth], // 400 bad JSON
      ['/default/decode', { payloads: 'x' }, auth], // 400 malformed
      ['/default/decode', { payloads: [{ data: 'not base64!' }] }, auth],
      [
        '/default/decode',
        { payloads: [{ metadata: { encoding: b64('binary/encrypted') }, data: b64('garbage') }] },
        auth,
      ],
      ['/default/decode', JSON.stringify({ payloads: [{ data: 'A'.repeat(4_200_000) }] }), auth], // 413
      ['/default/decode', body, { ...auth, 'content-type': 'text/plain' }], // 415
      ['/default/decode', body, { ...auth, origin: 'https://evil.example' }], // no CORS header
    ];
    for (const [path, input, headers] of cases) {
      const { lean, viaExpress, leanReachedExpress } = await both(path, input, headers);
      const what = `${path} ${JSON.stringify(headers)}`;
      expect(leanReachedExpress, what).toBe(false);
      expect(lean.status, what).toBe(viaExpress.status);
      expect(lean.text, what).toBe(viaExpress.text);
      expect(lean.headers, what).toEqual(viaExpress.headers);
      expect(lean.line, what).toEqual(viaExpress.line);
    }
  });

  it('leaves every other form to Express, which routes it to the same handler', async () => {
    const body = await encoded();
    for (const path of [
      '/default/decode/',
      '/default/DECODE',
      '/default/download',
      '/a/b/decode',
      '//decode',
      '/%E0%A4%A/decode',
    ]) {
      const { lean, viaExpress, leanReachedExpress } = await both(path, body, auth);
      expect(leanReachedExpress, path).toBe(true);
      expect(lean.status, path).toBe(viaExpress.status);
      expect(lean.text, path).toBe(viaExpress.text);
    }
    // The trailing-slash form is still a decode, served by the same handler.
    const slash = await post(`${s.url}/default/decode/`, body, auth);
    expect(slash.status).toBe(200);
  });

  it('mounts in an Express app of the user, both paths under the mount point', async () => {
    const parent = express();
    parent.use('/codec', s.app);
    parent.use((_req, res) => {
      res.status(418).end();
    });
    const server = http.createServer(parent).listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const body = await encoded();
      const calls = expressCalls;
      const lean = await post(`${base}/codec/default/decode`, body, auth);
      expect(lean.status).toBe(200);
      expect(expressCalls).toBe(calls);
      const viaExpress = await post(`${base}/codec/default/decode/`, body, auth);
      expect(viaExpress.status).toBe(200);
      expect(await viaExpress.text()).toBe(
        await (await post(`${base}/codec/default/decode`, body, auth)).text(),
      );
      expect(expressCalls).toBe(calls + 1);
      // Our app answers what it does not know with its own 404, inside the mount point.
      const missing = await post(`${base}/codec/nothing/here/at/all`, {}, auth);
      expect(missing.status).toBe(404);
      expect(((await missing.json()) as { code: string }).code).toBe('ERR_NOT_FOUND');
      expect((await post(`${base}/elsewhere`, {}, auth)).status).toBe(418);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
