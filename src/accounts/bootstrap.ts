/**
 * First run: an organization, its owner, a first project and an admin key, in one transaction.
 * Used by `keyport init` and by `keyport start` on an empty database.
 */

import { SYSTEM } from '../core/actor.ts';
import { UserError } from '../core/user-error.ts';
import type { IssuedKey, KeyService } from '../keys/key-service.ts';
import type { Db } from '../store/database.ts';
import {
  addMember,
  countOrganizations,
  insertOrganization,
  insertUser,
} from '../store/repositories/organizations.ts';
import { insertProject } from '../store/repositories/projects.ts';
import type { OrganizationRow, ProjectRow, UserRow } from '../store/schema.ts';
import type { BootstrapInput } from './bootstrap-defaults.ts';

export { type BootstrapInput, DEFAULT_BOOTSTRAP } from './bootstrap-defaults.ts';

export interface BootstrapResult {
  organization: OrganizationRow;
  owner: UserRow;
  project: ProjectRow;
  adminKey: IssuedKey;
}

export class AlreadyInitializedError extends UserError {}

export async function isInitialized(db: Db): Promise<boolean> {
  return (await countOrganizations(db)) > 0;
}

/**
 * `owner`: a headless `keyport init --password-stdin` — the owner can sign in to the dashboard at
 * once (the operator vouches for the address and accepts the terms by running it).
 */
export interface OwnerAccount {
  passwordHash: string;
  termsVersion: string;
}

export async function bootstrap(
  db: Db,
  keys: KeyService,
  input: BootstrapInput,
  account?: OwnerAccount,
): Promise<BootstrapResult> {
  return db.transaction(async (tx) => {
    // Inside the transaction, so two racing `init`s cannot both create an instance owner.
    await tx.execute('lock table organizations in exclusive mode');
    if ((await countOrganizations(tx)) > 0) {
      throw new AlreadyInitializedError('this Keyport instance is already initialized');
    }
    // The first organization is the instance operator's: it sets prices and grants credits.
    const organization = await insertOrganization(tx, input.organizationName, { isOperator: true });
    // The first account is the instance's owner.
    const now = new Date();
    const owner = await insertUser(tx, input.ownerEmail, input.ownerName, {
      isInstanceOwner: true,
      ...(account
        ? {
            passwordHash: account.passwordHash,
            passwordChangedAt: now,
            emailVerifiedAt: now,
            termsVersion: account.termsVersion,
            termsAcceptedAt: now,
          }
        : {}),
    });
    await addMember(tx, organization.id, owner.id, 'owner');
    const project = await insertProject(tx, { organizationId: organization.id, name: input.projectName });
    const adminKey = await keys.create(
      {
        organizationId: organization.id,
        kind: 'admin',
        name: 'Initial admin key',
        ownerUserId: owner.id,
      },
      SYSTEM('init'),
      tx,
    );
    return { organization, owner, project, adminKey };
  });
}
