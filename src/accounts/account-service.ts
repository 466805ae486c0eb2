/**
 * Accounts: sign-up with email and password, email verification and password reset by emailed
 * link, sign-in with back-off against guessing, sessions, TOTP second factor with recovery codes,
 * re-authentication before sensitive changes, profile and terms.
 *
 * Nothing tells whether an email has an account: sign-up, resend and reset answer the same either
 * way (the mail says what happened), and a sign-in with an unknown email costs a password check
 * against a decoy hash, like a known one.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { and, eq, gt, isNull, sql } from 'drizzle-orm';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { type Actor, SYSTEM } from '../core/actor.ts';
import { ApiError, badRequest } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { EmailMessage, Mailer } from '../notifications/mailer.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import { addMember, insertOrganization } from '../store/repositories/organizations.ts';
import { insertProject } from '../store/repositories/projects.ts';
import {
  emailTokens,
  loginThrottle,
  organizationMembers,
  organizations,
  type ProjectRow,
  recoveryCodes,
  type SessionRow,
  sessions,
  type UserRow,
  users,
} from '../store/schema.ts';
import { DEFAULT_BOOTSTRAP } from './bootstrap-defaults.ts';
import { decoyHash, hashPassword, passwordProblem, verifyPassword } from './passwords.ts';
import { auditProjectCreated } from './project-service.ts';
import type { SecretBox } from './secret-box.ts';
import { enrolment, hashRecoveryCode, newRecoveryCodes, newTotpSecret, verifyTotp } from './totp.ts';

export interface AccountOptions {
  /** Where links in emails point: `https://keyport.example.com`. */
  publicUrl: string;
  termsVersion: string;
  sessionDays: number;
  issuer: string;
  mailer: Mailer;
  /** True when a real SMTP server is configured: without one, emails (and their links) are logged. */
  smtp: boolean;
  secrets: SecretBox;
  logger: Logger;
  /** Records sign-ins and sign-outs in the audit log (the audit module). */
  onAuthEvent?: (event: AuthEvent) => Promise<void>;
  now?: () => number;
}

export interface AuthEvent {
  type: 'login.succeeded' | 'login.failed' | 'logout.succeeded';
  user: UserRow | undefined;
  email: string;
  ip: string | null;
  userAgent: string | null;
  errorCode?: string;
}

export interface ClientInfo {
  ip: string | null;
  userAgent: string | null;
}

export interface SignupInput {
  email: string;
  password: string;
  name: string;
  organizationName?: string | undefined;
  intendedUse?: string | undefined;
  acceptTerms: boolean;
}

export type LoginResult =
  | { status: 'signed_in'; session: SessionRow; token: string; user: UserRow }
  | { status: 'mfa_required'; session: SessionRow; token: string; user: UserRow };

/** A session as the HTTP layer sees it: the row, its user, and the CSRF token bound to it. */
export interface ActiveSession {
  session: SessionRow;
  user: UserRow;
  csrfToken: string;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;
const VERIFY_TTL_MS = 48 * 3600_000;
const RESET_TTL_MS = 3600_000;
const REAUTH_WINDOW_MS = 10 * 60_000;
const MFA_PENDING_MS = 10 * 60_000;
const MAX_OWNED_ORGANIZATIONS = 20;
const IDLE_TIMEOUT_MS = 3 * 86_400_000;
/** Back-off: after this many failures in the window, each further one doubles the wait. */
const FREE_FAILURES = 5;
const FAILURE_WINDOW_MS = 15 * 60_000;
const MAX_LOCK_MS = 3600_000;

/** Past the free failures, a lock of 30 s that doubles with each one (at most an hour). */
function lockFor(failures: number, now: number): Date | null {
  const over = failures - FREE_FAILURES;
  return over > 0 ? new Date(now + Math.min(MAX_LOCK_MS, 30_000 * 2 ** (over - 1))) : null;
}

/**
 * The network an address counts for: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6 by its
 * /64 — one machine is usually given a whole /64, so single addresses would be free to rotate.
 */
export function throttleNetwork(ip: string): string {
  if (!ipaddr.isValid(ip)) return ip;
  let address = ipaddr.parse(ip);
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    address = (address as ipaddr.IPv6).toIPv4Address();
  }
  if (address.kind() === 'ipv4') return address.toString();
  const parts = (address as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16));
  return `${parts.join(':')}::/64`;
}

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const token = () => randomBytes(32).toString('base64url');

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

function checkEmail(email: string): string {
  const normalized = normalizeEmail(email);
  if (!EMAIL.test(normalized)) throw badRequest('Invalid email address.', 'email');
  return normalized;
}

export const invalidCredentials = () => new ApiError('invalid_credentials', 'Incorrect email or password.');
const invalidLink = () =>
  new ApiError(
    'invalid_token',
    'This link is not valid: it was used already or has expired. Ask for a new one.',
  );

export class AccountService {
  readonly #now: () => number;

  constructor(
    private readonly db: Db,
    private readonly options: AccountOptions,
  ) {
    this.#now = options.now ?? Date.now;
  }

  // ---- sign-up and verification -----------------------------------------------------------------

  /**
   * Creates an unverified account (with its own organization and a first project) and emails the
   * verification link. An address that has an account gets a note instead, and the answer is the
   * same: nobody learns from it who has an account. The first account of an instance whose owner
   * (made by `keyport start`) has no password yet takes that owner over: it owns the instance.
   */
  async signup(input: SignupInput): Promise<void> {
    const email = checkEmail(input.email);
    if (!input.acceptTerms)
      throw badRequest('Accept the terms of service to create an account.', 'accept_terms');
    const problem = passwordProblem(input.password, { email });
    if (problem) throw badRequest(`Invalid password: ${problem}`, 'password');
    const name = input.name.trim();
    if (name.length === 0 || name.length > 200)
      throw badRequest('Invalid name: 1 to 200 characters.', 'name');
    const passwordHash = await hashPassword(input.password);
    const now = new Date(this.#now());

    const outcome = await this.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(7242013)`); // one sign-up at a time decides who is first
      const [existing] = await tx.select().from(users).where(sql`lower(${users.email}) = ${email}`);
      if (existing?.passwordHash) return { kind: 'exists' as const, user: existing };
      const profile = {
        name,
        passwordHash,
        passwordChangedAt: now,
        intendedUse: input.intendedUse?.trim().slice(0, 500) || null,
        termsVersion: this.options.termsVersion,
        termsAcceptedAt: now,
      };
      if (existing) {
        // Made without a password (`keyport init`, or the placeholder owner of `keyport start`).
        const [user] = await tx.update(users).set(profile).where(eq(users.id, existing.id)).returning();
        return { kind: 'created' as const, user: user! };
      }
      const placeholder = await this.#unclaimedOwner(tx);
      if (placeholder) {
        const [user] = await tx
          .update(users)
          .set({ ...profile, email })
          .where(eq(users.id, placeholder.id))
          .returning();
        return { kind: 'created' as const, user: user! };
      }
      const [user] = await tx
        .insert(users)
        .values({ id: newId('user'), email, ...profile })
        .returning();
      const organization = await insertOrganization(
        tx,
        input.organizationName?.trim() || `${name}'s organization`,
      );
      await addMember(tx, organization.id, user!.id, 'owner');
      const project = await insertProject(tx, { organizationId: organization.id, name: 'Default project' });
      // The new organization's log starts with how it came to be, as one made from the dashboard.
      await this.#auditNewOrganization(tx, organization.id, user!.id, project, SYSTEM('signup'));
      return { kind: 'created' as const, user: user! };
    });

    if (outcome.kind === 'exists') {
      await this.#send(outcome.user.email, 'Someone tried to sign up with your email address', [
        'Someone (perhaps you) tried to create a Keyport account with this email address, which already has one.',
        `If it was you, sign in at ${this.options.publicUrl}/login, or reset your password at ${this.options.publicUrl}/forgot-password.`,
        'If it was not you, you can ignore this message.',
      ]);
      return;
    }
    await this.#sendVerification(outcome.user);
  }

  /**
   * The owner `keyport start` made with the placeholder address, if nobody has claimed it yet. An
   * owner made with a real address (`keyport init --email ops@…`) is claimed only by signing up
   * with that address (and verifying it), never by the first stranger.
   */
  async #unclaimedOwner(tx: DbOrTx): Promise<UserRow | undefined> {
    const [owner] = await tx
      .select()
      .from(users)
      .where(
        and(
          eq(users.isInstanceOwner, true),
          isNull(users.passwordHash),
          sql`lower(${users.email}) = ${DEFAULT_BOOTSTRAP.ownerEmail}`,
        ),
      );
    if (!owner) return undefined;
    const [{ n }] = (await tx
      .select({ n: sql<number>`count(*)::int` })
      .from(users)
      .where(sql`${users.passwordHash} is not null`)) as [{ n: number }];
    return n === 0 ? owner : undefined;
  }

  async resendVerification(rawEmail: string): Promise<void> {
    const email = checkEmail(rawEmail);
    const user = await this.#byEmail(email);
    if (user?.passwordHash && !user.emailVerifiedAt) await this.#sendVerification(user);
  }

  async #sendVerification(user: UserRow): Promise<void> {
    const link = await this.#emailToken(user.id, 'verify_email', VERIFY_TTL_MS);
    await this.#send(user.email, 'Verify your email address for Keyport', [
      `Welcome to Keyport, ${user.name}.`,
      `Confirm your email address by opening this link within 48 hours: ${this.options.publicUrl}/verify-email#token=${link}`,
      'If you did not create an account, you can ignore this message.',
    ]);
  }

  async verifyEmail(rawToken: string): Promise<UserRow> {
    const row = await this.#useToken(rawToken, 'verify_email');
    const [user] = await this.db
      .update(users)
      .set({ emailVerifiedAt: new Date(this.#now()) })
      .where(eq(users.id, row.userId))
      .returning();
    return user!;
  }

  // ---- sign-in --------------------------------------------------------------------------------------

  /**
   * Email and password. Unknown address, wrong password, a locked account: the same 401, after the
   * same work. Back-off per account and per client address: five failures in 15 minutes are free,
   * then each doubles a wait (30 s, 1 min, … up to an hour) during which even the right password
   * is refused; the account's owner is emailed when it first locks.
   */
  async login(rawEmail: string, password: string, client: ClientInfo): Promise<LoginResult> {
    const email = normalizeEmail(rawEmail);
    const user = EMAIL.test(email) ? await this.#byEmail(email) : undefined;
    const stored = user?.passwordHash ?? (await decoyHash());
    const keys = this.#throttleKeys(email, client);
    // Counted before the password is checked, so attempts sent at once cannot all slip past the limit.
    const lockedUntil = await this.#reserveAttempt(keys);
    const passwordOk = await verifyPassword(stored, password);
    const ok = passwordOk && user?.passwordHash != null && lockedUntil === undefined;
    if (!ok) {
      await this.#confirmFailure(keys, user);
      await this.options.onAuthEvent?.({
        type: 'login.failed',
        user,
        email,
        ...client,
        errorCode: lockedUntil ? 'locked' : 'invalid_credentials',
      });
      if (lockedUntil) throw this.#tooManyAttempts(lockedUntil);
      throw invalidCredentials();
    }
    if (!user.emailVerifiedAt) {
      throw new ApiError(
        'email_not_verified',
        'Verify your email address first: we sent you a link (you can ask for another).',
      );
    }
    const mfa = user.mfaEnabledAt !== null;
    await this.#undoAttempt(keys);
    // Only a complete sign-in starts the count again: with MFA on, the password alone would
    // otherwise wipe the wrong codes tried so far, and codes could be guessed without end.
    if (!mfa) await this.#clearThrottle(email);
    const { session, token: secret } = await this.#createSession(user.id, client, mfa);
    if (!mfa) await this.options.onAuthEvent?.({ type: 'login.succeeded', user, email, ...client });
    return { status: mfa ? 'mfa_required' : 'signed_in', session, token: secret, user };
  }

  /** The second step: a TOTP code or a recovery code. The session gets a new token (a new id). */
  async completeMfa(
    active: ActiveSession,
    code: string,
    client: ClientInfo,
  ): Promise<{ session: SessionRow; token: string }> {
    if (!active.session.mfaPending) throw badRequest('This session has no second step to complete.');
    const keys = this.#throttleKeys(active.user.email, client);
    // A six-digit code is guessed like a password, so it backs off like one: without this check a
    // pending session could try codes until one worked. A locked attempt does not use the code up.
    const lockedUntil = await this.#reserveAttempt(keys);
    const ok = lockedUntil === undefined && (await this.#checkSecondFactor(active.user, code));
    if (!ok) {
      await this.#confirmFailure(keys, active.user);
      await this.options.onAuthEvent?.({
        type: 'login.failed',
        user: active.user,
        email: active.user.email,
        ...client,
        errorCode: lockedUntil ? 'locked' : 'invalid_mfa_code',
      });
      if (lockedUntil) throw this.#tooManyAttempts(lockedUntil);
      throw new ApiError('invalid_mfa_code', 'That code is not valid (or was already used).');
    }
    await this.#undoAttempt(keys);
    await this.#clearThrottle(active.user.email);
    await this.#revoke(active.session.id);
    const created = await this.#createSession(active.user.id, client, false);
    await this.options.onAuthEvent?.({
      type: 'login.succeeded',
      user: active.user,
      email: active.user.email,
      ...client,
    });
    return created;
  }

  async #checkSecondFactor(user: UserRow, code: string): Promise<boolean> {
    if (!user.mfaSecret) return false;
    const trimmed = code.trim();
    if (/^\d{6}$/.test(trimmed)) {
      const secret = this.options.secrets.open(user.mfaSecret, user.id);
      const step = verifyTotp(secret, trimmed, user.mfaLastStep, this.#now());
      if (step === undefined) return false;
      // Only if no one used this step meanwhile (two requests racing with one code).
      const updated = await this.db
        .update(users)
        .set({ mfaLastStep: step })
        .where(and(eq(users.id, user.id), sql`coalesce(${users.mfaLastStep}, -1) < ${step}`))
        .returning({ id: users.id });
      return updated.length === 1;
    }
    const used = await this.db
      .update(recoveryCodes)
      .set({ usedAt: new Date(this.#now()) })
      .where(
        and(
          eq(recoveryCodes.userId, user.id),
          eq(recoveryCodes.codeHash, hashRecoveryCode(trimmed)),
          isNull(recoveryCodes.usedAt),
        ),
      )
      .returning({ userId: recoveryCodes.userId });
    return used.length === 1;
  }

  /** The session a cookie's token names, if it is live (and not waiting for its second factor, unless allowed). */
  async session(
    rawToken: string | undefined,
    options: { allowMfaPending?: boolean } = {},
  ): Promise<ActiveSession | undefined> {
    if (!rawToken || rawToken.length > 200) return undefined;
    const now = this.#now();
    const [row] = await this.db
      .select({ session: sessions, user: users })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .where(
        and(
          eq(sessions.tokenHash, sha256(rawToken)),
          isNull(sessions.revokedAt),
          gt(sessions.expiresAt, new Date(now)),
        ),
      );
    if (!row) return undefined;
    if (row.session.lastSeenAt.getTime() + IDLE_TIMEOUT_MS < now) return undefined;
    if (row.session.mfaPending && !options.allowMfaPending) return undefined;
    // Last seen, at most once a minute (a write per request would be a write per click).
    if (now - row.session.lastSeenAt.getTime() > 60_000) {
      await this.db
        .update(sessions)
        .set({ lastSeenAt: new Date(now) })
        .where(eq(sessions.id, row.session.id));
    }
    return { session: row.session, user: row.user, csrfToken: this.csrfToken(rawToken) };
  }

  /** The anti-CSRF token bound to a session: an HMAC of its token, so nothing more is stored. */
  csrfToken(sessionToken: string): string {
    return createHmac('sha256', sessionToken).update('keyport-csrf').digest('base64url');
  }

  checkCsrf(sessionToken: string, presented: string | undefined): boolean {
    if (!presented) return false;
    const expected = Buffer.from(this.csrfToken(sessionToken));
    const given = Buffer.from(presented);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  async logout(active: ActiveSession, client: ClientInfo): Promise<void> {
    await this.#revoke(active.session.id);
    await this.options.onAuthEvent?.({
      type: 'logout.succeeded',
      user: active.user,
      email: active.user.email,
      ...client,
    });
  }

  /** Signs out every session of the user (all devices), except `keep` if given. */
  async logoutEverywhere(userId: string, keep?: string): Promise<number> {
    const ended = await this.db
      .update(sessions)
      .set({ revokedAt: new Date(this.#now()) })
      .where(
        and(
          eq(sessions.userId, userId),
          isNull(sessions.revokedAt),
          keep ? sql`${sessions.id} <> ${keep}` : undefined,
        ),
      )
      .returning({ id: sessions.id });
    return ended.length;
  }

  async sessionsOf(userId: string): Promise<SessionRow[]> {
    return this.db
      .select()
      .from(sessions)
      .where(
        and(
          eq(sessions.userId, userId),
          isNull(sessions.revokedAt),
          gt(sessions.expiresAt, new Date(this.#now())),
        ),
      )
      .orderBy(sql`${sessions.lastSeenAt} desc`);
  }

  async revokeSession(userId: string, sessionId: string): Promise<void> {
    const ended = await this.db
      .update(sessions)
      .set({ revokedAt: new Date(this.#now()) })
      .where(and(eq(sessions.userId, userId), eq(sessions.id, sessionId), isNull(sessions.revokedAt)))
      .returning({ id: sessions.id });
    if (ended.length === 0) throw new ApiError('not_found', `No session found with id '${sessionId}'.`);
  }

  async #createSession(userId: string, client: ClientInfo, mfaPending: boolean) {
    const secret = token();
    const now = new Date(this.#now());
    const [session] = await this.db
      .insert(sessions)
      .values({
        id: newId('session'),
        tokenHash: sha256(secret),
        userId,
        createdAt: now,
        lastSeenAt: now,
        reauthenticatedAt: now,
        // Waiting for its second factor, a session is good for a few minutes, not for days.
        expiresAt: new Date(
          now.getTime() + (mfaPending ? MFA_PENDING_MS : this.options.sessionDays * 86_400_000),
        ),
        mfaPending,
        ip: client.ip,
        userAgent: client.userAgent,
      })
      .returning();
    return { session: session!, token: secret };
  }

  async #revoke(sessionId: string): Promise<void> {
    await this.db
      .update(sessions)
      .set({ revokedAt: new Date(this.#now()) })
      .where(eq(sessions.id, sessionId));
  }

  // ---- re-authentication and sensitive changes -------------------------------------------------------

  /** The password again (and a code, with MFA on): sensitive changes are allowed for ten minutes. */
  async reauthenticate(
    active: ActiveSession,
    password: string,
    code: string | undefined,
    client: ClientInfo,
  ): Promise<void> {
    // The session's own user knows MFA is on: say what is missing, rather than count a failure.
    if (active.user.mfaEnabledAt && code === undefined) {
      throw badRequest(
        'Two-factor authentication is on: send a code from your authenticator app (or a recovery code) with your password.',
        'code',
      );
    }
    // The same back-off as sign-in: a session left open must not be a way to guess the password.
    const keys = this.#throttleKeys(active.user.email, client);
    const lockedUntil = await this.#reserveAttempt(keys);
    const passwordOk = active.user.passwordHash
      ? await verifyPassword(active.user.passwordHash, password)
      : false;
    // The code is only checked (and used up) when nothing else refuses the attempt.
    const secondOk =
      !active.user.mfaEnabledAt ||
      (lockedUntil === undefined &&
        passwordOk &&
        code !== undefined &&
        (await this.#checkSecondFactor(active.user, code)));
    if (lockedUntil !== undefined || !passwordOk || !secondOk) {
      await this.#confirmFailure(keys, active.user);
      if (lockedUntil) throw this.#tooManyAttempts(lockedUntil);
      throw invalidCredentials();
    }
    await this.#undoAttempt(keys);
    await this.db
      .update(sessions)
      .set({ reauthenticatedAt: new Date(this.#now()) })
      .where(eq(sessions.id, active.session.id));
  }

  requireRecentAuth(active: ActiveSession): void {
    if (this.#now() - active.session.reauthenticatedAt.getTime() <= REAUTH_WINDOW_MS) return;
    throw new ApiError(
      'reauthentication_required',
      active.user.mfaEnabledAt
        ? 'Enter your password and a two-factor code again to make this change (POST /api/auth/reauthenticate).'
        : 'Enter your password again to make this change (POST /api/auth/reauthenticate).',
    );
  }

  /** A new password: every other session ends (a stolen one too). */
  async changePassword(active: ActiveSession, password: string): Promise<void> {
    this.requireRecentAuth(active);
    const problem = passwordProblem(password, { email: active.user.email });
    if (problem) throw badRequest(`Invalid password: ${problem}`, 'password');
    await this.db
      .update(users)
      .set({ passwordHash: await hashPassword(password), passwordChangedAt: new Date(this.#now()) })
      .where(eq(users.id, active.user.id));
    await this.logoutEverywhere(active.user.id, active.session.id);
    await this.#send(active.user.email, 'Your Keyport password was changed', [
      'The password of your Keyport account was just changed, and your other sessions were signed out.',
      `If this was not you, reset your password at once: ${this.options.publicUrl}/forgot-password`,
    ]);
  }

  async requestPasswordReset(rawEmail: string): Promise<void> {
    const email = checkEmail(rawEmail);
    const user = await this.#byEmail(email);
    if (!user) return; // the same answer; no mail to an address without an account
    const link = await this.#emailToken(user.id, 'reset_password', RESET_TTL_MS);
    await this.#send(user.email, 'Reset your Keyport password', [
      `Set a new password within an hour: ${this.options.publicUrl}/reset-password#token=${link}`,
      'If you did not ask for this, you can ignore this message: your password is unchanged.',
    ]);
  }

  /** A new password from a reset link: the address is proven too; every session ends. */
  async resetPassword(rawToken: string, password: string): Promise<void> {
    const row = await this.#peekToken(rawToken, 'reset_password');
    const [user] = await this.db.select().from(users).where(eq(users.id, row.userId));
    const problem = passwordProblem(password, { email: user!.email });
    if (problem) throw badRequest(`Invalid password: ${problem}`, 'password');
    await this.#useToken(rawToken, 'reset_password');
    const now = new Date(this.#now());
    await this.db
      .update(users)
      .set({
        passwordHash: await hashPassword(password),
        passwordChangedAt: now,
        emailVerifiedAt: user!.emailVerifiedAt ?? now,
      })
      .where(eq(users.id, row.userId));
    await this.logoutEverywhere(row.userId);
    await this.#clearThrottle(user!.email);
  }

  /** A new address, confirmed by a link sent to it; the old one is told. */
  async requestEmailChange(active: ActiveSession, rawEmail: string): Promise<void> {
    this.requireRecentAuth(active);
    const email = checkEmail(rawEmail);
    if (await this.#byEmail(email)) {
      // Says nothing about the other account; the link just would not work.
      return;
    }
    const link = await this.#emailToken(active.user.id, 'change_email', VERIFY_TTL_MS, email);
    await this.#send(email, 'Confirm your new email address for Keyport', [
      `Confirm this address for your Keyport account by opening: ${this.options.publicUrl}/confirm-email#token=${link}`,
    ]);
    await this.#send(active.user.email, 'Your Keyport email address is being changed', [
      `Someone signed in to your account asked to change its address to ${email}. If this was not you, change your password now.`,
    ]);
  }

  async confirmEmailChange(rawToken: string): Promise<UserRow> {
    const row = await this.#useToken(rawToken, 'change_email');
    const taken = await this.#byEmail(normalizeEmail(row.email!));
    if (taken && taken.id !== row.userId)
      throw new ApiError('conflict', 'That address now belongs to another account; choose another one.');
    const user = await this.db.transaction(async (tx) => {
      const [changed] = await tx
        .update(users)
        .set({ email: row.email!, emailVerifiedAt: new Date(this.#now()) })
        .where(eq(users.id, row.userId))
        .returning();
      // Links already sent to the old address must not outlive it.
      await tx.delete(emailTokens).where(and(eq(emailTokens.userId, row.userId), isNull(emailTokens.usedAt)));
      return changed;
    });
    await this.logoutEverywhere(row.userId);
    return user!;
  }

  async updateProfile(
    userId: string,
    fields: { name?: string | undefined; intendedUse?: string | null | undefined },
  ): Promise<UserRow> {
    const values: Partial<UserRow> = {};
    if (fields.name !== undefined) {
      const name = fields.name.trim();
      if (name.length === 0 || name.length > 200)
        throw badRequest('Invalid name: 1 to 200 characters.', 'name');
      values.name = name;
    }
    if (fields.intendedUse !== undefined)
      values.intendedUse = fields.intendedUse?.trim().slice(0, 500) || null;
    const [user] = await this.db.update(users).set(values).where(eq(users.id, userId)).returning();
    return user!;
  }

  async acceptTerms(userId: string): Promise<UserRow> {
    const [user] = await this.db
      .update(users)
      .set({ termsVersion: this.options.termsVersion, termsAcceptedAt: new Date(this.#now()) })
      .where(eq(users.id, userId))
      .returning();
    return user!;
  }

  get termsVersion(): string {
    return this.options.termsVersion;
  }

  // ---- MFA -----------------------------------------------------------------------------------------

  /** Starts enrolment: a new secret (kept encrypted, not yet in force) and its QR code. */
  async startMfa(active: ActiveSession) {
    this.requireRecentAuth(active);
    if (active.user.mfaEnabledAt)
      throw badRequest('Two-factor authentication is already on; turn it off first to enrol again.');
    const secret = newTotpSecret();
    await this.db
      .update(users)
      .set({ mfaSecret: this.options.secrets.seal(secret, active.user.id), mfaLastStep: null })
      .where(eq(users.id, active.user.id));
    return { secret, ...(await enrolment(secret, active.user.email, this.options.issuer)) };
  }

  /** A first valid code turns it on; ten recovery codes are returned once; other sessions end. */
  async enableMfa(active: ActiveSession, code: string): Promise<string[]> {
    this.requireRecentAuth(active);
    const [user] = await this.db.select().from(users).where(eq(users.id, active.user.id));
    if (!user?.mfaSecret || user.mfaEnabledAt)
      throw badRequest('Start the enrolment first (POST /api/auth/mfa/setup).');
    if (!(await this.#checkSecondFactor(user, code)))
      throw new ApiError('invalid_mfa_code', 'That code is not valid: check the time on your device.');
    const codes = newRecoveryCodes();
    await this.db.transaction(async (tx) => {
      await tx
        .update(users)
        .set({ mfaEnabledAt: new Date(this.#now()) })
        .where(eq(users.id, user.id));
      await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, user.id));
      await tx
        .insert(recoveryCodes)
        .values(codes.map((c) => ({ userId: user.id, codeHash: hashRecoveryCode(c) })));
    });
    await this.logoutEverywhere(user.id, active.session.id);
    return codes;
  }

  async disableMfa(active: ActiveSession): Promise<void> {
    this.requireRecentAuth(active);
    await this.db.transaction(async (tx) => {
      await tx
        .update(users)
        .set({ mfaEnabledAt: null, mfaSecret: null, mfaLastStep: null })
        .where(eq(users.id, active.user.id));
      await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, active.user.id));
    });
    await this.logoutEverywhere(active.user.id, active.session.id);
    await this.#send(active.user.email, 'Two-factor authentication was turned off', [
      'Two-factor authentication was turned off for your Keyport account. If this was not you, change your password now.',
    ]);
  }

  async regenerateRecoveryCodes(active: ActiveSession): Promise<string[]> {
    this.requireRecentAuth(active);
    if (!active.user.mfaEnabledAt)
      throw badRequest('Two-factor authentication is off: there are no recovery codes.');
    const codes = newRecoveryCodes();
    await this.db.transaction(async (tx) => {
      await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, active.user.id));
      await tx
        .insert(recoveryCodes)
        .values(codes.map((c) => ({ userId: active.user.id, codeHash: hashRecoveryCode(c) })));
    });
    return codes;
  }

  async recoveryCodesLeft(userId: string): Promise<number> {
    const [row] = await this.db
      .select({ n: sql<number>`count(*)::int` })
      .from(recoveryCodes)
      .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)));
    return row?.n ?? 0;
  }

  // ---- organizations of a user ----------------------------------------------------------------------

  async organizationsOf(userId: string) {
    return this.db
      .select({ organization: organizations, role: organizationMembers.role })
      .from(organizationMembers)
      .innerJoin(organizations, eq(organizations.id, organizationMembers.organizationId))
      .where(eq(organizationMembers.userId, userId))
      .orderBy(organizations.createdAt);
  }

  /** A new organization owned by the user, with a first project. */
  /** A new organization owned by the user, with a default project; its log starts with both. */
  async createOrganization(userId: string, name: string, actor: Actor) {
    const trimmed = name.trim();
    if (trimmed.length === 0 || trimmed.length > 200)
      throw badRequest('Invalid name: 1 to 200 characters.', 'name');
    return this.db.transaction(async (tx) => {
      // A cap, so that one account cannot mint organizations (and their trial credit) without end.
      const [{ owned }] = (await tx
        .select({ owned: sql<number>`count(*)::int` })
        .from(organizationMembers)
        .where(and(eq(organizationMembers.userId, userId), eq(organizationMembers.role, 'owner')))) as [
        { owned: number },
      ];
      if (owned >= MAX_OWNED_ORGANIZATIONS)
        throw badRequest(
          `You own ${owned} organizations, the most one account may; leave or hand over one first.`,
        );
      const organization = await insertOrganization(tx, trimmed);
      await addMember(tx, organization.id, userId, 'owner');
      const project = await insertProject(tx, { organizationId: organization.id, name: 'Default project' });
      await this.#auditNewOrganization(tx, organization.id, userId, project, actor);
      return { organization, project };
    });
  }

  async #auditNewOrganization(
    tx: DbOrTx,
    organizationId: string,
    ownerId: string,
    project: ProjectRow,
    actor: Actor,
  ): Promise<void> {
    await recordAudit(tx, {
      organizationId,
      type: 'user.added',
      actor,
      resourceId: ownerId,
      details: { id: ownerId, data: { role: 'owner' } },
    });
    await auditProjectCreated(tx, project, actor);
  }

  // ---- helpers ---------------------------------------------------------------------------------------

  async #byEmail(email: string): Promise<UserRow | undefined> {
    const [user] = await this.db.select().from(users).where(sql`lower(${users.email}) = ${email}`);
    return user;
  }

  /** A new single-use link token (earlier unused ones of the same purpose stop working). */
  async #emailToken(
    userId: string,
    purpose: 'verify_email' | 'reset_password' | 'change_email',
    ttlMs: number,
    email?: string,
  ) {
    const secret = token();
    const now = this.#now();
    await this.db.transaction(async (tx) => {
      await tx
        .update(emailTokens)
        .set({ usedAt: new Date(now) })
        .where(
          and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, purpose), isNull(emailTokens.usedAt)),
        );
      await tx.insert(emailTokens).values({
        tokenHash: sha256(secret),
        userId,
        purpose,
        email: email ?? null,
        createdAt: new Date(now),
        expiresAt: new Date(now + ttlMs),
      });
    });
    return secret;
  }

  /** A link token that is unused and unexpired: what both reading and using one require. */
  #liveToken(rawToken: string, purpose: string) {
    return and(
      eq(emailTokens.tokenHash, sha256(rawToken)),
      eq(emailTokens.purpose, purpose as 'verify_email'),
      isNull(emailTokens.usedAt),
      gt(emailTokens.expiresAt, new Date(this.#now())),
    );
  }

  async #peekToken(rawToken: string, purpose: string) {
    const [row] = await this.db.select().from(emailTokens).where(this.#liveToken(rawToken, purpose));
    if (!row) throw invalidLink();
    return row;
  }

  /** Marks the token used, once: a second use (or a race for the first) finds nothing. */
  async #useToken(rawToken: string, purpose: string) {
    const [row] = await this.db
      .update(emailTokens)
      .set({ usedAt: new Date(this.#now()) })
      .where(this.#liveToken(rawToken, purpose))
      .returning();
    if (!row) throw invalidLink();
    return row;
  }

  #throttleKeys(email: string, client: ClientInfo): string[] {
    const network = client.ip ? throttleNetwork(client.ip) : undefined;
    return [`email:${normalizeEmail(email)}`, ...(network ? [`ip:${network}`] : [])];
  }

  /** The account's count of failures starts again (the client address keeps its own). */
  async #clearThrottle(email: string): Promise<void> {
    await this.db.delete(loginThrottle).where(eq(loginThrottle.key, `email:${normalizeEmail(email)}`));
  }

  #tooManyAttempts(lockedUntil: number): ApiError {
    const seconds = Math.ceil((lockedUntil - this.#now()) / 1000);
    return new ApiError(
      'too_many_attempts',
      `Too many failed sign-in attempts. Try again in ${seconds} s, or reset your password.`,
      null,
      { 'retry-after': String(seconds) },
    );
  }

  /**
   * Counts an attempt before its password or code is checked, one key at a time under a row lock:
   * attempts sent at once each see their own count, so no more than FREE_FAILURES + 1 are ever
   * checked before a lock. Past the free ones, the attempt itself sets the lock (doubling each
   * time); a locked key refuses the attempt. Returns when the lock ends, if the attempt is refused.
   * A successful attempt gives its count back (`#undoAttempt`).
   */
  async #reserveAttempt(keys: string[]): Promise<number | undefined> {
    const now = this.#now();
    return this.db.transaction(async (tx) => {
      let refusedUntil: number | undefined;
      for (const key of [...keys].sort()) {
        await tx
          .insert(loginThrottle)
          .values({ key, failures: 0, firstFailureAt: new Date(now) })
          .onConflictDoNothing();
        const [row] = await tx.select().from(loginThrottle).where(eq(loginThrottle.key, key)).for('update');
        const lockedUntil = row!.lockedUntil?.getTime() ?? 0;
        if (lockedUntil > now) {
          refusedUntil = Math.max(refusedUntil ?? 0, lockedUntil);
          continue;
        }
        const fresh = row!.failures === 0 || row!.firstFailureAt.getTime() + FAILURE_WINDOW_MS < now;
        const failures = fresh ? 1 : row!.failures + 1;
        await tx
          .update(loginThrottle)
          .set({
            failures,
            lockedUntil: lockFor(failures, now),
            ...(fresh ? { firstFailureAt: new Date(now), notifiedAt: null } : {}),
          })
          .where(eq(loginThrottle.key, key));
      }
      return refusedUntil;
    });
  }

  /** The attempt succeeded: its count is given back (and a lock it set, if it was the one). */
  async #undoAttempt(keys: string[]): Promise<void> {
    const now = this.#now();
    await this.db.transaction(async (tx) => {
      for (const key of [...keys].sort()) {
        const [row] = await tx.select().from(loginThrottle).where(eq(loginThrottle.key, key)).for('update');
        if (!row) continue;
        const failures = Math.max(0, row.failures - 1);
        await tx
          .update(loginThrottle)
          .set({ failures, lockedUntil: lockFor(failures, now) })
          .where(eq(loginThrottle.key, key));
      }
    });
  }

  /** The attempt failed: it stays counted; the account's owner is emailed the first time it locks. */
  async #confirmFailure(keys: string[], user: UserRow | undefined): Promise<void> {
    const key = keys.find((k) => k.startsWith('email:'));
    if (!key) return;
    const now = new Date(this.#now());
    // The same statement for an unknown address as for a known one: no difference to time.
    const [locked] = await this.db
      .update(loginThrottle)
      .set({ notifiedAt: now })
      .where(
        and(eq(loginThrottle.key, key), gt(loginThrottle.lockedUntil, now), isNull(loginThrottle.notifiedAt)),
      )
      .returning({ failures: loginThrottle.failures });
    if (!locked || !user) return;
    await this.#send(user.email, 'Sign-in to your Keyport account is paused', [
      `There were ${locked.failures} failed attempts to sign in to your account, so sign-in is paused for a while.`,
      `If this was not you, someone may be guessing your password. You can reset it at ${this.options.publicUrl}/forgot-password.`,
    ]).catch(() => {});
  }

  /** Sends an account email; without SMTP, logs it whole so that a single-machine user can follow its link. */
  async #send(to: string, subject: string, lines: string[]): Promise<void> {
    const message: EmailMessage = { to: [to], subject, text: `${lines.join('\n\n')}\n` };
    if (!this.options.smtp) {
      this.options.logger.info(
        { to: message.to, subject, text: message.text },
        'account email (no SMTP server configured: KEYPORT_SMTP_URL; its link is here instead)',
      );
      return;
    }
    try {
      await this.options.mailer.send(message);
    } catch (error) {
      this.options.logger.error({ err: error, to: message.to, subject }, 'account email could not be sent');
    }
  }
}
