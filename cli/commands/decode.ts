import { readFile } from 'node:fs/promises';
import type { Payload } from '@temporalio/common';
import type { Command } from 'commander';
import { ENCODING_ENCRYPTED, METADATA_ENCODING } from '../../src/codec/payload-format.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { withKeyring } from '../context.ts';
import { out } from '../output.ts';
import { namespaceArg } from './parse.ts';

// The codec, the AWS Encryption SDK and the protobuf types load only when `decode` runs.
async function protoPayload() {
  return (await import('@temporalio/proto')).default.temporal.api.common.v1.Payload;
}
type ProtoPayloadType = Awaited<ReturnType<typeof protoPayload>>;

/** A payload in protobuf-JSON, as `temporal workflow show --output json` prints it. */
interface PayloadJson {
  metadata?: Record<string, string>;
  data?: string;
}

/**
 * `decode`: decrypts every encrypted payload in a workflow history (or any protobuf-JSON document)
 * and prints the document with those payloads decoded. Payloads are found by shape (an object
 * with a `metadata` object whose `encoding` is base64 of `binary/encrypted`), so any JSON Temporal
 * prints works: a history, a single event, a `{"payloads": [...]}` body. Everything else is
 * printed as it was read.
 */
export function registerDecodeCommand(program: Command): void {
  program
    .command('decode')
    .description('decrypt the payloads of a workflow history JSON (temporal workflow show --output json)')
    .option('-n, --namespace <namespace>', 'namespace the history belongs to', 'default')
    .option('-i, --input <file>', 'read the JSON from this file instead of stdin')
    .option(
      '--json-shorthand',
      'print decoded json/plain payloads as their JSON value instead of base64 (for reading)',
    )
    .action(
      async (options: { namespace: string; input?: string; jsonShorthand?: boolean }, command: Command) => {
        const namespace = namespaceArg(options.namespace);
        const document = parseJson(await readInput(options.input), options.input);
        const found = findEncryptedPayloads(document);
        if (found.length > 0) {
          const Payload = await protoPayload();
          const { EncryptionCodec } = await import('../../src/codec/encryption-codec.ts');
          const decoded = await withKeyring(command, ({ keyring }) =>
            new EncryptionCodec({ namespace, keys: keyring }).decode(
              found.map((f) => payloadFromJson(Payload, f.json)),
            ),
          );
          for (const [i, f] of found.entries()) {
            const json = payloadToJson(Payload, decoded[i]!);
            f.replace(options.jsonShorthand ? shorthand(json) : json);
          }
        }
        out(JSON.stringify(document.root, null, 2));
      },
    );
}

async function readInput(file: string | undefined): Promise<string> {
  if (file !== undefined) {
    try {
      return await readFile(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new InvalidOptionError('--input', `cannot read ${file}${code ? ` (${code})` : ''}`);
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string, file: string | undefined): { root: unknown } {
  try {
    return { root: JSON.parse(text) };
  } catch (error) {
    throw new InvalidOptionError(
      file === undefined ? 'stdin' : '--input',
      `is not valid JSON: ${(error as Error).message}`,
    );
  }
}

interface Found {
  json: PayloadJson;
  replace(value: unknown): void;
}

const JSON_PLAIN = Buffer.from('json/plain', 'utf8');

/** A `json/plain` payload with no other metadata, as its JSON value (like `temporal`'s own output). */
function shorthand(json: PayloadJson): unknown {
  const keys = Object.keys(json.metadata ?? {});
  const encoding = json.metadata?.[METADATA_ENCODING];
  if (keys.length !== 1 || encoding === undefined || !Buffer.from(encoding, 'base64').equals(JSON_PLAIN))
    return json;
  try {
    return JSON.parse(Buffer.from(json.data ?? '', 'base64').toString('utf8'));
  } catch {
    return json;
  }
}

const ENCRYPTED = Buffer.from(ENCODING_ENCRYPTED, 'utf8');

/** Every encrypted payload in a JSON document, in document order, with a way to replace it. */
export function findEncryptedPayloads(document: { root: unknown }): Found[] {
  const found: Found[] = [];
  const visit = (value: unknown, replace: (v: unknown) => void): void => {
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) {
        visit(item, (v) => {
          value[i] = v;
        });
      }
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const record = value as Record<string, unknown>;
    if (isEncryptedPayloadJson(record)) {
      found.push({ json: record as PayloadJson, replace });
      return;
    }
    for (const key of Object.keys(record)) {
      visit(record[key], (v) => {
        record[key] = v;
      });
    }
  };
  visit(document.root, (v) => {
    document.root = v;
  });
  return found;
}

function isEncryptedPayloadJson(value: Record<string, unknown>): boolean {
  const metadata = value.metadata;
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) return false;
  const encoding = (metadata as Record<string, unknown>)[METADATA_ENCODING];
  return typeof encoding === 'string' && Buffer.from(encoding, 'base64').equals(ENCRYPTED);
}

function payloadFromJson(ProtoPayload: ProtoPayloadType, json: PayloadJson): Payload {
  const p = ProtoPayload.fromObject({ metadata: json.metadata ?? {}, data: json.data ?? '' });
  return {
    metadata: { ...p.metadata },
    data: p.data instanceof Uint8Array ? p.data : new Uint8Array(p.data),
  };
}

function payloadToJson(ProtoPayload: ProtoPayloadType, payload: Payload): PayloadJson {
  const message = ProtoPayload.fromObject({
    metadata: payload.metadata ?? {},
    data: payload.data ?? new Uint8Array(),
  });
  const json = ProtoPayload.toObject(message, { bytes: String }) as PayloadJson;
  const result: PayloadJson = {};
  if (json.metadata && Object.keys(json.metadata).length > 0) result.metadata = json.metadata;
  if (json.data) result.data = json.data;
  return result;
}
