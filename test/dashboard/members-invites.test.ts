/**
 * Members and invitations, end to end: an invitation emailed (through a real SMTP server) with
 * its accept link, accepted by the invited address only, making a member with the invited role
 * and project roles; expiry, withdrawal and replacement; OpenAI's shapes through the official SDK
 * (users, invites, projects.users); a member removed or leaving takes nothing with them — their
 * keys are revoked (and the gateway refuses them at once) or handed to another member — and an
 * organization always keeps an owner.
 */
import { eq } from 'drizzle-orm';
import OpenAI, { AuthenticationError, BadRequestError, ConflictError, NotFoundError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invites } from '../../src/store/schema.ts';
import {
  Browser,
  createMember,
  expectError,
  expectOk,
  lastMail,
  linkToken,
  mailsTo,
  PUBLIC_URL,
  smtpUrlOf,
  strongPassword,
} from '../accounts/helpers.ts';
import { adminRequest, createSecondOrganization, type KeyportProjectKey } from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';
import { type SmtpReceiver, startSmtpServer } from '../notifications/servers.ts';

const INVITE_DAYS = 5;

async function refusal(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OpenAI.APIError) return error;
    throw error;
  }
  throw new Error('expected the request to be refused');
}

describe.each(backends)('members and invitations (%s)', (backend) => {
  let t: TestApp;
  let smtp: SmtpReceiver;
  let organizationId: string;
  let projectId: string;
  let admin: OpenAI['admin']['organization'];
  let owner: { id: string; email: string; password: string; browser: Browser };
  let people = 0;

  beforeAll(async () => {
    smtp = await startSmtpServer();
    t = await createTestApp({
      backend,
      config: { publicUrl: PUBLIC_URL, smtpUrl: smtpUrlOf(smtp), inviteDays: INVITE_DAYS },
    });
    organizationId = t.instance.organization.id;
    projectId = t.instance.project.id;
    admin = t.sdk().admin.organization;
    // The first sign-up: the instance's owner, the only owner of its organization.
    const signedUp = await signUp('owner@example.com');
    expect(signedUp.user.id).toBe(t.instance.owner.id);
    owner = {
      id: signedUp.user.id,
      email: 'owner@example.com',
      password: signedUp.password,
      browser: signedUp.browser,
    };
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.close();
  });

  /** A new account through sign-up and the emailed link, signed in. */
  async function signUp(email: string) {
    const password = strongPassword(email);
    const browser = new Browser(t, `198.19.0.${++people}`);
    expectOk(
      await browser.post('/api/auth/signup', {
        email,
        password,
        name: email.split('@')[0],
        accept_terms: true,
      }),
      202,
    );
    const token = linkToken(lastMail(smtp, email, 'Verify your email').text, '/verify-email');
    const user = expectOk(await browser.post('/api/auth/verify-email', { token })).user;
    await browser.signIn(email, password);
    return { user, password, browser };
  }

  /** A member of the organization, in the default project as `projectRole`, signed in. */
  async function member(name: string, projectRole: 'member' | 'owner' = 'member') {
    const email = `${name}@example.com`;
    const password = strongPassword(name);
    const user = await createMember(t, organizationId, 'reader', email, password);
    await admin.projects.users.create(projectId, { user_id: user.id, role: projectRole });
    const browser = await new Browser(t, `198.19.1.${++people}`).signIn(email, password);
    return { user, browser };
  }

  /** A key the member makes for themselves on the dashboard: its secret and id. */
  async function keyOf(browser: Browser, name = 'My key') {
    const created = expectOk(
      await browser.post(`/api/organizations/${organizationId}/projects/${projectId}/api_keys`, { name }),
    );
    return { id: created.id as string, secret: created.value as string };
  }

  const gateway = (secret: string) => t.sdk({ apiKey: secret });

  it('an invitation is emailed with its link; accepting it makes a member with the invited roles', async () => {
    const research = await admin.projects.create({ name: 'Research' });
    const before = Math.floor(Date.now() / 1000);
    const invite = await admin.invites.create({
      email: 'Invitee@Example.com',
      role: 'reader',
      projects: [
        { id: projectId, role: 'member' },
        { id: research.id, role: 'owner' },
      ],
    });
    expect(invite).toMatchObject({
      object: 'organization.invite',
      email: 'invitee@example.com',
      role: 'reader',
      status: 'pending',
      accepted_at: null,
      projects: [
        { id: projectId, role: 'member' },
        { id: research.id, role: 'owner' },
      ],
    });
    expect(invite.id).toMatch(/^invite/);
    expect(invite.created_at).toBeGreaterThanOrEqual(before);
    expect(invite.expires_at! - invite.created_at).toBe(INVITE_DAYS * 86_400);
    expect(await admin.invites.retrieve(invite.id)).toEqual(invite);
    const listed = [];
    for await (const item of admin.invites.list()) listed.push(item);
    expect(listed).toContainEqual(invite);

    const mail = lastMail(smtp, 'invitee@example.com', 'You are invited to');
    expect(mail.headers.subject).toBe(`You are invited to ${t.instance.organization.name} on Keyport`);
    expect(mail.text).toContain('as a reader');
    expect(mail.text).toContain(`within ${INVITE_DAYS} days`);
    const token = linkToken(mail.text, '/accept-invite');

    // Accepting takes a session.
    expectError(await new Browser(t).post('/api/invites/accept', { token }), 401, 'not_authenticated');

    const invitee = await signUp('invitee@example.com');
    const accepted = expectOk(await invitee.browser.post('/api/invites/accept', { token }));
    expect(accepted).toEqual({ status: 'accepted', organization_id: organizationId, role: 'reader' });

    expect(await admin.users.retrieve(invitee.user.id)).toMatchObject({
      object: 'organization.user',
      id: invitee.user.id,
      email: 'invitee@example.com',
      role: 'reader',
    });
    expect(await admin.projects.users.retrieve(invitee.user.id, { project_id: projectId })).toMatchObject({
      object: 'organization.project.user',
      id: invitee.user.id,
      role: 'member',
    });
    expect(await admin.projects.users.retrieve(invitee.user.id, { project_id: research.id })).toMatchObject({
      role: 'owner',
    });
    const after = await admin.invites.retrieve(invite.id);
    expect(after.status).toBe('accepted');
    expect(after.accepted_at).toBeGreaterThanOrEqual(before);

    // The new member's organizations: their own, and this one as a reader.
    const theirs = expectOk(await invitee.browser.get('/api/organizations')).data;
    expect(theirs.map((o: { id: string; role: string }) => [o.id, o.role])).toContainEqual([
      organizationId,
      'reader',
    ]);
    expect(theirs).toHaveLength(2);
    // As a project owner of Research, they may change it; as a reader of the organization, not the rest.
    expectOk(
      await invitee.browser.post(`/api/organizations/${organizationId}/projects/${research.id}`, {
        name: 'Research 2',
      }),
    );
    expectError(
      await invitee.browser.post(`/api/organizations/${organizationId}/projects`, { name: 'Nope' }),
      403,
      'permission_denied',
    );

    // Once only.
    expectError(await invitee.browser.post('/api/invites/accept', { token }), 400, 'invalid_token');
  });

  it('an invitation is for the invited address, verified, and nobody else', async () => {
    await admin.invites.create({ email: 'alice@example.com', role: 'owner' });
    const token = linkToken(lastMail(smtp, 'alice@example.com', 'You are invited').text, '/accept-invite');
    expect(lastMail(smtp, 'alice@example.com', 'You are invited').text).toContain('as an owner');

    const bob = await signUp('bob@example.com');
    const refused = expectError(
      await bob.browser.post('/api/invites/accept', { token }),
      403,
      'permission_denied',
    );
    expect(refused.message).toContain('alice@example.com');
    await refusal(admin.users.retrieve(bob.user.id)).then((e) => expect(e).toBeInstanceOf(NotFoundError));

    const alice = await signUp('alice@example.com');
    expect(expectOk(await alice.browser.post('/api/invites/accept', { token })).role).toBe('owner');
    expect((await admin.users.retrieve(alice.user.id)).role).toBe('owner');
    // Two owners now: either may be demoted; demoted back, Alice is a reader (cleanup for the tests below).
    expect((await admin.users.update(alice.user.id, { role: 'reader' })).role).toBe('reader');
  });

  it('an expired, withdrawn or replaced invitation does not work', async () => {
    const carol = await signUp('carol@example.com');

    // Expired.
    const expired = await admin.invites.create({ email: 'carol@example.com', role: 'reader' });
    const expiredToken = linkToken(
      lastMail(smtp, 'carol@example.com', 'You are invited').text,
      '/accept-invite',
    );
    await t.services.store.db
      .update(invites)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(invites.id, expired.id));
    expect((await admin.invites.retrieve(expired.id)).status).toBe('expired');
    expectError(
      await carol.browser.post('/api/invites/accept', { token: expiredToken }),
      400,
      'invalid_token',
    );

    // Replaced: a new invitation to the address; the older link stops working.
    const first = await admin.invites.create({ email: 'carol@example.com', role: 'reader' });
    const firstToken = linkToken(
      lastMail(smtp, 'carol@example.com', 'You are invited').text,
      '/accept-invite',
    );
    const second = await admin.invites.create({ email: 'carol@example.com', role: 'reader' });
    const secondToken = linkToken(
      lastMail(smtp, 'carol@example.com', 'You are invited').text,
      '/accept-invite',
    );
    expect(secondToken).not.toBe(firstToken);
    expect((await refusal(admin.invites.retrieve(first.id))).status).toBe(404);
    expectError(await carol.browser.post('/api/invites/accept', { token: firstToken }), 400, 'invalid_token');

    // Withdrawn.
    expect(await admin.invites.delete(second.id)).toEqual({
      object: 'organization.invite.deleted',
      id: second.id,
      deleted: true,
    });
    expect(await refusal(admin.invites.retrieve(second.id))).toBeInstanceOf(NotFoundError);
    expectError(
      await carol.browser.post('/api/invites/accept', { token: secondToken }),
      400,
      'invalid_token',
    );
    await refusal(admin.users.retrieve(carol.user.id)).then((e) => expect(e).toBeInstanceOf(NotFoundError));

    // Nonsense.
    expectError(
      await carol.browser.post('/api/invites/accept', { token: 'x'.repeat(43) }),
      400,
      'invalid_token',
    );
  });

  it('an invitation to a member, a bad address or another organization’s project is refused', async () => {
    const existing = await refusal(
      admin.invites.create({ email: owner.email.toUpperCase(), role: 'reader' }),
    );
    expect(existing).toBeInstanceOf(ConflictError);
    expect(existing.code).toBe('conflict');
    const bad = await refusal(admin.invites.create({ email: 'not an address', role: 'reader' }));
    expect(bad).toBeInstanceOf(BadRequestError);
    const other = await createSecondOrganization(t);
    const foreign = await refusal(
      admin.invites.create({
        email: 'dave@example.com',
        role: 'reader',
        projects: [{ id: other.project.id, role: 'owner' }],
      }),
    );
    expect(foreign).toBeInstanceOf(NotFoundError);
    expect(mailsTo(smtp, 'dave@example.com')).toEqual([]);
  });

  it('users and project users in OpenAI’s shapes, through the SDK', async () => {
    const { user } = await member('erin');
    const listed = [];
    for await (const u of admin.users.list({ limit: 2 })) listed.push(u);
    expect(listed.map((u) => u.id)).toContain(user.id);
    expect(listed.map((u) => u.id)).toContain(owner.id);
    const erin = await admin.users.retrieve(user.id);
    expect(erin).toEqual({
      object: 'organization.user',
      id: user.id,
      name: 'erin',
      email: 'erin@example.com',
      role: 'reader',
      added_at: expect.any(Number),
    });
    expect((await admin.users.update(user.id, { role: 'owner' })).role).toBe('owner');
    expect((await admin.users.update(user.id, { role: 'reader' })).role).toBe('reader');

    // The organization always keeps an owner.
    const demote = await refusal(admin.users.update(owner.id, { role: 'reader' }));
    expect(demote).toBeInstanceOf(BadRequestError);
    expect(demote.message).toMatch(/needs an owner/);
    expect((await admin.users.retrieve(owner.id)).role).toBe('owner');
    const removeLast = await refusal(admin.users.delete(owner.id));
    expect(removeLast).toBeInstanceOf(BadRequestError);

    // Project users.
    const lab = await admin.projects.create({ name: 'Lab' });
    const added = await admin.projects.users.create(lab.id, { user_id: user.id, role: 'member' });
    expect(added).toMatchObject({
      object: 'organization.project.user',
      id: user.id,
      role: 'member',
      email: 'erin@example.com',
    });
    const byEmail = await admin.projects.users.create(lab.id, { email: owner.email, role: 'owner' });
    expect(byEmail.id).toBe(owner.id);
    const projectUsers = [];
    for await (const u of admin.projects.users.list(lab.id)) projectUsers.push(u);
    expect(projectUsers.map((u) => [u.id, u.role])).toEqual([
      [user.id, 'member'],
      [owner.id, 'owner'],
    ]);
    expect((await admin.projects.users.update(user.id, { project_id: lab.id, role: 'owner' })).role).toBe(
      'owner',
    );
    expect(await admin.projects.users.delete(user.id, { project_id: lab.id })).toEqual({
      object: 'organization.project.user.deleted',
      id: user.id,
      deleted: true,
    });
    expect(await refusal(admin.projects.users.retrieve(user.id, { project_id: lab.id }))).toBeInstanceOf(
      NotFoundError,
    );
    // Only members of the organization join its projects.
    const outsider = await signUp('frank@example.com');
    expect(
      await refusal(admin.projects.users.create(lab.id, { user_id: outsider.user.id, role: 'member' })),
    ).toBeInstanceOf(BadRequestError);
  });

  it('a removed member’s keys are revoked: the gateway refuses them at once', async () => {
    const { user, browser } = await member('gina');
    const key = await keyOf(browser);
    expect((await gateway(key.secret).models.list()).data.length).toBeGreaterThan(0);

    expect(await admin.users.delete(user.id)).toEqual({
      object: 'organization.user.deleted',
      id: user.id,
      deleted: true,
    });

    const refused = await refusal(gateway(key.secret).models.list());
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect(refused.status).toBe(401);
    expect(refused.code).toBe('invalid_api_key');
    // Out of the organization and its projects.
    expect(await refusal(admin.users.retrieve(user.id))).toBeInstanceOf(NotFoundError);
    expect(await refusal(admin.projects.users.retrieve(user.id, { project_id: projectId }))).toBeInstanceOf(
      NotFoundError,
    );
    expectError(await browser.get(`/api/organizations/${organizationId}/projects`), 404, 'not_found');
  });

  it('a member removed from a project loses their keys in it, and only those', async () => {
    const { user, browser } = await member('jess');
    const lab = await admin.projects.create({ name: 'Jess lab' });
    await admin.projects.users.create(lab.id, { user_id: user.id, role: 'member' });
    const inLab = expectOk(
      await browser.post(`/api/organizations/${organizationId}/projects/${lab.id}/api_keys`, {
        name: 'lab key',
      }),
    );
    const elsewhere = await keyOf(browser, 'default project key');
    expect((await gateway(inLab.value as string).models.list()).data.length).toBeGreaterThan(0);

    await admin.projects.users.delete(user.id, { project_id: lab.id });

    const refused = await refusal(gateway(inLab.value as string).models.list());
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect((await gateway(elsewhere.secret).models.list()).data.length).toBeGreaterThan(0);
    const entries = [];
    for await (const e of admin.auditLogs.list({ resource_ids: [inLab.id as string] })) entries.push(e.type);
    expect(entries).toEqual(['api_key.deleted', 'api_key.created']);
  });

  it('a removed member’s keys can be handed to another member instead, and keep working', async () => {
    const { user, browser } = await member('hank');
    const key = await keyOf(browser);
    const path = `/users/${user.id}`;

    // Only to a member of the organization, and nothing happens otherwise.
    const outsider = await adminRequest(t, 'DELETE', path, {
      body: { keys: 'transfer', transfer_to: 'user_nobody' },
    });
    expect(outsider.status).toBe(400);
    expect((outsider.body as { error: { param: string } }).error.param).toBe('transfer_to');
    const missing = await adminRequest(t, 'DELETE', path, { body: { keys: 'transfer' } });
    expect(missing.status).toBe(400);
    expect((await admin.users.retrieve(user.id)).id).toBe(user.id);

    const removed = await adminRequest(t, 'DELETE', path, {
      body: { keys: 'transfer', transfer_to: owner.id },
    });
    expect(removed.status, removed.text).toBe(200);
    expect(removed.body).toEqual({ object: 'organization.user.deleted', id: user.id, deleted: true });
    expect((await gateway(key.secret).models.list()).data.length).toBeGreaterThan(0);
    const after = await adminRequest<KeyportProjectKey>(
      t,
      'GET',
      `/projects/${projectId}/api_keys/${key.id}`,
    );
    expect(after.body.owner.user?.id).toBe(owner.id);
  });

  it('keys go only to someone who could hold them: a project key to a member of its project, an admin key to an owner', async () => {
    const { user, browser } = await member('lena');
    const key = await keyOf(browser);
    // A reader who is not in the key's project cannot receive it; nothing changes.
    const outsider = await createMember(
      t,
      organizationId,
      'reader',
      'outsider@example.com',
      strongPassword('outsider'),
    );
    const refused = await adminRequest(t, 'DELETE', `/users/${user.id}`, {
      body: { keys: 'transfer', transfer_to: outsider.id },
    });
    expect(refused.status, refused.text).toBe(400);
    expect((refused.body as { error: { message: string } }).error.message).toContain(key.id);
    expect((await admin.users.retrieve(user.id)).id).toBe(user.id);
    expect((await gateway(key.secret).models.list()).data.length).toBeGreaterThan(0);
    // A member of the project can.
    await admin.projects.users.create(projectId, { user_id: outsider.id, role: 'member' });
    expect(
      (
        await adminRequest(t, 'DELETE', `/users/${user.id}`, {
          body: { keys: 'transfer', transfer_to: outsider.id },
        })
      ).status,
    ).toBe(200);
    expect((await gateway(key.secret).models.list()).data.length).toBeGreaterThan(0);
  });

  it('an owner made a reader loses the admin keys they made as an owner', async () => {
    const { user, browser } = await member('mona');
    await admin.users.update(user.id, { role: 'owner' });
    const created = expectOk(
      await browser.post(`/api/organizations/${organizationId}/admin_api_keys`, { name: 'Mona admin' }),
    );
    const asMona = t.sdk({ adminKey: created.value as string }).admin.organization;
    expect((await asMona.projects.list()).data.length).toBeGreaterThan(0);
    await admin.users.update(user.id, { role: 'reader' });
    expect(await refusal(asMona.projects.list())).toBeInstanceOf(AuthenticationError);
    const entries = [];
    for await (const e of admin.auditLogs.list({ resource_ids: [created.id as string] }))
      entries.push(e.type);
    expect(entries).toEqual(['api_key.deleted', 'api_key.created']);
  });

  it('a new organization starts its log with its owner and default project; an account owns at most 20', async () => {
    const { user, browser } = await signUp('founder@example.com');
    const created = expectOk(await browser.post('/api/organizations', { name: 'Founded' }));
    const log = expectOk(await browser.get(`/api/organizations/${created.id}/audit_logs`));
    const types = (log.data as { type: string; actor: { session: { user: { id: string } } } }[]).map((e) => [
      e.type,
      e.actor.session.user.id,
    ]);
    expect(types.reverse()).toEqual([
      ['user.added', user.id],
      ['project.created', user.id],
    ]);
    // Sign-up made one, this is the second: 18 more, then no more.
    for (let i = 0; i < 18; i++) expectOk(await browser.post('/api/organizations', { name: `Org ${i}` }));
    expectError(await browser.post('/api/organizations', { name: 'One too many' }), 400, 'invalid_request');
  });

  it('project roles given or granted by an invitation are recorded; an unchanged role is not', async () => {
    const lab = await admin.projects.create({ name: 'Invited lab' });
    const invite = await admin.invites.create({
      email: 'nora@example.com',
      role: 'reader',
      projects: [{ id: lab.id, role: 'member' }],
    });
    const { user, browser } = await signUp('nora@example.com');
    const token = linkToken(lastMail(smtp, 'nora@example.com', 'You are invited to').text, '/accept-invite');
    expectOk(await browser.post('/api/invites/accept', { token }));
    const ofLab = async () => {
      const out = [];
      for await (const e of admin.auditLogs.list({ project_ids: [lab.id], resource_ids: [user.id] }))
        out.push(e.type);
      return out;
    };
    expect(await ofLab()).toEqual(['user.added']);
    expect(invite.id).toMatch(/^invite-/);
    await admin.projects.users.update(user.id, { project_id: lab.id, role: 'member' }); // unchanged
    expect(await ofLab()).toEqual(['user.added']);
    await admin.projects.users.update(user.id, { project_id: lab.id, role: 'owner' });
    expect(await ofLab()).toEqual(['user.updated', 'user.added']);
  });

  it('a member can leave (their keys revoked); the last owner cannot', async () => {
    const ivy = await member('ivy');
    const ivyKey = await keyOf(ivy.browser);
    expect(expectOk(await ivy.browser.post(`/api/organizations/${organizationId}/leave`))).toEqual({
      object: 'organization.user.deleted',
      id: ivy.user.id,
      deleted: true,
    });
    expect(await refusal(gateway(ivyKey.secret).models.list())).toBeInstanceOf(AuthenticationError);
    expect(expectOk(await ivy.browser.get('/api/organizations')).data).toEqual([]);
    expect(await refusal(admin.users.retrieve(ivy.user.id))).toBeInstanceOf(NotFoundError);
    // Gone is gone: leaving again, or acting there, is a 404.
    expectError(await ivy.browser.post(`/api/organizations/${organizationId}/leave`), 404, 'not_found');

    // Whoever leaves cannot keep a key alive by handing it over: they have seen its secret.
    const jack = await member('jack');
    const jackKey = await keyOf(jack.browser);
    expectError(
      await jack.browser.post(`/api/organizations/${organizationId}/leave`, {
        keys: 'transfer',
        transfer_to: owner.id,
      }),
      400,
      'invalid_request',
    );
    expect((await admin.users.retrieve(jack.user.id)).id).toBe(jack.user.id);
    expectOk(await jack.browser.post(`/api/organizations/${organizationId}/leave`));
    expect(await refusal(gateway(jackKey.secret).models.list())).toBeInstanceOf(AuthenticationError);

    // The only owner stays.
    const last = expectError(
      await owner.browser.post(`/api/organizations/${organizationId}/leave`),
      400,
      'invalid_request',
    );
    expect(last.message).toMatch(/last owner/);
    expect((await admin.users.retrieve(owner.id)).role).toBe('owner');

    // Another owner may leave, since one remains.
    const kate = await member('kate');
    await admin.users.update(kate.user.id, { role: 'owner' });
    expectOk(await kate.browser.post(`/api/organizations/${organizationId}/leave`));
    expect(await refusal(admin.users.retrieve(kate.user.id))).toBeInstanceOf(NotFoundError);
    expectError(
      await owner.browser.post(`/api/organizations/${organizationId}/leave`),
      400,
      'invalid_request',
    );
  });
});
