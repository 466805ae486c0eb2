/**
 * The audit log: who changed what, and every sign-in. An entry is written with the same
 * transaction handle as the change it records, so a change that rolls back leaves no entry and an
 * entry never describes a change that did not happen. Stored in OpenAI's shape: a type
 * (`api_key.created`, `login.failed`, …), the actor (an API key or a session), and the type's
 * details, which `/v1/organization/audit_logs` nests under the type's name.
 */

import { eq } from 'drizzle-orm';
import type { Actor } from '../core/actor.ts';
import { actorId } from '../core/actor.ts';
import { randomBase62 } from '../core/base62.ts';
import { newId } from '../core/ids.ts';
import type { DbOrTx } from '../store/database.ts';
import { auditLogs, users } from '../store/schema.ts';

export interface AuditEntry {
  organizationId: string;
  projectId?: string | null | undefined;
  type: string;
  actor: Actor;
  /** What was acted on: a key, a project, a user, an invite… (the `resource_ids` filter). */
  resourceId?: string | null | undefined;
  /** The type's details, e.g. `{ id, data: { scopes } }` for `api_key.created`. */
  details?: Record<string, unknown>;
  /** The actor's email, for the `actor_emails` filter (sessions, and keys owned by a user). */
  actorEmail?: string | null | undefined;
  at?: Date | undefined;
}

/** OpenAI's actor object; `email` is the acting key's owner's, for a key owned by a user. */
export function actorObject(actor: Actor, email: string | null = null): Record<string, unknown> {
  switch (actor.type) {
    case 'session':
      return {
        type: 'session',
        session: {
          user: { id: actor.userId, email: actor.email },
          ip_address: actor.ip,
          user_agent: actor.userAgent,
        },
      };
    case 'api_key':
      return {
        type: 'api_key',
        api_key: {
          id: actor.keyId,
          type: actor.serviceAccountId ? 'service_account' : 'user',
          ...(actor.serviceAccountId
            ? { service_account: { id: actor.serviceAccountId } }
            : { user: { id: actor.userId, email } }),
        },
        ip_address: actor.ip,
        user_agent: actor.userAgent,
      };
    case 'system':
      return { type: 'system', system: { name: actor.name } };
  }
}

/**
 * Entries are listed by (effective_at, id): ids that grow with time keep the order of entries
 * written in the same millisecond (a service account and its first key) as they were written.
 */
let lastStamp = 0;
function auditId(now: number): string {
  lastStamp = Math.max(lastStamp + 1, now * 1000);
  // Digits and lower-case letters only: their order is the same in every collation (a
  // case-insensitive one would reorder base62).
  return `${ID_PREFIX}${lastStamp.toString(36).padStart(11, '0')}${randomBase62(12).toLowerCase()}`;
}
const ID_PREFIX = newId('auditLog').slice(0, newId('auditLog').indexOf('-') + 1);

/**
 * When the actor acts from another organization (the operator's staff granting a customer credit),
 * the entry is written to both: the customer sees what was done to it, the operator what its
 * people did, with the organization it was done to.
 */
export async function recordAudit(db: DbOrTx, given: AuditEntry): Promise<void> {
  // Looked up once, for the entry and its copy.
  const entry = { ...given, actorEmail: given.actorEmail ?? (await actorEmailOf(db, given.actor)) };
  await insertEntry(db, entry);
  const from = entry.actor.type === 'system' ? undefined : entry.actor.organizationId;
  if (from && from !== entry.organizationId) {
    await insertEntry(db, {
      ...entry,
      organizationId: from,
      projectId: null,
      details: { ...entry.details, target_organization_id: entry.organizationId },
    });
  }
}

async function insertEntry(db: DbOrTx, entry: AuditEntry): Promise<void> {
  const at = entry.at ?? new Date();
  const email = entry.actorEmail ?? null;
  await db.insert(auditLogs).values({
    id: auditId(at.getTime()),
    organizationId: entry.organizationId,
    projectId: entry.projectId ?? null,
    type: entry.type,
    effectiveAt: at,
    actor: actorObject(entry.actor, email),
    actorId: actorId(entry.actor),
    actorEmail: email,
    resourceId: entry.resourceId ?? null,
    details: entry.details ?? {},
  });
}

/**
 * The email the `actor_emails` filter finds an entry by: a session's user's, or the owner's of the
 * key that acted (as it is now: OpenAI's entries keep the email of when they were written).
 */
async function actorEmailOf(db: DbOrTx, actor: Actor): Promise<string | null> {
  if (actor.type === 'session') return actor.email;
  if (actor.type !== 'api_key' || actor.userId === null || actor.serviceAccountId) return null;
  const [owner] = await db.select({ email: users.email }).from(users).where(eq(users.id, actor.userId));
  return owner?.email ?? null;
}
