/**
 * Commands that own the database: `init`, `serve`, `start` (init if needed, then serve) and
 * `recover-admin-key`. Their implementation is loaded only when one of them runs, so the
 * Admin API commands start without loading the database drivers or the server.
 */
import type { Command } from 'commander';
import { DEFAULT_BOOTSTRAP } from '../../accounts/bootstrap-defaults.ts';
import type { GlobalOptions } from './output.ts';

export interface InitOptions {
  orgName: string;
  email: string;
  name: string;
  projectName: string;
  /** Read the owner's dashboard password from standard input (init only). */
  passwordStdin?: boolean;
}

const actions = () => import('./server-actions.ts');

export function registerServerCommands(program: Command, globals: () => GlobalOptions): void {
  const withInitOptions = (command: Command) =>
    command
      .option('--org-name <name>', 'organization name', DEFAULT_BOOTSTRAP.organizationName)
      .option('--email <email>', "the owner's email", DEFAULT_BOOTSTRAP.ownerEmail)
      .option('--name <name>', "the owner's name", DEFAULT_BOOTSTRAP.ownerName)
      .option('--project-name <name>', 'first project', DEFAULT_BOOTSTRAP.projectName);

  withInitOptions(
    program
      .command('init')
      .description('create the organization, its owner, a first project and an admin key (printed once)')
      .option(
        '--password-stdin',
        "read the owner's dashboard password from standard input (headless: the owner signs in at once)",
      ),
  ).action(async (options: InitOptions) => (await actions()).init(options, globals()));

  program
    .command('recover-admin-key')
    .description(
      'issue a new admin key with direct database access (for a lost key; stop the server first on PGlite)',
    )
    .option('--org <organization_id>', 'organization (default: the first one)')
    .action(async (options: { org?: string }) => (await actions()).recoverAdminKey(options, globals()));

  program
    .command('serve')
    .description('serve the gateway, the Admin API and the dashboard API on one port')
    .action(async () => (await actions()).serve());

  withInitOptions(
    program
      .command('start')
      .description('initialize on first run (printing how to get in), then serve: what `npm start` runs'),
  ).action(async (options: InitOptions) => (await actions()).start(options));
}
