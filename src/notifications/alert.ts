/** What a part of Keyport raises (a budget threshold now; leaks and anomalies later) and how it is shown. */
import { unixSeconds, unixSecondsOrNull } from '../api/http/parse.ts';
import type { AlertRow } from '../store/schema.ts';

export const ALERT_SEVERITIES = ['info', 'warning', 'critical'] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

export interface AlertInput {
  organizationId: string;
  projectId?: string | null | undefined;
  /** `budget.soft_limit`, `budget.hard_limit`, `spend_alert`, …: what webhooks filter on. */
  kind: string;
  severity: AlertSeverity;
  title: string;
  message: string;
  data?: Record<string, unknown> | undefined;
  /** At most one alert per key, across instances: `budget:<id>:<periodStart>:<percent>`. */
  dedupeKey?: string | null | undefined;
  emailRecipients?: readonly string[] | undefined;
  /** Put before the title in the email subject (OpenAI spend alerts' `subject_prefix`). */
  emailSubjectPrefix?: string | null | undefined;
}

/** The Admin API's object; webhooks carry it too, with the organization's id. */
export function alertObject(row: AlertRow) {
  return {
    object: 'organization.alert' as const,
    id: row.id,
    kind: row.kind,
    severity: row.severity,
    title: row.title,
    message: row.message,
    data: row.data as Record<string, unknown>,
    project_id: row.projectId,
    created_at: unixSeconds(row.createdAt),
    read_at: unixSecondsOrNull(row.readAt),
  };
}
