/**
 * An organization's own settings: its name and how long its audit log is kept. A change is
 * audited (`organization.updated`) in the same transaction.
 */
import { eq } from 'drizzle-orm';
import type { Actor } from '../core/actor.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { Db } from '../store/database.ts';
import { type OrganizationRow, organizationSettings, organizations } from '../store/schema.ts';

/** The longest retention an organization may set (10 years); null keeps entries forever. */
export const MAX_AUDIT_RETENTION_DAYS = 3650;
/** The shortest: an owner must not be able to erase yesterday's entries (their own change included). */
export const MIN_AUDIT_RETENTION_DAYS = 30;

export interface OrganizationSettings {
  organization: OrganizationRow;
  /** The organization's own retention, or null when it follows the instance default. */
  auditRetentionDays: number | null;
  /** What applies: the organization's, else the instance default (0 = forever). */
  effectiveAuditRetentionDays: number;
}

export interface SettingsChanges {
  name?: string | undefined;
  /** null: back to the instance default. */
  auditRetentionDays?: number | null | undefined;
}

export class OrganizationService {
  constructor(
    private readonly db: Db,
    private readonly defaultAuditRetentionDays: number,
  ) {}

  async settings(organizationId: string): Promise<OrganizationSettings> {
    const [row] = await this.db
      .select({ organization: organizations, days: organizationSettings.auditRetentionDays })
      .from(organizations)
      .leftJoin(organizationSettings, eq(organizationSettings.organizationId, organizations.id))
      .where(eq(organizations.id, organizationId));
    if (!row) throw notFound('organization', organizationId);
    const days = row.days ?? null;
    return {
      organization: row.organization,
      auditRetentionDays: days,
      effectiveAuditRetentionDays: days ?? this.defaultAuditRetentionDays,
    };
  }

  async update(
    organizationId: string,
    changes: SettingsChanges,
    actor: Actor,
  ): Promise<OrganizationSettings> {
    const name = changes.name === undefined ? undefined : changes.name.trim();
    if (name !== undefined && (name.length === 0 || name.length > 200))
      throw badRequest('Invalid name: 1 to 200 characters.', 'name');
    const days = changes.auditRetentionDays;
    if (
      days !== undefined &&
      days !== null &&
      (!Number.isInteger(days) || days < MIN_AUDIT_RETENTION_DAYS || days > MAX_AUDIT_RETENTION_DAYS)
    )
      throw badRequest(
        `audit_log_retention_days must be a whole number of days from ${MIN_AUDIT_RETENTION_DAYS} to ${MAX_AUDIT_RETENTION_DAYS}, or null for the instance default.`,
        'audit_log_retention_days',
      );
    await this.settings(organizationId);
    await this.db.transaction(async (tx) => {
      if (name !== undefined)
        await tx.update(organizations).set({ name }).where(eq(organizations.id, organizationId));
      if (days !== undefined) {
        await tx
          .insert(organizationSettings)
          .values({ organizationId, auditRetentionDays: days })
          .onConflictDoUpdate({
            target: organizationSettings.organizationId,
            set: { auditRetentionDays: days, updatedAt: new Date() },
          });
      }
      await recordAudit(tx, {
        organizationId,
        type: 'organization.updated',
        actor,
        resourceId: organizationId,
        details: {
          id: organizationId,
          changes_requested: {
            ...(name !== undefined ? { name, title: name } : {}),
            ...(days !== undefined ? { audit_log_retention_days: days } : {}),
          },
        },
      });
    });
    return this.settings(organizationId);
  }
}
