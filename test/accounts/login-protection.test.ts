/**
 * Sign-in against guessing: back-off per account and per client address (five failures free, then
 * a lock during which even the right password is refused), the account's owner emailed when it
 * first locks; nothing tells an unknown address from a known one (the same status and body, and
 * the same argon2 verification — against a decoy hash — rather than a timing measurement); and
 * passwords as NIST SP 800-63B asks: 8 to 128 characters, common ones refused, in OpenAI's
 * error shape.
 */
import { eq } from 'drizzle-orm';
import { type TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { decoyHash } from '../../src/accounts/passwords.ts';
import { users } from '../../src/store/schema.ts';
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
  mailsTo,
  PUBLIC_URL,
  type Reply,
  smtpUrlOf,
  strongPassword,
} from './helpers.ts';

/** Every argon2 verification the server makes: which stored hash it checked against. */
const argon2 = vi.hoisted(() => ({ verified: [] as string[] }));
vi.mock('@node-rs/argon2', async (importOriginal) => {
  const actual = await importOriginal<typeof import('@node-rs/argon2')>();
  return {
    ...actual,
    verify: (hashed: string | Uint8Array, ...rest: unknown[]) => {
      argon2.verified.push(String(hashed));
      return (actual.verify as (...args: unknown[]) => Promise<boolean>)(hashed, ...rest);
    },
  };
});

const PAUSED = 'Sign-in to your Keyport account is paused';
/** Failures that cost nothing; the next one locks. */
const FREE_FAILURES = 5;

describe.each(backends)('sign-in protection (%s)', (backend) => {
  let t: TestApp;
  let smtp: SmtpReceiver;
  let subnet = 0;
  /** A block of client addresses of its own for each test: `address(n)`. */
  let address: (n: number) => string;

  beforeAll(async () => {
    smtp = await startSmtpServer();
    t = await createTestApp({ backend, config: { publicUrl: PUBLIC_URL, smtpUrl: smtpUrlOf(smtp) } });
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });
  beforeEach(() => {
    const block = ++subnet;
    address = (n) => `10.${block}.0.${n}`;
  });

  const from = (ip: string) => new Browser(t, ip);
  /** Status, code and whether a session cookie was set: what an attempt tells its sender. */
  const outcome = (reply: Reply) => ({
    status: reply.status,
    code: reply.body?.error?.code ?? reply.body?.status,
    cookie: reply.cookies.length > 0,
  });

  it('an unknown address and a wrong password answer alike, and both cost an argon2 verification', async () => {
    const password = strongPassword('known');
    const user = await createAccount(t, 'known@example.com', 'Known', password);
    const unverified = await createAccount(t, 'unverified@example.com', 'Unverified', password);
    await t.services.store.db.update(users).set({ emailVerifiedAt: null }).where(eq(users.id, unverified.id));

    const attempt = async (email: string, ip: string) => {
      argon2.verified.length = 0;
      const reply = await from(ip).login(email, strongPassword('wrong'));
      return { reply, verified: [...argon2.verified] };
    };
    const known = await attempt('known@example.com', address(1));
    const unknown = await attempt('unknown@example.com', address(2));
    const unverifiedAttempt = await attempt('unverified@example.com', address(3));
    const malformed = await attempt('not-an-address', address(4));

    const error = expectError(known.reply, 401, 'invalid_credentials');
    expect(error.message).toBe('Incorrect email or password.');
    for (const other of [unknown, unverifiedAttempt, malformed]) {
      expect(other.reply.status).toBe(known.reply.status);
      expect(other.reply.text).toBe(known.reply.text);
      expect(other.reply.headers['content-type']).toBe(known.reply.headers['content-type']);
      expect(other.reply.headers['content-length']).toBe(known.reply.headers['content-length']);
      expect(other.reply.cookies).toEqual([]);
    }
    // One argon2 verification each: against the account's hash, or against the decoy.
    expect(known.verified).toEqual([user.passwordHash]);
    expect(unverifiedAttempt.verified).toEqual([unverified.passwordHash]);
    const decoy = await decoyHash();
    expect(decoy).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(unknown.verified).toEqual([decoy]);
    expect(malformed.verified).toEqual([decoy]);
  });

  it('an account locks after five failures, from any addresses; even its right password waits; its owner is emailed once', async () => {
    const email = 'target@example.com';
    const password = strongPassword('target');
    await createAccount(t, email, 'Target', password);
    const wrong = strongPassword('guess');

    // Each guess from another address: the address counts nothing worth locking, the account does.
    const replies: Reply[] = [];
    for (let n = 1; n <= FREE_FAILURES + 1; n++) replies.push(await from(address(n)).login(email, wrong));
    for (const reply of replies) expectError(reply, 401, 'invalid_credentials');
    expect(mailsTo(smtp, email).map((m) => m.headers.subject)).toEqual([PAUSED]);
    const notice = lastMail(smtp, email, PAUSED);
    expect(notice.text).toContain(`${FREE_FAILURES + 1} failed attempts`);
    expect(notice.text).toContain(`${PUBLIC_URL}/forgot-password`);
    expect(notice.text).not.toContain(wrong);

    // Locked: the right password from a new address is refused, with when to try again.
    const locked = await from(address(50)).login(email, password);
    const error = expectError(locked, 429, 'too_many_attempts');
    const retryAfter = Number(locked.headers['retry-after']);
    expect(Number.isInteger(retryAfter) && retryAfter > 0).toBe(true);
    expect(error.message).toContain(`${retryAfter} s`);
    expect(locked.cookies).toEqual([]);
    expectError(await from(address(51)).login(email, wrong), 429, 'too_many_attempts');
    // One notice per lock, not one per attempt.
    expect(mailsTo(smtp, email).filter((m) => m.headers.subject === PAUSED)).toHaveLength(1);

    // A password reset proves the address: the lock is lifted.
    expectOk(await from(address(52)).post('/api/auth/password/forgot', { email }), 202);
    const token = linkToken(lastMail(smtp, email, 'Reset your Keyport password').text, '/reset-password');
    const newPassword = strongPassword('target-2');
    expectOk(await from(address(53)).post('/api/auth/password/reset', { token, password: newPassword }));
    await from(address(54)).signIn(email, newPassword);
  });

  it('an unknown address locks the same way: the sequence of answers does not tell it from a known one', async () => {
    const email = 'exists@example.com';
    await createAccount(t, email, 'Exists', strongPassword('exists'));
    const run = async (target: string, first: number) => {
      const outcomes = [];
      for (let n = 0; n < FREE_FAILURES + 3; n++)
        outcomes.push(outcome(await from(address(first + n)).login(target, strongPassword('guess'))));
      return outcomes;
    };
    const known = await run(email, 1);
    const unknown = await run('ghost@example.com', 101);
    expect(unknown).toEqual(known);
    expect(known.map((o) => o.status)).toEqual([...Array(FREE_FAILURES + 1).fill(401), 429, 429]);
  });

  it('an address that guesses at many accounts is locked out of every account, the others are not', async () => {
    const attacker = address(1);
    const victim = 'victim@example.com';
    const password = strongPassword('victim');
    await createAccount(t, victim, 'Victim', password);

    for (let n = 1; n <= FREE_FAILURES + 1; n++) {
      expectError(
        await from(attacker).login(`guess-${n}@example.com`, strongPassword('guess')),
        401,
        'invalid_credentials',
      );
    }
    // From that address, even the right password of an account it never tried is refused…
    const locked = await from(attacker).login(victim, password);
    expectError(locked, 429, 'too_many_attempts');
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    // …while the account signs in from anywhere else, and was not told of a lock it does not have.
    await from(address(2)).signIn(victim, password);
    expect(mailsTo(smtp, victim)).toEqual([]);
  });

  it('a successful sign-in starts the account’s count again', async () => {
    const email = 'forgetful@example.com';
    const password = strongPassword('forgetful');
    await createAccount(t, email, 'Forgetful', password);
    let n = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < FREE_FAILURES; i++)
        expectError(
          await from(address(++n)).login(email, strongPassword('typo')),
          401,
          'invalid_credentials',
        );
      await from(address(++n)).signIn(email, password);
    }
    expect(mailsTo(smtp, email)).toEqual([]);
  });

  /** An account with TOTP on; returns it with a code maker. */
  async function accountWithMfa(email: string, password: string) {
    await createAccount(t, email, 'Careful', password);
    const b = await from(address(200)).signIn(email, password);
    const setup = expectOk(await b.post('/api/auth/mfa/setup'));
    const totp = URI.parse(setup.otpauth_uri) as TOTP;
    expectOk(await b.post('/api/auth/mfa/enable', { code: totp.generate() }));
    // The next period's code: the current one is used up by the enrolment.
    return { nextCode: () => totp.generate({ timestamp: Date.now() + 30_000 }) };
  }
  const WRONG_CODES = ['000001', '999998', '123450', '543210', '111112', '888887', '246801', '135790'];

  it('the second factor backs off like the password: after five wrong codes even the right one waits', async () => {
    const email = 'careful@example.com';
    const password = strongPassword('careful');
    await accountWithMfa(email, password);
    // Each code from another address (with the password known): the account's count decides.
    for (let n = 1; n <= FREE_FAILURES + 1; n++) {
      const b = from(address(n));
      expect(expectOk(await b.login(email, password)).status).toBe('mfa_required');
      expectError(await b.loginMfa(WRONG_CODES[n - 1]!), 401, 'invalid_mfa_code');
    }
    const b = from(address(60));
    // The password step itself is now refused, like any sign-in to a locked account.
    expectError(await b.login(email, password), 429, 'too_many_attempts');
    expect(mailsTo(smtp, email).filter((m) => m.headers.subject === PAUSED)).toHaveLength(1);
  });

  it('a pending sign-in cannot go on guessing codes once the account is locked', async () => {
    const email = 'patient@example.com';
    const password = strongPassword('patient');
    const { nextCode } = await accountWithMfa(email, password);
    // Signed in with the password once, then guessing codes on that one pending session.
    const b = from(address(1));
    expect(expectOk(await b.login(email, password)).status).toBe('mfa_required');
    for (let n = 1; n <= FREE_FAILURES + 1; n++)
      expectError(await b.loginMfa(WRONG_CODES[n - 1]!), 401, 'invalid_mfa_code');
    // Locked: the right code is refused too, and is not used up by the refusal.
    const code = nextCode();
    expectError(await b.loginMfa(code), 429, 'too_many_attempts');
    expect(b.token).toBeDefined();
    expect(expectOk(await b.session()).status).toBe('mfa_required');
  });

  it('signing in with the password again does not reset the count of wrong codes', async () => {
    const email = 'persistent@example.com';
    const password = strongPassword('persistent');
    const { nextCode } = await accountWithMfa(email, password);
    const first = from(address(1));
    expect(expectOk(await first.login(email, password)).status).toBe('mfa_required');
    for (let i = 0; i < FREE_FAILURES; i++)
      expectError(await first.loginMfa(WRONG_CODES[i]!), 401, 'invalid_mfa_code');
    // The password again, from elsewhere: right, but the five wrong codes still count.
    const second = from(address(2));
    expect(expectOk(await second.login(email, password)).status).toBe('mfa_required');
    expectError(await second.loginMfa(WRONG_CODES[5]!), 401, 'invalid_mfa_code');
    expectError(await second.loginMfa(nextCode()), 429, 'too_many_attempts');
  });

  /** How many attempts got each answer (by error code, or `status` when there is none). */
  const tally = (replies: Reply[]) => {
    const counts: Record<string, number> = {};
    for (const r of replies) {
      const key = String(r.body?.error?.code ?? r.body?.status ?? r.status);
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  };

  it('attempts sent all at once are counted one by one: at most one past the free ones is checked', async () => {
    const email = 'raced@example.com';
    const password = strongPassword('raced');
    await createAccount(t, email, 'Raced', password);
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) => from(address(i + 1)).login(email, strongPassword(`guess ${i}`))),
    );
    expect(tally(replies)).toEqual({
      invalid_credentials: FREE_FAILURES + 1,
      too_many_attempts: 30 - FREE_FAILURES - 1,
    });
  });

  it('codes sent all at once on one pending sign-in are counted one by one too', async () => {
    const email = 'raced-codes@example.com';
    const password = strongPassword('raced-codes');
    await accountWithMfa(email, password);
    const b = from(address(1));
    expect(expectOk(await b.login(email, password)).status).toBe('mfa_required');
    const codes = Array.from({ length: 40 }, (_, i) => String(100_000 + i * 7919));
    const replies = await Promise.all(codes.map((code) => b.loginMfa(code)));
    expect(tally(replies)).toEqual({
      invalid_mfa_code: FREE_FAILURES + 1,
      too_many_attempts: 40 - FREE_FAILURES - 1,
    });
  });

  it('IPv6 addresses count by their /64, and an IPv4-mapped address as its IPv4 one', async () => {
    const accounts = Array.from({ length: FREE_FAILURES + 2 }, (_, i) => `spray-${i}@example.com`);
    // One guess per account, each from another address of the same /64.
    for (let i = 0; i <= FREE_FAILURES; i++) {
      expectError(
        await from(`2001:db8:${subnet}:1::${(i + 1).toString(16)}`).login(accounts[i]!, 'wrong but long'),
        401,
        'invalid_credentials',
      );
    }
    expectError(
      await from(`2001:db8:${subnet}:1::ffff`).login(accounts.at(-1)!, 'wrong but long'),
      429,
      'too_many_attempts',
    );
    // Another /64 is another network.
    expectError(
      await from(`2001:db8:${subnet}:2::1`).login(accounts.at(-1)!, 'wrong but long'),
      401,
      'invalid_credentials',
    );
    // ::ffff:a.b.c.d and a.b.c.d are one address.
    const v4 = address(9);
    for (let i = 0; i <= FREE_FAILURES; i++) {
      const ip = i % 2 === 0 ? v4 : `::ffff:${v4}`;
      expectError(
        await from(ip).login(`mapped-${i}@example.com`, 'wrong but long'),
        401,
        'invalid_credentials',
      );
    }
    expectError(
      await from(`::ffff:${v4}`).login('mapped-last@example.com', 'wrong but long'),
      429,
      'too_many_attempts',
    );
  });

  it('wrong passwords at re-authentication back off like sign-in failures', async () => {
    const email = 'stolen-session@example.com';
    const password = strongPassword('stolen-session');
    await createAccount(t, email, 'Stolen', password);
    // Someone with a session (a laptop left open) guessing the password to change it.
    const b = await from(address(1)).signIn(email, password);
    for (let n = 1; n <= FREE_FAILURES + 1; n++)
      expectError(
        await b.post('/api/auth/reauthenticate', { password: `guess-${n}-long` }),
        401,
        'invalid_credentials',
      );
    expectError(await b.post('/api/auth/reauthenticate', { password }), 429, 'too_many_attempts');
  });

  describe('passwords', () => {
    const signUp = (email: string, password: string, ip: string) =>
      from(ip).post('/api/auth/signup', { email, password, name: 'Pat', accept_terms: true });

    it.each([['password'], ['password123'], ['iloveyou'], ['qwertyuiop'], ['12345678'], ['Sunshine']])(
      'a common password (%s) is refused in OpenAI’s error shape',
      async (password) => {
        const reply = await signUp(`common-${password}@example.com`, password, address(1));
        expect(reply.status).toBe(400);
        expect(reply.body).toEqual({
          error: {
            type: 'invalid_request_error',
            code: 'invalid_request',
            param: 'password',
            message: 'Invalid password: This password is one of the most common ones; choose another.',
          },
        });
        expect(mailsTo(smtp, `common-${password}@example.com`)).toEqual([]);
      },
    );

    it('the address as the password is refused', async () => {
      const error = expectError(
        await signUp('ada.lovelace@example.com', 'Ada.Lovelace', address(1)),
        400,
        'invalid_request',
      );
      expect(error).toMatchObject({ param: 'password', message: expect.stringContaining('email address') });
    });

    it('8 to 128 characters are accepted, 7 and 129 are refused (characters, not UTF-16 units)', async () => {
      const random = (length: number) =>
        Array.from({ length }, (_, i) => 'Kx7#qPz2!mW9vR4t'[(i * 7 + length) % 16]).join('');
      const cases: [string, string, number][] = [
        ['seven', random(7), 400],
        ['eight', random(8), 202],
        ['long', random(128), 202],
        ['too-long', random(129), 400],
        // Seven emoji are fourteen UTF-16 units, still seven characters.
        ['emoji-seven', '🔑🦊🌋🎻🧭🪐🛶', 400],
        ['emoji-eight', '🔑🦊🌋🎻🧭🪐🛶🍄', 202],
      ];
      for (const [name, password, status] of cases) {
        const reply = await signUp(`length-${name}@example.com`, password, address(1));
        expect(reply.status, `${name}: ${reply.text}`).toBe(status);
        if (status === 400) {
          const error = expectError(reply, 400, 'invalid_request');
          expect(error.param).toBe('password');
          expect(error.message).toMatch(
            password.length < 20 ? /at least 8 characters/ : /at most 128 characters/,
          );
        }
      }
      // The longest one signs in, once verified.
      const email = 'length-long@example.com';
      const token = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
      expectOk(await from(address(2)).post('/api/auth/verify-email', { token }));
      await from(address(2)).signIn(email, random(128));
      const emojiToken = linkToken(
        lastMail(smtp, 'length-emoji-eight@example.com', 'Verify').text,
        '/verify-email',
      );
      expectOk(await from(address(2)).post('/api/auth/verify-email', { token: emojiToken }));
      await from(address(2)).signIn('length-emoji-eight@example.com', '🔑🦊🌋🎻🧭🪐🛶🍄');
    });

    it('a reset or a change to a common password is refused too', async () => {
      const email = 'changer@example.com';
      const password = strongPassword('changer');
      await createAccount(t, email, 'Changer', password);
      const b = await from(address(1)).signIn(email, password);
      expectError(await b.post('/api/auth/password', { password: 'letmein1' }), 400, 'invalid_request');
      expectOk(await from(address(2)).post('/api/auth/password/forgot', { email }), 202);
      const token = linkToken(lastMail(smtp, email, 'Reset').text, '/reset-password');
      expectError(
        await from(address(2)).post('/api/auth/password/reset', { token, password: 'trustno1' }),
        400,
        'invalid_request',
      );
      // Unchanged.
      await from(address(3)).signIn(email, password);
    });
  });
});
