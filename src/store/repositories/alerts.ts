import { and, asc, desc, eq, isNotNull, isNull, type SQL, sql } from 'drizzle-orm';
import { randomBase62 } from '../../core/base62.ts';
import type { DbOrTx } from '../database.ts';
import { type AlertRow, alerts } from '../schema.ts';
import { afterCursor, type Page, type PageRequest, toPage } from './pagination.ts';

export type NewAlert = Omit<typeof alerts.$inferInsert, 'id' | 'createdAt' | 'readAt'>;

/**
 * Stores an alert, unless one with the same dedupe key exists: then nothing is written and
 * `undefined` comes back. The unique index decides, so concurrent instances raise it once.
 */
export async function insertAlert(db: DbOrTx, values: NewAlert): Promise<AlertRow | undefined> {
  const [row] = await db
    .insert(alerts)
    .values({ id: `alert_${randomBase62(24)}`, ...values })
    .onConflictDoNothing({ target: alerts.dedupeKey })
    .returning();
  return row;
}

export async function findAlert(db: DbOrTx, organizationId: string, id: string) {
  const [row] = await db
    .select()
    .from(alerts)
    .where(and(eq(alerts.organizationId, organizationId), eq(alerts.id, id)));
  return row;
}

export async function listAlerts(
  db: DbOrTx,
  organizationId: string,
  page: PageRequest & { projectId?: string | undefined; unread?: boolean | undefined },
): Promise<Page<AlertRow>> {
  const conditions: (SQL | undefined)[] = [
    eq(alerts.organizationId, organizationId),
    page.projectId === undefined ? undefined : eq(alerts.projectId, page.projectId),
    page.unread === undefined ? undefined : page.unread ? isNull(alerts.readAt) : isNotNull(alerts.readAt),
    afterCursor(alerts, alerts.createdAt, alerts.id, page),
  ];
  const order = page.order === 'asc' ? asc : desc;
  const rows = await db
    .select()
    .from(alerts)
    .where(and(...conditions))
    .orderBy(order(alerts.createdAt), order(alerts.id))
    .limit(page.limit + 1);
  return toPage(rows, page.limit);
}

/** Idempotent: an alert read twice keeps the time it was first read. */
export async function markAlertRead(db: DbOrTx, organizationId: string, id: string) {
  const [row] = await db
    .update(alerts)
    .set({ readAt: sql`coalesce(${alerts.readAt}, now())` })
    .where(and(eq(alerts.organizationId, organizationId), eq(alerts.id, id)))
    .returning();
  return row;
}
