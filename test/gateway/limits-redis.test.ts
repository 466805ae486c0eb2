/**
 * Limits shared through Redis by several gateway instances (one database, one Redis, separate
 * processes' worth of state: caches, limiters, connections), and a Redis that goes away mid-run.
 * Runs where KEYPORT_TEST_REDIS_URL is set (CI) and redis-server is installed.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import type { RedisLimiter } from '../../src/limits/redis-limiter.ts';
import { freePort } from '../helpers/processes.ts';
import { killRedisServer, REDIS_URL, randomRedisPrefix, startRedisServer } from '../helpers/redis.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

const chatBody = JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }] });

/** The value of one series in a `/metrics` scrape. */
const metricValue = (text: string, series: string) =>
  Number(
    text
      .split('\n')
      .find((line) => line.startsWith(`${series} `))
      ?.slice(series.length + 1),
  );

const post = (gw: TestGateway, key: IssuedKey) =>
  gw.request('POST', '/v1/chat/completions', {
    headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
    body: chatBody,
  });

describe.skipIf(!REDIS_URL)('limits shared through Redis', () => {
  let a: TestGateway;
  let b: TestGateway;
  const prefix = randomRedisPrefix();

  beforeAll(async () => {
    const config = { redisUrl: REDIS_URL!, redisKeyPrefix: prefix };
    a = await createTestGateway({ config });
    b = await createTestGateway({ shareStoreWith: a, config });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('two instances hammered at once admit no more than the limit between them', async () => {
    const key = await a.createKey();
    // Both instances know the key before the race (a cold instance would still be looking it up
    // in the database while the warm one's requests take every slot).
    for (const gw of [a, b]) expect((await post(gw, key)).status).toBe(200);
    // Per day, so that no request's worth refills during the run: the limit is exactly 100.
    await a.services.limits.updateRateLimit(
      a.instance.organization.id,
      { type: 'api_key', id: key.key.id },
      '*',
      {
        maxRequestsPerDay: 100,
      },
      TEST_ACTOR,
    );
    await b.services.notifier.changed('limits', a.instance.organization.id); // shared PGlite: tell b here
    // Interleaved, so that neither instance gets all its requests in before the other starts.
    const instanceOf = (i: number) => (i % 2 === 0 ? a : b);
    const attempts = Array.from({ length: 300 }, (_, i) => post(instanceOf(i), key));
    const statuses = (await Promise.all(attempts)).map((r) => r.status);
    const admitted = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    const fallbacks = [a, b].map((gw) => (gw.services.enforcer.limiter as RedisLimiter).fallbacks);
    expect(admitted).toBeLessThanOrEqual(105); // the bound: at most 5% over
    // Exact while Redis answered every call in time (one atomic script per admission); a call that
    // times out under load is answered by local limits (fail open), which may admit a little more.
    if (fallbacks.every((n) => n === 0)) expect(admitted).toBe(100);
    // Both instances did admit some: the limit really was shared, not split.
    const bAdmitted = statuses.filter((s, i) => s === 200 && instanceOf(i) === b).length;
    expect(bAdmitted).toBeGreaterThan(0);
    expect(admitted - bAdmitted).toBeGreaterThan(0);
  });

  it('with a limit large enough for local grants, most admissions skip Redis and the limit still holds', async () => {
    const key = await a.createKey();
    for (const gw of [a, b]) expect((await post(gw, key)).status).toBe(200);
    const limit = 1024; // a grant of up to 16 per instance
    await a.services.limits.updateRateLimit(
      a.instance.organization.id,
      { type: 'api_key', id: key.key.id },
      '*',
      { maxRequestsPerDay: limit, maxConcurrentRequests: 1024 },
      TEST_ACTOR,
    );
    await b.services.notifier.changed('limits', a.instance.organization.id);
    const limiters = [a, b].map((gw) => gw.services.enforcer.limiter as RedisLimiter);
    const before = limiters.map((l) => l.grantedAdmissions);
    const statuses: number[] = [];
    const remaining: number[] = [];
    for (let wave = 0; wave < 40; wave++) {
      const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => post(i % 2 ? a : b, key)));
      for (const response of responses) {
        statuses.push(response.status);
        if (response.status === 200)
          remaining.push(Number(response.headers['x-ratelimit-remaining-requests']));
      }
      if (responses.every((r) => r.status === 429)) break;
    }
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    const admitted = statuses.filter((s) => s === 200).length;
    if (limiters.every((l) => l.fallbacks === 0)) {
      expect(admitted).toBeLessThanOrEqual(limit);
      // What the two instances hold may be refused to the other: at most a grant each.
      expect(admitted).toBeGreaterThanOrEqual(limit - 2 * 16 - 1);
    }
    for (const [i, l] of limiters.entries()) {
      expect(l.grantedAdmissions - before[i]!).toBeGreaterThan(admitted / 4);
    }
    const metrics = (await a.request('GET', '/metrics')).text;
    expect(metricValue(metrics, 'keyport_limiter_local_grant_admissions_total')).toBe(
      limiters[0]!.grantedAdmissions,
    );
    // Headers still count down the shared limit: every answer under it, the last near zero.
    expect(Math.max(...remaining)).toBeLessThan(limit);
    expect(Math.min(...remaining)).toBeLessThan(2 * 16 + 2);
  });

  it('a hard budget reached through one instance blocks the other too', async () => {
    const probe = await post(a, await a.createKey());
    const usage = (probe.body as { usage: { total_tokens: number } }).usage.total_tokens;
    const key = await a.createKey();
    // Two requests' tokens cross it, one does not.
    await a.services.limits.setBudget(
      a.instance.organization.id,
      {
        scope: { type: 'api_key', id: key.key.id },
        metric: 'tokens',
        period: 'day',
        hardLimit: 2 * usage - 1,
      },
      TEST_ACTOR,
    );
    await b.services.notifier.changed('limits', a.instance.organization.id);
    expect((await post(b, key)).status).toBe(200);
    await b.services.enforcer.drain(); // b's spend is in Redis, and b has Redis's answer cached
    expect((await post(a, key)).status).toBe(200); // a reads Redis: one request's worth, under the limit
    await a.services.enforcer.drain();
    const refusedOnA = await post(a, key);
    expect(refusedOnA.status).toBe(429);
    expect((refusedOnA.body as { error: { code: string } }).error.code).toBe('insufficient_quota');
    // b's cached read is at most a moment old: once it is stale, b sees a's spend in Redis.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const refusedOnB = await post(b, key);
    // Shared while Redis answered every call in time; a call timing out under load is answered
    // by b's local counters (fail open), which need not have a's spend yet.
    const fallbacks = [a, b].map((gw) => (gw.services.enforcer.limiter as RedisLimiter).fallbacks);
    if (fallbacks.every((n) => n === 0)) {
      expect(refusedOnB.status).toBe(429);
      expect((refusedOnB.body as { error: { code: string } }).error.code).toBe('insufficient_quota');
    }
  });

  it('a concurrency limit holds across instances', async () => {
    const key = await a.createKey();
    await a.services.limits.updateRateLimit(
      a.instance.organization.id,
      { type: 'api_key', id: key.key.id },
      '*',
      {
        maxConcurrentRequests: 1,
      },
      TEST_ACTOR,
    );
    // On PostgreSQL the change reaches b through NOTIFY; these two share a PGlite, so tell b here.
    await b.services.notifier.changed('limits', a.instance.organization.id);
    const slow = a.request('POST', '/v1/chat/completions', {
      headers: {
        authorization: `Bearer ${key.secret}`,
        'content-type': 'application/json',
        // Held long enough for b's request (a cold key lookup on a busy machine) to meet it.
        'x-mock-delay-ms': '3000',
      },
      body: chatBody,
    });
    await vi.waitFor(() => expect(a.mock.stats.requests).toBeGreaterThan(0), { timeout: 5000, interval: 10 });
    const elsewhere = await post(b, key);
    expect(elsewhere.status).toBe(429);
    expect((await slow).status).toBe(200);
    await vi.waitFor(async () => expect((await post(b, key)).status).toBe(200), {
      timeout: 5000,
      interval: 50,
    });
  });
});

describe.skipIf(!REDIS_URL)('when Redis goes away', () => {
  it('falls back to local limits without failing a request, and shares again once it is back', async () => {
    const port = await freePort();
    let server = await startRedisServer(port);
    const gw = await createTestGateway({
      config: { redisUrl: `redis://127.0.0.1:${port}`, redisKeyPrefix: randomRedisPrefix() },
    });
    const limiter = gw.services.enforcer.limiter as RedisLimiter;
    try {
      const key = await gw.createKey();
      await gw.services.limits.updateRateLimit(
        gw.instance.organization.id,
        { type: 'api_key', id: key.key.id },
        '*',
        {
          maxRequestsPerDay: 3,
        },
        TEST_ACTOR,
      );
      expect((await post(gw, key)).status).toBe(200);
      expect(limiter.degraded).toBe(false);

      await killRedisServer(server);
      // Every request is still answered, by this instance's local limits (which may remember what
      // it admitted before): no 5xx, no hang, and the limit still holds locally.
      const during = [];
      for (let i = 0; i < 5; i++) during.push((await post(gw, key)).status);
      expect(during.every((status) => status === 200 || status === 429)).toBe(true);
      expect(during.filter((status) => status === 200).length).toBeGreaterThanOrEqual(2);
      expect(during.slice(3)).toEqual([429, 429]);
      expect(limiter.degraded).toBe(true);
      expect(gw.logs.join('')).toContain('Redis is unreachable: rate limits are enforced per instance');
      // Counted in the metrics: the outage, once, and the calls answered locally meanwhile.
      const metrics = (await gw.request('GET', '/metrics')).text;
      expect(metrics).toContain('keyport_limiter_info{backend="redis"} 1');
      expect(metrics).toContain('keyport_limiter_redis_degraded 1');
      expect(metrics).toContain('keyport_limiter_redis_outages_total 1');
      expect(metricValue(metrics, 'keyport_limiter_redis_fallback_calls_total')).toBeGreaterThanOrEqual(5);

      server = await startRedisServer(port);
      await vi.waitFor(() => expect(limiter.degraded).toBe(false), { timeout: 10_000, interval: 50 });
      // Back on Redis (empty after its restart): its own count again.
      const after = [];
      for (let i = 0; i < 4; i++) after.push((await post(gw, key)).status);
      expect(after).toEqual([200, 200, 200, 429]);
      expect(gw.logs.join('')).toContain('Redis is reachable again');
      expect((await gw.request('GET', '/metrics')).text).toContain('keyport_limiter_redis_degraded 0');
    } finally {
      await gw.close();
      await killRedisServer(server);
    }
  });
});
