import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Request, type Response } from 'express';

/**
 * Reads a JSON request body once, for the codec routes, as `express.json({ strict: true })` would,
 * with the same error `type`s (so that error-mapping.ts answers alike): the plain case (no
 * `Content-Encoding`, UTF-8) is read here straight from the socket's buffers into one string and
 * one `JSON.parse`; anything else (gzip, deflate, another charset) goes to body-parser itself.
 * test/codec-server/json-body.test.ts compares the two on the same requests.
 *
 * Why: body-parser's UTF-8 path decodes through an iconv-lite stream and a chain of callbacks; on
 * a 20-payload `/decode` that was several percent of the server's CPU (bench/suites/server.ts).
 *
 * Pipeline position: codec route → this → `parsePayloadsBody` → codec.
 */
export function jsonBodyReader(
  limit: number,
): (req: IncomingMessage, res: ServerResponse) => Promise<unknown> {
  const fallback = express.json({ limit, strict: true, type: () => true });
  return (req, res) => {
    if (!isPlain(req)) {
      // body-parser needs no more of Express than Node's request and response.
      return new Promise((resolve, reject) =>
        fallback(req as Request, res as Response, (err?: unknown) =>
          err ? reject(err) : resolve((req as Request).body),
        ),
      );
    }
    return readPlain(req, limit);
  };
}

function isPlain(req: IncomingMessage): boolean {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
  const type = req.headers['content-type'] ?? '';
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(type);
  return !charset || /^utf-?8$/i.test(charset[1]!);
}

/** body-parser's error shape: `type`, `status`, `expose` (http-errors). */
function bodyError(type: string, status: number, message: string): Error {
  return Object.assign(new Error(message), { type, status, statusCode: status, expose: true });
}

/** A plain read in progress, kept on the request: the listeners are shared, not made per request. */
interface PlainRead {
  limit: number;
  chunks: Buffer[];
  received: number;
  resolve(value: unknown): void;
  reject(error: Error): void;
}
const READ = Symbol('plainRead');
type Reading = IncomingMessage & { [READ]?: PlainRead };

function readPlain(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      req.resume(); // let the socket drain, as body-parser does
      reject(bodyError('entity.too.large', 413, 'request entity too large'));
      return;
    }
    (req as Reading)[READ] = { limit, chunks: [], received: 0, resolve, reject };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAborted);
    req.on('close', onAborted);
  });
}

/** Detaches the listeners and returns the read, once (undefined after it settled). */
function finish(req: Reading): PlainRead | undefined {
  const read = req[READ];
  if (!read) return undefined;
  req[READ] = undefined;
  req.removeListener('data', onData);
  req.removeListener('end', onEnd);
  req.removeListener('error', onAborted);
  req.removeListener('close', onAborted);
  return read;
}

function onData(this: Reading, chunk: Buffer): void {
  const read = this[READ]!;
  read.received += chunk.length;
  if (read.received > read.limit) {
    finish(this);
    this.pause();
    read.reject(bodyError('entity.too.large', 413, 'request entity too large'));
    return;
  }
  read.chunks.push(chunk);
}

function onEnd(this: Reading): void {
  const read = finish(this);
  if (!read) return;
  const { chunks, received } = read;
  const buffer = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
  let text = buffer.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // iconv-lite drops a BOM too
  if (text.length === 0) {
    read.resolve({});
    return;
  }
  // strict: the first non-whitespace character must open an object or an array.
  const first = firstNonWhitespace(text);
  if (first !== '{' && first !== '[') {
    read.reject(bodyError('entity.parse.failed', 400, 'request body is not a JSON object or array'));
    return;
  }
  try {
    read.resolve(JSON.parse(text));
  } catch {
    read.reject(bodyError('entity.parse.failed', 400, 'request body is not valid JSON'));
  }
}

function onAborted(this: Reading): void {
  if (this.complete && this.listenerCount('end') > 0 && !this.readableEnded) return; // 'end' is coming
  finish(this)?.reject(bodyError('request.aborted', 400, 'request aborted'));
}

/** JSON's whitespace: space, tab, line feed, carriage return. */
function firstNonWhitespace(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return text[i];
  }
  return undefined;
}
