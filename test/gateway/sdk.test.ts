/**
 * The official `openai` SDK against Keyport over a real socket, changing only the base URL: every
 * endpoint family the mock serves, and the SDK's error classes for every way a key is refused.
 */

import type OpenAI from 'openai';
import { AuthenticationError, NotFoundError, PermissionDeniedError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../src/core/key-format.ts';
import { MOCK_MODELS } from '../../src/gateway/mock-upstream.ts';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import { adminRequest, expectOk, redacted } from '../helpers/admin-api.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, refusal, sleep, type TestGateway } from '../helpers/test-gateway.ts';

const REQUEST_ID = /^req_[0-9a-f]{32}$/;

const chat = (client: OpenAI, model = 'mock-gpt-4o') =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello there' }] });

describe('the openai SDK against Keyport', () => {
  let gw: TestGateway;
  let key: IssuedKey;
  let client: OpenAI;

  beforeAll(async () => {
    gw = await createTestGateway();
    key = await gw.createKey({ name: 'All permissions' });
    client = gw.openai(key.secret);
  });
  afterAll(() => gw?.close());

  describe('endpoints', () => {
    it('chat completions', async () => {
      const { data, response, request_id } = await chat(client).withResponse();
      expect(response.status).toBe(200);
      expect(request_id).toMatch(REQUEST_ID);
      expect(data.object).toBe('chat.completion');
      expect(data.model).toBe('mock-gpt-4o');
      expect(data.choices[0]?.message.content).toMatch(/^Mock reply to "Hello there": Lorem ipsum/);
      expect(data.usage?.prompt_tokens).toBeGreaterThan(0);
      expect(data.usage?.completion_tokens).toBeGreaterThan(0);
    });

    it('streamed chat completions, without the usage chunk unless asked for', async () => {
      const stream = await client.chat.completions.create({
        model: 'mock-gpt-4o',
        messages: [{ role: 'user', content: 'Stream please' }],
        stream: true,
      });
      let text = '';
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        expect(chunk.object).toBe('chat.completion.chunk');
        expect(chunk.choices).toHaveLength(1);
        expect(chunk.usage ?? null).toBeNull();
        text += chunk.choices[0]?.delta.content ?? '';
      }
      expect(chunks).toBe(8);
      expect(text).toMatch(/^Mock reply to "Stream please": Lorem ipsum/);
    });

    it('streamed chat completions with stream_options.include_usage: the usage chunk arrives', async () => {
      const stream = await client.chat.completions.create({
        model: 'mock-gpt-4o',
        messages: [{ role: 'user', content: 'Stream with usage' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      const last = chunks.at(-1);
      expect(chunks).toHaveLength(9);
      expect(last?.choices).toEqual([]);
      expect(last?.usage?.prompt_tokens).toBeGreaterThan(0);
      expect(last?.usage?.completion_tokens).toBeGreaterThan(0);
      expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
    });

    it('completions', async () => {
      const completion = await client.completions.create({ model: 'mock-gpt-4o', prompt: 'Say hi' });
      expect(completion.object).toBe('text_completion');
      expect(completion.choices[0]?.text).toMatch(/^Mock reply to "Say hi"/);
      expect(completion.usage?.prompt_tokens).toBeGreaterThan(0);
    });

    it('embeddings (the SDK asks for base64 and decodes it)', async () => {
      const result = await client.embeddings.create({
        model: 'mock-embedding-small',
        input: ['one', 'two'],
      });
      expect(result.data).toHaveLength(2);
      expect(result.data[0]?.embedding).toHaveLength(8);
      expect(result.data[0]?.embedding.every((x) => Number.isFinite(x))).toBe(true);
      expect(result.usage.prompt_tokens).toBe(2);
    });

    it('models: list and retrieve', async () => {
      const ids: string[] = [];
      for await (const model of client.models.list()) ids.push(model.id);
      expect(ids.sort()).toEqual([...MOCK_MODELS].sort());
      const model = await client.models.retrieve('mock-gpt-4o-mini');
      expect(model).toMatchObject({ id: 'mock-gpt-4o-mini', object: 'model' });
    });

    it('models: the list and retrieve follow the key’s model allow-list', async () => {
      const restricted = await gw.createKey({ allowedModels: ['mock-gpt-4o*'] });
      const other = gw.openai(restricted.secret);
      const ids: string[] = [];
      for await (const model of other.models.list()) ids.push(model.id);
      expect(ids.sort()).toEqual(['mock-gpt-4o', 'mock-gpt-4o-mini']);
      expect(await other.models.retrieve('mock-gpt-4o')).toMatchObject({ id: 'mock-gpt-4o' });
      const error = await refusal(other.models.retrieve('mock-embedding-small'));
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error.code).toBe('model_not_found');
    });

    it('responses', async () => {
      const response = await client.responses.create({ model: 'mock-gpt-4o', input: 'Respond' });
      expect(response.object).toBe('response');
      expect(response.status).toBe('completed');
      expect(response.output_text).toMatch(/^Mock reply to "Respond"/);
      expect(response.usage?.input_tokens).toBeGreaterThan(0);
    });

    it('responses, streamed', async () => {
      const stream = await client.responses.create({
        model: 'mock-gpt-4o',
        input: 'Stream it',
        stream: true,
      });
      const types: string[] = [];
      let text = '';
      let completed: OpenAI.Responses.Response | undefined;
      for await (const event of stream) {
        types.push(event.type);
        if (event.type === 'response.output_text.delta') text += event.delta;
        if (event.type === 'response.completed') completed = event.response;
      }
      expect(types[0]).toBe('response.created');
      expect(types.at(-1)).toBe('response.completed');
      expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(8);
      expect(text).toMatch(/^Mock reply to "Stream it"/);
      expect(completed?.usage?.output_tokens).toBeGreaterThan(0);
    });
  });

  describe('refused keys: AuthenticationError (401)', () => {
    it('a malformed key, without echoing it', async () => {
      const secret = 'kp_proj_thisIsNotAValidKeyAtAllButLongEnough1234567';
      const error = await refusal(chat(gw.openai(secret)));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('invalid_api_key');
      expect(error.message).not.toContain(secret);
    });

    it('an unknown key (well-formed, checksum valid): the message shows only its redacted form', async () => {
      const secret = generateKey('kp', 'proj');
      const error = await refusal(chat(gw.openai(secret)));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('invalid_api_key');
      expect(error.message).toContain(redacted(secret));
      expect(error.message).not.toContain(secret);
      expect(error.requestID).toMatch(REQUEST_ID);
    });

    it('a key revoked through the Admin API', async () => {
      const revoked = await gw.createKey();
      const other = gw.openai(revoked.secret);
      await chat(other); // works, and is now in the verifier's cache
      await gw.sdk().admin.organization.projects.apiKeys.delete(revoked.key.id, {
        project_id: gw.instance.project.id,
      });
      const error = await refusal(chat(other));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('invalid_api_key');
      expect(error.message).toContain('revoked');
      expect(error.message).toContain(redacted(revoked.secret));
    });

    it('an expired key', async () => {
      // Far enough ahead for the key's creation and first request, even on a busy machine.
      const expiresAt = new Date(Date.now() + 4000);
      const expiring = await gw.createKey({ expiresAt });
      const other = gw.openai(expiring.secret);
      await chat(other); // valid until then
      const waitUntil = expiresAt.getTime() + 50;
      // Bounded: the expiry is 4 s ahead.
      while (Date.now() < waitUntil) await sleep(Math.min(100, waitUntil - Date.now() + 1));
      const error = await refusal(chat(other));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('expired_api_key');
      expect(error.message).toContain('expired');
      expect(error.message).toContain(redacted(expiring.secret));
    });

    it('a disabled key, and the same key again once re-enabled', async () => {
      const disabled = await gw.createKey();
      const other = gw.openai(disabled.secret);
      await chat(other);
      const path = `/projects/${gw.instance.project.id}/api_keys/${disabled.key.id}`;
      expectOk(await adminRequest(gw, 'POST', path, { body: { enabled: false } }));
      const error = await refusal(chat(other));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('disabled_api_key');
      expect(error.message).toContain('disabled');
      expectOk(await adminRequest(gw, 'POST', path, { body: { enabled: true } }));
      expect((await chat(other)).object).toBe('chat.completion');
    });

    it('no key at all', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
      });
      expect(response.status).toBe(401);
      expect((response.body as { error: { code: string } }).error.code).toBe('missing_api_key');
    });

    it('refused requests never reach the upstream and record no usage', async () => {
      const requestsBefore = gw.mock.stats.requests;
      const eventsBefore = gw.usage.events.length;
      const error = await refusal(chat(gw.openai(generateKey('kp', 'proj'))));
      expect(error.status).toBe(401);
      await sleep(50);
      expect(gw.mock.stats.requests).toBe(requestsBefore);
      expect(gw.usage.events.length).toBe(eventsBefore);
    });
  });

  describe('permissions: PermissionDeniedError (403) naming the missing scope', () => {
    it('a read-only key cannot create a chat completion', async () => {
      const readOnly = await gw.createKey({ scopes: ['api.all.read'] });
      const requestsBefore = gw.mock.stats.requests;
      const error = await refusal(chat(gw.openai(readOnly.secret)));
      expect(error).toBeInstanceOf(PermissionDeniedError);
      expect(error.code).toBe('missing_scope');
      expect(error.message).toContain('api.chat.completions.write');
      expect(gw.mock.stats.requests).toBe(requestsBefore);
    });

    it('a read-only key can list models', async () => {
      const readOnly = await gw.createKey({ scopes: ['api.all.read'] });
      const page = await gw.openai(readOnly.secret).models.list();
      expect(page.data.map((m) => m.id).sort()).toEqual([...MOCK_MODELS].sort());
    });

    it('a restricted key without api.embeddings.write cannot create embeddings, but can chat', async () => {
      const restricted = await gw.createKey({ scopes: ['api.chat.completions.write', 'api.model.read'] });
      const other = gw.openai(restricted.secret);
      const error = await refusal(other.embeddings.create({ model: 'mock-embedding-small', input: 'x' }));
      expect(error).toBeInstanceOf(PermissionDeniedError);
      expect(error.code).toBe('missing_scope');
      expect(error.message).toContain('api.embeddings.write');
      const responses = await refusal(other.responses.create({ model: 'mock-gpt-4o', input: 'x' }));
      expect(responses).toBeInstanceOf(PermissionDeniedError);
      expect(responses.message).toContain('api.responses.write');
      expect((await chat(other)).object).toBe('chat.completion');
      expect((await other.models.list()).data.length).toBeGreaterThan(0);
      const chatOnly = gw.openai((await gw.createKey({ scopes: ['api.chat.completions.write'] })).secret);
      const models = await refusal(chatOnly.models.list());
      expect(models).toBeInstanceOf(PermissionDeniedError);
      expect(models.message).toContain('api.model.read');
    });

    it('a model outside the key’s allow-list: NotFoundError, model_not_found', async () => {
      const limited = await gw.createKey({ allowedModels: ['mock-gpt-4o-mini'] });
      const other = gw.openai(limited.secret);
      const requestsBefore = gw.mock.stats.requests;
      const error = await refusal(chat(other, 'mock-gpt-4o'));
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error.code).toBe('model_not_found');
      expect(error.param).toBe('model');
      expect(error.message).toContain('mock-gpt-4o');
      expect(gw.mock.stats.requests).toBe(requestsBefore);
      expect((await chat(other, 'mock-gpt-4o-mini')).model).toBe('mock-gpt-4o-mini');
    });

    it('an admin key cannot call the model API', async () => {
      const requestsBefore = gw.mock.stats.requests;
      const error = await refusal(chat(gw.openai(gw.adminKey)));
      expect(error).toBeInstanceOf(PermissionDeniedError);
      expect(error.message).toMatch(/admin key/i);
      expect(gw.mock.stats.requests).toBe(requestsBefore);
    });
  });

  describe('OpenAI-Organization and OpenAI-Project headers', () => {
    it('matching values are accepted', async () => {
      const matching = gw.openai(key.secret, {
        organization: gw.instance.organization.id,
        project: gw.instance.project.id,
      });
      expect((await chat(matching)).object).toBe('chat.completion');
    });

    it('another organization is refused', async () => {
      const error = await refusal(chat(gw.openai(key.secret, { organization: 'org_someoneelse' })));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('mismatched_organization');
    });

    it('another project (of the same organization) is refused', async () => {
      const other = await gw.services.projects.create(
        gw.instance.organization.id,
        { name: 'Other' },
        TEST_ACTOR,
      );
      const error = await refusal(chat(gw.openai(key.secret, { project: other.id })));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('mismatched_project');
      // The key's own project, with the other header right, still works.
      const ownProject = gw.openai(key.secret, { project: gw.instance.project.id });
      expect((await chat(ownProject)).object).toBe('chat.completion');
    });
  });

  it('no secret (upstream credential, any key) in any response or log line', async () => {
    expect(gw.transcript.length).toBeGreaterThan(20);
    expect(gw.logs.length).toBeGreaterThan(20);
    // Error bodies are in the transcript: the leak check reads what clients read.
    expect(gw.transcript.join('\n')).toContain('Incorrect API key provided: kp_proj_');
    expect(await gw.findLeaks()).toEqual([]);
  });
});
