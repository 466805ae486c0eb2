/**
 * Enforcement on the gateway's path. Before a request goes upstream: hard budgets (429
 * `insufficient_quota`, not to be retried), then every rate bucket and concurrency slot at once
 * (429 `rate_limit_exceeded` with `retry-after(-ms)`), charging the request's estimated tokens
 * (prompt counted + max output). After it: the real tokens reconcile the token buckets, the
 * concurrency lease is released, the cost and tokens are added to the budget counters, and any
 * soft or hard threshold reached raises an alert (once per period, across instances).
 *
 * Budget counters live in the limiter (in-process or Redis) and are seeded from the durable usage
 * records whenever one is missing: at first use, after a restart, at a new period. A seed is what
 * the database holds plus what this instance has recorded and not written yet, read while no batch
 * is being written: each of this instance's events is in it exactly once, so the requests whose
 * additions found the counter missing are in it already and do not add again.
 */

import type { Logger } from 'pino';
import { sumUsage } from '../billing/usage-query.ts';
import type { SpendScope } from '../billing/usage-recorder.ts';
import { ApiError } from '../core/errors.ts';
import { formatResetDuration } from '../core/gcra.ts';
import { type BudgetPeriod, periodBounds } from '../core/periods.ts';
import { NANO_USD_PER_CENT } from '../core/pricing.ts';
import type { Db } from '../store/database.ts';
import type { BudgetRow } from '../store/schema.ts';
import type { BucketLabel, CounterPlan, LimitPlan, PlanSubject } from './limit-plan.ts';
import type { BucketState, Limiter, MaybePromise } from './limiter.ts';
import type { LimitsCatalog } from './limits-catalog.ts';
import type { SpendReader } from './limits-service.ts';

/** What the notifications module is handed when a threshold is reached. */
export interface LimitAlert {
  organizationId: string;
  projectId: string | null;
  kind: 'budget.soft_limit' | 'budget.hard_limit' | 'spend_alert';
  severity: 'info' | 'warning' | 'critical';
  title: string;
  message: string;
  data: Record<string, unknown>;
  dedupeKey: string;
  emailRecipients: string[];
  emailSubjectPrefix?: string | undefined;
}

export interface Admission {
  plan: LimitPlan;
  subject: PlanSubject;
  estimatedTokens: number;
  leaseId: string;
  /** `x-ratelimit-*` for the response (empty when no rate limit applies). */
  headers: Record<string, string>;
}

/** The usage recorded on this instance and not in the database yet (the usage recorder). */
export interface UnwrittenUsage {
  spend(scope: SpendScope, start: number, end: number): { cost: number; tokens: number };
  whileNotWriting<T>(fn: () => Promise<T>): Promise<T>;
}

const NOTHING_UNWRITTEN: UnwrittenUsage = {
  spend: () => ({ cost: 0, tokens: 0 }),
  whileNotWriting: (fn) => fn(),
};

export interface EnforcerOptions {
  catalog: LimitsCatalog;
  limiter: Limiter;
  db: Db;
  unwritten?: UnwrittenUsage;
  timeZone: string;
  notify: (alert: LimitAlert) => Promise<void>;
  logger: Logger;
  now?: () => number;
}

const SEED_SLACK_MS = 24 * 3600_000;
const MAX_REMEMBERED_ALERTS = 10_000;

export class LimitEnforcer implements SpendReader {
  readonly #catalog: LimitsCatalog;
  readonly #limiter: Limiter;
  readonly #now: () => number;
  /** Seeds in flight, so a burst of requests runs one query per counter; true if this one set it. */
  readonly #seeding = new Map<string, Promise<boolean>>();
  /** Alerts this instance has already raised (the database dedupes across instances). */
  readonly #raised = new Set<string>();
  /** Spend additions still running, for tests and shutdown. */
  readonly #pending = new Set<Promise<void>>();

  constructor(private readonly options: EnforcerOptions) {
    this.#catalog = options.catalog;
    this.#limiter = options.limiter;
    this.#now = options.now ?? Date.now;
  }

  get limiter(): Limiter {
    return this.#limiter;
  }

  /** The cached limits, budgets and spend alerts of each organization. */
  get catalog(): LimitsCatalog {
    return this.#catalog;
  }

  /**
   * Undefined when nothing applies (no headers, nothing to settle). Throws the 429s. Synchronous
   * on the in-process limiter with cached limits and no hard budget: no promise on the hot path.
   */
  admit(
    subject: PlanSubject,
    model: string | undefined,
    estimateTokens: () => number,
    leaseId: string,
  ): MaybePromise<Admission | undefined> {
    const plan = this.#catalog.planFor(subject, model);
    if (plan instanceof Promise) {
      return plan.then((p) => this.#admitWithPlan(p, subject, model, estimateTokens, leaseId));
    }
    return this.#admitWithPlan(plan, subject, model, estimateTokens, leaseId);
  }

  #admitWithPlan(
    plan: LimitPlan,
    subject: PlanSubject,
    model: string | undefined,
    estimateTokens: () => number,
    leaseId: string,
  ): MaybePromise<Admission | undefined> {
    if (plan.empty) return undefined;
    if (plan.hardLimited.length > 0) {
      return this.#checkBudgets(plan).then(() =>
        this.#admitRates(plan, subject, model, estimateTokens, leaseId),
      );
    }
    return this.#admitRates(plan, subject, model, estimateTokens, leaseId);
  }

  #admitRates(
    plan: LimitPlan,
    subject: PlanSubject,
    model: string | undefined,
    estimateTokens: () => number,
    leaseId: string,
  ): MaybePromise<Admission | undefined> {
    const tokens = plan.countsTokens ? estimateTokens() : 0;
    const admission: Admission = { plan, subject, estimatedTokens: tokens, leaseId, headers: {} };
    if (plan.buckets.length === 0 && plan.slots.length === 0) return admission;
    const result = this.#limiter.admit({ buckets: plan.buckets, slots: plan.slots, tokens, leaseId });
    if (result instanceof Promise) {
      return result.then((r) => this.#decide(r, admission, model));
    }
    return this.#decide(result, admission, model);
  }

  #decide(
    result: Awaited<ReturnType<Limiter['admit']>>,
    admission: Admission,
    model: string | undefined,
  ): Admission {
    const headers = rateLimitHeaders(result.states);
    if (result.allowed) {
      admission.headers = headers;
      return admission;
    }
    const { plan, estimatedTokens } = admission;
    if (result.reason === 'concurrency') {
      const label = plan.labels.get(result.slot)!;
      throw new ApiError(
        'rate_limit_exceeded',
        `Too many concurrent requests for ${model ?? 'this endpoint'} in ${where(label)}: Limit ${result.slot.limit}, In flight ${result.inFlight}. Please try again when one of your requests has finished.`,
        null,
        { ...headers, 'retry-after': '1', 'retry-after-ms': '1000' },
        'requests',
      );
    }
    const bucket = result.bucket;
    const label = plan.labels.get(bucket)!;
    const state = result.states.find((s) => s.bucket === bucket);
    const requested = bucket.unit === 'tokens' ? estimatedTokens : 1;
    const modelText = model ?? 'this endpoint';
    if (!Number.isFinite(result.retryAfterMs)) {
      throw new ApiError(
        'rate_limit_exceeded',
        `Request too large for ${modelText} in ${where(label)} on ${label.name}: Limit ${bucket.limit}, Requested ${requested}. The input or output tokens must be reduced in order to run successfully.`,
        null,
        { ...headers, 'x-should-retry': 'false' },
        bucket.unit,
      );
    }
    const used = Math.max(0, bucket.limit - (state?.remaining ?? 0));
    const waitMs = Math.max(1, Math.ceil(result.retryAfterMs));
    throw new ApiError(
      'rate_limit_exceeded',
      `Rate limit reached for ${modelText} in ${where(label)} on ${label.name}: Limit ${bucket.limit}, Used ${used}, Requested ${requested}. Please try again in ${formatResetDuration(waitMs)}.`,
      null,
      { ...headers, 'retry-after': String(Math.ceil(waitMs / 1000)), 'retry-after-ms': String(waitMs) },
      bucket.unit,
    );
  }

  async #checkBudgets(plan: LimitPlan): Promise<void> {
    const now = this.#now();
    const values = await this.#readCounters(plan.hardLimited, now);
    plan.hardLimited.forEach((counter, i) => {
      const budget = counter.budget!;
      const limitUnits = unitsOf(budget, budget.hardLimit!);
      if (values[i]! < limitUnits) return;
      const bounds = periodBounds(counter.period, now, this.options.timeZone);
      throw new ApiError(
        'insufficient_quota',
        `You exceeded your current quota: the ${counter.period === 'month' ? 'monthly' : 'daily'} ` +
          `${budget.metric === 'cost' ? 'spend' : 'token'} limit of ${formatAmount(budget, budget.hardLimit!)} ` +
          `for ${where({ scope: counter.scope, scopeId: counter.scopeId, name: '' })} has been reached ` +
          `(used ${formatAmount(budget, values[i]! / (budget.metric === 'cost' ? NANO_USD_PER_CENT : 1))}). ` +
          `It resets at ${new Date(bounds.end).toISOString()}; raise the limit to continue sooner.`,
        null,
        { 'x-should-retry': 'false' },
      );
    });
  }

  /** Counter values for the current period, seeding the missing ones from the usage records. */
  async #readCounters(counters: readonly CounterPlan[], now: number): Promise<number[]> {
    const keys = counters.map((c) => this.#counterKey(c, now).key);
    let values = await this.#limiter.readCounters(keys);
    const missing = counters.filter((_, i) => values[i] === undefined);
    if (missing.length > 0) {
      await Promise.all(missing.map((c) => this.#seed(c, now)));
      values = await this.#limiter.readCounters(keys);
    }
    return values.map((v) => v ?? 0);
  }

  #counterKey(counter: CounterPlan, now: number) {
    const bounds = periodBounds(counter.period, now, this.options.timeZone);
    return {
      key: `sp:${counter.scope}:${counter.scopeId}:${counter.metric}:${counter.period}:${bounds.start}`,
      bounds,
    };
  }

  /**
   * Seeds a missing counter; resolves true if this seed set it (false: another instance's did).
   * The unwritten usage is read and the seed sent in one synchronous step: a request whose
   * addition reached the limiter before the seed has its event counted in it, one after finds
   * the counter and adds itself.
   */
  #seed(counter: CounterPlan, now: number): Promise<boolean> {
    const { key, bounds } = this.#counterKey(counter, now);
    let seeding = this.#seeding.get(key);
    if (!seeding) {
      const unwritten = this.options.unwritten ?? NOTHING_UNWRITTEN;
      seeding = unwritten
        .whileNotWriting(async () => {
          const stored = await spentSince(this.options.db, counter, bounds.start, bounds.end);
          const local = unwritten.spend(scopeOf(counter), bounds.start, bounds.end);
          const value = counter.metric === 'cost' ? stored.cost + local.cost : stored.tokens + local.tokens;
          return this.#limiter.seedCounter(key, value, bounds.end + SEED_SLACK_MS);
        })
        .finally(() => this.#seeding.delete(key));
      this.#seeding.set(key, seeding);
    }
    return seeding;
  }

  /** After the response. Never throws: limits must not break a request that already happened. */
  settle(
    admission: Admission,
    tokens: { inputTokens: number; outputTokens: number } | undefined,
    costNanoUsd: number,
  ): void {
    const { plan } = admission;
    const actualTokens = tokens ? tokens.inputTokens + tokens.outputTokens : 0;
    if (plan.tokenBuckets.length > 0 || plan.slots.length > 0) {
      try {
        const settled = this.#limiter.settle({
          buckets: plan.tokenBuckets,
          estimatedTokens: admission.estimatedTokens,
          actualTokens,
          slots: plan.slots,
          leaseId: admission.leaseId,
        });
        if (settled instanceof Promise)
          settled.catch((error) => this.#logError(error, 'limiter settle failed'));
      } catch (error) {
        this.#logError(error, 'limiter settle failed');
      }
    }
    if (plan.counters.length > 0 && (actualTokens > 0 || costNanoUsd > 0)) {
      const adding = this.#addSpend(admission, actualTokens, costNanoUsd).catch((error) =>
        this.#logError(error, 'budget counters could not be updated'),
      );
      this.#pending.add(adding);
      adding.finally(() => this.#pending.delete(adding));
    }
  }

  async #addSpend(admission: Admission, tokens: number, cost: number): Promise<void> {
    const now = this.#now();
    const counters = admission.plan.counters;
    const keyed = counters.map((c) => this.#counterKey(c, now));
    const adds = counters.map((c, i) => ({
      key: keyed[i]!.key,
      amount: c.metric === 'cost' ? cost : tokens,
      expiresAt: keyed[i]!.bounds.end + SEED_SLACK_MS,
    }));
    const totals = [...(await this.#limiter.addToCounters(adds))];
    await Promise.all(
      counters.map(async (counter, i) => {
        if (totals[i] !== undefined) return;
        // Our seed counted this request; another instance's did not (its unwritten usage is its own).
        const won = await this.#seed(counter, now);
        [totals[i]] = await (won
          ? this.#limiter.readCounters([adds[i]!.key])
          : this.#limiter.addToCounters([adds[i]!]));
      }),
    );
    counters.forEach((counter, i) => {
      const total = totals[i];
      if (total !== undefined) this.#checkThresholds(admission, counter, keyed[i]!.bounds.start, total);
    });
  }

  #checkThresholds(admission: Admission, counter: CounterPlan, periodStart: number, total: number): void {
    const { organizationId, projectId } = admission.subject;
    const scopeProject = counter.scope === 'project' ? counter.scopeId : projectId;
    const label = where({ scope: counter.scope, scopeId: counter.scopeId, name: '' });
    const budget = counter.budget;
    if (budget?.hardLimit != null) {
      const limitUnits = unitsOf(budget, budget.hardLimit);
      const used = formatAmount(budget, total / (budget.metric === 'cost' ? NANO_USD_PER_CENT : 1));
      const period = counter.period === 'month' ? 'monthly' : 'daily';
      for (const percent of budget.softLimitPercents) {
        if (total < (limitUnits * percent) / 100) continue;
        this.#raise({
          organizationId,
          projectId: scopeProject,
          kind: 'budget.soft_limit',
          severity: percent >= 100 ? 'critical' : 'warning',
          title: `${percent}% of the ${period} budget used in ${label}`,
          message: `${label} has used ${used} of its ${period} ${budget.metric === 'cost' ? 'spend' : 'token'} limit of ${formatAmount(budget, budget.hardLimit)}.`,
          data: {
            budget_id: budget.id,
            percent,
            used: total,
            period_start: periodStart / 1000,
            ...scopeData(counter),
          },
          dedupeKey: `budget:${budget.id}:${periodStart}:${percent}`,
          emailRecipients: budget.notifyEmails,
        });
      }
      if (total >= limitUnits) {
        this.#raise({
          organizationId,
          projectId: scopeProject,
          kind: 'budget.hard_limit',
          severity: 'critical',
          title: `The ${period} budget of ${label} is exhausted`,
          message: `${label} has reached its ${period} ${budget.metric === 'cost' ? 'spend' : 'token'} limit of ${formatAmount(budget, budget.hardLimit)}; requests are refused until the period resets or the limit is raised.`,
          data: {
            budget_id: budget.id,
            used: total,
            period_start: periodStart / 1000,
            ...scopeData(counter),
          },
          dedupeKey: `budget:${budget.id}:${periodStart}:hard`,
          emailRecipients: budget.notifyEmails,
        });
      }
    }
    for (const alert of counter.spendAlerts) {
      const threshold = alert.thresholdAmount * NANO_USD_PER_CENT;
      if (total < threshold || total === 0) continue;
      this.#raise({
        organizationId,
        projectId: scopeProject,
        kind: 'spend_alert',
        severity: 'warning',
        title: `Monthly spend of ${label} reached $${(alert.thresholdAmount / 100).toFixed(2)}`,
        message: `${label} has spent $${(total / NANO_USD_PER_CENT / 100).toFixed(2)} this month, reaching the alert threshold of $${(alert.thresholdAmount / 100).toFixed(2)}.`,
        data: {
          spend_alert_id: alert.id,
          threshold_amount: alert.thresholdAmount,
          used: total,
          period_start: periodStart / 1000,
          ...scopeData(counter),
        },
        dedupeKey: `spend_alert:${alert.id}:${periodStart}`,
        emailRecipients: alert.recipients,
        emailSubjectPrefix: alert.subjectPrefix ?? undefined,
      });
    }
  }

  #raise(alert: LimitAlert): void {
    if (this.#raised.has(alert.dedupeKey)) return;
    if (this.#raised.size >= MAX_REMEMBERED_ALERTS) this.#raised.clear();
    this.#raised.add(alert.dedupeKey);
    const raising = this.options.notify(alert).catch((error) => {
      this.#raised.delete(alert.dedupeKey); // try again with the next request
      this.#logError(error, 'alert could not be stored');
    });
    this.#pending.add(raising);
    raising.finally(() => this.#pending.delete(raising));
  }

  /** Spend this period in the budget's unit: cents (fractional) for cost, tokens for tokens. */
  async currentSpend(organizationId: string, budget: BudgetRow): Promise<number> {
    const counter: CounterPlan = {
      organizationId,
      scope: budget.scopeType,
      scopeId: budget.scopeId,
      metric: budget.metric,
      period: budget.period as BudgetPeriod,
      budget,
      spendAlerts: [],
    };
    const [value] = await this.#readCounters([counter], this.#now());
    return budget.metric === 'cost' ? value! / NANO_USD_PER_CENT : value!;
  }

  /** Waits for spend additions and alerts in flight (tests; shutdown). */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async close(): Promise<void> {
    await this.drain();
    await this.#limiter.close();
  }

  #logError(error: unknown, message: string): void {
    this.options.logger.error({ err: error }, message);
  }
}

/** OpenAI's `x-ratelimit-*`: for requests and for tokens, the bucket closest to refusing. */
export function rateLimitHeaders(states: readonly BucketState[]): Record<string, string> {
  const headers: Record<string, string> = {};
  let requests: BucketState | undefined;
  let tokens: BucketState | undefined;
  for (const state of states) {
    if (state.bucket.unit === 'requests') {
      if (!requests || tighter(state, requests)) requests = state;
    } else if (!tokens || tighter(state, tokens)) tokens = state;
  }
  if (requests) {
    headers['x-ratelimit-limit-requests'] = String(requests.bucket.limit);
    headers['x-ratelimit-remaining-requests'] = String(requests.remaining);
    headers['x-ratelimit-reset-requests'] = formatResetDuration(requests.resetMs);
  }
  if (tokens) {
    headers['x-ratelimit-limit-tokens'] = String(tokens.bucket.limit);
    headers['x-ratelimit-remaining-tokens'] = String(tokens.remaining);
    headers['x-ratelimit-reset-tokens'] = formatResetDuration(tokens.resetMs);
  }
  return headers;
}

function tighter(a: BucketState, b: BucketState): boolean {
  return a.remaining < b.remaining || (a.remaining === b.remaining && a.resetMs > b.resetMs);
}

function where(label: BucketLabel): string {
  switch (label.scope) {
    case 'organization':
      return `organization ${label.scopeId}`;
    case 'project':
      return `project ${label.scopeId}`;
    case 'api_key':
      return `API key ${label.scopeId}`;
  }
}

function scopeData(counter: CounterPlan): Record<string, string> {
  return { scope: counter.scope, scope_id: counter.scopeId, metric: counter.metric, period: counter.period };
}

/** A budget amount in its counter's unit (nano-USD for cost). */
function unitsOf(budget: BudgetRow, amount: number): number {
  return budget.metric === 'cost' ? amount * NANO_USD_PER_CENT : amount;
}

/** Cents as dollars, tokens as tokens. */
function formatAmount(budget: BudgetRow, amount: number): string {
  return budget.metric === 'cost' ? `$${(amount / 100).toFixed(2)}` : `${Math.round(amount)} tokens`;
}

/** What the scope used in [start, end), from the usage roll-ups (whole days, hours, minutes). */
function scopeOf(counter: CounterPlan): SpendScope {
  return {
    organizationId: counter.organizationId,
    ...(counter.scope === 'project' ? { projectId: counter.scopeId } : {}),
    ...(counter.scope === 'api_key' ? { apiKeyId: counter.scopeId } : {}),
  };
}

async function spentSince(
  db: Db,
  counter: CounterPlan,
  start: number,
  end: number,
): Promise<{ cost: number; tokens: number }> {
  const totals = await sumUsage(db, scopeOf(counter), start, end);
  return { cost: totals.cost, tokens: totals.inputTokens + totals.outputTokens };
}
