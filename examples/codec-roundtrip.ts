/**
 * Runs without a Temporal server: sends a value through the same steps a Temporal client and
 * worker take (the SDK's payload converter, then the codec KeyringPlugin installs), and prints what
 * Temporal would store in its history and what the workflow would receive.
 *
 *   npx tsx examples/codec-roundtrip.ts
 *
 * Uses a throwaway keystore in a temporary directory and a fresh KEK.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
// In your project: import { ... } from 'temporal-keyring';
import { generateKekBase64, KeyringPlugin, openKeyring } from '../src/index.ts';

/** A payload as Temporal's JSON shows it: metadata values and data in base64. */
function asStored(payload: Payload): unknown {
  const b64 = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? []).toString('base64');
  const metadata = Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, b64(v)]));
  return { metadata, data: `${b64(payload.data).slice(0, 88)}...` };
}

const dir = await mkdtemp(join(tmpdir(), 'temporal-keyring-example-'));
const { keyring, close } = await openKeyring({
  keystore: dir,
  kek: { type: 'base64', value: generateKekBase64() },
});
try {
  await keyring.createNamespace('default');
  // What `new Client({ ..., plugins: [plugin] })` and `Worker.create({ ..., plugins: [plugin] })` get.
  const plugin = new KeyringPlugin({ keys: keyring });
  const [codec] = plugin.configureClient({ namespace: 'default' }).dataConverter.payloadCodecs!;
  const context = { type: 'workflow', namespace: 'default', workflowId: 'payment-1' } as const;

  const input = { customer: 'Ada Lovelace', cardNumber: '4111111111111111', amountCents: 4200 };
  const stored = await codec!.encode([defaultPayloadConverter.toPayload(input)], context);
  console.log('Temporal stores:', JSON.stringify(asStored(stored[0]!), null, 2));

  const [received] = await codec!.decode(stored, context);
  console.log('The workflow receives:', JSON.stringify(defaultPayloadConverter.fromPayload(received!)));

  await keyring.rotate('default');
  const [afterRotation] = await codec!.decode(stored, context);
  console.log(
    'After a rotation it still decodes:',
    JSON.stringify(defaultPayloadConverter.fromPayload(afterRotation!)) === JSON.stringify(input),
  );
} finally {
  await close();
  await rm(dir, { recursive: true, force: true });
}
