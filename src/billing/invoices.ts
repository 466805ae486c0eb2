/**
 * What an invoice says, from a month's usage: a line per project, model and item (input, cached
 * input, output, and the unit for images, speech and transcriptions), each rounded to the cent
 * once; the subtotal is the sum of the lines as printed, so the invoice adds up to the cent.
 * Credits drawn during the month are applied (never more than the subtotal).
 */
import { nanoToCents } from '../core/pricing.ts';
import type { sumUsageByProjectAndModel } from './usage-query.ts';

export interface InvoiceLine {
  projectId: string;
  model: string;
  /** `input`, `cached input`, `output`, `images`, `characters`, `seconds`. */
  item: string;
  quantity: number;
  /** `tokens`, `images`, `characters`, `seconds`. */
  quantityUnit: string;
  amountCents: number;
}

export interface InvoiceAmounts {
  lines: InvoiceLine[];
  /** The lines' amounts added up. */
  subtotalCents: number;
  /**
   * What rounding each line on its own added or took away: the usage rounded once, less the
   * subtotal. Shown as its own row, so that credits are only ever credit.
   */
  roundingCents: number;
  creditsCents: number;
  totalCents: number;
}

/** subtotal + rounding − credits = total: the rounding row of an invoice stored with the other three. */
export function roundingOf(amounts: { subtotalCents: number; creditsCents: number; totalCents: number }) {
  return amounts.totalCents + amounts.creditsCents - amounts.subtotalCents;
}

type UsageByModel = Awaited<ReturnType<typeof sumUsageByProjectAndModel>>[number];

const UNITS: Record<string, { item: string; unit: string }> = {
  images: { item: 'images', unit: 'images' },
  audio_speeches: { item: 'characters', unit: 'characters' },
  audio_transcriptions: { item: 'seconds', unit: 'seconds' },
};

export function invoiceLines(usage: readonly UsageByModel[]): InvoiceLine[] {
  // The same project, model and item from two kinds (rare): one line, its costs summed before
  // the line is rounded (rounding each kind's part first could be a cent off per kind).
  const merged = new Map<string, Omit<InvoiceLine, 'amountCents'> & { nano: number }>();
  for (const row of usage) {
    const unit = UNITS[row.kind] ?? { item: 'units', unit: 'units' };
    const candidates = [
      {
        item: 'input',
        quantity: row.inputTokens - row.cachedTokens,
        quantityUnit: 'tokens',
        nano: row.costInput,
      },
      { item: 'cached input', quantity: row.cachedTokens, quantityUnit: 'tokens', nano: row.costCached },
      { item: 'output', quantity: row.outputTokens, quantityUnit: 'tokens', nano: row.costOutput },
      { item: unit.item, quantity: row.units, quantityUnit: unit.unit, nano: row.costUnits },
    ];
    for (const c of candidates) {
      if (c.quantity === 0 && c.nano === 0) continue;
      const key = `${row.projectId}\u0000${row.model}\u0000${c.item}`;
      const existing = merged.get(key);
      if (existing) {
        existing.quantity += c.quantity;
        existing.nano += c.nano;
      } else merged.set(key, { projectId: row.projectId, model: row.model, ...c });
    }
  }
  const lines = [...merged.values()].map(
    ({ nano, ...line }): InvoiceLine => ({ ...line, amountCents: nanoToCents(nano) }),
  );
  return lines.sort(
    (a, b) =>
      a.projectId.localeCompare(b.projectId) ||
      a.model.localeCompare(b.model) ||
      ITEM_ORDER(a.item) - ITEM_ORDER(b.item),
  );
}

const ORDER = ['input', 'cached input', 'output', 'images', 'characters', 'seconds', 'units'];
const ITEM_ORDER = (item: string) => ORDER.indexOf(item);

/**
 * What is due is what the credit did not cover, rounded once from nano-USD (`usageNano`, the
 * exact total of the lines), so that a month paid entirely from credit leaves exactly 0 to pay.
 * Lines rounded one by one may add up to more or less than the usage rounded once: the difference
 * is the rounding row, and credits are the credit drawn (rounded so that the rows add up):
 * subtotal + rounding − credits = total. No credit drawn, no credits row.
 */
export function invoiceAmounts(lines: InvoiceLine[], creditNano: number, usageNano: number): InvoiceAmounts {
  const subtotalCents = lines.reduce((sum, line) => sum + line.amountCents, 0);
  const usageCents = nanoToCents(usageNano);
  const totalCents = nanoToCents(Math.max(0, usageNano - Math.min(creditNano, usageNano)));
  return {
    lines,
    subtotalCents,
    roundingCents: usageCents - subtotalCents,
    creditsCents: usageCents - totalCents,
    totalCents,
  };
}

/** `KP-202611-0007`: the month, then the invoice's place in it. */
export function invoiceNumber(monthStart: Date, timeZone: string, sequence: number): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
  }).formatToParts(monthStart);
  const year = parts.find((p) => p.type === 'year')!.value;
  const month = parts.find((p) => p.type === 'month')!.value;
  return `KP-${year}${month}-${String(sequence).padStart(4, '0')}`;
}

/** `2026-11` → the month's bounds in the time zone (throws RangeError for a bad month). */
export function parseMonth(text: string): { year: number; month: number } {
  const match = /^(\d{4})-(\d{2})$/.exec(text);
  const year = Number(match?.[1]);
  const month = Number(match?.[2]);
  if (!match || month < 1 || month > 12 || year < 2000 || year > 9999)
    throw new RangeError(`not a month: ${text}`);
  return { year, month };
}
