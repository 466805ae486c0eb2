/**
 * Key permissions, as on OpenAI's dashboard: All, Read only, or Restricted per resource
 * (none / read / write). On the wire they travel as OpenAI's scope identifiers:
 *
 *   []                 All
 *   ["api.all.read"]   Read only
 *   ["api.model.read", "api.files.write", "api.model.request", …]   Restricted
 *
 * A restricted scope is `api.<resource>.<read|write>`; write implies read.
 * `api.model.request` is OpenAI's name for "may call every model capability" and grants write
 * on chat.completions, completions, embeddings, images, audio and moderations.
 */

export const RESOURCES = [
  'model',
  'chat.completions',
  'completions',
  'embeddings',
  'images',
  'audio',
  'moderations',
  'responses',
  'assistants',
  'threads',
  'files',
  'fine_tuning',
  'batch',
  'vector_stores',
  'evals',
] as const;
export type Resource = (typeof RESOURCES)[number];

export const MODEL_CAPABILITIES: readonly Resource[] = [
  'chat.completions',
  'completions',
  'embeddings',
  'images',
  'audio',
  'moderations',
];

export type Access = 'read' | 'write';
export type AccessLevel = 'none' | Access;

export type Permissions =
  | { mode: 'all' }
  | { mode: 'read_only' }
  | { mode: 'restricted'; resources: Partial<Record<Resource, Access>> };

export const READ_ONLY_SCOPE = 'api.all.read';
export const MODEL_REQUEST_SCOPE = 'api.model.request';

const RESOURCE_SET: ReadonlySet<string> = new Set(RESOURCES);

export class InvalidScopeError extends Error {}

export function permissionsFromScopes(scopes: readonly string[]): Permissions {
  if (scopes.length === 0) return { mode: 'all' };
  if (scopes.includes(READ_ONLY_SCOPE)) {
    if (scopes.length > 1) {
      throw new InvalidScopeError(`"${READ_ONLY_SCOPE}" (read only) cannot be combined with other scopes`);
    }
    return { mode: 'read_only' };
  }
  const resources: Partial<Record<Resource, Access>> = {};
  const grant = (resource: Resource, access: Access) => {
    if (resources[resource] !== 'write') resources[resource] = access;
  };
  for (const scope of scopes) {
    if (scope === MODEL_REQUEST_SCOPE) {
      for (const capability of MODEL_CAPABILITIES) grant(capability, 'write');
      continue;
    }
    const match = /^api\.([a-z_.]+)\.(read|write)$/.exec(scope);
    if (!match || !RESOURCE_SET.has(match[1] as string)) {
      throw new InvalidScopeError(
        `unknown scope ${JSON.stringify(scope)}; expected "${READ_ONLY_SCOPE}", "${MODEL_REQUEST_SCOPE}" or api.<resource>.<read|write> with resource one of ${RESOURCES.join(', ')}`,
      );
    }
    grant(match[1] as Resource, match[2] as Access);
  }
  return { mode: 'restricted', resources };
}

/** Canonical scope list: stable order, write written once (it implies read). */
export function scopesFromPermissions(permissions: Permissions): string[] {
  if (permissions.mode === 'all') return [];
  if (permissions.mode === 'read_only') return [READ_ONLY_SCOPE];
  return RESOURCES.filter((r) => permissions.resources[r]).map((r) => `api.${r}.${permissions.resources[r]}`);
}

export function permits(permissions: Permissions, resource: Resource, access: Access): boolean {
  switch (permissions.mode) {
    case 'all':
      return true;
    case 'read_only':
      return access === 'read';
    case 'restricted': {
      const granted = permissions.resources[resource];
      return granted === 'write' || (granted === 'read' && access === 'read');
    }
  }
}

/** The scope a denied request lacks, for `missing_scope` messages. */
export function requiredScope(resource: Resource, access: Access): string {
  return `api.${resource}.${access}`;
}

export function describePermissions(permissions: Permissions): string {
  if (permissions.mode === 'all') return 'All';
  if (permissions.mode === 'read_only') return 'Read only';
  return `Restricted (${scopesFromPermissions(permissions).join(', ') || 'nothing'})`;
}
