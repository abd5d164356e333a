import { readFile, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { InvalidOptionError } from '../../src/errors.ts';

/**
 * Reads unseal keys for the operator commands: from a file (owner-only, one per line), from
 * stdin when it is not a terminal (one per line), or typed at the terminal without echo. An
 * unseal key is never printed, logged or passed on a command line (where `ps` would show it).
 */
export async function readUnsealKeys(options: {
  file?: string;
  prompt: string;
  count?: number;
}): Promise<string[]> {
  if (options.file !== undefined) {
    const info = await stat(options.file).catch(() => undefined);
    if (!info?.isFile()) throw new InvalidOptionError('--unseal-keys-file', `cannot read ${options.file}`);
    if ((info.mode & 0o077) !== 0) {
      throw new InvalidOptionError(
        '--unseal-keys-file',
        `${options.file} may be read by group or others; restrict it with: chmod 600 ${options.file}`,
      );
    }
    return lines(await readFile(options.file, 'utf8'));
  }
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return lines(Buffer.concat(chunks).toString('utf8'));
  }
  const keys: string[] = [];
  for (let i = 0; i < (options.count ?? 1); i++)
    keys.push(await promptHidden(`${options.prompt} (${i + 1}): `));
  return keys.filter((k) => k !== '');
}

function lines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

async function promptHidden(prompt: string): Promise<string> {
  process.stderr.write(prompt);
  const muted = new Writable({ write: (_chunk, _enc, done) => done() });
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  try {
    return await new Promise<string>((resolve) => rl.question('', (answer) => resolve(answer.trim())));
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}
