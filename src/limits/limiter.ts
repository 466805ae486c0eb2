/**
 * The limiter port: what the gateway asks of a rate-limit backend. Two implementations share it
 * (and one test suite): in-process (`memory-limiter.ts`, the default) and Redis
 * (`redis-limiter.ts`, shared by every gateway instance, falling back to in-process limits while
 * Redis is unreachable).
 *
 * A backend knows nothing of organizations, models or prices: it keeps GCRA buckets, concurrency
 * leases and period counters under keys the caller builds (`limit-plan.ts`).
 */

/** A rate limit: `limit` units per `periodMs`, kept as one GCRA state under `key`. */
export interface RateBucket {
  key: string;
  /** Requests cost 1; tokens cost the request's (estimated) tokens. */
  unit: 'requests' | 'tokens';
  limit: number;
  periodMs: number;
}

/** At most `limit` requests in flight under `key`. */
export interface ConcurrencySlot {
  key: string;
  limit: number;
}

export interface BucketState {
  bucket: RateBucket;
  /** Units that could still be admitted now (after this request, when it was admitted). */
  remaining: number;
  /** Until the bucket is full again (OpenAI's `x-ratelimit-reset-*`). */
  resetMs: number;
}

export interface AdmitRequest {
  /** Checked together: the request is admitted only if every bucket and slot allows it, and then
   * charged to all of them; when refused, nothing is charged. */
  buckets: readonly RateBucket[];
  slots: readonly ConcurrencySlot[];
  /** The cost of the request in every `tokens` bucket (estimated: prompt + max output). */
  tokens: number;
  /** Identifies this request's concurrency leases (the request id). */
  leaseId: string;
}

export type AdmitResult =
  | {
      allowed: true;
      /** One per bucket, in the order given. */
      states: BucketState[];
    }
  | {
      allowed: false;
      reason: 'rate';
      /** The bucket that refused (the one with the longest wait, when several do). */
      bucket: RateBucket;
      states: BucketState[];
      /** How long until the request would fit; Infinity when it can never fit (cost > limit). */
      retryAfterMs: number;
    }
  | {
      allowed: false;
      reason: 'concurrency';
      slot: ConcurrencySlot;
      /** Requests in flight under that slot. */
      inFlight: number;
      states: BucketState[];
    };

export interface SettleRequest {
  /** The `tokens` buckets the request was charged (the same objects as at admission). */
  buckets: readonly RateBucket[];
  /** Tokens charged at admission, and tokens really used: the difference is moved (either way). */
  estimatedTokens: number;
  actualTokens: number;
  /** The slots to release, with the lease id given at admission. */
  slots: readonly ConcurrencySlot[];
  leaseId: string;
}

/** A period counter (budget spend): `amount` added; it expires at `expiresAt` (ms since epoch). */
export interface CounterAdd {
  key: string;
  amount: number;
  expiresAt: number;
}

/** Values may come back synchronously (in-process) or as a promise (Redis). */
export type MaybePromise<T> = T | Promise<T>;

export interface Limiter {
  readonly name: 'memory' | 'redis';
  admit(request: AdmitRequest): MaybePromise<AdmitResult>;
  /** After the response: reconcile token buckets and release concurrency leases. Never throws. */
  settle(request: SettleRequest): MaybePromise<void>;
  /** Current values of counters; undefined for a counter that does not exist (never seeded). */
  readCounters(keys: readonly string[]): MaybePromise<(number | undefined)[]>;
  /**
   * Sets a counter if it does not exist yet (seeding from durable usage records). True when this
   * call set it; false when it was there already (another seed won) or `expiresAt` has passed.
   */
  seedCounter(key: string, value: number, expiresAt: number): MaybePromise<boolean>;
  /**
   * Adds to counters that exist; returns each new value, or undefined where the counter did not
   * exist (expired, or Redis restarted): the caller seeds it, the seed counting what was added.
   */
  addToCounters(adds: readonly CounterAdd[]): MaybePromise<(number | undefined)[]>;
  close(): Promise<void>;
}
