/**
 * `/v1/organization/alerts` through the official SDK's generic methods (Keyport's extension has no
 * typed resource): list with cursor pagination and filters, mark read, and isolation between
 * organizations.
 */
import OpenAI from 'openai';
import { CursorPage } from 'openai/pagination';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertInput } from '../../src/notifications/alert.ts';
import { MemoryMailer } from '../../src/notifications/mailer.ts';
import { Notifications } from '../../src/notifications/notifications.ts';
import {
  adminRequest,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
  type SecondOrganization,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

interface AlertObject {
  object: 'organization.alert';
  id: string;
  kind: string;
  severity: 'info' | 'warning' | 'critical';
  title: string;
  message: string;
  data: Record<string, unknown>;
  project_id: string | null;
  created_at: number;
  read_at: number | null;
}

const ADMIN = { __security: { adminAPIKeyAuth: true } } as const;

describe.each(backends)('Admin API alerts (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let other: SecondOrganization;
  let notifications: Notifications;
  let mailer: MemoryMailer;
  /** Five alerts of the first organization, in creation order. */
  let ids: string[];
  let otherAlertId: string;

  const list = (query: Record<string, unknown> = {}) =>
    client.getAPIList<AlertObject, CursorPage<AlertObject>>('/organization/alerts', CursorPage<AlertObject>, {
      query,
      ...ADMIN,
    });
  const markRead = (id: string) => client.post<AlertObject>(`/organization/alerts/${id}/read`, ADMIN);
  const allIds = async (query: Record<string, unknown> = {}) => {
    const seen: string[] = [];
    for await (const alert of list(query)) seen.push(alert.id);
    return seen;
  };

  async function raise(input: Partial<AlertInput> & { organizationId: string }): Promise<string> {
    const result = await notifications.notify({
      kind: 'budget.soft_limit',
      severity: 'warning',
      title: 'Budget 80% reached',
      message: 'Spent $80.00 of $100.00.',
      ...input,
    });
    if (!result.created) throw new Error('expected a new alert');
    return result.alert.id;
  }

  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
    other = await createSecondOrganization(t);
    mailer = new MemoryMailer();
    notifications = new Notifications({
      db: t.services.store.db,
      config: t.config,
      logger: t.services.logger,
      mailer,
    });
    const organizationId = t.instance.organization.id;
    const projectId = t.instance.project.id;
    ids = [];
    for (let i = 0; i < 5; i++) {
      ids.push(
        await raise({
          organizationId,
          projectId: i % 2 === 0 ? projectId : null,
          title: `Alert ${i}`,
          data: { n: i },
          emailRecipients: i === 0 ? ['ops@acme.test'] : undefined,
        }),
      );
    }
    otherAlertId = await raise({ organizationId: other.organization.id, title: 'Not yours' });
    await notifications.drain();
  });
  afterAll(async () => {
    await notifications?.close();
    await t?.close();
  });

  it('lists the organization’s alerts newest first, as organization.alert objects', async () => {
    const page = await list({ limit: 100 });
    expect(page.data.map((alert) => alert.id)).toEqual([...ids].reverse());
    expect(page.has_more).toBe(false);
    const first = page.data.at(-1)!;
    expect(first).toEqual({
      object: 'organization.alert',
      id: ids[0],
      kind: 'budget.soft_limit',
      severity: 'warning',
      title: 'Alert 0',
      message: 'Spent $80.00 of $100.00.',
      data: { n: 0 },
      project_id: t.instance.project.id,
      created_at: expect.any(Number),
      read_at: null,
    });
    expect(mailer.sent).toEqual([expect.objectContaining({ to: ['ops@acme.test'], subject: 'Alert 0' })]);
  });

  it('paginates with after/limit/has_more, in either order', async () => {
    expect(await allIds({ limit: 2 })).toEqual([...ids].reverse());
    expect(await allIds({ limit: 2, order: 'asc' })).toEqual(ids);

    const first = await list({ limit: 2, order: 'asc' });
    expect(first.data.map((alert) => alert.id)).toEqual(ids.slice(0, 2));
    expect(first.has_more).toBe(true);
    const raw = await adminRequest<{
      data: AlertObject[];
      first_id: string;
      last_id: string;
      has_more: boolean;
    }>(t, 'GET', `/alerts?limit=2&order=asc&after=${ids[3]}`);
    expect(raw.status).toBe(200);
    expect(raw.body).toMatchObject({ object: 'list', first_id: ids[4], last_id: ids[4], has_more: false });
  });

  it('filters by project and by read state', async () => {
    expect(await allIds({ project_id: t.instance.project.id, order: 'asc' })).toEqual([
      ids[0],
      ids[2],
      ids[4],
    ]);
    expect(await allIds({ project_id: other.project.id })).toEqual([]);

    const read = await markRead(ids[1]!);
    expect(read).toMatchObject({ id: ids[1], object: 'organization.alert' });
    expect(read.read_at).toEqual(expect.any(Number));
    expect(await allIds({ unread: true, order: 'asc' })).toEqual([ids[0], ids[2], ids[3], ids[4]]);
    expect(await allIds({ unread: false })).toEqual([ids[1]]);
  });

  it('marks an alert read once: reading it again keeps the first time', async () => {
    const first = await markRead(ids[3]!);
    const again = await markRead(ids[3]!);
    expect(again.read_at).toBe(first.read_at);
    expect((await list({ limit: 100 })).data.find((alert) => alert.id === ids[3])?.read_at).toBe(
      first.read_at,
    );
  });

  it('another organization’s alert is not found, and not listed', async () => {
    const error = await markRead(otherAlertId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expectApiError(await adminRequest(t, 'POST', `/alerts/${otherAlertId}/read`), 404, 'not_found');
    expectApiError(await adminRequest(t, 'POST', '/alerts/alert_doesnotexist/read'), 404, 'not_found');
    expect(await allIds()).not.toContain(otherAlertId);

    const theirs = await adminRequest<{ data: AlertObject[] }>(t, 'GET', '/alerts', {
      key: other.adminKey.secret,
    });
    expect(theirs.body.data.map((alert) => alert.id)).toEqual([otherAlertId]);
    // Their unread alert stayed unread: our request changed nothing.
    expect(theirs.body.data[0]!.read_at).toBeNull();
  });

  it('needs an admin key', async () => {
    expectApiError(await adminRequest(t, 'GET', '/alerts', { key: null }), 401, 'missing_api_key');
    const projectKey = await createProjectKey(t, t.instance.project.id);
    expectApiError(await adminRequest(t, 'GET', '/alerts', { key: projectKey.value }), 403, 'missing_scope');
    expectApiError(
      await adminRequest(t, 'POST', `/alerts/${ids[0]}/read`, { key: projectKey.value }),
      403,
      'missing_scope',
    );
  });

  it('refuses bad query parameters with a 400 naming them', async () => {
    expectApiError(await adminRequest(t, 'GET', '/alerts?limit=0'), 400, 'invalid_request', 'limit');
    expectApiError(await adminRequest(t, 'GET', '/alerts?unread=maybe'), 400, 'invalid_request', 'unread');
    expectApiError(await adminRequest(t, 'GET', '/alerts?order=sideways'), 400, 'invalid_request', 'order');
  });
});
