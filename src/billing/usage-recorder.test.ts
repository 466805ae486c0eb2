/**
 * Metering on every backend: the batch writer (events, roll-ups, credit draws in one transaction,
 * idempotent), the recorder (batches off the caller, retries) and the journal (appended before
 * `record` returns, replayed by the next process, torn lines skipped).
 */
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { backends, openTestStore } from '../../test/helpers/stores.ts';
import type { Db, Store } from '../store/database.ts';
import { insertOrganization } from '../store/repositories/organizations.ts';
import { rowsOf } from '../store/rows.ts';
import { creditDraws, creditGrants, rollupDirty, usageEvents, usageRollups } from '../store/schema.ts';
import { USAGE_KINDS, type UsageEvent } from './usage-event.ts';
import { UsageJournal } from './usage-journal.ts';
import { sumUsage, usageBuckets } from './usage-query.ts';
import { DatabaseUsageRecorder } from './usage-recorder.ts';
import { compactRollups, ingestUsage } from './usage-store.ts';

let sequence = 0;
const event = (i: number, organizationId: string, overrides: Partial<UsageEvent> = {}): UsageEvent => ({
  requestId: `req_${String(++sequence).padStart(8, '0')}_${String(i).padStart(24, '0')}`,
  createdAt: new Date(Date.UTC(2026, 10, 22, 8, i % 120, 0, i % 1000)),
  organizationId,
  projectId: i % 2 ? 'proj_1' : null,
  apiKeyId: `key_${i % 3}`,
  userId: i % 4 ? 'user-1' : null,
  serviceAccountId: i % 4 ? null : 'svc_acct_1',
  method: 'POST',
  endpoint: '/v1/chat/completions',
  model: i % 5 ? 'gpt-4o' : null,
  upstream: 'mock',
  kind: i % 7 ? 'completions' : 'embeddings',
  inputTokens: i,
  cachedTokens: 1,
  outputTokens: 2 * i,
  units: 0,
  status: i % 11 ? 200 : 500,
  latencyMs: 12,
  clientIp: '::1',
  streamed: i % 3 === 0,
  estimated: false,
  costNanoUsd: 3500 * i,
  costInputNanoUsd: 2500 * i,
  costCachedNanoUsd: 0,
  costOutputNanoUsd: 1000 * i,
  costUnitsNanoUsd: 0,
  ...overrides,
});

describe.each(backends)('metering on %s', (backend) => {
  let store: Store;
  const dirs: string[] = [];
  const newOrganization = async () => (await insertOrganization(store.db, 'Metered')).id;
  const journalDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keyport-journal-'));
    dirs.push(dir);
    return dir;
  };
  const storedIds = async (organizationId: string) =>
    (
      await store.db
        .select({ id: usageEvents.requestId })
        .from(usageEvents)
        .where(eq(usageEvents.organizationId, organizationId))
    )
      .map((r) => r.id)
      .sort();

  beforeAll(async () => {
    store = await openTestStore(backend);
  });
  afterAll(async () => {
    await store.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('stores text the database would refuse (NUL, unpaired surrogates) with U+FFFD, so it cannot fail its batch', async () => {
    const org = await newOrganization();
    const events = [
      event(1, org, { model: 'gpt\u0000-4o' }),
      event(2, org, { model: 'gpt-\ud800', endpoint: '/v1/\udc00x' }),
      event(3, org, { model: 'ok 😀 model' }), // a pair is kept as it is
    ];
    expect((await ingestUsage(store.db, events, 'UTC')).inserted).toBe(3);
    const rows = await store.db.select().from(usageEvents).where(eq(usageEvents.organizationId, org));
    const models = new Map(rows.map((r) => [r.requestId, [r.model, r.endpoint]]));
    expect(models.get(events[0]!.requestId)).toEqual(['gpt\uFFFD-4o', '/v1/chat/completions']);
    expect(models.get(events[1]!.requestId)).toEqual(['gpt-\uFFFD', '/v1/\uFFFDx']);
    expect(models.get(events[2]!.requestId)).toEqual(['ok 😀 model', '/v1/chat/completions']);
  });

  it('stores every field exactly; the same events twice only once, in the events and in every roll-up', async () => {
    const org = await newOrganization();
    const events = Array.from({ length: 600 }, (_, i) => event(i, org));
    expect((await ingestUsage(store.db, events.slice(0, 300), 'UTC')).inserted).toBe(300);
    expect((await ingestUsage(store.db, events, 'UTC')).inserted).toBe(300); // overlaps the first batch
    expect((await ingestUsage(store.db, events, 'UTC')).inserted).toBe(0);
    const rows = await store.db.select().from(usageEvents).where(eq(usageEvents.organizationId, org));
    expect(rows).toHaveLength(600);
    const byId = new Map(rows.map((r) => [r.requestId, r]));
    for (const e of events) expect(byId.get(e.requestId)).toEqual(e);

    const sum = (key: keyof UsageEvent) => events.reduce((total, e) => total + (e[key] as number), 0);
    // Ingest writes minutes; hours and days are computed from them by compaction (twice: no change).
    expect(await compactRollups(store.db)).toBeGreaterThan(0);
    expect(await compactRollups(store.db)).toBe(0);
    for (const width of ['1m', '1h', '1d'] as const) {
      const [totals] = rowsOf<Record<string, string>>(
        await store.db.execute(sql`
          select sum(requests) as requests, sum(errors) as errors, sum(input_tokens) as input,
                 sum(output_tokens) as output, sum(cost_input_nano_usd) as cost_input,
                 sum(cost_output_nano_usd) as cost_output, count(*) as buckets
          from usage_rollups where organization_id = ${org} and width = ${width}`),
      );
      expect(Number(totals!.requests)).toBe(600);
      expect(Number(totals!.errors)).toBe(
        events.filter((e) => e.status >= 400 && e.inputTokens + e.outputTokens === 0).length,
      );
      expect(Number(totals!.input)).toBe(sum('inputTokens'));
      expect(Number(totals!.output)).toBe(sum('outputTokens'));
      expect(Number(totals!.cost_input)).toBe(sum('costInputNanoUsd'));
      expect(Number(totals!.cost_output)).toBe(sum('costOutputNanoUsd'));
    }
    // Buckets start on their width in UTC, and nulls are kept as '' in the roll-up's key.
    const hours = await store.db
      .select({ start: usageRollups.bucketStart, model: usageRollups.model, userId: usageRollups.userId })
      .from(usageRollups)
      .where(sql`${usageRollups.organizationId} = ${org} and ${usageRollups.width} = '1h'`);
    expect(new Set(hours.map((h) => h.start.toISOString()))).toEqual(
      new Set(['2026-11-22T08:00:00.000Z', '2026-11-22T09:00:00.000Z']),
    );
    expect(hours.some((h) => h.model === '')).toBe(true);
    expect(hours.some((h) => h.userId === 'svc_acct_1')).toBe(true);
  });

  it('draws credit in time order from the grant expiring first, never from an expired one, and only once', async () => {
    const org = await newOrganization();
    const at = (minute: number) => new Date(Date.UTC(2026, 10, 22, 8, minute));
    const grant = async (id: string, amount: number, expiresAt: Date | null) =>
      store.db.insert(creditGrants).values({
        id: `${id}_${org}`,
        organizationId: org,
        kind: 'promotion',
        amountNanoUsd: amount,
        remainingNanoUsd: amount,
        createdBy: 'test',
        createdAt: new Date(Date.UTC(2026, 10, 1)),
        expiresAt,
      });
    await grant('late', 5000, null);
    await grant('soon', 3000, at(30));
    await grant('gone', 9000, at(0)); // expired before any of this usage
    const events = [
      event(1, org, { createdAt: at(10), costNanoUsd: 2000 }),
      event(2, org, { createdAt: at(20), costNanoUsd: 2000 }), // 1000 from 'soon', 1000 from 'late'
      event(3, org, { createdAt: at(40), costNanoUsd: 2500 }), // 'soon' has expired: all from 'late'
      event(4, org, { createdAt: at(50), costNanoUsd: 4000 }), // 1500 left in 'late': 2500 owed
    ];
    expect((await ingestUsage(store.db, events, 'UTC')).creditDrawn).toBe(2000 + 2000 + 2500 + 1500);
    expect((await ingestUsage(store.db, events, 'UTC')).creditDrawn).toBe(0); // a replay draws nothing
    const remaining = Object.fromEntries(
      (await store.db.select().from(creditGrants).where(eq(creditGrants.organizationId, org))).map((g) => [
        g.id.split('_')[0],
        g.remainingNanoUsd,
      ]),
    );
    expect(remaining).toEqual({ late: 0, soon: 0, gone: 9000 });
    const draws = await store.db.select().from(creditDraws).where(eq(creditDraws.organizationId, org));
    expect(
      draws.map((d) => [d.grantId.split('_')[0], d.monthStart.toISOString(), d.amountNanoUsd]).sort(),
    ).toEqual([
      ['late', '2026-11-01T00:00:00.000Z', 5000],
      ['soon', '2026-11-01T00:00:00.000Z', 3000],
    ]);
  });

  it('batches off the caller, flushes on close, and keeps events while the database fails', async () => {
    const org = await newOrganization();
    const errors: unknown[] = [];
    const recorder = new DatabaseUsageRecorder(store.db, {
      timeZone: 'UTC',
      flushMs: 60_000,
      batchSize: 100,
      onError: (e) => errors.push(e),
    });
    await recorder.start();
    const events = Array.from({ length: 250 }, (_, i) => event(i, org));
    for (const e of events) recorder.record(e);
    await recorder.close();
    expect(await storedIds(org)).toEqual(events.map((e) => e.requestId).sort());
    expect(errors).toEqual([]);

    // A database that cannot be reached keeps the batch for the next flush.
    let down = true;
    const flaky = {
      transaction: async (fn: (tx: unknown) => unknown) => {
        if (down)
          throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
        return store.db.transaction(fn as never);
      },
    } as unknown as Db;
    const failing = new DatabaseUsageRecorder(flaky, {
      timeZone: 'UTC',
      flushMs: 60_000,
      onError: (e) => errors.push(e),
    });
    await failing.start();
    const kept = event(2000, org);
    failing.record(kept);
    await failing.flush();
    expect(errors).toHaveLength(1);
    expect(failing.pending).toBe(1);
    await failing.flush();
    expect(errors).toHaveLength(2);
    down = false;
    await failing.close();
    expect(errors).toHaveLength(2);
    expect(await storedIds(org)).toContain(kept.requestId);
  });

  it('an event the database refuses is isolated, logged and dropped; the rest of its batch is written', async () => {
    const org = await newOrganization();
    const errors: { error: unknown; what: string }[] = [];
    const recorder = new DatabaseUsageRecorder(store.db, {
      timeZone: 'UTC',
      flushMs: 60_000,
      onError: (error, what) => errors.push({ error, what }),
    });
    await recorder.start();
    const events = Array.from({ length: 9 }, (_, i) => event(3000 + i, org));
    // More units than a bigint holds: no retry can ever store it.
    events[5] = event(3005, org, { units: 1e20 });
    for (const e of events) recorder.record(e);
    await recorder.flush();
    expect(recorder.pending).toBe(0);
    expect(recorder.rejected).toBe(1);
    expect(await storedIds(org)).toEqual(
      events
        .filter((_, i) => i !== 5)
        .map((e) => e.requestId)
        .sort(),
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]!.what).toContain('dropped');
    expect(errors[0]!.what).toContain(events[5]!.requestId); // the row, to recover by hand
    await recorder.flush(); // not retried
    expect(errors).toHaveLength(1);
    await recorder.close();
  });

  it('counts beyond what an integer column holds are capped, not refused', async () => {
    const org = await newOrganization();
    const huge = event(4000, org, { inputTokens: 3e9, outputTokens: 5 });
    expect((await ingestUsage(store.db, [huge], 'UTC')).inserted).toBe(1);
    const [row] = await store.db.select().from(usageEvents).where(eq(usageEvents.requestId, huge.requestId));
    expect(row).toMatchObject({ inputTokens: 2_147_483_647, outputTokens: 5 });
  });

  it('memory shed while a batch is being written drops the oldest unwritten events, not newer ones', async () => {
    const org = await newOrganization();
    // The database answers the first write only when told to.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let writes = 0;
    const slow = {
      transaction: async (fn: (tx: unknown) => unknown) => {
        if (writes++ === 0) await gate;
        return store.db.transaction(fn as never);
      },
    } as unknown as Db;
    const recorder = new DatabaseUsageRecorder(slow, {
      timeZone: 'UTC',
      flushMs: 60_000,
      batchSize: 3,
      maxPending: 5,
      onError: (e) => errors.push(e),
    });
    await recorder.start();
    const errors: unknown[] = [];
    const events = Array.from({ length: 9 }, (_, i) => event(3000 + i, org));
    for (const e of events.slice(0, 3)) recorder.record(e); // a batch of 3 starts writing, and waits
    while (writes === 0) await new Promise((resolve) => setImmediate(resolve));
    for (const e of events.slice(3)) recorder.record(e); // 9 in memory, 5 allowed: the 4 oldest shed
    release();
    await recorder.flush();
    await recorder.close();
    expect(errors).toEqual([]);
    // The batch in flight was written; of the shed ones only event 3 was never written.
    const ids = (i: number[]) => i.map((n) => events[n]!.requestId).sort();
    expect(await storedIds(org)).toEqual(ids([0, 1, 2, 4, 5, 6, 7, 8]));
    expect(recorder.lost).toBe(1);
    expect(errors).toEqual([]);
  });

  it('journals each event before record returns; the next process replays what the database did not get', async () => {
    const org = await newOrganization();
    const dir = journalDir();
    const errors: string[] = [];
    // The first process cannot reach its database, so only the journal has its events.
    const unreachable = {
      transaction: () => Promise.reject(new Error('connection refused')),
    } as unknown as Db;
    const first = new DatabaseUsageRecorder(unreachable, {
      timeZone: 'UTC',
      flushMs: 60_000,
      journal: new UsageJournal(dir),
      onError: (_e, what) => errors.push(what),
    });
    await first.start();
    const events = Array.from({ length: 40 }, (_, i) => event(i, org));
    events.forEach((e) => {
      first.record(e);
      // On disk the moment record returns: a kill -9 now would not lose it.
      const onDisk = readdirSync(dir)
        .filter((f) => f.endsWith('.jsonl'))
        .map((f) => readFileSync(path.join(dir, f), 'utf8'))
        .join('');
      expect(onDisk).toContain(e.requestId);
    });
    await first.close(); // the batch fails: its segment stays
    expect(errors.some((what) => what.includes('could not be written'))).toBe(true);
    expect(await storedIds(org)).toEqual([]);
    const segments = readdirSync(dir).filter((f) => f.endsWith('.jsonl'));
    expect(segments).toHaveLength(1);
    // A machine crash mid-write leaves a torn last line.
    appendFileSync(path.join(dir, segments[0]!), '{"request_id":"req_torn","organiz');

    const second = new DatabaseUsageRecorder(store.db, {
      timeZone: 'UTC',
      journal: new UsageJournal(dir),
      onError: (_e, what) => errors.push(what),
    });
    await second.start();
    expect(await storedIds(org)).toEqual(events.map((e) => e.requestId).sort());
    expect(errors.some((what) => what.includes('torn'))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.jsonl') && segments.includes(f))).toEqual([]);
    // Recording goes on in a new segment, dropped once the database has its events.
    second.record(event(100, org));
    await second.close();
    expect(readdirSync(dir).filter((f) => f.endsWith('.jsonl'))).toEqual([]);
  });

  it('compaction recomputes ended hours and days from their minutes; reads are the same before and after', async () => {
    const org = await newOrganization();
    const at = (h: number, m: number) => new Date(Date.UTC(2026, 9, 3, h, m));
    const events = [
      event(1, org, { createdAt: at(9, 5), inputTokens: 10 }),
      event(2, org, { createdAt: at(9, 55), inputTokens: 20 }),
      event(3, org, { createdAt: at(11, 0), inputTokens: 40 }),
    ];
    await ingestUsage(store.db, events, 'UTC');
    const day = { width: '1d' as const, from: Date.UTC(2026, 9, 3), to: Date.UTC(2026, 9, 4) };
    const hours = { width: '1h' as const, from: Date.UTC(2026, 9, 3, 9), to: Date.UTC(2026, 9, 3, 12) };
    const read = async () => ({
      day: await usageBuckets(store.db, { organizationId: org, ...day, kinds: USAGE_KINDS, groupBy: [] }),
      hours: await usageBuckets(store.db, { organizationId: org, ...hours, kinds: USAGE_KINDS, groupBy: [] }),
      total: await sumUsage(
        store.db,
        { organizationId: org },
        Date.UTC(2026, 9, 3, 9, 30),
        Date.UTC(2026, 9, 4),
      ),
    });
    const marks = async () =>
      (await store.db.select().from(rollupDirty).where(eq(rollupDirty.organizationId, org)))
        .map((m) => m.hour.toISOString())
        .sort();
    expect(await marks()).toEqual(['2026-10-03T09:00:00.000Z', '2026-10-03T11:00:00.000Z']);
    const before = await read();
    expect(before.day.map((b) => b.totals.inputTokens)).toEqual([70]);
    expect(before.hours.map((b) => [new Date(b.bucketStart).getUTCHours(), b.totals.inputTokens])).toEqual([
      [9, 30],
      [11, 40],
    ]);
    expect(before.total.inputTokens).toBe(60); // from 09:30: the 09:55 and 11:00 events

    while ((await compactRollups(store.db)) > 0) {}
    expect(await marks()).toEqual([]);
    const hourRows = await store.db
      .select({ start: usageRollups.bucketStart, input: usageRollups.inputTokens })
      .from(usageRollups)
      .where(sql`${usageRollups.organizationId} = ${org} and ${usageRollups.width} = '1h'`);
    // The events' keys and models differ: a row per hour and key; their sums per hour.
    const perHour = new Map<number, number>();
    for (const r of hourRows)
      perHour.set(r.start.getUTCHours(), (perHour.get(r.start.getUTCHours()) ?? 0) + r.input);
    expect(Object.fromEntries(perHour)).toEqual({ 9: 30, 11: 40 });
    expect(await read()).toEqual(before);

    // New usage in a compacted hour marks it again; reads include it at once, compaction catches up.
    await ingestUsage(store.db, [event(4, org, { createdAt: at(9, 10), inputTokens: 5 })], 'UTC');
    expect(await marks()).toEqual(['2026-10-03T09:00:00.000Z']);
    const after = await read();
    expect(after.day.map((b) => b.totals.inputTokens)).toEqual([75]);
    expect(after.hours.map((b) => b.totals.inputTokens)).toEqual([35, 40]);
    while ((await compactRollups(store.db)) > 0) {}
    expect(await read()).toEqual(after);
  });

  it.skipIf(backend !== 'postgres')(
    'a write racing compaction keeps its hour marked, so no read ever misses it',
    async () => {
      const org = await newOrganization();
      const hour = new Date(Date.UTC(2026, 9, 4, 8));
      await ingestUsage(
        store.db,
        [event(1, org, { createdAt: new Date(hour.getTime() + 60_000), inputTokens: 100 })],
        'UTC',
      );
      // Another instance's ingest, in flight: its minute and its mark are written, not committed.
      const other = await store.pool!.connect();
      try {
        await other.query('begin');
        await other.query(
          `update usage_rollups set input_tokens = input_tokens + 7 where width = '1m' and organization_id = $1`,
          [org],
        );
        await other.query(
          'update rollup_dirty set version = version + 1 where organization_id = $1 and hour = $2',
          [org, hour],
        );
        // Compaction reads the committed minutes (100) and waits to clear the mark the write holds.
        const compacting = compactRollups(store.db);
        // Commit only once it waits on that lock (however long a busy machine takes to get there):
        // committed before compaction read the mark, the write would not race it at all.
        await vi.waitFor(
          async () => {
            const { rows } = await store.pool!.query<{ waiting: number }>(
              `select count(*)::int as waiting from pg_stat_activity
               where datname = current_database() and wait_event_type = 'Lock' and query ilike '%rollup_dirty%'`,
            );
            expect(rows[0]!.waiting).toBe(1);
          },
          { timeout: 10_000, interval: 20 },
        );
        await other.query('commit');
        expect(await compacting).toBeGreaterThan(0);
      } finally {
        other.release();
      }
      // The mark survived (its version moved), so the hour is read from its minutes: 107, not 100.
      const marks = await store.db.select().from(rollupDirty).where(eq(rollupDirty.organizationId, org));
      expect(marks).toHaveLength(1);
      const range = { width: '1h' as const, from: hour.getTime(), to: hour.getTime() + 3_600_000 };
      const read = () =>
        usageBuckets(store.db, { organizationId: org, ...range, kinds: USAGE_KINDS, groupBy: [] });
      expect((await read())[0]!.totals.inputTokens).toBe(107);
      while ((await compactRollups(store.db)) > 0) {}
      expect(await store.db.select().from(rollupDirty).where(eq(rollupDirty.organizationId, org))).toEqual(
        [],
      );
      expect((await read())[0]!.totals.inputTokens).toBe(107);
    },
  );

  it('refuses a second process on the same journal', async () => {
    const dir = journalDir();
    const journal = new UsageJournal(dir);
    // Another live process's pid in the lock file.
    rmSync(path.join(dir, 'keyport.lock'));
    appendFileSync(path.join(dir, 'keyport.lock'), String(process.ppid));
    expect(() => new UsageJournal(dir)).toThrow(/in use by another Keyport process/);
    await journal.close();
  });
});
