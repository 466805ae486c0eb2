/**
 * OpenAI's spend alerts: an email when the month's cost of the organization
 * (`/v1/organization/spend_alerts`, client.admin.organization.spendAlerts) or of a project
 * (`/v1/organization/projects/{project_id}/spend_alerts`, ….projects.spendAlerts) reaches an
 * amount. Create, list (`after`, `before`, `limit`, `order`), retrieve, replace, delete.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import type { ScopeRef } from '../../store/repositories/limits.ts';
import { pageQuery, parseWith } from '../http/parse.ts';
import { listObject, pageOfKeyset, spendAlertObject } from './objects.ts';

/** OpenAI's only currency and interval; anything else is refused rather than misread. */
export function usdMonthly<T extends { currency: string; interval: string }>(body: T): T {
  if (body.currency !== 'USD') {
    throw badRequest(
      `Invalid 'currency': ${JSON.stringify(body.currency)}; only USD is supported.`,
      'currency',
    );
  }
  if (body.interval !== 'month') {
    throw badRequest(
      `Invalid 'interval': ${JSON.stringify(body.interval)}; only month is supported.`,
      'interval',
    );
  }
  return body;
}

/** Create and update take the same, whole alert (the SDK's types require every field). */
const alertBody = z.strictObject({
  currency: z.string(),
  interval: z.string(),
  /** Cents. */
  threshold_amount: z.number().int().min(0),
  notification_channel: z.strictObject({
    type: z.literal('email'),
    recipients: z.array(z.string()).min(1).max(50),
    subject_prefix: z.string().max(200).nullish(),
  }),
});
const listQuery = z.object({ ...pageQuery, before: pageQuery.after });
const params = z.object({ project_id: z.string().optional(), alert_id: z.string().optional() });

interface Scope {
  path: string;
  object: 'organization.spend_alert' | 'project.spend_alert';
}

const SCOPES: Scope[] = [
  { path: '/spend_alerts', object: 'organization.spend_alert' },
  { path: '/projects/:project_id/spend_alerts', object: 'project.spend_alert' },
];

export function spendAlertsRoutes(app: FastifyInstance, { limits }: Services): void {
  const target = async (request: FastifyRequest): Promise<{ scope: ScopeRef; alertId: string }> => {
    const { project_id, alert_id } = parseWith(params, request.params, 'query');
    const scope = await limits.resolveScope(request.admin.organizationId, { projectId: project_id });
    return { scope, alertId: alert_id ?? '' };
  };
  const values = (raw: unknown) => {
    const body = usdMonthly(parseWith(alertBody, raw, 'body'));
    return {
      thresholdAmount: body.threshold_amount,
      recipients: body.notification_channel.recipients,
      subjectPrefix: body.notification_channel.subject_prefix ?? null,
    };
  };

  for (const { path, object } of SCOPES) {
    app.post(path, async (request) => {
      const input = values(request.body);
      const { scope } = await target(request);
      return spendAlertObject(
        object,
        await limits.createSpendAlert(request.admin.organizationId, scope, input, request.admin.actor),
      );
    });

    app.get(path, async (request) => {
      const query = parseWith(listQuery, request.query, 'query');
      const { scope } = await target(request);
      const { organizationId } = request.admin;
      const page = await pageOfKeyset((p) => limits.listSpendAlerts(organizationId, scope, p), query);
      return listObject(
        page,
        page.items.map((alert) => spendAlertObject(object, alert)),
      );
    });

    app.get(`${path}/:alert_id`, async (request) => {
      const { scope, alertId } = await target(request);
      return spendAlertObject(
        object,
        await limits.getSpendAlert(request.admin.organizationId, scope, alertId),
      );
    });

    app.post(`${path}/:alert_id`, async (request) => {
      const input = values(request.body);
      const { scope, alertId } = await target(request);
      const { organizationId, actor } = request.admin;
      const alert = await limits.updateSpendAlert(organizationId, scope, alertId, input, actor);
      return spendAlertObject(object, alert);
    });

    app.delete(`${path}/:alert_id`, async (request) => {
      const { scope, alertId } = await target(request);
      await limits.deleteSpendAlert(request.admin.organizationId, scope, alertId, request.admin.actor);
      return { object: `${object}.deleted` as const, id: alertId, deleted: true };
    });
  }
}
