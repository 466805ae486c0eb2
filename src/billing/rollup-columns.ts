/**
 * The columns of `usage_rollups` as SQL fragments, for the writers (ingest, compaction) and the
 * readers (the Usage and Costs APIs, invoices), which must agree on them.
 */
import { sql } from 'drizzle-orm';

/** The origin of every bucket (`date_bin`). */
export const EPOCH = sql.raw("timestamptz '1970-01-01 00:00:00+00'");

/** What a roll-up row is about. */
export const DIMENSION_NAMES = [
  'organization_id',
  'project_id',
  'api_key_id',
  'user_id',
  'model',
  'kind',
] as const;

/** What a roll-up row sums. */
export const MEASURES = [
  'requests',
  'errors',
  'input_tokens',
  'cached_tokens',
  'output_tokens',
  'units',
  'cost_input_nano_usd',
  'cost_cached_nano_usd',
  'cost_output_nano_usd',
  'cost_units_nano_usd',
] as const;

export const DIMENSIONS = sql.raw(DIMENSION_NAMES.join(', '));
export const MEASURE_COLUMNS = sql.raw(MEASURES.join(', '));
export const SUMMED = sql.raw(MEASURES.map((m) => `sum(${m})`).join(', '));

/** Every dimension and measure, of the row alias `alias`. */
export const columnsOf = (alias: string) =>
  sql.raw([...DIMENSION_NAMES, ...MEASURES].map((c) => `${alias}.${c}`).join(', '));
