import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import { InvalidOptionError } from '../errors.ts';
import { resolvePolicy } from '../rotation/rotation-policy.ts';
import { configSchema, type KeyringConfig } from './config-schema.ts';
import { parseServerConfig } from './server-config.ts';

/** A parsed config file and where it was read from (relative paths in it resolve against `dir`). */
export interface LoadedConfig {
  config: KeyringConfig;
  /** Absolute path of the file. */
  path: string;
  /** Its directory. */
  dir: string;
}

/**
 * Reads and validates a JSON config file. Every failure is an {@link InvalidOptionError} whose field
 * names the offending key path (`namespaces.default.rotation.maxAge`), or `config` when the file
 * itself cannot be read or parsed.
 */
export async function loadConfigFile(path: string): Promise<LoadedConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new InvalidOptionError('config', `cannot read ${absolute}${code ? ` (${code})` : ''}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const at = /at position (\d+)/.exec(message);
    const where = at ? ` (${lineAndColumn(text, Number(at[1]))})` : '';
    const reason = message.replace(/ in JSON at position \d+.*$/s, '').replace(/^JSON\.parse: /, '');
    throw new InvalidOptionError('config', `${absolute} is not valid JSON${where}: ${reason}`);
  }
  try {
    return { config: parseConfig(json), path: absolute, dir: dirname(absolute) };
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error;
    // Name the file and the line of the offending key, so that the mistake is found at once.
    const line = lineOfPath(text, error.field.split('.'));
    const detail = error.message.slice(error.field.length + 2);
    throw new InvalidOptionError(
      error.field,
      `${detail} (in ${absolute}${line === undefined ? '' : `, line ${line}`})`,
    );
  }
}

/** `line L, column C` (1-based) of a character offset. */
function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`;
}

/**
 * The line of a key path's last key in the JSON text: each key is looked for after the previous
 * one. Good enough for messages (a key name that also appears in a string value earlier may mislead
 * it); undefined when not found.
 */
function lineOfPath(text: string, path: string[]): number | undefined {
  let offset = 0;
  for (const key of path) {
    const found = new RegExp(`"${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\s*:`).exec(text.slice(offset));
    if (!found) return offset === 0 ? undefined : text.slice(0, offset).split('\n').length;
    offset += found.index + 1;
  }
  return text.slice(0, offset).split('\n').length;
}

/**
 * Validates a config object (already parsed from JSON): its shape, then what spans fields (each
 * namespace's effective rotation policy; the server section's fields).
 */
export function parseConfig(value: unknown): KeyringConfig {
  const result = configSchema.safeParse(value);
  if (!result.success) throw zodToOptionError(result.error, undefined, configSchema);
  const config = result.data;
  const defaults = config.defaults?.rotation;
  resolvePolicy(defaults, undefined, 'defaults.rotation');
  for (const [ns, section] of Object.entries(config.namespaces ?? {})) {
    resolvePolicy(defaults, section.rotation, `namespaces.${ns}.rotation`);
  }
  // `dev: true` here only so that a missing auth section (which `serve --dev` allows) is not an error
  // yet; `devAllowRemote` so that this stand-in dev mode does not refuse a production host. `serve`
  // validates the section again with the real values.
  if (config.server) parseServerConfig({ devAllowRemote: true, ...config.server, dev: true }, 'server');
  return config;
}

/**
 * Turns a zod error into one {@link InvalidOptionError}: the first issue names the field; any
 * others are appended so that one run shows every mistake.
 */
export function zodToOptionError(error: z.ZodError, prefix?: string, schema?: z.ZodType): InvalidOptionError {
  const described = error.issues.map((issue) => ({
    field: issuePath(issue, prefix),
    message: issueMessage(issue, schema),
  }));
  const [first, ...rest] = described;
  if (!first) return new InvalidOptionError(prefix ?? 'config', 'is invalid');
  const more = rest.map((d) => `; ${d.field}: ${d.message}`).join('');
  return new InvalidOptionError(first.field, `${first.message}${more}`);
}

function issuePath(issue: z.core.$ZodIssue, prefix: string | undefined): string {
  const parts = [...(prefix ? [prefix] : []), ...issue.path.map(String)];
  // Unknown keys are reported on their parent; name them directly.
  if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) parts.push(issue.keys[0]!);
  return parts.length ? parts.join('.') : 'config';
}

function issueMessage(issue: z.core.$ZodIssue, schema: z.ZodType | undefined): string {
  if (issue.code === 'unrecognized_keys') {
    const known = schema ? keysAt(schema, issue.path.map(String)) : [];
    const hints = issue.keys.map((k) => nearest(k, known)).filter((h) => h !== undefined);
    const hint = hints.length ? ` (did you mean ${hints.map((h) => `"${h}"`).join(', ')}?)` : '';
    return issue.keys.length === 1
      ? `is not a known key${hint}`
      : `unknown keys ${issue.keys.join(', ')}${hint}`;
  }
  if (issue.code === 'invalid_key') return issue.issues[0]?.message ?? issue.message;
  return issue.message;
}

/** Zod 4's definition of a schema, as far as {@link keysAt} walks it. */
interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  valueType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
}

/** The keys an object schema accepts at a path (through optional, default, record, pipe, union). */
function keysAt(schema: z.ZodType, path: string[]): string[] {
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  if (def.innerType) return keysAt(def.innerType, path);
  if (def.type === 'pipe' && def.in) return keysAt(def.in, path);
  if (def.type === 'union' && def.options) return def.options.flatMap((o) => keysAt(o, path));
  if (def.type === 'record' && def.valueType) return path.length ? keysAt(def.valueType, path.slice(1)) : [];
  if (def.type === 'object' && def.shape) {
    if (path.length === 0) return Object.keys(def.shape);
    const next = def.shape[path[0]!];
    return next ? keysAt(next, path.slice(1)) : [];
  }
  return [];
}

/** The known key closest to a mistyped one (edit distance at most 2, or a case difference). */
function nearest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : distance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}
