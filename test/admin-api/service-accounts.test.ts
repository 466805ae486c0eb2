/** `/v1/organization/projects/{project_id}/service_accounts` through client.admin.organization.projects.serviceAccounts. */
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseKey } from '../../src/core/key-format.ts';
import { adminRequest, expectApiError } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

const nowSeconds = () => Math.floor(Date.now() / 1000);

describe.each(backends)('service accounts (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let projectId: string;
  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
  });
  afterAll(() => t?.close());
  beforeEach(async () => {
    projectId = (await client.admin.organization.projects.create({ name: 'Bots' })).id;
  });

  const accounts = () => client.admin.organization.projects.serviceAccounts;
  const listIds = async () => {
    const ids: string[] = [];
    for await (const account of accounts().list(projectId, { limit: 100 })) ids.push(account.id);
    return ids;
  };

  it('creates a service account with a key returned once, which verifies for the project', async () => {
    const before = nowSeconds();
    const created = await accounts().create(projectId, { name: 'Deploy bot' });
    expect(created).toMatchObject({
      object: 'organization.project.service_account',
      name: 'Deploy bot',
      role: 'member',
    });
    expect(created.id).toMatch(/^svc_acct_/);
    expect(created.created_at).toBeGreaterThanOrEqual(before - 1);
    const apiKey = created.api_key;
    if (!apiKey) throw new Error('expected a key');
    expect(apiKey).toMatchObject({
      object: 'organization.project.service_account.api_key',
      name: 'Secret key',
      expires_at: null,
    });
    expect(parseKey(apiKey.value)).toEqual({ prefix: 'kp', kind: 'svc' });

    const result = await t.services.verifier.verify(apiKey.value);
    if (!result.valid) throw new Error(`expected a valid key, got ${result.code}`);
    expect(result.key).toMatchObject({ id: apiKey.id, kind: 'svc', projectId, serviceAccountId: created.id });
    expect(result.organization.id).toBe(t.instance.organization.id);

    const retrieved = await accounts().retrieve(created.id, { project_id: projectId });
    expect(retrieved).toEqual({
      object: 'organization.project.service_account',
      id: created.id,
      name: 'Deploy bot',
      role: 'member',
      created_at: created.created_at,
    });
    const page = await accounts().list(projectId);
    expect(page.data).toEqual([retrieved]);
    expect(JSON.stringify(page.data)).not.toContain(apiKey.value);
  });

  it('gives the first key an expiry from expires_in_seconds', async () => {
    const now = nowSeconds();
    const created = await accounts().create(projectId, { name: 'Temp bot', expires_in_seconds: 3600 });
    expect(created.api_key?.expires_at).toBeGreaterThanOrEqual(now + 3600 - 1);
    expect(created.api_key?.expires_at).toBeLessThanOrEqual(nowSeconds() + 3600 + 1);
    const secret = created.api_key?.value ?? '';
    expect(await t.services.verifier.verify(secret, { now: new Date(Date.now() + 3700_000) })).toMatchObject({
      valid: false,
      code: 'EXPIRED',
    });
  });

  it('creates an account without a key with create_service_account_only', async () => {
    const created = await accounts().create(projectId, {
      name: 'Keyless',
      create_service_account_only: true,
    });
    expect(created).toMatchObject({ name: 'Keyless', role: 'none', api_key: null });
    expect((await client.admin.organization.projects.apiKeys.list(projectId)).data).toEqual([]);
    expect(await listIds()).toEqual([created.id]);
  });

  it('updates name and role', async () => {
    const created = await accounts().create(projectId, { name: 'Old bot' });
    const updated = await accounts().update(created.id, {
      project_id: projectId,
      name: 'New bot',
      role: 'owner',
    });
    expect(updated).toMatchObject({
      id: created.id,
      name: 'New bot',
      role: 'owner',
      created_at: created.created_at,
    });
    expect(await accounts().retrieve(created.id, { project_id: projectId })).toEqual(updated);
    const renamed = await accounts().update(created.id, { project_id: projectId, name: 'Newer bot' });
    expect(renamed).toMatchObject({ name: 'Newer bot', role: 'owner' });
  });

  it('issues further keys with name, scopes and expiry', async () => {
    const created = await accounts().create(projectId, { name: 'Multi-key bot' });
    const now = nowSeconds();
    const extra = await accounts().apiKeys.create(created.id, {
      project_id: projectId,
      name: 'Read key',
      scopes: ['api.all.read'],
      expires_in_seconds: 600,
    });
    expect(extra).toMatchObject({ object: 'organization.project.service_account.api_key', name: 'Read key' });
    expect(extra.expires_at).toBeGreaterThanOrEqual(now + 600 - 1);
    expect(parseKey(extra.value)).toEqual({ prefix: 'kp', kind: 'svc' });
    const result = await t.services.verifier.verify(extra.value);
    if (!result.valid) throw new Error(`expected a valid key, got ${result.code}`);
    expect(result.key).toMatchObject({ serviceAccountId: created.id, permissions: { mode: 'read_only' } });

    const unnamed = await accounts().apiKeys.create(created.id, { project_id: projectId });
    expect(unnamed.name).toBe('Secret key');
    expect((await t.services.verifier.verify(unnamed.value)).valid).toBe(true);

    const keys = await client.admin.organization.projects.apiKeys.list(projectId);
    expect(keys.data.map((key) => key.id)).toEqual([created.api_key?.id, extra.id, unnamed.id]);
    expect(keys.data.every((key) => key.owner.service_account?.id === created.id)).toBe(true);
  });

  it('deletes an account: all its keys stop verifying at once and it disappears', async () => {
    const created = await accounts().create(projectId, { name: 'Retired bot' });
    const second = await accounts().apiKeys.create(created.id, { project_id: projectId, name: 'Second' });
    const secrets = [created.api_key?.value ?? '', second.value];
    for (const secret of secrets) expect((await t.services.verifier.verify(secret)).valid).toBe(true);

    const deleted = await accounts().delete(created.id, { project_id: projectId });
    expect(deleted).toEqual({
      object: 'organization.project.service_account.deleted',
      id: created.id,
      deleted: true,
    });
    for (const secret of secrets) {
      expect(await t.services.verifier.verify(secret)).toMatchObject({ valid: false, code: 'REVOKED' });
    }
    expect(await listIds()).toEqual([]);
    expect((await client.admin.organization.projects.apiKeys.list(projectId)).data).toEqual([]);
    for (const call of [
      () => accounts().retrieve(created.id, { project_id: projectId }),
      () => accounts().update(created.id, { project_id: projectId, name: 'Back' }),
      () => accounts().delete(created.id, { project_id: projectId }),
      () => accounts().apiKeys.create(created.id, { project_id: projectId }),
    ]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect(error).toMatchObject({ status: 404, code: 'not_found' });
    }
  });

  it('answers 404 for an account of another project', async () => {
    const created = await accounts().create(projectId, { name: 'Homebody' });
    const other = await client.admin.organization.projects.create({ name: 'Elsewhere' });
    const error = await accounts()
      .retrieve(created.id, { project_id: other.id })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it.each([
    [
      'expires_in_seconds with create_service_account_only',
      { name: 'bot', create_service_account_only: true, expires_in_seconds: 60 },
      'expires_in_seconds',
    ],
    ['no name', {}, 'name'],
    ['a name of the wrong type', { name: 123 }, 'name'],
    ['an empty name', { name: '' }, 'name'],
    ['an unknown field', { name: 'bot', role: 'owner' }, 'role'],
    ['expires_in_seconds of 0', { name: 'bot', expires_in_seconds: 0 }, 'expires_in_seconds'],
    ['a negative expires_in_seconds', { name: 'bot', expires_in_seconds: -5 }, 'expires_in_seconds'],
  ])('refuses to create an account with %s, writing nothing', async (_case, body, param) => {
    const response = await adminRequest(t, 'POST', `/projects/${projectId}/service_accounts`, { body });
    expectApiError(response, 400, 'invalid_request', param);
    expect(await listIds()).toEqual([]);
    expect((await client.admin.organization.projects.apiKeys.list(projectId)).data).toEqual([]);
  });

  it.each([
    ['an unknown role', { role: 'admin' }, 'role'],
    ['role none', { role: 'none' }, 'role'],
    ['an empty name', { name: '' }, 'name'],
    ['an unknown field', { name: 'x', api_key: 'x' }, 'api_key'],
  ])('refuses to update an account with %s, changing nothing', async (_case, body, param) => {
    const created = await accounts().create(projectId, { name: 'Steady bot' });
    const { api_key: _key, ...original } = created;
    const response = await adminRequest(t, 'POST', `/projects/${projectId}/service_accounts/${created.id}`, {
      body,
    });
    expectApiError(response, 400, 'invalid_request', param);
    expect(await accounts().retrieve(created.id, { project_id: projectId })).toEqual(original);
  });

  it.each([
    ['an unknown scope', { scopes: ['api.unknown.read'] }, 'scopes'],
    ['expires_in_seconds of 0', { expires_in_seconds: 0 }, 'expires_in_seconds'],
    ['an unknown field', { allowed_ips: ['10.0.0.0/8'] }, 'allowed_ips'],
  ])('refuses to issue a key with %s, writing nothing', async (_case, body, param) => {
    const created = await accounts().create(projectId, { name: 'Picky bot' });
    const response = await adminRequest(
      t,
      'POST',
      `/projects/${projectId}/service_accounts/${created.id}/api_keys`,
      { body },
    );
    expectApiError(response, 400, 'invalid_request', param);
    expect(
      (await client.admin.organization.projects.apiKeys.list(projectId)).data.map((key) => key.id),
    ).toEqual([created.api_key?.id]);
  });

  it('throws the SDK BadRequestError when asked for a key and no key at once', async () => {
    const error = await accounts()
      .create(projectId, { name: 'bot', create_service_account_only: true, expires_in_seconds: 60 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_request', param: 'expires_in_seconds' });
  });
});
