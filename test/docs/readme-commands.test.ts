/**
 * The README and the examples' READMEs cannot drift: every `sh` block in them is either run here,
 * run by CI (`npm ci`, `npm test`), or explicitly marked as needing a Temporal server. Blocks are
 * annotated with an HTML comment on the line before them:
 *   <!-- doctest: run -->             run here, in order, in one shell, next to a running `npm start`
 *   <!-- doctest: ci ... -->          run by .ci/run
 *   <!-- doctest: skip (reason) -->   not runnable here (needs the temporal CLI and a server, ...)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDirSync } from '../support/temp-dir.ts';

const ROOT = resolve(import.meta.dirname, '../..');

interface Block {
  file: string;
  line: number;
  lang: string;
  code: string;
  directive: string | undefined;
}

function shellBlocks(file: string): Block[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    const directive = /^<!-- doctest: (.+?) -->$/.exec(lines[i - 1] ?? '')?.[1];
    blocks.push({
      file: relative(ROOT, file),
      line: i + 1,
      lang: open[1]!,
      code: lines.slice(i + 1, end).join('\n'),
      directive,
    });
    i = end;
  }
  return blocks.filter((b) => b.lang === 'sh' || b.lang === 'bash');
}

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? markdownFiles(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : [],
  );
}

const documents = [join(ROOT, 'README.md'), ...markdownFiles(join(ROOT, 'examples')).sort()];
const blocks = documents.flatMap(shellBlocks);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number | null; output: string }>((done) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM a process group, wait for every member to exit, SIGKILL what is left after 10 s. */
async function stopGroup(pgid: number): Promise<void> {
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + 10_000;
  while (groupAlive(pgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (groupAlive(pgid)) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {}
    while (groupAlive(pgid)) await new Promise((r) => setTimeout(r, 50));
  }
}

describe('documented commands', () => {
  it('every shell block says how it is checked', () => {
    const unmarked = blocks.filter((b) => !b.directive || !/^(run|ci|skip \(.+\))/.test(b.directive));
    expect(unmarked.map((b) => `${b.file}:${b.line}`)).toEqual([]);
    expect(blocks.filter((b) => b.directive === 'run').length).toBeGreaterThanOrEqual(3);
  });

  it('CI runs the README test command and the install step', () => {
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    expect(ci).toMatch(/^npm ci\b/m);
    expect(ci).toMatch(/^npm test\b/m);
    const ciBlocks = blocks.filter((b) => b.directive?.startsWith('ci')).map((b) => b.code);
    expect(ciBlocks).toContain('npm test');
    expect(ciBlocks).toContain('npm ci && npm start');
  });

  describe('run as written next to `npm start`', () => {
    // A user's checkout: the repository's files, in a directory of its own so nothing is written
    // into the working tree.
    const workspace = tempDirSync('tk-readme-');
    let server: ChildProcess | undefined;
    let port = 0;
    const env = (): NodeJS.ProcessEnv => {
      const e: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_KEYRING_PORT: String(port) };
      for (const k of Object.keys(e))
        if (k.startsWith('TEMPORAL_KEYRING_') && k !== 'TEMPORAL_KEYRING_PORT') delete e[k];
      return e;
    };

    beforeAll(async () => {
      for (const entry of [
        'package.json',
        'node_modules',
        'src',
        'cli',
        'codec-server',
        'bin',
        'examples',
        'tsconfig.json',
      ]) {
        symlinkSync(join(ROOT, entry), join(workspace, entry));
      }
      port = await freePort();
      server = spawn('npm', ['start'], {
        cwd: workspace,
        env: env(),
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let log = '';
      await new Promise<void>((ready, fail) => {
        const timer = setTimeout(
          () => fail(new Error(`npm start did not listen within 60 s:\n${log}`)),
          60_000,
        );
        const collect = (d: Buffer) => {
          log += d;
          if (log.includes('codec server listening')) {
            clearTimeout(timer);
            ready();
          }
        };
        server!.stdout!.on('data', collect);
        server!.stderr!.on('data', collect);
        server!.on('exit', (code) => fail(new Error(`npm start exited (${code}):\n${log}`)));
      });
      expect(log).toContain('!!! DEV MODE');
    }, 90_000);

    afterAll(async () => {
      // The server writes into the workspace until its whole process group (npm, tsx, node) has
      // exited; removing the directory earlier races with those writes (ENOTEMPTY).
      if (server?.pid) await stopGroup(server.pid);
      rmSync(workspace, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    }, 30_000);

    it('every `doctest: run` block exits 0, in order, in one shell', async () => {
      const script = blocks
        .filter((b) => b.directive === 'run')
        .map(
          (b) =>
            `echo "### ${b.file}:${b.line}"\n${b.code.replaceAll('127.0.0.1:8888', `127.0.0.1:${port}`)}`,
        )
        .join('\n');
      const { code, output } = await run('bash', ['-euo', 'pipefail', '-c', script], workspace, env());
      expect(code, output).toBe(0);
      // What the README shows is what happens.
      expect(output).toContain(
        '{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJjYXJkIjoiNDExMSJ9"}]}',
      );
      // One keystore from the first command to the last: the CLI lists the key the server created
      // and decrypts what the server encrypted.
      expect(output).toMatch(/default\s+1\s+default\/v1\s+active/);
      expect(output).toMatch(/"payloads": \[\s+\{\s+"card": "4111"\s+\}/);
      expect(output).toContain('After a rotation it still decodes: true');
      expect(output).toContain('"customer": "Ada Lovelace"'); // examples/history: decoded offline
      expect(output).toContain('"charged 4200 cents"');
      expect(output).toContain('namespaces:  analytics, payments'); // examples/production: config valid
      expect(output).toMatch(/tkr_[A-Za-z0-9_-]{20,}/); // examples/ui-and-cli: token create
      const encoded = JSON.parse(readFileSync(join(workspace, 'encoded.json'), 'utf8'));
      expect(Buffer.from(encoded.payloads[0].metadata.encoding, 'base64').toString()).toBe(
        'binary/encrypted',
      );
      expect(Buffer.from(encoded.payloads[0].metadata['encryption-key-id'], 'base64').toString()).toBe(
        'default/v1',
      );
    }, 180_000);
  });
});
