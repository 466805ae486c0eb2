/**
 * Requests shaped to slip past the gateway's checks, sent as raw bytes (an HTTP client would
 * normalise them): every one is refused before the upstream, or checked as what the upstream will
 * understand it to be.
 *   - dot segments, literal or percent-encoded, cannot turn an allowed path into another endpoint
 *     (or out of /v1, with the upstream's credential);
 *   - a JSON body is read as JSON whatever its content type says, so its model is checked;
 *   - a form with two `model` fields is refused (upstreams disagree on which one counts);
 *   - `Expect: 100-continue` (curl's large uploads) is proxied, not a 502;
 *   - bad percent-encoding and out-of-range numbers are 400s in OpenAI's shape, not 500s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest, statusOf } from '../helpers/raw-http.ts';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

describe('the gateway against crafted requests', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway();
  });
  afterAll(() => gw?.close());

  const chat = JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'hello there' }] });
  const send = (
    method: string,
    path: string,
    secret: string,
    body = '',
    headers: Record<string, string> = {},
  ) =>
    rawRequest(
      gw.url,
      `${method} ${path} HTTP/1.1\r\nHost: keyport.test\r\nAuthorization: Bearer ${secret}\r\n` +
        Object.entries(headers)
          .map(([name, value]) => `${name}: ${value}\r\n`)
          .join('') +
        (body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : '') +
        `Connection: close\r\n\r\n${body}`,
    );
  /** What the mock upstream received while `run` ran. */
  const upstreamDuring = async (run: () => Promise<unknown>) => {
    const before = gw.mock.received.length;
    await run();
    return gw.mock.received.slice(before);
  };

  it('dot segments, literal or encoded, are refused before the upstream', async () => {
    const filesOnly = await gw.createKey({ scopes: ['api.files.write'] });
    const readOnly = await gw.createKey({ scopes: ['api.all.read'] });
    const full0 = await gw.createKey();
    const attempts: [string, string, string, string?][] = [
      ['POST', '/v1/files/../chat/completions', filesOnly.secret, chat],
      ['POST', '/v1/files/%2e%2e/chat/completions', filesOnly.secret, chat],
      ['POST', '/v1/files/%2E%2E/chat/completions', filesOnly.secret, chat],
      ['POST', '/v1/files/.%2e/chat/completions', filesOnly.secret, chat],
      ['GET', '/v1/files/../../metrics', readOnly.secret],
      ['GET', '/v1/files/%2e%2e/%2e%2e/v1/organization/admin_api_keys', readOnly.secret],
      ['GET', '/v1/files/file-1%2f..%2f..%2fmetrics', readOnly.secret],
      ['GET', '/v1/files/.\\..\\metrics', readOnly.secret],
    ];
    for (const [method, path, secret, body] of attempts) {
      let response = '';
      const received = await upstreamDuring(async () => {
        response = await send(method, path, secret, body, body ? { 'Content-Type': 'application/json' } : {});
      });
      expect(
        received.map((r) => r.path),
        `${method} ${path}`,
      ).toEqual([]);
      expect(statusOf(response), `${method} ${path}: ${response}`).toBe(404);
      expect(response).toContain('"code":"not_found"');
    }
    // A doubled slash is collapsed, and the upstream gets the path that was checked.
    const doubled = await upstreamDuring(() =>
      send('POST', '/v1//chat//completions', full0.secret, chat, { 'Content-Type': 'application/json' }),
    );
    expect(doubled.map((r) => r.path)).toEqual(['/v1/chat/completions']);
    // Plain paths still work, a model id with an encoded slash included (answered here, not upstream).
    expect(statusOf(await send('GET', '/v1/models', readOnly.secret))).toBe(200);
    const full = await gw.createKey();
    expect(
      statusOf(
        await send('POST', '/v1/chat/completions', full.secret, chat, { 'Content-Type': 'application/json' }),
      ),
    ).toBe(200);
    expect(statusOf(await send('GET', '/v1/models/org%2Fno-such-model', readOnly.secret))).toBe(404);
  });

  it('a JSON body under another content type (or none) is still checked for its model', async () => {
    const key = await gw.createKey({ allowedModels: ['mock-gpt-4o'] });
    const images = JSON.stringify({ model: 'dall-e-3', prompt: 'a cat' });
    const variants: Record<string, string>[] = [
      { 'Content-Type': 'text/plain' },
      { 'Content-Type': 'application/vnd.api+json' },
      {},
    ];
    for (const headers of variants) {
      let response = '';
      const received = await upstreamDuring(async () => {
        response = await send('POST', '/v1/images/generations', key.secret, images, headers);
      });
      expect(received, JSON.stringify(headers)).toEqual([]);
      expect(statusOf(response)).toBe(404);
      expect(response).toContain('model_not_found');
    }
    // A key limited to some models must name one where the endpoint takes a model.
    const noModel = await send(
      'POST',
      '/v1/images/generations',
      key.secret,
      JSON.stringify({ prompt: 'a cat' }),
      {
        'Content-Type': 'application/json',
      },
    );
    expect(statusOf(noModel)).toBe(400);
    // And the allowed model, sent as text/plain, goes through as JSON (metered with its model).
    const events = gw.usage.events.length;
    const allowed = await send('POST', '/v1/chat/completions', key.secret, chat, {
      'Content-Type': 'text/plain',
    });
    expect(statusOf(allowed)).toBe(200);
    await expect.poll(() => gw.usage.events.length).toBe(events + 1);
    expect(gw.usage.events.at(-1)).toMatchObject({ model: 'mock-gpt-4o' });
  });

  it('a key limited to some models cannot run models named elsewhere: batches, thread runs without a model', async () => {
    const key = await gw.createKey({ allowedModels: ['mock-gpt-4o'] });
    const json = { 'Content-Type': 'application/json' };
    let batch = '';
    let run = '';
    let other = '';
    const received = await upstreamDuring(async () => {
      batch = await send(
        'POST',
        '/v1/batches',
        key.secret,
        JSON.stringify({
          input_file_id: 'file-1',
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        }),
        json,
      );
      run = await send(
        'POST',
        '/v1/threads/thread_1/runs',
        key.secret,
        JSON.stringify({ assistant_id: 'asst_1' }),
        json,
      );
      other = await send(
        'POST',
        '/v1/threads/thread_1/runs',
        key.secret,
        JSON.stringify({ assistant_id: 'asst_1', model: 'gpt-4o' }),
        json,
      );
    });
    expect(received).toEqual([]);
    for (const response of [batch, run]) {
      expect(statusOf(response)).toBe(403);
      expect(response).toContain('"code":"permission_denied"');
      expect(response).toContain('runs models the request does not name');
    }
    expect(statusOf(other)).toBe(404);
    expect(other).toContain('model_not_found');
    // Naming an allowed model, or with a key that may use any, the request goes on to the upstream.
    const open = await gw.createKey();
    const passed = await upstreamDuring(async () => {
      await send(
        'POST',
        '/v1/threads/thread_1/runs',
        key.secret,
        JSON.stringify({ assistant_id: 'asst_1', model: 'mock-gpt-4o' }),
        json,
      );
      await send('POST', '/v1/batches', open.secret, JSON.stringify({ input_file_id: 'file-1' }), json);
    });
    expect(passed).toHaveLength(2);
  });

  it('a form with two model fields is refused', async () => {
    const key = await gw.createKey({ allowedModels: ['whisper-1'] });
    const field = (value: string) =>
      `--xx\r\nContent-Disposition: form-data; name="model"\r\n\r\n${value}\r\n`;
    const form = `${field('whisper-1')}${field('gpt-4o-transcribe')}--xx--\r\n`;
    let response = '';
    const received = await upstreamDuring(async () => {
      response = await send('POST', '/v1/audio/transcriptions', key.secret, form, {
        'Content-Type': 'multipart/form-data; boundary=xx',
      });
    });
    expect(received).toEqual([]);
    expect(statusOf(response)).toBe(400);
    expect(response).toContain('"param":"model"');
  });

  it('Expect: 100-continue is answered and the request proxied', async () => {
    const key = await gw.createKey();
    const response = await send('POST', '/v1/chat/completions', key.secret, chat, {
      'Content-Type': 'application/json',
      Expect: '100-continue',
    });
    expect(response).toMatch(/^HTTP\/1.1 100 Continue/);
    expect(response).toContain('HTTP/1.1 200 OK');
    expect(response).toContain('"object":"chat.completion"');
  });

  it('bad encodings and out-of-range numbers are 400s in OpenAI’s shape', async () => {
    const key = await gw.createKey();
    const badUrl = await send('GET', '/v1/models/%E0%A4%A', key.secret);
    expect(statusOf(badUrl)).toBe(400);
    expect(badUrl).toContain('"type":"invalid_request_error"');
    const farFuture = await send('GET', '/v1/key/usage?start_time=9000000000000', key.secret);
    expect(statusOf(farFuture)).toBe(400);
    expect(farFuture).toContain('"param":"start_time"');
    const grant = await gw.request('POST', '/v1/organization/billing/credit_grants', {
      headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount_cents: 100, expires_at: 9_000_000_000_000 }),
    });
    expect(grant.status).toBe(400);
    const huge = await gw.request('POST', '/v1/organization/billing/payments', {
      headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount_cents: 1e12 }),
    });
    expect(huge.status).toBe(400);
  });

  it('a model name with control characters, unpaired surrogates or 300 characters is a 400, before the upstream', async () => {
    const key = await gw.createKey();
    const before = gw.usage.events.length;
    for (const model of ['mock-gpt-4o\u0000', 'mock-\ud800', 'mock\ngpt', 'm'.repeat(300)]) {
      const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
      const seen = await upstreamDuring(async () => {
        const response = await gw.request('POST', '/v1/chat/completions', {
          headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
          body,
        });
        expect(response.status).toBe(400);
        expect((response.body as { error: Record<string, unknown> }).error).toMatchObject({
          type: 'invalid_request_error',
          param: 'model',
        });
      });
      expect(seen).toEqual([]);
    }
    expect(gw.usage.events.length).toBe(before); // nothing reached an upstream, nothing to bill
    // A name with any other character still goes through.
    const fine = await gw.request('POST', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(fine.status).toBe(200);
  });
});
