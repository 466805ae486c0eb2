/**
 * OpenAI's Usage API (`/v1/organization/usage/<kind>`) and Costs API (`/v1/organization/costs`),
 * as client.admin.organization.usage.* expects them: time buckets of 1m/1h/1d (costs: 1d) in UTC,
 * `page`/`next_page` cursors over buckets, `group_by`, filters by project, user, key and model.
 * Read from the roll-ups. Plus Keyport's `GET /v1/organization/usage/export` (CSV of the records).
 *
 * Query lists arrive as `group_by[]=a&group_by[]=b` (the SDK), `group_by=a&group_by=b` or
 * `group_by=a,b` (curl): all are accepted.
 */

import { sql } from 'drizzle-orm';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { UsageKind } from '../../billing/usage-event.ts';
import {
  type BucketRow,
  inList,
  rollupRows,
  USAGE_GROUPS,
  type UsageGroup,
  usageBuckets,
  usd,
  WIDTH_MS,
} from '../../billing/usage-query.ts';
import { csvCell } from '../../core/csv.ts';
import { badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { rowsOf } from '../../store/rows.ts';
import type { RollupWidth } from '../../store/schema.ts';
import { pageBuckets, pageStart } from '../http/bucket-pages.ts';
import { listParam, parseWith } from '../http/parse.ts';

/** Per bucket width: OpenAI's default and largest `limit`. */
const LIMITS: Record<RollupWidth, { default: number; max: number }> = {
  '1d': { default: 7, max: 31 },
  '1h': { default: 24, max: 168 },
  '1m': { default: 60, max: 1440 },
};

/** Grouping fields OpenAI accepts that Keyport has one value for (no batch API, one tier, no Agents API). */
const FIXED_GROUPS = {
  batch: false,
  service_tier: 'default',
  api_source: 'unlabeled',
  size: null,
  source: null,
} as const;
type FixedGroup = keyof typeof FIXED_GROUPS;

interface Endpoint {
  path: string;
  kind: UsageKind;
  object: string;
  /** Grouping fields beyond project/user/key/model. */
  extraGroups: FixedGroup[];
  /** The result's measured fields from a bucket row. */
  fields: (row: BucketRow) => Record<string, number>;
}

const ENDPOINTS: Endpoint[] = [
  {
    path: 'completions',
    kind: 'completions',
    object: 'organization.usage.completions.result',
    extraGroups: ['batch', 'service_tier', 'api_source'],
    fields: ({ totals }) => ({
      input_tokens: totals.inputTokens,
      output_tokens: totals.outputTokens,
      input_cached_tokens: totals.cachedTokens,
      input_uncached_tokens: totals.inputTokens - totals.cachedTokens,
      input_audio_tokens: 0,
      output_audio_tokens: 0,
      num_model_requests: totals.modelRequests,
    }),
  },
  {
    path: 'embeddings',
    kind: 'embeddings',
    object: 'organization.usage.embeddings.result',
    extraGroups: [],
    fields: ({ totals }) => ({ input_tokens: totals.inputTokens, num_model_requests: totals.modelRequests }),
  },
  {
    path: 'moderations',
    kind: 'moderations',
    object: 'organization.usage.moderations.result',
    extraGroups: [],
    fields: ({ totals }) => ({ input_tokens: totals.inputTokens, num_model_requests: totals.modelRequests }),
  },
  {
    path: 'images',
    kind: 'images',
    object: 'organization.usage.images.result',
    extraGroups: ['size', 'source'],
    fields: ({ totals }) => ({ images: totals.units, num_model_requests: totals.modelRequests }),
  },
  {
    path: 'audio_speeches',
    kind: 'audio_speeches',
    object: 'organization.usage.audio_speeches.result',
    extraGroups: [],
    fields: ({ totals }) => ({ characters: totals.units, num_model_requests: totals.modelRequests }),
  },
  {
    path: 'audio_transcriptions',
    kind: 'audio_transcriptions',
    object: 'organization.usage.audio_transcriptions.result',
    extraGroups: [],
    fields: ({ totals }) => ({ seconds: totals.units, num_model_requests: totals.modelRequests }),
  },
];

/** The list parameters each API takes (as OpenAI's): any other is refused, not silently ignored. */
const USAGE_LISTS = ['group_by', 'project_ids', 'user_ids', 'api_key_ids', 'models'];
const COST_LISTS = ['group_by', 'project_ids', 'api_key_ids', 'line_items'];

const baseQuery = {
  start_time: z.coerce.number().int().min(0).max(32_503_680_000),
  end_time: z.coerce.number().int().min(1).max(32_503_680_000).optional(),
  page: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).optional(),
};
const usageQuery = z.strictObject({
  ...baseQuery,
  bucket_width: z.enum(['1m', '1h', '1d']).default('1d'),
  batch: z.enum(['true', 'false']).optional(),
});
const costsQuery = z.strictObject({ ...baseQuery, bucket_width: z.enum(['1d']).default('1d') });

interface ParsedQuery {
  width: RollupWidth;
  /** The page's first bucket and the end of the range, ms. */
  from: number;
  end: number;
  limit: number;
  lists: Record<string, string[] | undefined>;
}

/** Validates a usage or costs query and works out the page's buckets. */
function parseQuery(
  request: FastifyRequest,
  schema: typeof usageQuery | typeof costsQuery,
  maxLimit?: number,
) {
  const raw = { ...(request.query as Record<string, unknown>) };
  const lists: Record<string, string[] | undefined> = {};
  for (const name of schema === costsQuery ? COST_LISTS : USAGE_LISTS) {
    lists[name] = listParam(raw, name);
    delete raw[name];
    delete raw[`${name}[]`];
  }
  const query = parseWith(schema, raw, 'query');
  const width = query.bucket_width as RollupWidth;
  const step = WIDTH_MS[width];
  const limits = maxLimit ? { default: 7, max: maxLimit } : LIMITS[width];
  const limit = query.limit ?? limits.default;
  if (limit > limits.max) {
    throw badRequest(`Invalid 'limit': at most ${limits.max} buckets of ${width}.`, 'limit');
  }
  const start = Math.floor((query.start_time * 1000) / step) * step;
  const end = query.end_time !== undefined ? query.end_time * 1000 : Date.now();
  if (query.end_time !== undefined && query.end_time <= query.start_time) {
    throw badRequest("Invalid 'end_time': it must be after start_time.", 'end_time');
  }
  const from = pageStart(query.page, start, step);
  return { parsed: { width, from, end, limit, lists } satisfies ParsedQuery, query };
}

/** The page's bucket starts, and the cursor of the next page (null: none). */
const pageOf = ({ width, from, end, limit }: ParsedQuery) => pageBuckets(from, end, WIDTH_MS[width], limit);

function groupsOf(lists: ParsedQuery['lists'], extra: readonly string[]) {
  const requested = lists.group_by ?? [];
  const allowed = [...USAGE_GROUPS, ...extra];
  const unknown = requested.find((g) => !allowed.includes(g));
  if (unknown) {
    throw badRequest(`Invalid 'group_by': ${unknown} (one or more of ${allowed.join(', ')}).`, 'group_by');
  }
  return {
    dimensions: USAGE_GROUPS.filter((g) => requested.includes(g)) as UsageGroup[],
    fixed: extra.filter((g) => requested.includes(g)) as string[],
  };
}

export function usageRoutes(app: FastifyInstance, { store }: Services): void {
  for (const endpoint of ENDPOINTS) {
    app.get(`/usage/${endpoint.path}`, async (request) => {
      const { parsed, query } = parseQuery(request, usageQuery);
      const { dimensions, fixed } = groupsOf(parsed.lists, endpoint.extraGroups);
      const { starts, to, nextPage } = pageOf(parsed);
      // Keyport proxies no Batch API: batch=true has no usage.
      const rows =
        'batch' in query && query.batch === 'true'
          ? []
          : await usageBuckets(store.db, {
              organizationId: request.admin.organizationId,
              width: parsed.width,
              from: parsed.from,
              to,
              kinds: [endpoint.kind],
              groupBy: dimensions,
              projectIds: parsed.lists.project_ids,
              userIds: parsed.lists.user_ids,
              apiKeyIds: parsed.lists.api_key_ids,
              models: parsed.lists.models,
            });
      const byBucket = bucketed(rows);
      const grouped = (name: string) => endpoint.extraGroups.includes(name as FixedGroup);
      return {
        object: 'page' as const,
        data: starts.map((start) => ({
          object: 'bucket' as const,
          start_time: start / 1000,
          end_time: (start + WIDTH_MS[parsed.width]) / 1000,
          results: (byBucket.get(start) ?? [])
            .filter((row) => row.totals.requests > 0)
            .map((row) => ({
              object: endpoint.object,
              ...endpoint.fields(row),
              project_id: row.group.project_id ?? null,
              user_id: row.group.user_id ?? null,
              api_key_id: row.group.api_key_id ?? null,
              model: row.group.model ?? null,
              ...Object.fromEntries(
                endpoint.extraGroups
                  .filter(grouped)
                  .map((g) => [g, fixed.includes(g) ? FIXED_GROUPS[g] : null]),
              ),
            })),
        })),
        has_more: nextPage !== null,
        next_page: nextPage,
      };
    });
  }

  app.get('/costs', async (request) => {
    const { parsed } = parseQuery(request, costsQuery, 180);
    const requested = parsed.lists.group_by ?? [];
    const allowed = ['project_id', 'user_id', 'api_key_id', 'line_item', 'api_source'];
    const unknown = requested.find((g) => !allowed.includes(g));
    if (unknown)
      throw badRequest(`Invalid 'group_by': ${unknown} (one or more of ${allowed.join(', ')}).`, 'group_by');
    const dimensions = USAGE_GROUPS.filter((g) => requested.includes(g) && g !== 'model') as UsageGroup[];
    const byLineItem = requested.includes('line_item') || parsed.lists.line_items !== undefined;
    const { starts, to, nextPage } = pageOf(parsed);
    // Line items are per model and kind: group by those too, then split each row into its items.
    const rows = await costRows(store.db, request.admin.organizationId, parsed, to, dimensions, byLineItem);
    const byBucket = new Map<number, Record<string, unknown>[]>();
    const push = (start: number, result: Record<string, unknown>) => {
      const list = byBucket.get(start) ?? [];
      list.push(result);
      byBucket.set(start, list);
    };
    // With line items: one result per bucket, group and line item (one per group when filtered by
    // line items but not grouped by them). Rows of several kinds can hold the same item (a model's
    // `input` from chat and from embeddings), so items are summed in nano-USD before the dollars.
    const byItem = requested.includes('line_item');
    const items = new Map<string, { result: Record<string, unknown>; nano: number; quantity: number }>();
    for (const row of rows) {
      const base = {
        object: 'organization.costs.result' as const,
        project_id: row.group.project_id ?? null,
        ...(dimensions.includes('user_id') ? { user_id: row.group.user_id ?? null } : {}),
        ...(dimensions.includes('api_key_id') ? { api_key_id: row.group.api_key_id ?? null } : {}),
        ...(requested.includes('api_source') ? { api_source: 'unlabeled' } : {}),
      };
      if (!byLineItem) {
        push(row.bucketStart, {
          ...base,
          amount: { value: usd(row.cost), currency: 'usd' },
          line_item: null,
        });
        continue;
      }
      for (const item of lineItems(row)) {
        if (parsed.lists.line_items && !parsed.lists.line_items.includes(item.name)) continue;
        const name = byItem ? item.name : null;
        const key = JSON.stringify([row.bucketStart, row.group, name]);
        const seen = items.get(key);
        if (seen) {
          seen.nano += item.nano;
          seen.quantity += item.quantity;
          continue;
        }
        const result = {
          ...base,
          amount: { value: 0, currency: 'usd' },
          line_item: name,
          quantity: null as number | null,
          quantity_unit: byItem ? item.unit : null,
        };
        items.set(key, { result, nano: item.nano, quantity: item.quantity });
        push(row.bucketStart, result);
      }
    }
    for (const { result, nano, quantity } of items.values()) {
      result.amount = { value: usd(nano), currency: 'usd' };
      result.quantity = byItem ? quantity : null;
    }
    return {
      object: 'page' as const,
      data: starts.map((start) => ({
        object: 'bucket' as const,
        start_time: start / 1000,
        end_time: (start + WIDTH_MS[parsed.width]) / 1000,
        results: byBucket.get(start) ?? [],
      })),
      has_more: nextPage !== null,
      next_page: nextPage,
    };
  });

  app.get('/usage/export', async (request, reply) => exportCsv(request, reply, store.db));
}

function bucketed(rows: BucketRow[]): Map<number, BucketRow[]> {
  const map = new Map<number, BucketRow[]>();
  for (const row of rows) {
    const list = map.get(row.bucketStart);
    if (list) list.push(row);
    else map.set(row.bucketStart, [row]);
  }
  return map;
}

interface CostRow {
  bucketStart: number;
  group: Partial<Record<UsageGroup, string | null>>;
  model: string;
  kind: string;
  uncached: number;
  cached: number;
  output: number;
  units: number;
  costInput: number;
  costCached: number;
  costOutput: number;
  costUnits: number;
  cost: number;
}

async function costRows(
  db: Services['store']['db'],
  organizationId: string,
  parsed: ParsedQuery,
  to: number,
  dimensions: UsageGroup[],
  byLineItem: boolean,
): Promise<CostRow[]> {
  const columns = [...dimensions, ...(byLineItem ? ['model', 'kind'] : [])].map((c) => sql.raw(c));
  const extra = columns.length > 0 ? sql`, ${sql.join(columns, sql`, `)}` : sql``;
  const source = rollupRows(organizationId, [{ width: '1d', from: parsed.from, to }]);
  const filters = [sql`true`];
  if (parsed.lists.project_ids) filters.push(inList(sql`project_id`, parsed.lists.project_ids));
  if (parsed.lists.api_key_ids) filters.push(inList(sql`api_key_id`, parsed.lists.api_key_ids));
  const rows = rowsOf<Record<string, string | number | Date>>(
    await db.execute(sql`
      select bucket_start ${extra},
             sum(input_tokens - cached_tokens) as uncached, sum(cached_tokens) as cached,
             sum(output_tokens) as output, sum(units) as units,
             sum(cost_input_nano_usd) as cost_input, sum(cost_cached_nano_usd) as cost_cached,
             sum(cost_output_nano_usd) as cost_output, sum(cost_units_nano_usd) as cost_units,
             sum(requests) as requests
      from (${source}) as u
      where ${sql.join(filters, sql` and `)}
      group by bucket_start ${extra}
      order by bucket_start ${extra}`),
  );
  return rows.map((row) => {
    const group: Partial<Record<UsageGroup, string | null>> = {};
    for (const g of dimensions) group[g] = row[g] === '' ? null : String(row[g]);
    const costInput = Number(row.cost_input);
    const costCached = Number(row.cost_cached);
    const costOutput = Number(row.cost_output);
    const costUnits = Number(row.cost_units);
    return {
      bucketStart: new Date(row.bucket_start as string | Date).getTime(),
      group,
      model: String(row.model ?? ''),
      kind: String(row.kind ?? ''),
      uncached: Number(row.uncached),
      cached: Number(row.cached),
      output: Number(row.output),
      units: Number(row.units),
      costInput,
      costCached,
      costOutput,
      costUnits,
      cost: costInput + costCached + costOutput + costUnits,
    };
  });
}

const UNIT_OF_KIND: Record<string, { item: string; unit: string }> = {
  images: { item: 'images', unit: 'images' },
  audio_speeches: { item: 'characters', unit: 'characters' },
  audio_transcriptions: { item: 'seconds', unit: 'duration_seconds' },
};

/** A cost row's line items (`gpt-4o, input`, `gpt-4o, cached input`, …), those used only. */
export function lineItems(row: CostRow): { name: string; quantity: number; unit: string; nano: number }[] {
  const model = row.model || 'unknown model';
  const unit = UNIT_OF_KIND[row.kind] ?? { item: 'units', unit: 'units' };
  return [
    { name: `${model}, input`, quantity: row.uncached, unit: 'tokens', nano: row.costInput },
    { name: `${model}, cached input`, quantity: row.cached, unit: 'tokens', nano: row.costCached },
    { name: `${model}, output`, quantity: row.output, unit: 'tokens', nano: row.costOutput },
    { name: `${model}, ${unit.item}`, quantity: row.units, unit: unit.unit, nano: row.costUnits },
  ].filter((item) => item.quantity > 0 || item.nano > 0);
}

// ---- CSV export ---------------------------------------------------------------------------------

const exportQuery = z.strictObject({
  start_time: z.coerce.number().int().min(0),
  end_time: z.coerce.number().int().min(1).optional(),
});

const CSV_COLUMNS = [
  'request_id',
  'created_at',
  'project_id',
  'api_key_id',
  'user_id',
  'service_account_id',
  'method',
  'endpoint',
  'model',
  'kind',
  'status',
  'input_tokens',
  'cached_tokens',
  'output_tokens',
  'units',
  'cost_usd',
  'latency_ms',
  'streamed',
  'estimated',
] as const;

/** Every usage record of the range as CSV, streamed page by page (keyset on time and request id). */
async function exportCsv(request: FastifyRequest, reply: FastifyReply, db: Services['store']['db']) {
  const raw = { ...(request.query as Record<string, unknown>) };
  const projectIds = listParam(raw, 'project_ids');
  const apiKeyIds = listParam(raw, 'api_key_ids');
  for (const name of ['project_ids', 'api_key_ids']) {
    delete raw[name];
    delete raw[`${name}[]`];
  }
  const query = parseWith(exportQuery, raw, 'query');
  const start = new Date(query.start_time * 1000).toISOString();
  const end = new Date((query.end_time ?? Math.ceil(Date.now() / 1000) + 1) * 1000).toISOString();
  const organizationId = request.admin.organizationId;
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/csv; charset=utf-8',
    'content-disposition': `attachment; filename="usage-${query.start_time}-${query.end_time ?? 'now'}.csv"`,
    'x-request-id': request.id,
  });
  res.write(`${CSV_COLUMNS.join(',')}\n`);
  let after: { at: string; id: string } | undefined;
  try {
    for (;;) {
      const filters = [
        sql`organization_id = ${organizationId}`,
        sql`created_at >= ${start}::timestamptz`,
        sql`created_at < ${end}::timestamptz`,
      ];
      if (projectIds) filters.push(inList(sql`project_id`, projectIds));
      if (apiKeyIds) filters.push(inList(sql`api_key_id`, apiKeyIds));
      if (after) filters.push(sql`(created_at, request_id) > (${after.at}::timestamptz, ${after.id})`);
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select request_id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at,
                 created_at as at, project_id, api_key_id, user_id, service_account_id, method, endpoint,
                 model, kind, status, input_tokens, cached_tokens, output_tokens, units,
                 cost_nano_usd, latency_ms, streamed, estimated
          from usage_events where ${sql.join(filters, sql` and `)}
          order by created_at, request_id limit 5000`),
      );
      if (rows.length === 0) break;
      let chunk = '';
      for (const row of rows) {
        chunk += `${CSV_COLUMNS.map((column) =>
          csvCell(column === 'cost_usd' ? usd(Number(row.cost_nano_usd)).toFixed(9) : row[column]),
        ).join(',')}\n`;
      }
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
      const last = rows[rows.length - 1]!;
      after = { at: new Date(last.at as string | Date).toISOString(), id: String(last.request_id) };
      if (rows.length < 5000 || res.destroyed) break;
    }
    res.end();
  } catch (error) {
    request.log.error({ err: error }, 'usage export failed');
    res.destroy(error as Error);
  }
}
