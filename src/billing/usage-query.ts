/**
 * Reading usage back from the roll-ups: the Usage API's buckets, the Costs API's line items, and
 * totals over any minute-aligned range (budgets, invoices, a key's own usage). A range is cut into
 * the widest roll-ups that tile it (whole UTC days, then hours, then minutes at the edges), so a
 * month is ~30 day rows per group however many requests it had.
 */
import { type SQL, sql } from 'drizzle-orm';
import { NANO_USD_PER_USD } from '../core/pricing.ts';
import type { DbOrTx } from '../store/database.ts';
import { rowsOf } from '../store/rows.ts';
import type { RollupWidth } from '../store/schema.ts';
import { columnsOf, EPOCH } from './rollup-columns.ts';
import type { UsageKind } from './usage-event.ts';

export const WIDTH_MS: Record<RollupWidth, number> = { '1m': 60_000, '1h': 3_600_000, '1d': 86_400_000 };

export interface RangePiece {
  width: RollupWidth;
  /** ms, inclusive; a multiple of the width. */
  from: number;
  /** ms, exclusive. */
  to: number;
}

/** [start, end) as the fewest roll-up buckets; both ends must be whole minutes. */
export function decompose(start: number, end: number): RangePiece[] {
  if (start % 60_000 !== 0 || end % 60_000 !== 0)
    throw new RangeError('usage ranges start and end on whole minutes');
  const pieces: RangePiece[] = [];
  const add = (width: RollupWidth, from: number, to: number) => {
    if (to > from) pieces.push({ width, from, to });
  };
  const ceil = (t: number, w: number) => Math.ceil(t / w) * w;
  const floor = (t: number, w: number) => Math.floor(t / w) * w;
  const hour = WIDTH_MS['1h'];
  const day = WIDTH_MS['1d'];
  if (end <= start) return pieces;
  const h0 = Math.min(ceil(start, hour), end);
  const h1 = Math.max(floor(end, hour), h0);
  add('1m', start, h0);
  add('1m', h1, end);
  if (h1 > h0) {
    const d0 = Math.min(ceil(h0, day), h1);
    const d1 = Math.max(floor(h1, day), d0);
    add('1h', h0, d0);
    add('1d', d0, d1);
    add('1h', d1, h1);
  }
  return pieces;
}

/** Which rows: one organization, optionally one project or key, optionally some kinds. */
export interface UsageScope {
  organizationId: string;
  projectId?: string | undefined;
  apiKeyId?: string | undefined;
  kinds?: readonly UsageKind[] | undefined;
}

export interface UsageTotals {
  requests: number;
  modelRequests: number;
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  units: number;
  /** nano-USD. */
  cost: number;
}

const TOTALS = sql`
  coalesce(sum(requests), 0) as requests,
  coalesce(sum(requests - errors), 0) as model_requests,
  coalesce(sum(input_tokens), 0) as input_tokens,
  coalesce(sum(cached_tokens), 0) as cached_tokens,
  coalesce(sum(output_tokens), 0) as output_tokens,
  coalesce(sum(units), 0) as units,
  coalesce(sum(cost_input_nano_usd + cost_cached_nano_usd + cost_output_nano_usd + cost_units_nano_usd), 0) as cost`;

type TotalsRow = Record<
  'requests' | 'model_requests' | 'input_tokens' | 'cached_tokens' | 'output_tokens' | 'units' | 'cost',
  string | number
>;

const totalsOf = (row: TotalsRow | undefined): UsageTotals => ({
  requests: Number(row?.requests ?? 0),
  modelRequests: Number(row?.model_requests ?? 0),
  inputTokens: Number(row?.input_tokens ?? 0),
  cachedTokens: Number(row?.cached_tokens ?? 0),
  outputTokens: Number(row?.output_tokens ?? 0),
  units: Number(row?.units ?? 0),
  cost: Number(row?.cost ?? 0),
});

const iso = (ms: number) => new Date(ms).toISOString();

/** `column in (values)` with the values as one JSON parameter (Drizzle would expand an array). */
export function inList(column: SQL, values: readonly string[]): SQL {
  return sql`${column} in (select jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`;
}

function scopeFilter(scope: UsageScope): SQL {
  const parts: SQL[] = [sql`organization_id = ${scope.organizationId}`];
  if (scope.projectId !== undefined) parts.push(sql`project_id = ${scope.projectId}`);
  if (scope.apiKeyId !== undefined) parts.push(sql`api_key_id = ${scope.apiKeyId}`);
  if (scope.kinds) parts.push(inList(sql`kind`, scope.kinds));
  return sql.join(parts, sql` and `);
}

/**
 * The roll-up rows that cover `pieces` exactly, as the branches of a UNION ALL with the roll-up's
 * columns and `bucket_start` at each piece's width. Hours still marked in `rollup_dirty` (their
 * hour and day roll-ups not recomputed since their minutes changed) are read from their minutes,
 * and days holding such hours from their other hours and those minutes: every read is exact,
 * however far compaction has got. Callers group by bucket_start and sum.
 */
export function rollupRows(organizationId: string, pieces: readonly RangePiece[]): SQL {
  const branches = pieces.flatMap((piece) => branchesOf(organizationId, piece));
  if (branches.length === 0) {
    return sql`select bucket_start, ${columnsOf('usage_rollups')} from usage_rollups where false`;
  }
  return sql.join(branches, sql` union all `);
}

function branchesOf(org: string, { width, from, to }: RangePiece): SQL[] {
  const start = sql`${iso(from)}::timestamptz`;
  const end = sql`${iso(to)}::timestamptz`;
  /** Minute rows of the marked hours of [start, end), their bucket binned to `step`. */
  // LATERAL: the marks drive the lookups (a minute-index range per marked hour). A plain join let
  // the planner scan every minute row of the organization (10M rows: 5 s) to join a few marks.
  const markedMinutes = (step: SQL) => sql`
    select date_bin(${step}, m.bucket_start, ${EPOCH}) as bucket_start, ${columnsOf('m')}
    from rollup_dirty d
    cross join lateral (
      select * from usage_rollups x
      where x.width = '1m' and x.organization_id = d.organization_id
        and x.bucket_start >= d.hour and x.bucket_start < d.hour + interval '1 hour'
      offset 0 -- not flattened into a join: one index range per mark
    ) as m
    where d.organization_id = ${org} and d.hour >= ${start} and d.hour < ${end}`;
  if (width === '1m') {
    return [
      sql`select r.bucket_start, ${columnsOf('r')} from usage_rollups r
          where r.width = '1m' and r.organization_id = ${org} and r.bucket_start >= ${start} and r.bucket_start < ${end}`,
    ];
  }
  if (width === '1h') {
    return [
      sql`select r.bucket_start, ${columnsOf('r')} from usage_rollups r
          where r.width = '1h' and r.organization_id = ${org} and r.bucket_start >= ${start} and r.bucket_start < ${end}
            and not exists (select 1 from rollup_dirty d where d.organization_id = ${org} and d.hour = r.bucket_start)`,
      markedMinutes(sql`interval '1 hour'`),
    ];
  }
  return [
    // Days with no marked hour: their day rows.
    sql`select r.bucket_start, ${columnsOf('r')} from usage_rollups r
        where r.width = '1d' and r.organization_id = ${org} and r.bucket_start >= ${start} and r.bucket_start < ${end}
          and not exists (
            select 1 from rollup_dirty d
            where d.organization_id = ${org} and d.hour >= r.bucket_start and d.hour < r.bucket_start + interval '1 day')`,
    // Days with one: their unmarked hours…
    sql`select date_bin(interval '1 day', h.bucket_start, ${EPOCH}) as bucket_start, ${columnsOf('h')}
        from (select distinct date_bin(interval '1 day', hour, ${EPOCH}) as day from rollup_dirty
              where organization_id = ${org} and hour >= ${start} and hour < ${end}) as dd
        cross join lateral (
          select * from usage_rollups x
          where x.width = '1h' and x.organization_id = ${org}
            and x.bucket_start >= dd.day and x.bucket_start < dd.day + interval '1 day'
          offset 0
        ) as h
        where not exists (select 1 from rollup_dirty d where d.organization_id = ${org} and d.hour = h.bucket_start)`,
    // …and the minutes of the marked ones.
    markedMinutes(sql`interval '1 day'`),
  ];
}

/** Totals over [start, end) (whole minutes), from the roll-ups. */
export async function sumUsage(
  db: DbOrTx,
  scope: UsageScope,
  start: number,
  end: number,
): Promise<UsageTotals> {
  const rows = rollupRows(scope.organizationId, decompose(start, end));
  const [row] = rowsOf<TotalsRow>(
    await db.execute(sql`select ${TOTALS} from (${rows}) as u where ${scopeFilter(scope)}`),
  );
  return totalsOf(row);
}

/** Totals over [start, end) split by project, model and line item: what invoices are made of. */
export async function sumUsageByProjectAndModel(
  db: DbOrTx,
  organizationId: string,
  start: number,
  end: number,
): Promise<
  (UsageTotals & {
    projectId: string;
    model: string;
    kind: string;
    costInput: number;
    costCached: number;
    costOutput: number;
    costUnits: number;
  })[]
> {
  const source = rollupRows(organizationId, decompose(start, end));
  const rows = rowsOf<TotalsRow & Record<string, string | number>>(
    await db.execute(sql`
      select project_id, model, kind, ${TOTALS},
             coalesce(sum(cost_input_nano_usd), 0) as cost_input,
             coalesce(sum(cost_cached_nano_usd), 0) as cost_cached,
             coalesce(sum(cost_output_nano_usd), 0) as cost_output,
             coalesce(sum(cost_units_nano_usd), 0) as cost_units
      from (${source}) as u
      group by project_id, model, kind
      order by project_id, model, kind`),
  );
  return rows.map((row) => ({
    ...totalsOf(row),
    projectId: String(row.project_id),
    model: String(row.model),
    kind: String(row.kind),
    costInput: Number(row.cost_input),
    costCached: Number(row.cost_cached),
    costOutput: Number(row.cost_output),
    costUnits: Number(row.cost_units),
  }));
}

// ---- the Usage API ----------------------------------------------------------------------------

export const USAGE_GROUPS = ['project_id', 'user_id', 'api_key_id', 'model'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

export interface BucketQuery {
  organizationId: string;
  width: RollupWidth;
  /** ms; bucket starts (multiples of the width). */
  from: number;
  to: number;
  kinds: readonly UsageKind[];
  groupBy: readonly UsageGroup[];
  projectIds?: readonly string[] | undefined;
  userIds?: readonly string[] | undefined;
  apiKeyIds?: readonly string[] | undefined;
  models?: readonly string[] | undefined;
  /** Also split by usage family (`kind` on each row). */
  byKind?: boolean | undefined;
}

export interface BucketRow {
  bucketStart: number;
  /** With `byKind`. */
  kind?: string;
  /** The grouped dimensions (null: not grouped, or none: an admin key has no project). */
  group: Partial<Record<UsageGroup, string | null>>;
  totals: UsageTotals;
}

const GROUP_COLUMN: Record<UsageGroup, SQL> = {
  project_id: sql.raw('project_id'),
  user_id: sql.raw('user_id'),
  api_key_id: sql.raw('api_key_id'),
  model: sql.raw('model'),
};

/** One row per bucket and group that had usage, from the roll-ups at the bucket's width. */
export async function usageBuckets(db: DbOrTx, query: BucketQuery): Promise<BucketRow[]> {
  const source = rollupRows(query.organizationId, [{ width: query.width, from: query.from, to: query.to }]);
  const filters: SQL[] = [inList(sql`kind`, query.kinds)];
  if (query.projectIds) filters.push(inList(sql`project_id`, query.projectIds));
  if (query.userIds) filters.push(inList(sql`user_id`, query.userIds));
  if (query.apiKeyIds) filters.push(inList(sql`api_key_id`, query.apiKeyIds));
  if (query.models) filters.push(inList(sql`model`, query.models));
  const groups = [...query.groupBy.map((g) => GROUP_COLUMN[g]), ...(query.byKind ? [sql.raw('kind')] : [])];
  const select = groups.length > 0 ? sql`, ${sql.join(groups, sql`, `)}` : sql``;
  const groupBy = groups.length > 0 ? sql`, ${sql.join(groups, sql`, `)}` : sql``;
  const rows = rowsOf<TotalsRow & Record<string, string | number | Date>>(
    await db.execute(sql`
      select bucket_start ${select}, ${TOTALS}
      from (${source}) as u
      where ${sql.join(filters, sql` and `)}
      group by bucket_start ${groupBy}
      order by bucket_start ${groupBy}`),
  );
  return rows.map((row) => {
    const group: Partial<Record<UsageGroup, string | null>> = {};
    for (const g of query.groupBy) group[g] = row[g] === '' ? null : String(row[g]);
    return {
      bucketStart: new Date(row.bucket_start as string | Date).getTime(),
      ...(query.byKind ? { kind: String(row.kind) } : {}),
      group,
      totals: totalsOf(row),
    };
  });
}

/** nano-USD as the Costs API's dollars (exact to the nano-dollar as a double). */
export const usd = (nano: number): number => nano / NANO_USD_PER_USD;
