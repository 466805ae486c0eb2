import { describe, expect, it } from 'vitest';
import { type AttemptOutcome, backoffDelay, withRetries } from './retry.ts';

const policy = { attempts: 5, baseDelayMs: 1_000, maxDelayMs: 30_000 };

describe('back-off', () => {
  it('doubles per attempt, half of it random, and never exceeds the cap', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(policy, n, () => 0))).toEqual([500, 1_000, 2_000, 4_000]);
    expect([1, 2, 3, 4].map((n) => backoffDelay(policy, n, () => 1))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(backoffDelay(policy, 20, () => 1)).toBe(30_000);
    expect(backoffDelay(policy, 200, () => 1)).toBe(30_000);
  });
});

describe('withRetries', () => {
  const fast = { attempts: 4, baseDelayMs: 1, maxDelayMs: 2 };
  const never = new AbortController().signal;

  it('stops at the first success', async () => {
    const outcomes: AttemptOutcome[] = [{ ok: false, retry: true, reason: 'a' }, { ok: true }];
    let calls = 0;
    expect(await withRetries(fast, never, async () => outcomes[calls++]!)).toEqual({ ok: true, attempts: 2 });
  });

  it('stops on a final failure, or when attempts run out', async () => {
    expect(await withRetries(fast, never, async () => ({ ok: false, retry: false, reason: 'no' }))).toEqual({
      ok: false,
      attempts: 1,
      reason: 'no',
      abandoned: false,
    });
    const retried: number[] = [];
    const result = await withRetries(
      fast,
      never,
      async () => ({ ok: false, retry: true, reason: 'down' }),
      (n) => retried.push(n),
    );
    expect(result).toEqual({ ok: false, attempts: 4, reason: 'down', abandoned: false });
    expect(retried).toEqual([1, 2, 3]);
  });

  it('abandons at once when aborted during a wait', async () => {
    const shutdown = new AbortController();
    const result = await withRetries(
      { attempts: 5, baseDelayMs: 600_000, maxDelayMs: 600_000 },
      shutdown.signal,
      async () => ({ ok: false, retry: true, reason: 'down' }),
      () => shutdown.abort(),
    );
    expect(result).toEqual({ ok: false, attempts: 1, reason: 'down', abandoned: true });
  });
});
