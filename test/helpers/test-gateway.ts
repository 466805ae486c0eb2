/**
 * A Keyport gateway on a real socket, for what `app.inject` cannot show: streams passing through
 * event by event, clients that go away mid-stream, client addresses, upstreams that fail.
 *
 * Builds on the pieces of test-app.ts: a test store, services (with a MemoryUsageRecorder to read
 * usage events back), the app and a bootstrapped organization; then listens on loopback. It starts
 * its own mock upstream (recording every request) and points the gateway at it with a recognisable
 * fake upstream secret, so tests can check that secret goes upstream and nowhere else.
 *
 * Every response a client of this gateway sees (through `openai()`, `fetch` or `request`) is kept in
 * `transcript`, and every log line in `logs`: `findLeaks()` looks for secrets in both.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import OpenAI, { APIError, type ClientOptions } from 'openai';
import { expect } from 'vitest';
import { bootstrap, DEFAULT_BOOTSTRAP } from '../../src/accounts/bootstrap.ts';
import { buildApp } from '../../src/api/app.ts';
import { MemoryUsageRecorder, type UsageEvent } from '../../src/billing/usage-recorder.ts';
import { type ConfigInput, loadConfig } from '../../src/config/config.ts';
import { type MockUpstream, startMockUpstream } from '../../src/gateway/mock-upstream.ts';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import type { Limiter } from '../../src/limits/limiter.ts';
import { createLogger, createServices } from '../../src/services.ts';
import { type Backend, openTestStore, TEST_ACTOR } from './stores.ts';
import { sdkFactory, type TestApp } from './test-app.ts';

export const UPSTREAM_KEY_ENV = 'TEST_UPSTREAM_KEY';

type UpstreamInput = NonNullable<ConfigInput['upstreams']>[number];

export interface TestGatewayOptions {
  backend?: Backend;
  /** Wait between the mock's streamed pieces (default 0). */
  chunkDelayMs?: number;
  /** Pieces a streamed mock reply is split into (default 8). */
  chunkCount?: number;
  /** Further settings (trustedProxies, gatewayBodyLimitBytes, …); `upstreams` replaces the default. */
  config?: Omit<ConfigInput, 'upstreams'>;
  /** The upstreams, given the mock; default: the mock for every model, with the upstream secret. */
  upstreams?: (mock: MockUpstream) => UpstreamInput[];
  /** More credential variables (name → value) the upstreams name; their values count as secrets. */
  env?: Record<string, string>;
  /** Loopback only: 127.0.0.1 (default) or ::1. */
  host?: '127.0.0.1' | '::1';
  /** Replaces the limiter the configuration selects (e.g. a RedisLimiter on a test Redis). */
  limiter?: Limiter;
  /** The clock of limits and budgets. */
  now?: () => number;
  /**
   * Another gateway's database: a second instance of the same deployment (no bootstrap; the
   * first gateway's organization and keys are used; the store is closed by its owner).
   */
  shareStoreWith?: TestGateway;
}

export interface GatewayKeyOptions {
  name?: string;
  projectId?: string;
  scopes?: string[];
  allowedModels?: string[];
  allowedIps?: string[];
  expiresAt?: Date | null;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The parsed JSON body, or undefined. */
  body: unknown;
}

export interface TestGateway extends TestApp {
  /** `http://127.0.0.1:port` (or `http://[::1]:port`), no trailing slash. */
  url: string;
  /** The credential the default upstream is configured with (`upstream-secret-…`). */
  upstreamSecret: string;
  mock: MockUpstream;
  usage: MemoryUsageRecorder;
  /** Every response (status line, headers and body) a client of this gateway has seen. */
  transcript: string[];
  /** A project key (by default in the bootstrapped project, owned by its owner), secret included. */
  createKey(options?: GatewayKeyOptions): Promise<IssuedKey>;
  /** The official SDK pointed at the gateway; responses are recorded in `transcript`. */
  openai(apiKey: string, options?: Partial<ClientOptions>): OpenAI;
  /** `fetch`, recording what comes back. */
  fetch: typeof fetch;
  /** One request with node:http (any header may be sent), recorded; `path` is relative to `url`. */
  request(
    method: string,
    path: string,
    options?: { headers?: Record<string, string>; body?: string | Buffer },
  ): Promise<RawResponse>;
  /** The usage events of one request id, after waiting (bounded) until at least one is recorded. */
  usageFor(requestId: string, timeoutMs?: number): Promise<UsageEvent[]>;
  /** Every secret of this gateway: upstream credentials, admin key, every key created here. */
  secrets(): string[];
  /** One more secret to look for (a key created or rotated through the Admin API). */
  addSecret(secret: string): void;
  /** Where a secret shows up in the transcript or the logs (empty: nowhere). */
  findLeaks(): Promise<string[]>;
}

export async function createTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const mock = await startMockUpstream({
    recordRequests: true,
    chunkDelayMs: options.chunkDelayMs ?? 0,
    ...(options.chunkCount !== undefined ? { chunkCount: options.chunkCount } : {}),
  });
  const upstreamSecret = `upstream-secret-${randomBytes(12).toString('hex')}`;
  const env: Record<string, string> = { [UPSTREAM_KEY_ENV]: upstreamSecret, ...options.env };
  // The upstream router reads credentials from process.env when it is built.
  Object.assign(process.env, env);
  const upstreams = options.upstreams?.(mock) ?? [
    { name: 'mock', baseUrl: `${mock.url}/v1`, models: ['*'], apiKeyEnv: UPSTREAM_KEY_ENV },
  ];
  const config = loadConfig(env, {
    logLevel: 'info',
    ...options.config,
    upstreams,
    mockUpstream: 'off',
  });

  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const usage = new MemoryUsageRecorder();
  const shared = options.shareStoreWith;
  const store = shared ? shared.services.store : await openTestStore(options.backend);
  const services = await createServices(config, {
    store,
    logger: createLogger(config, sink),
    usage,
    ...(options.limiter ? { limiter: options.limiter } : {}),
    ...(options.now ? { now: options.now } : {}),
  });
  const app = await buildApp(services);
  const instance = shared ? shared.instance : await bootstrap(store.db, services.keys, DEFAULT_BOOTSTRAP);
  const adminKey = instance.adminKey.secret;
  const host = options.host ?? '127.0.0.1';
  await app.listen({ port: 0, host });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the gateway has no TCP address');
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;

  const keySecrets: string[] = [adminKey];
  const transcript: string[] = [];
  const pendingReads = new Set<Promise<void>>();

  const recordResponse = (response: Response) => {
    const head = [`HTTP ${response.status}`, ...[...response.headers].map(([n, v]) => `${n}: ${v}`)];
    transcript.push(head.join('\n'));
    const clone = response.clone();
    // Read the copy as it arrives, so a stream that breaks or is aborted is still recorded up to there.
    const read = (async () => {
      let text = '';
      const decoder = new TextDecoder();
      try {
        if (clone.body) {
          for await (const chunk of clone.body) text += decoder.decode(chunk, { stream: true });
        }
      } catch {
        // aborted or broken: keep what came
      } finally {
        transcript.push(text + decoder.decode());
      }
    })();
    pendingReads.add(read);
    void read.finally(() => pendingReads.delete(read));
  };

  const recordingFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const response = await fetch(input, init);
    recordResponse(response);
    return response;
  }) as typeof fetch;

  const request: TestGateway['request'] = (method, path, requestOptions = {}) =>
    new Promise<RawResponse>((resolve, reject) => {
      const target = new URL(path, url);
      const req = http.request(
        target,
        { method, headers: requestOptions.headers ?? {}, agent: false, timeout: 15_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const head = [
              `HTTP ${res.statusCode}`,
              ...Object.entries(res.headers).map(([n, v]) => `${n}: ${v}`),
            ];
            transcript.push(head.join('\n'), text);
            let body: unknown;
            try {
              body = text === '' ? undefined : JSON.parse(text);
            } catch {
              body = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 15 s`)));
      req.on('error', reject);
      req.end(requestOptions.body);
    });

  const gateway: TestGateway = {
    app,
    services,
    config,
    instance,
    adminKey,
    logs,
    sdk: sdkFactory(app, adminKey),
    url,
    upstreamSecret,
    mock,
    usage,
    transcript,
    async createKey(keyOptions = {}) {
      const issued = await services.keys.create(
        {
          organizationId: instance.organization.id,
          kind: 'proj',
          name: keyOptions.name ?? 'Gateway test key',
          projectId: keyOptions.projectId ?? instance.project.id,
          ownerUserId: instance.owner.id,
          scopes: keyOptions.scopes,
          allowedModels: keyOptions.allowedModels,
          allowedIps: keyOptions.allowedIps,
          expiresAt: keyOptions.expiresAt,
        },
        TEST_ACTOR,
      );
      keySecrets.push(issued.secret);
      return issued;
    },
    openai: (apiKey, clientOptions = {}) =>
      new OpenAI({
        apiKey,
        baseURL: `${url}/v1`,
        maxRetries: 0,
        timeout: 15_000,
        // Explicit, so OPENAI_ORG_ID / OPENAI_PROJECT_ID in the environment cannot leak in.
        organization: null,
        project: null,
        fetch: recordingFetch,
        ...clientOptions,
      }),
    fetch: recordingFetch,
    request,
    async usageFor(requestId, timeoutMs = 5000) {
      await waitFor(() => usage.events.some((event) => event.requestId === requestId), {
        timeoutMs,
        what: `a usage event for ${requestId}`,
      });
      return usage.events.filter((event) => event.requestId === requestId);
    },
    secrets: () => [...Object.values(env), ...keySecrets],
    addSecret: (secret) => void keySecrets.push(secret),
    async findLeaks() {
      await Promise.race([Promise.all([...pendingReads]), sleep(5000)]);
      const leaks: string[] = [];
      for (const secret of gateway.secrets()) {
        transcript.forEach((text, i) => {
          if (text.includes(secret)) leaks.push(`response #${i} contains ${secret.slice(0, 12)}…`);
        });
        logs.forEach((line, i) => {
          if (line.includes(secret)) leaks.push(`log line #${i} contains ${secret.slice(0, 12)}…`);
        });
      }
      return leaks;
    },
    async close() {
      const closing = app.close();
      // A client may leave a spare connection on which it never sends a request (fetch does, after
      // an abort); server.close() would wait for it until Node's headers timeout (60 s).
      app.server.closeAllConnections();
      await closing;
      await services.close();
      if (!shared) await store.close();
      await mock.close();
      for (const name of Object.keys(env)) delete process.env[name];
    },
  };
  return gateway;
}

/** The SDK error a request is refused with (fails the test if it succeeds or fails otherwise). */
export async function refusal(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof APIError) return error;
    throw error;
  }
  throw new Error('expected the request to be refused, but it succeeded');
}

/** Polls until `condition` holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  { timeoutMs = 5000, what = 'the condition' }: { timeoutMs?: number; what?: string } = {},
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The events of a server-sent event stream, each as sent (without its blank line). */
export function sseEvents(text: string): string[] {
  return text
    .split(/\r?\n\r?\n/)
    .map((event) => event.trim())
    .filter((event) => event.length > 0);
}

/** The `data:` payload of an event. */
export function sseData(event: string): string {
  return event
    .split(/\r?\n/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(line[5] === ' ' ? 6 : 5))
    .join('\n');
}

/** Whether this machine can listen on `host` (e.g. ::1 where IPv6 loopback is missing). */
export function canListen(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(0, host, () => server.close(() => resolve(true)));
  });
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** The OpenAI error shape with an x-request-id, on a raw gateway response; returns `error`. */
export function expectGatewayError(
  response: RawResponse,
  status: number,
  code: string | null,
): { message: string; type: string; param: string | null; code: string | null } {
  expect(response.status, response.text).toBe(status);
  expect(response.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const body = response.body as {
    error: { message: string; type: string; param: string | null; code: string | null };
  };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.code).toBe(code);
  expect(body.error.type).toBe(status >= 500 ? 'server_error' : 'invalid_request_error');
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}
