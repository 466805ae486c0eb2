/** Terminal output: aligned tables, dates, durations; parsing the numbers people type. */
import { InvalidArgumentError } from 'commander';

export function table(rows: Record<string, string>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const widths = columns.map((column) =>
    Math.max(column.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [
    line(columns.map((c) => c.toUpperCase())),
    ...rows.map((row) => line(columns.map((c) => row[c] ?? ''))),
  ].join('\n');
}

export function when(unixSeconds: number | null | undefined): string {
  if (unixSeconds == null) return '-';
  return new Date(unixSeconds * 1000).toISOString().replace('.000Z', 'Z');
}

/** "90" (seconds), "45s", "30m", "12h", "7d", "2w" → seconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)\s*([smhdw]?)$/.exec(text.trim());
  if (!match)
    throw new Error(`invalid duration ${JSON.stringify(text)}: use e.g. 90, 45s, 30m, 12h, 7d or 2w`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[match[2] as string] ?? 1;
  return Number(match[1]) * unit;
}

export function list(text: string): string[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
}

/** Option parsers for commander: a whole number (`1_000` allowed), dollars → cents. */
export const wholeNumber = (value: string): number => {
  if (!/^\d+$/.test(value.replaceAll('_', ''))) throw new InvalidArgumentError('expected a whole number');
  return Number(value.replaceAll('_', ''));
};

/** "12.50" or "$12.50" → 1250 cents. */
export const dollarsToCents = (value: string): number => {
  const match = /^\$?(\d+)(?:\.(\d{1,2}))?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError('expected dollars, e.g. 50 or 12.50');
  return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
};
