/**
 * Monthly invoices through the Admin API: to the cent from random usage in non-UTC billing time
 * zones (a property test), issued once, voided and issued again, refused for a month not over or
 * without usage; bill-to snapshots; payments that pay them; their HTML, CSV and PDF renderings;
 * and the billing cycle that issues them.
 */
import { inflateSync } from 'node:zlib';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageKind } from '../../src/billing/usage-event.ts';
import { periodBounds } from '../../src/core/periods.ts';
import { NANO_USD_PER_CENT } from '../../src/core/pricing.ts';
import { insertProject } from '../../src/store/repositories/projects.ts';
import { rowsOf } from '../../src/store/rows.ts';
import {
  adminRequest,
  createSecondOrganization,
  expectApiError,
  expectOk,
  type SecondOrganization,
} from '../helpers/admin-api.ts';
import { backends, TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';
import {
  type GrantObject,
  grantCredit,
  grantRows,
  type InvoiceObject,
  type ListObject,
  type PaymentObject,
  roundHalfUpCents,
} from './billing-helpers.ts';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const CENT = NANO_USD_PER_CENT;

const monthText = (year: number, month: number) => `${year}-${String(month).padStart(2, '0')}`;
const boundsOf = (year: number, month: number, tz: string) =>
  periodBounds('month', Date.UTC(year, month - 1, 15), tz);

const ITEM_OF_UNITS: Partial<Record<UsageKind, string>> = {
  images: 'images',
  audio_speeches: 'characters',
  audio_transcriptions: 'seconds',
};

describe.each(backends)('invoices (%s)', (backend) => {
  describe.each(['America/New_York', 'Asia/Kolkata'])('to the cent, billing time zone %s', (tz) => {
    let gw: TestGateway;
    let clock = Date.UTC(2030, 0, 1);

    beforeAll(async () => {
      gw = await createTestGateway({
        backend,
        now: () => clock,
        config: { billingTimeZone: tz, invoiceDueDays: 10 },
      });
    });
    afterAll(() => gw?.close());

    it('property: lines, subtotal, credits and total from random usage; usage outside the month excluded', async () => {
      const nano = fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 40 * CENT }) },
        { weight: 1, arbitrary: fc.constantFrom(0, 5_000_000, 4_999_999, 15_000_000) },
      );
      const usageArb = fc.record({
        /** Where in the month, as a fraction of it. */
        position: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        project: fc.integer({ min: 0, max: 2 }),
        model: fc.constantFrom('gpt-4o', 'gpt-4o-mini', 'llama-3'),
        kind: fc.constantFrom<UsageKind>('completions', 'embeddings', 'images', 'audio_speeches', 'other'),
        inputTokens: fc.integer({ min: 0, max: 5000 }),
        cachedTokens: fc.integer({ min: 0, max: 5000 }),
        outputTokens: fc.integer({ min: 0, max: 5000 }),
        units: fc.integer({ min: 0, max: 20 }),
        costInput: nano,
        costCached: nano,
        costOutput: nano,
        costUnits: nano,
      });
      const grantArb = fc.record({
        cents: fc.integer({ min: 1, max: 300 }),
        /** Days into the month it expires, or never. */
        expiresDay: fc.option(fc.integer({ min: 1, max: 27 }), { nil: undefined }),
      });

      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 12 }),
          fc.array(usageArb, { minLength: 1, maxLength: 25 }),
          fc.array(grantArb, { maxLength: 2 }),
          // Never free, so including one by mistake always shows.
          fc.array(fc.integer({ min: 1, max: 40 * CENT }), { minLength: 4, maxLength: 4 }),
          async (month, usage, grants, edgeCosts) => {
            const year = 2030;
            const { start, end } = boundsOf(year, month, tz);
            clock = start - DAY;
            const other: SecondOrganization = await createSecondOrganization(gw, 'Invoiced customer');
            const org = other.organization.id;
            const projects = [other.project.id, 'proj_elsewhere', null];

            // Credit granted before the month, drawn first by whatever expires first.
            const model: { createdAt: number; expiresAt: number | null; remaining: number }[] = [];
            for (const [i, g] of grants.entries()) {
              clock = start - DAY + i * 1000;
              const expiresAt = g.expiresDay === undefined ? null : start + g.expiresDay * DAY;
              await grantCredit(gw, {
                organization_id: org,
                amount_cents: g.cents,
                ...(expiresAt ? { expires_at: expiresAt / 1000 } : {}),
              });
              model.push({ createdAt: clock, expiresAt, remaining: g.cents * CENT });
            }

            const event = (at: number, u: (typeof usage)[number]) => {
              const cached = Math.min(u.cachedTokens, u.inputTokens);
              return usageEvent({
                organizationId: org,
                apiKeyId: 'key_invoiced',
                projectId: projects[u.project]!,
                model: u.model,
                kind: u.kind,
                createdAt: new Date(at),
                inputTokens: u.inputTokens,
                cachedTokens: cached,
                outputTokens: u.outputTokens,
                units: u.units,
                costNanoUsd: u.costInput + u.costCached + u.costOutput + u.costUnits,
                costInputNanoUsd: u.costInput,
                costCachedNanoUsd: u.costCached,
                costOutputNanoUsd: u.costOutput,
                costUnitsNanoUsd: u.costUnits,
              });
            };
            const inside = usage.map((u) => event(start + Math.floor(u.position * (end - start)), u));
            // The first and last instants of the month are in it; a minute before and after is not.
            const edge = (i: number) => ({
              ...usage[0]!,
              costInput: edgeCosts[i]!,
              inputTokens: 7,
              cachedTokens: 0,
            });
            inside.push(event(start, edge(0)), event(end - 1, edge(1)));
            const outside = [
              event(start - MINUTE, edge(2)),
              event(end, edge(3)),
              event(end + 59_000, edge(3)),
            ];
            const all = [...inside, ...outside];
            expect(await storeUsage(gw.services.store.db, all, tz)).toBe(all.length);

            // What the invoice must say, from the events themselves.
            const expected = new Map<string, { quantity: number; unit: string; nano: number }>();
            const add = (
              e: (typeof inside)[number],
              item: string,
              unit: string,
              quantity: number,
              cost: number,
            ) => {
              if (quantity === 0 && cost === 0) return;
              const key = `${e.projectId ?? ''}|${e.model}|${item}`;
              const sum = expected.get(key) ?? { quantity: 0, unit, nano: 0 };
              sum.quantity += quantity;
              sum.nano += cost;
              expected.set(key, sum);
            };
            for (const e of inside) {
              add(e, 'input', 'tokens', e.inputTokens - e.cachedTokens, e.costInputNanoUsd);
              add(e, 'cached input', 'tokens', e.cachedTokens, e.costCachedNanoUsd);
              add(e, 'output', 'tokens', e.outputTokens, e.costOutputNanoUsd);
              const unit = ITEM_OF_UNITS[e.kind] ?? 'units';
              add(e, unit, unit, e.units, e.costUnitsNanoUsd);
            }
            // Credit drawn in this month: minute by minute in time order, from the grants in force.
            const minutes = new Map<number, number>();
            for (const e of all) {
              const minute = Math.floor(e.createdAt.getTime() / MINUTE) * MINUTE;
              minutes.set(minute, (minutes.get(minute) ?? 0) + e.costNanoUsd);
            }
            const order = [...model].sort(
              (a, b) =>
                (a.expiresAt ?? Number.POSITIVE_INFINITY) - (b.expiresAt ?? Number.POSITIVE_INFINITY) ||
                a.createdAt - b.createdAt,
            );
            let drawnInMonth = 0;
            for (const [minute, cost] of [...minutes].sort((a, b) => a[0] - b[0])) {
              let owed = cost;
              for (const g of order) {
                if (g.createdAt >= minute + MINUTE || (g.expiresAt !== null && g.expiresAt <= minute))
                  continue;
                const take = Math.min(owed, g.remaining);
                g.remaining -= take;
                owed -= take;
                if (minute >= start && minute < end) drawnInMonth += take;
              }
            }

            clock = end + 2 * HOUR;
            const issued = expectOk(
              await adminRequest<InvoiceObject>(gw, 'POST', '/invoices', {
                body: { organization_id: org, month: monthText(year, month) },
              }),
            );
            expect(issued.lines).toHaveLength(expected.size);
            for (const line of issued.lines) {
              const key = `${line.project_id ?? ''}|${line.model}|${line.item}`;
              const sum = expected.get(key);
              expect(sum, key).toBeDefined();
              expect(line.quantity, key).toBe(sum!.quantity);
              expect(line.quantity_unit, key).toBe(sum!.unit);
              expect(line.amount_cents, key).toBe(roundHalfUpCents(sum!.nano));
            }
            const subtotal = issued.lines.reduce((s, l) => s + l.amount_cents, 0);
            // Due: the usage the credit did not cover, rounded once. The lines' own rounding is a
            // row of its own, and credits are the credit drawn, so that the rows add up.
            const usageNano = [...expected.values()].reduce((s, e) => s + e.nano, 0);
            const due = roundHalfUpCents(usageNano - drawnInMonth);
            if (drawnInMonth === usageNano) expect(due).toBe(0);
            const rounding = roundHalfUpCents(usageNano) - subtotal;
            const credits = subtotal + rounding - due;
            if (drawnInMonth === 0) expect(credits).toBe(0);
            expect(Math.abs(credits - drawnInMonth / CENT)).toBeLessThanOrEqual(1);
            expect(issued).toMatchObject({
              object: 'organization.invoice',
              status: due === 0 ? 'paid' : 'open',
              period_start: start / 1000,
              period_end: end / 1000,
              subtotal_cents: subtotal,
              rounding_cents: rounding,
              credits_cents: credits,
              total_cents: due,
              issued_at: clock / 1000,
              due_at: (clock + 10 * DAY) / 1000,
              paid_at: due === 0 ? clock / 1000 : null,
              voided_at: null,
            });
            expect(issued.number).toMatch(new RegExp(`^KP-${year}${String(month).padStart(2, '0')}-\\d{4}$`));
            // Stored as issued; issuing again answers the same invoice.
            expect(
              expectOk(
                await adminRequest<InvoiceObject>(gw, 'GET', `/invoices/${issued.id}?organization_id=${org}`),
              ),
            ).toEqual(issued);
            clock += HOUR;
            expect(
              expectOk(
                await adminRequest<InvoiceObject>(gw, 'POST', '/invoices', {
                  body: { organization_id: org, month: monthText(year, month) },
                }),
              ),
            ).toEqual(issued);
          },
        ),
        { numRuns: 12 },
      );
    });
  });

  describe('issuing, voiding, paying (America/New_York)', () => {
    const tz = 'America/New_York';
    let gw: TestGateway;
    let clock: number;
    // March 2031: the DST change is inside the month.
    const march = boundsOf(2031, 3, tz);

    beforeAll(async () => {
      clock = march.start;
      gw = await createTestGateway({
        backend,
        now: () => clock,
        config: { billingTimeZone: tz, invoiceDueDays: 14, invoiceIssuer: 'Keyport Test Hosting' },
      });
    });
    afterAll(() => gw?.close());

    /** A fresh organization with `cents` of usage in March (one event per amount). */
    async function customer(amounts: number[] = [1234], name = 'Customer') {
      const other = await createSecondOrganization(gw, name);
      await storeUsage(
        gw.services.store.db,
        amounts.map((cents, i) =>
          usageEvent({
            organizationId: other.organization.id,
            projectId: other.project.id,
            apiKeyId: 'key_x',
            createdAt: new Date(march.start + (i + 1) * DAY),
            inputTokens: 1000,
            costNanoUsd: cents * CENT,
          }),
        ),
        tz,
      );
      return other;
    }
    const issue = (organizationId: string, month = '2031-03') =>
      adminRequest<InvoiceObject>(gw, 'POST', '/invoices', {
        body: { organization_id: organizationId, month },
      });
    const pay = (organizationId: string, body: Record<string, unknown>) =>
      adminRequest<PaymentObject>(gw, 'POST', '/billing/payments', {
        body: { organization_id: organizationId, ...body },
      });

    it('refuses a month that is not over, to the millisecond', async () => {
      const { organization } = await customer();
      clock = march.end - 1;
      const error = expectApiError(await issue(organization.id), 400, 'invalid_request', 'month');
      expect(error.message).toMatch(/not over/);
      clock = march.end;
      expect(expectOk(await issue(organization.id)).status).toBe('open');
    });

    it('a month without usage: 404; a malformed month: 400', async () => {
      const { organization } = await customer();
      clock = march.end + DAY;
      expectApiError(await issue(organization.id, '2031-02'), 404, 'not_found');
      for (const month of ['2031-13', '2031-3', 'March', '1999-12']) {
        expectApiError(await issue(organization.id, month), 400, 'invalid_request', 'month');
      }
      expectApiError(
        await adminRequest(gw, 'POST', '/invoices', { body: { organization_id: organization.id } }),
        400,
        'invalid_request',
      );
      expect(
        expectOk(
          await adminRequest<ListObject<InvoiceObject>>(
            gw,
            'GET',
            `/invoices?organization_id=${organization.id}`,
          ),
        ).data,
      ).toEqual([]);
    });

    it('issues once; void, late usage, issue again: a new invoice with a new number', async () => {
      const { organization, project } = await customer([1000, 234]);
      const org = organization.id;
      clock = march.end + HOUR;
      const first = expectOk(await issue(org));
      expect(first).toMatchObject({
        status: 'open',
        subtotal_cents: 1234,
        credits_cents: 0,
        total_cents: 1234,
      });
      clock += MINUTE;
      expect(expectOk(await issue(org))).toEqual(first);
      expect(
        expectOk(
          await adminRequest<ListObject<InvoiceObject>>(gw, 'GET', `/invoices?organization_id=${org}`),
        ).data.map((i) => i.id),
      ).toEqual([first.id]);

      // Late usage does not change an issued invoice...
      await storeUsage(
        gw.services.store.db,
        [
          usageEvent({
            organizationId: org,
            projectId: project.id,
            apiKeyId: 'key_x',
            createdAt: new Date(march.end - MINUTE),
            inputTokens: 10,
            costNanoUsd: 66 * CENT,
          }),
        ],
        tz,
      );
      expect(expectOk(await issue(org)).total_cents).toBe(1234);
      // ...voiding it and issuing again does.
      clock += MINUTE;
      const voided = expectOk(
        await adminRequest<InvoiceObject>(gw, 'POST', `/invoices/${first.id}/void`, {
          body: { organization_id: org },
        }),
      );
      expect(voided).toMatchObject({
        id: first.id,
        number: first.number,
        status: 'void',
        voided_at: clock / 1000,
      });
      clock += MINUTE;
      const second = expectOk(await issue(org));
      expect(second.id).not.toBe(first.id);
      expect(second.number).not.toBe(first.number);
      expect(second.number).toMatch(/^KP-203103-\d{4}$/);
      expect(second).toMatchObject({ status: 'open', subtotal_cents: 1300, total_cents: 1300 });
      const list = expectOk(
        await adminRequest<ListObject<InvoiceObject>>(gw, 'GET', `/invoices?organization_id=${org}`),
      );
      expect(list.data.map((i) => [i.id, i.status])).toEqual([
        [second.id, 'open'],
        [first.id, 'void'],
      ]);
      // Only an open invoice can be voided.
      expectApiError(
        await adminRequest(gw, 'POST', `/invoices/${first.id}/void`, { body: { organization_id: org } }),
        400,
        'invalid_request',
        'invoice_id',
      );
      expectOk(await pay(org, { amount_cents: 1300, invoice_id: second.id }));
      expectApiError(
        await adminRequest(gw, 'POST', `/invoices/${second.id}/void`, { body: { organization_id: org } }),
        400,
        'invalid_request',
        'invoice_id',
      );
      expectApiError(
        await adminRequest(gw, 'POST', '/invoices/inv_doesnotexist/void', { body: { organization_id: org } }),
        404,
        'not_found',
      );
    });

    it('numbers invoices of one month in sequence across organizations', async () => {
      clock = march.end + DAY;
      const a = expectOk(await issue((await customer()).organization.id));
      const b = expectOk(await issue((await customer()).organization.id));
      const seq = (n: string | null) => Number(n!.slice(-4));
      expect(seq(b.number)).toBe(seq(a.number) + 1);
    });

    it('issued concurrently: one invoice per organization and month, numbers never shared', async () => {
      const customers = await Promise.all([customer(), customer(), customer()]);
      clock = march.end + DAY;
      const views = await Promise.all(
        customers.flatMap((c) =>
          [1, 2, 3].map(() => gw.services.billing.issue(c.organization.id, march.start, TEST_ACTOR)),
        ),
      );
      for (const [i, c] of customers.entries()) {
        const mine = views.slice(i * 3, i * 3 + 3);
        expect(new Set(mine.map((v) => v!.invoice!.id)).size).toBe(1);
        const listed = await gw.services.billing.invoicesOf(c.organization.id, { limit: 10, order: 'asc' });
        expect(listed.items.map((row) => row.id)).toEqual([mine[0]!.invoice!.id]);
      }
      const numbers = customers.map((_, i) => views[i * 3]!.invoice!.number);
      expect(new Set(numbers).size).toBe(3);
    });

    it('bills to the details at the time of issue', async () => {
      const other = await customer();
      const org = other.organization.id;
      // The customer's own admin key may update its own details.
      expectOk(
        await adminRequest(gw, 'POST', '/billing', {
          key: other.adminKey.secret,
          body: {
            billing_name: 'Acme Inc.',
            billing_email: 'ap@acme.test',
            billing_address: ['1 Main St', 'Springfield'],
            tax_id: 'US-123',
          },
        }),
      );
      expectApiError(
        await adminRequest(gw, 'POST', '/billing', {
          key: other.adminKey.secret,
          body: { billing_email: 'not an email' },
        }),
        400,
        'invalid_request',
        'billing_email',
      );
      clock = march.end + DAY;
      const invoice = expectOk(await issue(org));
      const billTo = {
        organization_id: org,
        organization_name: 'Customer',
        name: 'Acme Inc.',
        email: 'ap@acme.test',
        address: ['1 Main St', 'Springfield'],
        tax_id: 'US-123',
      };
      expect(invoice.bill_to).toEqual(billTo);
      expectOk(
        await adminRequest(gw, 'POST', '/billing', {
          key: other.adminKey.secret,
          body: { billing_name: 'Renamed' },
        }),
      );
      const again = expectOk(
        await adminRequest<InvoiceObject>(gw, 'GET', `/invoices/${invoice.id}`, {
          key: other.adminKey.secret,
        }),
      );
      expect(again.bill_to).toEqual(billTo);
      const html = (
        await adminRequest(gw, 'GET', `/invoices/${invoice.id}.html`, { key: other.adminKey.secret })
      ).text;
      expect(html).toContain('Acme Inc.');
      expect(html).not.toContain('Renamed');
      expect(html).toContain('Keyport Test Hosting');
    });

    it('credits that cover the whole invoice: issued paid, total 0', async () => {
      clock = march.start - DAY;
      const other = await createSecondOrganization(gw, 'Covered');
      await grantCredit(gw, { organization_id: other.organization.id, amount_cents: 5000 });
      await storeUsage(
        gw.services.store.db,
        [
          usageEvent({
            organizationId: other.organization.id,
            apiKeyId: 'key_x',
            createdAt: new Date(march.start + DAY),
            inputTokens: 10,
            costNanoUsd: 1234 * CENT + 4_999_999,
          }),
        ],
        tz,
      );
      clock = march.end + DAY;
      const invoice = expectOk(await issue(other.organization.id));
      expect(invoice).toMatchObject({
        status: 'paid',
        subtotal_cents: 1234,
        credits_cents: 1234,
        total_cents: 0,
        paid_at: clock / 1000,
      });
    });

    it('payments: partial leaves it open, covering it marks it paid; history newest first, paginated', async () => {
      const other = await customer([2500]);
      const org = other.organization.id;
      clock = march.end + DAY;
      const invoice = expectOk(await issue(org));
      expect(invoice.total_cents).toBe(2500);
      const grantsBefore = await grantRows(gw.services.store.db, org);

      clock += HOUR;
      const p1 = expectOk(
        await pay(org, { amount_cents: 1000, invoice_id: invoice.id, method: 'wire', reference: 'W-1' }),
      );
      expect(p1).toMatchObject({
        object: 'organization.payment',
        invoice_id: invoice.id,
        amount_cents: 1000,
        provider: 'manual',
        method: 'wire',
        reference: 'W-1',
        status: 'succeeded',
        created_at: clock / 1000,
      });
      const get = async () =>
        expectOk(
          await adminRequest<InvoiceObject>(gw, 'GET', `/invoices/${invoice.id}?organization_id=${org}`),
        );
      expect(await get()).toMatchObject({ status: 'open', paid_at: null });
      clock += HOUR;
      const p2 = expectOk(await pay(org, { amount_cents: 1499, invoice_id: invoice.id }));
      expect(await get()).toMatchObject({ status: 'open', paid_at: null });
      clock += HOUR;
      const p3 = expectOk(await pay(org, { amount_cents: 1, invoice_id: invoice.id }));
      const paidAt = clock;
      expect(await get()).toMatchObject({ status: 'paid', paid_at: paidAt / 1000, total_cents: 2500 });
      // Paying what an invoice owes grants no credit.
      expect(await grantRows(gw.services.store.db, org)).toEqual(grantsBefore);
      clock += HOUR;
      // Paying more is recorded; the invoice stays paid when it was paid, and what it did not owe
      // becomes credit, so that no money is recorded against nothing.
      const p4 = expectOk(await pay(org, { amount_cents: 5, invoice_id: invoice.id, reference: 'W-9' }));
      expect(await get()).toMatchObject({ status: 'paid', paid_at: paidAt / 1000 });
      expect(await grantRows(gw.services.store.db, org)).toHaveLength(grantsBefore.length + 1);
      const credited = rowsOf<{ kind: string; amount_nano_usd: string | number; note: string }>(
        await gw.services.store.db.execute(
          sql`select kind, amount_nano_usd, note from credit_grants where payment_id = ${p4.id}`,
        ),
      );
      expect(credited.map((g) => ({ ...g, amount_nano_usd: Number(g.amount_nano_usd) }))).toEqual([
        { kind: 'top_up', amount_nano_usd: 5 * CENT, note: `Overpayment of invoice ${invoice.number} (W-9)` },
      ]);

      const history = expectOk(
        await adminRequest<ListObject<PaymentObject>>(gw, 'GET', `/billing/payments?organization_id=${org}`),
      );
      expect(history.data.map((p) => p.id)).toEqual([p4.id, p3.id, p2.id, p1.id]);
      expect(history).toMatchObject({ first_id: p4.id, last_id: p1.id, has_more: false });
      const page1 = expectOk(
        await adminRequest<ListObject<PaymentObject>>(
          gw,
          'GET',
          `/billing/payments?organization_id=${org}&limit=3`,
        ),
      );
      expect(page1.data.map((p) => p.id)).toEqual([p4.id, p3.id, p2.id]);
      expect(page1.has_more).toBe(true);
      const page2 = expectOk(
        await adminRequest<ListObject<PaymentObject>>(
          gw,
          'GET',
          `/billing/payments?organization_id=${org}&limit=3&after=${page1.last_id}`,
        ),
      );
      expect(page2.data.map((p) => p.id)).toEqual([p1.id]);
      expect(page2.has_more).toBe(false);
      const ascending = expectOk(
        await adminRequest<ListObject<PaymentObject>>(
          gw,
          'GET',
          `/billing/payments?organization_id=${org}&order=asc&limit=2`,
        ),
      );
      expect(ascending.data.map((p) => p.id)).toEqual([p1.id, p2.id]);
      // The customer reads its own history.
      const own = expectOk(
        await adminRequest<ListObject<PaymentObject>>(gw, 'GET', '/billing/payments', {
          key: other.adminKey.secret,
        }),
      );
      expect(own.data.map((p) => p.id)).toEqual([p4.id, p3.id, p2.id, p1.id]);
    });

    it('payments: refused for a void invoice, another organization’s invoice, or no amount', async () => {
      const a = await customer([100]);
      const b = await customer([100]);
      clock = march.end + DAY;
      const invoiceA = expectOk(await issue(a.organization.id));
      const invoiceB = expectOk(await issue(b.organization.id));
      expectApiError(
        await pay(a.organization.id, { amount_cents: 100, invoice_id: invoiceB.id }),
        404,
        'not_found',
      );
      expectApiError(
        await pay(a.organization.id, { amount_cents: 0, invoice_id: invoiceA.id }),
        400,
        'invalid_request',
      );
      expectApiError(await pay(a.organization.id, { amount_cents: 1.5 }), 400, 'invalid_request');
      expectOk(
        await adminRequest(gw, 'POST', `/invoices/${invoiceA.id}/void`, {
          body: { organization_id: a.organization.id },
        }),
      );
      const error = expectApiError(
        await pay(a.organization.id, { amount_cents: 100, invoice_id: invoiceA.id }),
        400,
        'invalid_request',
        'invoice_id',
      );
      expect(error.message).toContain(invoiceA.number!);
      const payments = expectOk(
        await adminRequest<ListObject<PaymentObject>>(
          gw,
          'GET',
          `/billing/payments?organization_id=${a.organization.id}`,
        ),
      );
      expect(payments.data).toEqual([]);
      // Invoice B is untouched.
      expect(
        expectOk(
          await adminRequest<InvoiceObject>(
            gw,
            'GET',
            `/invoices/${invoiceB.id}?organization_id=${b.organization.id}`,
          ),
        ).status,
      ).toBe('open');
    });

    it('a top-up can expire: the credit it grants does', async () => {
      const other = await customer();
      clock = march.end + DAY;
      const expiresAt = clock + 30 * DAY;
      const payment = expectOk(
        await pay(other.organization.id, { amount_cents: 700, credit_expires_at: expiresAt / 1000 }),
      );
      const grants = expectOk(
        await adminRequest<ListObject<GrantObject>>(
          gw,
          'GET',
          `/billing/credit_grants?organization_id=${other.organization.id}`,
        ),
      );
      expect(grants.data).toEqual([
        expect.objectContaining({
          kind: 'top_up',
          payment_id: payment.id,
          amount_cents: 700,
          expires_at: expiresAt / 1000,
        }),
      ]);
      expect((await gw.services.billing.balance(other.organization.id)).availableNanoUsd).toBe(700 * CENT);
      clock = expiresAt;
      expect((await gw.services.billing.balance(other.organization.id)).availableNanoUsd).toBe(0);
    });

    it('renders HTML (escaped), CSV (adds up) and PDF; another organization’s invoice is not found', async () => {
      const other = await createSecondOrganization(gw, 'Rendered <b>org</b>');
      const org = other.organization.id;
      const evil = await insertProject(gw.services.store.db, {
        organizationId: org,
        name: '<script>alert(1)</script>',
      });
      await storeUsage(
        gw.services.store.db,
        [
          usageEvent({
            organizationId: org,
            projectId: evil.id,
            apiKeyId: 'key_x',
            model: 'gpt-4o',
            createdAt: new Date(march.start + DAY),
            inputTokens: 1500,
            outputTokens: 300,
            costInputNanoUsd: 375 * CENT + 5_000_000,
            costOutputNanoUsd: 30 * CENT + 4_999_999,
            costNanoUsd: 405 * CENT + 9_999_999,
          }),
          usageEvent({
            organizationId: org,
            projectId: other.project.id,
            apiKeyId: 'key_x',
            model: 'gpt-4o-mini',
            createdAt: new Date(march.start + 2 * DAY),
            inputTokens: 100,
            costNanoUsd: 77 * CENT,
          }),
        ],
        tz,
      );
      clock = march.end + DAY;
      const invoice = expectOk(await issue(org));
      const amounts = new Map(
        invoice.lines.map((l) => [`${l.project_id}/${l.model}/${l.item}`, l.amount_cents]),
      );
      expect(amounts).toEqual(
        new Map([
          [`${evil.id}/gpt-4o/input`, 376], // 375.5 ¢
          [`${evil.id}/gpt-4o/output`, 30], // 30.4999999 ¢
          [`${other.project.id}/gpt-4o-mini/input`, 77],
        ]),
      );
      const get = (suffix: string, key?: string) =>
        adminRequest(gw, 'GET', `/invoices/${invoice.id}${suffix}`, key ? { key } : {});

      const html = await get('.html', other.adminKey.secret);
      expect(html.status).toBe(200);
      expect(html.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(html.text).not.toContain('<script>');
      expect(html.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
      expect(html.text).toContain('Rendered &lt;b&gt;org&lt;/b&gt;');
      expect(html.text).toContain(`Invoice ${invoice.number}`);
      expect(html.text).toContain('$4.83'); // the subtotal

      const csv = await get(`.csv?organization_id=${org}`);
      expect(csv.status).toBe(200);
      expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8');
      expect(csv.headers['content-disposition']).toBe(`attachment; filename="${invoice.number}.csv"`);
      const rows = csv.text.trimEnd().split('\n');
      expect(rows).toHaveLength(1 + invoice.lines.length + 3);
      const cents = (row: string) => Math.round(Number(row.split(',').at(-1)) * 100);
      const lineCents = rows.slice(1, 1 + invoice.lines.length).map(cents);
      expect(lineCents).toEqual(invoice.lines.map((l) => l.amount_cents));
      const [subtotal, credits, due] = rows.slice(1 + invoice.lines.length).map(cents);
      expect(subtotal).toBe(lineCents.reduce((s, c) => s + c, 0));
      expect(subtotal).toBe(invoice.subtotal_cents);
      expect(credits! + invoice.credits_cents).toBe(0);
      expect(due).toBe(invoice.total_cents);

      const pdf = await gw.app.inject({
        method: 'GET',
        url: `/v1/organization/invoices/${invoice.id}.pdf`,
        headers: { authorization: `Bearer ${other.adminKey.secret}` },
      });
      expect(pdf.statusCode).toBe(200);
      expect(pdf.headers['content-type']).toBe('application/pdf');
      expect(pdf.headers['content-disposition']).toBe(`attachment; filename="${invoice.number}.pdf"`);
      const bytes = pdf.rawPayload;
      expect(bytes.subarray(0, 5).toString('latin1')).toBe('%PDF-');
      expect(bytes.toString('latin1').trimEnd().endsWith('%%EOF')).toBe(true);
      expect(bytes.length).toBeGreaterThan(1500);
      const raw = bytes.toString('latin1');
      const shown: string[] = [];
      for (const m of raw.matchAll(/stream\r?\n/g)) {
        const start = m.index + m[0].length;
        try {
          const content = inflateSync(bytes.subarray(start, raw.indexOf('endstream', start))).toString(
            'latin1',
          );
          for (const op of content.matchAll(/\[([^\]]*)\]\s*TJ/g)) {
            shown.push(
              Buffer.from(
                [...op[1]!.matchAll(/<([0-9a-fA-F]*)>/g)].map((h) => h[1]).join(''),
                'hex',
              ).toString('latin1'),
            );
          }
        } catch {
          // not a content stream
        }
      }
      expect(shown).toContain(`Invoice ${invoice.number}`);
      expect(shown).toContain('$4.83');

      // The operator's key renders it for the organization; without organization_id it is not the operator's.
      expect((await get('.html')).status).toBe(404);
      expectApiError(await get('.pdf'), 404, 'not_found');
      expectApiError(await get(''), 404, 'not_found');
      const stranger = await createSecondOrganization(gw, 'Stranger');
      for (const suffix of ['', '.html', '.csv', '.pdf']) {
        expectApiError(await get(suffix, stranger.adminKey.secret), 404, 'not_found');
      }
      expectApiError(
        await adminRequest(gw, 'GET', '/invoices/inv_nope.csv', { key: other.adminKey.secret }),
        404,
        'not_found',
      );
    });

    it('the upcoming invoice: this month so far, as a draft, in every format', async () => {
      const other = await createSecondOrganization(gw, 'Upcoming');
      const org = other.organization.id;
      // The route uses the wall clock for "this month" (not the billing service's clock).
      await storeUsage(
        gw.services.store.db,
        [
          usageEvent({
            organizationId: org,
            projectId: other.project.id,
            apiKeyId: 'key_x',
            createdAt: new Date(),
            inputTokens: 100,
            costNanoUsd: 42 * CENT,
          }),
        ],
        tz,
      );
      const draft = expectOk(
        await adminRequest<InvoiceObject>(gw, 'GET', '/invoices/upcoming', { key: other.adminKey.secret }),
      );
      const month = periodBounds('month', Date.now(), tz);
      expect(draft).toMatchObject({
        id: null,
        number: null,
        status: 'draft',
        period_start: month.start / 1000,
        period_end: month.end / 1000,
        subtotal_cents: 42,
        credits_cents: 0,
        total_cents: 42,
        lines: [
          {
            project_id: other.project.id,
            model: 'mock-gpt-4o',
            item: 'input',
            quantity: 100,
            amount_cents: 42,
          },
        ],
      });
      const html = await adminRequest(gw, 'GET', '/invoices/upcoming.html', { key: other.adminKey.secret });
      expect(html.status).toBe(200);
      expect(html.text).toContain('Upcoming invoice');
      const csv = await adminRequest(gw, 'GET', '/invoices/upcoming.csv', { key: other.adminKey.secret });
      expect(csv.headers['content-disposition']).toBe('attachment; filename="upcoming.csv"');
      expect(csv.text).toContain('amount due,,,0.42');
    });
  });

  describe('the billing cycle', () => {
    const tz = 'Asia/Kolkata';
    let gw: TestGateway;
    let clock: number;
    const june = boundsOf(2031, 6, tz);
    const may = boundsOf(2031, 5, tz);

    beforeAll(async () => {
      clock = may.start;
      gw = await createTestGateway({ backend, now: () => clock, config: { billingTimeZone: tz } });
    });
    afterAll(() => gw?.close());

    const usageAt = (organizationId: string, at: number, cents = 100) =>
      storeUsage(
        gw.services.store.db,
        [
          usageEvent({
            organizationId,
            apiKeyId: 'key_cycle',
            createdAt: new Date(at),
            inputTokens: 10,
            costNanoUsd: cents * CENT,
          }),
        ],
        tz,
      );
    const invoicesOf = async (organizationId: string) =>
      (await gw.services.billing.invoicesOf(organizationId, { limit: 100, order: 'asc' })).items;

    it('issues last month’s invoices once the grace period is over, once, for organizations with usage', async () => {
      const a = (await createSecondOrganization(gw, 'Cycle A')).organization.id;
      const b = (await createSecondOrganization(gw, 'Cycle B')).organization.id;
      const idle = (await createSecondOrganization(gw, 'Cycle idle')).organization.id;
      const boundary = (await createSecondOrganization(gw, 'Cycle boundary')).organization.id;
      await usageAt(a, june.start + DAY);
      await usageAt(a, june.end - MINUTE);
      await usageAt(b, june.start);
      // Only in the half hour before June in Kolkata (the hour bucket straddles the month start).
      await usageAt(boundary, june.start - 30 * MINUTE);
      // This month's usage (July) is not invoiced yet.
      await usageAt(b, june.end + MINUTE);

      clock = june.end + 59 * MINUTE; // within the default grace hour
      expect(await gw.services.billing.runCycle()).toBe(1); // May: the boundary organization's half hour
      expect((await invoicesOf(boundary)).map((i) => i.periodStart.getTime())).toEqual([may.start]);
      expect(await invoicesOf(a)).toEqual([]);

      clock = june.end + HOUR;
      expect(await gw.services.billing.runCycle()).toBe(2);
      expect(await gw.services.billing.runCycle()).toBe(0);
      const [invoiceA] = await invoicesOf(a);
      expect(invoiceA).toMatchObject({
        periodStart: new Date(june.start),
        subtotalCents: 200,
        status: 'open',
      });
      expect(invoiceA!.number).toMatch(/^KP-203106-\d{4}$/);
      expect((await invoicesOf(b)).map((i) => [i.periodStart.getTime(), i.subtotalCents])).toEqual([
        [june.start, 100],
      ]);
      expect(await invoicesOf(idle)).toEqual([]);
      expect((await invoicesOf(boundary)).map((i) => i.periodStart.getTime())).toEqual([may.start]);

      // A voided invoice is issued again at the next cycle (late usage included).
      await gw.services.billing.voidInvoice(a, invoiceA!.id, TEST_ACTOR);
      await usageAt(a, june.end - 1);
      clock += HOUR;
      expect(await gw.services.billing.runCycle()).toBe(1);
      const reissued = (await invoicesOf(a)).filter((i) => i.status !== 'void');
      expect(reissued.map((i) => i.subtotalCents)).toEqual([300]);
      expect(await gw.services.billing.runCycle()).toBe(0);

      // July's usage is invoiced once July is over.
      const july = boundsOf(2031, 7, tz);
      clock = july.end + HOUR;
      expect(await gw.services.billing.runCycle()).toBe(1);
      expect((await invoicesOf(b)).map((i) => [i.periodStart.getTime(), i.subtotalCents])).toEqual([
        [june.start, 100],
        [july.start, 100],
      ]);
    });

    it('catches up on earlier months not invoiced yet; a custom grace period is honoured', async () => {
      const late = (await createSecondOrganization(gw, 'Cycle late')).organization.id;
      const august = boundsOf(2031, 8, tz);
      const october = boundsOf(2031, 10, tz);
      await usageAt(late, august.start + DAY);
      await usageAt(late, october.start + DAY);
      clock = october.end + 10 * MINUTE;
      // A six-hour grace: October is not ready, August is.
      expect(await gw.services.billing.runCycle(6 * HOUR)).toBe(1);
      expect((await invoicesOf(late)).map((i) => i.periodStart.getTime())).toEqual([august.start]);
      clock = october.end + 6 * HOUR;
      expect(await gw.services.billing.runCycle(6 * HOUR)).toBe(1);
      expect((await invoicesOf(late)).map((i) => i.periodStart.getTime())).toEqual([
        august.start,
        october.start,
      ]);
    });
  });
});
