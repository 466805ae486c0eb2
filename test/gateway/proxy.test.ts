/**
 * Proxying: the client's credential and identity stay at the gateway and the upstream's credential
 * goes upstream; hop-by-hop headers end at each hop; the upstream account's identity and limits do
 * not reach the client; bodies are limited; requests go to the upstream serving their model; upstream
 * failures come back as OpenAI-style 5xx errors.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type OpenAI from 'openai';
import { type APIError, BadRequestError, InternalServerError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockUpstream, startMockUpstream } from '../../src/gateway/mock-upstream.ts';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import {
  closedPort,
  createTestGateway,
  expectGatewayError,
  type TestGateway,
  UPSTREAM_KEY_ENV,
} from '../helpers/test-gateway.ts';

const EMB_KEY_ENV = 'TEST_EMB_UPSTREAM_KEY';
const HDR_KEY_ENV = 'TEST_HDR_UPSTREAM_KEY';
const BODY_LIMIT = 2048;

/**
 * An upstream that answers every chat completion with the headers a real provider sends: its own
 * organization, project, rate limits, request id and cookies, and hop-by-hop headers.
 */
interface HeaderUpstream {
  url: string;
  received: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}

const SRT = '1\n00:00:00,000 --> 00:00:04,200\nHello\n\n2\n00:00:04,200 --> 00:01:02,500\nthere\n';

async function startHeaderUpstream(): Promise<HeaderUpstream> {
  const received: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    received.push(req.headers);
    req.resume();
    req.on('end', () => {
      if (req.url === '/v1/chat/completions' && req.headers['x-answer'] === 'bad-upstream-key') {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: {
              message: 'Incorrect API key provided: sk-proj-…abcd.',
              type: 'invalid_request_error',
              param: null,
              code: 'invalid_api_key',
            },
          }),
        );
        return;
      }
      if (req.url === '/v1/chat/completions' && req.headers['x-answer'] === 'html-500') {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<html><body>Internal Server Error at 10.0.0.5</body></html>');
        return;
      }
      if (req.url === '/v1/chat/completions' && req.headers['x-answer'] === 'html-503') {
        res.writeHead(503, { 'content-type': 'text/html', 'retry-after': '7' });
        res.end('<html><body>503 Service Temporarily Unavailable (nginx at 10.0.0.5)</body></html>');
        return;
      }
      if (req.url === '/v1/audio/speech') {
        // Audio bytes, cut off halfway when asked.
        res.writeHead(200, { 'content-type': 'audio/mpeg' });
        res.write(Buffer.alloc(64 * 1024, 1));
        if (req.headers['x-answer'] === 'break') setTimeout(() => res.destroy(), 20);
        else res.end(Buffer.alloc(64 * 1024, 2));
        return;
      }
      if (req.url === '/v1/audio/transcriptions') {
        // A transcript asked for as SRT: no duration field, only cue times; or as plain text.
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(req.headers['x-answer'] === 'plain-text' ? 'Hello there\n' : SRT);
        return;
      }
      if (req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: { message: 'nope', type: 'invalid_request_error', param: null, code: null },
          }),
        );
        return;
      }
      const body = JSON.stringify({
        id: 'chatcmpl-hdr',
        object: 'chat.completion',
        created: 1,
        model: 'hdr-model',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'openai-organization': 'org-upstream-account',
        'openai-project': 'proj_upstream_account',
        'openai-processing-ms': '12',
        'x-ratelimit-limit-requests': '10000',
        'x-ratelimit-remaining-requests': '9999',
        'x-ratelimit-limit-tokens': '2000000',
        'x-ratelimit-remaining-tokens': '1999990',
        'x-ratelimit-reset-requests': '6ms',
        'x-ratelimit-reset-tokens': '0s',
        'x-request-id': 'req_upstream_0001',
        'set-cookie': '__cf_bm=upstream-cookie; path=/',
        connection: 'keep-alive, x-hop-listed',
        'keep-alive': 'timeout=987',
        'x-hop-listed': 'must-not-pass',
        'x-custom-upstream': 'kept',
      });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('proxying', () => {
  let gw: TestGateway;
  let embeddingsMock: MockUpstream;
  let headerUpstream: HeaderUpstream;
  let key: IssuedKey;
  let client: OpenAI;
  const embSecret = `emb-upstream-secret-${randomBytes(8).toString('hex')}`;
  const hdrSecret = `hdr-upstream-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    embeddingsMock = await startMockUpstream({ recordRequests: true });
    headerUpstream = await startHeaderUpstream();
    const downPort = await closedPort();
    gw = await createTestGateway({
      env: { [EMB_KEY_ENV]: embSecret, [HDR_KEY_ENV]: hdrSecret },
      config: { gatewayBodyLimitBytes: BODY_LIMIT },
      upstreams: (mock) => [
        { name: 'emb', baseUrl: `${embeddingsMock.url}/v1`, models: ['emb-*'], apiKeyEnv: EMB_KEY_ENV },
        { name: 'headers', baseUrl: `${headerUpstream.url}/v1`, models: ['hdr-*'], apiKeyEnv: HDR_KEY_ENV },
        // A model server that needs no credential (a local vLLM, say).
        { name: 'open', baseUrl: `${embeddingsMock.url}/v1`, models: ['open-*'] },
        {
          name: 'slow',
          baseUrl: `${mock.url}/v1`,
          models: ['slow-*'],
          apiKeyEnv: UPSTREAM_KEY_ENV,
          timeoutMs: 300,
        },
        {
          name: 'down',
          baseUrl: `http://127.0.0.1:${downPort}/v1`,
          models: ['down-*'],
          apiKeyEnv: UPSTREAM_KEY_ENV,
          connectTimeoutMs: 1000,
        },
        { name: 'mock', baseUrl: `${mock.url}/v1`, models: ['*'], apiKeyEnv: UPSTREAM_KEY_ENV },
      ],
    });
    key = await gw.createKey();
    client = gw.openai(key.secret);
  });
  afterAll(async () => {
    await gw?.close();
    await embeddingsMock?.close();
    await headerUpstream?.close();
  });

  const chatJson = (model = 'mock-gpt-4o', content = 'Proxy me') =>
    JSON.stringify({ model, messages: [{ role: 'user', content }] });
  const authorized = (headers: Record<string, string> = {}) => ({
    authorization: `Bearer ${key.secret}`,
    'content-type': 'application/json',
    ...headers,
  });

  describe('request headers', () => {
    it('the upstream gets its own credential, never the client’s key, identity or hop-by-hop headers', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized({
          connection: 'close, x-hop-req',
          'x-hop-req': 'listed-in-connection',
          'keep-alive': 'timeout=5',
          te: 'trailers',
          trailer: 'x-checksum',
          'proxy-authorization': 'Basic cHJveHk6c2VjcmV0',
          'proxy-connection': 'keep-alive',
          cookie: 'session=dashboard-session-cookie',
          'openai-organization': gw.instance.organization.id,
          'openai-project': gw.instance.project.id,
          'api-key': key.secret,
          'x-request-id': 'client-chosen-id',
          'x-real-ip': '10.9.9.9',
          forwarded: 'for=10.9.9.9',
          'x-custom-client': 'passes',
          'user-agent': 'gateway-test/1.0',
        }),
        body: chatJson(),
      });
      expect(response.status, response.text).toBe(200);
      const received = gw.mock.received.at(-1);
      expect(received?.path).toBe('/v1/chat/completions');
      const headers = received?.headers ?? {};
      expect(headers.authorization).toBe(`Bearer ${gw.upstreamSecret}`);
      for (const name of [
        'x-hop-req',
        'keep-alive',
        'te',
        'trailer',
        'proxy-authorization',
        'proxy-connection',
        'cookie',
        'openai-organization',
        'openai-project',
        'api-key',
        'x-real-ip',
        'forwarded',
        'x-forwarded-for',
      ]) {
        expect(headers[name], name).toBeUndefined();
      }
      expect(String(headers.connection ?? '')).not.toContain('x-hop-req');
      expect(JSON.stringify(headers)).not.toContain(key.secret);
      // The gateway's request id, not the client's, so both ends can find the request in their logs.
      expect(headers['x-request-id']).toBe(response.headers['x-request-id']);
      expect(headers['x-custom-client']).toBe('passes');
      expect(headers['user-agent']).toBe('gateway-test/1.0');
      expect(headers['accept-encoding']).toBe('identity');
      expect(received?.body).toEqual(JSON.parse(chatJson()));
    });

    it('the SDK’s requests: only the upstream credential goes upstream', async () => {
      await client.chat.completions.create({
        model: 'mock-gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
      });
      const headers = gw.mock.received.at(-1)?.headers ?? {};
      expect(headers.authorization).toBe(`Bearer ${gw.upstreamSecret}`);
      expect(JSON.stringify(headers)).not.toContain(key.secret);
    });
    it('to an upstream without a credential, no Authorization header at all', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized({ 'api-key': key.secret }),
        body: chatJson('open-model'),
      });
      expect(response.status, response.text).toBe(200);
      const headers = embeddingsMock.received.at(-1)?.headers ?? {};
      expect(headers.authorization).toBeUndefined();
      expect(headers['api-key']).toBeUndefined();
      expect(JSON.stringify(headers)).not.toContain(key.secret);
    });
  });

  describe('response headers', () => {
    it('an x-request-id of Keyport’s; the upstream account’s identity, limits and cookies stay behind', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized(),
        body: chatJson('hdr-model'),
      });
      expect(response.status, response.text).toBe(200);
      expect(headerUpstream.received.at(-1)?.authorization).toBe(`Bearer ${hdrSecret}`);
      const headers = response.headers;
      expect(headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
      expect(headers['x-upstream-request-id']).toBe('req_upstream_0001');
      expect(headers['openai-organization']).toBeUndefined();
      expect(headers['openai-project']).toBeUndefined();
      expect(headers['set-cookie']).toBeUndefined();
      expect(headers['x-hop-listed']).toBeUndefined();
      expect(headers['keep-alive']).toBeUndefined();
      expect(Object.keys(headers).filter((name) => name.startsWith('x-ratelimit-'))).toEqual([]);
      expect(headers['x-custom-upstream']).toBe('kept');
      expect(headers['openai-processing-ms']).toBe('12');
      expect(
        (response.body as { choices: { message: { content: string } }[] }).choices[0]?.message.content,
      ).toBe('hi');
    });

    it('every response carries an x-request-id, errors included', async () => {
      const ok = await client.models.list().withResponse();
      expect(ok.response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
      const notFound = await gw.request('GET', '/v1/no-such-endpoint', { headers: authorized() });
      expect(notFound.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
    });
  });

  describe('refused requests', () => {
    it('a body over the limit: 413 in OpenAI’s shape, naming the limit, not forwarded', async () => {
      const before = gw.mock.stats.requests;
      const big = chatJson('mock-gpt-4o', 'x'.repeat(BODY_LIMIT));
      expect(Buffer.byteLength(big)).toBeGreaterThan(BODY_LIMIT);
      const response = await gw.request('POST', '/v1/chat/completions', { headers: authorized(), body: big });
      const error = expectGatewayError(response, 413, 'request_too_large');
      expect(error.message).toContain(String(BODY_LIMIT));
      expect(gw.mock.stats.requests).toBe(before);
      // Just under the limit passes.
      const small = chatJson('mock-gpt-4o', 'x'.repeat(BODY_LIMIT - 200));
      expect(Buffer.byteLength(small)).toBeLessThanOrEqual(BODY_LIMIT);
      expect(
        (await gw.request('POST', '/v1/chat/completions', { headers: authorized(), body: small })).status,
      ).toBe(200);
    });

    it('invalid JSON: 400, not forwarded', async () => {
      const before = gw.mock.stats.requests;
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized(),
        body: '{"model": "mock-gpt-4o", "messages": [',
      });
      expectGatewayError(response, 400, 'invalid_json');
      const array = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized(),
        body: '[1, 2]',
      });
      expectGatewayError(array, 400, 'invalid_request');
      expect(gw.mock.stats.requests).toBe(before);
    });

    it('a metered endpoint without a model: 400 naming the parameter', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized(),
        body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }] }),
      });
      expect(expectGatewayError(response, 400, 'invalid_request').param).toBe('model');
    });

    it('an unknown /v1 path: 404', async () => {
      const before = gw.mock.stats.requests;
      const response = await gw.request('POST', '/v1/not/a/real/endpoint', {
        headers: authorized(),
        body: '{}',
      });
      const error = expectGatewayError(response, 404, 'not_found');
      expect(error.message).toContain('/v1/not/a/real/endpoint');
      expect(gw.mock.stats.requests).toBe(before);
    });

    it('a key in the query string: 400, with or without an Authorization header, never echoed', async () => {
      const before = gw.mock.stats.requests;
      const inQuery = await gw.request('GET', `/v1/models?api_key=${key.secret}`);
      const error = expectGatewayError(inQuery, 400, 'invalid_request');
      expect(error.message).toMatch(/Authorization header/);
      expect(inQuery.text).not.toContain(key.secret);
      const both = await gw.request('POST', `/v1/chat/completions?key=${encodeURIComponent(key.secret)}`, {
        headers: authorized(),
        body: chatJson(),
      });
      expectGatewayError(both, 400, 'invalid_request');
      const inPath = await gw.request('GET', `/v1/models/${key.secret}`, { headers: authorized() });
      expectGatewayError(inPath, 400, 'invalid_request');
      expect(inPath.text).not.toContain(key.secret);
      expect(gw.mock.stats.requests).toBe(before);
    });

    it('a malformed Authorization header: 401', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: { 'content-type': 'application/json', authorization: `Basic ${key.secret}` },
        body: chatJson(),
      });
      expectGatewayError(response, 401, 'invalid_api_key');
      expect(response.text).not.toContain(key.secret);
    });
  });

  describe('upstream failures', () => {
    it('an upstream that cannot be reached: 502, server_error', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized(),
        body: chatJson('down-model'),
      });
      const error = expectGatewayError(response, 502, 'bad_gateway');
      expect(error.message).toContain('"down"');
      const [event, ...more] = await gw.usageFor(response.headers['x-request-id'] as string);
      expect(more).toEqual([]);
      expect(event).toMatchObject({ status: 502, upstream: 'down', model: 'down-model' });

      const sdkError = await client.chat.completions
        .create({ model: 'down-model', messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(sdkError).toBeInstanceOf(InternalServerError);
      expect((sdkError as APIError).status).toBe(502);
    });

    it('an upstream slower than its timeout: 504, server_error', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized({ 'x-mock-delay-ms': '5000' }),
        body: chatJson('slow-model'),
      });
      const error = expectGatewayError(response, 504, 'gateway_timeout');
      expect(error.message).toContain('"slow"');
      const events = await gw.usageFor(response.headers['x-request-id'] as string);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ status: 504, upstream: 'slow' });
      // The same upstream within its timeout answers.
      const fast = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized(),
        body: chatJson('slow-model'),
      });
      expect(fast.status, fast.text).toBe(200);
    });

    it('an upstream 500 or 503 with an OpenAI-style body is passed through', async () => {
      for (const status of [500, 503]) {
        const error = await client.chat.completions
          .create(
            { model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'x' }] },
            { headers: { 'x-mock-status': String(status) } },
          )
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InternalServerError);
        expect((error as APIError).status).toBe(status);
        expect((error as APIError).type).toBe('server_error');
        expect((error as APIError).message).toContain(`status ${status} forced by x-mock-status`);
        expect((error as APIError).requestID).toMatch(/^req_[0-9a-f]{32}$/);
        const events = await gw.usageFor((error as APIError).requestID as string);
        expect(events).toMatchObject([{ status }]);
      }
    });

    it('an upstream 4xx is passed through as is', async () => {
      const error = await client.chat.completions
        .create({ model: 'mock-gpt-4o', messages: [] })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BadRequestError);
      expect((error as APIError).message).toContain("Invalid 'messages': empty array");
      expect((error as APIError).code).toBe('empty_array');
      expect((error as APIError).param).toBe('messages');
    });

    it('an upstream 5xx that is not JSON becomes a 502 in OpenAI’s shape (the upstream’s page stays behind)', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized({ 'x-answer': 'html-500' }),
        body: chatJson('hdr-model'),
      });
      expectGatewayError(response, 502, 'bad_gateway');
      expect(response.text).not.toContain('10.0.0.5');
    });

    it('an overloaded upstream’s non-JSON 503 stays a 503, with its retry-after', async () => {
      const response = await gw.request('POST', '/v1/chat/completions', {
        headers: authorized({ 'x-answer': 'html-503' }),
        body: chatJson('hdr-model'),
      });
      expectGatewayError(response, 503, 'service_unavailable');
      expect(response.headers['retry-after']).toBe('7');
      expect(response.text).not.toContain('10.0.0.5');
      const [event] = await gw.usageFor(String(response.headers['x-request-id']));
      expect(event?.status).toBe(503);
    });
  });

  describe('routing by model', () => {
    it('each model goes to the first upstream serving it, with that upstream’s credential', async () => {
      const embBefore = embeddingsMock.received.length;
      const mainBefore = gw.mock.received.length;
      const { data, request_id } = await client.embeddings
        .create({ model: 'emb-small', input: 'route me' })
        .withResponse();
      expect(data.model).toBe('emb-small');
      expect(embeddingsMock.received.length).toBe(embBefore + 1);
      expect(gw.mock.received.length).toBe(mainBefore);
      expect(embeddingsMock.received.at(-1)?.headers.authorization).toBe(`Bearer ${embSecret}`);
      expect((await gw.usageFor(request_id as string))[0]?.upstream).toBe('emb');

      const chat = await client.chat.completions
        .create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'x' }] })
        .withResponse();
      expect(gw.mock.received.length).toBe(mainBefore + 1);
      expect(embeddingsMock.received.length).toBe(embBefore + 1);
      expect((await gw.usageFor(chat.request_id as string))[0]?.upstream).toBe('mock');
      // Embeddings of a model no specific upstream serves go to the catch-all.
      await client.embeddings.create({ model: 'mock-embedding-small', input: 'x' });
      expect(gw.mock.received.length).toBe(mainBefore + 2);
      expect(gw.mock.received.at(-1)?.path).toBe('/v1/embeddings');
    });
  });

  it('the upstream refusing its own credential is a 502 for the client, not a 401 with the upstream key', async () => {
    const response = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key.secret}`,
        'content-type': 'application/json',
        'x-answer': 'bad-upstream-key',
      },
      body: JSON.stringify({ model: 'hdr-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(502);
    const text = await response.text();
    expect(text).not.toContain('sk-proj');
    expect(JSON.parse(text).error).toMatchObject({ code: 'bad_gateway', type: 'server_error' });
  });

  it('speech audio passes through; cut off upstream it is recorded as a 502, billed by its input, estimated', async () => {
    const speech = (headers: Record<string, string> = {}) =>
      fetch(`${gw.url}/v1/audio/speech`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'hdr-tts', input: 'Hello there', voice: 'alloy' }),
      });
    const before = gw.usage.events.length;
    const whole = await speech();
    expect((await whole.arrayBuffer()).byteLength).toBe(128 * 1024);
    await expect.poll(() => gw.usage.events.length).toBe(before + 1);
    expect(gw.usage.events.at(-1)).toMatchObject({ status: 200, units: 11, estimated: false });

    const cut = await speech({ 'x-answer': 'break' });
    await expect(cut.arrayBuffer()).rejects.toThrow();
    await expect.poll(() => gw.usage.events.length).toBe(before + 2);
    expect(gw.usage.events.at(-1)).toMatchObject({ status: 502, units: 11, estimated: true });
  });

  it('a transcript as SRT passes through whole and is billed by its last cue time, as an estimate', async () => {
    const form = new FormData();
    form.append('model', 'hdr-whisper');
    form.append('response_format', 'srt');
    form.append('file', new Blob([Buffer.from('RIFF....WAVE')]), 'a.wav');
    const before = gw.usage.events.length;
    const response = await fetch(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}` },
      body: form,
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(SRT);
    await expect.poll(() => gw.usage.events.length).toBe(before + 1);
    expect(gw.usage.events.at(-1)).toMatchObject({
      kind: 'audio_transcriptions',
      model: 'hdr-whisper',
      units: 63,
      estimated: true,
    });
  });

  it('a transcript as plain text is billed by the length of the uploaded audio, as an estimate', async () => {
    const transcribe = async (file: Buffer, name: string) => {
      const form = new FormData();
      form.append('model', 'hdr-whisper');
      form.append('response_format', 'text');
      form.append('file', new Blob([file]), name);
      const before = gw.usage.events.length;
      const response = await fetch(`${gw.url}/v1/audio/transcriptions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.secret}`, 'x-answer': 'plain-text' },
        body: form,
      });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('Hello there\n');
      await expect.poll(() => gw.usage.events.length).toBe(before + 1);
      return gw.usage.events.at(-1);
    };
    // 61.5 s of PCM audio: 62 seconds billed (rounded up, as OpenAI bills).
    expect(await transcribe(wav(61.5), 'talk.wav')).toMatchObject({ units: 62, estimated: true });
    // Not audio the gateway can read: nothing to bill by (the upstream has answered anyway).
    expect(await transcribe(Buffer.from('not audio at all'), 'notes.txt')).toMatchObject({ units: 0 });
  });

  it('no upstream ever saw a client key; no secret in any response or log line', async () => {
    const upstreamRequests = [
      ...gw.mock.received.map((r) => r.headers),
      ...embeddingsMock.received.map((r) => r.headers),
      ...headerUpstream.received,
    ];
    expect(upstreamRequests.length).toBeGreaterThan(10);
    const clientKeys = gw.secrets().filter((s) => s.startsWith('kp_'));
    for (const headers of upstreamRequests) {
      const text = JSON.stringify(headers);
      for (const secret of clientKeys) expect(text).not.toContain(secret);
    }
    expect(await gw.findLeaks()).toEqual([]);
  });
});

describe('no upstream configured (and the built-in mock off)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ upstreams: () => [] });
  });
  afterAll(() => gw?.close());

  it('a request without a model: 503, server_error; with a model: model_not_found', async () => {
    const key = await gw.createKey();
    const files = await gw.request('GET', '/v1/files', {
      headers: { authorization: `Bearer ${key.secret}` },
    });
    expectGatewayError(files, 503, 'service_unavailable');
    const chat = await gw.request('POST', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
    });
    expectGatewayError(chat, 404, 'model_not_found');
    expect(gw.mock.stats.requests).toBe(0);
    expect(await gw.findLeaks()).toEqual([]);
  });
});

/**
 * A silent PCM WAV file of `seconds`: mono, 8 bits, at 16 samples a second, so that a minute
 * fits this gateway's 2 KB body limit (the duration is the data size over the byte rate).
 */
function wav(seconds: number): Buffer {
  const rate = 16;
  const data = Math.round(seconds * rate);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16); // PCM format chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate, 28); // bytes per second
  header.writeUInt16LE(1, 32); // block align
  header.writeUInt16LE(8, 34); // bits per sample
  header.write('data', 36);
  header.writeUInt32LE(data, 40);
  return Buffer.concat([header, Buffer.alloc(data, 0x80)]);
}
