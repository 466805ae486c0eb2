/**
 * One CSV cell: RFC 4180 quoting, and no formula injection — a text cell a spreadsheet would
 * evaluate (`=…`, `+…`, `-…`, `@…`, `|…`, their full-width forms, after leading blanks) gets a
 * leading `'`. Names that reach a CSV come from users (project names) and from API callers
 * (model names), so every text cell goes through here; numbers are written as they are.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = value instanceof Date ? value.toISOString() : String(value);
  if (typeof value === 'string' && /^[\s]*[=+\-@|\t\r\uFF1D\uFF0B\uFF0D\uFF20]/.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
