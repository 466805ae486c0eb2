/**
 * Who belongs where: members of an organization (owner or reader), members of a project (owner
 * or member), invitations by email. An organization always keeps an owner. A member who leaves
 * or is removed takes nothing: their project keys are revoked, or handed to another member.
 * Every change is audited in the same transaction.
 */
import { createHash, randomBytes } from 'node:crypto';
import { and, asc, desc, eq, gt, inArray, isNull, sql } from 'drizzle-orm';
import type { Actor } from '../core/actor.ts';
import { ApiError, badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { KeyChangeNotifier } from '../keys/key-change-notifier.ts';
import { revokeKeysAudited } from '../keys/key-service.ts';
import type { Mailer } from '../notifications/mailer.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import { type Page, type PageRequest, toPage } from '../store/repositories/pagination.ts';
import {
  apiKeys,
  type InviteRow,
  invites,
  organizationMembers,
  organizations,
  projectMembers,
  projects,
  type UserRow,
  users,
} from '../store/schema.ts';
import { normalizeEmail } from './account-service.ts';

export type OrganizationRole = 'owner' | 'reader';
export type ProjectRole = 'owner' | 'member';

export interface Member {
  user: UserRow;
  role: OrganizationRole;
  addedAt: Date;
}

export interface ProjectMember {
  user: UserRow;
  role: ProjectRole;
  addedAt: Date;
}

export interface InviteInput {
  email: string;
  role: OrganizationRole;
  projects?: { id: string; role: ProjectRole }[] | undefined;
}

/** What happens to a leaving member's project keys. */
export type KeysOnLeave = { action: 'revoke' } | { action: 'transfer'; toUserId: string };

export interface MembershipOptions {
  publicUrl: string;
  inviteDays: number;
  mailer: Mailer;
  smtp: boolean;
  logEmail: (message: { to: string[]; subject: string; text: string }) => void;
  notifier: KeyChangeNotifier;
  now?: () => number;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

export class MembershipService {
  readonly #now: () => number;

  constructor(
    private readonly db: Db,
    private readonly options: MembershipOptions,
  ) {
    this.#now = options.now ?? Date.now;
  }

  // ---- organization members -------------------------------------------------------------------------

  async roleOf(organizationId: string, userId: string): Promise<OrganizationRole | undefined> {
    const [row] = await this.db
      .select({ role: organizationMembers.role })
      .from(organizationMembers)
      .where(
        and(eq(organizationMembers.organizationId, organizationId), eq(organizationMembers.userId, userId)),
      );
    return row?.role;
  }

  /** Members, in the order they joined, with `after` (a user id) cursors. */
  async members(
    organizationId: string,
    page: PageRequest & { emails?: string[] | undefined },
  ): Promise<Page<Member>> {
    const order = page.order === 'desc' ? desc : asc;
    const cursor = page.after
      ? sql`(${organizationMembers.createdAt}, ${organizationMembers.userId}) ${sql.raw(page.order === 'desc' ? '<' : '>')}
             (select created_at, user_id from organization_members where organization_id = ${organizationId} and user_id = ${page.after})`
      : undefined;
    const emails = page.emails?.map(normalizeEmail);
    const rows = await this.db
      .select({ user: users, role: organizationMembers.role, addedAt: organizationMembers.createdAt })
      .from(organizationMembers)
      .innerJoin(users, eq(users.id, organizationMembers.userId))
      .where(
        and(
          eq(organizationMembers.organizationId, organizationId),
          cursor,
          emails
            ? sql`lower(${users.email}) in (select jsonb_array_elements_text(${JSON.stringify(emails)}::jsonb))`
            : undefined,
        ),
      )
      .orderBy(order(organizationMembers.createdAt), order(organizationMembers.userId))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  async member(organizationId: string, userId: string): Promise<Member> {
    const [row] = await this.db
      .select({ user: users, role: organizationMembers.role, addedAt: organizationMembers.createdAt })
      .from(organizationMembers)
      .innerJoin(users, eq(users.id, organizationMembers.userId))
      .where(
        and(eq(organizationMembers.organizationId, organizationId), eq(organizationMembers.userId, userId)),
      );
    if (!row) throw notFound('user', userId);
    return row;
  }

  async setRole(
    organizationId: string,
    userId: string,
    role: OrganizationRole,
    actor: Actor,
  ): Promise<Member> {
    const revoked = await this.db.transaction(async (tx) => {
      const current = await this.#lockMembers(tx, organizationId);
      const member = current.find((m) => m.userId === userId);
      if (!member) throw notFound('user', userId);
      if (member.role === role) return [];
      if (member.role === 'owner' && current.filter((m) => m.role === 'owner').length === 1) {
        throw badRequest('An organization needs an owner: make someone else an owner first.', 'role');
      }
      await tx
        .update(organizationMembers)
        .set({ role })
        .where(
          and(eq(organizationMembers.organizationId, organizationId), eq(organizationMembers.userId, userId)),
        );
      await recordAudit(tx, {
        organizationId,
        type: 'user.updated',
        actor,
        resourceId: userId,
        details: { id: userId, changes_requested: { role } },
      });
      // Admin keys act as an owner: someone who is no longer one keeps none.
      if (role === 'owner') return [];
      return revokeKeysAudited(tx, and(eq(apiKeys.ownerUserId, userId), eq(apiKeys.kind, 'admin'))!, {
        organizationId,
        actor,
        at: new Date(this.#now()),
      });
    });
    for (const keyId of revoked) await this.options.notifier.keyChanged(keyId);
    return this.member(organizationId, userId);
  }

  /**
   * Removes a member (or a member leaving): out of every project of the organization, their
   * project keys revoked or handed to another member, the last owner kept.
   */
  async remove(organizationId: string, userId: string, keys: KeysOnLeave, actor: Actor): Promise<void> {
    const revoked = await this.db.transaction(async (tx) => {
      const current = await this.#lockMembers(tx, organizationId);
      const member = current.find((m) => m.userId === userId);
      if (!member) throw notFound('user', userId);
      if (member.role === 'owner' && current.filter((m) => m.role === 'owner').length === 1) {
        throw badRequest(
          'The last owner cannot leave: make someone else an owner first, or delete the organization.',
        );
      }
      const recipient =
        keys.action === 'transfer' ? current.find((m) => m.userId === keys.toUserId) : undefined;
      if (keys.action === 'transfer' && (keys.toUserId === userId || !recipient)) {
        throw badRequest('Keys can only be handed to another member of the organization.', 'transfer_to');
      }
      const owned = await tx
        .select({ id: apiKeys.id, projectId: apiKeys.projectId, kind: apiKeys.kind })
        .from(apiKeys)
        .where(
          and(
            eq(apiKeys.organizationId, organizationId),
            eq(apiKeys.ownerUserId, userId),
            isNull(apiKeys.revokedAt),
          ),
        );
      const now = new Date(this.#now());
      if (recipient && recipient.role !== 'owner') {
        // A key goes only to someone who could have made it: an admin key to an owner, a project
        // key to a member of its project.
        const memberOf = new Set(
          (
            await tx
              .select({ projectId: projectMembers.projectId })
              .from(projectMembers)
              .where(eq(projectMembers.userId, recipient.userId))
          ).map((r) => r.projectId),
        );
        const misfit = owned.find((k) => k.kind === 'admin' || !k.projectId || !memberOf.has(k.projectId));
        if (misfit) {
          throw badRequest(
            `Key '${misfit.id}' can only go to ${misfit.kind === 'admin' ? 'an owner of the organization' : 'a member of its project (or an owner)'}.`,
            'transfer_to',
          );
        }
      }
      let revoked: string[] = [];
      if (owned.length > 0 && keys.action === 'revoke') {
        revoked = await revokeKeysAudited(
          tx,
          inArray(
            apiKeys.id,
            owned.map((k) => k.id),
          ),
          { organizationId, actor, at: now },
        );
      } else if (owned.length > 0 && keys.action === 'transfer') {
        await tx
          .update(apiKeys)
          .set({ ownerUserId: keys.toUserId, updatedAt: now })
          .where(
            inArray(
              apiKeys.id,
              owned.map((k) => k.id),
            ),
          );
        for (const key of owned) {
          await recordAudit(tx, {
            organizationId,
            projectId: key.projectId,
            type: 'api_key.updated',
            actor,
            resourceId: key.id,
            details: { id: key.id, changes_requested: { owner_user_id: keys.toUserId } },
          });
        }
      }
      const orgProjects = tx
        .select({ id: projects.id })
        .from(projects)
        .where(eq(projects.organizationId, organizationId));
      await tx
        .delete(projectMembers)
        .where(and(eq(projectMembers.userId, userId), inArray(projectMembers.projectId, orgProjects)));
      await tx
        .delete(organizationMembers)
        .where(
          and(eq(organizationMembers.organizationId, organizationId), eq(organizationMembers.userId, userId)),
        );
      await recordAudit(tx, {
        organizationId,
        type: 'user.deleted',
        actor,
        resourceId: userId,
        details: { id: userId },
      });
      return revoked;
    });
    // Revoked keys stop working at once, on every instance.
    for (const keyId of revoked) await this.options.notifier.keyChanged(keyId);
  }

  async #lockMembers(tx: DbOrTx, organizationId: string) {
    return tx
      .select({ userId: organizationMembers.userId, role: organizationMembers.role })
      .from(organizationMembers)
      .where(eq(organizationMembers.organizationId, organizationId))
      .for('update');
  }

  // ---- project members --------------------------------------------------------------------------------

  async projectRoleOf(projectId: string, userId: string): Promise<ProjectRole | undefined> {
    const [row] = await this.db
      .select({ role: projectMembers.role })
      .from(projectMembers)
      .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)));
    return row?.role;
  }

  async projectMembers(projectId: string, page: PageRequest): Promise<Page<ProjectMember>> {
    const order = page.order === 'desc' ? desc : asc;
    const cursor = page.after
      ? sql`(${projectMembers.createdAt}, ${projectMembers.userId}) ${sql.raw(page.order === 'desc' ? '<' : '>')}
             (select created_at, user_id from project_members where project_id = ${projectId} and user_id = ${page.after})`
      : undefined;
    const rows = await this.db
      .select({ user: users, role: projectMembers.role, addedAt: projectMembers.createdAt })
      .from(projectMembers)
      .innerJoin(users, eq(users.id, projectMembers.userId))
      .where(and(eq(projectMembers.projectId, projectId), cursor))
      .orderBy(order(projectMembers.createdAt), order(projectMembers.userId))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  async projectMember(projectId: string, userId: string): Promise<ProjectMember> {
    const [row] = await this.db
      .select({ user: users, role: projectMembers.role, addedAt: projectMembers.createdAt })
      .from(projectMembers)
      .innerJoin(users, eq(users.id, projectMembers.userId))
      .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)));
    if (!row) throw notFound('user', userId);
    return row;
  }

  /** Adds a member of the organization to one of its projects, or changes their role there. */
  async setProjectRole(
    organizationId: string,
    projectId: string,
    userId: string,
    role: ProjectRole,
    actor: Actor,
  ): Promise<ProjectMember> {
    if (!(await this.roleOf(organizationId, userId))) {
      throw badRequest(
        `User '${userId}' is not a member of this organization: invite them first.`,
        'user_id',
      );
    }
    await this.db.transaction(async (tx) => {
      const existing = await tx
        .select({ role: projectMembers.role })
        .from(projectMembers)
        .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)));
      if (existing[0]?.role === role) return; // nothing changes, nothing to record
      await tx
        .insert(projectMembers)
        .values({ projectId, userId, role, createdAt: new Date(this.#now()) })
        .onConflictDoUpdate({ target: [projectMembers.projectId, projectMembers.userId], set: { role } });
      await recordAudit(tx, {
        organizationId,
        projectId,
        type: existing.length > 0 ? 'user.updated' : 'user.added',
        actor,
        resourceId: userId,
        details:
          existing.length > 0 ? { id: userId, changes_requested: { role } } : { id: userId, data: { role } },
      });
    });
    return this.projectMember(projectId, userId);
  }

  /**
   * Out of one project: their keys in it are revoked (as on OpenAI), since only being in the
   * project let them make those keys; the gateway refuses them from the next request.
   */
  async removeFromProject(
    organizationId: string,
    projectId: string,
    userId: string,
    actor: Actor,
  ): Promise<void> {
    const revoked = await this.db.transaction(async (tx) => {
      const removed = await tx
        .delete(projectMembers)
        .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)))
        .returning({ userId: projectMembers.userId });
      if (removed.length === 0) throw notFound('user', userId);
      await recordAudit(tx, {
        organizationId,
        projectId,
        type: 'user.deleted',
        actor,
        resourceId: userId,
        details: { id: userId },
      });
      return revokeKeysAudited(tx, and(eq(apiKeys.projectId, projectId), eq(apiKeys.ownerUserId, userId))!, {
        organizationId,
        actor,
        at: new Date(this.#now()),
      });
    });
    for (const keyId of revoked) await this.options.notifier.keyChanged(keyId);
  }

  // ---- invites --------------------------------------------------------------------------------------

  /** Sends an invitation by email (a link valid `inviteDays` days). An earlier pending one to the address is replaced. */
  async invite(organizationId: string, input: InviteInput, actor: Actor): Promise<InviteRow> {
    const email = normalizeEmail(input.email);
    if (!EMAIL.test(email)) throw badRequest('Invalid email address.', 'email');
    const projectsIn = input.projects ?? [];
    if (projectsIn.length > 0) {
      const found = await this.db
        .select({ id: projects.id })
        .from(projects)
        .where(
          and(
            eq(projects.organizationId, organizationId),
            inArray(
              projects.id,
              projectsIn.map((p) => p.id),
            ),
            isNull(projects.archivedAt),
          ),
        );
      const missing = projectsIn.find((p) => !found.some((f) => f.id === p.id));
      if (missing) throw notFound('project', missing.id);
    }
    const [already] = await this.db
      .select({ id: users.id })
      .from(organizationMembers)
      .innerJoin(users, eq(users.id, organizationMembers.userId))
      .where(
        and(eq(organizationMembers.organizationId, organizationId), sql`lower(${users.email}) = ${email}`),
      );
    if (already)
      throw new ApiError('conflict', `${email} is already a member of this organization.`, 'email');
    const secret = randomBytes(32).toString('base64url');
    const now = this.#now();
    const invite = await this.db.transaction(async (tx) => {
      await tx
        .update(invites)
        .set({ deletedAt: new Date(now) })
        .where(
          and(
            eq(invites.organizationId, organizationId),
            eq(invites.email, email),
            isNull(invites.acceptedAt),
            isNull(invites.deletedAt),
          ),
        );
      const [row] = await tx
        .insert(invites)
        .values({
          id: newId('invite'),
          organizationId,
          email,
          role: input.role,
          projects: projectsIn,
          tokenHash: sha256(secret),
          invitedBy:
            actor.type === 'session'
              ? actor.userId
              : actor.type === 'api_key'
                ? actor.keyId
                : `system:${actor.name}`,
          createdAt: new Date(now),
          expiresAt: new Date(now + this.options.inviteDays * 86_400_000),
        })
        .returning();
      await recordAudit(tx, {
        organizationId,
        type: 'invite.sent',
        actor,
        resourceId: row!.id,
        details: { id: row!.id, data: { email, role: input.role } },
      });
      return row!;
    });
    const [org] = await this.db
      .select({ name: organizations.name })
      .from(organizations)
      .where(eq(organizations.id, organizationId));
    const message = {
      to: [email],
      subject: `You are invited to ${org?.name ?? 'an organization'} on Keyport`,
      text:
        `You are invited to join ${org?.name ?? 'an organization'} on Keyport as ${input.role === 'owner' ? 'an owner' : 'a reader'}.\n\n` +
        `Accept within ${this.options.inviteDays} days (sign up first with this address if you have no account): ` +
        `${this.options.publicUrl}/accept-invite#token=${secret}\n`,
    };
    if (this.options.smtp)
      await this.options.mailer
        .send(message)
        .catch(() => this.options.logEmail({ ...message, text: '(not delivered)' }));
    else this.options.logEmail(message);
    return invite;
  }

  async invites(organizationId: string, page: PageRequest): Promise<Page<InviteRow>> {
    const order = page.order === 'desc' ? desc : asc;
    const cursor = page.after
      ? sql`(${invites.createdAt}, ${invites.id}) ${sql.raw(page.order === 'desc' ? '<' : '>')} (select created_at, id from invites where id = ${page.after})`
      : undefined;
    const rows = await this.db
      .select()
      .from(invites)
      .where(and(eq(invites.organizationId, organizationId), isNull(invites.deletedAt), cursor))
      .orderBy(order(invites.createdAt), order(invites.id))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  async getInvite(organizationId: string, id: string): Promise<InviteRow> {
    const [row] = await this.db
      .select()
      .from(invites)
      .where(and(eq(invites.organizationId, organizationId), eq(invites.id, id), isNull(invites.deletedAt)));
    if (!row) throw notFound('invite', id);
    return row;
  }

  async deleteInvite(organizationId: string, id: string, actor: Actor): Promise<void> {
    await this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(invites)
        .set({ deletedAt: new Date(this.#now()) })
        .where(
          and(
            eq(invites.organizationId, organizationId),
            eq(invites.id, id),
            isNull(invites.deletedAt),
            isNull(invites.acceptedAt),
          ),
        )
        .returning();
      if (!row) {
        const [accepted] = await tx
          .select()
          .from(invites)
          .where(and(eq(invites.organizationId, organizationId), eq(invites.id, id)));
        if (accepted?.acceptedAt)
          throw badRequest('This invite was accepted already; remove the member instead.');
        throw notFound('invite', id);
      }
      await recordAudit(tx, {
        organizationId,
        type: 'invite.deleted',
        actor,
        resourceId: id,
        details: { id },
      });
    });
  }

  /** Accepts an invitation: the signed-in user's verified address must be the one invited. */
  async acceptInvite(
    rawToken: string,
    user: UserRow,
    actor: Actor,
  ): Promise<{ organizationId: string; role: OrganizationRole }> {
    return this.db.transaction(async (tx) => {
      const [invite] = await tx
        .select()
        .from(invites)
        .where(
          and(
            eq(invites.tokenHash, sha256(rawToken)),
            isNull(invites.deletedAt),
            isNull(invites.acceptedAt),
            gt(invites.expiresAt, new Date(this.#now())),
          ),
        )
        .for('update');
      if (!invite)
        throw new ApiError(
          'invalid_token',
          'This invitation is not valid: it was used, withdrawn, or has expired.',
        );
      if (normalizeEmail(user.email) !== invite.email || !user.emailVerifiedAt) {
        throw new ApiError(
          'permission_denied',
          `This invitation is for ${invite.email}: sign in with that (verified) address to accept it.`,
        );
      }
      const now = new Date(this.#now());
      const existing = await tx
        .select({ role: organizationMembers.role })
        .from(organizationMembers)
        .where(
          and(
            eq(organizationMembers.organizationId, invite.organizationId),
            eq(organizationMembers.userId, user.id),
          ),
        );
      if (existing.length === 0) {
        await tx.insert(organizationMembers).values({
          organizationId: invite.organizationId,
          userId: user.id,
          role: invite.role,
          createdAt: now,
        });
      }
      const joined: { id: string; role: ProjectRole }[] = [];
      for (const project of invite.projects as { id: string; role: ProjectRole }[]) {
        const added = await tx
          .insert(projectMembers)
          .values({ projectId: project.id, userId: user.id, role: project.role, createdAt: now })
          .onConflictDoNothing()
          .returning({ projectId: projectMembers.projectId });
        if (added.length > 0) joined.push(project);
      }
      await tx.update(invites).set({ acceptedAt: now, acceptedBy: user.id }).where(eq(invites.id, invite.id));
      await recordAudit(tx, {
        organizationId: invite.organizationId,
        type: 'invite.accepted',
        actor,
        resourceId: invite.id,
        details: { id: invite.id },
      });
      if (existing.length === 0) {
        await recordAudit(tx, {
          organizationId: invite.organizationId,
          type: 'user.added',
          actor,
          resourceId: user.id,
          details: { id: user.id, data: { role: invite.role } },
        });
      }
      for (const project of joined) {
        await recordAudit(tx, {
          organizationId: invite.organizationId,
          projectId: project.id,
          type: 'user.added',
          actor,
          resourceId: user.id,
          details: { id: user.id, data: { role: project.role } },
        });
      }
      return { organizationId: invite.organizationId, role: existing[0]?.role ?? invite.role };
    });
  }

  /** `pending`, `accepted` or `expired`, as OpenAI's invite object says. */
  inviteStatus(invite: InviteRow): 'pending' | 'accepted' | 'expired' {
    if (invite.acceptedAt) return 'accepted';
    return invite.expiresAt.getTime() <= this.#now() ? 'expired' : 'pending';
  }
}
