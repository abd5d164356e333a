import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeBase64,
  parsePayloadsBody,
  payloadsToBody,
  payloadsToJson,
} from '../../codec-server/payload-json.ts';

/** protobuf-JSON `bytes`: either alphabet, padding optional (the reference decodeBase64 must match). */
const REFERENCE = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;

describe('decodeBase64', () => {
  it('accepts exactly the strings the reference pattern accepts, and decodes them as Node does', () => {
    const chars = fc.constantFrom(
      ...'ABZaz09+/-_=',
      ' ',
      '\n',
      '\t',
      '!',
      '.',
      '\u00e9',
      '\u0000',
      '%',
      '\ud83d',
    );
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 16 }), (list) => {
        const text = list.join('');
        const decoded = decodeBase64(text);
        expect(decoded !== undefined, JSON.stringify(text)).toBe(REFERENCE.test(text));
        if (decoded) expect(decoded.equals(Buffer.from(text, 'base64'))).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('round-trips every byte string in both alphabets, with and without padding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const b = Buffer.from(bytes);
        for (const text of [
          b.toString('base64'),
          b.toString('base64url'),
          b.toString('base64').replace(/=+$/, ''),
        ]) {
          expect(decodeBase64(text)?.equals(b)).toBe(true);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('parsePayloadsBody', () => {
  it('keeps a __proto__ metadata key as a key', () => {
    const body = JSON.parse(
      '{"payloads":[{"metadata":{"__proto__":"AQ==","encoding":"YQ=="},"data":"Ag=="}]}',
    );
    const [payload] = parsePayloadsBody(body);
    expect(Object.getPrototypeOf(payload!.metadata)).toBe(Object.prototype);
    expect(Object.keys(payload!.metadata!)).toEqual(['__proto__', 'encoding']);
    expect(payloadsToBody([payload!])).toEqual(body);
  });

  it('names the offending entry by position, never by key', () => {
    expect(() => parsePayloadsBody({ payloads: [{ metadata: { secret: 'AQ==', other: 'A' } }] })).toThrow(
      'payloads[0].metadata: entry 2 is not a base64 string',
    );
    expect(() => parsePayloadsBody({ payloads: [{}, { data: 'A===' }] })).toThrow(
      'payloads[1].data must be a base64 string',
    );
  });
});

describe('payloadsToJson', () => {
  it('writes exactly JSON.stringify(payloadsToBody(...)), byte for byte', () => {
    const bytes = fc.uint8Array({ maxLength: 64 }).map((b) => new Uint8Array(b));
    const payload = fc.record(
      {
        metadata: fc.dictionary(
          fc.oneof(fc.string(), fc.constantFrom('__proto__', 'encoding', '"quoted"\\', '1', '\u2028')),
          bytes,
          { maxKeys: 5 },
        ),
        data: bytes,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(payload, { maxLength: 6 }), (payloads) => {
        expect(payloadsToJson(payloads)).toBe(JSON.stringify(payloadsToBody(payloads)));
      }),
      { numRuns: 2_000 },
    );
    const [fromWire] = parsePayloadsBody(JSON.parse('{"payloads":[{"metadata":{"__proto__":"AQ=="}}]}'));
    expect(payloadsToJson([fromWire!])).toBe('{"payloads":[{"metadata":{"__proto__":"AQ=="}}]}');
  });
});
