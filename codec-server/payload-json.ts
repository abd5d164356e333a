import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { HttpError, malformed } from './http-error.ts';

/**
 * The body format of `/encode` and `/decode`: `{"payloads": [Payload, ...]}` in protobuf-JSON,
 * where `metadata` values and `data` are standard base64.
 *
 * Pipeline position: HTTP body → {@link parsePayloadsBody} → `PayloadCodec` →
 * {@link payloadsToBody} → HTTP body. Parsing and printing go through `@temporalio/proto`'s
 * generated `Payload` type, so field names and byte encodings are the ones protobuf-JSON defines.
 * (`@temporalio/common`'s `JSONToPayload` cannot be used in this install: it ends up with two
 * copies of protobufjs 8 and fails with "type must be a Type".)
 */

const ProtoPayload = proto.temporal.api.common.v1.Payload;

/** Standard base64 (RFC 4648 §4), padding optional as protobuf-JSON allows; also the URL-safe alphabet. */
const BASE64 = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;

/**
 * Most payloads one request may carry. Bounds the work one request buys: 8 MiB of `{}` is ~2.8M
 * payloads, and encrypting each one costs far more than parsing it (an encode of 20k empty
 * payloads took seconds and answered 10 MB). Real requests carry one payloads message, a few.
 */
export const MAX_PAYLOADS_PER_REQUEST = 10_000;

/** Reads a request body already parsed from JSON. Throws `ERR_MALFORMED_REQUEST` with the offending path. */
export function parsePayloadsBody(body: unknown): Payload[] {
  if (!isObject(body)) throw malformed('body must be a JSON object {"payloads": [...]}');
  const list = body.payloads;
  // protobuf-JSON omits empty repeated fields, so `{}` is a valid empty list.
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw malformed('"payloads" must be an array');
  if (list.length > MAX_PAYLOADS_PER_REQUEST) {
    throw new HttpError(
      413,
      'ERR_PAYLOAD_TOO_LARGE',
      `at most ${MAX_PAYLOADS_PER_REQUEST} payloads per request`,
    );
  }
  return list.map((item, i) => parsePayload(item, `payloads[${i}]`));
}

function parsePayload(item: unknown, path: string): Payload {
  if (!isObject(item)) throw malformed(`${path} must be an object`);
  const { metadata, data } = item;
  if (metadata !== undefined && metadata !== null) {
    if (!isObject(metadata)) throw malformed(`${path}.metadata must be an object of base64 strings`);
    for (const [i, value] of Object.values(metadata).entries()) {
      if (typeof value !== 'string' || !BASE64.test(value)) {
        // By position, not by name: an encode request's metadata keys are payload content.
        throw malformed(`${path}.metadata: entry ${i + 1} is not a base64 string`);
      }
    }
  }
  if (data !== undefined && data !== null && (typeof data !== 'string' || !BASE64.test(data))) {
    throw malformed(`${path}.data must be a base64 string`);
  }
  try {
    const p = ProtoPayload.fromObject({ metadata: metadata ?? {}, data: data ?? '' });
    return {
      metadata: { ...p.metadata },
      data: p.data instanceof Uint8Array ? p.data : new Uint8Array(p.data),
    };
  } catch {
    throw malformed(`${path} is not a valid Payload`);
  }
}

/**
 * Prints payloads as the response body. Only `metadata` and `data` are written: the Go client
 * parses responses with strict protobuf-JSON, so no other key may appear.
 */
export function payloadsToBody(payloads: readonly Payload[]): {
  payloads: { metadata?: Record<string, string>; data?: string }[];
} {
  return {
    payloads: payloads.map((payload) => {
      const json = ProtoPayload.toObject(
        ProtoPayload.fromObject({ metadata: payload.metadata ?? {}, data: payload.data ?? new Uint8Array() }),
        {
          bytes: String,
        },
      ) as { metadata?: Record<string, string>; data?: string };
      const out: { metadata?: Record<string, string>; data?: string } = {};
      if (json.metadata && Object.keys(json.metadata).length > 0) out.metadata = json.metadata;
      if (json.data) out.data = json.data;
      return out;
    }),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
