/**
 * OpenAI's hard spend limits: `/v1/organization/spend_limit` (client.admin.organization.spendLimit)
 * and `/v1/organization/projects/{project_id}/spend_limit` (….projects.spendLimit). A spend limit is
 * the hard limit of the scope's monthly cost budget (see budgets.ts): setting one keeps that
 * budget's alert percentages and recipients; deleting it removes the hard limit and its percentages.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApiError } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import type { ScopeRef } from '../../store/repositories/limits.ts';
import { parseWith } from '../http/parse.ts';
import { spendLimitObject } from './objects.ts';
import { usdMonthly } from './spend-alerts.ts';

const updateBody = z.strictObject({
  currency: z.string(),
  interval: z.string(),
  /** Cents. 0 refuses every request: a kill switch. */
  threshold_amount: z.number().int().min(0),
});
const projectParams = z.object({ project_id: z.string().optional() });

interface Scope {
  path: string;
  object: 'organization.spend_limit' | 'project.spend_limit';
}

const SCOPES: Scope[] = [
  { path: '/spend_limit', object: 'organization.spend_limit' },
  { path: '/projects/:project_id/spend_limit', object: 'project.spend_limit' },
];

export function spendLimitsRoutes(app: FastifyInstance, { limits }: Services): void {
  const scopeOf = (request: FastifyRequest): Promise<ScopeRef> => {
    const { project_id } = parseWith(projectParams, request.params, 'query');
    return limits.resolveScope(request.admin.organizationId, { projectId: project_id });
  };

  for (const { path, object } of SCOPES) {
    app.get(path, async (request) => {
      const { organizationId } = request.admin;
      const scope = await scopeOf(request);
      const budget = await limits.getSpendLimit(organizationId, scope);
      if (!budget) {
        throw new ApiError(
          'not_found',
          `No spend limit is set for ${scope.type === 'project' ? `project '${scope.id}'` : 'this organization'}. ` +
            `Set one with POST /v1/organization${scope.type === 'project' ? `/projects/${scope.id}` : ''}/spend_limit.`,
        );
      }
      return spendLimitObject(object, budget, await limits.currentSpend(organizationId, budget));
    });

    app.post(path, async (request) => {
      const body = usdMonthly(parseWith(updateBody, request.body, 'body'));
      const { organizationId, actor } = request.admin;
      const scope = await scopeOf(request);
      const budget = await limits.setSpendLimit(organizationId, scope, body.threshold_amount, actor);
      return spendLimitObject(object, budget, await limits.currentSpend(organizationId, budget));
    });

    app.delete(path, async (request) => {
      const scope = await scopeOf(request);
      const deleted = await limits.deleteSpendLimit(request.admin.organizationId, scope, request.admin.actor);
      return { object: `${object}.deleted` as const, deleted };
    });
  }
}
