/**
 * Spend alerts through client.admin.organization.spendAlerts and ….projects.spendAlerts: exact
 * shapes, pagination, validation and isolation.
 */
import OpenAI from 'openai';
import type {
  OrganizationSpendAlert,
  SpendAlertCreateParams,
} from 'openai/resources/admin/organization/spend-alerts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminRequest,
  createSecondOrganization,
  expectApiError,
  expectOk,
  type SecondOrganization,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

const alert = (cents: number, recipients = ['finance@example.com']): SpendAlertCreateParams => ({
  currency: 'USD',
  interval: 'month',
  threshold_amount: cents,
  notification_channel: { type: 'email', recipients },
});

describe.each(backends)('spend alerts (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let other: SecondOrganization;
  const orgAlerts = () => client.admin.organization.spendAlerts;
  const projectAlerts = () => client.admin.organization.projects.spendAlerts;
  const newProject = async (name = 'Alerted') =>
    (await client.admin.organization.projects.create({ name })).id;

  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
    other = await createSecondOrganization(t);
  });
  afterAll(() => t?.close());

  it('organization: create, retrieve, replace and delete, in the SDK’s exact shapes', async () => {
    const created = await orgAlerts().create({
      ...alert(10_000, ['a@example.com', 'b@example.com']),
      notification_channel: {
        type: 'email',
        recipients: ['a@example.com', 'b@example.com'],
        subject_prefix: '[Acme]',
      },
    });
    expect(created).toEqual({
      object: 'organization.spend_alert',
      id: expect.stringMatching(/^spend_alert_/),
      threshold_amount: 10_000,
      currency: 'USD',
      interval: 'month',
      notification_channel: {
        type: 'email',
        recipients: ['a@example.com', 'b@example.com'],
        subject_prefix: '[Acme]',
      },
    });
    expect(await orgAlerts().retrieve(created.id)).toEqual(created);

    // An update replaces the whole alert (the SDK's types require every field).
    const updated = await orgAlerts().update(created.id, alert(20_000, ['c@example.com']));
    expect(updated).toEqual({
      ...created,
      threshold_amount: 20_000,
      notification_channel: { type: 'email', recipients: ['c@example.com'], subject_prefix: null },
    });
    expect(expectOk(await adminRequest(t, 'GET', `/spend_alerts/${created.id}`))).toEqual(updated);

    expect(await orgAlerts().delete(created.id)).toEqual({
      object: 'organization.spend_alert.deleted',
      id: created.id,
      deleted: true,
    });
    await expect(orgAlerts().retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(orgAlerts().delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(orgAlerts().update(created.id, alert(1))).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('project: create, list, retrieve, replace and delete, separate from the organization’s', async () => {
    const projectId = await newProject();
    const created = await projectAlerts().create(projectId, alert(5_000));
    expect(created).toEqual({
      object: 'project.spend_alert',
      id: expect.stringMatching(/^spend_alert_/),
      threshold_amount: 5_000,
      currency: 'USD',
      interval: 'month',
      notification_channel: { type: 'email', recipients: ['finance@example.com'], subject_prefix: null },
    });
    expect(await projectAlerts().retrieve(created.id, { project_id: projectId })).toEqual(created);
    expect((await projectAlerts().list(projectId)).data).toEqual([created]);
    expect((await orgAlerts().list({ limit: 100 })).data.map((a) => a.id)).not.toContain(created.id);
    // Addressed through the wrong scope, it does not exist.
    await expect(orgAlerts().retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const neighbour = await newProject('Neighbour');
    await expect(projectAlerts().retrieve(created.id, { project_id: neighbour })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );

    const updated = await projectAlerts().update(created.id, {
      project_id: projectId,
      ...alert(7_500, ['x@example.com']),
    });
    expect(updated).toEqual({
      ...created,
      threshold_amount: 7_500,
      notification_channel: { ...created.notification_channel, recipients: ['x@example.com'] },
    });
    expect(await projectAlerts().delete(created.id, { project_id: projectId })).toEqual({
      object: 'project.spend_alert.deleted',
      id: created.id,
      deleted: true,
    });
    expect((await projectAlerts().list(projectId)).data).toEqual([]);
  });

  it('lists with after, before, limit and order; the SDK iterates every page', async () => {
    const projectId = await newProject('Paged alerts');
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push((await projectAlerts().create(projectId, alert(i * 100))).id);

    const seen: OrganizationSpendAlert['id'][] = [];
    for await (const item of projectAlerts().list(projectId, { limit: 2 })) seen.push(item.id);
    expect(seen).toEqual(ids);
    const descending: string[] = [];
    for await (const item of projectAlerts().list(projectId, { limit: 2, order: 'desc' }))
      descending.push(item.id);
    expect(descending).toEqual([...ids].reverse());

    const base = `/projects/${projectId}/spend_alerts`;
    expect(expectOk(await adminRequest(t, 'GET', `${base}?limit=2`))).toMatchObject({
      object: 'list',
      first_id: ids[0],
      last_id: ids[1],
      has_more: true,
    });
    expect(expectOk(await adminRequest(t, 'GET', `${base}?limit=2&after=${ids[3]}`))).toMatchObject({
      first_id: ids[4],
      last_id: ids[4],
      has_more: false,
    });
    // before: the page just before it, in the list's order; has_more says whether more precede it.
    expect(expectOk(await adminRequest(t, 'GET', `${base}?limit=2&before=${ids[3]}`))).toMatchObject({
      first_id: ids[1],
      last_id: ids[2],
      has_more: true,
    });
    expect(expectOk(await adminRequest(t, 'GET', `${base}?limit=5&before=${ids[2]}`))).toMatchObject({
      first_id: ids[0],
      last_id: ids[1],
      has_more: false,
    });
    expect(
      expectOk(await adminRequest(t, 'GET', `${base}?limit=2&order=desc&before=${ids[1]}`)),
    ).toMatchObject({ first_id: ids[3], last_id: ids[2], has_more: true });
    expect(
      expectOk(await adminRequest(t, 'GET', `${base}?limit=10&after=${ids[0]}&before=${ids[4]}`)),
    ).toMatchObject({ first_id: ids[1], last_id: ids[3], has_more: false });
    expect(
      expectOk(await adminRequest(t, 'GET', `${base}?limit=2&after=${ids[0]}&before=${ids[4]}`)),
    ).toMatchObject({ first_id: ids[1], last_id: ids[2], has_more: true });
    // The SDK keeps `before` while it follows `after`: a window between two alerts.
    const window: string[] = [];
    for await (const item of projectAlerts().list(projectId, { limit: 1, after: ids[0], before: ids[3] }))
      window.push(item.id);
    expect(window).toEqual(ids.slice(1, 3));

    expectApiError(await adminRequest(t, 'GET', `${base}?limit=0`), 400, 'invalid_request', 'limit');
    expectApiError(await adminRequest(t, 'GET', `${base}?order=up`), 400, 'invalid_request', 'order');
  });

  it.each([
    [{ ...alert(100), currency: 'EUR' }, 'currency'],
    [{ ...alert(100), interval: 'week' }, 'interval'],
    [{ ...alert(-1) }, 'threshold_amount'],
    [{ ...alert(1.5) }, 'threshold_amount'],
    [{ ...alert(100), notification_channel: undefined }, 'notification_channel'],
    [{ ...alert(100, []) }, 'notification_channel.recipients'],
    [{ ...alert(100, ['not-an-address']) }, 'notification_channel.recipients'],
    [
      { ...alert(100), notification_channel: { type: 'sms', recipients: ['a@example.com'] } },
      'notification_channel.type',
    ],
    [{ ...alert(100), notification_channel: { type: 'email', recipients: ['a@example.com'], cc: [] } }, 'cc'],
    [{ ...alert(100), name: 'typo' }, 'name'],
  ])('refuses %j with a 400 naming %s', async (body, param) => {
    const projectId = await newProject();
    const created = await orgAlerts().create(alert(100));
    for (const [method, path] of [
      ['POST', '/spend_alerts'],
      ['POST', `/projects/${projectId}/spend_alerts`],
      ['POST', `/spend_alerts/${created.id}`],
    ] as const) {
      expectApiError(await adminRequest(t, method, path, { body }), 400, 'invalid_request', param);
    }
    expect(await orgAlerts().retrieve(created.id)).toEqual(created);
    expect((await projectAlerts().list(projectId)).data).toEqual([]);
    await orgAlerts().delete(created.id);
  });

  it('404 for unknown ids and for other organizations’ alerts and projects; theirs stay untouched', async () => {
    const theirs = t.sdk({ adminKey: other.adminKey.secret }).admin.organization;
    const theirOrgAlert = await theirs.spendAlerts.create(alert(100));
    const theirProjectAlert = await theirs.projects.spendAlerts.create(other.project.id, alert(200));
    const ownProject = await newProject();
    const requests: [string, string][] = [
      ['GET', `/spend_alerts/${theirOrgAlert.id}`],
      ['POST', `/spend_alerts/${theirOrgAlert.id}`],
      ['DELETE', `/spend_alerts/${theirOrgAlert.id}`],
      ['GET', '/spend_alerts/spend_alert_nope'],
      ['GET', `/projects/${other.project.id}/spend_alerts`],
      ['POST', `/projects/${other.project.id}/spend_alerts`],
      ['GET', `/projects/${other.project.id}/spend_alerts/${theirProjectAlert.id}`],
      ['POST', `/projects/${other.project.id}/spend_alerts/${theirProjectAlert.id}`],
      ['DELETE', `/projects/${other.project.id}/spend_alerts/${theirProjectAlert.id}`],
      ['GET', `/projects/${ownProject}/spend_alerts/${theirProjectAlert.id}`],
      ['DELETE', `/projects/${ownProject}/spend_alerts/${theirProjectAlert.id}`],
      ['GET', '/projects/proj_nope/spend_alerts'],
    ];
    for (const [method, path] of requests) {
      const response = await adminRequest(t, method as 'GET', path, {
        ...(method === 'POST' ? { body: alert(1) } : {}),
      });
      expectApiError(response, 404, 'not_found');
    }
    expect(await theirs.spendAlerts.retrieve(theirOrgAlert.id)).toEqual(theirOrgAlert);
    expect(
      await theirs.projects.spendAlerts.retrieve(theirProjectAlert.id, { project_id: other.project.id }),
    ).toEqual(theirProjectAlert);
    expect((await orgAlerts().list({ limit: 100 })).data.map((a) => a.id)).not.toContain(theirOrgAlert.id);
  });
});
