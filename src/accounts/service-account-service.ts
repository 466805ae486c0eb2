/**
 * Project service accounts: a bot identity inside one project whose keys (`svc`) outlive any
 * member. Deleting one revokes all its keys in the same transaction.
 */

import { eq } from 'drizzle-orm';
import type { Actor } from '../core/actor.ts';
import { notFound } from '../core/errors.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { KeyChangeNotifier } from '../keys/key-change-notifier.ts';
import {
  type IssuedKey,
  type KeyRestrictions,
  type KeyService,
  revokeKeysAudited,
  validateName,
} from '../keys/key-service.ts';
import type { Db } from '../store/database.ts';
import type { Page, PageRequest } from '../store/repositories/pagination.ts';
import {
  findServiceAccount,
  insertServiceAccount,
  listServiceAccounts,
  updateServiceAccount,
} from '../store/repositories/service-accounts.ts';
import type { ServiceAccountRow } from '../store/schema.ts';
import { apiKeys } from '../store/schema.ts';
import type { ProjectService } from './project-service.ts';

export class ServiceAccountService {
  constructor(
    private readonly db: Db,
    private readonly projects: ProjectService,
    private readonly keys: KeyService,
    private readonly notifier: KeyChangeNotifier,
  ) {}

  /** With a first key (returned once) unless `withoutKey`, as OpenAI's `create_service_account_only`. */
  async create(
    organizationId: string,
    projectId: string,
    input: { name: string; withoutKey: boolean; keyRestrictions?: KeyRestrictions },
    actor: Actor,
  ): Promise<{ serviceAccount: ServiceAccountRow; issued: IssuedKey | null }> {
    await this.projects.requireActive(organizationId, projectId);
    const name = validateName(input.name);
    // One transaction: a bad key restriction (say, an expiry in the past) leaves no account behind.
    return this.db.transaction(async (tx) => {
      const serviceAccount = await insertServiceAccount(tx, {
        organizationId,
        projectId,
        name,
        role: input.withoutKey ? 'none' : 'member',
      });
      await recordAudit(tx, {
        organizationId,
        projectId,
        type: 'service_account.created',
        actor,
        resourceId: serviceAccount.id,
        details: { id: serviceAccount.id, data: { name, role: serviceAccount.role } },
      });
      if (input.withoutKey) return { serviceAccount, issued: null };
      const issued = await this.keys.create(
        {
          ...input.keyRestrictions,
          name: 'Secret key',
          organizationId,
          projectId,
          kind: 'svc',
          serviceAccountId: serviceAccount.id,
        },
        actor,
        tx,
      );
      return { serviceAccount, issued };
    });
  }

  async createKey(
    organizationId: string,
    projectId: string,
    serviceAccountId: string,
    input: KeyRestrictions & { name: string },
    actor: Actor,
  ): Promise<IssuedKey> {
    await this.get(organizationId, projectId, serviceAccountId);
    return this.keys.create({ ...input, organizationId, projectId, kind: 'svc', serviceAccountId }, actor);
  }

  async get(organizationId: string, projectId: string, id: string): Promise<ServiceAccountRow> {
    await this.projects.get(organizationId, projectId);
    const serviceAccount = await findServiceAccount(this.db, organizationId, projectId, id);
    if (!serviceAccount) throw notFound('service account', id);
    return serviceAccount;
  }

  async list(organizationId: string, projectId: string, page: PageRequest): Promise<Page<ServiceAccountRow>> {
    await this.projects.get(organizationId, projectId);
    return listServiceAccounts(this.db, organizationId, projectId, page);
  }

  async update(
    organizationId: string,
    projectId: string,
    id: string,
    input: { name?: string | undefined; role?: 'owner' | 'member' | undefined },
    actor: Actor,
  ): Promise<ServiceAccountRow> {
    await this.projects.requireActive(organizationId, projectId);
    await this.get(organizationId, projectId, id);
    const patch: Parameters<typeof updateServiceAccount>[2] = {};
    if (input.name !== undefined) patch.name = validateName(input.name);
    if (input.role !== undefined) patch.role = input.role;
    return this.db.transaction(async (tx) => {
      const row = await updateServiceAccount(tx, id, patch);
      await recordAudit(tx, {
        organizationId,
        projectId,
        type: 'service_account.updated',
        actor,
        resourceId: id,
        details: { id, changes_requested: { ...patch } },
      });
      return row!;
    });
  }

  async delete(organizationId: string, projectId: string, id: string, actor: Actor): Promise<void> {
    await this.get(organizationId, projectId, id);
    const revoked = await this.db.transaction(async (tx) => {
      const at = new Date();
      await updateServiceAccount(tx, id, { deletedAt: at });
      await recordAudit(tx, {
        organizationId,
        projectId,
        type: 'service_account.deleted',
        actor,
        resourceId: id,
        details: { id },
      });
      return revokeKeysAudited(tx, eq(apiKeys.serviceAccountId, id), { organizationId, actor, at });
    });
    for (const keyId of revoked) await this.notifier.keyChanged(keyId);
  }
}
