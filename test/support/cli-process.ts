import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = resolve(ROOT, 'cli/main.ts');

/** A `temporal-keyring` process: its output lines (stdout and stderr) as they come, and its exit. */
export interface CliProcess {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

export interface SpawnCliOptions {
  /** Added to the environment. */
  env?: NodeJS.ProcessEnv;
  /** Start from PATH and HOME only instead of this process's environment. */
  cleanEnv?: boolean;
  /** Written to stdin, which is then closed (default: stdin ignored). */
  input?: string;
  /** Bound on the process: SIGKILLed after this long at the latest. */
  killAfterMs: number;
}

/** Runs `temporal-keyring <args>` from the sources as a real process, bounded in time. */
export function spawnCli(args: string[], options: SpawnCliOptions): CliProcess {
  const base = options.cleanEnv
    ? { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }
    : process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    env: { ...base, ...options.env },
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (options.input !== undefined) child.stdin!.end(options.input);
  const lines: string[] = [];
  const collect = (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const kill = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
  const exited = new Promise<number | null>((done) =>
    child.on('exit', (code) => {
      clearTimeout(kill);
      done(code);
    }),
  );
  return { child, lines, exited };
}

/** A line as JSON, or undefined when it is not (a CLI error line, say). */
export function jsonLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Waits until the process has logged a JSON line with `msg`; rejects if it exits first. */
export async function logged(proc: CliProcess, msg: string): Promise<Record<string, unknown>> {
  for (;;) {
    const found = proc.lines.map(jsonLine).find((l) => l?.msg === msg);
    if (found) return found;
    const exit = await Promise.race([
      proc.exited,
      new Promise((r) => proc.child.stdout!.once('data', r)).then(() => 'more'),
    ]);
    if (exit !== 'more') throw new Error(`server exited (${String(exit)}): ${proc.lines.join('\n')}`);
  }
}

/** Resolves with the server's URL once it logs that it listens. */
export async function listening(proc: CliProcess): Promise<string> {
  return (await logged(proc, 'codec server listening')).url as string;
}
