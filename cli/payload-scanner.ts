import { InvalidOptionError } from '../src/errors.ts';

/**
 * A streaming scanner over JSON bytes that finds the objects shaped like a protobuf-JSON Payload
 * (`{"metadata": {...strings}, "data": "..."}`, keys in any order) and hands every other byte on
 * as it was read. Memory stays flat whatever the document's size: only the object being looked at
 * is held, and an object stops being held as soon as it cannot be a payload (it holds an array, a
 * nested object under another key than `metadata`, an object nested deeper, or more than
 * `maxPayloadBytes`).
 *
 * Used by `rewrap`: history files may be far larger than memory, and everything that is not an
 * encrypted payload must come out byte for byte. The scanner checks structure (strings, escapes,
 * nesting) and leaves validation of each candidate to `JSON.parse`; a document that ends inside a
 * string or an open container is an error.
 */
export class PayloadScanner {
  readonly #onRaw: (bytes: Buffer) => void;
  readonly #onCandidate: (bytes: Buffer) => void;
  readonly #maxPayloadBytes: number;
  /** Open containers outside any candidate: only their count matters. */
  #depth = 0;
  #inString = false;
  #escape = false;
  /** Candidate object: its bytes so far (earlier chunks), its depth inside (1 or 2), its current key. */
  #candidate:
    | {
        parts: Buffer[];
        size: number;
        depth: number;
        key: string;
        keyParts: number[] | undefined;
        expectKey: boolean;
      }
    | undefined;
  /** Position in the current chunk where the not-yet-emitted bytes start. */
  #mark = 0;
  #offset = 0;

  constructor(options: {
    onRaw: (bytes: Buffer) => void;
    onCandidate: (bytes: Buffer) => void;
    maxPayloadBytes?: number;
  }) {
    this.#onRaw = options.onRaw;
    this.#onCandidate = options.onCandidate;
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 64 * 1024 * 1024;
  }

  /** Bytes read so far. */
  get offset(): number {
    return this.#offset;
  }

  write(chunk: Buffer): void {
    this.#mark = 0;
    const n = chunk.length;
    // Next backslash at or after i (n: none), found once per chunk and again only when passed:
    // most bytes of a history are base64 inside strings, skipped with indexOf instead of one by one.
    let backslash = -1;
    for (let i = 0; i < n; i++) {
      const cand = this.#candidate;
      if (this.#inString && !this.#escape && !cand?.keyParts) {
        if (backslash < i) {
          backslash = chunk.indexOf(0x5c, i);
          if (backslash < 0) backslash = n;
        }
        let quote = chunk.indexOf(0x22, i);
        if (quote < 0) quote = n;
        const next = quote < backslash ? quote : backslash;
        if (next >= n) break; // the rest of the chunk is inside the string
        i = next;
      }
      const c = chunk[i]!;
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === 0x5c) this.#escape = true;
        else if (c === 0x22) {
          this.#inString = false;
          if (cand?.keyParts) {
            cand.key = Buffer.from(cand.keyParts).toString('utf8');
            cand.keyParts = undefined;
          }
          continue;
        }
        // Keys longer than 16 bytes are not the one we look for: a 0 byte makes sure they never match.
        if (cand?.keyParts && cand.keyParts.length <= 16)
          cand.keyParts.push(cand.keyParts.length < 16 ? c : 0);
        continue;
      }
      switch (c) {
        case 0x22: // "
          this.#inString = true;
          if (cand && cand.depth === 1 && cand.expectKey) {
            cand.keyParts = [];
            cand.expectKey = false;
          }
          break;
        case 0x7b: // {
          if (cand) {
            if (cand.depth === 1 && cand.key === 'metadata') cand.depth = 2;
            else {
              this.#abandon(chunk, i);
              this.#start(chunk, i);
            }
          } else this.#start(chunk, i);
          break;
        case 0x5b: // [
          if (cand) this.#abandon(chunk, i);
          this.#depth++;
          break;
        case 0x7d: // }
          if (cand) {
            if (cand.depth === 2) cand.depth = 1;
            else this.#finish(chunk, i);
          } else this.#close(c);
          break;
        case 0x5d: // ]
          this.#close(c);
          break;
        case 0x2c: // ,
          if (cand && cand.depth === 1) cand.expectKey = true;
          break;
      }
    }
    // Hand on or hold what is left of the chunk.
    const rest = chunk.subarray(this.#mark);
    if (rest.length > 0) {
      const cand = this.#candidate;
      if (cand) {
        cand.parts.push(Buffer.from(rest));
        cand.size += rest.length;
        // Checked once per chunk: held bytes stay within the limit plus one chunk.
        this.#mark = n;
        if (cand.size > this.#maxPayloadBytes) this.#abandon(chunk, n);
      } else this.#onRaw(rest);
    }
    this.#offset += n;
  }

  /** Checks that the document ended where a JSON value can end. */
  end(): void {
    if (this.#inString || this.#candidate || this.#depth !== 0) {
      throw new InvalidOptionError(
        'input',
        `is not complete JSON (it ends inside a string or an open object or array)`,
      );
    }
  }

  #start(chunk: Buffer, i: number): void {
    if (i > this.#mark) this.#onRaw(chunk.subarray(this.#mark, i));
    this.#mark = i;
    this.#candidate = { parts: [], size: 0, depth: 1, key: '', keyParts: undefined, expectKey: true };
  }

  /** The candidate cannot be a payload: its bytes up to `i` go out as they are; it becomes an open container. */
  #abandon(chunk: Buffer, i: number): void {
    const cand = this.#candidate!;
    for (const p of cand.parts) this.#onRaw(p);
    if (i > this.#mark) this.#onRaw(chunk.subarray(this.#mark, i));
    this.#mark = i;
    // The candidate object (and its metadata object, if open) are now ordinary open containers.
    this.#depth += cand.depth;
    this.#candidate = undefined;
  }

  #finish(chunk: Buffer, i: number): void {
    const cand = this.#candidate!;
    const tail = chunk.subarray(this.#mark, i + 1);
    this.#onCandidate(cand.parts.length === 0 ? Buffer.from(tail) : Buffer.concat([...cand.parts, tail]));
    this.#mark = i + 1;
    this.#candidate = undefined;
  }

  #close(c: number): void {
    if (this.#depth === 0) {
      throw new InvalidOptionError(
        'input',
        `is not valid JSON: unexpected "${String.fromCharCode(c)}" at byte ${this.#offset}`,
      );
    }
    this.#depth--;
  }
}
