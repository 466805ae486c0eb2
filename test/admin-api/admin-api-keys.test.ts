/** `/v1/organization/admin_api_keys` through client.admin.organization.adminAPIKeys. */
import OpenAI, { type APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKey } from '../../src/core/key-format.ts';
import { adminRequest, expectApiError, redacted } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

describe.each(backends)('admin API keys (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
  });
  afterAll(() => t?.close());

  const listIds = async () => {
    const ids: string[] = [];
    for await (const key of client.admin.organization.adminAPIKeys.list({ limit: 100 })) ids.push(key.id);
    return ids;
  };

  it('creates a key, returning its secret once, and the secret works with the SDK', async () => {
    const before = Math.floor(Date.now() / 1000);
    const created = await client.admin.organization.adminAPIKeys.create({ name: 'CI admin key' });

    expect(created).toMatchObject({
      object: 'organization.admin_api_key',
      name: 'CI admin key',
      expires_at: null,
      last_used_at: null,
      owner: { type: 'user', object: 'organization.user', id: t.instance.owner.id, role: 'owner' },
    });
    expect(created.id).toMatch(/^key_/);
    expect(created.created_at).toBeGreaterThanOrEqual(before - 1);
    expect(parseKey(created.value)).toEqual({ prefix: 'kp', kind: 'admin' });
    expect(created.redacted_value).toBe(redacted(created.value));

    const withNewKey = t.sdk({ adminKey: created.value });
    const page = await withNewKey.admin.organization.adminAPIKeys.list();
    expect(page.data.map((key) => key.id)).toContain(created.id);
  });

  it('lists and retrieves keys without their secret, showing only the redacted value', async () => {
    const created = await client.admin.organization.adminAPIKeys.create({ name: 'Listed key' });

    const retrieved = await client.admin.organization.adminAPIKeys.retrieve(created.id);
    expect(retrieved).toEqual({
      object: 'organization.admin_api_key',
      id: created.id,
      name: 'Listed key',
      redacted_value: created.redacted_value,
      created_at: created.created_at,
      expires_at: null,
      last_used_at: null,
      owner: created.owner,
    });
    expect(retrieved.redacted_value).toMatch(/^kp_admin_[0-9A-Za-z]{3}…[0-9A-Za-z]{4}$/);

    const page = await client.admin.organization.adminAPIKeys.list({ limit: 100 });
    const listed = page.data.find((key) => key.id === created.id);
    expect(listed).toEqual(retrieved);
    for (const body of [JSON.stringify(retrieved), JSON.stringify(page.data)]) {
      expect(body).not.toContain(created.value);
      expect(body).not.toContain(created.value.slice(12, -4));
      expect(body).not.toMatch(/"value"/);
    }
  });

  it('sets expires_at from expires_in_seconds', async () => {
    const now = Math.floor(Date.now() / 1000);
    const created = await client.admin.organization.adminAPIKeys.create({
      name: 'Short-lived',
      expires_in_seconds: 3600,
    });
    expect(created.expires_at).toBeGreaterThanOrEqual(now + 3600 - 1);
    expect(created.expires_at).toBeLessThanOrEqual(now + 3600 + 2);
    expect((await client.admin.organization.adminAPIKeys.retrieve(created.id)).expires_at).toBe(
      created.expires_at,
    );
  });

  it('records last_used_at when a key is used', async () => {
    const created = await client.admin.organization.adminAPIKeys.create({ name: 'Used key' });
    await t.sdk({ adminKey: created.value }).admin.organization.projects.list();
    const retrieved = await client.admin.organization.adminAPIKeys.retrieve(created.id);
    expect(retrieved.last_used_at).toBeGreaterThanOrEqual(created.created_at);
  });

  it('deletes a key: it disappears and its secret stops working at once', async () => {
    const created = await client.admin.organization.adminAPIKeys.create({ name: 'Doomed key' });
    const withDoomed = t.sdk({ adminKey: created.value });
    await withDoomed.admin.organization.projects.list(); // warm the verification cache

    const deleted = await client.admin.organization.adminAPIKeys.delete(created.id);
    expect(deleted).toEqual({ object: 'organization.admin_api_key.deleted', id: created.id, deleted: true });

    const error = await withDoomed.admin.organization.projects.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((error as APIError).status).toBe(401);
    expect((error as APIError).code).toBe('invalid_api_key');
    expect((await t.services.verifier.verify(created.value)).valid).toBe(false);

    await expect(client.admin.organization.adminAPIKeys.retrieve(created.id)).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    expect(await listIds()).not.toContain(created.id);
    const again = await client.admin.organization.adminAPIKeys.delete(created.id).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OpenAI.NotFoundError);
    expect((again as APIError).code).toBe('not_found');
  });

  it('answers 404 for an unknown key id', async () => {
    const error = await client.admin.organization.adminAPIKeys
      .retrieve('key_doesNotExist01')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect((error as APIError).status).toBe(404);
    expect((error as APIError).code).toBe('not_found');
    expect((error as APIError).requestID).toMatch(/^req_[0-9a-f]{32}$/);
  });

  it.each([
    ['a name of the wrong type', { name: 123 }, 'name'],
    ['no name', {}, 'name'],
    ['an empty name', { name: '   ' }, 'name'],
    ['a name over 256 characters', { name: 'n'.repeat(257) }, 'name'],
    ['an unknown field', { name: 'k', scopes: [] }, 'scopes'],
    ['expires_in_seconds of 0', { name: 'k', expires_in_seconds: 0 }, 'expires_in_seconds'],
    ['a negative expires_in_seconds', { name: 'k', expires_in_seconds: -60 }, 'expires_in_seconds'],
    ['a fractional expires_in_seconds', { name: 'k', expires_in_seconds: 1.5 }, 'expires_in_seconds'],
  ])('refuses to create a key with %s, writing nothing', async (_case, body, param) => {
    const before = await listIds();
    const response = await adminRequest(t, 'POST', '/admin_api_keys', { body });
    expectApiError(response, 400, 'invalid_request', param);
    expect(await listIds()).toEqual(before);
  });

  it('throws the SDK BadRequestError with status, code and param', async () => {
    const error = await client.admin.organization.adminAPIKeys
      .create({ name: 'k', expires_in_seconds: -1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_request', param: 'expires_in_seconds' });
  });
});
