/**
 * Who may do what on the dashboard API, which serves the Admin API's routes under
 * `/api/organizations/{organization_id}` for a signed-in member:
 *
 *   any member of the organization (owner or reader)   reads everything in it
 *   an organization owner                                 changes anything
 *   a project owner                                       changes their project: its keys, service
 *                                                         accounts, rate limits, members, settings
 *                                                         (not its spend limit or spend alerts:
 *                                                         money is the organization owners' call)
 *   a project member                                      creates keys in the project, and renames,
 *                                                         rotates and revokes the keys they own (a
 *                                                         key's restrictions are its project owner's)
 *
 * except the audit log (who did what, from where), which only organization owners read, and a
 * request naming another organization (the operator's billing routes), which only owners make.
 * Anyone else gets 404 (the organization's existence is not theirs to learn); a member without
 * the role gets 403 naming what it takes.
 */
import { and, eq } from 'drizzle-orm';
import type { FastifyRequest } from 'fastify';
import type { OrganizationRole } from '../../accounts/membership-service.ts';
import { ApiError } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { apiKeys } from '../../store/schema.ts';

/** What a route needs, beyond membership of the organization. */
export type Need = 'read' | 'owner' | 'project-owner' | 'project-member' | 'key-owner';

const READ = new Set(['GET', 'HEAD']);

/** `route` is the Admin API route pattern (below /v1/organization). */
export function needOf(method: string, route: string): Need {
  // Who did what, from where, is for owners (as on OpenAI).
  if (route === '/audit_logs') return 'owner';
  if (READ.has(method)) return 'read';
  if (route === '/projects/:project_id/archive') return 'owner';
  if (/^\/projects\/:project_id\/spend_(limit|alerts)/.test(route)) return 'owner';
  if (method === 'POST' && route === '/projects/:project_id/api_keys') return 'project-member';
  if (/^\/projects\/:project_id\/api_keys\/:api_key_id(\/rotate)?$/.test(route)) return 'key-owner';
  if (route.startsWith('/projects/:project_id')) return 'project-owner';
  return 'owner';
}

export interface DashboardAccess {
  role: OrganizationRole;
}

/** Throws 404 for a non-member, 403 for a member without the role the route needs. */
export async function authorizeDashboard(
  request: FastifyRequest,
  services: Services,
  route: string,
): Promise<DashboardAccess> {
  const { user } = request.dashboard!;
  const organizationId = (request.params as { organization_id?: string }).organization_id ?? '';
  const role = await services.memberships.roleOf(organizationId, user.id);
  if (!role) throw new ApiError('not_found', `No organization found with id '${organizationId}'.`);
  if (!user.emailVerifiedAt) throw new ApiError('email_not_verified', 'Verify your email address first.');
  // The operator's routes may name another organization (its billing, its credit): that is the
  // instance's business, for the operator organization's owners, not for everyone who can read it.
  const named =
    (request.query as { organization_id?: unknown } | undefined)?.organization_id ??
    (request.body as { organization_id?: unknown } | undefined)?.organization_id;
  if (named !== undefined && named !== organizationId && role !== 'owner')
    throw denied('an organization owner (to act for another organization)');
  const need = needOf(request.method, route);
  if (role === 'owner' || need === 'read') return { role };
  if (need === 'owner') throw denied('an organization owner');

  const projectId = (request.params as { project_id?: string }).project_id;
  const projectRole = projectId ? await services.memberships.projectRoleOf(projectId, user.id) : undefined;
  if (projectRole === 'owner') return { role };
  if (need === 'project-owner') throw denied('an owner of this project');
  if (!projectRole) throw denied('a member of this project');
  if (need === 'project-member') {
    const owner = (request.body as { owner_user_id?: unknown } | undefined)?.owner_user_id;
    if (owner !== undefined && owner !== user.id)
      throw denied('an owner of this project (to create a key for someone else)');
    return { role };
  }
  // key-owner: the key must be theirs, and they may only rename it (its scopes, allow-lists,
  // expiry and enabled state are what the project's owners set for it).
  if (request.method === 'POST' && !route.endsWith('/rotate')) {
    const fields = Object.keys((request.body as Record<string, unknown> | undefined) ?? {});
    if (fields.some((f) => f !== 'name'))
      throw denied('an owner of this project (to change more than its name)');
  }
  const keyId = (request.params as { api_key_id?: string }).api_key_id ?? '';
  const [key] = await services.store.db
    .select({ ownerUserId: apiKeys.ownerUserId })
    .from(apiKeys)
    .where(and(eq(apiKeys.id, keyId), eq(apiKeys.organizationId, organizationId)));
  if (key && key.ownerUserId === user.id) return { role };
  throw denied('the owner of this key, or an owner of this project');
}

function denied(who: string): ApiError {
  return new ApiError('permission_denied', `You do not have permission for this: it takes ${who}.`);
}
