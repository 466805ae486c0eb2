import { and, eq, sql } from 'drizzle-orm';
import { newId } from '../../core/ids.ts';
import type { DbOrTx } from '../database.ts';
import { organizationMembers, organizations, type UserRow, users } from '../schema.ts';

export async function insertOrganization(db: DbOrTx, name: string, options: { isOperator?: boolean } = {}) {
  const [row] = await db
    .insert(organizations)
    .values({ id: newId('organization'), name, isOperator: options.isOperator ?? false })
    .returning();
  return row!;
}

export async function findOrganization(db: DbOrTx, id: string) {
  const [row] = await db.select().from(organizations).where(eq(organizations.id, id));
  return row;
}

export async function countOrganizations(db: DbOrTx): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(organizations);
  return row?.n ?? 0;
}

export async function firstOrganization(db: DbOrTx) {
  const [row] = await db.select().from(organizations).orderBy(organizations.createdAt).limit(1);
  return row;
}

export async function insertUser(
  db: DbOrTx,
  email: string,
  name: string,
  fields: Partial<Omit<typeof users.$inferInsert, 'id' | 'email' | 'name'>> = {},
): Promise<UserRow> {
  const [row] = await db
    .insert(users)
    .values({ id: newId('user'), email, name, ...fields })
    .returning();
  return row!;
}

export async function findUser(db: DbOrTx, id: string) {
  const [row] = await db.select().from(users).where(eq(users.id, id));
  return row;
}

export async function addMember(
  db: DbOrTx,
  organizationId: string,
  userId: string,
  role: 'owner' | 'reader',
) {
  await db.insert(organizationMembers).values({ organizationId, userId, role });
}

export async function findMember(db: DbOrTx, organizationId: string, userId: string) {
  const [row] = await db
    .select()
    .from(organizationMembers)
    .where(
      and(eq(organizationMembers.organizationId, organizationId), eq(organizationMembers.userId, userId)),
    );
  return row;
}

export async function findOwner(db: DbOrTx, organizationId: string) {
  const [row] = await db
    .select({ user: users })
    .from(organizationMembers)
    .innerJoin(users, eq(users.id, organizationMembers.userId))
    .where(and(eq(organizationMembers.organizationId, organizationId), eq(organizationMembers.role, 'owner')))
    .orderBy(organizationMembers.createdAt)
    .limit(1);
  return row?.user;
}
