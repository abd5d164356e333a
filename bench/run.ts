/**
 * `npm run bench`: runs every registered suite, prints a table per suite, and writes all results
 * with the machine description to bench/results/latest.json (gitignored). Not a test: nothing is
 * asserted. Flags: `--quick` (smoke run), `--suite <name>` (repeatable).
 *
 * Adding a suite: write bench/suites/<name>.ts exporting a `Suite` (see bench/lib/suite.ts) and
 * add it to `suites` below.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import type { Suite } from './lib/suite.ts';
import { codecSuite } from './suites/codec.ts';
import { memorySuite } from './suites/memory.ts';
import { serverSuite } from './suites/server.ts';

// Memory first: it reads RSS, which the codec suite's large inputs would inflate.
const suites: Suite[] = [memorySuite, codecSuite, serverSuite];

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, suite: { type: 'string', multiple: true } },
});
const selected = values.suite?.length ? suites.filter((s) => values.suite!.includes(s.name)) : suites;
if (values.suite?.length && selected.length !== values.suite.length) {
  console.error(`unknown suite; available: ${suites.map((s) => s.name).join(', ')}`);
  process.exit(2);
}

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) return line.split(':')[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

const machine = {
  date: new Date().toISOString(),
  node: process.version,
  nproc: availableParallelism(),
  cpu: cpuModel(),
  memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  quick: values.quick,
};
console.log(
  `machine: ${machine.nproc} CPU(s), ${machine.cpu}, Node ${machine.node}, ${machine.memoryGiB} GiB`,
);

const results: Record<string, unknown> = {};
for (const suite of selected) {
  console.log(`\n== ${suite.name}: ${suite.description}`);
  const started = performance.now();
  const out = await suite.run({
    quick: values.quick,
    log: (m) => process.stderr.write(`  [${suite.name}] ${m}\n`),
  });
  console.log(out.table);
  console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
  results[suite.name] = out.data;
}

const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL('latest.json', dir), `${JSON.stringify({ machine, results }, null, 2)}\n`);
console.log('\nwrote bench/results/latest.json');
