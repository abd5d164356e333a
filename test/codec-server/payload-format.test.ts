import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { payloadsToBody } from '../../codec-server/payload-json.ts';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { post, startTestServer, type TestServer, uiJsonPayload, unb64 } from './support.ts';

describe('codec server with payloadFormat 2', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ dev: true }, { deps: { payloadFormat: 2 } });
  });
  afterAll(() => s.close());

  it('encodes in format 2 and decodes both formats', async () => {
    const enc = await post(`${s.url}/default/encode`, { payloads: [uiJsonPayload({ a: 1 })] });
    const encoded = (await enc.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Object.keys(encoded.payloads[0]!.metadata)).toEqual(['encoding', 'encryption-key-version']);
    const formatOne = await new EncryptionCodec({ namespace: 'default', keys: s.keyring }).encode([
      { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('"one"') },
    ]);
    const dec = await post(`${s.url}/default/decode`, {
      payloads: [...encoded.payloads, ...payloadsToBody(formatOne).payloads],
    });
    const decoded = (await dec.json()) as { payloads: { data: string }[] };
    expect(decoded.payloads.map((p) => unb64(p.data))).toEqual(['{"a":1}', '"one"']);
  });
});
