/**
 * The audit log through the official SDK's client.admin.organization.auditLogs: every change to
 * keys, projects, service accounts, invites and settings is recorded once, with the actor (the
 * admin key, its IP and user agent) and what changed, nested under the type's name; OpenAI's
 * filters and cursors; a change whose audit entry cannot be written does not happen; retention.
 */
import { sql } from 'drizzle-orm';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import { purgeExpiredAuditLogs } from '../../src/guard/audit-query.ts';
import { auditLogs } from '../../src/store/schema.ts';
import {
  adminRequest,
  createProjectKey,
  createSecondOrganization,
  expectApiError,
} from '../helpers/admin-api.ts';
import { backends, TEST_ACTOR } from '../helpers/stores.ts';
import { createTestApp, injectFetch, type TestApp } from '../helpers/test-app.ts';

type Entry = OpenAI.Admin.Organization.AuditLogListResponse & Record<string, unknown>;
const USER_AGENT = 'audit-test/1.0';

describe.each(backends)('audit log (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = new OpenAI({
      baseURL: 'http://keyport.test/v1',
      adminAPIKey: t.adminKey,
      maxRetries: 0,
      fetch: injectFetch(t.app),
      defaultHeaders: { 'user-agent': USER_AGENT },
    });
  });
  afterAll(() => t?.close());

  const audit = (c: OpenAI) => c.admin.organization.auditLogs;
  const all = async (query: OpenAI.Admin.Organization.AuditLogListParams = {}): Promise<Entry[]> => {
    const out: Entry[] = [];
    for await (const entry of audit(client).list({ limit: 100, ...query })) out.push(entry as Entry);
    return out;
  };
  const about = (resourceId: string) => all({ resource_ids: [resourceId] });
  const adminKeyId = () => t.instance.adminKey.key.id;

  it('records a project key created, updated, rotated and revoked, once each, with the admin key as actor', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Audited' });
    const key = await createProjectKey(t, project.id, { scopes: ['api.model.read'] });
    await adminRequest(t, 'POST', `/projects/${project.id}/api_keys/${key.id}`, {
      body: { name: 'Renamed', allowed_models: ['gpt-4o*'] },
    });
    await adminRequest(t, 'POST', `/projects/${project.id}/api_keys/${key.id}/rotate`, {
      body: { grace_period_seconds: 60 },
    });
    await client.admin.organization.projects.apiKeys.delete(key.id, { project_id: project.id });

    const entries = await about(key.id);
    // Newest first.
    expect(entries.map((e) => e.type)).toEqual([
      'api_key.deleted',
      'api_key.updated',
      'api_key.updated',
      'api_key.created',
    ]);
    const [deleted, rotated, updated, created] = entries as [Entry, Entry, Entry, Entry];
    expect(created['api_key.created']).toMatchObject({
      id: key.id,
      data: { scopes: ['api.model.read'], name: key.name },
    });
    expect(updated['api_key.updated']).toEqual({
      id: key.id,
      changes_requested: { name: 'Renamed', allowed_models: ['gpt-4o*'] },
    });
    expect(rotated['api_key.updated']).toMatchObject({
      id: key.id,
      changes_requested: { secret_rotated: true, grace_period_seconds: 60 },
    });
    expect(deleted['api_key.deleted']).toMatchObject({ id: key.id });
    for (const entry of entries) {
      expect(entry.id).toMatch(/^audit_log/);
      expect(entry.project).toEqual({ id: project.id, name: 'Audited' });
      expect(entry.effective_at).toBeGreaterThan(Date.now() / 1000 - 60);
    }
    // The SDK call carried the user agent; adminRequest (raw inject) its own.
    expect(deleted.actor).toEqual({
      type: 'api_key',
      api_key: {
        id: adminKeyId(),
        type: 'user',
        user: { id: t.instance.owner.id, email: t.instance.owner.email },
      },
      ip_address: '127.0.0.1',
      user_agent: USER_AGENT,
    });
    // The owner's email finds what their admin key did, as the SDK's actor_emails filter asks.
    const byEmail = await client.admin.organization.auditLogs.list({
      actor_emails: [t.instance.owner.email.toUpperCase()],
      resource_ids: [key.id],
    });
    expect(byEmail.data.map((entry) => entry.id).sort()).toEqual(entries.map((entry) => entry.id).sort());
  });

  it('a key revoked by two requests at once is recorded once', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Twice' });
    const key = await createProjectKey(t, project.id);
    const replies = await Promise.all(
      [1, 2, 3].map(() => adminRequest(t, 'DELETE', `/projects/${project.id}/api_keys/${key.id}`)),
    );
    // Each succeeds or, once another has revoked it, finds no key to revoke.
    expect(replies.map((r) => r.status).filter((status) => status !== 200 && status !== 404)).toEqual([]);
    expect(replies.some((r) => r.status === 200)).toBe(true);
    expect((await about(key.id)).map((e) => e.type)).toEqual(['api_key.deleted', 'api_key.created']);
  });

  it('no secret in any entry', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Secrets' });
    const key = await createProjectKey(t, project.id);
    const rotated = await adminRequest<{ value: string }>(
      t,
      'POST',
      `/projects/${project.id}/api_keys/${key.id}/rotate`,
      {
        body: {},
      },
    );
    const admin = await client.admin.organization.adminAPIKeys.create({ name: 'Temp' });
    const text = JSON.stringify(await all());
    expect(text).not.toContain(key.value);
    expect(text).not.toContain(rotated.body.value);
    expect(text).not.toContain(admin.value);
    expect(text).not.toContain(t.adminKey);
  });

  it('records projects, service accounts (with their keys), admin keys and settings', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Lifecycle' });
    await client.admin.organization.projects.update(project.id, { name: 'Lifecycle 2' });
    const bot = await client.admin.organization.projects.serviceAccounts.create(project.id, { name: 'bot' });
    await client.admin.organization.projects.serviceAccounts.delete(bot.id, { project_id: project.id });
    await client.admin.organization.projects.archive(project.id);
    const admin = await client.admin.organization.adminAPIKeys.create({ name: 'Second admin' });
    await client.admin.organization.adminAPIKeys.delete(admin.id!);

    const ofProject = await all({ project_ids: [project.id] });
    expect(ofProject.map((e) => e.type).reverse()).toEqual([
      'project.created',
      'project.updated',
      'service_account.created',
      'api_key.created',
      'service_account.deleted',
      'api_key.deleted',
      'project.archived',
    ]);
    const byType = (type: string) => ofProject.find((e) => e.type === type)!;
    expect(byType('project.created')['project.created']).toMatchObject({
      id: project.id,
      data: { name: 'Lifecycle' },
    });
    expect(byType('project.updated')['project.updated']).toMatchObject({
      id: project.id,
      changes_requested: { title: 'Lifecycle 2' },
    });
    expect(byType('service_account.created')['service_account.created']).toMatchObject({
      id: bot.id,
      data: { role: 'member' },
    });
    expect(byType('api_key.deleted')['api_key.deleted']).toEqual({ id: bot.api_key!.id });

    const adminEntries = await about(admin.id!);
    expect(adminEntries.map((e) => e.type)).toEqual(['api_key.deleted', 'api_key.created']);
    expect(adminEntries[0]!.project).toBeUndefined();

    const settings = await adminRequest(t, 'POST', '/settings', { body: { audit_log_retention_days: 90 } });
    expect(settings.status).toBe(200);
    expect(settings.body).toMatchObject({ object: 'organization.settings', audit_log_retention_days: 90 });
    const [updated] = await all({ event_types: ['organization.updated'] });
    expect(updated!['organization.updated']).toEqual({
      id: t.instance.organization.id,
      changes_requested: { audit_log_retention_days: 90 },
    });
  });

  it('records invites sent and deleted', async () => {
    const invite = await client.admin.organization.invites.create({
      email: 'audit@example.test',
      role: 'reader',
    });
    await client.admin.organization.invites.delete(invite.id);
    const entries = await about(invite.id);
    expect(entries.map((e) => e.type)).toEqual(['invite.deleted', 'invite.sent']);
    expect(entries[1]!['invite.sent']).toMatchObject({
      id: invite.id,
      data: { email: 'audit@example.test' },
    });
  });

  it('filters by event type, actor, resource and time, and pages both ways with the SDK', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Filters' });
    const keys = [];
    for (let i = 0; i < 5; i++) keys.push(await createProjectKey(t, project.id, { name: `k${i}` }));
    const created = await all({ event_types: ['api_key.created'], project_ids: [project.id] });
    expect(created.map((e) => (e['api_key.created'] as { id: string }).id)).toEqual(
      keys.map((k) => k.id).reverse(),
    );
    expect(await all({ actor_ids: [adminKeyId()], project_ids: [project.id] })).toHaveLength(6);
    expect(await all({ actor_ids: ['key_nobody'], project_ids: [project.id] })).toHaveLength(0);
    expect(await all({ resource_ids: [keys[2]!.id, keys[3]!.id] })).toHaveLength(2);

    const now = Math.floor(Date.now() / 1000);
    expect(await all({ project_ids: [project.id], effective_at: { gte: now - 120 } })).toHaveLength(6);
    expect(await all({ project_ids: [project.id], effective_at: { lt: now - 120 } })).toHaveLength(0);
    expect(await all({ project_ids: [project.id], effective_at: { gt: now + 1 } })).toHaveLength(0);
    expect(await all({ project_ids: [project.id], effective_at: { lte: now + 1 } })).toHaveLength(6);

    // Pages of two: every entry once, newest first, the same as one page.
    const paged: string[] = [];
    for await (const entry of audit(client).list({ project_ids: [project.id], limit: 2 }))
      paged.push(entry.id);
    expect(paged).toEqual((await all({ project_ids: [project.id] })).map((e) => e.id));
    const first = await audit(client).list({ project_ids: [project.id], limit: 2 });
    expect(first.has_more).toBe(true);
    // `before` the third entry: the two newer ones, newest first.
    const before = await adminRequest<{ data: { id: string }[] }>(
      t,
      'GET',
      `/audit_logs?project_ids[]=${project.id}&before=${paged[2]}&limit=10`,
    );
    expect(before.body.data.map((e) => e.id)).toEqual(paged.slice(0, 2));
  });

  it("refuses bad filters in OpenAI's error shape", async () => {
    expectApiError(await adminRequest(t, 'GET', '/audit_logs?limit=0'), 400, 'invalid_request');
    expectApiError(
      await adminRequest(t, 'GET', '/audit_logs?effective_at[gt]=yesterday'),
      400,
      'invalid_request',
    );
    expectApiError(
      await adminRequest(t, 'GET', '/audit_logs?event_types[]=DROP%20TABLE'),
      400,
      'invalid_request',
    );
    expectApiError(await adminRequest(t, 'GET', '/audit_logs?colour=blue'), 400, 'invalid_request');
  });

  it('another organization sees none of these entries, and this one none of its', async () => {
    const other = await createSecondOrganization(t, 'Audit elsewhere');
    const otherClient = t.sdk({ adminKey: other.adminKey.secret });
    const otherProject = await otherClient.admin.organization.projects.create({ name: 'Theirs' });
    const theirs: string[] = [];
    for await (const e of otherClient.admin.organization.auditLogs.list()) theirs.push(e.id);
    expect(theirs.length).toBeGreaterThan(0);
    const ours = (await all()).map((e) => e.id);
    expect(ours.filter((id) => theirs.includes(id))).toEqual([]);
    expect(await all({ project_ids: [otherProject.id] })).toEqual([]);
    // A cursor from the other organization anchors nothing here.
    const foreign = await adminRequest<{ data: unknown[] }>(t, 'GET', `/audit_logs?after=${theirs[0]}`);
    expect(foreign.body.data).toEqual([]);
  });

  it('a change whose audit entry cannot be written does not happen', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Before' });
    const db = t.services.store.db;
    // The database refuses one particular entry: the project update it describes must roll back.
    await db.execute(sql`
      create or replace function refuse_marked_audit() returns trigger language plpgsql as $$
      begin
        if new.details::text like '%refuse-this-audit%' then raise exception 'audit refused'; end if;
        return new;
      end $$`);
    await db.execute(
      sql`create trigger refuse_marked_audit before insert on audit_logs for each row execute function refuse_marked_audit()`,
    );
    try {
      const refused = await adminRequest(t, 'POST', `/projects/${project.id}`, {
        body: { name: 'refuse-this-audit' },
      });
      expect(refused.status).toBe(500);
      expect((await client.admin.organization.projects.retrieve(project.id)).name).toBe('Before');

      const key = await createProjectKey(t, project.id, { name: 'Kept name' });
      const refusedKey = await adminRequest(t, 'POST', `/projects/${project.id}/api_keys/${key.id}`, {
        body: { name: 'refuse-this-audit' },
      });
      expect(refusedKey.status).toBe(500);
      expect(
        (await client.admin.organization.projects.apiKeys.retrieve(key.id, { project_id: project.id })).name,
      ).toBe('Kept name');
      const keyCreate = await adminRequest(t, 'POST', `/projects/${project.id}/api_keys`, {
        body: { name: 'refuse-this-audit' },
      });
      expect(keyCreate.status).toBe(500);
      const names = [];
      for await (const k of client.admin.organization.projects.apiKeys.list(project.id)) names.push(k.name);
      expect(names).toEqual(['Kept name']);
    } finally {
      await db.execute(sql`drop trigger refuse_marked_audit on audit_logs`);
    }
    // And a change refused by validation leaves no entry.
    const before = (await about(project.id)).length;
    expectApiError(
      await adminRequest(t, 'POST', `/projects/${project.id}`, { body: { allowed_ips: ['not an ip'] } }),
      400,
      'invalid_request',
    );
    expect(await about(project.id)).toHaveLength(before);
  });

  it('a service account whose first key is refused leaves neither account nor entry', async () => {
    const project = await client.admin.organization.projects.create({ name: 'Refused bot' });
    await expect(
      t.services.serviceAccounts.create(
        t.instance.organization.id,
        project.id,
        { name: 'bot', withoutKey: false, keyRestrictions: { expiresAt: new Date(Date.now() - 1000) } },
        TEST_ACTOR,
      ),
    ).rejects.toMatchObject({ status: 400 });
    expect(await all({ project_ids: [project.id], event_types: ['service_account.created'] })).toEqual([]);
    const accounts = await client.admin.organization.projects.serviceAccounts.list(project.id);
    expect(accounts.data).toEqual([]);
  });

  it('keeps entries as long as the retention says: per organization, else the instance default', async () => {
    const db = t.services.store.db;
    const other = await createSecondOrganization(t, 'Retention elsewhere');
    const org = t.instance.organization.id;
    const day = 86_400_000;
    const now = Date.now();
    const old = async (organizationId: string, ageDays: number) => {
      const id = newId('auditLog');
      await db.insert(auditLogs).values({
        id,
        organizationId,
        type: 'project.updated',
        effectiveAt: new Date(now - ageDays * day),
        actor: { type: 'system', system: { name: 'test' } },
        actorId: 'system:test',
        details: {},
      });
      return id;
    };
    const ids = {
      ours10: await old(org, 10),
      ours100: await old(org, 100),
      theirs100: await old(other.organization.id, 100),
      theirs400: await old(other.organization.id, 400),
    };
    // Ours keeps 90 days (set above or here); theirs follows the instance default.
    await adminRequest(t, 'POST', '/settings', { body: { audit_log_retention_days: 90 } });
    await purgeExpiredAuditLogs(db, 0, now);
    const remaining = async () => (await db.select({ id: auditLogs.id }).from(auditLogs)).map((r) => r.id);
    let left = await remaining();
    expect(left).toContain(ids.ours10);
    expect(left).not.toContain(ids.ours100);
    expect(left).toContain(ids.theirs100);
    expect(left).toContain(ids.theirs400);
    // An instance default of a year: theirs at 400 days goes, ours follows its own setting.
    await purgeExpiredAuditLogs(db, 365, now);
    left = await remaining();
    expect(left).toContain(ids.theirs100);
    expect(left).not.toContain(ids.theirs400);
    expect(left).toContain(ids.ours10);

    // At least 30 days: an owner cannot erase what was just recorded (their own change included).
    for (const days of [0, 29, 3651]) {
      expectApiError(
        await adminRequest(t, 'POST', '/settings', { body: { audit_log_retention_days: days } }),
        400,
        'invalid_request',
      );
    }
    expect(
      (await adminRequest(t, 'POST', '/settings', { body: { audit_log_retention_days: 30 } })).status,
    ).toBe(200);
    const reset = await adminRequest(t, 'POST', '/settings', { body: { audit_log_retention_days: null } });
    expect(reset.body).toMatchObject({
      audit_log_retention_days: null,
      effective_audit_log_retention_days: 0,
    });
  });
});
