/**
 * Cursor pagination as the SDK drives it: `after`, `limit`, `has_more`, `first_id`, `last_id`,
 * and `order` on admin keys (CursorPage follows the last item's id; ConversationCursorPage
 * follows `last_id`).
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, createProjectKey, expectApiError, expectOk } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

interface ListBody {
  object: 'list';
  data: { id: string }[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

describe.each(backends)('pagination (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let projectId: string;
  /** 25 project keys, in creation order. */
  let keyIds: string[];
  /** The bootstrap admin key and 11 more, in creation order. */
  let adminKeyIds: string[];

  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
    projectId = (await client.admin.organization.projects.create({ name: 'Paged' })).id;
    keyIds = [];
    for (let i = 0; i < 25; i++) keyIds.push((await createProjectKey(t, projectId, { name: `key ${i}` })).id);
    adminKeyIds = [t.instance.adminKey.key.id];
    for (let i = 0; i < 11; i++) {
      adminKeyIds.push((await client.admin.organization.adminAPIKeys.create({ name: `admin ${i}` })).id);
    }
  });
  afterAll(() => t?.close());

  it('auto-pagination returns every key exactly once, in creation order', async () => {
    const seen: string[] = [];
    for await (const key of client.admin.organization.projects.apiKeys.list(projectId, { limit: 10 }))
      seen.push(key.id);
    expect(seen).toEqual(keyIds);

    let pages = 0;
    const firstPage = await client.admin.organization.projects.apiKeys.list(projectId, { limit: 10 });
    for await (const page of firstPage.iterPages()) {
      pages++;
      expect(page.data.length).toBe(pages < 3 ? 10 : 5);
    }
    expect(pages).toBe(3);
  });

  it('pages carry has_more, first_id and last_id', async () => {
    const path = `/projects/${projectId}/api_keys`;
    const first = expectOk(await adminRequest<ListBody>(t, 'GET', `${path}?limit=10`));
    expect(first).toEqual({
      object: 'list',
      data: expect.any(Array),
      first_id: keyIds[0],
      last_id: keyIds[9],
      has_more: true,
    });
    expect(first.data.map((key) => key.id)).toEqual(keyIds.slice(0, 10));

    const second = expectOk(
      await adminRequest<ListBody>(t, 'GET', `${path}?limit=10&after=${first.last_id}`),
    );
    expect(second.data.map((key) => key.id)).toEqual(keyIds.slice(10, 20));
    expect(second).toMatchObject({ first_id: keyIds[10], last_id: keyIds[19], has_more: true });

    const third = expectOk(
      await adminRequest<ListBody>(t, 'GET', `${path}?limit=10&after=${second.last_id}`),
    );
    expect(third.data.map((key) => key.id)).toEqual(keyIds.slice(20));
    expect(third).toMatchObject({ first_id: keyIds[20], last_id: keyIds[24], has_more: false });

    const exact = expectOk(await adminRequest<ListBody>(t, 'GET', `${path}?limit=5&after=${keyIds[19]}`));
    expect(exact.data.map((key) => key.id)).toEqual(keyIds.slice(20));
    expect(exact.has_more).toBe(false);

    const past = expectOk(await adminRequest<ListBody>(t, 'GET', `${path}?after=${keyIds[24]}`));
    expect(past).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });

  it('the default page holds 20 items and limit=100 is allowed', async () => {
    const page = await client.admin.organization.projects.apiKeys.list(projectId);
    expect(page.data.map((key) => key.id)).toEqual(keyIds.slice(0, 20));
    expect(page.has_more).toBe(true);
    const all = await client.admin.organization.projects.apiKeys.list(projectId, { limit: 100 });
    expect(all.data.map((key) => key.id)).toEqual(keyIds);
    expect(all.has_more).toBe(false);
  });

  it('does not skip or repeat items when keys are revoked between pages', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Shifting' });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await createProjectKey(t, project.id, { name: `k${i}` })).id);
    const first = await client.admin.organization.projects.apiKeys.list(project.id, { limit: 3 });
    expect(first.data.map((key) => key.id)).toEqual(ids.slice(0, 3));
    // The cursor item itself goes away: the next page must still start right after it.
    await client.admin.organization.projects.apiKeys.delete(ids[2] as string, { project_id: project.id });
    await client.admin.organization.projects.apiKeys.delete(ids[4] as string, { project_id: project.id });
    const second = await first.getNextPage();
    expect(second.data.map((key) => key.id)).toEqual([ids[3], ids[5]]);
    expect(second.has_more).toBe(false);
  });

  it('admin keys: order=desc reverses, and auto-pagination follows it', async () => {
    const asc = await client.admin.organization.adminAPIKeys.list({ limit: 100 });
    expect(asc.data.map((key) => key.id)).toEqual(adminKeyIds);
    const desc = await client.admin.organization.adminAPIKeys.list({ limit: 100, order: 'desc' });
    expect(desc.data.map((key) => key.id)).toEqual([...adminKeyIds].reverse());

    const seen: string[] = [];
    for await (const key of client.admin.organization.adminAPIKeys.list({ limit: 5, order: 'desc' }))
      seen.push(key.id);
    expect(seen).toEqual([...adminKeyIds].reverse());

    const page = expectOk(
      await adminRequest<ListBody>(t, 'GET', `/admin_api_keys?limit=5&order=desc&after=${adminKeyIds[6]}`),
    );
    expect(page.data.map((key) => key.id)).toEqual(adminKeyIds.slice(1, 6).reverse());
    expect(page).toMatchObject({ first_id: adminKeyIds[5], last_id: adminKeyIds[1], has_more: true });
  });

  it('projects and service accounts paginate the same way', async () => {
    const projectIds = [t.instance.project.id, projectId];
    for (let i = 0; i < 4; i++) {
      const project = await client.admin.organization.projects.create({ name: `p${i}` });
      if (i === 1) await client.admin.organization.projects.archive(project.id);
      projectIds.push(project.id);
    }
    // Projects created by other tests in this file come after these; compare the prefix.
    const seen: string[] = [];
    for await (const project of client.admin.organization.projects.list({
      limit: 2,
      include_archived: true,
    })) {
      seen.push(project.id);
    }
    expect(seen.filter((id) => projectIds.includes(id))).toEqual(projectIds);
    expect(new Set(seen).size).toBe(seen.length);
    const active: string[] = [];
    for await (const project of client.admin.organization.projects.list({ limit: 2 }))
      active.push(project.id);
    expect(active.filter((id) => projectIds.includes(id))).toEqual(projectIds.filter((_, i) => i !== 3));

    const accountIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      accountIds.push(
        (
          await client.admin.organization.projects.serviceAccounts.create(projectIds[2] as string, {
            name: `bot ${i}`,
            create_service_account_only: true,
          })
        ).id,
      );
    }
    const accounts: string[] = [];
    const pages = client.admin.organization.projects.serviceAccounts.list(projectIds[2] as string, {
      limit: 2,
    });
    for await (const account of pages) accounts.push(account.id);
    expect(accounts).toEqual(accountIds);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=-1', 'limit'],
    ['limit=ten', 'limit'],
    ['limit=2.5', 'limit'],
    ['order=sideways', 'order'],
    ['after=', 'after'],
  ])('refuses %s with a 400 on every list', async (query, param) => {
    for (const path of [
      '/admin_api_keys',
      '/projects',
      `/projects/${projectId}/api_keys`,
      `/projects/${projectId}/service_accounts`,
    ]) {
      expectApiError(await adminRequest(t, 'GET', `${path}?${query}`), 400, 'invalid_request', param);
    }
  });

  it('throws the SDK BadRequestError for limit=0', async () => {
    const error = await client.admin.organization.projects.list({ limit: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_request', param: 'limit' });
  });

  it('refuses a bad owner_project_access and include_archived', async () => {
    expectApiError(
      await adminRequest(t, 'GET', `/projects/${projectId}/api_keys?owner_project_access=all`),
      400,
      'invalid_request',
      'owner_project_access',
    );
    expectApiError(
      await adminRequest(t, 'GET', '/projects?include_archived=yes'),
      400,
      'invalid_request',
      'include_archived',
    );
  });
});
