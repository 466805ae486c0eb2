/**
 * Billing: an organization's plan and details, its credit (grants, balance), payments, and monthly
 * invoices. Money is integers: cents on invoices and payments, nano-USD for usage and credit.
 *
 * Plans: `pay_as_you_go` is invoiced each month for what it used (credit, if any, is applied);
 * `prepaid` and `free_trial` draw on credit and are refused at zero (the gateway's credit gate).
 * A new organization on `free_trial` gets the configured trial credit, expiring after the trial.
 *
 * Every change is audited in the same transaction, in the organization it changes (an operator's
 * key acting for a customer is the actor of an entry in the customer's log).
 */
import { and, asc, desc, eq, gt, isNull, or, sql } from 'drizzle-orm';
import { type Actor, actorId, SYSTEM } from '../core/actor.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { periodBounds } from '../core/periods.ts';
import { NANO_USD_PER_CENT } from '../core/pricing.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import { afterCursor, type Page, type PageRequest, toPage } from '../store/repositories/pagination.ts';
import { rowsOf } from '../store/rows.ts';
import {
  type BillingAccountRow,
  type BillingPlan,
  billingAccounts,
  type CreditGrantRow,
  creditGrants,
  type InvoiceLineRow,
  type InvoiceRow,
  invoiceLines as invoiceLinesTable,
  invoices,
  organizations,
  type PaymentRow,
  payments,
} from '../store/schema.ts';
import { sqlStateOf } from '../store/sql-state.ts';
import { type InvoiceAmounts, invoiceAmounts, invoiceLines, invoiceNumber, roundingOf } from './invoices.ts';
import type { PaymentProvider } from './payments.ts';
import { sumUsageByProjectAndModel } from './usage-query.ts';

export interface BillingOptions {
  timeZone: string;
  defaultPlan: BillingPlan;
  trialCreditCents: number;
  trialDays: number;
  invoiceDueDays: number;
  issuer: string;
  provider: PaymentProvider;
  /** Tells the gateway's credit gate (on every instance) that an organization's credit changed. */
  changed: (organizationId: string) => Promise<void>;
  now?: () => number;
}

export interface BillingDetails {
  billingName?: string | null | undefined;
  billingEmail?: string | null | undefined;
  billingAddress?: string[] | undefined;
  taxId?: string | null | undefined;
}

export interface GrantInput {
  amountCents: number;
  kind: CreditGrantRow['kind'];
  expiresAt?: Date | null | undefined;
  note?: string | null | undefined;
  paymentId?: string | null | undefined;
}

export interface PaymentInput {
  amountCents: number;
  invoiceId?: string | null | undefined;
  method?: string | null | undefined;
  reference?: string | null | undefined;
  /** A top-up's credit expires then (default: never). */
  creditExpiresAt?: Date | null | undefined;
}

export interface Balance {
  /** Credit usable now, nano-USD. */
  availableNanoUsd: number;
  grants: CreditGrantRow[];
}

/** An invoice with its lines; a draft (the month so far) has no id, number or status yet. */
export interface InvoiceView {
  invoice: InvoiceRow | null;
  lines: Omit<InvoiceLineRow, 'invoiceId'>[];
  amounts: InvoiceAmounts;
  periodStart: number;
  periodEnd: number;
}

const EMAIL = /^[^\s@]+@[^\s@]+$/;
/** The actor of what billing does by itself: trial credit, the monthly invoice cycle. */
const BILLING = SYSTEM('billing');

export class BillingService {
  readonly #now: () => number;

  constructor(
    private readonly db: Db,
    private readonly options: BillingOptions,
  ) {
    this.#now = options.now ?? Date.now;
  }

  get provider(): PaymentProvider {
    return this.options.provider;
  }

  get timeZone(): string {
    return this.options.timeZone;
  }

  // ---- the account ------------------------------------------------------------------------------

  /** The organization's billing account, made with the default plan (and trial credit) the first time. */
  async account(organizationId: string): Promise<BillingAccountRow> {
    const [existing] = await this.db
      .select()
      .from(billingAccounts)
      .where(eq(billingAccounts.organizationId, organizationId));
    if (existing) return existing;
    return this.db.transaction(async (tx) => {
      const [created] = await tx
        .insert(billingAccounts)
        .values({ organizationId, plan: this.options.defaultPlan })
        .onConflictDoNothing()
        .returning();
      if (!created) {
        const [row] = await tx
          .select()
          .from(billingAccounts)
          .where(eq(billingAccounts.organizationId, organizationId));
        return row!;
      }
      // Only the request that made the account grants the trial: never twice.
      if (created.plan === 'free_trial' && this.options.trialCreditCents > 0) {
        const grant = await this.#insertGrant(
          tx,
          organizationId,
          {
            amountCents: this.options.trialCreditCents,
            kind: 'trial',
            expiresAt: new Date(this.#now() + this.options.trialDays * 86_400_000),
            note: `Free trial: ${this.options.trialDays} days`,
          },
          'system:trial',
        );
        await auditGrantCreated(tx, grant, BILLING);
      }
      return created;
    });
  }

  /** Changes the details given; none given changes nothing (and audits nothing). */
  async updateDetails(
    organizationId: string,
    details: BillingDetails,
    actor: Actor,
  ): Promise<BillingAccountRow> {
    if (details.billingEmail && !EMAIL.test(details.billingEmail)) {
      throw badRequest('Invalid billing_email.', 'billing_email');
    }
    const account = await this.account(organizationId);
    const values: Partial<BillingAccountRow> = {};
    if (details.billingName !== undefined) values.billingName = details.billingName;
    if (details.billingEmail !== undefined) values.billingEmail = details.billingEmail;
    if (details.billingAddress !== undefined) values.billingAddress = details.billingAddress;
    if (details.taxId !== undefined) values.taxId = details.taxId;
    if (Object.keys(values).length === 0) return account;
    return this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(billingAccounts)
        .set({ ...values, updatedAt: new Date(this.#now()) })
        .where(eq(billingAccounts.organizationId, organizationId))
        .returning();
      await recordAudit(tx, {
        organizationId,
        type: 'billing.details.updated',
        actor,
        resourceId: organizationId,
        details: {
          id: organizationId,
          changes_requested: {
            ...(values.billingName !== undefined ? { billing_name: values.billingName } : {}),
            ...(values.billingEmail !== undefined ? { billing_email: values.billingEmail } : {}),
            ...(values.billingAddress !== undefined ? { billing_address: values.billingAddress } : {}),
            ...(values.taxId !== undefined ? { tax_id: values.taxId } : {}),
          },
        },
      });
      return row!;
    });
  }

  /** Changes the plan; the same plan again changes nothing (and audits nothing). */
  async setPlan(organizationId: string, plan: BillingPlan, actor: Actor): Promise<BillingAccountRow> {
    await this.account(organizationId);
    const { row, changed } = await this.db.transaction(async (tx) => {
      const [current] = await tx
        .select()
        .from(billingAccounts)
        .where(eq(billingAccounts.organizationId, organizationId))
        .for('update');
      if (current!.plan === plan) return { row: current!, changed: false };
      const [row] = await tx
        .update(billingAccounts)
        .set({ plan, updatedAt: new Date(this.#now()) })
        .where(eq(billingAccounts.organizationId, organizationId))
        .returning();
      await recordAudit(tx, {
        organizationId,
        type: 'billing.plan.updated',
        actor,
        resourceId: organizationId,
        details: { id: organizationId, changes_requested: { plan } },
      });
      return { row: row!, changed: true };
    });
    if (changed) await this.options.changed(organizationId);
    return row;
  }

  async isOperator(organizationId: string): Promise<boolean> {
    const [row] = await this.db
      .select({ isOperator: organizations.isOperator })
      .from(organizations)
      .where(eq(organizations.id, organizationId));
    return row?.isOperator ?? false;
  }

  async organizationExists(organizationId: string): Promise<boolean> {
    const [row] = await this.db
      .select({ id: organizations.id })
      .from(organizations)
      .where(eq(organizations.id, organizationId));
    return row !== undefined;
  }

  // ---- credit -----------------------------------------------------------------------------------

  async grantCredit(organizationId: string, input: GrantInput, actor: Actor): Promise<CreditGrantRow> {
    if (
      !Number.isInteger(input.amountCents) ||
      input.amountCents <= 0 ||
      // $9M: in nano-USD still below 2^53, where the arithmetic on it stays exact.
      input.amountCents > 900_000_000
    ) {
      throw badRequest('Invalid amount: whole cents, more than 0 and at most 900000000 ($9M).', 'amount');
    }
    if (input.expiresAt && input.expiresAt.getTime() <= this.#now()) {
      throw badRequest('Invalid expires_at: it must be in the future.', 'expires_at');
    }
    await this.account(organizationId);
    const grant = await this.db.transaction(async (tx) => {
      const grant = await this.#insertGrant(tx, organizationId, input, actorId(actor));
      await auditGrantCreated(tx, grant, actor);
      return grant;
    });
    await this.options.changed(organizationId);
    return grant;
  }

  async #insertGrant(
    db: DbOrTx,
    organizationId: string,
    input: GrantInput,
    createdBy: string,
  ): Promise<CreditGrantRow> {
    const nano = input.amountCents * NANO_USD_PER_CENT;
    const [row] = await db
      .insert(creditGrants)
      .values({
        id: newId('creditGrant'),
        organizationId,
        kind: input.kind,
        amountNanoUsd: nano,
        remainingNanoUsd: nano,
        note: input.note ?? null,
        paymentId: input.paymentId ?? null,
        createdBy,
        createdAt: new Date(this.#now()),
        expiresAt: input.expiresAt ?? null,
      })
      .returning();
    return row!;
  }

  /** Ends a grant: what it still holds is no longer usable (what it paid for stays paid). */
  async voidGrant(organizationId: string, grantId: string, actor: Actor): Promise<CreditGrantRow> {
    const row = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(creditGrants)
        .set({ voidedAt: new Date(this.#now()) })
        .where(
          and(
            eq(creditGrants.organizationId, organizationId),
            eq(creditGrants.id, grantId),
            isNull(creditGrants.voidedAt),
          ),
        )
        .returning();
      if (!row) throw notFound('credit grant', grantId);
      await recordAudit(tx, {
        organizationId,
        type: 'credit_grant.voided',
        actor,
        resourceId: grantId,
        details: { id: grantId },
      });
      return row;
    });
    await this.options.changed(organizationId);
    return row;
  }

  async grants(organizationId: string, page: PageRequest): Promise<Page<CreditGrantRow>> {
    const order = page.order === 'asc' ? asc : desc;
    const cursor = afterCursor(creditGrants, creditGrants.createdAt, creditGrants.id, page);
    const rows = await this.db
      .select()
      .from(creditGrants)
      .where(and(eq(creditGrants.organizationId, organizationId), cursor))
      .orderBy(order(creditGrants.createdAt), order(creditGrants.id))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  /** Credit usable now: grants not voided, not expired, with something left. */
  async balance(organizationId: string): Promise<Balance> {
    const now = new Date(this.#now());
    const grants = await this.db
      .select()
      .from(creditGrants)
      .where(
        and(
          eq(creditGrants.organizationId, organizationId),
          isNull(creditGrants.voidedAt),
          gt(creditGrants.remainingNanoUsd, 0),
          or(isNull(creditGrants.expiresAt), gt(creditGrants.expiresAt, now)),
        ),
      )
      .orderBy(sql`${creditGrants.expiresAt} asc nulls last`, asc(creditGrants.createdAt));
    return { availableNanoUsd: grants.reduce((sum, g) => sum + g.remainingNanoUsd, 0), grants };
  }

  // ---- payments ---------------------------------------------------------------------------------

  /**
   * Records money received. For an invoice: the invoice is paid once its payments cover it. Without
   * one: a prepaid top-up, granted as credit at once.
   */
  async recordPayment(organizationId: string, input: PaymentInput, actor: Actor): Promise<PaymentRow> {
    if (!Number.isInteger(input.amountCents) || input.amountCents <= 0) {
      throw badRequest('Invalid amount: whole cents, more than 0.', 'amount');
    }
    await this.account(organizationId);
    const createdBy = actorId(actor);
    let credited = false;
    const payment = await this.db.transaction(async (tx) => {
      let invoice: InvoiceRow | undefined;
      let paidBefore = 0;
      if (input.invoiceId) {
        [invoice] = await tx
          .select()
          .from(invoices)
          .where(and(eq(invoices.organizationId, organizationId), eq(invoices.id, input.invoiceId)))
          .for('update');
        if (!invoice) throw notFound('invoice', input.invoiceId);
        if (invoice.status === 'void') throw badRequest(`Invoice ${invoice.number} is void.`, 'invoice_id');
        paidBefore = await paidTowards(tx, invoice.id);
      }
      const [payment] = await tx
        .insert(payments)
        .values({
          id: newId('payment'),
          organizationId,
          invoiceId: invoice?.id ?? null,
          amountCents: input.amountCents,
          provider: this.options.provider.name,
          reference: input.reference ?? null,
          method: input.method ?? null,
          status: 'succeeded',
          createdBy,
          createdAt: new Date(this.#now()),
        })
        .returning();
      await recordAudit(tx, {
        organizationId,
        type: 'payment.recorded',
        actor,
        resourceId: payment!.id,
        details: {
          id: payment!.id,
          data: {
            amount_cents: payment!.amountCents,
            currency: 'usd',
            invoice_id: payment!.invoiceId,
            provider: payment!.provider,
            method: payment!.method,
            reference: payment!.reference,
          },
        },
      });
      if (invoice && paidBefore + input.amountCents >= invoice.totalCents && invoice.status === 'open') {
        await tx
          .update(invoices)
          .set({ status: 'paid', paidAt: new Date(this.#now()) })
          .where(eq(invoices.id, invoice.id));
      }
      // A top-up is credit; so is what a payment brings beyond what its invoice still owed, so
      // that no money is recorded against nothing.
      const owed = invoice ? Math.max(0, invoice.totalCents - paidBefore) : 0;
      const credit = input.amountCents - owed;
      if (credit > 0) {
        const reference = input.reference ? ` (${input.reference})` : '';
        const grant = await this.#insertGrant(
          tx,
          organizationId,
          {
            amountCents: credit,
            kind: 'top_up',
            expiresAt: input.creditExpiresAt ?? null,
            note: invoice ? `Overpayment of invoice ${invoice.number}${reference}` : `Top-up${reference}`,
            paymentId: payment!.id,
          },
          createdBy,
        );
        await auditGrantCreated(tx, grant, actor);
        credited = true;
      }
      return payment!;
    });
    if (credited) await this.options.changed(organizationId);
    return payment;
  }

  async payments(organizationId: string, page: PageRequest): Promise<Page<PaymentRow>> {
    const order = page.order === 'asc' ? asc : desc;
    const cursor = afterCursor(payments, payments.createdAt, payments.id, page);
    const rows = await this.db
      .select()
      .from(payments)
      .where(and(eq(payments.organizationId, organizationId), cursor))
      .orderBy(order(payments.createdAt), order(payments.id))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  // ---- invoices ---------------------------------------------------------------------------------

  /** The month containing `at`, in the billing time zone. */
  monthOf(at: number) {
    return periodBounds('month', at, this.options.timeZone);
  }

  /** What the invoice for a month says, computed now from the roll-ups and credit draws. */
  async draft(organizationId: string, monthStart: number): Promise<InvoiceView> {
    const { start, end } = this.monthOf(monthStart);
    const usage = await sumUsageByProjectAndModel(this.db, organizationId, start, end);
    const [drawn] = rowsOf<{ total: string | number }>(
      await this.db.execute(sql`
        select coalesce(sum(amount_nano_usd), 0) as total from credit_draws
        where organization_id = ${organizationId} and month_start = ${new Date(start).toISOString()}::timestamptz`),
    );
    const usageNano = usage.reduce(
      (sum, row) => sum + row.costInput + row.costCached + row.costOutput + row.costUnits,
      0,
    );
    const amounts = invoiceAmounts(invoiceLines(usage), Number(drawn?.total ?? 0), usageNano);
    return {
      invoice: null,
      lines: amounts.lines.map((line, position) => ({ position, ...line })),
      amounts,
      periodStart: start,
      periodEnd: end,
    };
  }

  /**
   * Issues the invoice of the month that begins at or contains `monthStart`, once the month is over.
   * Idempotent: the live invoice of that month is returned if there is one (on any instance). A
   * month without usage gets no invoice (undefined).
   */
  async issue(organizationId: string, monthStart: number, actor: Actor): Promise<InvoiceView | undefined> {
    const { start, end } = this.monthOf(monthStart);
    if (end > this.#now())
      throw badRequest('The month is not over yet: see the upcoming invoice instead.', 'month');
    const existing = await this.#liveInvoice(organizationId, start);
    if (existing) return this.invoice(organizationId, existing.id);
    const draft = await this.draft(organizationId, start);
    if (draft.lines.length === 0) return undefined;
    const account = await this.account(organizationId);
    const [org] = await this.db.select().from(organizations).where(eq(organizations.id, organizationId));
    const issuedAt = new Date(this.#now());
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const id = await this.db.transaction(async (tx) => {
          const [count] = rowsOf<{ n: string | number }>(
            await tx.execute(
              sql`select count(*) as n from invoices where period_start = ${new Date(start).toISOString()}::timestamptz`,
            ),
          );
          const number = invoiceNumber(
            new Date(start),
            this.options.timeZone,
            Number(count?.n ?? 0) + 1 + attempt,
          );
          const [row] = await tx
            .insert(invoices)
            .values({
              id: newId('invoice'),
              organizationId,
              number,
              periodStart: new Date(start),
              periodEnd: new Date(end),
              status: draft.amounts.totalCents === 0 ? 'paid' : 'open',
              subtotalCents: draft.amounts.subtotalCents,
              creditsCents: draft.amounts.creditsCents,
              totalCents: draft.amounts.totalCents,
              billTo: {
                organization_id: organizationId,
                organization_name: org?.name ?? null,
                name: account.billingName,
                email: account.billingEmail,
                address: account.billingAddress,
                tax_id: account.taxId,
              },
              issuedAt,
              dueAt: new Date(issuedAt.getTime() + this.options.invoiceDueDays * 86_400_000),
              paidAt: draft.amounts.totalCents === 0 ? issuedAt : null,
            })
            .returning();
          await tx
            .insert(invoiceLinesTable)
            .values(draft.lines.map((line) => ({ ...line, invoiceId: row!.id })));
          await recordAudit(tx, {
            organizationId,
            type: 'invoice.issued',
            actor,
            resourceId: row!.id,
            details: {
              id: row!.id,
              data: {
                number: row!.number,
                status: row!.status,
                period_start: Math.floor(start / 1000),
                period_end: Math.floor(end / 1000),
                subtotal_cents: row!.subtotalCents,
                credits_cents: row!.creditsCents,
                total_cents: row!.totalCents,
              },
            },
          });
          return row!.id;
        });
        return this.invoice(organizationId, id);
      } catch (error) {
        // Another instance issued it meanwhile (the live-invoice index), or took the number.
        const live = await this.#liveInvoice(organizationId, start);
        if (live) return this.invoice(organizationId, live.id);
        if (!isUniqueViolation(error) || attempt === 4) throw error;
      }
    }
    return undefined;
  }

  async #liveInvoice(organizationId: string, periodStart: number): Promise<InvoiceRow | undefined> {
    const [row] = await this.db
      .select()
      .from(invoices)
      .where(
        and(
          eq(invoices.organizationId, organizationId),
          eq(invoices.periodStart, new Date(periodStart)),
          sql`${invoices.status} <> 'void'`,
        ),
      );
    return row;
  }

  async invoice(organizationId: string, id: string): Promise<InvoiceView> {
    const [row] = await this.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.organizationId, organizationId), eq(invoices.id, id)));
    if (!row) throw notFound('invoice', id);
    const lines = await this.db
      .select()
      .from(invoiceLinesTable)
      .where(eq(invoiceLinesTable.invoiceId, id))
      .orderBy(asc(invoiceLinesTable.position));
    return {
      invoice: row,
      lines: lines.map(({ invoiceId: _, ...line }) => line),
      amounts: {
        lines: lines.map(({ invoiceId: _, position: __, ...line }) => line),
        subtotalCents: row.subtotalCents,
        roundingCents: roundingOf(row),
        creditsCents: row.creditsCents,
        totalCents: row.totalCents,
      },
      periodStart: row.periodStart.getTime(),
      periodEnd: row.periodEnd.getTime(),
    };
  }

  async invoicesOf(organizationId: string, page: PageRequest): Promise<Page<InvoiceRow>> {
    const order = page.order === 'asc' ? asc : desc;
    const cursor = page.after
      ? sql`(${invoices.issuedAt}, ${invoices.id}) ${sql.raw(page.order === 'asc' ? '>' : '<')} (select issued_at, id from invoices where id = ${page.after})`
      : undefined;
    const rows = await this.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.organizationId, organizationId), cursor))
      .orderBy(order(invoices.issuedAt), order(invoices.id))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  /** Voids an unpaid invoice (it can then be issued again, e.g. after late usage arrived). */
  async voidInvoice(organizationId: string, id: string, actor: Actor): Promise<InvoiceView> {
    const voided = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(invoices)
        .set({ status: 'void', voidedAt: new Date(this.#now()) })
        .where(
          and(eq(invoices.organizationId, organizationId), eq(invoices.id, id), eq(invoices.status, 'open')),
        )
        .returning();
      if (!row) return false;
      await recordAudit(tx, {
        organizationId,
        type: 'invoice.voided',
        actor,
        resourceId: id,
        details: { id },
      });
      return true;
    });
    if (!voided) {
      const existing = await this.invoice(organizationId, id); // 404 if it does not exist
      throw badRequest(
        `Invoice ${existing.invoice!.number} is ${existing.invoice!.status}: only an open invoice can be voided.`,
        'invoice_id',
      );
    }
    return this.invoice(organizationId, id);
  }

  /**
   * Issues every invoice due: for each organization with usage in a month that ended at least
   * `graceMs` ago (so late records are in) and has no invoice, within the last `months`.
   */
  async runCycle(graceMs = 3_600_000, months = 12): Promise<number> {
    const now = this.#now();
    let issued = 0;
    let { start } = this.monthOf(now);
    for (let i = 0; i < months; i++) {
      const previous = this.monthOf(start - 1);
      if (previous.end + graceMs <= now) {
        const rows = rowsOf<{ organization_id: string }>(
          // Hours with usage are compacted (an hour row) or still marked: together, every one.
          await this.db.execute(sql`
            select distinct r.organization_id from (
              select organization_id, bucket_start from usage_rollups where width = '1h'
              union all
              select organization_id, hour from rollup_dirty) as r (organization_id, bucket_start)
            where r.bucket_start >= ${new Date(previous.start - 3_600_000).toISOString()}::timestamptz
              and r.bucket_start < ${new Date(previous.end).toISOString()}::timestamptz
              and not exists (
                select 1 from invoices i
                where i.organization_id = r.organization_id
                  and i.period_start = ${new Date(previous.start).toISOString()}::timestamptz
                  and i.status <> 'void')`),
        );
        for (const { organization_id } of rows) {
          if (await this.issue(organization_id, previous.start, BILLING)) issued++;
        }
      }
      start = previous.start;
    }
    return issued;
  }
}

/** `credit_grant.created`, in the grant's organization. */
async function auditGrantCreated(tx: DbOrTx, grant: CreditGrantRow, actor: Actor): Promise<void> {
  await recordAudit(tx, {
    organizationId: grant.organizationId,
    type: 'credit_grant.created',
    actor,
    resourceId: grant.id,
    details: {
      id: grant.id,
      data: {
        kind: grant.kind,
        amount_cents: Math.round(grant.amountNanoUsd / NANO_USD_PER_CENT),
        expires_at: grant.expiresAt ? Math.floor(grant.expiresAt.getTime() / 1000) : null,
        note: grant.note,
        payment_id: grant.paymentId,
      },
    },
  });
}

function isUniqueViolation(error: unknown): boolean {
  return sqlStateOf(error) === '23505';
}

/** What succeeded payments have paid towards an invoice, in cents. */
async function paidTowards(tx: DbOrTx, invoiceId: string): Promise<number> {
  const [paid] = rowsOf<{ total: string | number }>(
    await tx.execute(sql`
      select coalesce(sum(amount_cents), 0) as total from payments
      where invoice_id = ${invoiceId} and status = 'succeeded'`),
  );
  return Number(paid?.total ?? 0);
}
