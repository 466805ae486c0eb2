/**
 * The in-process limiter (the default, and the Redis limiter's fallback): GCRA TATs in a Map
 * (each with the step it was written under, so that a changed limit keeps the units used),
 * concurrency leases as Sets of lease ids, period counters with an expiry. Every method answers
 * synchronously; `admit` is on every request's path, so it allocates only what it returns.
 */
import { gcraAdmit, gcraPeek, gcraReconcile, gcraStep, rescaledTat } from '../core/gcra.ts';
import type {
  AdmitRequest,
  AdmitResult,
  BucketState,
  CounterAdd,
  Limiter,
  RateBucket,
  SettleRequest,
} from './limiter.ts';

export interface MemoryLimiterOptions {
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /** Stale TATs and expired counters are dropped at most this often (and when the maps double). */
  sweepIntervalMs?: number;
}

interface Counter {
  value: number;
  expiresAt: number;
}

/** A bucket's TAT and the step (ms per unit) of the limit it was written under. */
interface Tat {
  tat: number;
  step: number;
}

/** The bucket's cost for a request of `tokens` tokens. */
export const costOf = (bucket: RateBucket, tokens: number) => (bucket.unit === 'tokens' ? tokens : 1);

/** Below this many entries a sweep triggered by size is not worth it. */
const MIN_SWEEP_SIZE = 1024;

export class MemoryLimiter implements Limiter {
  readonly name = 'memory' as const;
  private readonly now: () => number;
  private readonly sweepIntervalMs: number;
  private readonly tats = new Map<string, Tat>();
  private readonly leases = new Map<string, Set<string>>();
  private readonly counters = new Map<string, Counter>();
  private nextSweepAt = 0;
  private sweepAtSize = MIN_SWEEP_SIZE;
  /** New TATs computed while checking, written only once every bucket and slot allows. */
  private pending = new Float64Array(16);

  constructor(options: MemoryLimiterOptions = {}) {
    this.now = options.now ?? Date.now;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 10_000;
  }

  admit(request: AdmitRequest): AdmitResult {
    const now = this.now();
    this.maybeSweep(now);
    const { buckets, slots, tokens, leaseId } = request;
    const n = buckets.length;
    if (this.pending.length < n) this.pending = new Float64Array(n * 2);
    const pending = this.pending;
    const states: BucketState[] = new Array(n);
    let refused = -1;
    let longestWait = -1;
    for (let i = 0; i < n; i++) {
      const bucket = buckets[i]!;
      const decision = gcraAdmit(bucket, this.tatOf(bucket, now), now, costOf(bucket, tokens));
      pending[i] = decision.tat;
      states[i] = { bucket, remaining: decision.remaining, resetMs: decision.resetMs };
      if (!decision.allowed && decision.retryAfterMs > longestWait) {
        refused = i;
        longestWait = decision.retryAfterMs;
      }
    }
    if (refused >= 0) {
      this.uncharged(states, now);
      return { allowed: false, reason: 'rate', bucket: buckets[refused]!, states, retryAfterMs: longestWait };
    }
    for (let j = 0; j < slots.length; j++) {
      const slot = slots[j]!;
      const held = this.leases.get(slot.key);
      const inFlight = held === undefined ? 0 : held.size;
      if (inFlight >= slot.limit && !held?.has(leaseId)) {
        this.uncharged(states, now);
        return { allowed: false, reason: 'concurrency', slot, inFlight, states };
      }
    }
    for (let i = 0; i < n; i++) this.setTat(buckets[i]!, pending[i]!);
    for (let j = 0; j < slots.length; j++) {
      const key = slots[j]!.key;
      const held = this.leases.get(key);
      if (held === undefined) this.leases.set(key, new Set([leaseId]));
      else held.add(leaseId);
    }
    return { allowed: true, states };
  }

  settle(request: SettleRequest): void {
    const now = this.now();
    const { buckets, estimatedTokens, actualTokens, slots, leaseId } = request;
    if (estimatedTokens !== actualTokens) {
      for (let i = 0; i < buckets.length; i++) {
        const bucket = buckets[i]!;
        if (bucket.unit !== 'tokens') continue;
        const tat = gcraReconcile(bucket, this.tatOf(bucket, now), now, estimatedTokens, actualTokens);
        if (tat > now) this.setTat(bucket, tat);
        else this.tats.delete(bucket.key); // full again: no state to keep
      }
    }
    for (let j = 0; j < slots.length; j++) {
      const key = slots[j]!.key;
      const held = this.leases.get(key);
      if (held?.delete(leaseId) && held.size === 0) this.leases.delete(key);
    }
  }

  readCounters(keys: readonly string[]): (number | undefined)[] {
    const now = this.now();
    const values: (number | undefined)[] = new Array(keys.length);
    for (let i = 0; i < keys.length; i++) values[i] = this.liveCounter(keys[i]!, now)?.value;
    return values;
  }

  seedCounter(key: string, value: number, expiresAt: number): boolean {
    const now = this.now();
    if (expiresAt <= now || this.liveCounter(key, now) !== undefined) return false;
    this.counters.set(key, { value, expiresAt });
    this.maybeSweep(now);
    return true;
  }

  /** `expiresAt` of an add is not used: a counter keeps the expiry it was seeded with. */
  addToCounters(adds: readonly CounterAdd[]): (number | undefined)[] {
    const now = this.now();
    const values: (number | undefined)[] = new Array(adds.length);
    for (let i = 0; i < adds.length; i++) {
      const add = adds[i]!;
      const counter = this.liveCounter(add.key, now);
      if (counter !== undefined) counter.value += add.amount;
      values[i] = counter?.value;
    }
    return values;
  }

  /** Entries held, for tests and metrics. */
  get size(): { buckets: number; slots: number; counters: number } {
    return { buckets: this.tats.size, slots: this.leases.size, counters: this.counters.size };
  }

  async close(): Promise<void> {
    this.tats.clear();
    this.leases.clear();
    this.counters.clear();
  }

  /** Drops stale TATs and expired counters (also run by `admit` and `seedCounter` when due). */
  sweep(now = this.now()): void {
    for (const [key, state] of this.tats) if (state.tat <= now) this.tats.delete(key);
    for (const [key, counter] of this.counters) if (counter.expiresAt <= now) this.counters.delete(key);
    this.nextSweepAt = now + this.sweepIntervalMs;
    this.sweepAtSize = Math.max(MIN_SWEEP_SIZE, 2 * (this.tats.size + this.counters.size));
  }

  /** A refused request charged nothing: every state shows the bucket as it stands. */
  private uncharged(states: BucketState[], now: number): void {
    for (let i = 0; i < states.length; i++) {
      const state = states[i]!;
      const peek = gcraPeek(state.bucket, this.tatOf(state.bucket, now), now);
      state.remaining = peek.remaining;
      state.resetMs = peek.resetMs;
    }
  }

  private tatOf(bucket: RateBucket, now: number): number | undefined {
    const state = this.tats.get(bucket.key);
    return state === undefined ? undefined : rescaledTat(state.tat, state.step, bucket, now);
  }

  /** Updated in place: a bucket's entry is allocated once, not on every request. */
  private setTat(bucket: RateBucket, tat: number): void {
    const state = this.tats.get(bucket.key);
    if (state === undefined) this.tats.set(bucket.key, { tat, step: gcraStep(bucket) });
    else {
      state.tat = tat;
      state.step = gcraStep(bucket);
    }
  }

  private liveCounter(key: string, now: number): Counter | undefined {
    const counter = this.counters.get(key);
    if (counter === undefined || counter.expiresAt > now) return counter;
    this.counters.delete(key);
    return undefined;
  }

  /**
   * A TAT in the past means a full bucket, the same as no entry: dropping those (and expired
   * counters) bounds memory by the keys active within their period. Sweeping when a map has
   * doubled since the last sweep keeps the cost amortized O(1) under a flood of new keys.
   */
  private maybeSweep(now: number): void {
    if (now < this.nextSweepAt && this.tats.size + this.counters.size <= this.sweepAtSize) return;
    this.sweep(now);
  }
}
