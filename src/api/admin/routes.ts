/** The Admin API (`/v1/organization/…`): every route behind admin-key authentication. */
import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services.ts';
import { adminApiKeysRoutes } from './admin-api-keys.ts';
import { alertsRoutes } from './alerts.ts';
import { auditLogsRoutes } from './audit-logs.ts';
import { authenticateAdmin } from './authenticate.ts';
import { billingRoutes } from './billing.ts';
import { budgetsRoutes } from './budgets.ts';
import { membersRoutes } from './members.ts';
import { organizationSettingsRoutes } from './organization-settings.ts';
import { projectApiKeysRoutes } from './project-api-keys.ts';
import { projectsRoutes } from './projects.ts';
import { rateLimitsRoutes } from './rate-limits.ts';
import { serviceAccountsRoutes } from './service-accounts.ts';
import { spendAlertsRoutes } from './spend-alerts.ts';
import { spendLimitsRoutes } from './spend-limits.ts';
import { usageRoutes } from './usage.ts';

/** Authenticated with an admin key (`/v1/organization`). */
export function registerAdminApi(services: Services) {
  return async (app: FastifyInstance) => {
    app.decorateRequest('admin', null as never);
    app.addHook('onRequest', authenticateAdmin(services.verifier));
    adminRoutes(app, services);
  };
}

/** Every Admin API route; `request.admin` is set by whoever mounts them (an admin key, a dashboard session). */
export function adminRoutes(app: FastifyInstance, services: Services): void {
  adminApiKeysRoutes(app, services);
  projectsRoutes(app, services);
  projectApiKeysRoutes(app, services);
  serviceAccountsRoutes(app, services);
  alertsRoutes(app, services);
  rateLimitsRoutes(app, services);
  spendLimitsRoutes(app, services);
  spendAlertsRoutes(app, services);
  budgetsRoutes(app, services);
  usageRoutes(app, services);
  billingRoutes(app, services);
  membersRoutes(app, services);
  auditLogsRoutes(app, services);
  organizationSettingsRoutes(app, services);
}
