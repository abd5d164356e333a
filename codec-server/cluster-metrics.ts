import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { InternalError } from '../src/errors.ts';

/** A worker's request for the whole cluster's metrics, and the primary's answer. */
const REQUEST = 'temporal-keyring:cluster-metrics-request';
const ANSWER = 'temporal-keyring:cluster-metrics-answer';

/**
 * How long a worker waits for the primary's sum before failing the scrape (500): longer than the
 * primary's own wait for each worker (prom-client: 5 s), so that its error is the one reported,
 * and shorter than Prometheus's default scrape timeout (10 s).
 */
export const CLUSTER_METRICS_TIMEOUT_MS = 7_000;

interface Answer {
  type: typeof ANSWER;
  id: number;
  text?: string;
  error?: string;
}

/**
 * `serve --workers`, in the primary: answers any worker's request for the cluster's metrics with
 * prom-client's `AggregatorRegistry`, which asks every worker for its registry over IPC and sums
 * them (counters and histograms add up; each gauge by its own `aggregator`, see metrics.ts). So a
 * scrape of `/metrics`, whichever worker the cluster hands it to, sees the whole host.
 *
 * Pipeline position: Prometheus → a worker's `/metrics` → this → every worker's registry.
 */
export function answerClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker: Worker, message: unknown) => {
    const request = message as { type?: unknown; id?: unknown } | null;
    if (request?.type !== REQUEST || typeof request.id !== 'number') return;
    const id = request.id;
    aggregator.clusterMetrics().then(
      (text) => send(worker, { type: ANSWER, id, text }),
      (error: unknown) => send(worker, { type: ANSWER, id, error: String((error as Error)?.message) }),
    );
  });
}

function send(worker: Worker, answer: Answer): void {
  if (worker.isConnected()) worker.send(answer);
}

/**
 * `serve --workers`, in a worker: what its `/metrics` answers. Its own `registry` is what it gives
 * the primary when asked (prom-client's worker side answers those requests), and a scrape gets the
 * primary's sum of every worker's. A primary that does not answer within `timeoutMs` fails the
 * scrape rather than pass one worker's counts off as the host's.
 */
export function clusterMetricsText(
  registry: Registry,
  timeoutMs = CLUSTER_METRICS_TIMEOUT_MS,
): () => Promise<string> {
  // Constructing one installs prom-client's worker side, which answers the primary's requests
  // with the registries set here.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  let nextId = 0;
  const pending = new Map<number, { resolve(text: string): void; reject(error: Error): void }>();
  process.on('message', (message: unknown) => {
    const answer = message as Answer | null;
    if (answer?.type !== ANSWER) return;
    const waiting = pending.get(answer.id);
    if (!waiting) return;
    pending.delete(answer.id);
    if (answer.text !== undefined) waiting.resolve(answer.text);
    else waiting.reject(new InternalError(`the cluster's metrics could not be gathered: ${answer.error}`));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(
          new InternalError(`the primary process did not sum the cluster's metrics within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      timer.unref();
      pending.set(id, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      process.send?.({ type: REQUEST, id });
    });
}
