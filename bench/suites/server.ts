import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { median } from '../lib/measure.ts';
import { formatTable, type Suite } from '../lib/suite.ts';

/**
 * The codec server's `/decode` over HTTP on loopback under autocannon, with 1 and with 20 payloads
 * of 1 KiB per request, against a baseline server measured in the same run (node:http + CORS + the
 * codec server's body reader + raw node:crypto AES-256-GCM, no auth, no logs, no metrics). The
 * codec server runs as deployed: static token auth, CORS, metrics, access and audit logs. A third
 * server, `codec-bare`, is the baseline with the codec in place of raw AES-GCM: codec-bare /
 * baseline is what the ESDK message format costs, codec / codec-bare what auth, logs and metrics
 * cost. All servers are child processes (server-child.ts) so that their CPU time per request is
 * their own (`process.cpuUsage`).
 *
 * `sample` does what the official samples-typescript `encryption` codec server does (see
 * server-child.ts): codec / sample is the issue-17 target (>= 1.2 with 1 and with 20 payloads).
 * `codec-nolog` is `codec` with its logger at `silent`: codec / codec-nolog is what the one JSON
 * line per request (formatting and the asynchronous write) costs.
 *
 * `serve` and `serve-workers` are the CLI as a user runs it (`temporal-keyring serve` on a file
 * keystore, token auth, metrics, the rotator, logs on stdout) with one process and with
 * `--workers 2`; their CPU is the whole process tree's. The sample's WebCrypto calls run on the
 * thread pool, so it spends more than one core on its own; serve-workers / sample compares the two
 * when each uses the host's cores in its own way, serve / sample with one process.
 *
 * Cases run interleaved, in a rotating order, for several rounds; each figure is the median over
 * rounds. Load generator and servers share the machine, alike for both servers.
 */

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));
const ORIGIN = 'http://localhost:8233';
const BATCHES = [1, 20] as const;
const SERVERS = [
  'codec',
  'sample',
  'serve',
  'serve-workers',
  'codec-nolog',
  'codec-bare',
  'baseline',
] as const;
type ServerName = (typeof SERVERS)[number];

// autocannon ships no types: the little of it used here.
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (options: {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  connections: number;
  duration: number;
}) => Promise<AutocannonResult>;

interface Running {
  name: ServerName;
  child: ChildProcess;
  url: string;
  bodies: Record<number, string>;
  cpu(): Promise<NodeJS.CpuUsage>;
  memory(): Promise<NodeJS.MemoryUsage>;
}

async function start(name: ServerName, tokenSha256: string): Promise<Running> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, name], {
    env: { ...process.env, TOKEN_SHA256: tokenSha256 },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<{ url: string; bodies: Record<number, string> }>((resolve, reject) => {
    child.once('message', (m) =>
      resolve((m as { ready: { url: string; bodies: Record<number, string> } }).ready),
    );
    child.once('exit', (code) => reject(new Error(`${name} server exited (${code})`)));
  });
  const cpu = () =>
    new Promise<NodeJS.CpuUsage>((resolve) => {
      child.once('message', (m) => resolve(m as NodeJS.CpuUsage));
      child.send('cpu');
    });
  const memory = () =>
    new Promise<NodeJS.MemoryUsage>((resolve) => {
      child.once('message', (m) => resolve(m as NodeJS.MemoryUsage));
      child.send('memory');
    });
  return { name, child, ...ready, cpu, memory };
}

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerRequest: number;
  failures: number;
}

export const serverSuite: Suite = {
  name: 'server',
  description:
    'codec server POST /decode (1 and 20 x 1 KiB) vs the official sample (equivalent), bare node:http + raw AES-GCM (and + the codec), over loopback',
  async run({ quick, log }) {
    const token = randomBytes(24).toString('base64url');
    const sha = createHash('sha256').update(token).digest('hex');
    const servers = await Promise.all(SERVERS.map((s) => start(s, sha)));
    const rounds = quick ? 1 : 3;
    // 2 batches x 3 rounds x 10 s, plus warm-up: each server is under load for over 60 s.
    const seconds = quick ? 2 : 10;
    const connections = 10;
    try {
      const cases = BATCHES.flatMap((batch) => servers.map((server) => ({ server, batch })));
      const request = (server: Running, batch: number) => ({
        url: `${server.url}/decode`,
        method: 'POST' as const,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${token}`,
          'x-namespace': 'default',
          origin: ORIGIN,
        },
        body: server.bodies[batch]!,
        connections,
      });
      // Each body decodes, to what it should: a benchmark of error answers would be worthless.
      for (const { server, batch } of cases) {
        const r = request(server, batch);
        const res = await fetch(r.url, { method: 'POST', headers: r.headers, body: r.body });
        const json = (await res.json()) as { payloads?: unknown[] };
        if (res.status !== 200 || json.payloads?.length !== batch) {
          throw new Error(
            `${server.name} x${batch}: status ${res.status}, ${JSON.stringify(json).slice(0, 200)}`,
          );
        }
      }
      log('warm-up');
      for (const { server, batch } of cases)
        await autocannon({ ...request(server, batch), duration: quick ? 1 : 3 });

      const samples = new Map<string, Sample[]>(cases.map((c) => [`${c.server.name}/x${c.batch}`, []]));
      // Memory of each server after the warm-up and after every measured case: flat means no leak.
      const rss = new Map<ServerName, number[]>(servers.map((s) => [s.name, []]));
      const heap = new Map<ServerName, number[]>(servers.map((s) => [s.name, []]));
      const recordMemory = async (server: Running) => {
        const m = await server.memory();
        rss.get(server.name)!.push(m.rss);
        heap.get(server.name)!.push(m.heapUsed ?? Number.NaN); // null from the serve trees
      };
      for (const server of servers) await recordMemory(server);
      for (let round = 0; round < rounds; round++) {
        log(`round ${round + 1}/${rounds}`);
        const order = cases.map((_, i) => cases[(i + round) % cases.length]!);
        for (const { server, batch } of order) {
          const before = await server.cpu();
          const result = await autocannon({ ...request(server, batch), duration: seconds });
          const after = await server.cpu();
          await recordMemory(server);
          const cpuUs = after.user - before.user + (after.system - before.system);
          samples.get(`${server.name}/x${batch}`)!.push({
            rps: result.requests.average,
            p50: result.latency.p50,
            p99: result.latency.p99,
            cpuUsPerRequest: cpuUs / Math.max(1, result.requests.total),
            failures: result.errors + result.timeouts + result.non2xx,
          });
        }
      }

      const data = cases.map(({ server, batch }) => {
        const s = samples.get(`${server.name}/x${batch}`)!;
        const rps = median(s.map((x) => x.rps));
        return {
          server: server.name,
          batch,
          requestsPerSecond: rps,
          payloadsPerSecond: rps * batch,
          p50Ms: median(s.map((x) => x.p50)),
          p99Ms: median(s.map((x) => x.p99)),
          cpuUsPerRequest: median(s.map((x) => x.cpuUsPerRequest)),
          failures: s.reduce((sum, x) => sum + x.failures, 0),
        };
      });
      const find = (name: ServerName, batch: number) =>
        data.find((d) => d.server === name && d.batch === batch)!;
      const ratio = (a: ServerName, b: ServerName, batch: number) => ({
        payloadsPerSecond: find(a, batch).payloadsPerSecond / find(b, batch).payloadsPerSecond,
        cpuPerRequest: find(a, batch).cpuUsPerRequest / find(b, batch).cpuUsPerRequest,
      });
      const ratios = BATCHES.map((batch) => ({
        batch,
        sample: ratio('codec', 'sample', batch),
        serve: ratio('serve', 'sample', batch),
        serveWorkers: ratio('serve-workers', 'sample', batch),
        ...ratio('codec', 'baseline', batch),
        format: ratio('codec-bare', 'baseline', batch),
        features: ratio('codec', 'codec-bare', batch),
        logLine: ratio('codec', 'codec-nolog', batch),
      }));
      const rows: (string | number)[][] = [
        ['case', 'req/s', 'payloads/s', 'p50 ms', 'p99 ms', 'CPU us/req', 'failures'],
        ...data.map((d) => [
          `${d.server}/1KiB/x${d.batch}`,
          Math.round(d.requestsPerSecond),
          Math.round(d.payloadsPerSecond),
          d.p50Ms,
          d.p99Ms,
          Math.round(d.cpuUsPerRequest),
          d.failures,
        ]),
      ];
      const ratioRows: (string | number)[][] = [
        [
          'payloads/s (CPU per request)',
          'codec / sample',
          'serve / sample',
          'serve-workers / sample',
          'codec / baseline',
          'codec-bare / baseline (format)',
          'codec / codec-bare (auth, logs, metrics)',
          'codec / codec-nolog (the log line)',
        ],
        ...ratios.map((r) => [
          `1KiB/x${r.batch}`,
          `${r.sample.payloadsPerSecond.toFixed(2)} (${r.sample.cpuPerRequest.toFixed(2)})`,
          `${r.serve.payloadsPerSecond.toFixed(2)} (${r.serve.cpuPerRequest.toFixed(2)})`,
          `${r.serveWorkers.payloadsPerSecond.toFixed(2)} (${r.serveWorkers.cpuPerRequest.toFixed(2)})`,
          `${r.payloadsPerSecond.toFixed(2)} (${r.cpuPerRequest.toFixed(2)})`,
          `${r.format.payloadsPerSecond.toFixed(2)} (${r.format.cpuPerRequest.toFixed(2)})`,
          `${r.features.payloadsPerSecond.toFixed(2)} (${r.features.cpuPerRequest.toFixed(2)})`,
          `${r.logLine.payloadsPerSecond.toFixed(2)} (${r.logLine.cpuPerRequest.toFixed(2)})`,
        ]),
      ];
      // Heap is per V8 isolate: not given for the serve process trees.
      const mib = (bytes: number) => (Number.isNaN(bytes) ? 'n/a' : (bytes / 2 ** 20).toFixed(1));
      const memoryRows: (string | number)[][] = [
        [
          'server',
          'RSS MiB after warm-up',
          'RSS MiB at end',
          'max',
          'heap MiB after warm-up',
          'heap MiB at end',
        ],
        ...servers.map((s) => {
          const r = rss.get(s.name)!;
          const h = heap.get(s.name)!;
          return [s.name, mib(r[0]!), mib(r.at(-1)!), mib(Math.max(...r)), mib(h[0]!), mib(h.at(-1)!)];
        }),
      ];
      const underLoad = BATCHES.length * (rounds * seconds + (quick ? 1 : 3));
      const table = `${formatTable(rows)}\n\n${formatTable(ratioRows)}\n\n${formatTable(memoryRows)}\n(${rounds} rounds x ${seconds} s per case, ${connections} connections; median over rounds; each server under load for ${underLoad} s)`;
      const memory = Object.fromEntries(
        servers.map((s) => [s.name, { rss: rss.get(s.name), heapUsed: heap.get(s.name) }]),
      );
      return { table, data: { rounds, seconds, connections, cases: data, ratios, memory } };
    } finally {
      for (const s of servers) s.child.kill('SIGTERM');
    }
  },
};
