/**
 * `/api/auth/…`: sign-up, email verification, sign-in (with a second step when MFA is on),
 * sign-out (here or everywhere), password reset and change, email change, re-authentication,
 * MFA enrolment and recovery codes, sessions, profile and terms. JSON in, JSON out, errors in
 * OpenAI's shape like every other surface.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.ts';
import type { UserRow } from '../../store/schema.ts';
import { parseWith, unixSeconds, unixSecondsOrNull } from '../http/parse.ts';
import {
  checkSameOrigin,
  clearSessionCookie,
  clientOf,
  requireSession,
  sessionCookie,
  sessionToken,
} from './session.ts';

const email = z.string().min(3).max(320);
const password = z.string().min(1).max(1024);
const tokenBody = z.strictObject({ token: z.string().min(10).max(200) });

const signupBody = z.strictObject({
  email,
  password,
  name: z.string().min(1).max(200),
  organization_name: z.string().max(200).optional(),
  intended_use: z.string().max(500).optional(),
  accept_terms: z.boolean(),
});
const loginBody = z.strictObject({ email, password });
const codeBody = z.strictObject({ code: z.string().min(6).max(32) });
const reauthBody = z.strictObject({ password, code: z.string().min(6).max(32).optional() });
const passwordBody = z.strictObject({ password });
const resetBody = z.strictObject({ token: z.string().min(10).max(200), password });
const emailBody = z.strictObject({ email });
const profileBody = z.strictObject({
  name: z.string().min(1).max(200).optional(),
  intended_use: z.string().max(500).nullable().optional(),
});
const sessionParams = z.object({ session_id: z.string().min(1).max(64) });

export function userObject(user: UserRow) {
  return {
    object: 'user' as const,
    id: user.id,
    email: user.email,
    name: user.name,
    email_verified: user.emailVerifiedAt !== null,
    intended_use: user.intendedUse,
    terms_version: user.termsVersion,
    terms_accepted_at: unixSecondsOrNull(user.termsAcceptedAt),
    mfa_enabled: user.mfaEnabledAt !== null,
    is_instance_owner: user.isInstanceOwner,
    created_at: unixSeconds(user.createdAt),
  };
}

export function authRoutes(app: FastifyInstance, services: Services): void {
  const { accounts, config } = services;
  const signedIn = requireSession(services);
  const halfSignedIn = requireSession(services, { allowMfaPending: true });
  /** Requests without a session: only same-site ones may change anything. */
  const sameSite = async (request: FastifyRequest) => checkSameOrigin(request, services.publicUrl);

  app.post('/auth/signup', { onRequest: sameSite }, async (request, reply) => {
    const body = parseWith(signupBody, request.body, 'body');
    await accounts.signup({
      email: body.email,
      password: body.password,
      name: body.name,
      organizationName: body.organization_name,
      intendedUse: body.intended_use,
      acceptTerms: body.accept_terms,
    });
    // The same answer whether or not the address had an account.
    return reply
      .status(202)
      .send({ status: 'verification_sent', message: 'Check your email for a link to verify your address.' });
  });

  app.post('/auth/verify-email', { onRequest: sameSite }, async (request) => {
    const { token } = parseWith(tokenBody, request.body, 'body');
    return { status: 'verified', user: userObject(await accounts.verifyEmail(token)) };
  });

  app.post('/auth/resend-verification', { onRequest: sameSite }, async (request, reply) => {
    await accounts.resendVerification(parseWith(emailBody, request.body, 'body').email);
    return reply.status(202).send({ status: 'verification_sent' });
  });

  app.post('/auth/login', { onRequest: sameSite }, async (request, reply) => {
    const body = parseWith(loginBody, request.body, 'body');
    const result = await accounts.login(body.email, body.password, clientOf(request));
    // A new session (a new id) at every sign-in: no fixation.
    sessionCookie(reply, result.token, config.sessionDays);
    return {
      status: result.status,
      user: userObject(result.user),
      csrf_token: accounts.csrfToken(result.token),
    };
  });

  app.post('/auth/login/mfa', { onRequest: halfSignedIn }, async (request, reply) => {
    const { code } = parseWith(codeBody, request.body, 'body');
    const done = await accounts.completeMfa(request.dashboard!, code, clientOf(request));
    sessionCookie(reply, done.token, config.sessionDays);
    return {
      status: 'signed_in',
      user: userObject(request.dashboard!.user),
      csrf_token: accounts.csrfToken(done.token),
    };
  });

  app.get('/auth/session', async (request, reply) => {
    const token = sessionToken(request);
    const active = await accounts.session(token, { allowMfaPending: true });
    if (!active || !token) return reply.status(200).send({ status: 'signed_out' });
    return {
      status: active.session.mfaPending ? 'mfa_required' : 'signed_in',
      user: userObject(active.user),
      csrf_token: active.csrfToken,
      session: {
        id: active.session.id,
        created_at: unixSeconds(active.session.createdAt),
        expires_at: unixSeconds(active.session.expiresAt),
      },
      organizations: active.session.mfaPending
        ? []
        : (await accounts.organizationsOf(active.user.id)).map((o) => ({
            id: o.organization.id,
            name: o.organization.name,
            role: o.role,
          })),
    };
  });

  app.post('/auth/logout', { onRequest: halfSignedIn }, async (request, reply) => {
    await accounts.logout(request.dashboard!, clientOf(request));
    clearSessionCookie(reply);
    return { status: 'signed_out' };
  });

  app.post('/auth/logout-all', { onRequest: signedIn }, async (request, reply) => {
    const ended = await accounts.logoutEverywhere(request.dashboard!.user.id);
    clearSessionCookie(reply);
    return { status: 'signed_out', sessions_ended: ended };
  });

  app.post('/auth/password/forgot', { onRequest: sameSite }, async (request, reply) => {
    await accounts.requestPasswordReset(parseWith(emailBody, request.body, 'body').email);
    return reply
      .status(202)
      .send({ status: 'reset_sent', message: 'If the address has an account, a reset link is on its way.' });
  });

  app.post('/auth/password/reset', { onRequest: sameSite }, async (request) => {
    const body = parseWith(resetBody, request.body, 'body');
    await accounts.resetPassword(body.token, body.password);
    return {
      status: 'password_reset',
      message: 'Sign in with your new password: every session was signed out.',
    };
  });

  app.post('/auth/reauthenticate', { onRequest: signedIn }, async (request) => {
    const body = parseWith(reauthBody, request.body, 'body');
    await accounts.reauthenticate(request.dashboard!, body.password, body.code, clientOf(request));
    return { status: 'reauthenticated', valid_for_seconds: 600 };
  });

  app.post('/auth/password', { onRequest: signedIn }, async (request) => {
    await accounts.changePassword(request.dashboard!, parseWith(passwordBody, request.body, 'body').password);
    return { status: 'password_changed' };
  });

  app.post('/auth/email', { onRequest: signedIn }, async (request, reply) => {
    await accounts.requestEmailChange(request.dashboard!, parseWith(emailBody, request.body, 'body').email);
    return reply.status(202).send({ status: 'confirmation_sent' });
  });

  app.post('/auth/email/confirm', { onRequest: sameSite }, async (request) => {
    const { token } = parseWith(tokenBody, request.body, 'body');
    return { status: 'email_changed', user: userObject(await accounts.confirmEmailChange(token)) };
  });

  app.post('/auth/mfa/setup', { onRequest: signedIn }, async (request) => {
    const enrolment = await accounts.startMfa(request.dashboard!);
    return { secret: enrolment.secret, otpauth_uri: enrolment.uri, qr_svg: enrolment.qrSvg };
  });

  app.post('/auth/mfa/enable', { onRequest: signedIn }, async (request) => {
    const { code } = parseWith(codeBody, request.body, 'body');
    return { status: 'mfa_enabled', recovery_codes: await accounts.enableMfa(request.dashboard!, code) };
  });

  app.post('/auth/mfa/disable', { onRequest: signedIn }, async (request) => {
    await accounts.disableMfa(request.dashboard!);
    return { status: 'mfa_disabled' };
  });

  app.post('/auth/mfa/recovery-codes', { onRequest: signedIn }, async (request) => {
    return { recovery_codes: await accounts.regenerateRecoveryCodes(request.dashboard!) };
  });

  app.get('/auth/mfa', { onRequest: signedIn }, async (request) => ({
    enabled: request.dashboard!.user.mfaEnabledAt !== null,
    recovery_codes_left: await accounts.recoveryCodesLeft(request.dashboard!.user.id),
  }));

  app.get('/auth/sessions', { onRequest: signedIn }, async (request) => {
    const current = request.dashboard!.session.id;
    const list = await accounts.sessionsOf(request.dashboard!.user.id);
    return {
      object: 'list' as const,
      data: list.map((s) => ({
        object: 'session' as const,
        id: s.id,
        current: s.id === current,
        created_at: unixSeconds(s.createdAt),
        last_seen_at: unixSeconds(s.lastSeenAt),
        expires_at: unixSeconds(s.expiresAt),
        ip: s.ip,
        user_agent: s.userAgent,
      })),
    };
  });

  app.delete('/auth/sessions/:session_id', { onRequest: signedIn }, async (request) => {
    const { session_id } = parseWith(sessionParams, request.params, 'query');
    await accounts.revokeSession(request.dashboard!.user.id, session_id);
    return { object: 'session.deleted' as const, id: session_id, deleted: true };
  });

  app.post('/auth/profile', { onRequest: signedIn }, async (request) => {
    const body = parseWith(profileBody, request.body, 'body');
    return userObject(
      await accounts.updateProfile(request.dashboard!.user.id, {
        name: body.name,
        intendedUse: body.intended_use,
      }),
    );
  });

  app.post('/auth/terms', { onRequest: signedIn }, async (request) =>
    userObject(await accounts.acceptTerms(request.dashboard!.user.id)),
  );
}
