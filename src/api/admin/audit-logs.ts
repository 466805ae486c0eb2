/**
 * `/v1/organization/audit_logs` (client.admin.organization.auditLogs.list): newest first, with
 * OpenAI's filters — `effective_at[gt|gte|lt|lte]`, `project_ids[]`, `event_types[]`,
 * `actor_ids[]`, `actor_emails[]`, `resource_ids[]` — and `after`/`before` cursors. Each entry
 * carries its details under its type's name, as OpenAI's do.
 */

import { inArray } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { badRequest } from '../../core/errors.ts';
import { listAuditLogs } from '../../guard/audit-query.ts';
import type { Services } from '../../services.ts';
import type { AuditLogRow } from '../../store/schema.ts';
import { projects } from '../../store/schema.ts';
import { listParam, parseWith, unixSeconds } from '../http/parse.ts';
import { listObject } from './objects.ts';

const LISTS = ['project_ids', 'event_types', 'actor_ids', 'actor_emails', 'resource_ids'] as const;
const RANGE = ['gt', 'gte', 'lt', 'lte'] as const;
const seconds = z.coerce.number().int().min(0).max(32_503_680_000);
const query = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().min(1).max(128).optional(),
  before: z.string().min(1).max(128).optional(),
  // OpenAI's flag for tenant-level entries; Keyport has no tenants, so only `false` is meaningful.
  tenant_only: z.enum(['true', 'false']).optional(),
  ...Object.fromEntries(RANGE.map((op) => [`effective_at[${op}]`, seconds.optional()])),
});

const EVENT_TYPE = /^[a-z_]+(\.[a-z_]+){1,3}$/;

export function auditLogsRoutes(app: FastifyInstance, services: Services): void {
  app.get('/audit_logs', async (request) => {
    const raw = { ...(request.query as Record<string, unknown>) };
    const lists: Partial<Record<(typeof LISTS)[number], string[]>> = {};
    for (const name of LISTS) {
      const list = listParam(raw, name);
      if (list) lists[name] = list;
      delete raw[name];
      delete raw[`${name}[]`];
    }
    const parsed = parseWith(query, raw, 'query') as z.infer<typeof query> &
      Partial<Record<`effective_at[${(typeof RANGE)[number]}]`, number>>;
    if (parsed.tenant_only === 'true')
      return { object: 'list', data: [], first_id: null, last_id: null, has_more: false };
    for (const type of lists.event_types ?? []) {
      if (!EVENT_TYPE.test(type)) throw badRequest(`Invalid event type '${type}'.`, 'event_types');
    }
    const effectiveAt = Object.fromEntries(
      RANGE.flatMap((op) => {
        const value = parsed[`effective_at[${op}]`];
        return value === undefined ? [] : [[op, value]];
      }),
    );
    const { organizationId } = request.admin;
    const page = await listAuditLogs(services.store.db, organizationId, {
      effectiveAt,
      projectIds: lists.project_ids,
      eventTypes: lists.event_types,
      actorIds: lists.actor_ids,
      actorEmails: lists.actor_emails,
      resourceIds: lists.resource_ids,
      after: parsed.after,
      before: parsed.before,
      limit: parsed.limit,
    });
    // OpenAI names the project an entry was scoped to.
    const projectIds = [...new Set(page.items.map((e) => e.projectId).filter((id): id is string => !!id))];
    const names = new Map(
      projectIds.length === 0
        ? []
        : (
            await services.store.db
              .select({ id: projects.id, name: projects.name })
              .from(projects)
              .where(inArray(projects.id, projectIds))
          ).map((p) => [p.id, p.name]),
    );
    return listObject(
      page,
      page.items.map((entry) => auditLogObject(entry, names)),
    );
  });
}

export function auditLogObject(entry: AuditLogRow, projectNames: Map<string, string>) {
  return {
    object: 'organization.audit_log' as const,
    id: entry.id,
    type: entry.type,
    effective_at: unixSeconds(entry.effectiveAt),
    actor: entry.actor,
    ...(entry.projectId
      ? { project: { id: entry.projectId, name: projectNames.get(entry.projectId) ?? null } }
      : {}),
    [entry.type]: entry.details,
  };
}
