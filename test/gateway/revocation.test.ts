/**
 * Key changes made through the Admin API reach the gateway at once: a revoked (or rotated-out) key
 * is refused by the very next request, even though the gateway has just verified and cached it;
 * and every accepted request moves the key's last_used_at.
 */
import type OpenAI from 'openai';
import { AuthenticationError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findApiKey } from '../../src/store/repositories/api-keys.ts';
import {
  adminRequest,
  type CreatedProjectKey,
  createProjectKey,
  expectOk,
  type KeyportProjectKey,
  type RotatedProjectKey,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestGateway, refusal, type TestGateway } from '../helpers/test-gateway.ts';

const chat = (client: OpenAI) =>
  client.chat.completions.create({
    model: 'mock-gpt-4o',
    messages: [{ role: 'user', content: 'Still there?' }],
  });

describe.each(backends)('revocation and last_used_at through the gateway (%s)', (backend) => {
  let gw: TestGateway;
  let projectId: string;

  beforeAll(async () => {
    gw = await createTestGateway({ backend });
    projectId = gw.instance.project.id;
  });
  afterAll(() => gw?.close());

  /** A key created through the Admin API (so its secret is known to the leak check too). */
  const newKey = async (body: Record<string, unknown> = {}): Promise<CreatedProjectKey> => {
    const created = await createProjectKey(gw, projectId, body);
    gw.addSecret(created.value);
    return created;
  };
  const keyPath = (id: string) => `/projects/${projectId}/api_keys/${id}`;

  it('a key revoked through the Admin API (DELETE) is refused by the very next request', async () => {
    const key = await newKey();
    const client = gw.openai(key.value);
    // Used twice, so it is verified and served from the verifier's cache.
    await chat(client);
    await chat(client);
    const before = gw.mock.stats.requests;
    const deleted = expectOk(await adminRequest(gw, 'DELETE', keyPath(key.id)));
    expect(deleted).toMatchObject({ id: key.id, deleted: true });
    const error = await refusal(chat(client));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.code).toBe('invalid_api_key');
    expect(error.message).toContain('revoked');
    expect(error.message).toContain(key.redacted_value);
    expect(error.message).not.toContain(key.value);
    expect(gw.mock.stats.requests).toBe(before);
    // And stays refused, on every endpoint.
    expect((await refusal(client.models.list())).code).toBe('invalid_api_key');
  });

  it('a streamed request right after revocation is refused too', async () => {
    const key = await newKey();
    const client = gw.openai(key.value);
    await chat(client);
    expectOk(await adminRequest(gw, 'DELETE', keyPath(key.id)));
    const error = await refusal(
      client.chat.completions.create({
        model: 'mock-gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      }),
    );
    expect(error).toBeInstanceOf(AuthenticationError);
  });

  it('a key rotated with no grace period: the old secret is refused at once, the new one works', async () => {
    const key = await newKey();
    const old = gw.openai(key.value);
    await chat(old);
    const rotated = expectOk(
      await adminRequest<RotatedProjectKey>(gw, 'POST', `${keyPath(key.id)}/rotate`, {
        body: { grace_period_seconds: 0 },
      }),
    );
    gw.addSecret(rotated.value);
    const error = await refusal(chat(old));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.code).toBe('invalid_api_key');
    expect((await chat(gw.openai(rotated.value))).object).toBe('chat.completion');
  });

  it('a request sets last_used_at, as the Admin API and then the database show', async () => {
    const key = await newKey();
    const retrieve = async () =>
      expectOk(await adminRequest<KeyportProjectKey>(gw, 'GET', keyPath(key.id))).last_used_at;
    expect(await retrieve()).toBeNull();

    const before = Math.floor(Date.now() / 1000);
    await chat(gw.openai(key.value));
    const after = Math.ceil(Date.now() / 1000);
    const lastUsed = await retrieve();
    expect(lastUsed).not.toBeNull();
    expect(lastUsed).toBeGreaterThanOrEqual(before);
    expect(lastUsed).toBeLessThanOrEqual(after);

    // Written through (coalesced), not only held in memory.
    await gw.services.lastUsed.flush();
    const stored = await findApiKey(
      gw.services.store.db,
      { organizationId: gw.instance.organization.id, projectId },
      key.id,
    );
    expect(stored?.lastUsedAt).toBeInstanceOf(Date);
    expect(Math.floor(Number(stored?.lastUsedAt) / 1000)).toBe(lastUsed);
  });

  it('a refused request does not set last_used_at', async () => {
    const key = await newKey({ allowed_ips: ['10.0.0.0/8'] });
    const error = await refusal(chat(gw.openai(key.value)));
    expect(error.code).toBe('ip_not_authorized');
    expect(
      expectOk(await adminRequest<KeyportProjectKey>(gw, 'GET', keyPath(key.id))).last_used_at,
    ).toBeNull();
  });

  it('no secret in any response or log line', async () => {
    expect(await gw.findLeaks()).toEqual([]);
  });
});
