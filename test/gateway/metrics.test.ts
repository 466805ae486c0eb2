/**
 * `GET /metrics`: Prometheus's text format, with responses counted per API and status class
 * (streams too), the limiter and Node's own metrics, and nothing that names a tenant.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

const chatBody = (stream = false) =>
  JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }], stream });

/** The value of one series, 0 when it is absent. */
function seriesValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('metrics', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  const scrape = async () => {
    const response = await gw.request('GET', '/metrics');
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return response.text;
  };

  it('counts responses by API and status class, streams included, and says nothing of tenants', async () => {
    const key = await gw.createKey();
    const before = await scrape();
    const ok = 'keyport_http_responses_total{api="gateway",status_class="2xx"}';
    const denied = 'keyport_http_responses_total{api="gateway",status_class="4xx"}';
    const headers = { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' };
    for (let i = 0; i < 3; i++) {
      expect((await gw.request('POST', '/v1/chat/completions', { headers, body: chatBody() })).status).toBe(
        200,
      );
    }
    const streamed = await gw.request('POST', '/v1/chat/completions', { headers, body: chatBody(true) });
    expect(streamed.status).toBe(200);
    expect(streamed.headers['content-type']).toMatch(/text\/event-stream/);
    const bad = await gw.request('POST', '/v1/chat/completions', {
      headers: { ...headers, authorization: 'Bearer kp_proj_not-a-key' },
      body: chatBody(),
    });
    expect(bad.status).toBe(401);

    const after = await scrape();
    expect(seriesValue(after, ok) - seriesValue(before, ok)).toBe(4);
    expect(seriesValue(after, denied) - seriesValue(before, denied)).toBe(1);
    expect(after).toContain('keyport_limiter_info{backend="memory"} 1');
    expect(after).toContain('keyport_limiter_redis_degraded 0');
    expect(after).toMatch(/^keyport_usage_pending_events \d+$/m);
    // Node's own, under the same prefix.
    expect(after).toMatch(/^keyport_process_cpu_user_seconds_total \d/m);
    expect(after).toMatch(/^keyport_nodejs_eventloop_lag_seconds \d/m);
    // No organization, project, key or secret anywhere.
    expect(after).not.toContain(gw.instance.organization.id);
    expect(after).not.toContain(key.key.id);
    for (const secret of gw.secrets()) expect(after).not.toContain(secret);
  });
});

describe('streams in the log and the metrics', () => {
  it('a stream is logged and counted once, with what happened to it: 499 when the client left', async () => {
    const gw = await createTestGateway({ chunkDelayMs: 50, chunkCount: 20 });
    try {
      const key = await gw.createKey();
      const headers = { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' };
      const lines = (id: string) =>
        gw.logs.filter((l) => l.includes(id) && l.includes('"msg":"request"')).map((l) => JSON.parse(l));
      const whole = await gw.request('POST', '/v1/chat/completions', { headers, body: chatBody(true) });
      const wholeId = String(whole.headers['x-request-id']);
      await vi.waitFor(() => expect(lines(wholeId)).toHaveLength(1), { timeout: 5000 });
      expect(lines(wholeId)[0]).toMatchObject({ status: 200, streamed: true });

      const abort = new AbortController();
      const response = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: chatBody(true),
        signal: abort.signal,
      });
      const goneId = String(response.headers.get('x-request-id'));
      await response.body!.getReader().read(); // the first chunk, then the client leaves
      abort.abort();
      await vi.waitFor(() => expect(lines(goneId)).toHaveLength(1), { timeout: 5000 });
      expect(lines(goneId)[0]).toMatchObject({ status: 499, streamed: true });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(lines(goneId)).toHaveLength(1);
      expect(lines(wholeId)).toHaveLength(1);
      const metrics = (await gw.request('GET', '/metrics')).text;
      expect(seriesValue(metrics, 'keyport_http_responses_total{api="gateway",status_class="2xx"}')).toBe(1);
      expect(seriesValue(metrics, 'keyport_http_responses_total{api="gateway",status_class="4xx"}')).toBe(1);
    } finally {
      await gw.close();
    }
  });
});

describe('metrics turned off', () => {
  it('KEYPORT_METRICS=off: no /metrics', async () => {
    const gw = await createTestGateway({ config: { metrics: 'off' } });
    try {
      expect((await gw.request('GET', '/metrics')).status).toBe(404);
    } finally {
      await gw.close();
    }
  });
});
