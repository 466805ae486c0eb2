/**
 * What applies to one request: from an organization's stored limits, the rate buckets,
 * concurrency slots and budget counters for a key and a model. Plans are built once per
 * (key, model) and cached with the organization's limits, so the hot path is two map lookups.
 */

import type { BudgetPeriod } from '../core/periods.ts';
import { modelOfSnapshot } from '../core/pricing.ts';
import type { BudgetRow, LimitScope, RateLimitRow, SpendAlertRow } from '../store/schema.ts';
import type { ConcurrencySlot, RateBucket } from './limiter.ts';
import { ALL_MODELS } from './limits-service.ts';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** How a bucket is named in a 429's message. */
export interface BucketLabel {
  scope: LimitScope;
  scopeId: string;
  /** OpenAI's wording: "requests per min (RPM)". */
  name: string;
}

/** A (scope, metric, period) spend counter and the thresholds that watch it. */
export interface CounterPlan {
  /** The organization the scope belongs to (usage roll-ups are kept per organization). */
  organizationId: string;
  scope: LimitScope;
  scopeId: string;
  metric: BudgetRow['metric'];
  period: BudgetPeriod;
  /** The budget with a hard limit on this counter, if any. */
  budget: BudgetRow | undefined;
  /** OpenAI spend alerts (monthly cost of an organization or project). */
  spendAlerts: SpendAlertRow[];
}

export interface LimitPlan {
  /** Nothing applies: the request goes through untouched (no headers). */
  empty: boolean;
  buckets: RateBucket[];
  tokenBuckets: RateBucket[];
  slots: ConcurrencySlot[];
  labels: Map<RateBucket | ConcurrencySlot, BucketLabel>;
  /** Whether admission needs a token estimate. */
  countsTokens: boolean;
  counters: CounterPlan[];
  /** Counters with a hard limit, checked before each request. */
  hardLimited: CounterPlan[];
}

export interface OrganizationLimits {
  rateLimits: RateLimitRow[];
  budgets: BudgetRow[];
  spendAlerts: SpendAlertRow[];
}

export const EMPTY_PLAN: LimitPlan = {
  empty: true,
  buckets: [],
  tokenBuckets: [],
  slots: [],
  labels: new Map(),
  countsTokens: false,
  counters: [],
  hardLimited: [],
};

export interface PlanSubject {
  organizationId: string;
  projectId: string | null;
  apiKeyId: string;
}

export function buildPlan(
  limits: OrganizationLimits,
  subject: PlanSubject,
  model: string | undefined,
): LimitPlan {
  const scopeIds: Record<LimitScope, string | null> = {
    organization: subject.organizationId,
    project: subject.projectId,
    api_key: subject.apiKeyId,
  };
  const applies = (type: LimitScope, id: string) => scopeIds[type] === id;

  const buckets: RateBucket[] = [];
  const slots: ConcurrencySlot[] = [];
  const labels = new Map<RateBucket | ConcurrencySlot, BucketLabel>();
  for (const row of limits.rateLimits) {
    if (!applies(row.scopeType, row.scopeId)) continue;
    // A model's limit covers its dated snapshots too, as OpenAI's do (and as its price does).
    if (
      row.model !== ALL_MODELS &&
      row.model !== model &&
      (model === undefined || row.model !== modelOfSnapshot(model))
    )
      continue;
    const label = (name: string): BucketLabel => ({ scope: row.scopeType, scopeId: row.scopeId, name });
    const add = (
      suffix: string,
      unit: RateBucket['unit'],
      limit: number | null,
      periodMs: number,
      name: string,
    ) => {
      if (limit === null) return;
      const bucket: RateBucket = { key: `rl:${row.id}:${suffix}`, unit, limit, periodMs };
      buckets.push(bucket);
      labels.set(bucket, label(name));
    };
    add('rpm', 'requests', row.maxRequestsPerMinute, MINUTE, 'requests per min (RPM)');
    add('tpm', 'tokens', row.maxTokensPerMinute, MINUTE, 'tokens per min (TPM)');
    add('rpd', 'requests', row.maxRequestsPerDay, DAY, 'requests per day (RPD)');
    add('tpd', 'tokens', row.maxTokensPerDay, DAY, 'tokens per day (TPD)');
    if (row.maxConcurrentRequests !== null) {
      const slot: ConcurrencySlot = { key: `cc:${row.id}`, limit: row.maxConcurrentRequests };
      slots.push(slot);
      labels.set(slot, label('concurrent requests'));
    }
  }

  const counters = new Map<string, CounterPlan>();
  const counter = (scope: LimitScope, scopeId: string, metric: BudgetRow['metric'], period: BudgetPeriod) => {
    const id = `${scope}:${scopeId}:${metric}:${period}`;
    let plan = counters.get(id);
    if (!plan) {
      plan = {
        organizationId: subject.organizationId,
        scope,
        scopeId,
        metric,
        period,
        budget: undefined,
        spendAlerts: [],
      };
      counters.set(id, plan);
    }
    return plan;
  };
  for (const budget of limits.budgets) {
    if (!applies(budget.scopeType, budget.scopeId) || budget.hardLimit === null) continue;
    counter(budget.scopeType, budget.scopeId, budget.metric, budget.period).budget = budget;
  }
  for (const alert of limits.spendAlerts) {
    if (!applies(alert.scopeType, alert.scopeId)) continue;
    counter(alert.scopeType, alert.scopeId, 'cost', 'month').spendAlerts.push(alert);
  }
  const counterList = [...counters.values()];
  const tokenBuckets = buckets.filter((b) => b.unit === 'tokens');
  return {
    empty: buckets.length === 0 && slots.length === 0 && counterList.length === 0,
    buckets,
    tokenBuckets,
    slots,
    labels,
    countsTokens: tokenBuckets.length > 0,
    counters: counterList,
    hardLimited: counterList.filter((c) => c.budget !== undefined),
  };
}
