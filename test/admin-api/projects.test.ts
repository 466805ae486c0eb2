/** `/v1/organization/projects` through client.admin.organization.projects. */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminRequest,
  createProjectKey,
  expectApiError,
  expectOk,
  type KeyportProject,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

describe.each(backends)('projects (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
  });
  afterAll(() => t?.close());

  const allProjects = async () => {
    const projects: OpenAI.Admin.Organization.Projects.Project[] = [];
    for await (const project of client.admin.organization.projects.list({
      include_archived: true,
      limit: 100,
    })) {
      projects.push(project);
    }
    return projects;
  };

  it('creates a project', async () => {
    const before = Math.floor(Date.now() / 1000);
    const project = await client.admin.organization.projects.create({
      name: 'Search',
      external_key_id: 'ext-1',
    });
    expect(project).toMatchObject({
      object: 'organization.project',
      name: 'Search',
      status: 'active',
      archived_at: null,
      external_key_id: 'ext-1',
    });
    expect(project.id).toMatch(/^proj_/);
    expect(project.created_at).toBeGreaterThanOrEqual(before - 1);
    expect(await client.admin.organization.projects.retrieve(project.id)).toEqual(project);
  });

  it('lists active projects, and archived ones only with include_archived', async () => {
    const kept = await client.admin.organization.projects.create({ name: 'Kept' });
    const archived = await client.admin.organization.projects.create({ name: 'Gone' });
    await client.admin.organization.projects.archive(archived.id);

    const active = (await client.admin.organization.projects.list({ limit: 100 })).data.map((p) => p.id);
    expect(active).toContain(t.instance.project.id);
    expect(active).toContain(kept.id);
    expect(active).not.toContain(archived.id);

    const all = await client.admin.organization.projects.list({ include_archived: true, limit: 100 });
    expect(all.data.map((p) => p.id)).toEqual(expect.arrayContaining([kept.id, archived.id]));
    expect(all.data.find((p) => p.id === archived.id)?.status).toBe('archived');
    const explicitFalse = await client.admin.organization.projects.list({
      include_archived: false,
      limit: 100,
    });
    expect(explicitFalse.data.map((p) => p.id)).not.toContain(archived.id);
  });

  it('updates a project name (and only what is given)', async () => {
    const project = await client.admin.organization.projects.create({
      name: 'Old name',
      external_key_id: 'ext-2',
    });
    const updated = await client.admin.organization.projects.update(project.id, { name: 'New name' });
    expect(updated).toMatchObject({
      id: project.id,
      name: 'New name',
      external_key_id: 'ext-2',
      status: 'active',
    });
    expect((await client.admin.organization.projects.retrieve(project.id)).name).toBe('New name');
    const cleared = await client.admin.organization.projects.update(project.id, { external_key_id: null });
    expect(cleared).toMatchObject({ name: 'New name', external_key_id: null });
  });

  it('archives a project: status archived, idempotent, and its keys stop working', async () => {
    const project = await client.admin.organization.projects.create({ name: 'To archive' });
    const key = await createProjectKey(t, project.id);
    expect((await t.services.verifier.verify(key.value)).valid).toBe(true);

    const archived = await client.admin.organization.projects.archive(project.id);
    expect(archived).toMatchObject({ id: project.id, object: 'organization.project', status: 'archived' });
    expect(archived.archived_at).toBeGreaterThanOrEqual(project.created_at);
    expect(await t.services.verifier.verify(key.value)).toMatchObject({
      valid: false,
      code: 'PROJECT_ARCHIVED',
    });

    const again = await client.admin.organization.projects.archive(project.id);
    expect(again.archived_at).toBe(archived.archived_at);
    expect(await client.admin.organization.projects.retrieve(project.id)).toEqual(archived);
  });

  it('refuses to update an archived project or give it new keys and service accounts', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Frozen' });
    await client.admin.organization.projects.archive(project.id);

    const update = await client.admin.organization.projects
      .update(project.id, { name: 'Thawed' })
      .catch((e: unknown) => e);
    expect(update).toBeInstanceOf(OpenAI.BadRequestError);
    expect(update).toMatchObject({ status: 400, code: 'invalid_request' });
    expect((await client.admin.organization.projects.retrieve(project.id)).name).toBe('Frozen');

    const key = await adminRequest(t, 'POST', `/projects/${project.id}/api_keys`, { body: { name: 'k' } });
    expectApiError(key, 400, 'invalid_request');
    const serviceAccount = await client.admin.organization.projects.serviceAccounts
      .create(project.id, { name: 'bot' })
      .catch((e: unknown) => e);
    expect(serviceAccount).toBeInstanceOf(OpenAI.BadRequestError);

    expect((await client.admin.organization.projects.apiKeys.list(project.id)).data).toEqual([]);
    expect((await client.admin.organization.projects.serviceAccounts.list(project.id)).data).toEqual([]);
  });

  it('applies a project IP allow-list to every key of the project (Keyport extension)', async () => {
    const project = expectOk(
      await adminRequest<KeyportProject>(t, 'POST', '/projects', {
        body: { name: 'Office only', allowed_ips: ['203.0.113.7'] },
      }),
    );
    expect(project.allowed_ips).toEqual(['203.0.113.7/32']);
    const key = await createProjectKey(t, project.id);
    expect((await t.services.verifier.verify(key.value, { ip: '203.0.113.7' })).valid).toBe(true);
    expect(await t.services.verifier.verify(key.value, { ip: '198.51.100.1' })).toMatchObject({
      valid: false,
      code: 'IP_NOT_ALLOWED',
    });

    const widened = expectOk(
      await adminRequest<KeyportProject>(t, 'POST', `/projects/${project.id}`, {
        body: { allowed_ips: ['198.51.100.0/24'] },
      }),
    );
    expect(widened.allowed_ips).toEqual(['198.51.100.0/24']);
    expect((await t.services.verifier.verify(key.value, { ip: '198.51.100.1' })).valid).toBe(true);
    expect((await t.services.verifier.verify(key.value, { ip: '203.0.113.7' })).valid).toBe(false);
  });

  it('answers 404 for an unknown project on every project route', async () => {
    const id = 'proj_doesNotExist00000000000';
    for (const call of [
      () => client.admin.organization.projects.retrieve(id),
      () => client.admin.organization.projects.update(id, { name: 'x' }),
      () => client.admin.organization.projects.archive(id),
    ]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect(error).toMatchObject({ status: 404, code: 'not_found' });
    }
  });

  it.each([
    ['a name of the wrong type', { name: 123 }, 'name'],
    ['no name', {}, 'name'],
    ['an empty name', { name: '' }, 'name'],
    ['an unknown field', { name: 'p', color: 'blue' }, 'color'],
    ['an invalid CIDR', { name: 'p', allowed_ips: ['10.0.0.0/33'] }, 'allowed_ips'],
    ['an IP that is not one', { name: 'p', allowed_ips: ['abc'] }, 'allowed_ips'],
    ['allowed_ips that is not a list', { name: 'p', allowed_ips: '10.0.0.0/8' }, 'allowed_ips'],
  ])('refuses to create a project with %s, writing nothing', async (_case, body, param) => {
    const before = await allProjects();
    expectApiError(await adminRequest(t, 'POST', '/projects', { body }), 400, 'invalid_request', param);
    expect(await allProjects()).toEqual(before);
  });

  it.each([
    ['a name of the wrong type', { name: 42 }, 'name'],
    ['an empty name', { name: ' ' }, 'name'],
    ['an unknown field', { name: 'x', status: 'archived' }, 'status'],
    [
      'an invalid CIDR next to a valid name',
      { name: 'Renamed', allowed_ips: ['10.0.0.0/33'] },
      'allowed_ips',
    ],
  ])('refuses to update a project with %s, changing nothing', async (_case, body, param) => {
    const project = await client.admin.organization.projects.create({ name: 'Stable' });
    expectApiError(
      await adminRequest(t, 'POST', `/projects/${project.id}`, { body }),
      400,
      'invalid_request',
      param,
    );
    expect(await client.admin.organization.projects.retrieve(project.id)).toEqual(project);
  });

  it('throws the SDK BadRequestError for a bad create', async () => {
    const error = await client.admin.organization.projects.create({ name: '' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'name',
      type: 'invalid_request_error',
    });
  });
});
