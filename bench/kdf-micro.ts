/**
 * Micro-benchmark of the suite 0x0478 key derivation (HKDF-SHA512, two 32-byte outputs) three ways,
 * interleaved in one run so that the ratios share the machine's state:
 *
 * - `hand`: the three HMACs spelled out (RFC 2104) over one-shot `crypto.hash` with reused scratch
 *   blocks, as src/esdk/key-derivation.ts did until it was measured here;
 * - `createHmac`: `deriveKeys` (src/esdk/key-derivation.ts): the same three HMACs (extract, two
 *   one-block expands) with `crypto.createHmac`;
 * - `hkdfSync`: two `crypto.hkdfSync` calls (each repeats the extract).
 *
 *   node --import tsx bench/kdf-micro.ts [rounds]
 *
 * Prints calls per second and the ratios; asserts nothing. The engine would take the hand-written
 * path back only if it were measurably faster (docs/performance.md).
 */
import { hash, hkdfSync, randomBytes } from 'node:crypto';
import { deriveKeys } from '../src/esdk/key-derivation.ts';

const COMMIT = Buffer.from('COMMITKEY');
const DERIVE = Buffer.concat([Buffer.from([0x04, 0x78]), Buffer.from('DERIVEKEY')]);

const BLOCK = 128;
const DIGEST = 64;
const innerScratch = Buffer.alloc(BLOCK + DIGEST, 0x36).fill(0, BLOCK);
const outerScratch = Buffer.alloc(BLOCK + DIGEST, 0x5c).fill(0, BLOCK);

/** HMAC-SHA512 for keys of at most one block: H((K ^ opad) || H((K ^ ipad) || m)), scratch reused. */
function handHmac(key: Uint8Array, message: Uint8Array): Buffer {
  const inner = message.length <= DIGEST ? innerScratch : Buffer.alloc(BLOCK + message.length, 0x36);
  for (let i = 0; i < key.length; i++) {
    inner[i] = key[i]! ^ 0x36;
    outerScratch[i] = key[i]! ^ 0x5c;
  }
  inner.set(message, BLOCK);
  outerScratch.set(hash('sha512', inner.subarray(0, BLOCK + message.length), 'buffer'), BLOCK);
  inner.fill(0x36, 0, key.length);
  inner.fill(0, BLOCK);
  const mac = hash('sha512', outerScratch, 'buffer');
  outerScratch.fill(0x5c, 0, key.length);
  outerScratch.fill(0, BLOCK);
  return mac;
}

const COMMIT_1 = Buffer.concat([COMMIT, Buffer.from([1])]);
const DERIVE_1 = Buffer.concat([DERIVE, Buffer.from([1])]);

const impls: Record<string, (k: Buffer, salt: Buffer) => void> = {
  hand: (k, salt) => {
    // The same copy-out and zeroing as deriveKeys, so that only the HMAC differs.
    const prk = handHmac(salt, k);
    const commit = handHmac(prk, COMMIT_1);
    Buffer.from(commit.subarray(0, 32));
    commit.fill(0);
    const key = handHmac(prk, DERIVE_1);
    Buffer.from(key.subarray(0, 32)).fill(0);
    key.fill(0);
    prk.fill(0);
  },
  createHmac: (k, salt) => {
    deriveKeys(k, salt).key.fill(0);
  },
  hkdfSync: (k, salt) => {
    hkdfSync('sha512', k, salt, COMMIT, 32);
    new Uint8Array(hkdfSync('sha512', k, salt, DERIVE, 32)).fill(0);
  },
};

const rounds = Number(process.argv[2] ?? 5);
const perRound = 20_000;
const keys = Array.from({ length: 64 }, () => randomBytes(32));
const salts = Array.from({ length: 64 }, () => randomBytes(32));
const best: Record<string, number> = {};
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of Object.entries(impls)) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) fn(keys[i & 63]!, salts[i & 63]!);
    const perSecond = perRound / (Number(process.hrtime.bigint() - start) / 1e9);
    best[name] = Math.max(best[name] ?? 0, perSecond);
  }
}
for (const [name, perSecond] of Object.entries(best))
  console.log(`${name.padEnd(12)} ${Math.round(perSecond)} derivations/s`);
console.log(
  `hand÷createHmac ${(best.hand! / best.createHmac!).toFixed(2)}  hand÷hkdfSync ${(best.hand! / best.hkdfSync!).toFixed(2)}`,
);
