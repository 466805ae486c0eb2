import { and, asc, desc, eq, isNull } from 'drizzle-orm';
import { newId } from '../../core/ids.ts';
import type { DbOrTx } from '../database.ts';
import { type ServiceAccountRow, serviceAccounts } from '../schema.ts';
import { afterCursor, type Page, type PageRequest, toPage } from './pagination.ts';

export async function insertServiceAccount(
  db: DbOrTx,
  values: { organizationId: string; projectId: string; name: string; role: ServiceAccountRow['role'] },
): Promise<ServiceAccountRow> {
  const [row] = await db
    .insert(serviceAccounts)
    .values({ id: newId('serviceAccount'), ...values })
    .returning();
  return row!;
}

export async function findServiceAccount(db: DbOrTx, organizationId: string, projectId: string, id: string) {
  const [row] = await db
    .select()
    .from(serviceAccounts)
    .where(
      and(
        eq(serviceAccounts.organizationId, organizationId),
        eq(serviceAccounts.projectId, projectId),
        eq(serviceAccounts.id, id),
        isNull(serviceAccounts.deletedAt),
      ),
    );
  return row;
}

export async function listServiceAccounts(
  db: DbOrTx,
  organizationId: string,
  projectId: string,
  page: PageRequest,
): Promise<Page<ServiceAccountRow>> {
  const order = page.order === 'asc' ? asc : desc;
  const rows = await db
    .select()
    .from(serviceAccounts)
    .where(
      and(
        eq(serviceAccounts.organizationId, organizationId),
        eq(serviceAccounts.projectId, projectId),
        isNull(serviceAccounts.deletedAt),
        afterCursor(serviceAccounts, serviceAccounts.createdAt, serviceAccounts.id, page),
      ),
    )
    .orderBy(order(serviceAccounts.createdAt), order(serviceAccounts.id))
    .limit(page.limit + 1);
  return toPage(rows, page.limit);
}

export async function updateServiceAccount(
  db: DbOrTx,
  id: string,
  patch: Partial<Pick<ServiceAccountRow, 'name' | 'role' | 'deletedAt'>>,
) {
  const [row] = await db.update(serviceAccounts).set(patch).where(eq(serviceAccounts.id, id)).returning();
  return row;
}
