/** Admin API authentication: an admin key (`kp_admin_…`) of the organization, in the Authorization header. */
import type { FastifyRequest } from 'fastify';
import type { Actor } from '../../core/actor.ts';
import { ApiError } from '../../core/errors.ts';
import { redactKey } from '../../core/key-format.ts';
import type { KeyVerifier } from '../../keys/verify-key.ts';
import { bearerToken, denialToError } from '../http/denials.ts';
import { userAgentOf } from '../http/parse.ts';

export interface AdminPrincipal {
  organizationId: string;
  /** The admin key's id: recorded as the actor of what it changes. */
  keyId: string;
  ownerUserId: string | null;
  /** Who is acting, for the audit log. */
  actor: Actor;
}

declare module 'fastify' {
  interface FastifyRequest {
    admin: AdminPrincipal;
  }
}

export function authenticateAdmin(verifier: KeyVerifier) {
  return async (request: FastifyRequest): Promise<void> => {
    const secret = bearerToken(request.headers.authorization);
    const result = await verifier.verify(secret, { ip: request.ip });
    if (!result.valid) throw denialToError(result.code, result.redactedValue);
    if (result.key.kind !== 'admin') {
      throw new ApiError(
        'missing_scope',
        `You have insufficient permissions for this operation. Missing scopes: api.management.read. ` +
          `The Admin API requires an admin key; ${redactKey(secret)} is a ${result.key.kind === 'svc' ? 'service account' : 'project'} key.`,
      );
    }
    request.admin = {
      organizationId: result.organization.id,
      keyId: result.key.id,
      ownerUserId: result.key.ownerUserId,
      actor: {
        type: 'api_key',
        keyId: result.key.id,
        keyKind: 'admin',
        userId: result.key.ownerUserId,
        serviceAccountId: null,
        ip: request.ip ?? null,
        userAgent: userAgentOf(request),
        organizationId: result.organization.id,
      },
    };
  };
}
