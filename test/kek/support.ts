import { type CliProcess, spawnCli as spawnCliProcess } from '../support/cli-process.ts';

export { listening } from '../support/cli-process.ts';

export type Proc = CliProcess;

/** Runs `temporal-keyring <args>` as a real process (killed after 90 s at the latest). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Proc {
  return spawnCliProcess(args, { env, cleanEnv: true, input: input ?? '', killAfterMs: 90_000 });
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
