/**
 * Members, as client.admin.organization.users, .invites and .projects.users see them:
 *
 *   GET/POST/DELETE /users[/{user_id}]                   organization.user (role owner | reader)
 *   GET/POST/DELETE /invites[/{invite_id}]               organization.invite (emailed link)
 *   GET/POST/DELETE /projects/{id}/users[/{user_id}]     organization.project.user (owner | member)
 *
 * Removing a member revokes their project keys, unless `keys: "transfer"` and `transfer_to` (a
 * Keyport extension: the body of the DELETE) hand them to another member.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { KeysOnLeave, Member, ProjectMember } from '../../accounts/membership-service.ts';
import { badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import type { InviteRow } from '../../store/schema.ts';
import { pageQuery, pageRequest, parseWith, unixSeconds, unixSecondsOrNull } from '../http/parse.ts';
import { listObject } from './objects.ts';

const listQuery = z.object({ ...pageQuery });
const usersQuery = z.object({ ...pageQuery, emails: z.union([z.string(), z.array(z.string())]).optional() });
const userParams = z.object({ user_id: z.string().min(1).max(128) });
const inviteParams = z.object({ invite_id: z.string().min(1).max(128) });
const projectParams = z.object({ project_id: z.string().min(1).max(128) });
const projectUserParams = z.object({
  project_id: z.string().min(1).max(128),
  user_id: z.string().min(1).max(128),
});
const orgRole = z.enum(['owner', 'reader']);
const projectRole = z.enum(['owner', 'member']);

const updateUserBody = z.strictObject({
  role: orgRole,
  developer_persona: z.string().nullable().optional(),
  technical_level: z.string().nullable().optional(),
});
const removeFields = z.strictObject({
  keys: z.enum(['revoke', 'transfer']).default('revoke'),
  transfer_to: z.string().max(128).optional(),
});
const inviteBody = z.strictObject({
  email: z.string().min(3).max(320),
  role: orgRole,
  projects: z
    .array(z.strictObject({ id: z.string().min(1).max(128), role: projectRole }))
    .max(100)
    .optional(),
});
const addProjectUserBody = z.strictObject({
  role: projectRole,
  user_id: z.string().max(128).nullable().optional(),
  email: z.string().max(320).nullable().optional(),
});
const updateProjectUserBody = z.strictObject({ role: projectRole });

export function userObject(member: Member) {
  return {
    object: 'organization.user' as const,
    id: member.user.id,
    name: member.user.name,
    email: member.user.email,
    role: member.role,
    added_at: unixSeconds(member.addedAt),
  };
}

function projectUserObject(member: ProjectMember) {
  return {
    object: 'organization.project.user' as const,
    id: member.user.id,
    name: member.user.name,
    email: member.user.email,
    role: member.role,
    added_at: unixSeconds(member.addedAt),
  };
}

export function keysOnLeave(body: z.infer<typeof removeFields> | undefined): KeysOnLeave {
  if (body?.keys === 'transfer') {
    if (!body.transfer_to)
      throw badRequest("Say who gets the keys: 'transfer_to' (a member's user id).", 'transfer_to');
    return { action: 'transfer', toUserId: body.transfer_to };
  }
  return { action: 'revoke' };
}

export const removeMemberBody = removeFields;

export function membersRoutes(app: FastifyInstance, { memberships, projects }: Services): void {
  const inviteObject = (invite: InviteRow) => ({
    object: 'organization.invite' as const,
    id: invite.id,
    email: invite.email,
    role: invite.role,
    status: memberships.inviteStatus(invite),
    created_at: unixSeconds(invite.createdAt),
    /** OpenAI's older name for created_at. */
    invited_at: unixSeconds(invite.createdAt),
    expires_at: unixSeconds(invite.expiresAt),
    accepted_at: unixSecondsOrNull(invite.acceptedAt),
    projects: invite.projects as { id: string; role: string }[],
  });
  const body = (request: FastifyRequest) =>
    request.body === undefined || request.body === null ? undefined : request.body;

  app.get('/users', async (request) => {
    const query = parseWith(usersQuery, request.query, 'query');
    const raw = request.query as Record<string, unknown>;
    const emails = [query.emails, raw['emails[]']].flat().filter((e): e is string => typeof e === 'string');
    const page = await memberships.members(request.admin.organizationId, {
      ...pageRequest(query),
      emails: emails.length > 0 ? emails : undefined,
    });
    return listObject(page, page.items.map(userObject));
  });

  app.get('/users/:user_id', async (request) => {
    const { user_id } = parseWith(userParams, request.params, 'query');
    return userObject(await memberships.member(request.admin.organizationId, user_id));
  });

  app.post('/users/:user_id', async (request) => {
    const { user_id } = parseWith(userParams, request.params, 'query');
    const { role } = parseWith(updateUserBody, request.body, 'body');
    return userObject(
      await memberships.setRole(request.admin.organizationId, user_id, role, request.admin.actor),
    );
  });

  app.delete('/users/:user_id', async (request) => {
    const { user_id } = parseWith(userParams, request.params, 'query');
    const options = body(request) === undefined ? undefined : parseWith(removeFields, request.body, 'body');
    await memberships.remove(
      request.admin.organizationId,
      user_id,
      keysOnLeave(options),
      request.admin.actor,
    );
    return { object: 'organization.user.deleted' as const, id: user_id, deleted: true };
  });

  app.get('/invites', async (request) => {
    const page = await memberships.invites(
      request.admin.organizationId,
      pageRequest(parseWith(listQuery, request.query, 'query')),
    );
    return listObject(page, page.items.map(inviteObject));
  });

  app.post('/invites', async (request) => {
    const input = parseWith(inviteBody, request.body, 'body');
    return inviteObject(await memberships.invite(request.admin.organizationId, input, request.admin.actor));
  });

  app.get('/invites/:invite_id', async (request) => {
    const { invite_id } = parseWith(inviteParams, request.params, 'query');
    return inviteObject(await memberships.getInvite(request.admin.organizationId, invite_id));
  });

  app.delete('/invites/:invite_id', async (request) => {
    const { invite_id } = parseWith(inviteParams, request.params, 'query');
    await memberships.deleteInvite(request.admin.organizationId, invite_id, request.admin.actor);
    return { object: 'organization.invite.deleted' as const, id: invite_id, deleted: true };
  });

  app.get('/projects/:project_id/users', async (request) => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    await projects.get(request.admin.organizationId, project_id);
    const page = await memberships.projectMembers(
      project_id,
      pageRequest(parseWith(listQuery, request.query, 'query')),
    );
    return listObject(page, page.items.map(projectUserObject));
  });

  app.post('/projects/:project_id/users', async (request) => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    const input = parseWith(addProjectUserBody, request.body, 'body');
    const { organizationId } = request.admin;
    await projects.get(organizationId, project_id);
    let userId = input.user_id ?? undefined;
    if (!userId && input.email) {
      const found = await memberships.members(organizationId, {
        limit: 1,
        order: 'asc',
        emails: [input.email],
      });
      userId = found.items[0]?.user.id;
      if (!userId)
        throw badRequest(
          `No member of this organization has the address ${input.email}: invite them first.`,
          'email',
        );
    }
    if (!userId) throw badRequest("Give the member: 'user_id' (or 'email').", 'user_id');
    return projectUserObject(
      await memberships.setProjectRole(organizationId, project_id, userId, input.role, request.admin.actor),
    );
  });

  app.get('/projects/:project_id/users/:user_id', async (request) => {
    const { project_id, user_id } = parseWith(projectUserParams, request.params, 'query');
    await projects.get(request.admin.organizationId, project_id);
    return projectUserObject(await memberships.projectMember(project_id, user_id));
  });

  app.post('/projects/:project_id/users/:user_id', async (request) => {
    const { project_id, user_id } = parseWith(projectUserParams, request.params, 'query');
    const { role } = parseWith(updateProjectUserBody, request.body, 'body');
    const { organizationId } = request.admin;
    await projects.get(organizationId, project_id);
    await memberships.projectMember(project_id, user_id); // 404 for someone not in the project
    return projectUserObject(
      await memberships.setProjectRole(organizationId, project_id, user_id, role, request.admin.actor),
    );
  });

  app.delete('/projects/:project_id/users/:user_id', async (request) => {
    const { project_id, user_id } = parseWith(projectUserParams, request.params, 'query');
    const { organizationId } = request.admin;
    await projects.get(organizationId, project_id);
    await memberships.removeFromProject(organizationId, project_id, user_id, request.admin.actor);
    return { object: 'organization.project.user.deleted' as const, id: user_id, deleted: true };
  });
}
