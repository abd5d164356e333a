import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = resolve(ROOT, 'cli/main.ts');

export interface Proc {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

/** Runs `temporal-keyring <args>` as a real process (killed after 90 s at the latest). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin!.end(input ?? '');
  const lines: string[] = [];
  const collect = (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const kill = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const exited = new Promise<number | null>((done) =>
    child.on('exit', (code) => {
      clearTimeout(kill);
      done(code);
    }),
  );
  return { child, lines, exited };
}

/** Runs a CLI command to completion. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  input?: string,
): Promise<{ code: number | null; output: string }> {
  const proc = spawnCli(args, env, input);
  const code = await proc.exited;
  return { code, output: proc.lines.join('\n') };
}

/** Resolves with the URL once the server logs that it listens. */
export async function listening(proc: Proc): Promise<string> {
  for (;;) {
    const line = proc.lines.find((l) => l.includes('codec server listening'));
    if (line) return (JSON.parse(line) as { url: string }).url;
    const exit = await Promise.race([
      proc.exited,
      new Promise((r) => proc.child.stdout!.once('data', r)).then(() => 'more'),
    ]);
    if (exit !== 'more') throw new Error(`server exited (${String(exit)}): ${proc.lines.join('\n')}`);
  }
}

export function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

export function payload(value: unknown) {
  return { metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(value)) };
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    headers: response.headers,
  };
}
