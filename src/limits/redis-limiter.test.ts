import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep, setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../test/helpers/processes.ts';
import {
  deleteRedisKeys,
  killRedisServer,
  REDIS_URL,
  randomRedisPrefix,
  redisLimiterFixture,
  startRedisServer,
} from '../../test/helpers/redis.ts';
import { bucket, limiterSuite, admitRequest as request, slot } from './limiter.test-suite.ts';
import type { AdmitResult } from './limiter.ts';
import { RedisLimiter } from './redis-limiter.ts';

const url = REDIS_URL;
const randomPrefix = randomRedisPrefix;
const deleteKeys = deleteRedisKeys;
const kill = killRedisServer;

describe.skipIf(!url)('RedisLimiter', () => {
  const redis = redisLimiterFixture();
  const open = redis.open;

  describe('shared limiter suite', () => {
    limiterSuite(async () => {
      const prefix = randomPrefix();
      const limiter = new RedisLimiter({ url, keyPrefix: prefix });
      expect(await limiter.ready(5000)).toBe(true);
      return {
        limiter,
        now: Date.now,
        wait: (ms) => sleep(ms),
        slackMs: 1000,
        // A quarter period (600 ms) is what the refill test's seven round trips may take, all told.
        shortPeriodMs: 2400,
        close: async () => {
          expect(limiter.fallbacks).toBe(0); // every answer came from Redis
          await limiter.close();
          await deleteKeys(redis.admin, prefix);
        },
      };
    });
  });

  it('two instances sharing one limit admit exactly the limit under concurrent load', async () => {
    const prefix = randomPrefix();
    const [a, b] = [await open(prefix), await open(prefix)];
    const rph = bucket('shared', 'requests', 100, 3_600_000);
    const attempts: Promise<AdmitResult>[] = [];
    for (let i = 0; i < 300; i++) {
      attempts.push(Promise.resolve(a.admit(request({ buckets: [rph] }))));
      attempts.push(Promise.resolve(b.admit(request({ buckets: [rph] }))));
    }
    const results = await Promise.all(attempts);
    expect(results.filter((r) => r.allowed)).toHaveLength(100);
    expect(a.fallbacks + b.fallbacks).toBe(0);

    const s = slot('shared-slot', 7);
    const leases = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).admit(request({ slots: [s] }))),
    );
    expect(leases.filter((r) => r.allowed)).toHaveLength(7);
  });

  it('admits by Redis’s clock, whatever the instances’ clocks say', async () => {
    const prefix = randomPrefix();
    const hour = 3_600_000;
    const ahead = await open(prefix, { now: () => Date.now() + hour });
    const behind = await open(prefix, { now: () => Date.now() - hour });
    const rpm = bucket('rpm', 'requests', 2);
    expect((await behind.admit(request({ buckets: [rpm] }))).allowed).toBe(true);
    expect((await behind.admit(request({ buckets: [rpm] }))).allowed).toBe(true);
    const refused = await ahead.admit(request({ buckets: [rpm] }));
    expect(refused).toMatchObject({ allowed: false, reason: 'rate' });
    if (refused.allowed || refused.reason !== 'rate') throw new Error('unreachable');
    expect(refused.retryAfterMs).toBeLessThanOrEqual(30_000);
    expect(refused.retryAfterMs).toBeGreaterThan(25_000);
  });

  it('lets idle keys vanish: TATs expire when full again, lease sets with their last lease', async () => {
    const prefix = randomPrefix();
    const limiter = await open(prefix, { leaseTtlMs: 5000 });
    const short = bucket('short', 'requests', 10, 300);
    const s = slot('s', 2);
    expect((await limiter.admit(request({ buckets: [short], slots: [s], leaseId: 'l1' }))).allowed).toBe(
      true,
    );
    const ttl = await redis.admin.pttl(`${prefix}rl:short`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(30); // one interval: 300 ms / 10
    expect(await redis.admin.pttl(`${prefix}cc:s`)).toBeGreaterThan(4000);
    await limiter.settle({
      buckets: [short],
      estimatedTokens: 0,
      actualTokens: 0,
      slots: [s],
      leaseId: 'l1',
    });
    expect(await redis.admin.exists(`${prefix}cc:s`)).toBe(0);
    await sleep(60);
    expect(await redis.admin.exists(`${prefix}rl:short`)).toBe(0);
  });

  it('renews the leases of a live instance; those of a crashed one expire', async () => {
    const prefix = randomPrefix();
    // The lease outlives nine renewal intervals: a busy machine may delay renewals by 900 ms.
    const options = { leaseTtlMs: 1000, renewIntervalMs: 100 };
    const holder = await open(prefix, options);
    const other = await open(prefix, options);
    const s = slot('s', 1);
    expect((await holder.admit(request({ slots: [s], leaseId: 'held' }))).allowed).toBe(true);
    await sleep(2500); // 2.5 lease TTLs: only renewal keeps the lease
    expect(await other.admit(request({ slots: [s] }))).toMatchObject({ reason: 'concurrency', inFlight: 1 });
    await holder.close(); // a crash: no settle, no more renewals
    await sleep(1500);
    expect((await other.admit(request({ slots: [s] }))).allowed).toBe(true);
  });

  it('a busy event loop is not a Redis outage: a reply that came in time is used, not timed out', async () => {
    const onFallback = vi.fn();
    // 200 ms, not less: after the busy loop, Redis has one timeout to answer, even on a busy machine.
    const limiter = await open(randomPrefix(), { commandTimeoutMs: 200, onFallback });
    const rpm = bucket('rpm', 'requests', 10);
    const answer = limiter.admit(request({ buckets: [rpm] }));
    // The gateway is busy for four timeouts' worth while Redis answers at once.
    const busyUntil = Date.now() + 800;
    while (Date.now() < busyUntil) {}
    expect(await answer).toMatchObject({ allowed: true, states: [{ remaining: 9 }] });
    expect(limiter.degraded).toBe(false);
    expect(onFallback).not.toHaveBeenCalled();
    expect(limiter.fallbackCalls).toBe(0);
  });

  it('settle never throws: a failing script goes to onError', async () => {
    const prefix = randomPrefix();
    const onError = vi.fn();
    const limiter = await open(prefix, { onError });
    await redis.admin.set(`${prefix}cc:broken`, 'not a sorted set');
    const settled = limiter.settle({
      buckets: [],
      estimatedTokens: 0,
      actualTokens: 0,
      slots: [slot('broken', 1)],
      leaseId: 'l',
    });
    await expect(Promise.resolve(settled)).resolves.toBeUndefined();
    expect(onError).toHaveBeenCalledOnce();
    expect(String(onError.mock.calls[0]![0])).toMatch(/WRONGTYPE/);
  });

  describe('when Redis goes away', () => {
    let server: ChildProcess | undefined;
    afterEach(async () => {
      if (server) await kill(server);
      server = undefined;
    });

    it('answers from local limits at once, reports the outage once, and goes back to Redis', async () => {
      const port = await freePort();
      server = await startRedisServer(port);
      const direct = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
      direct.on('error', () => {});
      redis.afterTest(async () => direct.disconnect());
      const onFallback = vi.fn();
      let recovered: () => void = () => {};
      const onRecover = vi.fn(() => recovered());
      const prefix = randomPrefix();
      const limiter = new RedisLimiter({
        url: `redis://127.0.0.1:${port}`,
        keyPrefix: prefix,
        commandTimeoutMs: 200,
        maxReconnectDelayMs: 100,
        onFallback,
        onRecover,
      });
      redis.afterTest(() => limiter.close());
      expect(await limiter.ready(5000)).toBe(true);
      const rph = bucket('rph', 'requests', 3, 3_600_000);
      expect((await limiter.admit(request({ buckets: [rph] }))).allowed).toBe(true);
      await direct.connect();
      expect(await direct.exists(`${prefix}rl:rph`)).toBe(1);
      direct.disconnect();

      // Killed while requests keep coming: every one of them is answered, none throws.
      let stop = false;
      let answered = 0;
      const hammer = async () => {
        while (!stop) {
          await limiter.admit(request({ buckets: [rph] }));
          answered++;
          // Local answers are synchronous: without a turn of the event loop, timers would starve.
          await yieldToEventLoop();
        }
      };
      const hammers = [hammer(), hammer(), hammer(), hammer()];
      await sleep(50);
      await kill(server);
      await vi.waitFor(() => expect(limiter.degraded).toBe(true), { timeout: 10_000, interval: 5 });
      const answeredBeforeOutage = answered;
      await sleep(50);
      stop = true;
      await Promise.all(hammers);
      expect(answered).toBeGreaterThan(answeredBeforeOutage); // answered locally meanwhile

      // Local limits now: a fresh bucket of 3 in this process.
      const local = bucket('local', 'requests', 3, 3_600_000);
      const localAnswers: AdmitResult[] = [];
      for (let i = 0; i < 5; i++) localAnswers.push(await limiter.admit(request({ buckets: [local] })));
      expect(localAnswers.map((r) => r.allowed)).toEqual([true, true, true, false, false]);
      const s = slot('s', 1);
      expect((await limiter.admit(request({ slots: [s], leaseId: 'local-lease' }))).allowed).toBe(true);
      await limiter.settle({
        buckets: [],
        estimatedTokens: 0,
        actualTokens: 0,
        slots: [s],
        leaseId: 'local-lease',
      });
      expect((await limiter.admit(request({ slots: [s], leaseId: 'next' }))).allowed).toBe(true);
      expect(await limiter.readCounters(['spend'])).toEqual([undefined]);
      expect(onFallback).toHaveBeenCalledOnce();
      expect(limiter.fallbacks).toBe(1);
      expect(limiter.fallbackCalls).toBeGreaterThanOrEqual(8);
      expect(onRecover).not.toHaveBeenCalled();

      // Back on the same port: the limiter reconnects and uses Redis again.
      const back = new Promise<void>((resolve) => {
        recovered = resolve;
      });
      server = await startRedisServer(port);
      await back;
      expect(limiter.degraded).toBe(false);
      expect((await limiter.admit(request({ buckets: [local] }))).allowed).toBe(true); // Redis's bucket: fresh
      await direct.connect();
      expect(await direct.exists(`${prefix}rl:local`)).toBe(1);
      expect(onFallback).toHaveBeenCalledOnce();
      expect(onRecover).toHaveBeenCalledOnce();
    });

    it('falls back when a command times out on a live connection, and recovers when Redis answers', async () => {
      const port = await freePort();
      server = await startRedisServer(port);
      const onFallback = vi.fn();
      let recovered: () => void = () => {};
      const onRecover = vi.fn(() => recovered());
      const limiter = new RedisLimiter({
        url: `redis://127.0.0.1:${port}`,
        keyPrefix: randomPrefix(),
        commandTimeoutMs: 200,
        probeIntervalMs: 100,
        onFallback,
        onRecover,
      });
      redis.afterTest(() => limiter.close());
      expect(await limiter.ready(5000)).toBe(true);
      const pauser = new Redis(port, '127.0.0.1');
      redis.afterTest(async () => pauser.disconnect());
      // Longer than two timeouts (a late timer gives Redis a second one) with 1100 ms to spare.
      await pauser.call('CLIENT', 'PAUSE', '1500', 'ALL');
      const rpm = bucket('rpm', 'requests', 10);
      const result = await limiter.admit(request({ buckets: [rpm] }));
      expect(result.allowed).toBe(true);
      expect(limiter.degraded).toBe(true);
      expect(onFallback).toHaveBeenCalledOnce();
      expect(String(onFallback.mock.calls[0]![0])).toMatch(/timed out/i);
      await new Promise<void>((resolve) => {
        recovered = resolve;
      });
      expect(limiter.degraded).toBe(false);
      expect(onRecover).toHaveBeenCalledOnce();
    });

    it('a limiter started while Redis is down answers locally', async () => {
      const port = await freePort();
      const onFallback = vi.fn();
      const limiter = new RedisLimiter({
        url: `redis://127.0.0.1:${port}`,
        onFallback,
        maxReconnectDelayMs: 100,
      });
      redis.afterTest(() => limiter.close());
      expect(await limiter.ready(300)).toBe(false);
      const rpm = bucket('rpm', 'requests', 1);
      expect((await limiter.admit(request({ buckets: [rpm] }))).allowed).toBe(true);
      expect((await limiter.admit(request({ buckets: [rpm] }))).allowed).toBe(false);
      expect(limiter.degraded).toBe(true);
      expect(onFallback).toHaveBeenCalledOnce();
    });
  });
});
