/** `/v1/organization/admin_api_keys`: list, create, retrieve, delete (client.admin.organization.adminAPIKeys). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.ts';
import { expiresInSeconds, expiryFrom, pageQuery, pageRequest, parseWith } from '../http/parse.ts';
import { adminKeyObject, listObject } from './objects.ts';

const listQuery = z.object(pageQuery);
const createBody = z.strictObject({ name: z.string(), expires_in_seconds: expiresInSeconds.nullish() });
const idParams = z.object({ key_id: z.string() });

export function adminApiKeysRoutes(app: FastifyInstance, { keys }: Services): void {
  const scope = (organizationId: string) => ({ organizationId, projectId: null });

  app.get('/admin_api_keys', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const page = await keys.list(scope(request.admin.organizationId), pageRequest(query));
    return listObject(page, page.items.map(adminKeyObject));
  });

  app.post('/admin_api_keys', async (request) => {
    const body = parseWith(createBody, request.body, 'body');
    const { key, secret } = await keys.create(
      {
        organizationId: request.admin.organizationId,
        kind: 'admin',
        name: body.name,
        ownerUserId: request.admin.ownerUserId,
        expiresAt: expiryFrom(body),
      },
      request.admin.actor,
    );
    return { ...adminKeyObject(key), value: secret };
  });

  app.get('/admin_api_keys/:key_id', async (request) => {
    const { key_id } = parseWith(idParams, request.params, 'query');
    return adminKeyObject(await keys.get(scope(request.admin.organizationId), key_id));
  });

  app.delete('/admin_api_keys/:key_id', async (request) => {
    const { key_id } = parseWith(idParams, request.params, 'query');
    await keys.revoke(scope(request.admin.organizationId), key_id, request.admin.actor);
    return { object: 'organization.admin_api_key.deleted', id: key_id, deleted: true };
  });
}
