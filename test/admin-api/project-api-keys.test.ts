/**
 * `/v1/organization/projects/{project_id}/api_keys`: list, retrieve, update, delete through
 * client.admin.organization.projects.apiKeys, and Keyport's create, extended update and rotate
 * through raw requests; every change checked against what the verifier then answers.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseKey } from '../../src/core/key-format.ts';
import { MAX_GRACE_SECONDS } from '../../src/keys/key-service.ts';
import {
  adminRequest,
  type CreatedProjectKey,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
  expectOk,
  type KeyportProjectKey,
  type RotatedProjectKey,
  redacted,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

const nowSeconds = () => Math.floor(Date.now() / 1000);

describe.each(backends)('project API keys (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let projectId: string;
  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
  });
  afterAll(() => t?.close());
  // A fresh project per test, so lists and verifications never see another test's keys.
  beforeEach(async () => {
    projectId = (await client.admin.organization.projects.create({ name: 'Keys' })).id;
  });

  const verify = (secret: string, context?: { ip?: string; now?: Date }) =>
    t.services.verifier.verify(secret, context);
  const keyPath = (keyId: string) => `/projects/${projectId}/api_keys/${keyId}`;
  const update = async (keyId: string, body: Record<string, unknown>) =>
    expectOk(await adminRequest<KeyportProjectKey>(t, 'POST', keyPath(keyId), { body }));
  const rotate = async (keyId: string, body: Record<string, unknown>) =>
    expectOk(await adminRequest<RotatedProjectKey>(t, 'POST', `${keyPath(keyId)}/rotate`, { body }));
  const retrieve = (keyId: string) =>
    client.admin.organization.projects.apiKeys
      .retrieve(keyId, { project_id: projectId })
      .then((key) => key as KeyportProjectKey);
  const listIds = async () => {
    const ids: string[] = [];
    for await (const key of client.admin.organization.projects.apiKeys.list(projectId, { limit: 100 }))
      ids.push(key.id);
    return ids;
  };

  describe('create (Keyport extension)', () => {
    it('returns the secret once, with every restriction, and the secret verifies for the project', async () => {
      const before = nowSeconds();
      const created = await createProjectKey(t, projectId, {
        name: 'Backend',
        scopes: ['api.model.request', 'api.files.read'],
        allowed_models: ['gpt-4o*', 'llama-3'],
        allowed_ips: ['10.1.2.3/8', '2001:db8::1'],
        expires_in_seconds: 86_400,
      });
      expect(created).toMatchObject({
        object: 'organization.project.api_key',
        name: 'Backend',
        redacted_value: redacted(created.value),
        last_used_at: null,
        owner: {
          type: 'user',
          user: { id: t.instance.owner.id, email: 'owner@localhost', name: 'Owner', role: 'owner' },
        },
        owner_project_access: 'active',
        allowed_models: ['gpt-4o*', 'llama-3'],
        allowed_ips: ['10.0.0.0/8', '2001:db8::1/128'],
        enabled: true,
      });
      expect(created.scopes).toEqual(
        expect.arrayContaining(['api.chat.completions.write', 'api.files.read']),
      );
      expect(created.expires_at).toBeGreaterThanOrEqual(before + 86_400 - 1);
      expect(created.expires_at).toBeLessThanOrEqual(nowSeconds() + 86_400 + 1);
      expect(parseKey(created.value)).toEqual({ prefix: 'kp', kind: 'proj' });

      const result = await verify(created.value, { ip: '10.9.9.9' });
      if (!result.valid) throw new Error(`expected a valid key, got ${result.code}`);
      expect(result.key).toMatchObject({ id: created.id, kind: 'proj', projectId, scopes: created.scopes });
      expect(result.project?.id).toBe(projectId);
      expect(result.organization.id).toBe(t.instance.organization.id);
    });

    it('creates a key that never expires with all permissions by default', async () => {
      const created = await createProjectKey(t, projectId, { name: 'Plain' });
      expect(created).toMatchObject({
        expires_at: null,
        scopes: [],
        allowed_models: [],
        allowed_ips: [],
        enabled: true,
      });
      expect((await verify(created.value, { now: new Date(Date.now() + 10 * 365 * 86_400_000) })).valid).toBe(
        true,
      );
    });

    it('accepts expires_at (unix seconds) and the key expires then', async () => {
      const expiresAt = nowSeconds() + 7200;
      const created = await createProjectKey(t, projectId, { expires_at: expiresAt });
      expect(created.expires_at).toBe(expiresAt);
      expect((await verify(created.value)).valid).toBe(true);
      expect(await verify(created.value, { now: new Date((expiresAt + 1) * 1000) })).toMatchObject({
        valid: false,
        code: 'EXPIRED',
      });
    });

    it('lets an admin give the key to another member with owner_user_id', async () => {
      const created = await createProjectKey(t, projectId, { owner_user_id: t.instance.owner.id });
      expect(created.owner.user?.id).toBe(t.instance.owner.id);
    });

    it('refuses an owner_user_id from another organization, without revealing the user', async () => {
      const other = await createSecondOrganization(t, 'Owner leak check');
      const response = await adminRequest(t, 'POST', `/projects/${projectId}/api_keys`, {
        body: { name: 'Stolen owner', owner_user_id: other.owner.id },
      });
      const error = expectApiError(response, 400, 'invalid_request', 'owner_user_id');
      expect(response.text).not.toContain(other.owner.email);
      expect(error.message).not.toContain(other.owner.name);
      expect(await listIds()).toEqual([]);
    });

    it.each([
      ['a name of the wrong type', { name: 123 }, 'name'],
      ['no name', { name: undefined }, 'name'],
      ['an empty name', { name: '' }, 'name'],
      ['an unknown field', { colour: 'red' }, 'colour'],
      ['a CIDR with too many bits', { allowed_ips: ['10.0.0.0/33'] }, 'allowed_ips'],
      ['an IP that is not one', { allowed_ips: ['abc'] }, 'allowed_ips'],
      ['a broken glob', { allowed_models: ['gpt-[4'] }, 'allowed_models'],
      ['an unknown scope', { scopes: ['api.teleport.write'] }, 'scopes'],
      ['read-only mixed with other scopes', { scopes: ['api.all.read', 'api.files.write'] }, 'scopes'],
      ['scopes that are not strings', { scopes: [1] }, 'scopes.0'],
      ['an expiry in the past', { expires_at: nowSeconds() - 60 }, 'expires_at'],
      ['expires_in_seconds of 0', { expires_in_seconds: 0 }, 'expires_in_seconds'],
      ['a negative expires_in_seconds', { expires_in_seconds: -3600 }, 'expires_in_seconds'],
      [
        'both expires_in_seconds and expires_at',
        { expires_in_seconds: 60, expires_at: nowSeconds() + 60 },
        'expires_at',
      ],
      ['enabled: false', { enabled: false }, 'enabled'],
      ['an unknown owner_user_id', { owner_user_id: 'user-doesNotExist000000000000' }, 'owner_user_id'],
    ])('refuses %s, writing nothing', async (_case, extra, param) => {
      const response = await adminRequest(t, 'POST', `/projects/${projectId}/api_keys`, {
        body: { name: 'Refused', ...extra },
      });
      expectApiError(response, 400, 'invalid_request', param);
      expect(await listIds()).toEqual([]);
    });

    it('answers 404 for an unknown project', async () => {
      const response = await adminRequest(t, 'POST', '/projects/proj_doesNotExist0000000000000/api_keys', {
        body: { name: 'k' },
      });
      expectApiError(response, 404, 'not_found');
    });
  });

  describe('list and retrieve (SDK)', () => {
    it('show keys with their owner and redacted value, never the secret', async () => {
      const created = await createProjectKey(t, projectId, { name: 'Listed' });
      const serviceAccount = await client.admin.organization.projects.serviceAccounts.create(projectId, {
        name: 'bot',
      });

      const retrieved = await retrieve(created.id);
      const { value: _value, ...withoutSecret } = created;
      expect(retrieved).toEqual(withoutSecret);

      const page = await client.admin.organization.projects.apiKeys.list(projectId);
      expect(page.data.map((key) => key.id)).toEqual([created.id, serviceAccount.api_key?.id]);
      expect(page.data[1]).toMatchObject({
        object: 'organization.project.api_key',
        name: 'Secret key',
        owner: {
          type: 'service_account',
          service_account: { id: serviceAccount.id, name: 'bot', role: 'member' },
        },
        owner_project_access: 'active',
      });
      const text = JSON.stringify([retrieved, page.data]);
      expect(text).not.toContain(created.value);
      expect(text).not.toContain(serviceAccount.api_key?.value);
      expect(text).not.toMatch(/"value"/);
      for (const key of page.data)
        expect(key.redacted_value).toMatch(/^kp_(proj|svc)_[0-9A-Za-z]+…[0-9A-Za-z]{4}$/);
    });

    it('answer 404 for a key of another project of the same organization', async () => {
      const created = await createProjectKey(t, projectId);
      const other = await client.admin.organization.projects.create({ name: 'Elsewhere' });
      const error = await client.admin.organization.projects.apiKeys
        .retrieve(created.id, { project_id: other.id })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect(error).toMatchObject({ status: 404, code: 'not_found' });
    });

    it('answer 404 for an unknown project', async () => {
      const error = await client.admin.organization.projects.apiKeys
        .list('proj_doesNotExist0000000000000')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    });
  });

  describe('update', () => {
    it('changes scopes and expires_in_seconds through the SDK, effective at once', async () => {
      const created = await createProjectKey(t, projectId);
      const before = await verify(created.value); // warm the verification cache
      expect(before.valid && before.key.permissions).toEqual({ mode: 'all' });

      const now = nowSeconds();
      const updated = (await client.admin.organization.projects.apiKeys.update(created.id, {
        project_id: projectId,
        scopes: ['api.all.read'],
        expires_in_seconds: 600,
      })) as KeyportProjectKey;
      expect(updated).toMatchObject({
        id: created.id,
        scopes: ['api.all.read'],
        redacted_value: created.redacted_value,
      });
      expect(updated.expires_at).toBeGreaterThanOrEqual(now + 600 - 1);
      expect(updated.expires_at).toBeLessThanOrEqual(nowSeconds() + 600 + 1);
      expect(await retrieve(created.id)).toEqual(updated);

      const after = await verify(created.value);
      expect(after.valid && after.key.permissions).toEqual({ mode: 'read_only' });
      expect(await verify(created.value, { now: new Date((now + 602) * 1000) })).toMatchObject({
        valid: false,
        code: 'EXPIRED',
      });
    });

    it('renames, sets model allow-lists and clears the expiry (Keyport extension)', async () => {
      const created = await createProjectKey(t, projectId, { expires_in_seconds: 3600 });
      const updated = await update(created.id, {
        name: 'Renamed',
        allowed_models: ['gpt-4o-mini', 'meta-llama/*'],
        expires_at: null,
      });
      expect(updated).toMatchObject({
        name: 'Renamed',
        allowed_models: ['gpt-4o-mini', 'meta-llama/*'],
        expires_at: null,
      });
      expect(await retrieve(created.id)).toEqual(updated);
      const result = await verify(created.value, { now: new Date(Date.now() + 7200_000) });
      if (!result.valid) throw new Error(`expected a valid key, got ${result.code}`);
      expect(result.key.allowsModel('meta-llama/Llama-3-8B')).toBe(true);
      expect(result.key.allowsModel('gpt-4o')).toBe(false);
    });

    it('disables a key (DISABLED at once) and enables it again', async () => {
      const created = await createProjectKey(t, projectId);
      expect((await verify(created.value)).valid).toBe(true);
      expect(await update(created.id, { enabled: false })).toMatchObject({ enabled: false });
      expect(await verify(created.value)).toMatchObject({
        valid: false,
        code: 'DISABLED',
        keyId: created.id,
      });
      expect(await update(created.id, { enabled: true })).toMatchObject({ enabled: true });
      expect((await verify(created.value)).valid).toBe(true);
    });

    it('restricts a key to an IP range at once', async () => {
      const created = await createProjectKey(t, projectId);
      expect((await verify(created.value, { ip: '192.168.1.1' })).valid).toBe(true);
      expect(await update(created.id, { allowed_ips: ['10.0.0.0/8'] })).toMatchObject({
        allowed_ips: ['10.0.0.0/8'],
      });
      expect((await verify(created.value, { ip: '10.1.2.3' })).valid).toBe(true);
      expect(await verify(created.value, { ip: '192.168.1.1' })).toMatchObject({
        valid: false,
        code: 'IP_NOT_ALLOWED',
      });
      expect((await verify(created.value, { ip: '::ffff:10.1.2.3' })).valid).toBe(true);
    });

    it.each([
      ['an empty body', {}, null],
      ['a name of the wrong type', { name: 123 }, 'name'],
      ['an empty name', { name: '  ' }, 'name'],
      ['an unknown field', { name: 'x', owner_user_id: 'user-x' }, 'owner_user_id'],
      ['a bad CIDR', { allowed_ips: ['10.0.0.0/33'] }, 'allowed_ips'],
      ['a bad CIDR next to a valid name', { name: 'Changed', allowed_ips: ['abc'] }, 'allowed_ips'],
      ['a broken glob', { allowed_models: ['gpt-[4'] }, 'allowed_models'],
      ['an unknown scope', { scopes: ['api.everything'] }, 'scopes'],
      ['an expiry in the past', { expires_at: nowSeconds() - 1 }, 'expires_at'],
      ['expires_in_seconds of 0', { expires_in_seconds: 0 }, 'expires_in_seconds'],
      ['a negative expires_in_seconds', { expires_in_seconds: -1 }, 'expires_in_seconds'],
      ['enabled that is not a boolean', { enabled: 'no' }, 'enabled'],
    ])('refuses %s, changing nothing', async (_case, body, param) => {
      const created = await createProjectKey(t, projectId, { name: 'Unchanged' });
      const { value: secret, ...original } = created;
      expectApiError(
        await adminRequest(t, 'POST', keyPath(created.id), { body }),
        400,
        'invalid_request',
        param,
      );
      expect(await retrieve(created.id)).toEqual(original);
      expect((await verify(secret, { ip: '192.168.1.1' })).valid).toBe(true);
    });

    it('throws the SDK BadRequestError for an unknown scope, and NotFoundError for an unknown key', async () => {
      const created = await createProjectKey(t, projectId);
      const bad = await client.admin.organization.projects.apiKeys
        .update(created.id, { project_id: projectId, scopes: ['api.nope.read'] })
        .catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
      expect(bad).toMatchObject({ status: 400, code: 'invalid_request', param: 'scopes' });

      const missing = await client.admin.organization.projects.apiKeys
        .update('key_doesNotExist0000', { project_id: projectId, scopes: [] })
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
      expect(missing).toMatchObject({ status: 404, code: 'not_found' });
    });
  });

  describe('delete (SDK)', () => {
    it('revokes the key: REVOKED on the very next verification, gone from list and retrieve', async () => {
      const created = await createProjectKey(t, projectId);
      expect((await verify(created.value)).valid).toBe(true); // cached now

      const deleted = await client.admin.organization.projects.apiKeys.delete(created.id, {
        project_id: projectId,
      });
      expect(deleted).toEqual({
        object: 'organization.project.api_key.deleted',
        id: created.id,
        deleted: true,
      });
      expect(await verify(created.value)).toMatchObject({
        valid: false,
        code: 'REVOKED',
        redactedValue: created.redacted_value,
      });
      expect(await listIds()).not.toContain(created.id);
      await expect(retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(
        client.admin.organization.projects.apiKeys.delete(created.id, { project_id: projectId }),
      ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      expectApiError(
        await adminRequest(t, 'POST', keyPath(created.id), { body: { name: 'zombie' } }),
        404,
        'not_found',
      );
      expectApiError(
        await adminRequest(t, 'POST', `${keyPath(created.id)}/rotate`, { body: { grace_period_seconds: 0 } }),
        404,
        'not_found',
      );
    });
  });

  describe('rotate (Keyport extension)', () => {
    let key: CreatedProjectKey;
    beforeEach(async () => {
      key = await createProjectKey(t, projectId, { name: 'Rotating', scopes: ['api.files.read'] });
      expect((await verify(key.value)).valid).toBe(true);
    });

    it('issues a new secret for the same key; the old one works through the grace period only', async () => {
      const before = nowSeconds();
      const rotated = await rotate(key.id, { grace_period_seconds: 3600 });
      expect(rotated.id).toBe(key.id);
      expect(rotated.value).not.toBe(key.value);
      expect(parseKey(rotated.value)).toEqual({ prefix: 'kp', kind: 'proj' });
      expect(rotated.redacted_value).toBe(redacted(rotated.value));
      expect(rotated.redacted_value).not.toBe(key.redacted_value);
      expect(rotated).toMatchObject({
        name: 'Rotating',
        scopes: ['api.files.read'],
        created_at: key.created_at,
      });
      expect(rotated.previous_secret_expires_at).toBeGreaterThanOrEqual(before + 3600);
      expect(rotated.previous_secret_expires_at).toBeLessThanOrEqual(nowSeconds() + 3600);

      const { value: _secret, previous_secret_expires_at: _until, ...shown } = rotated;
      expect(await retrieve(key.id)).toEqual(shown);
      expect(await listIds()).toEqual([key.id]);

      for (const secret of [key.value, rotated.value]) {
        const result = await verify(secret);
        expect(result.valid && result.key.id).toBe(key.id);
      }
      const later = { now: new Date(Date.now() + 3601_000) };
      // The denial names the secret presented, never the new one.
      expect(await verify(key.value, later)).toMatchObject({
        valid: false,
        code: 'ROTATED',
        keyId: key.id,
        redactedValue: key.redacted_value,
      });
      expect((await verify(rotated.value, later)).valid).toBe(true);
    });

    it('with grace_period_seconds 0 (or none) refuses the old secret at once', async () => {
      const rotated = await rotate(key.id, { grace_period_seconds: 0 });
      expect(await verify(key.value)).toMatchObject({ valid: false, code: 'ROTATED' });
      expect((await verify(rotated.value)).valid).toBe(true);

      const again = await rotate(key.id, {});
      expect(await verify(rotated.value)).toMatchObject({ valid: false, code: 'ROTATED' });
      expect((await verify(again.value)).valid).toBe(true);
    });

    it('never extends an earlier secret’s grace period with a later rotation', async () => {
      const first = await rotate(key.id, { grace_period_seconds: 60 });
      const second = await rotate(key.id, { grace_period_seconds: 3600 });
      const in2Minutes = { now: new Date(Date.now() + 120_000) };
      expect(await verify(key.value, in2Minutes)).toMatchObject({ valid: false, code: 'ROTATED' });
      expect((await verify(first.value, in2Minutes)).valid).toBe(true);
      expect((await verify(second.value, in2Minutes)).valid).toBe(true);
    });

    it('a revoked key refuses all its secrets, old and new', async () => {
      const rotated = await rotate(key.id, { grace_period_seconds: 3600 });
      await client.admin.organization.projects.apiKeys.delete(key.id, { project_id: projectId });
      expect(await verify(key.value)).toMatchObject({ valid: false, code: 'REVOKED' });
      expect(await verify(rotated.value)).toMatchObject({ valid: false, code: 'REVOKED' });
    });

    it.each([
      ['a negative grace period', { grace_period_seconds: -1 }],
      ['a grace period over 30 days', { grace_period_seconds: MAX_GRACE_SECONDS + 1 }],
      ['a fractional grace period', { grace_period_seconds: 1.5 }],
      ['a grace period that is not a number', { grace_period_seconds: '3600' }],
      ['an unknown field', { grace_period_seconds: 60, revoke_old: true }],
    ])('refuses %s, keeping the secret', async (_case, body) => {
      const response = await adminRequest(t, 'POST', `${keyPath(key.id)}/rotate`, { body });
      const error = expectApiError(response, 400, 'invalid_request');
      expect(error.param).toBe('revoke_old' in body ? 'revoke_old' : 'grace_period_seconds');
      expect((await retrieve(key.id)).redacted_value).toBe(key.redacted_value);
      const result = await verify(key.value, { now: new Date(Date.now() + 40 * 86_400_000) });
      expect(result.valid).toBe(true);
    });

    it('accepts the longest grace period, 30 days', async () => {
      const rotated = await rotate(key.id, { grace_period_seconds: MAX_GRACE_SECONDS });
      expect(
        (await verify(key.value, { now: new Date(Date.now() + (MAX_GRACE_SECONDS - 60) * 1000) })).valid,
      ).toBe(true);
      expect(
        await verify(key.value, { now: new Date(Date.now() + (MAX_GRACE_SECONDS + 60) * 1000) }),
      ).toMatchObject({ valid: false, code: 'ROTATED' });
      expect((await verify(rotated.value)).valid).toBe(true);
    });
  });
});
