import { randomBytes } from 'node:crypto';
import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SERIALIZE_IN_PARTS_FROM, serializePayload } from '../../src/codec/serialize-payload.ts';
import { joinPlaintext } from '../../src/esdk/engine.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;
const big = (n: number) => randomBytes(SERIALIZE_IN_PARTS_FROM + n);

describe('serializePayload', () => {
  it('writes exactly what Payload.encode writes, in parts for large data', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 12 }), fc.uint8Array({ maxLength: 20 }), { maxKeys: 5 }),
        fc.integer({ min: 0, max: 70_000 }),
        fc.boolean(),
        (metadata, extra, large) => {
          const payload: Payload = { metadata, data: large ? big(extra) : randomBytes(extra % 1000) };
          const out = serializePayload(payload);
          expect(Array.isArray(out)).toBe(large);
          expect(
            Buffer.from(joinPlaintext(out)).equals(Buffer.from(ProtoPayload.encode(payload).finish())),
          ).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('hands the data over uncopied', () => {
    const data = big(1);
    const parts = serializePayload({ metadata: {}, data }) as Uint8Array[];
    expect(parts.at(-1)).toBe(data);
  });

  it('takes the single-buffer path when other fields are set', () => {
    const payload = {
      metadata: {},
      data: big(0),
      externalPayloads: [{ sizeBytes: 1 }],
    } as unknown as Payload;
    const out = serializePayload(payload);
    expect(out).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(out as Uint8Array).equals(Buffer.from(ProtoPayload.encode(payload).finish()))).toBe(
      true,
    );
  });
});
