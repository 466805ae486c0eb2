/** The repository suite, run against every backend: PGlite always, PostgreSQL when configured. */
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import { generateKey, hashKey, redactKey } from '../../src/core/key-format.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import {
  findApiKey,
  findBySecretHash,
  insertApiKey,
  listApiKeys,
  revokeApiKey,
  revokeServiceAccountKeys,
  rotateApiKeySecret,
  updateApiKey,
  writeLastUsed,
} from '../../src/store/repositories/api-keys.ts';
import {
  addMember,
  findOwner,
  insertOrganization,
  insertUser,
} from '../../src/store/repositories/organizations.ts';
import {
  findProject,
  insertProject,
  listProjects,
  updateProject,
} from '../../src/store/repositories/projects.ts';
import {
  findServiceAccount,
  insertServiceAccount,
  listServiceAccounts,
  updateServiceAccount,
} from '../../src/store/repositories/service-accounts.ts';
import { apiKeySecrets, apiKeys } from '../../src/store/schema.ts';
import { backends, createPostgresDatabase, openTestStore, POSTGRES_URL } from '../helpers/stores.ts';

describe.each(backends)('repositories on %s', (backend) => {
  let store: Store;
  let orgId: string;
  let userId: string;
  let projectId: string;

  beforeAll(async () => {
    store = await openTestStore(backend);
    const org = await insertOrganization(store.db, 'Acme');
    const user = await insertUser(store.db, 'Ada@Example.com', 'Ada');
    await addMember(store.db, org.id, user.id, 'owner');
    const project = await insertProject(store.db, { organizationId: org.id, name: 'Main' });
    orgId = org.id;
    userId = user.id;
    projectId = project.id;
  });
  afterAll(() => store.close());

  async function newKey(name: string, overrides: Partial<Parameters<typeof insertApiKey>[1]> = {}) {
    const secret = generateKey('kp', overrides.kind ?? 'proj');
    const row = await insertApiKey(
      store.db,
      {
        id: newId('apiKey'),
        organizationId: orgId,
        projectId,
        kind: 'proj',
        name,
        redactedValue: redactKey(secret),
        ownerUserId: userId,
        createdBy: userId,
        ...overrides,
      },
      hashKey(secret),
    );
    return { row, secret };
  }

  it('finds the owner; emails are unique regardless of case', async () => {
    expect((await findOwner(store.db, orgId))?.id).toBe(userId);
    await expect(insertUser(store.db, 'ada@example.COM', 'Other Ada')).rejects.toThrow();
  });

  it('stores a key with its hash and finds it by that hash, with project and organization', async () => {
    const { row, secret } = await newKey('lookup');
    const found = await findBySecretHash(store.db, hashKey(secret));
    expect(found?.key.id).toBe(row.id);
    expect(found?.project?.id).toBe(projectId);
    expect(found?.organization.id).toBe(orgId);
    expect(found?.secret.expiresAt).toBeNull();
    expect(found?.key.scopes).toEqual([]);
    expect(await findBySecretHash(store.db, hashKey(generateKey('kp', 'proj')))).toBeUndefined();
  });

  it('round-trips arrays, booleans and timestamps', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000);
    const { row } = await newKey('arrays', {
      scopes: ['api.model.read'],
      allowedModels: ['gpt-4o*', 'meta-llama/*'],
      allowedIps: ['10.0.0.0/8', '2001:db8::/32'],
      expiresAt,
    });
    const found = await findApiKey(store.db, { organizationId: orgId, projectId }, row.id);
    expect(found).toMatchObject({
      scopes: ['api.model.read'],
      allowedModels: ['gpt-4o*', 'meta-llama/*'],
      allowedIps: ['10.0.0.0/8', '2001:db8::/32'],
      enabled: true,
      ownerRole: 'owner',
    });
    expect(found?.expiresAt?.getTime()).toBe(expiresAt.getTime());
    expect(found?.ownerUser?.email).toBe('Ada@Example.com');
  });

  it('scopes lookups by organization and project', async () => {
    const { row } = await newKey('scoped');
    const other = await insertOrganization(store.db, 'Other');
    expect(await findApiKey(store.db, { organizationId: other.id, projectId }, row.id)).toBeUndefined();
    expect(await findApiKey(store.db, { organizationId: orgId, projectId: null }, row.id)).toBeUndefined();
    const admin = await newKey('admin', { kind: 'admin', projectId: null });
    expect(
      await findApiKey(store.db, { organizationId: orgId, projectId: null }, admin.row.id),
    ).toBeDefined();
    expect(await findApiKey(store.db, { organizationId: orgId, projectId }, admin.row.id)).toBeUndefined();
  });

  it('paginates keys by creation order with a cursor, both directions, never repeating', async () => {
    const project = await insertProject(store.db, { organizationId: orgId, name: 'Paged' });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await newKey(`k${i}`, { projectId: project.id })).row.id);
    const scope = { organizationId: orgId, projectId: project.id };
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await listApiKeys(store.db, scope, { limit: 3, order: 'asc', after });
      seen.push(...page.items.map((k) => k.id));
      if (!page.hasMore) break;
      after = page.items.at(-1)?.id;
    }
    expect(seen).toEqual(ids);
    const desc = await listApiKeys(store.db, scope, { limit: 10, order: 'desc' });
    expect(desc.items.map((k) => k.id)).toEqual([...ids].reverse());
    expect(desc.hasMore).toBe(false);
    const tail = await listApiKeys(store.db, scope, { limit: 10, order: 'desc', after: ids[3] });
    expect(tail.items.map((k) => k.id)).toEqual([ids[2], ids[1], ids[0]]);
  });

  it('keeps a revoked key (for audit and REVOKED answers) but hides it from lists', async () => {
    const project = await insertProject(store.db, { organizationId: orgId, name: 'Revocations' });
    const { row, secret } = await newKey('revoked', { projectId: project.id });
    expect(await revokeApiKey(store.db, row.id)).toEqual([row.id]);
    expect(await revokeApiKey(store.db, row.id)).toEqual([]);
    expect((await findBySecretHash(store.db, hashKey(secret)))?.key.revokedAt).toBeInstanceOf(Date);
    expect(
      (
        await listApiKeys(
          store.db,
          { organizationId: orgId, projectId: project.id },
          { limit: 10, order: 'asc' },
        )
      ).items,
    ).toEqual([]);
    // A cursor on a revoked key still anchors the next page.
    const next = await newKey('after revoked', { projectId: project.id });
    const page = await listApiKeys(
      store.db,
      { organizationId: orgId, projectId: project.id },
      { limit: 10, order: 'asc', after: row.id },
    );
    expect(page.items.map((k) => k.id)).toEqual([next.row.id]);
  });

  it('rotation: a new current secret; old secrets get the shorter of their grace periods', async () => {
    const { row, secret: first } = await newKey('rotating');
    const second = generateKey('kp', 'proj');
    const inAnHour = new Date(Date.now() + 3_600_000);
    await rotateApiKeySecret(store.db, row.id, hashKey(second), redactKey(second), inAnHour);
    expect((await findBySecretHash(store.db, hashKey(first)))?.secret.expiresAt?.getTime()).toBe(
      inAnHour.getTime(),
    );
    expect((await findBySecretHash(store.db, hashKey(second)))?.secret.expiresAt).toBeNull();
    const third = generateKey('kp', 'proj');
    const inAMinute = new Date(Date.now() + 60_000);
    await rotateApiKeySecret(store.db, row.id, hashKey(third), redactKey(third), inAMinute);
    // The first secret's grace can only shrink; the second now ends in a minute too.
    expect((await findBySecretHash(store.db, hashKey(first)))?.secret.expiresAt?.getTime()).toBe(
      inAMinute.getTime(),
    );
    expect((await findBySecretHash(store.db, hashKey(second)))?.secret.expiresAt?.getTime()).toBe(
      inAMinute.getTime(),
    );
    expect((await findApiKey(store.db, { organizationId: orgId, projectId }, row.id))?.redactedValue).toBe(
      redactKey(third),
    );
    const secrets = await store.db.select().from(apiKeySecrets).where(eq(apiKeySecrets.keyId, row.id));
    expect(secrets).toHaveLength(3);
  });

  it('writes last_used_at in one batch and never moves it backwards', async () => {
    const a = await newKey('used-a');
    const b = await newKey('used-b');
    const t1 = new Date('2026-01-01T00:00:00.000Z');
    const t2 = new Date('2026-01-02T00:00:00.000Z');
    await writeLastUsed(
      store.db,
      new Map([
        [a.row.id, t2],
        [b.row.id, t1],
      ]),
    );
    await writeLastUsed(store.db, new Map([[a.row.id, t1]]));
    const scope = { organizationId: orgId, projectId };
    expect((await findApiKey(store.db, scope, a.row.id))?.lastUsedAt?.toISOString()).toBe(t2.toISOString());
    expect((await findApiKey(store.db, scope, b.row.id))?.lastUsedAt?.toISOString()).toBe(t1.toISOString());
  });

  it('updates keys and bumps updated_at', async () => {
    const { row } = await newKey('to-update');
    await updateApiKey(store.db, row.id, { name: 'renamed', enabled: false, allowedIps: ['10.0.0.0/8'] });
    const [updated] = await store.db.select().from(apiKeys).where(eq(apiKeys.id, row.id));
    expect(updated).toMatchObject({ name: 'renamed', enabled: false, allowedIps: ['10.0.0.0/8'] });
    expect(updated!.updatedAt.getTime()).toBeGreaterThanOrEqual(row.updatedAt.getTime());
  });

  it('rolls back a failed transaction completely', async () => {
    const id = newId('apiKey');
    const secret = generateKey('kp', 'proj');
    await expect(
      store.db.transaction(async (tx) => {
        await insertApiKey(
          tx,
          {
            id,
            organizationId: orgId,
            projectId,
            kind: 'proj',
            name: 'half',
            redactedValue: redactKey(secret),
            createdBy: userId,
          },
          hashKey(secret),
        );
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.db.select().from(apiKeys).where(eq(apiKeys.id, id))).toEqual([]);
    expect(await findBySecretHash(store.db, hashKey(secret))).toBeUndefined();
  });

  it('refuses a key for a project that does not exist (foreign keys hold)', async () => {
    await expect(newKey('orphan', { projectId: 'proj_doesnotexist000000000' })).rejects.toThrow();
  });

  it('projects: archived ones are hidden unless asked for, and paginate', async () => {
    const org = await insertOrganization(store.db, 'Projects Inc');
    const a = await insertProject(store.db, { organizationId: org.id, name: 'A' });
    const b = await insertProject(store.db, { organizationId: org.id, name: 'B' });
    await updateProject(store.db, org.id, a.id, { archivedAt: new Date() });
    const active = await listProjects(store.db, org.id, { limit: 10, order: 'asc', includeArchived: false });
    expect(active.items.map((p) => p.id)).toEqual([b.id]);
    const both = await listProjects(store.db, org.id, { limit: 10, order: 'asc', includeArchived: true });
    expect(both.items.map((p) => p.id).sort()).toEqual([a.id, b.id].sort());
    // Two projects made in the same clock tick (PGlite's clock is coarse) are ordered by id: the
    // first page is the first of the full list, whichever that is.
    const first = await listProjects(store.db, org.id, { limit: 1, order: 'asc', includeArchived: true });
    expect(first.items.map((p) => p.id)).toEqual([both.items[0]!.id]);
    expect(first.hasMore).toBe(true);
    expect(await findProject(store.db, orgId, a.id)).toBeUndefined();
  });

  it('service accounts: soft delete hides them and revokes their keys', async () => {
    const account = await insertServiceAccount(store.db, {
      organizationId: orgId,
      projectId,
      name: 'bot',
      role: 'member',
    });
    const key = await newKey('bot key', { kind: 'svc', ownerUserId: null, serviceAccountId: account.id });
    expect(
      (await listServiceAccounts(store.db, orgId, projectId, { limit: 10, order: 'asc' })).items.map(
        (a) => a.id,
      ),
    ).toContain(account.id);
    await updateServiceAccount(store.db, account.id, { deletedAt: new Date() });
    expect(await revokeServiceAccountKeys(store.db, account.id)).toEqual([key.row.id]);
    expect(await findServiceAccount(store.db, orgId, projectId, account.id)).toBeUndefined();
    expect((await findBySecretHash(store.db, hashKey(key.secret)))?.key.revokedAt).not.toBeNull();
  });
});

describe.skipIf(!POSTGRES_URL)('PostgreSQL migrations', () => {
  it('apply once, and concurrent boots wait for each other instead of failing', async () => {
    const { url, drop } = await createPostgresDatabase();
    try {
      const stores = await Promise.all([1, 2, 3].map(() => openStore({ databaseUrl: url, poolSize: 2 })));
      const result = await stores[0]!.pool!.query(
        "select count(*)::int as n from information_schema.tables where table_name = 'api_keys'",
      );
      expect(result.rows[0].n).toBe(1);
      await Promise.all(stores.map((s) => s.close()));
    } finally {
      await drop();
    }
  });
});

describe('redactUrl (the database address in the start banner and logs)', () => {
  it('hides a password in the userinfo and in the query string', async () => {
    const { redactUrl } = await import('../../src/store/database.ts');
    expect(redactUrl('postgres://keyport:s3cret@db:5432/keyport')).toBe(
      'postgres://keyport:***@db:5432/keyport',
    );
    const query = redactUrl('postgres://db/keyport?sslmode=require&password=s3cret&sslpassword=k3y');
    expect(query).not.toContain('s3cret');
    expect(query).not.toContain('k3y');
    expect(query).toContain('sslmode=require');
  });
});
