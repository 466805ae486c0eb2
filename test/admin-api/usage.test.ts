/**
 * The Usage API (`/v1/organization/usage/<kind>`), the Costs API (`/v1/organization/costs`) and
 * Keyport's CSV export (`/v1/organization/usage/export`), through the official SDK where it can
 * express the request: every bucket checked against sums computed here from the raw events
 * (property tests), bucket edges, pagination and validation, one kind per endpoint, isolation
 * between organizations, real gateway traffic reported back, and the CSV.
 */
import fc from 'fast-check';
import OpenAI, { type APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USAGE_KINDS, type UsageEvent, type UsageKind } from '../../src/billing/usage-event.ts';
import { sumUsage, WIDTH_MS } from '../../src/billing/usage-query.ts';
import { compactRollups } from '../../src/billing/usage-store.ts';
import {
  adminRequest,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
  expectOk,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { storeUsage, usageEvent } from '../helpers/usage-events.ts';

type Width = '1m' | '1h' | '1d';
type Path =
  | 'completions'
  | 'embeddings'
  | 'moderations'
  | 'images'
  | 'audio_speeches'
  | 'audio_transcriptions';
type Result = Record<string, unknown>;
interface Bucket {
  object: 'bucket';
  start_time: number;
  end_time: number;
  results: Result[];
}
interface Page {
  object: 'page';
  data: Bucket[];
  has_more: boolean;
  next_page: string | null;
}
type Query = Record<string, unknown>;

const MINUTE = WIDTH_MS['1m'];
const HOUR = WIDTH_MS['1h'];
const DAY = WIDTH_MS['1d'];
/** OpenAI's default and largest `limit` per bucket width. */
const LIMITS: Record<Width, { default: number; max: number }> = {
  '1d': { default: 7, max: 31 },
  '1h': { default: 24, max: 168 },
  '1m': { default: 60, max: 1440 },
};
const PATHS: Path[] = [
  'completions',
  'embeddings',
  'moderations',
  'images',
  'audio_speeches',
  'audio_transcriptions',
];
/** The grouping fields each endpoint has beyond project/user/key/model, with their one value. */
const FIXED_GROUPS: Record<Path, Record<string, unknown>> = {
  completions: { batch: false, service_tier: 'default', api_source: 'unlabeled' },
  embeddings: {},
  moderations: {},
  images: { size: null, source: null },
  audio_speeches: {},
  audio_transcriptions: {},
};
const UNIT_KINDS: readonly UsageKind[] = ['images', 'audio_speeches', 'audio_transcriptions'];
/** The name and unit of a kind's unit line item. */
const UNIT_ITEM: Record<UsageKind, { item: string; unit: string }> = {
  completions: { item: 'units', unit: 'units' },
  embeddings: { item: 'units', unit: 'units' },
  moderations: { item: 'units', unit: 'units' },
  other: { item: 'units', unit: 'units' },
  images: { item: 'images', unit: 'images' },
  audio_speeches: { item: 'characters', unit: 'characters' },
  audio_transcriptions: { item: 'seconds', unit: 'duration_seconds' },
};
/** A Kolkata midnight is not a UTC one (+05:30): day buckets must still be UTC days. */
const TIME_ZONE = 'Asia/Kolkata';

const sec = (ms: number) => Math.floor(ms / 1000);
const bucketOf = (ms: number, width: number) => Math.floor(ms / width) * width;

/** The SDK's method for each endpoint. */
function usageCall(client: OpenAI, path: Path, query: Query): Promise<Page> {
  const usage = client.admin.organization.usage;
  const q = query as never;
  const call = {
    completions: () => usage.completions(q),
    embeddings: () => usage.embeddings(q),
    moderations: () => usage.moderations(q),
    images: () => usage.images(q),
    audio_speeches: () => usage.audioSpeeches(q),
    audio_transcriptions: () => usage.audioTranscriptions(q),
  }[path];
  return call() as unknown as Promise<Page>;
}

const costsCall = (client: OpenAI, query: Query) =>
  client.admin.organization.usage.costs(query as never) as unknown as Promise<Page>;

/** Every page of a query, following next_page; checks each page's cursor and size. */
async function allPages(fetchPage: (page: string | undefined) => Promise<Page>, limit: number) {
  const buckets: Bucket[] = [];
  let page: string | undefined;
  for (let n = 1; ; n++) {
    const response = await fetchPage(page);
    expect(response.object).toBe('page');
    expect(response.has_more).toBe(response.next_page !== null);
    expect(response.data.length).toBeLessThanOrEqual(limit);
    buckets.push(...response.data);
    if (!response.has_more) return { buckets, pages: n };
    // Only the last page may be short.
    expect(response.data.length).toBe(limit);
    expect(n).toBeLessThan(2000);
    page = response.next_page ?? undefined;
  }
}

// ---- the model: sums computed from the raw events ------------------------------------------------

/** user_id in the Usage API: the key owner's user, or the service account. */
const userOf = (e: UsageEvent) => e.userId ?? e.serviceAccountId ?? null;
const isModelRequest = (e: UsageEvent) =>
  !(e.status >= 400 && e.inputTokens + e.outputTokens + e.units === 0);
const sum = (events: UsageEvent[], f: (e: UsageEvent) => number) => events.reduce((s, e) => s + f(e), 0);
const lineCost = (e: UsageEvent) =>
  e.costInputNanoUsd + e.costCachedNanoUsd + e.costOutputNanoUsd + e.costUnitsNanoUsd;

interface Filters {
  project_ids?: string[] | undefined;
  api_key_ids?: string[] | undefined;
  models?: string[] | undefined;
  user_ids?: string[] | undefined;
}

function passes(e: UsageEvent, f: Filters): boolean {
  const inList = (list: string[] | undefined, value: string | null) =>
    list === undefined || (value !== null && list.includes(value));
  return (
    inList(f.project_ids, e.projectId) &&
    inList(f.api_key_ids, e.apiKeyId) &&
    inList(f.models, e.model) &&
    inList(f.user_ids, userOf(e))
  );
}

const DIMENSIONS = {
  project_id: (e: UsageEvent) => e.projectId,
  user_id: userOf,
  api_key_id: (e: UsageEvent) => e.apiKeyId,
  model: (e: UsageEvent) => e.model,
} as const;
type Dimension = keyof typeof DIMENSIONS;

function groupEvents(events: UsageEvent[], dims: readonly Dimension[]) {
  const groups = new Map<string, { values: Record<string, string | null>; events: UsageEvent[] }>();
  for (const e of events) {
    const values = Object.fromEntries(dims.map((d) => [d, DIMENSIONS[d](e)]));
    const key = JSON.stringify(dims.map((d) => values[d]));
    const group = groups.get(key);
    if (group) group.events.push(e);
    else groups.set(key, { values, events: [e] });
  }
  return [...groups.values()];
}

function usageFields(path: Path, events: UsageEvent[]): Result {
  const requests = events.filter(isModelRequest).length;
  const input = sum(events, (e) => e.inputTokens);
  const units = sum(events, (e) => e.units);
  switch (path) {
    case 'completions': {
      const cached = sum(events, (e) => e.cachedTokens);
      return {
        input_tokens: input,
        output_tokens: sum(events, (e) => e.outputTokens),
        input_cached_tokens: cached,
        input_uncached_tokens: input - cached,
        input_audio_tokens: 0,
        output_audio_tokens: 0,
        num_model_requests: requests,
      };
    }
    case 'embeddings':
    case 'moderations':
      return { input_tokens: input, num_model_requests: requests };
    case 'images':
      return { images: units, num_model_requests: requests };
    case 'audio_speeches':
      return { characters: units, num_model_requests: requests };
    case 'audio_transcriptions':
      return { seconds: units, num_model_requests: requests };
  }
}

/** What one usage bucket must hold. */
function expectedUsageBucket(
  events: UsageEvent[],
  path: Path,
  width: Width,
  start: number,
  groupBy: readonly string[],
  filters: Filters,
): Result[] {
  const dims = (Object.keys(DIMENSIONS) as Dimension[]).filter((d) => groupBy.includes(d));
  const inBucket = events.filter(
    (e) =>
      e.kind === path && bucketOf(e.createdAt.getTime(), WIDTH_MS[width]) === start && passes(e, filters),
  );
  return groupEvents(inBucket, dims).map(({ values, events: group }) => ({
    object: `organization.usage.${path}.result`,
    ...usageFields(path, group),
    project_id: values.project_id ?? null,
    user_id: values.user_id ?? null,
    api_key_id: values.api_key_id ?? null,
    model: values.model ?? null,
    ...Object.fromEntries(
      Object.entries(FIXED_GROUPS[path]).map(([g, value]) => [g, groupBy.includes(g) ? value : null]),
    ),
  }));
}

const usageKey = (r: Result): string => JSON.stringify([r.project_id, r.user_id, r.api_key_id, r.model]);
const byKey =
  <T>(key: (r: T) => string) =>
  (results: T[]): T[] =>
    [...results].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));

/** A line item of the Costs API, from raw events. */
interface Item {
  name: string;
  quantity: number;
  unit: string;
  nano: number;
}

function itemsOf(events: UsageEvent[]): Item[] {
  const items = new Map<string, Item>();
  const add = (name: string, unit: string, quantity: number, nano: number) => {
    const item = items.get(name);
    if (item) {
      item.quantity += quantity;
      item.nano += nano;
    } else items.set(name, { name, unit, quantity, nano });
  };
  for (const e of events) {
    const model = e.model ?? 'unknown model';
    add(`${model}, input`, 'tokens', e.inputTokens - e.cachedTokens, e.costInputNanoUsd);
    add(`${model}, cached input`, 'tokens', e.cachedTokens, e.costCachedNanoUsd);
    add(`${model}, output`, 'tokens', e.outputTokens, e.costOutputNanoUsd);
    const unit = UNIT_ITEM[e.kind];
    add(`${model}, ${unit.item}`, unit.unit, e.units, e.costUnitsNanoUsd);
  }
  return [...items.values()].filter((item) => item.quantity > 0 || item.nano > 0);
}

interface CostsFilters {
  project_ids?: string[] | undefined;
  api_key_ids?: string[] | undefined;
  line_items?: string[] | undefined;
}

/**
 * A costs bucket, normalized: group fields (null when not grouped), the line item (null when not
 * grouped by it) and the amount in nano-USD.
 */
interface NormalCost {
  project_id: unknown;
  user_id: unknown;
  api_key_id: unknown;
  api_source: unknown;
  line_item: unknown;
  quantity: unknown;
  quantity_unit: unknown;
  nano: number;
  currency: unknown;
}

function expectedCostsBucket(
  events: UsageEvent[],
  start: number,
  groupBy: readonly string[],
  filters: CostsFilters,
): NormalCost[] {
  const dims = (['project_id', 'user_id', 'api_key_id'] as const).filter((d) => groupBy.includes(d));
  const inBucket = events.filter(
    (e) =>
      bucketOf(e.createdAt.getTime(), DAY) === start &&
      passes(e, { project_ids: filters.project_ids, api_key_ids: filters.api_key_ids }),
  );
  const base = (values: Record<string, string | null>) => ({
    project_id: values.project_id ?? null,
    user_id: values.user_id ?? null,
    api_key_id: values.api_key_id ?? null,
    api_source: groupBy.includes('api_source') ? 'unlabeled' : null,
    currency: 'usd',
  });
  const out: NormalCost[] = [];
  for (const { values, events: group } of groupEvents(inBucket, dims)) {
    if (!groupBy.includes('line_item') && filters.line_items === undefined) {
      out.push({
        ...base(values),
        line_item: null,
        quantity: null,
        quantity_unit: null,
        nano: sum(group, lineCost),
      });
      continue;
    }
    const items = itemsOf(group).filter((i) => !filters.line_items || filters.line_items.includes(i.name));
    if (groupBy.includes('line_item')) {
      for (const item of items)
        out.push({
          ...base(values),
          line_item: item.name,
          quantity: item.quantity,
          quantity_unit: item.unit,
          nano: item.nano,
        });
    } else if (items.length > 0) {
      out.push({
        ...base(values),
        line_item: null,
        quantity: null,
        quantity_unit: null,
        nano: items.reduce((s, i) => s + i.nano, 0),
      });
    }
  }
  return out;
}

function normalCost(r: Result): NormalCost {
  const amount = r.amount as { value: number; currency: string };
  expect(typeof amount.value).toBe('number');
  // A whole number of nano-dollars, as the double nearest to it (no drift from summing dollars).
  expect(amount.value).toBe(Math.round(amount.value * 1e9) / 1e9);
  expect(r.object).toBe('organization.costs.result');
  return {
    project_id: r.project_id ?? null,
    user_id: r.user_id ?? null,
    api_key_id: r.api_key_id ?? null,
    api_source: r.api_source ?? null,
    line_item: r.line_item ?? null,
    quantity: r.quantity ?? null,
    quantity_unit: r.quantity_unit ?? null,
    nano: Math.round(amount.value * 1e9),
    currency: amount.currency,
  };
}
const costKey = (r: { project_id?: unknown; user_id?: unknown; api_key_id?: unknown; line_item?: unknown }) =>
  JSON.stringify([r.project_id, r.user_id, r.api_key_id, r.line_item]);

// ---- random usage -----------------------------------------------------------------------------

/** A Monday, midnight UTC; random usage falls in the three days from here. */
const BASE = Date.UTC(2025, 2, 10);
const SPAN = 3 * DAY;
const PROJECTS = ['proj_p1', 'proj_p2', null] as const;
const KEYS = ['key_k1', 'key_k2', 'key_k3'] as const;
/** [userId, serviceAccountId]: a user's key, a service account's key, neither. */
const OWNERS = [
  ['user_u1', null],
  ['user_u2', null],
  [null, 'svc_s1'],
  [null, null],
] as const;
const MODELS = ['model-a', 'model-b', null] as const;

const offsetArb = fc.oneof(
  fc.integer({ min: 0, max: SPAN - 1 }),
  // Dense: the first 90 minutes, so minute buckets hold several events.
  fc.integer({ min: 0, max: 90 * MINUTE - 1 }),
  // On a boundary, or the last millisecond before one.
  fc.integer({ min: 0, max: 90 }).map((m) => m * MINUTE),
  fc.integer({ min: 0, max: 71 }).map((h) => h * HOUR),
  fc.integer({ min: 0, max: 2 }).map((d) => d * DAY),
  fc.integer({ min: 1, max: 72 }).map((h) => h * HOUR - 1),
  fc.integer({ min: 1, max: 90 }).map((m) => m * MINUTE - 1),
);

const amount = (max: number) => fc.oneof(fc.constant(0), fc.integer({ min: 1, max }));

const rawEventArb = fc.record({
  offset: offsetArb,
  project: fc.constantFrom(...PROJECTS),
  key: fc.constantFrom(...KEYS),
  owner: fc.constantFrom(...OWNERS),
  model: fc.constantFrom(...MODELS),
  kind: fc.constantFrom(...USAGE_KINDS),
  status: fc.constantFrom(200, 200, 200, 200, 400, 404, 429, 500, 502),
  /** A failed request that used nothing (not a model request). */
  empty: fc.boolean(),
  input: amount(200_000),
  cachedPercent: fc.integer({ min: 0, max: 100 }),
  output: amount(50_000),
  units: amount(5_000),
  costs: fc.tuple(amount(40_000_000), amount(40_000_000), amount(40_000_000), amount(40_000_000)),
});

/** Realistic per kind: tokens for token endpoints, units for images and audio, costs where used. */
function toEvent(organizationId: string, raw: RawEvent): UsageEvent {
  const unitKind = UNIT_KINDS.includes(raw.kind);
  const empty = raw.status >= 400 && raw.empty;
  const input = empty || unitKind ? 0 : raw.input;
  const cached = raw.kind === 'completions' ? Math.floor((input * raw.cachedPercent) / 100) : 0;
  const output = empty || !['completions', 'other'].includes(raw.kind) ? 0 : raw.output;
  const units = empty || !unitKind ? 0 : raw.units;
  const [ci, cc, co, cu] = raw.costs;
  const costInputNanoUsd = input - cached > 0 ? ci : 0;
  const costCachedNanoUsd = cached > 0 ? cc : 0;
  const costOutputNanoUsd = output > 0 ? co : 0;
  const costUnitsNanoUsd = units > 0 ? cu : 0;
  return usageEvent({
    organizationId,
    createdAt: new Date(BASE + raw.offset),
    projectId: raw.project,
    apiKeyId: raw.key,
    userId: raw.owner[0],
    serviceAccountId: raw.owner[1],
    model: raw.model,
    kind: raw.kind,
    endpoint: `/v1/${raw.kind}`,
    status: raw.status,
    inputTokens: input,
    cachedTokens: cached,
    outputTokens: output,
    units,
    costNanoUsd: costInputNanoUsd + costCachedNanoUsd + costOutputNanoUsd + costUnitsNanoUsd,
    costInputNanoUsd,
    costCachedNanoUsd,
    costOutputNanoUsd,
    costUnitsNanoUsd,
  });
}
type RawEvent = typeof rawEventArb extends fc.Arbitrary<infer T> ? T : never;

const storageArb = fc.record({
  batches: fc.integer({ min: 1, max: 4 }),
  /** Which events are sent again afterwards (a retried batch, a replayed journal). */
  replay: fc.array(fc.boolean(), { minLength: 80, maxLength: 80 }),
  /** The first batch carries its first event twice. */
  twiceInBatch: fc.boolean(),
  /**
   * After which batches (and after the replay) hour and day roll-ups are compacted: reads must be
   * exact whether none, some or all hours are, and when hours compacted before get new usage.
   */
  compactAfter: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
});
type Storage = typeof storageArb extends fc.Arbitrary<infer T> ? T : never;

/** Stores the events in batches, some twice; every event must be stored exactly once. */
async function storeRandomly(t: TestApp, events: UsageEvent[], storage: Storage) {
  const db = t.services.store.db;
  const size = Math.ceil(events.length / storage.batches) || 1;
  let inserted = 0;
  for (let i = 0, n = 0; i < events.length; i += size, n++) {
    const batch = events.slice(i, i + size);
    if (i === 0 && storage.twiceInBatch && batch.length > 0) batch.push(batch[0]!);
    inserted += await storeUsage(db, batch);
    if (storage.compactAfter[n]) await compactRollups(db);
  }
  expect(inserted).toBe(events.length);
  const again = events.filter((_, i) => storage.replay[i % storage.replay.length]);
  expect(await storeUsage(db, [...again].reverse())).toBe(0);
  if (storage.compactAfter[4]) await compactRollups(db);
}

const filterArb = <T extends string>(values: T[]) =>
  fc.option(fc.subarray(values, { minLength: 1 }), { nil: undefined });

const usageQueryArb = fc.record({
  path: fc.constantFrom(...PATHS),
  width: fc.constantFrom<Width>('1m', '1h', '1d'),
  /** Where the range starts, as a fraction of the span (per width). */
  at: fc.integer({ min: 0, max: 1_000_000 }),
  buckets: fc.integer({ min: 1, max: 10_000 }),
  paging: fc.constantFrom('one page', 'pages', 'default limit'),
  divisor: fc.integer({ min: 2, max: 4 }),
  groupBy: fc.shuffledSubarray(['project_id', 'user_id', 'api_key_id', 'model']),
  fixedGroups: fc.shuffledSubarray(['batch', 'service_tier', 'api_source', 'size', 'source']),
  project_ids: filterArb(['proj_p1', 'proj_p2', 'proj_none']),
  api_key_ids: filterArb(['key_k1', 'key_k2', 'key_k3', 'key_none']),
  models: filterArb(['model-a', 'model-b', 'model-none']),
  user_ids: filterArb(['user_u1', 'user_u2', 'svc_s1', 'user_none']),
  batchFalse: fc.boolean(),
});

/** Where random ranges start (ms) and how many buckets they have at most, per width. */
const RANGES: Record<Width, { from: number; length: number; maxBuckets: number }> = {
  '1m': { from: BASE - 10 * MINUTE, length: 110 * MINUTE, maxBuckets: 150 },
  '1h': { from: BASE - 3 * HOUR, length: SPAN + 3 * HOUR, maxBuckets: 80 },
  '1d': { from: BASE - DAY, length: SPAN + DAY, maxBuckets: 5 },
};

/** start_time (often not aligned), the aligned end_time, the bucket starts and the page limit. */
function rangeOf(
  width: Width,
  at: number,
  buckets: number,
  paging: string,
  divisor: number,
  limits = LIMITS[width],
) {
  const w = WIDTH_MS[width];
  const range = RANGES[width];
  const startTime = sec(range.from + Math.floor((at / 1_000_000) * range.length));
  const first = bucketOf(startTime * 1000, w);
  const n = 1 + ((buckets - 1) % range.maxBuckets);
  const starts = Array.from({ length: n }, (_, i) => first + i * w);
  const endTime = (first + n * w) / 1000;
  const limit = paging === 'one page' ? n : paging === 'pages' ? Math.ceil(n / divisor) : undefined;
  return { startTime, endTime, starts, limit, pageSize: limit ?? limits.default };
}

const costsQueryArb = fc.record({
  at: fc.integer({ min: 0, max: 1_000_000 }),
  buckets: fc.integer({ min: 1, max: 10_000 }),
  paging: fc.constantFrom('one page', 'pages', 'default limit'),
  divisor: fc.integer({ min: 2, max: 3 }),
  groupBy: fc.shuffledSubarray(['project_id', 'user_id', 'api_key_id', 'line_item', 'api_source']),
  project_ids: filterArb(['proj_p1', 'proj_p2', 'proj_none']),
  api_key_ids: filterArb(['key_k1', 'key_k2', 'key_k3', 'key_none']),
  line_items: fc.option(
    fc.subarray(
      [
        'model-a, input',
        'model-a, cached input',
        'model-b, output',
        'unknown model, input',
        'model-a, images',
        'model-b, characters',
        'unknown model, seconds',
        'model-b, units',
        'model-c, input',
      ],
      { minLength: 1 },
    ),
    { nil: undefined, freq: 3 },
  ),
});

const sumRangeArb = fc.record({
  a: fc.integer({ min: -90, max: SPAN / MINUTE + 90 }),
  b: fc.integer({ min: -90, max: SPAN / MINUTE + 90 }),
  project: fc.option(fc.constantFrom('proj_p1', 'proj_p2'), { nil: undefined }),
  key: fc.option(fc.constantFrom(...KEYS), { nil: undefined }),
  kinds: fc.option(fc.subarray([...USAGE_KINDS], { minLength: 1 }), { nil: undefined }),
});

/** A CSV document as rows of cells (RFC 4180). */
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
    } else if (c === '"' && cell === '') quoted = true;
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

const CSV_HEADER = [
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
];

describe.each(backends)('Usage and Costs APIs (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let orgs = 0;

  beforeAll(async () => {
    t = await createTestApp({
      backend,
      config: {
        billingTimeZone: TIME_ZONE,
        usageJournal: 'off',
        prices: [
          { model: 'mock-gpt-4o', input: 2.5, output: 10 },
          { model: 'mock-embedding-small', input: 0.02, output: 0 },
        ],
      },
    });
    client = t.sdk();
  });
  afterAll(() => t?.close());

  /** A new organization with its admin key: the usage a test stores there is all it can see. */
  async function freshOrg() {
    const other = await createSecondOrganization(t, `Usage org ${++orgs}`);
    return {
      id: other.organization.id,
      projectId: other.project.id,
      secret: other.adminKey.secret,
      client: t.sdk({ adminKey: other.adminKey.secret }),
    };
  }
  type Org = Awaited<ReturnType<typeof freshOrg>>;

  const event = (org: Org, fields: Partial<UsageEvent> = {}) =>
    usageEvent({ organizationId: org.id, apiKeyId: 'key_t', projectId: org.projectId, ...fields });
  const store = (events: UsageEvent[]) => storeUsage(t.services.store.db, events);

  /** The completions buckets of [start, end) at `width`, all on one page. */
  async function completions(org: Org, width: Width, start: number, end: number, query: Query = {}) {
    const page = await usageCall(org.client, 'completions', {
      start_time: sec(start),
      end_time: sec(end),
      bucket_width: width,
      limit: Math.ceil((end - start) / WIDTH_MS[width]),
      ...query,
    });
    expect(page.has_more).toBe(false);
    return page.data;
  }
  const inputTokens = (bucket: Bucket | undefined) =>
    (bucket?.results ?? []).reduce((s, r) => s + (r.input_tokens as number), 0);

  // ---- 1. property tests -------------------------------------------------------------------

  it('every usage bucket equals the sums of the raw events (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(rawEventArb, { maxLength: 70, size: 'max' }),
        storageArb,
        fc.array(usageQueryArb, { minLength: 3, maxLength: 5 }),
        fc.array(sumRangeArb, { minLength: 1, maxLength: 3 }),
        async (raws, storage, queries, ranges) => {
          const org = await freshOrg();
          const events = raws.map((raw) => toEvent(org.id, raw));
          await storeRandomly(t, events, storage);

          for (const q of queries) {
            const { startTime, endTime, starts, limit, pageSize } = rangeOf(
              q.width,
              q.at,
              q.buckets,
              q.paging,
              q.divisor,
            );
            const fixed = q.fixedGroups.filter((g) => g in FIXED_GROUPS[q.path]);
            const groupBy = [...q.groupBy, ...fixed];
            const filters: Filters = {
              project_ids: q.project_ids,
              api_key_ids: q.api_key_ids,
              models: q.models,
              user_ids: q.user_ids,
            };
            const query: Query = {
              start_time: startTime,
              end_time: endTime,
              bucket_width: q.width,
              ...(limit !== undefined ? { limit } : {}),
              ...(groupBy.length > 0 ? { group_by: groupBy } : {}),
              ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined)),
              ...(q.batchFalse && q.path === 'completions' ? { batch: false } : {}),
            };
            const { buckets } = await allPages(
              (page) => usageCall(org.client, q.path, { ...query, ...(page ? { page } : {}) }),
              pageSize,
            );
            const context = JSON.stringify({ query, path: q.path });
            // Every bucket of the range exactly once, in order, whatever the pages.
            expect(
              buckets.map((b) => [b.object, b.start_time, b.end_time]),
              context,
            ).toEqual(starts.map((s) => ['bucket', s / 1000, (s + WIDTH_MS[q.width]) / 1000]));
            buckets.forEach((bucket, i) => {
              const expected = expectedUsageBucket(events, q.path, q.width, starts[i]!, groupBy, filters);
              expect(byKey(usageKey)(bucket.results), `${context} bucket ${bucket.start_time}`).toEqual(
                byKey(usageKey)(expected),
              );
            });
          }

          // Totals over any minute-aligned range (budgets, invoices) agree with the same events.
          for (const r of ranges) {
            const [from, to] = [BASE + Math.min(r.a, r.b) * MINUTE, BASE + Math.max(r.a, r.b) * MINUTE];
            const scope = {
              organizationId: org.id,
              projectId: r.project,
              apiKeyId: r.key,
              kinds: r.kinds,
            };
            const chosen = events.filter(
              (e) =>
                e.createdAt.getTime() >= from &&
                e.createdAt.getTime() < to &&
                (r.project === undefined || e.projectId === r.project) &&
                (r.key === undefined || e.apiKeyId === r.key) &&
                (r.kinds === undefined || r.kinds.includes(e.kind)),
            );
            expect(await sumUsage(t.services.store.db, scope, from, to), JSON.stringify(r)).toEqual({
              requests: chosen.length,
              modelRequests: chosen.filter(isModelRequest).length,
              inputTokens: sum(chosen, (e) => e.inputTokens),
              cachedTokens: sum(chosen, (e) => e.cachedTokens),
              outputTokens: sum(chosen, (e) => e.outputTokens),
              units: sum(chosen, (e) => e.units),
              cost: sum(chosen, lineCost),
            });
          }
        },
      ),
      { numRuns: 20 },
    );
  });

  it('every costs bucket equals the sums of the raw events, per group and line item (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(rawEventArb, { maxLength: 70, size: 'max' }),
        storageArb,
        fc.array(costsQueryArb, { minLength: 2, maxLength: 4 }),
        async (raws, storage, queries) => {
          const org = await freshOrg();
          const events = raws.map((raw) => toEvent(org.id, raw));
          await storeRandomly(t, events, storage);
          for (const q of queries) {
            const { startTime, endTime, starts, limit, pageSize } = rangeOf(
              '1d',
              q.at,
              q.buckets,
              q.paging,
              q.divisor,
              { default: 7, max: 180 },
            );
            const filters: CostsFilters = {
              project_ids: q.project_ids,
              api_key_ids: q.api_key_ids,
              line_items: q.line_items,
            };
            const query: Query = {
              start_time: startTime,
              end_time: endTime,
              ...(limit !== undefined ? { limit } : {}),
              ...(q.groupBy.length > 0 ? { group_by: q.groupBy } : {}),
              ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined)),
            };
            const { buckets } = await allPages(
              (page) => costsCall(org.client, { ...query, ...(page ? { page } : {}) }),
              pageSize,
            );
            const context = JSON.stringify(query);
            expect(
              buckets.map((b) => [b.object, b.start_time, b.end_time]),
              context,
            ).toEqual(starts.map((s) => ['bucket', s / 1000, (s + DAY) / 1000]));
            buckets.forEach((bucket, i) => {
              const expected = expectedCostsBucket(events, starts[i]!, q.groupBy, filters);
              const actual = bucket.results.map(normalCost);
              const sort = byKey<NormalCost>(costKey);
              expect(sort(actual), `${context} bucket ${bucket.start_time}`).toEqual(sort(expected));
            });
          }
        },
      ),
      { numRuns: 20 },
    );
  });

  // ---- 2. bucket edges ---------------------------------------------------------------------

  /** A UTC midnight: a boundary of every width. */
  const B = Date.UTC(2025, 5, 2);

  it.each(['1m', '1h', '1d'] as const)(
    '%s: an event exactly on a boundary is in the later bucket, a millisecond before it in the earlier',
    async (width) => {
      const org = await freshOrg();
      const w = WIDTH_MS[width];
      await store([
        event(org, { createdAt: new Date(B - 1), inputTokens: 1 }),
        event(org, { createdAt: new Date(B), inputTokens: 10 }),
        event(org, { createdAt: new Date(B + w - 1), inputTokens: 100 }),
        event(org, { createdAt: new Date(B + w), inputTokens: 1000 }),
      ]);
      const data = await completions(org, width, B - w, B + 2 * w);
      expect(data.map((b) => [b.start_time, b.end_time])).toEqual([
        [sec(B - w), sec(B)],
        [sec(B), sec(B + w)],
        [sec(B + w), sec(B + 2 * w)],
      ]);
      expect(data.map(inputTokens)).toEqual([1, 110, 1000]);
    },
  );

  it('day buckets are UTC days, whatever the billing time zone (usage and costs)', async () => {
    const org = await freshOrg();
    // 00:00 in Kolkata is 18:30 UTC the day before: these two are on one UTC day, two Kolkata days.
    await store([
      event(org, { createdAt: new Date(B + 18 * HOUR), inputTokens: 1, costNanoUsd: 5 }),
      event(org, { createdAt: new Date(B + 19 * HOUR), inputTokens: 2, costNanoUsd: 7 }),
    ]);
    const data = await completions(org, '1d', B, B + 2 * DAY);
    expect(data.map(inputTokens)).toEqual([3, 0]);
    const costs = await costsCall(org.client, { start_time: sec(B), end_time: sec(B + 2 * DAY) });
    expect(costs.data.map((b) => [b.start_time, b.results.map(normalCost).map((r) => r.nano)])).toEqual([
      [sec(B), [12]],
      [sec(B + DAY), []],
    ]);
  });

  it.each(['1m', '1h', '1d'] as const)(
    '%s: end_time is exclusive: an event at end_time is not reported',
    async (width) => {
      const org = await freshOrg();
      const w = WIDTH_MS[width];
      await store([
        event(org, { createdAt: new Date(B - 1), inputTokens: 1 }),
        event(org, { createdAt: new Date(B), inputTokens: 10 }),
      ]);
      const page = await usageCall(org.client, 'completions', {
        start_time: sec(B - w),
        end_time: sec(B),
        bucket_width: width,
      });
      expect(page).toMatchObject({ has_more: false, next_page: null });
      expect(page.data.map((b) => [b.start_time, b.end_time, inputTokens(b)])).toEqual([
        [sec(B - w), sec(B), 1],
      ]);
    },
  );

  it('an unaligned start_time snaps down to its bucket’s start, which is reported whole', async () => {
    const org = await freshOrg();
    await store([
      event(org, { createdAt: new Date(B + 5 * MINUTE), inputTokens: 1 }),
      event(org, { createdAt: new Date(B + 50 * MINUTE), inputTokens: 2 }),
      event(org, { createdAt: new Date(B + 3 * HOUR), inputTokens: 4, costNanoUsd: 9 }),
    ]);
    const hourly = await usageCall(org.client, 'completions', {
      start_time: sec(B + 30 * MINUTE) + 7,
      end_time: sec(B + 2 * HOUR),
      bucket_width: '1h',
    });
    expect(hourly.data.map((b) => [b.start_time, inputTokens(b)])).toEqual([
      [sec(B), 3],
      [sec(B + HOUR), 0],
    ]);
    const daily = await usageCall(org.client, 'completions', {
      start_time: sec(B + 12 * HOUR) + 1,
      end_time: sec(B + DAY),
      bucket_width: '1d',
    });
    expect(daily.data.map((b) => [b.start_time, b.end_time, inputTokens(b)])).toEqual([
      [sec(B), sec(B + DAY), 7],
    ]);
    const costs = await costsCall(org.client, { start_time: sec(B + 12 * HOUR) + 1, end_time: sec(B + DAY) });
    expect(costs.data.map((b) => [b.start_time, b.results.map(normalCost).map((r) => r.nano)])).toEqual([
      [sec(B), [9]],
    ]);
  });

  it('an unaligned end_time ends inside its last bucket, which is reported whole (as its end_time says)', async () => {
    const org = await freshOrg();
    await store([
      event(org, { createdAt: new Date(B + 10 * MINUTE), inputTokens: 1 }),
      event(org, { createdAt: new Date(B + 50 * MINUTE), inputTokens: 2 }),
      event(org, { createdAt: new Date(B + HOUR), inputTokens: 4 }),
    ]);
    const page = await usageCall(org.client, 'completions', {
      start_time: sec(B),
      end_time: sec(B + 30 * MINUTE),
      bucket_width: '1h',
    });
    expect(page).toMatchObject({ has_more: false, next_page: null });
    expect(page.data.map((b) => [b.start_time, b.end_time, inputTokens(b)])).toEqual([
      [sec(B), sec(B + HOUR), 3],
    ]);
  });

  it('empty buckets are listed with no results, usage and costs alike', async () => {
    const org = await freshOrg();
    await store([
      event(org, { createdAt: new Date(B + HOUR + 5 * MINUTE), inputTokens: 3, costNanoUsd: 11 }),
      event(org, { createdAt: new Date(B + 2 * DAY + 5 * MINUTE), inputTokens: 5, costNanoUsd: 13 }),
    ]);
    const hourly = await completions(org, '1h', B, B + 5 * HOUR);
    expect(hourly).toHaveLength(5);
    expect(hourly.map((b) => b.results.length)).toEqual([0, 1, 0, 0, 0]);
    for (const bucket of hourly) if (bucket.start_time !== sec(B + HOUR)) expect(bucket.results).toEqual([]);
    const costs = await costsCall(org.client, { start_time: sec(B), end_time: sec(B + 4 * DAY), limit: 4 });
    expect(costs.data.map((b) => b.results.map(normalCost).map((r) => r.nano))).toEqual([[11], [], [13], []]);
    // Another kind's endpoint has every bucket, none with results.
    const images = await usageCall(org.client, 'images', {
      start_time: sec(B),
      end_time: sec(B + 5 * HOUR),
      bucket_width: '1h',
    });
    expect(images.data.map((b) => b.results)).toEqual([[], [], [], [], []]);
  });

  it('without end_time the range runs to now: the current bucket holds usage of just now', async () => {
    const org = await freshOrg();
    const now = Date.now();
    await store([event(org, { createdAt: new Date(now), inputTokens: 42 })]);
    const page = await usageCall(org.client, 'completions', {
      start_time: sec(now - 2 * HOUR),
      bucket_width: '1h',
    });
    expect(page.has_more).toBe(false);
    const last = page.data.at(-1)!;
    expect(last.start_time * 1000).toBeLessThanOrEqual(now);
    expect(last.end_time * 1000).toBeGreaterThan(now);
    expect(page.data.map(inputTokens)).toEqual([...page.data.slice(0, -1).map(() => 0), 42]);
  });

  // ---- 3. pagination and validation ----------------------------------------------------------

  it('limit and next_page: the pages cover every bucket exactly once, in order', async () => {
    const org = await freshOrg();
    // A different amount in each of ten hours.
    await store(
      Array.from({ length: 10 }, (_, i) =>
        event(org, { createdAt: new Date(B + i * HOUR + 7 * MINUTE), inputTokens: 2 ** i }),
      ),
    );
    const query = { start_time: sec(B), end_time: sec(B + 10 * HOUR), bucket_width: '1h' as const };
    const whole = await usageCall(org.client, 'completions', { ...query, limit: 10 });
    expect(whole.data.map(inputTokens)).toEqual(Array.from({ length: 10 }, (_, i) => 2 ** i));

    const pages: Page[] = [];
    let page: string | undefined;
    do {
      const response = await usageCall(org.client, 'completions', {
        ...query,
        limit: 3,
        ...(page ? { page } : {}),
      });
      pages.push(response);
      page = response.next_page ?? undefined;
    } while (page);
    expect(pages.map((p) => [p.data.length, p.has_more])).toEqual([
      [3, true],
      [3, true],
      [3, true],
      [1, false],
    ]);
    expect(pages.at(-1)!.next_page).toBeNull();
    expect(pages.flatMap((p) => p.data)).toEqual(whole.data);
    // A cursor is reusable: the same page again.
    const again = await usageCall(org.client, 'completions', {
      ...query,
      limit: 3,
      page: pages[0]!.next_page!,
    });
    expect(again).toEqual(pages[1]);

    // Costs page the same way (days).
    await store(
      Array.from({ length: 5 }, (_, i) =>
        event(org, { createdAt: new Date(B + i * DAY + HOUR), costNanoUsd: 10 ** i }),
      ),
    );
    const costPages: Page[] = [];
    let costPage: string | undefined;
    do {
      const response = await costsCall(org.client, {
        start_time: sec(B),
        end_time: sec(B + 5 * DAY),
        limit: 2,
        ...(costPage ? { page: costPage } : {}),
      });
      costPages.push(response);
      costPage = response.next_page ?? undefined;
    } while (costPage);
    expect(costPages.map((p) => p.data.length)).toEqual([2, 2, 1]);
    expect(costPages.flatMap((p) => p.data.map((b) => b.start_time))).toEqual(
      Array.from({ length: 5 }, (_, i) => sec(B + i * DAY)),
    );
    expect(costPages.flatMap((p) => p.data.map((b) => b.results.map(normalCost)[0]?.nano))).toEqual([
      1, 10, 100, 1000, 10000,
    ]);
  });

  it('the default limit: 7 days, 24 hours, 60 minutes, then next_page', async () => {
    const org = await freshOrg();
    for (const [width, n] of [
      ['1d', 7],
      ['1h', 24],
      ['1m', 60],
    ] as const) {
      const page = await usageCall(org.client, 'completions', {
        start_time: sec(B),
        end_time: sec(B + 100 * WIDTH_MS[width]),
        bucket_width: width,
      });
      expect(page.data).toHaveLength(n);
      expect(page.has_more).toBe(true);
      expect(page.next_page).toEqual(expect.any(String));
    }
    const costs = await costsCall(org.client, { start_time: sec(B), end_time: sec(B + 100 * DAY) });
    expect(costs.data).toHaveLength(7);
    expect(costs.has_more).toBe(true);
  });

  it('a bad page cursor is refused with a 400 naming page', async () => {
    const org = await freshOrg();
    const cursor = (value: string) => Buffer.from(value).toString('base64url');
    const base = `start_time=${sec(B)}&end_time=${sec(B + 10 * HOUR)}&bucket_width=1h`;
    for (const page of [
      'not-a-cursor!',
      cursor('abc'),
      cursor(String(B + 1)), // not on a bucket start
      cursor(String(B - HOUR)), // before the range
      cursor(String(B + 30 * MINUTE)),
      'x'.repeat(65),
    ]) {
      const response = await adminRequest(
        t,
        'GET',
        `/usage/completions?${base}&page=${encodeURIComponent(page)}`,
        {
          key: org.secret,
        },
      );
      expectApiError(response, 400, 'invalid_request', 'page');
    }
    const costs = await adminRequest(
      t,
      'GET',
      `/costs?start_time=${sec(B)}&page=${cursor(String(B + HOUR))}`,
      {
        key: org.secret,
      },
    );
    expectApiError(costs, 400, 'invalid_request', 'page');
    const error = await usageCall(org.client, 'completions', {
      start_time: sec(B),
      bucket_width: '1h',
      page: 'garbage',
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, param: 'page', code: 'invalid_request' });
  });

  it.each([
    ['1d', 31],
    ['1h', 168],
    ['1m', 1440],
  ] as const)('%s: limit %i is the largest; one more is a 400 in OpenAI’s shape', async (width, max) => {
    const org = await freshOrg();
    const ok = await usageCall(org.client, 'embeddings', {
      start_time: sec(B),
      end_time: sec(B + (max + 5) * WIDTH_MS[width]),
      bucket_width: width,
      limit: max,
    });
    expect(ok.data).toHaveLength(max);
    const error = await usageCall(org.client, 'embeddings', {
      start_time: sec(B),
      bucket_width: width,
      limit: max + 1,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'limit',
      type: 'invalid_request_error',
    });
    expect((error as APIError).requestID).toMatch(/^req_[0-9a-f]{32}$/);
    const raw = await adminRequest(
      t,
      'GET',
      `/usage/embeddings?start_time=${sec(B)}&bucket_width=${width}&limit=${max + 1}`,
      { key: org.secret },
    );
    expect(expectApiError(raw, 400, 'invalid_request', 'limit').message).toContain(String(max));
  });

  it('costs: limit 180 is the largest; 181 and 0 are 400s', async () => {
    const org = await freshOrg();
    const ok = await costsCall(org.client, { start_time: sec(B), end_time: sec(B + 200 * DAY), limit: 180 });
    expect(ok.data).toHaveLength(180);
    expect(ok.has_more).toBe(true);
    for (const limit of [181, 0, -1]) {
      const error = await costsCall(org.client, { start_time: sec(B), limit }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error).toMatchObject({ status: 400, param: 'limit' });
    }
    const zero = await usageCall(org.client, 'completions', { start_time: sec(B), limit: 0 }).catch(
      (e: unknown) => e,
    );
    expect(zero).toMatchObject({ status: 400, param: 'limit' });
  });

  it('end_time at or before start_time is a 400 naming end_time', async () => {
    const org = await freshOrg();
    for (const end of [sec(B), sec(B) - 60]) {
      const usage = await usageCall(org.client, 'completions', { start_time: sec(B), end_time: end }).catch(
        (e: unknown) => e,
      );
      expect(usage).toBeInstanceOf(OpenAI.BadRequestError);
      expect(usage).toMatchObject({ status: 400, param: 'end_time' });
      const costs = await costsCall(org.client, { start_time: sec(B), end_time: end }).catch(
        (e: unknown) => e,
      );
      expect(costs).toBeInstanceOf(OpenAI.BadRequestError);
      expect(costs).toMatchObject({ status: 400, param: 'end_time' });
    }
  });

  it('an unknown or foreign group_by is a 400 naming it', async () => {
    const org = await freshOrg();
    const cases: [Path | 'costs', string][] = [
      ['completions', 'bogus'],
      ['completions', 'line_item'],
      ['completions', 'size'],
      ['embeddings', 'batch'],
      ['images', 'service_tier'],
      ['audio_speeches', 'api_source'],
      ['costs', 'model'],
      ['costs', 'batch'],
    ];
    for (const [path, group] of cases) {
      const query = { start_time: sec(B), group_by: ['project_id', group] };
      const error = await (path === 'costs'
        ? costsCall(org.client, query)
        : usageCall(org.client, path, query)
      ).catch((e: unknown) => e);
      expect(error, `${path} ${group}`).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error).toMatchObject({ status: 400, param: 'group_by', code: 'invalid_request' });
      expect((error as APIError).message).toContain(group);
    }
    // The same names where they belong are accepted.
    await expect(
      usageCall(org.client, 'images', { start_time: sec(B), group_by: ['size', 'source'] }),
    ).resolves.toMatchObject({ object: 'page' });
    await expect(
      costsCall(org.client, { start_time: sec(B), group_by: ['line_item', 'api_source'] }),
    ).resolves.toMatchObject({
      object: 'page',
    });
  });

  it('a missing or malformed parameter is a 400 naming it', async () => {
    const org = await freshOrg();
    const cases: [string, string][] = [
      ['/usage/completions', 'start_time'],
      ['/usage/audio_transcriptions?bucket_width=1h', 'start_time'],
      ['/costs', 'start_time'],
      ['/costs?limit=3', 'start_time'],
      ['/usage/export', 'start_time'],
      [`/usage/completions?start_time=${sec(B)}&bucket_width=1w`, 'bucket_width'],
      [`/costs?start_time=${sec(B)}&bucket_width=1h`, 'bucket_width'],
      [`/usage/completions?start_time=yesterday`, 'start_time'],
      [`/usage/completions?start_time=${sec(B)}&end_time=soon`, 'end_time'],
      [`/usage/completions?start_time=${sec(B)}&limit=two`, 'limit'],
      [`/usage/completions?start_time=${sec(B)}&batch=maybe`, 'batch'],
      [`/usage/completions?start_time=${sec(B)}&colour=blue`, 'colour'],
      [`/costs?start_time=${sec(B)}&batch=true`, 'batch'],
      [`/usage/export?start_time=${sec(B)}&models=x`, 'models'],
      // Filters the other API has are refused, not silently ignored.
      [`/costs?start_time=${sec(B)}&user_ids=user_u1`, 'user_ids'],
      [`/costs?start_time=${sec(B)}&models[]=m`, 'models[]'],
      [`/usage/completions?start_time=${sec(B)}&line_items=m,%20input`, 'line_items'],
    ];
    for (const [path, param] of cases) {
      const response = await adminRequest(t, 'GET', path, { key: org.secret });
      const error = expectApiError(response, 400, 'invalid_request', param);
      expect(error.message, path).toContain(param);
    }
    const sdk = await usageCall(org.client, 'completions', {}).catch((e: unknown) => e);
    expect(sdk).toBeInstanceOf(OpenAI.BadRequestError);
    expect(sdk).toMatchObject({ status: 400, param: 'start_time' });
  });

  it('list parameters: group_by[]=, repeated and comma-separated forms are the same query', async () => {
    const org = await freshOrg();
    await store([
      event(org, { createdAt: new Date(B + MINUTE), projectId: 'proj_a', model: 'm1', inputTokens: 1 }),
      event(org, { createdAt: new Date(B + MINUTE), projectId: 'proj_b', model: 'm2', inputTokens: 2 }),
      event(org, { createdAt: new Date(B + MINUTE), projectId: 'proj_c', model: 'm1', inputTokens: 4 }),
    ]);
    const range = `start_time=${sec(B)}&end_time=${sec(B + DAY)}`;
    const forms = [
      'group_by[]=project_id&group_by[]=model&project_ids[]=proj_a&project_ids[]=proj_b',
      'group_by=project_id&group_by=model&project_ids=proj_a&project_ids=proj_b',
      'group_by=project_id,model&project_ids=proj_a,proj_b',
    ];
    const bodies = [];
    for (const form of forms) {
      bodies.push(
        expectOk(
          await adminRequest<Page>(t, 'GET', `/usage/completions?${range}&${form}`, { key: org.secret }),
        ),
      );
    }
    const results = byKey(usageKey)(bodies[0]!.data[0]!.results);
    expect(results.map((r) => [r.project_id, r.model, r.input_tokens])).toEqual([
      ['proj_a', 'm1', 1],
      ['proj_b', 'm2', 2],
    ]);
    for (const body of bodies.slice(1)) expect(byKey(usageKey)(body.data[0]!.results)).toEqual(results);
    // And the SDK's own encoding gives the same.
    const sdk = await usageCall(org.client, 'completions', {
      start_time: sec(B),
      end_time: sec(B + DAY),
      group_by: ['project_id', 'model'],
      project_ids: ['proj_a', 'proj_b'],
    });
    expect(byKey(usageKey)(sdk.data[0]!.results)).toEqual(results);
  });

  // ---- 4. one kind per endpoint ----------------------------------------------------------------

  it('each endpoint reports its own kind only, with its own fields', async () => {
    const org = await freshOrg();
    const at = new Date(B + 3 * HOUR);
    const common = { createdAt: at, apiKeyId: 'key_kinds', projectId: 'proj_kinds', userId: 'user_kinds' };
    await store([
      event(org, {
        ...common,
        kind: 'completions',
        model: 'gpt-x',
        inputTokens: 1000,
        cachedTokens: 300,
        outputTokens: 70,
      }),
      // A failed completion that used nothing: a request, not a model request.
      event(org, { ...common, kind: 'completions', model: 'gpt-x', status: 500 }),
      event(org, { ...common, kind: 'embeddings', model: 'emb-x', inputTokens: 40 }),
      event(org, { ...common, kind: 'moderations', model: 'mod-x', inputTokens: 25 }),
      event(org, { ...common, kind: 'images', model: 'img-x', units: 3 }),
      event(org, { ...common, kind: 'audio_speeches', model: 'tts-x', units: 1234 }),
      event(org, { ...common, kind: 'audio_transcriptions', model: 'stt-x', units: 61 }),
      // Metered, but in no Usage API family.
      event(org, { ...common, kind: 'other', model: 'gpt-x', inputTokens: 999_999, units: 999 }),
    ]);
    const query = {
      start_time: sec(B),
      end_time: sec(B + DAY),
      group_by: ['model', 'project_id', 'api_key_id', 'user_id'],
    };
    const ids = { project_id: 'proj_kinds', user_id: 'user_kinds', api_key_id: 'key_kinds' };
    const expected: Record<Path, Result> = {
      completions: {
        object: 'organization.usage.completions.result',
        input_tokens: 1000,
        output_tokens: 70,
        input_cached_tokens: 300,
        input_uncached_tokens: 700,
        input_audio_tokens: 0,
        output_audio_tokens: 0,
        num_model_requests: 1,
        ...ids,
        model: 'gpt-x',
        batch: null,
        service_tier: null,
        api_source: null,
      },
      embeddings: {
        object: 'organization.usage.embeddings.result',
        input_tokens: 40,
        num_model_requests: 1,
        ...ids,
        model: 'emb-x',
      },
      moderations: {
        object: 'organization.usage.moderations.result',
        input_tokens: 25,
        num_model_requests: 1,
        ...ids,
        model: 'mod-x',
      },
      images: {
        object: 'organization.usage.images.result',
        images: 3,
        num_model_requests: 1,
        ...ids,
        model: 'img-x',
        size: null,
        source: null,
      },
      audio_speeches: {
        object: 'organization.usage.audio_speeches.result',
        characters: 1234,
        num_model_requests: 1,
        ...ids,
        model: 'tts-x',
      },
      audio_transcriptions: {
        object: 'organization.usage.audio_transcriptions.result',
        seconds: 61,
        num_model_requests: 1,
        ...ids,
        model: 'stt-x',
      },
    };
    for (const path of PATHS) {
      const page = await usageCall(org.client, path, query);
      expect(page.data).toHaveLength(1);
      expect(page.data[0]!.results, path).toEqual([expected[path]]);
    }
    // Not grouped: one result per bucket with every group field null.
    const plain = await usageCall(org.client, 'audio_speeches', {
      start_time: sec(B),
      end_time: sec(B + DAY),
    });
    expect(plain.data[0]!.results).toEqual([
      {
        object: 'organization.usage.audio_speeches.result',
        characters: 1234,
        num_model_requests: 1,
        project_id: null,
        user_id: null,
        api_key_id: null,
        model: null,
      },
    ]);
  });

  it('completions: batch=true has no usage (no Batch API), batch=false all of it; fixed groups have their one value', async () => {
    const org = await freshOrg();
    await store([event(org, { createdAt: new Date(B + HOUR), inputTokens: 8, outputTokens: 2 })]);
    const range = { start_time: sec(B), end_time: sec(B + 2 * DAY) };
    const batch = await usageCall(org.client, 'completions', { ...range, batch: true });
    expect(batch.data.map((b) => b.results)).toEqual([[], []]);
    const nonBatch = await usageCall(org.client, 'completions', { ...range, batch: false });
    expect(nonBatch.data.map(inputTokens)).toEqual([8, 0]);
    const grouped = await usageCall(org.client, 'completions', {
      ...range,
      group_by: ['batch', 'service_tier', 'api_source'],
    });
    expect(grouped.data[0]!.results).toEqual([
      expect.objectContaining({
        input_tokens: 8,
        output_tokens: 2,
        batch: false,
        service_tier: 'default',
        api_source: 'unlabeled',
        project_id: null,
        model: null,
      }),
    ]);
  });

  it('null project, model and user show as null when grouped; a service account shows as the user', async () => {
    const org = await freshOrg();
    await store([
      event(org, { createdAt: new Date(B), projectId: null, model: null, userId: null, inputTokens: 1 }),
      event(org, { createdAt: new Date(B), userId: null, serviceAccountId: 'svc_bot', inputTokens: 2 }),
    ]);
    const page = await usageCall(org.client, 'completions', {
      start_time: sec(B),
      end_time: sec(B + DAY),
      group_by: ['project_id', 'model', 'user_id'],
    });
    const results = [...page.data[0]!.results].sort(
      (a, b) => (a.input_tokens as number) - (b.input_tokens as number),
    );
    expect(results.map((r) => [r.project_id, r.model, r.user_id, r.input_tokens])).toEqual([
      [null, null, null, 1],
      [org.projectId, 'mock-gpt-4o', 'svc_bot', 2],
    ]);
    const bot = await usageCall(org.client, 'completions', {
      start_time: sec(B),
      end_time: sec(B + DAY),
      user_ids: ['svc_bot'],
    });
    expect(bot.data.map(inputTokens)).toEqual([2]);
  });

  it('costs: line items per model with quantities and units; without grouping one sum; line_items filters', async () => {
    const org = await freshOrg();
    const common = { createdAt: new Date(B + 2 * HOUR), projectId: 'proj_c1' };
    await store([
      event(org, {
        ...common,
        kind: 'completions',
        model: 'gpt-x',
        inputTokens: 1000,
        cachedTokens: 200,
        outputTokens: 50,
        costInputNanoUsd: 2_000_000,
        costCachedNanoUsd: 100_000,
        costOutputNanoUsd: 500_000,
        costNanoUsd: 2_600_000,
      }),
      event(org, {
        ...common,
        kind: 'images',
        model: 'img-x',
        units: 3,
        costInputNanoUsd: 0,
        costUnitsNanoUsd: 120_000_000,
        costNanoUsd: 120_000_000,
      }),
      event(org, {
        ...common,
        kind: 'audio_speeches',
        model: 'tts-x',
        units: 500,
        costInputNanoUsd: 0,
        costUnitsNanoUsd: 7_500_000,
        costNanoUsd: 7_500_000,
      }),
      event(org, {
        ...common,
        kind: 'audio_transcriptions',
        model: 'stt-x',
        units: 30,
        costInputNanoUsd: 0,
        costUnitsNanoUsd: 3_000_000,
        costNanoUsd: 3_000_000,
      }),
      event(org, {
        ...common,
        kind: 'other',
        model: 'gpt-x',
        projectId: 'proj_c2',
        inputTokens: 10,
        costNanoUsd: 1,
      }),
    ]);
    const range = { start_time: sec(B), end_time: sec(B + DAY) };
    const item = (
      line_item: string,
      quantity: number,
      quantity_unit: string,
      nano: number,
      project_id: string | null,
    ) => ({
      object: 'organization.costs.result',
      project_id,
      amount: { value: nano / 1e9, currency: 'usd' },
      line_item,
      quantity,
      quantity_unit,
    });
    const grouped = await costsCall(org.client, { ...range, group_by: ['line_item', 'project_id'] });
    expect(byKey(costKey)(grouped.data[0]!.results)).toEqual(
      byKey(costKey)([
        item('gpt-x, input', 800, 'tokens', 2_000_000, 'proj_c1'),
        item('gpt-x, cached input', 200, 'tokens', 100_000, 'proj_c1'),
        item('gpt-x, output', 50, 'tokens', 500_000, 'proj_c1'),
        item('img-x, images', 3, 'images', 120_000_000, 'proj_c1'),
        item('tts-x, characters', 500, 'characters', 7_500_000, 'proj_c1'),
        item('stt-x, seconds', 30, 'duration_seconds', 3_000_000, 'proj_c1'),
        item('gpt-x, input', 10, 'tokens', 1, 'proj_c2'),
      ]),
    );
    const total = await costsCall(org.client, range);
    expect(total.data[0]!.results).toEqual([
      {
        object: 'organization.costs.result',
        project_id: null,
        amount: { value: 0.133100001, currency: 'usd' },
        line_item: null,
      },
    ]);
    const filtered = await costsCall(org.client, { ...range, line_items: ['gpt-x, input', 'img-x, images'] });
    expect(filtered.data[0]!.results.map(normalCost)).toEqual([
      expect.objectContaining({ nano: 122_000_001, line_item: null, quantity: null }),
    ]);
    // Raw, repeated: a line item's comma is part of its name, not a list separator.
    const raw = expectOk(
      await adminRequest<Page>(
        t,
        'GET',
        `/costs?start_time=${range.start_time}&end_time=${range.end_time}&line_items=${encodeURIComponent('gpt-x, input')}&line_items=${encodeURIComponent('img-x, images')}`,
        { key: org.secret },
      ),
    );
    expect(raw.data).toEqual(filtered.data);
    const filteredGrouped = await costsCall(org.client, {
      ...range,
      line_items: ['gpt-x, input'],
      group_by: ['line_item'],
      project_ids: ['proj_c1'],
    });
    expect(filteredGrouped.data[0]!.results).toEqual([item('gpt-x, input', 800, 'tokens', 2_000_000, null)]);
  });

  it('costs: one result per line item even when a model is used by several kinds', async () => {
    const org = await freshOrg();
    const at = { createdAt: new Date(B + HOUR), model: 'multi' };
    await store([
      event(org, {
        ...at,
        kind: 'completions',
        inputTokens: 10,
        costInputNanoUsd: 100_000_001,
        costNanoUsd: 100_000_001,
      }),
      event(org, {
        ...at,
        kind: 'embeddings',
        inputTokens: 20,
        costInputNanoUsd: 200_000_002,
        costNanoUsd: 200_000_002,
      }),
      event(org, { ...at, kind: 'other', inputTokens: 30, costInputNanoUsd: 3, costNanoUsd: 3 }),
    ]);
    const range = { start_time: sec(B), end_time: sec(B + DAY) };
    const grouped = await costsCall(org.client, { ...range, group_by: ['line_item'] });
    expect(grouped.data[0]!.results).toEqual([
      {
        object: 'organization.costs.result',
        project_id: null,
        amount: { value: 0.300000006, currency: 'usd' },
        line_item: 'multi, input',
        quantity: 60,
        quantity_unit: 'tokens',
      },
    ]);
    // Filtered by line item, not grouped: the sum, exact to the nano-dollar.
    const filtered = await costsCall(org.client, { ...range, line_items: ['multi, input'] });
    expect(filtered.data[0]!.results).toEqual([
      {
        object: 'organization.costs.result',
        project_id: null,
        amount: { value: 0.300000006, currency: 'usd' },
        line_item: null,
        quantity: null,
        quantity_unit: null,
      },
    ]);
  });

  // ---- 5. isolation --------------------------------------------------------------------------

  it('another organization’s usage and costs never appear, even with the same project and key ids', async () => {
    const [mine, theirs] = [await freshOrg(), await freshOrg()];
    const shared = {
      createdAt: new Date(B + HOUR),
      projectId: 'proj_same',
      apiKeyId: 'key_same',
      model: 'same',
    };
    await store([
      event(mine, { ...shared, inputTokens: 5, costNanoUsd: 50 }),
      event(theirs, { ...shared, inputTokens: 700, costNanoUsd: 7000, userId: 'user_theirs' }),
    ]);
    const range = { start_time: sec(B), end_time: sec(B + DAY) };
    const grouped = { ...range, group_by: ['project_id', 'api_key_id', 'user_id', 'model'] };
    const mineUsage = await usageCall(mine.client, 'completions', grouped);
    expect(mineUsage.data[0]!.results).toEqual([expect.objectContaining({ input_tokens: 5, user_id: null })]);
    const theirsUsage = await usageCall(theirs.client, 'completions', {
      ...grouped,
      project_ids: ['proj_same'],
    });
    expect(theirsUsage.data[0]!.results).toEqual([
      expect.objectContaining({ input_tokens: 700, user_id: 'user_theirs' }),
    ]);
    expect((await costsCall(mine.client, range)).data[0]!.results.map(normalCost).map((r) => r.nano)).toEqual(
      [50],
    );
    expect(
      (await costsCall(theirs.client, range)).data[0]!.results.map(normalCost).map((r) => r.nano),
    ).toEqual([7000]);
    // The first organization of the app (the suite's admin key) sees neither.
    const own = await usageCall(client, 'completions', { ...grouped, api_key_ids: ['key_same'] });
    expect(own.data[0]!.results).toEqual([]);
    expect((await costsCall(client, { ...range, api_key_ids: ['key_same'] })).data[0]!.results).toEqual([]);
    // Nor does the export.
    const csv = await adminRequest(
      t,
      'GET',
      `/usage/export?start_time=${range.start_time}&end_time=${range.end_time}`,
      {
        key: mine.secret,
      },
    );
    const rows = parseCsv(csv.text).slice(1);
    expect(rows).toHaveLength(1);
    expect(rows[0]![CSV_HEADER.indexOf('input_tokens')]).toBe('5');
    expect(csv.text).not.toContain('user_theirs');
    expect(csv.text).not.toContain(theirs.id);
  });

  // ---- 6. end to end -------------------------------------------------------------------------

  it('requests through the gateway are reported by the Usage and Costs APIs and the export', async () => {
    // createTestApp leaves the services' own DatabaseUsageRecorder in place (createTestGateway swaps
    // in a MemoryUsageRecorder): the events go through the real recorder; flush() writes them now.
    const project = await client.admin.organization.projects.create({ name: 'Metered end to end' });
    const key = await createProjectKey(t, project.id, { name: 'Metered' });
    const api = t.sdk({ apiKey: key.value });
    const before = Date.now();
    const messages = [{ role: 'user' as const, content: 'Count my tokens, please.' }];
    const first = await api.chat.completions.create({ model: 'mock-gpt-4o', messages }).withResponse();
    const stream = await api.chat.completions
      .create({ model: 'mock-gpt-4o', messages, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let streamedUsage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream.data) if (chunk.usage) streamedUsage = chunk.usage;
    const embedding = await api.embeddings
      .create({ model: 'mock-embedding-small', input: 'alpha beta gamma' })
      .withResponse();
    const failed = (await api.chat.completions
      .create({ model: 'mock-gpt-4o', messages }, { headers: { 'x-mock-status': '429' } })
      .catch((e: unknown) => e)) as APIError;
    expect(failed).toBeInstanceOf(OpenAI.RateLimitError);
    const after = Date.now();
    await t.services.usage.flush();

    const chat = [first.data.usage!, streamedUsage!];
    expect(chat.every((u) => u.prompt_tokens > 0 && u.completion_tokens > 0)).toBe(true);
    const prompt = chat[0]!.prompt_tokens + chat[1]!.prompt_tokens;
    const completion = chat[0]!.completion_tokens + chat[1]!.completion_tokens;
    const embedded = embedding.data.usage.prompt_tokens;
    expect(embedded).toBeGreaterThan(0);

    // Day buckets from the day of the first request (two, in case the test runs across midnight).
    const range = { start_time: sec(bucketOf(before, DAY)), end_time: sec(bucketOf(after, DAY) + DAY) };
    const group = { group_by: ['project_id', 'api_key_id', 'user_id', 'model'], api_key_ids: [key.id] };
    const results = (page: Page) => page.data.flatMap((b) => b.results);
    const usage = results(await usageCall(client, 'completions', { ...range, ...group }));
    expect(usage).toEqual([
      {
        object: 'organization.usage.completions.result',
        input_tokens: prompt,
        output_tokens: completion,
        input_cached_tokens: 0,
        input_uncached_tokens: prompt,
        input_audio_tokens: 0,
        output_audio_tokens: 0,
        // The refused request is a request but not a model request.
        num_model_requests: 2,
        project_id: project.id,
        user_id: t.instance.owner.id,
        api_key_id: key.id,
        model: 'mock-gpt-4o',
        batch: null,
        service_tier: null,
        api_source: null,
      },
    ]);
    expect(results(await usageCall(client, 'embeddings', { ...range, ...group }))).toEqual([
      {
        object: 'organization.usage.embeddings.result',
        input_tokens: embedded,
        num_model_requests: 1,
        project_id: project.id,
        user_id: t.instance.owner.id,
        api_key_id: key.id,
        model: 'mock-embedding-small',
      },
    ]);
    // The configured prices: $2.50 / $10 per 1M tokens, $0.02 per 1M embedding tokens.
    const costs = results(
      await costsCall(client, { ...range, group_by: ['line_item', 'project_id'], project_ids: [project.id] }),
    ).map(normalCost);
    expect(byKey<NormalCost>(costKey)(costs)).toEqual(
      byKey<NormalCost>(costKey)(
        [
          ['mock-gpt-4o, input', prompt, prompt * 2500],
          ['mock-gpt-4o, output', completion, completion * 10_000],
          ['mock-embedding-small, input', embedded, embedded * 20],
        ].map(([line_item, quantity, nano]) => ({
          project_id: project.id,
          user_id: null,
          api_key_id: null,
          api_source: null,
          line_item,
          quantity,
          quantity_unit: 'tokens',
          nano,
          currency: 'usd',
        })) as NormalCost[],
      ),
    );
    // The export has the four requests, the refused one included.
    const csv = await adminRequest(
      t,
      'GET',
      `/usage/export?start_time=${range.start_time}&end_time=${range.end_time}&api_key_ids=${key.id}`,
    );
    const rows = parseCsv(csv.text).slice(1);
    const column = (name: string) => rows.map((row) => row[CSV_HEADER.indexOf(name)]);
    expect(column('request_id').sort()).toEqual(
      [first.request_id, stream.request_id, embedding.request_id, failed.requestID].sort(),
    );
    expect(column('status').sort()).toEqual(['200', '200', '200', '429']);
    expect(column('streamed').sort()).toEqual(['false', 'false', 'false', 'true']);
  });

  // ---- 7. CSV export -------------------------------------------------------------------------

  it('CSV export: a header, one row per event of the range in time order, filters, cost in dollars', async () => {
    const org = await freshOrg();
    const e1 = event(org, {
      createdAt: new Date(B + 1234),
      projectId: 'proj_x',
      apiKeyId: 'key_x',
      userId: 'user_x',
      model: 'gpt-x',
      inputTokens: 100,
      cachedTokens: 20,
      outputTokens: 7,
      costNanoUsd: 1_234_567,
      latencyMs: 321,
      streamed: true,
    });
    const e2 = event(org, {
      createdAt: new Date(B + HOUR),
      projectId: null,
      apiKeyId: 'key_y',
      serviceAccountId: 'svc_y',
      model: null,
      kind: 'images',
      endpoint: '/v1/images/generations',
      units: 2,
      status: 500,
      costNanoUsd: 0,
      estimated: true,
    });
    const e3 = event(org, { createdAt: new Date(B + 2 * HOUR), projectId: 'proj_z', apiKeyId: 'key_x' });
    const early = event(org, { createdAt: new Date(B - 1) });
    const atEnd = event(org, { createdAt: new Date(B + DAY) });
    await store([e3, atEnd, e1, early, e2]);
    const range = `start_time=${sec(B)}&end_time=${sec(B + DAY)}`;
    const response = await adminRequest(t, 'GET', `/usage/export?${range}`, { key: org.secret });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/csv/);
    expect(response.headers['content-disposition']).toContain('attachment');
    expect(response.text.endsWith('\n')).toBe(true);
    const [header, ...rows] = parseCsv(response.text);
    expect(header).toEqual(CSV_HEADER);
    expect(rows.map((r) => r[0])).toEqual([e1.requestId, e2.requestId, e3.requestId]);
    expect(rows[0]).toEqual([
      e1.requestId,
      new Date(B + 1234).toISOString(),
      'proj_x',
      'key_x',
      'user_x',
      '',
      'POST',
      '/v1/chat/completions',
      'gpt-x',
      'completions',
      '200',
      '100',
      '20',
      '7',
      '0',
      '0.001234567',
      '321',
      'true',
      'false',
    ]);
    expect(rows[1]).toEqual([
      e2.requestId,
      new Date(B + HOUR).toISOString(),
      '',
      'key_y',
      '',
      'svc_y',
      'POST',
      '/v1/images/generations',
      '',
      'images',
      '500',
      '0',
      '0',
      '0',
      '2',
      '0.000000000',
      '5',
      'false',
      'true',
    ]);
    const filtered = async (query: string) =>
      parseCsv((await adminRequest(t, 'GET', `/usage/export?${range}&${query}`, { key: org.secret })).text)
        .slice(1)
        .map((r) => r[0]);
    expect(await filtered('project_ids=proj_x,proj_z')).toEqual([e1.requestId, e3.requestId]);
    expect(await filtered('project_ids[]=proj_z')).toEqual([e3.requestId]);
    expect(await filtered('api_key_ids=key_x')).toEqual([e1.requestId, e3.requestId]);
    expect(await filtered('api_key_ids=key_x&project_ids=proj_z')).toEqual([e3.requestId]);
    expect(await filtered('api_key_ids=key_none')).toEqual([]);
  });

  it('CSV export: no formula injection, and quoting of commas, quotes and newlines', async () => {
    const org = await freshOrg();
    const models = [
      '=cmd|"/C calc"!A0',
      '+SUM(A1)',
      '-2+3',
      '@import',
      '\tTAB',
      'a,b',
      'say "hi"',
      'line\nbreak',
      'plain',
    ];
    const events = models.map((model, i) => event(org, { createdAt: new Date(B + i * 1000), model }));
    await store(events);
    const response = await adminRequest(
      t,
      'GET',
      `/usage/export?start_time=${sec(B)}&end_time=${sec(B + HOUR)}`,
      {
        key: org.secret,
      },
    );
    const rows = parseCsv(response.text).slice(1);
    expect(rows.map((r) => r[CSV_HEADER.indexOf('model')])).toEqual([
      `'=cmd|"/C calc"!A0`,
      `'+SUM(A1)`,
      `'-2+3`,
      `'@import`,
      `'\tTAB`,
      'a,b',
      'say "hi"',
      'line\nbreak',
      'plain',
    ]);
    // Every row has every column (the quoting kept the cells apart).
    for (const row of rows) expect(row).toHaveLength(CSV_HEADER.length);
    // No line of the raw text starts a cell with a formula character.
    expect(response.text).not.toMatch(/(^|,)[=+\-@]/m);
  });

  it('CSV export: more rows than one database page, each exactly once', async () => {
    const org = await freshOrg();
    // 5,003 events, many sharing a millisecond, so the keyset pages must break ties by request id.
    const events = Array.from({ length: 5003 }, (_, i) =>
      event(org, { createdAt: new Date(B + Math.floor(i / 7)), inputTokens: i }),
    );
    expect(await store(events)).toBe(events.length);
    const response = await adminRequest(
      t,
      'GET',
      `/usage/export?start_time=${sec(B)}&end_time=${sec(B + HOUR)}`,
      {
        key: org.secret,
      },
    );
    const rows = parseCsv(response.text).slice(1);
    expect(rows).toHaveLength(events.length);
    expect(new Set(rows.map((r) => r[0])).size).toBe(events.length);
    expect(new Set(rows.map((r) => r[0]))).toEqual(new Set(events.map((e) => e.requestId)));
    const times = rows.map((r) => Date.parse(r[1]!));
    for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
  });
});
