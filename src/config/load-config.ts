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
    throw new InvalidOptionError('config', `${absolute} is not valid JSON: ${(error as Error).message}`);
  }
  return { config: parseConfig(json), path: absolute, dir: dirname(absolute) };
}

/**
 * Validates a config object (already parsed from JSON): its shape, then what spans fields (each
 * namespace's effective rotation policy; the server section's fields).
 */
export function parseConfig(value: unknown): KeyringConfig {
  const result = configSchema.safeParse(value);
  if (!result.success) throw zodToOptionError(result.error);
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
export function zodToOptionError(error: z.ZodError, prefix?: string): InvalidOptionError {
  const described = error.issues.map((issue) => ({
    field: issuePath(issue, prefix),
    message: issueMessage(issue),
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

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.length === 1 ? 'is not a known key' : `unknown keys ${issue.keys.join(', ')}`;
  }
  if (issue.code === 'invalid_key') return issue.issues[0]?.message ?? issue.message;
  return issue.message;
}
