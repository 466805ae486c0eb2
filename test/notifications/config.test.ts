/** The notification settings: SMTP and webhooks from the environment and the config file. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

const SECRET = 'whsec_0123456789abcdef';

function configFile(content: unknown): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'keyport-config-')), 'keyport.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

describe('notification settings', () => {
  it('defaults: no SMTP (emails are logged), a local sender, no webhooks', () => {
    const config = loadConfig({});
    expect(config.smtpUrl).toBeUndefined();
    expect(config.smtpFrom).toBe('Keyport <keyport@localhost>');
    expect(config.webhooks).toEqual([]);
  });

  it('reads SMTP from KEYPORT_SMTP_URL and KEYPORT_SMTP_FROM', () => {
    const config = loadConfig({
      KEYPORT_SMTP_URL: 'smtps://u:p@mail.example.com:465',
      KEYPORT_SMTP_FROM: 'Alerts <alerts@example.com>',
    });
    expect(config).toMatchObject({
      smtpUrl: 'smtps://u:p@mail.example.com:465',
      smtpFrom: 'Alerts <alerts@example.com>',
    });
  });

  it('names KEYPORT_SMTP_URL when it is not an SMTP URL, without echoing it', () => {
    const attempt = () => loadConfig({ KEYPORT_SMTP_URL: 'http://user:hunter2hunter2@mail' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/KEYPORT_SMTP_URL/);
    expect(attempt).not.toThrow(/hunter2/);
  });

  it('takes one webhook from KEYPORT_WEBHOOK_URL, signed with KEYPORT_WEBHOOK_SECRET', () => {
    const config = loadConfig({
      KEYPORT_WEBHOOK_URL: 'https://hooks.example.com/keyport',
      KEYPORT_WEBHOOK_SECRET: SECRET,
    });
    expect(config.webhooks).toEqual([
      { url: 'https://hooks.example.com/keyport', secretEnv: 'KEYPORT_WEBHOOK_SECRET' },
    ]);
    // The secret itself is never part of the configuration.
    expect(JSON.stringify(config)).not.toContain(SECRET);
  });

  it('refuses a webhook whose secret is missing or short, naming the variable', () => {
    expect(() => loadConfig({ KEYPORT_WEBHOOK_URL: 'https://hooks.example.com/k' })).toThrow(
      /KEYPORT_WEBHOOK_SECRET must hold at least 16 characters/,
    );
    expect(() =>
      loadConfig({ KEYPORT_WEBHOOK_URL: 'https://hooks.example.com/k', KEYPORT_WEBHOOK_SECRET: 'short' }),
    ).toThrow(/KEYPORT_WEBHOOK_SECRET/);
    expect(() =>
      loadConfig({ KEYPORT_WEBHOOK_URL: 'ftp://hooks.example.com/k', KEYPORT_WEBHOOK_SECRET: SECRET }),
    ).toThrow(/KEYPORT_WEBHOOK_URL/);
  });

  it('reads webhooks with event filters from the config file', () => {
    const file = configFile({
      webhooks: [
        { url: 'https://a.example.com/hook', secretEnv: 'HOOK_A_SECRET', events: ['budget.*'] },
        { url: 'http://b.internal:9000/hook', secretEnv: 'HOOK_B_SECRET' },
      ],
    });
    const config = loadConfig({ KEYPORT_CONFIG: file, HOOK_A_SECRET: SECRET, HOOK_B_SECRET: SECRET });
    expect(config.webhooks).toEqual([
      { url: 'https://a.example.com/hook', secretEnv: 'HOOK_A_SECRET', events: ['budget.*'] },
      { url: 'http://b.internal:9000/hook', secretEnv: 'HOOK_B_SECRET' },
    ]);
    expect(() => loadConfig({ KEYPORT_CONFIG: file, HOOK_A_SECRET: SECRET })).toThrow(
      /webhooks\.1: its secret variable HOOK_B_SECRET/,
    );
  });

  it('refuses malformed webhook entries in the file, naming the entry', () => {
    const bad = (webhook: unknown) => () =>
      loadConfig({ KEYPORT_CONFIG: configFile({ webhooks: [webhook] }), S: SECRET });
    expect(bad({ url: 'https://a.example.com', secretEnv: 'S', secret: 'inline' })).toThrow(/webhooks\.0/);
    expect(bad({ url: 'https://a.example.com', secretEnv: 'S', events: ['budget*'] })).toThrow(
      /webhooks\.0\.events\.0/,
    );
    expect(bad({ url: 'not a url', secretEnv: 'S' })).toThrow(/webhooks\.0\.url/);
  });
});
