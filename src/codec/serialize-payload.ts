import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import protobuf from 'protobufjs/minimal.js';
import type { Plaintext } from '../esdk/engine.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;

/**
 * From this size on, a payload's data is handed to the engine where it lies instead of being
 * copied into the serialized payload first: one copy of the data fewer (at 1 MiB, a tenth of the
 * encode time), for one array of parts more (not worth it for small payloads).
 */
export const SERIALIZE_IN_PARTS_FROM = 64 * 1024;

/**
 * The plaintext of an encrypted payload: the whole `temporal.api.common.v1.Payload` serialized
 * with protobuf, exactly the bytes `Payload.encode(payload).finish()` writes.
 *
 * Pipeline position: `EncryptionCodec.encode` → this → `EsdkEngine.encrypt`.
 *
 * For a large payload with only `metadata` and `data` set (what every payload converter makes),
 * the result comes in three parts: the serialized metadata, the `data` field's tag and length, and
 * the data itself, uncopied. protobufjs writes `metadata` (field 1) then `data` (field 2), so the
 * parts joined are those same bytes (test/codec/serialize-payload.test.ts); anything else set on
 * the payload (`externalPayloads`, unknown fields) takes the single-buffer path.
 */
export function serializePayload(payload: Payload): Plaintext {
  const data = payload.data;
  const rest = payload as { externalPayloads?: unknown[] | null; $unknowns?: unknown };
  if (
    !(data instanceof Uint8Array) ||
    data.length < SERIALIZE_IN_PARTS_FROM ||
    (rest.externalPayloads?.length ?? 0) > 0 ||
    rest.$unknowns !== undefined
  ) {
    return ProtoPayload.encode(payload).finish();
  }
  const metadata = ProtoPayload.encode({ metadata: payload.metadata ?? {} }).finish();
  // Field 2 (data), wire type 2 (length-delimited): tag 0x12, then the length as a varint.
  const header = protobuf.Writer.create()
    .uint32((2 << 3) | 2)
    .uint32(data.length)
    .finish();
  return [metadata, header, data];
}
