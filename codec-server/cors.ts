import cors from 'cors';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ServerConfig } from '../src/config/server-config.ts';

/** Request headers the Web UI and CLI send that a preflight must allow. */
export const CORS_ALLOWED_HEADERS = ['content-type', 'x-namespace', 'authorization', 'authorization-extras'];

/**
 * CORS for the Web UI, which calls the codec server cross-origin and preflights every request.
 * Origins match exactly (no wildcard, no suffix, never `null`); an unknown origin gets no
 * `Access-Control-Allow-Origin` and the browser blocks the answer. Mounted before everything else so
 * that error answers carry the headers too (otherwise the UI sees an opaque network error).
 *
 * Also answers Chrome's Private Network Access preflight (`Access-Control-Request-Private-Network`)
 * for allowed origins, so that a public UI (Temporal Cloud) may call a codec server on a private
 * address or on localhost.
 */
export function corsMiddleware(config: ServerConfig['cors']): RequestHandler {
  const allowed = new Set(config.origins);
  const handler = cors({
    // An array of strings: `cors` compares each with ===, and always adds `Vary: Origin`.
    origin: [...config.origins],
    methods: ['POST', 'OPTIONS'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    credentials: config.credentials,
    maxAge: config.maxAgeSeconds,
    optionsSuccessStatus: 204,
  });
  return (req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    if (
      req.method === 'OPTIONS' &&
      req.headers['access-control-request-private-network'] === 'true' &&
      origin !== undefined &&
      allowed.has(origin)
    ) {
      res.setHeader('Access-Control-Allow-Private-Network', 'true');
    }
    handler(req, res, next);
  };
}
