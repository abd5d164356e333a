import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { startTestServer, type TestServer, uiJsonPayload } from './support.ts';

/**
 * CORS as a real browser enforces it: a page on one loopback origin (http://localhost:P1) calls the
 * codec server on another (http://127.0.0.1:P2) the way the Web UI does, with credentials and an
 * Authorization header (so the browser preflights). Allowed origin: the answer is readable.
 * Another origin (http://localhost:P3): the browser blocks it.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = 'tk_browser_9a8b7c6d5e4f30211a2b3c4d5e6f7a8b';

async function pageServer(): Promise<{ origin: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<!doctype html><title>ui</title><p>fake web ui</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://localhost:${(server.address() as AddressInfo).port}`, server };
}

describe('CORS in a real browser (headless Chromium)', () => {
  let browser: Browser;
  let allowed: { origin: string; server: Server };
  let other: { origin: string; server: Server };
  let codec: TestServer;

  beforeAll(async () => {
    allowed = await pageServer();
    other = await pageServer();
    codec = await startTestServer({
      pathPrefix: '/codec',
      cors: { origins: [allowed.origin], credentials: true },
      auth: {
        tokens: [
          {
            name: 'browser',
            sha256: tokenSha256Hex(TOKEN),
            namespaces: ['default'],
            operations: ['encode', 'decode'],
          },
        ],
      },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    });
  });

  afterAll(async () => {
    await browser?.close();
    await codec?.close();
    for (const s of [allowed?.server, other?.server]) {
      s?.closeAllConnections();
      await new Promise((resolve) => s?.close(resolve));
    }
  });

  /** Runs the UI's request inside a page of `origin`; returns the status and body, or the fetch error. */
  async function fromPage(origin: string, op: 'encode' | 'decode', body: unknown, token = TOKEN) {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/`);
      return await page.evaluate(
        async ({ url, body, token }) => {
          try {
            const res = await fetch(url, {
              method: 'POST',
              credentials: 'include',
              headers: {
                'Content-Type': 'application/json',
                'X-Namespace': 'default',
                Authorization: `Bearer ${token}`,
                'Authorization-Extras': 'id-token-not-used',
              },
              body: JSON.stringify(body),
            });
            return { status: res.status, body: await res.json() };
          } catch (error) {
            return { error: String(error) };
          }
        },
        { url: `${codec.url}/codec/${op}?preserveStorageRefs=true`, body, token },
      );
    } finally {
      await page.close();
    }
  }

  it('lets the allowed origin encode and decode with credentials and a bearer token', async () => {
    const input = { payloads: [uiJsonPayload({ from: 'browser' })] };
    const enc = await fromPage(allowed.origin, 'encode', input);
    expect(enc).toMatchObject({ status: 200 });
    const dec = await fromPage(allowed.origin, 'decode', (enc as { body: unknown }).body);
    expect(dec).toEqual({ status: 200, body: input });
  });

  it('lets the allowed origin read error answers (status and body)', async () => {
    const res = await fromPage(allowed.origin, 'decode', { payloads: [] }, 'wrong-token');
    expect(res).toEqual({
      status: 401,
      body: { code: 'ERR_UNAUTHENTICATED', message: 'invalid credentials' },
    });
  });

  it('blocks another origin', async () => {
    const res = await fromPage(other.origin, 'decode', { payloads: [] });
    expect(res).toEqual({ error: expect.stringMatching(/Failed to fetch/) });
  });
});
