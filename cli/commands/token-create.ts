import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { CODEC_OPERATIONS, parseServerConfig, type TokenConfig } from '../../src/config/server-config.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { isValidNamespace } from '../../src/model/namespace.ts';
import { out, printJson } from '../output.ts';
import { listArg } from './parse.ts';

/** Prefix of generated tokens: makes them recognizable to secret scanners and people. */
export const TOKEN_PREFIX = 'tkr_';

/**
 * `token create`: a random API token for the codec server's static-token auth. The token is printed
 * once; the config only ever holds its SHA-256 (`server.auth.tokens[]`), so the file is no secret.
 */
export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('API tokens for the codec server');
  token
    .command('create')
    .description('create an API token; prints it once, with the config entry that holds its SHA-256')
    .requiredOption('--name <name>', 'who the token is for (shown in audit logs)')
    .requiredOption('--namespaces <list>', 'comma-separated namespaces it may use, or *')
    .option('--operations <list>', `comma-separated operations: ${CODEC_OPERATIONS.join(', ')}`, 'decode')
    .option('--json', 'print {"token", "entry"} as JSON')
    .action((options: { name: string; namespaces: string; operations: string; json?: boolean }) => {
      const namespaces = listArg(options.namespaces);
      if (namespaces.length === 0)
        throw new InvalidOptionError('--namespaces', 'must name at least one namespace');
      for (const ns of namespaces) {
        if (ns !== '*' && !isValidNamespace(ns)) {
          throw new InvalidOptionError(
            '--namespaces',
            `${JSON.stringify(ns)} is not a valid namespace name (or *)`,
          );
        }
      }
      const operations = listArg(options.operations);
      if (operations.length === 0)
        throw new InvalidOptionError('--operations', 'must name at least one operation');
      for (const op of operations) {
        if (!(CODEC_OPERATIONS as readonly string[]).includes(op)) {
          throw new InvalidOptionError(
            '--operations',
            `unknown operation ${JSON.stringify(op)} (use ${CODEC_OPERATIONS.join(', ')})`,
          );
        }
      }
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(options.name)) {
        throw new InvalidOptionError('--name', 'must be 1-64 letters, digits, ".", "_", "@" or "-"');
      }
      const secret = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      const entry = {
        name: options.name,
        sha256: tokenSha256Hex(secret),
        namespaces,
        operations: operations as TokenConfig['operations'],
      };
      // The server's own schema is the judge of the entry (dev: true only to skip its auth rule).
      parseServerConfig({ dev: true, auth: { tokens: [entry] } }, 'server');
      if (options.json) {
        printJson({ token: secret, entry });
        return;
      }
      out('API token (shown once; store it in a secret manager):');
      out(`  ${secret}`);
      out('');
      out('Add this entry to "server.auth.tokens" in the config file:');
      out(JSON.stringify(entry, null, 2).replace(/^/gm, '  '));
    });
}
