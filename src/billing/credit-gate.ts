/**
 * The gateway's credit check: an organization on a plan that stops at zero (`prepaid`,
 * `free_trial`) is refused with 429 `insufficient_quota` once its credit is used up, like a hard
 * budget. The gateway asks on every request, so the answer comes from memory: each organization's
 * plan and credit, loaded once and refreshed in the background every `ttlMs` (or at once when a
 * grant, payment or plan change is announced), minus what this instance has spent since.
 *
 * Like budgets, a request that starts with credit left completes; the one after is refused. Other
 * instances' spend is seen at the next refresh, so several instances can overdraw by what they
 * spend in one refresh interval.
 */
import { ApiError } from '../core/errors.ts';
import type { BillingService } from './billing-service.ts';

interface Entry {
  /** False for pay as you go: nothing to check. */
  stopsAtZero: boolean;
  /** Credit at the last load, minus what this instance spent since; nano-USD. */
  available: number;
  expiresAt: number;
  /** When the first grant counted in `available` expires: from then on the view is wrong. */
  creditExpiresAt: number;
  loading: Promise<void> | undefined;
}

const MAX_ENTRIES = 100_000;

export class CreditGate {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly billing: BillingService,
    private readonly ttlMs: number,
    private readonly onError: (error: unknown) => void,
    private readonly now: () => number = Date.now,
    /** This instance's usage not yet in the database, which a balance read cannot see yet. */
    private readonly unwritten: (organizationId: string) => number = () => 0,
  ) {}

  /** Throws the 429 when the organization has run out; a promise only for its very first request. */
  check(organizationId: string): void | Promise<void> {
    const entry = this.#entries.get(organizationId);
    if (!entry) return this.#load(organizationId).then(() => this.#decide(organizationId));
    // A grant expired (a trial ending): its credit is gone now, not at the next refresh.
    if (entry.stopsAtZero && entry.creditExpiresAt <= this.now()) {
      // A load already on its way may have read the credit before it expired: load once more after it.
      const pending = entry.loading ?? Promise.resolve();
      return pending
        .catch(() => {})
        .then(() => this.#load(organizationId))
        .then(() => this.#decide(organizationId));
    }
    if (entry.expiresAt <= this.now() && !entry.loading) void this.#load(organizationId).catch(this.onError);
    return this.#decide(organizationId);
  }

  /** After a request: its cost comes off this instance's view of the credit. */
  spent(organizationId: string, nanoUsd: number): void {
    const entry = this.#entries.get(organizationId);
    if (entry?.stopsAtZero && nanoUsd > 0) entry.available -= nanoUsd;
  }

  /** `*`: every organization (the next request reloads). */
  invalidate(organizationId: string): void {
    if (organizationId === '*') this.#entries.clear();
    else this.#entries.delete(organizationId);
  }

  #decide(organizationId: string): void {
    const entry = this.#entries.get(organizationId);
    if (!entry?.stopsAtZero || entry.available > 0) return;
    throw new ApiError(
      'insufficient_quota',
      'You exceeded your current quota, please check your plan and billing details: this organization has no credit left. ' +
        'Add credit (a top-up) or move to pay as you go to continue.',
      null,
      { 'x-should-retry': 'false' },
    );
  }

  #load(organizationId: string): Promise<void> {
    const existing = this.#entries.get(organizationId);
    if (existing?.loading) return existing.loading;
    const loading = (async () => {
      const account = await this.billing.account(organizationId);
      const stopsAtZero = account.plan !== 'pay_as_you_go';
      // Taken before the balance: usage written in between is subtracted twice (refusing a little
      // early, until the next load), never not at all (letting a request through on spent credit).
      const unwritten = stopsAtZero ? this.unwritten(organizationId) : 0;
      const balance = stopsAtZero ? await this.billing.balance(organizationId) : undefined;
      const available = (balance?.availableNanoUsd ?? 0) - unwritten;
      const creditExpiresAt = (balance?.grants ?? []).reduce(
        (first, g) => Math.min(first, g.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY),
        Number.POSITIVE_INFINITY,
      );
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.clear();
      this.#entries.set(organizationId, {
        stopsAtZero,
        available,
        expiresAt: this.now() + this.ttlMs,
        creditExpiresAt,
        loading: undefined,
      });
    })();
    if (existing) existing.loading = loading;
    loading.catch(() => {
      const entry = this.#entries.get(organizationId);
      if (entry) entry.loading = undefined;
    });
    return loading;
  }
}
