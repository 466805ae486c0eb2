/**
 * Limit settings: rate limits, budgets and spend alerts of an organization, its projects and its
 * keys. Validates, stores, and tells the gateway's cache (on every instance) that they changed.
 * Enforcement lives in `enforcer.ts`; this is the management side the Admin API and CLI use.
 */
import { and, eq, inArray } from 'drizzle-orm';
import { badRequest, notFound } from '../core/errors.ts';
import type { Db } from '../store/database.ts';
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
  ): Promise<RateLimitSetting> {
    validateModelName(model);
    const values: Partial<RateLimitValues> = {};
    for (const [field, value] of Object.entries(patch) as [keyof RateLimitValues, number | null][]) {
      if (value === undefined) continue;
      const max = field === 'maxTokensPerDay' ? MAX_TOKENS_PER_DAY : MAX_LIMIT;
      if (value !== null && (!Number.isInteger(value) || value < 0 || value > max)) {
        throw badRequest(
          `Invalid ${snake(field)}: expected a whole number from 0 (no limit) to ${max}.`,
          snake(field),
        );
      }
      values[field] = value === 0 ? null : value;
    }
    const row = await upsertRateLimit(this.db, organizationId, scope, model, values);
    await this.changed(organizationId);
    return settingOf(model, row);
  }

  async deleteRateLimit(organizationId: string, scope: ScopeRef, model: string): Promise<boolean> {
    const deleted = await deleteRateLimit(this.db, organizationId, scope, model);
    if (deleted) await this.changed(organizationId);
    return deleted;
  }

  // ---- budgets ------------------------------------------------------------------------------

  async setBudget(organizationId: string, input: BudgetInput): Promise<BudgetRow> {
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
    const existing = await findBudget(this.db, organizationId, {
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
    const row = await upsertBudget(this.db, organizationId, input, values);
    await this.changed(organizationId);
    return row;
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

  async deleteBudget(organizationId: string, id: string): Promise<void> {
    if (!(await deleteBudget(this.db, organizationId, id))) throw notFound('budget', id);
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

  setSpendLimit(organizationId: string, scope: ScopeRef, cents: number): Promise<BudgetRow> {
    return this.setBudget(organizationId, { scope, metric: 'cost', period: 'month', hardLimit: cents });
  }

  /** Removes the hard limit (and the percentages of it). False when there was none. */
  async deleteSpendLimit(organizationId: string, scope: ScopeRef): Promise<boolean> {
    const budget = await this.getSpendLimit(organizationId, scope);
    if (!budget) return false;
    await this.setBudget(organizationId, {
      scope,
      metric: 'cost',
      period: 'month',
      hardLimit: null,
      softLimitPercents: [],
    });
    return true;
  }

  // ---- spend alerts -------------------------------------------------------------------------

  async createSpendAlert(
    organizationId: string,
    scope: ScopeRef,
    input: SpendAlertValues,
  ): Promise<SpendAlertRow> {
    const row = await insertSpendAlert(this.db, organizationId, alertScope(scope), validAlert(input));
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

  async updateSpendAlert(
    organizationId: string,
    scope: ScopeRef,
    id: string,
    input: SpendAlertValues,
  ): Promise<SpendAlertRow> {
    const row = await updateSpendAlert(this.db, organizationId, scope, id, validAlert(input));
    if (!row) throw notFound('spend alert', id);
    await this.changed(organizationId);
    return row;
  }

  async deleteSpendAlert(organizationId: string, scope: ScopeRef, id: string): Promise<void> {
    if (!(await deleteSpendAlert(this.db, organizationId, scope, id))) throw notFound('spend alert', id);
    await this.changed(organizationId);
  }
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

function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
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
