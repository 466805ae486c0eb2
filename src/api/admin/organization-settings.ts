/**
 * `/v1/organization/settings` (a Keyport extension in OpenAI's style): the organization's name and
 * how long its audit log is kept (`audit_log_retention_days`; null follows the instance default,
 * `KEYPORT_AUDIT_RETENTION_DAYS`, where 0 keeps entries forever).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { OrganizationSettings } from '../../accounts/organization-service.ts';
import { badRequest } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { parseWith, unixSeconds } from '../http/parse.ts';

const updateBody = z.strictObject({
  name: z.string().optional(),
  audit_log_retention_days: z.number().int().nullable().optional(),
});

export function organizationSettingsRoutes(app: FastifyInstance, { organizations }: Services): void {
  app.get('/settings', async (request) =>
    settingsObject(await organizations.settings(request.admin.organizationId)),
  );

  app.post('/settings', async (request) => {
    const body = parseWith(updateBody, request.body, 'body');
    if (Object.keys(body).length === 0)
      throw badRequest('Provide at least one of name or audit_log_retention_days.');
    return settingsObject(
      await organizations.update(
        request.admin.organizationId,
        { name: body.name, auditRetentionDays: body.audit_log_retention_days },
        request.admin.actor,
      ),
    );
  });
}

function settingsObject(settings: OrganizationSettings) {
  return {
    object: 'organization.settings' as const,
    id: settings.organization.id,
    name: settings.organization.name,
    is_operator: settings.organization.isOperator,
    audit_log_retention_days: settings.auditRetentionDays,
    effective_audit_log_retention_days: settings.effectiveAuditRetentionDays,
    created_at: unixSeconds(settings.organization.createdAt),
  };
}
