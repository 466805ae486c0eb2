/**
 * The usage port: the gateway hands one event per request to a recorder, before the response's
 * last byte, and moves on. The database recorder appends it to the local journal (durable across
 * a process crash the moment `record` returns), then writes events in batches off the response
 * path (`usage-store.ts`: events, roll-ups and credit draws in one transaction, idempotent by
 * request id), and drops journal segments once the database has all of their events.
 */
import type { Db } from '../store/database.ts';
import { isDataException, sqlStateOf } from '../store/sql-state.ts';
import { serializeEvent, type UsageEvent } from './usage-event.ts';
import type { UsageJournal } from './usage-journal.ts';
import { compactRollups, ingestSerialized } from './usage-store.ts';

export type { UsageEvent } from './usage-event.ts';

/** Whose usage: an organization, or one of its projects or keys. */
export interface SpendScope {
  organizationId: string;
  projectId?: string;
  apiKeyId?: string;
}

/** Usage of `scope` made in [start, end) (`at`, ms)? */
function inScope(
  scope: SpendScope,
  start: number,
  end: number,
  usage: { organizationId: string; projectId: string | null; apiKeyId: string },
  at: number,
): boolean {
  return (
    usage.organizationId === scope.organizationId &&
    at >= start &&
    at < end &&
    (scope.projectId === undefined || usage.projectId === scope.projectId) &&
    (scope.apiKeyId === undefined || usage.apiKeyId === scope.apiKeyId)
  );
}

export interface UsageRecorder {
  record(event: UsageEvent): void;
  /** Writes what is pending; resolves when it is stored. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** nano-USD of the organization's usage recorded here and not yet in the database. */
  unwrittenCost?(organizationId: string): number;
  /** Cost and tokens (input + output) recorded here in [start, end) and not yet in the database. */
  unwrittenSpend?(scope: SpendScope, start: number, end: number): { cost: number; tokens: number };
  /**
   * Runs `fn` while no batch is being written: what the database holds and what `unwrittenSpend`
   * answers do not move during it, so together they count each event exactly once.
   */
  whileNotWriting?<T>(fn: () => Promise<T>): Promise<T>;
}

/** Keeps events in memory: for tests and for reading back what the gateway recorded. */
export class MemoryUsageRecorder implements UsageRecorder {
  readonly events: UsageEvent[] = [];
  record(event: UsageEvent): void {
    this.events.push(event);
  }
  /** None of its events is ever written: all of them count. */
  unwrittenSpend(scope: SpendScope, start: number, end: number): { cost: number; tokens: number } {
    let cost = 0;
    let tokens = 0;
    for (const e of this.events) {
      if (!inScope(scope, start, end, e, e.createdAt.getTime())) continue;
      cost += e.costNanoUsd;
      tokens += e.inputTokens + e.outputTokens;
    }
    return { cost, tokens };
  }
  whileNotWriting<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export interface DatabaseUsageRecorderOptions {
  /** Where budget months begin (credit draws are kept per billing month). */
  timeZone: string;
  /** The crash-proof journal; without one, a crash loses what was not written yet. */
  journal?: UsageJournal | undefined;
  flushMs?: number;
  /** Hour and day roll-ups are recomputed from the minutes this often (after a write). */
  compactMs?: number;
  batchSize?: number;
  /** Events held in memory while the database is unreachable; beyond it they wait on disk only. */
  maxPending?: number;
  onError: (error: unknown, what: string, pending: number) => void;
  /** A replay or a batch was written (for logs and tests). */
  onWritten?: (what: 'replay' | 'batch', inserted: number, received: number) => void;
}

/**
 * An event waiting for the database: its row as JSON (`serializeEvent`, the journal's line and its
 * part of the batch) and what `unwrittenCost` reads, not the event itself: waiting outlives a few
 * young-generation collections, and every byte kept that long is copied by each of them.
 */
interface Pending {
  serialized: string;
  organizationId: string;
  projectId: string | null;
  apiKeyId: string;
  /** ms */
  createdAt: number;
  costNanoUsd: number;
  /** Input + output, as budgets count them. */
  tokens: number;
  /** The journal segment holding it (undefined: the journal could not take it). */
  segment: number | undefined;
}

export class DatabaseUsageRecorder implements UsageRecorder {
  #pending: Pending[] = [];
  /** The batch being written: shedding it from memory loses nothing unless its write fails. */
  #inFlight = new Set<Pending>();
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  /** Events dropped from memory while the database was away; they are replayed from the journal. */
  #spilled = false;
  /** Events lost: neither in the journal nor kept in memory. */
  lost = 0;
  /** Events the database refused to store (a value out of its range), logged and dropped. */
  rejected = 0;
  #compactedAt = 0;

  constructor(
    private readonly db: Db,
    private readonly options: DatabaseUsageRecorderOptions,
  ) {}

  /** Replays what the previous process left in the journal, then starts recording. */
  async start(): Promise<void> {
    const journal = this.options.journal;
    if (journal) {
      for (const seq of journal.segments()) await this.#replay(seq);
      journal.open();
    }
    // Frequent small batches: on PGlite the insert runs on the event loop, so a short write stalls less.
    this.#timer = setInterval(() => void this.flush(), this.options.flushMs ?? 200);
    this.#timer.unref();
  }

  get pending(): number {
    return this.#pending.length;
  }

  unwrittenCost(organizationId: string): number {
    let cost = 0;
    for (const pending of this.#pending)
      if (pending.organizationId === organizationId) cost += pending.costNanoUsd;
    return cost;
  }

  record(event: UsageEvent): void {
    let segment: number | undefined;
    const serialized = serializeEvent(event);
    if (this.options.journal) {
      try {
        segment = this.options.journal.append(serialized);
      } catch (error) {
        this.options.onError(
          error,
          'usage journal append failed; the event is held in memory only',
          this.#pending.length,
        );
      }
    }
    this.#pending.push({
      serialized,
      organizationId: event.organizationId,
      projectId: event.projectId,
      apiKeyId: event.apiKeyId,
      createdAt: event.createdAt.getTime(),
      costNanoUsd: event.costNanoUsd,
      tokens: event.inputTokens + event.outputTokens,
      segment,
    });
    const max = this.options.maxPending ?? 100_000;
    if (this.#pending.length > max) this.#shed(this.#pending.length - max);
    if (this.#pending.length >= (this.options.batchSize ?? 500)) void this.flush();
  }

  unwrittenSpend(scope: SpendScope, start: number, end: number): { cost: number; tokens: number } {
    let cost = 0;
    let tokens = 0;
    for (const p of this.#pending) {
      if (!inScope(scope, start, end, p, p.createdAt)) continue;
      cost += p.costNanoUsd;
      tokens += p.tokens;
    }
    return { cost, tokens };
  }

  whileNotWriting<T>(fn: () => Promise<T>): Promise<T> {
    // In the write queue: the batch being written finishes first, the next waits for `fn`.
    const run = this.#writing.then(fn);
    this.#writing = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  flush(): Promise<void> {
    this.#writing = this.#writing.then(() => this.#writeAll());
    return this.#writing;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
    await this.#compact(true);
    await this.options.journal?.close();
  }

  /** Recomputes hour and day roll-ups when due (every instance tries; one at a time does it). */
  async #compact(force = false): Promise<void> {
    const now = Date.now();
    if (!force && now - this.#compactedAt < (this.options.compactMs ?? 30_000)) return;
    this.#compactedAt = now;
    try {
      while ((await compactRollups(this.db)) === 500) {}
    } catch (error) {
      this.options.onError(
        error,
        'usage roll-ups could not be compacted; reads use the minutes meanwhile',
        this.#pending.length,
      );
    }
  }

  async #writeAll(): Promise<void> {
    const size = this.options.batchSize ?? 500;
    while (this.#pending.length > 0) {
      const batch = this.#pending.slice(0, size);
      this.#inFlight = new Set(batch);
      try {
        const result = await this.#ingestIsolating(batch.map((p) => p.serialized));
        this.options.onWritten?.('batch', result.inserted, batch.length);
      } catch (error) {
        // Those shed from memory while this write was failing are gone from memory now too.
        const kept = new Set(this.#pending);
        for (const p of batch) if (!kept.has(p)) this.#dropped(p);
        this.#inFlight = new Set();
        this.options.onError(error, 'usage events could not be written; will retry', this.#pending.length);
        return; // keep them; the next flush tries again
      }
      this.#inFlight = new Set();
      // By identity, not position: while the batch was being written, memory may have shed its
      // oldest events (an outage), and the front of the queue is then other, unwritten ones.
      const written = new Set(batch);
      this.#pending = this.#pending.filter((p) => !written.has(p));
      this.#committed(batch);
    }
    if (this.#spilled) await this.#replaySpilled();
    await this.#compact();
  }

  /**
   * Writes a batch; if the database refuses its data (not the connection: a value it cannot
   * store), halves it until the refused events are alone, writes the others, and logs and drops
   * those. One event that can never be written must not stop every other one from being written.
   */
  async #ingestIsolating(serialized: readonly string[]): Promise<{ inserted: number }> {
    try {
      return await ingestSerialized(this.db, serialized, this.options.timeZone);
    } catch (error) {
      if (!isDataError(error)) throw error;
      if (serialized.length === 1) {
        this.rejected++;
        this.options.onError(
          error,
          `a usage event the database refuses was dropped (kept here to be recovered by hand): ${serialized[0]}`,
          this.#pending.length,
        );
        return { inserted: 0 };
      }
      const half = Math.ceil(serialized.length / 2);
      const first = await this.#ingestIsolating(serialized.slice(0, half));
      const second = await this.#ingestIsolating(serialized.slice(half));
      return { inserted: first.inserted + second.inserted };
    }
  }

  /** Tells the journal which of its events the database now has. */
  #committed(batch: readonly Pending[]): void {
    const journal = this.options.journal;
    if (!journal) return;
    const counts = new Map<number, number>();
    for (const { segment } of batch)
      if (segment !== undefined) counts.set(segment, (counts.get(segment) ?? 0) + 1);
    for (const [segment, count] of counts) journal.committed(segment, count);
  }

  /** Too many waiting: the oldest leave memory; those in the journal are replayed from it later. */
  #shed(excess: number): void {
    const dropped = this.#pending.splice(0, excess);
    for (const p of dropped) if (!this.#inFlight.has(p)) this.#dropped(p);
  }

  #dropped({ segment }: Pending): void {
    if (segment === undefined) this.lost++;
    else this.#spilled = true;
  }

  /** After an outage that overflowed memory: everything still in closed segments, from disk. */
  async #replaySpilled(): Promise<void> {
    const journal = this.options.journal;
    if (!journal) return;
    journal.rotate();
    // What is in memory now was appended after the rotation, or is a copy of what is on disk.
    const onDisk = new Set(journal.pendingClosedSegments());
    this.#pending = this.#pending.filter((p) => p.segment === undefined || !onDisk.has(p.segment));
    try {
      for (const seq of journal.pendingClosedSegments()) await this.#replay(seq);
      this.#spilled = false;
    } catch (error) {
      this.options.onError(error, 'usage journal replay failed; will retry', this.#pending.length);
    }
  }

  async #replay(seq: number): Promise<void> {
    const journal = this.options.journal!;
    const { events, skipped } = journal.read(seq);
    if (skipped > 0) {
      this.options.onError(
        new Error(`${skipped} unreadable line(s) in usage journal segment ${seq}`),
        'usage journal segment had a torn or corrupt line (a machine crash mid-write); skipped',
        0,
      );
    }
    const size = 1000;
    let inserted = 0;
    for (let i = 0; i < events.length; i += size) {
      inserted += (await this.#ingestIsolating(events.slice(i, i + size).map(serializeEvent))).inserted;
    }
    this.options.onWritten?.('replay', inserted, events.length);
    journal.remove(seq);
  }
}

/**
 * PostgreSQL refusing the values themselves (a data exception, or a missing required value,
 * 23502), which no retry will change.
 */
function isDataError(error: unknown): boolean {
  return isDataException(error) || sqlStateOf(error) === '23502';
}
