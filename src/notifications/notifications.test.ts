import { describe, expect, it } from 'vitest';
import type { AlertRow } from '../store/schema.ts';
import { emailSubject, emailText } from './notifications.ts';

describe('alert emails', () => {
  it('subject: the prefix, then the title, on one line whatever the mailer', () => {
    expect(emailSubject({ title: 'Budget reached', emailSubjectPrefix: '[Acme]' })).toBe(
      '[Acme] Budget reached',
    );
    expect(emailSubject({ title: 'Budget reached' })).toBe('Budget reached');
    expect(emailSubject({ title: 'Budget\r\nBcc: x@evil.test', emailSubjectPrefix: '[A]\n' })).toBe(
      '[A] Budget Bcc: x@evil.test',
    );
  });

  it('body: the message, where it comes from, and every detail', () => {
    const row: AlertRow = {
      id: 'alert_1',
      organizationId: 'org-1',
      projectId: null,
      kind: 'spend_alert',
      severity: 'info',
      title: 'Spend alert',
      message: 'Spend reached $50.00.',
      data: { threshold: '$50.00', scope: { type: 'organization' } },
      dedupeKey: null,
      createdAt: new Date('2030-01-02T03:04:05Z'),
      readAt: null,
    };
    const text = emailText(row);
    expect(text).toMatch(/^Spend reached \$50\.00\.\n/);
    expect(text).toContain('Organization: org-1');
    expect(text).not.toContain('Project:');
    expect(text).toContain('Time: 2030-01-02T03:04:05.000Z');
    expect(text).toContain('  threshold: $50.00');
    expect(text).toContain('  scope: {"type":"organization"}');
  });
});
