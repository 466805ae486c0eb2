/**
 * Local grants: capacity a gateway instance takes from the shared Redis limits ahead of need, so
 * that most admissions are decided in-process, with no round trip on the request's path.
 *
 * A grant of a rate bucket is `units` already charged to the bucket in Redis (its TAT moved by
 * them) and not spent here yet; a grant of a concurrency slot is lease members already counted in
 * Redis's lease set and not lent to a request yet. Spending a grant therefore never admits more
 * than the shared limit: the units were taken out of it atomically, by the same admission script
 * that admits requests. What a grant costs is the opposite error: while this instance holds
 * units, another instance can be refused them. So a grant is at most `GRANT_SHARE` of its limit,
 * it grows only while demand outruns it, and units held idle for a whole flush interval go back
 * to Redis (so do all of them on close). A limit too small for a useful grant (fewer than
 * `MIN_GRANT_COSTS` requests' worth in its share) is never granted: every admission under it is
 * exact, in Redis, as it would be without grants.
 *
 * Tokens reconcile against the grant: a request that used fewer tokens than estimated gives the
 * difference to the grant, one that used more takes it, possibly into debt; a debt is charged to
 * Redis at the next flush. Headers of a locally admitted request show Redis's state as of this
 * instance's last call plus what it holds: approximate by what other instances admitted since.
 *
 * Pure bookkeeping: no Redis, no timers. `redis-limiter.ts` sends what it plans and applies what
 * Redis answers.
 */
import { gcraPeek } from '../core/gcra.ts';
import type { AdmitRequest, BucketState, ConcurrencySlot, RateBucket, SettleRequest } from './limiter.ts';
import { costOf } from './memory-limiter.ts';

/** The most of a limit one instance holds ahead of need. */
export const GRANT_SHARE = 1 / 64;
/** A bucket is granted only if its share holds this many requests' cost; a slot, this many leases. */
const MIN_GRANT_COSTS = 4;
/** A grant asked for again within this of the last one doubles: demand outruns it. */
const GROW_WITHIN_MS = 500;

export interface BucketGrant {
  bucket: RateBucket;
  /** Charged in Redis, not spent here; negative: a debt not charged yet. */
  units: number;
  /** What the grant aims to hold: doubles while demand outruns it, at most the share. */
  size: number;
  /** Redis's TAT after this instance's last call, and Redis's clock minus ours then. */
  tat: number;
  skew: number;
  askedAt: number;
  asking: boolean;
  used: boolean;
}

export interface SlotGrant {
  slot: ConcurrencySlot;
  /** Members held in Redis's lease set and not lent to a request. */
  free: string[];
  lent: number;
  size: number;
  askedAt: number;
  asking: boolean;
  used: boolean;
}

/** A member a slot grant lent a request: it goes back to that grant, or to Redis if it is gone. */
export interface Lent {
  grant: SlotGrant;
  member: string;
}

/**
 * What a call to Redis is to do beside admitting the rest of a request, and which grant objects
 * it refers to: a grant flushed or dropped while the call was out is not the one under its key
 * any more, and what the call took from it or was granted for it goes back to Redis instead.
 */
export interface GrantPlan {
  bucketGrants: (BucketGrant | undefined)[];
  /** Per bucket: units the grant covers (Redis charges the rest of the cost) and units asked ahead. */
  use: number[];
  want: number[];
  slotGrants: (SlotGrant | undefined)[];
  /** Per slot: the member a grant lends the request (undefined: Redis leases one), and members asked ahead. */
  lent: (Lent | undefined)[];
  wantSlots: number[];
}

/** What Redis answered a call that admitted (or only asked ahead). */
export interface GrantReply {
  tats: readonly number[];
  redisNow: number;
  grantedUnits: readonly number[];
  grantedMembers: readonly string[][];
}

export interface GiveBack {
  buckets: { bucket: RateBucket; diff: number }[];
  members: { key: string; member: string }[];
}

/** What Redis must still do when a request ends. */
export interface SettleRest {
  /** Token buckets no grant here holds: reconciled in Redis. */
  buckets: RateBucket[];
  /** Slots Redis leased under the request's lease id. */
  slots: ConcurrencySlot[];
  /** Members lent by a grant that is gone (Redis went away meanwhile): released in Redis. */
  released: { key: string; member: string }[];
}

export class LocalGrants {
  private readonly buckets = new Map<string, BucketGrant>();
  private readonly slots = new Map<string, SlotGrant>();
  /** Members lent to requests in flight, by lease id, then slot key. Kept across `drop()`. */
  private readonly lentTo = new Map<string, Map<string, Lent>>();
  /** Charged or granted for a grant no longer here: given back at the next flush. */
  private orphans: GiveBack = { buckets: [], members: [] };

  constructor(private readonly now: () => number) {}

  /** Admissions decided here so far (for metrics and tests). */
  localAdmissions = 0;

  /**
   * The states of an admission decided by grants alone, or undefined when they do not cover
   * every bucket and slot of the request (then nothing was taken).
   */
  tryAdmit(request: AdmitRequest): BucketState[] | undefined {
    const { buckets, slots, tokens } = request;
    for (let i = 0; i < buckets.length; i++) {
      const grant = this.buckets.get(buckets[i]!.key);
      if (grant === undefined || !sameLimit(grant.bucket, buckets[i]!)) return undefined;
      const cost = costOf(buckets[i]!, tokens);
      // Nothing prepaid (a request of no tokens on an empty or overdrawn grant): Redis decides.
      if (grant.units < cost || grant.units <= 0) return undefined;
    }
    for (let j = 0; j < slots.length; j++) {
      const grant = this.slots.get(slots[j]!.key);
      if (grant === undefined || grant.free.length === 0 || grant.slot.limit !== slots[j]!.limit)
        return undefined;
    }
    const now = this.now();
    const states: BucketState[] = new Array(buckets.length);
    for (let i = 0; i < buckets.length; i++) {
      const grant = this.buckets.get(buckets[i]!.key)!;
      grant.units -= costOf(buckets[i]!, tokens);
      grant.used = true;
      states[i] = stateOf(grant, now);
    }
    if (slots.length > 0) {
      const lent = new Map<string, Lent>();
      for (const slot of slots) {
        const grant = this.slots.get(slot.key)!;
        lent.set(slot.key, { grant, member: grant.free.pop()! });
        grant.lent++;
        grant.used = true;
      }
      this.lentTo.set(request.leaseId, lent);
    }
    this.localAdmissions++;
    return states;
  }

  /**
   * For a request Redis must admit: takes what grants cover of it (given back by `unreserve` if
   * Redis refuses) and plans what to ask ahead. Asks only where no ask is in flight already.
   */
  reserve(request: AdmitRequest): GrantPlan {
    return this.plan(request, true);
  }

  /** Asks ahead for a request's buckets and slots that run low, or undefined when none does. */
  askAhead(request: AdmitRequest): GrantPlan | undefined {
    const plan = this.plan(request, false);
    for (const want of plan.want) if (want > 0) return plan;
    for (const want of plan.wantSlots) if (want > 0) return plan;
    return undefined;
  }

  /**
   * Redis admitted (or answered an ask ahead): grants take what it granted. Returns the buckets'
   * states as headers show them: Redis's TATs, plus what this instance holds.
   */
  granted(request: AdmitRequest, plan: GrantPlan, reply: GrantReply): BucketState[] {
    const now = this.now();
    const { buckets, slots } = request;
    const states: BucketState[] = new Array(buckets.length);
    for (let i = 0; i < buckets.length; i++) {
      const bucket = buckets[i]!;
      const grant = plan.bucketGrants[i];
      const units = reply.grantedUnits[i] ?? 0;
      if (grant === undefined || this.buckets.get(bucket.key) !== grant) {
        if (units > 0) this.orphans.buckets.push({ bucket, diff: -units });
        states[i] = { bucket, ...gcraPeek(bucket, reply.tats[i], reply.redisNow) };
        continue;
      }
      if (plan.want[i]! > 0) grant.asking = false;
      grant.units += units;
      grant.tat = reply.tats[i]!;
      grant.skew = reply.redisNow - now;
      states[i] = stateOf(grant, now);
    }
    let lent: Map<string, Lent> | undefined;
    for (let j = 0; j < slots.length; j++) {
      const slot = slots[j]!;
      const grant = plan.slotGrants[j];
      const members = reply.grantedMembers[j] ?? [];
      if (grant !== undefined && this.slots.get(slot.key) === grant) {
        if (plan.wantSlots[j]! > 0) grant.asking = false;
        grant.free.push(...members);
      } else {
        for (const member of members) this.orphans.members.push({ key: slot.key, member });
      }
      const lentMember = plan.lent[j];
      if (lentMember !== undefined) {
        lent ??= new Map();
        lent.set(slot.key, lentMember);
      }
    }
    if (lent) this.lentTo.set(request.leaseId, lent);
    return states;
  }

  /** Redis refused, or could not be asked: what the plan took goes back, its asks are off. */
  unreserve(request: AdmitRequest, plan: GrantPlan): void {
    const { buckets, slots } = request;
    for (let i = 0; i < buckets.length; i++) {
      const grant = plan.bucketGrants[i];
      if (grant === undefined) continue;
      if (this.buckets.get(buckets[i]!.key) === grant) {
        grant.units += plan.use[i]!;
        if (plan.want[i]! > 0) grant.asking = false;
      } else if (plan.use[i]! > 0) {
        this.orphans.buckets.push({ bucket: grant.bucket, diff: -plan.use[i]! });
      }
    }
    for (let j = 0; j < slots.length; j++) {
      const key = slots[j]!.key;
      const lent = plan.lent[j];
      if (lent !== undefined) this.giveBackLent(key, lent);
      const grant = plan.slotGrants[j];
      if (grant !== undefined && this.slots.get(key) === grant && plan.wantSlots[j]! > 0)
        grant.asking = false;
    }
  }

  /**
   * After the response: tokens reconcile against the grants that hold the buckets, lent members
   * go back to their grants. Returns what Redis must still do.
   */
  settle(request: SettleRequest): SettleRest {
    const diff = request.actualTokens - request.estimatedTokens;
    const rest: SettleRest = { buckets: [], slots: [], released: [] };
    if (diff !== 0) {
      for (const bucket of request.buckets) {
        if (bucket.unit !== 'tokens') continue;
        const grant = this.buckets.get(bucket.key);
        if (grant && sameLimit(grant.bucket, bucket)) {
          grant.units -= diff;
          grant.used = true;
        } else {
          rest.buckets.push(bucket);
        }
      }
    }
    const lent = this.lentTo.get(request.leaseId);
    if (lent === undefined) {
      rest.slots = request.slots as ConcurrencySlot[];
      return rest;
    }
    this.lentTo.delete(request.leaseId);
    for (const slot of request.slots) {
      const entry = lent.get(slot.key);
      if (entry === undefined) rest.slots.push(slot);
      else if (this.slots.get(slot.key) === entry.grant) this.giveBackLent(slot.key, entry);
      else rest.released.push({ key: slot.key, member: entry.member });
    }
    return rest;
  }

  /**
   * Every flush interval: grants unused since the last flush go back whole; debts are charged;
   * grants holding more than they aim to (token credits, slots freed) give the excess back.
   */
  flush(): GiveBack {
    const back = this.orphans;
    this.orphans = { buckets: [], members: [] };
    for (const [key, grant] of this.buckets) {
      if (!grant.used && !grant.asking) {
        if (grant.units !== 0) back.buckets.push({ bucket: grant.bucket, diff: -grant.units });
        this.buckets.delete(key);
        continue;
      }
      if (grant.units < 0 || grant.units > grant.size) {
        const keep = Math.min(Math.max(grant.units, 0), grant.size);
        back.buckets.push({ bucket: grant.bucket, diff: keep - grant.units });
        grant.units = keep;
      }
      grant.used = false;
    }
    for (const [key, grant] of this.slots) {
      if (!grant.used && !grant.asking && grant.lent === 0) {
        for (const member of grant.free) back.members.push({ key: grant.slot.key, member });
        this.slots.delete(key);
        continue;
      }
      while (grant.free.length > grant.size) back.members.push({ key, member: grant.free.pop()! });
      grant.used = false;
    }
    return back;
  }

  /** On close: everything held goes back (members lent to requests still in flight stay lent). */
  takeAll(): GiveBack {
    const back = this.orphans;
    this.orphans = { buckets: [], members: [] };
    for (const grant of this.buckets.values()) {
      if (grant.units !== 0) back.buckets.push({ bucket: grant.bucket, diff: -grant.units });
    }
    for (const grant of this.slots.values()) {
      for (const member of grant.free) back.members.push({ key: grant.slot.key, member });
    }
    this.buckets.clear();
    this.slots.clear();
    return back;
  }

  /**
   * Redis went away: grants are forgotten. Their debts are charged and their members released once
   * it answers again; their unspent units are not given back (Redis may come back empty, and
   * then they would erase other instances' charges): they refill by themselves, as a crashed
   * instance's do. Members lent to requests in flight stay lent, and renewed again once Redis is
   * back, until their requests end.
   */
  drop(): void {
    // Debts only: credits given to a Redis that restarted empty would erase others' charges.
    for (const grant of this.buckets.values()) {
      if (grant.units < 0) this.orphans.buckets.push({ bucket: grant.bucket, diff: -grant.units });
    }
    for (const grant of this.slots.values()) {
      for (const member of grant.free) this.orphans.members.push({ key: grant.slot.key, member });
    }
    this.buckets.clear();
    this.slots.clear();
  }

  /** Redis answers again after an outage: units queued to go back are dropped (it may be empty). */
  forgetCredits(): void {
    this.orphans.buckets = this.orphans.buckets.filter((entry) => entry.diff > 0);
  }

  /** Members of slot grants, for lease renewal: slot key → members held or lent. */
  *heldMembers(): Generator<[key: string, member: string]> {
    for (const grant of this.slots.values()) for (const member of grant.free) yield [grant.slot.key, member];
    for (const lent of this.lentTo.values()) for (const [key, { member }] of lent) yield [key, member];
  }

  /** A lent member back to its grant, or to Redis when that grant is gone. */
  private giveBackLent(key: string, lent: Lent): void {
    if (this.slots.get(key) === lent.grant) {
      lent.grant.free.push(lent.member);
      lent.grant.lent--;
    } else {
      this.orphans.members.push({ key, member: lent.member });
    }
  }

  private plan(request: AdmitRequest, reserving: boolean): GrantPlan {
    const { buckets, slots, tokens } = request;
    const now = this.now();
    const plan: GrantPlan = {
      bucketGrants: new Array(buckets.length).fill(undefined),
      use: new Array(buckets.length).fill(0),
      want: new Array(buckets.length).fill(0),
      slotGrants: new Array(slots.length).fill(undefined),
      lent: new Array(slots.length).fill(undefined),
      wantSlots: new Array(slots.length).fill(0),
    };
    for (let i = 0; i < buckets.length; i++) {
      const bucket = buckets[i]!;
      const cost = costOf(bucket, tokens);
      const cap = grantCap(bucket.limit, cost);
      let grant = this.buckets.get(bucket.key);
      // A limit changed since the grant: it goes back unused at the next flushes, then a new one.
      if (grant && !sameLimit(grant.bucket, bucket)) continue;
      if (reserving && grant && cost <= bucket.limit) {
        plan.use[i] = Math.max(0, Math.min(grant.units, cost));
        grant.units -= plan.use[i]!;
        grant.used = true;
      }
      plan.bucketGrants[i] = grant;
      if (cap === 0 || grant?.asking) continue;
      if (grant === undefined) {
        // Held empty while the first ask is out, so that a burst asks once, not once per request.
        grant = this.newBucketGrant(bucket, cost, cap);
        this.buckets.set(bucket.key, grant);
        plan.bucketGrants[i] = grant;
      } else if (grant.units >= grant.size / 2) {
        continue;
      }
      if (now - grant.askedAt < GROW_WITHIN_MS) grant.size = Math.min(cap, grant.size * 2);
      plan.want[i] = Math.max(0, grant.size - Math.max(0, grant.units));
      if (plan.want[i]! > 0) {
        grant.asking = true;
        grant.askedAt = now;
      }
    }
    for (let j = 0; j < slots.length; j++) {
      const slot = slots[j]!;
      const cap = grantCap(slot.limit, 1);
      let grant = this.slots.get(slot.key);
      if (grant && grant.slot.limit !== slot.limit) continue;
      if (reserving && grant && grant.free.length > 0) {
        plan.lent[j] = { grant, member: grant.free.pop()! };
        grant.lent++;
        grant.used = true;
      }
      plan.slotGrants[j] = grant;
      if (cap === 0 || grant?.asking) continue;
      if (grant === undefined) {
        grant = this.newSlotGrant(slot, cap);
        this.slots.set(slot.key, grant);
        plan.slotGrants[j] = grant;
      } else if (grant.free.length >= grant.size / 2) {
        continue;
      }
      if (now - grant.askedAt < GROW_WITHIN_MS) grant.size = Math.min(cap, grant.size * 2);
      plan.wantSlots[j] = Math.max(0, grant.size - grant.free.length);
      if (plan.wantSlots[j]! > 0) {
        grant.asking = true;
        grant.askedAt = now;
      }
    }
    return plan;
  }

  private newBucketGrant(bucket: RateBucket, cost: number, cap: number): BucketGrant {
    const size = Math.min(cap, MIN_GRANT_COSTS * cost);
    // askedAt in the past: the first ask does not count as demand outrunning the grant.
    return { bucket, units: 0, size, tat: 0, skew: 0, askedAt: -Infinity, asking: false, used: true };
  }

  private newSlotGrant(slot: ConcurrencySlot, cap: number): SlotGrant {
    const size = Math.min(cap, MIN_GRANT_COSTS);
    return { slot, free: [], lent: 0, size, askedAt: -Infinity, asking: false, used: true };
  }
}

/** The most a grant of this limit holds, or 0 when the share is too small to be worth granting. */
export function grantCap(limit: number, cost: number): number {
  const cap = Math.floor(limit * GRANT_SHARE);
  return cost > 0 && cap >= MIN_GRANT_COSTS * cost ? cap : 0;
}

/** Redis's state as of the grant's last call (aged by the clock), plus what this instance holds. */
function stateOf(grant: BucketGrant, now: number): BucketState {
  const { bucket } = grant;
  const peek = gcraPeek(bucket, grant.tat, now + grant.skew);
  const held = Math.max(0, grant.units);
  return {
    bucket,
    remaining: Math.min(bucket.limit, peek.remaining + held),
    resetMs: Math.max(0, peek.resetMs - held * (bucket.periodMs / bucket.limit)),
  };
}

const sameLimit = (a: RateBucket, b: RateBucket) => a.limit === b.limit && a.periodMs === b.periodMs;
