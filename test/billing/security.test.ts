/**
 * Who may do what with billing: every billing route wants an admin key (no key: 401; a project
 * key: 403); prices, credit, payments, plans and issuing or voiding invoices are the operator's
 * (another organization's admin key: 403 operator_only, and nothing changes), while any
 * organization reads its own billing, invoices and prices and edits its own billing details; the
 * operator acts for another organization by naming it; ids of another organization are not found.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NANO_USD_PER_CENT } from '../../src/core/pricing.ts';
import {
  adminRequest,
  type CreatedProjectKey,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
  expectOk,
  type SecondOrganization,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';
import {
  type BillingObject,
  billingOf,
  type GrantObject,
  grantCredit,
  type InvoiceObject,
  type ListObject,
  type PaymentObject,
  type PriceObject,
} from './billing-helpers.ts';

type Method = 'GET' | 'POST' | 'DELETE';

describe.each(backends)('billing security (%s)', (backend) => {
  let t: TestApp;
  let customer: SecondOrganization;
  let stranger: SecondOrganization;
  let projectKey: CreatedProjectKey;
  let invoice: InvoiceObject;
  let grant: GrantObject;
  let futurePrice: PriceObject;
  /** Two months ago (UTC): over, with usage for the customer. */
  let month: string;

  beforeAll(async () => {
    t = await createTestApp({ backend });
    customer = await createSecondOrganization(t, 'Customer');
    stranger = await createSecondOrganization(t, 'Stranger');
    projectKey = await createProjectKey(t, t.instance.project.id);
    const now = new Date();
    const at = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 10);
    month = new Date(at).toISOString().slice(0, 7);
    await storeUsage(t.services.store.db, [
      usageEvent({
        organizationId: customer.organization.id,
        projectId: customer.project.id,
        apiKeyId: 'key_customer',
        createdAt: new Date(at),
        inputTokens: 100,
        costNanoUsd: 250 * NANO_USD_PER_CENT,
      }),
    ]);
    invoice = expectOk(
      await adminRequest<InvoiceObject>(t, 'POST', '/invoices', {
        body: { organization_id: customer.organization.id, month },
      }),
    );
    grant = await grantCredit(t, { organization_id: customer.organization.id, amount_cents: 300 });
    futurePrice = expectOk(
      await adminRequest<PriceObject>(t, 'POST', '/prices', {
        body: {
          model: 'future-model',
          input: 1,
          output: 1,
          effective_at: Math.floor(Date.now() / 1000) + 86_400,
        },
      }),
    );
  });
  afterAll(() => t?.close());

  const routes = (): [Method, string, Record<string, unknown>?][] => [
    ['GET', '/billing'],
    ['POST', '/billing', { billing_name: 'X' }],
    ['GET', '/billing/credit_grants'],
    ['POST', '/billing/credit_grants', { amount_cents: 100 }],
    ['POST', `/billing/credit_grants/${grant.id}/void`, {}],
    ['GET', '/billing/payments'],
    ['POST', '/billing/payments', { amount_cents: 100 }],
    ['GET', '/invoices'],
    ['POST', '/invoices', { month }],
    ['GET', '/invoices/upcoming'],
    ['GET', `/invoices/${invoice.id}`],
    ['GET', `/invoices/${invoice.id}.pdf`],
    ['POST', `/invoices/${invoice.id}/void`, {}],
    ['GET', '/prices'],
    ['POST', '/prices', { model: 'm', input: 1, output: 1 }],
    ['DELETE', `/prices/${futurePrice.id}`],
  ];

  it('every billing route: no key → 401 missing_api_key, a bad key → 401, a project key → 403 missing_scope', async () => {
    for (const [method, path, body] of routes()) {
      const what = `${method} ${path}`;
      const none = await adminRequest(t, method, path, { key: null, body });
      expect(none.status, what).toBe(401);
      expectApiError(none, 401, 'missing_api_key');
      expectApiError(
        await adminRequest(t, method, path, { key: 'kp_admin_nope', body }),
        401,
        'invalid_api_key',
      );
      const project = await adminRequest(t, method, path, { key: projectKey.value, body });
      expect(project.status, what).toBe(403);
      expectApiError(project, 403, 'missing_scope');
    }
    // Nothing was changed by any of them.
    expect((await billingOf(t, customer.organization.id)).credit_balance_usd).toBe(3);
    expect((await billingOf(t)).billing_name).toBeNull();
  });

  it('operator-only actions: another organization’s admin key gets 403 operator_only, and nothing changes', async () => {
    const key = customer.adminKey.secret;
    const org = customer.organization.id;
    const attempts: [Method, string, Record<string, unknown>?][] = [
      ['POST', '/prices', { model: 'customer-model', input: 0, output: 0 }],
      ['DELETE', `/prices/${futurePrice.id}`],
      ['POST', '/billing/credit_grants', { amount_cents: 100_000 }],
      ['POST', `/billing/credit_grants/${grant.id}/void`, {}],
      ['POST', '/billing/payments', { amount_cents: 100_000 }],
      ['POST', '/billing/payments', { amount_cents: 250, invoice_id: invoice.id }],
      ['POST', '/billing', { plan: 'pay_as_you_go', billing_name: 'Sneaky' }],
      ['POST', '/invoices', { month }],
      ['POST', `/invoices/${invoice.id}/void`, {}],
    ];
    for (const [method, path, body] of attempts) {
      const response = await adminRequest(t, method, path, { key, body });
      expect(response.status, `${method} ${path}`).toBe(403);
      const error = expectApiError(response, 403, 'operator_only');
      expect(error.message).toMatch(/operator/);
    }
    await t.services.prices.reload();
    const prices = expectOk(await adminRequest<ListObject<PriceObject>>(t, 'GET', '/prices', { key })).data;
    expect(prices.some((p) => p.model === 'customer-model')).toBe(false);
    expect(prices.some((p) => p.id === futurePrice.id)).toBe(true);
    const billing = await billingOf(t, undefined, key);
    expect(billing).toMatchObject({ organization_id: org, credit_balance_usd: 3, billing_name: null });
    const grants = expectOk(
      await adminRequest<ListObject<GrantObject>>(t, 'GET', '/billing/credit_grants', { key }),
    );
    expect(grants.data.map((g) => [g.id, g.voided_at])).toEqual([[grant.id, null]]);
    expect(
      expectOk(await adminRequest<ListObject<PaymentObject>>(t, 'GET', '/billing/payments', { key })).data,
    ).toEqual([]);
    const own = expectOk(await adminRequest<InvoiceObject>(t, 'GET', `/invoices/${invoice.id}`, { key }));
    expect(own).toMatchObject({ status: 'open', voided_at: null, paid_at: null });
  });

  it('any organization reads its own billing, invoices and prices, and edits its own details', async () => {
    const key = customer.adminKey.secret;
    expect(await billingOf(t, undefined, key)).toMatchObject({
      object: 'organization.billing',
      organization_id: customer.organization.id,
      plan: 'pay_as_you_go',
      currency: 'usd',
      time_zone: 'UTC',
    });
    const invoices = expectOk(await adminRequest<ListObject<InvoiceObject>>(t, 'GET', '/invoices', { key }));
    expect(invoices.data.map((i) => i.id)).toEqual([invoice.id]);
    for (const suffix of ['', '.html', '.csv', '.pdf']) {
      expect((await adminRequest(t, 'GET', `/invoices/${invoice.id}${suffix}`, { key })).status, suffix).toBe(
        200,
      );
    }
    expect(expectOk(await adminRequest<InvoiceObject>(t, 'GET', '/invoices/upcoming', { key })).status).toBe(
      'draft',
    );
    expect(
      expectOk(await adminRequest<ListObject<PriceObject>>(t, 'GET', '/prices', { key })).data.length,
    ).toBeGreaterThan(0);
    const updated = expectOk(
      await adminRequest<BillingObject>(t, 'POST', '/billing', {
        key,
        body: {
          billing_name: 'Customer Ltd',
          billing_email: 'ap@customer.test',
          billing_address: ['Line 1'],
        },
      }),
    );
    expect(updated).toMatchObject({
      organization_id: customer.organization.id,
      billing_name: 'Customer Ltd',
      billing_email: 'ap@customer.test',
      billing_address: ['Line 1'],
      plan: 'pay_as_you_go',
    });
    // Naming its own organization is the same as naming none.
    expect((await billingOf(t, customer.organization.id, key)).billing_name).toBe('Customer Ltd');
  });

  it('a non-operator naming another organization: 403 operator_only, whether or not it exists', async () => {
    const key = customer.adminKey.secret;
    for (const target of [t.instance.organization.id, stranger.organization.id, 'org_doesnotexist']) {
      expectApiError(
        await adminRequest(t, 'GET', `/billing?organization_id=${target}`, { key }),
        403,
        'operator_only',
      );
      expectApiError(
        await adminRequest(t, 'GET', `/invoices?organization_id=${target}`, { key }),
        403,
        'operator_only',
      );
      expectApiError(
        await adminRequest(t, 'POST', '/billing', {
          key,
          body: { organization_id: target, billing_name: 'X' },
        }),
        403,
        'operator_only',
      );
    }
    expect((await billingOf(t, stranger.organization.id)).billing_name).toBeNull();
  });

  it('the operator acts for another organization by naming it; an unknown organization is not found', async () => {
    const org = stranger.organization.id;
    const changed = expectOk(
      await adminRequest<BillingObject>(t, 'POST', '/billing', {
        body: { organization_id: org, plan: 'prepaid', billing_name: 'Stranger GmbH' },
      }),
    );
    expect(changed).toMatchObject({ organization_id: org, plan: 'prepaid', billing_name: 'Stranger GmbH' });
    expect(await billingOf(t)).toMatchObject({
      organization_id: t.instance.organization.id,
      plan: 'pay_as_you_go',
    });
    expect(await billingOf(t, undefined, stranger.adminKey.secret)).toMatchObject({
      plan: 'prepaid',
      billing_name: 'Stranger GmbH',
    });
    const g = await grantCredit(t, { organization_id: org, amount_cents: 150 });
    expect((await billingOf(t, undefined, stranger.adminKey.secret)).credit_balance_usd).toBe(1.5);
    expect(
      expectOk(
        await adminRequest<ListObject<GrantObject>>(t, 'GET', '/billing/credit_grants', {
          key: stranger.adminKey.secret,
        }),
      ).data.map((x) => x.id),
    ).toEqual([g.id]);
    expect((await billingOf(t)).credit_balance_usd).toBe(0);

    for (const [method, path, body] of [
      ['GET', '/billing?organization_id=org_doesnotexist', undefined],
      ['POST', '/billing/credit_grants', { organization_id: 'org_doesnotexist', amount_cents: 1 }],
      ['POST', '/billing/payments', { organization_id: 'org_doesnotexist', amount_cents: 1 }],
      ['POST', '/invoices', { organization_id: 'org_doesnotexist', month }],
    ] as [Method, string, Record<string, unknown> | undefined][]) {
      expectApiError(await adminRequest(t, method, path, { body }), 404, 'not_found');
    }
  });

  it('ids of another organization are not found, for its admin key and for the operator naming the wrong one', async () => {
    const key = stranger.adminKey.secret;
    for (const suffix of ['', '.html', '.csv', '.pdf']) {
      expectApiError(
        await adminRequest(t, 'GET', `/invoices/${invoice.id}${suffix}`, { key }),
        404,
        'not_found',
      );
      // The operator without naming the customer: its own organization has no such invoice.
      expectApiError(await adminRequest(t, 'GET', `/invoices/${invoice.id}${suffix}`), 404, 'not_found');
    }
    const wrongOrg = { organization_id: stranger.organization.id };
    expectApiError(
      await adminRequest(t, 'POST', `/invoices/${invoice.id}/void`, { body: wrongOrg }),
      404,
      'not_found',
    );
    expectApiError(
      await adminRequest(t, 'POST', `/invoices/${invoice.id}/void`, { body: {} }),
      404,
      'not_found',
    );
    expectApiError(
      await adminRequest(t, 'POST', `/billing/credit_grants/${grant.id}/void`, { body: wrongOrg }),
      404,
      'not_found',
    );
    expectApiError(
      await adminRequest(t, 'POST', '/billing/payments', {
        body: { ...wrongOrg, amount_cents: 250, invoice_id: invoice.id },
      }),
      404,
      'not_found',
    );
    expectApiError(
      await adminRequest(t, 'GET', `/invoices/${invoice.id}?organization_id=${stranger.organization.id}`),
      404,
      'not_found',
    );
    // The customer's invoice and grant are as they were.
    const again = expectOk(
      await adminRequest<InvoiceObject>(
        t,
        'GET',
        `/invoices/${invoice.id}?organization_id=${customer.organization.id}`,
      ),
    );
    expect(again).toMatchObject({ status: 'open', voided_at: null });
    expect((await billingOf(t, customer.organization.id)).credit_balance_usd).toBe(3);
    expect(
      expectOk(
        await adminRequest<ListObject<PaymentObject>>(
          t,
          'GET',
          `/billing/payments?organization_id=${stranger.organization.id}`,
        ),
      ).data,
    ).toEqual([]);
  });
});
