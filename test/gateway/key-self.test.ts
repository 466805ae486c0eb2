/**
 * A key reads itself: `GET /v1/key` (the budgets and limits that apply to it, its credit) and
 * `GET /v1/key/usage` (its own usage and cost), whatever its permissions, with no admin rights,
 * and never anything of another key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { storeUsage } from '../helpers/usage-events.ts';

interface KeyView {
  object: string;
  id: string;
  redacted_value: string;
  project_id: string;
  budgets: {
    scope: { type: string; id: string };
    metric: string;
    hard_limit: number;
    spent: number;
    remaining: number;
    enforcing: boolean;
  }[];
  rate_limits: { scope: { type: string; id: string }; model: string; max_requests_per_1_minute: number }[];
  credit: { plan: string; remaining_usd: number } | null;
}

interface UsagePage {
  key_id: string;
  data: {
    start_time: number;
    results: {
      kind: string;
      model: string;
      num_requests: number;
      input_tokens: number;
      output_tokens: number;
      cost_usd: number;
    }[];
  }[];
  has_more: boolean;
  next_page: string | null;
}

describe('a key reads its own usage and what is left', () => {
  let gw: TestGateway;
  const org = () => gw.instance.organization.id;

  beforeAll(async () => {
    gw = await createTestGateway({
      config: { prices: [{ model: 'mock-gpt-4o', input: 1000, output: 2000 }] },
    });
  });
  afterAll(() => gw?.close());

  const get = <T>(key: IssuedKey, path: string) =>
    gw.request('GET', path, { headers: { authorization: `Bearer ${key.secret}` } }) as Promise<{
      status: number;
      body: T;
    }>;
  const chat = (key: IssuedKey) =>
    gw
      .openai(key.secret)
      .chat.completions.create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }] });

  it('any valid key, even read-only or restricted to one resource, reads itself', async () => {
    for (const scopes of [['api.all.read'], ['api.files.read'], []]) {
      const key = await gw.createKey({ scopes });
      const response = await get<KeyView>(key, '/v1/key');
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({
        object: 'api_key',
        id: key.key.id,
        redacted_value: key.key.redactedValue,
        project_id: gw.instance.project.id,
        credit: null, // pay as you go: nothing runs out
      });
      expect(JSON.stringify(response.body)).not.toContain(key.secret);
    }
  });

  it('shows the budgets and limits that apply to it and what remains, not those of other keys', async () => {
    const key = await gw.createKey();
    const other = await gw.createKey();
    const limits = gw.services.limits;
    await limits.setBudget(
      org(),
      {
        scope: { type: 'api_key', id: key.key.id },
        metric: 'tokens',
        period: 'day',
        hardLimit: 10_000,
      },
      TEST_ACTOR,
    );
    await limits.setBudget(
      org(),
      {
        scope: { type: 'api_key', id: other.key.id },
        metric: 'tokens',
        period: 'day',
        hardLimit: 5,
      },
      TEST_ACTOR,
    );
    await limits.setBudget(
      org(),
      {
        scope: { type: 'project', id: gw.instance.project.id },
        metric: 'cost',
        period: 'month',
        hardLimit: 100_000,
      },
      TEST_ACTOR,
    );
    await limits.updateRateLimit(
      org(),
      { type: 'api_key', id: key.key.id },
      '*',
      {
        maxRequestsPerMinute: 50,
      },
      TEST_ACTOR,
    );
    await limits.updateRateLimit(
      org(),
      { type: 'api_key', id: other.key.id },
      '*',
      {
        maxRequestsPerMinute: 7,
      },
      TEST_ACTOR,
    );

    const completion = await chat(key);
    await gw.services.enforcer.drain();
    const used = (completion.usage?.prompt_tokens ?? 0) + (completion.usage?.completion_tokens ?? 0);
    expect(used).toBeGreaterThan(0);

    const { body } = await get<KeyView>(key, '/v1/key');
    const tokens = body.budgets.find((b) => b.scope.type === 'api_key');
    expect(tokens).toMatchObject({
      scope: { id: key.key.id },
      metric: 'tokens',
      hard_limit: 10_000,
      spent: used,
      remaining: 10_000 - used,
      enforcing: false,
    });
    const cost = body.budgets.find((b) => b.scope.type === 'project');
    expect(cost?.metric).toBe('cost');
    expect(cost?.spent).toBeGreaterThan(0); // priced at $1000 / $2000 per 1M tokens
    expect(body.budgets.some((b) => b.scope.id === other.key.id)).toBe(false);
    expect(body.rate_limits).toEqual([
      expect.objectContaining({
        scope: { type: 'api_key', id: key.key.id },
        model: '*',
        max_requests_per_1_minute: 50,
      }),
    ]);
  });

  it('reads its own usage and cost in buckets, and only its own', async () => {
    const key = await gw.createKey();
    const other = await gw.createKey();
    const mine = [await chat(key), await chat(key)];
    await chat(other);
    // The gateway's recorder here keeps events in memory: store them as the database recorder would.
    await storeUsage(gw.services.store.db, gw.usage.events.splice(0));

    const start = Math.floor(Date.now() / 1000) - 3600;
    const { status, body } = await get<UsagePage>(
      key,
      `/v1/key/usage?start_time=${start}&bucket_width=1h&limit=2`,
    );
    expect(status).toBe(200);
    expect(body.key_id).toBe(key.key.id);
    const results = body.data.flatMap((bucket) => bucket.results);
    const input = mine.reduce((sum, c) => sum + (c.usage?.prompt_tokens ?? 0), 0);
    const output = mine.reduce((sum, c) => sum + (c.usage?.completion_tokens ?? 0), 0);
    expect(results.reduce((sum, r) => sum + r.num_requests, 0)).toBe(2);
    expect(results.reduce((sum, r) => sum + r.input_tokens, 0)).toBe(input);
    expect(results.reduce((sum, r) => sum + r.output_tokens, 0)).toBe(output);
    expect(results.every((r) => r.kind === 'completions' && r.model === 'mock-gpt-4o')).toBe(true);
    const cost = results.reduce((sum, r) => sum + r.cost_usd, 0);
    expect(cost).toBeCloseTo((input * 1000 + output * 2000) / 1e6, 9);
  });

  it('pages through a long range with next_page, bucket by bucket, to its end', async () => {
    const key = await gw.createKey();
    const hour = 3600;
    const end = Math.floor(Date.now() / 1000 / hour) * hour;
    const start = end - 5 * hour;
    const range = `start_time=${start}&end_time=${end}&bucket_width=1h&limit=2`;
    const starts: number[] = [];
    let page: string | null = null;
    let pages = 0;
    do {
      const query: string = `/v1/key/usage?${range}${page ? `&page=${encodeURIComponent(page)}` : ''}`;
      const { status, body }: { status: number; body: UsagePage } = await get<UsagePage>(key, query);
      expect(status).toBe(200);
      starts.push(...body.data.map((bucket) => bucket.start_time));
      expect(body.has_more).toBe(body.next_page !== null);
      page = body.next_page;
      pages++;
    } while (page !== null && pages < 10);
    expect(pages).toBe(3);
    expect(starts).toEqual([0, 1, 2, 3, 4].map((i) => start + i * hour));
    expect((await get(key, `/v1/key/usage?${range}&page=bm9wZQ`)).status).toBe(400);
  });

  it('refuses bad parameters, and an admin key', async () => {
    const key = await gw.createKey();
    expect((await get(key, '/v1/key/usage')).status).toBe(400); // start_time is required
    expect((await get(key, '/v1/key/usage?start_time=100&end_time=50')).status).toBe(400);
    const admin = await gw.request('GET', '/v1/key', { headers: { authorization: `Bearer ${gw.adminKey}` } });
    expect(admin.status).toBe(403);
    const nobody = await gw.request('GET', '/v1/key', {});
    expect(nobody.status).toBe(401);
  });
});
