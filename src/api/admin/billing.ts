/**
 * Billing in the Admin API (Keyport extensions; OpenAI has no public billing endpoints):
 *
 *   GET  /billing                     plan, details and credit balance     POST /billing  details (plan: operator)
 *   GET  /billing/credit_grants       credit grants                        POST  …        grant credit (operator)
 *   POST /billing/credit_grants/{id}/void                                  (operator)
 *   GET  /billing/payments            payment history                      POST  …        record a payment (operator)
 *   GET  /invoices                    invoices, newest first               POST /invoices issue a month's (operator)
 *   GET  /invoices/upcoming           this month so far
 *   GET  /invoices/{id}               one invoice; …/{id}.html, .pdf, .csv (also upcoming.html …)
 *   POST /invoices/{id}/void          (operator)
 *   GET  /prices                      the price list                       POST /prices, DELETE /prices/{id} (operator)
 *
 * Money in: whole cents (`amount_cents`); money out: cents, and exact dollars where nano-USD
 * matter (`remaining_usd`). The operator is the instance's first organization (`keyport init`):
 * its admin keys may act for another organization by naming it (`organization_id`).
 */

import { eq } from 'drizzle-orm';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { InvoiceView } from '../../billing/billing-service.ts';
import { invoiceCsv, invoiceHtml, invoicePdf } from '../../billing/invoice-render.ts';
import { parseMonth, roundingOf } from '../../billing/invoices.ts';
import { ApiError, badRequest } from '../../core/errors.ts';
import { NANO_USD_PER_USD } from '../../core/pricing.ts';
import type { Services } from '../../services.ts';
import { findOrganization } from '../../store/repositories/organizations.ts';
import {
  BILLING_PLANS,
  type CreditGrantRow,
  type InvoiceRow,
  type PaymentRow,
  projects as projectsTable,
} from '../../store/schema.ts';
import { pageQuery, pageRequest, parseWith, unixSeconds, unixSecondsOrNull } from '../http/parse.ts';
import { listObject } from './objects.ts';

const usdOf = (nano: number) => nano / NANO_USD_PER_USD;
const orgParam = z.string().min(1).max(128).optional();
const idParams = z.object({ id: z.string().min(1).max(128) });
const listQuery = z.object({
  ...pageQuery,
  order: z.enum(['asc', 'desc']).default('desc'),
  organization_id: orgParam,
});
const orgQuery = z.object({ organization_id: orgParam });

const detailsBody = z.strictObject({
  organization_id: orgParam,
  plan: z.enum(BILLING_PLANS).optional(),
  billing_name: z.string().max(200).nullable().optional(),
  billing_email: z.string().max(320).nullable().optional(),
  billing_address: z.array(z.string().max(200)).max(8).optional(),
  tax_id: z.string().max(64).nullable().optional(),
});
/** Unix seconds up to the year 3000 (beyond, a date the database cannot store). */
const unixTime = z.number().int().positive().max(32_503_680_000);
/**
 * Money in cents up to $9M a time: in nano-USD that is below 2^53, where JavaScript numbers stop
 * being exact (larger sums are several grants or payments).
 */
const cents = z.number().int().min(1).max(900_000_000);
const grantBody = z.strictObject({
  organization_id: orgParam,
  amount_cents: cents,
  kind: z.enum(['trial', 'top_up', 'promotion', 'adjustment']).default('promotion'),
  expires_at: unixTime.nullable().optional(),
  note: z.string().max(500).nullable().optional(),
});
const paymentBody = z.strictObject({
  organization_id: orgParam,
  amount_cents: cents,
  invoice_id: z.string().min(1).max(128).nullable().optional(),
  method: z.string().max(64).nullable().optional(),
  reference: z.string().max(200).nullable().optional(),
  credit_expires_at: unixTime.nullable().optional(),
});
const issueBody = z.strictObject({ organization_id: orgParam, month: z.string() });
const priceBody = z.strictObject({
  model: z.string().min(1).max(200),
  input: z.number().min(0),
  cached_input: z.number().min(0).nullable().optional(),
  output: z.number().min(0),
  unit: z.number().min(0).nullable().optional(),
  effective_at: unixTime.optional(),
});

export function billingRoutes(app: FastifyInstance, services: Services): void {
  const { billing, store } = services;

  /** The organization a request is about: the caller's, or (operator only) the one it names. */
  const organizationOf = async (request: FastifyRequest, named: string | undefined): Promise<string> => {
    const own = request.admin.organizationId;
    if (named === undefined || named === own) return own;
    await requireOperator(request);
    if (!(await billing.organizationExists(named)))
      throw new ApiError('not_found', `No organization found with id '${named}'.`);
    return named;
  };
  const requireOperator = async (request: FastifyRequest): Promise<void> => {
    if (await billing.isOperator(request.admin.organizationId)) return;
    throw new ApiError(
      'operator_only',
      "Only the instance operator's organization may do this (set prices, grant credit, record payments, change plans, issue or void invoices).",
    );
  };

  const accountObject = async (organizationId: string) => {
    // The account first: making it grants the trial credit, which the balance must include.
    const account = await billing.account(organizationId);
    const balance = await billing.balance(organizationId);
    return {
      object: 'organization.billing' as const,
      organization_id: organizationId,
      plan: account.plan,
      billing_name: account.billingName,
      billing_email: account.billingEmail,
      billing_address: account.billingAddress,
      tax_id: account.taxId,
      credit_balance_usd: usdOf(balance.availableNanoUsd),
      currency: 'usd' as const,
      time_zone: billing.timeZone,
      created_at: unixSeconds(account.createdAt),
      updated_at: unixSeconds(account.updatedAt),
    };
  };

  app.get('/billing', async (request) => {
    const { organization_id } = parseWith(orgQuery, request.query, 'query');
    return accountObject(await organizationOf(request, organization_id));
  });

  app.post('/billing', async (request) => {
    const body = parseWith(detailsBody, request.body, 'body');
    const organizationId = await organizationOf(request, body.organization_id);
    if (body.plan !== undefined) await requireOperator(request);
    // Details first: they are validated, so a refused request changes neither.
    await billing.updateDetails(
      organizationId,
      {
        billingName: body.billing_name,
        billingEmail: body.billing_email,
        billingAddress: body.billing_address,
        taxId: body.tax_id,
      },
      request.admin.actor,
    );
    if (body.plan !== undefined) await billing.setPlan(organizationId, body.plan, request.admin.actor);
    return accountObject(organizationId);
  });

  app.get('/billing/credit_grants', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const page = await billing.grants(
      await organizationOf(request, query.organization_id),
      pageRequest(query),
    );
    return listObject(page, page.items.map(grantObject));
  });

  app.post('/billing/credit_grants', async (request) => {
    const body = parseWith(grantBody, request.body, 'body');
    await requireOperator(request);
    const organizationId = await organizationOf(request, body.organization_id);
    const grant = await billing.grantCredit(
      organizationId,
      {
        amountCents: body.amount_cents,
        kind: body.kind,
        expiresAt: body.expires_at ? new Date(body.expires_at * 1000) : null,
        note: body.note,
      },
      request.admin.actor,
    );
    return grantObject(grant);
  });

  app.post('/billing/credit_grants/:id/void', async (request) => {
    const { id } = parseWith(idParams, request.params, 'query');
    const body = parseWith(orgQuery, request.body, 'body');
    await requireOperator(request);
    const organizationId = await organizationOf(request, body.organization_id);
    return grantObject(await billing.voidGrant(organizationId, id, request.admin.actor));
  });

  app.get('/billing/payments', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const page = await billing.payments(
      await organizationOf(request, query.organization_id),
      pageRequest(query),
    );
    return listObject(page, page.items.map(paymentObject));
  });

  app.post('/billing/payments', async (request) => {
    const body = parseWith(paymentBody, request.body, 'body');
    await requireOperator(request);
    const organizationId = await organizationOf(request, body.organization_id);
    const payment = await billing.recordPayment(
      organizationId,
      {
        amountCents: body.amount_cents,
        invoiceId: body.invoice_id,
        method: body.method,
        reference: body.reference,
        creditExpiresAt: body.credit_expires_at ? new Date(body.credit_expires_at * 1000) : null,
      },
      request.admin.actor,
    );
    return paymentObject(payment);
  });

  // ---- invoices -----------------------------------------------------------------------------------

  app.get('/invoices', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const page = await billing.invoicesOf(
      await organizationOf(request, query.organization_id),
      pageRequest(query),
    );
    return listObject(
      page,
      page.items.map((invoice) => invoiceSummary(invoice)),
    );
  });

  app.post('/invoices', async (request) => {
    const body = parseWith(issueBody, request.body, 'body');
    await requireOperator(request);
    const organizationId = await organizationOf(request, body.organization_id);
    let month: { year: number; month: number };
    try {
      month = parseMonth(body.month);
    } catch {
      throw badRequest("Invalid 'month': a month such as 2026-11.", 'month');
    }
    // The 15th is inside the month in every time zone.
    const view = await billing.issue(
      organizationId,
      Date.UTC(month.year, month.month - 1, 15),
      request.admin.actor,
    );
    if (!view) throw new ApiError('not_found', `No usage in ${body.month}: there is nothing to invoice.`);
    return invoiceObject(view);
  });

  /** `upcoming` (this month so far) or an invoice id, with an optional `.html`, `.pdf` or `.csv`. */
  app.get('/invoices/:id', async (request, reply) => {
    const { id: raw } = parseWith(idParams, request.params, 'query');
    const format = /\.(html|pdf|csv)$/.exec(raw)?.[1] as 'html' | 'pdf' | 'csv' | undefined;
    const id = format ? raw.slice(0, -format.length - 1) : raw;
    const { organization_id } = parseWith(orgQuery, request.query, 'query');
    const organizationId = await organizationOf(request, organization_id);
    const view =
      id === 'upcoming'
        ? await billing.draft(organizationId, billing.monthOf(Date.now()).start)
        : await billing.invoice(organizationId, id);
    if (!format) return invoiceObject(view);
    return sendRendered(reply, view, format, await contextOf(organizationId, view));
  });

  app.post('/invoices/:id/void', async (request) => {
    const { id } = parseWith(idParams, request.params, 'query');
    const body = parseWith(orgQuery, request.body, 'body');
    await requireOperator(request);
    const organizationId = await organizationOf(request, body.organization_id);
    return invoiceObject(await billing.voidInvoice(organizationId, id, request.admin.actor));
  });

  const contextOf = async (organizationId: string, view: InvoiceView) => {
    const projectIds = [...new Set(view.lines.map((l) => l.projectId))].filter(Boolean);
    const names = new Map<string, string>();
    for (const id of projectIds) {
      const [row] = await store.db
        .select({ name: projectsTable.name })
        .from(projectsTable)
        .where(eq(projectsTable.id, id));
      if (row) names.set(id, row.name);
    }
    const org = await findOrganization(store.db, organizationId);
    return {
      issuer: services.config.invoiceIssuer,
      timeZone: billing.timeZone,
      projectNames: names,
      organizationName: org?.name ?? '',
    };
  };

  // ---- prices -------------------------------------------------------------------------------------

  app.get('/prices', async () => {
    const entries = services.prices.entries();
    return {
      object: 'list' as const,
      data: entries.map((entry) => ({
        object: 'organization.price' as const,
        id: entry.id,
        model: entry.model,
        input: entry.input,
        cached_input: entry.cachedInput ?? null,
        output: entry.output,
        unit: entry.unit ?? null,
        currency: 'usd' as const,
        per: '1M tokens' as const,
        effective_at: entry.effectiveFrom === null ? null : Math.floor(entry.effectiveFrom / 1000),
        source: entry.source,
        current: entry.current,
      })),
      has_more: false,
    };
  });

  app.post('/prices', async (request) => {
    const body = parseWith(priceBody, request.body, 'body');
    await requireOperator(request);
    const row = await services.prices.set(
      request.admin.organizationId,
      {
        model: body.model,
        input: body.input,
        cachedInput: body.cached_input,
        output: body.output,
        unit: body.unit,
        effectiveFrom: body.effective_at ? body.effective_at * 1000 : undefined,
      },
      request.admin.actor,
    );
    return {
      object: 'organization.price' as const,
      id: row.id,
      model: row.model,
      input: row.input,
      cached_input: row.cachedInput,
      output: row.output,
      unit: row.unit,
      currency: 'usd' as const,
      per: '1M tokens' as const,
      effective_at: Math.floor(row.effectiveFrom.getTime() / 1000),
      source: 'database' as const,
    };
  });

  app.delete('/prices/:id', async (request) => {
    const { id } = parseWith(idParams, request.params, 'query');
    await requireOperator(request);
    await services.prices.remove(request.admin.organizationId, id, request.admin.actor);
    return { object: 'organization.price.deleted' as const, id, deleted: true };
  });
}

async function sendRendered(
  reply: FastifyReply,
  view: InvoiceView,
  format: 'html' | 'pdf' | 'csv',
  context: Parameters<typeof invoiceHtml>[1],
) {
  const name = view.invoice?.number ?? 'upcoming';
  if (format === 'html') {
    // Escaped throughout; the headers are a second wall (no script, no framing, no sniffing).
    return reply
      .headers({
        'content-security-policy':
          "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        'x-content-type-options': 'nosniff',
      })
      .type('text/html; charset=utf-8')
      .send(invoiceHtml(view, context));
  }
  if (format === 'csv') {
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${name}.csv"`)
      .send(invoiceCsv(view, context));
  }
  return reply
    .type('application/pdf')
    .header('content-disposition', `attachment; filename="${name}.pdf"`)
    .send(await invoicePdf(view, context));
}

function grantObject(grant: CreditGrantRow) {
  return {
    object: 'organization.credit_grant' as const,
    id: grant.id,
    kind: grant.kind,
    amount_cents: Math.round(grant.amountNanoUsd / 10_000_000),
    remaining_usd: usdOf(grant.remainingNanoUsd),
    note: grant.note,
    payment_id: grant.paymentId,
    created_at: unixSeconds(grant.createdAt),
    expires_at: unixSecondsOrNull(grant.expiresAt),
    voided_at: unixSecondsOrNull(grant.voidedAt),
  };
}

function paymentObject(payment: PaymentRow) {
  return {
    object: 'organization.payment' as const,
    id: payment.id,
    invoice_id: payment.invoiceId,
    amount_cents: payment.amountCents,
    currency: 'usd' as const,
    provider: payment.provider,
    method: payment.method,
    reference: payment.reference,
    status: payment.status,
    created_at: unixSeconds(payment.createdAt),
  };
}

function invoiceSummary(invoice: InvoiceRow) {
  return {
    object: 'organization.invoice' as const,
    id: invoice.id,
    number: invoice.number,
    status: invoice.status,
    period_start: unixSeconds(invoice.periodStart),
    period_end: unixSeconds(invoice.periodEnd),
    currency: 'usd' as const,
    subtotal_cents: invoice.subtotalCents,
    rounding_cents: roundingOf(invoice),
    credits_cents: invoice.creditsCents,
    total_cents: invoice.totalCents,
    bill_to: invoice.billTo,
    issued_at: unixSeconds(invoice.issuedAt),
    due_at: unixSecondsOrNull(invoice.dueAt),
    paid_at: unixSecondsOrNull(invoice.paidAt),
    voided_at: unixSecondsOrNull(invoice.voidedAt),
  };
}

function invoiceObject(view: InvoiceView) {
  const lines = view.lines.map((line) => ({
    project_id: line.projectId || null,
    model: line.model || null,
    item: line.item,
    quantity: line.quantity,
    quantity_unit: line.quantityUnit,
    amount_cents: line.amountCents,
  }));
  if (view.invoice) return { ...invoiceSummary(view.invoice), lines };
  return {
    object: 'organization.invoice' as const,
    id: null,
    number: null,
    status: 'draft' as const,
    period_start: view.periodStart / 1000,
    period_end: view.periodEnd / 1000,
    currency: 'usd' as const,
    subtotal_cents: view.amounts.subtotalCents,
    rounding_cents: view.amounts.roundingCents,
    credits_cents: view.amounts.creditsCents,
    total_cents: view.amounts.totalCents,
    lines,
  };
}
