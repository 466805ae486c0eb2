/**
 * Reading the audit log (`/v1/organization/audit_logs`, OpenAI's filters) and keeping it as long
 * as each organization's retention says. Newest first; `after`/`before` are entry ids, as OpenAI's
 * cursors, resolved inside the query so the timestamp keeps the database's precision.
 */
import { and, desc, eq, gte, inArray, isNotNull, lt, type SQL, sql } from 'drizzle-orm';
import type { Db } from '../store/database.ts';
import { type Page, toPage } from '../store/repositories/pagination.ts';
import { type AuditLogRow, auditLogs, organizationSettings } from '../store/schema.ts';

export interface AuditFilter {
  effectiveAt?: { gt?: number; gte?: number; lt?: number; lte?: number };
  projectIds?: string[] | undefined;
  eventTypes?: string[] | undefined;
  actorIds?: string[] | undefined;
  actorEmails?: string[] | undefined;
  resourceIds?: string[] | undefined;
  after?: string | undefined;
  before?: string | undefined;
  limit: number;
}

const at = (seconds: number) => new Date(seconds * 1000);

export async function listAuditLogs(
  db: Db,
  organizationId: string,
  filter: AuditFilter,
): Promise<Page<AuditLogRow>> {
  const t = auditLogs;
  const where: (SQL | undefined)[] = [eq(t.organizationId, organizationId)];
  const range = filter.effectiveAt ?? {};
  // Seconds are OpenAI's unit; `lte: s` covers the whole second s.
  if (range.gt !== undefined) where.push(gte(t.effectiveAt, at(range.gt + 1)));
  if (range.gte !== undefined) where.push(gte(t.effectiveAt, at(range.gte)));
  if (range.lt !== undefined) where.push(lt(t.effectiveAt, at(range.lt)));
  if (range.lte !== undefined) where.push(lt(t.effectiveAt, at(range.lte + 1)));
  if (filter.projectIds) where.push(inArray(t.projectId, filter.projectIds));
  if (filter.eventTypes) where.push(inArray(t.type, filter.eventTypes));
  if (filter.actorIds) where.push(inArray(t.actorId, filter.actorIds));
  if (filter.actorEmails)
    where.push(
      inArray(
        sql`lower(${t.actorEmail})`,
        filter.actorEmails.map((e) => e.toLowerCase()),
      ),
    );
  if (filter.resourceIds) where.push(inArray(t.resourceId, filter.resourceIds));
  const cursor = (id: string) =>
    sql`(select ${t.effectiveAt}, ${t.id} from ${t} where ${t.id} = ${id} and ${t.organizationId} = ${organizationId})`;
  if (filter.after) where.push(sql`(${t.effectiveAt}, ${t.id}) < ${cursor(filter.after)}`);
  if (filter.before) where.push(sql`(${t.effectiveAt}, ${t.id}) > ${cursor(filter.before)}`);

  if (filter.before && !filter.after) {
    // The page just before the cursor: the oldest entries newer than it, shown newest first.
    const rows = await db
      .select()
      .from(t)
      .where(and(...where))
      .orderBy(t.effectiveAt, t.id)
      .limit(filter.limit + 1);
    const page = toPage(rows, filter.limit);
    return { items: page.items.reverse(), hasMore: page.hasMore };
  }
  const rows = await db
    .select()
    .from(t)
    .where(and(...where))
    .orderBy(desc(t.effectiveAt), desc(t.id))
    .limit(filter.limit + 1);
  return toPage(rows, filter.limit);
}

/**
 * Deletes entries older than their organization's retention (or the instance default when an
 * organization has none; 0 keeps everything). Returns how many were deleted.
 */
export async function purgeExpiredAuditLogs(
  db: Db,
  defaultRetentionDays: number,
  now = Date.now(),
): Promise<number> {
  let deleted = 0;
  const custom = await db
    .select({
      organizationId: organizationSettings.organizationId,
      days: organizationSettings.auditRetentionDays,
    })
    .from(organizationSettings)
    .where(isNotNull(organizationSettings.auditRetentionDays));
  for (const { organizationId, days } of custom) {
    const cutoff = new Date(now - (days ?? 0) * 86_400_000);
    const gone = await db
      .delete(auditLogs)
      .where(and(eq(auditLogs.organizationId, organizationId), lt(auditLogs.effectiveAt, cutoff)))
      .returning({ id: auditLogs.id });
    deleted += gone.length;
  }
  if (defaultRetentionDays > 0) {
    const cutoff = new Date(now - defaultRetentionDays * 86_400_000);
    const withSetting = db
      .select({ id: organizationSettings.organizationId })
      .from(organizationSettings)
      .where(isNotNull(organizationSettings.auditRetentionDays));
    const gone = await db
      .delete(auditLogs)
      .where(and(lt(auditLogs.effectiveAt, cutoff), sql`${auditLogs.organizationId} not in (${withSetting})`))
      .returning({ id: auditLogs.id });
    deleted += gone.length;
  }
  return deleted;
}
