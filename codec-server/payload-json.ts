import type { Payload } from '@temporalio/common';
import { payloadToWire, toBase64, type WirePayload } from '../src/codec/payload-wire.ts';
import { HttpError, malformed } from './http-error.ts';

/**
 * The body format of `/encode` and `/decode`: `{"payloads": [Payload, ...]}` in protobuf-JSON,
 * where `metadata` values and `data` are standard base64.
 *
 * Pipeline position: HTTP body → {@link parsePayloadsBody} → `PayloadCodec` →
 * {@link payloadsToBody} → HTTP body. A `Payload` has two fields, both mapped by hand as
 * protobuf-JSON defines them (bytes as base64; empty fields omitted): protobufjs's own JSON mapping
 * (`Payload.fromObject` / `toObject`) decodes base64 in JavaScript and cost several times the
 * encryption itself on a 20-payload request.
 */

/**
 * Decodes base64 as protobuf-JSON reads `bytes`: the standard or the URL-safe alphabet, padding
 * optional. Returns undefined for anything else.
 *
 * Node's decoder skips or stops at characters outside both alphabets instead of failing, so the
 * check is on what it produced: with the padding and length rules checked first, the string is
 * valid exactly when the decoder yields all the bytes its length promises (every character
 * counted). Same language as /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/
 * (test/codec-server/payload-json.test.ts compares them), at a seventh of the cost of running a
 * pattern over every character before decoding.
 */
export function decodeBase64(text: string): Buffer | undefined {
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const length = text.length - pad;
  const rest = length % 4;
  if (rest === 1 || (pad !== 0 && pad !== 4 - rest)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === (length >> 2) * 3 + (rest === 0 ? 0 : rest - 1) ? bytes : undefined;
}

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
  const entries: [string, Uint8Array][] = [];
  if (metadata !== undefined && metadata !== null) {
    if (!isObject(metadata)) throw malformed(`${path}.metadata must be an object of base64 strings`);
    let i = 0;
    for (const key of Object.keys(metadata)) {
      i++;
      const value = metadata[key];
      const bytes = typeof value === 'string' ? decodeBase64(value) : undefined;
      // By position, not by name: an encode request's metadata keys are payload content.
      if (!bytes) throw malformed(`${path}.metadata: entry ${i} is not a base64 string`);
      entries.push([key, bytes]);
    }
  }
  let bytes: Uint8Array | undefined = new Uint8Array(0);
  if (data !== undefined && data !== null) {
    bytes = typeof data === 'string' ? decodeBase64(data) : undefined;
    if (!bytes) throw malformed(`${path}.data must be a base64 string`);
  }
  // fromEntries, not assignment: a `__proto__` key must stay a key.
  return { metadata: Object.fromEntries(entries), data: bytes };
}

/**
 * Prints payloads as the response body. Only `metadata` and `data` are written: the Go client
 * parses responses with strict protobuf-JSON, so no other key may appear.
 */
export function payloadsToBody(payloads: readonly Payload[]): { payloads: WirePayload[] } {
  return { payloads: payloads.map(payloadToWire) };
}

/**
 * The response body as {@link payloadsToBody} would give it to `JSON.stringify`, byte for byte
 * (test/codec-server/payload-json.test.ts compares them), written straight from the payloads:
 * base64 never needs escaping, metadata keys go through `JSON.stringify`.
 */
export function payloadsToJson(payloads: readonly Payload[]): string {
  let out = '{"payloads":[';
  for (let i = 0; i < payloads.length; i++) {
    const payload = payloads[i]!;
    if (i > 0) out += ',';
    out += '{';
    let fields = 0;
    const metadata = payload.metadata;
    if (metadata) {
      let entries = 0;
      for (const key in metadata) {
        if (!Object.hasOwn(metadata, key)) continue;
        out += entries === 0 ? '"metadata":{' : ',';
        out += `${JSON.stringify(key)}:"${toBase64(metadata[key]!)}"`;
        entries++;
      }
      if (entries > 0) {
        out += '}';
        fields++;
      }
    }
    if (payload.data && payload.data.length > 0) {
      out += `${fields > 0 ? ',' : ''}"data":"${toBase64(payload.data)}"`;
    }
    out += '}';
  }
  return `${out}]}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
