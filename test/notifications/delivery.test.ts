/**
 * Notifications end to end: alerts stored once per dedupe key on each backend, emailed through a
 * real SMTP server, posted to real HTTP receivers with signatures that verify, retried on
 * transient failures, and never a secret in a log line.
 */
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ConfigInput, loadConfig } from '../../src/config/config.ts';
import type { AlertInput } from '../../src/notifications/alert.ts';
import { Notifications, type NotificationsOptions } from '../../src/notifications/notifications.ts';
import { signWebhook, verifyWebhookSignature } from '../../src/notifications/webhook-signature.ts';
import type { Store } from '../../src/store/database.ts';
import { insertOrganization } from '../../src/store/repositories/organizations.ts';
import { alerts } from '../../src/store/schema.ts';
import { backends, openTestStore } from '../helpers/stores.ts';
import {
  captureLogger,
  type ReceivedRequest,
  type SmtpReceiver,
  startSmtpServer,
  startWebhookReceiver,
  type WebhookReceiver,
} from './servers.ts';

const SECRET = 'whsec_test_0123456789abcdef';
const SMTP_PASSWORD = 'smtp-p@ss/w0rd:secret';
const FAST_RETRY = { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 };

let dedupeCounter = 0;
const uniqueKey = (name: string) => `test:${name}:${Date.now()}:${++dedupeCounter}`;

describe.each(backends)('notifications (%s)', (backend) => {
  let store: Store;
  let organizationId: string;
  /** Closed after each test: instances, receivers. */
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    store = await openTestStore(backend);
    organizationId = (await insertOrganization(store.db, 'Acme')).id;
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(() => store?.close());

  function alert(overrides: Partial<AlertInput> = {}): AlertInput {
    return {
      organizationId,
      projectId: 'proj_search',
      kind: 'budget.soft_limit',
      severity: 'warning',
      title: 'Budget 80% reached',
      message: 'Project Search has spent $80.00 of its $100.00 monthly budget.',
      data: { budget_id: 'budget_1', percent: 80, spent_cents: 8000, limit_cents: 10000 },
      ...overrides,
    };
  }

  async function start(config: ConfigInput, options: Partial<NotificationsOptions> = {}) {
    const log = captureLogger();
    const env = { TEST_WEBHOOK_SECRET: SECRET, OTHER_WEBHOOK_SECRET: `${SECRET}-other` };
    const notifications = new Notifications({
      db: store.db,
      config: loadConfig(env, config),
      logger: log.logger,
      env,
      retry: FAST_RETRY,
      ...options,
    });
    cleanups.push(() => notifications.close());
    return { notifications, log };
  }

  async function smtpServer(options?: Parameters<typeof startSmtpServer>[0]): Promise<SmtpReceiver> {
    const server = await startSmtpServer(options);
    cleanups.push(server.close);
    return server;
  }

  async function receiver(status?: (n: number) => number): Promise<WebhookReceiver> {
    const server = await startWebhookReceiver(status);
    cleanups.push(server.close);
    return server;
  }

  const smtpUrl = (server: SmtpReceiver) =>
    `smtp://keyport:${encodeURIComponent(SMTP_PASSWORD)}@127.0.0.1:${server.port}`;

  function expectNoSecrets(text: string) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(SMTP_PASSWORD);
    expect(text).not.toContain(encodeURIComponent(SMTP_PASSWORD));
    expect(text).not.toContain('a-path-secret');
  }

  it('stores the alert and resolves before delivery', async () => {
    const { notifications } = await start({});
    const result = await notifications.notify(alert({ dedupeKey: uniqueKey('store') }));
    expect(result.created).toBe(true);
    if (!result.created) return;
    expect(result.alert.id).toMatch(/^alert_[0-9A-Za-z]{24}$/);
    const [row] = await store.db.select().from(alerts).where(eq(alerts.id, result.alert.id));
    expect(row).toMatchObject({
      organizationId,
      projectId: 'proj_search',
      kind: 'budget.soft_limit',
      severity: 'warning',
      title: 'Budget 80% reached',
      data: { budget_id: 'budget_1', percent: 80, spent_cents: 8000, limit_cents: 10000 },
      readAt: null,
    });
  });

  it('emails the recipients through SMTP, logged in, with the subject prefix and the details', async () => {
    const smtp = await smtpServer();
    const { notifications, log } = await start({
      smtpUrl: smtpUrl(smtp),
      smtpFrom: 'Keyport Alerts <alerts@keyport.test>',
    });
    const result = await notifications.notify(
      alert({
        dedupeKey: uniqueKey('email'),
        emailRecipients: ['ops@acme.test', 'cfo@acme.test', 'ops@acme.test', ' '],
        emailSubjectPrefix: '[Acme]',
      }),
    );
    await notifications.drain();

    expect(smtp.logins).toEqual([{ username: 'keyport', password: SMTP_PASSWORD }]);
    expect(smtp.messages).toHaveLength(1);
    const mail = smtp.messages[0]!;
    expect(mail.from).toBe('alerts@keyport.test');
    expect(mail.to).toEqual(['ops@acme.test', 'cfo@acme.test']);
    expect(mail.headers.subject).toBe('[Acme] Budget 80% reached');
    expect(mail.headers.from).toBe('Keyport Alerts <alerts@keyport.test>');
    expect(mail.text).toContain('Project Search has spent $80.00 of its $100.00 monthly budget.');
    expect(mail.text).toContain('Severity: warning');
    expect(mail.text).toContain(`Organization: ${organizationId}`);
    expect(mail.text).toContain(`Alert: ${result.created ? result.alert.id : '?'}`);
    expect(mail.text).toContain('  percent: 80');

    // The SMTP URL is logged, redacted.
    expect(log.text()).toContain(`smtp://keyport:[redacted]@127.0.0.1:${smtp.port}`);
    expectNoSecrets(log.text());
  });

  it('keeps line breaks out of the subject', async () => {
    const smtp = await smtpServer();
    const { notifications } = await start({ smtpUrl: smtpUrl(smtp) });
    await notifications.notify(
      alert({
        title: 'Budget reached\r\nBcc: attacker@evil.test',
        emailRecipients: ['ops@acme.test'],
      }),
    );
    await notifications.drain();
    expect(smtp.messages).toHaveLength(1);
    expect(smtp.messages[0]!.to).toEqual(['ops@acme.test']);
    expect(smtp.messages[0]!.headers.bcc).toBeUndefined();
    expect(smtp.messages[0]!.headers.subject).toBe('Budget reached Bcc: attacker@evil.test');
  });

  it('retries an email the server refuses for now (4xx), not one it refuses for good (5xx)', async () => {
    const smtp = await smtpServer({
      reply: (n) => (n === 1 ? { code: 451, message: 'Try again later' } : undefined),
    });
    const { notifications } = await start({ smtpUrl: smtpUrl(smtp) });
    await notifications.notify(alert({ emailRecipients: ['ops@acme.test'] }));
    await notifications.drain();
    expect(smtp.messages).toHaveLength(1);

    const refusing = await smtpServer({ reply: () => ({ code: 550, message: 'No such user' }) });
    const second = await start({ smtpUrl: smtpUrl(refusing) });
    await second.notifications.notify(alert({ emailRecipients: ['nobody@acme.test'] }));
    await second.notifications.drain();
    expect(refusing.messages).toHaveLength(0);
    const failure = second.log.lines.find((line) => line.msg === 'alert email not sent');
    expect(failure).toMatchObject({ attempts: 1, to: ['nobody@acme.test'] });
    expect(String(failure?.reason)).toContain('550');
  });

  it('logs a refused SMTP login without the password, even when the server echoes it', async () => {
    const smtp = await smtpServer({ rejectLogin: true });
    const { notifications, log } = await start({ smtpUrl: smtpUrl(smtp) });
    await expect(notifications.notify(alert({ emailRecipients: ['ops@acme.test'] }))).resolves.toMatchObject({
      created: true,
    });
    await notifications.drain();
    expect(smtp.logins).toHaveLength(1);
    const failure = log.lines.find((line) => line.msg === 'alert email not sent');
    expect(failure).toMatchObject({ attempts: 1 });
    expect(String(failure?.reason)).toContain('[redacted]');
    expectNoSecrets(log.text());
  });

  it('without SMTP, logs who would have been emailed and about what; nothing throws', async () => {
    const { notifications, log } = await start({});
    await expect(
      notifications.notify(alert({ emailRecipients: ['ops@acme.test'], emailSubjectPrefix: '[Acme]' })),
    ).resolves.toMatchObject({ created: true });
    await notifications.drain();
    expect(log.lines).toContainEqual(
      expect.objectContaining({
        msg: 'email not sent: no SMTP server configured (KEYPORT_SMTP_URL)',
        to: ['ops@acme.test'],
        subject: '[Acme] Budget 80% reached',
      }),
    );
  });

  it('posts a signed event that verifies with the secret, and not with another secret, body or time', async () => {
    const hook = await receiver();
    const { notifications, log } = await start({
      webhooks: [{ url: hook.url, secretEnv: 'TEST_WEBHOOK_SECRET' }],
    });
    const before = Math.floor(Date.now() / 1000);
    const result = await notifications.notify(alert({ dedupeKey: uniqueKey('webhook') }));
    await notifications.drain();
    if (!result.created) throw new Error('expected a new alert');

    expect(hook.requests).toHaveLength(1);
    const request = hook.requests[0]!;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/hooks/keyport/a-path-secret');
    expect(request.headers['content-type']).toBe('application/json');
    const body = JSON.parse(request.raw);
    expect(body).toEqual({
      id: `evt_${result.alert.id.slice('alert_'.length)}`,
      object: 'alert',
      type: 'budget.soft_limit',
      created_at: expect.any(Number),
      data: {
        object: 'organization.alert',
        id: result.alert.id,
        organization_id: organizationId,
        project_id: 'proj_search',
        kind: 'budget.soft_limit',
        severity: 'warning',
        title: 'Budget 80% reached',
        message: 'Project Search has spent $80.00 of its $100.00 monthly budget.',
        data: { budget_id: 'budget_1', percent: 80, spent_cents: 8000, limit_cents: 10000 },
        created_at: body.created_at,
        read_at: null,
      },
    });
    expect(body.created_at).toBeGreaterThanOrEqual(before - 1);
    expect(request.headers['keyport-event-id']).toBe(body.id);

    const header = String(request.headers['keyport-signature']);
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    const signedAt = Number(/^t=(\d+)/.exec(header)![1]);
    expect(verifyWebhookSignature(SECRET, header, request.raw)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, Buffer.from(request.raw))).toBe(true);
    expect(verifyWebhookSignature(`${SECRET}x`, header, request.raw)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, request.raw.replace('80', '81'))).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, request.raw, 300, signedAt + 301)).toBe(false);
    // A valid signature made long ago: a replay.
    expect(
      verifyWebhookSignature(SECRET, signWebhook(SECRET, request.raw, signedAt - 3600), request.raw),
    ).toBe(false);
    expectNoSecrets(log.text());
  });

  it('retries a receiver that answers 500, then delivers the same event', async () => {
    const hook = await receiver((n) => (n === 1 ? 500 : 200));
    const { notifications, log } = await start({
      webhooks: [{ url: hook.url, secretEnv: 'TEST_WEBHOOK_SECRET' }],
    });
    await notifications.notify(alert());
    await notifications.drain();

    expect(hook.requests).toHaveLength(2);
    const [first, second] = hook.requests as [ReceivedRequest, ReceivedRequest];
    expect(second.headers['keyport-event-id']).toBe(first.headers['keyport-event-id']);
    expect(second.raw).toBe(first.raw);
    for (const request of hook.requests) {
      expect(verifyWebhookSignature(SECRET, String(request.headers['keyport-signature']), request.raw)).toBe(
        true,
      );
    }
    expect(log.lines).toContainEqual(
      expect.objectContaining({ msg: 'alert webhook failed; will retry', attempt: 1, reason: 'HTTP 500' }),
    );
    expect(log.lines.some((line) => line.msg === 'alert webhook not delivered')).toBe(false);
    expectNoSecrets(log.text());
  });

  it('gives up after the configured attempts: on 503s and on a refused connection', async () => {
    const down = await receiver(() => 503);
    const closed = await startWebhookReceiver();
    await closed.close(); // its port now refuses connections
    const { notifications, log } = await start({
      webhooks: [
        { url: down.url, secretEnv: 'TEST_WEBHOOK_SECRET' },
        { url: closed.url, secretEnv: 'TEST_WEBHOOK_SECRET' },
      ],
    });
    await expect(notifications.notify(alert())).resolves.toMatchObject({ created: true });
    await notifications.drain();

    expect(down.requests).toHaveLength(FAST_RETRY.attempts);
    const failures = log.lines.filter((line) => line.msg === 'alert webhook not delivered');
    expect(failures).toHaveLength(2);
    for (const failure of failures) expect(failure).toMatchObject({ attempts: 3, abandoned: false });
    expect(failures.map((failure) => failure.webhook).sort()).toEqual(
      [new URL(down.url).origin, new URL(closed.url).origin].sort(),
    );
    expectNoSecrets(log.text());
  });

  it('does not retry an answer that will not change (400)', async () => {
    const hook = await receiver(() => 400);
    const { notifications, log } = await start({
      webhooks: [{ url: hook.url, secretEnv: 'TEST_WEBHOOK_SECRET' }],
    });
    await notifications.notify(alert());
    await notifications.drain();
    expect(hook.requests).toHaveLength(1);
    expect(log.lines).toContainEqual(
      expect.objectContaining({ msg: 'alert webhook not delivered', attempts: 1, reason: 'HTTP 400' }),
    );
  });

  it('sends each endpoint only the kinds it asked for, signed with its own secret', async () => {
    const hardOnly = await receiver();
    const budgets = await receiver();
    const everything = await receiver();
    const { notifications } = await start({
      webhooks: [
        { url: hardOnly.url, secretEnv: 'TEST_WEBHOOK_SECRET', events: ['budget.hard_limit'] },
        { url: budgets.url, secretEnv: 'OTHER_WEBHOOK_SECRET', events: ['budget.*'] },
        { url: everything.url, secretEnv: 'TEST_WEBHOOK_SECRET' },
      ],
    });
    await notifications.notify(alert({ kind: 'budget.soft_limit' }));
    await notifications.notify(alert({ kind: 'spend_alert' }));
    await notifications.drain();

    expect(hardOnly.requests).toHaveLength(0);
    expect(budgets.requests.map((r) => JSON.parse(r.raw).type)).toEqual(['budget.soft_limit']);
    expect(everything.requests.map((r) => JSON.parse(r.raw).type).sort()).toEqual([
      'budget.soft_limit',
      'spend_alert',
    ]);
    const request = budgets.requests[0]!;
    const header = String(request.headers['keyport-signature']);
    expect(verifyWebhookSignature(`${SECRET}-other`, header, request.raw)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, request.raw)).toBe(false);
  });

  it('the same dedupe key, raised twice at once on two instances, stores one alert and delivers once', async () => {
    const smtp = await smtpServer();
    const hook = await receiver();
    const config: ConfigInput = {
      smtpUrl: smtpUrl(smtp),
      webhooks: [{ url: hook.url, secretEnv: 'TEST_WEBHOOK_SECRET' }],
    };
    const first = await start(config);
    const second = await start(config);
    const dedupeKey = uniqueKey('budget:budget_1:2030-01-01:80');
    const input = alert({ dedupeKey, emailRecipients: ['ops@acme.test'] });

    const results = await Promise.all([
      first.notifications.notify(input),
      second.notifications.notify(input),
      first.notifications.notify(input),
    ]);
    const again = await second.notifications.notify(input);
    await Promise.all([first.notifications.drain(), second.notifications.drain()]);

    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(again).toEqual({ created: false, reason: 'duplicate' });
    const rows = await store.db.select().from(alerts).where(eq(alerts.dedupeKey, dedupeKey));
    expect(rows).toHaveLength(1);
    expect(smtp.messages).toHaveLength(1);
    expect(hook.requests).toHaveLength(1);
  });

  it('rejects when the alert cannot be stored, and delivers nothing', async () => {
    const hook = await receiver();
    const { notifications } = await start({
      webhooks: [{ url: hook.url, secretEnv: 'TEST_WEBHOOK_SECRET' }],
    });
    await expect(notifications.notify(alert({ organizationId: 'org-doesnotexist' }))).rejects.toThrow();
    await notifications.drain();
    expect(hook.requests).toHaveLength(0);
  });

  it('close() ends back-off waits instead of waiting them out', async () => {
    const hook = await receiver(() => 500);
    const { notifications, log } = await start(
      { webhooks: [{ url: hook.url, secretEnv: 'TEST_WEBHOOK_SECRET' }] },
      // Without the abort, close() would wait on these and the test would time out.
      { retry: { attempts: 5, baseDelayMs: 600_000, maxDelayMs: 600_000 } },
    );
    await notifications.notify(alert());
    await expect.poll(() => hook.requests.length).toBe(1);
    await expect
      .poll(() => log.lines.some((line) => line.msg === 'alert webhook failed; will retry'))
      .toBe(true);
    await notifications.close();
    expect(hook.requests).toHaveLength(1);
    expect(log.lines).toContainEqual(
      expect.objectContaining({ msg: 'alert webhook not delivered', attempts: 1, abandoned: true }),
    );
    // After close, alerts are still stored but not delivered.
    await expect(notifications.notify(alert())).resolves.toMatchObject({ created: true });
    await notifications.drain();
    expect(hook.requests).toHaveLength(1);
    expect(log.lines).toContainEqual(
      expect.objectContaining({ msg: 'alert stored but not delivered: shutting down' }),
    );
  });
});
