/** Run by hand while the worker runs: `npx tsx examples/worker/client.ts`. */
import { Client, Connection } from '@temporalio/client';
import { createPlugin, namespace } from './plugin.ts';
import { payment } from './workflows.ts';

const { plugin, close } = await createPlugin();
const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS ?? 'localhost:7233' });
const client = new Client({ connection, namespace, plugins: [plugin] });
try {
  const result = await client.workflow.execute(payment, {
    taskQueue: 'payments',
    workflowId: `payment-${Date.now()}`,
    args: [{ customer: 'Ada Lovelace', cardNumber: '4111111111111111', amountCents: 4200 }],
  });
  console.log(result);
} finally {
  await connection.close();
  await close();
}
