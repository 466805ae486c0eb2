/**
 * GCRA (the generic cell rate algorithm): a rate limit as one number per key, the theoretical
 * arrival time (TAT). A limit of `limit` units per `periodMs` lets a unit through every
 * `periodMs / limit` ms, with a burst of up to `limit` units. Admission, the remaining count and
 * the reset time all follow from TAT and now, so the state fits in one Redis key or one map entry,
 * and an update is a single compare-and-set. Tokens are units too: a request costs its estimated
 * tokens, and `reconcile` moves TAT by the difference when the real count is known.
 *
 * Pure: no clock, no storage. The in-memory and Redis limiters apply these functions.
 */

export interface GcraLimit {
  /** Units allowed per period (requests or tokens). */
  limit: number;
  periodMs: number;
}

export interface GcraDecision {
  allowed: boolean;
  /** The new TAT to store (unchanged when refused). */
  tat: number;
  /** Units that could still be admitted right now. */
  remaining: number;
  /** Until the limit is back to full (OpenAI's `x-ratelimit-reset-*`). */
  resetMs: number;
  /** When refused: how long until this request would fit (for `retry-after-ms`). */
  retryAfterMs: number;
}

const interval = (limit: GcraLimit) => limit.periodMs / limit.limit;

/** Milliseconds one unit moves TAT by: a stored TAT is only meaningful with the step it was written with. */
export const gcraStep = interval;

/**
 * A TAT written under another limit, as the current one reads it: the units still owed are kept,
 * not the fraction of the limit. Raising a day's limit from 1 to 1000 after one request leaves 999,
 * and lowering it does not forgive what was used. Without this, the old TAT read with the new
 * step would make one request look like the whole new limit.
 */
export function rescaledTat(tat: number, writtenStep: number, limit: GcraLimit, now: number): number {
  const step = interval(limit);
  if (writtenStep === step || tat <= now) return tat;
  return now + ((tat - now) / writtenStep) * step;
}

/**
 * Admits `cost` units at `now` if the limit allows. A cost above the whole limit can never fit:
 * refused with retryAfter = Infinity, so callers can say it exceeds the limit outright.
 */
export function gcraAdmit(
  limit: GcraLimit,
  storedTat: number | undefined,
  now: number,
  cost = 1,
): GcraDecision {
  const step = interval(limit);
  const tat = Math.max(storedTat ?? now, now);
  const newTat = tat + cost * step;
  // The earliest moment this request is allowed: its new TAT may be at most one period ahead.
  const allowAt = newTat - limit.periodMs;
  if (cost > limit.limit) {
    return {
      allowed: false,
      tat,
      remaining: remainingAt(limit, tat, now),
      resetMs: tat - now,
      retryAfterMs: Number.POSITIVE_INFINITY,
    };
  }
  if (allowAt > now) {
    return {
      allowed: false,
      tat,
      remaining: remainingAt(limit, tat, now),
      resetMs: tat - now,
      retryAfterMs: allowAt - now,
    };
  }
  return {
    allowed: true,
    tat: newTat,
    remaining: remainingAt(limit, newTat, now),
    resetMs: newTat - now,
    retryAfterMs: 0,
  };
}

/** After the fact: the request used `actual` units where `estimated` were admitted. May overdraw (TAT beyond one period). */
export function gcraReconcile(
  limit: GcraLimit,
  storedTat: number | undefined,
  now: number,
  estimated: number,
  actual: number,
): number {
  const tat = Math.max(storedTat ?? now, now);
  return Math.max(now, tat + (actual - estimated) * interval(limit));
}

/** The state as headers would show it, without admitting anything. */
export function gcraPeek(
  limit: GcraLimit,
  storedTat: number | undefined,
  now: number,
): { remaining: number; resetMs: number } {
  const tat = Math.max(storedTat ?? now, now);
  return { remaining: remainingAt(limit, tat, now), resetMs: tat - now };
}

function remainingAt(limit: GcraLimit, tat: number, now: number): number {
  const used = (tat - now) / interval(limit);
  return Math.max(0, Math.floor(limit.limit - used + 1e-9));
}

/** OpenAI's reset durations: `1s`, `6m0s`, `12ms`, `1h2m3s`. */
export function formatResetDuration(ms: number): string {
  if (ms <= 0) return '0s';
  // Whole milliseconds, rounded up (never sooner than the wait), before splitting: seconds rounded
  // on their own would print 59.9996 s as `1m60s`.
  const whole = Math.ceil(ms);
  if (whole < 1000) return `${whole}ms`;
  const hours = Math.floor(whole / 3_600_000);
  const minutes = Math.floor((whole % 3_600_000) / 60_000);
  const seconds = (whole % 60_000) / 1000;
  const secondsText = `${seconds}s`;
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`;
  if (minutes > 0) return `${minutes}m${secondsText}`;
  return secondsText;
}
