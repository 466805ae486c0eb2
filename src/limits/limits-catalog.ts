/**
 * The gateway's cache of each organization's limits, budgets and spend alerts, with the plans
 * built from them per (key, model). A change through the Admin API drops the organization's entry
 * at once (on every instance, through the key-change notifier); the TTL is the backstop. An
 * expired entry keeps serving while it reloads in the background, so no request waits on the
 * database except an organization's very first.
 */
import type { Db } from '../store/database.ts';
import { loadOrganizationLimits } from '../store/repositories/limits.ts';
import { buildPlan, type LimitPlan, type OrganizationLimits, type PlanSubject } from './limit-plan.ts';

interface Entry {
  expiresAt: number;
  limits: OrganizationLimits | undefined;
  loading: Promise<OrganizationLimits> | undefined;
  plans: Map<string, LimitPlan>;
}

const MAX_PLANS_PER_ORGANIZATION = 50_000;

export class LimitsCatalog {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly db: Db,
    private readonly ttlMs: number,
    private readonly onError: (error: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Synchronous when the organization's limits are cached (the usual case). */
  planFor(subject: PlanSubject, model: string | undefined): LimitPlan | Promise<LimitPlan> {
    const entry = this.#entries.get(subject.organizationId);
    if (entry?.limits) {
      if (entry.expiresAt <= this.now() && !entry.loading) this.#reload(subject.organizationId, entry);
      return this.#plan(entry, entry.limits, subject, model);
    }
    return this.#load(subject.organizationId).then((loaded) => {
      const current = this.#entries.get(subject.organizationId);
      return current ? this.#plan(current, loaded, subject, model) : buildPlan(loaded, subject, model);
    });
  }

  /** `*`: every organization. */
  invalidate(organizationId: string): void {
    if (organizationId === '*') this.#entries.clear();
    else this.#entries.delete(organizationId);
  }

  /** The organization's limits, fresh from the cache or the database. */
  async limitsOf(organizationId: string): Promise<OrganizationLimits> {
    const entry = this.#entries.get(organizationId);
    if (entry?.limits && entry.expiresAt > this.now()) return entry.limits;
    return this.#load(organizationId);
  }

  #plan(
    entry: Entry,
    limits: OrganizationLimits,
    subject: PlanSubject,
    model: string | undefined,
  ): LimitPlan {
    const id = `${subject.apiKeyId}\u0000${model ?? ''}`;
    let plan = entry.plans.get(id);
    if (!plan) {
      plan = buildPlan(limits, subject, model);
      if (entry.plans.size >= MAX_PLANS_PER_ORGANIZATION) entry.plans.clear();
      entry.plans.set(id, plan);
    }
    return plan;
  }

  #load(organizationId: string): Promise<OrganizationLimits> {
    const existing = this.#entries.get(organizationId);
    if (existing?.loading) return existing.loading;
    const entry: Entry = existing ?? {
      expiresAt: 0,
      limits: undefined,
      loading: undefined,
      plans: new Map(),
    };
    this.#entries.set(organizationId, entry);
    return this.#reload(organizationId, entry);
  }

  #reload(organizationId: string, entry: Entry): Promise<OrganizationLimits> {
    const loading = loadOrganizationLimits(this.db, organizationId).then(
      (limits) => {
        // Dropped (a change) while loading: what was read may predate the change, so keep nothing.
        if (this.#entries.get(organizationId) === entry) {
          entry.limits = limits;
          entry.plans = new Map();
          entry.expiresAt = this.now() + this.ttlMs;
          entry.loading = undefined;
        }
        return limits;
      },
      (error: unknown) => {
        entry.loading = undefined;
        if (!entry.limits) this.#entries.delete(organizationId);
        this.onError(error);
        throw error;
      },
    );
    entry.loading = loading;
    // A background reload's failure is reported through onError; the stale entry keeps serving.
    loading.catch(() => {});
    return loading;
  }
}
