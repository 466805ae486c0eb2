/**
 * `/v1/organization/projects/{project_id}/api_keys`: list, retrieve, update, delete as in
 * client.admin.organization.projects.apiKeys; create and rotate are Keyport extensions in the
 * same style (OpenAI offers no endpoint to create a user's project key or to rotate one).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import {
  expiresAtSeconds,
  expiresInSeconds,
  expiryFrom,
  pageQuery,
  pageRequest,
  parseWith,
  unixSeconds,
} from '../http/parse.ts';
import { listObject, projectKeyObject } from './objects.ts';

const listQuery = z.object({
  ...pageQuery,
  owner_project_access: z.enum(['active', 'inactive', 'any']).optional(),
});
const restrictions = {
  scopes: z.array(z.string().max(100)).max(50).optional(),
  allowed_models: z.array(z.string()).max(100).optional(),
  allowed_ips: z.array(z.string()).max(100).optional(),
  expires_in_seconds: expiresInSeconds.optional(),
  expires_at: expiresAtSeconds.optional(),
  enabled: z.boolean().optional(),
};
const createBody = z.strictObject({
  name: z.string(),
  owner_user_id: z.string().optional(),
  ...restrictions,
});
const updateBody = z.strictObject({ name: z.string().optional(), ...restrictions });
const rotateBody = z.strictObject({ grace_period_seconds: z.number().int().optional() });
const projectParams = z.object({ project_id: z.string() });
const keyParams = z.object({ project_id: z.string(), api_key_id: z.string() });

export function projectApiKeysRoutes(app: FastifyInstance, { keys, projects }: Services): void {
  app.get('/projects/:project_id/api_keys', async (request) => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    const query = parseWith(listQuery, request.query, 'query');
    const { organizationId } = request.admin;
    await projects.get(organizationId, project_id);
    const page = await keys.list(
      { organizationId, projectId: project_id },
      { ...pageRequest(query), ownerAccess: query.owner_project_access },
    );
    return listObject(page, page.items.map(projectKeyObject));
  });

  app.post('/projects/:project_id/api_keys', async (request) => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    const body = parseWith(createBody, request.body, 'body');
    const { organizationId, ownerUserId, actor } = request.admin;
    const owner = body.owner_user_id ?? ownerUserId;
    if (!owner) throw badRequest('owner_user_id is required: this admin key has no owner.', 'owner_user_id');
    if (body.enabled === false)
      throw badRequest('A new key is always enabled; disable it with an update.', 'enabled');
    const { key, secret } = await keys.create(
      {
        organizationId,
        projectId: project_id,
        kind: 'proj',
        name: body.name,
        ownerUserId: owner,
        scopes: body.scopes,
        allowedModels: body.allowed_models,
        allowedIps: body.allowed_ips,
        expiresAt: expiryFrom(body),
      },
      actor,
    );
    return { ...projectKeyObject(key), value: secret };
  });

  app.get('/projects/:project_id/api_keys/:api_key_id', async (request) => {
    const { project_id, api_key_id } = parseWith(keyParams, request.params, 'query');
    return projectKeyObject(
      await keys.get({ organizationId: request.admin.organizationId, projectId: project_id }, api_key_id),
    );
  });

  app.post('/projects/:project_id/api_keys/:api_key_id', async (request) => {
    const { project_id, api_key_id } = parseWith(keyParams, request.params, 'query');
    const body = parseWith(updateBody, request.body, 'body');
    if (Object.keys(body).length === 0) {
      throw badRequest(
        'Provide at least one of scopes, expires_in_seconds, expires_at, name, allowed_models, allowed_ips or enabled.',
      );
    }
    const key = await keys.update(
      { organizationId: request.admin.organizationId, projectId: project_id },
      api_key_id,
      {
        name: body.name,
        enabled: body.enabled,
        scopes: body.scopes,
        allowedModels: body.allowed_models,
        allowedIps: body.allowed_ips,
        expiresAt: expiryFrom(body),
      },
      request.admin.actor,
    );
    return projectKeyObject(key);
  });

  app.post('/projects/:project_id/api_keys/:api_key_id/rotate', async (request) => {
    const { project_id, api_key_id } = parseWith(keyParams, request.params, 'query');
    const body = parseWith(rotateBody, request.body, 'body');
    const grace = body.grace_period_seconds ?? 0;
    const { key, secret, previousSecretExpiresAt } = await keys.rotate(
      { organizationId: request.admin.organizationId, projectId: project_id },
      api_key_id,
      grace,
      request.admin.actor,
    );
    return {
      ...projectKeyObject(key),
      value: secret,
      previous_secret_expires_at: unixSeconds(previousSecretExpiresAt),
    };
  });

  app.delete('/projects/:project_id/api_keys/:api_key_id', async (request) => {
    const { project_id, api_key_id } = parseWith(keyParams, request.params, 'query');
    await keys.revoke(
      { organizationId: request.admin.organizationId, projectId: project_id },
      api_key_id,
      request.admin.actor,
    );
    return { object: 'organization.project.api_key.deleted', id: api_key_id, deleted: true };
  });
}
