/**
 * Runs without a Temporal server: sends a value through the same data-converter functions a
 * Temporal client and worker call, with the codec in `payloadCodecs`, and prints what Temporal
 * would store in its history and what the workflow would receive.
 *
 *   npx tsx examples/codec-roundtrip.ts
 *
 * Uses a throwaway keystore in a temporary directory and a fresh KEK.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeFromPayloadsAtIndex,
  encodeToPayloads,
} from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import { loadDataConverter } from '@temporalio/common/lib/internal-non-workflow/data-converter-helpers.js';
import { payloadToJSON } from '@temporalio/common/lib/proto-utils.js';
// In your project: import { ... } from 'temporal-keyring';
import { EncryptionCodec, generateKekBase64, openKeyring } from '../src/index.ts';

const dir = await mkdtemp(join(tmpdir(), 'temporal-keyring-example-'));
const { keyring, close } = await openKeyring({
  keystore: dir,
  kek: { type: 'base64', value: generateKekBase64() },
});
try {
  await keyring.createNamespace('default');
  const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
  const converter = loadDataConverter({ payloadCodecs: [codec] });

  const input = { customer: 'Ada Lovelace', cardNumber: '4111111111111111', amountCents: 4200 };
  const stored = (await encodeToPayloads(converter, input))!;
  console.log('Temporal stores:', JSON.stringify(payloadToJSON(stored[0]!), null, 2));

  const received = await decodeFromPayloadsAtIndex(converter, 0, stored);
  console.log('The workflow receives:', JSON.stringify(received));

  await keyring.rotate('default');
  const afterRotation = await decodeFromPayloadsAtIndex(converter, 0, stored);
  console.log('After a rotation it still decodes:', JSON.stringify(afterRotation) === JSON.stringify(input));
} finally {
  await close();
  await rm(dir, { recursive: true, force: true });
}
