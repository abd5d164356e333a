import { createReadStream, createWriteStream, fstatSync, statSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Payload } from '@temporalio/common';
import type { Command } from 'commander';
import { ENCODING_ENCRYPTED, METADATA_ENCODING } from '../../src/codec/payload-format.ts';
import { payloadToWire } from '../../src/codec/payload-wire.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { withKeyring } from '../context.ts';
import { progress } from '../output.ts';
import { PayloadScanner } from '../payload-scanner.ts';
import { namespaceArg } from './parse.ts';

/** A rewrap batch is sent to the keyring at this many payloads, or this many bytes held. */
const BATCH_PAYLOADS = 256;
const BATCH_BYTES = 8 * 1024 * 1024;
/** Files from this size on get progress lines on stderr (every 5%). */
const PROGRESS_FROM = 64 * 1024 * 1024;

type ProtoPayloadType = typeof import('@temporalio/proto')['temporal']['api']['common']['v1']['Payload'];
type Item = Buffer | { raw: Buffer; payload: Payload };

/**
 * `rewrap`: re-encrypts every encrypted payload of a history JSON (`temporal workflow show --output
 * json`, archival files; inputs, results, memos, headers, failures' encoded attributes: any object
 * shaped like a payload) under the namespace's active version, and writes the document with every
 * other byte as it was read. Payloads already under the active version are left as they are unless
 * `--force`. Streams (memory stays flat on large files), checks every rewritten payload decodes to
 * the same plaintext before writing it, and counts its encryptions through the usage meter.
 * Refuses to write over its input. Afterwards the old versions can be deprecated and destroyed.
 */
export function registerRewrapCommand(program: Command): void {
  program
    .command('rewrap')
    .description('re-encrypt the payloads of a history JSON under the active key version')
    .argument('<input>', 'history JSON file ("-" for stdin)')
    .requiredOption('-n, --namespace <namespace>', 'namespace the history belongs to')
    .option('-o, --output <file>', 'write here instead of stdout (never the input file)')
    .option('--force', 're-encrypt payloads already under the active version too')
    .action(
      async (
        input: string,
        options: { namespace: string; output?: string; force?: boolean },
        command: Command,
      ) => {
        const namespace = namespaceArg(options.namespace);
        const inputStat = input === '-' ? undefined : statOrThrow(input);
        if (inputStat && options.output !== undefined) {
          const out = statSync(options.output, { throwIfNoEntry: false });
          if (out && out.dev === inputStat.dev && out.ino === inputStat.ino) {
            throw new InvalidOptionError('--output', 'is the input file; write to another file');
          }
        }
        if (inputStat && options.output === undefined) {
          const out = fstatSync(1);
          if (out.isFile() && out.dev === inputStat.dev && out.ino === inputStat.ino) {
            throw new InvalidOptionError(
              'stdout',
              'is the input file (the shell has already emptied it; restore it from its source and redirect to another file)',
            );
          }
        }
        const counts = await withKeyring(
          command,
          async ({ keyring }) => {
            const { Rewrapper } = await import('../../src/codec/rewrap.ts');
            const rewrapper = new Rewrapper({ keyring, namespace, force: options.force });
            const active = await rewrapper.activeVersion();
            const output: Writable =
              options.output === undefined
                ? process.stdout
                : createWriteStream(options.output, { flags: 'wx' });
            const source =
              input === '-' ? process.stdin : createReadStream(input, { highWaterMark: 1024 * 1024 });
            return rewrapStream({ source, output, active, rewrapper, total: inputStat?.size });
          },
          { meter: 'default' },
        );
        progress(
          `rewrap: ${counts.rewrapped} payloads re-encrypted under ${namespace}/v${counts.active}, ${counts.current} already under it, ${counts.bytes} bytes read`,
        );
      },
    );
}

function statOrThrow(file: string) {
  try {
    return statSync(file);
  } catch (error) {
    throw new InvalidOptionError(
      'input',
      `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

async function rewrapStream(args: {
  source: AsyncIterable<Buffer>;
  output: Writable;
  active: number;
  rewrapper: import('../../src/codec/rewrap.ts').Rewrapper;
  total: number | undefined;
}): Promise<{ rewrapped: number; current: number; bytes: number; active: number }> {
  const { output, active, rewrapper, total } = args;
  const Payload = (await import('@temporalio/proto')).default.temporal.api.common.v1.Payload;
  let queue: Item[] = [];
  let held = 0;
  let pending = 0;
  const counts = { rewrapped: 0, current: 0, bytes: 0, active };
  const scanner = new PayloadScanner({
    onRaw: (bytes) => {
      queue.push(bytes);
      held += bytes.length;
    },
    onCandidate: (raw) => {
      const payload = encryptedPayloadOf(raw, Payload);
      queue.push(payload ? { raw, payload } : raw);
      held += raw.length;
      if (payload) pending++;
    },
  });
  const write = (bytes: Buffer | string) =>
    output.write(bytes) ? undefined : new Promise<void>((resolve) => output.once('drain', resolve));

  const flush = async () => {
    const items = queue;
    queue = [];
    held = 0;
    pending = 0;
    const payloads = items.filter((i): i is { raw: Buffer; payload: Payload } => !Buffer.isBuffer(i));
    const result =
      payloads.length > 0
        ? await rewrapper.rewrap(
            payloads.map((p) => p.payload),
            active,
          )
        : undefined;
    counts.rewrapped += result?.rewrapped ?? 0;
    counts.current += result?.current ?? 0;
    let j = 0;
    for (const item of items) {
      if (Buffer.isBuffer(item)) {
        await write(item);
        continue;
      }
      const next = result!.payloads[j++]!;
      // Untouched payloads keep their exact bytes; rewrapped ones are written as protobuf-JSON.
      await write(next === item.payload ? item.raw : JSON.stringify(payloadToWire(next)));
    }
  };

  let nextReport = total !== undefined && total >= PROGRESS_FROM ? total / 20 : Number.POSITIVE_INFINITY;
  for await (const chunk of args.source) {
    scanner.write(chunk);
    counts.bytes = scanner.offset;
    if (pending >= BATCH_PAYLOADS || held >= BATCH_BYTES) await flush();
    if (counts.bytes >= nextReport) {
      progress(
        `rewrap: ${Math.floor((100 * counts.bytes) / total!)}% (${(counts.bytes / 1048576).toFixed(0)} of ${(total! / 1048576).toFixed(0)} MiB), ${counts.rewrapped} payloads re-encrypted`,
      );
      nextReport += total! / 20;
    }
  }
  scanner.end();
  await flush();
  if (output !== process.stdout) {
    await new Promise<void>((resolve, reject) =>
      output.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
  }
  return counts;
}

const ENCRYPTED_B64 = Buffer.from(ENCODING_ENCRYPTED).toString('base64');

/** The payload a candidate object is, if it is one of ours (encrypted); `undefined` otherwise. */
function encryptedPayloadOf(raw: Buffer, ProtoPayload: ProtoPayloadType): Payload | undefined {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new InvalidOptionError('input', 'is not valid JSON');
  }
  const { metadata, data } = json as { metadata?: unknown; data?: unknown };
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) return undefined;
  const encoding = (metadata as Record<string, unknown>)[METADATA_ENCODING];
  if (typeof encoding !== 'string' || Buffer.from(encoding, 'base64').toString('base64') !== ENCRYPTED_B64)
    return undefined;
  const p = ProtoPayload.fromObject({ metadata, data: typeof data === 'string' ? data : '' });
  return { metadata: { ...p.metadata }, data: p.data };
}
