/**
 * Dashboard sessions over HTTP: the cookie's flags (`__Host-` and all it demands), a new session
 * at every sign-in (no fixation), signing out here, elsewhere and everywhere; and CSRF: a write
 * from another site is refused (Origin, Sec-Fetch-Site), and a write needs the session's own
 * x-csrf-token, while a read needs nothing.
 */
import { TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SESSION_COOKIE } from '../../src/api/dashboard/session.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import {
  Browser,
  createAccount,
  expectError,
  expectOk,
  PUBLIC_URL,
  type Reply,
  strongPassword,
} from './helpers.ts';

const SESSION_DAYS = 9;

describe.each(backends)('dashboard sessions (%s)', (backend) => {
  let t: TestApp;
  let accounts = 0;
  beforeAll(async () => {
    t = await createTestApp({ backend, config: { publicUrl: PUBLIC_URL, sessionDays: SESSION_DAYS } });
  });
  afterAll(() => t?.close());

  /** A verified account of its own for each test. */
  async function account() {
    const n = ++accounts;
    const email = `session-${n}@example.com`;
    const password = strongPassword(`session-${n}`);
    const user = await createAccount(t, email, `Session ${n}`, password);
    return { user, email, password, browser: (ip = `203.0.113.${n}`) => new Browser(t, ip) };
  }

  const sessionCookieOf = (reply: Reply) => {
    const cookies = reply.cookies.filter((c) => c.name === SESSION_COOKIE);
    expect(cookies).toHaveLength(1);
    return cookies[0]!;
  };

  describe('the cookie', () => {
    it('is __Host-keyport_session: HttpOnly, Secure, SameSite=Lax, Path=/, no Domain, for the session’s lifetime', async () => {
      const { email, password, browser } = await account();
      const b = browser();
      const reply = await b.login(email, password);
      expect(reply.status).toBe(200);
      const cookie = sessionCookieOf(reply);
      expect(cookie.name).toBe('__Host-keyport_session');
      expect(Object.keys(cookie.attributes).sort()).toEqual([
        'httponly',
        'max-age',
        'path',
        'samesite',
        'secure',
      ]);
      expect(cookie.attributes).toEqual({
        httponly: '',
        secure: '',
        samesite: 'Lax',
        path: '/',
        'max-age': String(SESSION_DAYS * 86_400),
      });
      expect(cookie.attributes.domain).toBeUndefined();
      // An unguessable token, which is not the session's id (that one is shown to the user).
      expect(cookie.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const session = expectOk(await b.session());
      expect(session.session.id).not.toBe(cookie.value);
      expect(session.session.expires_at - session.session.created_at).toBe(SESSION_DAYS * 86_400);
      // The CSRF token is not the cookie either (page scripts see it; they must not see the cookie).
      expect(session.csrf_token).not.toBe(cookie.value);
      expect(reply.body.csrf_token).toBe(session.csrf_token);
    });

    it('is cleared on sign-out with the same flags (or a browser would keep it)', async () => {
      const { email, password, browser } = await account();
      const b = await browser().signIn(email, password);
      const token = b.token!;
      const reply = await b.post('/api/auth/logout');
      expect(reply.body).toEqual({ status: 'signed_out' });
      const cleared = sessionCookieOf(reply);
      expect(cleared.value).toBe('');
      expect(cleared.attributes).toMatchObject({ path: '/', secure: '', httponly: '', samesite: 'Lax' });
      expect(cleared.attributes.domain).toBeUndefined();
      expect(
        Date.parse(cleared.attributes.expires ?? '') <= Date.now() || cleared.attributes['max-age'] === '0',
      ).toBe(true);
      // The token itself is dead, not just forgotten by this browser.
      expect(expectOk(await b.get('/api/auth/session', { cookie: token })).status).toBe('signed_out');
      expectError(await b.get('/api/organizations', { cookie: token }), 401, 'not_authenticated');
    });

    it('an unknown, garbled or oversized cookie is no session', async () => {
      const b = new Browser(t);
      for (const cookie of ['x', 'A'.repeat(43), 'A'.repeat(5000), '%%%']) {
        expect(expectOk(await b.get('/api/auth/session', { cookie })).status).toBe('signed_out');
        expectError(await b.get('/api/organizations', { cookie }), 401, 'not_authenticated');
      }
    });
  });

  describe('session fixation', () => {
    it('every sign-in makes a new session, whatever cookie the browser brought', async () => {
      const { email, password, browser } = await account();
      const b = await browser().signIn(email, password);
      const first = b.token!;
      const firstId = expectOk(await b.session()).session.id;
      await b.signIn(email, password);
      expect(b.token).not.toBe(first);
      expect(expectOk(await b.session()).session.id).not.toBe(firstId);

      // A cookie planted by an attacker (their own session) is not what the victim gets signed into.
      const attacker = await account();
      const planted = (await attacker.browser().signIn(attacker.email, attacker.password)).token!;
      const victim = browser();
      victim.token = planted;
      const reply = await victim.login(email, password);
      expect(reply.status).toBe(200);
      expect(sessionCookieOf(reply).value).not.toBe(planted);
      expect(expectOk(await victim.session()).user.email).toBe(email);
      // The planted token still names the attacker, not the victim.
      expect(expectOk(await victim.get('/api/auth/session', { cookie: planted })).user.email).toBe(
        attacker.email,
      );
    });

    it('completing the second factor makes a new session too, and ends the half-signed-in one', async () => {
      const { email, password, browser } = await account();
      const b = await browser().signIn(email, password);
      const totp = URI.parse(expectOk(await b.post('/api/auth/mfa/setup')).otpauth_uri);
      if (!(totp instanceof TOTP)) throw new Error('not TOTP');
      const codes: string[] = expectOk(
        await b.post('/api/auth/mfa/enable', { code: totp.generate() }),
      ).recovery_codes;
      const c = browser();
      expect(expectOk(await c.login(email, password)).status).toBe('mfa_required');
      const pending = c.token!;
      const pendingCsrf = c.csrf;
      expect(expectOk(await c.loginMfa(codes[0]!)).status).toBe('signed_in');
      expect(c.token).not.toBe(pending);
      expect(c.csrf).not.toBe(pendingCsrf);
      expect(expectOk(await c.get('/api/auth/session', { cookie: pending })).status).toBe('signed_out');
      expectError(
        await c.post(
          '/api/auth/login/mfa',
          { code: codes[1] },
          { cookie: pending, csrf: pendingCsrf ?? null },
        ),
        401,
        'not_authenticated',
      );
    });
  });

  describe('signing out', () => {
    it('lists the sessions with their address and browser, and ends one of them', async () => {
      const { email, password } = await account();
      const phone = await new Browser(t, '198.51.100.20', 'Phone/1.0').signIn(email, password);
      const laptop = await new Browser(t, '198.51.100.21', 'Laptop/2.0').signIn(email, password);
      const list = expectOk(await laptop.get('/api/auth/sessions'));
      expect(list.object).toBe('list');
      expect(list.data).toHaveLength(2);
      const phoneSession = list.data.find((s: { user_agent: string }) => s.user_agent === 'Phone/1.0');
      expect(phoneSession).toMatchObject({ object: 'session', current: false, ip: '198.51.100.20' });
      expect(list.data.find((s: { current: boolean }) => s.current)).toMatchObject({
        ip: '198.51.100.21',
        user_agent: 'Laptop/2.0',
      });

      // Someone else cannot end it.
      const other = await account();
      const stranger = await other.browser().signIn(other.email, other.password);
      expectError(await stranger.delete(`/api/auth/sessions/${phoneSession.id}`), 404, 'not_found');
      expect(expectOk(await phone.session()).status).toBe('signed_in');

      expect(expectOk(await laptop.delete(`/api/auth/sessions/${phoneSession.id}`))).toEqual({
        object: 'session.deleted',
        id: phoneSession.id,
        deleted: true,
      });
      expect(expectOk(await phone.session()).status).toBe('signed_out');
      expect(expectOk(await laptop.session()).status).toBe('signed_in');
      expect(expectOk(await laptop.get('/api/auth/sessions')).data).toHaveLength(1);
    });

    it('signing out here leaves the other sessions; signing out everywhere ends them all', async () => {
      const { email, password, browser } = await account();
      const devices = [];
      for (let n = 0; n < 4; n++) devices.push(await browser(`198.51.100.${30 + n}`).signIn(email, password));
      const [a, b, c, d] = devices as [Browser, Browser, Browser, Browser];
      expectOk(await d.post('/api/auth/logout'));
      expect(expectOk(await d.session()).status).toBe('signed_out');
      for (const device of [a, b, c]) expect(expectOk(await device.session()).status).toBe('signed_in');

      expect(expectOk(await a.post('/api/auth/logout-all'))).toEqual({
        status: 'signed_out',
        sessions_ended: 3,
      });
      for (const device of [a, b, c]) {
        expect(expectOk(await device.get('/api/auth/session', { cookie: device.token ?? null })).status).toBe(
          'signed_out',
        );
        expectError(await device.get('/api/organizations'), 401, 'not_authenticated');
      }
      // And a new sign-in works.
      await a.signIn(email, password);
    });
  });

  describe('CSRF', () => {
    /** A signed-in browser and a write whose effect can be seen: the profile's name. */
    async function signedIn() {
      const { email, password, browser } = await account();
      const b = await browser().signIn(email, password);
      const rename = (name: string, options?: Parameters<Browser['post']>[2]) =>
        b.post('/api/auth/profile', { name }, options);
      const name = async () => expectOk(await b.session()).user.name as string;
      return { b, rename, name, email, password, browser };
    }

    it('a write with the right token from the dashboard’s origin is accepted', async () => {
      const { rename, name } = await signedIn();
      expect(expectOk(await rename('Renamed')).name).toBe('Renamed');
      expect(await name()).toBe('Renamed');
    });

    it.each([
      ['another origin', { origin: 'https://evil.example' }],
      ['a look-alike origin', { origin: 'https://keyport.test.evil.example' }],
      ['the dashboard over plain http', { origin: 'http://keyport.test' }],
      ['an opaque origin', { origin: 'null' }],
      ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
      ['Sec-Fetch-Site: same-site (a sibling subdomain)', { 'sec-fetch-site': 'same-site' }],
      ['cross-site with no Origin header', { origin: undefined, 'sec-fetch-site': 'cross-site' }],
    ])('a write from %s is refused, even with the right token', async (_case, headers) => {
      const { rename, name } = await signedIn();
      const before = await name();
      const error = expectError(await rename('Hijacked', { headers }), 403, 'csrf_failed');
      expect(error.message).toMatch(/refused/);
      expect(await name()).toBe(before);
    });

    it('a write without the x-csrf-token, or with a wrong one, is refused', async () => {
      const { rename, name, b } = await signedIn();
      const before = await name();
      expectError(await rename('No token', { csrf: null }), 403, 'csrf_failed');
      expectError(
        await rename('Empty token', { csrf: null, headers: { 'x-csrf-token': '' } }),
        403,
        'csrf_failed',
      );
      expectError(await rename('Wrong token', { csrf: `${b.csrf!.slice(0, -1)}x` }), 403, 'csrf_failed');
      expectError(await rename('Short token', { csrf: b.csrf!.slice(0, 10) }), 403, 'csrf_failed');
      // Without Origin or Sec-Fetch-Site (not a browser), the token is still needed.
      expectError(
        await rename('No browser', {
          csrf: null,
          headers: { origin: undefined, 'sec-fetch-site': undefined },
        }),
        403,
        'csrf_failed',
      );
      expect(await name()).toBe(before);
      expect(
        expectOk(await rename('Script', { headers: { origin: undefined, 'sec-fetch-site': undefined } }))
          .name,
      ).toBe('Script');
    });

    it('the token of another session, even of the same account, is refused', async () => {
      const { rename, name, email, password, browser } = await signedIn();
      const other = await browser().signIn(email, password);
      const stranger = await signedIn();
      const before = await name();
      expectError(await rename('Other session', { csrf: other.csrf! }), 403, 'csrf_failed');
      expectError(await rename('Other account', { csrf: stranger.b.csrf! }), 403, 'csrf_failed');
      expect(await name()).toBe(before);
    });

    it('every write of the dashboard API checks it: sign-out, sessions, organizations, the Admin API routes', async () => {
      const { b } = await signedIn();
      const org = expectOk(await b.post('/api/organizations', { name: 'CSRF Inc' }));
      const writes: [string, string, unknown][] = [
        ['POST', '/api/auth/logout', {}],
        ['POST', '/api/auth/logout-all', {}],
        ['POST', '/api/auth/terms', {}],
        ['POST', '/api/auth/mfa/setup', {}],
        ['POST', '/api/organizations', { name: 'Another' }],
        ['POST', `/api/organizations/${org.id}/projects`, { name: 'Forged' }],
        [
          'DELETE',
          `/api/organizations/${org.id}/projects/${org.default_project_id}/api_keys/key_x`,
          undefined,
        ],
        ['POST', '/api/invites/accept', { token: 'x'.repeat(43) }],
      ];
      for (const [method, url, body] of writes) {
        const reply = await b.request(method as 'POST', url, body, { csrf: null });
        expectError(reply, 403, 'csrf_failed');
        const foreign = await b.request(method as 'POST', url, body, {
          headers: { origin: 'https://evil.example' },
        });
        expectError(foreign, 403, 'csrf_failed');
      }
      // Nothing happened.
      expect(expectOk(await b.session()).status).toBe('signed_in');
      expect(expectOk(await b.get('/api/organizations')).data.map((o: { name: string }) => o.name)).toEqual([
        'CSRF Inc',
      ]);
      const projects = expectOk(await b.get(`/api/organizations/${org.id}/projects`));
      expect(projects.data.map((p: { name: string }) => p.name)).toEqual(['Default project']);
    });

    it('a read needs no token, from anywhere', async () => {
      const { b } = await signedIn();
      expect(expectOk(await b.get('/api/organizations', { csrf: null })).object).toBe('list');
      expect(
        expectOk(
          await b.get('/api/auth/sessions', {
            csrf: null,
            headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
          }),
        ).object,
      ).toBe('list');
    });

    it('signing in and signing up from another site are refused (login CSRF)', async () => {
      const { email, password } = await account();
      const b = new Browser(t, '203.0.113.250');
      const reply = await b.post(
        '/api/auth/login',
        { email, password },
        { headers: { origin: 'https://evil.example' } },
      );
      expectError(reply, 403, 'csrf_failed');
      expect(reply.cookies).toEqual([]);
      const crossSite = await new Browser(t, '203.0.113.251').post(
        '/api/auth/login',
        { email, password },
        { headers: { 'sec-fetch-site': 'cross-site' } },
      );
      expectError(crossSite, 403, 'csrf_failed');
      expect(crossSite.cookies).toEqual([]);
      const signup = await new Browser(t).post(
        '/api/auth/signup',
        {
          email: 'forged@example.com',
          password: strongPassword('forged'),
          name: 'Forged',
          accept_terms: true,
        },
        { headers: { origin: 'https://evil.example' } },
      );
      expectError(signup, 403, 'csrf_failed');
    });
  });
});
