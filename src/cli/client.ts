/**
 * The CLI's Admin API client. Key and project commands talk to a running Keyport over HTTP with
 * an admin key, exactly as curl or the `openai` SDK would: one code path for every surface, and
 * no second process opening the embedded database while the server holds it.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../core/user-error.ts';

export class CliError extends UserError {}

export interface ClientOptions {
  url?: string | undefined;
}

export function resolveBaseUrl(options: ClientOptions, env: NodeJS.ProcessEnv = process.env): string {
  const url =
    options.url ?? env.KEYPORT_URL ?? `http://127.0.0.1:${env.KEYPORT_PORT || configFilePort(env) || 8080}`;
  return url.replace(/\/+$/, '');
}

/** The port in the `KEYPORT_CONFIG` file, as the server reads it (the CLI finds the same server). */
function configFilePort(env: NodeJS.ProcessEnv): number | undefined {
  if (!env.KEYPORT_CONFIG) return undefined;
  try {
    const port = (JSON.parse(readFileSync(env.KEYPORT_CONFIG, 'utf8')) as { port?: unknown }).port;
    return typeof port === 'number' ? port : undefined;
  } catch {
    return undefined; // the server will say what is wrong with the file
  }
}

export class AdminClient {
  readonly baseUrl: string;
  readonly #adminKey: string;

  constructor(options: ClientOptions, env: NodeJS.ProcessEnv = process.env) {
    this.baseUrl = resolveBaseUrl(options, env);
    const key = env.KEYPORT_ADMIN_KEY;
    if (!key) {
      throw new CliError(
        'KEYPORT_ADMIN_KEY is not set. Export the admin key that `keyport init` (or the first `npm start`) printed:\n' +
          '  export KEYPORT_ADMIN_KEY=kp_admin_…',
      );
    }
    this.#adminKey = key;
  }

  get<T>(path: string, query: Record<string, string | number | boolean | undefined> = {}): Promise<T> {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query))
      if (value !== undefined) search.set(name, String(value));
    const qs = search.toString();
    return this.request('GET', qs ? `${path}?${qs}` : path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request('POST', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request('DELETE', path);
  }

  /** Follows `after` cursors to the end. */
  async listAll<T extends { id: string }>(
    path: string,
    query: Record<string, string | boolean | undefined> = {},
  ) {
    const items: T[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.get<{ data: T[]; has_more: boolean; last_id: string | null }>(path, {
        ...query,
        limit: 100,
        after,
      });
      items.push(...page.data);
      if (!page.has_more || !page.last_id) return items;
      after = page.last_id;
    }
  }

  /** A file the API renders (an invoice PDF, a CSV export): the bytes as they come. */
  async download(path: string): Promise<Buffer> {
    const response = await this.fetch('GET', path);
    if (!response.ok) await this.fail(response, await response.text());
    return Buffer.from(await response.arrayBuffer());
  }

  private async fetch(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(`${this.baseUrl}/v1/organization${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#adminKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (error) {
      throw new CliError(
        `cannot reach Keyport at ${this.baseUrl} (${(error as Error).cause ?? (error as Error).message}). ` +
          'Is `keyport serve` (or `npm start`) running? Set KEYPORT_URL or --url if it listens elsewhere.',
      );
    }
  }

  private async fail(response: Response, text: string): Promise<never> {
    let json: { error?: { message?: string; code?: string } } = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new CliError(`unexpected response from ${this.baseUrl} (HTTP ${response.status})`);
    }
    const error = json.error;
    throw new CliError(
      `${error?.message ?? `HTTP ${response.status}`}${error?.code ? ` (${error.code})` : ''}`,
    );
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.fetch(method, path, body);
    const text = await response.text();
    if (!response.ok) return this.fail(response, text);
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      throw new CliError(`unexpected response from ${this.baseUrl} (HTTP ${response.status})`);
    }
  }
}
