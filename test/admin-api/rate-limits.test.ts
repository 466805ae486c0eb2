/**
 * Rate limits through client.admin.organization.projects.rateLimits (list, update), and Keyport's
 * extensions in the same shapes through the SDK's generic methods: DELETE, the organization's and a
 * key's limits. No limit reads as 0; 0 sent removes one.
 */
import OpenAI from 'openai';
import { ConversationCursorPage } from 'openai/pagination';
import type { ProjectRateLimit } from 'openai/resources/admin/organization/projects/rate-limits';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOCK_MODELS } from '../../src/gateway/mock-upstream.ts';
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

/** Keyport's object: the SDK's plus two extension fields, always present. */
type KeyportRateLimit = Omit<ProjectRateLimit, 'object'> & {
  object: 'project.rate_limit' | 'organization.rate_limit' | 'project.api_key.rate_limit';
  max_requests_per_1_day: number;
  max_tokens_per_1_day: number;
  max_concurrent_requests: number;
};

const ADMIN = { __security: { adminAPIKeyAuth: true } } as const;
const SERVED = [...MOCK_MODELS].sort();

const unlimited = (object: KeyportRateLimit['object'], model: string): KeyportRateLimit => ({
  object,
  id: `rl-${model}`,
  model,
  max_requests_per_1_minute: 0,
  max_tokens_per_1_minute: 0,
  max_requests_per_1_day: 0,
  max_tokens_per_1_day: 0,
  max_concurrent_requests: 0,
});

describe.each(backends)('rate limits (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let other: SecondOrganization;
  const rateLimits = () => client.admin.organization.projects.rateLimits;
  const newProject = async (name = 'Limited') =>
    (await client.admin.organization.projects.create({ name })).id;
  const listAll = async (projectId: string, query: { limit?: number } = {}) => {
    const items: ProjectRateLimit[] = [];
    for await (const item of rateLimits().listRateLimits(projectId, query)) items.push(item);
    return items;
  };
  /** A Keyport extension list (organization or key limits), every page. */
  const listExtension = async (path: string, query: Record<string, unknown> = {}) => {
    const items: KeyportRateLimit[] = [];
    const pages = client.getAPIList<KeyportRateLimit, ConversationCursorPage<KeyportRateLimit>>(
      `/organization${path}`,
      ConversationCursorPage<KeyportRateLimit>,
      { query, ...ADMIN },
    );
    for await (const item of pages) items.push(item);
    return items;
  };

  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
    other = await createSecondOrganization(t);
  });
  afterAll(() => t?.close());

  it('lists * first, then every model the gateway serves, all unlimited (0)', async () => {
    const projectId = await newProject();
    const page = await rateLimits().listRateLimits(projectId);
    expect(page.data).toEqual(['*', ...SERVED].map((model) => unlimited('project.rate_limit', model)));
    expect(page.has_more).toBe(false);
    const raw = expectOk(await adminRequest(t, 'GET', `/projects/${projectId}/rate_limits`));
    expect(raw).toEqual({
      object: 'list',
      data: page.data,
      first_id: 'rl-*',
      last_id: `rl-${SERVED.at(-1)}`,
      has_more: false,
    });
  });

  it('updates a model’s limits: omitted fields keep their value, 0 removes a limit', async () => {
    const projectId = await newProject();
    const first = await rateLimits().updateRateLimit('rl-mock-gpt-4o', {
      project_id: projectId,
      max_requests_per_1_minute: 60,
      max_tokens_per_1_minute: 40_000,
      max_requests_per_1_day: 5_000,
    });
    expect(first).toEqual({
      ...unlimited('project.rate_limit', 'mock-gpt-4o'),
      max_requests_per_1_minute: 60,
      max_tokens_per_1_minute: 40_000,
      max_requests_per_1_day: 5_000,
    });

    const second = await rateLimits().updateRateLimit('rl-mock-gpt-4o', {
      project_id: projectId,
      max_tokens_per_1_minute: 0,
    });
    expect(second).toEqual({ ...first, max_tokens_per_1_minute: 0 });

    // Keyport's extension fields, through the same route.
    const extended = expectOk(
      await adminRequest<KeyportRateLimit>(t, 'POST', `/projects/${projectId}/rate_limits/rl-mock-gpt-4o`, {
        body: { max_tokens_per_1_day: 1_000_000, max_concurrent_requests: 4 },
      }),
    );
    expect(extended).toEqual({ ...second, max_tokens_per_1_day: 1_000_000, max_concurrent_requests: 4 });

    const listed = await listAll(projectId);
    expect(listed.find((limit) => limit.id === 'rl-mock-gpt-4o')).toEqual(extended);
    expect(listed.find((limit) => limit.id === 'rl-mock-gpt-4o-mini')).toEqual(
      unlimited('project.rate_limit', 'mock-gpt-4o-mini'),
    );
    // Stored in the service, where the gateway reads it: 0 became "no limit" (null).
    expect(
      await t.services.limits.getRateLimit(
        t.instance.organization.id,
        { type: 'project', id: projectId },
        'mock-gpt-4o',
      ),
    ).toMatchObject({ maxRequestsPerMinute: 60, maxTokensPerMinute: null, maxConcurrentRequests: 4 });
  });

  it('rl-* limits all models of the project together', async () => {
    const projectId = await newProject();
    const all = await rateLimits().updateRateLimit('rl-*', {
      project_id: projectId,
      max_requests_per_1_minute: 100,
    });
    expect(all).toEqual({ ...unlimited('project.rate_limit', '*'), max_requests_per_1_minute: 100 });
    expect((await listAll(projectId))[0]).toEqual(all);
  });

  it('a model the gateway does not serve (yet) can be limited; ids with / round-trip through the SDK', async () => {
    const projectId = await newProject();
    const model = 'meta-llama/Llama-3.1-8B-Instruct';
    const updated = await rateLimits().updateRateLimit(`rl-${model}`, {
      project_id: projectId,
      max_requests_per_1_minute: 7,
    });
    expect(updated).toEqual({ ...unlimited('project.rate_limit', model), max_requests_per_1_minute: 7 });
    const listed = await listAll(projectId);
    expect(listed.map((limit) => limit.id)).toEqual([
      'rl-*',
      ...[...SERVED, model].sort().map((m) => `rl-${m}`),
    ]);
    // As a cursor, too.
    const after = await rateLimits().listRateLimits(projectId, { after: `rl-${model}` });
    expect(after.data.map((limit) => limit.model)).toEqual(
      [...SERVED, model].sort().filter((m) => m > model),
    );

    const deleted = await client.delete<KeyportRateLimit>(
      `/organization/projects/${projectId}/rate_limits/${encodeURIComponent(`rl-${model}`)}`,
      ADMIN,
    );
    expect(deleted).toEqual(unlimited('project.rate_limit', model));
    // Not served and nothing stored any more: gone from the list.
    expect((await listAll(projectId)).map((limit) => limit.model)).toEqual(['*', ...SERVED]);
  });

  it('DELETE (Keyport) removes the stored limits and returns the now unlimited object; idempotent', async () => {
    const projectId = await newProject();
    await rateLimits().updateRateLimit('rl-mock-gpt-4o-mini', {
      project_id: projectId,
      max_requests_per_1_day: 10,
    });
    const path = `/projects/${projectId}/rate_limits/rl-mock-gpt-4o-mini`;
    for (let i = 0; i < 2; i++) {
      expect(expectOk(await adminRequest(t, 'DELETE', path))).toEqual(
        unlimited('project.rate_limit', 'mock-gpt-4o-mini'),
      );
    }
    expect((await listAll(projectId)).every((limit) => limit.max_requests_per_1_day === 0)).toBe(true);
  });

  it('paginates with after, before and limit over the rl- ids in list order', async () => {
    const projectId = await newProject();
    const extra = ['a-model', 'b-model', 'z-model'];
    for (const model of extra) {
      await rateLimits().updateRateLimit(`rl-${model}`, {
        project_id: projectId,
        max_requests_per_1_minute: 1,
      });
    }
    const ids = ['*', ...[...SERVED, ...extra].sort()].map((model) => `rl-${model}`);
    expect(ids.length).toBeGreaterThan(4);

    // The SDK follows last_id while has_more.
    expect((await listAll(projectId, { limit: 2 })).map((limit) => limit.id)).toEqual(ids);
    let pages = 0;
    for await (const page of (await rateLimits().listRateLimits(projectId, { limit: 2 })).iterPages()) {
      pages++;
      expect(page.data.length).toBe(pages <= Math.floor(ids.length / 2) ? 2 : ids.length % 2);
    }
    expect(pages).toBe(Math.ceil(ids.length / 2));

    const base = `/projects/${projectId}/rate_limits`;
    const first = expectOk(await adminRequest<{ data: KeyportRateLimit[] }>(t, 'GET', `${base}?limit=3`));
    expect(first).toMatchObject({ first_id: ids[0], last_id: ids[2], has_more: true });
    const second = expectOk(
      await adminRequest(t, 'GET', `${base}?limit=3&after=${encodeURIComponent(ids[2]!)}`),
    );
    expect(second).toMatchObject({ first_id: ids[3], last_id: ids[5], has_more: ids.length > 6 });
    // before: the page just before that id; has_more says whether more precede it.
    const previous = expectOk(
      await adminRequest(t, 'GET', `${base}?limit=2&before=${encodeURIComponent(ids[4]!)}`),
    );
    expect(previous).toMatchObject({ first_id: ids[2], last_id: ids[3], has_more: true });
    const start = expectOk(
      await adminRequest(t, 'GET', `${base}?limit=5&before=${encodeURIComponent(ids[2]!)}`),
    );
    expect(start).toMatchObject({ first_id: ids[0], last_id: ids[1], has_more: false });
    const between = expectOk(
      await adminRequest(
        t,
        'GET',
        `${base}?after=${encodeURIComponent(ids[0]!)}&before=${encodeURIComponent(ids[3]!)}`,
      ),
    );
    expect(between).toMatchObject({ first_id: ids[1], last_id: ids[2], has_more: false });
    const unknown = expectOk(await adminRequest(t, 'GET', `${base}?after=rl-no-such-model`));
    expect(unknown).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });

    expectApiError(await adminRequest(t, 'GET', `${base}?limit=0`), 400, 'invalid_request', 'limit');
    expectApiError(await adminRequest(t, 'GET', `${base}?limit=101`), 400, 'invalid_request', 'limit');
  });

  it('refuses the OpenAI fields Keyport does not enforce, naming them', async () => {
    const projectId = await newProject();
    for (const field of [
      'batch_1_day_max_input_tokens',
      'max_audio_megabytes_per_1_minute',
      'max_images_per_1_minute',
    ] as const) {
      const error = await rateLimits()
        .updateRateLimit('rl-mock-gpt-4o', {
          project_id: projectId,
          max_requests_per_1_minute: 5,
          [field]: 10,
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error).toMatchObject({ status: 400, code: 'invalid_request', param: field });
      expect((error as Error).message).toContain(`does not enforce ${field}`);
    }
    // Nothing was stored.
    expect((await listAll(projectId)).find((l) => l.model === 'mock-gpt-4o')?.max_requests_per_1_minute).toBe(
      0,
    );
  });

  it.each([
    [{ max_requests_per_1_minute: -1 }, 'max_requests_per_1_minute'],
    [{ max_tokens_per_1_minute: 1.5 }, 'max_tokens_per_1_minute'],
    [{ max_requests_per_1_day: '100' }, 'max_requests_per_1_day'],
    [{ max_concurrent_requests: 3_000_000_000 }, 'max_concurrent_requests'],
    [{ max_tokens_per_1_day: 1e16 }, 'max_tokens_per_1_day'],
    [{ max_requests_per_1_minute: 5, max_request_per_1_minute: 5 }, 'max_request_per_1_minute'],
    [{ model: 'mock-gpt-4o' }, 'model'],
  ])('refuses %j with a 400 naming %s', async (body, param) => {
    const projectId = await newProject();
    const response = await adminRequest(t, 'POST', `/projects/${projectId}/rate_limits/rl-mock-gpt-4o`, {
      body,
    });
    expectApiError(response, 400, 'invalid_request', param);
  });

  it('refuses an update that changes nothing, and a body that is not an object', async () => {
    const projectId = await newProject();
    const path = `/projects/${projectId}/rate_limits/rl-mock-gpt-4o`;
    const empty = expectApiError(await adminRequest(t, 'POST', path, { body: {} }), 400, 'invalid_request');
    expect(empty.message).toContain('max_requests_per_1_minute');
    expectApiError(await adminRequest(t, 'POST', path, { body: [1] }), 400, 'invalid_request');
  });

  it('answers 404 for ids that are not rl-<model>', async () => {
    const projectId = await newProject();
    for (const id of ['mock-gpt-4o', 'rl-', 'rl-bad%20model', 'RL-mock-gpt-4o', `rl-${'x'.repeat(201)}`]) {
      const update = await adminRequest(t, 'POST', `/projects/${projectId}/rate_limits/${id}`, {
        body: { max_requests_per_1_minute: 1 },
      });
      expectApiError(update, 404, 'not_found');
      expectApiError(
        await adminRequest(t, 'DELETE', `/projects/${projectId}/rate_limits/${id}`),
        404,
        'not_found',
      );
    }
    const sdk = await rateLimits()
      .updateRateLimit('gpt-4o', { project_id: projectId, max_requests_per_1_minute: 1 })
      .catch((e: unknown) => e);
    expect(sdk).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('answers 404 for unknown projects and keys and for other organizations’ projects and keys', async () => {
    const otherKey = await createProjectKey({ ...t, adminKey: other.adminKey.secret }, other.project.id, {
      name: 'Other key',
      owner_user_id: other.owner.id,
    });
    const ownProject = await newProject();
    const ownKey = await createProjectKey(t, ownProject);
    for (const path of [
      `/projects/proj_nope/rate_limits`,
      `/projects/${other.project.id}/rate_limits`,
      `/projects/${ownProject}/api_keys/${otherKey.id}/rate_limits`,
      `/projects/${other.project.id}/api_keys/${otherKey.id}/rate_limits`,
      // A key addressed through a project it does not belong to.
      `/projects/${t.instance.project.id}/api_keys/${ownKey.id}/rate_limits`,
      `/projects/${ownProject}/api_keys/key_nope/rate_limits`,
    ]) {
      expectApiError(await adminRequest(t, 'GET', path), 404, 'not_found');
      expectApiError(
        await adminRequest(t, 'POST', `${path}/rl-*`, { body: { max_requests_per_1_minute: 1 } }),
        404,
        'not_found',
      );
      expectApiError(await adminRequest(t, 'DELETE', `${path}/rl-*`), 404, 'not_found');
    }
    const sdk = await rateLimits()
      .listRateLimits(other.project.id)
      .catch((e: unknown) => e);
    expect(sdk).toBeInstanceOf(OpenAI.NotFoundError);
    // The other organization's settings are untouched.
    const theirs = await t.services.limits.listRateLimits(
      other.organization.id,
      { type: 'project', id: other.project.id },
      [],
    );
    expect(theirs).toEqual([expect.objectContaining({ model: '*', configured: false })]);
  });

  it('organization (Keyport): the same shapes as organization.rate_limit, separate from projects', async () => {
    const projectId = await newProject();
    const before = await listExtension('/rate_limits');
    expect(before.map((limit) => limit.id)).toEqual(['*', ...SERVED].map((model) => `rl-${model}`));
    expect(before[0]).toEqual(unlimited('organization.rate_limit', '*'));

    const updated = await client.post<KeyportRateLimit>('/organization/rate_limits/rl-*', {
      body: { max_requests_per_1_minute: 1_000, max_concurrent_requests: 50 },
      ...ADMIN,
    });
    expect(updated).toEqual({
      ...unlimited('organization.rate_limit', '*'),
      max_requests_per_1_minute: 1_000,
      max_concurrent_requests: 50,
    });
    expect((await listExtension('/rate_limits', { limit: 1 }))[0]).toEqual(updated);
    // A project's own limits are separate from its organization's.
    expect((await listAll(projectId))[0]).toEqual(unlimited('project.rate_limit', '*'));
    // Each organization sees only its own.
    const theirs = await t
      .sdk({ adminKey: other.adminKey.secret })
      .get<{ data: KeyportRateLimit[] }>('/organization/rate_limits', ADMIN);
    expect(theirs.data[0]).toEqual(unlimited('organization.rate_limit', '*'));

    expect(await client.delete('/organization/rate_limits/rl-*', ADMIN)).toEqual(
      unlimited('organization.rate_limit', '*'),
    );
    expect((await listExtension('/rate_limits'))[0]).toEqual(unlimited('organization.rate_limit', '*'));
  });

  it('API key (Keyport): project.api_key.rate_limit, for one key of the project', async () => {
    const projectId = await newProject();
    const key = await createProjectKey(t, projectId);
    const otherKey = await createProjectKey(t, projectId, { name: 'Neighbour' });
    const path = `/organization/projects/${projectId}/api_keys/${key.id}/rate_limits`;
    expect((await listExtension(path.replace('/organization', ''))).map((l) => l.object)).toEqual(
      Array(SERVED.length + 1).fill('project.api_key.rate_limit'),
    );
    const updated = await client.post<KeyportRateLimit>(`${path}/rl-mock-gpt-4o`, {
      body: { max_tokens_per_1_minute: 500 },
      ...ADMIN,
    });
    expect(updated).toEqual({
      ...unlimited('project.api_key.rate_limit', 'mock-gpt-4o'),
      max_tokens_per_1_minute: 500,
    });
    const listed = await listExtension(path.replace('/organization', ''));
    expect(listed.find((l) => l.id === 'rl-mock-gpt-4o')).toEqual(updated);
    const neighbour = await listExtension(`/projects/${projectId}/api_keys/${otherKey.id}/rate_limits`);
    expect(neighbour.find((l) => l.id === 'rl-mock-gpt-4o')?.max_tokens_per_1_minute).toBe(0);
    expect((await listAll(projectId)).find((l) => l.id === 'rl-mock-gpt-4o')?.max_tokens_per_1_minute).toBe(
      0,
    );

    expect(await client.delete(`${path}/rl-mock-gpt-4o`, ADMIN)).toEqual(
      unlimited('project.api_key.rate_limit', 'mock-gpt-4o'),
    );
    // A revoked key has no limits to manage.
    await client.admin.organization.projects.apiKeys.delete(key.id, { project_id: projectId });
    expectApiError(
      await adminRequest(t, 'GET', path.replace('/v1/organization', '').replace('/organization', '')),
      404,
      'not_found',
    );
  });

  it('the gateway enforces a limit set through the SDK', async () => {
    const projectId = await newProject();
    const key = await createProjectKey(t, projectId);
    await rateLimits().updateRateLimit('rl-mock-gpt-4o', {
      project_id: projectId,
      max_requests_per_1_minute: 1,
    });
    const gateway = t.sdk({ apiKey: key.value });
    const chat = () =>
      gateway.chat.completions.create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }] });
    await chat();
    const refused = await chat().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect(refused).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    // Another model of the project is not limited.
    await gateway.chat.completions.create({
      model: 'mock-gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hi' }],
    });
  });
});
