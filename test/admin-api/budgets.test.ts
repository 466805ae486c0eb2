/**
 * `/v1/organization/budgets` (Keyport's extension) through the SDK's generic methods: create or
 * replace per scope, metric and period; list with filters and pagination; retrieve; delete; the
 * period's spend, enforcement and bounds (in the configured billing time zone); validation and
 * isolation.
 */
import OpenAI from 'openai';
import { ConversationCursorPage } from 'openai/pagination';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { periodBounds } from '../../src/core/periods.ts';
import { NANO_USD_PER_CENT } from '../../src/core/pricing.ts';
import {
  adminRequest,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
  expectOk,
  type SecondOrganization,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';

interface Budget {
  object: 'organization.budget';
  id: string;
  scope: { type: 'organization' | 'project' | 'api_key'; id: string };
  project_id: string | null;
  api_key_id: string | null;
  metric: 'cost' | 'tokens';
  period: 'day' | 'month';
  hard_limit: number | null;
  soft_limit_percents: number[];
  notify_emails: string[];
  spent: number;
  enforcement: { status: 'enforcing' | 'inactive' };
  period_start: number;
  period_end: number;
  created_at: number;
  updated_at: number;
}

const ADMIN = { __security: { adminAPIKeyAuth: true } } as const;
/** Not UTC, and not a whole number of hours off it: budget days must start at its midnight. */
const TIME_ZONE = 'Asia/Kolkata';

describe.each(backends)('budgets (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let other: SecondOrganization;
  const newProject = async (name = 'Budgeted') =>
    (await client.admin.organization.projects.create({ name })).id;
  const create = (body: Record<string, unknown>) =>
    client.post<Budget>('/organization/budgets', { body, ...ADMIN });
  const retrieve = (id: string) => client.get<Budget>(`/organization/budgets/${id}`, ADMIN);
  const listAll = async (query: Record<string, unknown> = {}) => {
    const items: Budget[] = [];
    for await (const budget of client.getAPIList<Budget, ConversationCursorPage<Budget>>(
      '/organization/budgets',
      ConversationCursorPage<Budget>,
      { query, ...ADMIN },
    ))
      items.push(budget);
    return items;
  };
  const bounds = (period: 'day' | 'month') => {
    const { start, end } = periodBounds(period, Date.now(), TIME_ZONE);
    return { period_start: start / 1000, period_end: end / 1000 };
  };

  async function spend(projectId: string, keyId: string, usage: { cents?: number; tokens?: number }) {
    await storeUsage(t.services.store.db, [
      usageEvent({
        organizationId: t.instance.organization.id,
        projectId,
        apiKeyId: keyId,
        inputTokens: usage.tokens ?? 0,
        costNanoUsd: Math.round((usage.cents ?? 0) * NANO_USD_PER_CENT),
      }),
    ]);
  }

  beforeAll(async () => {
    t = await createTestApp({ backend, config: { billingTimeZone: TIME_ZONE } });
    client = t.sdk();
    other = await createSecondOrganization(t);
  });
  afterAll(() => t?.close());

  it('creates an organization budget in Keyport’s shape, with the period in the billing time zone', async () => {
    const before = Math.floor(Date.now() / 1000);
    const budget = await create({
      metric: 'cost',
      period: 'day',
      hard_limit: 10_000,
      soft_limit_percents: [90, 50, 50],
      notify_emails: ['ops@example.com'],
    });
    expect(budget).toEqual({
      object: 'organization.budget',
      id: expect.stringMatching(/^budget_/),
      scope: { type: 'organization', id: t.instance.organization.id },
      project_id: null,
      api_key_id: null,
      metric: 'cost',
      period: 'day',
      hard_limit: 10_000,
      soft_limit_percents: [50, 90],
      notify_emails: ['ops@example.com'],
      spent: expect.any(Number),
      enforcement: { status: 'inactive' },
      ...bounds('day'),
      created_at: expect.any(Number),
      updated_at: expect.any(Number),
    });
    expect(budget.created_at).toBeGreaterThanOrEqual(before - 1);
    // Midnight in Kolkata is 18:30 UTC.
    expect(new Date(budget.period_start * 1000).toISOString()).toMatch(/T18:30:00\.000Z$/);
    expect(budget.period_end - budget.period_start).toBe(86_400);
    expect(await retrieve(budget.id)).toEqual(budget);
    await client.delete(`/organization/budgets/${budget.id}`, ADMIN);
  });

  it('project and key budgets: project_id is shown for a key’s budget too', async () => {
    const projectId = await newProject();
    const key = await createProjectKey(t, projectId);
    const projectBudget = await create({
      project_id: projectId,
      metric: 'tokens',
      period: 'month',
      hard_limit: 5e6,
    });
    expect(projectBudget).toMatchObject({
      scope: { type: 'project', id: projectId },
      project_id: projectId,
      api_key_id: null,
      metric: 'tokens',
      period: 'month',
      hard_limit: 5_000_000,
      soft_limit_percents: [],
      notify_emails: [],
      spent: 0,
      ...bounds('month'),
    });
    const keyBudget = await create({
      project_id: projectId,
      api_key_id: key.id,
      metric: 'cost',
      period: 'month',
      hard_limit: null,
    });
    expect(keyBudget).toMatchObject({
      scope: { type: 'api_key', id: key.id },
      project_id: projectId,
      api_key_id: key.id,
      hard_limit: null,
      enforcement: { status: 'inactive' },
    });
    // Still shown with its project once the key is revoked.
    await client.admin.organization.projects.apiKeys.delete(key.id, { project_id: projectId });
    expect(await retrieve(keyBudget.id)).toMatchObject({ project_id: projectId, api_key_id: key.id });
  });

  it('POST replaces the budget of the same scope, metric and period (same id); others are separate', async () => {
    const projectId = await newProject();
    const first = await create({
      project_id: projectId,
      metric: 'cost',
      period: 'month',
      hard_limit: 1_000,
      soft_limit_percents: [80],
      notify_emails: ['a@example.com'],
    });
    const replaced = await create({
      project_id: projectId,
      metric: 'cost',
      period: 'month',
      hard_limit: 2_000,
    });
    expect(replaced).toMatchObject({
      id: first.id,
      hard_limit: 2_000,
      soft_limit_percents: [],
      notify_emails: [],
      created_at: first.created_at,
    });
    expect(replaced.updated_at).toBeGreaterThanOrEqual(first.updated_at);
    const daily = await create({ project_id: projectId, metric: 'cost', period: 'day', hard_limit: 100 });
    const tokens = await create({
      project_id: projectId,
      metric: 'tokens',
      period: 'month',
      hard_limit: 100,
    });
    expect(new Set([first.id, daily.id, tokens.id]).size).toBe(3);
    expect((await listAll({ project_id: projectId })).map((b) => b.id)).toEqual([
      first.id,
      daily.id,
      tokens.id,
    ]);
    // The monthly cost budget's hard limit is OpenAI's spend limit.
    expect(await client.admin.organization.projects.spendLimit.retrieve(projectId)).toMatchObject({
      threshold_amount: 2_000,
    });
  });

  it('lists with filters and pagination (the SDK follows every page)', async () => {
    const projectId = await newProject('Listed');
    const key = await createProjectKey(t, projectId);
    const otherKey = await createProjectKey(t, projectId, { name: 'Second' });
    const ids: string[] = [];
    for (const period of ['day', 'month'] as const) {
      for (const metric of ['cost', 'tokens'] as const) {
        ids.push((await create({ project_id: projectId, metric, period, hard_limit: 100 })).id);
      }
    }
    const keyIds = [
      (
        await create({
          project_id: projectId,
          api_key_id: key.id,
          metric: 'cost',
          period: 'day',
          hard_limit: 1,
        })
      ).id,
      (
        await create({
          project_id: projectId,
          api_key_id: key.id,
          metric: 'tokens',
          period: 'day',
          hard_limit: 1,
        })
      ).id,
    ];
    await create({
      project_id: projectId,
      api_key_id: otherKey.id,
      metric: 'cost',
      period: 'day',
      hard_limit: 1,
    });

    expect((await listAll({ project_id: projectId, limit: 3 })).map((b) => b.id)).toEqual(ids);
    expect((await listAll({ project_id: projectId, api_key_id: key.id, limit: 1 })).map((b) => b.id)).toEqual(
      keyIds,
    );
    const everything = (await listAll({ limit: 2 })).map((b) => b.id);
    expect(everything).toEqual(expect.arrayContaining([...ids, ...keyIds]));
    expect(new Set(everything).size).toBe(everything.length);

    const base = `/budgets?project_id=${projectId}`;
    expect(expectOk(await adminRequest(t, 'GET', `${base}&limit=3`))).toMatchObject({
      object: 'list',
      first_id: ids[0],
      last_id: ids[2],
      has_more: true,
    });
    expect(expectOk(await adminRequest(t, 'GET', `${base}&limit=2&before=${ids[3]}`))).toMatchObject({
      first_id: ids[1],
      last_id: ids[2],
      has_more: true,
    });
    expect(expectOk(await adminRequest(t, 'GET', `${base}&order=desc&limit=1`))).toMatchObject({
      first_id: ids[3],
      has_more: true,
    });
    expectApiError(
      await adminRequest(t, 'GET', `/budgets?api_key_id=${key.id}`),
      400,
      'invalid_request',
      'project_id',
    );
    expectApiError(await adminRequest(t, 'GET', '/budgets?limit=500'), 400, 'invalid_request', 'limit');
  });

  it('deletes a budget', async () => {
    const budget = await create({ metric: 'tokens', period: 'day', hard_limit: 1 });
    expect(await client.delete(`/organization/budgets/${budget.id}`, ADMIN)).toEqual({
      object: 'organization.budget.deleted',
      id: budget.id,
      deleted: true,
    });
    await expect(retrieve(budget.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expectApiError(await adminRequest(t, 'DELETE', `/budgets/${budget.id}`), 404, 'not_found');
  });

  it('spent is this period’s, from the usage records: fractional cents or tokens; enforcing once reached', async () => {
    const projectId = await newProject('Spent');
    const key = await createProjectKey(t, projectId);
    await spend(projectId, key.id, { cents: 1.25, tokens: 700 });
    await spend(projectId, key.id, { cents: 2, tokens: 300 });

    const cost = await create({ project_id: projectId, metric: 'cost', period: 'day', hard_limit: 4 });
    expect(cost).toMatchObject({ spent: 3.25, enforcement: { status: 'inactive' } });
    const tokens = await create({
      project_id: projectId,
      api_key_id: key.id,
      metric: 'tokens',
      period: 'month',
      hard_limit: 1_000,
    });
    expect(tokens).toMatchObject({ spent: 1_000, enforcement: { status: 'enforcing' } });

    const lowered = await create({ project_id: projectId, metric: 'cost', period: 'day', hard_limit: 3 });
    expect(lowered).toMatchObject({ id: cost.id, spent: 3.25, enforcement: { status: 'enforcing' } });
    // Alerts only (no hard limit): never enforcing.
    const alertsOnly = await create({
      project_id: projectId,
      metric: 'cost',
      period: 'day',
      hard_limit: null,
    });
    expect(alertsOnly).toMatchObject({ hard_limit: null, enforcement: { status: 'inactive' } });
    // The gateway agrees: the key's token budget is exhausted.
    const refused = await t
      .sdk({ apiKey: key.value })
      .chat.completions.create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }] })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 429, code: 'insufficient_quota' });
  });

  it.each([
    [{ metric: 'money', period: 'day', hard_limit: 1 }, 'metric'],
    [{ metric: 'cost', period: 'week', hard_limit: 1 }, 'period'],
    [{ metric: 'cost', hard_limit: 1 }, 'period'],
    [{ metric: 'cost', period: 'day' }, 'hard_limit'],
    [{ metric: 'cost', period: 'day', hard_limit: -5 }, 'hard_limit'],
    [{ metric: 'cost', period: 'day', hard_limit: 12.5 }, 'hard_limit'],
    [{ metric: 'cost', period: 'day', hard_limit: '100' }, 'hard_limit'],
    [{ metric: 'cost', period: 'day', hard_limit: null, soft_limit_percents: [50] }, 'hard_limit'],
    [{ metric: 'cost', period: 'day', hard_limit: 1, soft_limit_percents: [0] }, 'soft_limit_percents.0'],
    [
      { metric: 'cost', period: 'day', hard_limit: 1, soft_limit_percents: [50, 101] },
      'soft_limit_percents.1',
    ],
    [{ metric: 'cost', period: 'day', hard_limit: 1, notify_emails: ['nobody'] }, 'notify_emails'],
    [{ metric: 'cost', period: 'day', hard_limit: 1, api_key_id: 'key_x' }, 'project_id'],
    [{ metric: 'cost', period: 'day', hard_limit: 1, scope: 'organization' }, 'scope'],
  ])('refuses %j with a 400 naming %s', async (body, param) => {
    const response = await adminRequest(t, 'POST', '/budgets', { body });
    expectApiError(response, 400, 'invalid_request', param);
  });

  it('the SDK raises BadRequestError for soft percents without a hard limit', async () => {
    const error = await create({
      metric: 'tokens',
      period: 'month',
      hard_limit: null,
      soft_limit_percents: [80],
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as Error).message).toContain('set a hard_limit too');
  });

  it('404 for unknown ids and other organizations’ budgets, projects and keys; theirs stay untouched', async () => {
    const theirs = t.sdk({ adminKey: other.adminKey.secret });
    const theirBudget = await theirs.post<Budget>('/organization/budgets', {
      body: { project_id: other.project.id, metric: 'cost', period: 'month', hard_limit: 5 },
      ...ADMIN,
    });
    const theirKey = await createProjectKey({ ...t, adminKey: other.adminKey.secret }, other.project.id);
    const ownProject = await newProject();
    expectApiError(await adminRequest(t, 'GET', `/budgets/${theirBudget.id}`), 404, 'not_found');
    expectApiError(await adminRequest(t, 'DELETE', `/budgets/${theirBudget.id}`), 404, 'not_found');
    expectApiError(await adminRequest(t, 'GET', '/budgets/budget_nope'), 404, 'not_found');
    for (const scope of [
      { project_id: other.project.id } as Record<string, string>,
      { project_id: 'proj_nope' },
      { project_id: other.project.id, api_key_id: theirKey.id },
      { project_id: ownProject, api_key_id: theirKey.id },
      { project_id: ownProject, api_key_id: 'key_nope' },
    ]) {
      expectApiError(
        await adminRequest(t, 'POST', '/budgets', {
          body: { ...scope, metric: 'cost', period: 'month', hard_limit: 1 },
        }),
        404,
        'not_found',
      );
      expectApiError(
        await adminRequest(t, 'GET', `/budgets?${new URLSearchParams(scope)}`),
        404,
        'not_found',
      );
    }
    expect(await theirs.get(`/organization/budgets/${theirBudget.id}`, ADMIN)).toEqual(theirBudget);
    expect((await listAll()).map((b) => b.id)).not.toContain(theirBudget.id);
  });
});
