/**
 * The API-key lifecycle: create (secret returned once), list, retrieve, update, rotate with a
 * grace period, revoke. Every surface (Admin API, dashboard, CLI through the Admin API) goes
 * through here, so validation and cache invalidation happen in one place.
 */

import { and, eq, type SQL } from 'drizzle-orm';
import { type Actor, actorId } from '../core/actor.ts';
import { InvalidAllowListError, normalizeCidrs, normalizeModelPatterns } from '../core/allow-lists.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { generateKey, hashKey, type KeyKind, redactKey } from '../core/key-format.ts';
import { InvalidScopeError, permissionsFromScopes, scopesFromPermissions } from '../core/permissions.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import {
  type ApiKeyPatch,
  type ApiKeyView,
  findApiKey,
  insertApiKey,
  type KeyScope,
  listApiKeys,
  revokeApiKey,
  revokeApiKeys,
  rotateApiKeySecret,
  updateApiKey,
} from '../store/repositories/api-keys.ts';
import { findMember } from '../store/repositories/organizations.ts';
import type { Page } from '../store/repositories/pagination.ts';
import { findProject } from '../store/repositories/projects.ts';
import { apiKeys } from '../store/schema.ts';
import type { KeyChangeNotifier } from './key-change-notifier.ts';
import type { LastUsedRecorder } from './last-used-recorder.ts';

/** The longest a rotated-out secret may keep working. */
export const MAX_GRACE_SECONDS = 30 * 24 * 3600;

export interface KeyRestrictions {
  scopes?: string[] | undefined;
  allowedModels?: string[] | undefined;
  allowedIps?: string[] | undefined;
  expiresAt?: Date | null | undefined;
}

export interface CreateKeyInput extends KeyRestrictions {
  organizationId: string;
  kind: KeyKind;
  name: string;
  /** Required for `proj` and `svc` keys. */
  projectId?: string | null | undefined;
  ownerUserId?: string | null | undefined;
  serviceAccountId?: string | null | undefined;
}

export interface UpdateKeyInput extends KeyRestrictions {
  name?: string | undefined;
  enabled?: boolean | undefined;
}

export interface IssuedKey {
  key: ApiKeyView;
  /** The secret, in clear: returned to the caller once and never stored. */
  secret: string;
}

export class KeyService {
  constructor(
    private readonly db: Db,
    private readonly options: {
      keyPrefix: string;
      notifier: KeyChangeNotifier;
      lastUsed?: LastUsedRecorder;
      now?: () => Date;
    },
  ) {}

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  /** `db` lets a caller create the key inside its own transaction (e.g. with a new service account). */
  async create(input: CreateKeyInput, actor: Actor, db: DbOrTx = this.db): Promise<IssuedKey> {
    const restrictions = this.validateRestrictions(input);
    const secret = generateKey(this.options.keyPrefix, input.kind);
    const id = newId('apiKey');
    await db.transaction(async (tx) => {
      if (input.kind !== 'admin') {
        const project = input.projectId
          ? await findProject(tx, input.organizationId, input.projectId)
          : undefined;
        if (!project) throw notFound('project', input.projectId ?? '');
        if (project.archivedAt)
          throw badRequest(`Project '${project.id}' is archived; archived projects cannot get new keys.`);
      }
      // A user's key needs a user of this organization: an unknown id would fail the foreign key
      // (a 500), and another organization's user would show up, email and all, as the key's owner.
      if (
        input.kind === 'proj' &&
        input.ownerUserId &&
        !(await findMember(tx, input.organizationId, input.ownerUserId))
      ) {
        throw badRequest(`No user with id '${input.ownerUserId}' in this organization.`, 'owner_user_id');
      }
      await insertApiKey(
        tx,
        {
          id,
          organizationId: input.organizationId,
          projectId: input.kind === 'admin' ? null : (input.projectId ?? null),
          kind: input.kind,
          name: input.name,
          redactedValue: redactKey(secret),
          ownerUserId: input.kind === 'svc' ? null : (input.ownerUserId ?? null),
          serviceAccountId: input.kind === 'svc' ? (input.serviceAccountId ?? null) : null,
          createdBy: actorId(actor),
          scopes: restrictions.scopes ?? [],
          allowedModels: restrictions.allowedModels ?? [],
          allowedIps: restrictions.allowedIps ?? [],
          expiresAt: restrictions.expiresAt ?? null,
        },
        hashKey(secret),
      );
      await recordAudit(tx, {
        organizationId: input.organizationId,
        projectId: input.kind === 'admin' ? null : (input.projectId ?? null),
        type: 'api_key.created',
        actor,
        resourceId: id,
        details: {
          id,
          data: {
            name: input.name,
            kind: input.kind,
            scopes: restrictions.scopes ?? [],
            ...auditedRestrictions(restrictions),
            ...(input.serviceAccountId ? { service_account_id: input.serviceAccountId } : {}),
            ...(input.kind === 'proj' && input.ownerUserId ? { owner_user_id: input.ownerUserId } : {}),
          },
        },
      });
    });
    const key = await findApiKey(db, scopeOf(input), id);
    return { key: key!, secret };
  }

  async list(scope: KeyScope, page: Parameters<typeof listApiKeys>[2]): Promise<Page<ApiKeyView>> {
    const result = await listApiKeys(this.db, scope, page);
    return { ...result, items: result.items.map((key) => this.withLastUsed(key)) };
  }

  async get(scope: KeyScope, id: string): Promise<ApiKeyView> {
    const key = await findApiKey(this.db, scope, id);
    if (!key) throw notFound('API key', id);
    return this.withLastUsed(key);
  }

  async update(scope: KeyScope, id: string, input: UpdateKeyInput, actor: Actor): Promise<ApiKeyView> {
    const current = await this.get(scope, id);
    if (current.kind === 'admin' && (input.scopes || input.allowedModels || input.allowedIps)) {
      throw badRequest('Admin keys have no scopes, model or IP allow-lists.');
    }
    if (current.expiresAt && current.expiresAt <= this.now()) {
      throw badRequest(
        `API key '${id}' has expired; expired keys cannot be updated. Create a new key instead.`,
      );
    }
    const restrictions = this.validateRestrictions(input);
    const patch: ApiKeyPatch = {};
    if (input.name !== undefined) patch.name = validateName(input.name);
    if (input.enabled !== undefined) patch.enabled = input.enabled;
    if (restrictions.scopes !== undefined) patch.scopes = restrictions.scopes;
    if (restrictions.allowedModels !== undefined) patch.allowedModels = restrictions.allowedModels;
    if (restrictions.allowedIps !== undefined) patch.allowedIps = restrictions.allowedIps;
    if (restrictions.expiresAt !== undefined) patch.expiresAt = restrictions.expiresAt;
    await this.db.transaction(async (tx) => {
      await updateApiKey(tx, id, patch);
      await recordAudit(tx, {
        organizationId: current.organizationId,
        projectId: current.projectId,
        type: 'api_key.updated',
        actor,
        resourceId: id,
        details: {
          id,
          changes_requested: {
            ...(patch.name !== undefined ? { name: patch.name } : {}),
            ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
            ...(patch.scopes !== undefined ? { scopes: patch.scopes } : {}),
            ...auditedRestrictions(restrictions),
          },
        },
      });
    });
    await this.options.notifier.keyChanged(id);
    return this.get(scope, id);
  }

  /**
   * A new secret for the same key id. The old secret keeps working for `graceSeconds`
   * (0 = stops now); the new one is returned once.
   */
  async rotate(
    scope: KeyScope,
    id: string,
    graceSeconds: number,
    actor: Actor,
  ): Promise<IssuedKey & { previousSecretExpiresAt: Date }> {
    if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > MAX_GRACE_SECONDS) {
      throw badRequest(
        `grace_period_seconds must be an integer from 0 to ${MAX_GRACE_SECONDS} (30 days).`,
        'grace_period_seconds',
      );
    }
    const current = await this.get(scope, id);
    const secret = generateKey(this.options.keyPrefix, current.kind);
    const graceUntil = new Date(this.now().getTime() + graceSeconds * 1000);
    await this.db.transaction(async (tx) => {
      await rotateApiKeySecret(tx, id, hashKey(secret), redactKey(secret), graceUntil);
      await recordAudit(tx, {
        organizationId: current.organizationId,
        projectId: current.projectId,
        type: 'api_key.updated',
        actor,
        resourceId: id,
        details: {
          id,
          changes_requested: {
            secret_rotated: true,
            grace_period_seconds: graceSeconds,
            redacted_value: redactKey(secret),
          },
        },
      });
    });
    await this.options.notifier.keyChanged(id);
    return { key: await this.get(scope, id), secret, previousSecretExpiresAt: graceUntil };
  }

  /** Immediate: the next request with any of the key's secrets is refused. */
  async revoke(scope: KeyScope, id: string, actor: Actor): Promise<void> {
    const key = await this.get(scope, id);
    await this.db.transaction(async (tx) => {
      // Only the request that revoked it records it (two at once: one entry).
      if ((await revokeApiKey(tx, id)).length === 0) return;
      await recordAudit(tx, {
        organizationId: key.organizationId,
        projectId: key.projectId,
        type: 'api_key.deleted',
        actor,
        resourceId: id,
        details: { id, data: { name: key.name, redacted_value: key.redactedValue } },
      });
    });
    await this.options.notifier.keyChanged(id);
  }

  private withLastUsed(key: ApiKeyView): ApiKeyView {
    const lastUsedAt = this.options.lastUsed?.merge(key.id, key.lastUsedAt) ?? key.lastUsedAt;
    return lastUsedAt === key.lastUsedAt ? key : { ...key, lastUsedAt };
  }

  private validateRestrictions(input: KeyRestrictions & { name?: string | undefined }): KeyRestrictions {
    if (input.name !== undefined) validateName(input.name);
    const out: KeyRestrictions = {};
    try {
      if (input.scopes !== undefined) {
        out.scopes = scopesFromPermissions(permissionsFromScopes(input.scopes));
      }
    } catch (error) {
      rethrowAsBadRequest(error, 'scopes');
    }
    try {
      if (input.allowedModels !== undefined) out.allowedModels = normalizeModelPatterns(input.allowedModels);
    } catch (error) {
      rethrowAsBadRequest(error, 'allowed_models');
    }
    try {
      if (input.allowedIps !== undefined) out.allowedIps = normalizeCidrs(input.allowedIps);
    } catch (error) {
      rethrowAsBadRequest(error, 'allowed_ips');
    }
    if (input.expiresAt !== undefined) {
      if (input.expiresAt !== null && input.expiresAt.getTime() <= this.now().getTime()) {
        throw badRequest('The expiry must be in the future.', 'expires_at');
      }
      out.expiresAt = input.expiresAt;
    }
    return out;
  }
}

/** The allow-lists and expiry of a change, as the API names them. */
function auditedRestrictions(restrictions: KeyRestrictions): Record<string, unknown> {
  return {
    ...(restrictions.allowedModels !== undefined ? { allowed_models: restrictions.allowedModels } : {}),
    ...(restrictions.allowedIps !== undefined ? { allowed_ips: restrictions.allowedIps } : {}),
    ...(restrictions.expiresAt !== undefined
      ? { expires_at: restrictions.expiresAt ? Math.floor(restrictions.expiresAt.getTime() / 1000) : null }
      : {}),
  };
}

/**
 * Revokes, in the caller's transaction, every live key `where` selects, each with its
 * `api_key.deleted` entry (a member removed, an owner demoted, a service account deleted).
 * Returns their ids: the caller tells the notifier once the transaction has committed.
 */
export async function revokeKeysAudited(
  tx: DbOrTx,
  where: SQL,
  audit: { organizationId: string; actor: Actor; at: Date },
): Promise<string[]> {
  const revoked = await revokeApiKeys(
    tx,
    and(eq(apiKeys.organizationId, audit.organizationId), where)!,
    audit.at,
  );
  for (const key of revoked) {
    await recordAudit(tx, {
      organizationId: audit.organizationId,
      projectId: key.projectId,
      type: 'api_key.deleted',
      actor: audit.actor,
      resourceId: key.id,
      details: { id: key.id },
    });
  }
  return revoked.map((key) => key.id);
}

export function scopeOf(input: {
  organizationId: string;
  kind: KeyKind;
  projectId?: string | null | undefined;
}): KeyScope {
  return {
    organizationId: input.organizationId,
    projectId: input.kind === 'admin' ? null : (input.projectId ?? null),
  };
}

export function validateName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > 256)
    throw badRequest('A name must have 1 to 256 characters.', 'name');
  return trimmed;
}

/** Validation errors of the core become 400s naming the parameter; anything else propagates. */
function rethrowAsBadRequest(error: unknown, param: string): never {
  if (error instanceof InvalidAllowListError || error instanceof InvalidScopeError) {
    throw badRequest(`Invalid ${param}: ${error.message}.`, param);
  }
  throw error;
}
