/**
 * `keyport audit list` (who changed what, newest first) and `keyport settings show|set` (the
 * organization's name and audit-log retention), through the Admin API.
 */
import type { Command } from 'commander';
import { AdminClient, CliError } from '../client.ts';
import { list, parseDuration, table, when, wholeNumber } from '../format.ts';
import { type GlobalOptions, output } from './output.ts';

interface AuditEntry {
  id: string;
  type: string;
  effective_at: number;
  actor?: {
    type: string;
    session?: { user?: { email?: string }; ip_address?: string };
    api_key?: { id?: string };
    ip_address?: string;
    system?: { name?: string };
  };
  project?: { id: string; name: string | null };
  [details: string]: unknown;
}

interface Settings {
  id: string;
  name: string;
  audit_log_retention_days: number | null;
  effective_audit_log_retention_days: number;
}

function actorText(entry: AuditEntry): string {
  const actor = entry.actor;
  if (!actor) return '-';
  if (actor.type === 'session') return actor.session?.user?.email ?? 'session';
  if (actor.type === 'api_key') return actor.api_key?.id ?? 'api key';
  return `system:${actor.system?.name ?? ''}`;
}

function ipText(entry: AuditEntry): string {
  return entry.actor?.session?.ip_address ?? entry.actor?.ip_address ?? '-';
}

/** The changed thing and what changed, in one line. */
function whatText(entry: AuditEntry): string {
  const details = (entry[entry.type] ?? {}) as { id?: string; changes_requested?: object; data?: object };
  const change = details.changes_requested ?? details.data;
  const text = `${details.id ?? ''}${change ? ` ${JSON.stringify(change)}` : ''}`.trim();
  return text.length > 100 ? `${text.slice(0, 99)}…` : text || '-';
}

export function registerAuditCommands(program: Command, globals: () => GlobalOptions): void {
  const audit = program.command('audit').description('the audit log: every change and sign-in, newest first');
  audit
    .command('list')
    .description('entries, newest first (filters combine)')
    .option('--type <types>', 'event types, comma-separated (e.g. api_key.created,login.failed)')
    .option('--project <project_ids>', 'projects, comma-separated')
    .option('--actor <actor_ids>', 'actors (API key or user ids), comma-separated')
    .option('--email <emails>', 'actor emails, comma-separated')
    .option('--resource <ids>', 'the changed key, project, user…, comma-separated')
    .option('--since <duration>', 'only the last e.g. 24h or 7d', parseDuration)
    .option('--limit <n>', 'at most this many entries', wholeNumber, 50)
    .action(
      async (options: {
        type?: string;
        project?: string;
        actor?: string;
        email?: string;
        resource?: string;
        since?: number;
        limit: number;
      }) => {
        const client = new AdminClient(globals());
        const query: Record<string, string | number | undefined> = {
          event_types: options.type && list(options.type).join(','),
          project_ids: options.project && list(options.project).join(','),
          actor_ids: options.actor && list(options.actor).join(','),
          actor_emails: options.email && list(options.email).join(','),
          resource_ids: options.resource && list(options.resource).join(','),
          'effective_at[gte]':
            options.since === undefined ? undefined : Math.floor(Date.now() / 1000) - options.since,
        };
        const entries: AuditEntry[] = [];
        let after: string | undefined;
        while (entries.length < options.limit) {
          const page = await client.get<{ data: AuditEntry[]; has_more: boolean; last_id: string | null }>(
            '/audit_logs',
            { ...query, limit: Math.min(100, options.limit - entries.length), after },
          );
          entries.push(...page.data);
          if (!page.has_more || !page.last_id) break;
          after = page.last_id;
        }
        output(globals(), entries, () =>
          table(
            entries.map((e) => ({
              time: when(e.effective_at),
              type: e.type,
              actor: actorText(e),
              ip: ipText(e),
              project: e.project?.id ?? '-',
              what: whatText(e),
            })),
            ['time', 'type', 'actor', 'ip', 'project', 'what'],
          ),
        );
      },
    );

  const settings = program.command('settings').description("the organization's name and audit-log retention");
  const show = (s: Settings) =>
    table(
      [
        {
          organization: s.id,
          name: s.name,
          'audit retention': s.audit_log_retention_days
            ? `${s.audit_log_retention_days} days`
            : `instance default (${s.effective_audit_log_retention_days ? `${s.effective_audit_log_retention_days} days` : 'forever'})`,
        },
      ],
      ['organization', 'name', 'audit retention'],
    );
  settings.command('show').action(async () => {
    const client = new AdminClient(globals());
    const current = await client.get<Settings>('/settings');
    output(globals(), current, () => show(current));
  });
  settings
    .command('set')
    .option('--name <name>', "the organization's name")
    .option('--audit-retention-days <days>', 'days to keep audit entries (1–3650), or "default"')
    .action(async (options: { name?: string; auditRetentionDays?: string }) => {
      const body: Record<string, unknown> = {};
      if (options.name !== undefined) body.name = options.name;
      if (options.auditRetentionDays !== undefined) {
        body.audit_log_retention_days =
          options.auditRetentionDays === 'default' ? null : wholeNumber(options.auditRetentionDays);
      }
      if (Object.keys(body).length === 0)
        throw new CliError('nothing to change: give --name or --audit-retention-days');
      const client = new AdminClient(globals());
      const updated = await client.post<Settings>('/settings', body);
      output(globals(), updated, () => show(updated));
    });
}
