import type { Command } from 'commander';
import { InvalidOptionError } from '../../src/errors.ts';
import { exitCodeOf } from '../exit-codes.ts';
import { out, printJson, progress } from '../output.ts';
import { readUnsealKeys } from './operator-shares.ts';

interface SealAnswer {
  sealed: boolean;
  t: number;
  n: number;
  progress: number;
  keystoreId?: string;
  code?: string;
  message?: string;
}

/**
 * `operator unseal`, `operator seal-status`, `operator seal`: a codec server's seal over HTTP
 * (`{url}/admin/unseal`, `/admin/seal-status`, `/admin/seal`). `--url` is the codec endpoint (with
 * its path prefix). Unseal keys are read without echo at a terminal, or from stdin, one per line.
 */
export function registerOperatorUnsealCommands(operator: Command): void {
  operator
    .command('unseal')
    .description('give unseal keys to a sealed codec server (typed without echo, or one per line on stdin)')
    .requiredOption('--url <url>', 'codec server URL, with its path prefix (e.g. http://127.0.0.1:8888)')
    .option('--reset', 'discard the unseal keys given so far')
    .option('--json', 'print the last answer as JSON')
    .action(async (options: { url: string; reset?: boolean; json?: boolean }) => {
      const base = baseUrl(options.url);
      if (options.reset) {
        report(await call(`${base}/admin/unseal`, 'POST', { reset: true }), options.json);
        return;
      }
      const keys = await readUnsealKeys({ prompt: 'Unseal key' });
      if (keys.length === 0) throw new InvalidOptionError('unseal key', 'none given');
      let last: SealAnswer | undefined;
      for (const key of keys) {
        last = await call(`${base}/admin/unseal`, 'POST', { key });
        if (last.code) break;
        if (!options.json)
          progress(`unseal progress ${last.progress}/${last.t}${last.sealed ? '' : ': unsealed'}`);
      }
      report(last!, options.json);
    });

  operator
    .command('seal-status')
    .description("show a codec server's seal status")
    .requiredOption('--url <url>', 'codec server URL, with its path prefix')
    .option('--json', 'print JSON')
    .action(async (options: { url: string; json?: boolean }) => {
      report(await call(`${baseUrl(options.url)}/admin/seal-status`, 'GET'), options.json);
    });

  operator
    .command('seal')
    .description('seal a codec server: it forgets its KEK and every key until unsealed again')
    .requiredOption('--url <url>', 'codec server URL, with its path prefix')
    .option(
      '--token-env <var>',
      'environment variable holding an admin token',
      'TEMPORAL_KEYRING_ADMIN_TOKEN',
    )
    .option('--json', 'print JSON')
    .action(async (options: { url: string; tokenEnv: string; json?: boolean }) => {
      const token = process.env[options.tokenEnv];
      report(await call(`${baseUrl(options.url)}/admin/seal`, 'POST', {}, token), options.json);
    });
}

function baseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidOptionError('--url', 'must be an http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidOptionError('--url', 'must be an http:// or https:// URL');
  }
  return url.toString().replace(/\/+$/, '');
}

async function call(url: string, method: 'GET' | 'POST', body?: object, token?: string): Promise<SealAnswer> {
  const headers: Record<string, string> = {};
  if (body) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
  } catch (cause) {
    throw new InvalidOptionError(
      '--url',
      `cannot reach ${new URL(url).origin} (${(cause as Error).message})`,
    );
  }
  const answer = (await response.json().catch(() => ({}))) as SealAnswer;
  if (!response.ok && !answer.code) answer.code = `HTTP_${response.status}`;
  return answer;
}

function report(answer: SealAnswer, json: boolean | undefined): void {
  if (answer.code) {
    process.stderr.write(`temporal-keyring: ${answer.message ?? 'request failed'} [${answer.code}]\n`);
    process.exitCode = exitCodeOf(answer.code);
    return;
  }
  if (json) {
    printJson(answer);
    return;
  }
  out(`Sealed:    ${answer.sealed}`);
  out(`Threshold: ${answer.t}`);
  out(`Shares:    ${answer.n}`);
  out(`Progress:  ${answer.progress}/${answer.t}`);
  if (answer.keystoreId) out(`Keystore:  ${answer.keystoreId}`);
}
