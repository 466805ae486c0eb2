/**
 * Local grants: the bookkeeping alone with a fake clock, then the Redis limiter admitting from
 * grants against the real Redis, alone and with a second instance sharing the limits.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../test/helpers/processes.ts';
import {
  killRedisServer,
  REDIS_URL,
  randomRedisPrefix,
  redisLimiterFixture,
  startRedisServer,
} from '../../test/helpers/redis.ts';
import { bucket, admitRequest as request, slot } from './limiter.test-suite.ts';
import type { AdmitRequest, AdmitResult, ConcurrencySlot, RateBucket, SettleRequest } from './limiter.ts';
import { GRANT_SHARE, grantCap, LocalGrants } from './redis-grants.ts';
import { RedisLimiter } from './redis-limiter.ts';

/** A period so long that nothing refills while a test runs: one unit per second at most. */
const LONG = 1_000_000_000;

/** Redis's answer granting `units` to a request's one bucket (its TAT and clock at 0). */
const unitsGranted = (units: number) => ({
  tats: [0],
  redisNow: 0,
  grantedUnits: [units],
  grantedMembers: [],
});
/** Redis's answer granting `members` to a request's one slot. */
const membersGranted = (members: string[]) => ({
  tats: [],
  redisNow: 0,
  grantedUnits: [],
  grantedMembers: [members],
});

/** A request that used `actual` tokens of `estimated` ends: what Redis must still do. */
const settleTokens = (
  grants: LocalGrants,
  b: RateBucket,
  leaseId: string,
  estimated: number,
  actual: number,
) => grants.settle({ buckets: [b], estimatedTokens: estimated, actualTokens: actual, slots: [], leaseId });
/** A request holding `slots` (and no tokens) ends, at the grants' bookkeeping or a limiter. */
const settleSlots = <R>(
  settler: { settle(request: SettleRequest): R },
  slots: ConcurrencySlot[],
  leaseId: string,
): R => settler.settle({ buckets: [], estimatedTokens: 0, actualTokens: 0, slots, leaseId });

/** A first request to `bucket`, admitted by Redis with `units` granted beside it. */
function grantUnits(grants: LocalGrants, b: RateBucket, units: number, tokens = 0): AdmitRequest {
  const first = request({ buckets: [b], tokens });
  grants.granted(first, grants.reserve(first), unitsGranted(units));
  return first;
}

describe('LocalGrants (bookkeeping)', () => {
  it('grants only limits whose share holds several requests’ cost', () => {
    expect(grantCap(100, 1)).toBe(0); // 1.56 requests' share: every admission stays exact
    expect(grantCap(256, 1)).toBe(4);
    expect(grantCap(1000, 1)).toBe(15);
    expect(grantCap(640_000, 1000)).toBe(10_000);
    expect(grantCap(640_000, 3000)).toBe(0); // a large request is admitted by Redis
  });

  it('asks once for a burst, lends only what Redis granted, and gives back what it did not use', () => {
    let now = 0;
    const grants = new LocalGrants(() => now);
    const rpm = bucket('rpm', 'requests', 64_000);
    const first = request({ buckets: [rpm] });
    expect(grants.tryAdmit(first)).toBeUndefined(); // nothing granted yet
    const plan = grants.reserve(first);
    expect(plan.want).toEqual([4]);
    // The rest of the burst, while the first ask is out, asks nothing more.
    expect(grants.reserve(request({ buckets: [rpm] })).want).toEqual([0]);
    grants.granted(first, plan, unitsGranted(4));
    for (let i = 0; i < 4; i++) expect(grants.tryAdmit(request({ buckets: [rpm] }))).toBeDefined();
    expect(grants.tryAdmit(request({ buckets: [rpm] }))).toBeUndefined(); // spent: Redis again
    expect(grants.localAdmissions).toBe(4);

    const second = request({ buckets: [rpm] });
    const refill = grants.reserve(second);
    expect(refill.want[0]).toBe(8); // asked again within the grow window: the grant doubles
    grants.granted(second, refill, unitsGranted(8));
    grants.tryAdmit(request({ buckets: [rpm] }));
    now += 250;
    expect(grants.flush().buckets).toEqual([]); // used since the last flush: kept
    now += 250;
    expect(grants.flush().buckets).toEqual([{ bucket: rpm, diff: -7 }]); // idle: the 7 left go back
    expect(grants.tryAdmit(request({ buckets: [rpm] }))).toBeUndefined();
  });

  it('reconciles tokens against the grant, and charges a debt at the next flush', () => {
    const grants = new LocalGrants(() => 0);
    const tpm = bucket('tpm', 'tokens', 6_400_000);
    const first = request({ buckets: [tpm], tokens: 1000 });
    const plan = grants.reserve(first);
    grants.granted(first, plan, unitsGranted(4000));
    const lent = request({ buckets: [tpm], tokens: 1000 });
    expect(grants.tryAdmit(lent)).toBeDefined();
    // Used 6,000 of 1,000 estimated: 5,000 more from a grant holding 3,000.
    expect(settleTokens(grants, tpm, lent.leaseId, 1000, 6000).buckets).toEqual([]);
    expect(grants.flush().buckets).toEqual([{ bucket: tpm, diff: 2000 }]);
  });

  it('lends slot members and takes them back at settle; Redis settles only the leases it holds', () => {
    const grants = new LocalGrants(() => 0);
    const s = slot('s', 1000);
    const first = request({ slots: [s] });
    const plan = grants.reserve(first);
    expect(plan.lent).toEqual([undefined]);
    expect(plan.wantSlots).toEqual([4]);
    grants.granted(first, plan, membersGranted(['m1', 'm2', 'm3', 'm4']));
    const lent = request({ slots: [s] });
    expect(grants.tryAdmit(lent)).toEqual([]);
    expect([...grants.heldMembers()]).toHaveLength(4); // renewed while held or lent
    expect(settleSlots(grants, [s], lent.leaseId).slots).toEqual([]);
    expect(settleSlots(grants, [s], first.leaseId).slots).toEqual([s]);
    expect(
      grants
        .takeAll()
        .members.map((m) => m.member)
        .sort(),
    ).toEqual(['m1', 'm2', 'm3', 'm4']);
  });
});

describe('LocalGrants when Redis goes away (dropped grants)', () => {
  const s = slot('s', 1000);
  const grantSlots = (grants: LocalGrants) => {
    const first = request({ slots: [s] });
    const plan = grants.reserve(first);
    grants.granted(first, plan, membersGranted(['m1', 'm2', 'm3', 'm4']));
    return first;
  };

  it('members lent to requests in flight stay lent and renewed, and are released in Redis when they end', () => {
    const grants = new LocalGrants(() => 0);
    grantSlots(grants);
    const inFlight = request({ slots: [s] });
    expect(grants.tryAdmit(inFlight)).toEqual([]);
    grants.drop();
    // Still counted in Redis for as long as the request runs: renewed with the rest.
    expect([...grants.heldMembers()]).toEqual([['s', 'm4']]);
    // A new grant under the same key is not the one that lent it: Redis releases the member.
    const next = grantSlots(grants);
    const rest = settleSlots(grants, [s], inFlight.leaseId);
    expect(rest.released).toEqual([{ key: 's', member: 'm4' }]);
    expect(rest.slots).toEqual([]);
    // The new grant's own count is untouched, so it can still be flushed once idle.
    expect(settleSlots(grants, [s], next.leaseId).slots).toEqual([s]);
    // What the dropped grant held goes back at the next flush; the new one once idle.
    expect(grants.flush().members.map((m) => m.member)).toEqual(['m1', 'm2', 'm3']);
    expect(
      grants
        .flush()
        .members.map((m) => m.member)
        .sort(),
    ).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect([...grants.heldMembers()]).toEqual([]);
  });

  it('what dropped grants held, debts included, goes back at the next flush', () => {
    const grants = new LocalGrants(() => 0);
    const tpm = bucket('tpm', 'tokens', 6_400_000);
    grantUnits(grants, tpm, 4000, 1000);
    const long = request({ buckets: [tpm], tokens: 1000 });
    grants.tryAdmit(long);
    settleTokens(grants, tpm, long.leaseId, 1000, 9000);
    grants.drop(); // holding 3,000 − 8,000: a debt of 5,000
    expect(grants.flush().buckets).toEqual([{ bucket: tpm, diff: 5000 }]);
  });

  it('a refusal after its grant was dropped gives what it reserved back to Redis', () => {
    const grants = new LocalGrants(() => 0);
    const tpm = bucket('tpm', 'tokens', 6_400_000);
    grantUnits(grants, tpm, 1500, 1000);
    const second = request({ buckets: [tpm], tokens: 2000 });
    const plan = grants.reserve(second); // takes the 1,500 held, Redis to admit the other 500
    expect(plan.use).toEqual([1500]);
    grants.drop();
    grants.unreserve(second, plan);
    expect(grants.flush().buckets).toEqual([{ bucket: tpm, diff: -1500 }]);
  });
});

describe('LocalGrants: a request of no tokens', () => {
  it('is not admitted from a grant holding nothing: Redis decides (the bucket may be overdrawn)', () => {
    const grants = new LocalGrants(() => 0);
    const tpm = bucket('tpm', 'tokens', 6_400_000);
    grantUnits(grants, tpm, 1000, 1000);
    expect(grants.tryAdmit(request({ buckets: [tpm], tokens: 0 }))).toBeDefined(); // units held: fine
    const spent = request({ buckets: [tpm], tokens: 1000 });
    expect(grants.tryAdmit(spent)).toBeDefined();
    expect(grants.tryAdmit(request({ buckets: [tpm], tokens: 0 }))).toBeUndefined();
    const plan = grants.reserve(request({ buckets: [tpm], tokens: 0 }));
    expect(plan.use).toEqual([0]); // so the script does not treat it as paid for
  });
});

describe('LocalGrants: units unspent when Redis went away', () => {
  it('are not given back (Redis may have come back empty), but debts and members are', () => {
    const grants = new LocalGrants(() => 0);
    const rpm = bucket('rpm', 'requests', 64_000);
    grantUnits(grants, rpm, 4);
    grants.drop();
    expect(grants.flush()).toEqual({ buckets: [], members: [] });
  });
});

describe('LocalGrants: credits beyond what a grant aims to hold', () => {
  it('tokens given back at settle beyond the grant’s size go back to Redis at the next flush', () => {
    const grants = new LocalGrants(() => 0);
    const tpm = bucket('tpm', 'tokens', 64_000); // a share of 1,000 tokens
    const inFlight: AdmitRequest[] = [];
    // Requests estimated at 200 tokens, admitted from two grants (800, then 1,000 as it doubles).
    for (const units of [800, 1000]) {
      const r = request({ buckets: [tpm], tokens: 200 });
      const plan = grants.reserve(r);
      grants.granted(r, plan, unitsGranted(units));
      inFlight.push(r);
      for (;;) {
        const local = request({ buckets: [tpm], tokens: 200 });
        if (grants.tryAdmit(local) === undefined) break;
        inFlight.push(local);
      }
    }
    expect(inFlight).toHaveLength(11);
    // All of them used 10 tokens: 190 each of credit, 2,090 in all, into a grant aiming at 1,000.
    for (const r of inFlight) {
      settleTokens(grants, tpm, r.leaseId, 200, 10);
    }
    const [back] = grants.flush().buckets;
    // Held from then on: the grant's size, not most of the limit.
    expect(back).toEqual({ bucket: tpm, diff: -(11 * 190 - 1000) });
    let admittedLocally = 0;
    while (grants.tryAdmit(request({ buckets: [tpm], tokens: 200 }))) admittedLocally++;
    expect(admittedLocally).toBe(5);
  });
});

describe.skipIf(!REDIS_URL)('RedisLimiter with local grants', () => {
  const redis = redisLimiterFixture();
  const open = redis.open;

  /** Units charged to a bucket in Redis now, as Redis's own TAT and clock say. */
  async function chargedInRedis(prefix: string, b: RateBucket, admin = redis.admin): Promise<number> {
    const [tat, [seconds, micros]] = await Promise.all([admin.get(`${prefix}rl:${b.key}`), admin.time()]);
    if (tat === null) return 0;
    const now = Number(seconds) * 1000 + Number(micros) / 1000;
    return Math.max(0, (Number.parseFloat(tat) - now) / (b.periodMs / b.limit)); // "TAT step"
  }

  const admitted = (results: AdmitResult[]) => results.filter((r) => r.allowed).length;

  it('admits most requests with no round trip, and what it lends was charged in Redis before', async () => {
    const prefix = randomRedisPrefix();
    const limiter = await open(prefix);
    const rpl = bucket('rpl', 'requests', 1_000_000, LONG);
    const remaining: number[] = [];
    for (let i = 0; i < 500; i++) {
      const answer = limiter.admit(request({ buckets: [rpl] }));
      const result = await answer;
      expect(result.allowed).toBe(true);
      remaining.push(result.states[0]!.remaining);
    }
    expect(limiter.grantedAdmissions).toBeGreaterThan(450);
    // Headers count down by one per request, as without grants (what is held counts as remaining).
    for (let i = 1; i < remaining.length; i++) expect(remaining[i]).toBeLessThanOrEqual(remaining[i - 1]!);
    expect(remaining.at(-1)).toBeGreaterThanOrEqual(1_000_000 - 500 - 1);
    expect(remaining.at(-1)).toBeLessThanOrEqual(1_000_000 - 500);
    // Redis was charged every admitted request and what is still held, never less.
    expect(await chargedInRedis(prefix, rpl)).toBeGreaterThanOrEqual(500 - 1);
    await limiter.close(); // gives back what it holds
    const charged = await chargedInRedis(prefix, rpl);
    expect(charged).toBeGreaterThanOrEqual(500 - 1);
    expect(charged).toBeLessThanOrEqual(500 + 1e-6);
  });

  it('with localGrants false, every admission is a Redis call', async () => {
    const limiter = await open(randomRedisPrefix(), { localGrants: false });
    const rpl = bucket('rpl', 'requests', 1_000_000, LONG);
    for (let i = 0; i < 20; i++)
      expect((await limiter.admit(request({ buckets: [rpl] }))).allowed).toBe(true);
    expect(limiter.grantedAdmissions).toBe(0);
  });

  it('two instances sharing a limit admit no more than it between them, and nearly all of it', async () => {
    const prefix = randomRedisPrefix();
    const [a, b] = [await open(prefix), await open(prefix)];
    const limit = 2000;
    const shared = bucket('shared', 'requests', limit, LONG);
    const results: AdmitResult[] = [];
    // Waves of concurrent requests on both instances until both are refused throughout.
    for (let wave = 0; wave < 60; wave++) {
      const batch = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).admit(request({ buckets: [shared] }))),
      );
      results.push(...batch);
      if (admitted(batch) === 0) break;
    }
    const total = admitted(results);
    expect(total).toBeLessThanOrEqual(limit);
    // What the two may hold between them is refused until they give it back.
    expect(total).toBeGreaterThanOrEqual(limit - 2 * Math.floor(limit * GRANT_SHARE) - 1);
    expect(a.grantedAdmissions).toBeGreaterThan(0);
    expect(b.grantedAdmissions).toBeGreaterThan(0);
    await Promise.all([a.close(), b.close()]);
    // Given back on close: Redis holds exactly what was admitted.
    const charged = await chargedInRedis(prefix, shared);
    expect(charged).toBeGreaterThanOrEqual(total - 1);
    expect(charged).toBeLessThanOrEqual(total + 1e-6);
  });

  it('reconciles tokens through the grant: Redis ends up charged what was really used', async () => {
    const prefix = randomRedisPrefix();
    const limiter = await open(prefix, { grantFlushMs: 50 });
    const tpl = bucket('tpl', 'tokens', 6_400_000, LONG);
    for (let i = 0; i < 30; i++) {
      const leaseId = `r${i}`;
      expect((await limiter.admit(request({ buckets: [tpl], tokens: 1000, leaseId }))).allowed).toBe(true);
      // Half of them used less than estimated, half more.
      const actualTokens = i % 2 ? 400 : 1900;
      await limiter.settle({ buckets: [tpl], estimatedTokens: 1000, actualTokens, slots: [], leaseId });
    }
    expect(limiter.grantedAdmissions).toBeGreaterThan(20);
    await limiter.close();
    const used = 15 * 400 + 15 * 1900;
    const charged = await chargedInRedis(prefix, tpl);
    // One token refills every 156 s of this period: charged is exact to within one.
    expect(charged).toBeGreaterThanOrEqual(used - 1);
    expect(charged).toBeLessThanOrEqual(used + 1e-6);
  });

  it('a concurrency limit holds across instances lending granted slots, and all are freed after', async () => {
    const prefix = randomRedisPrefix();
    const [a, b] = [await open(prefix, { grantFlushMs: 50 }), await open(prefix, { grantFlushMs: 50 })];
    const limit = 640; // a share of 10 slots per instance
    const s = slot('cc', limit);
    const held: { limiter: RedisLimiter; leaseId: string }[] = [];
    // Warm up the grants, then fill the limit from both sides.
    for (let round = 0; round < 40; round++) {
      const batch = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const limiter = i % 2 ? a : b;
          const leaseId = randomBytes(8).toString('hex');
          const result = await limiter.admit(request({ slots: [s], leaseId }));
          if (result.allowed) held.push({ limiter, leaseId });
          return result;
        }),
      );
      if (admitted(batch) === 0) break;
    }
    expect(held.length).toBeLessThanOrEqual(limit);
    expect(held.length).toBeGreaterThanOrEqual(limit - 2 * Math.floor(limit * GRANT_SHARE));
    expect(a.grantedAdmissions + b.grantedAdmissions).toBeGreaterThan(0);
    expect(await redis.admin.zcard(`${prefix}cc:cc`)).toBeLessThanOrEqual(limit);
    for (const { limiter, leaseId } of held) {
      await settleSlots(limiter, [s], leaseId);
    }
    // Idle grants go back within two flush intervals (100 ms); a busy machine may take longer.
    await vi.waitFor(async () => expect(await redis.admin.zcard(`${prefix}cc:cc`)).toBe(0), {
      timeout: 10_000,
      interval: 20,
    });
  });

  it('close waits for an admission in flight, and gives back what it was granted', async () => {
    const prefix = randomRedisPrefix();
    const limiter = new RedisLimiter({ url: REDIS_URL!, keyPrefix: prefix });
    redis.cleanPrefix(prefix);
    expect(await limiter.ready(5000)).toBe(true);
    const rpl = bucket('rpl', 'requests', 1_000_000, LONG);
    const s = slot('cc', 1000);
    const answer = limiter.admit(request({ buckets: [rpl], slots: [s] }));
    await limiter.close();
    expect((await answer).allowed).toBe(true);
    expect(limiter.fallbackCalls).toBe(0); // answered by Redis, not locally after quit
    expect(await chargedInRedis(prefix, rpl)).toBeCloseTo(1, 0);
    // Only the request's own lease is left (it never settled); no granted member.
    expect(await redis.admin.zcard(`${prefix}cc:cc`)).toBe(1);
  });
  it('reads a budget counter from Redis’s last answer for a moment, then from Redis again', async () => {
    const prefix = randomRedisPrefix();
    const [a, b] = [await open(prefix), await open(prefix)];
    // The limiter times that moment by performance.now(): stopped here, so that the round trips
    // below take no time of it however slow the machine, and moved on by hand past the moment.
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const expiresAt = Date.now() + 60_000;
      expect(await a.seedCounter('spend', 100, expiresAt)).toBe(true);
      const first = a.readCounters(['spend']);
      expect(first).toBeInstanceOf(Promise); // a seed is not an answer of the counter's value
      expect(await first).toEqual([100]);
      expect(a.readCounters(['spend'])).toEqual([100]); // answered at once, no round trip
      expect(await b.addToCounters([{ key: 'spend', amount: 50, expiresAt }])).toEqual([150]);
      expect(a.readCounters(['spend'])).toEqual([100]); // the other's spend of the last moment is not seen yet
      expect(await a.addToCounters([{ key: 'spend', amount: 1, expiresAt }])).toEqual([151]);
      expect(a.readCounters(['spend'])).toEqual([151]); // its own addition's answer brings it up to date
      vi.advanceTimersByTime(300); // a moment is 250 ms
      await b.addToCounters([{ key: 'spend', amount: 10, expiresAt }]);
      const later = a.readCounters(['spend']);
      expect(later).toBeInstanceOf(Promise);
      expect(await later).toEqual([161]);
    } finally {
      vi.useRealTimers();
    }

    const exact = await open(prefix, { localGrants: false });
    await exact.readCounters(['spend']);
    expect(exact.readCounters(['spend'])).toBeInstanceOf(Promise);
  });

  it('a give-back Redis refuses with a script error is reported once, not sent again and again', async () => {
    const prefix = randomRedisPrefix();
    const errors: Error[] = [];
    const limiter = await open(prefix, { probeIntervalMs: 20, onError: (e) => errors.push(e) });
    await redis.admin.set(`${prefix}cc:broken`, 'not a sorted set');
    await settleSlots(limiter, [slot('broken', 1)], 'l');
    await vi.waitFor(() => expect(limiter.degraded).toBe(false), { timeout: 10_000, interval: 10 });
    await sleep(300); // fifteen probe intervals: a resend loop would fail again each time
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/WRONGTYPE/);
    expect(limiter.fallbacks).toBe(1);
  });

  /**
   * `CLIENT PAUSE` stops every client of a server: on the shared test Redis it would time out the
   * calls of whatever other suite runs meanwhile (they fall back to local limits, and their exact
   * checks fail). These tests pause a redis-server of their own.
   */
  describe('while Redis pauses', () => {
    let server: ChildProcess | undefined;
    let port = 0;
    beforeAll(async () => {
      port = await freePort();
      server = await startRedisServer(port);
    });
    afterAll(async () => {
      if (server) await killRedisServer(server);
    });
    const redis = redisLimiterFixture(() => `redis://127.0.0.1:${port}`);
    const open = redis.open;

    // The limiters' command timeout is 200 ms, not less: Redis, slow for a moment on a busy
    // machine, must not time out the calls made before the pause. A timer firing late by more than
    // half the timeout gives Redis a second timeout (`answerWithin`), so a pause must outlast two
    // timeouts and the lateness to be sure that a call made under it times out: 1000 ms leaves 600.
    it('an ask ahead that times out and runs later gives back what it was granted', async () => {
      const prefix = randomRedisPrefix();
      const limiter = await open(prefix, { commandTimeoutMs: 200, probeIntervalMs: 50 });
      const rpl = bucket('rpl', 'requests', 1_000_000, LONG);
      const admittedCount = { n: 0 };
      const admit = async () => {
        if ((await limiter.admit(request({ buckets: [rpl] }))).allowed) admittedCount.n++;
      };
      await admit(); // exact: brings a grant of 4
      expect(limiter.fallbacks).toBe(0);
      await redis.admin.client('PAUSE', 1000, 'WRITE');
      // Spent locally; the third runs the grant low and asks ahead, which times out under the pause.
      for (let i = 0; i < 3; i++) await admit();
      await vi.waitFor(() => expect(limiter.fallbacks).toBe(1), { timeout: 5000, interval: 10 });
      // The pause ends, the late ask runs, the limiter recovers.
      await vi.waitFor(() => expect(limiter.degraded).toBe(false), { timeout: 10_000, interval: 20 });
      await limiter.close();
      const charged = await chargedInRedis(prefix, rpl, redis.admin);
      expect(charged).toBeGreaterThanOrEqual(admittedCount.n - 1);
      // What the first grant still held when the limiter fell back is not given back (Redis might
      // have come back empty): at most its 4 units. The late ask's own grant (8 more) went back.
      expect(charged).toBeLessThanOrEqual(admittedCount.n + 4 + 1e-6);
    });

    it('budget spend counted while Redis is away reaches its counters once it answers', async () => {
      const prefix = randomRedisPrefix();
      const limiter = await open(prefix, { commandTimeoutMs: 200, probeIntervalMs: 50 });
      const expiresAt = Date.now() + 3_600_000;
      expect(await limiter.seedCounter('spend', 100, expiresAt)).toBe(true);
      await redis.admin.client('PAUSE', 1000, 'WRITE');
      await limiter.admit(request({ buckets: [bucket('small', 'requests', 10)] })); // times out
      expect(limiter.degraded).toBe(true);
      await limiter.addToCounters([{ key: 'spend', amount: 30, expiresAt }]);
      await limiter.addToCounters([{ key: 'spend', amount: 20, expiresAt }]);
      await limiter.addToCounters([{ key: 'gone', amount: 5, expiresAt }]); // no such counter in Redis
      await vi.waitFor(() => expect(limiter.degraded).toBe(false), { timeout: 10_000, interval: 20 });
      await vi.waitFor(async () => expect(Number(await redis.admin.get(`${prefix}ct:spend`))).toBe(150), {
        timeout: 5000,
        interval: 20,
      });
      // Only counters Redis still has are added to: a lost one is seeded again from the records.
      expect(await redis.admin.exists(`${prefix}ct:gone`)).toBe(0);
      await limiter.close();
    });

    it('what a request settles while Redis is away reaches it once it answers: debts charged, leases released', async () => {
      const prefix = randomRedisPrefix();
      const limiter = await open(prefix, { commandTimeoutMs: 200, probeIntervalMs: 50 });
      const tpl = bucket('tpl', 'tokens', 6_400_000, LONG);
      const one = slot('one', 1); // too small for grants: leased by Redis under the request's id
      const first = request({ buckets: [tpl], tokens: 1000 });
      expect((await limiter.admit(first)).allowed).toBe(true); // exact, brings a grant
      const long = request({ buckets: [tpl], tokens: 1000 });
      expect(limiter.admit(long)).toMatchObject({ allowed: true }); // from the grant, at once
      const leased = request({ slots: [one] });
      expect((await limiter.admit(leased)).allowed).toBe(true);
      expect(limiter.fallbacks).toBe(0); // all three by Redis or its grant

      await redis.admin.client('PAUSE', 1000, 'WRITE');
      // A call that times out: the limiter falls back and forgets its grants.
      await limiter.admit(request({ buckets: [bucket('small', 'requests', 10)] }));
      expect(limiter.degraded).toBe(true);
      // Both end while Redis is away: one used 50,000 tokens more than estimated, one held the slot.
      await limiter.settle({
        buckets: [tpl],
        estimatedTokens: 1000,
        actualTokens: 51_000,
        slots: [],
        leaseId: long.leaseId,
      });
      await settleSlots(limiter, [one], leased.leaseId);
      await vi.waitFor(() => expect(limiter.degraded).toBe(false), { timeout: 10_000, interval: 20 });
      await vi.waitFor(async () => expect(await redis.admin.zcard(`${prefix}cc:one`)).toBe(0), {
        timeout: 10_000,
      });
      expect((await limiter.admit(request({ slots: [one] }))).allowed).toBe(true);
      await settleSlots(limiter, [], first.leaseId);
      await limiter.close();
      // The first request's 1,000 and the long one's 51,000; the grant's unspent units were not
      // given back after the outage (at most its first size, 4,000).
      const charged = await chargedInRedis(prefix, tpl, redis.admin);
      expect(charged).toBeGreaterThanOrEqual(52_000 - 1);
      expect(charged).toBeLessThanOrEqual(52_000 + 4000 + 1e-6);
    });

    it('without local grants, a late admission’s lease is released when its reply comes', async () => {
      const prefix = randomRedisPrefix();
      const limiter = await open(prefix, { commandTimeoutMs: 200, probeIntervalMs: 50, localGrants: false });
      const one = slot('one', 1);
      await redis.admin.client('PAUSE', 1000, 'WRITE');
      const late = request({ slots: [one] });
      expect((await limiter.admit(late)).allowed).toBe(true); // timed out: admitted locally
      expect(limiter.fallbackCalls).toBe(1);
      await settleSlots(limiter, [one], late.leaseId);
      await vi.waitFor(() => expect(limiter.degraded).toBe(false), { timeout: 10_000, interval: 20 });
      // Redis ran the admission late and took the lease; the limiter gave it back.
      await vi.waitFor(async () => expect(await redis.admin.zcard(`${prefix}cc:one`)).toBe(0), {
        timeout: 10_000,
      });
      expect((await limiter.admit(request({ slots: [one] }))).allowed).toBe(true);
    });

    it('close waits for an admission that times out, and releases the lease its late reply took', async () => {
      const prefix = randomRedisPrefix();
      const limiter = new RedisLimiter({
        url: redis.url,
        keyPrefix: prefix,
        // Wide margins, so that a busy machine cannot change which path this takes: a timer up to
        // 200 ms late still gives up before the pause ends (one later than half the timeout is given
        // a second timeout, which would let Redis answer), and the late reply comes 600 ms before
        // close stops waiting for it (two timeouts after the first).
        commandTimeoutMs: 400,
        localGrants: false,
      });
      redis.cleanPrefix(prefix);
      expect(await limiter.ready(5000)).toBe(true);
      const one = slot('one', 1);
      await redis.admin.client('PAUSE', 600, 'WRITE');
      const answer = limiter.admit(request({ slots: [one] }));
      await sleep(10);
      await limiter.close(); // before the admission has timed out
      expect((await answer).allowed).toBe(true);
      expect(limiter.fallbackCalls).toBe(1); // answered locally, after the timeout
      expect(await redis.admin.zcard(`${prefix}cc:one`)).toBe(0);
    });
  });
});
