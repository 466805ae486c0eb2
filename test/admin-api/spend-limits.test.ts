/**
 * Hard spend limits through client.admin.organization.spendLimit and ….projects.spendLimit:
 * exact shapes, validation, isolation, and `enforcement.status` following the month's spend (from
 * usage records, as the gateway counts it, and from a stubbed spend reader).
 */
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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

const ADMIN = { __security: { adminAPIKeyAuth: true } } as const;

describe.each(backends)('spend limits (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let other: SecondOrganization;
  const org = () => client.admin.organization.spendLimit;
  const project = () => client.admin.organization.projects.spendLimit;
  const newProject = async (name = 'Spending') =>
    (await client.admin.organization.projects.create({ name })).id;

  /** Usage records of this month for a key of the project, costing `cents` in all. */
  async function spend(projectId: string, keyId: string, cents: number) {
    await storeUsage(t.services.store.db, [
      usageEvent({
        organizationId: t.instance.organization.id,
        projectId,
        apiKeyId: keyId,
        inputTokens: 1000,
        outputTokens: 1000,
        costNanoUsd: cents * NANO_USD_PER_CENT,
      }),
    ]);
  }

  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
    other = await createSecondOrganization(t);
  });
  afterEach(async () => {
    // Tests that stub the spend reader or set the organization's limit leave nothing behind.
    t.services.limits.useSpendReader(t.services.enforcer);
    await org().delete();
  });
  afterAll(() => t?.close());

  it('GET with no limit set: 404 not_found with a clear message', async () => {
    const projectId = await newProject();
    const orgError = await org()
      .retrieve()
      .catch((e: unknown) => e);
    expect(orgError).toBeInstanceOf(OpenAI.NotFoundError);
    expect(orgError).toMatchObject({ status: 404, code: 'not_found' });
    expect((orgError as Error).message).toContain('No spend limit is set for this organization');

    const response = await adminRequest(t, 'GET', `/projects/${projectId}/spend_limit`);
    const error = expectApiError(response, 404, 'not_found', null);
    expect(error.message).toContain(`No spend limit is set for project '${projectId}'`);
  });

  it('organization: set, read, replace and delete, in the SDK’s exact shapes', async () => {
    const set = await org().update({ currency: 'USD', interval: 'month', threshold_amount: 50_000 });
    expect(set).toEqual({
      object: 'organization.spend_limit',
      threshold_amount: 50_000,
      currency: 'USD',
      interval: 'month',
      enforcement: { status: 'inactive' },
    });
    expect(await org().retrieve()).toEqual(set);
    const replaced = await org().update({ currency: 'USD', interval: 'month', threshold_amount: 75_000 });
    expect(replaced).toEqual({ ...set, threshold_amount: 75_000 });
    expect(expectOk(await adminRequest(t, 'GET', '/spend_limit'))).toEqual(replaced);

    expect(await org().delete()).toEqual({ object: 'organization.spend_limit.deleted', deleted: true });
    expect(await org().delete()).toEqual({ object: 'organization.spend_limit.deleted', deleted: false });
    await expect(org().retrieve()).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('project: set, read, replace and delete, separate from the organization and other projects', async () => {
    const projectId = await newProject();
    const neighbour = await newProject('Neighbour');
    const set = await project().update(projectId, {
      currency: 'USD',
      interval: 'month',
      threshold_amount: 1_000,
    });
    expect(set).toEqual({
      object: 'project.spend_limit',
      threshold_amount: 1_000,
      currency: 'USD',
      interval: 'month',
      enforcement: { status: 'inactive' },
    });
    expect(await project().retrieve(projectId)).toEqual(set);
    await expect(project().retrieve(neighbour)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(org().retrieve()).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    expect(
      await project().update(projectId, { currency: 'USD', interval: 'month', threshold_amount: 0 }),
    ).toMatchObject({ threshold_amount: 0, enforcement: { status: 'enforcing' } });
    expect(await project().delete(projectId)).toEqual({
      object: 'project.spend_limit.deleted',
      deleted: true,
    });
    expect(await project().delete(projectId)).toEqual({
      object: 'project.spend_limit.deleted',
      deleted: false,
    });
    await expect(project().retrieve(projectId)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it.each([
    [{ currency: 'EUR', interval: 'month', threshold_amount: 100 }, 'currency'],
    [{ currency: 'usd', interval: 'month', threshold_amount: 100 }, 'currency'],
    [{ currency: 'USD', interval: 'day', threshold_amount: 100 }, 'interval'],
    [{ currency: 'USD', interval: 'month', threshold_amount: -1 }, 'threshold_amount'],
    [{ currency: 'USD', interval: 'month', threshold_amount: 10.5 }, 'threshold_amount'],
    [{ currency: 'USD', interval: 'month', threshold_amount: '100' }, 'threshold_amount'],
    [{ currency: 'USD', interval: 'month' }, 'threshold_amount'],
    [{ interval: 'month', threshold_amount: 100 }, 'currency'],
    [{ currency: 'USD', threshold_amount: 100 }, 'interval'],
    [{ currency: 'USD', interval: 'month', threshold_amount: 100, hard: true }, 'hard'],
  ])('refuses %j with a 400 naming %s', async (body, param) => {
    const projectId = await newProject();
    for (const path of ['/spend_limit', `/projects/${projectId}/spend_limit`]) {
      expectApiError(await adminRequest(t, 'POST', path, { body }), 400, 'invalid_request', param);
      expectApiError(await adminRequest(t, 'GET', path), 404, 'not_found');
    }
  });

  it('the SDK raises BadRequestError naming the parameter', async () => {
    const error = await org()
      .update({ currency: 'EUR' as 'USD', interval: 'month', threshold_amount: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, param: 'currency' });
  });

  it('404 for unknown projects and other organizations’ projects; their limits are untouched', async () => {
    const theirs = t.sdk({ adminKey: other.adminKey.secret }).admin.organization;
    await theirs.projects.spendLimit.update(other.project.id, {
      currency: 'USD',
      interval: 'month',
      threshold_amount: 123,
    });
    for (const projectId of ['proj_nope', other.project.id]) {
      const path = `/projects/${projectId}/spend_limit`;
      expectApiError(await adminRequest(t, 'GET', path), 404, 'not_found');
      expectApiError(
        await adminRequest(t, 'POST', path, {
          body: { currency: 'USD', interval: 'month', threshold_amount: 1 },
        }),
        404,
        'not_found',
      );
      expectApiError(await adminRequest(t, 'DELETE', path), 404, 'not_found');
    }
    expect(await theirs.projects.spendLimit.retrieve(other.project.id)).toMatchObject({
      threshold_amount: 123,
    });
    // Each organization's own limit is its own.
    await theirs.spendLimit.update({ currency: 'USD', interval: 'month', threshold_amount: 999 });
    await expect(org().retrieve()).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await theirs.spendLimit.delete();
  });

  it('enforcement follows the month’s spend from the usage records; the gateway refuses while enforcing', async () => {
    const projectId = await newProject();
    const key = await createProjectKey(t, projectId);
    // $5 spent this month, recorded before anything counted this project's spend.
    await spend(projectId, key.id, 300);
    await spend(projectId, key.id, 200);
    const limit = (cents: number) =>
      project().update(projectId, { currency: 'USD', interval: 'month', threshold_amount: cents });

    expect((await limit(1_000)).enforcement).toEqual({ status: 'inactive' });
    const chat = () =>
      t
        .sdk({ apiKey: key.value })
        .chat.completions.create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }] });
    await chat();

    expect((await limit(500)).enforcement).toEqual({ status: 'enforcing' });
    expect((await project().retrieve(projectId)).enforcement).toEqual({ status: 'enforcing' });
    const refused = await chat().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect(refused).toMatchObject({ status: 429, code: 'insufficient_quota' });

    expect(await project().delete(projectId)).toMatchObject({ deleted: true });
    await chat();
  });

  it('enforcement flips to enforcing when the spend reaches the limit (stubbed spend reader)', async () => {
    let cents = 0;
    t.services.limits.useSpendReader({ currentSpend: async () => cents });
    await org().update({ currency: 'USD', interval: 'month', threshold_amount: 2_500 });
    const status = async () => (await org().retrieve()).enforcement.status;
    expect(await status()).toBe('inactive');
    cents = 2_499.99;
    expect(await status()).toBe('inactive');
    cents = 2_500;
    expect(await status()).toBe('enforcing');
    cents = 10_000;
    expect(await status()).toBe('enforcing');
    const raw = expectOk(await adminRequest(t, 'GET', '/spend_limit'));
    expect(raw).toMatchObject({ enforcement: { status: 'enforcing' } });
  });

  it('a spend limit is the monthly cost budget’s hard limit: setting keeps its alerts, deleting drops them', async () => {
    const projectId = await newProject();
    const budget = await client.post<{ id: string }>('/organization/budgets', {
      body: {
        project_id: projectId,
        metric: 'cost',
        period: 'month',
        hard_limit: 10_000,
        soft_limit_percents: [50, 90],
        notify_emails: ['ops@example.com'],
      },
      ...ADMIN,
    });
    expect(await project().retrieve(projectId)).toMatchObject({ threshold_amount: 10_000 });
    await project().update(projectId, { currency: 'USD', interval: 'month', threshold_amount: 20_000 });
    expect(await client.get(`/organization/budgets/${budget.id}`, ADMIN)).toMatchObject({
      hard_limit: 20_000,
      soft_limit_percents: [50, 90],
      notify_emails: ['ops@example.com'],
    });
    await project().delete(projectId);
    expect(await client.get(`/organization/budgets/${budget.id}`, ADMIN)).toMatchObject({
      hard_limit: null,
      soft_limit_percents: [],
      notify_emails: ['ops@example.com'],
    });
  });
});
