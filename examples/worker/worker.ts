/** Run by hand next to a Temporal server: `npx tsx examples/worker/worker.ts`. */
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from './activities.ts';
import { createPlugin, namespace } from './plugin.ts';

const { plugin, close } = await createPlugin();
const connection = await NativeConnection.connect({
  address: process.env.TEMPORAL_ADDRESS ?? 'localhost:7233',
});
const worker = await Worker.create({
  connection,
  namespace,
  taskQueue: 'payments',
  workflowsPath: new URL('./workflows.ts', import.meta.url).pathname,
  activities,
  plugins: [plugin],
});
try {
  await worker.run();
} finally {
  await connection.close();
  await close();
}
