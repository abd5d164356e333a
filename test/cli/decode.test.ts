import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { cli, tempDir } from './run-cli.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;

/** A payload in protobuf-JSON, as `temporal workflow show --output json` prints it. */
function toJson(payload: Payload): unknown {
  return ProtoPayload.toObject(ProtoPayload.fromObject(payload), { bytes: String });
}

function fromJson(json: unknown): Payload {
  const p = ProtoPayload.fromObject(json as object);
  return { metadata: { ...p.metadata }, data: p.data };
}

describe('temporal-keyring decode', { timeout: 180_000 }, () => {
  it('decrypts every encrypted payload of a history JSON and leaves the rest as it was', async () => {
    const dir = await tempDir();
    const kek = generateKekBase64();
    // Encrypt with the real data converter path and a key rotation in between (two versions).
    const { keyring, close } = await openKeyring({ keystore: dir, kek: { type: 'base64', value: kek } });
    await keyring.createNamespace('orders');
    const codec = new EncryptionCodec({ namespace: 'orders', keys: keyring });
    const values = [{ orderId: 'A-1', amount: 42 }, 'second argument'];
    const input = await codec.encode(values.map((v) => defaultPayloadConverter.toPayload(v)));
    await keyring.rotate('orders');
    const [result] = await codec.encode([defaultPayloadConverter.toPayload({ status: 'shipped' })]);
    await close();
    const plain = defaultPayloadConverter.toPayload('not encrypted');

    const history = {
      events: [
        {
          eventId: '1',
          eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
          workflowExecutionStartedEventAttributes: {
            workflowType: { name: 'ship' },
            input: { payloads: input.map(toJson) },
            memo: { fields: { note: toJson(plain) } },
          },
        },
        {
          eventId: '5',
          eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED',
          workflowExecutionCompletedEventAttributes: { result: { payloads: [toJson(result!)] } },
        },
      ],
    };
    const file = join(await tempDir(), 'history.json');
    await writeFile(file, JSON.stringify(history));
    const env = { TEMPORAL_KEYRING_KEK: kek, TEMPORAL_KEYRING_KEYSTORE: dir };

    const fromFile = await cli(['decode', '--namespace', 'orders', '--input', file], { env });
    expect(fromFile.stderr).toBe('');
    expect(fromFile.code).toBe(0);
    const decoded = JSON.parse(fromFile.stdout);
    const started = decoded.events[0].workflowExecutionStartedEventAttributes;
    expect(
      started.input.payloads.map((p: unknown) => defaultPayloadConverter.fromPayload(fromJson(p))),
    ).toEqual(values);
    expect(started.workflowType).toEqual({ name: 'ship' });
    expect(started.memo).toEqual(history.events[0]!.workflowExecutionStartedEventAttributes!.memo);
    const completed = decoded.events[1].workflowExecutionCompletedEventAttributes;
    expect(defaultPayloadConverter.fromPayload(fromJson(completed.result.payloads[0]))).toEqual({
      status: 'shipped',
    });

    // Same from stdin; another namespace's keys refuse the payloads (opaquely, exit code 4).
    const fromStdin = await cli(['decode', '-n', 'orders'], { env, input: JSON.stringify(history) });
    expect(JSON.parse(fromStdin.stdout)).toEqual(decoded);
    const readable = await cli(['decode', '-n', 'orders', '--json-shorthand', '-i', file], { env });
    expect(
      JSON.parse(readable.stdout).events[0].workflowExecutionStartedEventAttributes.input.payloads,
    ).toEqual(values);
    const wrongNamespace = await cli(['decode', '-n', 'default'], { env, input: JSON.stringify(history) });
    expect(wrongNamespace.code).toBe(4);
    expect(wrongNamespace.stderr).toMatch(/^temporal-keyring: .*\[ERR_NAMESPACE_MISMATCH\]\n$/);
  });

  it('passes a document without encrypted payloads through without needing a KEK, and rejects bad JSON', async () => {
    const doc = { payloads: [toJson(defaultPayloadConverter.toPayload(1))] };
    const passthrough = await cli(['decode'], { input: JSON.stringify(doc) });
    expect(passthrough.code).toBe(0);
    expect(JSON.parse(passthrough.stdout)).toEqual(doc);
    const bad = await cli(['decode'], { input: '{"events": [' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/stdin: is not valid JSON/);
  });
});
