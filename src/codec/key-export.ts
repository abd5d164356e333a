import {
  InvalidStateTransitionError,
  KeystoreConflictError,
  KeyVersionNotFoundError,
  NamespaceNotFoundError,
  NotExportableError,
} from '../errors.ts';
import type { Keyring } from '../keyring/keyring.ts';
import type { KekInfo } from '../keystore/keystore.ts';
import type { KeyState } from '../model/key-version.ts';
import { validateNamespace } from '../model/namespace.ts';
import { FORMATS, formatContextOf, type PayloadFormat } from './payload-format.ts';

/**
 * Exportable keys, Vault Transit's rule: a namespace's raw keys may leave the keyring (for workers
 * in other languages running their own AWS Encryption SDK) only once the namespace is marked
 * exportable, and a mark is never removed, since exported keys cannot be called back.
 *
 * Pipeline position: CLI `keys export` / admin API → this → Keyring (unwrapping) → keystore (the
 * mark, in the KEK record). Every path that exports or (un)marks goes through these functions:
 * the rule lives here, where its state is read and written.
 */

/** The ESDK names of one version, per payload format (docs/payload-format.md). */
export interface EsdkNames {
  /** Raw AES keyring "key namespace" / Python `provider_id`. */
  providerId: string;
  /** Raw AES keyring "key name" / Python `key_id`, with its trailing slash. */
  keyName: string;
  /** The exact encryption context a payload of this version carries. */
  encryptionContext: Record<string, string>;
}

export interface ExportedVersion {
  version: number;
  keyId: string;
  state: KeyState;
  /** The 32-byte AES-256 key, standard base64. Secret: never log it. */
  material: string;
  esdk: { format1: EsdkNames; format2: EsdkNames };
}

export interface KeyExport {
  namespace: string;
  /** When the namespace was marked exportable (epoch ms). */
  exportableSince: number;
  versions: ExportedVersion[];
  /** Versions whose material is not exported, and why (destroyed: gone; deprecated: may not decrypt). */
  skipped: { version: number; state: KeyState; reason: string }[];
}

/** When a namespace was marked exportable, or `undefined` if it never was. */
export async function exportableSince(keyring: Keyring, namespace: string): Promise<number | undefined> {
  validateNamespace(namespace);
  const info = await keyring.keystore.getKekInfo();
  return info?.exportableNamespaces?.find((e) => e.namespace === namespace)?.markedAt;
}

/**
 * Marks a namespace exportable (idempotent: an existing mark keeps its date). Irreversible.
 * Compare-and-set on the keystore's KEK record, retried when another process changed it meanwhile.
 */
export async function markExportable(
  keyring: Keyring,
  namespace: string,
): Promise<{ markedAt: number; changed: boolean }> {
  validateNamespace(namespace);
  if ((await keyring.versions(namespace)).length === 0) throw new NamespaceNotFoundError(namespace);
  for (let attempt = 0; ; attempt++) {
    const info = await keyring.keystore.getKekInfo();
    if (!info) throw new NamespaceNotFoundError(namespace);
    const existing = info.exportableNamespaces?.find((e) => e.namespace === namespace);
    if (existing) return { markedAt: existing.markedAt, changed: false };
    const markedAt = keyring.clock.now();
    const next: KekInfo = {
      ...info,
      exportableNamespaces: [...(info.exportableNamespaces ?? []), { namespace, markedAt }].sort((a, b) =>
        a.namespace < b.namespace ? -1 : 1,
      ),
    };
    try {
      await keyring.keystore.putKekInfo(next, info);
      return { markedAt, changed: true };
    } catch (error) {
      if (!(error instanceof KeystoreConflictError) || attempt >= 10) throw error;
    }
  }
}

/**
 * Applies a requested exportable setting: `true` marks; `false` is refused once marked (the mark
 * cannot be undone), and is a no-op on a namespace that was never marked.
 */
export async function setExportable(
  keyring: Keyring,
  namespace: string,
  exportable: boolean,
): Promise<{ exportable: boolean; markedAt?: number; changed: boolean }> {
  if (exportable) return { exportable: true, ...(await markExportable(keyring, namespace)) };
  const since = await exportableSince(keyring, namespace);
  if (since !== undefined) throw cannotUnmark(namespace, since);
  return { exportable: false, changed: false };
}

/** The error of an attempt to make an exportable namespace non-exportable again. */
export function cannotUnmark(namespace: string, markedAt: number): InvalidStateTransitionError {
  return new InvalidStateTransitionError(
    `namespace "${namespace}" was marked exportable on ${new Date(markedAt).toISOString()} and cannot be unmarked (exported keys cannot be called back); to retire exported keys, rotate and destroy their versions`,
  );
}

/**
 * The raw keys of a namespace's versions (all, or one), with the ESDK names another SDK needs.
 * Refused with `ERR_NOT_EXPORTABLE` unless the namespace is marked. Destroyed versions have no
 * material; deprecated ones are skipped too (they may not decrypt here, so they are not handed out).
 */
export async function exportKeys(
  keyring: Keyring,
  namespace: string,
  options: { version?: number } = {},
): Promise<KeyExport> {
  validateNamespace(namespace);
  const versions = await keyring.versions(namespace);
  if (versions.length === 0) throw new NamespaceNotFoundError(namespace);
  const since = await exportableSince(keyring, namespace);
  if (since === undefined) throw new NotExportableError(namespace);
  const selected =
    options.version === undefined ? versions : versions.filter((v) => v.version === options.version);
  if (selected.length === 0) throw new KeyVersionNotFoundError(namespace, options.version!);
  const result: KeyExport = { namespace, exportableSince: since, versions: [], skipped: [] };
  for (const v of selected) {
    if (v.state === 'destroyed' || v.state === 'deprecated') {
      result.skipped.push({
        version: v.version,
        state: v.state,
        reason: v.state === 'destroyed' ? 'material destroyed' : 'deprecated versions may not decrypt',
      });
      continue;
    }
    const material = (await keyring.decryptionKey(namespace, v.version)).exportMaterial();
    const encoded = Buffer.from(material).toString('base64');
    material.fill(0);
    result.versions.push({
      version: v.version,
      keyId: v.keyId,
      state: v.state,
      material: encoded,
      esdk: { format1: esdkNames(1, namespace, v.version), format2: esdkNames(2, namespace, v.version) },
    });
  }
  return result;
}

function esdkNames(format: PayloadFormat, namespace: string, version: number): EsdkNames {
  const names = FORMATS[format];
  return {
    providerId: names.providerId,
    keyName: names.keyName(namespace, version),
    encryptionContext: formatContextOf(format, namespace, version),
  };
}
