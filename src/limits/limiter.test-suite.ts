/**
 * One suite for every limiter backend (memory, Redis): the same behaviour asserted against each.
 * A backend with a real clock (Redis) answers a little later than the test reckons, so values that
 * shrink with time (waits, reset times) are checked within `slackMs` below their exact value.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type {
  AdmitRequest,
  AdmitResult,
  ConcurrencySlot,
  CounterAdd,
  Limiter,
  RateBucket,
} from './limiter.ts';

export interface LimiterHarness {
  limiter: Limiter;
  /** The clock counters' expiry is reckoned in (the limiter's `now`). */
  now(): number;
  /** Lets time pass: a fake clock moves, or the test really waits. */
  wait(ms: number): Promise<void>;
  /** How much later than the test reckons the backend may answer (0 with a fake clock). */
  slackMs: number;
  /** A period short enough to wait out, long enough for real time not to blur its intervals. */
  shortPeriodMs: number;
  close(): Promise<void>;
}

const MINUTE = 60_000;

export const bucket = (
  key: string,
  unit: RateBucket['unit'],
  limit: number,
  periodMs = MINUTE,
): RateBucket => ({ key, unit, limit, periodMs });

export const slot = (key: string, limit: number): ConcurrencySlot => ({ key, limit });

/** An admission of nothing but what `overrides` gives, under a lease id of its own. */
export const admitRequest = (overrides: Partial<AdmitRequest>): AdmitRequest => ({
  buckets: [],
  slots: [],
  tokens: 0,
  leaseId: randomUUID(),
  ...overrides,
});

export function limiterSuite(makeHarness: () => Promise<LimiterHarness>): void {
  let h: LimiterHarness;
  beforeEach(async () => {
    h = await makeHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  const admit = (
    buckets: RateBucket[],
    options: { tokens?: number; slots?: ConcurrencySlot[]; leaseId?: string } = {},
  ): Promise<AdmitResult> =>
    Promise.resolve(
      h.limiter.admit({
        buckets,
        slots: options.slots ?? [],
        tokens: options.tokens ?? 0,
        leaseId: options.leaseId ?? randomUUID(),
      }),
    );

  const settle = (
    buckets: RateBucket[],
    estimatedTokens: number,
    actualTokens: number,
    slots: ConcurrencySlot[] = [],
    leaseId: string = randomUUID(),
  ) => Promise.resolve(h.limiter.settle({ buckets, estimatedTokens, actualTokens, slots, leaseId }));

  /** What headers would show for a token bucket now: admitting 0 tokens charges nothing. */
  const remainingOf = async (tokenBucket: RateBucket) =>
    (await admit([tokenBucket], { tokens: 0 })).states[0]!.remaining;

  /** `actual` is `exact`, or up to `slackMs` less (time went on while the backend answered). */
  const expectShrunkBy = (actual: number, exact: number) => {
    expect(actual).toBeLessThanOrEqual(exact + 1e-6);
    expect(actual).toBeGreaterThanOrEqual(exact - h.slackMs - 1e-6);
  };

  it('admits exactly `limit` requests in a burst, then refuses with the wait for one interval', async () => {
    const rpm = bucket('rpm', 'requests', 10); // one per 6 s
    for (let i = 0; i < 10; i++) {
      const result = await admit([rpm]);
      expect(result.allowed).toBe(true);
      expect(result.states[0]!.remaining).toBe(9 - i);
    }
    const refused = await admit([rpm]);
    expect(refused).toMatchObject({ allowed: false, reason: 'rate' });
    if (refused.allowed || refused.reason !== 'rate') throw new Error('unreachable');
    expect(refused.bucket).toBe(rpm);
    expectShrunkBy(refused.retryAfterMs, 6000);
    expect(refused.states[0]!.remaining).toBe(0);
    expectShrunkBy(refused.states[0]!.resetMs, MINUTE);
  });

  it('refills over time: one interval admits one more, a whole period restores the whole limit', async () => {
    const period = h.shortPeriodMs;
    const rpp = bucket('rpp', 'requests', 4, period);
    for (let i = 0; i < 4; i++) expect((await admit([rpp])).allowed).toBe(true);
    const refused = await admit([rpp]);
    expect(refused.allowed).toBe(false);
    if (refused.allowed || refused.reason !== 'rate') throw new Error('unreachable');
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(period / 4);
    await h.wait(period / 4);
    expect((await admit([rpp])).allowed).toBe(true);
    expect((await admit([rpp])).allowed).toBe(false);
    await h.wait(period * 1.25);
    const afterPeriod = await admit([rpp]);
    expect(afterPeriod.allowed).toBe(true);
    expect(afterPeriod.states[0]!.remaining).toBe(3);
  });

  it('charges token buckets the request’s tokens and request buckets 1', async () => {
    const rpm = bucket('rpm', 'requests', 100);
    const tpm = bucket('tpm', 'tokens', 1000); // 60 ms per token
    const first = await admit([rpm, tpm], { tokens: 600 });
    expect(first.allowed).toBe(true);
    expect(first.states.map((s) => s.remaining)).toEqual([99, 400]);
    const second = await admit([rpm, tpm], { tokens: 500 });
    expect(second).toMatchObject({ allowed: false, reason: 'rate' });
    if (second.allowed || second.reason !== 'rate') throw new Error('unreachable');
    expect(second.bucket).toBe(tpm);
    expectShrunkBy(second.retryAfterMs, 100 * 60); // 100 tokens short, 60 ms each
    expect(second.states.map((s) => s.remaining)).toEqual([99, 400]);
    const third = await admit([rpm, tpm], { tokens: 400 });
    expect(third.allowed).toBe(true);
    expect(third.states.map((s) => s.remaining)).toEqual([98, 0]);
  });

  it('refuses a cost above the whole limit outright (retryAfterMs Infinity), charging nothing', async () => {
    const rpm = bucket('rpm', 'requests', 100);
    const tpm = bucket('tpm', 'tokens', 1000);
    const refused = await admit([rpm, tpm], { tokens: 1001 });
    expect(refused).toMatchObject({ allowed: false, reason: 'rate', retryAfterMs: Number.POSITIVE_INFINITY });
    if (refused.allowed || refused.reason !== 'rate') throw new Error('unreachable');
    expect(refused.bucket).toBe(tpm);
    expect(refused.states.map((s) => s.remaining)).toEqual([100, 1000]);
    const whole = await admit([rpm, tpm], { tokens: 1000 });
    expect(whole.allowed).toBe(true);
    expect(whole.states.map((s) => s.remaining)).toEqual([99, 0]);
  });

  it('is all-or-nothing: a refusal by one bucket charges none of the others', async () => {
    const a = bucket('a', 'requests', 5);
    const b = bucket('b', 'requests', 1);
    const c = bucket('c', 'tokens', 1000);
    expect((await admit([b])).allowed).toBe(true);
    const refused = await admit([a, b, c], { tokens: 100 });
    expect(refused).toMatchObject({ allowed: false, reason: 'rate', bucket: b });
    expect(refused.states.map((s) => s.remaining)).toEqual([5, 0, 1000]);
    const next = await admit([a, c], { tokens: 100 });
    expect(next.allowed).toBe(true);
    expect(next.states.map((s) => s.remaining)).toEqual([4, 900]);
  });

  it('names the bucket with the longest wait when several refuse', async () => {
    const perMinute = bucket('per-minute', 'requests', 1); // 60 s interval
    const perTenSeconds = bucket('per-10s', 'requests', 1, 10_000);
    expect((await admit([perMinute, perTenSeconds])).allowed).toBe(true);
    const refused = await admit([perTenSeconds, perMinute]);
    expect(refused).toMatchObject({ allowed: false, reason: 'rate', bucket: perMinute });
    if (refused.allowed || refused.reason !== 'rate') throw new Error('unreachable');
    expectShrunkBy(refused.retryAfterMs, MINUTE);
  });

  it('a concurrency refusal charges no bucket, and a rate refusal takes no lease', async () => {
    const a = bucket('a', 'requests', 5);
    const s = slot('s', 1);
    expect((await admit([a], { slots: [s], leaseId: 'l1' })).allowed).toBe(true);
    const busy = await admit([a], { slots: [s], leaseId: 'l2' });
    expect(busy).toMatchObject({ allowed: false, reason: 'concurrency', slot: s, inFlight: 1 });
    expect(busy.states[0]!.remaining).toBe(4); // l1's charge only
    await settle([a], 0, 0, [s], 'l1');
    const z = bucket('z', 'requests', 1);
    expect((await admit([z])).allowed).toBe(true);
    expect(await admit([z], { slots: [s], leaseId: 'l3' })).toMatchObject({ allowed: false, reason: 'rate' });
    expect((await admit([a], { slots: [s], leaseId: 'l4' })).allowed).toBe(true); // the slot was free
    expect(await admit([a], { slots: [s], leaseId: 'l5' })).toMatchObject({ reason: 'concurrency' });
  });

  it('settle gives back unused tokens and charges overdrawn ones, paid back over time', async () => {
    const tpm = bucket('tpm', 'tokens', 1000); // 60 ms per token
    expect((await admit([tpm], { tokens: 500 })).states[0]!.remaining).toBe(500);
    await settle([tpm], 500, 200);
    const afterRefund = await remainingOf(tpm);
    expect(afterRefund).toBeGreaterThanOrEqual(800);
    expect(afterRefund).toBeLessThanOrEqual(800 + Math.ceil(h.slackMs / 60));
    await settle([tpm], 300, 300); // nothing to move
    expect(await remainingOf(tpm)).toBeGreaterThanOrEqual(afterRefund);

    const period = h.shortPeriodMs;
    const tpp = bucket('tpp', 'tokens', 100, period);
    expect((await admit([tpp], { tokens: 10 })).states[0]!.remaining).toBe(90);
    await settle([tpp], 10, 150); // used 150 of 100: overdrawn by half a period
    expect(await remainingOf(tpp)).toBe(0);
    const refused = await admit([tpp], { tokens: 1 });
    expect(refused).toMatchObject({ allowed: false, reason: 'rate' });
    if (refused.allowed || refused.reason !== 'rate') throw new Error('unreachable');
    expect(refused.retryAfterMs).toBeGreaterThan(period * 0.25);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(period * 0.51 + 1e-6);
    await h.wait(period * 1.5);
    const recovered = await admit([tpp], { tokens: 100 });
    expect(recovered.allowed).toBe(true);
  });

  it('a changed limit keeps the units used: raised, the rest is there; lowered, nothing is forgiven', async () => {
    const DAY = 86_400_000;
    const rpd = (limit: number) => bucket('rpd', 'requests', limit, DAY);
    expect((await admit([rpd(1)])).allowed).toBe(true);
    expect((await admit([rpd(1)])).allowed).toBe(false);
    const raised = await admit([rpd(20)]);
    expect(raised.allowed).toBe(true);
    expect(raised.states[0]!.remaining).toBe(18); // 2 of 20 used, not all 20
    for (let i = 0; i < 8; i++) expect((await admit([rpd(20)])).allowed).toBe(true); // 10 used
    const lowered = await admit([rpd(12)]);
    expect(lowered.allowed).toBe(true);
    expect(lowered.states[0]!.remaining).toBe(1); // 11 of 12 used, not 11/20 of it
    expect((await admit([rpd(12)])).allowed).toBe(true);
    expect((await admit([rpd(12)])).allowed).toBe(false);

    // A request admitted under one token limit and settled under another gives back its units.
    const tpd = (limit: number) => bucket('tpd', 'tokens', limit, DAY);
    expect((await admit([tpd(1000)], { tokens: 600 })).states[0]!.remaining).toBe(400);
    await settle([tpd(2000)], 600, 100);
    expect(await remainingOf(tpd(2000))).toBe(1900);
  });

  it('an overdrawn token bucket refuses even a request of no tokens, until it is paid back', async () => {
    const period = h.shortPeriodMs;
    const tpp = bucket('tpp-zero', 'tokens', 100, period);
    expect((await admit([tpp], { tokens: 50 })).allowed).toBe(true);
    await settle([tpp], 50, 300); // a whole period's worth and more: overdrawn
    expect(await admit([tpp], { tokens: 0 })).toMatchObject({ allowed: false, reason: 'rate' });
  });

  it('holds at most `limit` leases; settle releases, idempotently', async () => {
    const s = slot('s', 2);
    expect((await admit([], { slots: [s], leaseId: 'l1' })).allowed).toBe(true);
    expect((await admit([], { slots: [s], leaseId: 'l2' })).allowed).toBe(true);
    expect(await admit([], { slots: [s], leaseId: 'l3' })).toMatchObject({
      allowed: false,
      reason: 'concurrency',
      slot: s,
      inFlight: 2,
      states: [],
    });
    await settle([], 0, 0, [s], 'l1');
    expect((await admit([], { slots: [s], leaseId: 'l3' })).allowed).toBe(true);
    await settle([], 0, 0, [s], 'l1'); // again: must not free l2's or l3's slot
    expect(await admit([], { slots: [s], leaseId: 'l4' })).toMatchObject({
      reason: 'concurrency',
      inFlight: 2,
    });
    // A lease admitted again does not take a second slot.
    expect((await admit([], { slots: [s], leaseId: 'l2' })).allowed).toBe(true);
    await settle([], 0, 0, [s], 'l2');
    expect((await admit([], { slots: [s], leaseId: 'l4' })).allowed).toBe(true);
    expect(await admit([], { slots: [s], leaseId: 'l5' })).toMatchObject({ reason: 'concurrency' });
  });

  it('a request refused by one slot takes none of its other slots', async () => {
    const org = slot('org', 2);
    const key1 = slot('key1', 1);
    expect((await admit([], { slots: [key1, org], leaseId: 'l1' })).allowed).toBe(true);
    expect(await admit([], { slots: [key1, org], leaseId: 'l2' })).toMatchObject({ slot: key1, inFlight: 1 });
    expect((await admit([], { slots: [slot('key2', 1), org], leaseId: 'l3' })).allowed).toBe(true);
    expect(await admit([], { slots: [slot('key3', 1), org], leaseId: 'l4' })).toMatchObject({
      reason: 'concurrency',
      slot: org,
      inFlight: 2,
    });
  });

  it('counters: seeded once, added to only while they exist, gone when they expire', async () => {
    const expiresAt = h.now() + MINUTE;
    const add = (adds: CounterAdd[]) => Promise.resolve(h.limiter.addToCounters(adds));
    const read = (keys: string[]) => Promise.resolve(h.limiter.readCounters(keys));
    expect(await read(['spend', 'other'])).toEqual([undefined, undefined]);
    expect(await add([{ key: 'spend', amount: 5, expiresAt }])).toEqual([undefined]);
    expect(await h.limiter.seedCounter('spend', 100, expiresAt)).toBe(true);
    expect(await h.limiter.seedCounter('spend', 999, expiresAt)).toBe(false); // already there: not reset
    expect(await read(['spend', 'other'])).toEqual([100, undefined]);
    expect(
      await add([
        { key: 'spend', amount: 2.5, expiresAt },
        { key: 'other', amount: 1, expiresAt },
      ]),
    ).toEqual([102.5, undefined]);
    expect(await add([{ key: 'spend', amount: 0.25, expiresAt }])).toEqual([102.75]);
    expect(await read(['spend'])).toEqual([102.75]);
    expect(await h.limiter.seedCounter('past', 1, h.now() - 1)).toBe(false);
    expect(await read(['past'])).toEqual([undefined]);

    const period = h.shortPeriodMs;
    await h.limiter.seedCounter('short', 1, h.now() + period);
    expect(await read(['short'])).toEqual([1]);
    await h.wait(period + 20);
    expect(await read(['short'])).toEqual([undefined]);
    expect(await add([{ key: 'short', amount: 1, expiresAt }])).toEqual([undefined]);
    expect(await h.limiter.seedCounter('short', 7, expiresAt)).toBe(true); // expired: seeded afresh
    expect(await add([{ key: 'short', amount: 1, expiresAt }])).toEqual([8]);
  });

  it('reports per bucket, in order, what the rate-limit headers show', async () => {
    const rpm = bucket('rpm', 'requests', 60);
    const tpm = bucket('tpm', 'tokens', 1000);
    const result = await admit([rpm, tpm], { tokens: 250 });
    expect(result.allowed).toBe(true);
    const [requests, tokens] = result.states;
    expect(requests!.bucket).toBe(rpm);
    expect(requests!.remaining).toBe(59);
    expectShrunkBy(requests!.resetMs, 1000);
    expect(tokens!.bucket).toBe(tpm);
    expect(tokens!.remaining).toBe(750);
    expectShrunkBy(tokens!.resetMs, 250 * 60);
  });

  it('admits a request with nothing to check', async () => {
    expect(await admit([])).toEqual({ allowed: true, states: [] });
  });
}
