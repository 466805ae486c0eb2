/**
 * Rate limits, concurrency and budgets on the gateway, seen as a client sees them: through the
 * official `openai` SDK (its RateLimitError, its retries and what makes it stop retrying) and the
 * raw 429s and `x-ratelimit-*` headers, with the in-process limiter.
 */

import type OpenAI from 'openai';
import { RateLimitError } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { periodBounds } from '../../src/core/periods.ts';
import { countPromptTokens } from '../../src/gateway/token-count.ts';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import { alerts } from '../../src/store/schema.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, refusal, sleep, type TestGateway, waitFor } from '../helpers/test-gateway.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';

const chat = (client: OpenAI, extra: Record<string, unknown> = {}) =>
  client.chat.completions.create({
    model: 'mock-gpt-4o',
    messages: [{ role: 'user', content: 'Hello there' }],
    ...extra,
  });

const chatBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hello there' }], ...extra });

describe('rate limits on the gateway', () => {
  let gw: TestGateway;
  let clock: number;
  const org = () => gw.instance.organization.id;
  const project = () => gw.instance.project.id;
  const keyScope = (key: IssuedKey) => ({ type: 'api_key' as const, id: key.key.id });
  /** Sets the key's limit for all its models (`*`). */
  const limitKey = (
    key: IssuedKey,
    values: Parameters<TestGateway['services']['limits']['updateRateLimit']>[3],
  ) => gw.services.limits.updateRateLimit(org(), keyScope(key), '*', values, TEST_ACTOR);

  beforeAll(async () => {
    clock = Date.now();
    gw = await createTestGateway({ now: () => clock, config: { defaultMaxOutputTokens: 100 } });
  });
  afterAll(() => gw?.close());
  afterEach(() => {
    clock += 25 * 3600_000; // a fresh day for every test: buckets and daily budgets start full
  });

  const post = (key: IssuedKey, body = chatBody(), headers: Record<string, string> = {}) =>
    gw.request('POST', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json', ...headers },
      body,
    });

  it('sends no x-ratelimit headers when no limit applies', async () => {
    const key = await gw.createKey();
    const response = await post(key);
    expect(response.status).toBe(200);
    expect(Object.keys(response.headers).filter((h) => h.startsWith('x-ratelimit'))).toEqual([]);
  });

  it('counts requests per minute down in the headers, then refuses with a RateLimitError', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxRequestsPerMinute: 3 });
    for (const remaining of ['2', '1', '0']) {
      const response = await post(key);
      expect(response.status).toBe(200);
      expect(response.headers['x-ratelimit-limit-requests']).toBe('3');
      expect(response.headers['x-ratelimit-remaining-requests']).toBe(remaining);
      expect(response.headers['x-ratelimit-reset-requests']).toMatch(/^\d+(\.\d+)?s$|^\d+ms$|^\d+m[\d.]+s$/);
    }
    const error = await refusal(chat(gw.openai(key.secret)));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.status).toBe(429);
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.type).toBe('requests');
    expect(error.message).toMatch(
      new RegExp(
        `^429 Rate limit reached for mock-gpt-4o in API key ${key.key.id} on requests per min \\(RPM\\): Limit 3, Used 3, Requested 1\\. Please try again in 20s\\.$`,
      ),
    );
    expect(error.headers?.get('retry-after')).toBe('20');
    expect(error.headers?.get('retry-after-ms')).toBe('20000');
    expect(error.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    // Refused requests never reach the upstream and record no usage.
    expect(gw.usage.events.filter((e) => e.apiKeyId === key.key.id)).toHaveLength(3);
  });

  it('lets requests through again as the minute passes', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxRequestsPerMinute: 2 });
    expect((await post(key)).status).toBe(200);
    expect((await post(key)).status).toBe(200);
    expect((await post(key)).status).toBe(429);
    clock += 30_000; // one request's worth of the minute
    expect((await post(key)).status).toBe(200);
    expect((await post(key)).status).toBe(429);
    clock += 60_000;
    const response = await post(key);
    expect(response.status).toBe(200);
    expect(response.headers['x-ratelimit-remaining-requests']).toBe('1');
  });

  it('the tightest of organization, project and key limits wins, and says which it was', async () => {
    const key = await gw.createKey();
    const other = await gw.createKey();
    await gw.services.limits.updateRateLimit(
      org(),
      { type: 'organization', id: org() },
      '*',
      {
        maxRequestsPerMinute: 100,
      },
      TEST_ACTOR,
    );
    await gw.services.limits.updateRateLimit(
      org(),
      { type: 'project', id: project() },
      '*',
      {
        maxRequestsPerMinute: 3,
      },
      TEST_ACTOR,
    );
    await limitKey(key, { maxRequestsPerMinute: 1 });
    try {
      expect((await post(key)).status).toBe(200);
      const refused = await post(key);
      expect(refused.status).toBe(429);
      expect((refused.body as { error: { message: string } }).error.message).toContain(
        `API key ${key.key.id}`,
      );
      // The key's own limit is 1, but the project's (3) is shared with every key of the project.
      expect((await post(other)).status).toBe(200);
      const second = await post(other);
      expect(second.status).toBe(200);
      expect(second.headers['x-ratelimit-limit-requests']).toBe('3');
      expect(second.headers['x-ratelimit-remaining-requests']).toBe('0');
      const projectRefusal = await post(other);
      expect(projectRefusal.status).toBe(429);
      expect((projectRefusal.body as { error: { message: string } }).error.message).toContain(
        `project ${project()}`,
      );
    } finally {
      await gw.services.limits.deleteRateLimit(org(), { type: 'project', id: project() }, '*', TEST_ACTOR);
      await gw.services.limits.deleteRateLimit(org(), { type: 'organization', id: org() }, '*', TEST_ACTOR);
    }
  });

  it('per-model limits apply to that model only; * covers all models together', async () => {
    const key = await gw.createKey();
    await gw.services.limits.updateRateLimit(
      org(),
      keyScope(key),
      'mock-gpt-4o',
      {
        maxRequestsPerMinute: 1,
      },
      TEST_ACTOR,
    );
    await limitKey(key, { maxRequestsPerMinute: 3 });
    expect((await post(key)).status).toBe(200);
    expect((await post(key)).status).toBe(429);
    expect((await post(key, chatBody({ model: 'mock-gpt-4o-mini' }))).status).toBe(200);
    expect((await post(key, chatBody({ model: 'mock-gpt-4o-mini' }))).status).toBe(200);
    // Three requests went through in all: the key's all-models limit is spent.
    const refused = await post(key, chatBody({ model: 'mock-gpt-4o-mini' }));
    expect(refused.status).toBe(429);
  });

  it('a model’s limit covers its dated snapshots, as its price does', async () => {
    const key = await gw.createKey();
    await gw.services.limits.updateRateLimit(
      org(),
      keyScope(key),
      'mock-gpt-4o',
      { maxRequestsPerMinute: 1 },
      TEST_ACTOR,
    );
    expect((await post(key, chatBody({ model: 'mock-gpt-4o-2024-08-06' }))).status).toBe(200);
    expect((await post(key)).status).toBe(429);
    expect((await post(key, chatBody({ model: 'mock-gpt-4o-2024-11-20' }))).status).toBe(429);
    // Another model is another model.
    expect((await post(key, chatBody({ model: 'mock-gpt-4o-mini' }))).status).toBe(200);
  });

  it('charges estimated tokens at admission and reconciles them with the real usage', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxTokensPerMinute: 10_000 });
    const firstBody = {
      model: 'mock-gpt-4o',
      messages: [{ role: 'user', content: 'Hello there' }],
      max_tokens: 1000,
    };
    const first = await post(key, JSON.stringify(firstBody));
    expect(first.status).toBe(200);
    expect(first.headers['x-ratelimit-limit-tokens']).toBe('10000');
    // At admission: the prompt as counted locally plus max_tokens (the clock stands still here).
    expect(Number(first.headers['x-ratelimit-remaining-tokens'])).toBe(
      10_000 - 1000 - countPromptTokens(firstBody),
    );
    // The next response shows the first request at its real size: the rest was given back.
    const used = (first.body as { usage: { total_tokens: number } }).usage.total_tokens;
    const secondBody = { ...firstBody, max_tokens: 0 };
    const second = await post(key, JSON.stringify(secondBody));
    expect(second.status).toBe(200);
    expect(Number(second.headers['x-ratelimit-remaining-tokens'])).toBe(
      10_000 - used - countPromptTokens(secondBody),
    );
  });

  it('refuses a request larger than the token limit outright, and the SDK does not retry it', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxTokensPerMinute: 500 });
    const before = gw.transcript.length;
    const error = await refusal(chat(gw.openai(key.secret, { maxRetries: 3 }), { max_tokens: 1000 }));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.type).toBe('tokens');
    expect(error.message).toMatch(
      /^429 Request too large for mock-gpt-4o .* on tokens per min \(TPM\): Limit 500, Requested \d+\./,
    );
    expect(error.headers?.get('x-should-retry')).toBe('false');
    const responses = gw.transcript.slice(before).filter((entry) => entry.startsWith('HTTP '));
    expect(responses).toHaveLength(1);
  });

  it("the SDK's retries wait as retry-after-ms says, then succeed", async () => {
    // Time stands still during the burst (so no request's worth refills meanwhile), then runs.
    const start = Date.now();
    let runningSince: number | undefined;
    const realClockGateway = await createTestGateway({
      now: () => (runningSince === undefined ? start : start + (Date.now() - runningSince)),
    });
    try {
      const key = await realClockGateway.createKey();
      // 120 per minute: a request every 500 ms once the burst is spent.
      await realClockGateway.services.limits.updateRateLimit(
        realClockGateway.instance.organization.id,
        keyScope(key),
        '*',
        { maxRequestsPerMinute: 120 },
        TEST_ACTOR,
      );
      const client = realClockGateway.openai(key.secret, { maxRetries: 0 });
      const burst = await Promise.allSettled(Array.from({ length: 121 }, () => chat(client)));
      expect(burst.filter((r) => r.status === 'fulfilled').length).toBe(120);
      runningSince = Date.now();
      const times: number[] = [];
      const retrying = realClockGateway.openai(key.secret, {
        maxRetries: 2,
        fetch: async (url, init) => {
          times.push(performance.now());
          return realClockGateway.fetch(url, init);
        },
      });
      const before = realClockGateway.transcript.length;
      const completion = await chat(retrying);
      expect(completion.object).toBe('chat.completion');
      const statuses = realClockGateway.transcript
        .slice(before)
        .filter((entry) => entry.startsWith('HTTP '))
        .map((entry) => entry.split('\n')[0]);
      expect(statuses[0]).toBe('HTTP 429');
      expect(statuses.at(-1)).toBe('HTTP 200');
      const refusedHead = realClockGateway.transcript.slice(before).find((e) => e.startsWith('HTTP 429'))!;
      const waitMs = Number(/retry-after-ms: (\d+)/.exec(refusedHead)?.[1]);
      expect(waitMs).toBeGreaterThan(0);
      expect(waitMs).toBeLessThanOrEqual(500);
      // The SDK waited at least what the gateway asked for before trying again.
      expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(waitMs - 5);
    } finally {
      await realClockGateway.close();
    }
  });

  it('limits concurrent requests and frees the slot when one ends', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxConcurrentRequests: 2 });
    const seen = gw.mock.stats.requests;
    // Held long enough for the third request to meet both, even on a busy machine.
    const slow = () => post(key, chatBody(), { 'x-mock-delay-ms': '2000' });
    const inFlight = [slow(), slow()];
    await waitFor(() => gw.mock.stats.requests >= seen + 2, { what: 'both slow requests upstream' });
    const refused = await post(key);
    expect(refused.status).toBe(429);
    expect((refused.body as { error: { message: string } }).error.message).toMatch(
      /^Too many concurrent requests for mock-gpt-4o in API key .*: Limit 2, In flight 2\./,
    );
    expect(refused.headers['retry-after-ms']).toBe('1000');
    expect((await Promise.all(inFlight)).map((r) => r.status)).toEqual([200, 200]);
    expect((await post(key)).status).toBe(200);
  });

  it('a request that fails after its admission frees its concurrency slot', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxConcurrentRequests: 1 });
    // JSON.parse takes it; asking the upstream for a stream's usage means serializing it again.
    const deep = `${'['.repeat(50_000)}"Hello"${']'.repeat(50_000)}`;
    const streamed = await post(
      key,
      `{"model":"mock-gpt-4o","stream":true,"messages":[{"role":"user","content":${deep}}]}`,
    );
    expect(streamed.status).toBe(400);
    expect((streamed.body as { error: { message: string } }).error.message).toBe(
      'The request body is nested too deeply.',
    );
    // An upstream that reports no usage: the prompt is counted here, however deep.
    const plain = await post(key, `{"model":"mock-gpt-4o","messages":[{"role":"user","content":${deep}}]}`, {
      'x-mock-no-usage': '1',
    });
    expect(plain.status).toBe(200);
    const [event] = await gw.usageFor(String(plain.headers['x-request-id']));
    expect(event).toMatchObject({ estimated: true, status: 200 });
    expect(event!.inputTokens).toBeGreaterThan(6);
    expect((await post(key)).status).toBe(200);
    expect((await post(key)).status).toBe(200);
  });

  it('counts token ids toward token limits, as OpenAI does', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxTokensPerMinute: 100 });
    const ids = Array.from({ length: 500 }, (_, i) => i + 1);
    const response = await gw.request('POST', '/v1/embeddings', {
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-embedding-small', input: ids }),
    });
    expect(response.status).toBe(429);
    expect((response.body as { error: { message: string } }).error.message).toMatch(
      /^Request too large for mock-embedding-small .* on tokens per min \(TPM\): Limit 100, Requested 500\./,
    );
    expect(response.headers['x-should-retry']).toBe('false');
  });

  it('holds a concurrency slot for the whole of a long stream', async () => {
    const slowGateway = await createTestGateway({ chunkDelayMs: 50, chunkCount: 12 });
    try {
      const key = await slowGateway.createKey();
      await slowGateway.services.limits.updateRateLimit(
        slowGateway.instance.organization.id,
        keyScope(key),
        '*',
        { maxConcurrentRequests: 1 },
        TEST_ACTOR,
      );
      const client = slowGateway.openai(key.secret);
      const stream = await client.chat.completions.create({
        model: 'mock-gpt-4o',
        messages: [{ role: 'user', content: 'long' }],
        stream: true,
      });
      let chunks = 0;
      let refusedMidStream: unknown;
      for await (const _ of stream) {
        if (++chunks === 3) refusedMidStream = await refusal(chat(client));
      }
      expect(chunks).toBe(12);
      expect(refusedMidStream).toBeInstanceOf(RateLimitError);
      expect((await chat(client)).object).toBe('chat.completion');
    } finally {
      await slowGateway.close();
    }
  });

  it('a client that goes away mid-stream frees its concurrency slot', async () => {
    const slowGateway = await createTestGateway({ chunkDelayMs: 100, chunkCount: 20 });
    try {
      const key = await slowGateway.createKey();
      await slowGateway.services.limits.updateRateLimit(
        slowGateway.instance.organization.id,
        keyScope(key),
        '*',
        { maxConcurrentRequests: 1 },
        TEST_ACTOR,
      );
      const controller = new AbortController();
      const response = await fetch(`${slowGateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
        body: chatBody({ stream: true }),
        signal: controller.signal,
      });
      expect(response.status).toBe(200);
      const busy = await slowGateway.request('POST', '/v1/chat/completions', {
        headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
        body: chatBody(),
      });
      expect(busy.status).toBe(429);
      controller.abort();
      let status = 429;
      for (let i = 0; i < 50 && status === 429; i++) {
        await sleep(20);
        status = (
          await slowGateway.request('POST', '/v1/chat/completions', {
            headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
            body: chatBody(),
          })
        ).status;
      }
      expect(status).toBe(200);
    } finally {
      await slowGateway.close();
    }
  });

  it('applies a limit changed through the Admin API to the very next request', async () => {
    const key = await gw.createKey();
    expect((await post(key)).status).toBe(200);
    await limitKey(key, { maxRequestsPerDay: 1 });
    expect((await post(key)).status).toBe(200);
    const refused = await post(key);
    expect(refused.status).toBe(429);
    expect((refused.body as { error: { message: string } }).error.message).toContain(
      'requests per day (RPD)',
    );
    await limitKey(key, { maxRequestsPerDay: 0 });
    expect((await post(key)).status).toBe(200);
  });

  it('a raised limit lets the next request through, counting only what was really used', async () => {
    const key = await gw.createKey();
    await limitKey(key, { maxRequestsPerDay: 1 });
    expect((await post(key)).status).toBe(200);
    expect((await post(key)).status).toBe(429);
    await limitKey(key, { maxRequestsPerDay: 1000 });
    const raised = await post(key);
    expect(raised.status).toBe(200);
    expect(raised.headers['x-ratelimit-limit-requests']).toBe('1000');
    expect(raised.headers['x-ratelimit-remaining-requests']).toBe('998'); // the first and this one
  });
});

describe('budgets on the gateway', () => {
  let gw: TestGateway;
  let clock: number;
  const org = () => gw.instance.organization.id;

  beforeAll(async () => {
    clock = Date.UTC(2026, 10, 24, 12, 0, 0);
    gw = await createTestGateway({
      now: () => clock,
      config: { prices: [{ model: 'mock-*', input: 1000, output: 1000 }] }, // $0.001 per token
    });
  });
  afterAll(() => gw?.close());

  const post = (key: IssuedKey) =>
    gw.request('POST', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: chatBody(),
    });

  it('records each request at its model price', async () => {
    const key = await gw.createKey();
    const response = await post(key);
    const usage = (response.body as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    const [event] = await gw.usageFor(String(response.headers['x-request-id']));
    expect(event!.costNanoUsd).toBe((usage.prompt_tokens + usage.completion_tokens) * 1_000_000);
  });

  it('blocks at the hard limit with insufficient_quota, which the SDK does not retry, until the day resets', async () => {
    const key = await gw.createKey();
    await gw.services.limits.setBudget(
      org(),
      {
        scope: { type: 'api_key', id: key.key.id },
        metric: 'tokens',
        period: 'day',
        hardLimit: 10,
      },
      TEST_ACTOR,
    );
    expect((await post(key)).status).toBe(200); // under the limit when it started: it goes through
    await gw.services.enforcer.drain();
    const before = gw.transcript.length;
    const error = await refusal(chat(gw.openai(key.secret, { maxRetries: 3 })));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.code).toBe('insufficient_quota');
    expect(error.type).toBe('insufficient_quota');
    expect(error.headers?.get('x-should-retry')).toBe('false');
    expect(error.message).toMatch(
      new RegExp(
        `^429 You exceeded your current quota: the daily token limit of 10 tokens for API key ${key.key.id} has been reached`,
      ),
    );
    expect(gw.transcript.slice(before).filter((e) => e.startsWith('HTTP '))).toHaveLength(1);

    const tomorrow = periodBounds('day', clock).end;
    clock = tomorrow + 1000;
    expect((await post(key)).status).toBe(200);
  });

  it('unblocks at once when the limit is raised', async () => {
    const key = await gw.createKey();
    const scope = { type: 'api_key' as const, id: key.key.id };
    await gw.services.limits.setBudget(
      org(),
      { scope, metric: 'cost', period: 'month', hardLimit: 1 },
      TEST_ACTOR,
    );
    expect((await post(key)).status).toBe(200); // costs more than 1 cent
    await gw.services.enforcer.drain();
    expect((await post(key)).status).toBe(429);
    await gw.services.limits.setBudget(
      org(),
      { scope, metric: 'cost', period: 'month', hardLimit: 100_000 },
      TEST_ACTOR,
    );
    expect((await post(key)).status).toBe(200);
  });

  it('counts spend recorded before a restart (seeded from the usage records)', async () => {
    const key = await gw.createKey();
    const scope = { type: 'api_key' as const, id: key.key.id };
    // Spend the day already has, written by an earlier process.
    await storeUsage(gw.services.store.db, [
      usageEvent({
        requestId: `req_seed_${key.key.id}`,
        createdAt: new Date(clock - 1000),
        organizationId: org(),
        projectId: gw.instance.project.id,
        apiKeyId: key.key.id,
        inputTokens: 600,
        outputTokens: 400,
      }),
    ]);
    await gw.services.limits.setBudget(
      org(),
      { scope, metric: 'tokens', period: 'day', hardLimit: 1000 },
      TEST_ACTOR,
    );
    const refused = await post(key);
    expect(refused.status).toBe(429);
    expect((refused.body as { error: { code: string } }).error.code).toBe('insufficient_quota');
  });

  it('raises soft-limit and spend alerts once per period', async () => {
    const key = await gw.createKey();
    const project = await gw.services.projects.create(org(), { name: 'Alerts' }, TEST_ACTOR);
    const projectKey = await gw.createKey({ projectId: project.id });
    await gw.services.limits.setBudget(
      org(),
      {
        scope: { type: 'project', id: project.id },
        metric: 'cost',
        period: 'month',
        hardLimit: 100_000, // $1000
        softLimitPercents: [0 + 1, 90],
        notifyEmails: ['finance@example.com'],
      },
      TEST_ACTOR,
    );
    await gw.services.limits.createSpendAlert(
      org(),
      { type: 'project', id: project.id },
      {
        thresholdAmount: 1,
        recipients: ['ops@example.com'],
        subjectPrefix: '[Keyport]',
      },
      TEST_ACTOR,
    );
    void key;
    // Each request costs a few cents; 1% of $1000 is $10: not reached. The $0.01 alert is.
    for (let i = 0; i < 3; i++) expect((await post(projectKey)).status).toBe(200);
    await gw.services.enforcer.drain();
    await gw.services.notifications.drain();
    const { eq } = await import('drizzle-orm');
    const rows = await gw.services.store.db.select().from(alerts).where(eq(alerts.projectId, project.id));
    expect(rows.map((r) => r.kind)).toEqual(['spend_alert']);
    expect(rows[0]!.title).toBe(`Monthly spend of project ${project.id} reached $0.01`);
  });
});
