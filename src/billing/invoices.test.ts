/** What an invoice says, from a month's usage rows: lines in cents, totals, numbers, months. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { periodBounds } from '../core/periods.ts';
import { invoiceAmounts, invoiceLines, invoiceNumber, parseMonth } from './invoices.ts';
import type { sumUsageByProjectAndModel } from './usage-query.ts';

type Row = Awaited<ReturnType<typeof sumUsageByProjectAndModel>>[number];
const CENT = 10_000_000;

function row(fields: Partial<Row> & Pick<Row, 'projectId' | 'model'>): Row {
  return {
    kind: 'completions',
    requests: 1,
    modelRequests: 1,
    inputTokens: 0,
    cachedTokens: 0,
    outputTokens: 0,
    units: 0,
    cost: 0,
    costInput: 0,
    costCached: 0,
    costOutput: 0,
    costUnits: 0,
    ...fields,
  };
}

/** Half-up to cents with integer arithmetic. */
const cents = (nano: number) => {
  const whole = Math.floor(nano / CENT);
  return nano - whole * CENT >= CENT / 2 ? whole + 1 : whole;
};

describe('invoiceLines', () => {
  it('a line per item with tokens or cost: input (uncached), cached input, output', () => {
    const lines = invoiceLines([
      row({
        projectId: 'proj_a',
        model: 'gpt-4o',
        inputTokens: 1000,
        cachedTokens: 200,
        outputTokens: 50,
        costInput: 12 * CENT + 4_999_999,
        costCached: 5_000_000,
        costOutput: 3 * CENT,
      }),
    ]);
    expect(lines).toEqual([
      {
        projectId: 'proj_a',
        model: 'gpt-4o',
        item: 'input',
        quantity: 800,
        quantityUnit: 'tokens',
        amountCents: 12,
      },
      {
        projectId: 'proj_a',
        model: 'gpt-4o',
        item: 'cached input',
        quantity: 200,
        quantityUnit: 'tokens',
        amountCents: 1,
      },
      {
        projectId: 'proj_a',
        model: 'gpt-4o',
        item: 'output',
        quantity: 50,
        quantityUnit: 'tokens',
        amountCents: 3,
      },
    ]);
  });

  it('rounds half up, per line, once', () => {
    const amount = (nano: number) =>
      invoiceLines([row({ projectId: 'p', model: 'm', inputTokens: 1, costInput: nano })])[0]!.amountCents;
    expect(amount(0)).toBe(0);
    expect(amount(4_999_999)).toBe(0);
    expect(amount(5_000_000)).toBe(1);
    expect(amount(CENT)).toBe(1);
    expect(amount(CENT + 4_999_999)).toBe(1);
    expect(amount(CENT + 5_000_000)).toBe(2);
    expect(amount(123_456 * CENT + 5_000_000)).toBe(123_457);
  });

  it('leaves out items with neither quantity nor cost, keeps free tokens and costly zero quantities', () => {
    const lines = invoiceLines([
      row({ projectId: 'p', model: 'free-model', inputTokens: 10, outputTokens: 0 }),
      row({ projectId: 'p', model: 'odd', costOutput: 2 * CENT }),
    ]);
    expect(lines.map((l) => [l.model, l.item, l.quantity, l.amountCents])).toEqual([
      ['free-model', 'input', 10, 0],
      ['odd', 'output', 0, 2],
    ]);
  });

  it('names the unit item by kind: images, characters (speech), seconds (transcriptions), else units', () => {
    const lines = invoiceLines([
      row({ projectId: 'p', model: 'dall-e-3', kind: 'images', units: 3, costUnits: 12 * CENT }),
      row({ projectId: 'p', model: 'tts-1', kind: 'audio_speeches', units: 1000, costUnits: 1_500_000 }),
      row({
        projectId: 'p',
        model: 'whisper-1',
        kind: 'audio_transcriptions',
        units: 90,
        costUnits: 9_000_000,
      }),
      row({ projectId: 'p', model: 'x', kind: 'other', units: 2, costUnits: 0 }),
    ]);
    expect(lines.map((l) => [l.model, l.item, l.quantity, l.quantityUnit, l.amountCents])).toEqual([
      ['dall-e-3', 'images', 3, 'images', 12],
      ['tts-1', 'characters', 1000, 'characters', 0],
      ['whisper-1', 'seconds', 90, 'seconds', 1],
      ['x', 'units', 2, 'units', 0],
    ]);
  });

  it('sorts by project, then model, then item in invoice order', () => {
    const lines = invoiceLines([
      row({ projectId: 'proj_b', model: 'a', inputTokens: 1, outputTokens: 1 }),
      row({ projectId: 'proj_a', model: 'z', inputTokens: 1, cachedTokens: 1, outputTokens: 1 }),
      row({ projectId: 'proj_a', model: 'b', inputTokens: 2, outputTokens: 1 }),
    ]);
    expect(lines.map((l) => `${l.projectId}/${l.model}/${l.item}`)).toEqual([
      'proj_a/b/input',
      'proj_a/b/output',
      'proj_a/z/cached input',
      'proj_a/z/output',
      'proj_b/a/input',
      'proj_b/a/output',
    ]);
  });

  it('one line for the same project, model and item across kinds, rounded once from the summed cost', () => {
    // 0.4 ¢ twice is 0.8 ¢: 1 ¢ on the invoice, not 0 + 0.
    const lines = invoiceLines([
      row({ projectId: 'p', model: 'm', kind: 'completions', inputTokens: 10, costInput: 4_000_000 }),
      row({ projectId: 'p', model: 'm', kind: 'other', inputTokens: 5, costInput: 4_000_000 }),
    ]);
    expect(lines).toEqual([
      { projectId: 'p', model: 'm', item: 'input', quantity: 15, quantityUnit: 'tokens', amountCents: 1 },
    ]);
    // And 0.6 ¢ twice is 1.2 ¢: 1 ¢, not 1 + 1.
    const twice = invoiceLines([
      row({ projectId: 'p', model: 'm', kind: 'completions', outputTokens: 1, costOutput: 6_000_000 }),
      row({ projectId: 'p', model: 'm', kind: 'embeddings', outputTokens: 1, costOutput: 6_000_000 }),
    ]);
    expect(twice.map((l) => l.amountCents)).toEqual([1]);
  });

  it('property: every line is the half-up rounding of its summed nano-USD; the subtotal is the sum of the lines', () => {
    const kinds = ['completions', 'embeddings', 'images', 'audio_speeches', 'audio_transcriptions', 'other'];
    const nano = fc.oneof(
      fc.integer({ min: 0, max: 50 * CENT }),
      fc.constantFrom(0, 4_999_999, 5_000_000, 15_000_000),
    );
    const rowArb = fc.record({
      projectId: fc.constantFrom('', 'proj_a', 'proj_b'),
      model: fc.constantFrom('gpt-4o', 'gpt-4o-mini', ''),
      kind: fc.constantFrom(...kinds),
      inputTokens: fc.integer({ min: 0, max: 10_000 }),
      cachedShare: fc.double({ min: 0, max: 1, noNaN: true }),
      outputTokens: fc.integer({ min: 0, max: 10_000 }),
      units: fc.integer({ min: 0, max: 100 }),
      costInput: nano,
      costCached: nano,
      costOutput: nano,
      costUnits: nano,
    });
    fc.assert(
      fc.property(
        fc.array(rowArb, { maxLength: 12 }),
        fc.integer({ min: 0, max: 500 * CENT }),
        (specs, credit) => {
          // One row per project, model and kind, as the query returns them.
          const unique = new Map(specs.map((s) => [`${s.projectId}|${s.model}|${s.kind}`, s]));
          const rows = [...unique.values()].map(({ cachedShare, ...s }) =>
            row({ ...s, cachedTokens: Math.floor(s.inputTokens * cachedShare) }),
          );
          const unit = (kind: string) =>
            ({ images: 'images', audio_speeches: 'characters', audio_transcriptions: 'seconds' })[kind] ??
            'units';
          const expected = new Map<string, { quantity: number; nano: number }>();
          const add = (r: Row, item: string, quantity: number, cost: number) => {
            if (quantity === 0 && cost === 0) return;
            const key = `${r.projectId}|${r.model}|${item}`;
            const sum = expected.get(key) ?? { quantity: 0, nano: 0 };
            sum.quantity += quantity;
            sum.nano += cost;
            expected.set(key, sum);
          };
          for (const r of rows) {
            add(r, 'input', r.inputTokens - r.cachedTokens, r.costInput);
            add(r, 'cached input', r.cachedTokens, r.costCached);
            add(r, 'output', r.outputTokens, r.costOutput);
            add(r, unit(r.kind), r.units, r.costUnits);
          }
          const lines = invoiceLines(rows);
          expect(lines).toHaveLength(expected.size);
          for (const line of lines) {
            const sum = expected.get(`${line.projectId}|${line.model}|${line.item}`);
            expect(sum, `${line.projectId}|${line.model}|${line.item}`).toBeDefined();
            expect(line.quantity).toBe(sum!.quantity);
            expect(line.amountCents).toBe(cents(sum!.nano));
          }
          const usageNano = [...expected.values()].reduce((s, e) => s + e.nano, 0);
          const drawn = Math.min(credit, usageNano); // credit is drawn for usage only
          const amounts = invoiceAmounts(lines, drawn, usageNano);
          const subtotal = lines.reduce((s, l) => s + l.amountCents, 0);
          expect(amounts.subtotalCents).toBe(subtotal);
          // Due: what the credit left, rounded once; all covered → nothing due.
          expect(amounts.totalCents).toBe(cents(usageNano - drawn));
          if (drawn === usageNano) expect(amounts.totalCents).toBe(0);
          // The rows add up; rounding is the lines' own, credits only credit.
          expect(amounts.subtotalCents + amounts.roundingCents - amounts.creditsCents).toBe(
            amounts.totalCents,
          );
          expect(amounts.roundingCents).toBe(cents(usageNano) - subtotal);
          if (drawn === 0) expect(amounts.creditsCents).toBe(0);
          expect(Math.abs(amounts.creditsCents - drawn / CENT)).toBeLessThanOrEqual(1);
          expect(amounts.creditsCents).toBeGreaterThanOrEqual(0);
          expect(amounts.totalCents).toBeGreaterThanOrEqual(0);
          expect(amounts.lines).toBe(lines);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('invoiceAmounts', () => {
  const line = (amountCents: number) => ({
    projectId: 'p',
    model: 'm',
    item: 'input',
    quantity: 1,
    quantityUnit: 'tokens',
    amountCents,
  });

  it('charges what the credit did not cover, rounded once', () => {
    // 123¢ of usage, 20.05¢ of it from credit: 102.95¢ due, rounded once to 103.
    expect(invoiceAmounts([line(100), line(23)], 20 * CENT + 5_000_000, 123 * CENT)).toMatchObject({
      subtotalCents: 123,
      roundingCents: 0,
      creditsCents: 20,
      totalCents: 103,
    });
    expect(invoiceAmounts([line(100), line(23)], 123 * CENT, 123 * CENT)).toMatchObject({
      subtotalCents: 123,
      creditsCents: 123,
      totalCents: 0,
    });
    expect(invoiceAmounts([line(5)], 0, 5 * CENT)).toMatchObject({ creditsCents: 0, totalCents: 5 });
    expect(invoiceAmounts([], 0, 0)).toMatchObject({ subtotalCents: 0, creditsCents: 0, totalCents: 0 });
  });

  it('a month paid entirely from credit leaves nothing to pay, however its lines round', () => {
    // 40 lines of half a cent: each rounds up to 1¢ (40¢), the usage is 20¢, all of it from credit.
    const lines = Array.from({ length: 40 }, () => line(1));
    expect(invoiceAmounts(lines, 40 * 5_000_000, 40 * 5_000_000)).toMatchObject({
      subtotalCents: 40,
      roundingCents: -20,
      creditsCents: 20,
      totalCents: 0,
    });
  });

  it('with no credit drawn, applies no credits: the lines’ rounding is a row of its own', () => {
    // 0.6¢ and 0.6¢: each line rounds up to 1¢, the usage of 1.2¢ rounds to 1¢.
    expect(invoiceAmounts([line(1), line(1)], 0, 1.2 * CENT)).toEqual({
      lines: [line(1), line(1)],
      subtotalCents: 2,
      roundingCents: -1,
      creditsCents: 0,
      totalCents: 1,
    });
  });
});

describe('invoiceNumber', () => {
  it('KP-YYYYMM-NNNN from the month as the billing time zone sees it', () => {
    expect(invoiceNumber(new Date(Date.UTC(2026, 10, 1)), 'UTC', 7)).toBe('KP-202611-0007');
    expect(invoiceNumber(new Date(Date.UTC(2026, 0, 1)), 'UTC', 1)).toBe('KP-202601-0001');
    expect(invoiceNumber(new Date(Date.UTC(2026, 0, 1)), 'UTC', 12345)).toBe('KP-202601-12345');
    // New York's November starts at 04:00 UTC on Nov 1: still November there.
    const ny = periodBounds('month', Date.UTC(2026, 10, 15), 'America/New_York').start;
    expect(ny).toBe(Date.UTC(2026, 10, 1, 4));
    expect(invoiceNumber(new Date(ny), 'America/New_York', 3)).toBe('KP-202611-0003');
    // Kolkata's January starts at 18:30 UTC on Dec 31: already January there, December in UTC.
    const kolkata = periodBounds('month', Date.UTC(2027, 0, 15), 'Asia/Kolkata').start;
    expect(kolkata).toBe(Date.UTC(2026, 11, 31, 18, 30));
    expect(invoiceNumber(new Date(kolkata), 'Asia/Kolkata', 1)).toBe('KP-202701-0001');
    expect(invoiceNumber(new Date(kolkata), 'UTC', 1)).toBe('KP-202612-0001');
  });
});

describe('parseMonth', () => {
  it('reads YYYY-MM', () => {
    expect(parseMonth('2026-11')).toEqual({ year: 2026, month: 11 });
    expect(parseMonth('2000-01')).toEqual({ year: 2000, month: 1 });
    expect(parseMonth('9999-12')).toEqual({ year: 9999, month: 12 });
  });

  it('throws a RangeError for anything else', () => {
    for (const text of [
      '2026-13',
      '2026-00',
      '2026-1',
      '26-11',
      '1999-12',
      '2026-11-01',
      ' 2026-11',
      '2026/11',
      '',
      'abcd-ef',
    ]) {
      expect(() => parseMonth(text), text).toThrow(RangeError);
    }
  });
});
