import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);

it('examples/codec-roundtrip.ts runs as the README says and never shows plaintext in what Temporal stores', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/codec-roundtrip.ts'], {
    timeout: 60_000,
  });
  const stored = stdout.slice(stdout.indexOf('Temporal stores:'), stdout.indexOf('The workflow receives:'));
  expect(stored).toContain(Buffer.from('binary/encrypted').toString('base64'));
  expect(stored).toContain(Buffer.from('default/v1').toString('base64'));
  expect(stored).not.toContain('4111111111111111');
  expect(Buffer.from(stored.match(/"data": "([^"]+)"/)![1]!, 'base64').toString('latin1')).not.toContain(
    'Ada',
  );
  expect(stdout).toContain(
    'The workflow receives: {"customer":"Ada Lovelace","cardNumber":"4111111111111111","amountCents":4200}',
  );
  expect(stdout).toContain('After a rotation it still decodes: true');
});
