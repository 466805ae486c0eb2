/**
 * What a key may read about itself, with no admin rights and whatever its permissions (a
 * read-only or restricted key too), so that an app can show its own users what is left:
 *
 *   GET /v1/key          the key (redacted), the budgets and rate limits that apply to it, and
 *                        its organization's credit when the plan stops at zero
 *   GET /v1/key/usage    its usage in time buckets (`start_time`, `end_time`, `bucket_width`),
 *                        per usage family, with cost
 *
 * Keyport extensions: OpenAI has no such endpoints. Nothing here reveals other keys or projects.
 */
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { pageBuckets, pageStart } from '../api/http/bucket-pages.ts';
import { parseWith } from '../api/http/parse.ts';
import { USAGE_KINDS } from '../billing/usage-event.ts';
import { usageBuckets, WIDTH_MS } from '../billing/usage-query.ts';
import { badRequest } from '../core/errors.ts';
import { periodBounds } from '../core/periods.ts';
import { NANO_USD_PER_USD } from '../core/pricing.ts';
import type { Services } from '../services.ts';
import type { BudgetRow, RateLimitRow } from '../store/schema.ts';
import type { GatewayPrincipal } from './authorize.ts';

/** Paths below /v1 that are the key's own, not proxied. */
export const KEY_SELF_PATHS = new Set(['/key', '/key/usage']);

const usageQuery = z.strictObject({
  start_time: z.coerce.number().int().min(0).max(32_503_680_000),
  end_time: z.coerce.number().int().min(1).max(32_503_680_000).optional(),
  bucket_width: z.enum(['1m', '1h', '1d']).default('1d'),
  limit: z.coerce.number().int().min(1).max(1440).optional(),
  page: z.string().max(64).optional(),
});
const DEFAULT_LIMIT = { '1m': 60, '1h': 24, '1d': 7 } as const;

const seconds = (ms: number) => Math.floor(ms / 1000);

export async function keySelf(request: FastifyRequest, services: Services, path: string) {
  const principal = request.gatewayPrincipal;
  if (path === '/key/usage') return keyUsage(request, services, principal);
  return keyObject(services, principal);
}

async function keyObject(services: Services, principal: GatewayPrincipal) {
  const { key, organization, project } = principal;
  const applies = (scope: { scopeType: string; scopeId: string }) =>
    (scope.scopeType === 'organization' && scope.scopeId === organization.id) ||
    (scope.scopeType === 'project' && scope.scopeId === project?.id) ||
    (scope.scopeType === 'api_key' && scope.scopeId === key.id);
  const limits = await services.enforcer.catalog.limitsOf(organization.id);
  const now = Date.now();
  const budgets = await Promise.all(
    limits.budgets
      .filter((b) => applies(b) && b.hardLimit !== null)
      .map((b) => budgetObject(services, organization.id, b, now)),
  );
  const account = await services.billing.account(organization.id);
  const credit =
    account.plan === 'pay_as_you_go'
      ? null
      : {
          plan: account.plan,
          remaining_usd:
            (await services.billing.balance(organization.id)).availableNanoUsd / NANO_USD_PER_USD,
        };
  return {
    object: 'api_key' as const,
    id: key.id,
    name: key.name,
    redacted_value: key.redactedValue,
    organization_id: organization.id,
    project_id: project?.id ?? null,
    scopes: key.scopes,
    expires_at: key.expiresAt ? seconds(key.expiresAt.getTime()) : null,
    budgets,
    rate_limits: limits.rateLimits.filter(applies).map(rateLimitObject),
    credit,
  };
}

async function budgetObject(services: Services, organizationId: string, budget: BudgetRow, now: number) {
  const spent = await services.limits.currentSpend(organizationId, budget);
  const bounds = periodBounds(budget.period, now, services.config.billingTimeZone);
  const limit = budget.hardLimit ?? 0;
  return {
    object: 'budget' as const,
    scope: { type: budget.scopeType, id: budget.scopeId },
    metric: budget.metric,
    period: budget.period,
    /** Cents for cost, tokens for tokens, as the budget is set. */
    hard_limit: limit,
    spent,
    remaining: Math.max(0, limit - spent),
    period_start: seconds(bounds.start),
    resets_at: seconds(bounds.end),
    enforcing: spent >= limit,
  };
}

function rateLimitObject(row: RateLimitRow) {
  return {
    object: 'rate_limit' as const,
    scope: { type: row.scopeType, id: row.scopeId },
    model: row.model,
    max_requests_per_1_minute: row.maxRequestsPerMinute ?? 0,
    max_tokens_per_1_minute: row.maxTokensPerMinute ?? 0,
    max_requests_per_1_day: row.maxRequestsPerDay ?? 0,
    max_tokens_per_1_day: row.maxTokensPerDay ?? 0,
    max_concurrent_requests: row.maxConcurrentRequests ?? 0,
  };
}

async function keyUsage(request: FastifyRequest, services: Services, principal: GatewayPrincipal) {
  const query = parseWith(usageQuery, request.query, 'query');
  const step = WIDTH_MS[query.bucket_width];
  const start = Math.floor((query.start_time * 1000) / step) * step;
  const end = query.end_time !== undefined ? query.end_time * 1000 : Date.now();
  if (end <= query.start_time * 1000)
    throw badRequest("Invalid 'end_time': it must be after start_time.", 'end_time');
  const from = pageStart(query.page, start, step);
  const limit = query.limit ?? DEFAULT_LIMIT[query.bucket_width];
  const { starts, to, nextPage } = pageBuckets(from, end, step, limit);
  const rows = await usageBuckets(services.store.db, {
    organizationId: principal.organization.id,
    width: query.bucket_width,
    from,
    to,
    kinds: USAGE_KINDS,
    groupBy: ['model'],
    apiKeyIds: [principal.key.id],
    byKind: true,
  });
  return {
    object: 'page' as const,
    key_id: principal.key.id,
    data: starts.map((start) => ({
      object: 'bucket' as const,
      start_time: start / 1000,
      end_time: (start + step) / 1000,
      results: rows
        .filter((row) => row.bucketStart === start && row.totals.requests > 0)
        .map((row) => ({
          object: 'key.usage.result' as const,
          kind: row.kind ?? null,
          model: row.group.model ?? null,
          num_requests: row.totals.requests,
          num_model_requests: row.totals.modelRequests,
          input_tokens: row.totals.inputTokens,
          input_cached_tokens: row.totals.cachedTokens,
          output_tokens: row.totals.outputTokens,
          units: row.totals.units,
          cost_usd: row.totals.cost / NANO_USD_PER_USD,
        })),
    })),
    has_more: nextPage !== null,
    next_page: nextPage,
  };
}
