/**
 * Sign-ins and sign-outs in the audit log: OpenAI records them in the organizations of the user, so
 * an event is written to each organization the account belongs to. A failed sign-in for an address
 * without an account belongs to no organization and is not recorded (the log line has it).
 */
import { eq } from 'drizzle-orm';
import type { AuthEvent } from '../accounts/account-service.ts';
import type { Db } from '../store/database.ts';
import { organizationMembers } from '../store/schema.ts';
import { recordAudit } from './audit-log.ts';

export async function auditAuthEvent(db: Db, event: AuthEvent): Promise<void> {
  if (!event.user) return;
  const user = event.user;
  const memberships = await db
    .select({ organizationId: organizationMembers.organizationId })
    .from(organizationMembers)
    .where(eq(organizationMembers.userId, user.id));
  if (memberships.length === 0) return;
  await db.transaction(async (tx) => {
    for (const { organizationId } of memberships) {
      await recordAudit(tx, {
        organizationId,
        type: event.type,
        actor: {
          type: 'session',
          userId: user.id,
          email: user.email,
          sessionId: '',
          ip: event.ip,
          userAgent: event.userAgent,
        },
        resourceId: user.id,
        details:
          event.type === 'login.failed'
            ? { error_code: event.errorCode ?? 'invalid_credentials', error_message: 'sign-in refused' }
            : {},
      });
    }
  });
}
