import { randomBytes } from 'node:crypto';

/**
 * Canary secrets: distinctive values fed through every flow, then searched for in every output.
 * A secret leaks not only verbatim but also encoded, so each canary is searched in every form an
 * output might carry it: UTF-8/latin1 text, hex (both cases), and base64/base64url at each of the
 * three byte alignments it can fall on inside a longer encoded buffer.
 */
export function canaryForms(secret: Uint8Array | string): string[] {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  const forms = new Set<string>();
  if (typeof secret === 'string') forms.add(secret);
  forms.add(bytes.toString('hex'));
  forms.add(bytes.toString('hex').toUpperCase());
  for (const shift of [0, 1, 2]) {
    const shifted = Buffer.concat([Buffer.alloc(shift), bytes]);
    for (const encoding of ['base64', 'base64url'] as const) {
      const text = shifted.toString(encoding).replace(/=+$/, '');
      // Drop the characters that also depend on the neighbouring bytes: leading (shift) and trailing.
      const start = shift === 0 ? 0 : 4;
      const core = text.slice(start, text.length - 4);
      if (core.length >= 16) forms.add(core);
    }
  }
  return [...forms];
}

/** The first canary form found in `haystack`, with some context, or undefined. */
export function findCanary(haystack: string, forms: readonly string[]): string | undefined {
  for (const form of forms) {
    const at = haystack.indexOf(form);
    if (at >= 0)
      return `"${form}" at ${at}: …${haystack.slice(Math.max(0, at - 80), at + form.length + 20)}…`;
  }
  return undefined;
}

export const canaryPlaintext = () => `CANARY-PLAINTEXT-${randomBytes(12).toString('hex')}`;
