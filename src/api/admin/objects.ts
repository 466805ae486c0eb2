/**
 * Keyport rows → the Admin API's objects, field for field as the official `openai` SDK types
 * them (node_modules/openai/resources/admin/organization/). Keyport extensions are extra fields
 * (`scopes`, `allowed_models`, `allowed_ips`, `enabled`), which the SDK passes through.
 */
import type { ApiKeyView } from '../../store/repositories/api-keys.ts';
import type { Page } from '../../store/repositories/pagination.ts';
import type { ProjectRow, ServiceAccountRow, UserRow } from '../../store/schema.ts';
import { unixSeconds, unixSecondsOrNull } from '../http/parse.ts';

export function listObject<T extends { id: string }>(page: Page<unknown>, data: T[]) {
  return {
    object: 'list' as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: page.hasMore,
  };
}

export function adminKeyObject(key: ApiKeyView) {
  return {
    object: 'organization.admin_api_key' as const,
    id: key.id,
    name: key.name,
    redacted_value: key.redactedValue,
    created_at: unixSeconds(key.createdAt),
    expires_at: unixSecondsOrNull(key.expiresAt),
    last_used_at: unixSecondsOrNull(key.lastUsedAt),
    owner: key.ownerUser
      ? {
          type: 'user',
          object: 'organization.user',
          id: key.ownerUser.id,
          name: key.ownerUser.name,
          created_at: unixSeconds(key.ownerUser.createdAt),
          role: 'owner',
        }
      : {},
  };
}

function projectRole(role: 'owner' | 'reader' | null): string {
  return role === 'owner' ? 'owner' : 'member';
}

export function projectKeyObject(key: ApiKeyView) {
  const owner = key.serviceAccount
    ? { type: 'service_account' as const, service_account: serviceAccountOwner(key.serviceAccount) }
    : key.ownerUser
      ? { type: 'user' as const, user: userOwner(key.ownerUser, key.ownerRole) }
      : {};
  const ownerActive = key.serviceAccount ? key.serviceAccount.deletedAt === null : key.ownerRole !== null;
  return {
    object: 'organization.project.api_key' as const,
    id: key.id,
    name: key.name,
    redacted_value: key.redactedValue,
    created_at: unixSeconds(key.createdAt),
    last_used_at: unixSecondsOrNull(key.lastUsedAt),
    expires_at: unixSecondsOrNull(key.expiresAt),
    owner,
    owner_project_access: ownerActive ? ('active' as const) : ('inactive' as const),
    scopes: key.scopes,
    allowed_models: key.allowedModels,
    allowed_ips: key.allowedIps,
    enabled: key.enabled,
  };
}

function userOwner(user: UserRow, role: 'owner' | 'reader' | null) {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    created_at: unixSeconds(user.createdAt),
    role: projectRole(role),
  };
}

function serviceAccountOwner(serviceAccount: ServiceAccountRow) {
  return {
    id: serviceAccount.id,
    name: serviceAccount.name,
    created_at: unixSeconds(serviceAccount.createdAt),
    role: serviceAccount.role,
  };
}

export function projectObject(project: ProjectRow) {
  return {
    object: 'organization.project' as const,
    id: project.id,
    name: project.name,
    created_at: unixSeconds(project.createdAt),
    archived_at: unixSecondsOrNull(project.archivedAt),
    status: project.archivedAt ? 'archived' : 'active',
    external_key_id: project.externalKeyId,
    allowed_ips: project.allowedIps,
  };
}

export function serviceAccountObject(serviceAccount: ServiceAccountRow) {
  return {
    object: 'organization.project.service_account' as const,
    id: serviceAccount.id,
    name: serviceAccount.name,
    role: serviceAccount.role,
    created_at: unixSeconds(serviceAccount.createdAt),
  };
}

export function serviceAccountKeyObject(key: ApiKeyView, secret: string) {
  return {
    object: 'organization.project.service_account.api_key' as const,
    id: key.id,
    name: key.name,
    value: secret,
    created_at: unixSeconds(key.createdAt),
    expires_at: unixSecondsOrNull(key.expiresAt),
  };
}
