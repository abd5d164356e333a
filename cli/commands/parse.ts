import { InvalidOptionError } from '../../src/errors.ts';
import { validateNamespace } from '../../src/model/namespace.ts';

/** Argument parsers shared by commands: each error names the flag. */

export function namespaceArg(value: string): string {
  return validateNamespace(value);
}

export function versionArg(value: string, flag = '--version'): number {
  if (!/^[1-9][0-9]{0,15}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidOptionError(
      flag,
      `must be a key version number (1, 2, ...), got ${JSON.stringify(value)}`,
    );
  }
  return Number(value);
}

/** A comma-separated list, trimmed, without empty items or duplicates. */
export function listArg(value: string): string[] {
  return [
    ...new Set(
      value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
}
