/**
 * Configuration: environment variables, optionally on top of a JSON file named by KEYPORT_CONFIG.
 * Parsed once at boot; a bad value stops the process with a message naming the variable.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { PREFIX_PATTERN } from '../core/key-format.ts';
import { assertTimeZone } from '../core/periods.ts';
import { UserError } from '../core/user-error.ts';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function isCidrOrAddress(text: string): boolean {
  return ipaddr.isValid(text) || ipaddr.isValidCIDR(text);
}

const upstreamSchema = z.strictObject({
  /** Named in logs and usage records. */
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'expected lower-case letters, digits, - and _'),
  /** The OpenAI-compatible base URL, with its /v1: http://vllm:8000/v1 */
  baseUrl: z.url({ protocol: /^https?$/ }).transform((url) => url.replace(/\/+$/, '')),
  /** The environment variable holding the upstream's credential (never stored, never logged). */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
  /** Models it serves: names or globs ("llama-*", "*"). A request goes to the first upstream that serves its model. */
  models: z.array(z.string().min(1)).min(1),
  /** Time to the response headers (a long generation streams after them). */
  timeoutMs: z.number().int().min(100).max(3_600_000).default(600_000),
  connectTimeoutMs: z.number().int().min(100).max(60_000).default(10_000),
});
export type UpstreamConfig = z.infer<typeof upstreamSchema>;

/** Where alerts are POSTed, signed with the secret held by `secretEnv`. */
const webhookSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  /** The environment variable holding the signing secret (never stored in the file, never logged). */
  secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
  /** Alert kinds it receives (`budget.hard_limit`, or `budget.*`); unset = every kind. */
  events: z
    .array(
      z.string().regex(/^[a-z0-9_.]+(\.\*)?$|^\*$/, 'expected an alert kind, a prefix like budget.*, or *'),
    )
    .min(1)
    .optional(),
});
export type WebhookConfig = z.infer<typeof webhookSchema>;

const usdPerMillion = z.number().min(0).max(1_000_000);
/** A model's price, USD per 1M tokens; `model` is a name or glob, the first match wins. */
const priceSchema = z.strictObject({
  model: z.string().min(1),
  input: usdPerMillion,
  cachedInput: usdPerMillion.optional(),
  output: usdPerMillion,
  /** USD per image, per speech character or per transcribed second. */
  unit: z.number().min(0).max(1000).optional(),
});

function isTimeZone(name: string): boolean {
  try {
    assertTimeZone(name);
    return true;
  } catch {
    return false;
  }
}

const configSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  host: z.string().min(1).default('127.0.0.1'),
  dataDir: z.string().min(1).default('./.keyport'),
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
    .optional(),
  redisUrl: z
    .string()
    .regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL')
    .optional(),
  /** Every Redis key Keyport writes starts with this (several deployments may share one Redis). */
  redisKeyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9:_.-]{0,64}$/, 'expected up to 64 letters, digits and : _ . -')
    .default('keyport:'),
  /**
   * With Redis: admit most requests from capacity each instance takes ahead of need (at most 1/64
   * of a limit), with no Redis round trip on their path; 'off' makes every admission a Redis call.
   */
  redisLocalGrants: z.enum(['on', 'off']).default('on'),
  /** `GET /metrics` in Prometheus's text format (no tenant in any label). */
  metrics: z.enum(['on', 'off']).default('on'),
  keyPrefix: z
    .string()
    .regex(PREFIX_PATTERN, 'expected 1-16 lower-case letters or digits, starting with a letter (no "_")')
    .default('kp'),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  /** How long a verified (or unknown) key stays in the in-process cache. Revocation on this instance is immediate regardless. */
  keyCacheTtlMs: z.coerce.number().int().min(0).max(60_000).default(5_000),
  /** How often coalesced `last_used_at` updates are written. */
  lastUsedFlushMs: z.coerce.number().int().min(100).max(300_000).default(10_000),
  /** Model servers the gateway proxies to; none = the built-in mock upstream. */
  upstreams: z.array(upstreamSchema).default([]),
  /** Proxies (CIDRs) whose X-Forwarded-For is believed; from anyone else it is ignored. */
  trustedProxies: z.array(z.string().refine(isCidrOrAddress, 'expected an IP address or CIDR')).default([]),
  /** The built-in mock upstream: on by default when no upstream is configured. */
  mockUpstream: z.enum(['auto', 'on', 'off']).default('auto'),
  mockUpstreamDelayMs: z.coerce.number().int().min(0).max(60_000).default(0),
  /** smtp(s)://user:pass@host:port for alert emails; unset = emails are only logged. */
  smtpUrl: z
    .string()
    .regex(/^smtps?:\/\//, 'expected an smtp:// or smtps:// URL')
    .refine((url) => URL.canParse(url), 'expected an smtp:// or smtps:// URL')
    .optional(),
  smtpFrom: z.string().min(1).default('Keyport <keyport@localhost>'),
  /** Endpoints that receive signed alert events. */
  webhooks: z.array(webhookSchema).default([]),
  /** Largest request body the gateway accepts (uploads for audio and files included). */
  gatewayBodyLimitBytes: z.coerce
    .number()
    .int()
    .min(1024)
    .max(512 * 1024 * 1024)
    .default(32 * 1024 * 1024),
  /** Model prices for costs and money budgets (USD per 1M tokens); unlisted models use OpenAI's list prices or 0. */
  prices: z.array(priceSchema).default([]),
  /** Budget days and months begin at midnight in this IANA time zone. */
  billingTimeZone: z
    .string()
    .refine(isTimeZone, 'expected an IANA time zone such as UTC or Europe/Paris')
    .default('UTC'),
  /** Output tokens a request is assumed to use at admission when it sets no max_tokens (reconciled after). */
  defaultMaxOutputTokens: z.coerce.number().int().min(0).max(1_000_000).default(1024),
  /**
   * The local usage journal in the data directory: a completed request's record survives a crash.
   * Off: a crash loses the records not yet written (at most a flush interval's worth).
   */
  usageJournal: z.enum(['on', 'off']).default('on'),
  /** How often usage records are written to the database in batches. */
  usageFlushMs: z.coerce.number().int().min(10).max(600_000).default(200),
  /** How often the journal is fdatasynced (what a machine crash, not a process crash, may lose). */
  usageJournalSyncMs: z.coerce.number().int().min(1).max(60_000).default(100),
  /** The plan of a new organization: `free_trial` and `prepaid` stop at zero credit. */
  defaultPlan: z.enum(['free_trial', 'pay_as_you_go', 'prepaid']).default('pay_as_you_go'),
  /** Credit a new organization on the free trial gets (cents), and for how many days. */
  trialCreditCents: z.coerce.number().int().min(0).max(100_000_000).default(500),
  trialDays: z.coerce.number().int().min(1).max(3650).default(30),
  /** Days an invoice is due after it is issued. */
  invoiceDueDays: z.coerce.number().int().min(0).max(365).default(14),
  /** Who issues invoices: the operator's name and address lines, printed on them. */
  invoiceIssuer: z.string().min(1).max(500).default('Keyport'),
  /** The address users reach Keyport at (links in emails; the origin the dashboard's requests must come from). */
  publicUrl: z
    .string()
    .refine(
      (url) => URL.canParse(url) && /^https?:$/.test(new URL(url).protocol),
      'expected an http(s):// URL',
    )
    .optional(),
  /** 32 bytes, base64: encrypts stored TOTP secrets. Several instances must share it; unset: a key file in the data directory. */
  secretKey: z.string().min(40).max(64).optional(),
  /** The version of the terms users accept at sign-up (recorded with the time). */
  termsVersion: z.string().min(1).max(64).default('2026-12-01'),
  sessionDays: z.coerce.number().int().min(1).max(365).default(14),
  inviteDays: z.coerce.number().int().min(1).max(90).default(7),
  /** Audit entries older than this are deleted, unless an organization sets its own; 0 keeps them. */
  auditRetentionDays: z.coerce.number().int().min(0).max(3650).default(0),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

type EnvSetting = Exclude<keyof Config, 'upstreams' | 'trustedProxies' | 'prices' | 'webhooks'>;

/** Environment variable for each plain setting; also how errors name it. */
const ENV_NAMES: Record<EnvSetting, string> = {
  port: 'KEYPORT_PORT',
  host: 'KEYPORT_HOST',
  dataDir: 'KEYPORT_DATA_DIR',
  databaseUrl: 'KEYPORT_DATABASE_URL',
  redisUrl: 'KEYPORT_REDIS_URL',
  redisKeyPrefix: 'KEYPORT_REDIS_KEY_PREFIX',
  redisLocalGrants: 'KEYPORT_REDIS_LOCAL_GRANTS',
  metrics: 'KEYPORT_METRICS',
  keyPrefix: 'KEYPORT_KEY_PREFIX',
  logLevel: 'KEYPORT_LOG_LEVEL',
  keyCacheTtlMs: 'KEYPORT_KEY_CACHE_TTL_MS',
  lastUsedFlushMs: 'KEYPORT_LAST_USED_FLUSH_MS',
  mockUpstream: 'KEYPORT_MOCK_UPSTREAM',
  mockUpstreamDelayMs: 'KEYPORT_MOCK_UPSTREAM_DELAY_MS',
  gatewayBodyLimitBytes: 'KEYPORT_GATEWAY_BODY_LIMIT_BYTES',
  smtpUrl: 'KEYPORT_SMTP_URL',
  smtpFrom: 'KEYPORT_SMTP_FROM',
  billingTimeZone: 'KEYPORT_BILLING_TIME_ZONE',
  defaultMaxOutputTokens: 'KEYPORT_DEFAULT_MAX_OUTPUT_TOKENS',
  usageJournal: 'KEYPORT_USAGE_JOURNAL',
  usageJournalSyncMs: 'KEYPORT_USAGE_JOURNAL_SYNC_MS',
  usageFlushMs: 'KEYPORT_USAGE_FLUSH_MS',
  defaultPlan: 'KEYPORT_DEFAULT_PLAN',
  trialCreditCents: 'KEYPORT_TRIAL_CREDIT_CENTS',
  trialDays: 'KEYPORT_TRIAL_DAYS',
  invoiceDueDays: 'KEYPORT_INVOICE_DUE_DAYS',
  invoiceIssuer: 'KEYPORT_INVOICE_ISSUER',
  publicUrl: 'KEYPORT_PUBLIC_URL',
  secretKey: 'KEYPORT_SECRET_KEY',
  termsVersion: 'KEYPORT_TERMS_VERSION',
  sessionDays: 'KEYPORT_SESSION_DAYS',
  inviteDays: 'KEYPORT_INVITE_DAYS',
  auditRetentionDays: 'KEYPORT_AUDIT_RETENTION_DAYS',
};

/**
 * One upstream from the environment, for the common case:
 *   KEYPORT_UPSTREAM_URL=http://vllm:8000/v1 KEYPORT_UPSTREAM_MODELS="llama-*" KEYPORT_UPSTREAM_API_KEY=…
 */
function upstreamFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  if (!env.KEYPORT_UPSTREAM_URL) {
    // Without the URL they would be ignored, and the mock would answer in the upstream's place.
    const orphan = ['KEYPORT_UPSTREAM_MODELS', 'KEYPORT_UPSTREAM_API_KEY'].filter((name) => env[name]);
    if (orphan.length > 0) {
      throw new ConfigError(`invalid configuration:\n  ${orphan.join(', ')}: set KEYPORT_UPSTREAM_URL too`);
    }
    return undefined;
  }
  return {
    name: 'default',
    baseUrl: env.KEYPORT_UPSTREAM_URL,
    models: (env.KEYPORT_UPSTREAM_MODELS ?? '*')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean),
    ...(env.KEYPORT_UPSTREAM_API_KEY ? { apiKeyEnv: 'KEYPORT_UPSTREAM_API_KEY' } : {}),
  };
}

/** One webhook from the environment: KEYPORT_WEBHOOK_URL signed with KEYPORT_WEBHOOK_SECRET. */
function webhookFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  if (!env.KEYPORT_WEBHOOK_URL) return undefined;
  return { url: env.KEYPORT_WEBHOOK_URL, secretEnv: 'KEYPORT_WEBHOOK_SECRET' };
}

export class ConfigError extends UserError {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigInput = {}): Config {
  const fromFile = env.KEYPORT_CONFIG ? readConfigFile(env.KEYPORT_CONFIG) : {};
  const fromEnv: Record<string, string> = {};
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const value = env[name];
    if (value !== undefined && value !== '') fromEnv[key] = value;
  }
  const envUpstream = upstreamFromEnv(env);
  if (envUpstream) fromEnv.upstreams = [envUpstream] as never;
  const envWebhook = webhookFromEnv(env);
  if (envWebhook) fromEnv.webhooks = [envWebhook] as never;
  if (env.KEYPORT_TRUSTED_PROXIES) {
    fromEnv.trustedProxies = env.KEYPORT_TRUSTED_PROXIES.split(',')
      .map((p) => p.trim())
      .filter(Boolean) as never;
  }
  const source = env.KEYPORT_CONFIG ? `KEYPORT_CONFIG (${env.KEYPORT_CONFIG})` : undefined;
  const result = configSchema.safeParse({ ...fromFile, ...fromEnv, ...overrides });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '');
      const where = issue.path.map(String).join('.');
      const name =
        key === 'upstreams' && envUpstream
          ? 'KEYPORT_UPSTREAM_URL / KEYPORT_UPSTREAM_MODELS'
          : key === 'trustedProxies' && env.KEYPORT_TRUSTED_PROXIES
            ? 'KEYPORT_TRUSTED_PROXIES'
            : key === 'webhooks' && envWebhook
              ? 'KEYPORT_WEBHOOK_URL'
              : key in ENV_NAMES && key in fromEnv
                ? ENV_NAMES[key as EnvSetting]
                : source
                  ? `${source}: "${where}"`
                  : where;
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const config = { ...result.data, dataDir: path.resolve(result.data.dataDir) };
  for (const upstream of config.upstreams) {
    if (upstream.apiKeyEnv && !env[upstream.apiKeyEnv]) {
      throw new ConfigError(
        `invalid configuration:\n  upstream "${upstream.name}": its credential variable ${upstream.apiKeyEnv} is not set`,
      );
    }
  }
  for (const [index, webhook] of config.webhooks.entries()) {
    // A short secret makes signatures guessable; the URL is not named, its path may be a secret too.
    if ((env[webhook.secretEnv] ?? '').length < 16) {
      throw new ConfigError(
        `invalid configuration:\n  webhooks.${index}: its secret variable ${webhook.secretEnv} must hold at least 16 characters`,
      );
    }
  }
  if (new Set(config.upstreams.map((u) => u.name)).size !== config.upstreams.length) {
    throw new ConfigError('invalid configuration:\n  upstreams: names must be unique');
  }
  return config;
}

/** An upstream's credential, read from its environment variable when needed (never kept in config). */
export function upstreamCredential(
  upstream: UpstreamConfig,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  return upstream.apiKeyEnv ? env[upstream.apiKeyEnv] : undefined;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`KEYPORT_CONFIG: cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    const known = new Set(Object.keys(configSchema.shape));
    const unknown = Object.keys(parsed).filter((key) => !known.has(key));
    if (unknown.length > 0) {
      throw new Error(`unknown setting(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
    }
    return parsed as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`KEYPORT_CONFIG: ${file} is not a valid JSON config: ${(error as Error).message}`);
  }
}
