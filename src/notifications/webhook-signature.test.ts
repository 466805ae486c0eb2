import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhookSignature } from './webhook-signature.ts';

const SECRET = 'whsec_0123456789abcdef';
const BODY = '{"id":"evt_1","object":"alert","type":"budget.soft_limit"}';
const NOW = 1_900_000_000;

describe('webhook signatures', () => {
  it('is Stripe’s scheme: t=<seconds>,v1=<HMAC-SHA256 of "t.body">', () => {
    const expected = createHmac('sha256', SECRET).update(`${NOW}.${BODY}`).digest('hex');
    expect(signWebhook(SECRET, BODY, NOW)).toBe(`t=${NOW},v1=${expected}`);
  });

  it('verifies its own signature within the tolerance, either side of now', () => {
    expect(verifyWebhookSignature(SECRET, signWebhook(SECRET, BODY, NOW), BODY, 300, NOW)).toBe(true);
    expect(verifyWebhookSignature(SECRET, signWebhook(SECRET, BODY, NOW - 300), BODY, 300, NOW)).toBe(true);
    expect(verifyWebhookSignature(SECRET, signWebhook(SECRET, BODY, NOW + 300), BODY, 300, NOW)).toBe(true);
    expect(verifyWebhookSignature(SECRET, signWebhook(SECRET, BODY, NOW - 301), BODY, 300, NOW)).toBe(false);
    expect(verifyWebhookSignature(SECRET, signWebhook(SECRET, BODY, NOW + 301), BODY, 300, NOW)).toBe(false);
  });

  it('fails with another secret, another body, or a timestamp changed after signing', () => {
    const header = signWebhook(SECRET, BODY, NOW);
    expect(verifyWebhookSignature(`${SECRET}0`, header, BODY, 300, NOW)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, `${BODY} `, 300, NOW)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header.replace(`t=${NOW}`, `t=${NOW + 1}`), BODY, 300, NOW)).toBe(
      false,
    );
  });

  it('accepts any of several v1 signatures (a sender rotating its secret)', () => {
    const old = signWebhook('whsec_old_secret_value', BODY, NOW).split(',')[1];
    const header = `${signWebhook(SECRET, BODY, NOW)},${old}`;
    expect(verifyWebhookSignature(SECRET, header, BODY, 300, NOW)).toBe(true);
    expect(verifyWebhookSignature('whsec_old_secret_value', header, BODY, 300, NOW)).toBe(true);
  });

  it('returns false, never throws, on malformed headers', () => {
    const v1 = signWebhook(SECRET, BODY, NOW).split(',')[1]!;
    for (const header of [
      undefined,
      null,
      '',
      'garbage',
      `t=${NOW}`,
      v1,
      `t=abc,${v1}`,
      `t=${NOW},v1=zz`,
      `t=${NOW},v1=${'0'.repeat(63)}`,
      `t=${NOW},v0=${v1.slice(3)}`,
    ]) {
      expect(verifyWebhookSignature(SECRET, header, BODY, 300, NOW), String(header)).toBe(false);
    }
  });
});
