/**
 * Who did something: recorded with every change in the audit log, in OpenAI's terms (an API key —
 * an admin key, or a user's or service account's key — or a user's dashboard session), or the
 * system itself (the billing cycle, a trial grant). Pure data: the HTTP surfaces build it.
 */

export type Actor =
  | {
      type: 'api_key';
      keyId: string;
      keyKind: 'admin' | 'proj' | 'svc';
      /** The key's owner, for admin and project keys. */
      userId: string | null;
      serviceAccountId: string | null;
      ip: string | null;
      userAgent: string | null;
      /** The organization the key belongs to (an operator's key may act on others). */
      organizationId?: string;
    }
  | {
      type: 'session';
      userId: string;
      email: string;
      sessionId: string;
      ip: string | null;
      userAgent: string | null;
      /** The organization the session acts from, on the dashboard's organization routes. */
      organizationId?: string;
    }
  | { type: 'system'; name: string };

/** The actor's id for `created_by` columns and `actor_ids` filters. */
export function actorId(actor: Actor): string {
  switch (actor.type) {
    case 'api_key':
      return actor.keyId;
    case 'session':
      return actor.userId;
    case 'system':
      return `system:${actor.name}`;
  }
}

export const SYSTEM = (name: string): Actor => ({ type: 'system', name });
