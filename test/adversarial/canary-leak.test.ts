import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { DEFAULT_ROTATION_POLICY } from '../../src/rotation/rotation-policy.ts';
import { Rotator } from '../../src/rotation/rotator.ts';
import { tempDir } from '../support/temp-dir.ts';
import { canaryForms, canaryPlaintext, findCanary } from './support/canary.ts';
import { type Answer, b64, jsonPayload, postJson, send, startServer } from './support/harness.ts';

/**
 * Secrets never leak: every flow runs with a canary plaintext, canary KEKs, canary tokens and
 * captured data keys, and every log line, error body, admin answer, /metrics output and CLI
 * stdout/stderr is searched for them in every encoding (text, hex, base64 at each alignment).
 * The only place a plaintext may appear is the answer of a successful decode: that is its point.
 */

const ProtoPayload = proto.temporal.api.common.v1.Payload;

class Secrets {
  readonly #forms = new Map<string, string[]>();
  add(name: string, secret: Uint8Array | string): void {
    this.#forms.set(name, canaryForms(secret));
  }
  /** Fails naming the secret and where it was found. */
  expectAbsent(haystack: string, where: string, except: string[] = []): void {
    for (const [name, forms] of this.#forms) {
      if (except.includes(name)) continue;
      const found = findCanary(haystack, forms);
      expect(found, `${name} leaked in ${where}: ${found}`).toBeUndefined();
    }
  }
}

describe('the canary detector', () => {
  it('finds a secret as text, hex and base64/base64url at every alignment inside longer data', () => {
    const secret = randomBytes(32);
    const forms = canaryForms(secret);
    for (let pre = 0; pre < 6; pre++) {
      const buffer = Buffer.concat([randomBytes(pre), secret, randomBytes(5)]);
      for (const encoding of ['base64', 'base64url', 'hex'] as const) {
        expect(findCanary(`x${buffer.toString(encoding)}y`, forms), `${encoding} +${pre}`).toBeDefined();
      }
    }
    expect(findCanary(randomBytes(4096).toString('base64'), forms)).toBeUndefined();
    const text = canaryPlaintext();
    expect(findCanary(`{"a":${JSON.stringify(text)}}`, canaryForms(text))).toBeDefined();
    expect(findCanary(b64(JSON.stringify({ secret: text })), canaryForms(text))).toBeDefined();
  });
});

describe('the codec server and the keyring', () => {
  it('never put plaintext, KEKs, data keys or tokens in logs, error bodies, admin answers or metrics', async () => {
    const secrets = new Secrets();
    const plaintext = canaryPlaintext();
    const kekBytes = randomBytes(32);
    const newKekBytes = randomBytes(32);
    const token = `tk_CANARY_${randomBytes(16).toString('hex')}`;
    const wrongToken = `tk_CANARY_WRONG_${randomBytes(16).toString('hex')}`;
    const metricsToken = `tk_CANARY_METRICS_${randomBytes(16).toString('hex')}`;
    secrets.add('plaintext', plaintext);
    secrets.add('kek', kekBytes);
    secrets.add('new kek', newKekBytes);
    secrets.add('token', token);
    secrets.add('wrong token', wrongToken);
    secrets.add('metrics token', metricsToken);

    const s = await startServer(
      {
        auth: {
          tokens: [
            {
              name: 'ops',
              sha256: tokenSha256Hex(token),
              namespaces: ['default', 'other'],
              operations: ['encode', 'decode', 'admin'],
            },
          ],
        },
        metrics: { tokenSha256: tokenSha256Hex(metricsToken) },
      },
      { kek: new LocalKek(kekBytes), namespaces: ['default', 'other'] },
    );
    const dataKeys = async () => {
      for (const ns of ['default', 'other']) {
        for (const v of await s.keyring.versions(ns)) {
          const key = await s.keyring.decryptionKey(ns, v.version).catch(() => undefined);
          if (key) secrets.add(`data key ${ns}/v${v.version}`, key.exportMaterial());
        }
      }
    };
    await dataKeys();

    const auth = { authorization: `Bearer ${token}` };
    const answers: [string, Answer][] = [];
    const record = (what: string, answer: Answer) => {
      answers.push([what, answer]);
      return answer;
    };
    const body = (value: unknown) => ({ payloads: [jsonPayload(value)] });

    // encode and decode (the decode answer is the one place the plaintext belongs)
    const encoded = record(
      'encode',
      await postJson(`${s.url}/default/encode`, body({ secret: plaintext }), auth),
    );
    expect(encoded.status).toBe(200);
    const decoded = await postJson(`${s.url}/default/decode`, encoded.json, auth);
    expect(decoded.text).toContain(b64(JSON.stringify({ secret: plaintext })).slice(0, 20));
    secrets.expectAbsent(decoded.text, 'the decode answer', ['plaintext']);
    const [cipher] = (encoded.json as { payloads: { metadata: Record<string, string>; data: string }[] })
      .payloads;
    const tampered = {
      ...cipher!,
      data: Buffer.from(Buffer.from(cipher!.data, 'base64').map((b, i) => (i === 200 ? b ^ 1 : b))).toString(
        'base64',
      ),
    };

    // errors of every kind
    record(
      'malformed',
      await postJson(`${s.url}/default/decode`, `{"payloads":[${JSON.stringify(plaintext)}`, auth),
    );
    record(
      'wrong type',
      await postJson(`${s.url}/default/encode`, { payloads: [{ data: plaintext }] }, auth),
    );
    record(
      'bad base64',
      await postJson(
        `${s.url}/default/encode`,
        { payloads: [{ metadata: { [plaintext]: plaintext }, data: 'AA' }] },
        auth,
      ),
    );
    record(
      'unauthenticated',
      await postJson(`${s.url}/default/encode`, body(plaintext), { authorization: `Bearer ${wrongToken}` }),
    );
    record(
      'unauthenticated raw',
      await postJson(`${s.url}/default/encode`, body(plaintext), { authorization: wrongToken }),
    );
    // (Namespace names are not secrets: an invalid one is echoed, so no canary goes in the name.)
    record(
      'invalid namespace',
      await postJson(`${s.url}/decode`, body(plaintext), { ...auth, 'x-namespace': '../etc' }),
    );
    record('namespace not found', await postJson(`${s.url}/missing/decode`, body(plaintext), auth));
    record('namespace mismatch', await postJson(`${s.url}/other/decode`, { payloads: [cipher] }, auth));
    record('decryption failed', await postJson(`${s.url}/default/decode`, { payloads: [tampered] }, auth));
    record(
      'unknown version',
      await postJson(
        `${s.url}/default/decode`,
        {
          payloads: [
            {
              ...cipher!,
              metadata: {
                ...cipher!.metadata,
                'encryption-key-version': b64('7'),
                'encryption-key-id': b64('default/v7'),
              },
            },
          ],
        },
        auth,
      ),
    );
    record(
      'too large',
      await postJson(
        `${s.url}/default/encode`,
        `{"payloads":[{"data":"${b64(plaintext).repeat(300_000)}"}]}`,
        auth,
      ),
    );
    record(
      'media type',
      await send(`${s.url}/default/encode`, {
        headers: { ...auth, 'content-type': 'text/plain' },
        body: plaintext,
      }),
    );
    record(
      'metrics unauthenticated',
      await send(`${s.url}/metrics`, { method: 'GET', headers: { authorization: `Bearer ${wrongToken}` } }),
    );

    // admin API: rotations, states, listings
    const admin = (path: string, json?: unknown) =>
      send(
        `${s.url}/admin/namespaces/${path}`,
        json === undefined
          ? { method: 'GET', headers: auth }
          : { headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(json) },
      );
    record('admin rotate', await admin('default/keys/rotate', { mode: 'immediate' }));
    record('admin prepublish', await admin('other/keys/rotate', { mode: 'prepublish' }));
    await dataKeys();
    record('admin list', await admin('default/keys'));
    record('admin bad body', await admin('default/keys/rotate', { mode: plaintext }));
    record('admin deprecate', await admin('default/keys/1/state', { state: 'deprecated' }));
    record('deprecated decode', await postJson(`${s.url}/default/decode`, { payloads: [cipher] }, auth));
    record('admin destroy', await admin('default/keys/1/state', { state: 'destroyed' }));
    record('destroyed decode', await postJson(`${s.url}/default/decode`, { payloads: [cipher] }, auth));
    record('admin bad transition', await admin('default/keys/1/state', { state: 'active' }));
    record(
      'encode after rotation',
      await postJson(`${s.url}/default/encode`, body({ secret: plaintext }), auth),
    );

    // The rotator: a 30-day maximum age has passed, so it prepublishes, then promotes.
    const rotator = new Rotator({
      keyring: s.keyring,
      keystore: s.keystore,
      policies: () => ({ ...DEFAULT_ROTATION_POLICY }),
      clock: s.clock,
      logger: s.logger,
    });
    s.clock.advance(31 * 86_400_000);
    const first = await rotator.runOnce();
    expect(first.actions.map((a) => a.action)).toContain('prepublished');
    s.clock.advance(DEFAULT_ROTATION_POLICY.propagationDelay + 1);
    await s.keyring.refresh();
    const second = await rotator.runOnce();
    expect(second.actions.map((a) => a.action)).toContain('promoted');
    await dataKeys();
    record(
      'encode after the rotator',
      await postJson(`${s.url}/default/encode`, body({ secret: plaintext }), auth),
    );

    // KEK rotation (rekey), then everything still works under the new KEK
    await s.keyring.rekey(new LocalKek(newKekBytes));
    record(
      'encode after rekey',
      await postJson(`${s.url}/default/encode`, body({ secret: plaintext }), auth),
    );
    record('readyz', await send(`${s.url}/readyz`, { method: 'GET' }));
    record('healthz', await send(`${s.url}/healthz`, { method: 'GET' }));
    const metrics = record(
      'metrics',
      await send(`${s.url}/metrics`, { method: 'GET', headers: { authorization: `Bearer ${metricsToken}` } }),
    );
    expect(metrics.status).toBe(200);

    for (const [what, answer] of answers) {
      secrets.expectAbsent(answer.text, `the answer to "${what}" (${answer.status})`);
      secrets.expectAbsent(JSON.stringify([...answer.headers]), `the headers of "${what}"`);
    }
    const logs = s.rawLogs();
    expect(logs.split('\n').length).toBeGreaterThan(40); // the logs were captured
    expect(logs).toContain('"channel":"audit"');
    secrets.expectAbsent(logs, 'the logs');
    // What is logged instead: stable codes.
    for (const code of [
      'ERR_DECRYPTION_FAILED',
      'ERR_UNAUTHENTICATED',
      'ERR_KEY_VERSION_DESTROYED',
      'ERR_NAMESPACE_MISMATCH',
    ]) {
      expect(logs).toContain(code);
    }
    await s.close();
  }, 60_000);
});

describe('the CLI', () => {
  const BIN = resolve(import.meta.dirname, '../../bin/temporal-keyring.js');
  interface Run {
    what: string;
    code: number;
    stdout: string;
    stderr: string;
  }
  const run = (what: string, args: string[], env: Record<string, string>) =>
    new Promise<Run>((done) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: 60_000 },
        (error, stdout, stderr) => done({ what, code: error ? Number(error.code ?? -1) : 0, stdout, stderr }),
      );
    });

  /**
   * Runs `serve --dev` on a free loopback port until it listens, sends a few requests (whose
   * answers are checked by the caller's own assertions only for status), then SIGTERM. Bounded: the
   * process is killed after 60 s at the latest.
   */
  async function serveAndExercise(
    dir: string,
    env: Record<string, string>,
    plaintext: string,
    payload: unknown,
    tampered: unknown,
  ): Promise<Run> {
    const child = spawn(
      process.execPath,
      [BIN, '--data-dir', dir, 'serve', '--dev', '--port', '0', '--log-level', 'debug'],
      {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const exited = new Promise<number>((done) => child.on('exit', (code) => done(code ?? -1)));
    try {
      let url: string | undefined;
      while (!url) {
        const line = `${stdout}\n${stderr}`.split('\n').find((l) => l.includes('codec server listening'));
        if (line) url = (JSON.parse(line) as { url: string }).url;
        else if (
          (await Promise.race([
            exited.then(() => 'exit'),
            once(child.stdout!, 'data').then(() => 'data'),
          ])) === 'exit'
        )
          break;
      }
      expect(url, `serve did not start: ${stdout}${stderr}`).toBeDefined();
      const encoded = await postJson(`${url}/payments/encode`, {
        payloads: [jsonPayload({ secret: plaintext })],
      });
      expect(encoded.status).toBe(200);
      expect((await postJson(`${url}/payments/decode`, { payloads: [payload] })).status).toBe(200);
      expect((await postJson(`${url}/payments/decode`, { payloads: [tampered] })).status).toBe(400);
      expect(
        (await postJson(`${url}/payments/decode`, `{"payloads":[${JSON.stringify(plaintext)}`)).status,
      ).toBe(400);
      expect((await send(`${url}/metrics`, { method: 'GET' })).status).toBe(200);
      child.kill('SIGTERM');
      return { what: 'serve', code: await exited, stdout, stderr };
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }

  it('never prints KEKs, passphrases, database passwords or data keys; plaintext only as decode output', async () => {
    const secrets = new Secrets();
    const plaintext = canaryPlaintext();
    const kek = randomBytes(32);
    const newKek = randomBytes(32);
    const wrongKek = randomBytes(32);
    const badKek = `CANARY-NOT-A-KEK-${randomBytes(8).toString('hex')}`;
    const passphrase = `CANARY-PASSPHRASE-${randomBytes(8).toString('hex')}`;
    const dbPassword = `CANARYDBPW${randomBytes(8).toString('hex')}`;
    secrets.add('plaintext', plaintext);
    secrets.add('kek', kek);
    secrets.add('new kek', newKek);
    secrets.add('wrong kek', wrongKek);
    secrets.add('bad kek', badKek);
    secrets.add('passphrase', passphrase);
    secrets.add('db password', dbPassword);

    const dir = join(await tempDir('tk-adv-canary-'), 'data');
    const env = { TEMPORAL_KEYRING_KEK: kek.toString('base64'), TEMPORAL_KEYRING_KEYSTORE: dir };
    const runs: Run[] = [];
    const cli = async (what: string, args: string[], e: Record<string, string> = env) => {
      const r = await run(what, args, e);
      runs.push(r);
      return r;
    };

    expect((await cli('create', ['keys', 'create', '-n', 'payments', '--json'])).code).toBe(0);
    expect((await cli('prepublish', ['keys', 'rotate', '-n', 'payments', '--prepublish'])).code).toBe(0);
    expect((await cli('promote', ['keys', 'rotate', '-n', 'payments', '--force', '--json'])).code).toBe(0);
    await cli('list', ['keys', 'list', '--json']);
    await cli('list table', ['keys', 'list']);
    await cli('config show', ['config', 'show', '--json']);
    await cli('config show text', ['config', 'show']);

    // A history with the canary, encrypted in-process with the same keystore and KEK.
    const opened = await openKeyring({
      keystore: dir,
      kek: { type: 'base64', value: kek.toString('base64') },
    });
    const codec = new EncryptionCodec({ namespace: 'payments', keys: opened.keyring });
    const [payload] = await codec.encode([defaultPayloadConverter.toPayload({ secret: plaintext })]);
    const json = (p: Payload) => ProtoPayload.toObject(ProtoPayload.fromObject(p), { bytes: String });
    const tampered: Payload = {
      ...payload!,
      data: Buffer.from(payload!.data!).map((b, i) => (i === 180 ? b ^ 1 : b)),
    };
    await opened.close();
    const history = join(dir, '..', 'history.json');
    await writeFile(
      history,
      JSON.stringify({ events: [{ eventId: '1', attrs: { input: { payloads: [json(payload!)] } } }] }),
    );
    const bad = join(dir, '..', 'tampered.json');
    await writeFile(bad, JSON.stringify({ payloads: [json(tampered)] }));

    const decoded = await cli('decode', ['decode', '-n', 'payments', '--input', history]);
    expect(decoded.code, decoded.stderr).toBe(0);
    // The decoded payload, in protobuf-JSON: its data (base64) holds the plaintext.
    expect(findCanary(decoded.stdout, canaryForms(plaintext))).toBeDefined();
    const failed = await cli('decode tampered', ['decode', '-n', 'payments', '--input', bad]);
    expect(failed.code).not.toBe(0);

    // Wrong, malformed and passphrase KEKs, and a database URL with a password.
    // (decode needs the KEK; `keys list` reads metadata only.)
    const decodeArgs = ['decode', '-n', 'payments', '--input', history];
    const wrong = await cli('wrong kek', decodeArgs, {
      ...env,
      TEMPORAL_KEYRING_KEK: wrongKek.toString('base64'),
    });
    expect(wrong.code).toBe(4);
    expect((await cli('bad kek', decodeArgs, { ...env, TEMPORAL_KEYRING_KEK: badKek })).code).not.toBe(0);
    const pw = await cli('passphrase', ['--kek-passphrase-env', 'PW', ...decodeArgs], {
      TEMPORAL_KEYRING_KEYSTORE: dir,
      PW: passphrase,
    });
    expect(pw.code).not.toBe(0);
    await cli(
      'db url',
      ['--keystore', `postgres://app:${dbPassword}@127.0.0.1:1/keys`, 'config', 'show', '--json'],
      {
        TEMPORAL_KEYRING_KEK: kek.toString('base64'),
      },
    );
    await cli(
      'db url text',
      ['--keystore', `postgres://app:${dbPassword}@127.0.0.1:1/keys`, 'config', 'show'],
      {
        TEMPORAL_KEYRING_KEK: kek.toString('base64'),
      },
    );

    // KEK rotation, then the new KEK works; the old one still reads every key for the propagation
    // delay after the rekey (the upgrade key: a process not yet given the new KEK keeps working).
    const rekey = await cli('rekey', ['keys', 'rekey', '--new-kek-env', 'NEW_KEK', '--json'], {
      ...env,
      NEW_KEK: newKek.toString('base64'),
    });
    expect(rekey.code, rekey.stderr).toBe(0);
    const after = { ...env, TEMPORAL_KEYRING_KEK: newKek.toString('base64') };
    expect((await cli('list after rekey', ['keys', 'list', '--json'], after)).code).toBe(0);
    const stale = await cli('decode with the old kek after rekey', decodeArgs, env);
    expect(stale.code, stale.stderr).toBe(0);
    const again = await cli('decode after rekey', decodeArgs, after);
    expect(again.code, again.stderr).toBe(0);

    // `serve` as a real process, logging at debug level: encode, decode and failures.
    const served = await serveAndExercise(dir, after, plaintext, json(payload!), json(tampered));
    runs.push(served);
    expect(served.code, served.stderr.slice(-500)).toBe(0);
    expect(served.stdout + served.stderr).toContain('ERR_DECRYPTION_FAILED'); // its logs were captured

    // Every data key, captured with the final KEK.
    const final = await openKeyring({
      keystore: dir,
      kek: { type: 'base64', value: newKek.toString('base64') },
    });
    for (const v of await final.keyring.versions('payments')) {
      secrets.add(
        `data key payments/v${v.version}`,
        (await final.keyring.decryptionKey('payments', v.version)).exportMaterial(),
      );
    }
    await final.close();

    for (const r of runs) {
      secrets.expectAbsent(r.stderr, `stderr of "${r.what}" (exit ${r.code})`);
      // The plaintext belongs in the output of a successful decode, nowhere else.
      secrets.expectAbsent(
        r.stdout,
        `stdout of "${r.what}" (exit ${r.code})`,
        r.what.startsWith('decode') && r.code === 0 ? ['plaintext'] : [],
      );
    }
  }, 180_000);
});
