import { and, asc, desc, eq, isNull, type SQL } from 'drizzle-orm';
import { newId } from '../../core/ids.ts';
import type { DbOrTx } from '../database.ts';
import { type ProjectRow, projects } from '../schema.ts';
import { afterCursor, type Page, type PageRequest, toPage } from './pagination.ts';

export async function insertProject(
  db: DbOrTx,
  values: { organizationId: string; name: string; externalKeyId?: string | null; allowedIps?: string[] },
): Promise<ProjectRow> {
  const [row] = await db
    .insert(projects)
    .values({ id: newId('project'), ...values })
    .returning();
  return row!;
}

export async function findProject(db: DbOrTx, organizationId: string, id: string) {
  const [row] = await db
    .select()
    .from(projects)
    .where(and(eq(projects.organizationId, organizationId), eq(projects.id, id)));
  return row;
}

export async function listProjects(
  db: DbOrTx,
  organizationId: string,
  page: PageRequest & { includeArchived: boolean },
): Promise<Page<ProjectRow>> {
  const conditions: (SQL | undefined)[] = [
    eq(projects.organizationId, organizationId),
    page.includeArchived ? undefined : isNull(projects.archivedAt),
    afterCursor(projects, projects.createdAt, projects.id, page),
  ];
  const order = page.order === 'asc' ? asc : desc;
  const rows = await db
    .select()
    .from(projects)
    .where(and(...conditions))
    .orderBy(order(projects.createdAt), order(projects.id))
    .limit(page.limit + 1);
  return toPage(rows, page.limit);
}

export async function updateProject(
  db: DbOrTx,
  organizationId: string,
  id: string,
  patch: Partial<Pick<ProjectRow, 'name' | 'externalKeyId' | 'allowedIps' | 'archivedAt'>>,
) {
  const [row] = await db
    .update(projects)
    .set(patch)
    .where(and(eq(projects.organizationId, organizationId), eq(projects.id, id)))
    .returning();
  return row;
}
