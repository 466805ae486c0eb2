/**
 * Server-sent event streams through Keyport: byte for byte what the upstream sent (ids and clocks
 * aside), the usage chunk Keyport asked for dropped when the client did not, events passed on as they
 * come, and streams that end early — the client going away, the upstream breaking — counted locally
 * and marked estimated.
 */
import { encode } from 'gpt-tokenizer';
import { InternalServerError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import {
  createTestGateway,
  refusal,
  sseData,
  sseEvents,
  type TestGateway,
  waitFor,
} from '../helpers/test-gateway.ts';

/** Ids the mock draws per request and the clocks: everything else must match exactly. */
const normalize = (event: string) =>
  event
    .replace(/mock[0-9a-f]{24}/g, 'mock<id>')
    .replace(/"(created|created_at|completed_at)":\d+/g, '"$1":0');

const isUsageChunk = (event: string) => {
  const data = sseData(event);
  if (data === '[DONE]' || data === '') return false;
  const parsed = JSON.parse(data) as { choices?: unknown[]; usage?: unknown };
  return Array.isArray(parsed.choices) && parsed.choices.length === 0 && parsed.usage != null;
};

const contentOf = (events: string[]) =>
  events
    .map(sseData)
    .filter((data) => data !== '[DONE]' && data !== '')
    .map((data) => {
      const parsed = JSON.parse(data) as { choices?: { delta?: { content?: string }; text?: string }[] };
      return (parsed.choices ?? []).map((c) => c.delta?.content ?? c.text ?? '').join('');
    })
    .join('');

/** Reads a body to the end, or to where it breaks; `broken` says which. */
async function readAll(response: Response): Promise<{ text: string; broken: boolean }> {
  let text = '';
  const decoder = new TextDecoder();
  try {
    for await (const chunk of response.body ?? []) text += decoder.decode(chunk, { stream: true });
    return { text: text + decoder.decode(), broken: false };
  } catch {
    return { text, broken: true };
  }
}

describe('streams through Keyport', () => {
  let gw: TestGateway;
  let key: IssuedKey;

  beforeAll(async () => {
    gw = await createTestGateway();
    key = await gw.createKey();
  });
  afterAll(() => gw?.close());

  const direct = (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    fetch(`${gw.mock.url}/v1${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  const viaKeyport = (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    gw.fetch(`${gw.url}/v1${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}`, ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  /** What the upstream received last: its path and JSON body. */
  const lastReceived = () => {
    const received = gw.mock.received.at(-1);
    return { path: received?.path, body: (received?.body ?? {}) as Record<string, unknown> };
  };

  const chatBody = (extra: Record<string, unknown> = {}) => ({
    model: 'mock-gpt-4o',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Tell me about streams' },
    ],
    stream: true,
    ...extra,
  });

  it('chat with include_usage: the same events, in the same order, as straight from the upstream', async () => {
    const body = chatBody({ stream_options: { include_usage: true } });
    const upstream = sseEvents((await readAll(await direct('/chat/completions', body))).text);
    const response = await viaKeyport('/chat/completions', body);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    const { text, broken } = await readAll(response);
    expect(broken).toBe(false);
    const through = sseEvents(text);

    expect(upstream).toHaveLength(10); // 8 pieces, the usage chunk, [DONE]
    expect(through.map(normalize)).toEqual(upstream.map(normalize));
    expect(through.filter(isUsageChunk)).toHaveLength(1);
    expect(through.at(-1)).toBe('data: [DONE]');
    // One completion id across the stream, drawn by the upstream.
    const ids = new Set(through.slice(0, -1).map((e) => (JSON.parse(sseData(e)) as { id: string }).id));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^chatcmpl-mock[0-9a-f]{24}$/);
  });

  it('chat without include_usage: Keyport asks for usage, yet the client gets exactly the stream it asked for', async () => {
    // What the client would get straight from the upstream without asking for usage…
    const plain = sseEvents((await readAll(await direct('/chat/completions', chatBody()))).text);
    const response = await viaKeyport('/chat/completions', chatBody());
    const through = sseEvents((await readAll(response)).text);

    const sent = lastReceived();
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.body.stream_options).toEqual({ include_usage: true });

    // …is what it gets through Keyport: no usage chunk, and no `"usage":null` on the others.
    expect(through.map(normalize)).toEqual(plain.map(normalize));
    expect(through.some((e) => e.includes('"usage"'))).toBe(false);
    expect(through.at(-1)).toBe('data: [DONE]');
  });

  it('chat with include_usage: false is treated as not asked for, other stream_options kept', async () => {
    const response = await viaKeyport(
      '/chat/completions',
      chatBody({ stream_options: { include_usage: false, include_obfuscation: false } }),
    );
    const through = sseEvents((await readAll(response)).text);
    expect(lastReceived().body.stream_options).toEqual({
      include_usage: true,
      include_obfuscation: false,
    });
    expect(through).toHaveLength(9);
    expect(through.filter(isUsageChunk)).toHaveLength(0);
  });

  it('completions: the same, with and without include_usage', async () => {
    const body = { model: 'mock-gpt-4o', prompt: 'Once upon a time', stream: true };
    const withUsage = { ...body, stream_options: { include_usage: true } };
    const upstream = sseEvents((await readAll(await direct('/completions', withUsage))).text);
    const plain = sseEvents((await readAll(await direct('/completions', body))).text);
    const asked = sseEvents((await readAll(await viaKeyport('/completions', withUsage))).text);
    const notAsked = sseEvents((await readAll(await viaKeyport('/completions', body))).text);
    expect(upstream).toHaveLength(10);
    expect(asked.map(normalize)).toEqual(upstream.map(normalize));
    expect(notAsked.map(normalize)).toEqual(plain.map(normalize));
  });

  it('responses: every event, named and numbered, as the upstream sent it', async () => {
    const body = { model: 'mock-gpt-4o', input: 'Stream a response', stream: true };
    const upstream = sseEvents((await readAll(await direct('/responses', body))).text);
    const through = sseEvents((await readAll(await viaKeyport('/responses', body))).text);
    expect(upstream.length).toBeGreaterThan(8);
    expect(through.map(normalize)).toEqual(upstream.map(normalize));
    // No stream_options added on this API.
    expect(lastReceived().body.stream_options).toBeUndefined();
  });

  it('an upstream stream that breaks: the client sees it broken, usage is counted from what was sent', async () => {
    const body = chatBody({ messages: [{ role: 'user', content: 'Break after three' }] });
    const breakAfter = { 'x-mock-break-after': '3' };
    // What the upstream sends before breaking, read straight from it.
    const fromUpstream = await readAll(
      await direct('/chat/completions', { ...body, stream_options: { include_usage: true } }, breakAfter),
    );
    expect(fromUpstream.broken).toBe(true);
    const sentBeforeBreak = contentOf(sseEvents(fromUpstream.text));
    expect(sentBeforeBreak.length).toBeGreaterThan(0);

    const eventsBefore = gw.usage.events.length;
    const response = await viaKeyport('/chat/completions', body, breakAfter);
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id') as string;
    const { text, broken } = await readAll(response);
    expect(broken).toBe(true);
    const received = sseEvents(text);
    expect(received).toHaveLength(3);
    expect(received.some((e) => e.includes('[DONE]'))).toBe(false);
    expect(contentOf(received)).toBe(sentBeforeBreak);

    const [event, ...more] = await gw.usageFor(requestId);
    expect(more).toEqual([]);
    expect(gw.usage.events.length).toBe(eventsBefore + 1);
    expect(event).toMatchObject({ streamed: true, estimated: true, apiKeyId: key.key.id });
    expect(event?.status).toBeGreaterThanOrEqual(500);
    expect(event?.outputTokens).toBeGreaterThan(0);
    expect(event?.outputTokens).toBe(encode(sentBeforeBreak).length);
    expect(event?.inputTokens).toBeGreaterThan(0);
  });

  it('a stream that breaks after its usage chunk keeps the upstream’s exact count', async () => {
    const body = chatBody({ messages: [{ role: 'user', content: 'Break just before the end' }] });
    const breakAfter = { 'x-mock-break-after': 'done' };
    const fromUpstream = await readAll(
      await direct('/chat/completions', { ...body, stream_options: { include_usage: true } }, breakAfter),
    );
    expect(fromUpstream.broken).toBe(true);
    const usageEvent = sseEvents(fromUpstream.text).find((e) => e.includes('"usage":{'));
    const usage = JSON.parse(usageEvent!.replace(/^data: /, '')).usage;

    const response = await viaKeyport('/chat/completions', body, breakAfter);
    const requestId = response.headers.get('x-request-id') as string;
    const { text, broken } = await readAll(response);
    expect(broken).toBe(true);
    // The client did not ask for usage: the extra chunk is dropped, and the stream seen broken.
    expect(sseEvents(text).some((e) => e.includes('[DONE]') || e.includes('"usage":{'))).toBe(false);
    const [event] = await gw.usageFor(requestId);
    expect(event).toMatchObject({
      estimated: false,
      inputTokens: usage.prompt_tokens,
      outputTokens: usage.completion_tokens,
    });
    expect(event?.status).toBeGreaterThanOrEqual(500);
  });

  it('the SDK sees a broken stream as an error, not as a clean end', async () => {
    const client = gw.openai(key.secret);
    const stream = await client.chat.completions.create(
      { model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Break' }], stream: true },
      { headers: { 'x-mock-break-after': '3' } },
    );
    let chunks = 0;
    await expect(
      (async () => {
        for await (const _chunk of stream) chunks++;
      })(),
    ).rejects.toThrow();
    expect(chunks).toBe(3);
  });

  it('an upstream error before the stream starts reaches the SDK as an error, with its status', async () => {
    const error = await refusal(
      gw
        .openai(key.secret)
        .chat.completions.create(
          { model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'x' }], stream: true },
          { headers: { 'x-mock-status': '503' } },
        ),
    );
    expect(error).toBeInstanceOf(InternalServerError);
    expect(error.status).toBe(503);
    const events = await gw.usageFor(error.requestID as string);
    expect(events).toMatchObject([{ status: 503, streamed: true, outputTokens: 0 }]);
  });

  it('no secret in any response or log line', async () => {
    expect(gw.transcript.join('\n')).toContain('Mock reply to');
    expect(await gw.findLeaks()).toEqual([]);
  });
});

describe('streams through Keyport, paced (the mock waits 50 ms between pieces)', () => {
  let gw: TestGateway;
  let key: IssuedKey;

  beforeAll(async () => {
    gw = await createTestGateway({ chunkDelayMs: 50 });
    key = await gw.createKey();
  });
  afterAll(() => gw?.close());

  it('passes each event on as it comes, not when the upstream has finished', async () => {
    const started = gw.mock.stats.streamsStarted;
    const completed = gw.mock.stats.streamsCompleted;
    const response = await gw.fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
      body: JSON.stringify({
        model: 'mock-gpt-4o',
        messages: [{ role: 'user', content: 'Pace' }],
        stream: true,
      }),
      signal: AbortSignal.timeout(15_000),
    });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    // The first event is here while the upstream is still streaming (7 more pieces, 50 ms apart).
    expect(sseEvents(text).length).toBeGreaterThanOrEqual(1);
    expect(gw.mock.stats.streamsStarted).toBe(started + 1);
    expect(gw.mock.stats.streamsCompleted).toBe(completed);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(sseEvents(text)).toHaveLength(9);
    expect(gw.mock.stats.streamsCompleted).toBe(completed + 1);
  });

  it('a client that goes away mid-stream: the upstream call is aborted, usage recorded as 499, estimated', async () => {
    const client = gw.openai(key.secret);
    const controller = new AbortController();
    const abortedBefore = gw.mock.stats.streamsAborted;
    const completedBefore = gw.mock.stats.streamsCompleted;
    const { data: stream, request_id: requestId } = await client.chat.completions
      .create(
        { model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Abort me' }], stream: true },
        { signal: controller.signal },
      )
      .withResponse();
    // The SDK ends an aborted stream's iteration quietly.
    const contents: string[] = [];
    for await (const chunk of stream) {
      contents.push(chunk.choices[0]?.delta.content ?? '');
      controller.abort();
    }
    expect(contents).toHaveLength(1);
    const firstContent = contents[0] as string;
    expect(firstContent.length).toBeGreaterThan(0);

    await waitFor(() => gw.mock.stats.streamsAborted === abortedBefore + 1, {
      what: 'the mock to see its stream aborted',
    });
    expect(gw.mock.stats.streamsCompleted).toBe(completedBefore);

    const events = await gw.usageFor(requestId as string);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ status: 499, streamed: true, estimated: true, model: 'mock-gpt-4o' });
    expect(events[0]?.outputTokens).toBeGreaterThanOrEqual(encode(firstContent).length);
    expect(events[0]?.inputTokens).toBeGreaterThan(0);
  });

  it('a client that goes away before the upstream answers: the upstream request is aborted, 499', async () => {
    const controller = new AbortController();
    const before = gw.mock.received.length;
    const pending = gw
      .fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${key.secret}`,
          'x-mock-delay-ms': '10000',
        },
        body: JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Slow' }] }),
        signal: controller.signal,
      })
      .catch((error: unknown) => error);
    await waitFor(() => gw.mock.received.length === before + 1, { what: 'the request to reach the mock' });
    const requestId = gw.mock.received.at(-1)?.headers['x-request-id'] as string;
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    const events = await gw.usageFor(requestId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ status: 499, streamed: false });
  });

  it('no secret in any response or log line', async () => {
    expect(await gw.findLeaks()).toEqual([]);
  });
});
