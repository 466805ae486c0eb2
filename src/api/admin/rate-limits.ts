/**
 * Rate limits per model, in three scopes:
 * - `/v1/organization/projects/{project_id}/rate_limits`: list and update as in
 *   client.admin.organization.projects.rateLimits (object `project.rate_limit`);
 * - Keyport extensions in the same shapes: `DELETE …/rate_limits/{id}` (back to no limit), the
 *   organization's `/v1/organization/rate_limits` (`organization.rate_limit`) and a key's
 *   `/v1/organization/projects/{project_id}/api_keys/{key_id}/rate_limits` (`project.api_key.rate_limit`).
 *
 * A limit's id is its model's name after `rl-` (`rl-gpt-4o`, `rl-meta-llama/Llama-3` — the SDK sends
 * the `/` encoded); `rl-*` is every model of the scope together. OpenAI's fields are numbers, so no
 * limit reads as 0 and 0 sent removes a limit.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApiError, badRequest } from '../../core/errors.ts';
import { isModelName, type RateLimitPatch } from '../../limits/limits-service.ts';
import type { Services } from '../../services.ts';
import type { ScopeRef } from '../../store/repositories/limits.ts';
import { parseWith } from '../http/parse.ts';
import {
  listObject,
  pageOfList,
  RATE_LIMIT_ID_PREFIX,
  type RateLimitObjectType,
  rateLimitObject,
} from './objects.ts';

/** Long enough for `rl-` and a 200-character model name. */
const cursor = z.string().min(1).max(256).optional();
const listQuery = z.object({
  after: cursor,
  before: cursor,
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

/** A whole number from 0 (no limit); null is accepted as "no limit" too. Upper bounds are the service's. */
const limit = z.number().int().min(0).nullable().optional();
const updateBody = z.strictObject({
  max_requests_per_1_minute: limit,
  max_tokens_per_1_minute: limit,
  max_requests_per_1_day: limit,
  max_tokens_per_1_day: limit,
  max_concurrent_requests: limit,
});
const FIELDS = {
  max_requests_per_1_minute: 'maxRequestsPerMinute',
  max_tokens_per_1_minute: 'maxTokensPerMinute',
  max_requests_per_1_day: 'maxRequestsPerDay',
  max_tokens_per_1_day: 'maxTokensPerDay',
  max_concurrent_requests: 'maxConcurrentRequests',
} as const satisfies Record<keyof z.infer<typeof updateBody>, keyof RateLimitPatch>;

/** OpenAI fields for limits Keyport has no counter for: refused, so nobody believes they are enforced. */
const UNENFORCED = [
  'batch_1_day_max_input_tokens',
  'max_audio_megabytes_per_1_minute',
  'max_images_per_1_minute',
] as const;

const scopeParams = z.object({
  project_id: z.string().optional(),
  api_key_id: z.string().optional(),
  rate_limit_id: z.string().optional(),
});

interface Scope {
  path: string;
  object: RateLimitObjectType;
}

const SCOPES: Scope[] = [
  { path: '', object: 'organization.rate_limit' },
  { path: '/projects/:project_id', object: 'project.rate_limit' },
  { path: '/projects/:project_id/api_keys/:api_key_id', object: 'project.api_key.rate_limit' },
];

export function rateLimitsRoutes(app: FastifyInstance, { limits, upstreams }: Services): void {
  /** The scope the path names; another organization's project or key is a 404. */
  const scopeOf = (request: FastifyRequest): Promise<ScopeRef> => {
    const params = parseWith(scopeParams, request.params, 'query');
    return limits.resolveScope(request.admin.organizationId, {
      projectId: params.project_id,
      apiKeyId: params.api_key_id,
    });
  };

  for (const { path, object } of SCOPES) {
    app.get(`${path}/rate_limits`, async (request) => {
      const query = parseWith(listQuery, request.query, 'query');
      const scope = await scopeOf(request);
      const models = (await upstreams.listModels()).map((model) => model.id);
      const settings = await limits.listRateLimits(request.admin.organizationId, scope, models);
      const page = pageOfList(
        settings.map((setting) => rateLimitObject(object, setting)),
        query,
      );
      return listObject(page, page.items);
    });

    app.post(`${path}/rate_limits/:rate_limit_id`, async (request) => {
      const body = parseUpdate(request.body);
      const model = modelOf(request);
      const scope = await scopeOf(request);
      const { organizationId, actor } = request.admin;
      const setting = await limits.updateRateLimit(organizationId, scope, model, body, actor);
      return rateLimitObject(object, setting);
    });

    app.delete(`${path}/rate_limits/:rate_limit_id`, async (request) => {
      const model = modelOf(request);
      const scope = await scopeOf(request);
      const { organizationId, actor } = request.admin;
      await limits.deleteRateLimit(organizationId, scope, model, actor);
      return rateLimitObject(object, await limits.getRateLimit(organizationId, scope, model));
    });
  }
}

/** `rl-<model>` → the model; anything else names no rate limit (404). */
function modelOf(request: FastifyRequest): string {
  const id = parseWith(scopeParams, request.params, 'query').rate_limit_id ?? '';
  const model = id.startsWith(RATE_LIMIT_ID_PREFIX) ? id.slice(RATE_LIMIT_ID_PREFIX.length) : '';
  if (!isModelName(model)) {
    throw new ApiError(
      'not_found',
      `No rate limit found with id '${id}': rate limit ids are rl- followed by a model name, or rl-* for all models.`,
    );
  }
  return model;
}

function parseUpdate(raw: unknown): RateLimitPatch {
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const unenforced = UNENFORCED.find((field) => field in raw);
    if (unenforced) {
      throw badRequest(
        `Keyport does not enforce ${unenforced}: remove it from the request. Keyport limits requests and ` +
          'tokens per minute and per day, and concurrent requests.',
        unenforced,
      );
    }
  }
  const body = parseWith(updateBody, raw, 'body');
  const patch: RateLimitPatch = {};
  for (const [field, key] of Object.entries(FIELDS) as [keyof typeof FIELDS, keyof RateLimitPatch][]) {
    if (body[field] !== undefined) patch[key] = body[field];
  }
  if (Object.keys(patch).length === 0) {
    throw badRequest(`Provide at least one of ${Object.keys(FIELDS).join(', ')} (0 = no limit).`);
  }
  return patch;
}
