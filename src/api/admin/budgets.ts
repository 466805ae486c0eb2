/**
 * `/v1/organization/budgets` (a Keyport extension; OpenAI offers only the monthly spend limit):
 * money (`cost`, cents) or `tokens` per `day` or `month` for the organization, a project or one of
 * its keys, with a hard limit (requests refused once reached) and alert percentages of it.
 * One budget per scope, metric and period: POST creates or replaces it. OpenAI's spend limit of a
 * scope is the hard limit of its monthly cost budget, so the two views show the same row.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { periodBounds } from '../../core/periods.ts';
import type { Services } from '../../services.ts';
import type { BudgetRow } from '../../store/schema.ts';
import { pageQuery, parseWith } from '../http/parse.ts';
import { budgetObject, listObject, pageOfKeyset } from './objects.ts';

const scopeFields = {
  project_id: z.string().min(1).max(128).optional(),
  /** Needs `project_id`: keys are addressed within their project. */
  api_key_id: z.string().min(1).max(128).optional(),
};
const listQuery = z.object({ ...pageQuery, before: pageQuery.after, ...scopeFields });
const createBody = z.strictObject({
  ...scopeFields,
  metric: z.enum(['cost', 'tokens']),
  period: z.enum(['day', 'month']),
  /** Cents for cost, tokens for tokens; null: no hard limit. Required, so omitting it never lifts one. */
  hard_limit: z.number().int().min(0).nullable(),
  soft_limit_percents: z.array(z.number().int().min(1).max(100)).max(20).default([]),
  notify_emails: z.array(z.string()).max(50).default([]),
});
const idParams = z.object({ budget_id: z.string() });

export function budgetsRoutes(app: FastifyInstance, { limits, config }: Services): void {
  /** The objects of some budgets: their key's project, this period's spend and bounds. */
  const budgetObjects = async (organizationId: string, budgets: BudgetRow[]) => {
    const keyIds = budgets.filter((b) => b.scopeType === 'api_key').map((b) => b.scopeId);
    const keyProjects = await limits.projectsOfKeys(organizationId, keyIds);
    const now = Date.now();
    return Promise.all(
      budgets.map(async (budget) =>
        budgetObject(budget, {
          projectId:
            budget.scopeType === 'project'
              ? budget.scopeId
              : budget.scopeType === 'api_key'
                ? (keyProjects.get(budget.scopeId) ?? null)
                : null,
          spent: await limits.currentSpend(organizationId, budget),
          bounds: periodBounds(budget.period, now, config.billingTimeZone),
        }),
      ),
    );
  };
  const budgetObjectOf = async (organizationId: string, budget: BudgetRow) =>
    (await budgetObjects(organizationId, [budget]))[0]!;

  app.get('/budgets', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const { organizationId } = request.admin;
    const scope =
      query.project_id || query.api_key_id
        ? await limits.resolveScope(organizationId, {
            projectId: query.project_id,
            apiKeyId: query.api_key_id,
          })
        : undefined;
    const page = await pageOfKeyset(
      (p) => limits.listBudgets(organizationId, scope ? { scope } : {}, p),
      query,
    );
    return listObject(page, await budgetObjects(organizationId, page.items));
  });

  app.post('/budgets', async (request) => {
    const body = parseWith(createBody, request.body, 'body');
    const { organizationId } = request.admin;
    const scope = await limits.resolveScope(organizationId, {
      projectId: body.project_id,
      apiKeyId: body.api_key_id,
    });
    const budget = await limits.setBudget(
      organizationId,
      {
        scope,
        metric: body.metric,
        period: body.period,
        hardLimit: body.hard_limit,
        softLimitPercents: body.soft_limit_percents,
        notifyEmails: body.notify_emails,
      },
      request.admin.actor,
    );
    return budgetObjectOf(organizationId, budget);
  });

  app.get('/budgets/:budget_id', async (request) => {
    const { budget_id } = parseWith(idParams, request.params, 'query');
    const { organizationId } = request.admin;
    return budgetObjectOf(organizationId, await limits.getBudget(organizationId, budget_id));
  });

  app.delete('/budgets/:budget_id', async (request) => {
    const { budget_id } = parseWith(idParams, request.params, 'query');
    await limits.deleteBudget(request.admin.organizationId, budget_id, request.admin.actor);
    return { object: 'organization.budget.deleted' as const, id: budget_id, deleted: true };
  });
}
