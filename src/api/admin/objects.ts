/**
 * Keyport rows → the Admin API's objects, field for field as the official `openai` SDK types
 * them (node_modules/openai/resources/admin/organization/). Keyport extensions are extra fields
 * (`scopes`, `allowed_models`, `allowed_ips`, `enabled`), which the SDK passes through.
 */
import type { PeriodBounds } from '../../core/periods.ts';
import type { RateLimitSetting } from '../../limits/limits-service.ts';
import type { ApiKeyView } from '../../store/repositories/api-keys.ts';
import type { Page, PageRequest } from '../../store/repositories/pagination.ts';
import type { BudgetRow, ProjectRow, ServiceAccountRow, SpendAlertRow, UserRow } from '../../store/schema.ts';
import { unixSeconds, unixSecondsOrNull } from '../http/parse.ts';

export function listObject<T extends { id: string }>(page: Page<unknown>, data: T[]) {
  return {
    object: 'list' as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: page.hasMore,
  };
}

export function adminKeyObject(key: ApiKeyView) {
  return {
    object: 'organization.admin_api_key' as const,
    id: key.id,
    name: key.name,
    redacted_value: key.redactedValue,
    created_at: unixSeconds(key.createdAt),
    expires_at: unixSecondsOrNull(key.expiresAt),
    last_used_at: unixSecondsOrNull(key.lastUsedAt),
    owner: key.ownerUser
      ? {
          type: 'user',
          object: 'organization.user',
          id: key.ownerUser.id,
          name: key.ownerUser.name,
          created_at: unixSeconds(key.ownerUser.createdAt),
          role: 'owner',
        }
      : {},
  };
}

function projectRole(role: 'owner' | 'reader' | null): string {
  return role === 'owner' ? 'owner' : 'member';
}

export function projectKeyObject(key: ApiKeyView) {
  const owner = key.serviceAccount
    ? { type: 'service_account' as const, service_account: serviceAccountOwner(key.serviceAccount) }
    : key.ownerUser
      ? { type: 'user' as const, user: userOwner(key.ownerUser, key.ownerRole) }
      : {};
  const ownerActive = key.serviceAccount ? key.serviceAccount.deletedAt === null : key.ownerRole !== null;
  return {
    object: 'organization.project.api_key' as const,
    id: key.id,
    name: key.name,
    redacted_value: key.redactedValue,
    created_at: unixSeconds(key.createdAt),
    last_used_at: unixSecondsOrNull(key.lastUsedAt),
    expires_at: unixSecondsOrNull(key.expiresAt),
    owner,
    owner_project_access: ownerActive ? ('active' as const) : ('inactive' as const),
    scopes: key.scopes,
    allowed_models: key.allowedModels,
    allowed_ips: key.allowedIps,
    enabled: key.enabled,
  };
}

function userOwner(user: UserRow, role: 'owner' | 'reader' | null) {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    created_at: unixSeconds(user.createdAt),
    role: projectRole(role),
  };
}

function serviceAccountOwner(serviceAccount: ServiceAccountRow) {
  return {
    id: serviceAccount.id,
    name: serviceAccount.name,
    created_at: unixSeconds(serviceAccount.createdAt),
    role: serviceAccount.role,
  };
}

export function projectObject(project: ProjectRow) {
  return {
    object: 'organization.project' as const,
    id: project.id,
    name: project.name,
    created_at: unixSeconds(project.createdAt),
    archived_at: unixSecondsOrNull(project.archivedAt),
    status: project.archivedAt ? 'archived' : 'active',
    external_key_id: project.externalKeyId,
    allowed_ips: project.allowedIps,
  };
}

export function serviceAccountObject(serviceAccount: ServiceAccountRow) {
  return {
    object: 'organization.project.service_account' as const,
    id: serviceAccount.id,
    name: serviceAccount.name,
    role: serviceAccount.role,
    created_at: unixSeconds(serviceAccount.createdAt),
  };
}

export function serviceAccountKeyObject(key: ApiKeyView, secret: string) {
  return {
    object: 'organization.project.service_account.api_key' as const,
    id: key.id,
    name: key.name,
    value: secret,
    created_at: unixSeconds(key.createdAt),
    expires_at: unixSecondsOrNull(key.expiresAt),
  };
}

// ---- limits, budgets, spend ------------------------------------------------------------------

/** OpenAI names a rate limit after its model: `rl-gpt-4o`; `rl-*` is all models of the scope together. */
export const RATE_LIMIT_ID_PREFIX = 'rl-';

export type RateLimitObjectType =
  | 'organization.rate_limit'
  | 'project.rate_limit'
  | 'project.api_key.rate_limit';

/**
 * OpenAI's rate-limit fields are plain numbers, so "no limit" is shown as 0 (and 0 sent means no
 * limit). `max_tokens_per_1_day` and `max_concurrent_requests` are Keyport extensions.
 */
export function rateLimitObject(object: RateLimitObjectType, setting: RateLimitSetting) {
  return {
    object,
    id: `${RATE_LIMIT_ID_PREFIX}${setting.model}`,
    model: setting.model,
    max_requests_per_1_minute: setting.maxRequestsPerMinute ?? 0,
    max_tokens_per_1_minute: setting.maxTokensPerMinute ?? 0,
    max_requests_per_1_day: setting.maxRequestsPerDay ?? 0,
    max_tokens_per_1_day: setting.maxTokensPerDay ?? 0,
    max_concurrent_requests: setting.maxConcurrentRequests ?? 0,
  };
}

/** Enforcing: the period's spend has reached the hard limit, so the gateway refuses requests. */
export function enforcementOf(budget: BudgetRow, spent: number) {
  return {
    status:
      budget.hardLimit !== null && spent >= budget.hardLimit ? ('enforcing' as const) : ('inactive' as const),
  };
}

/** OpenAI's hard spend limit: the hard limit of the scope's monthly cost budget (cents). */
export function spendLimitObject(
  object: 'organization.spend_limit' | 'project.spend_limit',
  budget: BudgetRow,
  spent: number,
) {
  return {
    object,
    threshold_amount: budget.hardLimit ?? 0,
    currency: 'USD' as const,
    interval: 'month' as const,
    enforcement: enforcementOf(budget, spent),
  };
}

export function spendAlertObject(
  object: 'organization.spend_alert' | 'project.spend_alert',
  alert: SpendAlertRow,
) {
  return {
    object,
    id: alert.id,
    threshold_amount: alert.thresholdAmount,
    currency: alert.currency as 'USD',
    interval: alert.interval,
    notification_channel: {
      type: 'email' as const,
      recipients: alert.recipients,
      subject_prefix: alert.subjectPrefix,
    },
  };
}

/** Keyport's budget (no OpenAI equivalent beyond the spend limit): `spent` is this period's, in the budget's unit. */
export function budgetObject(
  budget: BudgetRow,
  context: { projectId: string | null; spent: number; bounds: PeriodBounds },
) {
  return {
    object: 'organization.budget' as const,
    id: budget.id,
    scope: { type: budget.scopeType, id: budget.scopeId },
    project_id: context.projectId,
    api_key_id: budget.scopeType === 'api_key' ? budget.scopeId : null,
    metric: budget.metric,
    period: budget.period,
    hard_limit: budget.hardLimit,
    soft_limit_percents: budget.softLimitPercents,
    notify_emails: budget.notifyEmails,
    spent: context.spent,
    enforcement: enforcementOf(budget, context.spent),
    period_start: Math.floor(context.bounds.start / 1000),
    period_end: Math.floor(context.bounds.end / 1000),
    created_at: unixSeconds(budget.createdAt),
    updated_at: unixSeconds(budget.updatedAt),
  };
}

// ---- cursors in both directions ----------------------------------------------------------------

/**
 * `after` and `before` (OpenAI's list parameters): the items strictly between the two cursors.
 * With `after` (or neither) the page is the first `limit` of them and `has_more` says more follow;
 * with only `before` it is the last `limit` before that item (the previous page) and `has_more`
 * says more precede it. An id that is not in the list gives an empty page, as an unknown `after` does.
 */
export interface CursorQuery {
  after?: string | undefined;
  before?: string | undefined;
  limit: number;
  order?: 'asc' | 'desc' | undefined;
}

/** A list computed in memory, already in its order. */
export function pageOfList<T extends { id: string }>(items: readonly T[], query: CursorQuery): Page<T> {
  let start = 0;
  let end = items.length;
  if (query.after !== undefined) {
    start = items.findIndex((item) => item.id === query.after) + 1;
    if (start === 0) return { items: [], hasMore: false };
  }
  if (query.before !== undefined) {
    end = items.findIndex((item) => item.id === query.before);
    if (end === -1) return { items: [], hasMore: false };
  }
  const window = items.slice(start, Math.max(start, end));
  const page =
    query.before !== undefined && query.after === undefined
      ? window.slice(-query.limit)
      : window.slice(0, query.limit);
  return { items: page, hasMore: window.length > query.limit };
}

/**
 * Over a keyset-paged repository that only knows `after`: `before` alone reads backwards from
 * it; both cursors read forwards from `after` and stop at `before` (cursors taken from our own
 * pages are always in that order).
 */
export async function pageOfKeyset<T extends { id: string }>(
  read: (page: PageRequest) => Promise<Page<T>>,
  query: CursorQuery,
): Promise<Page<T>> {
  const order = query.order ?? 'asc';
  if (query.before === undefined) return read({ after: query.after, limit: query.limit, order });
  if (query.after === undefined) {
    const backwards = await read({
      after: query.before,
      limit: query.limit,
      order: order === 'asc' ? 'desc' : 'asc',
    });
    return { items: [...backwards.items].reverse(), hasMore: backwards.hasMore };
  }
  const forwards = await read({ after: query.after, limit: query.limit + 1, order });
  const cut = forwards.items.findIndex((item) => item.id === query.before);
  const window = cut === -1 ? forwards.items : forwards.items.slice(0, cut);
  return { items: window.slice(0, query.limit), hasMore: window.length > query.limit };
}
