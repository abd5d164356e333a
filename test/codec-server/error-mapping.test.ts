import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYRING_STATUS, PUBLIC_MESSAGES, toHttpError } from '../../codec-server/error-mapping.ts';
import { HttpError } from '../../codec-server/http-error.ts';
import * as errors from '../../src/errors.ts';
import {
  DecryptionFailedError,
  InternalError,
  KEYRING_ERROR_CODES,
  KeyringError,
  type KeyringErrorCode,
} from '../../src/errors.ts';
import { post, startTestServer, type TestServer, uiJsonPayload } from './support.ts';

/** Faults of the server or what it depends on: never answered as the caller's mistake. */
const RUNTIME_FAULTS: KeyringErrorCode[] = [
  'ERR_KEYRING_CLOSED',
  'ERR_METER_CLOSED',
  'ERR_RANDOM_SOURCE_FAILED',
  'ERR_KEY_PROVIDER_FAULT',
  'ERR_INTERNAL',
];

describe('the HTTP error map', () => {
  it('maps every library code, each to its own status and code', () => {
    expect(Object.keys(KEYRING_STATUS).sort()).toEqual([...KEYRING_ERROR_CODES].sort());
    for (const code of KEYRING_ERROR_CODES) {
      const answer = toHttpError(new KeyringError(code, `message of ${code}`));
      expect(answer.status, code).toBe(KEYRING_STATUS[code]);
      expect(answer.status >= 400 && answer.status < 600, code).toBe(true);
      expect(answer.body, code).toEqual({ code, message: PUBLIC_MESSAGES[code] ?? `message of ${code}` });
    }
  });

  it('answers runtime faults with 5xx, never 4xx', () => {
    for (const code of RUNTIME_FAULTS) expect(KEYRING_STATUS[code], code).toBeGreaterThanOrEqual(500);
    expect(toHttpError(new errors.MeterClosedError()).status).toBe(503);
    expect(toHttpError(new errors.RandomSourceError('short draw')).status).toBe(500);
    expect(toHttpError(new errors.KeyProviderFaultError('wrong key')).status).toBe(500);
  });

  it('has a class with a stable code for every code, and a code in the list for every class', () => {
    const classes = Object.values(errors).filter(
      (value): value is typeof KeyringError =>
        typeof value === 'function' && value.prototype instanceof KeyringError,
    );
    // Pkcs11KekError is one class for the ERR_PKCS11_* family: it takes its code per instance.
    const perInstance = (c: typeof KeyringError) => c === errors.Pkcs11KekError;
    const codes = new Set(classes.filter((c) => !perInstance(c)).map((c) => c.code));
    for (const c of classes) if (!perInstance(c)) expect(KEYRING_ERROR_CODES, c.name).toContain(c.code);
    for (const code of KEYRING_ERROR_CODES) {
      expect(codes.has(code) || code.startsWith('ERR_PKCS11_'), code).toBe(true);
    }
  });

  it('answers an unknown code, or a foreign error, with a generic 500: no silent 400', () => {
    const unknown = new KeyringError('ERR_FROM_THE_FUTURE' as KeyringErrorCode, 'details');
    expect(toHttpError(unknown)).toEqual({
      status: 500,
      body: { code: 'ERR_INTERNAL', message: 'internal error' },
      headers: {},
    });
    const inherited = new KeyringError('toString' as KeyringErrorCode, 'details');
    expect(toHttpError(inherited).status).toBe(500);
    expect(toHttpError(new Error('/etc/secret path')).body).toEqual({
      code: 'ERR_INTERNAL',
      message: 'internal error',
    });
    expect(toHttpError(new InternalError('invariant')).status).toBe(500);
    expect(toHttpError(new HttpError(403, 'ERR_FORBIDDEN', 'not yours')).status).toBe(403);
  });

  it('keeps a decryption failure opaque: the hint is its own field, never the code', () => {
    const answer = toHttpError(new DecryptionFailedError({ hint: 'the header names namespace "x"' }));
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 'ERR_DECRYPTION_FAILED',
        message: 'decryption failed',
        hint: 'the header names namespace "x"',
      },
      headers: {},
    });
    expect(toHttpError(new DecryptionFailedError()).body).toEqual({
      code: 'ERR_DECRYPTION_FAILED',
      message: 'decryption failed',
    });
  });
});

describe('a forged or misdirected payload over HTTP', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer(
      { dev: true },
      { namespaces: ['default', 'other'], deps: { payloadFormat: 2 } },
    );
  });
  afterAll(() => s.close());

  it('answers ERR_DECRYPTION_FAILED in the body, audit record and metrics; the header claim is a hint', async () => {
    const enc = await post(`${s.url}/other/encode`, { payloads: [uiJsonPayload('for other')] });
    expect(enc.status).toBe(200);
    const res = await post(`${s.url}/default/decode`, await enc.json(), { 'X-Request-Id': 'req-hint-1' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      code: 'ERR_DECRYPTION_FAILED',
      message: 'decryption failed',
      hint: 'the header names namespace "other", not "default"',
    });
    const audit = s.logs.find(
      (l) => (l.audit as { requestId?: string } | undefined)?.requestId === 'req-hint-1',
    )?.audit as Record<string, unknown>;
    expect(audit).toMatchObject({
      outcome: 'error',
      status: 400,
      code: 'ERR_DECRYPTION_FAILED',
      hint: 'the header names namespace "other", not "default"',
    });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/temporal_keyring_errors_total\{code="ERR_DECRYPTION_FAILED"\} 1/);
    expect(metrics).not.toMatch(/ERR_NAMESPACE_MISMATCH|hint|header names/);
  });
});
