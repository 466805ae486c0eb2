/**
 * A budget counter missing from the limiter (first use, a restart, Redis emptied, a new period)
 * is seeded from the database plus what this instance has recorded and not written yet. Each
 * event must count once: the request whose addition found the counter missing, and a batch
 * written while the seed is read, are the two ways it could count twice or not at all.
 * With the production DatabaseUsageRecorder (createTestApp) and the in-process limiter answering
 * after a round trip, as Redis does: that delay is what lets a batch be written meanwhile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseUsageRecorder } from '../../src/billing/usage-recorder.ts';
import type { Admission } from '../../src/limits/enforcer.ts';
import type { Limiter } from '../../src/limits/limiter.ts';
import { MemoryLimiter } from '../../src/limits/memory-limiter.ts';
import type { BudgetRow } from '../../src/store/schema.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';

describe('budget counters seeded from the usage records', () => {
  let app: TestApp;
  let recorder: DatabaseUsageRecorder;
  const org = () => app.instance.organization.id;
  const project = () => app.instance.project.id;

  beforeAll(async () => {
    app = await createTestApp({ limiter: roundTrips(new MemoryLimiter()) });
    recorder = app.services.usage as DatabaseUsageRecorder;
  });
  afterAll(() => app?.close());

  /** A fresh key with a daily token budget, and an event maker for it. */
  async function keyWithBudget() {
    const { key } = await app.services.keys.create(
      {
        organizationId: org(),
        kind: 'proj',
        name: 'seeded',
        projectId: project(),
        ownerUserId: app.instance.owner.id,
      },
      TEST_ACTOR,
    );
    const budget = await app.services.limits.setBudget(
      org(),
      { scope: { type: 'api_key', id: key.id }, metric: 'tokens', period: 'day', hardLimit: 1_000_000 },
      TEST_ACTOR,
    );
    const event = (tokens: number) =>
      usageEvent({ organizationId: org(), projectId: project(), apiKeyId: key.id, inputTokens: tokens });
    const subject = { organizationId: org(), projectId: project(), apiKeyId: key.id };
    // A request admitted without a budget check (the limit is a hard one, but only `settle` is
    // under test): its counter is still missing when the request settles.
    const plan = await app.services.enforcer.catalog.planFor(subject, 'mock-gpt-4o');
    expect(plan.counters).toHaveLength(1);
    const admission: Admission = {
      plan,
      subject,
      estimatedTokens: 0,
      leaseId: `lease_${key.id}`,
      headers: {},
    };
    return { key, budget, event, admission };
  }

  const spend = (budget: BudgetRow) => app.services.enforcer.currentSpend(org(), budget);

  /** What the gateway does at the end of a request: settle the limits, then record the event. */
  function finish(admission: Admission, event: ReturnType<typeof usageEvent>) {
    app.services.enforcer.settle(admission, event, event.costNanoUsd);
    recorder.record(event);
  }

  it('counts what is in the database and what is recorded but not written yet', async () => {
    const { budget, event } = await keyWithBudget();
    await storeUsage(app.services.store.db, [event(100), event(200)]); // an earlier process
    recorder.record(event(30)); // this one, not written yet
    recorder.record(event(40));
    expect(recorder.pending).toBeGreaterThanOrEqual(2);
    expect(await spend(budget)).toBe(370);
    await recorder.flush();
    expect(await spend(budget)).toBe(370); // written now: the counter does not count it again
  });

  it('counts a request once when its addition seeds the counter and its batch is written meanwhile', async () => {
    const { budget, event, admission } = await keyWithBudget();
    await storeUsage(app.services.store.db, [event(1000)]);
    // In one turn, as the gateway ends a request while the recorder's timer fires: the batch with
    // the event is written while the counter's seed is read.
    const seven = event(7);
    recorder.record(seven);
    const written = recorder.flush();
    app.services.enforcer.settle(admission, seven, seven.costNanoUsd);
    await written;
    await app.services.enforcer.drain();
    expect(await spend(budget)).toBe(1007);
  });

  it('counts a request once when the seed is read before its batch is written', async () => {
    const { budget, event, admission } = await keyWithBudget();
    await storeUsage(app.services.store.db, [event(500)]);
    finish(admission, event(11));
    finish(admission, event(13));
    await app.services.enforcer.drain();
    expect(await spend(budget)).toBe(524);
    await recorder.flush();
    expect(await spend(budget)).toBe(524);
  });
});

/** The limiter, every answer a few milliseconds late (a network round trip). */
function roundTrips(limiter: MemoryLimiter): Limiter {
  const late =
    <A extends unknown[], R>(call: (...args: A) => R) =>
    (...args: A): Promise<Awaited<R>> =>
      new Promise((resolve, reject) =>
        setTimeout(() => Promise.resolve(call(...args)).then(resolve, reject), 5),
      );
  return {
    name: 'redis',
    admit: late((request) => limiter.admit(request)),
    settle: late((request) => limiter.settle(request)),
    readCounters: late((keys) => limiter.readCounters(keys)),
    seedCounter: late((key, value, expiresAt) => limiter.seedCounter(key, value, expiresAt)),
    addToCounters: late((adds) => limiter.addToCounters(adds)),
    close: () => limiter.close(),
  };
}
