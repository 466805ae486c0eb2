/**
 * Dashboard sessions over HTTP: the `__Host-keyport_session` cookie (HttpOnly, Secure, SameSite=Lax,
 * Path=/, no Domain — `__Host-` makes browsers insist on all of that), and CSRF protection on
 * every state-changing request: the request must not come from another site (Origin and
 * Sec-Fetch-Site, when the browser sends them) and must carry the session's CSRF token in
 * `x-csrf-token` (an HMAC of the session token, handed out by GET /api/auth/session).
 */
import '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ActiveSession } from '../../accounts/account-service.ts';
import type { Actor } from '../../core/actor.ts';
import { ApiError } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { userAgentOf } from '../http/parse.ts';

export const SESSION_COOKIE = '__Host-keyport_session';

declare module 'fastify' {
  interface FastifyRequest {
    /** The signed-in session, set by `requireSession`. */
    dashboard: (ActiveSession & { token: string; actor: Actor }) | null;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function sessionCookie(reply: FastifyReply, token: string, days: number): void {
  reply.setCookie(SESSION_COOKIE, token, {
    path: '/',
    httpOnly: true,
    secure: true,
    sameSite: 'lax',
    maxAge: days * 86_400,
  });
}

export function clearSessionCookie(reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, secure: true, sameSite: 'lax' });
}

export function sessionToken(request: FastifyRequest): string | undefined {
  return request.cookies?.[SESSION_COOKIE];
}

/**
 * A state-changing request from a page of another site is refused, whether or not it has a
 * session: login CSRF (signing a victim into the attacker's account) is an attack too.
 */
export function checkSameOrigin(request: FastifyRequest, publicUrl: string): void {
  if (SAFE_METHODS.has(request.method)) return;
  const site = header(request, 'sec-fetch-site');
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new ApiError('csrf_failed', 'Cross-site request refused.');
  }
  const origin = header(request, 'origin');
  if (origin !== undefined && origin !== new URL(publicUrl).origin) {
    throw new ApiError('csrf_failed', `Request from another origin (${origin.slice(0, 100)}) refused.`);
  }
}

export function clientOf(request: FastifyRequest) {
  return { ip: request.ip ?? null, userAgent: userAgentOf(request) };
}

/** onRequest: a live session (its second factor done), and on writes the CSRF token. */
export function requireSession(services: Services, options: { allowMfaPending?: boolean } = {}) {
  return async (request: FastifyRequest): Promise<void> => {
    checkSameOrigin(request, services.publicUrl);
    const token = sessionToken(request);
    const active = await services.accounts.session(token, options);
    if (!active || !token) throw new ApiError('not_authenticated', 'Sign in first (POST /api/auth/login).');
    if (
      !SAFE_METHODS.has(request.method) &&
      !services.accounts.checkCsrf(token, header(request, 'x-csrf-token'))
    ) {
      throw new ApiError(
        'csrf_failed',
        'Missing or wrong x-csrf-token header (GET /api/auth/session gives it).',
      );
    }
    request.dashboard = {
      ...active,
      token,
      actor: {
        type: 'session',
        userId: active.user.id,
        email: active.user.email,
        sessionId: active.session.id,
        ...clientOf(request),
      },
    };
  };
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? undefined : text;
}
