import { KeystoreConflictError } from '../errors.ts';
import type { Keyring } from '../keyring/keyring.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import type { EmergencyOutcome } from './usage-meter.ts';

/**
 * The emergency rotation behind `onBudgetExhausted: "rotate"` (the default): when the active
 * version's reserved count reaches `maxEncryptions` in an encrypting process, that process makes
 * another version active at once instead of encrypting past the budget: it promotes the
 * prepublished version if there is one (its propagation delay cut short: a process that has not
 * loaded it yet refreshes on demand when it meets a payload under it), else rotates immediately.
 * Conditional on the spent version still being active, so that many processes hitting the budget
 * together rotate once. Runs with or without a rotator.
 *
 * Pipeline position: `UsageMeter` (budget spent) → this → the lifecycle owner (`KeyManager.promote` with force / `rotate` immediate).
 */
export function emergencyRotation(
  keyring: Keyring,
  logger: Logger = silentLogger,
): (namespace: string, version: number) => Promise<EmergencyOutcome> {
  return async (namespace, version) => {
    // Fresh from the keystore: another process may already have rotated.
    const versions = await keyring.versions(namespace);
    const active = versions.find((v) => v.state === 'active');
    if (active?.version !== version) return { active: active?.version, performed: undefined };
    const pending = versions.find((v) => v.state === 'prepublished');
    try {
      if (pending) {
        // Forced through the lifecycle owner (logged and audited as forced): encrypting past the
        // budget is the worse risk, and a process that has not loaded the version yet fetches it
        // on demand when it meets a payload under it.
        const result = await keyring.manager.promote(namespace, pending.version, { force: true });
        if (result.performed) {
          logger.warn(
            { namespace, from: version, to: pending.version, reason: 'budget-spent' },
            'emergency rotation: budget spent, prepublished version promoted before its propagation delay',
          );
          return { active: pending.version, performed: 'promoted' };
        }
      } else {
        const result = await keyring.manager.rotate(namespace, {
          mode: 'immediate',
          expectedActiveVersion: version,
        });
        if (result.performed) {
          logger.warn(
            { namespace, from: version, to: result.current.version, reason: 'budget-spent' },
            'emergency rotation: budget spent, new version active at once',
          );
          return { active: result.current.version, performed: 'rotated' };
        }
      }
    } catch (error) {
      if (!(error instanceof KeystoreConflictError)) throw error;
    }
    // Someone else rotated between our read and our write.
    const after = (await keyring.versions(namespace)).find((v) => v.state === 'active');
    return { active: after?.version, performed: undefined };
  };
}
