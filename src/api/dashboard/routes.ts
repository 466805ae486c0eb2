/**
 * The dashboard's API (`/api/…`), authenticated by a session cookie, protected against CSRF:
 *
 *   /api/auth/…                                   sign-up, sign-in, MFA, password, sessions (auth-routes.ts)
 *   GET/POST /api/organizations                    the signed-in user's organizations; a new one
 *   POST /api/organizations/{id}/leave             leave (keys revoked or handed over)
 *   POST /api/invites/accept                       accept an invitation ({ token })
 *   /api/organizations/{id}/…                      every Admin API route, for members, by role (policy.ts)
 */
import cookie from '@fastify/cookie';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ApiError, badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { keysOnLeave, removeMemberBody } from '../admin/members.ts';
import { adminRoutes } from '../admin/routes.ts';
import { parseWith, unixSeconds } from '../http/parse.ts';
import { authRoutes } from './auth-routes.ts';
import { authorizeDashboard } from './policy.ts';
import { requireSession } from './session.ts';

const ORG_PREFIX = '/organizations/:organization_id';
const createBody = z.strictObject({ name: z.string().min(1).max(200) });
const tokenBody = z.strictObject({ token: z.string().min(10).max(200) });
const orgParams = z.object({ organization_id: z.string().min(1).max(128) });

export function registerDashboardApi(services: Services) {
  return async (app: FastifyInstance) => {
    // Only the dashboard has a session cookie: registered here, cookie parsing costs the gateway's
    // requests nothing (two hooks each when registered on the root).
    await app.register(cookie);
    app.decorateRequest('dashboard', null);
    app.decorateRequest('admin', null as never);
    authRoutes(app, services);

    app.register(async (scope) => {
      scope.addHook('onRequest', requireSession(services));

      scope.get('/organizations', async (request) => {
        const list = await services.accounts.organizationsOf(request.dashboard!.user.id);
        return {
          object: 'list' as const,
          data: list.map(({ organization, role }) => ({
            object: 'organization' as const,
            id: organization.id,
            name: organization.name,
            role,
            is_operator: organization.isOperator,
            created_at: unixSeconds(organization.createdAt),
          })),
        };
      });

      scope.post('/organizations', async (request) => {
        if (!request.dashboard!.user.emailVerifiedAt)
          throw new ApiError('email_not_verified', 'Verify your email address first.');
        const { name } = parseWith(createBody, request.body, 'body');
        const { organization, project } = await services.accounts.createOrganization(
          request.dashboard!.user.id,
          name,
          request.dashboard!.actor,
        );
        return {
          object: 'organization' as const,
          id: organization.id,
          name: organization.name,
          role: 'owner' as const,
          default_project_id: project.id,
          created_at: unixSeconds(organization.createdAt),
        };
      });

      scope.post(`${ORG_PREFIX}/leave`, async (request) => {
        const { organization_id } = parseWith(orgParams, request.params, 'query');
        const user = request.dashboard!.user;
        if (!(await services.memberships.roleOf(organization_id, user.id))) {
          throw new ApiError('not_found', `No organization found with id '${organization_id}'.`);
        }
        const options = request.body ? parseWith(removeMemberBody, request.body, 'body') : undefined;
        // Whoever leaves has seen their keys' secrets: those keys stop. Keeping one alive for
        // someone else is an owner's decision (removing the member with `keys: transfer`).
        if (options?.keys === 'transfer')
          throw badRequest(
            'Leaving revokes your keys. To keep them working for someone else, ask an owner to remove you with keys: transfer.',
            'keys',
          );
        await services.memberships.remove(
          organization_id,
          user.id,
          keysOnLeave(options),
          request.dashboard!.actor,
        );
        return { object: 'organization.user.deleted' as const, id: user.id, deleted: true };
      });

      scope.post('/invites/accept', async (request) => {
        const { token } = parseWith(tokenBody, request.body, 'body');
        const accepted = await services.memberships.acceptInvite(
          token,
          request.dashboard!.user,
          request.dashboard!.actor,
        );
        return { status: 'accepted', organization_id: accepted.organizationId, role: accepted.role };
      });

      // The Admin API, for members: the role the route needs is checked once the body is parsed.
      scope.register(
        async (org) => {
          org.addHook('preHandler', async (request) => {
            const route = (request.routeOptions.url ?? '').replace(
              /^\/api\/organizations\/:organization_id/,
              '',
            );
            await authorizeDashboard(request, services, route);
            const { organization_id } = request.params as { organization_id: string };
            const user = request.dashboard!.user;
            request.admin = {
              organizationId: organization_id,
              keyId: user.id,
              ownerUserId: user.id,
              actor:
                request.dashboard!.actor.type === 'session'
                  ? { ...request.dashboard!.actor, organizationId: organization_id }
                  : request.dashboard!.actor,
            };
          });
          adminRoutes(org, services);
        },
        { prefix: ORG_PREFIX },
      );
    });
  };
}
