/** One gateway request's usage: what the metering pipeline carries from the gateway to the database. */

import { storableText } from '../core/storable-text.ts';

/** The Usage API's families (`/v1/organization/usage/<kind>`); `other` is metered but not reported there. */
export const USAGE_KINDS = [
  'completions',
  'embeddings',
  'moderations',
  'images',
  'audio_speeches',
  'audio_transcriptions',
  'other',
] as const;
export type UsageKind = (typeof USAGE_KINDS)[number];

export interface UsageEvent {
  requestId: string;
  createdAt: Date;
  organizationId: string;
  projectId: string | null;
  apiKeyId: string;
  userId: string | null;
  serviceAccountId: string | null;
  method: string;
  endpoint: string;
  model: string | null;
  upstream: string | null;
  kind: UsageKind;
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  /** Images, speech characters or transcribed seconds (per `kind`); 0 otherwise. */
  units: number;
  status: number;
  latencyMs: number;
  clientIp: string | null;
  streamed: boolean;
  estimated: boolean;
  /** The request's cost at the model's price when it was made, in billionths of a dollar. */
  costNanoUsd: number;
  costInputNanoUsd: number;
  costCachedNanoUsd: number;
  costOutputNanoUsd: number;
  costUnitsNanoUsd: number;
}

/**
 * Text from the client (a model name, a path) as the database can store it. One event the
 * database refuses would fail its whole batch: the gateway refuses such model names; this is the
 * backstop.
 */
function storable(text: string): string;
function storable(text: string | null): string | null;
function storable(text: string | null): string | null {
  return text === null ? null : storableText(text);
}

/** The largest value of an `integer` column: a count beyond it (an upstream's nonsense) is capped. */
const MAX_INT = 2_147_483_647;
const int = (n: number) => Math.min(n, MAX_INT);

/** The event as a database row (snake_case), also the journal's line format. */
export function toRow(e: UsageEvent) {
  return {
    request_id: e.requestId,
    created_at: e.createdAt.toISOString(),
    organization_id: e.organizationId,
    project_id: e.projectId,
    api_key_id: e.apiKeyId,
    user_id: e.userId,
    service_account_id: e.serviceAccountId,
    method: storable(e.method),
    endpoint: storable(e.endpoint),
    model: storable(e.model),
    upstream: storable(e.upstream),
    kind: e.kind,
    input_tokens: int(e.inputTokens),
    cached_tokens: int(e.cachedTokens),
    output_tokens: int(e.outputTokens),
    units: e.units,
    status: int(e.status),
    latency_ms: int(e.latencyMs),
    client_ip: storable(e.clientIp),
    streamed: e.streamed,
    estimated: e.estimated,
    cost_nano_usd: e.costNanoUsd,
    cost_input_nano_usd: e.costInputNanoUsd,
    cost_cached_nano_usd: e.costCachedNanoUsd,
    cost_output_nano_usd: e.costOutputNanoUsd,
    cost_units_nano_usd: e.costUnitsNanoUsd,
  };
}

export type UsageRow = ReturnType<typeof toRow>;

/**
 * The event's row as JSON: one journal line, and, joined, the batch the database ingests. Made
 * once per event, at record time: serializing it again for the batch cost the event loop as much.
 */
export function serializeEvent(event: UsageEvent): string {
  return JSON.stringify(toRow(event));
}

/** A row back to an event (journal replay); undefined for anything that is not one. */
export function fromRow(value: unknown): UsageEvent | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Partial<UsageRow>;
  if (
    typeof r.request_id !== 'string' ||
    typeof r.organization_id !== 'string' ||
    typeof r.created_at !== 'string'
  )
    return undefined;
  const createdAt = new Date(r.created_at);
  if (Number.isNaN(createdAt.getTime())) return undefined;
  const n = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
  const s = (x: unknown) => (typeof x === 'string' ? x : null);
  return {
    requestId: r.request_id,
    createdAt,
    organizationId: r.organization_id,
    projectId: s(r.project_id),
    apiKeyId: s(r.api_key_id) ?? '',
    userId: s(r.user_id),
    serviceAccountId: s(r.service_account_id),
    method: s(r.method) ?? 'POST',
    endpoint: s(r.endpoint) ?? '',
    model: s(r.model),
    upstream: s(r.upstream),
    kind: (USAGE_KINDS as readonly string[]).includes(r.kind as string) ? (r.kind as UsageKind) : 'other',
    inputTokens: n(r.input_tokens),
    cachedTokens: n(r.cached_tokens),
    outputTokens: n(r.output_tokens),
    units: n(r.units),
    status: n(r.status),
    latencyMs: n(r.latency_ms),
    clientIp: s(r.client_ip),
    streamed: r.streamed === true,
    estimated: r.estimated === true,
    costNanoUsd: n(r.cost_nano_usd),
    costInputNanoUsd: n(r.cost_input_nano_usd),
    costCachedNanoUsd: n(r.cost_cached_nano_usd),
    costOutputNanoUsd: n(r.cost_output_nano_usd),
    costUnitsNanoUsd: n(r.cost_units_nano_usd),
  };
}
