/**
 * Sign-up to a second factor, as a user goes through it: the verification email read from a real
 * SMTP server, its link followed, sign-in, TOTP enrolment with codes computed here (otpauth, from
 * the otpauth:// URI an authenticator app would scan), sign-in with a second factor, a code used
 * twice, recovery codes; the profile and the terms accepted; password reset, password change and
 * MFA changes ending other sessions; and, without SMTP, the link in the server's log — never a
 * password anywhere.
 */
import { eq } from 'drizzle-orm';
import { type HOTP, TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLogs, organizations, projects, sessions, users } from '../../src/store/schema.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { type SmtpReceiver, startSmtpServer } from '../notifications/servers.ts';
import {
  Browser,
  createAccount,
  expectError,
  expectOk,
  lastMail,
  linkToken,
  loggedEmails,
  mailsTo,
  PUBLIC_URL,
  smtpUrlOf,
  strongPassword,
} from './helpers.ts';

const TERMS_VERSION = '2026-12-01';
const RECOVERY_CODE = /^[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}$/;

/** The code an authenticator shows `steps` periods from now. */
function codeAt(totp: TOTP, steps = 0): string {
  return totp.generate({ timestamp: Date.now() + steps * 30_000 });
}

/** A six-digit code that is valid for no step near now. */
function wrongCode(totp: TOTP): string {
  const near = new Set([-1, 0, 1, 2].map((s) => codeAt(totp, s)));
  for (let n = 100_000; ; n++) if (!near.has(String(n))) return String(n);
}

describe.each(backends)('sign-up, verification and MFA (%s)', (backend) => {
  let t: TestApp;
  let smtp: SmtpReceiver;
  /** Every password typed in these tests: none may appear in a mail or a log line. */
  const passwords: string[] = [];
  let ips = 0;
  /** A browser of its own address, so one test's failed attempts never throttle another's. */
  const browser = () => new Browser(t, `192.0.2.${++ips}`);

  beforeAll(async () => {
    smtp = await startSmtpServer();
    t = await createTestApp({
      backend,
      config: { publicUrl: PUBLIC_URL, smtpUrl: smtpUrlOf(smtp), termsVersion: TERMS_VERSION },
    });
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  function expectNoPasswordLeaked() {
    const everything = [...smtp.messages.map((m) => JSON.stringify(m)), ...t.logs].join('\n');
    for (const password of passwords) expect(everything).not.toContain(password);
  }

  /** Signs up through the API and follows the emailed link; returns the verified user. */
  async function signUpAndVerify(email: string, password: string, extra: Record<string, unknown> = {}) {
    passwords.push(password);
    const b = browser();
    expectOk(
      await b.post('/api/auth/signup', { email, password, name: 'Someone', accept_terms: true, ...extra }),
      202,
    );
    const token = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
    return expectOk(await b.post('/api/auth/verify-email', { token })).user;
  }

  it('the first sign-up takes over the instance owner: emailed link, sign-in, TOTP, recovery codes', async () => {
    const email = 'ada@example.com';
    const password = strongPassword('ada');
    passwords.push(password);
    const before = Math.floor(Date.now() / 1000);
    const b = browser();

    const signup = await b.post('/api/auth/signup', {
      email: 'Ada@Example.com',
      password,
      name: 'Ada Lovelace',
      intended_use: 'Research assistants',
      accept_terms: true,
    });
    expect(signup.status).toBe(202);
    expect(signup.body).toEqual({
      status: 'verification_sent',
      message: 'Check your email for a link to verify your address.',
    });
    // Not signed in by signing up.
    expect(signup.cookies).toEqual([]);

    // The verification email, through the real SMTP server.
    const mail = lastMail(smtp, email, 'Verify your email address');
    expect(mail.to).toEqual([email]);
    expect(mail.text).toContain('Ada Lovelace');
    const token = linkToken(mail.text, '/verify-email');

    // Not before the address is verified.
    expectError(await b.login(email, password), 403, 'email_not_verified');

    const verified = expectOk(await b.post('/api/auth/verify-email', { token }));
    const after = Math.floor(Date.now() / 1000);
    expect(verified.status).toBe('verified');
    expect(verified.user).toMatchObject({
      object: 'user',
      // The placeholder owner `keyport start` made, now this account: it owns the instance.
      id: t.instance.owner.id,
      email,
      name: 'Ada Lovelace',
      email_verified: true,
      intended_use: 'Research assistants',
      terms_version: TERMS_VERSION,
      mfa_enabled: false,
      is_instance_owner: true,
    });
    expect(verified.user.terms_accepted_at).toBeGreaterThanOrEqual(before);
    expect(verified.user.terms_accepted_at).toBeLessThanOrEqual(after);
    // A link works once.
    expectError(await b.post('/api/auth/verify-email', { token }), 400, 'invalid_token');

    // Signed in: a member (owner) of the instance's organization.
    await b.signIn(email, password);
    const session = expectOk(await b.session());
    expect(session.status).toBe('signed_in');
    expect(session.organizations).toEqual([
      { id: t.instance.organization.id, name: t.instance.organization.name, role: 'owner' },
    ]);

    // Another device, signed in before MFA is turned on.
    const laptop = await browser().signIn(email, password);

    // Enrolment: a secret and its QR code, not in force until a first code.
    const setup = expectOk(await b.post('/api/auth/mfa/setup'));
    expect(setup.secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(setup.qr_svg).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
    const totp = URI.parse(setup.otpauth_uri) as TOTP | HOTP;
    if (!(totp instanceof TOTP)) throw new Error(`not a TOTP URI: ${setup.otpauth_uri}`);
    expect(totp.issuer).toBe('Keyport');
    expect(totp.label).toBe(email);
    expect(totp.secret.base32).toBe(setup.secret);
    expect([totp.algorithm, totp.digits, totp.period]).toEqual(['SHA1', 6, 30]);
    expect(expectOk(await b.get('/api/auth/mfa'))).toEqual({ enabled: false, recovery_codes_left: 0 });

    expectError(await b.post('/api/auth/mfa/enable', { code: wrongCode(totp) }), 401, 'invalid_mfa_code');
    const enabled = expectOk(await b.post('/api/auth/mfa/enable', { code: codeAt(totp) }));
    expect(enabled.status).toBe('mfa_enabled');
    const recovery: string[] = enabled.recovery_codes;
    expect(recovery).toHaveLength(10);
    for (const code of recovery) expect(code).toMatch(RECOVERY_CODE);
    expect(new Set(recovery).size).toBe(10);
    expect(expectOk(await b.get('/api/auth/mfa'))).toEqual({ enabled: true, recovery_codes_left: 10 });

    // Turning MFA on signed the other device out, not this one.
    expect(expectOk(await laptop.session()).status).toBe('signed_out');
    expectError(await laptop.get('/api/organizations'), 401, 'not_authenticated');
    expect(expectOk(await b.session()).user.mfa_enabled).toBe(true);

    expect(expectOk(await b.post('/api/auth/logout'))).toEqual({ status: 'signed_out' });
    expect(expectOk(await b.session())).toEqual({ status: 'signed_out' });

    // The password is only the first step now.
    const first = expectOk(await b.login(email, password));
    expect(first.status).toBe('mfa_required');
    const pending = b.token;
    expectError(await b.get('/api/organizations'), 401, 'not_authenticated');
    const half = expectOk(await b.session());
    expect(half.status).toBe('mfa_required');
    expect(half.organizations).toEqual([]);
    expectError(await b.loginMfa(wrongCode(totp)), 401, 'invalid_mfa_code');

    // A code of the next period (the last one used was this period's): accepted, once.
    const code = codeAt(totp, 1);
    const done = expectOk(await b.loginMfa(code));
    expect(done.status).toBe('signed_in');
    expect(b.token).not.toBe(pending);
    // The half-signed-in session is over; the new one works.
    expect(pending).toBeDefined();
    expect(expectOk(await b.get('/api/auth/session', { cookie: pending ?? null })).status).toBe('signed_out');
    expect(expectOk(await b.get('/api/organizations')).data).toHaveLength(1);

    // The same code again, on a new sign-in: refused.
    await b.post('/api/auth/logout');
    expect(expectOk(await b.login(email, password)).status).toBe('mfa_required');
    expectError(await b.loginMfa(code), 401, 'invalid_mfa_code');

    // A recovery code works once.
    expect(expectOk(await b.loginMfa(recovery[0]!)).status).toBe('signed_in');
    expect(expectOk(await b.get('/api/auth/mfa')).recovery_codes_left).toBe(9);
    await b.post('/api/auth/logout');
    expect(expectOk(await b.login(email, password)).status).toBe('mfa_required');
    expectError(await b.loginMfa(recovery[0]!), 401, 'invalid_mfa_code');
    // Another one, typed in capitals: fine.
    expect(expectOk(await b.loginMfa(recovery[1]!.toUpperCase())).status).toBe('signed_in');
    expect(expectOk(await b.get('/api/auth/mfa')).recovery_codes_left).toBe(8);

    expectNoPasswordLeaked();
  });

  it('records the profile and the terms accepted (time and version); a later sign-up gets its own organization', async () => {
    const email = 'grace@example.com';
    const password = strongPassword('grace');
    passwords.push(password);
    const before = Date.now();
    const b = browser();
    expectOk(
      await b.post('/api/auth/signup', {
        email,
        password,
        name: '  Grace Hopper  ',
        organization_name: 'Compilers Inc',
        intended_use: 'A COBOL copilot',
        accept_terms: true,
      }),
      202,
    );
    const token = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
    const user = expectOk(await b.post('/api/auth/verify-email', { token })).user;
    expect(user).toMatchObject({
      name: 'Grace Hopper',
      is_instance_owner: false,
      terms_version: TERMS_VERSION,
    });

    const [row] = await t.services.store.db.select().from(users).where(eq(users.id, user.id));
    expect(row!.termsVersion).toBe(TERMS_VERSION);
    expect(row!.termsAcceptedAt!.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(row!.termsAcceptedAt!.getTime()).toBeLessThanOrEqual(Date.now());
    expect(row!.intendedUse).toBe('A COBOL copilot');
    expect(row!.passwordHash).toMatch(/^\$argon2id\$/);
    expect(row!.isInstanceOwner).toBe(false);

    // Its own organization, which it owns, with a first project.
    await b.signIn(email, password);
    const list = expectOk(await b.get('/api/organizations')).data;
    expect(list).toEqual([
      expect.objectContaining({ name: 'Compilers Inc', role: 'owner', is_operator: false }),
    ]);
    const [org] = await t.services.store.db
      .select()
      .from(organizations)
      .where(eq(organizations.id, list[0].id));
    expect(org!.isOperator).toBe(false);
    const orgProjects = await t.services.store.db
      .select()
      .from(projects)
      .where(eq(projects.organizationId, list[0].id));
    expect(orgProjects.map((p) => p.name)).toEqual(['Default project']);
    // Its audit log starts with how it came to be: the owner added, the first project created.
    const logged = await t.services.store.db
      .select()
      .from(auditLogs)
      .where(eq(auditLogs.organizationId, list[0].id));
    const changes = logged.filter((e) => !e.type.startsWith('login.'));
    expect(changes.map((e) => [e.type, e.resourceId, e.actorId]).sort()).toEqual([
      ['project.created', orgProjects[0]!.id, 'system:signup'],
      ['user.added', user.id, 'system:signup'],
    ]);

    // The profile changes; the terms accepted again are recorded with the current version.
    const profile = expectOk(
      await b.post('/api/auth/profile', { name: 'Rear Admiral Hopper', intended_use: null }),
    );
    expect(profile).toMatchObject({ name: 'Rear Admiral Hopper', intended_use: null });
    expectError(await b.post('/api/auth/profile', { name: '   ' }), 400, 'invalid_request');
    await t.services.store.db
      .update(users)
      .set({ termsVersion: '2020-01-01', termsAcceptedAt: new Date(before - 86_400_000) })
      .where(eq(users.id, user.id));
    const accepted = expectOk(await b.post('/api/auth/terms'));
    expect(accepted.terms_version).toBe(TERMS_VERSION);
    expect(accepted.terms_accepted_at).toBeGreaterThanOrEqual(Math.floor(before / 1000));

    // Without accepting the terms: no account.
    const refused = expectError(
      await b.post('/api/auth/signup', {
        email: 'noterms@example.com',
        password: strongPassword('noterms'),
        name: 'No Terms',
        accept_terms: false,
      }),
      400,
      'invalid_request',
    );
    expect(refused.param).toBe('accept_terms');
    expect(mailsTo(smtp, 'noterms@example.com')).toEqual([]);
    expectNoPasswordLeaked();
  });

  it('signing up again with a used address: the same answer, a note instead of a link, the password unchanged', async () => {
    const email = 'linus@example.com';
    const password = strongPassword('linus');
    await signUpAndVerify(email, password);
    const mailsBefore = mailsTo(smtp, email).length;
    const intruder = strongPassword('intruder');
    passwords.push(intruder);
    const again = await browser().post('/api/auth/signup', {
      email,
      password: intruder,
      name: 'Intruder',
      accept_terms: true,
    });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({
      status: 'verification_sent',
      message: 'Check your email for a link to verify your address.',
    });
    const mails = mailsTo(smtp, email).slice(mailsBefore);
    expect(mails.map((m) => m.headers.subject)).toEqual(['Someone tried to sign up with your email address']);
    expect(mails[0]!.text).not.toContain('#token=');
    expectError(await browser().login(email, intruder), 401, 'invalid_credentials');
    await browser().signIn(email, password);
    expectNoPasswordLeaked();
  });

  it('another verification link replaces the first; asking for one says nothing about the address', async () => {
    const email = 'edsger@example.com';
    const password = strongPassword('edsger');
    passwords.push(password);
    const b = browser();
    expectOk(await b.post('/api/auth/signup', { email, password, name: 'Edsger', accept_terms: true }), 202);
    const first = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
    const resent = await b.post('/api/auth/resend-verification', { email });
    expect([resent.status, resent.body]).toEqual([202, { status: 'verification_sent' }]);
    const second = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
    expect(second).not.toBe(first);
    expectError(await b.post('/api/auth/verify-email', { token: first }), 400, 'invalid_token');
    expectOk(await b.post('/api/auth/verify-email', { token: second }));

    // Verified, or unknown: the same answer, and no mail.
    const count = smtp.messages.length;
    for (const address of [email, 'nobody-here@example.com']) {
      const reply = await b.post('/api/auth/resend-verification', { email: address });
      expect([reply.status, reply.body]).toEqual([202, { status: 'verification_sent' }]);
    }
    expect(smtp.messages.length).toBe(count);
  });

  it('the emailed links open pages that keep the token out of the URL sent to the server', async () => {
    const b = browser();
    for (const path of ['/verify-email', '/reset-password', '/confirm-email', '/accept-invite']) {
      const page = await b.get(path);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.headers['content-security-policy']).toContain("script-src 'self'");
      expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(page.headers['referrer-policy']).toBe('no-referrer');
      expect(page.headers['x-frame-options']).toBe('DENY');
      expect(page.text).toContain('<script src="/assets/link-page.js"></script>');
      expect(page.text).not.toMatch(/<script>[^<]/);
    }
    const script = await b.get('/assets/link-page.js');
    expect(script.headers['content-type']).toMatch(/^text\/javascript/);
    // The token is read from the fragment, then taken out of the address bar.
    expect(script.text).toContain('location.hash');
    expect(script.text).toContain('history.replaceState');
  });

  it('a password reset by emailed link ends every session', async () => {
    const email = 'margaret@example.com';
    const password = strongPassword('margaret');
    await signUpAndVerify(email, password);
    const phone = await browser().signIn(email, password);
    const laptop = await browser().signIn(email, password);

    const forgot = await browser().post('/api/auth/password/forgot', { email });
    expect(forgot.status).toBe(202);
    const token = linkToken(lastMail(smtp, email, 'Reset your Keyport password').text, '/reset-password');

    // A weak new password is refused, and the link still works afterwards.
    const weak = expectError(
      await browser().post('/api/auth/password/reset', { token, password: 'password123' }),
      400,
      'invalid_request',
    );
    expect(weak.param).toBe('password');
    const newPassword = strongPassword('margaret-2');
    passwords.push(newPassword);
    expect(
      expectOk(await browser().post('/api/auth/password/reset', { token, password: newPassword })).status,
    ).toBe('password_reset');

    for (const b of [phone, laptop]) {
      expect(expectOk(await b.session()).status).toBe('signed_out');
      expectError(await b.get('/api/organizations'), 401, 'not_authenticated');
    }
    expectError(await browser().login(email, password), 401, 'invalid_credentials');
    await browser().signIn(email, newPassword);
    // Once only.
    expectError(
      await browser().post('/api/auth/password/reset', { token, password: strongPassword('margaret-3') }),
      400,
      'invalid_token',
    );
    // An address without an account: the same answer, and no mail.
    const unknown = await browser().post('/api/auth/password/forgot', { email: 'nobody@example.com' });
    expect([unknown.status, unknown.body]).toEqual([forgot.status, forgot.body]);
    expect(mailsTo(smtp, 'nobody@example.com')).toEqual([]);
    expectNoPasswordLeaked();
  });

  it('a password change needs the password again within 10 minutes, and ends the other sessions', async () => {
    const email = 'barbara@example.com';
    const password = strongPassword('barbara');
    await signUpAndVerify(email, password);
    const b = await browser().signIn(email, password);
    const other = await browser().signIn(email, password);
    const sessionId = expectOk(await b.session()).session.id;

    // Signed in 11 minutes ago: too long for a sensitive change.
    await t.services.store.db
      .update(sessions)
      .set({ reauthenticatedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(sessions.id, sessionId));
    const newPassword = strongPassword('barbara-2');
    passwords.push(newPassword);
    expectError(
      await b.post('/api/auth/password', { password: newPassword }),
      403,
      'reauthentication_required',
    );
    expectError(await b.post('/api/auth/mfa/setup'), 403, 'reauthentication_required');
    expectError(
      await b.post('/api/auth/email', { email: 'new@example.com' }),
      403,
      'reauthentication_required',
    );

    const wrong = strongPassword('not-hers');
    passwords.push(wrong);
    expectError(await b.post('/api/auth/reauthenticate', { password: wrong }), 401, 'invalid_credentials');
    expect(expectOk(await b.post('/api/auth/reauthenticate', { password }))).toEqual({
      status: 'reauthenticated',
      valid_for_seconds: 600,
    });
    expectError(await b.post('/api/auth/password', { password: '1234567890' }), 400, 'invalid_request');
    expect(expectOk(await b.post('/api/auth/password', { password: newPassword }))).toEqual({
      status: 'password_changed',
    });

    // This session goes on; the other one is over.
    expect(expectOk(await b.session()).status).toBe('signed_in');
    expect(expectOk(await other.session()).status).toBe('signed_out');
    expect(lastMail(smtp, email, 'Your Keyport password was changed').text).toContain('signed out');
    expectError(await browser().login(email, password), 401, 'invalid_credentials');
    await browser().signIn(email, newPassword);
    expectNoPasswordLeaked();
  });

  it('turning MFA off needs the password and a second factor, and ends the other sessions', async () => {
    const email = 'hedy@example.com';
    const password = strongPassword('hedy');
    await signUpAndVerify(email, password);
    const b = await browser().signIn(email, password);
    const setup = expectOk(await b.post('/api/auth/mfa/setup'));
    const totp = URI.parse(setup.otpauth_uri) as TOTP;
    const recovery: string[] = expectOk(
      await b.post('/api/auth/mfa/enable', { code: codeAt(totp) }),
    ).recovery_codes;

    const second = browser();
    expect(expectOk(await second.login(email, password)).status).toBe('mfa_required');
    expect(expectOk(await second.loginMfa(recovery[0]!)).status).toBe('signed_in');

    // With MFA on, the password alone does not re-authenticate: the answer says the code is missing.
    const missing = expectError(
      await b.post('/api/auth/reauthenticate', { password }),
      400,
      'invalid_request',
    );
    expect(missing).toMatchObject({ param: 'code' });
    expect(missing.message).toContain('Two-factor authentication is on');
    expectError(
      await b.post('/api/auth/reauthenticate', { password, code: '000000' }),
      401,
      'invalid_credentials',
    );
    expectOk(await b.post('/api/auth/reauthenticate', { password, code: recovery[1]! }));
    // New recovery codes replace the old ones.
    const fresh: string[] = expectOk(await b.post('/api/auth/mfa/recovery-codes')).recovery_codes;
    expect(fresh).toHaveLength(10);
    expect(fresh).not.toContain(recovery[2]);
    expect(expectOk(await b.post('/api/auth/mfa/disable'))).toEqual({ status: 'mfa_disabled' });
    expect(expectOk(await b.get('/api/auth/mfa'))).toEqual({ enabled: false, recovery_codes_left: 0 });
    expect(expectOk(await second.session()).status).toBe('signed_out');
    expect(expectOk(await b.session()).status).toBe('signed_in');
    expect(lastMail(smtp, email, 'Two-factor authentication was turned off').to).toEqual([email]);
    // The password alone signs in again.
    expect(expectOk(await browser().login(email, password)).status).toBe('signed_in');
    expectNoPasswordLeaked();
  });

  it('an email change is confirmed by a link to the new address, tells the old one, and ends the sessions', async () => {
    const email = 'katherine@example.com';
    const password = strongPassword('katherine');
    await signUpAndVerify(email, password);
    const b = await browser().signIn(email, password);
    expectOk(await b.post('/api/auth/email', { email: 'kj@example.org' }), 202);
    expect(lastMail(smtp, email, 'is being changed').text).toContain('kj@example.org');
    const token = linkToken(
      lastMail(smtp, 'kj@example.org', 'Confirm your new email').text,
      '/confirm-email',
    );
    const changed = expectOk(await browser().post('/api/auth/email/confirm', { token }));
    expect(changed.user).toMatchObject({ email: 'kj@example.org', email_verified: true });
    expect(expectOk(await b.session()).status).toBe('signed_out');
    expectError(await browser().login(email, password), 401, 'invalid_credentials');
    await browser().signIn('kj@example.org', password);
  });

  it('an email change to an address taken in the meantime is refused; reset links to the old address die with it', async () => {
    const email = 'lin@example.com';
    const password = strongPassword('lin');
    await signUpAndVerify(email, password);
    const b = await browser().signIn(email, password);
    expectOk(await b.post('/api/auth/email', { email: 'wanted@example.org' }), 202);
    const token = linkToken(
      lastMail(smtp, 'wanted@example.org', 'Confirm your new email').text,
      '/confirm-email',
    );
    // Someone else registers the address before the link is followed.
    await signUpAndVerify('wanted@example.org', strongPassword('wanted'));
    expectError(await browser().post('/api/auth/email/confirm', { token }), 409, 'conflict');
    await browser().signIn(email, password);

    // A reset link sent to the old address stops working once the address changes.
    expectOk(await browser().post('/api/auth/password/forgot', { email }), 202);
    const reset = linkToken(lastMail(smtp, email, 'Reset your Keyport password').text, '/reset-password');
    const c = await browser().signIn(email, password);
    expectOk(await c.post('/api/auth/email', { email: 'lin@example.org' }), 202);
    const confirm = linkToken(
      lastMail(smtp, 'lin@example.org', 'Confirm your new email').text,
      '/confirm-email',
    );
    expectOk(await browser().post('/api/auth/email/confirm', { token: confirm }));
    expectError(
      await browser().post('/api/auth/password/reset', {
        token: reset,
        password: strongPassword('taken over'),
      }),
      400,
      'invalid_token',
    );
    await browser().signIn('lin@example.org', password);
  });
});

describe('sign-up without an SMTP server', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { publicUrl: PUBLIC_URL } });
  });
  afterAll(() => t?.close());

  it('logs the verification email with its link, and never the password', async () => {
    const email = 'alan@example.com';
    const password = strongPassword('alan');
    const b = new Browser(t);
    expectOk(
      await b.post('/api/auth/signup', { email, password, name: 'Alan Turing', accept_terms: true }),
      202,
    );
    const logged = loggedEmails(t).filter((e) => e.to.includes(email));
    expect(logged.map((e) => e.subject)).toEqual(['Verify your email address for Keyport']);
    expect(logged[0]!.msg).toContain('KEYPORT_SMTP_URL');
    const token = linkToken(logged[0]!.text, '/verify-email');
    expect(expectOk(await b.post('/api/auth/verify-email', { token })).user.email_verified).toBe(true);
    await b.signIn(email, password);

    // A reset link is logged the same way.
    expectOk(await b.post('/api/auth/password/forgot', { email }), 202);
    const reset = loggedEmails(t).filter((e) => e.to.includes(email) && e.subject.includes('Reset'));
    expect(reset).toHaveLength(1);
    linkToken(reset[0]!.text, '/reset-password');

    const log = t.logs.join('\n');
    expect(log).not.toContain(password);
    for (const e of loggedEmails(t)) expect(e.text).not.toContain(password);
  });

  it('a later sign-up never takes over the instance owner', async () => {
    await createAccount(t, 'existing@example.com', 'Existing', strongPassword('existing'));
    const [owner] = await t.services.store.db.select().from(users).where(eq(users.id, t.instance.owner.id));
    // The first test above signed up first and took the owner over; nobody else can.
    expect(owner!.email).toBe('alan@example.com');
    const b = new Browser(t, '192.0.2.200');
    expectOk(
      await b.post('/api/auth/signup', {
        email: 'late@example.com',
        password: strongPassword('late'),
        name: 'Late',
        accept_terms: true,
      }),
      202,
    );
    const [late] = await t.services.store.db.select().from(users).where(eq(users.email, 'late@example.com'));
    expect(late!.isInstanceOwner).toBe(false);
    expect(late!.id).not.toBe(t.instance.owner.id);
  });
});
