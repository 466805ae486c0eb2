/**
 * `/v1/organization/alerts` (a Keyport extension; OpenAI has no such endpoint): the alerts raised
 * for the organization (budgets now; leaks and anomalies later), newest first by default.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { notFound } from '../../core/errors.ts';
import { alertObject } from '../../notifications/alert.ts';
import type { Services } from '../../services.ts';
import { listAlerts, markAlertRead } from '../../store/repositories/alerts.ts';
import { pageQuery, pageRequest, parseWith, queryBoolean } from '../http/parse.ts';
import { listObject } from './objects.ts';

const listQuery = z.object({
  ...pageQuery,
  // An inbox reads newest first.
  order: z.enum(['asc', 'desc']).default('desc'),
  project_id: z.string().min(1).max(128).optional(),
  /** true: only unread alerts; false: only read ones; unset: both. */
  unread: queryBoolean.optional(),
});
const idParams = z.object({ alert_id: z.string() });

export function alertsRoutes(app: FastifyInstance, { store }: Services): void {
  app.get('/alerts', async (request) => {
    const query = parseWith(listQuery, request.query, 'query');
    const page = await listAlerts(store.db, request.admin.organizationId, {
      ...pageRequest(query),
      projectId: query.project_id,
      unread: query.unread,
    });
    return listObject(page, page.items.map(alertObject));
  });

  app.post('/alerts/:alert_id/read', async (request) => {
    const { alert_id } = parseWith(idParams, request.params, 'query');
    const alert = await markAlertRead(store.db, request.admin.organizationId, alert_id);
    if (!alert) throw notFound('alert', alert_id);
    return alertObject(alert);
  });
}
