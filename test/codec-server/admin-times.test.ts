/** The admin API gives times as the CLI's --json does: ISO 8601, every field present, in one form. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { keyVersionJson } from '../../src/model/key-version-json.ts';
import { startTestServer, type TestServer } from './support.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ dev: true, port: 0 }, { namespaces: ['default'] });
});
afterAll(async () => s?.close());

it('lists, rotates and changes state with ISO 8601 times, the CLI’s JSON form', async () => {
  const listed = (await (await fetch(`${s.url}/admin/namespaces/default/keys`)).json()) as {
    versions: Record<string, unknown>[];
  };
  const [v1] = await s.keyring.versions('default');
  expect(listed.versions[0]).toEqual({ ...keyVersionJson(v1!), usage: { reserved: 0, used: 0 } });
  expect(listed.versions[0]!.createdAt).toBe('2026-01-01T00:00:00.000Z');

  const post = (path: string, body: unknown) =>
    fetch(`${s.url}/admin/namespaces/default/keys/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then((r) => r.json() as Promise<Record<string, unknown>>);
  const rotated = await post('rotate', {});
  expect(rotated).toMatchObject({
    namespace: 'default',
    performed: true,
    previous: { version: 1, createdAt: '2026-01-01T00:00:00.000Z' },
    current: { version: 2, state: 'active', activatedAt: '2026-01-01T00:00:00.000Z' },
  });
  const deprecated = await post('1/state', { state: 'deprecated' });
  expect(deprecated).toMatchObject({
    version: 1,
    state: 'deprecated',
    deprecatedAt: '2026-01-01T00:00:00.000Z',
  });
});
