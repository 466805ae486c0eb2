import { encode } from 'gpt-tokenizer';
import OpenAI, {
  APIConnectionTimeoutError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  RateLimitError,
} from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MOCK_MODELS, type MockUpstream, startMockUpstream } from './mock-upstream.ts';

let mock: MockUpstream;
let client: OpenAI;

beforeAll(async () => {
  mock = await startMockUpstream({ recordRequests: true });
  client = new OpenAI({ apiKey: 'x', baseURL: `${mock.url}/v1`, maxRetries: 0 });
});
afterAll(() => mock.close());

const messages = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Hello there, mock! Please say something deterministic.' },
];
const tokens = (text: string) => encode(text).length;

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

const chunkText = (chunks: ChatCompletionChunk[]) =>
  chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

describe('mock upstream: chat completions', () => {
  it('answers a deterministic reply quoting the last user message, with o200k usage', async () => {
    const completion = await client.chat.completions.create({ model: 'mock-gpt-4o', messages });
    const text = completion.choices[0]?.message.content ?? '';
    expect(completion).toMatchObject({
      object: 'chat.completion',
      model: 'mock-gpt-4o',
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', refusal: null } }],
    });
    expect(completion.id).toMatch(/^chatcmpl-mock/);
    expect(text.startsWith(`Mock reply to "${messages[1]?.content.slice(0, 40)}": `)).toBe(true);
    expect(completion.usage).toMatchObject({
      prompt_tokens: tokens('You are terse.\nHello there, mock! Please say something deterministic.'),
      completion_tokens: tokens(text),
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(completion.usage?.total_tokens).toBe(
      (completion.usage?.prompt_tokens ?? 0) + (completion.usage?.completion_tokens ?? 0),
    );
  });

  it('streams chunkCount chunks: role first, stop last, no usage unless asked, then [DONE]', async () => {
    const plain = await client.chat.completions.create({ model: 'm', messages });
    const chunks = await collect(
      await client.chat.completions.create({ model: 'm', messages, stream: true }),
    );
    expect(chunks).toHaveLength(8);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]?.id)).toBe(true);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(chunks.slice(1).every((c) => c.choices[0]?.delta.role === undefined)).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.finish_reason)).toEqual([...Array(7).fill(null), 'stop']);
    expect(chunks.some((c) => 'usage' in c)).toBe(false);
    expect(chunkText(chunks)).toBe(plain.choices[0]?.message.content);
  });

  it('ends with a usage chunk (choices: []) when and only when stream_options.include_usage is true', async () => {
    const plain = await client.chat.completions.create({ model: 'm', messages });
    const chunks = await collect(
      await client.chat.completions.create({
        model: 'm',
        messages,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    expect(chunks).toHaveLength(9);
    expect(chunks.slice(0, 8).every((c) => c.usage === null && c.choices.length === 1)).toBe(true);
    expect(chunks[8]).toMatchObject({ choices: [], usage: plain.usage });

    const without = await collect(
      await client.chat.completions.create({
        model: 'm',
        messages,
        stream: true,
        stream_options: { include_usage: false },
      }),
    );
    expect(without).toHaveLength(8);
  });

  it("works with the SDK's stream helper", async () => {
    const stream = client.chat.completions.stream({ model: 'm', messages });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]?.message.content).toMatch(/^Mock reply to "Hello there/);
  });

  it('quotes text parts and the last user turn, and never splits a surrogate pair', async () => {
    // 'a' then pairs: the 40th UTF-16 unit is the first half of a pair, so the quote stops before it.
    const quote = `a${'😀'.repeat(30)}`;
    const completion = await client.chat.completions.create({
      model: 'm',
      messages: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: [{ type: 'text', text: quote }] },
      ],
    });
    expect(completion.choices[0]?.message.content).toContain(`"a${'😀'.repeat(19)}"`);
    const chunks = await collect(
      await client.chat.completions.create({
        model: 'm',
        messages: [{ role: 'user', content: quote }],
        stream: true,
      }),
    );
    expect(chunks.every((c) => !/[\uD800-\uDBFF]$/.test(c.choices[0]?.delta.content ?? ''))).toBe(true);
  });

  it('refuses a request without model or messages, and invalid JSON, with OpenAI-shaped 400s', async () => {
    // @ts-expect-error: model left out on purpose
    await expect(client.chat.completions.create({ messages })).rejects.toBeInstanceOf(BadRequestError);
    const missing = await client.chat.completions
      // @ts-expect-error: messages left out on purpose
      .create({ model: 'm' })
      .catch((error: unknown) => error);
    expect(missing).toMatchObject({ status: 400, param: 'messages', code: 'missing_required_parameter' });

    const response = await fetch(`${mock.url}/v1/chat/completions`, { method: 'POST', body: '{"model":' });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-request-id')).toMatch(/^req_mock/);
    expect(await response.json()).toMatchObject({
      error: { type: 'invalid_request_error', param: null, code: null },
    });
  });

  it('answers unknown paths with an OpenAI-style 404', async () => {
    await expect(client.get('/nope')).rejects.toBeInstanceOf(NotFoundError);
    const response = await fetch(`${mock.url}/v1/chat/completions`);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: {
        message: 'Invalid URL (GET /v1/chat/completions)',
        type: 'invalid_request_error',
        param: null,
        code: null,
      },
    });
  });
});

describe('mock upstream: completions, embeddings, models', () => {
  it('answers text completions, plain and streamed', async () => {
    const completion = await client.completions.create({ model: 'm', prompt: 'Once upon a time' });
    expect(completion).toMatchObject({
      object: 'text_completion',
      choices: [{ index: 0, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: tokens('Once upon a time'), prompt_tokens_details: { cached_tokens: 0 } },
    });
    const text = completion.choices[0]?.text ?? '';
    expect(text).toMatch(/^Mock reply to "Once upon a time": /);

    const chunks = await collect(
      await client.completions.create({
        model: 'm',
        prompt: 'Once upon a time',
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    expect(chunks).toHaveLength(9);
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(text);
    expect(chunks[7]?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks[8]).toMatchObject({ object: 'text_completion', choices: [], usage: completion.usage });
  });

  it('returns deterministic unit vectors: 8 floats by default, dimensions honoured, base64 or float', async () => {
    const first = await client.embeddings.create({ model: 'mock-embedding-small', input: 'hello' });
    const again = await client.embeddings.create({ model: 'mock-embedding-small', input: 'hello' });
    const float = await client.embeddings.create({ model: 'm', input: 'hello', encoding_format: 'float' });
    const vector = Array.from(first.data[0]?.embedding ?? []);
    expect(vector).toHaveLength(8);
    expect(Array.from(again.data[0]?.embedding ?? [])).toEqual(vector);
    expect(float.data[0]?.embedding).toEqual(vector);
    expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
    expect(first).toMatchObject({
      object: 'list',
      model: 'mock-embedding-small',
      usage: { prompt_tokens: 1 },
    });

    const many = await client.embeddings.create({
      model: 'm',
      input: ['hello', 'goodbye, world'],
      dimensions: 32,
      encoding_format: 'float',
    });
    expect(many.data.map((d) => [d.object, d.index, d.embedding.length])).toEqual([
      ['embedding', 0, 32],
      ['embedding', 1, 32],
    ]);
    expect(many.data[0]?.embedding).not.toEqual(many.data[1]?.embedding);
    expect(many.usage).toEqual({
      prompt_tokens: tokens('hello') + tokens('goodbye, world'),
      total_tokens: tokens('hello') + tokens('goodbye, world'),
    });
    // @ts-expect-error: input left out on purpose
    await expect(client.embeddings.create({ model: 'm' })).rejects.toBeInstanceOf(BadRequestError);
  });

  it('lists MOCK_MODELS and retrieves any model name', async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(MOCK_MODELS);
    expect(await client.models.retrieve('meta-llama/Llama-3.1-8B')).toEqual({
      id: 'meta-llama/Llama-3.1-8B',
      object: 'model',
      created: expect.any(Number),
      owned_by: 'keyport',
    });
  });
});

describe('mock upstream: responses', () => {
  it('answers a Response with one output message and usage', async () => {
    const response = await client.responses.create({
      model: 'mock-gpt-4o',
      instructions: 'Be brief.',
      input: 'Tell me a story',
    });
    expect(response).toMatchObject({
      object: 'response',
      status: 'completed',
      model: 'mock-gpt-4o',
      instructions: 'Be brief.',
      output: [
        { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text' }] },
      ],
    });
    expect(response.id).toMatch(/^resp_mock/);
    expect(response.output_text).toMatch(/^Mock reply to "Tell me a story": /);
    expect(response.usage).toMatchObject({
      input_tokens: tokens('Be brief.\nTell me a story'),
      output_tokens: tokens(response.output_text),
      input_tokens_details: { cached_tokens: 0 },
    });
  });

  it("streams the Responses event sequence, which the SDK's stream helper accepts", async () => {
    const plain = await client.responses.create({
      model: 'm',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Stream this' }] }],
    });
    const stream = client.responses.stream({
      model: 'm',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Stream this' }] }],
    });
    const types: string[] = [];
    stream.on('event', (event) => types.push(event.type));
    const final = await stream.finalResponse();
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array(8).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(final.output_text).toBe(plain.output_text);
    expect(final.usage).toEqual(plain.usage);
  });
});

describe('mock upstream: test hooks', () => {
  it('x-mock-status answers that status with an OpenAI-shaped error', async () => {
    const ask = (status: string) =>
      client.chat.completions.create({ model: 'm', messages }, { headers: { 'x-mock-status': status } });
    await expect(ask('401')).rejects.toBeInstanceOf(AuthenticationError);
    await expect(ask('429')).rejects.toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    await expect(ask('429')).rejects.toBeInstanceOf(RateLimitError);
    await expect(ask('503')).rejects.toBeInstanceOf(InternalServerError);
    await expect(ask('200')).rejects.toBeInstanceOf(BadRequestError);
  });

  it('x-mock-break-after sends n chunks, then breaks the connection without [DONE]', async () => {
    const stream = await client.chat.completions.create(
      { model: 'm', messages, stream: true },
      { headers: { 'x-mock-break-after': '3' } },
    );
    const received: ChatCompletionChunk[] = [];
    await expect(
      (async () => {
        for await (const chunk of stream) received.push(chunk);
      })(),
    ).rejects.toThrow();
    expect(received).toHaveLength(3);

    const responses = client.responses.stream(
      { model: 'm', input: 'x' },
      { headers: { 'x-mock-break-after': '0' } },
    );
    await expect(responses.finalResponse()).rejects.toThrow();
  });

  it('x-mock-delay-ms holds the first byte', async () => {
    const started = Date.now();
    await client.models.list({ headers: { 'x-mock-delay-ms': '150' } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    const impatient = new OpenAI({ apiKey: 'x', baseURL: `${mock.url}/v1`, maxRetries: 0, timeout: 50 });
    await expect(
      impatient.chat.completions.create({ model: 'm', messages }, { headers: { 'x-mock-delay-ms': '2000' } }),
    ).rejects.toBeInstanceOf(APIConnectionTimeoutError);
  });

  it('x-mock-no-usage drops usage from plain replies and the usage chunk from streams', async () => {
    const options = { headers: { 'x-mock-no-usage': '1' } };
    const completion = await client.chat.completions.create({ model: 'm', messages }, options);
    expect(completion.usage).toBeUndefined();
    const chunks = await collect(
      await client.chat.completions.create(
        { model: 'm', messages, stream: true, stream_options: { include_usage: true } },
        options,
      ),
    );
    expect(chunks).toHaveLength(8);
    expect(chunks.some((c) => c.usage)).toBe(false);
    const response = await client.responses.stream({ model: 'm', input: 'x' }, options).finalResponse();
    expect(response.usage).toBeUndefined();
  });

  it('records what it received, Authorization header included', async () => {
    await client.chat.completions.create({ model: 'recorded-model', messages });
    const last = mock.received.at(-1);
    expect(last).toMatchObject({
      method: 'POST',
      path: '/v1/chat/completions',
      body: { model: 'recorded-model', messages },
    });
    expect(last?.headers.authorization).toBe('Bearer x');
  });
});

describe('mock upstream: determinism and stream accounting', () => {
  it('gives the same content, chunks and usage for the same request', async () => {
    const request = { model: 'm', messages, stream: true as const, stream_options: { include_usage: true } };
    const [a, b] = [
      await collect(await client.chat.completions.create(request)),
      await collect(await client.chat.completions.create(request)),
    ];
    const strip = (chunks: ChatCompletionChunk[]) =>
      chunks.map((c) => ({ choices: c.choices, usage: c.usage }));
    expect(strip(a)).toEqual(strip(b));
    const [x, y] = [
      await client.responses.create({ model: 'm', input: 'same' }),
      await client.responses.create({ model: 'm', input: 'same' }),
    ];
    expect([x.output_text, x.usage]).toEqual([y.output_text, y.usage]);
  });

  it('counts a stream the client aborts midway in streamsAborted', async () => {
    const slow = await startMockUpstream({ chunkDelayMs: 30 });
    try {
      const slowClient = new OpenAI({ apiKey: 'x', baseURL: `${slow.url}/v1`, maxRetries: 0 });
      await collect(await slowClient.chat.completions.create({ model: 'm', messages, stream: true }));
      expect(slow.stats).toMatchObject({
        requests: 1,
        streamsStarted: 1,
        streamsCompleted: 1,
        streamsAborted: 0,
      });

      const controller = new AbortController();
      const stream = await slowClient.chat.completions.create(
        { model: 'm', messages, stream: true },
        { signal: controller.signal },
      );
      let seen = 0;
      await (async () => {
        for await (const _chunk of stream) {
          if (++seen === 2) controller.abort();
        }
      })().catch(() => undefined);
      await vi.waitFor(() => expect(slow.stats.streamsAborted).toBe(1), { timeout: 5000 });
      expect(slow.stats).toMatchObject({ requests: 2, streamsStarted: 2, streamsCompleted: 1 });
    } finally {
      await slow.close();
    }
  });
});
