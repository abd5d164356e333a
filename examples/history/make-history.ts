/**
 * Writes `history.json`: a workflow history as `temporal workflow show --output json` prints it,
 * whose payloads were encrypted by the codec with the keystore and KEK from the environment
 * (TEMPORAL_KEYRING_KEYSTORE, TEMPORAL_KEYRING_KEK_FILE). Stands in for a real export when no
 * Temporal server is at hand:
 *
 *   npx tsx examples/history/make-history.ts > history.json
 */

import { defaultPayloadConverter } from '@temporalio/common';
import proto from '@temporalio/proto';
// In your project: import { ... } from 'temporal-keyring';
import { EncryptionCodec, openKeyring } from '../../src/index.ts';

// The keystore and KEK the CLI and `npm start` use: TEMPORAL_KEYRING_KEYSTORE, TEMPORAL_KEYRING_KEK_FILE.
const { keyring, close } = await openKeyring();
try {
  const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
  const encodeToPayloads = (value: unknown) => codec.encode([defaultPayloadConverter.toPayload(value)]);
  const history = proto.temporal.api.history.v1.History.fromObject({
    events: [
      {
        eventId: '1',
        eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
        workflowExecutionStartedEventAttributes: {
          workflowType: { name: 'payment' },
          taskQueue: { name: 'payments' },
          input: {
            payloads: await encodeToPayloads({ customer: 'Ada Lovelace', amountCents: 4200 }),
          },
        },
      },
      {
        eventId: '2',
        eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED',
        workflowExecutionCompletedEventAttributes: {
          result: { payloads: await encodeToPayloads('charged 4200 cents') },
        },
      },
    ],
  });
  // Protobuf JSON, as `temporal workflow show --output json` prints it (bytes in base64).
  const json = proto.temporal.api.history.v1.History.toObject(history, {
    enums: String,
    longs: String,
    bytes: String,
  });
  process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
} finally {
  await close();
}
