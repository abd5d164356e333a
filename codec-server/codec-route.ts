import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';
import typeis from 'type-is';
import { keyVersionOf } from '../src/codec/encryption-codec.ts';
import type { ServerConfig } from '../src/config/server-config.ts';
import { InternalError, NamespaceMismatchError, NamespaceNotFoundError } from '../src/errors.ts';
import type { Keyring } from '../src/keyring/keyring.ts';
import { validateNamespace } from '../src/model/namespace.ts';
import type { Authenticator } from './auth/authenticator.ts';
import { toHttpError } from './error-mapping.ts';
import { HttpError } from './http-error.ts';
import type { Metrics } from './metrics.ts';
import { parsePayloadsBody, payloadsToJson } from './payload-json.ts';
import { contextOf } from './request-context.ts';
import { setAudit } from './request-log.ts';

export type CodecOperation = 'encode' | 'decode';

/** What `Content-Type` a codec request must have: Express's `req.is('json')`. */
const JSON_TYPES = ['json'];

/** A request for `{prefix}/encode|decode|download` or `{prefix}/{namespace}/...`, as routed. */
export interface CodecTarget {
  op: string;
  /** The path's namespace segment, percent-decoded; undefined for the short form. */
  namespace: string | undefined;
}

export interface CodecRouteDeps {
  keyring: Keyring;
  config: Pick<ServerConfig, 'dev' | 'pathPrefix'>;
  auth: Authenticator;
  metrics: Metrics;
  /** Throws `ERR_SEALED` while the keystore is sealed (seal-routes.ts). */
  assertUnsealed(): void;
  codecFor(namespace: string): PayloadCodec;
  readBody(req: IncomingMessage, res: ServerResponse): Promise<unknown>;
}

export interface CodecRoute {
  /**
   * The target of a request in the exact form the Web UI and the CLI send (`POST`, the configured
   * prefix, `/encode` or `/decode`, at most one namespace segment), or undefined: anything else
   * (another case, a trailing slash, `download`, a bad escape) is routed by Express, which calls
   * {@link handle} as well.
   */
  match(req: IncomingMessage): CodecTarget | undefined;
  /**
   * Serves a codec request that passed CORS, the request log and the host check. Its errors are
   * thrown (rejected) for the caller's one error path (error-answer.ts); the audit record is set
   * either way.
   */
  handle(req: IncomingMessage, res: ServerResponse, target: CodecTarget): Promise<void>;
  /** The namespace of a codec or rewrap request: path segment and `X-Namespace` header reconciled. */
  namespaceOf(req: IncomingMessage, fromPath: string | undefined): string;
  /** Refuses a namespace that has no keys (404), except in dev mode, which creates them on first use. */
  requireKeys(namespace: string): Promise<void>;
}

/**
 * The codec endpoints, `POST [prefix][/{namespace}]/encode|decode`, as one handler that needs only
 * Node's request and response. `createApp` serves requests that {@link CodecRoute.match} takes on
 * this path alone, ahead of Express, and registers the same handler as Express's route for every
 * other form: Express's routing costs more per request than a one-payload `/decode` does apart
 * from it (docs/performance.md), and these two endpoints carry the traffic.
 *
 * Order of checks: sealed (503) → authentication (401) → namespace (400) → authorization (403) →
 * namespace has keys (404) → content type (415) → body (413, 400) → codec.
 */
export function codecRoute(deps: CodecRouteDeps): CodecRoute {
  const { keyring, config, auth, metrics } = deps;
  const prefix = config.pathPrefix;
  const codecs = new Map<string, PayloadCodec>();
  const knownNamespaces = new Set<string>();
  /** prom-client children, bound once per label set (namespaces are authorized ones). */
  const payloadCounters = new Map<string, { inc(value: number): void }>();

  function match(req: IncomingMessage): CodecTarget | undefined {
    const url = req.url;
    if (req.method !== 'POST' || url === undefined || !url.startsWith(prefix)) return undefined;
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const op = path.endsWith('/decode') ? 'decode' : path.endsWith('/encode') ? 'encode' : undefined;
    if (!op) return undefined;
    const middle = path.slice(prefix.length, path.length - op.length - 1);
    if (middle === '') return { op, namespace: undefined };
    if (middle.length < 2 || middle[0] !== '/' || middle.indexOf('/', 1) !== -1) return undefined;
    let namespace = middle.slice(1);
    if (namespace.includes('%')) {
      try {
        namespace = decodeURIComponent(namespace);
      } catch {
        return undefined; // Express answers a bad escape
      }
    }
    return { op, namespace };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, target: CodecTarget): Promise<void> {
    const ctx = contextOf(res);
    if (target.op === 'download') {
      // Authenticated like the codec routes, so that anonymous callers cannot fill the logs.
      ctx.route = 'download';
      ctx.identity = await auth.authenticate({ authorization: req.headers.authorization });
      throw new HttpError(
        501,
        'ERR_NOT_SUPPORTED',
        'download is not supported: this codec server does not use external payload storage',
      );
    }
    const operation = target.op as CodecOperation;
    ctx.route = operation;
    const requestId = ctx.requestId ?? '';
    let inputCount = 0;
    let keyVersions: number[] = [];
    try {
      deps.assertUnsealed();
      ctx.identity = await auth.authenticate({ authorization: req.headers.authorization });
      const namespace = namespaceOf(req, target.namespace);
      ctx.namespace = namespace;
      if (!ctx.identity.can(namespace, operation)) {
        throw new HttpError(403, 'ERR_FORBIDDEN', `not allowed to ${operation} in namespace "${namespace}"`);
      }
      await requireKeys(namespace);
      if (!typeis(req, JSON_TYPES)) {
        throw new HttpError(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
      }
      const input = parsePayloadsBody(await deps.readBody(req, res));
      inputCount = input.length;
      let codec = codecs.get(namespace);
      if (!codec) {
        codec = deps.codecFor(namespace);
        codecs.set(namespace, codec);
      }
      // Versions named by the encrypted side: read before decoding (so an error's audit has them).
      let counts = operation === 'decode' ? payloadsByVersion(input) : undefined;
      if (counts) keyVersions = versionsIn(counts);
      const output = operation === 'encode' ? await codec.encode(input) : await codec.decode(input);
      if (output.length !== input.length)
        throw new InternalError('codec returned a different number of payloads');
      if (!counts) {
        counts = payloadsByVersion(output);
        keyVersions = versionsIn(counts);
      }
      countPayloads(namespace, operation, counts);
      setAudit(res, {
        requestId,
        operation,
        identity: pick(ctx.identity),
        namespace,
        payloads: inputCount,
        keyVersions,
        outcome: 'ok',
        status: 200,
      });
      // Serialized straight from the payloads (no intermediate object tree).
      const body = payloadsToJson(output);
      res.writeHead(200, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
      });
      res.end(body);
    } catch (error) {
      const answer = toHttpError(error);
      setAudit(res, {
        requestId,
        operation,
        identity: ctx.identity && pick(ctx.identity),
        namespace: ctx.namespace,
        payloads: inputCount,
        keyVersions,
        outcome: 'error',
        status: answer.status,
        code: answer.body.code,
        ...(answer.body.hint === undefined ? {} : { hint: answer.body.hint }),
      });
      throw error;
    }
  }

  function namespaceOf(req: IncomingMessage, path: string | undefined): string {
    // The UI does not substitute `{namespace}` (the CLI does): an endpoint configured for both
    // reaches us with the placeholder itself, and X-Namespace names the namespace.
    const fromPath = path === '{namespace}' ? undefined : path;
    const header = req.headers['x-namespace'];
    const fromHeader = Array.isArray(header) ? header[0] : header;
    if (fromPath !== undefined && fromHeader !== undefined && fromHeader !== '' && fromPath !== fromHeader) {
      throw new NamespaceMismatchError(
        `the namespace in the path ("${fromPath.slice(0, 64)}") and in X-Namespace ("${fromHeader.slice(0, 64)}") differ`,
      );
    }
    const namespace = fromPath ?? fromHeader;
    if (namespace === undefined || namespace === '') {
      throw new HttpError(
        400,
        'ERR_NAMESPACE_REQUIRED',
        'no namespace: send the X-Namespace header or use the path /{namespace}/encode|decode',
      );
    }
    return validateNamespace(namespace);
  }

  async function requireKeys(namespace: string): Promise<void> {
    if (config.dev || knownNamespaces.has(namespace)) return;
    const versions = await keyring.versions(namespace);
    if (versions.length === 0) throw new NamespaceNotFoundError(namespace);
    knownNamespaces.add(namespace);
  }

  function countPayloads(namespace: string, operation: CodecOperation, counts: Map<string, number>): void {
    for (const [key_version, n] of counts) {
      const key = `${namespace} ${operation} ${key_version}`;
      let counter = payloadCounters.get(key);
      if (!counter) {
        counter = metrics.payloads.labels({ namespace, operation, key_version });
        payloadCounters.set(key, counter);
      }
      counter.inc(n);
    }
  }

  return { match, handle, namespaceOf, requireKeys };
}

/** Payload counts by key version ("none": passed through), one metrics update per version. */
function payloadsByVersion(payloads: readonly Payload[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of payloads) {
    const v = String(keyVersionOf(p) ?? 'none');
    counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  return counts;
}

/** The versions among {@link payloadsByVersion}'s keys, ascending ("none" left out). */
function versionsIn(counts: Map<string, number>): number[] {
  const versions: number[] = [];
  for (const v of counts.keys()) if (v !== 'none') versions.push(Number(v));
  return versions.length > 1 ? versions.sort((a, b) => a - b) : versions;
}

function pick(identity: { kind: 'jwt' | 'token' | 'anonymous'; subject: string }) {
  return { kind: identity.kind, subject: identity.subject };
}
