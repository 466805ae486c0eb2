/** `keyport projects list|create|show|update|archive`, through the Admin API. */
import type { Command } from 'commander';
import { AdminClient, CliError } from '../client.ts';
import { list, table, when } from '../format.ts';
import { type GlobalOptions, output } from './output.ts';

interface Project {
  id: string;
  name: string;
  status: string;
  created_at: number;
  archived_at: number | null;
  allowed_ips: string[];
}

const describe = (p: Project) =>
  [
    `id:           ${p.id}`,
    `name:         ${p.name}`,
    `status:       ${p.status}`,
    `allowed IPs:  ${p.allowed_ips.join(', ') || 'any'}`,
    `created:      ${when(p.created_at)}`,
    `archived:     ${when(p.archived_at)}`,
  ].join('\n');

export function registerProjectCommands(program: Command, globals: () => GlobalOptions): void {
  const projects = program.command('projects').description('projects of the organization');

  projects
    .command('list')
    .option('--all', 'include archived projects')
    .action(async (options: { all?: boolean }) => {
      const client = new AdminClient(globals());
      const items = await client.listAll<Project>('/projects', {
        include_archived: options.all ? true : undefined,
      });
      output(globals(), items, () =>
        table(
          items.map((p) => ({ id: p.id, name: p.name, status: p.status, created: when(p.created_at) })),
          ['id', 'name', 'status', 'created'],
        ),
      );
    });

  projects
    .command('create [name]')
    .option('--name <name>', 'the name (as for keys create), instead of the argument')
    .option('--ips <cidrs>', 'project-wide IP allow-list, comma-separated CIDRs')
    .action(async (argument: string | undefined, options: { name?: string; ips?: string }) => {
      if (argument !== undefined && options.name !== undefined && argument !== options.name) {
        throw new CliError('give the name once: as the argument or as --name');
      }
      const name = argument ?? options.name;
      if (name === undefined) throw new CliError('a project needs a name: keyport projects create <name>');
      const client = new AdminClient(globals());
      const project = await client.post<Project>('/projects', {
        name,
        ...(options.ips !== undefined ? { allowed_ips: list(options.ips) } : {}),
      });
      output(globals(), project, () => describe(project));
    });

  projects.command('show <project_id>').action(async (id: string) => {
    const project = await new AdminClient(globals()).get<Project>(`/projects/${id}`);
    output(globals(), project, () => describe(project));
  });

  projects
    .command('update <project_id>')
    .option('--name <name>', 'new name')
    .option('--ips <cidrs>', 'project-wide IP allow-list, comma-separated CIDRs ("" for any)')
    .action(async (id: string, options: { name?: string; ips?: string }) => {
      const body: Record<string, unknown> = {};
      if (options.name !== undefined) body.name = options.name;
      if (options.ips !== undefined) body.allowed_ips = list(options.ips);
      const project = await new AdminClient(globals()).post<Project>(`/projects/${id}`, body);
      output(globals(), project, () => describe(project));
    });

  projects
    .command('archive <project_id>')
    .description('archive a project: its keys stop working at once')
    .action(async (id: string) => {
      const project = await new AdminClient(globals()).post<Project>(`/projects/${id}/archive`);
      output(globals(), project, () => describe(project));
    });
}
