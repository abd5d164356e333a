import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import { exportableSince, exportKeys, setExportable } from '../src/codec/key-export.ts';
import type { Keyring } from '../src/keyring/keyring.ts';

/** The admin router's shared steps, passed in so that these routes check exactly as the others do. */
export interface AdminSteps {
  keyring: Keyring;
  /** Authenticates, checks the `admin` permission on the path's namespace, and returns it. */
  authorize(req: Request, res: Response): Promise<string>;
  /** Reads and validates a JSON body (Content-Type required, body optional). */
  body<T>(req: Request, res: Response, schema: z.ZodType<T>): Promise<T>;
  /** Writes an audit record. */
  record(req: Request, res: Response, action: string, details: object): void;
}

/**
 * Exportable keys over the admin API (rules in src/codec/key-export.ts):
 * - `GET  /admin/namespaces/{ns}/exportable`: `{namespace, exportable, markedAt}`;
 * - `POST /admin/namespaces/{ns}/exportable` `{"exportable": true}` marks (irreversible);
 *   `{"exportable": false}` on a marked namespace is refused with 409 `ERR_INVALID_STATE_TRANSITION`;
 * - `POST /admin/namespaces/{ns}/keys/export` `{"version": N}` (optional): the raw keys with their
 *   ESDK names; 403 `ERR_NOT_EXPORTABLE` unless marked. Audited (versions, never the keys);
 *   answered with `Cache-Control: no-store`.
 */
export function registerExportRoutes(router: Router, steps: AdminSteps): void {
  const { keyring } = steps;

  router.get('/namespaces/:namespace/exportable', async (req: Request, res: Response) => {
    const namespace = await steps.authorize(req, res);
    const markedAt = await exportableSince(keyring, namespace);
    res.json({ namespace, exportable: markedAt !== undefined, markedAt: iso(markedAt) });
  });

  const markBody = z.strictObject({ exportable: z.boolean() });
  router.post('/namespaces/:namespace/exportable', async (req: Request, res: Response) => {
    const namespace = await steps.authorize(req, res);
    const { exportable } = await steps.body(req, res, markBody);
    try {
      const result = await setExportable(keyring, namespace, exportable);
      steps.record(req, res, 'set-exportable', {
        namespace,
        exportable,
        changed: result.changed,
        outcome: 'ok',
      });
      res.json({ namespace, exportable: result.exportable, markedAt: iso(result.markedAt) });
    } catch (error) {
      steps.record(req, res, 'set-exportable', { namespace, exportable, outcome: 'refused' });
      throw error;
    }
  });

  const exportBody = z.strictObject({
    version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  });
  router.post('/namespaces/:namespace/keys/export', async (req: Request, res: Response) => {
    const namespace = await steps.authorize(req, res);
    const { version } = await steps.body(req, res, exportBody);
    try {
      const result = await exportKeys(keyring, namespace, { version });
      steps.record(req, res, 'export', {
        namespace,
        versions: result.versions.map((v) => v.version),
        outcome: 'ok',
      });
      res.set('cache-control', 'no-store').json(result);
    } catch (error) {
      steps.record(req, res, 'export', {
        namespace,
        version,
        outcome: 'refused',
        code: (error as { code?: string }).code,
      });
      throw error;
    }
  });
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}
