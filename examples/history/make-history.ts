/**
 * Writes `history.json`: a workflow history as `temporal workflow show --output json` prints it,
 * whose payloads were encrypted by the codec with the keystore and KEK from the environment
 * (TEMPORAL_KEYRING_KEYSTORE, TEMPORAL_KEYRING_KEK_FILE). Stands in for a real export when no
 * Temporal server is at hand:
 *
 *   npx tsx examples/history/make-history.ts > history.json
 */

import { encodeToPayloads } from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import { loadDataConverter } from '@temporalio/common/lib/internal-non-workflow/data-converter-helpers.js';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import proto from '@temporalio/proto';
// In your project: import { ... } from 'temporal-keyring';
import { EncryptionCodec, openKeyring } from '../../src/index.ts';

const { keyring, close } = await openKeyring({
  keystore: process.env.TEMPORAL_KEYRING_KEYSTORE,
  kek: { type: 'file', path: process.env.TEMPORAL_KEYRING_KEK_FILE! },
});
try {
  const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
  const converter = loadDataConverter({ payloadCodecs: [codec] });
  const history = proto.temporal.api.history.v1.History.fromObject({
    events: [
      {
        eventId: '1',
        eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
        workflowExecutionStartedEventAttributes: {
          workflowType: { name: 'payment' },
          taskQueue: { name: 'payments' },
          input: {
            payloads: await encodeToPayloads(converter, { customer: 'Ada Lovelace', amountCents: 4200 }),
          },
        },
      },
      {
        eventId: '2',
        eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED',
        workflowExecutionCompletedEventAttributes: {
          result: { payloads: await encodeToPayloads(converter, 'charged 4200 cents') },
        },
      },
    ],
  });
  process.stdout.write(`${historyToJSON(history)}\n`);
} finally {
  await close();
}
