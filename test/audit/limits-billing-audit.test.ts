/**
 * The audit log of limits, budgets, spend limits and alerts, billing and prices: each change
 * through the Admin API writes exactly one entry (of its type, about its resource, with its
 * project, the details in OpenAI's shape and the admin key, address and user agent that made it);
 * a refused change writes none; a change whose transaction fails after the write is rolled back
 * with its entry. Read straight from `audit_logs` (the list endpoint is tested on its own).
 *
 * A failing transaction: a CHECK constraint (NOT VALID: rows already there are not checked)
 * refuses every entry whose details mention FAIL, so a change carrying FAIL (a note, an email, a
 * model name) fails at its audit insert, after its own write in the same transaction.
 */
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NANO_USD_PER_CENT } from '../../src/core/pricing.ts';
import {
  type AuditLogRow,
  auditLogs,
  budgets,
  creditGrants,
  modelPrices,
  rateLimits,
} from '../../src/store/schema.ts';
import { Browser, claimBootstrapOwner, PUBLIC_URL, strongPassword } from '../accounts/helpers.ts';
import { createProjectKey, createSecondOrganization, type SecondOrganization } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';

const IP = '203.0.113.7';
const USER_AGENT = 'keyport-audit-test/1.0';
const FAIL = 'audit-must-fail';

interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON came back, and assert on it
  body: any;
  text: string;
}

describe.each(backends)('audit log: limits, budgets, billing and prices (%s)', (backend) => {
  let t: TestApp;
  let customer: SecondOrganization;
  const db = () => t.services.store.db;
  const org = () => t.instance.organization.id;

  beforeAll(async () => {
    t = await createTestApp({ backend, config: { defaultPlan: 'free_trial', publicUrl: PUBLIC_URL } });
    customer = await createSecondOrganization(t, 'Audited customer');
    await db().execute(
      sql.raw(
        `alter table audit_logs add constraint audit_test_failure check (details::text not like '%${FAIL}%') not valid`,
      ),
    );
  });
  afterAll(() => t?.close());

  /** An Admin API request from IP with USER_AGENT, with the operator's admin key. */
  async function call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Reply> {
    const response = await t.app.inject({
      method,
      url: `/v1/organization${path}`,
      remoteAddress: IP,
      headers: {
        authorization: `Bearer ${t.adminKey}`,
        'user-agent': USER_AGENT,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
    });
    const text = response.body;
    return { status: response.statusCode, text, body: text ? JSON.parse(text) : undefined };
  }
  const ok = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => {
    const reply = await call(method, path, body);
    expect(reply.status, reply.text).toBe(200);
    return reply.body;
  };

  /**
   * The entries written while `run` ran, in every organization, oldest first — but the operator's
   * copies: every entry the operator's people wrote into another organization must have exactly
   * one copy in the operator's own log (checked here), naming the organization it was done to.
   */
  async function entriesOf(run: () => Promise<unknown>): Promise<AuditLogRow[]> {
    const before = new Set((await db().select({ id: auditLogs.id }).from(auditLogs)).map((r) => r.id));
    await run();
    const fresh = (await db().select().from(auditLogs))
      .filter((row) => !before.has(row.id))
      .sort((a, b) => a.effectiveAt.getTime() - b.effectiveAt.getTime() || a.id.localeCompare(b.id));
    const isCopy = (row: AuditLogRow) => 'target_organization_id' in (row.details as object);
    const entries = fresh.filter((row) => !isCopy(row));
    const operator = t.instance.organization.id;
    const shape = (row: AuditLogRow, target: string) => [row.type, row.resourceId, target, row.actorId];
    expect(
      fresh.filter(isCopy).map((row) => {
        expect(row.organizationId).toBe(operator);
        return shape(row, (row.details as { target_organization_id: string }).target_organization_id);
      }),
    ).toEqual(
      entries
        .filter((row) => row.organizationId !== operator && !row.actorId.startsWith('system:'))
        .map((row) => shape(row, row.organizationId)),
    );
    return entries;
  }

  const adminActor = () => ({
    type: 'api_key',
    api_key: {
      id: t.instance.adminKey.key.id,
      type: 'user',
      user: { id: t.instance.adminKey.key.ownerUserId, email: t.instance.owner.email },
    },
    ip_address: IP,
    user_agent: USER_AGENT,
  });

  /** One entry, as the operator's admin key made it. */
  function expectEntry(
    entry: AuditLogRow | undefined,
    expected: {
      type: string;
      organizationId?: string;
      projectId?: string | null;
      resourceId: string;
      details: Record<string, unknown>;
    },
  ) {
    expect(entry).toBeDefined();
    expect({
      organizationId: entry!.organizationId,
      projectId: entry!.projectId,
      type: entry!.type,
      resourceId: entry!.resourceId,
      actorId: entry!.actorId,
      actor: entry!.actor,
      details: entry!.details,
    }).toEqual({
      organizationId: expected.organizationId ?? org(),
      projectId: expected.projectId ?? null,
      type: expected.type,
      resourceId: expected.resourceId,
      actorId: t.instance.adminKey.key.id,
      actor: adminActor(),
      details: expected.details,
    });
  }
  function expectOne(entries: AuditLogRow[], expected: Parameters<typeof expectEntry>[1]) {
    expect(entries.map((e) => e.type)).toEqual([expected.type]);
    expectEntry(entries[0], expected);
  }

  const newProject = async (name: string): Promise<string> => (await ok('POST', '/projects', { name })).id;

  // ---- rate limits -------------------------------------------------------------------------------

  it('project rate limits: rate_limit.updated with the fields as sent, rate_limit.deleted; nothing for a no-op delete', async () => {
    const projectId = await newProject('Rate limited');
    const path = `/projects/${projectId}/rate_limits/rl-mock-gpt-4o`;
    const updated = await entriesOf(() =>
      ok('POST', path, { max_requests_per_1_minute: 60, max_tokens_per_1_minute: 0 }),
    );
    expectOne(updated, {
      type: 'rate_limit.updated',
      projectId,
      resourceId: projectId,
      details: {
        id: 'rl-mock-gpt-4o',
        changes_requested: { max_requests_per_1_minute: 60, max_tokens_per_1_minute: 0 },
      },
    });

    const deleted = await entriesOf(() => ok('DELETE', path));
    expectOne(deleted, {
      type: 'rate_limit.deleted',
      projectId,
      resourceId: projectId,
      details: { id: 'rl-mock-gpt-4o' },
    });
    // Nothing stored any more: nothing changes, nothing is recorded.
    expect(await entriesOf(() => ok('DELETE', path))).toEqual([]);
  });

  it('organization and key rate limits: the same types, about their scope', async () => {
    const orgEntries = await entriesOf(() =>
      ok('POST', '/rate_limits/rl-*', { max_requests_per_1_day: 10_000 }),
    );
    expectOne(orgEntries, {
      type: 'rate_limit.updated',
      projectId: null,
      resourceId: org(),
      details: {
        id: 'rl-*',
        scope: { type: 'organization', id: org() },
        changes_requested: { max_requests_per_1_day: 10_000 },
      },
    });
    expectOne(await entriesOf(() => ok('DELETE', '/rate_limits/rl-*')), {
      type: 'rate_limit.deleted',
      projectId: null,
      resourceId: org(),
      details: { id: 'rl-*', scope: { type: 'organization', id: org() } },
    });

    const projectId = await newProject('Keyed');
    const key = await createProjectKey(t, projectId);
    const keyEntries = await entriesOf(() =>
      ok('POST', `/projects/${projectId}/api_keys/${key.id}/rate_limits/rl-mock-gpt-4o`, {
        max_concurrent_requests: 2,
      }),
    );
    expectOne(keyEntries, {
      type: 'rate_limit.updated',
      projectId,
      resourceId: key.id,
      details: {
        id: 'rl-mock-gpt-4o',
        scope: { type: 'api_key', id: key.id },
        changes_requested: { max_concurrent_requests: 2 },
      },
    });
  });

  it('rate limits: a refused change writes no entry; a failed transaction keeps neither the limit nor an entry', async () => {
    const projectId = await newProject('Refused limits');
    const refused = await entriesOf(async () => {
      const reply = await call('POST', `/projects/${projectId}/rate_limits/rl-mock-gpt-4o`, {
        max_concurrent_requests: 3_000_000_000,
      });
      expect(reply.status).toBe(400);
    });
    expect(refused).toEqual([]);

    const failed = await entriesOf(async () => {
      const reply = await call('POST', `/projects/${projectId}/rate_limits/rl-${FAIL}`, {
        max_requests_per_1_minute: 5,
      });
      expect(reply.status, reply.text).toBe(500);
    });
    expect(failed).toEqual([]);
    expect(await db().select().from(rateLimits).where(eq(rateLimits.scopeId, projectId))).toEqual([]);
  });

  // ---- budgets -----------------------------------------------------------------------------------

  it('budgets: budget.created with the budget, budget.updated with the fields sent, budget.deleted', async () => {
    const projectId = await newProject('Budgeted');
    let budget: { id: string } | undefined;
    const created = await entriesOf(async () => {
      budget = await ok('POST', '/budgets', {
        project_id: projectId,
        metric: 'cost',
        period: 'month',
        hard_limit: 5_000,
        soft_limit_percents: [80, 50],
        notify_emails: ['finance@example.com'],
      });
    });
    expectOne(created, {
      type: 'budget.created',
      projectId,
      resourceId: budget!.id,
      details: {
        id: budget!.id,
        data: {
          scope: { type: 'project', id: projectId },
          project_id: projectId,
          api_key_id: null,
          metric: 'cost',
          period: 'month',
          hard_limit: 5_000,
          soft_limit_percents: [50, 80],
          notify_emails: ['finance@example.com'],
        },
      },
    });

    const updated = await entriesOf(() =>
      ok('POST', '/budgets', { project_id: projectId, metric: 'cost', period: 'month', hard_limit: 9_000 }),
    );
    expectOne(updated, {
      type: 'budget.updated',
      projectId,
      resourceId: budget!.id,
      // The body's defaults are part of what was asked: POST replaces the budget.
      details: {
        id: budget!.id,
        changes_requested: { hard_limit: 9_000, soft_limit_percents: [], notify_emails: [] },
      },
    });

    expectOne(await entriesOf(() => ok('DELETE', `/budgets/${budget!.id}`)), {
      type: 'budget.deleted',
      projectId,
      resourceId: budget!.id,
      details: { id: budget!.id },
    });
    // Gone: a second delete is a 404 and records nothing.
    expect(
      await entriesOf(async () => expect((await call('DELETE', `/budgets/${budget!.id}`)).status).toBe(404)),
    ).toEqual([]);
  });

  it('concurrent first writes of one budget audit one creation; the others are updates', async () => {
    const projectId = await newProject('Raced budget');
    const writes = 20;
    const entries = await entriesOf(() =>
      Promise.all(
        Array.from({ length: writes }, (_, i) =>
          ok('POST', '/budgets', {
            project_id: projectId,
            metric: 'tokens',
            period: 'month',
            hard_limit: 1000 + i,
          }),
        ),
      ),
    );
    const types = entries.filter((e) => e.type.startsWith('budget.')).map((e) => e.type);
    expect(types.filter((type) => type === 'budget.created')).toHaveLength(1);
    expect(types.filter((type) => type === 'budget.updated')).toHaveLength(writes - 1);
  });

  it('a key budget belongs to the key’s project', async () => {
    const projectId = await newProject('Key budget');
    const key = await createProjectKey(t, projectId);
    let budget: { id: string } | undefined;
    const entries = await entriesOf(async () => {
      budget = await ok('POST', '/budgets', {
        project_id: projectId,
        api_key_id: key.id,
        metric: 'tokens',
        period: 'day',
        hard_limit: 1_000,
      });
    });
    expectOne(entries, {
      type: 'budget.created',
      projectId,
      resourceId: budget!.id,
      details: {
        id: budget!.id,
        data: {
          scope: { type: 'api_key', id: key.id },
          project_id: projectId,
          api_key_id: key.id,
          metric: 'tokens',
          period: 'day',
          hard_limit: 1_000,
          soft_limit_percents: [],
          notify_emails: [],
        },
      },
    });
  });

  it('budgets: a refused change writes no entry; a failed transaction keeps neither the budget nor an entry', async () => {
    const projectId = await newProject('Refused budget');
    const refused = await entriesOf(async () => {
      // Refused by the service (percentages of no hard limit), not only by the body's schema.
      const reply = await call('POST', '/budgets', {
        project_id: projectId,
        metric: 'cost',
        period: 'month',
        hard_limit: null,
        soft_limit_percents: [50],
      });
      expect(reply.status, reply.text).toBe(400);
      expect(reply.body.error.param).toBe('hard_limit');
      expect((await call('POST', '/budgets', { project_id: projectId, metric: 'cost' })).status).toBe(400);
    });
    expect(refused).toEqual([]);

    const failed = await entriesOf(async () => {
      const reply = await call('POST', '/budgets', {
        project_id: projectId,
        metric: 'cost',
        period: 'month',
        hard_limit: 100,
        notify_emails: [`${FAIL}@example.com`],
      });
      expect(reply.status, reply.text).toBe(500);
    });
    expect(failed).toEqual([]);
    expect(await db().select().from(budgets).where(eq(budgets.scopeId, projectId))).toEqual([]);
  });

  // ---- spend limits and alerts ---------------------------------------------------------------------

  it('spend limits: spend_limit.updated and spend_limit.deleted (not budget.*), for the organization and a project', async () => {
    const projectId = await newProject('Spend limited');
    const body = { currency: 'USD', interval: 'month', threshold_amount: 2_500 };
    const changes_requested = { threshold_amount: 2_500, currency: 'USD', interval: 'month' };
    expectOne(await entriesOf(() => ok('POST', `/projects/${projectId}/spend_limit`, body)), {
      type: 'spend_limit.updated',
      projectId,
      resourceId: projectId,
      details: { id: projectId, changes_requested },
    });
    expectOne(await entriesOf(() => ok('DELETE', `/projects/${projectId}/spend_limit`)), {
      type: 'spend_limit.deleted',
      projectId,
      resourceId: projectId,
      details: { id: projectId },
    });
    // None left: deleting again changes nothing.
    expect(await entriesOf(() => ok('DELETE', `/projects/${projectId}/spend_limit`))).toEqual([]);

    expectOne(await entriesOf(() => ok('POST', '/spend_limit', body)), {
      type: 'spend_limit.updated',
      resourceId: org(),
      details: { id: org(), changes_requested },
    });
    expectOne(await entriesOf(() => ok('DELETE', '/spend_limit')), {
      type: 'spend_limit.deleted',
      resourceId: org(),
      details: { id: org() },
    });
    const refused = await entriesOf(async () => {
      expect((await call('POST', '/spend_limit', { ...body, currency: 'EUR' })).status).toBe(400);
    });
    expect(refused).toEqual([]);
  });

  it('spend alerts: spend_alert.created, .updated and .deleted, in OpenAI’s shape', async () => {
    const alert = (amount: number, recipients: string[]) => ({
      currency: 'USD',
      interval: 'month',
      threshold_amount: amount,
      notification_channel: { type: 'email', recipients, subject_prefix: '[Acme]' },
    });
    const fields = (amount: number, recipients: string[]) => ({
      threshold_amount: amount,
      currency: 'USD',
      interval: 'month',
      notification_channel: { type: 'email', recipients, subject_prefix: '[Acme]' },
    });
    let created: { id: string } | undefined;
    const createdEntries = await entriesOf(async () => {
      created = await ok('POST', '/spend_alerts', alert(10_000, ['a@example.com']));
    });
    expectOne(createdEntries, {
      type: 'spend_alert.created',
      resourceId: created!.id,
      details: { id: created!.id, data: fields(10_000, ['a@example.com']) },
    });
    expectOne(
      await entriesOf(() =>
        ok('POST', `/spend_alerts/${created!.id}`, alert(20_000, ['a@example.com', 'b@example.com'])),
      ),
      {
        type: 'spend_alert.updated',
        resourceId: created!.id,
        details: { id: created!.id, changes_requested: fields(20_000, ['a@example.com', 'b@example.com']) },
      },
    );
    expectOne(await entriesOf(() => ok('DELETE', `/spend_alerts/${created!.id}`)), {
      type: 'spend_alert.deleted',
      resourceId: created!.id,
      details: { id: created!.id },
    });

    const projectId = await newProject('Alerted');
    let projectAlert: { id: string } | undefined;
    const projectEntries = await entriesOf(async () => {
      projectAlert = await ok('POST', `/projects/${projectId}/spend_alerts`, alert(500, ['p@example.com']));
    });
    expectOne(projectEntries, {
      type: 'spend_alert.created',
      projectId,
      resourceId: projectAlert!.id,
      details: { id: projectAlert!.id, data: fields(500, ['p@example.com']) },
    });
    const refused = await entriesOf(async () => {
      const reply = await call('POST', `/projects/${projectId}/spend_alerts/${projectAlert!.id}`, {
        ...alert(500, ['not an address']),
      });
      expect(reply.status).toBe(400);
    });
    expect(refused).toEqual([]);
  });

  // ---- billing -----------------------------------------------------------------------------------

  it('a new account’s trial credit: credit_grant.created by the billing system', async () => {
    const trial = await createSecondOrganization(t, 'Trial');
    const entries = await entriesOf(() => ok('GET', `/billing?organization_id=${trial.organization.id}`));
    expect(entries.map((e) => e.type)).toEqual(['credit_grant.created']);
    const [grant] = await db()
      .select()
      .from(creditGrants)
      .where(eq(creditGrants.organizationId, trial.organization.id));
    expect(entries[0]).toMatchObject({
      organizationId: trial.organization.id,
      projectId: null,
      resourceId: grant!.id,
      actorId: 'system:billing',
      actor: { type: 'system', system: { name: 'billing' } },
      details: {
        id: grant!.id,
        data: {
          kind: 'trial',
          amount_cents: t.config.trialCreditCents,
          expires_at: Math.floor(grant!.expiresAt!.getTime() / 1000),
          note: grant!.note,
          payment_id: null,
        },
      },
    });
  });

  it('billing details and plan: billing.details.updated and billing.plan.updated, in the organization changed', async () => {
    const target = customer.organization.id;
    await ok('GET', `/billing?organization_id=${target}`); // the account (and its trial grant) first
    const entries = await entriesOf(() =>
      ok('POST', '/billing', {
        organization_id: target,
        plan: 'prepaid',
        billing_name: 'Audited Ltd',
        billing_email: 'billing@audited.example',
        billing_address: ['1 Main St', 'Springfield'],
      }),
    );
    expect(entries.map((e) => e.type).sort()).toEqual(['billing.details.updated', 'billing.plan.updated']);
    expectEntry(
      entries.find((e) => e.type === 'billing.details.updated'),
      {
        type: 'billing.details.updated',
        organizationId: target,
        resourceId: target,
        details: {
          id: target,
          changes_requested: {
            billing_name: 'Audited Ltd',
            billing_email: 'billing@audited.example',
            billing_address: ['1 Main St', 'Springfield'],
          },
        },
      },
    );
    expectEntry(
      entries.find((e) => e.type === 'billing.plan.updated'),
      {
        type: 'billing.plan.updated',
        organizationId: target,
        resourceId: target,
        details: { id: target, changes_requested: { plan: 'prepaid' } },
      },
    );
    // The same plan again is no change.
    expect(
      await entriesOf(() => ok('POST', '/billing', { organization_id: target, plan: 'prepaid' })),
    ).toEqual([]);

    // Refused details: neither the details nor the plan asked with them change.
    const refused = await entriesOf(async () => {
      const reply = await call('POST', '/billing', {
        organization_id: target,
        plan: 'pay_as_you_go',
        billing_email: 'not-an-address',
      });
      expect(reply.status).toBe(400);
    });
    expect(refused).toEqual([]);
    expect((await ok('GET', `/billing?organization_id=${target}`)).plan).toBe('prepaid');
  });

  it('credit grants: credit_grant.created and credit_grant.voided; refused and failed grants leave nothing', async () => {
    const target = customer.organization.id;
    let grant: { id: string } | undefined;
    const created = await entriesOf(async () => {
      grant = await ok('POST', '/billing/credit_grants', {
        organization_id: target,
        amount_cents: 250,
        kind: 'promotion',
        note: 'Welcome',
      });
    });
    expectOne(created, {
      type: 'credit_grant.created',
      organizationId: target,
      resourceId: grant!.id,
      details: {
        id: grant!.id,
        data: { kind: 'promotion', amount_cents: 250, expires_at: null, note: 'Welcome', payment_id: null },
      },
    });
    expectOne(
      await entriesOf(() =>
        ok('POST', `/billing/credit_grants/${grant!.id}/void`, { organization_id: target }),
      ),
      {
        type: 'credit_grant.voided',
        organizationId: target,
        resourceId: grant!.id,
        details: { id: grant!.id },
      },
    );
    // Already void: 404, nothing recorded.
    expect(
      await entriesOf(async () => {
        const reply = await call('POST', `/billing/credit_grants/${grant!.id}/void`, {
          organization_id: target,
        });
        expect(reply.status).toBe(404);
      }),
    ).toEqual([]);

    const grantsBefore = await db()
      .select()
      .from(creditGrants)
      .where(eq(creditGrants.organizationId, target));
    const refused = await entriesOf(async () => {
      const reply = await call('POST', '/billing/credit_grants', {
        organization_id: target,
        amount_cents: 100,
        expires_at: Math.floor(Date.now() / 1000) - 60,
      });
      expect(reply.status, reply.text).toBe(400);
      expect(reply.body.error.param).toBe('expires_at');
    });
    expect(refused).toEqual([]);
    const failed = await entriesOf(async () => {
      const reply = await call('POST', '/billing/credit_grants', {
        organization_id: target,
        amount_cents: 100,
        note: FAIL,
      });
      expect(reply.status, reply.text).toBe(500);
    });
    expect(failed).toEqual([]);
    expect(await db().select().from(creditGrants).where(eq(creditGrants.organizationId, target))).toEqual(
      grantsBefore,
    );
  });

  it('payments: payment.recorded, and a top-up’s credit_grant.created with it', async () => {
    const target = customer.organization.id;
    let payment: { id: string } | undefined;
    const entries = await entriesOf(async () => {
      payment = await ok('POST', '/billing/payments', {
        organization_id: target,
        amount_cents: 1_000,
        method: 'bank_transfer',
        reference: 'TX-42',
      });
    });
    expect(entries.map((e) => e.type)).toEqual(['payment.recorded', 'credit_grant.created']);
    expectEntry(entries[0], {
      type: 'payment.recorded',
      organizationId: target,
      resourceId: payment!.id,
      details: {
        id: payment!.id,
        data: {
          amount_cents: 1_000,
          currency: 'usd',
          invoice_id: null,
          provider: 'manual',
          method: 'bank_transfer',
          reference: 'TX-42',
        },
      },
    });
    const [grant] = await db()
      .select()
      .from(creditGrants)
      .where(and(eq(creditGrants.organizationId, target), eq(creditGrants.paymentId, payment!.id)));
    expectEntry(entries[1], {
      type: 'credit_grant.created',
      organizationId: target,
      resourceId: grant!.id,
      details: {
        id: grant!.id,
        data: {
          kind: 'top_up',
          amount_cents: 1_000,
          expires_at: null,
          note: 'Top-up (TX-42)',
          payment_id: payment!.id,
        },
      },
    });
    expect(
      await entriesOf(async () => {
        expect(
          (await call('POST', '/billing/payments', { organization_id: target, amount_cents: 0 })).status,
        ).toBe(400);
      }),
    ).toEqual([]);
  });

  it('invoices: invoice.issued by a person, invoice.voided, and the hourly cycle’s invoice.issued by the billing system', async () => {
    const invoiced = await createSecondOrganization(t, 'Invoiced');
    const target = invoiced.organization.id;
    // Usage in the month before last: over, in every time zone, and past the cycle's grace.
    const now = new Date();
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 15);
    const month = new Date(monthStart).toISOString().slice(0, 7);
    await storeUsage(
      db(),
      [
        usageEvent({
          organizationId: target,
          projectId: invoiced.project.id,
          apiKeyId: 'key_invoiced',
          createdAt: new Date(monthStart),
          inputTokens: 1_000,
          costNanoUsd: 1_234 * NANO_USD_PER_CENT,
        }),
      ],
      t.config.billingTimeZone,
    );

    // The account (with its trial grant) before, not while, the invoice is issued; after the usage,
    // so that no credit is drawn.
    await ok('GET', `/billing?organization_id=${target}`);

    let invoice: { id: string; number: string; period_start: number; period_end: number } | undefined;
    const issued = await entriesOf(async () => {
      invoice = await ok('POST', '/invoices', { organization_id: target, month });
    });
    expectOne(issued, {
      type: 'invoice.issued',
      organizationId: target,
      resourceId: invoice!.id,
      details: {
        id: invoice!.id,
        data: {
          number: invoice!.number,
          status: 'open',
          period_start: invoice!.period_start,
          period_end: invoice!.period_end,
          subtotal_cents: 1_234,
          credits_cents: 0,
          total_cents: 1_234,
        },
      },
    });
    // Issuing again answers the same invoice: nothing new.
    expect(await entriesOf(() => ok('POST', '/invoices', { organization_id: target, month }))).toEqual([]);

    expectOne(
      await entriesOf(() => ok('POST', `/invoices/${invoice!.id}/void`, { organization_id: target })),
      {
        type: 'invoice.voided',
        organizationId: target,
        resourceId: invoice!.id,
        details: { id: invoice!.id },
      },
    );

    // Voided, so the cycle issues the month again, as the system.
    const cycle = await entriesOf(() => t.services.billing.runCycle());
    const ours = cycle.filter((e) => e.organizationId === target);
    expect(ours.map((e) => e.type)).toEqual(['invoice.issued']);
    expect(ours[0]!.resourceId).not.toBe(invoice!.id);
    expect(ours[0]).toMatchObject({
      actorId: 'system:billing',
      actor: { type: 'system', system: { name: 'billing' } },
      details: { data: { status: 'open', total_cents: 1_234 } },
    });
  });

  // ---- prices ------------------------------------------------------------------------------------

  it('prices: price.updated and price.deleted, in the operator’s organization', async () => {
    const effectiveAt = Math.floor(Date.now() / 1000) + 3_600;
    let price: { id: string } | undefined;
    const updated = await entriesOf(async () => {
      price = await ok('POST', '/prices', {
        model: 'audited-model',
        input: 1.5,
        output: 6,
        effective_at: effectiveAt,
      });
    });
    expectOne(updated, {
      type: 'price.updated',
      resourceId: price!.id,
      details: {
        id: price!.id,
        changes_requested: { model: 'audited-model', input: 1.5, output: 6, effective_at: effectiveAt },
      },
    });
    expectOne(await entriesOf(() => ok('DELETE', `/prices/${price!.id}`)), {
      type: 'price.deleted',
      resourceId: price!.id,
      details: { id: price!.id },
    });

    const refused = await entriesOf(async () => {
      const reply = await call('POST', '/prices', {
        model: 'audited-model',
        input: 1,
        output: 1,
        effective_at: Math.floor(Date.now() / 1000) - 3_600,
      });
      expect(reply.status).toBe(400);
    });
    expect(refused).toEqual([]);
    const failed = await entriesOf(async () => {
      expect((await call('POST', '/prices', { model: FAIL, input: 1, output: 1 })).status).toBe(500);
    });
    expect(failed).toEqual([]);
    expect(await db().select().from(modelPrices).where(eq(modelPrices.model, FAIL))).toEqual([]);
    expect(t.services.prices.entries().some((e) => e.model === FAIL)).toBe(false);
  });

  // ---- the dashboard ---------------------------------------------------------------------------------

  it('through the dashboard: the signed-in user’s session is the actor', async () => {
    const password = strongPassword('audit');
    const owner = await claimBootstrapOwner(t, password);
    const browser = await new Browser(t, '198.51.100.23', 'Mozilla/5.0 (audit)').signIn(
      owner.email,
      password,
    );
    const projectId = await newProject('Dashboard budget');
    let budgetId: string | undefined;
    const entries = await entriesOf(async () => {
      const reply = await browser.post(`/api/organizations/${org()}/budgets`, {
        project_id: projectId,
        metric: 'tokens',
        period: 'month',
        hard_limit: 10,
      });
      expect(reply.status, reply.text).toBe(200);
      budgetId = reply.body.id;
    });
    expect(entries.map((e) => e.type)).toEqual(['budget.created']);
    expect(entries[0]).toMatchObject({
      organizationId: org(),
      projectId,
      resourceId: budgetId,
      actorId: owner.id,
      actorEmail: owner.email,
      actor: {
        type: 'session',
        session: {
          user: { id: owner.id, email: owner.email },
          ip_address: '198.51.100.23',
          user_agent: 'Mozilla/5.0 (audit)',
        },
      },
    });
  });
});
