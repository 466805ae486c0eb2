/** `keyport admin-keys list|create|revoke`, through the Admin API. */
import type { Command } from 'commander';
import { AdminClient } from '../client.ts';
import { parseDuration, table, when } from '../format.ts';
import { type GlobalOptions, output } from './output.ts';

interface AdminKey {
  id: string;
  name: string;
  redacted_value: string;
  created_at: number;
  last_used_at: number | null;
  expires_at: number | null;
  value?: string;
}

export function registerAdminKeyCommands(program: Command, globals: () => GlobalOptions): void {
  const adminKeys = program
    .command('admin-keys')
    .description('organization admin keys (for the Admin API and this CLI)');

  adminKeys.command('list').action(async () => {
    const items = await new AdminClient(globals()).listAll<AdminKey>('/admin_api_keys');
    output(globals(), items, () =>
      table(
        items.map((k) => ({
          id: k.id,
          name: k.name,
          key: k.redacted_value,
          created: when(k.created_at),
          'last used': when(k.last_used_at),
          expires: when(k.expires_at),
        })),
        ['id', 'name', 'key', 'created', 'last used', 'expires'],
      ),
    );
  });

  adminKeys
    .command('create')
    .requiredOption('--name <name>', 'a name to recognise the key by')
    .option('--expires-in <duration>', 'expire after a duration: 3600, 30m, 12h, 90d')
    .action(async (options: { name: string; expiresIn?: string }) => {
      const key = await new AdminClient(globals()).post<AdminKey>('/admin_api_keys', {
        name: options.name,
        ...(options.expiresIn ? { expires_in_seconds: parseDuration(options.expiresIn) } : {}),
      });
      output(globals(), key, () =>
        [
          `Created admin key ${key.id}.`,
          '',
          'Secret key (shown only now; store it somewhere safe):',
          '',
          `  ${key.value}`,
          '',
        ].join('\n'),
      );
    });

  adminKeys
    .command('revoke <key_id>')
    .alias('delete')
    .action(async (id: string) => {
      const result = await new AdminClient(globals()).delete<{ id: string }>(`/admin_api_keys/${id}`);
      output(globals(), result, () => `Revoked admin key ${id}.`);
    });
}
