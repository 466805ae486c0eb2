/**
 * Credit on the gateway, as a client sees it through the official `openai` SDK: a prepaid
 * organization runs out mid-month and gets a RateLimitError `insufficient_quota` that the SDK does
 * not retry (x-should-retry: false); a top-up unblocks it; a free-trial's credit stops at its
 * expiry; pay as you go is never refused for credit.
 *
 * Where the draw happens: the gateway's credit gate takes each request's cost off its in-memory
 * view at once (`creditGate.spent`), and the usage recorder draws the grants in the database when
 * it writes the batch (`ingestUsage`). createTestApp has the production DatabaseUsageRecorder
 * (flushed with `services.usage.flush()`), so the first suite checks both; createTestGateway keeps
 * events in a MemoryUsageRecorder (nothing reaches the database unless stored explicitly), which
 * is enough where only the gate's view matters and a fake clock is needed.
 */
import { sql } from 'drizzle-orm';
import type OpenAI from 'openai';
import { RateLimitError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NANO_USD_PER_CENT } from '../../src/core/pricing.ts';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import { rowsOf } from '../../src/store/rows.ts';
import { adminRequest, type CreatedProjectKey, createProjectKey, expectOk } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, injectFetch, type TestApp } from '../helpers/test-app.ts';
import { createTestGateway, refusal, type TestGateway } from '../helpers/test-gateway.ts';
import { storeUsage } from '../helpers/usage-events.ts';
import {
  billingOf,
  chat,
  countingClient,
  drawRows,
  type GrantObject,
  grantCredit,
  grantRows,
  type ListObject,
  type PaymentObject,
  setPlan,
} from './billing-helpers.ts';

/** USD per 1M tokens: a request of the mock costs a few cents. */
const PRICE = { model: 'mock-gpt-4o', input: 300, output: 900 };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function expectInsufficientQuota(promise: Promise<unknown>) {
  const error = await refusal(promise);
  expect(error).toBeInstanceOf(RateLimitError);
  expect(error.status).toBe(429);
  expect(error.code).toBe('insufficient_quota');
  expect(error.type).toBe('insufficient_quota');
  expect(error.headers?.get('x-should-retry')).toBe('false');
  expect(error.message).toMatch(/no credit left/);
  return error;
}

describe.each(backends)('prepaid credit through the gateway, database recorder (%s)', (backend) => {
  let t: TestApp;
  let key: CreatedProjectKey;
  let org: string;
  const counter = { attempts: 0 };
  let client: OpenAI;
  /** nano-USD one chat request costs (measured once, checked against the price). */
  let cost: number;

  beforeAll(async () => {
    t = await createTestApp({ backend, config: { prices: [PRICE] } });
    org = t.instance.organization.id;
    key = await createProjectKey(t, t.instance.project.id);
    client = countingClient(
      { apiKey: key.value, baseURL: 'http://keyport.test/v1', fetch: injectFetch(t.app), maxRetries: 3 },
      counter,
    );
  });
  afterAll(() => t?.close());

  const upstreamRequests = () => t.services.mockUpstream!.stats.requests;

  it('prices a request at the configured price (pay as you go, the default plan)', async () => {
    expect((await billingOf(t)).plan).toBe('pay_as_you_go');
    const completion = await chat(client);
    await t.services.usage.flush();
    const [event] = rowsOf<{ cost_nano_usd: string; input_tokens: number; output_tokens: number }>(
      await t.services.store.db.execute(
        sql`select cost_nano_usd, input_tokens, output_tokens from usage_events where api_key_id = ${key.id}`,
      ),
    );
    expect(event!.input_tokens).toBe(completion.usage!.prompt_tokens);
    expect(event!.output_tokens).toBe(completion.usage!.completion_tokens);
    cost = Number(event!.cost_nano_usd);
    expect(cost).toBe(
      completion.usage!.prompt_tokens * PRICE.input * 1000 +
        completion.usage!.completion_tokens * PRICE.output * 1000,
    );
    expect(cost).toBeGreaterThan(NANO_USD_PER_CENT);
  });

  it('prepaid with no credit: refused at once, before the upstream, and the SDK does not retry', async () => {
    await setPlan(t, 'prepaid');
    const before = upstreamRequests();
    counter.attempts = 0;
    await expectInsufficientQuota(chat(client));
    // maxRetries is 3: a retried 429 would make 4 attempts.
    expect(counter.attempts).toBe(1);
    expect(upstreamRequests()).toBe(before);
  });

  it('runs out mid-month: requests pass while credit is left, then insufficient_quota', async () => {
    // A grant worth 3.5 requests: the 4th starts with credit left and completes, the 5th is refused.
    const grantCents = Math.ceil((3.5 * cost) / NANO_USD_PER_CENT);
    const grant = await grantCredit(t, { amount_cents: grantCents });
    const expected = Math.ceil((grantCents * NANO_USD_PER_CENT) / cost);
    expect(expected).toBe(4);
    let passed = 0;
    for (; passed < 10; passed++) {
      try {
        await chat(client);
      } catch (error) {
        expect(error).toBeInstanceOf(RateLimitError);
        break;
      }
    }
    expect(passed).toBe(expected);
    counter.attempts = 0;
    const before = upstreamRequests();
    await expectInsufficientQuota(chat(client));
    expect(counter.attempts).toBe(1);
    expect(upstreamRequests()).toBe(before);

    // The recorder draws the grant when it writes the batch: all of it, the rest is owed.
    await t.services.usage.flush();
    const [row] = (await grantRows(t.services.store.db, org)).filter((g) => g.id === grant.id);
    expect(row!.remaining).toBe(0);
    const draws = await drawRows(t.services.store.db, org);
    expect(draws.filter((d) => d.grantId === grant.id).reduce((s, d) => s + d.amount, 0)).toBe(
      grantCents * NANO_USD_PER_CENT,
    );
    expect((await billingOf(t)).credit_balance_usd).toBe(0);
    // Reloaded from the database (not this instance's memory): still refused.
    t.services.creditGate.invalidate(org);
    await expectInsufficientQuota(chat(client));
  });

  it('a top-up payment (no invoice) grants credit and unblocks at once', async () => {
    const payment = expectOk(
      await adminRequest<PaymentObject>(t, 'POST', '/billing/payments', {
        body: { amount_cents: 50, method: 'bank_transfer', reference: 'TOPUP-1' },
      }),
    );
    expect(payment).toMatchObject({
      invoice_id: null,
      amount_cents: 50,
      provider: 'manual',
      status: 'succeeded',
    });
    const grants = expectOk(await adminRequest<ListObject<GrantObject>>(t, 'GET', '/billing/credit_grants'));
    const topUp = grants.data.find((g) => g.payment_id === payment.id);
    expect(topUp).toMatchObject({ kind: 'top_up', amount_cents: 50, remaining_usd: 0.5, expires_at: null });
    expect((await billingOf(t)).credit_balance_usd).toBe(0.5);

    await chat(client);
    await t.services.usage.flush();
    // The request after the top-up drew from it (what was owed before is not taken from it).
    const [row] = (await grantRows(t.services.store.db, org)).filter((g) => g.id === topUp!.id);
    expect(row!.remaining).toBe(50 * NANO_USD_PER_CENT - cost);
    expect((await billingOf(t)).credit_balance_usd).toBe((50 * NANO_USD_PER_CENT - cost) / 1e9);
  });

  it('moving to pay as you go unblocks at once; back to prepaid with credit used up refuses again', async () => {
    // Use up the top-up's credit.
    for (let i = 0; i < 100; i++) {
      try {
        await chat(client);
      } catch (error) {
        expect(error).toBeInstanceOf(RateLimitError);
        break;
      }
    }
    await expectInsufficientQuota(chat(client));
    await setPlan(t, 'pay_as_you_go');
    for (let i = 0; i < 3; i++) await chat(client);
    await setPlan(t, 'prepaid');
    await t.services.usage.flush();
    expect((await billingOf(t)).credit_balance_usd).toBe(0);
    await expectInsufficientQuota(chat(client));
  });
});

describe.each(backends)('the credit view reloaded while usage is not yet written (%s)', (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // Batches written rarely: the usage of these requests stays in the recorder, not the database.
    t = await createTestApp({ backend, config: { prices: [PRICE], usageFlushMs: 600_000 } });
  });
  afterAll(() => t?.close());

  it('counts this instance’s unwritten usage: a reload does not hand spent credit back', async () => {
    const key = await createProjectKey(t, t.instance.project.id);
    const client = countingClient(
      { apiKey: key.value, baseURL: 'http://keyport.test/v1', fetch: injectFetch(t.app), maxRetries: 0 },
      { attempts: 0 },
    );
    await setPlan(t, 'prepaid');
    await grantCredit(t, { amount_cents: 1 });
    const first = await chat(client); // the one cent is spent (a request costs more)
    expect(first.usage!.total_tokens).toBeGreaterThan(0);
    // The database still has the cent; the view is reloaded from it (another change, a TTL).
    t.services.creditGate.invalidate(t.instance.organization.id);
    await expectInsufficientQuota(chat(client));
    await t.services.usage.flush();
    t.services.creditGate.invalidate(t.instance.organization.id);
    await expectInsufficientQuota(chat(client));
  });
});

describe.each(backends)('free trial and pay as you go on the gateway, fake clock (%s)', (backend) => {
  let gw: TestGateway;
  let clock: number;
  let key: IssuedKey;
  const start = Date.UTC(2031, 4, 10, 12);

  beforeAll(async () => {
    clock = start;
    gw = await createTestGateway({
      backend,
      now: () => clock,
      config: { prices: [PRICE], defaultPlan: 'free_trial', trialCreditCents: 1000, trialDays: 7 },
    });
    key = await gw.createKey();
  });
  afterAll(() => gw?.close());

  it('a new organization on the free trial has the trial credit, expiring after the trial', async () => {
    const billing = await billingOf(gw);
    expect(billing.plan).toBe('free_trial');
    expect(billing.credit_balance_usd).toBe(10);
    const grants = expectOk(await adminRequest<ListObject<GrantObject>>(gw, 'GET', '/billing/credit_grants'));
    expect(grants.data).toHaveLength(1);
    expect(grants.data[0]).toMatchObject({
      kind: 'trial',
      amount_cents: 1000,
      expires_at: (start + 7 * DAY) / 1000,
    });
  });

  it('passes during the trial and is refused from the moment the trial credit expires', async () => {
    const client = gw.openai(key.secret, { maxRetries: 2 });
    for (let i = 0; i < 3; i++) await chat(client);
    clock = start + 7 * DAY - 60_000;
    await chat(client);
    clock = start + 7 * DAY + 1;
    const before = gw.mock.stats.requests;
    const counter = { attempts: 0 };
    const counted = countingClient(
      { apiKey: key.secret, baseURL: `${gw.url}/v1`, fetch, maxRetries: 2 },
      counter,
    );
    await expectInsufficientQuota(chat(counted));
    expect(counter.attempts).toBe(1);
    await expectInsufficientQuota(chat(client));
    expect(gw.mock.stats.requests).toBe(before);
    expect((await billingOf(gw)).credit_balance_usd).toBe(0);
  });

  it('pay as you go is never refused for credit, whatever it spends', async () => {
    await setPlan(gw, 'pay_as_you_go');
    const client = gw.openai(key.secret);
    const before = gw.usage.events.length;
    for (let i = 0; i < 8; i++) await chat(client);
    const spent = gw.usage.events.slice(before).reduce((s, e) => s + e.costNanoUsd, 0);
    expect(spent).toBeGreaterThan(20 * NANO_USD_PER_CENT);
    // The usage reaches the database (as the recorder would write it): still no refusal, and the
    // balance stays at zero (nothing to draw from).
    await storeUsage(gw.services.store.db, gw.usage.events.slice(before), gw.config.billingTimeZone);
    gw.services.creditGate.invalidate(gw.instance.organization.id);
    for (let i = 0; i < 3; i++) await chat(client);
    expect((await billingOf(gw)).plan).toBe('pay_as_you_go');
  });

  it('prepaid via the configured default plan: a new organization with no credit is refused', async () => {
    const other = await createTestGateway({
      backend,
      now: () => clock,
      config: { prices: [PRICE], defaultPlan: 'prepaid' },
    });
    try {
      const otherKey = await other.createKey();
      await expectInsufficientQuota(chat(other.openai(otherKey.secret)));
      expect(other.mock.stats.requests).toBe(0);
      expect(await billingOf(other)).toMatchObject({ plan: 'prepaid', credit_balance_usd: 0 });
      // Credit granted by the operator: requests pass.
      await grantCredit(other, { amount_cents: 100 });
      await chat(other.openai(otherKey.secret));
      expect(other.mock.stats.requests).toBe(1);
    } finally {
      await other.close();
    }
  });
});
