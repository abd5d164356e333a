/**
 * KeyringPlugin through the SDK's own code: the options it returns are what `Client`/`Worker` use,
 * payloads and failures go through `@temporalio/common`'s real data-converter helpers with the
 * SDK's `SerializationContext`, and a replay worker decodes an encrypted history with it.
 */
import type { ClientPlugin } from '@temporalio/client';
import {
  type DataConverter,
  defaultPayloadConverter,
  type FailureConverter,
  type LoadedDataConverter,
  type SerializationContext,
} from '@temporalio/common';
import {
  decodeFromPayloadsAtIndex,
  decodeOptionalFailureToOptionalError,
  encodeErrorToFailure,
  encodeToPayloadsWithContext,
} from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import proto from '@temporalio/proto';
import { Worker, type WorkerPlugin } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { KeyringPlugin } from '../../src/temporal/keyring-plugin.ts';
import { jsonPayload, keyringFixture, text } from '../codec/fixtures.ts';

const workflowContext = (namespace: string): SerializationContext => ({
  type: 'workflow',
  namespace,
  workflowId: 'wf-1',
});

/** What the SDK builds from a `DataConverter` (loadDataConverter), with the module it names imported. */
async function load(converter: DataConverter | undefined): Promise<LoadedDataConverter> {
  const path = converter?.failureConverterPath;
  expect(path).toBeDefined();
  const { failureConverter } = (await import(path!)) as { failureConverter: FailureConverter };
  return {
    payloadConverter: defaultPayloadConverter,
    failureConverter,
    payloadCodecs: converter!.payloadCodecs ?? [],
  };
}

describe('KeyringPlugin', () => {
  it('is a ClientPlugin and a WorkerPlugin, and adds its codec after the caller’s', async () => {
    const { keyring } = await keyringFixture(['default']);
    const plugin = new KeyringPlugin({ keys: keyring });
    const asClient: ClientPlugin = plugin;
    const asWorker: WorkerPlugin = plugin;
    expect(asClient.name).toBe('temporal-keyring');
    const compression = { encode: async (p: never[]) => p, decode: async (p: never[]) => p };
    const configured = plugin.configureClient({
      namespace: 'default',
      dataConverter: { payloadCodecs: [compression] },
    });
    expect(configured.dataConverter.payloadCodecs?.[0]).toBe(compression);
    expect(configured.dataConverter.payloadCodecs).toHaveLength(2);
    expect(configured.dataConverter.failureConverterPath).toMatch(/encrypted-failure-converter\.(ts|js)$/);
    expect(asWorker.configureWorker).toBeTypeOf('function');
  });

  it('uses the namespace of the SDK’s SerializationContext: one client, each namespace’s keys', async () => {
    const { keyring } = await keyringFixture(['default', 'payments']);
    const plugin = new KeyringPlugin({ keys: keyring });
    const converter = await load(plugin.configureClient({ namespace: 'default' }).dataConverter);
    const value = { card: '4111111111111111' };
    const [stored] = (await encodeToPayloadsWithContext(converter, workflowContext('payments'), [value]))!;
    expect(text(stored!.metadata!.encoding)).toBe('binary/encrypted');
    expect(text(stored!.metadata!['encryption-key-id'])).toBe('payments/v1');
    expect(await decodeFromPayloadsAtIndex(converter, 0, [stored!], workflowContext('payments'))).toEqual(
      value,
    );
    // Without a context: the client's own namespace.
    const [plain] = (await encodeToPayloadsWithContext(converter, undefined, [value]))!;
    expect(text(plain!.metadata!['encryption-key-id'])).toBe('default/v1');
    // The payments payload read as another namespace's is refused, naming both.
    await expect(
      decodeFromPayloadsAtIndex(converter, 0, [stored!], workflowContext('default')),
    ).rejects.toMatchObject({ code: 'ERR_NAMESPACE_MISMATCH' });
  });

  it('with a fixed namespace, a context or a worker naming another is an error', async () => {
    const { keyring } = await keyringFixture(['payments']);
    const plugin = new KeyringPlugin({ keys: keyring, namespace: 'payments' });
    expect(() => plugin.configureWorker({ namespace: 'default' })).toThrow(
      /the worker runs in namespace "default", but KeyringPlugin is fixed to namespace "payments"/,
    );
    const converter = await load(plugin.configureClient({}).dataConverter);
    await expect(
      encodeToPayloadsWithContext(converter, workflowContext('default'), ['x']),
    ).rejects.toMatchObject({
      code: 'ERR_NAMESPACE_MISMATCH',
      message: expect.stringContaining('fixed to namespace "payments"'),
    });
    const [ok] = (await encodeToPayloadsWithContext(converter, workflowContext('payments'), ['x']))!;
    expect(text(ok!.metadata!['encryption-key-id'])).toBe('payments/v1');
  });

  it('encrypts failure messages and stack traces (encodeCommonAttributes), and restores them', async () => {
    const { keyring } = await keyringFixture(['default']);
    const converter = await load(new KeyringPlugin({ keys: keyring }).configureWorker({}).dataConverter);
    const error = new Error('card 4111111111111111 declined');
    const failure = await encodeErrorToFailure(converter, error, workflowContext('default'));
    expect(failure.message).toBe('Encoded failure');
    expect(failure.stackTrace).toBe('');
    expect(text(failure.encodedAttributes?.metadata?.encoding)).toBe('binary/encrypted');
    const wire = Buffer.from(proto.temporal.api.failure.v1.Failure.encode(failure).finish()).toString(
      'latin1',
    );
    expect(wire).not.toContain('4111');
    expect(wire).not.toContain('keyring-plugin.test');
    const back = await decodeOptionalFailureToOptionalError(converter, failure, workflowContext('default'));
    expect(back?.message).toBe('card 4111111111111111 declined');
  });

  it('refuses to silently replace a failure converter the caller set', async () => {
    const { keyring } = await keyringFixture(['default']);
    const plugin = new KeyringPlugin({ keys: keyring });
    expect(() => plugin.configureWorker({ dataConverter: { failureConverterPath: '/mine.js' } })).toThrow(
      /^dataConverter\.failureConverterPath: KeyringPlugin sets the failure converter/,
    );
    const kept = new KeyringPlugin({ keys: keyring, encryptFailures: false }).configureWorker({
      dataConverter: { failureConverterPath: '/mine.js' },
    });
    expect(kept.dataConverter.failureConverterPath).toBe('/mine.js');
  });

  it('EncryptionCodec honours the SerializationContext: another namespace’s payloads are refused', async () => {
    const { keyring } = await keyringFixture(['default']);
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
    await expect(codec.encode([jsonPayload({ a: 1 })], workflowContext('payments'))).rejects.toMatchObject({
      code: 'ERR_NAMESPACE_MISMATCH',
    });
    const [sealed] = await codec.encode([jsonPayload({ a: 1 })], workflowContext('default'));
    expect(text(sealed!.metadata!.encoding)).toBe('binary/encrypted');
  });

  it('lets Worker.runReplayHistory decode an encrypted history', async () => {
    const { keyring } = await keyringFixture(['default']);
    const plugin = new KeyringPlugin({ keys: keyring });
    const converter = await load(plugin.configureClient({}).dataConverter);
    const context = workflowContext('default');
    const input = (await encodeToPayloadsWithContext(converter, context, [{ greet: 'Ada' }]))!;
    const result = (await encodeToPayloadsWithContext(converter, context, ['hello Ada']))!;
    const t = (s: number) => ({ seconds: String(1_800_000_000 + s) });
    const history = proto.temporal.api.history.v1.History.fromObject({
      events: [
        {
          eventId: 1,
          eventTime: t(0),
          eventType: proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
          workflowExecutionStartedEventAttributes: {
            workflowType: { name: 'greet' },
            taskQueue: { name: 'replay' },
            input: { payloads: input },
            workflowTaskTimeout: { seconds: 10 },
            originalExecutionRunId: '11111111-1111-4111-8111-111111111111',
            firstExecutionRunId: '11111111-1111-4111-8111-111111111111',
            attempt: 1,
          },
        },
        {
          eventId: 2,
          eventTime: t(0),
          eventType: proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
          workflowTaskScheduledEventAttributes: { taskQueue: { name: 'replay' }, attempt: 1 },
        },
        {
          eventId: 3,
          eventTime: t(1),
          eventType: proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
          workflowTaskStartedEventAttributes: { scheduledEventId: 2 },
        },
        {
          eventId: 4,
          eventTime: t(1),
          eventType: proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
          workflowTaskCompletedEventAttributes: { scheduledEventId: 2, startedEventId: 3 },
        },
        {
          eventId: 5,
          eventTime: t(1),
          eventType: proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
          workflowExecutionCompletedEventAttributes: {
            result: { payloads: result },
            workflowTaskCompletedEventId: 4,
          },
        },
      ],
    });
    await Worker.runReplayHistory(
      {
        workflowsPath: new URL('./fixtures/greet-workflow.ts', import.meta.url).pathname,
        plugins: [plugin],
      },
      history,
    );
    // A replay that cannot decrypt fails: the same history under a keyring without these keys.
    const other = await keyringFixture(['default']);
    await expect(
      Worker.runReplayHistory(
        {
          workflowsPath: new URL('./fixtures/greet-workflow.ts', import.meta.url).pathname,
          plugins: [new KeyringPlugin({ keys: other.keyring })],
        },
        history,
      ),
    ).rejects.toThrow();
  }, 180_000);
});
