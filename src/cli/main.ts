/** `keyport`: the command line. */
import { Command, CommanderError } from 'commander';
import { UserError } from '../core/user-error.ts';
import { registerAdminKeyCommands } from './commands/admin-keys.ts';
import { registerAuditCommands } from './commands/audit.ts';
import { registerBillingCommands } from './commands/billing.ts';
import { registerKeyCommands } from './commands/keys.ts';
import { registerLimitCommands } from './commands/limits.ts';
import { registerMockUpstreamCommands } from './commands/mock-upstream.ts';
import type { GlobalOptions } from './commands/output.ts';
import { registerProjectCommands } from './commands/projects.ts';
import { registerServerCommands } from './commands/server-commands.ts';
import { registerServiceAccountCommands } from './commands/service-accounts.ts';

export function buildProgram(): Command {
  const program = new Command('keyport')
    .description('Keyport: API keys, gateway, limits and usage for OpenAI-compatible APIs')
    .option(
      '--url <url>',
      'Keyport server for admin commands (default: $KEYPORT_URL or http://127.0.0.1:$KEYPORT_PORT)',
    )
    .option('--json', 'print JSON objects instead of tables')
    .showHelpAfterError()
    .exitOverride();
  const globals = () => program.opts<GlobalOptions>();
  registerServerCommands(program, globals);
  registerKeyCommands(program, globals);
  registerProjectCommands(program, globals);
  registerAdminKeyCommands(program, globals);
  registerServiceAccountCommands(program, globals);
  registerLimitCommands(program, globals);
  registerBillingCommands(program, globals);
  registerAuditCommands(program, globals);
  registerMockUpstreamCommands(program);
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    process.stderr.write(`keyport: ${error instanceof UserError ? error.message : (error as Error).stack}\n`);
    process.exitCode = 1;
  }
}
