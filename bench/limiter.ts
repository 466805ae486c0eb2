/**
 * Limiter benchmarks:
 *  - in-process admissions per second on one core (goal ≥ 1M/s, < 1 µs each), for the common
 *    plan (a key's RPM and TPM) and for a heavy one (8 buckets and 2 concurrency slots, admit +
 *    settle), over 10k distinct keys so the maps are not a single hot entry;
 *  - one admission round trip to Redis (the Lua script, local grants off), sequential and 50 in
 *    flight, when a Redis is reachable (KEYPORT_BENCH_REDIS_URL, KEYPORT_TEST_REDIS_URL, else
 *    redis://127.0.0.1:6379);
 *  - the same with local grants (the default): one busy key's admissions, mostly decided in-process.
 * The Redis limiter's added latency inside the gateway is measured by `npm run bench:gateway`.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { AdmitRequest, ConcurrencySlot, Limiter, RateBucket } from '../src/limits/limiter.ts';
import { MemoryLimiter } from '../src/limits/memory-limiter.ts';
import { RedisLimiter } from '../src/limits/redis-limiter.ts';
import type { Row } from './verify-key.ts';

const KEYS = 10_000;
const BIG = 1_000_000_000; // never refuses: every call does the whole admission
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** What the gateway asks for a key with RPM and TPM set. */
function commonPlan(i: number): AdmitRequest {
  const buckets: RateBucket[] = [
    { key: `rl:k${i}:rpm`, unit: 'requests', limit: BIG, periodMs: MINUTE },
    { key: `rl:k${i}:tpm`, unit: 'tokens', limit: BIG, periodMs: MINUTE },
  ];
  return { buckets, slots: [], tokens: 1200, leaseId: `l${i}` };
}

/** Organization, project and key limits on every dimension. */
function heavyPlan(i: number): AdmitRequest {
  const buckets: RateBucket[] = [];
  for (const scope of [`p${i % 10}`, `k${i}`]) {
    buckets.push(
      { key: `rl:${scope}:rpm`, unit: 'requests', limit: BIG, periodMs: MINUTE },
      { key: `rl:${scope}:tpm`, unit: 'tokens', limit: BIG, periodMs: MINUTE },
      { key: `rl:${scope}:rpd`, unit: 'requests', limit: BIG, periodMs: DAY },
      { key: `rl:${scope}:tpd`, unit: 'tokens', limit: BIG, periodMs: DAY },
    );
  }
  const slots: ConcurrencySlot[] = [
    { key: `cc:p${i % 10}`, limit: BIG },
    { key: `cc:k${i}`, limit: BIG },
  ];
  return { buckets, slots, tokens: 1200, leaseId: `l${i}` };
}

const perSecond = (n: number, ms: number) => `${Math.round(n / (ms / 1000)).toLocaleString('en-US')} /s`;
const nsEach = (n: number, ms: number) => `${((ms * 1e6) / n).toFixed(0)} ns`;

function memoryRows(): Row[] {
  const rows: Row[] = [];
  const limiter = new MemoryLimiter();
  const common = Array.from({ length: KEYS }, (_, i) => commonPlan(i));
  const heavy = Array.from({ length: KEYS }, (_, i) => heavyPlan(i));
  for (let i = 0; i < 200_000; i++) limiter.admit(common[i % KEYS]!); // warm up (JIT, maps)

  const n = 3_000_000;
  let start = performance.now();
  for (let i = 0; i < n; i++) {
    if (!limiter.admit(common[i % KEYS]!).allowed) throw new Error('unexpected refusal');
  }
  let elapsed = performance.now() - start;
  rows.push({
    benchmark: 'in-process admission, RPM + TPM of one key (1 core, 3M calls, 10k keys)',
    result: `${perSecond(n, elapsed)} · ${nsEach(n, elapsed)} each`,
    goal: '≥ 1,000,000 /s, < 1 µs',
  });

  const m = 1_000_000;
  for (let i = 0; i < 100_000; i++) {
    const request = heavy[i % KEYS]!;
    limiter.admit(request);
    limiter.settle({ ...request, estimatedTokens: 1200, actualTokens: 900 });
  }
  start = performance.now();
  for (let i = 0; i < m; i++) {
    const request = heavy[i % KEYS]!;
    if (!limiter.admit(request).allowed) throw new Error('unexpected refusal');
    limiter.settle({
      buckets: request.buckets,
      slots: request.slots,
      leaseId: request.leaseId,
      estimatedTokens: 1200,
      actualTokens: 900,
    });
  }
  elapsed = performance.now() - start;
  rows.push({
    benchmark: 'in-process admit + settle, 8 buckets and 2 slots (org/project/key), 1M requests',
    result: `${perSecond(m, elapsed)} · ${nsEach(m, elapsed)} each`,
    goal: 'recorded',
  });
  return rows;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

async function redisRows(url: string): Promise<Row[]> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
  } catch {
    probe.disconnect();
    return [{ benchmark: 'Redis limiter', result: `skipped: no Redis at ${url}`, goal: '' }];
  }
  const prefix = `keyport-bench-${randomBytes(4).toString('hex')}:`;
  const limiter: Limiter = new RedisLimiter({
    url,
    keyPrefix: prefix,
    commandTimeoutMs: 2000,
    localGrants: false,
  });
  await (limiter as RedisLimiter).ready(5000);
  const granting = new RedisLimiter({ url, keyPrefix: `${prefix}g:`, commandTimeoutMs: 2000 });
  await granting.ready(5000);
  try {
    const plans = Array.from({ length: KEYS }, (_, i) => commonPlan(i));
    for (let i = 0; i < 2000; i++) await limiter.admit(plans[i % KEYS]!);
    const samples = new Float64Array(20_000);
    for (let i = 0; i < samples.length; i++) {
      const t0 = performance.now();
      const result = await limiter.admit(plans[i % KEYS]!);
      samples[i] = performance.now() - t0;
      if (!result.allowed) throw new Error('unexpected refusal');
    }
    samples.sort();
    const ms = (x: number) => `${x.toFixed(3)} ms`;
    const us = (x: number) => `${(x * 1000).toFixed(2)} µs`;
    const rows: Row[] = [
      {
        benchmark:
          'Redis admission round trip (RPM + TPM, one Lua script, local grants off), sequential: p50 / p99',
        result: `${ms(percentile(samples, 0.5))} / ${ms(percentile(samples, 0.99))}`,
        goal: 'recorded',
      },
    ];
    const total = 100_000;
    const inFlight = 50;
    let next = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < total) await limiter.admit(plans[next++ % KEYS]!);
      }),
    );
    const elapsed = performance.now() - start;
    rows.push({
      benchmark: `Redis admissions, ${inFlight} in flight from one process (100k calls, local grants off)`,
      result: perSecond(total, elapsed),
      goal: 'recorded',
    });

    // One key of a busy application: admit + settle, as the gateway does, with local grants.
    const hot = commonPlan(0);
    const settle = { ...hot, estimatedTokens: 1200, actualTokens: 900 };
    for (let i = 0; i < 2000; i++) {
      await granting.admit(hot);
      granting.settle(settle);
    }
    const before = granting.grantedAdmissions;
    const localSamples = new Float64Array(100_000);
    for (let i = 0; i < localSamples.length; i++) {
      const t0 = performance.now();
      const result = await granting.admit(hot);
      localSamples[i] = performance.now() - t0;
      if (!result.allowed) throw new Error('unexpected refusal');
      granting.settle(settle);
    }
    const local = granting.grantedAdmissions - before;
    localSamples.sort();
    rows.push({
      benchmark:
        'Redis limiter with local grants (the default): one key, admit + settle, sequential: p50 / p99, share decided in-process',
      result: `${us(percentile(localSamples, 0.5))} / ${us(percentile(localSamples, 0.99))} · ${((100 * local) / localSamples.length).toFixed(2)}% in-process`,
      goal: 'recorded',
    });
    next = 0;
    const grantedStart = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next++ < total * 10) {
          await granting.admit(hot);
          granting.settle(settle);
        }
      }),
    );
    rows.push({
      benchmark: `Redis limiter with local grants: one key, ${inFlight} in flight from one process (1M calls)`,
      result: perSecond(total * 10, performance.now() - grantedStart),
      goal: 'recorded',
    });
    return rows;
  } finally {
    await limiter.close();
    await granting.close();
    let cursor = '0';
    do {
      const [nextCursor, keys] = await probe.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await probe.del(...keys);
      cursor = nextCursor;
    } while (cursor !== '0');
    probe.disconnect();
  }
}

export async function runLimiterBenchmarks(): Promise<Row[]> {
  const url =
    process.env.KEYPORT_BENCH_REDIS_URL ?? process.env.KEYPORT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  return [...memoryRows(), ...(await redisRows(url))];
}
