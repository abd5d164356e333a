/**
 * Interleaved measurement for a noisy shared machine: every case runs once per round, in a
 * rotating order, for a fixed time slice; a case's result is the median over rounds. Ratios are
 * taken between cases of the same run, so load that comes and goes hits all of them alike.
 *
 * Throughput is counted per CPU second of this process (`process.cpuUsage`, user + system, which
 * includes GC and thread-pool work) as well as per wall second: when other processes oversubscribe
 * the cores, wall-clock rates mostly measure the scheduler, CPU-time rates still measure the code.
 */

export interface BenchCase {
  /** Unique within a suite, e.g. `encode/fast/1KiB/x1`. */
  name: string;
  /** Items (payloads) one call processes: throughput is reported per item. */
  items: number;
  /** One operation. */
  run: () => Promise<unknown>;
}

export interface CaseResult {
  name: string;
  items: number;
  /** Median over rounds of items per second of this process's CPU time. */
  itemsPerCpuSecond: number;
  /** Median over rounds of items per wall-clock second. */
  itemsPerSecond: number;
  /** Per-operation latency, milliseconds, over all samples. */
  p50Ms: number;
  p99Ms: number;
  samples: number;
}

export interface MeasureOptions {
  rounds: number;
  /** Time slice per case per round. At least one operation always runs. */
  sliceMs: number;
  /** Operations before measuring anything (JIT, caches). */
  warmup: number;
  onProgress?: (message: string) => void;
}

export async function measureInterleaved(cases: BenchCase[], options: MeasureOptions): Promise<CaseResult[]> {
  for (const c of cases) for (let i = 0; i < options.warmup; i++) await c.run();
  const rates = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const cpuRates = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const latencies = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let round = 0; round < options.rounds; round++) {
    options.onProgress?.(`round ${round + 1}/${options.rounds}`);
    // Rotate the order each round so no case always runs right after a heavy one.
    const order = cases.map((_, i) => cases[(i + round) % cases.length]!);
    for (const c of order) {
      const lat = latencies.get(c.name)!;
      let ops = 0;
      const cpuStart = process.cpuUsage();
      const start = performance.now();
      let now = start;
      do {
        const t0 = performance.now();
        await c.run();
        now = performance.now();
        if (lat.length < 20_000) lat.push(now - t0);
        ops++;
      } while (now - start < options.sliceMs);
      const cpu = process.cpuUsage(cpuStart);
      rates.get(c.name)!.push((ops * c.items) / ((now - start) / 1000));
      cpuRates.get(c.name)!.push((ops * c.items) / ((cpu.user + cpu.system) / 1e6));
    }
  }
  return cases.map((c) => {
    const lat = latencies.get(c.name)!.sort((a, b) => a - b);
    return {
      name: c.name,
      items: c.items,
      itemsPerCpuSecond: median(cpuRates.get(c.name)!),
      itemsPerSecond: median(rates.get(c.name)!),
      p50Ms: quantile(lat, 0.5),
      p99Ms: quantile(lat, 0.99),
      samples: lat.length,
    };
  });
}

export function median(values: number[]): number {
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}
