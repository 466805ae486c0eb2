/** The database usage recorder on every backend: batches, idempotency, exact round trip. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, openTestStore } from '../../test/helpers/stores.ts';
import type { Store } from '../store/database.ts';
import { usageEvents } from '../store/schema.ts';
import { DatabaseUsageRecorder, insertUsageEvents, type UsageEvent } from './usage-recorder.ts';

const event = (i: number, overrides: Partial<UsageEvent> = {}): UsageEvent => ({
  requestId: `req_${String(i).padStart(32, '0')}`,
  createdAt: new Date(Date.UTC(2026, 10, 22, 8, 0, 0, i % 1000)),
  organizationId: 'org-1',
  projectId: i % 2 ? 'proj_1' : null,
  apiKeyId: 'key_1',
  userId: 'user-1',
  serviceAccountId: null,
  method: 'POST',
  endpoint: '/v1/chat/completions',
  model: 'gpt-4o',
  upstream: 'mock',
  inputTokens: i,
  cachedTokens: 1,
  outputTokens: 2 * i,
  status: 200,
  latencyMs: 12,
  clientIp: '::1',
  streamed: i % 3 === 0,
  estimated: false,
  costNanoUsd: 2500 * i,
  ...overrides,
});

describe.each(backends)('DatabaseUsageRecorder on %s', (backend) => {
  let store: Store;
  beforeAll(async () => {
    store = await openTestStore(backend);
  });
  afterAll(() => store.close());

  it('stores every field exactly, and the same events twice only once', async () => {
    const events = Array.from({ length: 600 }, (_, i) => event(i));
    await insertUsageEvents(store.db, events.slice(0, 300));
    await insertUsageEvents(store.db, events); // overlaps the first batch
    const rows = await store.db.select().from(usageEvents);
    expect(rows).toHaveLength(600);
    const byId = new Map(rows.map((r) => [r.requestId, r]));
    for (const e of events) expect(byId.get(e.requestId)).toEqual(e);
  });

  it('batches off the caller, flushes on close, and keeps events while the database fails', async () => {
    const errors: unknown[] = [];
    const recorder = new DatabaseUsageRecorder(store.db, {
      flushMs: 60_000,
      batchSize: 100,
      onError: (e) => errors.push(e),
    });
    for (let i = 1000; i < 1250; i++) recorder.record(event(i));
    await recorder.close();
    const count = async () =>
      (await store.db.select().from(usageEvents)).filter((r) => r.requestId >= event(1000).requestId).length;
    expect(await count()).toBe(250);
    expect(errors).toEqual([]);

    // A failing insert (a null where the table needs a value) keeps the batch for the next flush.
    const failing = new DatabaseUsageRecorder(store.db, { flushMs: 60_000, onError: (e) => errors.push(e) });
    failing.record(event(2000, { method: null as unknown as string }));
    await failing.flush();
    expect(errors).toHaveLength(1);
    await failing.close();
    expect(errors).toHaveLength(2);
  });
});
