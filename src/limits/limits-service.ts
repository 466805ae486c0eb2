/**
 * Limit settings: rate limits, budgets and spend alerts of an organization, its projects and its
 * keys. Validates, stores, and tells the gateway's cache (on every instance) that they changed.
 * Enforcement lives in `enforcer.ts`; this is the management side the Admin API and CLI use.
 * Every change is audited in the same transaction; caches hear of it once it has committed.
 */
import { and, eq, inArray } from 'drizzle-orm';
import type { Actor } from '../core/actor.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import { findApiKey } from '../store/repositories/api-keys.ts';
import {
  type BudgetValues,
  deleteBudget,
  deleteRateLimit,
  deleteSpendAlert,
  findBudget,
  findSpendAlert,
  insertSpendAlert,
  listBudgets,
  listRateLimitRows,
  listSpendAlerts,
  type RateLimitValues,
  type ScopeRef,
  type SpendAlertValues,
  updateSpendAlert,
  upsertBudget,
  upsertRateLimit,
} from '../store/repositories/limits.ts';
import type { Page, PageRequest } from '../store/repositories/pagination.ts';
import { findProject } from '../store/repositories/projects.ts';
import { apiKeys, type BudgetRow, type RateLimitRow, type SpendAlertRow } from '../store/schema.ts';

/** `*` stands for all models of the scope together. */
export const ALL_MODELS = '*';

/** The rate limits of one model (or `*`) in one scope; null = no limit. */
export interface RateLimitSetting extends RateLimitValues {
  model: string;
  /** False when nothing is stored for this model (every limit null). */
  configured: boolean;
}

export type RateLimitPatch = Partial<Record<keyof RateLimitValues, number | null>>;

export interface BudgetInput {
  scope: ScopeRef;
  metric: BudgetRow['metric'];
  period: BudgetRow['period'];
  hardLimit?: number | null | undefined;
  softLimitPercents?: number[] | undefined;
  notifyEmails?: string[] | undefined;
}

/** What the gateway has spent in a budget's current period (from the enforcer's counters). */
export interface SpendReader {
  /** In the budget's unit: cents for cost (fractional), tokens for tokens. */
  currentSpend(organizationId: string, budget: BudgetRow): Promise<number>;
}

/** The Admin API's (OpenAI's) names of the rate limit fields: in errors and audit details. */
const RATE_LIMIT_FIELDS = {
  maxRequestsPerMinute: 'max_requests_per_1_minute',
  maxTokensPerMinute: 'max_tokens_per_1_minute',
  maxRequestsPerDay: 'max_requests_per_1_day',
  maxTokensPerDay: 'max_tokens_per_1_day',
  maxConcurrentRequests: 'max_concurrent_requests',
} as const satisfies Record<keyof RateLimitValues, string>;

/** A rate limit's id as the Admin API shows it (`rl-gpt-4o`, `rl-*`; see api/admin/objects.ts). */
const rateLimitId = (model: string) => `rl-${model}`;

const MAX_LIMIT = 2_000_000_000;
const MAX_TOKENS_PER_DAY = 1e15;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

export class LimitsService {
  #spend: SpendReader | undefined;

  constructor(
    private readonly db: Db,
    /** Called after every change: drop cached limits (here and on other instances). */
    private readonly changed: (organizationId: string) => Promise<void>,
  ) {}

  /** Set once the enforcer exists (it reads counters; this service is built before it). */
  useSpendReader(reader: SpendReader): void {
    this.#spend = reader;
  }

  // ---- scopes -------------------------------------------------------------------------------

  /** The scope of a project or of one of its keys, checked to belong to the organization (404 otherwise). */
  async resolveScope(
    organizationId: string,
    ref: { projectId?: string | undefined; apiKeyId?: string | undefined },
  ): Promise<ScopeRef> {
    if (ref.apiKeyId) {
      if (!ref.projectId) throw badRequest('An API key scope needs its project id.', 'project_id');
      await this.requireProject(organizationId, ref.projectId);
      const key = await findApiKey(this.db, { organizationId, projectId: ref.projectId }, ref.apiKeyId);
      if (!key || key.revokedAt) throw notFound('API key', ref.apiKeyId);
      return { type: 'api_key', id: key.id };
    }
    if (ref.projectId) {
      await this.requireProject(organizationId, ref.projectId);
      return { type: 'project', id: ref.projectId };
    }
    return { type: 'organization', id: organizationId };
  }

  private async requireProject(organizationId: string, projectId: string): Promise<void> {
    const project = await findProject(this.db, organizationId, projectId);
    if (!project) throw notFound('project', projectId);
  }

  /**
   * The project of each key (revoked ones included): key scopes store only the key id, and the
   * Admin API shows a key-scoped budget with its project.
   */
  async projectsOfKeys(
    organizationId: string,
    keyIds: readonly string[],
  ): Promise<Map<string, string | null>> {
    if (keyIds.length === 0) return new Map();
    const rows = await this.db
      .select({ id: apiKeys.id, projectId: apiKeys.projectId })
      .from(apiKeys)
      .where(and(eq(apiKeys.organizationId, organizationId), inArray(apiKeys.id, [...new Set(keyIds)])));
    return new Map(rows.map((row) => [row.id, row.projectId]));
  }

  // ---- rate limits --------------------------------------------------------------------------

  /**
   * Every model of the scope: `*` first, then the given models (those the upstreams serve) and any
   * other model with stored limits, sorted. Models with nothing stored show null limits.
   */
  async listRateLimits(
    organizationId: string,
    scope: ScopeRef,
    knownModels: readonly string[],
  ): Promise<RateLimitSetting[]> {
    const rows = await listRateLimitRows(this.db, organizationId, scope);
    const byModel = new Map(rows.map((row) => [row.model, row]));
    const models = [...new Set([...knownModels, ...byModel.keys()])]
      .filter((model) => model !== ALL_MODELS)
      .sort();
    return [ALL_MODELS, ...models].map((model) => settingOf(model, byModel.get(model)));
  }

  async getRateLimit(organizationId: string, scope: ScopeRef, model: string): Promise<RateLimitSetting> {
    const rows = await listRateLimitRows(this.db, organizationId, scope);
    return settingOf(
      model,
      rows.find((row) => row.model === model),
    );
  }

  /** Fields left out keep their value; null (or 0) removes a limit. */
  async updateRateLimit(
    organizationId: string,
    scope: ScopeRef,
    model: string,
    patch: RateLimitPatch,
    actor: Actor,
  ): Promise<RateLimitSetting> {
    validateModelName(model);
    const values: Partial<RateLimitValues> = {};
    const requested: Record<string, number | null> = {};
    for (const [field, value] of Object.entries(patch) as [keyof RateLimitValues, number | null][]) {
      if (value === undefined) continue;
      const param = RATE_LIMIT_FIELDS[field];
      const max = field === 'maxTokensPerDay' ? MAX_TOKENS_PER_DAY : MAX_LIMIT;
      if (value !== null && (!Number.isInteger(value) || value < 0 || value > max)) {
        throw badRequest(`Invalid ${param}: expected a whole number from 0 (no limit) to ${max}.`, param);
      }
      values[field] = value === 0 ? null : value;
      requested[param] = value;
    }
    const row = await this.db.transaction(async (tx) => {
      const row = await upsertRateLimit(tx, organizationId, scope, model, values);
      await recordAudit(tx, {
        ...(await this.#rateLimitAudit(tx, organizationId, scope, actor)),
        type: 'rate_limit.updated',
        details: { id: rateLimitId(model), ...scopeDetail(scope), changes_requested: requested },
      });
      return row;
    });
    await this.changed(organizationId);
    return settingOf(model, row);
  }

  /** False (and nothing audited) when nothing was stored for the model. */
  async deleteRateLimit(
    organizationId: string,
    scope: ScopeRef,
    model: string,
    actor: Actor,
  ): Promise<boolean> {
    const deleted = await this.db.transaction(async (tx) => {
      if (!(await deleteRateLimit(tx, organizationId, scope, model))) return false;
      await recordAudit(tx, {
        ...(await this.#rateLimitAudit(tx, organizationId, scope, actor)),
        type: 'rate_limit.deleted',
        details: { id: rateLimitId(model), ...scopeDetail(scope) },
      });
      return true;
    });
    if (deleted) await this.changed(organizationId);
    return deleted;
  }

  /** A rate limit's entry is about its scope (the project, the key, the organization). */
  async #rateLimitAudit(tx: DbOrTx, organizationId: string, scope: ScopeRef, actor: Actor) {
    return {
      organizationId,
      projectId: await projectOfScope(tx, organizationId, scope),
      actor,
      resourceId: scope.id,
    };
  }

  // ---- budgets ------------------------------------------------------------------------------

  /** Creates the scope's budget for the metric and period, or replaces the fields given. */
  async setBudget(organizationId: string, input: BudgetInput, actor: Actor): Promise<BudgetRow> {
    const values = budgetValues(input);
    const row = await this.db.transaction(async (tx) => {
      const { row, created } = await this.#writeBudget(tx, organizationId, input, values);
      const projectId = await projectOfScope(tx, organizationId, input.scope);
      await recordAudit(tx, {
        organizationId,
        projectId,
        actor,
        resourceId: row.id,
        ...(created
          ? {
              type: 'budget.created',
              details: { id: row.id, data: budgetData(row, projectId) },
            }
          : {
              type: 'budget.updated',
              details: { id: row.id, changes_requested: requestedBudgetFields(input) },
            }),
      });
      return row;
    });
    await this.changed(organizationId);
    return row;
  }

  /**
   * Upserts a budget (the caller audits it): `created` comes from the insert itself, so of two
   * concurrent first writes one audits the creation and the other an update.
   */
  async #writeBudget(
    tx: DbOrTx,
    organizationId: string,
    input: BudgetInput,
    values: Partial<BudgetValues>,
  ): Promise<{ row: BudgetRow; created: boolean }> {
    const existing = await findBudget(tx, organizationId, {
      scope: input.scope,
      metric: input.metric,
      period: input.period,
    });
    const hardLimit = values.hardLimit !== undefined ? values.hardLimit : (existing?.hardLimit ?? null);
    const percents = values.softLimitPercents ?? existing?.softLimitPercents ?? [];
    if (hardLimit === null && percents.length > 0) {
      throw badRequest(
        'soft_limit_percents are percentages of hard_limit: set a hard_limit too.',
        'hard_limit',
      );
    }
    return upsertBudget(tx, organizationId, input, values);
  }

  async getBudget(organizationId: string, id: string): Promise<BudgetRow> {
    const row = await findBudget(this.db, organizationId, { id });
    if (!row) throw notFound('budget', id);
    return row;
  }

  findBudget(
    organizationId: string,
    scope: ScopeRef,
    metric: BudgetRow['metric'],
    period: BudgetRow['period'],
  ): Promise<BudgetRow | undefined> {
    return findBudget(this.db, organizationId, { scope, metric, period });
  }

  listBudgets(
    organizationId: string,
    filter: { scope?: ScopeRef },
    page: PageRequest,
  ): Promise<Page<BudgetRow>> {
    return listBudgets(this.db, organizationId, filter, page);
  }

  async deleteBudget(organizationId: string, id: string, actor: Actor): Promise<void> {
    await this.db.transaction(async (tx) => {
      const budget = await findBudget(tx, organizationId, { id });
      if (!budget || !(await deleteBudget(tx, organizationId, id))) throw notFound('budget', id);
      await recordAudit(tx, {
        organizationId,
        projectId: await projectOfScope(tx, organizationId, scopeOf(budget)),
        type: 'budget.deleted',
        actor,
        resourceId: id,
        details: { id },
      });
    });
    await this.changed(organizationId);
  }

  /** Spend so far this period, in the budget's unit (cents or tokens). */
  async currentSpend(organizationId: string, budget: BudgetRow): Promise<number> {
    if (!this.#spend) return 0;
    return this.#spend.currentSpend(organizationId, budget);
  }

  // ---- OpenAI's spend limit: the monthly cost budget's hard limit ---------------------------

  async getSpendLimit(organizationId: string, scope: ScopeRef): Promise<BudgetRow | undefined> {
    const budget = await this.findBudget(organizationId, scope, 'cost', 'month');
    return budget?.hardLimit == null ? undefined : budget;
  }

  /** Sets the hard limit of the scope's monthly cost budget (made if there is none). */
  async setSpendLimit(
    organizationId: string,
    scope: ScopeRef,
    cents: number,
    actor: Actor,
  ): Promise<BudgetRow> {
    const input: BudgetInput = { scope, metric: 'cost', period: 'month', hardLimit: cents };
    const values = budgetValues(input);
    const row = await this.db.transaction(async (tx) => {
      const { row } = await this.#writeBudget(tx, organizationId, input, values);
      await recordAudit(tx, {
        organizationId,
        projectId: await projectOfScope(tx, organizationId, scope),
        type: 'spend_limit.updated',
        actor,
        resourceId: scope.id,
        // A spend limit has no id of its own in OpenAI's API: it is its scope's.
        details: {
          id: scope.id,
          changes_requested: { threshold_amount: cents, currency: 'USD', interval: 'month' },
        },
      });
      return row;
    });
    await this.changed(organizationId);
    return row;
  }

  /** Removes the hard limit (and the percentages of it). False (nothing audited) when there was none. */
  async deleteSpendLimit(organizationId: string, scope: ScopeRef, actor: Actor): Promise<boolean> {
    const deleted = await this.db.transaction(async (tx) => {
      const budget = await findBudget(tx, organizationId, { scope, metric: 'cost', period: 'month' });
      if (budget?.hardLimit == null) return false;
      await this.#writeBudget(
        tx,
        organizationId,
        { scope, metric: 'cost', period: 'month' },
        { hardLimit: null, softLimitPercents: [] },
      );
      await recordAudit(tx, {
        organizationId,
        projectId: await projectOfScope(tx, organizationId, scope),
        type: 'spend_limit.deleted',
        actor,
        resourceId: scope.id,
        details: { id: scope.id },
      });
      return true;
    });
    if (deleted) await this.changed(organizationId);
    return deleted;
  }

  // ---- spend alerts -------------------------------------------------------------------------

  async createSpendAlert(
    organizationId: string,
    scope: ScopeRef,
    input: SpendAlertValues,
    actor: Actor,
  ): Promise<SpendAlertRow> {
    const target = alertScope(scope);
    const values = validAlert(input);
    const row = await this.db.transaction(async (tx) => {
      const row = await insertSpendAlert(tx, organizationId, target, values);
      await recordAudit(tx, {
        organizationId,
        projectId: target.type === 'project' ? target.id : null,
        type: 'spend_alert.created',
        actor,
        resourceId: row.id,
        details: { id: row.id, data: alertFields(row) },
      });
      return row;
    });
    await this.changed(organizationId);
    return row;
  }

  async getSpendAlert(organizationId: string, scope: ScopeRef, id: string): Promise<SpendAlertRow> {
    const row = await findSpendAlert(this.db, organizationId, scope, id);
    if (!row) throw notFound('spend alert', id);
    return row;
  }

  listSpendAlerts(organizationId: string, scope: ScopeRef, page: PageRequest): Promise<Page<SpendAlertRow>> {
    return listSpendAlerts(this.db, organizationId, scope, page);
  }

  /** Replaces the whole alert (OpenAI's update takes every field). */
  async updateSpendAlert(
    organizationId: string,
    scope: ScopeRef,
    id: string,
    input: SpendAlertValues,
    actor: Actor,
  ): Promise<SpendAlertRow> {
    const values = validAlert(input);
    const row = await this.db.transaction(async (tx) => {
      const row = await updateSpendAlert(tx, organizationId, scope, id, values);
      if (!row) throw notFound('spend alert', id);
      await recordAudit(tx, {
        organizationId,
        projectId: scope.type === 'project' ? scope.id : null,
        type: 'spend_alert.updated',
        actor,
        resourceId: id,
        details: { id, changes_requested: alertFields(input) },
      });
      return row;
    });
    await this.changed(organizationId);
    return row;
  }

  async deleteSpendAlert(organizationId: string, scope: ScopeRef, id: string, actor: Actor): Promise<void> {
    await this.db.transaction(async (tx) => {
      if (!(await deleteSpendAlert(tx, organizationId, scope, id))) throw notFound('spend alert', id);
      await recordAudit(tx, {
        organizationId,
        projectId: scope.type === 'project' ? scope.id : null,
        type: 'spend_alert.deleted',
        actor,
        resourceId: id,
        details: { id },
      });
    });
    await this.changed(organizationId);
  }
}

// ---- audit details ------------------------------------------------------------------------------

/** The project an entry about a scope belongs to: the project, or the key's project. */
async function projectOfScope(tx: DbOrTx, organizationId: string, scope: ScopeRef): Promise<string | null> {
  if (scope.type === 'organization') return null;
  if (scope.type === 'project') return scope.id;
  const [key] = await tx
    .select({ projectId: apiKeys.projectId })
    .from(apiKeys)
    .where(and(eq(apiKeys.organizationId, organizationId), eq(apiKeys.id, scope.id)));
  return key?.projectId ?? null;
}

/**
 * OpenAI's `rate_limit.*` details are about project rate limits; Keyport's organization and key
 * rate limits say which scope they are (an entry about a key's limit also carries its project).
 */
function scopeDetail(scope: ScopeRef): Record<string, unknown> {
  return scope.type === 'project' ? {} : { scope: { type: scope.type, id: scope.id } };
}

function scopeOf(budget: BudgetRow): ScopeRef {
  return { type: budget.scopeType, id: budget.scopeId };
}

/** A new budget in the Admin API's field names. */
function budgetData(row: BudgetRow, projectId: string | null): Record<string, unknown> {
  return {
    scope: { type: row.scopeType, id: row.scopeId },
    project_id: projectId,
    api_key_id: row.scopeType === 'api_key' ? row.scopeId : null,
    metric: row.metric,
    period: row.period,
    hard_limit: row.hardLimit,
    soft_limit_percents: row.softLimitPercents,
    notify_emails: row.notifyEmails,
  };
}

/** The value fields a budget write asked for, as the Admin API names them. */
function requestedBudgetFields(input: BudgetInput): Record<string, unknown> {
  return {
    ...(input.hardLimit !== undefined ? { hard_limit: input.hardLimit } : {}),
    ...(input.softLimitPercents !== undefined ? { soft_limit_percents: input.softLimitPercents } : {}),
    ...(input.notifyEmails !== undefined ? { notify_emails: input.notifyEmails } : {}),
  };
}

/** A spend alert's fields in OpenAI's shape. */
function alertFields(alert: SpendAlertValues): Record<string, unknown> {
  return {
    threshold_amount: alert.thresholdAmount,
    currency: 'USD',
    interval: 'month',
    notification_channel: {
      type: 'email',
      recipients: alert.recipients,
      subject_prefix: alert.subjectPrefix ?? null,
    },
  };
}

/** A budget's value fields, validated (before any transaction: a refused change writes nothing). */
function budgetValues(input: BudgetInput): Partial<BudgetValues> {
  const values: Partial<BudgetValues> = {};
  if (input.hardLimit !== undefined) {
    if (input.hardLimit !== null && (!Number.isInteger(input.hardLimit) || input.hardLimit < 0)) {
      throw badRequest('Invalid hard_limit: expected a whole, non-negative number.', 'hard_limit');
    }
    values.hardLimit = input.hardLimit;
  }
  if (input.softLimitPercents !== undefined) {
    const percents = [...new Set(input.softLimitPercents)].sort((a, b) => a - b);
    if (percents.some((p) => !Number.isInteger(p) || p < 1 || p > 100)) {
      throw badRequest(
        'Invalid soft_limit_percents: whole percentages from 1 to 100.',
        'soft_limit_percents',
      );
    }
    values.softLimitPercents = percents;
  }
  if (input.notifyEmails !== undefined) values.notifyEmails = emails(input.notifyEmails, 'notify_emails');
  return values;
}

function settingOf(model: string, row: RateLimitRow | undefined): RateLimitSetting {
  return {
    model,
    configured: row !== undefined,
    maxRequestsPerMinute: row?.maxRequestsPerMinute ?? null,
    maxTokensPerMinute: row?.maxTokensPerMinute ?? null,
    maxRequestsPerDay: row?.maxRequestsPerDay ?? null,
    maxTokensPerDay: row?.maxTokensPerDay ?? null,
    maxConcurrentRequests: row?.maxConcurrentRequests ?? null,
  };
}

/** A model name rate limits can be stored for, or `*`. */
export function isModelName(model: string): boolean {
  return model === ALL_MODELS || /^[A-Za-z0-9._:/@+-]{1,200}$/.test(model);
}

function validateModelName(model: string): void {
  if (!isModelName(model)) {
    throw badRequest(`Invalid model ${JSON.stringify(model)}: a model name, or * for all models.`, 'model');
  }
}

function emails(list: string[], param: string): string[] {
  if (list.length > 50) throw badRequest(`Invalid ${param}: at most 50 addresses.`, param);
  for (const email of list) {
    if (email.length > 320 || !EMAIL.test(email))
      throw badRequest(`Invalid email address ${JSON.stringify(email)}.`, param);
  }
  return [...new Set(list)];
}

function alertScope(scope: ScopeRef): { type: 'organization' | 'project'; id: string } {
  if (scope.type === 'api_key') throw badRequest('Spend alerts belong to an organization or a project.');
  return { type: scope.type, id: scope.id };
}

function validAlert(input: SpendAlertValues): SpendAlertValues {
  if (!Number.isInteger(input.thresholdAmount) || input.thresholdAmount < 0) {
    throw badRequest('Invalid threshold_amount: whole cents, 0 or more.', 'threshold_amount');
  }
  if (input.recipients.length === 0) {
    throw badRequest(
      'notification_channel.recipients needs at least one address.',
      'notification_channel.recipients',
    );
  }
  return {
    thresholdAmount: input.thresholdAmount,
    recipients: emails(input.recipients, 'notification_channel.recipients'),
    subjectPrefix: input.subjectPrefix ?? null,
  };
}
