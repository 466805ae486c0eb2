/** Rate limits, budgets and spend alerts: the settings the gateway enforces (src/limits). */
import { and, asc, desc, eq, getTableColumns, sql } from 'drizzle-orm';
import { randomBase62 } from '../../core/base62.ts';
import type { DbOrTx } from '../database.ts';
import {
  type BudgetRow,
  budgets,
  type LimitScope,
  type RateLimitRow,
  rateLimits,
  type SpendAlertRow,
  spendAlerts,
} from '../schema.ts';
import { afterCursor, type Page, type PageRequest, toPage } from './pagination.ts';

export interface ScopeRef {
  type: LimitScope;
  id: string;
}

export type RateLimitValues = Pick<
  RateLimitRow,
  | 'maxRequestsPerMinute'
  | 'maxTokensPerMinute'
  | 'maxRequestsPerDay'
  | 'maxTokensPerDay'
  | 'maxConcurrentRequests'
>;

/** Everything an organization has configured, for the gateway's cache. */
export async function loadOrganizationLimits(db: DbOrTx, organizationId: string) {
  const [limits, budgetRows, alerts] = await Promise.all([
    db.select().from(rateLimits).where(eq(rateLimits.organizationId, organizationId)),
    db.select().from(budgets).where(eq(budgets.organizationId, organizationId)),
    db.select().from(spendAlerts).where(eq(spendAlerts.organizationId, organizationId)),
  ]);
  return { rateLimits: limits, budgets: budgetRows, spendAlerts: alerts };
}

export async function listRateLimitRows(db: DbOrTx, organizationId: string, scope: ScopeRef) {
  return db
    .select()
    .from(rateLimits)
    .where(
      and(
        eq(rateLimits.organizationId, organizationId),
        eq(rateLimits.scopeType, scope.type),
        eq(rateLimits.scopeId, scope.id),
      ),
    )
    .orderBy(asc(rateLimits.model));
}

export async function upsertRateLimit(
  db: DbOrTx,
  organizationId: string,
  scope: ScopeRef,
  model: string,
  values: Partial<RateLimitValues>,
): Promise<RateLimitRow> {
  const [row] = await db
    .insert(rateLimits)
    .values({
      id: `rl_${randomBase62(24)}`,
      organizationId,
      scopeType: scope.type,
      scopeId: scope.id,
      model,
      ...values,
    })
    .onConflictDoUpdate({
      target: [rateLimits.scopeType, rateLimits.scopeId, rateLimits.model],
      set: { ...values, updatedAt: sql`now()` },
    })
    .returning();
  return row!;
}

export async function deleteRateLimit(db: DbOrTx, organizationId: string, scope: ScopeRef, model: string) {
  const rows = await db
    .delete(rateLimits)
    .where(
      and(
        eq(rateLimits.organizationId, organizationId),
        eq(rateLimits.scopeType, scope.type),
        eq(rateLimits.scopeId, scope.id),
        eq(rateLimits.model, model),
      ),
    )
    .returning({ id: rateLimits.id });
  return rows.length > 0;
}

export type BudgetValues = Pick<BudgetRow, 'hardLimit' | 'softLimitPercents' | 'notifyEmails'>;

export async function findBudget(
  db: DbOrTx,
  organizationId: string,
  where: { id: string } | { scope: ScopeRef; metric: BudgetRow['metric']; period: BudgetRow['period'] },
): Promise<BudgetRow | undefined> {
  const condition =
    'id' in where
      ? eq(budgets.id, where.id)
      : and(
          eq(budgets.scopeType, where.scope.type),
          eq(budgets.scopeId, where.scope.id),
          eq(budgets.metric, where.metric),
          eq(budgets.period, where.period),
        );
  const [row] = await db
    .select()
    .from(budgets)
    .where(and(eq(budgets.organizationId, organizationId), condition));
  return row;
}

export async function listBudgets(
  db: DbOrTx,
  organizationId: string,
  filter: { scope?: ScopeRef | undefined },
  page: PageRequest,
): Promise<Page<BudgetRow>> {
  const order = page.order === 'asc' ? asc : desc;
  const rows = await db
    .select()
    .from(budgets)
    .where(
      and(
        eq(budgets.organizationId, organizationId),
        filter.scope ? eq(budgets.scopeType, filter.scope.type) : undefined,
        filter.scope ? eq(budgets.scopeId, filter.scope.id) : undefined,
        afterCursor(budgets, budgets.createdAt, budgets.id, page),
      ),
    )
    .orderBy(order(budgets.createdAt), order(budgets.id))
    .limit(page.limit + 1);
  return toPage(rows, page.limit);
}

export async function upsertBudget(
  db: DbOrTx,
  organizationId: string,
  key: { scope: ScopeRef; metric: BudgetRow['metric']; period: BudgetRow['period'] },
  values: Partial<BudgetValues>,
): Promise<{ row: BudgetRow; created: boolean }> {
  const [returned] = await db
    .insert(budgets)
    .values({
      id: `budget_${randomBase62(24)}`,
      organizationId,
      scopeType: key.scope.type,
      scopeId: key.scope.id,
      metric: key.metric,
      period: key.period,
      ...values,
    })
    .onConflictDoUpdate({
      target: [budgets.scopeType, budgets.scopeId, budgets.metric, budgets.period],
      set: { ...values, updatedAt: sql`now()` },
    })
    // Whether this statement inserted the row, as the database decided it: a row it inserted has
    // no deleting transaction yet. A look before the write would let two first writes both "create".
    .returning({ ...getTableColumns(budgets), created: sql<boolean>`(xmax = 0)` });
  const { created, ...row } = returned!;
  return { row, created };
}

export async function deleteBudget(db: DbOrTx, organizationId: string, id: string): Promise<boolean> {
  const rows = await db
    .delete(budgets)
    .where(and(eq(budgets.organizationId, organizationId), eq(budgets.id, id)))
    .returning({ id: budgets.id });
  return rows.length > 0;
}

export type SpendAlertValues = Pick<SpendAlertRow, 'thresholdAmount' | 'recipients' | 'subjectPrefix'>;

export async function insertSpendAlert(
  db: DbOrTx,
  organizationId: string,
  scope: { type: 'organization' | 'project'; id: string },
  values: SpendAlertValues,
): Promise<SpendAlertRow> {
  const [row] = await db
    .insert(spendAlerts)
    .values({
      id: `spend_alert_${randomBase62(24)}`,
      organizationId,
      scopeType: scope.type,
      scopeId: scope.id,
      ...values,
    })
    .returning();
  return row!;
}

function spendAlertConditions(organizationId: string, scope: ScopeRef) {
  return [
    eq(spendAlerts.organizationId, organizationId),
    eq(spendAlerts.scopeType, scope.type as 'organization' | 'project'),
    eq(spendAlerts.scopeId, scope.id),
  ];
}

export async function findSpendAlert(db: DbOrTx, organizationId: string, scope: ScopeRef, id: string) {
  const [row] = await db
    .select()
    .from(spendAlerts)
    .where(and(...spendAlertConditions(organizationId, scope), eq(spendAlerts.id, id)));
  return row;
}

export async function listSpendAlerts(
  db: DbOrTx,
  organizationId: string,
  scope: ScopeRef,
  page: PageRequest,
): Promise<Page<SpendAlertRow>> {
  const order = page.order === 'asc' ? asc : desc;
  const rows = await db
    .select()
    .from(spendAlerts)
    .where(
      and(
        ...spendAlertConditions(organizationId, scope),
        afterCursor(spendAlerts, spendAlerts.createdAt, spendAlerts.id, page),
      ),
    )
    .orderBy(order(spendAlerts.createdAt), order(spendAlerts.id))
    .limit(page.limit + 1);
  return toPage(rows, page.limit);
}

export async function updateSpendAlert(
  db: DbOrTx,
  organizationId: string,
  scope: ScopeRef,
  id: string,
  values: SpendAlertValues,
) {
  const [row] = await db
    .update(spendAlerts)
    .set(values)
    .where(and(...spendAlertConditions(organizationId, scope), eq(spendAlerts.id, id)))
    .returning();
  return row;
}

export async function deleteSpendAlert(db: DbOrTx, organizationId: string, scope: ScopeRef, id: string) {
  const rows = await db
    .delete(spendAlerts)
    .where(and(...spendAlertConditions(organizationId, scope), eq(spendAlerts.id, id)))
    .returning({ id: spendAlerts.id });
  return rows.length > 0;
}
