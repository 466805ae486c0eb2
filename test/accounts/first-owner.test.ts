/**
 * Who may become the instance's owner by signing up. The placeholder owner `keyport start` makes
 * (owner@localhost) goes to the first account (test: signup-mfa.test.ts); an owner made with a
 * real address (`keyport init --email ops@…`) is not up for grabs: a stranger's sign-up makes the
 * stranger an organization of their own, and only that address, verified, claims the owner.
 */
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../../src/store/schema.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { type SmtpReceiver, startSmtpServer } from '../notifications/servers.ts';
import { Browser, expectOk, lastMail, linkToken, PUBLIC_URL, smtpUrlOf, strongPassword } from './helpers.ts';

describe.each(backends)('the instance owner made by init with a real address (%s)', (backend) => {
  let t: TestApp;
  let smtp: SmtpReceiver;
  let ips = 0;
  beforeAll(async () => {
    smtp = await startSmtpServer();
    t = await createTestApp({ backend, config: { publicUrl: PUBLIC_URL, smtpUrl: smtpUrlOf(smtp) } });
    // What `keyport init --email ops@acme.example` leaves: an owner with that address, no password.
    await t.services.store.db
      .update(users)
      .set({ email: 'ops@acme.example' })
      .where(eq(users.id, t.instance.owner.id));
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  async function signUp(email: string) {
    const b = new Browser(t, `192.0.2.${++ips}`);
    expectOk(
      await b.post('/api/auth/signup', {
        email,
        password: strongPassword(email),
        name: email,
        accept_terms: true,
      }),
      202,
    );
    const token = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
    return expectOk(await b.post('/api/auth/verify-email', { token })).user;
  }

  it('a stranger signing up first gets an organization of their own, not the instance', async () => {
    const stranger = await signUp('stranger@example.net');
    expect(stranger.id).not.toBe(t.instance.owner.id);
    expect(stranger.is_instance_owner).toBe(false);
    const [owner] = await t.services.store.db.select().from(users).where(eq(users.id, t.instance.owner.id));
    expect(owner!.email).toBe('ops@acme.example');
    expect(owner!.passwordHash).toBeNull();
    expect(await t.services.memberships.roleOf(t.instance.organization.id, stranger.id)).toBeUndefined();
  });

  it('the owner’s own address claims it', async () => {
    const owner = await signUp('ops@acme.example');
    expect(owner).toMatchObject({ id: t.instance.owner.id, is_instance_owner: true });
  });
});
