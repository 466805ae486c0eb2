/**
 * An in-process Keyport for tests: services on a test database, the Fastify app, an initialized
 * organization with its admin key, and the official `openai` SDK wired to the app through
 * `app.inject` (no ports).
 */

import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { type BootstrapResult, bootstrap, DEFAULT_BOOTSTRAP } from '../../src/accounts/bootstrap.ts';
import { buildApp } from '../../src/api/app.ts';
import { type Config, type ConfigInput, loadConfig } from '../../src/config/config.ts';
import type { Limiter } from '../../src/limits/limiter.ts';
import { createLogger, createServices, type Services } from '../../src/services.ts';
import { type Backend, openTestStore } from './stores.ts';

export interface TestApp {
  app: FastifyInstance;
  services: Services;
  config: Config;
  /** The bootstrapped organization, owner, project and admin key (with its secret). */
  instance: BootstrapResult;
  adminKey: string;
  /** Every log line written so far. */
  logs: string[];
  /** The official SDK, authenticated with `adminKey` unless told otherwise. */
  sdk(options?: { adminKey?: string; apiKey?: string; maxRetries?: number }): OpenAI;
  close(): Promise<void>;
}

export async function createTestApp(
  options: { backend?: Backend; config?: ConfigInput; now?: () => number; limiter?: Limiter } = {},
): Promise<TestApp> {
  // No journal: parallel test apps would share one in the checkout's data directory (the journal
  // is tested on its own and through real processes).
  const config = loadConfig({}, { logLevel: 'info', usageJournal: 'off', ...options.config });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const store = await openTestStore(options.backend);
  const services = await createServices(config, {
    store,
    logger: createLogger(config, sink),
    ...(options.now ? { now: options.now } : {}),
    ...(options.limiter ? { limiter: options.limiter } : {}),
  });
  const app = await buildApp(services);
  const instance = await bootstrap(store.db, services.keys, DEFAULT_BOOTSTRAP);
  const adminKey = instance.adminKey.secret;
  return {
    app,
    services,
    config,
    instance,
    adminKey,
    logs,
    sdk: sdkFactory(app, adminKey),
    close: async () => {
      await app.close();
      await services.close();
      await store.close();
    },
  };
}

/** The official SDK over `app.inject`, authenticated with `adminKey` unless told otherwise. */
export function sdkFactory(app: FastifyInstance, adminKey: string): TestApp['sdk'] {
  return (options = {}) =>
    new OpenAI({
      baseURL: 'http://keyport.test/v1',
      ...(options.apiKey ? { apiKey: options.apiKey } : { adminAPIKey: options.adminKey ?? adminKey }),
      maxRetries: options.maxRetries ?? 0,
      fetch: injectFetch(app),
    });
}

/** A `fetch` that never leaves the process: requests go to `app.inject`. */
export function injectFetch(app: FastifyInstance): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
    const response = await app.inject({
      method: request.method as 'GET',
      url: url.pathname + url.search,
      headers: Object.fromEntries(request.headers.entries()),
      ...(body ? { payload: body } : {}),
    });
    const headers = new Headers();
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined) continue;
      for (const item of Array.isArray(value) ? value : [value]) headers.append(name, String(item));
    }
    return new Response(response.statusCode === 204 ? null : response.rawPayload, {
      status: response.statusCode,
      headers,
    });
  }) as typeof fetch;
}
