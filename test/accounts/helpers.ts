/**
 * The dashboard as a browser uses it, over `app.inject`: a cookie jar holding the session cookie,
 * the page's Origin and Sec-Fetch-Site, the CSRF token sent on writes, a client address; and the
 * account emails, read from the real SMTP server or, without one, from the server's log.
 */
import { eq } from 'drizzle-orm';
import { expect } from 'vitest';
import { hashPassword } from '../../src/accounts/passwords.ts';
import { SESSION_COOKIE } from '../../src/api/dashboard/session.ts';
import { addMember, insertUser } from '../../src/store/repositories/organizations.ts';
import { type UserRow, users } from '../../src/store/schema.ts';
import type { TestApp } from '../helpers/test-app.ts';
import type { ReceivedMail, SmtpReceiver } from '../notifications/servers.ts';

/** Where the dashboard is served: the only origin its writes may come from. */
export const PUBLIC_URL = 'https://keyport.test';

export interface SetCookie {
  name: string;
  value: string;
  /** Attribute names lower-cased; flags map to ''. */
  attributes: Record<string, string>;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON came back, and assert on it
  body: any;
  cookies: SetCookie[];
}

export interface RequestOptions {
  /** Headers added to (or, as `undefined`, removed from) the browser's own. */
  headers?: Record<string, string | undefined>;
  /** The CSRF token to send instead of the session's; `null` sends none. */
  csrf?: string | null;
  /** The cookie to send instead of the jar's; `null` sends none. */
  cookie?: string | null;
}

export function parseSetCookies(header: string | string[] | number | undefined): SetCookie[] {
  if (header === undefined) return [];
  const lines = Array.isArray(header) ? header : [String(header)];
  return lines.map((line) => {
    const [pair = '', ...attrs] = line.split(';').map((part) => part.trim());
    const eq = pair.indexOf('=');
    const attributes: Record<string, string> = {};
    for (const attr of attrs) {
      const at = attr.indexOf('=');
      if (at === -1) attributes[attr.toLowerCase()] = '';
      else attributes[attr.slice(0, at).toLowerCase()] = attr.slice(at + 1);
    }
    return { name: pair.slice(0, eq), value: decodeURIComponent(pair.slice(eq + 1)), attributes };
  });
}

/** One browser: its session cookie, the CSRF token of that session, and its address. */
export class Browser {
  /** The session cookie's value, as the jar holds it. */
  token: string | undefined;
  csrf: string | undefined;

  constructor(
    private readonly t: TestApp,
    readonly ip = '198.51.100.7',
    readonly userAgent = 'Mozilla/5.0 (keyport tests)',
  ) {}

  async request(
    method: 'GET' | 'HEAD' | 'POST' | 'DELETE',
    url: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<Reply> {
    const headers: Record<string, string> = {
      origin: PUBLIC_URL,
      'sec-fetch-site': 'same-origin',
      'user-agent': this.userAgent,
    };
    const cookie = options.cookie === undefined ? this.token : options.cookie;
    if (cookie) headers.cookie = `${SESSION_COOKIE}=${encodeURIComponent(cookie)}`;
    const csrf = options.csrf === undefined ? this.csrf : options.csrf;
    if (csrf && method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrf;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (value === undefined) delete headers[name];
      else headers[name] = value;
    }
    const response = await this.t.app.inject({
      method,
      url,
      headers,
      remoteAddress: this.ip,
      ...(payload !== undefined ? { payload } : {}),
    });
    const cookies = parseSetCookies(response.headers['set-cookie']);
    // Only the jar's own cookie moves it: a request sent with another cookie leaves it as it was.
    if (options.cookie === undefined) {
      for (const c of cookies.filter((c) => c.name === SESSION_COOKIE)) {
        const cleared = c.value === '' || c.attributes['max-age'] === '0' || isPast(c.attributes.expires);
        this.token = cleared ? undefined : c.value;
      }
    }
    let parsed: unknown;
    try {
      parsed = response.body === '' ? undefined : JSON.parse(response.body);
    } catch {
      parsed = undefined;
    }
    return {
      status: response.statusCode,
      headers: response.headers,
      text: response.body,
      body: parsed,
      cookies,
    };
  }

  get(url: string, options?: RequestOptions) {
    return this.request('GET', url, undefined, options);
  }

  post(url: string, body: unknown = {}, options?: RequestOptions) {
    return this.request('POST', url, body, options);
  }

  delete(url: string, body?: unknown, options?: RequestOptions) {
    return this.request('DELETE', url, body, options);
  }

  /** Email and password; keeps the new session's CSRF token when it worked. */
  async login(email: string, password: string): Promise<Reply> {
    const reply = await this.post('/api/auth/login', { email, password });
    if (reply.status === 200) this.csrf = reply.body.csrf_token;
    return reply;
  }

  async loginMfa(code: string): Promise<Reply> {
    const reply = await this.post('/api/auth/login/mfa', { code });
    if (reply.status === 200) this.csrf = reply.body.csrf_token;
    return reply;
  }

  /** Signs in and expects it to work without a second factor. */
  async signIn(email: string, password: string): Promise<this> {
    const reply = await this.login(email, password);
    expect(reply.status, reply.text).toBe(200);
    expect(reply.body.status).toBe('signed_in');
    return this;
  }

  /** GET /api/auth/session: what the page asks first. */
  async session(): Promise<Reply> {
    return this.get('/api/auth/session');
  }
}

function isPast(date: string | undefined): boolean {
  return date !== undefined && Date.parse(date) <= Date.now();
}

/** OpenAI's error shape with this status and code. */
export function expectError(reply: Reply, status: number, code: string) {
  expect(reply.status, reply.text).toBe(status);
  expect(Object.keys(reply.body ?? {})).toEqual(['error']);
  expect(Object.keys(reply.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(reply.body.error.code).toBe(code);
  expect(reply.body.error.type).toBe(status >= 500 ? 'server_error' : 'invalid_request_error');
  expect(typeof reply.body.error.message).toBe('string');
  expect(reply.body.error.message.length).toBeGreaterThan(0);
  return reply.body.error as { message: string; type: string; param: string | null; code: string };
}

export function expectOk(reply: Reply, status = 200) {
  expect(reply.status, reply.text).toBe(status);
  return reply.body;
}

// ---- emails ---------------------------------------------------------------------------------------

/** The SMTP URL of a test server (it accepts any login). */
export const smtpUrlOf = (smtp: SmtpReceiver) => `smtp://keyport:smtp-test-password@127.0.0.1:${smtp.port}`;

export function mailsTo(smtp: SmtpReceiver, email: string): ReceivedMail[] {
  return smtp.messages.filter((m) => m.to.includes(email.toLowerCase()) || m.to.includes(email));
}

/** The last mail to `email` whose subject contains `subject`. */
export function lastMail(smtp: SmtpReceiver, email: string, subject: string): ReceivedMail {
  const mail = mailsTo(smtp, email)
    .filter((m) => m.headers.subject?.includes(subject))
    .at(-1);
  if (!mail) {
    const seen = mailsTo(smtp, email).map((m) => m.headers.subject);
    throw new Error(`no mail to ${email} about "${subject}" (received: ${JSON.stringify(seen)})`);
  }
  return mail;
}

/** The token of a link to `path` (`https://…/verify-email#token=…`) in a text. */
export function linkToken(text: string, path: string): string {
  const match = new RegExp(`${PUBLIC_URL}${path}#token=([A-Za-z0-9_-]+)`).exec(text);
  if (!match?.[1]) throw new Error(`no ${path} link in: ${text}`);
  return match[1];
}

export interface LoggedEmail {
  to: string[];
  subject: string;
  text: string;
  msg: string;
}

/** Emails written to the log (no SMTP server configured). */
export function loggedEmails(t: TestApp): LoggedEmail[] {
  return t.logs
    .map((line) => JSON.parse(line) as Partial<LoggedEmail>)
    .filter((entry): entry is LoggedEmail => Array.isArray(entry.to) && typeof entry.text === 'string');
}

// ---- accounts ------------------------------------------------------------------------------------

/** A password that is long and not a common one. */
export const strongPassword = (tag: string) => `correct horse ${tag} battery staple`;

/** A verified account with a password, made straight in the database (no organization of its own). */
export async function createAccount(t: TestApp, email: string, name: string, password: string) {
  return insertUser(t.services.store.db, email, name, {
    passwordHash: await hashPassword(password),
    passwordChangedAt: new Date(),
    emailVerifiedAt: new Date(),
  });
}

/** Gives the bootstrap's placeholder owner a password, so that it can sign in. */
export async function claimBootstrapOwner(t: TestApp, password: string): Promise<UserRow> {
  const [owner] = await t.services.store.db
    .update(users)
    .set({ passwordHash: await hashPassword(password), emailVerifiedAt: new Date() })
    .where(eq(users.id, t.instance.owner.id))
    .returning();
  return owner!;
}

/** A verified account, a member of `organizationId` with `role`. */
export async function createMember(
  t: TestApp,
  organizationId: string,
  role: 'owner' | 'reader',
  email: string,
  password: string,
): Promise<UserRow> {
  const user = await createAccount(t, email, email.split('@')[0]!, password);
  await addMember(t.services.store.db, organizationId, user.id, role);
  return user;
}
