import { Command } from 'commander';
import { ENV } from '../src/config/resolve-settings.ts';
import { registerConfigCommands } from './commands/config-show.ts';
import { registerDecodeCommand } from './commands/decode.ts';
import { registerKekCreateCommand } from './commands/kek-create.ts';
import { registerKeygenCommand } from './commands/keygen.ts';
import { registerKeysCreateCommand } from './commands/keys-create.ts';
import { registerKeysExportCommand } from './commands/keys-export.ts';
import { registerKeysListCommand } from './commands/keys-list.ts';
import { registerKeysRekeyCommand } from './commands/keys-rekey.ts';
import { registerKeysRotateCommand } from './commands/keys-rotate.ts';
import { registerKeysSetStateCommand } from './commands/keys-set-state.ts';
import { registerKeysStatusCommand } from './commands/keys-status.ts';
import { registerOperatorInitCommand } from './commands/operator-init.ts';
import { registerOperatorRekeyCommand } from './commands/operator-rekey.ts';
import { registerOperatorUnsealCommands } from './commands/operator-unseal.ts';
import { registerRewrapCommand } from './commands/rewrap.ts';
import { registerRotatorCommand } from './commands/rotator.ts';
import { registerTokenCommands } from './commands/token-create.ts';
import { EXIT, reportError } from './exit-codes.ts';

/** The package version, for `--version`. */
const VERSION = '0.2.0';

/**
 * The `temporal-keyring` command tree. Global options are read by every command through
 * context.ts; environment variables are resolved there too (not by commander), so that the
 * precedence flags > env > config file > defaults is applied in one place.
 */
export async function createProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('temporal-keyring')
    .description('Encryption keys for Temporal payloads: keys, KEKs, history decoding and the codec server')
    .option('--config <file>', `JSON config file (env ${ENV.config})`)
    .option('--data-dir <dir>', `file keystore directory (env ${ENV.dataDir}; default ./.temporal-keyring)`)
    .option('--keystore <url>', `keystore: a directory, file:DIR or postgres://... (env ${ENV.keystore})`)
    .option(
      '--kek-file <file>',
      `file holding the base64 KEK (env ${ENV.kekFile}; or the KEK itself in ${ENV.kek})`,
    )
    .option('--kek-passphrase-env <var>', 'derive the KEK from the passphrase in this environment variable')
    // Repeatable rather than variadic: `<file...>` would swallow the command name that follows.
    .option(
      '--previous-kek-file <file>',
      'file holding a further KEK accepted for unwrapping (during a KEK rotation); repeatable',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      '--unseal-keys-file <file>',
      'sealed keystore: file (mode 0600) with a threshold of its unseal keys, one per line',
    )
    .option('--pkcs11-module <so>', 'KEK in an HSM: path of the PKCS#11 module (with the three below)')
    .option('--pkcs11-token <label>', 'KEK in an HSM: token label')
    .option('--pkcs11-key <label>', 'KEK in an HSM: label of the AES-256 key in the token')
    .option('--pkcs11-pin-env <var>', 'KEK in an HSM: environment variable holding the user PIN')
    // No commander .version(): its --version would also capture `keys set-state --version N`.
    .addHelpText('beforeAll', `temporal-keyring ${VERSION} (temporal-keyring --version prints the version)\n`)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  registerKeygenCommand(program);

  const keys = program.command('keys').description('manage the key versions of namespaces');
  registerKeysCreateCommand(keys);
  registerKeysListCommand(keys);
  registerKeysRotateCommand(keys);
  registerKeysSetStateCommand(keys);
  registerKeysRekeyCommand(keys);
  registerKeysStatusCommand(keys);
  registerKeysExportCommand(keys);

  const operator = program
    .command('operator')
    .description('sealing with Shamir unseal keys: init, unseal, seal-status, seal, rekey');
  registerOperatorInitCommand(operator);
  registerOperatorUnsealCommands(operator);
  registerOperatorRekeyCommand(operator);
  registerKekCreateCommand(program.command('kek').description('KEKs held in an HSM (PKCS#11)'));

  registerDecodeCommand(program);
  registerRewrapCommand(program);
  registerTokenCommands(program);
  registerConfigCommands(program);
  // The codec server (Express, pino, the ESDK) loads only when `serve` runs: it would double the
  // start-up time of every other command. Elsewhere a stub lists it in the help.
  if (argv.slice(2).includes('serve')) {
    const { registerServeCommand } = await import('../codec-server/serve-command.ts');
    registerServeCommand(program);
  } else {
    program
      .command('serve')
      .description('run the codec server for the Temporal Web UI and CLI (see: serve --help)');
  }
  registerRotatorCommand(program);

  // Subcommands inherit exitOverride so that every exit goes through run() below.
  for (const command of allCommands(program)) command.exitOverride();
  return program;
}

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allCommands(c)]);
}

/**
 * Parses `argv` and runs the command. Returns the exit code; errors are reported once, on stderr,
 * by {@link reportError}.
 */
export async function run(argv: readonly string[] = process.argv): Promise<number> {
  const args = argv.slice(2);
  if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  try {
    await (await createProgram(argv)).parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    return reportError(error);
  }
}
