/** Bounded retries with capped exponential back-off, shared by email and webhook delivery. */
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 1_000, maxDelayMs: 30_000 };

export type AttemptOutcome = { ok: true } | { ok: false; retry: boolean; reason: string };

export type RetryResult =
  | { ok: true; attempts: number }
  | { ok: false; attempts: number; reason: string; abandoned: boolean };

/**
 * Delay after failed attempt `attempt` (1-based): half of base·2^(attempt-1) fixed, half random,
 * capped, so instances that failed together do not retry in lockstep.
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exponential / 2 + (exponential / 2) * random());
}

/**
 * Runs `attempt` until it succeeds, fails for good, or attempts run out. An abort of `signal`
 * (shutdown) skips the remaining waits and attempts: the alert itself is already stored.
 */
export async function withRetries(
  policy: RetryPolicy,
  signal: AbortSignal,
  attempt: (n: number) => Promise<AttemptOutcome>,
  onRetry: (n: number, reason: string, delayMs: number) => void = () => {},
): Promise<RetryResult> {
  for (let n = 1; ; n++) {
    const outcome = await attempt(n);
    if (outcome.ok) return { ok: true, attempts: n };
    if (!outcome.retry || n >= policy.attempts) {
      return { ok: false, attempts: n, reason: outcome.reason, abandoned: false };
    }
    const delayMs = backoffDelay(policy, n);
    onRetry(n, outcome.reason, delayMs);
    try {
      await sleep(delayMs, undefined, { signal });
    } catch {
      return { ok: false, attempts: n, reason: outcome.reason, abandoned: true };
    }
  }
}
