/**
 * The verification core every surface uses. `verify(secret, context)` answers with the key, its
 * project and organization, or a denial code: denials are data, not exceptions; only an
 * infrastructure failure (the database is down) throws.
 */
import {
  compileIpAllowList,
  compileModelAllowList,
  type IpMatcher,
  type ModelMatcher,
} from '../core/allow-lists.ts';
import { hashKey, type KeyKind, MAX_KEY_LENGTH, parseKey, redactKey } from '../core/key-format.ts';
import { type Permissions, permissionsFromScopes } from '../core/permissions.ts';
import type { Db } from '../store/database.ts';
import { findBySecretHash, type SecretLookup } from '../store/repositories/api-keys.ts';
import type { LastUsedRecorder } from './last-used-recorder.ts';
import { VerificationCache } from './verification-cache.ts';

export const DENIAL_CODES = [
  'MALFORMED',
  'NOT_FOUND',
  'REVOKED',
  'ROTATED',
  'EXPIRED',
  'DISABLED',
  'PROJECT_ARCHIVED',
  'IP_NOT_ALLOWED',
] as const;
export type DenialCode = (typeof DENIAL_CODES)[number];

export interface VerifiedKey {
  id: string;
  kind: KeyKind;
  name: string;
  organizationId: string;
  projectId: string | null;
  serviceAccountId: string | null;
  ownerUserId: string | null;
  redactedValue: string;
  scopes: string[];
  permissions: Permissions;
  allowsModel: ModelMatcher;
  /** The key names the models it may use (a request must then name one). */
  restrictsModels: boolean;
  expiresAt: Date | null;
}

export interface VerifiedProject {
  id: string;
  name: string;
}

export interface VerifiedOrganization {
  id: string;
  name: string;
}

export type VerifyResult =
  | { valid: true; key: VerifiedKey; project: VerifiedProject | null; organization: VerifiedOrganization }
  | {
      valid: false;
      code: DenialCode;
      /** Always safe to show: never more than the redacted form of the secret. */
      redactedValue: string;
      /** Known when the secret matched a key (e.g. EXPIRED); for audit and alerts. */
      keyId?: string;
    };

export interface VerifyContext {
  /** The client's address; checked against the key's and the project's IP allow-lists. */
  ip?: string;
  now?: Date;
}

/** A lookup compiled once and then served from the cache. */
interface Snapshot {
  key: VerifiedKey;
  project: VerifiedProject | null;
  organization: VerifiedOrganization;
  revoked: boolean;
  enabled: boolean;
  projectArchived: boolean;
  secretExpiresAt: number | null;
  keyExpiresAt: number | null;
  keyAllowsIp: IpMatcher;
  projectAllowsIp: IpMatcher;
}

export class KeyVerifier {
  readonly #cache: VerificationCache<Snapshot>;
  /**
   * Moves on every invalidation. A lookup that was in flight when one came may have read the row
   * from before the change it announces: its answer is used once, not cached.
   */
  #generation = 0;

  constructor(
    private readonly db: Db,
    private readonly options: { keyPrefix: string; cacheTtlMs: number; lastUsed?: LastUsedRecorder },
  ) {
    this.#cache = new VerificationCache(options.cacheTtlMs);
  }

  async verify(secret: string, context: VerifyContext = {}): Promise<VerifyResult> {
    if (secret.length > MAX_KEY_LENGTH)
      return { valid: false, code: 'MALFORMED', redactedValue: redactForError(secret) };
    const clock = Date.now(); // the cache's time; `context.now` only moves the denial checks
    const now = context.now?.getTime() ?? clock;
    const hash = hashKey(secret);
    let snapshot = this.#cache.get(hash, clock);
    if (snapshot === undefined) {
      // The checksum rejects typos and garbage before any database lookup; a key of another
      // deployment (another prefix) cannot be ours. A cache hit needs no such check: only the
      // hashes of secrets that passed it ever enter the cache.
      const parsed = parseKey(secret);
      if (!parsed) return { valid: false, code: 'MALFORMED', redactedValue: redactForError(secret) };
      if (parsed.prefix !== this.options.keyPrefix) {
        return { valid: false, code: 'NOT_FOUND', redactedValue: redactKey(secret) };
      }
      const generation = this.#generation;
      const row = await findBySecretHash(this.db, hash);
      snapshot = row ? compile(row) : null;
      if (generation === this.#generation) this.#cache.set(hash, snapshot, snapshot?.key.id ?? null, clock);
    }
    if (snapshot === null) return { valid: false, code: 'NOT_FOUND', redactedValue: redactKey(secret) };
    const code = denialOf(snapshot, now, context.ip);
    // The presented secret's redacted form, not the key's: after a rotation the key shows the new
    // secret, and a holder of the old (perhaps leaked) one must learn nothing of it.
    if (code) return { valid: false, code, redactedValue: redactKey(secret), keyId: snapshot.key.id };
    this.options.lastUsed?.record(snapshot.key.id, now);
    return { valid: true, key: snapshot.key, project: snapshot.project, organization: snapshot.organization };
  }

  /** After an update, rotation or revocation: the next request reads the database. */
  invalidateKey(keyId: string): void {
    this.#generation++;
    this.#cache.invalidateKey(keyId);
  }

  /** After a change that touches many keys at once (a project archived, its IP list changed). */
  invalidateAll(): void {
    this.#generation++;
    this.#cache.clear();
  }
}

function denialOf(snapshot: Snapshot, now: number, ip: string | undefined): DenialCode | null {
  if (snapshot.revoked) return 'REVOKED';
  if (snapshot.secretExpiresAt !== null && snapshot.secretExpiresAt <= now) return 'ROTATED';
  if (snapshot.keyExpiresAt !== null && snapshot.keyExpiresAt <= now) return 'EXPIRED';
  if (!snapshot.enabled) return 'DISABLED';
  if (snapshot.projectArchived) return 'PROJECT_ARCHIVED';
  if (ip !== undefined && !(snapshot.keyAllowsIp(ip) && snapshot.projectAllowsIp(ip)))
    return 'IP_NOT_ALLOWED';
  return null;
}

function compile(row: SecretLookup): Snapshot {
  const { key, project, organization, secret } = row;
  return {
    key: {
      id: key.id,
      kind: key.kind,
      name: key.name,
      organizationId: key.organizationId,
      projectId: key.projectId,
      serviceAccountId: key.serviceAccountId,
      ownerUserId: key.ownerUserId,
      redactedValue: key.redactedValue,
      scopes: key.scopes,
      permissions: permissionsFromScopes(key.scopes),
      allowsModel: compileModelAllowList(key.allowedModels),
      restrictsModels: key.allowedModels.length > 0,
      expiresAt: key.expiresAt,
    },
    project: project ? { id: project.id, name: project.name } : null,
    organization: { id: organization.id, name: organization.name },
    revoked: key.revokedAt !== null,
    enabled: key.enabled,
    projectArchived: project?.archivedAt != null,
    secretExpiresAt: secret.expiresAt?.getTime() ?? null,
    keyExpiresAt: key.expiresAt?.getTime() ?? null,
    keyAllowsIp: compileIpAllowList(key.allowedIps),
    projectAllowsIp: compileIpAllowList(project?.allowedIps ?? []),
  };
}

/** For a string that is not a key at all: show at most a hint of it. */
function redactForError(value: string): string {
  if (value.length < 12) return '***';
  return redactKey(value);
}
