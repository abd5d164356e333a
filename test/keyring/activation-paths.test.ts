/**
 * Every path that activates a key version goes through the lifecycle owner (KeyManager), so the
 * propagation delay holds on each of them without `force` and is passed with it: library rotate
 * with a pending version, rotator, admin API rotate and state, CLI rotate and set-state; on the
 * file and the PostgreSQL keystore.
 */
import { describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import type { LifecycleEvent } from '../../src/keyring/key-manager.ts';
import { openKeystore } from '../../src/keystore/open-keystore.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { DEFAULT_ROTATION_POLICY } from '../../src/rotation/rotation-policy.ts';
import { Rotator } from '../../src/rotation/rotator.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { cli } from '../cli/run-cli.ts';
import { startTestServer } from '../codec-server/support.ts';
import { keystoreBackends } from '../support/keystore-backends.ts';

const DELAY = DEFAULT_ROTATION_POLICY.propagationDelay; // 2 min
const NS = 'payments';
const ADMIN_TOKEN = 'tk_admin_5b1d9f3a7c0e2b4d6f8a1c3e5b7d9f0a';

const backends = keystoreBackends('activate');

/** A keystore with namespace NS (v1 active), opened on a manual clock at `start`. */
async function seeded(location: string, kek: string, start = Date.now()) {
  const clock = new ManualClock(start);
  const events: LifecycleEvent[] = [];
  const opened = await openKeyring({
    keystore: location,
    createIfMissing: true,
    kek: { type: 'base64', value: kek },
    clock,
    meter: false,
    onLifecycleEvent: (e) => events.push(e),
  });
  if ((await opened.keyring.versions(NS)).length === 0) await opened.keyring.manager.createNamespace(NS);
  return { ...opened, clock, events };
}

const states = async (k: { versions(ns: string): Promise<{ version: number; state: string }[]> }) =>
  (await k.versions(NS)).map((v) => `${v.version}:${v.state}`);

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: { code?: string }) => e.code ?? String(e),
  );

describe.each(backends)('every activation path holds the propagation delay: $name', (backend) => {
  it('library: rotate immediate with a pending version, promote and set-state active', async () => {
    const s = await seeded(await backend.location(), generateKekBase64());
    const m = s.keyring.manager;
    try {
      await m.rotate(NS, { mode: 'prepublish' });
      s.clock.advance(DELAY - 1);
      expect(await codeOf(m.rotate(NS))).toBe('ERR_INVALID_STATE_TRANSITION');
      expect(await codeOf(m.promote(NS, 2))).toBe('ERR_INVALID_STATE_TRANSITION');
      expect(await codeOf(m.setState(NS, 2, 'active'))).toBe('ERR_INVALID_STATE_TRANSITION');
      expect(await states(s.keyring)).toEqual(['1:active', '2:prepublished']);
      expect(s.events.filter((e) => e.forced)).toEqual([]);
      // force is the explicit way past it, and it is reported.
      expect(await m.rotate(NS, { force: true })).toMatchObject({ performed: true, current: { version: 2 } });
      expect(s.events.at(-1)).toMatchObject({ action: 'promote', version: 2, forced: true });
      // Once the delay has passed, no force is needed.
      await m.rotate(NS, { mode: 'prepublish' });
      s.clock.advance(DELAY);
      expect(await m.rotate(NS)).toMatchObject({ performed: true, current: { version: 3, state: 'active' } });
      expect(s.events.at(-1)).toMatchObject({ action: 'promote', version: 3, forced: false });
    } finally {
      await s.close();
    }
  });

  it('rotator: waits for the delay, then promotes', async () => {
    const s = await seeded(await backend.location(), generateKekBase64());
    try {
      const rotator = new Rotator({
        keyring: s.keyring,
        keystore: s.keystore,
        policies: () => DEFAULT_ROTATION_POLICY,
        clock: s.clock,
      });
      await s.keyring.manager.rotate(NS, { mode: 'prepublish' });
      s.clock.advance(DELAY - 1);
      expect((await rotator.runOnce()).actions).toMatchObject([
        { namespace: NS, action: 'waiting-for-propagation', version: 2 },
      ]);
      expect(await states(s.keyring)).toEqual(['1:active', '2:prepublished']);
      s.clock.advance(1);
      expect((await rotator.runOnce()).actions).toMatchObject([
        { namespace: NS, action: 'promoted', version: 2 },
      ]);
      await rotator.stop();
    } finally {
      await s.close();
    }
  });

  it('admin API: rotate and state refuse without "force" (409) and pass with it, audited', async () => {
    const location = await backend.location();
    const kek = generateKekBase64();
    const keystore = await openKeystore(location);
    const clock = new ManualClock(Date.now());
    const server = await startTestServer(
      {
        auth: {
          tokens: [
            { name: 'admin', sha256: tokenSha256Hex(ADMIN_TOKEN), namespaces: ['*'], operations: ['admin'] },
          ],
        },
      },
      { keystore, clock, namespaces: [NS], kek: LocalKek.fromBase64(kek) },
    );
    const post = async (path: string, body: object) => {
      const r = await fetch(`${server.url}/admin/namespaces/${NS}/keys/${path}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    try {
      expect((await post('rotate', { mode: 'prepublish' })).status).toBe(200);
      clock.advance(DELAY - 1);
      const early = await post('rotate', {});
      expect(early.status).toBe(409);
      expect(early.body.code).toBe('ERR_INVALID_STATE_TRANSITION');
      const earlyState = await post('2/state', { state: 'active' });
      expect(earlyState.status).toBe(409);
      expect(await states(server.keyring)).toEqual(['1:active', '2:prepublished']);
      const forced = await post('2/state', { state: 'active', force: true });
      expect(forced).toMatchObject({ status: 200, body: { version: 2, state: 'active', performed: true } });
      // The forced activation reaches the audit log at warn.
      const audit = server.logs.filter((l) => (l.audit as { forced?: boolean } | undefined)?.forced === true);
      expect(audit).toMatchObject([{ level: 40, audit: { action: 'key-set-state', version: 2 } }]);

      expect((await post('rotate', { mode: 'prepublish' })).status).toBe(200);
      expect((await post('rotate', {})).status).toBe(409);
      const forcedRotate = await post('rotate', { force: true });
      expect(forcedRotate).toMatchObject({ status: 200, body: { performed: true, current: { version: 3 } } });
      expect((await post('rotate', { mode: 'prepublish' })).status).toBe(200);
      clock.advance(DELAY);
      expect(await post('rotate', {})).toMatchObject({ status: 200, body: { current: { version: 4 } } });
    } finally {
      await server.close();
      await keystore.close();
    }
  });

  it('CLI: rotate and set-state refuse without --force (exit 5) and pass with it', {
    timeout: 120_000,
  }, async () => {
    const location = await backend.location();
    const kek = generateKekBase64();
    const env = { TEMPORAL_KEYRING_KEYSTORE: location, TEMPORAL_KEYRING_KEK: kek };
    const s = await seeded(location, kek);
    await s.keyring.manager.rotate(NS, { mode: 'prepublish' }); // just now: the delay has not passed
    await s.close();

    const rotate = await cli(['keys', 'rotate', '-n', NS], { env });
    expect(rotate.code, rotate.stderr).toBe(5);
    expect(rotate.stderr).toContain('ERR_INVALID_STATE_TRANSITION');
    const setState = await cli(['keys', 'set-state', '-n', NS, '--version', '2', '--state', 'active'], {
      env,
    });
    expect(setState.code, setState.stderr).toBe(5);
    const forced = await cli(
      ['keys', 'set-state', '-n', NS, '--version', '2', '--state', 'active', '--force'],
      {
        env,
      },
    );
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain(`${NS}/v2: prepublished -> active`);

    // Prepublished long enough ago: the CLI activates it without --force.
    const past = await seeded(location, kek, Date.now() - 2 * DELAY);
    await past.keyring.manager.rotate(NS, { mode: 'prepublish' });
    await past.close();
    const due = await cli(['keys', 'rotate', '-n', NS, '--json'], { env });
    expect(due.code, due.stderr).toBe(0);
    expect(JSON.parse(due.stdout)).toMatchObject({
      performed: true,
      current: { version: 3, state: 'active' },
    });
    const forcedRotate = await cli(['keys', 'rotate', '-n', NS, '--prepublish'], { env });
    expect(forcedRotate.code).toBe(0);
    expect((await cli(['keys', 'rotate', '-n', NS], { env })).code).toBe(5);
    const passed = await cli(['keys', 'rotate', '-n', NS, '--force', '--json'], { env });
    expect(JSON.parse(passed.stdout)).toMatchObject({
      performed: true,
      current: { version: 4, state: 'active' },
    });
  });
});
