/**
 * Credit: grants through the Admin API, and how usage draws them when the recorder writes it
 * (`ingestUsage`): from the grants in force during the usage's minute, the one expiring first
 * first; never from an expired or voided grant; once per event however often it is re-ingested;
 * per billing month in the billing time zone. The balance is what the live grants still hold.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BillingService } from '../../src/billing/billing-service.ts';
import { ManualPaymentProvider } from '../../src/billing/payments.ts';
import { ingestUsage } from '../../src/billing/usage-store.ts';
import { periodBounds } from '../../src/core/periods.ts';
import { NANO_USD_PER_CENT } from '../../src/core/pricing.ts';
import { adminRequest, createSecondOrganization, expectApiError, expectOk } from '../helpers/admin-api.ts';
import { backends, TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { usageEvent } from '../helpers/usage-events.ts';
import {
  billingOf,
  drawRows,
  type GrantObject,
  grantCredit,
  grantRows,
  type ListObject,
} from './billing-helpers.ts';

const TZ = 'America/New_York';
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const CENT = NANO_USD_PER_CENT;

describe.each(backends)('credit grants and draws (%s)', (backend) => {
  let gw: TestGateway;
  let clock: number;
  /** Mid-month in New York, so a few days either way stay in the month. */
  const T0 = Date.UTC(2031, 2, 14, 15);

  beforeAll(async () => {
    clock = T0;
    gw = await createTestGateway({ backend, now: () => clock, config: { billingTimeZone: TZ } });
  });
  afterAll(() => gw?.close());

  /** A fresh organization (pay as you go, no credit) and the clock back at T0. */
  async function freshOrganization() {
    clock = T0;
    return (await createSecondOrganization(gw, 'Credit customer')).organization.id;
  }

  const grant = (organizationId: string, cents: number, expiresAt?: number) =>
    grantCredit(gw, {
      organization_id: organizationId,
      amount_cents: cents,
      ...(expiresAt ? { expires_at: expiresAt / 1000 } : {}),
    });

  /** One event costing `nano` at `at`, ingested as the recorder does; returns what it drew. */
  async function use(organizationId: string, at: number, nano: number) {
    const event = usageEvent({
      organizationId,
      apiKeyId: 'key_credit',
      createdAt: new Date(at),
      costNanoUsd: nano,
    });
    return { event, ...(await ingestUsage(gw.services.store.db, [event], TZ)) };
  }

  const remainingOf = async (organizationId: string) =>
    new Map((await grantRows(gw.services.store.db, organizationId)).map((g) => [g.id, g.remaining]));

  it('grants through the Admin API: shape, default kind, and the balance', async () => {
    const org = await freshOrganization();
    const created = await grant(org, 250, T0 + 10 * DAY);
    expect(created).toEqual({
      object: 'organization.credit_grant',
      id: expect.stringMatching(/\S+/),
      kind: 'promotion',
      amount_cents: 250,
      remaining_usd: 2.5,
      note: null,
      payment_id: null,
      created_at: T0 / 1000,
      expires_at: (T0 + 10 * DAY) / 1000,
      voided_at: null,
    });
    await grantCredit(gw, { organization_id: org, amount_cents: 1, kind: 'adjustment' });
    expect((await billingOf(gw, org)).credit_balance_usd).toBe(2.51);
    const list = expectOk(
      await adminRequest<ListObject<GrantObject>>(gw, 'GET', `/billing/credit_grants?organization_id=${org}`),
    );
    expect(list.data.map((g) => g.amount_cents).sort()).toEqual([1, 250]);
  });

  it('refuses invalid grants', async () => {
    const org = await freshOrganization();
    const post = (body: Record<string, unknown>) =>
      adminRequest(gw, 'POST', '/billing/credit_grants', { body: { organization_id: org, ...body } });
    expectApiError(await post({ amount_cents: 0 }), 400, 'invalid_request');
    expectApiError(await post({ amount_cents: -5 }), 400, 'invalid_request');
    expectApiError(await post({ amount_cents: 1.5 }), 400, 'invalid_request');
    // More than $9M at once: past 2^53 nano-USD, where the arithmetic would stop being exact.
    expectApiError(await post({ amount_cents: 900_000_001 }), 400, 'invalid_request', 'amount_cents');
    expectApiError(
      await post({ amount_cents: 100, expires_at: T0 / 1000 }),
      400,
      'invalid_request',
      'expires_at',
    );
    expectApiError(
      await post({ amount_cents: 100, expires_at: (T0 - DAY) / 1000 }),
      400,
      'invalid_request',
      'expires_at',
    );
    expectApiError(await post({ amount_cents: 100, kind: 'gift' }), 400, 'invalid_request');
    expect(await grantRows(gw.services.store.db, org)).toEqual([]);
  });

  it('draws the grant that expires first first, then the next; never-expiring grants last', async () => {
    const org = await freshOrganization();
    const late = await grant(org, 100, T0 + 30 * DAY);
    const never = await grant(org, 100);
    clock += MINUTE;
    const soon = await grant(org, 100, T0 + 10 * DAY); // granted last, expires first
    const { creditDrawn } = await use(org, T0 + HOUR, 150 * CENT);
    expect(creditDrawn).toBe(150 * CENT);
    const remaining = await remainingOf(org);
    expect(remaining.get(soon.id)).toBe(0);
    expect(remaining.get(late.id)).toBe(50 * CENT);
    expect(remaining.get(never.id)).toBe(100 * CENT);
    const month = periodBounds('month', T0, TZ).start;
    const byGrant = (a: { grantId: string }, b: { grantId: string }) => (a.grantId < b.grantId ? -1 : 1);
    expect((await drawRows(gw.services.store.db, org)).sort(byGrant)).toEqual(
      [
        { grantId: soon.id, monthStart: month, amount: 100 * CENT },
        { grantId: late.id, monthStart: month, amount: 50 * CENT },
      ].sort(byGrant),
    );
    expect((await billingOf(gw, org)).credit_balance_usd).toBe(1.5);

    // More than everything left: the grants are emptied, the rest is owed (not drawn).
    const second = await use(org, T0 + 2 * HOUR, 400 * CENT);
    expect(second.creditDrawn).toBe(150 * CENT);
    expect([...(await remainingOf(org)).values()]).toEqual([0, 0, 0]);
    expect((await billingOf(gw, org)).credit_balance_usd).toBe(0);
  });

  it('never draws an expired grant, but does draw it for usage from before it expired', async () => {
    const org = await freshOrganization();
    const expiring = await grant(org, 100, T0 + DAY);
    const lasting = await grant(org, 100);
    // The clock is past the expiry when both are ingested.
    clock = T0 + 2 * DAY;
    expect((await billingOf(gw, org)).credit_balance_usd).toBe(1);
    const after = await use(org, T0 + DAY + MINUTE, 30 * CENT);
    expect(after.creditDrawn).toBe(30 * CENT);
    let remaining = await remainingOf(org);
    expect(remaining.get(expiring.id)).toBe(100 * CENT);
    expect(remaining.get(lasting.id)).toBe(70 * CENT);
    // Usage of the minute before the expiry, arriving late: the expiring grant was in force then.
    const before = await use(org, T0 + DAY - MINUTE, 20 * CENT);
    expect(before.creditDrawn).toBe(20 * CENT);
    remaining = await remainingOf(org);
    expect(remaining.get(expiring.id)).toBe(80 * CENT);
    expect(remaining.get(lasting.id)).toBe(70 * CENT);
    // The expired grant's remainder is not part of the balance.
    expect((await billingOf(gw, org)).credit_balance_usd).toBe(0.7);
  });

  it('a grant pays for usage from its own minute on, never for earlier usage', async () => {
    const org = await freshOrganization();
    clock = T0 + 30_000; // half way through the minute
    const g = await grant(org, 100);
    const earlier = await use(org, T0 - MINUTE, 10 * CENT);
    expect(earlier.creditDrawn).toBe(0);
    const sameMinute = await use(org, T0 + 5_000, 10 * CENT);
    expect(sameMinute.creditDrawn).toBe(10 * CENT);
    expect((await remainingOf(org)).get(g.id)).toBe(90 * CENT);
  });

  it('never draws a voided grant; voiding removes it from the balance', async () => {
    const org = await freshOrganization();
    const voided = await grant(org, 100);
    const kept = await grant(org, 100, T0 + 20 * DAY);
    clock += HOUR;
    const response = expectOk(
      await adminRequest<GrantObject>(gw, 'POST', `/billing/credit_grants/${voided.id}/void`, {
        body: { organization_id: org },
      }),
    );
    expect(response).toMatchObject({ id: voided.id, voided_at: (T0 + HOUR) / 1000, remaining_usd: 1 });
    expect((await billingOf(gw, org)).credit_balance_usd).toBe(1);
    // Usage from before the void, too: a voided grant is gone for good.
    const { creditDrawn } = await use(org, T0 + 5 * MINUTE, 150 * CENT);
    expect(creditDrawn).toBe(100 * CENT);
    const remaining = await remainingOf(org);
    expect(remaining.get(voided.id)).toBe(100 * CENT);
    expect(remaining.get(kept.id)).toBe(0);
    // Voiding again: nothing left to void.
    expectApiError(
      await adminRequest(gw, 'POST', `/billing/credit_grants/${voided.id}/void`, {
        body: { organization_id: org },
      }),
      404,
      'not_found',
    );
  });

  it('re-ingesting the same events draws nothing more', async () => {
    const org = await freshOrganization();
    const g = await grant(org, 100);
    const events = [1, 2, 3].map((i) =>
      usageEvent({
        organizationId: org,
        apiKeyId: 'key_credit',
        createdAt: new Date(T0 + i * MINUTE),
        costNanoUsd: 7 * CENT + i,
      }),
    );
    const first = await ingestUsage(gw.services.store.db, events, TZ);
    expect(first).toEqual({ inserted: 3, creditDrawn: 21 * CENT + 6 });
    const draws = await drawRows(gw.services.store.db, org);
    expect(await ingestUsage(gw.services.store.db, events, TZ)).toEqual({ inserted: 0, creditDrawn: 0 });
    expect(await ingestUsage(gw.services.store.db, [...events].reverse(), TZ)).toEqual({
      inserted: 0,
      creditDrawn: 0,
    });
    expect(await drawRows(gw.services.store.db, org)).toEqual(draws);
    expect((await remainingOf(org)).get(g.id)).toBe(100 * CENT - (21 * CENT + 6));
    // A batch with one new event among old ones: only the new one draws.
    const fresh = usageEvent({
      organizationId: org,
      apiKeyId: 'key_credit',
      createdAt: new Date(T0),
      costNanoUsd: CENT,
    });
    expect(await ingestUsage(gw.services.store.db, [...events, fresh], TZ)).toEqual({
      inserted: 1,
      creditDrawn: CENT,
    });
    expect((await remainingOf(org)).get(g.id)).toBe(100 * CENT - (22 * CENT + 6));
  });

  it('keeps draws per billing month in the billing time zone', async () => {
    const org = await freshOrganization();
    const { start: april } = periodBounds('month', Date.UTC(2031, 3, 15), TZ);
    clock = april - 2 * DAY;
    const g = await grant(org, 100);
    // 23:59 and 00:00 New York time either side of April 1st (04:00 UTC).
    await use(org, april - MINUTE, 3 * CENT);
    await use(org, april, 5 * CENT);
    const march = periodBounds('month', april - MINUTE, TZ).start;
    expect(march).toBe(Date.UTC(2031, 2, 1, 5)); // EST, before the DST change
    expect(april).toBe(Date.UTC(2031, 3, 1, 4)); // EDT
    expect(await drawRows(gw.services.store.db, org)).toEqual([
      { grantId: g.id, monthStart: march, amount: 3 * CENT },
      { grantId: g.id, monthStart: april, amount: 5 * CENT },
    ]);
  });

  it('property: balance = grants - draws; draws = the in-force FIFO model, for any usage', async () => {
    const grantArb = fc.record({
      cents: fc.integer({ min: 1, max: 50 }),
      /** Days after T0 it expires, or never. */
      expiresDays: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
    });
    const usageArb = fc.record({
      at: fc.integer({ min: 0, max: 8 * 24 * 60 }).map((m) => T0 + m * MINUTE),
      nano: fc.integer({ min: 1, max: 30 * CENT }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(grantArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.array(usageArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 }),
        async (grantSpecs, batches) => {
          const org = await freshOrganization();
          const model = [];
          for (const [i, spec] of grantSpecs.entries()) {
            clock = T0 + i * 1000;
            const expiresAt = spec.expiresDays ? T0 + spec.expiresDays * DAY : null;
            const created = await grant(org, spec.cents, expiresAt ?? undefined);
            model.push({ id: created.id, createdAt: clock, expiresAt, remaining: spec.cents * CENT });
          }
          let drawn = 0;
          for (const batch of batches) {
            const events = batch.map((u) =>
              usageEvent({
                organizationId: org,
                apiKeyId: 'key_credit',
                createdAt: new Date(u.at),
                costNanoUsd: u.nano,
              }),
            );
            const result = await ingestUsage(gw.services.store.db, events, TZ);
            // The model: each minute of the batch in time order, from the grants in force then,
            // the one expiring first first (never-expiring last), then the oldest.
            const minutes = new Map<number, number>();
            for (const u of batch) {
              const minute = Math.floor(u.at / MINUTE) * MINUTE;
              minutes.set(minute, (minutes.get(minute) ?? 0) + u.nano);
            }
            const order = [...model].sort(
              (a, b) =>
                (a.expiresAt ?? Number.POSITIVE_INFINITY) - (b.expiresAt ?? Number.POSITIVE_INFINITY) ||
                a.createdAt - b.createdAt,
            );
            let batchDrawn = 0;
            for (const [minute, cost] of [...minutes].sort((a, b) => a[0] - b[0])) {
              let owed = cost;
              for (const g of order) {
                if (g.createdAt >= minute + MINUTE || (g.expiresAt !== null && g.expiresAt <= minute))
                  continue;
                const take = Math.min(owed, g.remaining);
                g.remaining -= take;
                owed -= take;
                batchDrawn += take;
              }
            }
            expect(result.creditDrawn).toBe(batchDrawn);
            drawn += batchDrawn;
          }
          const rows = await grantRows(gw.services.store.db, org);
          const draws = await drawRows(gw.services.store.db, org);
          const drawsTotal = draws.reduce((s, d) => s + d.amount, 0);
          expect(drawsTotal).toBe(drawn);
          expect(rows.reduce((s, g) => s + g.amount, 0) - drawsTotal).toBe(
            rows.reduce((s, g) => s + g.remaining, 0),
          );
          for (const g of model) expect(rows.find((r) => r.id === g.id)!.remaining).toBe(g.remaining);
          for (const row of rows) {
            const perGrant = draws.filter((d) => d.grantId === row.id).reduce((s, d) => s + d.amount, 0);
            expect(row.amount - perGrant).toBe(row.remaining);
          }
          // The balance at a moment: what the grants in force then still hold.
          clock = T0 + 3 * DAY + 1;
          const live = model.filter((g) => g.expiresAt === null || g.expiresAt > clock);
          const balance = (await gw.services.billing.balance(org)).availableNanoUsd;
          expect(balance).toBe(live.reduce((s, g) => s + g.remaining, 0));
        },
      ),
      { numRuns: 15 },
    );
  });
});

describe.each(backends)('the free trial (%s)', (backend) => {
  let gw: TestGateway;
  const now = Date.UTC(2031, 0, 20, 9);
  beforeAll(async () => {
    gw = await createTestGateway({ backend, now: () => now });
  });
  afterAll(() => gw?.close());

  const service = (trialCreditCents: number, defaultPlan: 'free_trial' | 'prepaid' = 'free_trial') =>
    new BillingService(gw.services.store.db, {
      timeZone: 'UTC',
      defaultPlan,
      trialCreditCents,
      trialDays: 14,
      invoiceDueDays: 14,
      issuer: 'Test',
      provider: new ManualPaymentProvider(),
      changed: async () => {},
      now: () => now,
    });

  it('a new free-trial organization gets the trial credit once, even when asked concurrently', async () => {
    const billing = service(300);
    const org = (await createSecondOrganization(gw, 'Trial customer')).organization.id;
    const accounts = await Promise.all(Array.from({ length: 6 }, () => billing.account(org)));
    expect(new Set(accounts.map((a) => a.plan))).toEqual(new Set(['free_trial']));
    await billing.account(org);
    const { grants, availableNanoUsd } = await billing.balance(org);
    expect(availableNanoUsd).toBe(300 * CENT);
    expect(grants).toHaveLength(1);
    expect(grants[0]).toMatchObject({
      kind: 'trial',
      amountNanoUsd: 300 * CENT,
      expiresAt: new Date(now + 14 * DAY),
      createdBy: 'system:trial',
    });
    // Changing plans grants nothing more.
    await billing.setPlan(org, 'prepaid', TEST_ACTOR);
    await billing.setPlan(org, 'free_trial', TEST_ACTOR);
    expect((await billing.balance(org)).grants).toHaveLength(1);
  });

  it('no trial credit when it is configured to 0, nor for another default plan', async () => {
    const zero = (await createSecondOrganization(gw, 'No trial')).organization.id;
    await service(0).account(zero);
    expect((await service(0).balance(zero)).grants).toEqual([]);
    const prepaid = (await createSecondOrganization(gw, 'Prepaid')).organization.id;
    expect((await service(300, 'prepaid').account(prepaid)).plan).toBe('prepaid');
    expect((await service(300).balance(prepaid)).grants).toEqual([]);
  });
});
