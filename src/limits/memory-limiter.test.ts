import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucket, limiterSuite, slot } from './limiter.test-suite.ts';
import { MemoryLimiter } from './memory-limiter.ts';

function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe('MemoryLimiter', () => {
  limiterSuite(async () => {
    const clock = fakeClock();
    const limiter = new MemoryLimiter({ now: clock.now });
    return {
      limiter,
      now: clock.now,
      wait: async (ms) => clock.advance(ms),
      slackMs: 0,
      shortPeriodMs: 1000,
      close: () => limiter.close(),
    };
  });

  it('answers synchronously', () => {
    const limiter = new MemoryLimiter();
    const result = limiter.admit({
      buckets: [bucket('a', 'requests', 1)],
      slots: [],
      tokens: 0,
      leaseId: 'l',
    });
    expect(result).not.toBeInstanceOf(Promise);
    expect(result.allowed).toBe(true);
  });

  it('never admits more than limit + elapsed × limit / period units in any bucket (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.array(
          fc.record({
            advance: fc.integer({ min: 0, max: 3000 }),
            tokens: fc.integer({ min: 0, max: 6000 }),
            which: fc.constantFrom('both', 'requests', 'tokens'),
          }),
          { maxLength: 300 },
        ),
        (requestLimit, tokenLimit, steps) => {
          const clock = fakeClock();
          const start = clock.now();
          const limiter = new MemoryLimiter({ now: clock.now, sweepIntervalMs: 500 });
          const requests = bucket('r', 'requests', requestLimit, 60_000);
          const tokens = bucket('t', 'tokens', tokenLimit, 30_000);
          let admittedRequests = 0;
          let admittedTokens = 0;
          for (const step of steps) {
            clock.advance(step.advance);
            const buckets =
              step.which === 'both' ? [requests, tokens] : step.which === 'requests' ? [requests] : [tokens];
            const result = limiter.admit({ buckets, slots: [], tokens: step.tokens, leaseId: 'l' });
            if (result.allowed) {
              if (step.which !== 'tokens') admittedRequests += 1;
              if (step.which !== 'requests') admittedTokens += step.tokens;
            }
            const elapsed = clock.now() - start;
            expect(admittedRequests).toBeLessThanOrEqual(
              requestLimit + (elapsed * requestLimit) / 60_000 + 1e-6,
            );
            expect(admittedTokens).toBeLessThanOrEqual(tokenLimit + (elapsed * tokenLimit) / 30_000 + 1e-6);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('drops buckets that are full again and expired counters: memory stays bounded', () => {
    const clock = fakeClock();
    const limiter = new MemoryLimiter({ now: clock.now, sweepIntervalMs: 10_000 });
    for (let i = 0; i < 50_000; i++) {
      limiter.admit({
        buckets: [bucket(`k${i}`, 'requests', 10, 60_000)],
        slots: [],
        tokens: 0,
        leaseId: 'l',
      });
      limiter.seedCounter(`c${i}`, 1, clock.now() + 60_000);
    }
    expect(limiter.size.buckets).toBe(50_000); // all still within their period: state to keep
    clock.advance(60_001);
    limiter.admit({ buckets: [bucket('fresh', 'requests', 10)], slots: [], tokens: 0, leaseId: 'l' });
    expect(limiter.size).toEqual({ buckets: 1, slots: 0, counters: 0 });
  });

  it('a flood of short-lived keys is swept as it grows, not only on the timer', () => {
    const clock = fakeClock();
    const limiter = new MemoryLimiter({ now: clock.now, sweepIntervalMs: 3_600_000 });
    let largest = 0;
    for (let i = 0; i < 50_000; i++) {
      clock.advance(1);
      limiter.admit({ buckets: [bucket(`k${i}`, 'requests', 1, 10)], slots: [], tokens: 0, leaseId: 'l' });
      largest = Math.max(largest, limiter.size.buckets);
    }
    expect(largest).toBeLessThanOrEqual(1025);
  });

  it('keeps no entry for a released slot or a bucket refunded to full', () => {
    const clock = fakeClock();
    const limiter = new MemoryLimiter({ now: clock.now });
    const tpm = bucket('tpm', 'tokens', 1000);
    const s = slot('s', 1);
    expect(limiter.admit({ buckets: [tpm], slots: [s], tokens: 100, leaseId: 'l' }).allowed).toBe(true);
    expect(limiter.size).toEqual({ buckets: 1, slots: 1, counters: 0 });
    limiter.settle({ buckets: [tpm], estimatedTokens: 100, actualTokens: 0, slots: [s], leaseId: 'l' });
    expect(limiter.size).toEqual({ buckets: 0, slots: 0, counters: 0 });
  });
});
