import { DefaultFailureConverter } from '@temporalio/common';

/**
 * The failure converter {@link KeyringPlugin} installs (by path: the SDK loads failure converters
 * inside the workflow sandbox too, so it takes a module, not an object). `encodeCommonAttributes`
 * moves each failure's message and stack trace into an encoded payload, which the payload codec
 * then encrypts like any other: Temporal's history keeps only "Encoded failure" in clear text.
 *
 * Workflow-safe: imports nothing but `@temporalio/common`.
 */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
