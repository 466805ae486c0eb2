/**
 * The services object: built once at boot and handed to every HTTP surface and command.
 * Each member is a port with an in-process default and, where it matters, a shared adapter.
 */

import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Logger, pino } from 'pino';
import { AccountService } from './accounts/account-service.ts';
import { MembershipService } from './accounts/membership-service.ts';
import { OrganizationService } from './accounts/organization-service.ts';
import { ProjectService } from './accounts/project-service.ts';
import { SecretBox } from './accounts/secret-box.ts';
import { ServiceAccountService } from './accounts/service-account-service.ts';
import { BillingService } from './billing/billing-service.ts';
import { CreditGate } from './billing/credit-gate.ts';
import { ManualPaymentProvider } from './billing/payments.ts';
import { PriceBook } from './billing/price-book.ts';
import { UsageJournal } from './billing/usage-journal.ts';
import { DatabaseUsageRecorder, type UsageRecorder } from './billing/usage-recorder.ts';
import type { Config, UpstreamConfig } from './config/config.ts';
import { ResponseCounts } from './core/response-counts.ts';
import type { MockUpstream } from './gateway/mock-upstream.ts';
import { UpstreamRouter } from './gateway/upstreams.ts';
import { auditAuthEvent } from './guard/auth-audit.ts';
import {
  type KeyChangeNotifier,
  LocalKeyChangeNotifier,
  PostgresKeyChangeNotifier,
} from './keys/key-change-notifier.ts';
import { KeyService } from './keys/key-service.ts';
import { LastUsedRecorder } from './keys/last-used-recorder.ts';
import { KeyVerifier } from './keys/verify-key.ts';
import { LimitEnforcer } from './limits/enforcer.ts';
import type { Limiter } from './limits/limiter.ts';
import { LimitsCatalog } from './limits/limits-catalog.ts';
import { LimitsService } from './limits/limits-service.ts';
import { MemoryLimiter } from './limits/memory-limiter.ts';
import { RedisLimiter } from './limits/redis-limiter.ts';
import { LogMailer, type Mailer } from './notifications/mailer.ts';
import { Notifications } from './notifications/notifications.ts';
import { SmtpMailer } from './notifications/smtp-mailer.ts';
import { type OpenStoreOptions, openStore, type Store } from './store/database.ts';

export interface Services {
  config: Config;
  logger: Logger;
  store: Store;
  verifier: KeyVerifier;
  keys: KeyService;
  projects: ProjectService;
  serviceAccounts: ServiceAccountService;
  lastUsed: LastUsedRecorder;
  notifier: KeyChangeNotifier;
  upstreams: UpstreamRouter;
  usage: UsageRecorder;
  /** Rate limits, budgets and spend alerts: the settings side (the Admin API and CLI). */
  limits: LimitsService;
  /** Rate limits and budgets on the gateway's path, over the in-process or Redis limiter. */
  enforcer: LimitEnforcer;
  prices: PriceBook;
  /** Stored alerts, emails and signed webhooks. */
  notifications: Notifications;
  /** Plans, credit, payments and invoices. */
  billing: BillingService;
  /** Sign-up, sign-in, sessions, MFA. */
  accounts: AccountService;
  /** Organization and project members, invitations. */
  memberships: MembershipService;
  /** An organization's name and audit-log retention. */
  organizations: OrganizationService;
  /** Where users reach this deployment (links in emails, the dashboard's origin). */
  publicUrl: string;
  /** The gateway's check that a prepaid or trial organization still has credit. */
  creditGate: CreditGate;
  /** The built-in mock upstream, when it is in use. */
  mockUpstream: MockUpstream | undefined;
  /** Responses per API and status class, for `/metrics`. */
  responses: ResponseCounts;
  close(): Promise<void>;
}

export function createLogger(config: Pick<Config, 'logLevel'>, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level: config.logLevel,
      // Defence in depth: nothing we log carries these, but if it ever did, it would not be written.
      redact: {
        paths: [
          'authorization',
          '*.authorization',
          'headers.authorization',
          '*.headers.authorization',
          'secret',
          '*.secret',
          'value',
          '*.value',
        ],
        censor: '[redacted]',
      },
      serializers: { err: errorWithoutQueryValues },
    },
    destination as pino.DestinationStream | undefined,
  );
}

/**
 * Errors as pino writes them, without the values of a failed query: Drizzle puts its parameters
 * in the message (`Failed query: … params: a@b.c,$argon2id$…`) and PostgreSQL its key values in
 * `detail` — emails, hashes, addresses. The query text and the error code stay, to debug by.
 */
export function errorWithoutQueryValues(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const out = pino.stdSerializers.err(error) as unknown as Record<string, unknown>;
  const scrub = (text: unknown) =>
    typeof text === 'string' ? text.replace(/\nparams: [^\n]*/g, '\nparams: [redacted]') : text;
  out.message = scrub(out.message);
  out.stack = scrub(out.stack);
  delete out.params;
  const cause = out.cause as Record<string, unknown> | undefined;
  if (cause && typeof cause === 'object') {
    delete cause.detail;
    delete cause.params;
    cause.message = scrub(cause.message);
    cause.stack = scrub(cause.stack);
  }
  // The database's own code and constraint, which say what went wrong without the values.
  const db = (error as { cause?: { code?: unknown; constraint?: unknown } }).cause;
  if (db && typeof db.code === 'string') out.db = { code: db.code, constraint: db.constraint };
  return out;
}

export async function createServices(
  config: Config,
  options: {
    logger?: Logger;
    store?: Store;
    storeOptions?: Partial<OpenStoreOptions>;
    /** Replaces the database usage recorder (tests read events back from a MemoryUsageRecorder). */
    usage?: UsageRecorder;
    /** Replaces the limiter the configuration selects. */
    limiter?: Limiter;
    /** The clock of limits and budgets (tests move it across periods). */
    now?: () => number;
    /** Replaces the mailer the configuration selects (SMTP, or the log). */
    mailer?: Mailer;
  } = {},
): Promise<Services> {
  const logger = options.logger ?? createLogger(config);
  const store =
    options.store ??
    (await openStore({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      onPgliteRestart: (cause) =>
        logger.error(
          { err: cause },
          'the embedded database thread died and was started again on the data directory; requests it had in hand failed',
        ),
      ...options.storeOptions,
    }));
  const logError = (message: string) => (error: unknown) => logger.error({ err: error }, message);
  // First, before anything that listens or keeps the process alive: the journal takes the data
  // directory's lock, the likeliest start-up failure (another instance on the same directory).
  let usage: UsageRecorder;
  try {
    usage = options.usage ?? (await startUsageRecorder(config, store, logger));
  } catch (error) {
    if (!options.store) await store.close();
    throw error;
  }

  const lastUsed = new LastUsedRecorder(
    store.db,
    config.lastUsedFlushMs,
    logError('last_used_at flush failed'),
  );
  const verifier = new KeyVerifier(store.db, {
    keyPrefix: config.keyPrefix,
    cacheTtlMs: config.keyCacheTtlMs,
    lastUsed,
  });
  const notifier: KeyChangeNotifier = store.pool
    ? await PostgresKeyChangeNotifier.start(store.pool, verifier, logError('key change listener failed'))
    : new LocalKeyChangeNotifier(verifier);
  const keys = new KeyService(store.db, { keyPrefix: config.keyPrefix, notifier, lastUsed });
  const projects = new ProjectService(store.db, notifier);
  const serviceAccounts = new ServiceAccountService(store.db, projects, keys, notifier);
  const limits = new LimitsService(store.db, (organizationId) => notifier.changed('limits', organizationId));
  const smtp = options.mailer !== undefined || config.smtpUrl !== undefined;
  const mailer: Mailer =
    options.mailer ??
    (config.smtpUrl ? new SmtpMailer(config.smtpUrl, config.smtpFrom) : new LogMailer(logger));
  const notifications = new Notifications({ db: store.db, config, logger, mailer });
  const publicUrl = (config.publicUrl ?? defaultPublicUrl(config)).replace(/\/+$/, '');
  const secrets = config.secretKey
    ? SecretBox.fromKey(config.secretKey)
    : SecretBox.fromDataDir(
        store.dialect === 'pglite' && store.location === 'memory' ? tmpdir() : config.dataDir,
      );
  const accounts = new AccountService(store.db, {
    publicUrl,
    termsVersion: config.termsVersion,
    sessionDays: config.sessionDays,
    issuer: 'Keyport',
    mailer,
    smtp,
    secrets,
    logger,
    onAuthEvent: (event) => {
      const written = auditAuthEvent(store.db, event);
      if (event.type !== 'login.failed') return written;
      // A refusal answers before its entries are written: writing one per organization of a known
      // address would otherwise make it slower than an unknown one, and tell them apart.
      written.catch(logError('a failed sign-in could not be written to the audit log'));
      return Promise.resolve();
    },
    ...(options.now ? { now: options.now } : {}),
  });
  const memberships = new MembershipService(store.db, {
    publicUrl,
    inviteDays: config.inviteDays,
    mailer,
    smtp,
    logEmail: (message) =>
      logger.info(
        { to: message.to, subject: message.subject, text: message.text },
        'invitation email (no SMTP server configured: KEYPORT_SMTP_URL; its link is here instead)',
      ),
    notifier,
    ...(options.now ? { now: options.now } : {}),
  });
  const organizations = new OrganizationService(store.db, config.auditRetentionDays);
  const limiter = options.limiter ?? createLimiter(config, logger, options.now);
  const catalog = new LimitsCatalog(
    store.db,
    Math.max(config.keyCacheTtlMs, 1000),
    logError('limits could not be loaded'),
    options.now,
  );
  notifier.on('limits', (organizationId) => catalog.invalidate(organizationId));
  const enforcer = new LimitEnforcer({
    catalog,
    limiter,
    db: store.db,
    // The recorder is made below; seeds ask it only when serving requests.
    unwritten: {
      spend: (scope, start, end) => usage.unwrittenSpend?.(scope, start, end) ?? { cost: 0, tokens: 0 },
      whileNotWriting: (fn) => usage.whileNotWriting?.(fn) ?? fn(),
    },
    timeZone: config.billingTimeZone,
    notify: async (alert) => {
      await notifications.notify(alert);
    },
    logger,
    ...(options.now ? { now: options.now } : {}),
  });
  limits.useSpendReader(enforcer);
  const prices = new PriceBook(
    store.db,
    config.prices,
    () => notifier.changed('prices', '*'),
    logError('prices could not be loaded'),
  );
  notifier.on('prices', () => void prices.reload().catch(logError('prices could not be loaded')));
  await prices.start();
  const billing = new BillingService(store.db, {
    timeZone: config.billingTimeZone,
    defaultPlan: config.defaultPlan,
    trialCreditCents: config.trialCreditCents,
    trialDays: config.trialDays,
    invoiceDueDays: config.invoiceDueDays,
    issuer: config.invoiceIssuer,
    provider: new ManualPaymentProvider(),
    changed: (organizationId) => notifier.changed('billing', organizationId),
    ...(options.now ? { now: options.now } : {}),
  });
  const creditGate = new CreditGate(
    billing,
    Math.max(config.keyCacheTtlMs, 1000),
    logError('credit could not be loaded'),
    options.now,
    (organizationId) => usage.unwrittenCost?.(organizationId) ?? 0,
  );
  notifier.on('billing', (organizationId) => creditGate.invalidate(organizationId));
  lastUsed.start();

  // No upstream configured: the built-in mock answers, so everything can be tried with no model server.
  let mockUpstream: MockUpstream | undefined;
  const upstreamConfigs: UpstreamConfig[] = [...config.upstreams];
  if (config.mockUpstream === 'on' || (config.mockUpstream === 'auto' && upstreamConfigs.length === 0)) {
    const { startMockUpstream } = await import('./gateway/mock-upstream.ts');
    mockUpstream = await startMockUpstream({ delayMs: config.mockUpstreamDelayMs });
    upstreamConfigs.push({
      name: 'mock',
      baseUrl: `${mockUpstream.url}/v1`,
      models: ['*'],
      timeoutMs: 600_000,
      connectTimeoutMs: 10_000,
    });
    logger.info({ url: mockUpstream.url }, 'no upstream configured: using the built-in mock upstream');
  }
  const upstreams = new UpstreamRouter(upstreamConfigs);

  let closed = false;
  return {
    config,
    logger,
    store,
    verifier,
    keys,
    projects,
    serviceAccounts,
    lastUsed,
    notifier,
    upstreams,
    usage,
    limits,
    enforcer,
    prices,
    notifications,
    billing,
    creditGate,
    accounts,
    memberships,
    organizations,
    publicUrl,
    mockUpstream,
    responses: new ResponseCounts(),
    async close() {
      if (closed) return;
      closed = true;
      await usage.close();
      prices.stop();
      await enforcer.close();
      await notifications.close();
      await upstreams.close();
      await mockUpstream?.close();
      await lastUsed.stop();
      await notifier.close();
      if (!options.store) await store.close();
    },
  };
}

/**
 * The database usage recorder, with its journal in the data directory (replayed before serving:
 * what a crashed process recorded reaches the database first). No journal for an in-memory store.
 */
async function startUsageRecorder(
  config: Config,
  store: Store,
  logger: Logger,
): Promise<DatabaseUsageRecorder> {
  const journaled =
    config.usageJournal === 'on' && config.dataDir !== 'memory' && store.location !== 'memory';
  const journal = journaled
    ? new UsageJournal(path.join(config.dataDir, 'usage-journal'), {
        syncMs: config.usageJournalSyncMs,
        onError: (error, what) => logger.error({ err: error }, what),
      })
    : undefined;
  const recorder = new DatabaseUsageRecorder(store.db, {
    timeZone: config.billingTimeZone,
    journal,
    flushMs: config.usageFlushMs,
    onError: (error, what, pending) => logger.error({ err: error, pending }, what),
    onWritten: (what, inserted, received) => {
      if (what === 'replay' && received > 0)
        logger.info({ inserted, received }, 'usage journal replayed: events a previous process recorded');
    },
  });
  try {
    await recorder.start();
  } catch (error) {
    await journal?.close();
    throw error;
  }
  return recorder;
}

function defaultPublicUrl(config: Config): string {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`;
}

/** Redis when configured (shared by every instance, local limits while it is unreachable), else in-process. */
function createLimiter(config: Config, logger: Logger, now: (() => number) | undefined): Limiter {
  if (!config.redisUrl) return new MemoryLimiter(now ? { now } : {});
  return new RedisLimiter({
    url: config.redisUrl,
    keyPrefix: config.redisKeyPrefix,
    localGrants: config.redisLocalGrants === 'on',
    onFallback: (error) =>
      logger.warn(
        { err: error },
        'Redis is unreachable: rate limits are enforced per instance until it is back',
      ),
    onRecover: () => logger.info('Redis is reachable again: rate limits are shared again'),
    onError: (error) => logger.error({ err: error }, 'Redis limiter error'),
    ...(now ? { now } : {}),
  });
}
