/**
 * Notifications: an alert is stored first (deduplicated across instances by its dedupe key), then
 * delivered by email and signed webhooks in the background, so the caller never waits on SMTP or
 * a receiver, and a failed delivery never reaches it. The stored alert is the record: a delivery
 * lost to a crash or shutdown still shows in the Admin API and the dashboard.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import type { Db } from '../store/database.ts';
import { insertAlert } from '../store/repositories/alerts.ts';
import type { AlertRow } from '../store/schema.ts';
import { type AlertInput, alertObject } from './alert.ts';
import { LogMailer, MailError, type Mailer } from './mailer.ts';
import { DEFAULT_RETRY, type RetryPolicy, withRetries } from './retry.ts';
import { redactUrl, SmtpMailer } from './smtp-mailer.ts';
import {
  postWebhook,
  WEBHOOK_TIMEOUT_MS,
  type WebhookEndpoint,
  type WebhookEvent,
  wantsEvent,
  webhookBody,
  webhookOrigin,
} from './webhooks.ts';

export interface NotificationsOptions {
  db: Db;
  config: Pick<Config, 'smtpUrl' | 'smtpFrom' | 'webhooks'>;
  logger: Logger;
  /** Replaces the mailer the configuration selects. */
  mailer?: Mailer;
  /** Where webhook secrets are read (`secretEnv`); loadConfig has checked they are set. */
  env?: NodeJS.ProcessEnv;
  /** Per delivery channel; tests shorten the delays. */
  retry?: Partial<RetryPolicy>;
  webhookTimeoutMs?: number;
}

/** A duplicate is not an error: the alert was raised before (by this instance or another). */
export type NotifyResult = { created: true; alert: AlertRow } | { created: false; reason: 'duplicate' };

export class Notifications {
  readonly #db: Db;
  readonly #logger: Logger;
  readonly #mailer: Mailer;
  readonly #webhooks: WebhookEndpoint[];
  readonly #retry: RetryPolicy;
  readonly #webhookTimeoutMs: number;
  readonly #deliveries = new Set<Promise<void>>();
  /** Aborted by close(): back-off waits end, no new attempt starts. */
  readonly #shutdown = new AbortController();
  #closed = false;

  constructor(options: NotificationsOptions) {
    const { config } = options;
    const env = options.env ?? process.env;
    this.#db = options.db;
    this.#logger = options.logger.child({ component: 'notifications' });
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#webhookTimeoutMs = options.webhookTimeoutMs ?? WEBHOOK_TIMEOUT_MS;
    this.#mailer =
      options.mailer ??
      (config.smtpUrl ? new SmtpMailer(config.smtpUrl, config.smtpFrom) : new LogMailer(this.#logger));
    this.#webhooks = config.webhooks.map((webhook) => ({
      url: webhook.url,
      secret: env[webhook.secretEnv] ?? '',
      events: webhook.events,
    }));
    this.#logger.info(
      {
        email: config.smtpUrl
          ? redactUrl(config.smtpUrl)
          : options.mailer && !(options.mailer instanceof LogMailer)
            ? 'custom'
            : 'log only',
        webhooks: this.#webhooks.map((webhook) => webhookOrigin(webhook.url)),
      },
      'alert delivery channels',
    );
  }

  /**
   * Stores the alert and starts its delivery; resolves once it is stored. Rejects only when it
   * cannot be stored (then nothing was delivered, and raising it again later is safe).
   */
  async notify(input: AlertInput): Promise<NotifyResult> {
    const row = await insertAlert(this.#db, {
      organizationId: input.organizationId,
      projectId: input.projectId ?? null,
      kind: input.kind,
      severity: input.severity,
      title: input.title,
      message: input.message,
      data: input.data ?? {},
      dedupeKey: input.dedupeKey ?? null,
    });
    if (!row) {
      this.#logger.debug({ kind: input.kind, dedupeKey: input.dedupeKey }, 'alert already raised');
      return { created: false, reason: 'duplicate' };
    }
    if (this.#closed) {
      this.#logger.warn({ alertId: row.id }, 'alert stored but not delivered: shutting down');
    } else {
      const delivery = this.#deliver(row, input).finally(() => this.#deliveries.delete(delivery));
      this.#deliveries.add(delivery);
    }
    return { created: true, alert: row };
  }

  /** Resolves when every delivery started so far has succeeded or given up (tests). */
  async drain(): Promise<void> {
    while (this.#deliveries.size > 0) await Promise.allSettled([...this.#deliveries]);
  }

  /**
   * Lets attempts in progress finish (each bounded by its timeout) but starts no retry: shutdown
   * must not wait minutes on a receiver that is down.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#shutdown.abort();
    await this.drain();
    await this.#mailer.close();
  }

  async #deliver(row: AlertRow, input: AlertInput): Promise<void> {
    try {
      await Promise.all([
        this.#email(row, input),
        ...this.#webhooks
          .filter((endpoint) => wantsEvent(endpoint, row.kind))
          .map((endpoint) => this.#webhook(endpoint, row)),
      ]);
    } catch (error) {
      // Each channel handles its own failures; this is a bug guard, so a delivery never rejects.
      this.#logger.error({ alertId: row.id, error: String(error) }, 'alert delivery failed unexpectedly');
    }
  }

  async #email(row: AlertRow, input: AlertInput): Promise<void> {
    const to = [...new Set((input.emailRecipients ?? []).map((address) => address.trim()).filter(Boolean))];
    if (to.length === 0) return;
    const message = { to, subject: emailSubject(input), text: emailText(row) };
    const result = await withRetries(
      this.#retry,
      this.#shutdown.signal,
      async () => {
        try {
          await this.#mailer.send(message);
          return { ok: true };
        } catch (error) {
          return error instanceof MailError
            ? { ok: false, retry: error.transient, reason: error.message }
            : { ok: false, retry: false, reason: String(error) };
        }
      },
      (attempt, reason, delayMs) =>
        this.#logger.warn({ alertId: row.id, attempt, reason, delayMs }, 'alert email failed; will retry'),
    );
    if (!result.ok) {
      this.#logger.error(
        {
          alertId: row.id,
          to,
          attempts: result.attempts,
          reason: result.reason,
          abandoned: result.abandoned,
        },
        'alert email not sent',
      );
    }
  }

  async #webhook(endpoint: WebhookEndpoint, row: AlertRow): Promise<void> {
    const event = webhookEvent(row);
    const body = webhookBody(event);
    const webhook = webhookOrigin(endpoint.url);
    const result = await withRetries(
      this.#retry,
      this.#shutdown.signal,
      () => postWebhook(endpoint, event, body, this.#webhookTimeoutMs),
      (attempt, reason, delayMs) =>
        this.#logger.warn(
          { alertId: row.id, eventId: event.id, webhook, attempt, reason, delayMs },
          'alert webhook failed; will retry',
        ),
    );
    if (!result.ok) {
      this.#logger.error(
        {
          alertId: row.id,
          eventId: event.id,
          webhook,
          attempts: result.attempts,
          reason: result.reason,
          abandoned: result.abandoned,
        },
        'alert webhook not delivered',
      );
    }
  }
}

/** One line: a line break in a title or prefix must not start a new header. */
export function emailSubject(input: Pick<AlertInput, 'title' | 'emailSubjectPrefix'>): string {
  const subject = input.emailSubjectPrefix ? `${input.emailSubjectPrefix} ${input.title}` : input.title;
  return subject.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

export function emailText(row: AlertRow): string {
  const lines = [
    row.message,
    '',
    `Severity: ${row.severity}`,
    `Kind: ${row.kind}`,
    `Organization: ${row.organizationId}`,
    ...(row.projectId ? [`Project: ${row.projectId}`] : []),
    `Alert: ${row.id}`,
    `Time: ${row.createdAt.toISOString()}`,
  ];
  const details = Object.entries((row.data ?? {}) as Record<string, unknown>);
  if (details.length > 0) {
    lines.push('', 'Details:');
    for (const [name, value] of details) {
      lines.push(`  ${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
    }
  }
  lines.push('', '-- ', 'Sent by Keyport.');
  return lines.join('\n');
}

/** The event id derives from the alert id, so it stays the same for every attempt and endpoint. */
function webhookEvent(row: AlertRow): WebhookEvent {
  return {
    id: `evt_${row.id.slice('alert_'.length)}`,
    type: row.kind,
    createdAt: Math.floor(row.createdAt.getTime() / 1000),
    data: { ...alertObject(row), organization_id: row.organizationId },
  };
}
