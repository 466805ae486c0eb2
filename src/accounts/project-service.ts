/** Projects: created and archived, never deleted (as on OpenAI); archiving stops their keys at once. */
import type { Actor } from '../core/actor.ts';
import { normalizeCidrs } from '../core/allow-lists.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { KeyChangeNotifier } from '../keys/key-change-notifier.ts';
import { validateName } from '../keys/key-service.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import type { Page, PageRequest } from '../store/repositories/pagination.ts';
import { findProject, insertProject, listProjects, updateProject } from '../store/repositories/projects.ts';
import type { ProjectRow } from '../store/schema.ts';

export interface ProjectChanges {
  name?: string | undefined;
  externalKeyId?: string | null | undefined;
  allowedIps?: string[] | undefined;
}

export class ProjectService {
  constructor(
    private readonly db: Db,
    private readonly notifier: KeyChangeNotifier,
  ) {}

  async create(
    organizationId: string,
    input: ProjectChanges & { name: string },
    actor: Actor,
  ): Promise<ProjectRow> {
    const values = {
      organizationId,
      name: validateName(input.name),
      externalKeyId: input.externalKeyId ?? null,
      allowedIps: input.allowedIps ? cidrs(input.allowedIps) : [],
    };
    return this.db.transaction(async (tx) => {
      const project = await insertProject(tx, values);
      await auditProjectCreated(tx, project, actor);
      return project;
    });
  }

  async get(organizationId: string, id: string): Promise<ProjectRow> {
    const project = await findProject(this.db, organizationId, id);
    if (!project) throw notFound('project', id);
    return project;
  }

  list(organizationId: string, page: PageRequest & { includeArchived: boolean }): Promise<Page<ProjectRow>> {
    return listProjects(this.db, organizationId, page);
  }

  async update(organizationId: string, id: string, input: ProjectChanges, actor: Actor): Promise<ProjectRow> {
    const project = await this.get(organizationId, id);
    if (project.archivedAt)
      throw badRequest(`Project '${id}' is archived; archived projects cannot be updated.`);
    const patch: Parameters<typeof updateProject>[3] = {};
    if (input.name !== undefined) patch.name = validateName(input.name);
    if (input.externalKeyId !== undefined) patch.externalKeyId = input.externalKeyId;
    if (input.allowedIps !== undefined) patch.allowedIps = cidrs(input.allowedIps);
    if (Object.keys(patch).length === 0) return project;
    const updated = await this.db.transaction(async (tx) => {
      const row = await updateProject(tx, organizationId, id, patch);
      await recordAudit(tx, {
        organizationId,
        projectId: id,
        type: 'project.updated',
        actor,
        resourceId: id,
        details: {
          id,
          changes_requested: {
            ...(patch.name !== undefined ? { title: patch.name, name: patch.name } : {}),
            ...(patch.externalKeyId !== undefined ? { external_key_id: patch.externalKeyId } : {}),
            ...(patch.allowedIps !== undefined ? { allowed_ips: patch.allowedIps } : {}),
          },
        },
      });
      return row;
    });
    if (patch.allowedIps) await this.notifier.allChanged();
    return updated!;
  }

  /** Idempotent: archiving an archived project returns it unchanged. */
  async archive(organizationId: string, id: string, actor: Actor): Promise<ProjectRow> {
    const project = await this.get(organizationId, id);
    if (project.archivedAt) return project;
    const archived = await this.db.transaction(async (tx) => {
      const row = await updateProject(tx, organizationId, id, { archivedAt: new Date() });
      await recordAudit(tx, {
        organizationId,
        projectId: id,
        type: 'project.archived',
        actor,
        resourceId: id,
        details: { id },
      });
      return row;
    });
    await this.notifier.allChanged();
    return archived!;
  }

  async requireActive(organizationId: string, id: string): Promise<ProjectRow> {
    const project = await this.get(organizationId, id);
    if (project.archivedAt) throw badRequest(`Project '${id}' is archived.`);
    return project;
  }
}

function cidrs(list: string[]): string[] {
  try {
    return normalizeCidrs(list);
  } catch (error) {
    throw badRequest(`Invalid allowed_ips: ${(error as Error).message}.`, 'allowed_ips');
  }
}

/** `project.created` in the audit log, in the transaction that made the project. */
export async function auditProjectCreated(tx: DbOrTx, project: ProjectRow, actor: Actor): Promise<void> {
  await recordAudit(tx, {
    organizationId: project.organizationId,
    projectId: project.id,
    type: 'project.created',
    actor,
    resourceId: project.id,
    details: {
      id: project.id,
      data: {
        name: project.name,
        title: project.name,
        ...(project.externalKeyId ? { external_key_id: project.externalKeyId } : {}),
        ...(project.allowedIps.length > 0 ? { allowed_ips: project.allowedIps } : {}),
      },
    },
  });
}
