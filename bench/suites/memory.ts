import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { benchKeyring, payloads } from '../lib/fixtures.ts';
import { formatTable, type Suite } from '../lib/suite.ts';

/**
 * Memory under a sustained run: the default codec encodes and decodes batches (20 x 1 KiB, then
 * 1 x 256 KiB) back to back; RSS and heap are sampled every second. A flat RSS means no per-message
 * state is retained (no caches growing with traffic, no stream leftovers).
 */
export const memorySuite: Suite = {
  name: 'memory',
  description: 'RSS and heap over a sustained encode/decode run of the default codec',
  async run({ quick, log }) {
    // BENCH_MEMORY_SECONDS lengthens the run (e.g. 120) to check that RSS plateaus.
    const seconds = Number(process.env.BENCH_MEMORY_SECONDS) || (quick ? 3 : 20);
    const keyring = await benchKeyring();
    try {
      const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
      const small = payloads(1024, 20);
      const large = payloads(256 * 1024, 1);
      const step = async () => {
        await codec.decode(await codec.encode(small));
        await codec.decode(await codec.encode(large));
      };
      // Warm up for a second so the first sample is after JIT and allocator growth.
      const warmEnd = performance.now() + 1000;
      while (performance.now() < warmEnd) await step();
      const samples: { second: number; rssMiB: number; heapUsedMiB: number }[] = [];
      const sample = (second: number) => {
        const m = process.memoryUsage();
        samples.push({ second, rssMiB: m.rss / 2 ** 20, heapUsedMiB: m.heapUsed / 2 ** 20 });
      };
      sample(0);
      let iterations = 0;
      const start = performance.now();
      for (let s = 1; s <= seconds; s++) {
        const until = start + s * 1000;
        while (performance.now() < until) {
          await step();
          iterations++;
        }
        sample(s);
        if (s % 5 === 0) log(`${s}/${seconds} s`);
      }
      const first = samples[0]!;
      const last = samples[samples.length - 1]!;
      const maxRss = Math.max(...samples.map((x) => x.rssMiB));
      const table = formatTable([
        [
          'seconds',
          'iterations',
          'RSS start MiB',
          'RSS end MiB',
          'RSS max MiB',
          'heap start MiB',
          'heap end MiB',
        ],
        [
          seconds,
          iterations,
          first.rssMiB.toFixed(1),
          last.rssMiB.toFixed(1),
          maxRss.toFixed(1),
          first.heapUsedMiB.toFixed(1),
          last.heapUsedMiB.toFixed(1),
        ],
      ]);
      return { table, data: { seconds, iterations, samples } };
    } finally {
      await keyring.close();
    }
  },
};
