/** The verification core against real databases: denials as data, caching, immediate invalidation. */

import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bootstrap, DEFAULT_BOOTSTRAP } from '../../src/accounts/bootstrap.ts';
import { ProjectService } from '../../src/accounts/project-service.ts';
import { generateKey } from '../../src/core/key-format.ts';
import { LocalKeyChangeNotifier, PostgresKeyChangeNotifier } from '../../src/keys/key-change-notifier.ts';
import { KeyService } from '../../src/keys/key-service.ts';
import { LastUsedRecorder } from '../../src/keys/last-used-recorder.ts';
import { KeyVerifier } from '../../src/keys/verify-key.ts';
import type { Store } from '../../src/store/database.ts';
import { backends, openTestStore, POSTGRES_URL, TEST_ACTOR } from '../helpers/stores.ts';

/** Counts the queries that reach the database driver (prepared or not). */
function countQueries(store: Store): () => number {
  const spy = store.pglite ? vi.spyOn(store.pglite, 'query') : vi.spyOn(store.pool!, 'query');
  return () => spy.mock.calls.length;
}

describe.each(backends)('verifyKey on %s', (backend) => {
  let store: Store;
  let verifier: KeyVerifier;
  let keys: KeyService;
  let projects: ProjectService;
  let lastUsed: LastUsedRecorder;
  let lookups: () => number;
  let orgId: string;
  let projectId: string;
  let ownerId: string;

  beforeAll(async () => {
    store = await openTestStore(backend);
    lookups = countQueries(store);
    lastUsed = new LastUsedRecorder(store.db, 60_000, () => {});
    // A long TTL: anything that must be seen at once has to come from invalidation, not expiry.
    verifier = new KeyVerifier(store.db, { keyPrefix: 'kp', cacheTtlMs: 60_000, lastUsed });
    const notifier = new LocalKeyChangeNotifier(verifier);
    keys = new KeyService(store.db, { keyPrefix: 'kp', notifier, lastUsed });
    projects = new ProjectService(store.db, notifier);
    const instance = await bootstrap(store.db, keys, DEFAULT_BOOTSTRAP);
    orgId = instance.organization.id;
    projectId = instance.project.id;
    ownerId = instance.owner.id;
  });
  afterAll(() => store.close());

  const scope = () => ({ organizationId: orgId, projectId });
  const createKey = (extra: Partial<Parameters<KeyService['create']>[0]> = {}) =>
    keys.create(
      {
        organizationId: orgId,
        projectId,
        kind: 'proj',
        name: 'k',
        ownerUserId: ownerId,
        ...extra,
      },
      TEST_ACTOR,
    );

  it('accepts a valid key with its project and organization, and records its use', async () => {
    const { key, secret } = await createKey({ scopes: ['api.model.read'], allowedModels: ['gpt-4o*'] });
    const result = await verifier.verify(secret);
    expect(result.valid).toBe(true);
    if (!result.valid) return;
    expect(result.key.id).toBe(key.id);
    expect(result.key.kind).toBe('proj');
    expect(result.project?.id).toBe(projectId);
    expect(result.organization.id).toBe(orgId);
    expect(result.key.permissions).toEqual({ mode: 'restricted', resources: { model: 'read' } });
    expect(result.key.allowsModel('gpt-4o-mini')).toBe(true);
    expect(result.key.allowsModel('o3')).toBe(false);
    expect(lastUsed.merge(key.id, null)).toBeInstanceOf(Date);
    await lastUsed.flush();
    expect((await keys.get(scope(), key.id)).lastUsedAt).toBeInstanceOf(Date);
  });

  it('rejects malformed keys and bad checksums before any lookup', async () => {
    const before = lookups();
    const good = generateKey('kp', 'proj');
    const flipped = good.slice(0, -1) + (good.endsWith('a') ? 'b' : 'a');
    for (const secret of ['', 'hello', flipped, `${good}x`, 'sk-proj-abcdef']) {
      const result = await verifier.verify(secret);
      expect(result).toMatchObject({ valid: false, code: 'MALFORMED' });
      if (!result.valid) expect(result.redactedValue).not.toBe(secret.length > 16 ? secret : '\0');
    }
    // Another deployment's prefix: well-formed, but cannot be ours.
    expect(await verifier.verify(generateKey('other', 'proj'))).toMatchObject({
      valid: false,
      code: 'NOT_FOUND',
    });
    expect(lookups()).toBe(before);
  });

  it('caches hits and misses: a second verification does not touch the database', async () => {
    const { secret } = await createKey();
    const unknown = generateKey('kp', 'proj');
    const first = lookups();
    expect(await verifier.verify(unknown)).toMatchObject({ valid: false, code: 'NOT_FOUND' });
    expect(lookups()).toBe(first + 1); // the counter sees real lookups
    await verifier.verify(secret);
    const before = lookups();
    for (let i = 0; i < 5; i++) {
      expect((await verifier.verify(secret)).valid).toBe(true);
      expect(await verifier.verify(unknown)).toMatchObject({ valid: false, code: 'NOT_FOUND' });
    }
    expect(lookups()).toBe(before);
  });

  it('sees a revocation at once despite the cache', async () => {
    const { key, secret } = await createKey();
    expect((await verifier.verify(secret)).valid).toBe(true);
    await keys.revoke(scope(), key.id, TEST_ACTOR);
    expect(await verifier.verify(secret)).toMatchObject({ valid: false, code: 'REVOKED', keyId: key.id });
  });

  it('does not cache a lookup that was in flight when an invalidation came', async () => {
    const { key, secret } = await createKey();
    // The lookup reads the key as it was; the change it raced is announced before it returns.
    const racing = verifier.verify(secret);
    verifier.invalidateKey(key.id);
    expect((await racing).valid).toBe(true);
    // The change itself (written without announcing it here): the next request must read it.
    await store.db.execute(sql`update api_keys set revoked_at = now() where id = ${key.id}`);
    expect(await verifier.verify(secret)).toMatchObject({ valid: false, code: 'REVOKED' });
  });

  it('sees updates at once: disabled, IP allow-list, re-enabled', async () => {
    const { key, secret } = await createKey();
    expect((await verifier.verify(secret, { ip: '192.168.1.1' })).valid).toBe(true);
    await keys.update(scope(), key.id, { enabled: false }, TEST_ACTOR);
    expect(await verifier.verify(secret)).toMatchObject({ valid: false, code: 'DISABLED' });
    await keys.update(
      scope(),
      key.id,
      { enabled: true, allowedIps: ['10.0.0.0/8', '2001:db8::/32'] },
      TEST_ACTOR,
    );
    expect((await verifier.verify(secret, { ip: '10.9.8.7' })).valid).toBe(true);
    expect((await verifier.verify(secret, { ip: '2001:db8::42' })).valid).toBe(true);
    expect(await verifier.verify(secret, { ip: '192.168.1.1' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
  });

  it('applies the project IP allow-list and archiving to every key of the project', async () => {
    const project = await projects.create(orgId, { name: 'Fenced' }, TEST_ACTOR);
    const { secret } = await createKey({ projectId: project.id });
    expect((await verifier.verify(secret, { ip: '203.0.113.5' })).valid).toBe(true);
    await projects.update(orgId, project.id, { allowedIps: ['198.51.100.0/24'] }, TEST_ACTOR);
    expect(await verifier.verify(secret, { ip: '203.0.113.5' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect((await verifier.verify(secret, { ip: '198.51.100.7' })).valid).toBe(true);
    await projects.archive(orgId, project.id, TEST_ACTOR);
    expect(await verifier.verify(secret, { ip: '198.51.100.7' })).toMatchObject({ code: 'PROJECT_ARCHIVED' });
  });

  it('expires a key at its expiry, even while cached', async () => {
    const expiresAt = new Date(Date.now() + 3_600_000);
    const { secret } = await createKey({ expiresAt });
    expect((await verifier.verify(secret)).valid).toBe(true);
    expect(await verifier.verify(secret, { now: new Date(expiresAt.getTime() + 1) })).toMatchObject({
      valid: false,
      code: 'EXPIRED',
    });
  });

  it('rotation: the old secret works until the grace period ends, then is refused', async () => {
    const { key, secret: old } = await createKey();
    expect((await verifier.verify(old)).valid).toBe(true);
    const rotated = await keys.rotate(scope(), key.id, 600, TEST_ACTOR);
    expect(rotated.key.id).toBe(key.id);
    expect(rotated.secret).not.toBe(old);
    const now = Date.now();
    expect((await verifier.verify(old)).valid).toBe(true);
    expect((await verifier.verify(rotated.secret)).valid).toBe(true);
    const later = new Date(now + 601_000);
    expect(await verifier.verify(old, { now: later })).toMatchObject({ valid: false, code: 'ROTATED' });
    expect((await verifier.verify(rotated.secret, { now: later })).valid).toBe(true);
    // Grace 0: the previous secret stops at once.
    const again = await keys.rotate(scope(), key.id, 0, TEST_ACTOR);
    expect(await verifier.verify(rotated.secret)).toMatchObject({ valid: false, code: 'ROTATED' });
    expect((await verifier.verify(again.secret)).valid).toBe(true);
  });

  it('refuses to update an expired key (as OpenAI does) but still lets it be revoked', async () => {
    let clock = Date.now();
    const timed = new KeyService(store.db, {
      keyPrefix: 'kp',
      notifier: new LocalKeyChangeNotifier(verifier),
      now: () => new Date(clock),
    });
    const { key, secret } = await createKey({ expiresAt: new Date(clock + 60_000) });
    clock += 61_000;
    await expect(timed.update(scope(), key.id, { name: 'late' }, TEST_ACTOR)).rejects.toMatchObject({
      status: 400,
    });
    expect((await timed.get(scope(), key.id)).name).toBe('k');
    await timed.revoke(scope(), key.id, TEST_ACTOR);
    expect(await verifier.verify(secret)).toMatchObject({ valid: false, code: 'REVOKED' });
  });

  it('refuses bad restrictions with 400s and writes nothing', async () => {
    const before = (await keys.list(scope(), { limit: 100, order: 'asc' })).items.length;
    await expect(createKey({ allowedIps: ['10.0.0.0/33'] })).rejects.toMatchObject({
      status: 400,
      param: 'allowed_ips',
    });
    await expect(createKey({ allowedModels: ['gpt-[4'] })).rejects.toMatchObject({
      status: 400,
      param: 'allowed_models',
    });
    await expect(createKey({ scopes: ['api.everything'] })).rejects.toMatchObject({
      status: 400,
      param: 'scopes',
    });
    await expect(createKey({ expiresAt: new Date(Date.now() - 1000) })).rejects.toMatchObject({
      status: 400,
    });
    await expect(createKey({ name: '' })).rejects.toMatchObject({ status: 400, param: 'name' });
    expect((await keys.list(scope(), { limit: 100, order: 'asc' })).items.length).toBe(before);
  });
});

describe.skipIf(!POSTGRES_URL)('revocation across instances on PostgreSQL', () => {
  it('a key revoked on one instance is refused by another within a second (LISTEN/NOTIFY), long before the cache TTL', async () => {
    const store = await openTestStore('postgres');
    const make = async () => {
      const verifier = new KeyVerifier(store.db, { keyPrefix: 'kp', cacheTtlMs: 60_000 });
      const notifier = await PostgresKeyChangeNotifier.start(store.pool!, verifier, () => {});
      return { verifier, notifier, keys: new KeyService(store.db, { keyPrefix: 'kp', notifier }) };
    };
    const a = await make();
    const b = await make();
    try {
      const instance = await bootstrap(store.db, a.keys, DEFAULT_BOOTSTRAP);
      const { key, secret } = await a.keys.create(
        {
          organizationId: instance.organization.id,
          projectId: instance.project.id,
          kind: 'proj',
          name: 'shared',
          ownerUserId: instance.owner.id,
        },
        TEST_ACTOR,
      );
      expect((await b.verifier.verify(secret)).valid).toBe(true); // now cached on B for 60 s
      await a.keys.revoke(
        { organizationId: instance.organization.id, projectId: instance.project.id },
        key.id,
        TEST_ACTOR,
      );
      // The NOTIFY's way through PostgreSQL: a moment, or more on a busy machine.
      const deadline = Date.now() + 10_000;
      let result = await b.verifier.verify(secret);
      while (result.valid && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        result = await b.verifier.verify(secret);
      }
      expect(result).toMatchObject({ valid: false, code: 'REVOKED' });
    } finally {
      await a.notifier.close();
      await b.notifier.close();
      await store.close();
    }
  });

  it('listens again after its connection is killed, and a closed notifier ignores its old connection dying', async () => {
    const store = await openTestStore('postgres');
    const errors: unknown[] = [];
    const verifier = new KeyVerifier(store.db, { keyPrefix: 'kp', cacheTtlMs: 60_000 });
    const notifier = await PostgresKeyChangeNotifier.start(store.pool!, verifier, (error) =>
      errors.push(error),
    );
    const terminateListeners = () =>
      store.pool!.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen%'`,
      );
    try {
      const invalidated: string[] = [];
      notifier.on('limits', (id) => invalidated.push(id));
      await terminateListeners();
      // The broken connection drops every cached entry, then the notifier listens again.
      await vi.waitFor(() => expect(invalidated).toContain('*'), { timeout: 5000, interval: 20 });
      expect(errors.length).toBeGreaterThan(0);
      // Listening again: a change is seen twice, locally and when its NOTIFY comes back.
      await vi.waitFor(
        async () => {
          const before = invalidated.length;
          await notifier.changed('limits', 'org-x');
          await new Promise((resolve) => setTimeout(resolve, 200));
          expect(invalidated.slice(before)).toEqual(['org-x', 'org-x']);
        },
        { timeout: 8000, interval: 50 },
      );
    } finally {
      await notifier.close();
    }
    // Its connection went back to the pool; killing it now (as dropping the database does) must not
    // throw: the notifier once released it a second time from its error handler, crashing the process.
    const { rows } = await store.pool!.query<{ name: string }>('select current_database() as name');
    const outside = new pg.Client({ connectionString: POSTGRES_URL });
    await outside.connect();
    try {
      const killed = await outside.query(
        'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1',
        [rows[0]!.name],
      );
      expect(killed.rowCount).toBeGreaterThan(0);
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      await outside.end();
    }
    await store.close();
  });
});
