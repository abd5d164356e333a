import type { Payload } from '@temporalio/common';

/**
 * A payload as the remote codec protocol carries it (protobuf-JSON of `temporal.api.common.v1.Payload`):
 * bytes as standard base64 with padding, empty fields left out, no other key (the Go client parses
 * strictly). One writer for every side of the protocol: the codec server's answers, the
 * `RemoteCodec`'s requests and `rewrap`'s output.
 */
export interface WirePayload {
  metadata?: Record<string, string>;
  data?: string;
}

/** Standard base64 of the bytes in place (a view is not copied). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** One payload as its protobuf-JSON object. */
export function payloadToWire(payload: Payload): WirePayload {
  const out: WirePayload = {};
  const metadata = Object.entries(payload.metadata ?? {});
  if (metadata.length > 0) out.metadata = Object.fromEntries(metadata.map(([k, v]) => [k, toBase64(v)]));
  if (payload.data && payload.data.length > 0) out.data = toBase64(payload.data);
  return out;
}
