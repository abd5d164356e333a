import { webcrypto } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

/**
 * What the official samples-typescript `encryption` sample does, written here from its
 * description (not copied): a `PayloadCodec` that serializes the whole Payload (protobuf) and
 * encrypts it with WebCrypto AES-256-GCM under one static key (a random 12-byte IV before the
 * ciphertext), marking it `binary/encrypted` with the key id; and the sample codec server's
 * protobuf-JSON mapping (`Buffer.from(v, 'base64')` / `toString('base64')`, no validation).
 *
 * The comparison point of the issue-17 targets: no key versions, no usage metering, no
 * encryption context, no key commitment, no auth, logs or metrics. bench only.
 */
const ProtoPayload = proto.temporal.api.common.v1.Payload;
const ENCODING = 'binary/encrypted';
const ENCODING_BYTES = new TextEncoder().encode(ENCODING);
const KEY_ID = 'sample-key';
const KEY_ID_BYTES = new TextEncoder().encode(KEY_ID);
const decoder = new TextDecoder();

export class SampleEquivalentCodec implements PayloadCodec {
  private constructor(private readonly key: webcrypto.CryptoKey) {}

  static async create(rawKey: Uint8Array): Promise<SampleEquivalentCodec> {
    const key = await webcrypto.subtle.importKey('raw', rawKey, 'AES-GCM', false, ['encrypt', 'decrypt']);
    return new SampleEquivalentCodec(key);
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (payload) => {
        const plain = ProtoPayload.encode(payload).finish();
        const iv = webcrypto.getRandomValues(new Uint8Array(12));
        const sealed = new Uint8Array(
          await webcrypto.subtle.encrypt({ name: 'AES-GCM', iv }, this.key, plain),
        );
        const data = new Uint8Array(12 + sealed.length);
        data.set(iv);
        data.set(sealed, 12);
        return { metadata: { encoding: ENCODING_BYTES, 'encryption-key-id': KEY_ID_BYTES }, data };
      }),
    );
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (payload) => {
        const encoding = payload.metadata?.encoding;
        if (!encoding || decoder.decode(encoding) !== ENCODING || !payload.data) return payload;
        const keyId = payload.metadata?.['encryption-key-id'];
        if (!keyId || decoder.decode(keyId) !== KEY_ID) throw new Error('unknown key id');
        const iv = payload.data.subarray(0, 12);
        const plain = await webcrypto.subtle.decrypt(
          { name: 'AES-GCM', iv },
          this.key,
          payload.data.subarray(12),
        );
        return ProtoPayload.decode(new Uint8Array(plain));
      }),
    );
  }
}

export interface SampleJsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

/** The sample server's JSON → Payload: base64 via Buffer, no checks. */
export function sampleFromJson({ metadata, data }: SampleJsonPayload): Payload {
  return {
    metadata:
      metadata &&
      Object.fromEntries(
        Object.entries(metadata).map(([k, v]): [string, Uint8Array] => [k, Buffer.from(v, 'base64')]),
      ),
    data: data ? Buffer.from(data, 'base64') : undefined,
  } as Payload;
}

/** The sample server's Payload → JSON. */
export function sampleToJson({ metadata, data }: Payload): SampleJsonPayload {
  return {
    metadata:
      metadata &&
      Object.fromEntries(
        Object.entries(metadata).map(([k, v]): [string, string] => [k, Buffer.from(v).toString('base64')]),
      ),
    data: data ? Buffer.from(data).toString('base64') : undefined,
  };
}
