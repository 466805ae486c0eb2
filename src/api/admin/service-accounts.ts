/**
 * `/v1/organization/projects/{project_id}/service_accounts`: create (returns the key once), list,
 * retrieve, update, delete, and `…/{id}/api_keys` to issue another key
 * (client.admin.organization.projects.serviceAccounts).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { expiresInSeconds, expiryFrom, pageQuery, pageRequest, parseWith } from '../http/parse.ts';
import { listObject, serviceAccountKeyObject, serviceAccountObject } from './objects.ts';

const createBody = z.strictObject({
  name: z.string(),
  create_service_account_only: z.boolean().nullish(),
  expires_in_seconds: expiresInSeconds.nullish(),
});
const updateBody = z.strictObject({
  name: z.string().optional(),
  role: z.enum(['member', 'owner']).optional(),
});
const createKeyBody = z.strictObject({
  name: z.string().optional(),
  scopes: z.array(z.string().max(100)).max(50).optional(),
  expires_in_seconds: expiresInSeconds.nullish(),
});
const projectParams = z.object({ project_id: z.string() });
const accountParams = z.object({ project_id: z.string(), service_account_id: z.string() });

export function serviceAccountsRoutes(app: FastifyInstance, { serviceAccounts }: Services): void {
  app.get('/projects/:project_id/service_accounts', async (request) => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    const query = parseWith(z.object(pageQuery), request.query, 'query');
    const page = await serviceAccounts.list(request.admin.organizationId, project_id, pageRequest(query));
    return listObject(page, page.items.map(serviceAccountObject));
  });

  app.post('/projects/:project_id/service_accounts', async (request) => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    const body = parseWith(createBody, request.body, 'body');
    const withoutKey = body.create_service_account_only === true;
    if (withoutKey && body.expires_in_seconds != null) {
      throw badRequest(
        'expires_in_seconds cannot be used with create_service_account_only.',
        'expires_in_seconds',
      );
    }
    const { serviceAccount, issued } = await serviceAccounts.create(
      request.admin.organizationId,
      project_id,
      {
        name: body.name,
        withoutKey,
        keyRestrictions: { expiresAt: expiryFrom(body) },
      },
      request.admin.actor,
    );
    return {
      ...serviceAccountObject(serviceAccount),
      api_key: issued ? serviceAccountKeyObject(issued.key, issued.secret) : null,
    };
  });

  app.get('/projects/:project_id/service_accounts/:service_account_id', async (request) => {
    const { project_id, service_account_id } = parseWith(accountParams, request.params, 'query');
    return serviceAccountObject(
      await serviceAccounts.get(request.admin.organizationId, project_id, service_account_id),
    );
  });

  app.post('/projects/:project_id/service_accounts/:service_account_id', async (request) => {
    const { project_id, service_account_id } = parseWith(accountParams, request.params, 'query');
    const body = parseWith(updateBody, request.body, 'body');
    const serviceAccount = await serviceAccounts.update(
      request.admin.organizationId,
      project_id,
      service_account_id,
      body,
      request.admin.actor,
    );
    return serviceAccountObject(serviceAccount);
  });

  app.delete('/projects/:project_id/service_accounts/:service_account_id', async (request) => {
    const { project_id, service_account_id } = parseWith(accountParams, request.params, 'query');
    await serviceAccounts.delete(
      request.admin.organizationId,
      project_id,
      service_account_id,
      request.admin.actor,
    );
    return { object: 'organization.project.service_account.deleted', id: service_account_id, deleted: true };
  });

  app.post('/projects/:project_id/service_accounts/:service_account_id/api_keys', async (request) => {
    const { project_id, service_account_id } = parseWith(accountParams, request.params, 'query');
    const body = parseWith(createKeyBody, request.body, 'body');
    const { key, secret } = await serviceAccounts.createKey(
      request.admin.organizationId,
      project_id,
      service_account_id,
      {
        name: body.name ?? 'Secret key',
        scopes: body.scopes,
        expiresAt: expiryFrom(body),
      },
      request.admin.actor,
    );
    return serviceAccountKeyObject(key, secret);
  });
}
