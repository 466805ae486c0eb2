/**
 * The shared security suite of the dashboard API, run on every route under
 * /api/organizations/{organization_id}: the routes are read from the running app (so a route
 * added later is covered without anyone listing it here), and for each one
 *
 *   no session                         401 not_authenticated
 *   a non-member (another org's id)    404 not_found, never 403 nor data
 *   each role                          the answer policy.ts's documented rules give:
 *     any member (owner or reader)       reads everything (but the audit log: owners only)
 *     an organization owner              changes anything
 *     a project owner                    changes their project (not archiving it)
 *     a project member                   creates keys in the project, changes the keys they own
 *   allowed: anything but 401/403 (and not the 404 for non-members); denied: 403 permission_denied.
 *
 * Every request that is meant to change something gets fresh resources of its own, so a route
 * that deletes cannot make the next one pass for the wrong reason.
 */
import type { SpendAlertCreateParams } from 'openai/resources/admin/organization/spend-alerts';
import type { SpendLimitUpdateParams } from 'openai/resources/admin/organization/spend-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addMember, insertUser } from '../../src/store/repositories/organizations.ts';
import { organizationMembers, projectMembers, type UserRow } from '../../src/store/schema.ts';
import {
  Browser,
  claimBootstrapOwner,
  createMember,
  PUBLIC_URL,
  type Reply,
  strongPassword,
} from '../accounts/helpers.ts';
import { createProjectKey, createSecondOrganization, type SecondOrganization } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

type Method = 'GET' | 'HEAD' | 'POST' | 'DELETE';
type Role = 'owner' | 'reader' | 'projectMember' | 'projectOwner';
const ROLES: Role[] = ['owner', 'reader', 'projectMember', 'projectOwner'];
const ORG_ROUTE = '/api/organizations/:organization_id';

interface Route {
  method: Method;
  /** Below /api/organizations/:organization_id, e.g. `/projects/:project_id/api_keys`. */
  route: string;
}

/** Resources a request acts on. */
interface Fixture {
  projectId: string;
  /** A key of the project owned by the project member. */
  memberKeyId: string;
  /** A key of the project owned by someone else (the organization's owner). */
  otherKeyId: string;
  serviceAccountId: string;
  adminKeyId: string;
  orgSpendAlertId: string;
  projectSpendAlertId: string;
  budgetId: string;
  inviteId: string;
  /** A reader of the organization, member of the project: whom the member routes act on. */
  victimId: string;
}

const SPEND_ALERT = {
  currency: 'USD',
  interval: 'month',
  threshold_amount: 10_000,
  notification_channel: { type: 'email', recipients: ['matrix@example.com'] },
} satisfies SpendAlertCreateParams;
const SPEND_LIMIT = {
  currency: 'USD',
  interval: 'month',
  threshold_amount: 100_000,
} satisfies SpendLimitUpdateParams;
const SINCE = Math.floor(Date.now() / 1000) - 86_400;

/**
 * What each role may do, as policy.ts documents it (written out here, not imported, so that the
 * policy and its description cannot drift apart unnoticed).
 */
function expected(role: Role, { method, route }: Route): 'allow' | 'deny' {
  if (route === '/audit_logs') return role === 'owner' ? 'allow' : 'deny'; // the audit log is for owners
  if (method === 'GET' || method === 'HEAD') return 'allow'; // any member reads everything else
  if (route === '/leave') return 'allow'; // any member may leave (the last owner gets a 400, below)
  if (role === 'owner') return 'allow';
  const inProject = route === '/projects/:project_id' || route.startsWith('/projects/:project_id/');
  if (!inProject) return 'deny'; // organization-wide changes take an owner
  if (route === '/projects/:project_id/archive') return 'deny'; // and so does archiving a project
  if (/^\/projects\/:project_id\/spend_(limit|alerts)/.test(route)) return 'deny'; // and its spending controls
  if (role === 'projectOwner') return 'allow';
  if (role === 'projectMember') {
    if (method === 'POST' && route === '/projects/:project_id/api_keys') return 'allow';
    if (
      (route === '/projects/:project_id/api_keys/:api_key_id' &&
        (method === 'POST' || method === 'DELETE')) ||
      (route === '/projects/:project_id/api_keys/:api_key_id/rotate' && method === 'POST')
    )
      return 'allow'; // their own key
  }
  return 'deny';
}

/** The Admin API routes a project member may call on a key they own. */
const isOwnKeyRoute = ({ method, route }: Route) =>
  (route === '/projects/:project_id/api_keys/:api_key_id' && (method === 'POST' || method === 'DELETE')) ||
  (route === '/projects/:project_id/api_keys/:api_key_id/rotate' && method === 'POST');

/** A body that makes sense for the route (allowed callers should mostly succeed, not fail validation). */
function bodyOf({ method, route }: Route, f: Fixture): unknown {
  const bodies: Record<string, unknown> = {
    'POST /admin_api_keys': { name: 'Matrix admin key' },
    'POST /projects': { name: 'Matrix project' },
    'POST /projects/:project_id': { name: 'Renamed project' },
    'POST /projects/:project_id/api_keys': { name: 'Matrix key' },
    'POST /projects/:project_id/api_keys/:api_key_id': { name: 'Renamed key' },
    'POST /projects/:project_id/api_keys/:api_key_id/rotate': { grace_period_seconds: 0 },
    'POST /projects/:project_id/service_accounts': { name: 'Matrix bot' },
    'POST /projects/:project_id/service_accounts/:service_account_id': { name: 'Renamed bot' },
    'POST /projects/:project_id/service_accounts/:service_account_id/api_keys': { name: 'Matrix bot key' },
    'POST /projects/:project_id/rate_limits/:rate_limit_id': { max_requests_per_1_minute: 10 },
    'POST /rate_limits/:rate_limit_id': { max_requests_per_1_minute: 10_000 },
    'POST /projects/:project_id/api_keys/:api_key_id/rate_limits/:rate_limit_id': {
      max_concurrent_requests: 2,
    },
    'POST /spend_limit': SPEND_LIMIT,
    'POST /projects/:project_id/spend_limit': SPEND_LIMIT,
    'POST /spend_alerts': SPEND_ALERT,
    'POST /spend_alerts/:alert_id': SPEND_ALERT,
    'POST /projects/:project_id/spend_alerts': SPEND_ALERT,
    'POST /projects/:project_id/spend_alerts/:alert_id': SPEND_ALERT,
    'POST /budgets': { metric: 'tokens', period: 'day', hard_limit: null },
    'POST /users/:user_id': { role: 'reader' },
    'POST /invites': { email: 'matrix-new@example.com', role: 'reader' },
    'POST /projects/:project_id/users': { user_id: f.victimId, role: 'member' },
    'POST /projects/:project_id/users/:user_id': { role: 'owner' },
  };
  const body = bodies[`${method} ${route}`];
  if (body !== undefined) return body;
  return method === 'POST' ? {} : undefined;
}

/** The concrete path: every `:param` of the pattern filled from the fixture. */
function pathOf(organizationId: string, { route }: Route, f: Fixture, keyId = f.memberKeyId): string {
  const filled = route.replace(/:([a-z_]+)/g, (_m, name: string) => {
    switch (name) {
      case 'project_id':
        return f.projectId;
      case 'api_key_id':
        return keyId;
      case 'key_id':
        return f.adminKeyId;
      case 'service_account_id':
        return f.serviceAccountId;
      case 'budget_id':
        return f.budgetId;
      case 'invite_id':
        return f.inviteId;
      case 'user_id':
        return f.victimId;
      case 'rate_limit_id':
        return route.startsWith('/projects/:project_id/rate_limits') ? 'rl-mock-gpt-4o' : 'rl-*';
      case 'alert_id':
        if (route.startsWith('/spend_alerts')) return f.orgSpendAlertId;
        if (route.startsWith('/projects/:project_id/spend_alerts')) return f.projectSpendAlertId;
        if (route.startsWith('/alerts')) return 'alert_0000000000000000matrix';
        break;
      case 'id':
        // Prices, credit grants, invoices: ids that do not exist are enough to pass the policy.
        return `none_${route.split('/')[1]}`;
    }
    throw new Error(`role-matrix.test.ts: no value for :${name} in ${route}; add one to pathOf`);
  });
  const query = /^\/(usage|costs)/.test(route) ? `?start_time=${SINCE}` : '';
  return `/api/organizations/${organizationId}${filled}${query}`;
}

/**
 * Every route of the running app under /api/organizations/:organization_id, from Fastify's own
 * route tree (printRoutes), each method separately.
 */
function dashboardOrgRoutes(t: TestApp): Route[] {
  const routes: Route[] = [];
  const stack: string[] = [];
  for (const line of t.app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = [...match[1]!].length / 4;
    stack.length = depth;
    const url = (stack[depth - 1] ?? '') + match[2]!;
    stack[depth] = url;
    if (!match[3] || !url.startsWith(`${ORG_ROUTE}/`)) continue;
    for (const method of match[3].split(', ')) {
      if (!['GET', 'HEAD', 'POST', 'DELETE'].includes(method))
        throw new Error(`role-matrix.test.ts: add ${method} (${url}) to the suite's methods`);
      routes.push({ method: method as Method, route: url.slice(ORG_ROUTE.length) });
    }
  }
  return routes;
}

describe.each(backends)('dashboard role matrix, every route (%s)', (backend) => {
  let t: TestApp;
  let routes: Route[];
  let organizationId: string;
  let other: SecondOrganization;
  const users = {} as Record<Role, UserRow>;
  const browsers = {} as Record<Role, Browser>;
  /** Resources for requests that do not change anything (reads, and refused writes). */
  let shared: Fixture;
  let fixtures = 0;

  beforeAll(async () => {
    t = await createTestApp({ backend, config: { publicUrl: PUBLIC_URL } });
    organizationId = t.instance.organization.id;
    routes = dashboardOrgRoutes(t);
    other = await createSecondOrganization(t);

    const password = strongPassword('matrix');
    users.owner = await claimBootstrapOwner(t, password);
    users.reader = await createMember(t, organizationId, 'reader', 'reader@example.com', password);
    users.projectMember = await createMember(t, organizationId, 'reader', 'member@example.com', password);
    users.projectOwner = await createMember(t, organizationId, 'reader', 'powner@example.com', password);
    for (const [n, role] of ROLES.entries()) {
      browsers[role] = await new Browser(t, `198.18.0.${n + 1}`).signIn(users[role].email, password);
    }
    shared = await fixture();
  });
  afterAll(() => t?.close());

  /** A project with the project member (member) and project owner (owner) in it, and one of everything. */
  async function fixture(): Promise<Fixture> {
    const n = ++fixtures;
    const client = t.sdk();
    const org = client.admin.organization;
    const project = await org.projects.create({ name: `Matrix project ${n}` });
    await org.projects.users.create(project.id, { user_id: users.projectMember.id, role: 'member' });
    await org.projects.users.create(project.id, { user_id: users.projectOwner.id, role: 'owner' });
    const victim = await insertUser(t.services.store.db, `victim-${n}@example.com`, `Victim ${n}`, {
      emailVerifiedAt: new Date(),
    });
    await addMember(t.services.store.db, organizationId, victim.id, 'reader');
    await org.projects.users.create(project.id, { user_id: victim.id, role: 'member' });
    const memberKey = await createProjectKey(t, project.id, { owner_user_id: users.projectMember.id });
    const otherKey = await createProjectKey(t, project.id, { owner_user_id: users.owner.id });
    const serviceAccount = await org.projects.serviceAccounts.create(project.id, { name: `Matrix bot ${n}` });
    const adminKey = await org.adminAPIKeys.create({ name: `Matrix admin key ${n}` });
    const orgSpendAlert = await org.spendAlerts.create(SPEND_ALERT);
    const projectSpendAlert = await org.projects.spendAlerts.create(project.id, SPEND_ALERT);
    const budget = await client.post<{ id: string }>('/organization/budgets', {
      body: { project_id: project.id, metric: 'cost', period: 'month', hard_limit: 50_000 },
      __security: { adminAPIKeyAuth: true },
    });
    const invite = await org.invites.create({ email: `matrix-invitee-${n}@example.com`, role: 'reader' });
    return {
      projectId: project.id,
      memberKeyId: memberKey.id,
      otherKeyId: otherKey.id,
      serviceAccountId: serviceAccount.id,
      adminKeyId: adminKey.id,
      orgSpendAlertId: orgSpendAlert.id,
      projectSpendAlertId: projectSpendAlert.id,
      budgetId: budget.id,
      inviteId: invite.id,
      victimId: victim.id,
    };
  }

  /** A member who left (POST /leave is allowed to every member) is put back, in the shared project too. */
  async function restoreMemberships() {
    const { db } = t.services.store;
    for (const role of ROLES) {
      await db
        .insert(organizationMembers)
        .values({ organizationId, userId: users[role].id, role: role === 'owner' ? 'owner' : 'reader' })
        .onConflictDoNothing();
    }
    for (const [role, projectRole] of [
      ['projectMember', 'member'],
      ['projectOwner', 'owner'],
    ] as const) {
      await db
        .insert(projectMembers)
        .values({ projectId: shared.projectId, userId: users[role].id, role: projectRole })
        .onConflictDoNothing();
    }
  }

  const isWrite = (route: Route) => route.method === 'POST' || route.method === 'DELETE';

  function send(browser: Browser, route: Route, path: string, f: Fixture): Promise<Reply> {
    return browser.request(route.method, path, bodyOf(route, f));
  }

  const describeReply = (reply: Reply) =>
    `${reply.status} ${reply.body?.error?.code ?? ''} ${reply.body?.error?.message ?? ''}`.trim();

  /** Why `reply` is not what an allowed request gets, or undefined. */
  function notAllowed(reply: Reply): string | undefined {
    if (reply.status === 401 || reply.status === 403) return describeReply(reply);
    if (reply.status === 404 && /^No organization found/.test(reply.body?.error?.message ?? ''))
      return describeReply(reply);
    return undefined;
  }

  /** Why `reply` is not the policy's refusal, or undefined. */
  function notDenied(route: Route, reply: Reply): string | undefined {
    if (reply.status !== 403) return describeReply(reply);
    if (route.method === 'HEAD') return undefined;
    return reply.body?.error?.code === 'permission_denied' ? undefined : describeReply(reply);
  }

  it('finds every route of the dashboard’s organization API in the running app', () => {
    // The parser reads the tree right: each route it found is one the app has…
    for (const { method, route } of routes) {
      expect(t.app.hasRoute({ method, url: `${ORG_ROUTE}${route}` }), `${method} ${route}`).toBe(true);
    }
    // …and it found the whole Admin API, mounted under the organization, and leaving it.
    const names = new Set(routes.map((r) => `${r.method} ${r.route}`));
    for (const known of [
      'GET /projects',
      'POST /projects/:project_id/archive',
      'DELETE /projects/:project_id/api_keys/:api_key_id',
      'POST /projects/:project_id/service_accounts/:service_account_id/api_keys',
      'DELETE /users/:user_id',
      'POST /invites',
      'DELETE /invites/:invite_id',
      'POST /projects/:project_id/users/:user_id',
      'GET /usage/completions',
      'POST /billing/credit_grants/:id/void',
      'POST /leave',
    ])
      expect(names.has(known), known).toBe(true);
    expect(routes.length).toBeGreaterThan(100);
  });

  it('without a session, every route answers 401 not_authenticated', async () => {
    const anonymous = new Browser(t, '198.18.1.1');
    const wrong: string[] = [];
    for (const route of routes) {
      const reply = await send(anonymous, route, pathOf(organizationId, route, shared), shared);
      const ok =
        reply.status === 401 && (route.method === 'HEAD' || reply.body?.error?.code === 'not_authenticated');
      if (!ok) wrong.push(`${route.method} ${route.route}: ${describeReply(reply)}`);
    }
    expect(wrong).toEqual([]);
  });

  it.each(ROLES)(
    'for a member (%s) of another organization, every route answers 404 with nothing of it',
    async (role) => {
      const theirs: Fixture = {
        ...shared,
        projectId: other.project.id,
        adminKeyId: other.adminKey.key.id,
      };
      const wrong: string[] = [];
      for (const organization of [other.organization.id, 'org_doesnotexist']) {
        for (const route of routes) {
          const reply = await send(browsers[role], route, pathOf(organization, route, theirs), theirs);
          const ok =
            reply.status === 404 &&
            (route.method === 'HEAD' ||
              (reply.body?.error?.code === 'not_found' && !reply.text.includes(other.organization.name)));
          if (!ok) wrong.push(`${route.method} ${route.route} (${organization}): ${describeReply(reply)}`);
        }
      }
      expect(wrong).toEqual([]);
    },
  );

  it.each(ROLES)('a %s gets what the policy says on every route', async (role) => {
    const wrong: string[] = [];
    for (const route of routes) {
      const expectation = expected(role, route);
      const f = expectation === 'allow' && isWrite(route) ? await fixture() : shared;
      const reply = await send(browsers[role], route, pathOf(organizationId, route, f), f);
      const problem = expectation === 'allow' ? notAllowed(reply) : notDenied(route, reply);
      if (problem) wrong.push(`${route.method} ${route.route}: expected ${expectation}, got ${problem}`);
      if (route.route === '/leave') {
        // The last owner cannot leave; anyone else can, and is put back for the next route.
        if (role === 'owner') expect(reply.status, reply.text).toBe(400);
        else expect(reply.status, reply.text).toBe(200);
        await restoreMemberships();
      }
    }
    expect(wrong).toEqual([]);
  });

  it('a project owner changes nothing in a project they do not own', async () => {
    const client = t.sdk();
    const elsewhere = await client.admin.organization.projects.create({ name: 'Not theirs' });
    const theirKey = await createProjectKey(t, elsewhere.id, { owner_user_id: users.projectOwner.id });
    const f: Fixture = { ...shared, projectId: elsewhere.id, memberKeyId: theirKey.id };
    const wrong: string[] = [];
    for (const route of routes.filter((r) => isWrite(r) && r.route.startsWith('/projects/:project_id'))) {
      const reply = await send(browsers.projectOwner, route, pathOf(organizationId, route, f), f);
      const problem = notDenied(route, reply);
      if (problem) wrong.push(`${route.method} ${route.route}: ${problem}`);
    }
    expect(wrong).toEqual([]);
  });

  it('a project member changes only the keys they own, and creates keys only for themselves', async () => {
    const wrong: string[] = [];
    for (const route of routes.filter(isOwnKeyRoute)) {
      // Someone else's key in the same project: refused.
      const reply = await send(
        browsers.projectMember,
        route,
        pathOf(organizationId, route, shared, shared.otherKeyId),
        shared,
      );
      const problem = notDenied(route, reply);
      if (problem) wrong.push(`${route.method} ${route.route} (someone else's key): ${problem}`);
    }
    expect(wrong).toEqual([]);

    const keysPath = `/api/organizations/${organizationId}/projects/${shared.projectId}/api_keys`;
    const forOther = await browsers.projectMember.post(keysPath, {
      name: 'For the owner',
      owner_user_id: users.owner.id,
    });
    expect(notDenied({ method: 'POST', route: '/projects/:project_id/api_keys' }, forOther)).toBeUndefined();
    const own = await browsers.projectMember.post(keysPath, {
      name: 'Mine',
      owner_user_id: users.projectMember.id,
    });
    expect(own.status, own.text).toBe(200);
    expect(own.body.owner.user.id).toBe(users.projectMember.id);
    // A key they made is theirs to change.
    const renamed = await browsers.projectMember.post(`${keysPath}/${own.body.id}`, { name: 'Still mine' });
    expect(renamed.status, renamed.text).toBe(200);
    // Not in a project they are not a member of.
    const elsewhere = await t.sdk().admin.organization.projects.create({ name: 'Not a member' });
    const refused = await browsers.projectMember.post(
      `/api/organizations/${organizationId}/projects/${elsewhere.id}/api_keys`,
      { name: 'Sneaky' },
    );
    expect(notDenied({ method: 'POST', route: '/projects/:project_id/api_keys' }, refused)).toBeUndefined();
  });

  it('only owners of the operator organization read or change another organization’s billing', async () => {
    const other = await createSecondOrganization(t, 'Billed elsewhere');
    const path = `/api/organizations/${organizationId}/billing?organization_id=${other.organization.id}`;
    for (const role of ['reader', 'projectMember', 'projectOwner'] as const) {
      const reply = await browsers[role].get(path);
      expect(reply.status, `${role}: ${reply.text}`).toBe(403);
      expect(reply.body.error.code).toBe('permission_denied');
    }
    const own = await browsers.reader.get(`/api/organizations/${organizationId}/billing`);
    expect(own.status, own.text).toBe(200);
    const asOwner = await browsers.owner.get(path);
    expect(asOwner.status, asOwner.text).toBe(200);
    expect(asOwner.body.organization_id).toBe(other.organization.id);
    const grant = await browsers.reader.post(`/api/organizations/${organizationId}/billing/credit_grants`, {
      organization_id: other.organization.id,
      amount_cents: 500,
    });
    expect(grant.status).toBe(403);
  });

  it('a project member renames their own key but cannot loosen its restrictions', async () => {
    const path = `/api/organizations/${organizationId}/projects/${shared.projectId}/api_keys`;
    const own = await browsers.projectMember.post(path, { name: 'Restricted' });
    expect(own.status, own.text).toBe(200);
    const restrict = await browsers.projectOwner.post(`${path}/${own.body.id}`, {
      allowed_models: ['gpt-4o-mini'],
    });
    expect(restrict.status, restrict.text).toBe(200);
    for (const change of [
      { allowed_models: [] },
      { scopes: [] },
      { allowed_ips: [] },
      { enabled: true },
      { expires_at: null },
    ]) {
      const reply = await browsers.projectMember.post(`${path}/${own.body.id}`, change);
      expect(reply.status, `${JSON.stringify(change)}: ${reply.text}`).toBe(403);
    }
    expect((await browsers.projectMember.post(`${path}/${own.body.id}`, { name: 'Renamed' })).status).toBe(
      200,
    );
    const after = await browsers.projectMember.get(`${path}/${own.body.id}`);
    expect(after.body).toMatchObject({ name: 'Renamed', allowed_models: ['gpt-4o-mini'] });
  });

  it('a refusal names what it takes, and does not change anything', async () => {
    const path = `/api/organizations/${organizationId}/projects/${shared.projectId}`;
    const reply = await browsers.reader.post(path, { name: 'Renamed by a reader' });
    expect(reply.status).toBe(403);
    expect(reply.body.error).toMatchObject({
      code: 'permission_denied',
      type: 'invalid_request_error',
      param: null,
    });
    expect(reply.body.error.message).toContain('an owner of this project');
    const project = await browsers.reader.get(path);
    expect(project.body.name).not.toBe('Renamed by a reader');
  });
});
