/** `/v1/organization/projects`: list, create, retrieve, update, archive (client.admin.organization.projects). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.ts';
import { pageQuery, pageRequest, parseWith, queryBoolean } from '../http/parse.ts';
import { listObject, projectObject } from './objects.ts';

const listQuery = z.object({ ...pageQuery, include_archived: queryBoolean.default(false) });
const createBody = z.strictObject({
  name: z.string(),
  external_key_id: z.string().max(256).nullish(),
  // Accepted for SDK compatibility; Keyport serves one region, so only the global value is meaningful.
  geography: z.string().nullish(),
  residency: z.string().nullish(),
  allowed_ips: z.array(z.string()).max(100).optional(),
});
const updateBody = z.strictObject({
  name: z.string().nullish(),
  external_key_id: z.string().max(256).nullish(),
  geography: z.string().nullish(),
  allowed_ips: z.array(z.string()).max(100).optional(),
});
const idParams = z.object({ project_id: z.string() });

export function projectsRoutes(app: FastifyInstance, { projects }: Services): void {
  app.get('/projects', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const page = await projects.list(request.admin.organizationId, {
      ...pageRequest(query),
      includeArchived: query.include_archived,
    });
    return listObject(page, page.items.map(projectObject));
  });

  app.post('/projects', async (request) => {
    const body = parseWith(createBody, request.body, 'body');
    const project = await projects.create(
      request.admin.organizationId,
      {
        name: body.name,
        externalKeyId: body.external_key_id ?? null,
        allowedIps: body.allowed_ips,
      },
      request.admin.actor,
    );
    return projectObject(project);
  });

  app.get('/projects/:project_id', async (request) => {
    const { project_id } = parseWith(idParams, request.params, 'query');
    return projectObject(await projects.get(request.admin.organizationId, project_id));
  });

  app.post('/projects/:project_id', async (request) => {
    const { project_id } = parseWith(idParams, request.params, 'query');
    const body = parseWith(updateBody, request.body, 'body');
    const project = await projects.update(
      request.admin.organizationId,
      project_id,
      {
        name: body.name ?? undefined,
        externalKeyId: body.external_key_id,
        allowedIps: body.allowed_ips,
      },
      request.admin.actor,
    );
    return projectObject(project);
  });

  app.post('/projects/:project_id/archive', async (request) => {
    const { project_id } = parseWith(idParams, request.params, 'query');
    return projectObject(
      await projects.archive(request.admin.organizationId, project_id, request.admin.actor),
    );
  });
}
