/**
 * The shared security suite, run on every Admin API route: who may call it (an admin key of
 * the organization, nothing else), what a caller of another organization learns (a 404, never
 * a 403 or data), and that no error ever shows a secret (only its redacted form).
 */
import OpenAI, { type APIError } from 'openai';
import type { SpendAlertCreateParams } from 'openai/resources/admin/organization/spend-alerts';
import type { SpendLimitUpdateParams } from 'openai/resources/admin/organization/spend-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../src/core/key-format.ts';
import {
  adminRequest,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
  type RawResponse,
  redacted,
  type SecondOrganization,
} from '../helpers/admin-api.ts';
import { backends, TEST_ACTOR } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';

/** Resources of the first organization that a route acts on; fresh for every route. */
interface Fixture {
  projectId: string;
  keyId: string;
  serviceAccountId: string;
  adminKeyId: string;
  orgSpendAlertId: string;
  projectSpendAlertId: string;
  budgetId: string;
}

interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  template: string;
  body?: Record<string, unknown>;
  /** Whether the path names resources of one organization (so another organization must get a 404). */
  owned: boolean;
  /**
   * For organization-wide routes that change something: a GET of the organization's own state there,
   * which another organization's request must leave as it was.
   */
  observe?: string;
  /** Reports the organization's usage: its own admin key must see the seeded usage's project there. */
  showsUsage?: boolean;
}

const SPEND_ALERT = {
  currency: 'USD',
  interval: 'month',
  threshold_amount: 10_000,
  notification_channel: { type: 'email', recipients: ['security@example.com'] },
} satisfies SpendAlertCreateParams;
const SPEND_LIMIT = {
  currency: 'USD',
  interval: 'month',
  threshold_amount: 100_000,
} satisfies SpendLimitUpdateParams;
const ADMIN = { __security: { adminAPIKeyAuth: true } } as const;
/** Usage routes read from two days ago to now; the first organization has usage in that range. */
const USAGE_SINCE = Math.floor(Date.now() / 1000) - 2 * 86_400;
const USAGE_KINDS = [
  'completions',
  'embeddings',
  'moderations',
  'images',
  'audio_speeches',
  'audio_transcriptions',
] as const;

const ROUTES: Route[] = [
  { method: 'GET', template: '/admin_api_keys', owned: false },
  { method: 'POST', template: '/admin_api_keys', body: { name: 'Security admin key' }, owned: false },
  { method: 'GET', template: '/admin_api_keys/{admin_key_id}', owned: true },
  { method: 'DELETE', template: '/admin_api_keys/{admin_key_id}', owned: true },
  { method: 'GET', template: '/projects', owned: false },
  { method: 'POST', template: '/projects', body: { name: 'Security project' }, owned: false },
  { method: 'GET', template: '/projects/{project_id}', owned: true },
  { method: 'POST', template: '/projects/{project_id}', body: { name: 'Renamed' }, owned: true },
  { method: 'POST', template: '/projects/{project_id}/archive', owned: true },
  { method: 'GET', template: '/projects/{project_id}/api_keys', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/api_keys',
    body: { name: 'Security key' },
    owned: true,
  },
  { method: 'GET', template: '/projects/{project_id}/api_keys/{key_id}', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/api_keys/{key_id}',
    body: { name: 'Renamed' },
    owned: true,
  },
  {
    method: 'POST',
    template: '/projects/{project_id}/api_keys/{key_id}/rotate',
    body: { grace_period_seconds: 0 },
    owned: true,
  },
  { method: 'DELETE', template: '/projects/{project_id}/api_keys/{key_id}', owned: true },
  { method: 'GET', template: '/projects/{project_id}/service_accounts', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/service_accounts',
    body: { name: 'Security bot' },
    owned: true,
  },
  { method: 'GET', template: '/projects/{project_id}/service_accounts/{service_account_id}', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/service_accounts/{service_account_id}',
    body: { name: 'Renamed' },
    owned: true,
  },
  { method: 'DELETE', template: '/projects/{project_id}/service_accounts/{service_account_id}', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/service_accounts/{service_account_id}/api_keys',
    body: { name: 'Security bot key' },
    owned: true,
  },
  // Rate limits: the project's (OpenAI), the organization's and a key's (Keyport).
  { method: 'GET', template: '/projects/{project_id}/rate_limits', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/rate_limits/rl-mock-gpt-4o',
    body: { max_requests_per_1_minute: 10 },
    owned: true,
  },
  { method: 'DELETE', template: '/projects/{project_id}/rate_limits/rl-mock-gpt-4o', owned: true },
  { method: 'GET', template: '/rate_limits', owned: false },
  {
    method: 'POST',
    template: '/rate_limits/rl-*',
    body: { max_requests_per_1_minute: 10_000 },
    owned: false,
    observe: '/rate_limits',
  },
  { method: 'DELETE', template: '/rate_limits/rl-*', owned: false, observe: '/rate_limits' },
  { method: 'GET', template: '/projects/{project_id}/api_keys/{key_id}/rate_limits', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/api_keys/{key_id}/rate_limits/rl-*',
    body: { max_concurrent_requests: 2 },
    owned: true,
  },
  { method: 'DELETE', template: '/projects/{project_id}/api_keys/{key_id}/rate_limits/rl-*', owned: true },
  // Spend limits and alerts (OpenAI).
  { method: 'GET', template: '/spend_limit', owned: false },
  { method: 'POST', template: '/spend_limit', body: SPEND_LIMIT, owned: false, observe: '/spend_limit' },
  { method: 'DELETE', template: '/spend_limit', owned: false, observe: '/spend_limit' },
  { method: 'GET', template: '/projects/{project_id}/spend_limit', owned: true },
  { method: 'POST', template: '/projects/{project_id}/spend_limit', body: SPEND_LIMIT, owned: true },
  { method: 'DELETE', template: '/projects/{project_id}/spend_limit', owned: true },
  { method: 'GET', template: '/spend_alerts', owned: false },
  { method: 'POST', template: '/spend_alerts', body: SPEND_ALERT, owned: false, observe: '/spend_alerts' },
  { method: 'GET', template: '/spend_alerts/{org_spend_alert_id}', owned: true },
  { method: 'POST', template: '/spend_alerts/{org_spend_alert_id}', body: SPEND_ALERT, owned: true },
  { method: 'DELETE', template: '/spend_alerts/{org_spend_alert_id}', owned: true },
  { method: 'GET', template: '/projects/{project_id}/spend_alerts', owned: true },
  { method: 'POST', template: '/projects/{project_id}/spend_alerts', body: SPEND_ALERT, owned: true },
  { method: 'GET', template: '/projects/{project_id}/spend_alerts/{project_spend_alert_id}', owned: true },
  {
    method: 'POST',
    template: '/projects/{project_id}/spend_alerts/{project_spend_alert_id}',
    body: SPEND_ALERT,
    owned: true,
  },
  { method: 'DELETE', template: '/projects/{project_id}/spend_alerts/{project_spend_alert_id}', owned: true },
  // Budgets (Keyport).
  { method: 'GET', template: '/budgets', owned: false },
  {
    method: 'POST',
    template: '/budgets',
    body: { metric: 'tokens', period: 'day', hard_limit: null },
    owned: false,
    observe: '/budgets',
  },
  { method: 'GET', template: '/budgets/{budget_id}', owned: true },
  { method: 'DELETE', template: '/budgets/{budget_id}', owned: true },
  // Usage and costs (OpenAI), the usage export (Keyport): organization-wide reads.
  ...USAGE_KINDS.map(
    (kind): Route => ({
      method: 'GET',
      template: `/usage/${kind}?start_time=${USAGE_SINCE}&group_by=project_id,api_key_id`,
      owned: false,
      showsUsage: true,
    }),
  ),
  {
    method: 'GET',
    template: `/costs?start_time=${USAGE_SINCE}&group_by=project_id`,
    owned: false,
    showsUsage: true,
  },
  { method: 'GET', template: `/usage/export?start_time=${USAGE_SINCE}`, owned: false, showsUsage: true },
];

/** `path` with more query parameters. */
const withQuery = (path: string, query: string) => `${path}${path.includes('?') ? '&' : '?'}${query}`;

function pathOf(route: Route, fixture: Fixture): string {
  return route.template
    .replace('{project_id}', fixture.projectId)
    .replace('{key_id}', fixture.keyId)
    .replace('{service_account_id}', fixture.serviceAccountId)
    .replace('{admin_key_id}', fixture.adminKeyId)
    .replace('{org_spend_alert_id}', fixture.orgSpendAlertId)
    .replace('{project_spend_alert_id}', fixture.projectSpendAlertId)
    .replace('{budget_id}', fixture.budgetId);
}

describe.each(backends)('Admin API security (%s)', (backend) => {
  let t: TestApp;
  let other: SecondOrganization;
  /** Secrets that must never be shown in full by an error or a log line. */
  const secrets: string[] = [];
  let projectKey: string;
  let serviceAccountKey: string;
  let revokedAdminKey: string;
  let disabledAdminKey: string;
  let rotatedOutAdminKey: string;
  let unknownAdminKey: string;

  beforeAll(async () => {
    t = await createTestApp({ backend });
    const client = t.sdk();
    const { organization, owner } = t.instance;
    other = await createSecondOrganization(t);

    projectKey = (await createProjectKey(t, t.instance.project.id, { name: 'Not an admin key' })).value;
    const serviceAccount = await client.admin.organization.projects.serviceAccounts.create(
      t.instance.project.id,
      {
        name: 'Not an admin',
      },
    );
    serviceAccountKey = serviceAccount.api_key?.value ?? '';

    const adminKey = (name: string) =>
      t.services.keys.create(
        {
          organizationId: organization.id,
          kind: 'admin',
          name,
          ownerUserId: owner.id,
        },
        TEST_ACTOR,
      );
    const adminScope = { organizationId: organization.id, projectId: null };
    const revoked = await adminKey('Revoked');
    await client.admin.organization.adminAPIKeys.delete(revoked.key.id);
    revokedAdminKey = revoked.secret;
    const disabled = await adminKey('Disabled');
    await t.services.keys.update(adminScope, disabled.key.id, { enabled: false }, TEST_ACTOR);
    disabledAdminKey = disabled.secret;
    const rotated = await adminKey('Rotated');
    await t.services.keys.rotate(adminScope, rotated.key.id, 0, TEST_ACTOR);
    rotatedOutAdminKey = rotated.secret;
    unknownAdminKey = generateKey('kp', 'admin');
    // Usage of every kind an hour ago, for the usage routes (another organization must not see it).
    await storeUsage(
      t.services.store.db,
      USAGE_KINDS.map((kind) =>
        usageEvent({
          organizationId: organization.id,
          projectId: t.instance.project.id,
          apiKeyId: 'key_security_usage',
          kind,
          createdAt: new Date(Date.now() - 3_600_000),
          inputTokens: 10,
          units: 1,
          costNanoUsd: 1000,
        }),
      ),
    );

    secrets.push(
      t.adminKey,
      other.adminKey.secret,
      projectKey,
      serviceAccountKey,
      revokedAdminKey,
      disabledAdminKey,
      rotatedOutAdminKey,
      unknownAdminKey,
    );
  });
  afterAll(() => t?.close());

  /** An error body shows at most the redacted form of any secret. */
  function expectNoSecret(response: RawResponse<unknown>) {
    for (const secret of secrets) {
      expect(response.text).not.toContain(secret);
      expect(response.text).not.toContain(secret.slice(12, -4));
    }
  }

  describe.each(ROUTES)('$method $template', (route) => {
    let fixture: Fixture;
    beforeAll(async () => {
      const client = t.sdk();
      const project = await client.admin.organization.projects.create({
        name: `Fixture for ${route.template}`,
      });
      const key = await createProjectKey(t, project.id, { name: 'Fixture key' });
      const serviceAccount = await client.admin.organization.projects.serviceAccounts.create(project.id, {
        name: 'Fixture bot',
      });
      const adminKey = await client.admin.organization.adminAPIKeys.create({ name: 'Fixture admin key' });
      secrets.push(key.value, serviceAccount.api_key?.value ?? '', adminKey.value);
      const orgSpendAlert = await client.admin.organization.spendAlerts.create(SPEND_ALERT);
      const projectSpendAlert = await client.admin.organization.projects.spendAlerts.create(
        project.id,
        SPEND_ALERT,
      );
      // The project's monthly cost budget, which is also its spend limit.
      const budget = await client.post<{ id: string }>('/organization/budgets', {
        body: { project_id: project.id, metric: 'cost', period: 'month', hard_limit: 50_000 },
        ...ADMIN,
      });
      // Both organizations have a spend limit (a route before may have deleted either).
      for (const organization of [client, t.sdk({ adminKey: other.adminKey.secret })]) {
        await organization.admin.organization.spendLimit.update(SPEND_LIMIT);
      }
      fixture = {
        projectId: project.id,
        keyId: key.id,
        serviceAccountId: serviceAccount.id,
        adminKeyId: adminKey.id,
        orgSpendAlertId: orgSpendAlert.id,
        projectSpendAlertId: projectSpendAlert.id,
        budgetId: budget.id,
      };
    });

    const send = (key: string | null, headers: Record<string, string> = {}, path = pathOf(route, fixture)) =>
      adminRequest(t, route.method, path, { key, headers, ...(route.body ? { body: route.body } : {}) });

    it('without an Authorization header: 401 missing_api_key', async () => {
      const response = await send(null);
      expectApiError(response, 401, 'missing_api_key');
    });

    it.each([
      ['a malformed key', 'Bearer not-a-key'],
      [
        'a key with a bad checksum',
        () => `Bearer ${t.adminKey.slice(0, -1)}${t.adminKey.endsWith('A') ? 'B' : 'A'}`,
      ],
      ['an OpenAI-style key', `Bearer sk-proj-${'x'.repeat(48)}`],
      ['another scheme', () => `Basic ${Buffer.from(`user:${t.adminKey}`).toString('base64')}`],
      ['no token after Bearer', 'Bearer '],
      ['two tokens', () => `Bearer ${t.adminKey} ${t.adminKey}`],
    ])('with %s: 401 invalid_api_key', async (_case, header) => {
      const value = typeof header === 'function' ? header() : header;
      const response = await send(null, { authorization: value });
      expectApiError(response, 401, 'invalid_api_key');
      expectNoSecret(response);
    });

    it('with a well-formed key that does not exist: 401 invalid_api_key, naming only its redacted form', async () => {
      const response = await send(unknownAdminKey);
      const error = expectApiError(response, 401, 'invalid_api_key');
      expect(error.message).toContain(redacted(unknownAdminKey));
      expectNoSecret(response);
    });

    it('with a key of another deployment (another prefix): 401 invalid_api_key', async () => {
      const foreign = generateKey('acme', 'admin');
      const response = await send(foreign);
      expectApiError(response, 401, 'invalid_api_key');
      expect(response.text).not.toContain(foreign);
    });

    it.each([
      ['a revoked admin key', 'invalid_api_key', () => revokedAdminKey],
      ['a disabled admin key', 'disabled_api_key', () => disabledAdminKey],
      ['an admin key secret rotated out', 'invalid_api_key', () => rotatedOutAdminKey],
    ])('with %s: 401 %s', async (_case, code, key) => {
      const response = await send(key());
      const error = expectApiError(response, 401, code);
      expect(error.message).toContain(redacted(key()));
      expectNoSecret(response);
    });

    it.each([
      ['a project key', () => projectKey],
      ['a service-account key', () => serviceAccountKey],
    ])('with %s: 403 missing_scope', async (_case, key) => {
      const response = await send(key());
      const error = expectApiError(response, 403, 'missing_scope');
      expect(error.message).toContain('api.management.read');
      expect(error.message).toContain(redacted(key()));
      expectNoSecret(response);
    });

    it('with a key in the query string: 400, even with a valid Authorization header', async () => {
      for (const query of [
        `api_key=${projectKey}`,
        `key=${encodeURIComponent(t.adminKey)}`,
        `x=1&token=${t.adminKey}`,
      ]) {
        const response = await send(t.adminKey, {}, withQuery(pathOf(route, fixture), query));
        expectApiError(response, 400, 'invalid_request', null);
        expectNoSecret(response);
      }
      const anonymous = await send(null, {}, withQuery(pathOf(route, fixture), `api_key=${projectKey}`));
      expectApiError(anonymous, 400, 'invalid_request');
    });

    if (route.owned) {
      it('with another organization’s admin key: 404, never 403 and never data', async () => {
        const response = await send(other.adminKey.secret);
        const error = expectApiError(response, 404, 'not_found');
        expect(error.message).not.toContain('Fixture');
        expect(response.text).not.toContain(t.instance.organization.id);
        expectNoSecret(response);
      });
    } else {
      it('with another organization’s admin key: only that organization’s data', async () => {
        const observed = route.observe ? await adminRequest(t, 'GET', route.observe) : undefined;
        const response = await send(other.adminKey.secret);
        expect(response.status, response.text).toBe(200);
        const text = response.text;
        expect(text).not.toContain(t.instance.organization.id);
        expect(text).not.toContain(t.instance.project.id);
        expect(text).not.toContain(t.instance.adminKey.key.id);
        expect(text).not.toContain(fixture.projectId);
        expect(text).not.toContain(fixture.adminKeyId);
        if (route.method === 'POST') {
          const created = (response.body as { id: string }).id;
          const client = t.sdk();
          const ownIds = route.template.startsWith('/projects')
            ? (
                await client.admin.organization.projects.list({ limit: 100, include_archived: true })
              ).data.map((p) => p.id)
            : (await client.admin.organization.adminAPIKeys.list({ limit: 100 })).data.map((k) => k.id);
          expect(ownIds).not.toContain(created);
        }
        if (observed) {
          const after = await adminRequest(t, 'GET', route.observe!);
          expect(after.status).toBe(observed.status);
          expect(after.body).toEqual(observed.body);
        }
      });
    }

    // Last: the same request with the organization's own admin key works, so the refusals above
    // came from the caller and not from a broken fixture (and none of them changed anything).
    it('with the organization’s admin key: succeeds', async () => {
      const response = await send(t.adminKey);
      expect(response.status, response.text).toBe(200);
      expect(response.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
      // The usage another organization's key did not see is there for this one.
      if (route.showsUsage) expect(response.text).toContain(t.instance.project.id);
    });
  });

  it('another organization cannot reach a resource through its own project id either', async () => {
    const client = t.sdk();
    const key = await createProjectKey(t, t.instance.project.id, { name: 'Cross-project' });
    const serviceAccount = await client.admin.organization.projects.serviceAccounts.create(
      t.instance.project.id,
      {
        name: 'Cross-project bot',
      },
    );
    const projectAlert = await client.admin.organization.projects.spendAlerts.create(
      t.instance.project.id,
      SPEND_ALERT,
    );
    const own = `/projects/${other.project.id}`;
    for (const [method, path, body] of [
      ['GET', `${own}/api_keys/${key.id}`],
      ['POST', `${own}/api_keys/${key.id}`, { enabled: false }],
      ['POST', `${own}/api_keys/${key.id}/rotate`, { grace_period_seconds: 0 }],
      ['DELETE', `${own}/api_keys/${key.id}`],
      ['GET', `${own}/service_accounts/${serviceAccount.id}`],
      ['POST', `${own}/service_accounts/${serviceAccount.id}`, { name: 'Hijacked' }],
      ['POST', `${own}/service_accounts/${serviceAccount.id}/api_keys`, { name: 'Hijack key' }],
      ['DELETE', `${own}/service_accounts/${serviceAccount.id}`],
      ['GET', `${own}/api_keys/${key.id}/rate_limits`],
      ['POST', `${own}/api_keys/${key.id}/rate_limits/rl-*`, { max_requests_per_1_minute: 1 }],
      ['DELETE', `${own}/api_keys/${key.id}/rate_limits/rl-*`],
      ['GET', `${own}/spend_alerts/${projectAlert.id}`],
      ['POST', `${own}/spend_alerts/${projectAlert.id}`, SPEND_ALERT],
      ['DELETE', `${own}/spend_alerts/${projectAlert.id}`],
    ] as const) {
      const response = await adminRequest(t, method, path, {
        key: other.adminKey.secret,
        ...(body ? { body } : {}),
      });
      expectApiError(response, 404, 'not_found');
    }
    expect((await t.services.verifier.verify(key.value)).valid).toBe(true);
    expect((await t.services.verifier.verify(serviceAccount.api_key?.value ?? '')).valid).toBe(true);
    expect(
      await client.admin.organization.projects.spendAlerts.retrieve(projectAlert.id, {
        project_id: t.instance.project.id,
      }),
    ).toEqual(projectAlert);
    expect(
      (
        await client.admin.organization.projects.serviceAccounts.retrieve(serviceAccount.id, {
          project_id: t.instance.project.id,
        })
      ).name,
    ).toBe('Cross-project bot');
  });

  it('an error about an old secret never shows the new secret’s redacted form', async () => {
    const created = await createProjectKey(t, t.instance.project.id, { name: 'Rotated while leaked' });
    const rotated = await adminRequest<{ value: string; redacted_value: string }>(
      t,
      'POST',
      `/projects/${t.instance.project.id}/api_keys/${created.id}/rotate`,
      { body: { grace_period_seconds: 3600 } },
    );
    expect(rotated.status).toBe(200);
    secrets.push(created.value, rotated.body.value);
    // Still in its grace period, so this is the "not an admin key" refusal.
    const inGrace = await adminRequest(t, 'GET', '/projects', { key: created.value });
    const error = expectApiError(inGrace, 403, 'missing_scope');
    expect(error.message).toContain(redacted(created.value));
    expect(inGrace.text).not.toContain(rotated.body.redacted_value);

    const scope = { organizationId: t.instance.organization.id, projectId: null };
    const admin = await t.services.keys.create(
      {
        ...scope,
        kind: 'admin',
        name: 'Rotated admin',
      },
      TEST_ACTOR,
    );
    const newAdmin = await t.services.keys.rotate(scope, admin.key.id, 0, TEST_ACTOR);
    secrets.push(admin.secret, newAdmin.secret);
    const rotatedOut = await adminRequest(t, 'GET', '/projects', { key: admin.secret });
    expectApiError(rotatedOut, 401, 'invalid_api_key');
    expect(rotatedOut.text).toContain(redacted(admin.secret));
    expect(rotatedOut.text).not.toContain(newAdmin.key.redactedValue);
  });

  it('a key pasted into the URL path is refused like one in the query, and never echoed', async () => {
    const key = await createProjectKey(t, t.instance.project.id, { name: 'Pasted' });
    secrets.push(key.value);
    for (const [method, path] of [
      ['GET', `/admin_api_keys/${t.adminKey}`],
      ['DELETE', `/admin_api_keys/${t.adminKey}`],
      ['GET', `/projects/${t.instance.project.id}/api_keys/${key.value}`],
      ['DELETE', `/projects/${t.instance.project.id}/api_keys/${encodeURIComponent(key.value)}`],
      ['GET', `/projects/${key.value}`],
      ['GET', `/v1/organization/no-such-route/${key.value}`],
    ] as const) {
      const response = await adminRequest(t, method, path);
      expectApiError(response, 400, 'invalid_request', null);
      expectNoSecret(response);
    }
    expect((await t.services.verifier.verify(t.adminKey)).valid).toBe(true);
    expect((await t.services.verifier.verify(key.value)).valid).toBe(true);
  });

  it('the SDK raises its own error classes for each refusal', async () => {
    const cases = [
      [unknownAdminKey, OpenAI.AuthenticationError, 401, 'invalid_api_key'],
      [revokedAdminKey, OpenAI.AuthenticationError, 401, 'invalid_api_key'],
      [projectKey, OpenAI.PermissionDeniedError, 403, 'missing_scope'],
      [serviceAccountKey, OpenAI.PermissionDeniedError, 403, 'missing_scope'],
    ] as const;
    for (const [key, errorClass, status, code] of cases) {
      const error = await t
        .sdk({ adminKey: key })
        .admin.organization.projects.list()
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(errorClass);
      expect(error).toMatchObject({ status, code, type: 'invalid_request_error' });
      expect((error as APIError).requestID).toMatch(/^req_[0-9a-f]{32}$/);
      expect((error as APIError).message).not.toContain(key);
    }
    const foreign = await t
      .sdk({ adminKey: other.adminKey.secret })
      .admin.organization.projects.retrieve(t.instance.project.id)
      .catch((e: unknown) => e);
    expect(foreign).toBeInstanceOf(OpenAI.NotFoundError);
    expect(foreign).toMatchObject({ status: 404, code: 'not_found' });
  });

  it('each organization lists only its own admin keys and projects', async () => {
    const clients = [t.sdk(), t.sdk({ adminKey: other.adminKey.secret })] as const;
    const [ownKeys, otherKeys] = await Promise.all(
      clients.map(async (client) =>
        (await client.admin.organization.adminAPIKeys.list({ limit: 100 })).data.map((k) => k.id),
      ),
    );
    expect(ownKeys).toContain(t.instance.adminKey.key.id);
    expect(otherKeys).toContain(other.adminKey.key.id);
    expect(ownKeys?.filter((id) => otherKeys?.includes(id))).toEqual([]);

    const [ownProjects, otherProjects] = await Promise.all(
      clients.map(async (client) =>
        (await client.admin.organization.projects.list({ limit: 100, include_archived: true })).data.map(
          (p) => p.id,
        ),
      ),
    );
    expect(ownProjects).toContain(t.instance.project.id);
    expect(otherProjects).toContain(other.project.id);
    expect(ownProjects?.filter((id) => otherProjects?.includes(id))).toEqual([]);
  });

  it('never writes a secret to the logs', async () => {
    const logs = t.logs.join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect(logs).not.toContain(secret);
      expect(logs).not.toContain(secret.slice(12, -4));
    }
  });
});
