/** Usage events for tests: a complete event from a few fields, and storing events as the gateway's recorder does. */
import { randomUUID } from 'node:crypto';
import type { UsageEvent } from '../../src/billing/usage-event.ts';
import { ingestUsage } from '../../src/billing/usage-store.ts';
import type { Db } from '../../src/store/database.ts';

/** A 200 chat completion by default; `costNanoUsd` is taken as the input line item unless split. */
export function usageEvent(
  fields: Partial<UsageEvent> & Pick<UsageEvent, 'organizationId' | 'apiKeyId'>,
): UsageEvent {
  const cost = fields.costNanoUsd ?? 0;
  return {
    requestId: `req_${randomUUID().replaceAll('-', '')}`,
    createdAt: new Date(),
    projectId: null,
    userId: null,
    serviceAccountId: null,
    method: 'POST',
    endpoint: '/v1/chat/completions',
    model: 'mock-gpt-4o',
    upstream: 'mock',
    kind: 'completions',
    inputTokens: 0,
    cachedTokens: 0,
    outputTokens: 0,
    units: 0,
    status: 200,
    latencyMs: 5,
    clientIp: null,
    streamed: false,
    estimated: false,
    costInputNanoUsd: cost,
    costCachedNanoUsd: 0,
    costOutputNanoUsd: 0,
    costUnitsNanoUsd: 0,
    ...fields,
    costNanoUsd: cost,
  };
}

/** Stores events (with their roll-ups and credit draws) exactly as the gateway's recorder does. */
export async function storeUsage(db: Db, events: UsageEvent[], timeZone = 'UTC'): Promise<number> {
  return (await ingestUsage(db, events, timeZone)).inserted;
}
