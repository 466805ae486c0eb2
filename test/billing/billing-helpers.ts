/** Shapes and small helpers shared by the billing suites (test/billing/*.test.ts). */
import { sql } from 'drizzle-orm';
import OpenAI from 'openai';
import type { Db } from '../../src/store/database.ts';
import { rowsOf } from '../../src/store/rows.ts';
import { adminRequest, expectOk } from '../helpers/admin-api.ts';
import type { TestApp } from '../helpers/test-app.ts';

export interface BillingObject {
  object: 'organization.billing';
  organization_id: string;
  plan: 'free_trial' | 'pay_as_you_go' | 'prepaid';
  billing_name: string | null;
  billing_email: string | null;
  billing_address: string[];
  tax_id: string | null;
  credit_balance_usd: number;
  currency: 'usd';
  time_zone: string;
}

export interface GrantObject {
  object: 'organization.credit_grant';
  id: string;
  kind: 'trial' | 'top_up' | 'promotion' | 'adjustment';
  amount_cents: number;
  remaining_usd: number;
  note: string | null;
  payment_id: string | null;
  created_at: number;
  expires_at: number | null;
  voided_at: number | null;
}

export interface PaymentObject {
  object: 'organization.payment';
  id: string;
  invoice_id: string | null;
  amount_cents: number;
  provider: string;
  method: string | null;
  reference: string | null;
  status: string;
  created_at: number;
}

export interface InvoiceLineObject {
  project_id: string | null;
  model: string | null;
  item: string;
  quantity: number;
  quantity_unit: string;
  amount_cents: number;
}

export interface InvoiceObject {
  object: 'organization.invoice';
  id: string | null;
  number: string | null;
  status: 'draft' | 'open' | 'paid' | 'void';
  period_start: number;
  period_end: number;
  subtotal_cents: number;
  credits_cents: number;
  total_cents: number;
  bill_to?: Record<string, unknown>;
  issued_at?: number;
  due_at?: number | null;
  paid_at?: number | null;
  voided_at?: number | null;
  lines: InvoiceLineObject[];
}

export interface ListObject<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

export interface PriceObject {
  object: 'organization.price';
  id: string | null;
  model: string;
  input: number;
  cached_input: number | null;
  output: number;
  unit: number | null;
  effective_at: number | null;
  source: 'database' | 'config' | 'default';
  current?: boolean;
}

/** Half-up rounding of nano-USD to cents, with integer arithmetic (independent of the code under test). */
export function roundHalfUpCents(nano: number): number {
  const whole = Math.floor(nano / 10_000_000);
  const rest = nano - whole * 10_000_000;
  return rest >= 5_000_000 ? whole + 1 : whole;
}

export async function billingOf(t: TestApp, organizationId?: string, key?: string): Promise<BillingObject> {
  const query = organizationId ? `?organization_id=${organizationId}` : '';
  return expectOk(await adminRequest<BillingObject>(t, 'GET', `/billing${query}`, { key }));
}

export async function grantCredit(
  t: TestApp,
  body: { organization_id?: string; amount_cents: number; expires_at?: number | null; kind?: string },
): Promise<GrantObject> {
  return expectOk(await adminRequest<GrantObject>(t, 'POST', '/billing/credit_grants', { body }));
}

export async function setPlan(t: TestApp, plan: BillingObject['plan'], organizationId?: string) {
  return expectOk(
    await adminRequest<BillingObject>(t, 'POST', '/billing', {
      body: { plan, ...(organizationId ? { organization_id: organizationId } : {}) },
    }),
  );
}

/** The organization's credit grants straight from the database, nano-USD. */
export async function grantRows(db: Db, organizationId: string) {
  return rowsOf<{ id: string; remaining_nano_usd: string | number; amount_nano_usd: string | number }>(
    await db.execute(
      sql`select id, amount_nano_usd, remaining_nano_usd from credit_grants where organization_id = ${organizationId} order by created_at, id`,
    ),
  ).map((row) => ({
    id: row.id,
    amount: Number(row.amount_nano_usd),
    remaining: Number(row.remaining_nano_usd),
  }));
}

/** Every credit draw of an organization: grant, month (ms) and nano-USD. */
export async function drawRows(db: Db, organizationId: string) {
  return rowsOf<{ grant_id: string; month_start: string | Date; amount_nano_usd: string | number }>(
    await db.execute(
      sql`select grant_id, month_start, amount_nano_usd from credit_draws where organization_id = ${organizationId} order by month_start, grant_id`,
    ),
  ).map((row) => ({
    grantId: row.grant_id,
    monthStart: new Date(row.month_start).getTime(),
    amount: Number(row.amount_nano_usd),
  }));
}

/** An SDK client that counts the HTTP attempts it makes (retries included). */
export function countingClient(
  options: { apiKey: string; baseURL: string; fetch: typeof fetch; maxRetries: number },
  counter: { attempts: number },
): OpenAI {
  const inner = options.fetch;
  return new OpenAI({
    apiKey: options.apiKey,
    baseURL: options.baseURL,
    maxRetries: options.maxRetries,
    organization: null,
    project: null,
    timeout: 15_000,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      counter.attempts++;
      return inner(input, init);
    }) as typeof fetch,
  });
}

export const chat = (client: OpenAI, content = 'Hello there') =>
  client.chat.completions.create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content }] });
