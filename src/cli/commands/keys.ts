/** `keyport keys create|list|show|update|rotate|revoke`: project and service-account keys, through the Admin API. */
import type { Command } from 'commander';
import { AdminClient, CliError } from '../client.ts';
import { list, parseDuration, table, when } from '../format.ts';
import { type GlobalOptions, output } from './output.ts';

interface ProjectKey {
  id: string;
  name: string;
  redacted_value: string;
  created_at: number;
  last_used_at: number | null;
  expires_at: number | null;
  scopes: string[];
  allowed_models: string[];
  allowed_ips: string[];
  enabled: boolean;
  owner: {
    type?: string;
    user?: { id: string; email: string };
    service_account?: { id: string; name: string };
  };
  value?: string;
}

interface PermissionOptions {
  scopes?: string;
  readOnly?: boolean;
  allPermissions?: boolean;
  models?: string;
  ips?: string;
  expiresIn?: string;
}

export function registerKeyCommands(program: Command, globals: () => GlobalOptions): void {
  const keys = program.command('keys').description('project and service-account API keys');

  const withPermissions = (command: Command) =>
    command
      .option(
        '--scopes <scopes>',
        'restricted scopes, comma-separated (e.g. api.model.read,api.model.request)',
      )
      .option('--read-only', 'read-only key (scope api.all.read)')
      .option('--models <patterns>', 'model allow-list, comma-separated globs (e.g. "gpt-4o*,llama-*")')
      .option('--ips <cidrs>', 'IP allow-list, comma-separated IPv4/IPv6 CIDRs')
      .option('--expires-in <duration>', 'expire after a duration: 3600, 30m, 12h, 90d');

  withPermissions(
    keys
      .command('create')
      .description('create a key; its secret is printed once')
      .requiredOption('--name <name>', 'a name to recognise the key by')
      .option('--project <project_id>', 'project (default: $KEYPORT_PROJECT, or the only project)')
      .option(
        '--service-account <service_account_id>',
        'issue the key to this service account instead of you',
      ),
  ).action(
    async (options: PermissionOptions & { name: string; project?: string; serviceAccount?: string }) => {
      const client = new AdminClient(globals());
      const project = await resolveProject(client, options.project);
      const body = { name: options.name, ...restrictionsFrom(options) };
      const key = options.serviceAccount
        ? await client.post<ProjectKey>(
            `/projects/${project}/service_accounts/${options.serviceAccount}/api_keys`,
            body,
          )
        : await client.post<ProjectKey>(`/projects/${project}/api_keys`, body);
      output(globals(), key, () => issued(key, `Created ${key.id} in ${project}.`));
    },
  );

  keys
    .command('list')
    .description('list the keys of a project (redacted)')
    .option('--project <project_id>', 'project (default: $KEYPORT_PROJECT, or the only project)')
    .action(async (options: { project?: string }) => {
      const client = new AdminClient(globals());
      const project = await resolveProject(client, options.project);
      const items = await client.listAll<ProjectKey>(`/projects/${project}/api_keys`);
      output(globals(), items, () =>
        table(
          items.map((key) => ({
            id: key.id,
            name: key.name,
            key: key.redacted_value,
            permissions: permissionsLabel(key.scopes),
            created: when(key.created_at),
            'last used': when(key.last_used_at),
            expires: when(key.expires_at),
            status: key.enabled ? 'enabled' : 'disabled',
          })),
          ['id', 'name', 'key', 'permissions', 'created', 'last used', 'expires', 'status'],
        ),
      );
    });

  keys
    .command('show <key_id>')
    .description('show one key (redacted)')
    .option('--project <project_id>', 'project (default: found automatically)')
    .action(async (keyId: string, options: { project?: string }) => {
      const client = new AdminClient(globals());
      const project = await projectOfKey(client, keyId, options.project);
      const key = await client.get<ProjectKey>(`/projects/${project}/api_keys/${keyId}`);
      output(globals(), key, () => describe(key, project));
    });

  withPermissions(
    keys
      .command('update <key_id>')
      .description('change a key: name, permissions, models, IPs, expiry, enabled')
      .option('--project <project_id>', 'project (default: found automatically)')
      .option('--name <name>', 'new name')
      .option('--all-permissions', 'remove restrictions (all permissions)')
      .option('--no-expiry', 'remove the expiry')
      .option('--enable', 'enable the key')
      .option('--disable', 'disable the key (requests are refused until enabled)'),
  ).action(
    async (
      keyId: string,
      options: PermissionOptions & {
        project?: string;
        name?: string;
        expiry?: boolean;
        enable?: boolean;
        disable?: boolean;
      },
    ) => {
      if (options.enable && options.disable) throw new CliError('--enable and --disable exclude each other');
      const client = new AdminClient(globals());
      const project = await projectOfKey(client, keyId, options.project);
      const body: Record<string, unknown> = { ...restrictionsFrom(options) };
      if (options.name !== undefined) body.name = options.name;
      if (options.expiry === false) body.expires_at = null;
      if (options.enable) body.enabled = true;
      if (options.disable) body.enabled = false;
      if (Object.keys(body).length === 0)
        throw new CliError('nothing to update: give at least one option (see --help)');
      const key = await client.post<ProjectKey>(`/projects/${project}/api_keys/${keyId}`, body);
      output(globals(), key, () => describe(key, project));
    },
  );

  keys
    .command('rotate <key_id>')
    .description('issue a new secret for the key; the old one works for the grace period, then stops')
    .option('--project <project_id>', 'project (default: found automatically)')
    .option('--grace <duration>', 'how long the old secret keeps working (0 = stops now)', '0')
    .action(async (keyId: string, options: { project?: string; grace: string }) => {
      const client = new AdminClient(globals());
      const project = await projectOfKey(client, keyId, options.project);
      const grace = parseDuration(options.grace);
      const key = await client.post<ProjectKey & { previous_secret_expires_at: number }>(
        `/projects/${project}/api_keys/${keyId}/rotate`,
        { grace_period_seconds: grace },
      );
      output(globals(), key, () =>
        issued(
          key,
          grace === 0
            ? `Rotated ${key.id}. The old secret has stopped working.`
            : `Rotated ${key.id}. The old secret keeps working until ${when(key.previous_secret_expires_at)}.`,
        ),
      );
    });

  keys
    .command('revoke <key_id>')
    .alias('delete')
    .description('revoke a key at once')
    .option('--project <project_id>', 'project (default: found automatically)')
    .action(async (keyId: string, options: { project?: string }) => {
      const client = new AdminClient(globals());
      const project = await projectOfKey(client, keyId, options.project);
      const result = await client.delete<{ id: string; deleted: boolean }>(
        `/projects/${project}/api_keys/${keyId}`,
      );
      output(globals(), result, () => `Revoked ${keyId}. Requests with it are refused from now on.`);
    });
}

function restrictionsFrom(options: PermissionOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const choices = [options.scopes !== undefined, options.readOnly, options.allPermissions].filter(
    Boolean,
  ).length;
  if (choices > 1) throw new CliError('choose one of --scopes, --read-only and --all-permissions');
  if (options.scopes !== undefined) body.scopes = list(options.scopes);
  if (options.readOnly) body.scopes = ['api.all.read'];
  if (options.allPermissions) body.scopes = [];
  if (options.models !== undefined) body.allowed_models = list(options.models);
  if (options.ips !== undefined) body.allowed_ips = list(options.ips);
  if (options.expiresIn !== undefined) body.expires_in_seconds = parseDuration(options.expiresIn);
  return body;
}

async function resolveProject(client: AdminClient, explicit: string | undefined): Promise<string> {
  const chosen = explicit ?? process.env.KEYPORT_PROJECT;
  if (chosen) return chosen;
  const projects = await client.listAll<{ id: string; name: string }>('/projects');
  if (projects.length === 1) return projects[0]!.id;
  throw new CliError(
    `choose a project with --project (or KEYPORT_PROJECT): ${projects.map((p) => `${p.id} (${p.name})`).join(', ') || 'there are none'}`,
  );
}

/** Keys are addressed by project in the Admin API; find the key's project when not given. */
export async function projectOfKey(
  client: AdminClient,
  keyId: string,
  explicit: string | undefined,
): Promise<string> {
  const chosen = explicit ?? process.env.KEYPORT_PROJECT;
  if (chosen) return chosen;
  const projects = await client.listAll<{ id: string }>('/projects', { include_archived: true });
  for (const project of projects) {
    try {
      await client.get(`/projects/${project.id}/api_keys/${keyId}`);
      return project.id;
    } catch (error) {
      if (!(error instanceof CliError) || !/not_found/.test(error.message)) throw error;
    }
  }
  throw new CliError(`no API key ${keyId} in any project of this organization`);
}

function permissionsLabel(scopes: string[]): string {
  if (scopes.length === 0) return 'all';
  if (scopes.length === 1 && scopes[0] === 'api.all.read') return 'read only';
  return 'restricted';
}

function describe(key: ProjectKey, project: string): string {
  const owner = key.owner.service_account
    ? `service account ${key.owner.service_account.id} (${key.owner.service_account.name})`
    : key.owner.user
      ? `${key.owner.user.email} (${key.owner.user.id})`
      : '-';
  return [
    `id:           ${key.id}`,
    `name:         ${key.name}`,
    `key:          ${key.redacted_value}`,
    `project:      ${project}`,
    `owner:        ${owner}`,
    `permissions:  ${permissionsLabel(key.scopes)}${key.scopes.length > 0 ? ` (${key.scopes.join(', ')})` : ''}`,
    `models:       ${key.allowed_models.join(', ') || 'all'}`,
    `allowed IPs:  ${key.allowed_ips.join(', ') || 'any'}`,
    `created:      ${when(key.created_at)}`,
    `last used:    ${when(key.last_used_at)}`,
    `expires:      ${when(key.expires_at)}`,
    `status:       ${key.enabled ? 'enabled' : 'disabled'}`,
  ].join('\n');
}

function issued(key: ProjectKey, headline: string): string {
  return [
    headline,
    '',
    'Secret key (shown only now; store it somewhere safe):',
    '',
    `  ${key.value}`,
    '',
  ].join('\n');
}
