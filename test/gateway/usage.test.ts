/**
 * Usage events: exactly one per proxied request, naming who made it (organization, project, key,
 * user, client address) and what it cost (the upstream's token counts, or local counts marked
 * estimated when the upstream gives none).
 */

import { encode } from 'gpt-tokenizer';
import type OpenAI from 'openai';
import type { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../src/billing/usage-recorder.ts';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

describe('usage events', () => {
  let gw: TestGateway;
  let key: IssuedKey;
  let client: OpenAI;
  /** The id of every request this file sent through the gateway to the upstream. */
  const proxied: string[] = [];

  beforeAll(async () => {
    gw = await createTestGateway();
    key = await gw.createKey({ name: 'Metered' });
    client = gw.openai(key.secret);
  });
  afterAll(() => gw?.close());

  /** The one event of a request (fails on none or several). */
  const eventOf = async (requestId: string | null | undefined): Promise<UsageEvent> => {
    expect(requestId).toMatch(/^req_[0-9a-f]{32}$/);
    proxied.push(requestId as string);
    const events = await gw.usageFor(requestId as string);
    expect(events).toHaveLength(1);
    return events[0] as UsageEvent;
  };

  /** What the mock reports for a chat prompt, asked directly (the same prompt gives the same counts). */
  const mockChatUsage = async (messages: OpenAI.ChatCompletionMessageParam[]) => {
    const response = await fetch(`${gw.mock.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt-4o', messages }),
      signal: AbortSignal.timeout(15_000),
    });
    const body = (await response.json()) as OpenAI.ChatCompletion;
    return body.usage as OpenAI.CompletionUsage;
  };

  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You count tokens.' },
    { role: 'user', content: 'How many tokens is this sentence?' },
  ];

  it('a chat completion: who, what, how much, how long', async () => {
    const before = new Date();
    const { data, request_id } = await client.chat.completions
      .create({ model: 'mock-gpt-4o', messages })
      .withResponse();
    const after = new Date();
    const event = await eventOf(request_id);
    expect(event).toEqual({
      requestId: request_id,
      createdAt: expect.any(Date),
      organizationId: gw.instance.organization.id,
      projectId: gw.instance.project.id,
      apiKeyId: key.key.id,
      userId: gw.instance.owner.id,
      serviceAccountId: null,
      method: 'POST',
      endpoint: '/v1/chat/completions',
      model: 'mock-gpt-4o',
      upstream: 'mock',
      inputTokens: data.usage?.prompt_tokens,
      cachedTokens: 0,
      outputTokens: data.usage?.completion_tokens,
      status: 200,
      latencyMs: expect.any(Number),
      clientIp: '127.0.0.1',
      streamed: false,
      estimated: false,
      kind: 'completions',
      units: 0,
      // A mock model has no price unless the operator sets one.
      costNanoUsd: 0,
      costInputNanoUsd: 0,
      costCachedNanoUsd: 0,
      costOutputNanoUsd: 0,
      costUnitsNanoUsd: 0,
    });
    expect(event.inputTokens).toBeGreaterThan(0);
    expect(event.outputTokens).toBeGreaterThan(0);
    expect(Number.isInteger(event.latencyMs)).toBe(true);
    expect(event.latencyMs).toBeGreaterThanOrEqual(0);
    expect(event.createdAt.getTime()).toBeGreaterThanOrEqual(before.getTime());
    expect(event.createdAt.getTime()).toBeLessThanOrEqual(after.getTime());
  });

  it('a streamed chat that did not ask for usage: counted from the usage chunk Keyport asked for', async () => {
    const expected = await mockChatUsage(messages);
    const { data: stream, request_id } = await client.chat.completions
      .create({ model: 'mock-gpt-4o', messages, stream: true })
      .withResponse();
    for await (const chunk of stream) expect(chunk.usage ?? null).toBeNull();
    const event = await eventOf(request_id);
    expect(event).toMatchObject({
      inputTokens: expected.prompt_tokens,
      outputTokens: expected.completion_tokens,
      cachedTokens: 0,
      status: 200,
      streamed: true,
      estimated: false,
      clientIp: '127.0.0.1',
      model: 'mock-gpt-4o',
    });
  });

  it('a streamed chat with include_usage: the counts the client saw', async () => {
    const { data: stream, request_id } = await client.chat.completions
      .create({ model: 'mock-gpt-4o', messages, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    const event = await eventOf(request_id);
    expect(usage).toBeDefined();
    expect(event).toMatchObject({
      inputTokens: usage?.prompt_tokens,
      outputTokens: usage?.completion_tokens,
      streamed: true,
      estimated: false,
    });
  });

  it('completions', async () => {
    const { data, request_id } = await client.completions
      .create({ model: 'mock-gpt-4o-mini', prompt: 'Complete this' })
      .withResponse();
    const event = await eventOf(request_id);
    expect(event).toMatchObject({
      endpoint: '/v1/completions',
      model: 'mock-gpt-4o-mini',
      inputTokens: data.usage?.prompt_tokens,
      outputTokens: data.usage?.completion_tokens,
      estimated: false,
    });
  });

  it('embeddings: input tokens only', async () => {
    const { data, request_id } = await client.embeddings
      .create({ model: 'mock-embedding-small', input: ['alpha beta', 'gamma'] })
      .withResponse();
    const event = await eventOf(request_id);
    expect(event).toMatchObject({
      endpoint: '/v1/embeddings',
      model: 'mock-embedding-small',
      inputTokens: data.usage.prompt_tokens,
      outputTokens: 0,
      estimated: false,
    });
    expect(event.inputTokens).toBeGreaterThan(0);
  });

  it('responses, plain and streamed', async () => {
    const { data, request_id } = await client.responses
      .create({ model: 'mock-gpt-4o', input: 'Hello responses' })
      .withResponse();
    expect(await eventOf(request_id)).toMatchObject({
      endpoint: '/v1/responses',
      inputTokens: data.usage?.input_tokens,
      outputTokens: data.usage?.output_tokens,
      streamed: false,
      estimated: false,
    });

    const { data: stream, request_id: streamedId } = await client.responses
      .create({ model: 'mock-gpt-4o', input: 'Hello responses', stream: true })
      .withResponse();
    let usage: OpenAI.Responses.ResponseUsage | undefined;
    for await (const event of stream) if (event.type === 'response.completed') usage = event.response.usage;
    expect(usage?.output_tokens).toBeGreaterThan(0);
    expect(await eventOf(streamedId)).toMatchObject({
      inputTokens: usage?.input_tokens,
      outputTokens: usage?.output_tokens,
      streamed: true,
      estimated: false,
    });
  });

  it('an upstream that reports no usage: counted locally, marked estimated', async () => {
    const reported = await mockChatUsage(messages);
    const { data, request_id } = await client.chat.completions
      .create({ model: 'mock-gpt-4o', messages }, { headers: { 'x-mock-no-usage': '1' } })
      .withResponse();
    expect(data.usage).toBeUndefined();
    const event = await eventOf(request_id);
    expect(event).toMatchObject({ status: 200, streamed: false, estimated: true });
    // The reply counted with the same tokenizer the mock uses; the prompt with the chat overhead.
    expect(event.outputTokens).toBe(encode(data.choices[0]?.message.content ?? '').length);
    expect(event.outputTokens).toBe(reported.completion_tokens);
    expect(event.inputTokens).toBeGreaterThanOrEqual(reported.prompt_tokens);
    expect(event.inputTokens).toBeLessThanOrEqual(reported.prompt_tokens + 4 * messages.length + 3);
  });

  it('a stream without a usage chunk: counted locally, marked estimated', async () => {
    const reported = await mockChatUsage(messages);
    const { data: stream, request_id } = await client.chat.completions
      .create(
        { model: 'mock-gpt-4o', messages, stream: true, stream_options: { include_usage: true } },
        { headers: { 'x-mock-no-usage': '1' } },
      )
      .withResponse();
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    const event = await eventOf(request_id);
    expect(event).toMatchObject({ status: 200, streamed: true, estimated: true });
    expect(event.outputTokens).toBe(encode(text).length);
    expect(event.outputTokens).toBe(reported.completion_tokens);
    expect(event.inputTokens).toBeGreaterThanOrEqual(reported.prompt_tokens);
    expect(event.inputTokens).toBeLessThanOrEqual(reported.prompt_tokens + 4 * messages.length + 3);
  });

  it('embeddings without usage: the input counted locally', async () => {
    const { request_id } = await client.embeddings
      .create(
        { model: 'mock-embedding-small', input: 'count these words' },
        { headers: { 'x-mock-no-usage': '1' } },
      )
      .withResponse();
    const event = await eventOf(request_id);
    expect(event).toMatchObject({ estimated: true, outputTokens: 0 });
    expect(event.inputTokens).toBe(encode('count these words').length);
  });

  it('an upstream error is recorded with its status', async () => {
    const error = await client.chat.completions
      .create({ model: 'mock-gpt-4o', messages }, { headers: { 'x-mock-status': '429' } })
      .catch((e: unknown) => e as APIError);
    expect(error).toMatchObject({ status: 429 });
    const event = await eventOf((error as APIError).requestID);
    expect(event).toMatchObject({ status: 429, inputTokens: 0, outputTokens: 0, streamed: false });
  });

  it('the key’s identity follows the key: another project, another key', async () => {
    const project = await gw.services.projects.create(
      gw.instance.organization.id,
      { name: 'Second' },
      TEST_ACTOR,
    );
    const other = await gw.createKey({ projectId: project.id });
    const { request_id } = await gw
      .openai(other.secret)
      .chat.completions.create({ model: 'mock-gpt-4o', messages })
      .withResponse();
    expect(await eventOf(request_id)).toMatchObject({
      organizationId: gw.instance.organization.id,
      projectId: project.id,
      apiKeyId: other.key.id,
    });
  });

  it('one event per proxied request, none for anything else, no request id twice', async () => {
    // Requests that never reach an upstream record nothing.
    await gw.openai(key.secret).models.list();
    await client.chat.completions.create({ model: 'mock-gpt-4o', messages: [] }).catch(() => undefined);
    const ids = gw.usage.events.map((event) => event.requestId);
    expect(new Set(ids).size).toBe(ids.length);
    // The empty-messages request reached the mock (it answers 400) and is recorded too.
    const last = gw.usage.events.at(-1);
    expect(last?.status).toBe(400);
    expect(ids.slice(0, -1).sort()).toEqual([...proxied].sort());
  });

  it('no secret in any response or log line', async () => {
    expect(await gw.findLeaks()).toEqual([]);
  });
});
