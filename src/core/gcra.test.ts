import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatResetDuration, gcraAdmit, gcraPeek, gcraReconcile } from './gcra.ts';

const perMinute = (limit: number) => ({ limit, periodMs: 60_000 });

describe('GCRA', () => {
  it('admits a full burst of `limit`, then refuses until one interval has passed', () => {
    const limit = perMinute(60); // one per second
    let tat: number | undefined;
    const now = 1_000_000;
    for (let i = 0; i < 60; i++) {
      const d = gcraAdmit(limit, tat, now);
      expect(d.allowed).toBe(true);
      expect(d.remaining).toBe(59 - i);
      tat = d.tat;
    }
    const refused = gcraAdmit(limit, tat, now);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1000, resetMs: 60_000 });
    expect(gcraAdmit(limit, tat, now + 999).allowed).toBe(false);
    expect(gcraAdmit(limit, tat, now + 1000).allowed).toBe(true);
  });

  it('recovers fully after one period of silence', () => {
    const limit = perMinute(10);
    let tat: number | undefined;
    for (let i = 0; i < 10; i++) tat = gcraAdmit(limit, tat, 0).tat;
    expect(gcraPeek(limit, tat, 60_000)).toEqual({ remaining: 10, resetMs: 0 });
    expect(gcraPeek(limit, tat, 30_000)).toEqual({ remaining: 5, resetMs: 30_000 });
  });

  it('never admits more than limit + elapsed/interval units (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 500 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 1, max: 20 })), {
          maxLength: 300,
        }),
        (perMin, steps) => {
          const limit = perMinute(perMin);
          let tat: number | undefined;
          let now = 0;
          let admitted = 0;
          for (const [advance, cost] of steps) {
            now += advance;
            const d = gcraAdmit(limit, tat, now, cost);
            if (d.allowed) {
              admitted += cost;
              tat = d.tat;
            }
            expect(admitted).toBeLessThanOrEqual(perMin + (now / 60_000) * perMin + 1e-6);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('token costs: a request larger than the whole limit is refused outright', () => {
    const d = gcraAdmit(perMinute(1000), undefined, 0, 1001);
    expect(d.allowed).toBe(false);
    expect(d.retryAfterMs).toBe(Number.POSITIVE_INFINITY);
    expect(gcraAdmit(perMinute(1000), undefined, 0, 1000).allowed).toBe(true);
  });

  it('reconciles an estimate with the real usage, both ways', () => {
    const limit = perMinute(1000); // 60 ms per token
    const admitted = gcraAdmit(limit, undefined, 0, 500); // estimated 500 tokens
    expect(admitted.remaining).toBe(500);
    const fewer = gcraReconcile(limit, admitted.tat, 0, 500, 200); // really used 200
    expect(gcraPeek(limit, fewer, 0).remaining).toBe(800);
    const more = gcraReconcile(limit, admitted.tat, 0, 500, 1400); // used more than estimated: overdrawn
    expect(gcraPeek(limit, more, 0).remaining).toBe(0);
    expect(gcraAdmit(limit, more, 0, 1).allowed).toBe(false);
    // …and it pays it back over time: 1400 tokens at 60 ms each = 84 s until full again.
    expect(gcraPeek(limit, more, 84_000).remaining).toBe(1000);
  });

  it('formats reset durations as OpenAI does', () => {
    expect(formatResetDuration(0)).toBe('0s');
    expect(formatResetDuration(12)).toBe('12ms');
    expect(formatResetDuration(1000)).toBe('1s');
    expect(formatResetDuration(1500)).toBe('1.5s');
    expect(formatResetDuration(360_000)).toBe('6m0s');
    expect(formatResetDuration(3_723_000)).toBe('1h2m3s');
    expect(formatResetDuration(86_366.2)).toBe('1m26.367s'); // rounded up: never sooner than the wait
  });

  it('never prints 60 seconds: a wait just short of a minute boundary rounds up to it', () => {
    expect(formatResetDuration(119_999.6)).toBe('2m0s');
    expect(formatResetDuration(59_999.9996)).toBe('1m0s');
    expect(formatResetDuration(3_599_999.5)).toBe('1h0m0s');
    expect(formatResetDuration(999.5)).toBe('1s');
  });
});
