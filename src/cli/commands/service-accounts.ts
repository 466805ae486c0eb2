/** `keyport service-accounts list|create|delete`, through the Admin API. */
import type { Command } from 'commander';
import { AdminClient } from '../client.ts';
import { table, when } from '../format.ts';
import { type GlobalOptions, output } from './output.ts';

interface ServiceAccount {
  id: string;
  name: string;
  role: string;
  created_at: number;
  api_key?: { id: string; value: string } | null;
}

export function registerServiceAccountCommands(program: Command, globals: () => GlobalOptions): void {
  const accounts = program
    .command('service-accounts')
    .description("a project's service accounts (bot identities)");

  accounts
    .command('list')
    .requiredOption('--project <project_id>', 'project')
    .action(async (options: { project: string }) => {
      const items = await new AdminClient(globals()).listAll<ServiceAccount>(
        `/projects/${options.project}/service_accounts`,
      );
      output(globals(), items, () =>
        table(
          items.map((a) => ({ id: a.id, name: a.name, role: a.role, created: when(a.created_at) })),
          ['id', 'name', 'role', 'created'],
        ),
      );
    });

  accounts
    .command('create <name>')
    .requiredOption('--project <project_id>', 'project')
    .option('--no-key', 'create the account without a first key')
    .action(async (name: string, options: { project: string; key: boolean }) => {
      const account = await new AdminClient(globals()).post<ServiceAccount>(
        `/projects/${options.project}/service_accounts`,
        {
          name,
          ...(options.key ? {} : { create_service_account_only: true }),
        },
      );
      output(globals(), account, () =>
        [
          `Created service account ${account.id} (${account.name}).`,
          ...(account.api_key
            ? [
                '',
                `Secret key ${account.api_key.id} (shown only now; store it somewhere safe):`,
                '',
                `  ${account.api_key.value}`,
                '',
              ]
            : []),
        ].join('\n'),
      );
    });

  accounts
    .command('delete <service_account_id>')
    .requiredOption('--project <project_id>', 'project')
    .description('delete a service account and revoke all its keys')
    .action(async (id: string, options: { project: string }) => {
      const result = await new AdminClient(globals()).delete(
        `/projects/${options.project}/service_accounts/${id}`,
      );
      output(globals(), result, () => `Deleted service account ${id}; its keys are revoked.`);
    });
}
