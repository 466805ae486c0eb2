/**
 * The Redis limiter: limits shared by every gateway instance. One Lua script per operation, so a
 * request's admission across all its buckets and slots is one atomic round trip, timed by Redis's
 * own clock (instances' clocks may differ).
 *
 * Keys, under `keyPrefix` (default `keyport:`):
 *   `rl:<bucket key>`   "TAT step": GCRA TAT (ms since the epoch, Redis time) and the ms per unit
 *                       of the limit it was written under; PX = until the bucket is full again
 *   `cc:<slot key>`     sorted set of lease ids scored by lease expiry (ms); PX = the latest expiry
 *   `ct:<counter key>`  period counter (INCRBYFLOAT), PX = until the period ends
 * The type segment keeps a bucket, a slot and a counter built from the same caller key apart.
 *
 * Fails open: while Redis is unreachable, or a command fails or times out, every call is answered
 * by an in-process MemoryLimiter (local limits), and the outage is reported once (`onFallback`).
 * When the connection is ready again (or, after a failure on a live connection, a PING answers),
 * calls go back to Redis (`onRecover`).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { gcraAdmit, gcraPeek } from '../core/gcra.ts';
import type {
  AdmitRequest,
  AdmitResult,
  BucketState,
  CounterAdd,
  Limiter,
  MaybePromise,
  SettleRequest,
} from './limiter.ts';
import { costOf, MemoryLimiter } from './memory-limiter.ts';
import { type GiveBack, type GrantPlan, LocalGrants } from './redis-grants.ts';

export interface RedisLimiterOptions {
  /** `redis://…`; the limiter owns that connection and quits it on close. */
  url?: string;
  /**
   * A client to use instead (not closed by `close()`). Create it with `redisLimiterClientOptions()`
   * so a dead Redis answers at once rather than queueing commands.
   */
  client?: Redis;
  keyPrefix?: string;
  /** A command not answered within this falls back to local limits. */
  commandTimeoutMs?: number;
  /** A lease not renewed within this expires (an instance that crashed holding it). */
  leaseTtlMs?: number;
  /** This process renews its live leases this often (well under `leaseTtlMs`). */
  renewIntervalMs?: number;
  /** While degraded on a live connection, a PING this often tells when Redis answers again. */
  probeIntervalMs?: number;
  /** Reconnection attempts back off up to this delay and go on forever. */
  maxReconnectDelayMs?: number;
  /** Redis became unusable: calls are answered locally from now on (once per outage). */
  onFallback?: (error: Error) => void;
  /** Redis answers again: calls go back to it. */
  onRecover?: () => void;
  /** A settle or lease renewal failed (they are fire-and-forget). */
  onError?: (error: Error) => void;
  /** The local clock: used by the fallback limiter and for counters' expiry, never for admission. */
  now?: () => number;
  /**
   * Admit most requests from capacity taken ahead of need (`redis-grants.ts`), with no round trip
   * on their path. Default true; false makes every admission a Redis call.
   */
  localGrants?: boolean;
  /** Grants unused this long go back to Redis; debts are charged this often. */
  grantFlushMs?: number;
}

/**
 * Options for a client the limiter can rely on: no offline queue, no resends. Commands are timed
 * by the limiter itself (`answerWithin`), not by ioredis, whose timer fires even when the reply
 * has arrived but a busy event loop has not read it yet.
 */
export function redisLimiterClientOptions(commandTimeoutMs = 200, maxReconnectDelayMs = 1000) {
  return {
    enableOfflineQueue: false,
    // Commands issued in the same tick (many requests' admissions under load) go out in one write.
    enableAutoPipelining: true,
    // A command in flight when the connection drops fails at once, and is never resent: it has
    // been answered locally meanwhile.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times: number) => Math.min(times * 100, maxReconnectDelayMs),
    connectTimeout: Math.max(1000, commandTimeoutMs * 5),
    connectionName: 'keyport-limiter',
  };
}

/**
 * `ARGV` of a script is strings; TATs go back and forth as `%.17g` so that JS parses exactly the
 * double Lua computed (a Lua number in a reply would be truncated to an integer).
 * `redis.replicate_commands()` lets Redis < 5 replicate a script that reads TIME before writing.
 */
const PRELUDE = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local function num(x) return string.format('%.17g', x) end
-- A bucket holds "TAT step": its TAT and the ms per unit of the limit it was written under (a bare
-- TAT, as written before, reads as today's step). A changed limit keeps the units owed, not the
-- fraction of the limit (src/core/gcra.ts, rescaledTat).
local function readTat(key, step)
  local value = redis.call('GET', key)
  if not value then return now end
  local space = string.find(value, ' ', 1, true)
  local tat = tonumber(space and string.sub(value, 1, space - 1) or value) or now
  if tat <= now then return now end
  local written = space and tonumber(string.sub(value, space + 1)) or step
  if written ~= step and written > 0 then tat = now + (tat - now) / written * step end
  return tat
end
local function writeTat(key, tat, step)
  redis.call('SET', key, num(tat) .. ' ' .. num(step), 'PX', math.max(1, math.ceil(tat - now)))
end
`;

/**
 * Admits a request and grants capacity ahead of need (`redis-grants.ts`) in one atomic step.
 * KEYS: nb bucket keys, then slot keys. ARGV: nb, lease id, lease TTL, grant member prefix, then
 * (limit, period, cost, want, covered) per bucket and (limit, take, want) per slot: `cost` is what
 * this call charges the bucket for the request, `want` the units to grant beyond it (as many as
 * fit), `covered` 1 when a grant paid the request's cost here (or the call only asks ahead): such a
 * bucket, charged nothing, never refuses, where any other does when it is overdrawn;
 * `take` 1 leases the slot under the lease id, 0 leaves it to a member the instance lends, and
 * `want` members named prefix..1, prefix..2, … are added (as many as fit). A call with no cost and
 * no take only asks ahead. Returns {code, index, inFlight, now, TAT per bucket, units granted per
 * bucket, members granted per slot}: code 0 admitted (TATs after the charge), 1 refused by bucket
 * `index` (the longest wait), 2 refused by slot `index` with `inFlight` leases; when refused
 * nothing was written but expired leases, and nothing granted.
 * The GCRA arithmetic is src/core/gcra.ts's, operation for operation.
 */
const ADMIT = `${PRELUDE}
local nb = tonumber(ARGV[1])
local lease = ARGV[2]
local ttl = tonumber(ARGV[3])
local prefix = ARGV[4]
local ns = #KEYS - nb
local reply = {0, 0, 0, num(now)}
local fresh, units, steps = {}, {}, {}
local refused, longest = 0, -1
for i = 1, nb do
  local a = 5 * i
  local limit, period = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local cost, want = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local covered = cost == 0 and ARGV[a + 4] == '1'
  local step = period / limit
  steps[i] = step
  local tat = readTat(KEYS[i], step)
  reply[4 + i] = num(tat)
  local newTat = tat + cost * step
  local wait = newTat - period - now
  if cost > limit then wait = math.huge end
  -- A bucket charged nothing because a grant paid for the request (or an ask ahead) never
  -- refuses: an overdrawn one just grants nothing.
  if wait > 0 and not covered then
    if wait > longest then refused, longest = i, wait end
  else
    local grant = math.max(0, math.min(want, math.floor((now + period - newTat) / step + 1e-9)))
    units[i] = grant
    fresh[i] = newTat + grant * step
    if cost + grant == 0 then fresh[i] = nil end
  end
end
if refused > 0 then
  reply[1], reply[2] = 1, refused
  return reply
end
local s = 4 + 5 * nb
local members, takes = {}, {}
for j = 1, ns do
  local key = KEYS[nb + j]
  local limit, want = tonumber(ARGV[s + 3 * j - 2]), tonumber(ARGV[s + 3 * j])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now))
  local inFlight = redis.call('ZCARD', key)
  if ARGV[s + 3 * j - 1] == '1' then
    takes[j] = true
    if not redis.call('ZSCORE', key, lease) then
      if inFlight >= limit then
        reply[1], reply[2], reply[3] = 2, j, inFlight
        return reply
      end
      inFlight = inFlight + 1
    end
  end
  members[j] = math.max(0, math.min(want, limit - inFlight))
end
for i = 1, nb do
  if fresh[i] then
    writeTat(KEYS[i], fresh[i], steps[i])
    reply[4 + i] = num(fresh[i])
  end
  reply[4 + nb + i] = units[i]
end
for j = 1, ns do
  local key = KEYS[nb + j]
  if takes[j] then redis.call('ZADD', key, num(now + ttl), lease) end
  for k = 1, members[j] do redis.call('ZADD', key, num(now + ttl), prefix .. k) end
  if (takes[j] or members[j] > 0) and redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  reply[4 + 2 * nb + j] = members[j]
end
return reply
`;

/**
 * Moves TATs and releases leases: a request's token reconciliation and slots, and grants given
 * back. KEYS: nb bucket keys, then one slot key per lease to release. ARGV: nb, (limit, period,
 * diff) per bucket (diff in units, either way), then the lease id per slot key.
 */
const GIVE_BACK = `${PRELUDE}
local nb = tonumber(ARGV[1])
for i = 1, nb do
  local limit, period, diff = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local step = period / limit
  local tat = readTat(KEYS[i], step) + diff * step
  if tat > now then
    writeTat(KEYS[i], tat, step)
  else
    redis.call('DEL', KEYS[i])
  end
end
for j = nb + 1, #KEYS do redis.call('ZREM', KEYS[j], ARGV[2 * nb + j + 1]) end
return 1
`;

/** KEYS: slot keys. ARGV: lease TTL, then the lease id for each key. A lease already gone stays gone. */
const RENEW = `${PRELUDE}
local ttl = tonumber(ARGV[1])
local expiry = num(now + ttl)
local renewed = 0
for i = 1, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[i + 1]) then
    redis.call('ZADD', KEYS[i], expiry, ARGV[i + 1])
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
    renewed = renewed + 1
  end
end
return renewed
`;

/** KEYS: counters. ARGV: amounts. Adds only to counters that exist; nil where one does not. */
const ADD_COUNTERS = `
local values = {}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    values[i] = redis.call('INCRBYFLOAT', KEYS[i], ARGV[i])
  else
    values[i] = false
  end
end
return values
`;

type Arg = string | number;
/** What `defineCommand` adds (ioredis cannot type commands defined at run time). */
interface ScriptCommands {
  keyportAdmit(...args: Arg[]): Promise<AdmitReply>;
  keyportGiveBack(...args: Arg[]): Promise<unknown>;
  keyportRenew(...args: Arg[]): unknown;
  keyportAddCounters(...args: Arg[]): Promise<(string | null)[]>;
}
type AdmitReply = [code: number, index: number, inFlight: number, now: string, ...tats: string[]];

/**
 * With local grants, a budget counter Redis told this instance (read, or returned by an addition)
 * less than this long ago is read from that answer: a request under a hard budget makes no round
 * trip for it while its key is busy. What it misses is other instances' spend of the last moment,
 * the same order as the requests in flight that a budget already lets finish.
 */
const COUNTER_FRESH_MS = 250;
/** Past this many cached counters the cache starts over (a counter not read for long is cold). */
const COUNTER_CACHE_MAX = 10_000;

/** Deferred releases and debts kept while Redis is away, at most (per kind). */
const MAX_DEFERRED = 100_000;

/** Keys per renewal script call: bounded script runs, one pipeline. */
const RENEW_BATCH = 500;
const noop = () => {};

export class RedisLimiter implements Limiter {
  readonly name = 'redis' as const;
  private readonly client: Redis;
  private readonly scripts: ScriptCommands;
  private readonly ownsClient: boolean;
  private readonly local: MemoryLimiter;
  private readonly prefix: string;
  private readonly leaseTtlMs: number;
  private readonly probeIntervalMs: number;
  private readonly commandTimeoutMs: number;
  private readonly now: () => number;
  private readonly onFallback: (error: Error) => void;
  private readonly onRecover: () => void;
  private readonly onError: (error: Error) => void;
  /** Leases admitted by Redis and not settled yet: renewed until they are. */
  private readonly live = new Map<string, string[]>();
  /** Requests admitted locally (during an outage) that settle must reach locally too. */
  private readonly localAdmissions = new Set<string>();
  private readonly renewTimer: NodeJS.Timeout;
  private readonly grants: LocalGrants | undefined;
  private readonly grantTimer: NodeJS.Timeout | undefined;
  /** Names this instance's granted lease members apart from every other instance's. */
  private readonly instanceId = randomBytes(6).toString('base64url');
  private calls = 0;
  /** Budget counters as Redis last answered them (value, performance.now() then); with grants only. */
  private readonly counterCache = new Map<string, { value: number; at: number }>();
  /**
   * What could not reach Redis while it was away: leases to release and token debts, sent once it
   * answers again. Credits (units given back) are not kept: given to a Redis that restarted empty,
   * they would erase other instances' charges; they refill by themselves instead.
   */
  private deferred: GiveBack = { buckets: [], members: [] };
  /**
   * Budget spend counted while Redis was away, per counter: added to Redis's counters once it
   * answers (to those it still has; one it lost is seeded again from the usage records, which
   * hold that spend). Without it, a Redis that was only unreachable would never see the outage's
   * spend, and a hard budget would be overshot by it for the rest of its period.
   */
  private deferredSpend = new Map<string, CounterAdd>();
  /** Calls that may bring grants, in flight: close waits for them, so that those go back too. */
  private readonly granting = new Set<Promise<unknown>>();
  private probeTimer: NodeJS.Timeout | undefined;
  private isDegraded = false;
  private closed = false;
  private outages = 0;
  private localCalls = 0;

  constructor(options: RedisLimiterOptions) {
    const commandTimeoutMs = options.commandTimeoutMs ?? 200;
    if (options.client) {
      this.client = options.client;
      this.ownsClient = false;
    } else if (options.url) {
      this.client = new Redis(
        options.url,
        redisLimiterClientOptions(commandTimeoutMs, options.maxReconnectDelayMs ?? 1000),
      );
      this.ownsClient = true;
    } else {
      throw new Error('RedisLimiter needs a url or a client');
    }
    this.prefix = options.keyPrefix ?? 'keyport:';
    this.leaseTtlMs = options.leaseTtlMs ?? 30_000;
    this.probeIntervalMs = options.probeIntervalMs ?? 1000;
    this.commandTimeoutMs = commandTimeoutMs;
    this.now = options.now ?? Date.now;
    this.onFallback = options.onFallback ?? noop;
    this.onRecover = options.onRecover ?? noop;
    this.onError = options.onError ?? noop;
    this.local = new MemoryLimiter({ now: this.now });
    this.client.defineCommand('keyportAdmit', { lua: ADMIT });
    this.client.defineCommand('keyportGiveBack', { lua: GIVE_BACK });
    this.client.defineCommand('keyportRenew', { lua: RENEW });
    this.client.defineCommand('keyportAddCounters', { lua: ADD_COUNTERS });
    this.scripts = this.client as unknown as ScriptCommands;
    // Without an 'error' listener a connection error would crash the process.
    this.client.on('error', this.onConnectionError);
    this.client.on('close', this.onConnectionClose);
    this.client.on('ready', this.recover);
    this.renewTimer = setInterval(this.renewLeases, options.renewIntervalMs ?? 10_000);
    this.renewTimer.unref();
    if (options.localGrants ?? true) {
      this.grants = new LocalGrants(this.now);
      this.grantTimer = setInterval(this.flushGrants, options.grantFlushMs ?? 250);
      this.grantTimer.unref();
    }
  }

  /** True while calls are answered by local limits. */
  get degraded(): boolean {
    return this.isDegraded;
  }

  /** Outages so far (each reported once through `onFallback`). */
  get fallbacks(): number {
    return this.outages;
  }

  /** Calls answered by local limits so far. */
  get fallbackCalls(): number {
    return this.localCalls;
  }

  /** Admissions decided from local grants, with no round trip, so far. */
  get grantedAdmissions(): number {
    return this.grants?.localAdmissions ?? 0;
  }

  /**
   * Resolves true once connected, false if Redis has not answered within `timeoutMs`: boot may
   * await this without depending on Redis (calls are answered locally until it is ready).
   */
  ready(timeoutMs = 2000): Promise<boolean> {
    if (this.client.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        this.client.off('end', onEnd);
        resolve(ok);
      };
      const onReady = () => done(true);
      const onEnd = () => done(false);
      const timer = setTimeout(onEnd, timeoutMs);
      this.client.once('ready', onReady);
      this.client.once('end', onEnd);
    });
  }

  admit(request: AdmitRequest): MaybePromise<AdmitResult> {
    if (request.buckets.length === 0 && request.slots.length === 0) return { allowed: true, states: [] };
    if (!this.redisUsable()) return this.admitLocally(request);
    if (this.grants === undefined) return this.tracked(this.admitInRedis(request, undefined));
    const states = this.grants.tryAdmit(request);
    if (states === undefined) return this.tracked(this.admitInRedis(request, this.grants.reserve(request)));
    const ahead = this.grants.askAhead(request);
    if (ahead) this.askAhead(request, ahead);
    return { allowed: true, states };
  }

  /** Never throws nor rejects: a failure goes to `onError` (and an outage to `onFallback`). */
  settle(request: SettleRequest): MaybePromise<void> {
    try {
      if (this.localAdmissions.delete(request.leaseId)) return this.local.settle(request);
      this.live.delete(request.leaseId);
      const diff = request.actualTokens - request.estimatedTokens;
      // What grants here hold or lent is settled here; the rest is Redis's.
      const rest = this.grants?.settle(request) ?? {
        buckets: diff === 0 ? [] : request.buckets.filter((b) => b.unit === 'tokens'),
        slots: request.slots,
        released: [],
      };
      if (rest.buckets.length === 0 && rest.slots.length === 0 && rest.released.length === 0) return;
      const members = rest.slots.map((slot) => ({ key: slot.key, member: request.leaseId }));
      members.push(...rest.released);
      const back = { buckets: rest.buckets.map((bucket) => ({ bucket, diff })), members };
      // Admitted by Redis but Redis is away: released and charged once it answers again.
      if (this.isDegraded || this.client.status !== 'ready') return this.defer(back);
      return this.giveBack(back);
    } catch (error) {
      this.onError(asError(error));
    }
  }

  readCounters(keys: readonly string[]): MaybePromise<(number | undefined)[]> {
    if (keys.length === 0) return [];
    if (!this.redisUsable()) {
      this.localCalls++;
      return this.local.readCounters(keys);
    }
    return this.cachedCounters(keys) ?? this.readCountersInRedis(keys);
  }

  /** Every counter's value from a recent answer of Redis's, or undefined (then Redis is asked). */
  private cachedCounters(keys: readonly string[]): number[] | undefined {
    if (this.grants === undefined) return undefined;
    const now = performance.now();
    const values = new Array<number>(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const cached = this.counterCache.get(keys[i]!);
      if (cached === undefined || now - cached.at > COUNTER_FRESH_MS) return undefined;
      values[i] = cached.value;
    }
    return values;
  }

  /** `at`: when the command was sent (Redis's answer is at least as old as that, not its arrival). */
  private cacheCounters(keys: readonly string[], values: readonly (number | undefined)[], at: number): void {
    if (this.grants === undefined || this.isDegraded) return;
    if (this.counterCache.size > COUNTER_CACHE_MAX) this.counterCache.clear();
    keys.forEach((key, i) => {
      const value = values[i];
      const cached = this.counterCache.get(key);
      if (cached !== undefined && cached.at > at) return; // a later answer is there already
      if (value === undefined) this.counterCache.delete(key);
      else this.counterCache.set(key, { value, at });
    });
  }

  seedCounter(key: string, value: number, expiresAt: number): MaybePromise<boolean> {
    if (!this.redisUsable()) {
      this.localCalls++;
      return this.local.seedCounter(key, value, expiresAt);
    }
    return this.seedCounterInRedis(key, value, expiresAt);
  }

  addToCounters(adds: readonly CounterAdd[]): MaybePromise<(number | undefined)[]> {
    if (adds.length === 0) return [];
    if (!this.redisUsable()) {
      this.deferSpend(adds);
      this.localCalls++;
      return this.local.addToCounters(adds);
    }
    return this.addToCountersInRedis(adds);
  }

  private deferSpend(adds: readonly CounterAdd[]): void {
    for (const add of adds) {
      const kept = this.deferredSpend.get(add.key);
      if (kept) kept.amount += add.amount;
      else if (this.deferredSpend.size < MAX_DEFERRED) this.deferredSpend.set(add.key, { ...add });
    }
  }

  /** Stops renewing leases (they expire in Redis) and quits the connection if the limiter opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.renewTimer);
    clearInterval(this.probeTimer);
    clearInterval(this.grantTimer);
    // What this instance holds goes back, so that the others may have it now, not at expiry.
    // Calls in flight may start late releases meanwhile: wait for those too, within bounds.
    const deadline = performance.now() + this.commandTimeoutMs * 4;
    while (this.granting.size > 0 && performance.now() < deadline) {
      await Promise.race([Promise.allSettled([...this.granting]), sleepUnref(deadline - performance.now())]);
    }
    if (this.grants && !this.isDegraded && this.client.status === 'ready')
      await this.giveBack(this.grants.takeAll());
    this.client.off('close', this.onConnectionClose);
    this.client.off('ready', this.recover);
    // An owned client keeps its error listener while quitting; a borrowed one has its owner's.
    if (!this.ownsClient) this.client.off('error', this.onConnectionError);
    if (this.ownsClient) {
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect();
      }
    }
    await this.local.close();
  }

  /**
   * One script call admits what grants do not cover of the request (all of it without grants)
   * and takes the grants the plan asks for.
   */
  private async admitInRedis(request: AdmitRequest, plan: GrantPlan | undefined): Promise<AdmitResult> {
    const { slots, leaseId } = request;
    const memberPrefix = `${this.instanceId}:${++this.calls}:`;
    const reply = this.scripts.keyportAdmit(...this.admitArgs(request, plan, memberPrefix, false));
    let decoded: DecodedAdmit;
    try {
      decoded = decodeAdmit(request, await this.answerWithin(reply), memberPrefix);
    } catch (error) {
      if (error instanceof RedisTimeoutError) this.releaseLate(reply, request, plan, memberPrefix, true);
      if (plan) this.grants?.unreserve(request, plan);
      this.fallBack(asError(error));
      return this.admitLocally(request);
    }
    if (decoded.result.allowed) {
      if (plan && this.grants) decoded.result.states = this.grants.granted(request, plan, decoded);
      const taken: string[] = [];
      for (let j = 0; j < slots.length; j++) {
        if (plan?.lent[j] === undefined) taken.push(`${this.prefix}cc:${slots[j]!.key}`);
      }
      if (taken.length > 0) this.live.set(leaseId, taken);
    } else if (plan) {
      this.grants?.unreserve(request, plan);
    }
    return decoded.result;
  }

  /**
   * The ADMIT script's keys and arguments: what grants do not cover of the request's cost and
   * leases, and what the plan asks ahead; an ask only (`askOnly`) charges and leases nothing.
   */
  private admitArgs(
    request: AdmitRequest,
    plan: GrantPlan | undefined,
    memberPrefix: string,
    askOnly: boolean,
  ): Arg[] {
    const { buckets, slots, tokens } = request;
    const args: Arg[] = [buckets.length + slots.length];
    for (const bucket of buckets) args.push(`${this.prefix}rl:${bucket.key}`);
    for (const slot of slots) args.push(`${this.prefix}cc:${slot.key}`);
    args.push(buckets.length, askOnly ? '' : request.leaseId, this.leaseTtlMs, memberPrefix);
    for (let i = 0; i < buckets.length; i++) {
      const bucket = buckets[i]!;
      const use = plan?.use[i] ?? 0;
      const cost = askOnly ? 0 : costOf(bucket, tokens) - use;
      args.push(bucket.limit, bucket.periodMs, cost, plan?.want[i] ?? 0, askOnly || use > 0 ? 1 : 0);
    }
    for (let j = 0; j < slots.length; j++) {
      const take = askOnly || plan?.lent[j] !== undefined ? 0 : 1;
      args.push(slots[j]!.limit, take, plan?.wantSlots[j] ?? 0);
    }
    return args;
  }

  /** Takes grants ahead of need, off the request's path (it was admitted from grants already). */
  private askAhead(request: AdmitRequest, plan: GrantPlan): void {
    const memberPrefix = `${this.instanceId}:${++this.calls}:`;
    const ask = { ...request, tokens: 0 };
    const reply = this.scripts.keyportAdmit(...this.admitArgs(request, plan, memberPrefix, true));
    const asked = this.answerWithin(reply).then(
      (reply) => {
        if (this.grants === undefined) return;
        try {
          const decoded = decodeAdmit(ask, reply, memberPrefix);
          if (decoded.result.allowed) this.grants.granted(ask, plan, decoded);
          else this.grants.unreserve(ask, plan);
        } catch (error) {
          this.grants.unreserve(ask, plan);
          this.onError(asError(error));
        }
      },
      (error: unknown) => {
        if (error instanceof RedisTimeoutError) this.releaseLate(reply, ask, plan, memberPrefix, false);
        this.grants?.unreserve(ask, plan);
        this.onError(asError(error));
        this.fallBack(asError(error));
      },
    );
    this.tracked(asked);
  }

  private tracked<T>(call: Promise<T>): Promise<T> {
    this.granting.add(call);
    const done = () => this.granting.delete(call);
    call.then(done, done);
    return call;
  }

  /**
   * Rejects with a RedisTimeoutError when Redis has not answered within the command timeout, as
   * the event loop saw it. A timer that fires late means the gateway, not Redis, was busy — the
   * command may not even have been written yet (auto-pipelining sends it on the next turn) — so
   * Redis gets one fresh timeout from then. On time, the check still waits one turn (setImmediate
   * runs after the poll phase), so a reply that arrived but sat unread still counts. Only a slow
   * Redis, not a busy gateway, makes the limiter fall back to local limits.
   */
  private answerWithin<T>(reply: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout;
      const giveUp = () =>
        setImmediate(() => {
          if (settled) return;
          settled = true;
          reject(new RedisTimeoutError(this.commandTimeoutMs));
        });
      const due = performance.now() + this.commandTimeoutMs;
      timer = setTimeout(() => {
        const late = performance.now() - due;
        if (late > this.commandTimeoutMs / 2) timer = setTimeout(giveUp, this.commandTimeoutMs);
        else giveUp();
      }, this.commandTimeoutMs);
      reply.then(
        (value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /**
   * An admission given up on may still have run in Redis: if it did admit, its leases would hold
   * slots for a request that is being served locally, and its grants would be held by nobody,
   * so both are given back once the reply comes.
   */
  private releaseLate(
    reply: Promise<AdmitReply>,
    request: AdmitRequest,
    plan: GrantPlan | undefined,
    memberPrefix: string,
    leased: boolean,
  ): void {
    const released = reply.then((late) => {
      if (Number(late[0]) !== 0) return;
      try {
        const { grantedUnits, grantedMembers } = decodeAdmit(request, late, memberPrefix);
        const back: GiveBack = { buckets: [], members: [] };
        request.buckets.forEach((bucket, i) => {
          if (grantedUnits[i]! > 0) back.buckets.push({ bucket, diff: -grantedUnits[i]! });
        });
        request.slots.forEach((slot, j) => {
          if (leased && plan?.lent[j] === undefined) {
            back.members.push({ key: slot.key, member: request.leaseId });
          }
          for (const member of grantedMembers[j]!) back.members.push({ key: slot.key, member });
        });
        // Redis has just answered on this connection: give back at once, even if not recovered yet.
        if (this.client.status === 'ready') return this.giveBack(back);
        this.defer(back);
      } catch (error) {
        this.onError(asError(error));
      }
    }, noop);
    // Close waits for it, but not longer than a late reply can reasonably take.
    this.tracked(Promise.race([released, sleepUnref(this.commandTimeoutMs * 2)]));
  }

  /** Keeps what must reach Redis for when it answers again (bounded: the oldest go first). */
  private defer(back: GiveBack): void {
    for (const entry of back.buckets) if (entry.diff > 0) this.deferred.buckets.push(entry);
    for (const entry of back.members) this.deferred.members.push(entry);
    if (this.deferred.buckets.length > MAX_DEFERRED)
      this.deferred.buckets.splice(0, this.deferred.buckets.length - MAX_DEFERRED);
    if (this.deferred.members.length > MAX_DEFERRED)
      this.deferred.members.splice(0, this.deferred.members.length - MAX_DEFERRED);
  }

  private admitLocally(request: AdmitRequest): AdmitResult {
    this.localCalls++;
    const result = this.local.admit(request);
    if (result.allowed && (request.slots.length > 0 || hasTokenBucket(request))) {
      this.localAdmissions.add(request.leaseId);
    }
    return result;
  }

  /**
   * Token reconciliations, released leases and grants given back, in script calls of bounded size,
   * each on its own: a batch that failed is sent again (once Redis answers) only when the error
   * proves Redis never ran it. One that may have run (a timeout, a connection lost before its
   * reply, a script error after some writes) is not: sent twice, its debts would count twice.
   */
  private async giveBack(back: GiveBack): Promise<void> {
    const calls: Promise<void>[] = [];
    for (let b = 0, m = 0; b < back.buckets.length || m < back.members.length; ) {
      const buckets = back.buckets.slice(b, b + RENEW_BATCH);
      const members = back.members.slice(m, m + RENEW_BATCH - buckets.length);
      b += buckets.length;
      m += members.length;
      const args: Arg[] = [buckets.length + members.length];
      for (const { bucket } of buckets) args.push(`${this.prefix}rl:${bucket.key}`);
      for (const { key } of members) args.push(`${this.prefix}cc:${key}`);
      args.push(buckets.length);
      for (const { bucket, diff } of buckets) args.push(bucket.limit, bucket.periodMs, diff);
      for (const { member } of members) args.push(member);
      calls.push(
        this.answerWithin(this.scripts.keyportGiveBack(...args)).then(noop, (error: unknown) => {
          this.onError(asError(error));
          this.fallBack(asError(error));
          if (neverRan(error)) this.defer({ buckets, members });
        }),
      );
    }
    await Promise.all(calls);
  }

  /** Every flush interval: idle grants go back, debts are charged. */
  private readonly flushGrants = (): void => {
    if (this.grants === undefined || this.isDegraded || this.client.status !== 'ready') return;
    const back = this.grants.flush();
    if (back.buckets.length > 0 || back.members.length > 0) this.giveBack(back);
  };

  private async readCountersInRedis(keys: readonly string[]): Promise<(number | undefined)[]> {
    try {
      const sentAt = performance.now();
      const values = (
        await this.answerWithin(this.client.mget(keys.map((key) => `${this.prefix}ct:${key}`)))
      ).map(toNumber);
      this.cacheCounters(keys, values, sentAt);
      return values;
    } catch (error) {
      this.fallBack(asError(error));
      this.localCalls++;
      return this.local.readCounters(keys);
    }
  }

  private async seedCounterInRedis(key: string, value: number, expiresAt: number): Promise<boolean> {
    const ttl = Math.ceil(expiresAt - this.now());
    if (ttl <= 0) return false;
    this.counterCache.delete(key);
    try {
      const reply = await this.answerWithin(
        this.client.set(`${this.prefix}ct:${key}`, String(value), 'PX', ttl, 'NX'),
      );
      return reply === 'OK';
    } catch (error) {
      this.fallBack(asError(error));
      this.localCalls++;
      return this.local.seedCounter(key, value, expiresAt);
    }
  }

  /** ADD_COUNTERS's arguments: the counters' keys, then the amounts. */
  private counterAddArgs(adds: readonly CounterAdd[]): Arg[] {
    const args: Arg[] = [adds.length];
    for (const add of adds) args.push(`${this.prefix}ct:${add.key}`);
    for (const add of adds) args.push(add.amount);
    return args;
  }

  private async addToCountersInRedis(adds: readonly CounterAdd[]): Promise<(number | undefined)[]> {
    try {
      const sentAt = performance.now();
      const values = (
        await this.answerWithin(this.scripts.keyportAddCounters(...this.counterAddArgs(adds)))
      ).map(toNumber);
      this.cacheCounters(
        adds.map((add) => add.key),
        values,
        sentAt,
      );
      return values;
    } catch (error) {
      // One that may have run (a timeout) is not sent again: it would count twice.
      if (neverRan(error)) this.deferSpend(adds);
      this.fallBack(asError(error));
      this.localCalls++;
      return this.local.addToCounters(adds);
    }
  }

  /** Is Redis to be asked? A connection that is not ready starts an outage now. */
  private redisUsable(): boolean {
    if (this.isDegraded) return false;
    if (this.client.status === 'ready') return true;
    this.fallBack(new Error(`Redis is not connected (${this.client.status})`));
    return false;
  }

  private fallBack(error: Error): void {
    if (this.isDegraded || this.closed) return;
    this.isDegraded = true;
    this.outages++;
    // Grants are Redis's state seen from here: unknowable during an outage, so forgotten.
    this.grants?.drop();
    this.counterCache.clear();
    this.callSafely(this.onFallback, error);
    // A failure on a live connection brings no 'ready' event: probe until Redis answers.
    this.probeTimer = setInterval(this.probe, this.probeIntervalMs);
    this.probeTimer.unref();
  }

  private readonly probe = (): void => {
    if (this.client.status === 'ready') this.answerWithin(this.client.ping()).then(this.recover, noop);
  };

  private readonly recover = (): void => {
    if (!this.isDegraded || this.closed) return;
    this.isDegraded = false;
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.callSafely(this.onRecover, undefined);
    // Redis may be back empty: credits queued while it was away would erase others' charges.
    this.grants?.forgetCredits();
    const deferred = this.deferred;
    this.deferred = { buckets: [], members: [] };
    if (deferred.buckets.length > 0 || deferred.members.length > 0) this.giveBack(deferred);
    const spend = [...this.deferredSpend.values()];
    this.deferredSpend = new Map();
    if (spend.length > 0) this.sendDeferredSpend(spend);
  };

  /** The outage's spend to Redis; the local counters have it already. */
  private sendDeferredSpend(spend: CounterAdd[]): void {
    const reply = this.scripts.keyportAddCounters(...this.counterAddArgs(spend));
    this.answerWithin(reply).then(noop, (error: unknown) => {
      if (neverRan(error)) this.deferSpend(spend);
      this.fallBack(asError(error));
    });
  }

  private readonly onConnectionError = (error: Error): void => {
    // Errors are reported once per outage; one while connected (rare) also starts an outage.
    this.fallBack(error);
  };

  private readonly onConnectionClose = (): void => {
    this.fallBack(new Error('Redis connection closed'));
  };

  /** One pipeline renews every live lease; a lease settled meanwhile is not resurrected. */
  private readonly renewLeases = (): void => {
    if (this.isDegraded || this.client.status !== 'ready') return;
    const pipeline = this.client.pipeline();
    const batcher = pipeline as unknown as ScriptCommands;
    let keys: string[] = [];
    let ids: string[] = [];
    for (const [leaseId, slotKeys] of this.live) {
      for (const key of slotKeys) {
        keys.push(key);
        ids.push(leaseId);
        if (keys.length === RENEW_BATCH) {
          batcher.keyportRenew(keys.length, ...keys, this.leaseTtlMs, ...ids);
          keys = [];
          ids = [];
        }
      }
    }
    for (const [slotKey, member] of this.grants?.heldMembers() ?? []) {
      keys.push(`${this.prefix}cc:${slotKey}`);
      ids.push(member);
      if (keys.length === RENEW_BATCH) {
        batcher.keyportRenew(keys.length, ...keys, this.leaseTtlMs, ...ids);
        keys = [];
        ids = [];
      }
    }
    if (keys.length > 0) batcher.keyportRenew(keys.length, ...keys, this.leaseTtlMs, ...ids);
    pipeline.exec().then((results) => {
      for (const [error] of results ?? []) if (error) this.onError(error);
    }, this.reportError);
  };

  private readonly reportError = (error: unknown): void => {
    this.onError(asError(error));
  };

  private callSafely<T>(callback: (value: T) => void, value: T): void {
    try {
      callback(value);
    } catch (error) {
      this.onError(asError(error));
    }
  }
}

export class RedisTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`Redis did not answer within ${timeoutMs} ms (command timed out)`);
    this.name = 'RedisTimeoutError';
  }
}

interface DecodedAdmit {
  result: AdmitResult;
  tats: number[];
  redisNow: number;
  grantedUnits: number[];
  grantedMembers: string[][];
}

function decodeAdmit(request: AdmitRequest, reply: AdmitReply, memberPrefix: string): DecodedAdmit {
  const { buckets, slots, tokens } = request;
  const nb = buckets.length;
  const code = Number(reply[0]);
  const index = Number(reply[1]) - 1;
  const now = Number(reply[3]);
  const states: BucketState[] = new Array(nb);
  const tats = new Array<number>(nb);
  const grantedUnits = new Array<number>(nb).fill(0);
  const grantedMembers: string[][] = slots.map(() => []);
  for (let i = 0; i < nb; i++) {
    const bucket = buckets[i]!;
    tats[i] = Number(reply[4 + i]);
    if (Number.isNaN(tats[i])) throw new Error(`Unexpected reply from the admit script: ${String(reply)}`);
    const { remaining, resetMs } = gcraPeek(bucket, tats[i], now);
    states[i] = { bucket, remaining, resetMs };
  }
  const decoded = (result: AdmitResult): DecodedAdmit => ({
    result,
    tats,
    redisNow: now,
    grantedUnits,
    grantedMembers,
  });
  if (code === 0) {
    for (let i = 0; i < nb; i++) grantedUnits[i] = Number(reply[4 + nb + i] ?? 0);
    for (let j = 0; j < slots.length; j++) {
      const count = Number(reply[4 + 2 * nb + j] ?? 0);
      for (let k = 1; k <= count; k++) grantedMembers[j]!.push(`${memberPrefix}${k}`);
    }
    return decoded({ allowed: true, states });
  }
  if (code === 1) {
    const bucket = buckets[index]!;
    // The wait Lua computed, recomputed from the same TAT and time (and Infinity for cost > limit).
    const { retryAfterMs } = gcraAdmit(bucket, tats[index], now, costOf(bucket, tokens));
    return decoded({ allowed: false, reason: 'rate', bucket, states, retryAfterMs });
  }
  return decoded({
    allowed: false,
    reason: 'concurrency',
    slot: slots[index]!,
    inFlight: Number(reply[2]),
    states,
  });
}

function hasTokenBucket(request: { buckets: AdmitRequest['buckets'] }): boolean {
  for (const bucket of request.buckets) if (bucket.unit === 'tokens') return true;
  return false;
}

/**
 * Errors that prove a command was never run: not written (no connection, and no offline queue),
 * or refused by Redis before a script starts. Deferred give-backs are debts and releases, whose
 * first write would fail the same way, so nothing of theirs was written either.
 */
function neverRan(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    /Stream isn't writeable/.test(error.message) ||
    /^(OOM|READONLY|BUSY|LOADING|MASTERDOWN|CLUSTERDOWN|NOREPLICAS)\b/.test(error.message)
  );
}

const sleepUnref = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

const toNumber = (value: string | null): number | undefined => (value === null ? undefined : Number(value));

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));
