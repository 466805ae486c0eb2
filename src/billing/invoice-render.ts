/**
 * An invoice as a person reads it: HTML (the dashboard shows it, a browser prints it), PDF
 * (pdfkit, the built-in Helvetica: no font files) and CSV (a spreadsheet). All three print the
 * same lines and totals, in dollars from integer cents.
 */

import PDFDocument from 'pdfkit';
import { csvCell } from '../core/csv.ts';
import type { InvoiceView } from './billing-service.ts';

export interface InvoiceContext {
  issuer: string;
  timeZone: string;
  /** Project ids → names, for readable lines. */
  projectNames: Map<string, string>;
  organizationName: string;
}

export const dollars = (cents: number): string => {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}$${Math.floor(abs / 100).toLocaleString('en-US')}.${String(abs % 100).padStart(2, '0')}`;
};

const quantityText = (quantity: number, unit: string) => `${quantity.toLocaleString('en-US')} ${unit}`;

function date(ms: number | null | undefined, timeZone: string): string {
  if (ms == null) return '—';
  return new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(ms);
}

function month(ms: number, timeZone: string): string {
  return new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'long' }).format(ms);
}

interface Printed {
  title: string;
  facts: [string, string][];
  billTo: string[];
  lines: { project: string; model: string; item: string; quantity: string; amount: string }[];
  totals: [string, string][];
}

function printed(view: InvoiceView, context: InvoiceContext): Printed {
  const { invoice } = view;
  const billTo = (invoice?.billTo ?? {}) as {
    name?: string | null;
    email?: string | null;
    address?: string[];
    tax_id?: string | null;
  };
  return {
    title: invoice
      ? `Invoice ${invoice.number}`
      : `Upcoming invoice (${month(view.periodStart, context.timeZone)}, so far)`,
    facts: [
      [
        'Period',
        `${date(view.periodStart, context.timeZone)} – ${date(view.periodEnd - 1, context.timeZone)} (${context.timeZone})`,
      ],
      ['Status', invoice?.status ?? 'draft'],
      ['Issued', date(invoice?.issuedAt.getTime(), context.timeZone)],
      ['Due', date(invoice?.dueAt?.getTime(), context.timeZone)],
      ['Paid', date(invoice?.paidAt?.getTime(), context.timeZone)],
    ],
    billTo: [
      billTo.name || context.organizationName,
      ...(billTo.address ?? []),
      ...(billTo.email ? [billTo.email] : []),
      ...(billTo.tax_id ? [`Tax ID: ${billTo.tax_id}`] : []),
    ],
    lines: view.lines.map((line) => ({
      project: context.projectNames.get(line.projectId) ?? (line.projectId || '(no project)'),
      model: line.model || '(no model)',
      item: line.item,
      quantity: quantityText(line.quantity, line.quantityUnit),
      amount: dollars(line.amountCents),
    })),
    totals: [
      ['Subtotal', dollars(view.amounts.subtotalCents)],
      ...(view.amounts.roundingCents !== 0
        ? [['Rounding', dollars(view.amounts.roundingCents)] as [string, string]]
        : []),
      ['Credits applied', dollars(-view.amounts.creditsCents)],
      ['Amount due', dollars(view.amounts.totalCents)],
    ],
  };
}

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

export function invoiceHtml(view: InvoiceView, context: InvoiceContext): string {
  const p = printed(view, context);
  const e = escapeHtml;
  const rows = p.lines
    .map(
      (l) =>
        `<tr><td>${e(l.project)}</td><td>${e(l.model)}</td><td>${e(l.item)}</td><td class="n">${e(l.quantity)}</td><td class="n">${e(l.amount)}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${e(p.title)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;color:#111;max-width:56rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{padding:.35rem .5rem;border-bottom:1px solid #ddd;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.head{display:flex;justify-content:space-between;gap:2rem}.muted{color:#555}.totals td{border:0}.totals tr:last-child td{font-weight:700;border-top:2px solid #111}
</style></head><body>
<div class="head"><div><h1>${e(p.title)}</h1><div class="muted">${e(context.issuer)}</div></div>
<div><strong>Bill to</strong><br>${p.billTo.map(e).join('<br>')}</div></div>
<table>${p.facts.map(([k, v]) => `<tr><th>${e(k)}</th><td>${e(v)}</td></tr>`).join('')}</table>
<table><thead><tr><th>Project</th><th>Model</th><th>Item</th><th class="n">Quantity</th><th class="n">Amount</th></tr></thead>
<tbody>
${rows || '<tr><td colspan="5" class="muted">No usage in this period.</td></tr>'}
</tbody></table>
<table class="totals">${p.totals.map(([k, v]) => `<tr><td></td><td class="n">${e(k)}</td><td class="n">${e(v)}</td></tr>`).join('')}</table>
</body></html>
`;
}

/** Text cells guarded against formulas (names come from users and API callers); amounts as written. */
const csv = (cells: (string | { amount: string })[]) =>
  cells.map((c) => (typeof c === 'string' ? csvCell(c) : c.amount)).join(',');
const usd = (cents: number) => ({ amount: (cents / 100).toFixed(2) });

export function invoiceCsv(view: InvoiceView, context: InvoiceContext): string {
  const rows = [csv(['project_id', 'project', 'model', 'item', 'quantity', 'quantity_unit', 'amount_usd'])];
  for (const line of view.lines) {
    rows.push(
      csv([
        line.projectId,
        context.projectNames.get(line.projectId) ?? '',
        line.model,
        line.item,
        { amount: String(line.quantity) },
        line.quantityUnit,
        usd(line.amountCents),
      ]),
    );
  }
  rows.push(csv(['', '', '', 'subtotal', '', '', usd(view.amounts.subtotalCents)]));
  if (view.amounts.roundingCents !== 0)
    rows.push(csv(['', '', '', 'rounding', '', '', usd(view.amounts.roundingCents)]));
  rows.push(csv(['', '', '', 'credits applied', '', '', usd(-view.amounts.creditsCents)]));
  rows.push(csv(['', '', '', 'amount due', '', '', usd(view.amounts.totalCents)]));
  return `${rows.join('\n')}\n`;
}

export function invoicePdf(view: InvoiceView, context: InvoiceContext): Promise<Buffer> {
  const p = printed(view, context);
  const doc = new PDFDocument({ size: 'A4', margin: 50, info: { Title: p.title, Author: context.issuer } });
  const chunks: Buffer[] = [];
  doc.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  doc.font('Helvetica-Bold').fontSize(18).text(p.title);
  doc.font('Helvetica').fontSize(10).fillColor('#555').text(context.issuer).fillColor('#000').moveDown();
  doc.font('Helvetica-Bold').text('Bill to');
  doc.font('Helvetica').text(p.billTo.join('\n')).moveDown();
  for (const [k, v] of p.facts) doc.text(`${k}: ${v}`);
  doc.moveDown();
  const columns = [
    { key: 'project', x: 50, width: 120 },
    { key: 'model', x: 170, width: 120 },
    { key: 'item', x: 290, width: 75 },
    { key: 'quantity', x: 365, width: 100, align: 'right' as const },
    { key: 'amount', x: 465, width: 80, align: 'right' as const },
  ] as const;
  const row = (cells: Record<string, string>, bold = false) => {
    if (doc.y > 760) doc.addPage();
    const y = doc.y;
    doc.font(bold ? 'Helvetica-Bold' : 'Helvetica');
    let bottom = y;
    for (const column of columns) {
      doc.text(cells[column.key] ?? '', column.x, y, {
        width: column.width,
        align: 'align' in column ? column.align : 'left',
      });
      bottom = Math.max(bottom, doc.y);
    }
    doc.x = 50;
    doc.y = bottom + 4;
  };
  row({ project: 'Project', model: 'Model', item: 'Item', quantity: 'Quantity', amount: 'Amount' }, true);
  if (p.lines.length === 0) row({ project: 'No usage in this period.' });
  for (const line of p.lines) row(line);
  doc.moveDown();
  for (const [k, v] of p.totals) row({ quantity: k, amount: v }, k === 'Amount due');
  doc.end();
  return done;
}
