/**
 * Price changes through POST /prices: effective from a future moment (requests before it keep
 * the old price, requests after it get the new one, on the real gateway), never in the past, so
 * what was recorded keeps its cost; a price not in effect yet can be deleted, one in effect cannot.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../src/billing/usage-event.ts';
import { rowsOf } from '../../src/store/rows.ts';
import { adminRequest, expectApiError, expectOk } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestGateway, sleep, type TestGateway } from '../helpers/test-gateway.ts';
import { storeUsage } from '../helpers/usage-events.ts';
import {
  chat,
  type InvoiceObject,
  type ListObject,
  type PriceObject,
  roundHalfUpCents,
} from './billing-helpers.ts';

const MODEL = 'mock-gpt-4o';
const CONFIG_PRICE = { model: MODEL, input: 1, output: 2 };

describe.each(backends)('prices (%s)', (backend) => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await createTestGateway({ backend, config: { prices: [CONFIG_PRICE] } });
  });
  afterAll(() => gw?.close());

  const listPrices = async () =>
    expectOk(await adminRequest<ListObject<PriceObject>>(gw, 'GET', '/prices')).data;
  const addPrice = (body: Record<string, unknown>) =>
    adminRequest<PriceObject>(gw, 'POST', '/prices', { body });
  const expectedCost = (e: UsageEvent, price: { input: number; output: number }) =>
    e.inputTokens * price.input * 1000 + e.outputTokens * price.output * 1000;

  it('lists config and OpenAI list prices, marking which are in effect', async () => {
    const prices = await listPrices();
    expect(prices.find((p) => p.source === 'config' && p.model === MODEL)).toMatchObject({
      id: null,
      input: 1,
      output: 2,
      effective_at: null,
      current: true,
    });
    expect(prices.find((p) => p.source === 'default' && p.model === 'gpt-4o')).toMatchObject({
      input: 2.5,
      cached_input: 1.25,
      output: 10,
      current: true,
    });
  });

  it('a future price applies from its moment on: requests before keep the old price, after get the new', async () => {
    const key = await gw.createKey();
    const client = gw.openai(key.secret);
    const newPrice = { input: 10, output: 30 };
    await chat(client);
    // Far enough ahead for the price's creation and a request before it, even on a busy machine.
    const effectiveAt = Math.ceil(Date.now() / 1000) + 4;
    const created = expectOk(await addPrice({ model: MODEL, ...newPrice, effective_at: effectiveAt }));
    expect(created).toMatchObject({
      object: 'organization.price',
      id: expect.stringMatching(/\S/),
      model: MODEL,
      input: 10,
      cached_input: null,
      output: 30,
      effective_at: effectiveAt,
      source: 'database',
    });
    await chat(client);
    expect(Date.now()).toBeLessThan(effectiveAt * 1000);
    const listed = (await listPrices()).filter((p) => p.model === MODEL);
    expect(listed.map((p) => [p.source, p.id, p.current])).toEqual([
      ['database', created.id, false],
      ['config', null, true],
    ]);

    while (Date.now() < effectiveAt * 1000 + 20) await sleep(25);
    await chat(client);
    const events = gw.usage.events.filter((e) => e.apiKeyId === key.key.id);
    expect(events).toHaveLength(3);
    const [first, second, third] = events as [UsageEvent, UsageEvent, UsageEvent];
    expect(second.createdAt.getTime()).toBeLessThan(effectiveAt * 1000);
    expect(third.createdAt.getTime()).toBeGreaterThanOrEqual(effectiveAt * 1000);
    expect(first.costNanoUsd).toBe(expectedCost(first, CONFIG_PRICE));
    expect(second.costNanoUsd).toBe(expectedCost(second, CONFIG_PRICE));
    expect(third.costNanoUsd).toBe(expectedCost(third, newPrice));
    expect(third.costNanoUsd).toBeGreaterThan(second.costNanoUsd);
    expect((await listPrices()).filter((p) => p.model === MODEL).map((p) => [p.source, p.current])).toEqual([
      ['database', true],
      ['config', false],
    ]);

    // The price book answers by instant: the change never reaches back.
    const tokens = { inputTokens: 1000, cachedTokens: 0, outputTokens: 1000 };
    expect(gw.services.prices.costOf(MODEL, tokens, effectiveAt * 1000 - 1).total).toBe(3_000_000);
    expect(gw.services.prices.costOf(MODEL, tokens, effectiveAt * 1000).total).toBe(40_000_000);

    // Stored as recorded; a later price change leaves stored costs and the month's invoice alone.
    await storeUsage(gw.services.store.db, events, gw.config.billingTimeZone);
    const stored = async () =>
      rowsOf<{ request_id: string; cost_nano_usd: string | number }>(
        await gw.services.store.db.execute(
          sql`select request_id, cost_nano_usd from usage_events where api_key_id = ${key.key.id} order by created_at`,
        ),
      ).map((r) => [r.request_id, Number(r.cost_nano_usd)]);
    const before = await stored();
    expect(before).toEqual(events.map((e) => [e.requestId, e.costNanoUsd]));
    const draftBefore = expectOk(await adminRequest<InvoiceObject>(gw, 'GET', '/invoices/upcoming'));
    const later = expectOk(await addPrice({ model: MODEL, input: 100, output: 100 }));
    expect(later.effective_at).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    await gw.services.prices.reload();
    expect(await stored()).toEqual(before);
    const draftAfter = expectOk(await adminRequest<InvoiceObject>(gw, 'GET', '/invoices/upcoming'));
    expect(draftAfter.lines).toEqual(draftBefore.lines);
    const input = draftAfter.lines.find((l) => l.model === MODEL && l.item === 'input');
    expect(input!.amount_cents).toBe(roundHalfUpCents(events.reduce((s, e) => s + e.costInputNanoUsd, 0)));
  });

  it('refuses a price effective in the past (beyond a minute of clock skew)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const error = expectApiError(
      await addPrice({ model: 'past-model', input: 1, output: 1, effective_at: now - 3600 }),
      400,
      'invalid_request',
      'effective_at',
    );
    expect(error.message).toMatch(/past/);
    expect((await listPrices()).some((p) => p.model === 'past-model')).toBe(false);
    expectOk(await addPrice({ model: 'skewed-model', input: 1, output: 1, effective_at: now - 20 }));
  });

  it('validates the price', async () => {
    expectApiError(await addPrice({ model: 'm', input: -1, output: 1 }), 400, 'invalid_request');
    expectApiError(
      await addPrice({ model: 'has space', input: 1, output: 1 }),
      400,
      'invalid_request',
      'model',
    );
    expectApiError(
      await addPrice({ model: 'm', input: 100_001, output: 1 }),
      400,
      'invalid_request',
      'input',
    );
    expectApiError(
      await addPrice({ model: 'm', input: 1, output: 1, unit: 1001 }),
      400,
      'invalid_request',
      'unit',
    );
    expectApiError(await addPrice({ model: 'm', input: 1 }), 400, 'invalid_request');
    expectApiError(
      await addPrice({ model: 'm', input: 1, output: 1, currency: 'eur' }),
      400,
      'invalid_request',
    );
  });

  it('deletes a price not in effect yet; refuses to delete one in effect; 404 for an unknown id', async () => {
    const future = expectOk(
      await addPrice({
        model: 'llama-*',
        input: 5,
        output: 5,
        effective_at: Math.floor(Date.now() / 1000) + 3600,
      }),
    );
    const current = expectOk(await addPrice({ model: 'llama-3', input: 0.5, output: 0.5 }));
    const deleted = expectOk(await adminRequest(gw, 'DELETE', `/prices/${future.id}`));
    expect(deleted).toEqual({ object: 'organization.price.deleted', id: future.id, deleted: true });
    await gw.services.prices.reload();
    expect((await listPrices()).some((p) => p.id === future.id)).toBe(false);
    expectApiError(await adminRequest(gw, 'DELETE', `/prices/${future.id}`), 404, 'not_found');
    const error = expectApiError(
      await adminRequest(gw, 'DELETE', `/prices/${current.id}`),
      400,
      'invalid_request',
      'price_id',
    );
    expect(error.message).toMatch(/in effect/);
    expect((await listPrices()).find((p) => p.id === current.id)).toMatchObject({ current: true });
    expectApiError(await adminRequest(gw, 'DELETE', '/prices/price_nope'), 404, 'not_found');
  });
});
