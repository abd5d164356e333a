import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import express, { type Request, type Response } from 'express';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonBodyReader } from '../../codec-server/json-body.ts';

/**
 * The codec routes' body reader against body-parser (`express.json({ strict: true })`), which it
 * replaces on the plain path: on the same requests both must give the same value, or errors of the
 * same `type` and status.
 */
const LIMIT = 4096;

function outcome(res: Response, value: unknown) {
  res.json({ ok: true, value });
}
function failure(res: Response, error: unknown) {
  const e = error as { type?: string; status?: number };
  res.json({ ok: false, type: e.type, status: e.status });
}

let url: string;
let close: () => Promise<void>;
beforeAll(async () => {
  const app = express();
  const ours = jsonBodyReader(LIMIT);
  const theirs = express.json({ limit: LIMIT, strict: true, type: () => true });
  app.post('/ours', (req: Request, res: Response) => {
    ours(req, res).then(
      (value) => outcome(res, value),
      (error) => failure(res, error),
    );
  });
  app.post('/lib', (req: Request, res: Response) => {
    theirs(req, res, (error?: unknown) => (error ? failure(res, error) : outcome(res, req.body)));
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
});
afterAll(() => close?.());

async function both(body: Uint8Array | string, headers: Record<string, string> = {}) {
  const send = async (path: string) => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : Buffer.from(body),
    });
    return res.json();
  };
  return { ours: await send('/ours'), lib: await send('/lib') };
}

describe('jsonBodyReader answers as body-parser does', () => {
  it.each([
    ['an object', '{"payloads":[{"data":"AQ=="}]}'],
    ['an array', '[1,2]'],
    ['leading whitespace', ' \r\n\t{"a":1}'],
    ['a BOM', '\ufeff{"a":1}'],
    ['empty', ''],
    ['whitespace only', '  \n'],
    ['a number (not strict)', '42'],
    ['a string (not strict)', '"x"'],
    ['invalid JSON', '{"payloads": ['],
    ['unicode', '{"k":"\u00e9\u2028\ud83d\ude00"}'],
    ['too large', `{"a":"${'x'.repeat(LIMIT)}"}`],
    ['exactly the limit', `{"a":"${'x'.repeat(LIMIT - 8)}"}`],
  ])('%s', async (_name, body) => {
    const { ours, lib } = await both(body);
    expect(ours).toEqual(lib);
  });

  it('charset and content encodings go to body-parser itself', async () => {
    for (const headers of [
      { 'content-type': 'application/json; charset=utf-8' },
      { 'content-type': 'application/json; charset="UTF-8"' },
      { 'content-type': 'application/json; charset=latin1' },
    ]) {
      const { ours, lib } = await both('{"a":"b"}', headers);
      expect(ours).toEqual(lib);
    }
    const gz = gzipSync(Buffer.from('{"payloads":[]}'));
    const { ours, lib } = await both(gz, { 'content-encoding': 'gzip' });
    expect(ours).toEqual({ ok: true, value: { payloads: [] } });
    expect(ours).toEqual(lib);
  });

  it('on arbitrary bodies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.json(),
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        async (body) => {
          const { ours, lib } = await both(body);
          expect(ours).toEqual(lib);
        },
      ),
      { numRuns: 150 },
    );
  });
});
