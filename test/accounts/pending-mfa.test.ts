/**
 * A sign-in waiting for its second factor is good for ten minutes, not for the days a session
 * lasts: a password alone must not leave a long-lived half-session to guess codes on.
 */
import { type TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { Browser, createAccount, expectError, expectOk, PUBLIC_URL, strongPassword } from './helpers.ts';

describe('a pending second factor', () => {
  let t: TestApp;
  let clock = Date.now();
  beforeAll(async () => {
    t = await createTestApp({ config: { publicUrl: PUBLIC_URL }, now: () => clock });
  });
  afterAll(() => t?.close());

  it('expires after ten minutes; a fresh sign-in works', async () => {
    const email = 'slow@example.com';
    const password = strongPassword('slow');
    await createAccount(t, email, 'Slow', password);
    const enrol = await new Browser(t, '192.0.2.1').signIn(email, password);
    const totp = URI.parse(expectOk(await enrol.post('/api/auth/mfa/setup')).otpauth_uri) as TOTP;
    expectOk(await enrol.post('/api/auth/mfa/enable', { code: totp.generate({ timestamp: clock }) }));

    const b = new Browser(t, '192.0.2.2');
    expect(expectOk(await b.login(email, password)).status).toBe('mfa_required');
    clock += 9 * 60_000;
    expect(expectOk(await b.session()).status).toBe('mfa_required');
    clock += 2 * 60_000;
    expectError(await b.loginMfa(totp.generate({ timestamp: clock })), 401, 'not_authenticated');

    const again = new Browser(t, '192.0.2.3');
    expect(expectOk(await again.login(email, password)).status).toBe('mfa_required');
    expect(expectOk(await again.loginMfa(totp.generate({ timestamp: clock + 30_000 }))).status).toBe(
      'signed_in',
    );
  });
});
