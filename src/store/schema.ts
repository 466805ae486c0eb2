/**
 * The database schema. Migrations in ./migrations are generated from this file by
 * `npm run db:generate` (drizzle-kit) and applied at boot, identically on PGlite and PostgreSQL.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

const createdAt = (name = 'created_at') =>
  timestamp(name, { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const nullableTime = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const organizations = pgTable('organizations', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  /**
   * The instance operator's organization (the first one, made by `keyport init`): its admin keys
   * also set model prices, grant credits and record payments for every organization.
   */
  isOperator: boolean('is_operator').notNull().default(false),
  createdAt: createdAt(),
});

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    email: text('email').notNull(),
    name: text('name').notNull(),
    createdAt: createdAt(),
    /** argon2id (PHC string); null for an account that has not set a password yet (`keyport init`). */
    passwordHash: text('password_hash'),
    passwordChangedAt: nullableTime('password_changed_at'),
    emailVerifiedAt: nullableTime('email_verified_at'),
    /** Profile: what they mean to build (optional). */
    intendedUse: text('intended_use'),
    termsVersion: text('terms_version'),
    termsAcceptedAt: nullableTime('terms_accepted_at'),
    /** The TOTP secret, encrypted with the instance's secret key (AES-256-GCM); null until enrolled. */
    mfaSecret: text('mfa_secret'),
    mfaEnabledAt: nullableTime('mfa_enabled_at'),
    /** The last TOTP time step accepted: a code is good once. */
    mfaLastStep: bigint('mfa_last_step', { mode: 'number' }),
    /** The first account of the instance: it may create organizations for others, see every one. */
    isInstanceOwner: boolean('is_instance_owner').notNull().default(false),
  },
  (t) => [uniqueIndex('users_email_unique').on(sql`lower(${t.email})`)],
);

/** A signed-in browser. The cookie holds a random token; only its SHA-256 is stored. */
export const sessions = pgTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    tokenHash: text('token_hash').notNull(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    createdAt: createdAt(),
    lastSeenAt: createdAt('last_seen_at'),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    /** The password was right; the second factor is still to come. */
    mfaPending: boolean('mfa_pending').notNull().default(false),
    /** When the password (and second factor) were last entered: sensitive changes need it recent. */
    reauthenticatedAt: createdAt('reauthenticated_at'),
    ip: text('ip'),
    userAgent: text('user_agent'),
    revokedAt: nullableTime('revoked_at'),
  },
  (t) => [uniqueIndex('sessions_token').on(t.tokenHash), index('sessions_user').on(t.userId)],
);

/** Single-use MFA recovery codes, hashed. */
export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    codeHash: text('code_hash').notNull(),
    usedAt: nullableTime('used_at'),
  },
  (t) => [primaryKey({ columns: [t.userId, t.codeHash] })],
);

/** Links sent by email (verify the address, reset the password, confirm a new address). */
export const emailTokens = pgTable(
  'email_tokens',
  {
    tokenHash: text('token_hash').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    purpose: text('purpose', { enum: ['verify_email', 'reset_password', 'change_email'] }).notNull(),
    /** The new address, for change_email. */
    email: text('email'),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    usedAt: nullableTime('used_at'),
  },
  (t) => [index('email_tokens_user').on(t.userId, t.purpose)],
);

/** Failed logins per account and per client address, for back-off (shared by every instance). */
export const loginThrottle = pgTable('login_throttle', {
  /** `email:<lower-case address>` or `ip:<address>`. */
  key: text('key').primaryKey(),
  failures: integer('failures').notNull(),
  firstFailureAt: timestamp('first_failure_at', { withTimezone: true, mode: 'date' }).notNull(),
  lockedUntil: nullableTime('locked_until'),
  /** The lock-out notice was emailed for this streak of failures. */
  notifiedAt: nullableTime('notified_at'),
});

export const organizationMembers = pgTable(
  'organization_members',
  {
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    role: text('role', { enum: ['owner', 'reader'] }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.userId] })],
);

export const projects = pgTable(
  'projects',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    name: text('name').notNull(),
    externalKeyId: text('external_key_id'),
    /** Project-wide IP allow-list (CIDR); applies to every key of the project. */
    allowedIps: text('allowed_ips').array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    archivedAt: nullableTime('archived_at'),
  },
  (t) => [index('projects_org_created').on(t.organizationId, t.createdAt, t.id)],
);

/** Project roles, as OpenAI's: an owner manages the project; a member uses it. */
export const projectMembers = pgTable(
  'project_members',
  {
    projectId: text('project_id')
      .notNull()
      .references(() => projects.id),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    role: text('role', { enum: ['owner', 'member'] }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.projectId, t.userId] }), index('project_members_user').on(t.userId)],
);

/** An invitation to an organization (and some of its projects), accepted through an emailed link. */
export const invites = pgTable(
  'invites',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    email: text('email').notNull(),
    role: text('role', { enum: ['owner', 'reader'] }).notNull(),
    /** `[{ id, role }]`: projects joined on acceptance. */
    projects: jsonb('projects').notNull().default(sql`'[]'::jsonb`),
    tokenHash: text('token_hash').notNull(),
    invitedBy: text('invited_by').notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    acceptedAt: nullableTime('accepted_at'),
    acceptedBy: text('accepted_by'),
    deletedAt: nullableTime('deleted_at'),
  },
  (t) => [
    uniqueIndex('invites_token').on(t.tokenHash),
    index('invites_org_created').on(t.organizationId, t.createdAt, t.id),
  ],
);

/**
 * The audit log: every change and every sign-in, in OpenAI's shape (a type, an actor, and the
 * type's details), written in the same transaction as the change it records.
 */
export const auditLogs = pgTable(
  'audit_logs',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id').notNull(),
    projectId: text('project_id'),
    type: text('type').notNull(),
    effectiveAt: timestamp('effective_at', { withTimezone: true, mode: 'date' }).notNull(),
    /** OpenAI's actor object: `{ type: 'session' | 'api_key', session | api_key }`. */
    actor: jsonb('actor').notNull(),
    /** The actor's id (a user, an API key, `system:…`): the `actor_ids` filter. */
    actorId: text('actor_id').notNull(),
    actorEmail: text('actor_email'),
    /** What it acted on (`resource_ids`). */
    resourceId: text('resource_id'),
    /** The type's details, as OpenAI nests them under the type's name. */
    details: jsonb('details').notNull().default(sql`'{}'::jsonb`),
  },
  (t) => [
    index('audit_logs_org_time').on(t.organizationId, t.effectiveAt, t.id),
    index('audit_logs_org_type').on(t.organizationId, t.type, t.effectiveAt),
  ],
);

/** Per-organization settings. */
export const organizationSettings = pgTable('organization_settings', {
  organizationId: text('organization_id')
    .primaryKey()
    .references(() => organizations.id),
  /** Audit entries older than this many days are deleted; null keeps them. */
  auditRetentionDays: integer('audit_retention_days'),
  updatedAt: createdAt('updated_at'),
});

export const serviceAccounts = pgTable(
  'service_accounts',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    projectId: text('project_id')
      .notNull()
      .references(() => projects.id),
    name: text('name').notNull(),
    role: text('role', { enum: ['owner', 'member', 'none'] }).notNull(),
    createdAt: createdAt(),
    deletedAt: nullableTime('deleted_at'),
  },
  (t) => [index('service_accounts_project_created').on(t.projectId, t.createdAt, t.id)],
);

export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    /** Null for admin keys, which belong to the organization. */
    projectId: text('project_id').references(() => projects.id),
    kind: text('kind', { enum: ['proj', 'svc', 'admin'] }).notNull(),
    name: text('name').notNull(),
    /** `kp_proj_3nT0…abcd`, taken from the current secret. */
    redactedValue: text('redacted_value').notNull(),
    /** The user a `proj` or `admin` key belongs to. */
    ownerUserId: text('owner_user_id').references(() => users.id),
    /** The service account an `svc` key belongs to. */
    serviceAccountId: text('service_account_id').references(() => serviceAccounts.id),
    /** Who created it: a user id or an admin key id. */
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    updatedAt: createdAt('updated_at'),
    lastUsedAt: nullableTime('last_used_at'),
    expiresAt: nullableTime('expires_at'),
    enabled: boolean('enabled').notNull().default(true),
    /** OpenAI scope identifiers: [] = all, ["api.all.read"] = read only, else restricted. */
    scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
    allowedModels: text('allowed_models').array().notNull().default(sql`'{}'::text[]`),
    allowedIps: text('allowed_ips').array().notNull().default(sql`'{}'::text[]`),
    revokedAt: nullableTime('revoked_at'),
  },
  (t) => [
    index('api_keys_project_created').on(t.projectId, t.createdAt, t.id),
    index('api_keys_org_kind_created').on(t.organizationId, t.kind, t.createdAt, t.id),
  ],
);

/**
 * The secrets of a key, as SHA-256 only. A key has one current secret (expires_at null) and,
 * after a rotation, earlier secrets that keep working until their grace period ends.
 */
export const apiKeySecrets = pgTable(
  'api_key_secrets',
  {
    hash: text('hash').primaryKey(),
    keyId: text('key_id')
      .notNull()
      .references(() => apiKeys.id),
    createdAt: createdAt(),
    expiresAt: nullableTime('expires_at'),
  },
  (t) => [index('api_key_secrets_key').on(t.keyId)],
);

export type OrganizationRow = typeof organizations.$inferSelect;
export type SessionRow = typeof sessions.$inferSelect;
export type InviteRow = typeof invites.$inferSelect;
export type AuditLogRow = typeof auditLogs.$inferSelect;
export type UserRow = typeof users.$inferSelect;
export type ProjectRow = typeof projects.$inferSelect;
export type ServiceAccountRow = typeof serviceAccounts.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;

/**
 * One row per gateway request, written in batches off the response path; idempotent by request id.
 * Token counts are from the upstream's `usage`, or counted locally (`estimated`) when it gave none.
 */
export const usageEvents = pgTable(
  'usage_events',
  {
    requestId: text('request_id').primaryKey(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    organizationId: text('organization_id').notNull(),
    projectId: text('project_id'),
    apiKeyId: text('api_key_id').notNull(),
    /** The key's owner (a user) or service account, for per-user usage. */
    userId: text('user_id'),
    serviceAccountId: text('service_account_id'),
    method: text('method').notNull(),
    endpoint: text('endpoint').notNull(),
    model: text('model'),
    upstream: text('upstream'),
    inputTokens: integer('input_tokens').notNull().default(0),
    cachedTokens: integer('cached_tokens').notNull().default(0),
    outputTokens: integer('output_tokens').notNull().default(0),
    status: integer('status').notNull(),
    latencyMs: integer('latency_ms').notNull(),
    clientIp: text('client_ip'),
    streamed: boolean('streamed').notNull().default(false),
    estimated: boolean('estimated').notNull().default(false),
    /** What the request cost at the model's price when it was made, in billionths of a dollar. */
    costNanoUsd: bigint('cost_nano_usd', { mode: 'number' }).notNull().default(0),
    /** The Usage API family: completions, embeddings, moderations, images, audio_speeches, … */
    kind: text('kind').notNull().default('other'),
    /** Images generated, characters spoken or seconds transcribed (per `kind`); 0 otherwise. */
    units: bigint('units', { mode: 'number' }).notNull().default(0),
    /** `cost_nano_usd` split into its line items: uncached input, cached input, output, units. */
    costInputNanoUsd: bigint('cost_input_nano_usd', { mode: 'number' }).notNull().default(0),
    costCachedNanoUsd: bigint('cost_cached_nano_usd', { mode: 'number' }).notNull().default(0),
    costOutputNanoUsd: bigint('cost_output_nano_usd', { mode: 'number' }).notNull().default(0),
    costUnitsNanoUsd: bigint('cost_units_nano_usd', { mode: 'number' }).notNull().default(0),
  },
  (t) => [index('usage_events_org_time').on(t.organizationId, t.createdAt)],
);

export type UsageEventRow = typeof usageEvents.$inferSelect;

/** The widths usage is rolled up at; every bucket starts at a multiple of its width in UTC. */
export const ROLLUP_WIDTHS = ['1m', '1h', '1d'] as const;
export type RollupWidth = (typeof ROLLUP_WIDTHS)[number];

/**
 * Usage summed per bucket (minute, hour, day) and per project, key, user, model and kind, so the
 * Usage and Costs APIs, budgets and invoices read a few rows instead of millions. Minutes are
 * added to in the same statement as the events they sum (only events inserted, never
 * duplicates); hours and days are recomputed from them by compaction (see `rollup_dirty`). Null
 * ids are stored as '' (they are part of the key).
 */
export const usageRollups = pgTable(
  'usage_rollups',
  {
    width: text('width', { enum: ROLLUP_WIDTHS }).notNull(),
    bucketStart: timestamp('bucket_start', { withTimezone: true, mode: 'date' }).notNull(),
    organizationId: text('organization_id').notNull(),
    projectId: text('project_id').notNull(),
    apiKeyId: text('api_key_id').notNull(),
    /** The key owner's user id, or the service account's id. */
    userId: text('user_id').notNull(),
    model: text('model').notNull(),
    kind: text('kind').notNull(),
    requests: bigint('requests', { mode: 'number' }).notNull(),
    /** Requests the upstream refused or failed (status ≥ 400) and that used no tokens. */
    errors: bigint('errors', { mode: 'number' }).notNull(),
    inputTokens: bigint('input_tokens', { mode: 'number' }).notNull(),
    cachedTokens: bigint('cached_tokens', { mode: 'number' }).notNull(),
    outputTokens: bigint('output_tokens', { mode: 'number' }).notNull(),
    units: bigint('units', { mode: 'number' }).notNull(),
    costInputNanoUsd: bigint('cost_input_nano_usd', { mode: 'number' }).notNull(),
    costCachedNanoUsd: bigint('cost_cached_nano_usd', { mode: 'number' }).notNull(),
    costOutputNanoUsd: bigint('cost_output_nano_usd', { mode: 'number' }).notNull(),
    costUnitsNanoUsd: bigint('cost_units_nano_usd', { mode: 'number' }).notNull(),
  },
  (t) => [
    primaryKey({
      columns: [t.width, t.organizationId, t.bucketStart, t.projectId, t.apiKeyId, t.userId, t.model, t.kind],
    }),
  ],
);

/**
 * Hours whose minute roll-ups changed since their hour and day roll-ups were last computed from
 * them. Ingest adds to minutes only (and marks the hour); compaction recomputes the hour and its
 * day and clears the mark, unless `version` moved meanwhile (a write it did not see). Readers take
 * a marked hour from its minutes, so every read is exact, compacted or not.
 */
export const rollupDirty = pgTable(
  'rollup_dirty',
  {
    organizationId: text('organization_id').notNull(),
    hour: timestamp('hour', { withTimezone: true, mode: 'date' }).notNull(),
    version: bigint('version', { mode: 'number' }).notNull().default(1),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.hour] })],
);

/**
 * Model prices, USD per 1M tokens (and per unit for images, characters, seconds), effective from
 * a moment: a price change is a new row, so what past requests cost never changes. A request is
 * priced by the row matching its model (an exact name before a glob) with the latest
 * `effective_from` not after the request; config-file prices and OpenAI's list prices come after.
 */
export const modelPrices = pgTable(
  'model_prices',
  {
    id: text('id').primaryKey(),
    /** A model name or a glob (`llama-*`). */
    model: text('model').notNull(),
    input: numeric('input_usd_per_1m', { mode: 'number' }).notNull(),
    cachedInput: numeric('cached_input_usd_per_1m', { mode: 'number' }),
    output: numeric('output_usd_per_1m', { mode: 'number' }).notNull(),
    /** USD per image, per character (speech) or per second (transcription). */
    unit: numeric('unit_usd', { mode: 'number' }),
    effectiveFrom: timestamp('effective_from', { withTimezone: true, mode: 'date' }).notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('model_prices_model_from').on(t.model, t.effectiveFrom)],
);

export const BILLING_PLANS = ['free_trial', 'pay_as_you_go', 'prepaid'] as const;
export type BillingPlan = (typeof BILLING_PLANS)[number];

/** An organization's plan and billing details; created with defaults when first needed. */
export const billingAccounts = pgTable('billing_accounts', {
  organizationId: text('organization_id')
    .primaryKey()
    .references(() => organizations.id),
  /** free_trial and prepaid stop at zero credit; pay_as_you_go is invoiced monthly. */
  plan: text('plan', { enum: BILLING_PLANS }).notNull(),
  billingName: text('billing_name'),
  billingEmail: text('billing_email'),
  /** Postal address lines, as entered. */
  billingAddress: text('billing_address').array().notNull().default(sql`'{}'::text[]`),
  taxId: text('tax_id'),
  createdAt: createdAt(),
  updatedAt: createdAt('updated_at'),
});

/**
 * Credit: a trial grant, a prepaid top-up, a promotion or an adjustment. Usage draws on the
 * grant that expires first; what a grant still holds is `remaining`, kept exact in nano-USD.
 */
export const creditGrants = pgTable(
  'credit_grants',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    kind: text('kind', { enum: ['trial', 'top_up', 'promotion', 'adjustment'] }).notNull(),
    amountNanoUsd: bigint('amount_nano_usd', { mode: 'number' }).notNull(),
    remainingNanoUsd: bigint('remaining_nano_usd', { mode: 'number' }).notNull(),
    note: text('note'),
    /** The payment that bought it (top-ups). */
    paymentId: text('payment_id'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    expiresAt: nullableTime('expires_at'),
    voidedAt: nullableTime('voided_at'),
  },
  (t) => [index('credit_grants_org').on(t.organizationId, t.createdAt)],
);

/** How much of each grant usage drew in each billing month (credits applied on invoices). */
export const creditDraws = pgTable(
  'credit_draws',
  {
    grantId: text('grant_id')
      .notNull()
      .references(() => creditGrants.id),
    organizationId: text('organization_id').notNull(),
    monthStart: timestamp('month_start', { withTimezone: true, mode: 'date' }).notNull(),
    amountNanoUsd: bigint('amount_nano_usd', { mode: 'number' }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.grantId, t.monthStart] }),
    index('credit_draws_org_month').on(t.organizationId, t.monthStart),
  ],
);

/** A month's invoice: usage per project and model in cents, credits applied, what is due. */
export const invoices = pgTable(
  'invoices',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    /** `KP-2026-11-0001`: the month, then a sequence within it. */
    number: text('number').notNull(),
    periodStart: timestamp('period_start', { withTimezone: true, mode: 'date' }).notNull(),
    periodEnd: timestamp('period_end', { withTimezone: true, mode: 'date' }).notNull(),
    status: text('status', { enum: ['open', 'paid', 'void'] }).notNull(),
    currency: text('currency').notNull().default('USD'),
    subtotalCents: bigint('subtotal_cents', { mode: 'number' }).notNull(),
    creditsCents: bigint('credits_cents', { mode: 'number' }).notNull(),
    totalCents: bigint('total_cents', { mode: 'number' }).notNull(),
    /** The billing details when it was issued (they may change later). */
    billTo: jsonb('bill_to').notNull(),
    issuedAt: createdAt('issued_at'),
    dueAt: nullableTime('due_at'),
    paidAt: nullableTime('paid_at'),
    voidedAt: nullableTime('voided_at'),
  },
  (t) => [
    uniqueIndex('invoices_number').on(t.number),
    // One live invoice per organization and month, however many instances try to issue it.
    uniqueIndex('invoices_org_period_live').on(t.organizationId, t.periodStart).where(sql`status <> 'void'`),
  ],
);

export const invoiceLines = pgTable(
  'invoice_lines',
  {
    invoiceId: text('invoice_id')
      .notNull()
      .references(() => invoices.id),
    position: integer('position').notNull(),
    projectId: text('project_id').notNull(),
    model: text('model').notNull(),
    /** `input`, `cached input`, `output`, or the unit (`images`, …). */
    item: text('item').notNull(),
    quantity: bigint('quantity', { mode: 'number' }).notNull(),
    quantityUnit: text('quantity_unit').notNull(),
    amountCents: bigint('amount_cents', { mode: 'number' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.invoiceId, t.position] })],
);

/** Money received: for an invoice, or a prepaid top-up (which grants credit). */
export const payments = pgTable(
  'payments',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    invoiceId: text('invoice_id').references(() => invoices.id),
    amountCents: bigint('amount_cents', { mode: 'number' }).notNull(),
    currency: text('currency').notNull().default('USD'),
    /** The payment provider: `manual` (recorded by the operator) today. */
    provider: text('provider').notNull(),
    /** What the provider calls it: a bank reference, a charge id. */
    reference: text('reference'),
    method: text('method'),
    status: text('status', { enum: ['succeeded', 'refunded'] }).notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('payments_org_created').on(t.organizationId, t.createdAt, t.id)],
);

export type ModelPriceRow = typeof modelPrices.$inferSelect;
export type BillingAccountRow = typeof billingAccounts.$inferSelect;
export type CreditGrantRow = typeof creditGrants.$inferSelect;
export type InvoiceRow = typeof invoices.$inferSelect;
export type InvoiceLineRow = typeof invoiceLines.$inferSelect;
export type PaymentRow = typeof payments.$inferSelect;

/** Who a limit or budget applies to. */
export const LIMIT_SCOPES = ['organization', 'project', 'api_key'] as const;
export type LimitScope = (typeof LIMIT_SCOPES)[number];

/**
 * Rate limits: one row is one set of buckets for one scope and one model (`*` = all models of the
 * scope together). A request is admitted only if every applicable row's buckets allow it (the
 * tightest limit wins). A null limit means none.
 */
export const rateLimits = pgTable(
  'rate_limits',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    scopeType: text('scope_type', { enum: LIMIT_SCOPES }).notNull(),
    /** The organization, project or API key id. */
    scopeId: text('scope_id').notNull(),
    /** An exact model name, or `*` for all models together. */
    model: text('model').notNull(),
    maxRequestsPerMinute: integer('max_requests_per_minute'),
    maxTokensPerMinute: integer('max_tokens_per_minute'),
    maxRequestsPerDay: integer('max_requests_per_day'),
    maxTokensPerDay: bigint('max_tokens_per_day', { mode: 'number' }),
    maxConcurrentRequests: integer('max_concurrent_requests'),
    createdAt: createdAt(),
    updatedAt: createdAt('updated_at'),
  },
  (t) => [
    uniqueIndex('rate_limits_scope_model').on(t.scopeType, t.scopeId, t.model),
    index('rate_limits_org').on(t.organizationId),
  ],
);

/**
 * Budgets: money (`cost`, in cents) or tokens per day or calendar month, for one scope. The hard
 * limit blocks requests (429 insufficient_quota) until the period resets or it is raised; soft
 * limits are percentages of it that raise an alert once per period. OpenAI's `spend_limit` is the
 * monthly cost budget of an organization or project.
 */
export const budgets = pgTable(
  'budgets',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    scopeType: text('scope_type', { enum: LIMIT_SCOPES }).notNull(),
    scopeId: text('scope_id').notNull(),
    metric: text('metric', { enum: ['cost', 'tokens'] }).notNull(),
    period: text('period', { enum: ['day', 'month'] }).notNull(),
    /** Cents for cost, tokens for tokens; null: no hard limit (alerts only). */
    hardLimit: bigint('hard_limit', { mode: 'number' }),
    /** Alert when spend reaches these percentages of the hard limit. */
    softLimitPercents: integer('soft_limit_percents').array().notNull().default(sql`'{}'::integer[]`),
    /** Who is told when a soft or hard limit is reached (besides stored alerts and webhooks). */
    notifyEmails: text('notify_emails').array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    updatedAt: createdAt('updated_at'),
  },
  (t) => [
    uniqueIndex('budgets_scope_metric_period').on(t.scopeType, t.scopeId, t.metric, t.period),
    index('budgets_org').on(t.organizationId),
  ],
);

/** OpenAI's spend alerts: an email when an organization's or project's monthly cost reaches an amount. */
export const spendAlerts = pgTable(
  'spend_alerts',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    scopeType: text('scope_type', { enum: ['organization', 'project'] }).notNull(),
    scopeId: text('scope_id').notNull(),
    /** Cents. */
    thresholdAmount: bigint('threshold_amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull().default('USD'),
    interval: text('interval', { enum: ['month'] })
      .notNull()
      .default('month'),
    recipients: text('recipients').array().notNull(),
    subjectPrefix: text('subject_prefix'),
    createdAt: createdAt(),
  },
  (t) => [index('spend_alerts_scope_created').on(t.scopeType, t.scopeId, t.createdAt, t.id)],
);

/**
 * Alerts the dashboard shows (budget thresholds now; leaks and anomalies later). `dedupeKey`
 * makes "once per period" hold across instances: the first insert wins and delivers.
 */
export const alerts = pgTable(
  'alerts',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    projectId: text('project_id'),
    kind: text('kind').notNull(),
    severity: text('severity', { enum: ['info', 'warning', 'critical'] }).notNull(),
    title: text('title').notNull(),
    message: text('message').notNull(),
    data: jsonb('data').notNull().default(sql`'{}'::jsonb`),
    dedupeKey: text('dedupe_key'),
    createdAt: createdAt(),
    readAt: nullableTime('read_at'),
  },
  (t) => [
    uniqueIndex('alerts_dedupe').on(t.dedupeKey),
    index('alerts_org_created').on(t.organizationId, t.createdAt, t.id),
  ],
);

export type RateLimitRow = typeof rateLimits.$inferSelect;
export type BudgetRow = typeof budgets.$inferSelect;
export type SpendAlertRow = typeof spendAlerts.$inferSelect;
export type AlertRow = typeof alerts.$inferSelect;
