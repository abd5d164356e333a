import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PayloadScanner } from '../../cli/payload-scanner.ts';

/** Runs the scanner in chunks of `size`; returns the pieces in order, candidates marked. */
function scan(text: string, size: number, maxPayloadBytes?: number) {
  const pieces: { candidate: boolean; text: string }[] = [];
  const scanner = new PayloadScanner({
    onRaw: (b) => pieces.push({ candidate: false, text: b.toString('utf8') }),
    onCandidate: (b) => pieces.push({ candidate: true, text: b.toString('utf8') }),
    maxPayloadBytes,
  });
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) scanner.write(bytes.subarray(i, i + size));
  scanner.end();
  return pieces;
}

/** Objects of a parsed document shaped like a payload: no arrays, objects nested only under "metadata", one level. */
function payloadShaped(value: unknown, out: unknown[] = []): unknown[] {
  if (Array.isArray(value)) for (const v of value) payloadShaped(v, out);
  else if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    const leaf = entries.every(
      ([k, v]) =>
        typeof v !== 'object' ||
        v === null ||
        (k === 'metadata' &&
          !Array.isArray(v) &&
          Object.values(v).every((x) => typeof x !== 'object' || x === null)),
    );
    if (leaf) out.push(value);
    else for (const [, v] of entries) payloadShaped(v, out);
  }
  return out;
}

describe('PayloadScanner', () => {
  it('hands on every byte, and exactly the payload-shaped objects as candidates, whatever the chunking', () => {
    const doc = `{"events":[{"a":{"metadata":{"encoding":"eA=="},"data":"AA=="},"b":[1,{"k":"}{\\"["}],"metadata":{"x":{"y":1}}}], "s":"{\\\\"}`;
    for (const size of [1, 2, 3, 7, 1000]) {
      const pieces = scan(doc, size);
      expect(pieces.map((p) => p.text).join('')).toBe(doc);
      expect(pieces.filter((p) => p.candidate).map((p) => JSON.parse(p.text))).toEqual(
        payloadShaped(JSON.parse(doc)),
      );
    }
  });

  it('property: reassembly is byte-identical and candidates are the payload-shaped objects', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 5 }), fc.integer({ min: 1, max: 64 }), (text, size) => {
        const pieces = scan(text, size);
        expect(pieces.map((p) => p.text).join('')).toBe(text);
        const candidates = pieces.filter((p) => p.candidate).map((p) => JSON.parse(p.text));
        expect(candidates).toEqual(payloadShaped(JSON.parse(text)));
      }),
      { numRuns: 300 },
    );
  });

  it('lets go of an object larger than the limit, and refuses a document that ends early', () => {
    const big = `{"data":"${'x'.repeat(100)}"}`;
    const pieces = scan(big, 10, 50);
    expect(pieces.every((p) => !p.candidate)).toBe(true);
    expect(pieces.map((p) => p.text).join('')).toBe(big);
    expect(() => scan('{"a":[1,2', 4)).toThrow(/not complete JSON/);
    expect(() => scan('{"a":"x', 4)).toThrow(/not complete JSON/);
    expect(() => scan('{}]', 4)).toThrow(/unexpected "\]"/);
  });
});
