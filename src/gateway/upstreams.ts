/**
 * Upstreams: the model servers behind the gateway. A request goes to the first upstream whose
 * model list (names or globs) matches its `model`; requests without a model (files, batches…) go
 * to the first upstream. Credentials come from environment variables and live only here.
 */
import { Agent, request } from 'undici';
import { type UpstreamConfig, upstreamCredential } from '../config/config.ts';
import { compileModelAllowList, type ModelMatcher } from '../core/allow-lists.ts';

export interface Upstream {
  name: string;
  /** Base URL including its /v1, no trailing slash. */
  baseUrl: string;
  credential: string | undefined;
  serves: ModelMatcher;
  /** The model names listed in its configuration (globs are expanded from its /models). */
  explicitModels: string[];
  hasGlobs: boolean;
  timeoutMs: number;
  agent: Agent;
}

export interface ModelEntry {
  id: string;
  upstream: string;
  created: number;
  ownedBy: string;
}

const MODEL_LIST_TTL_MS = 60_000;

export class UpstreamRouter {
  readonly upstreams: Upstream[];
  #modelList: { until: number; models: ModelEntry[] } | undefined;

  constructor(configs: UpstreamConfig[], env: NodeJS.ProcessEnv = process.env) {
    this.upstreams = configs.map((config) => ({
      name: config.name,
      baseUrl: config.baseUrl,
      credential: upstreamCredential(config, env),
      serves: compileModelAllowList(config.models),
      explicitModels: config.models.filter((m) => !/[*?[\]{}!]/.test(m)),
      hasGlobs: config.models.some((m) => /[*?[\]{}!]/.test(m)),
      timeoutMs: config.timeoutMs,
      // Keep-alive connections per upstream; a generous pool, since streams hold a connection each.
      agent: new Agent({
        connections: 256,
        keepAliveTimeout: 30_000,
        connect: { timeout: config.connectTimeoutMs },
      }),
    }));
  }

  /** The upstream for a model, or for a request without one. */
  route(model: string | undefined): Upstream | undefined {
    if (model === undefined) return this.upstreams[0];
    return this.upstreams.find((upstream) => upstream.serves(model));
  }

  /** Every model the gateway can serve: configured names, plus what glob upstreams list. */
  async listModels(): Promise<ModelEntry[]> {
    if (this.#modelList && this.#modelList.until > Date.now()) return this.#modelList.models;
    const seen = new Map<string, ModelEntry>();
    for (const upstream of this.upstreams) {
      for (const id of upstream.explicitModels) {
        if (!seen.has(id)) seen.set(id, { id, upstream: upstream.name, created: 0, ownedBy: upstream.name });
      }
      if (!upstream.hasGlobs) continue;
      for (const entry of await fetchUpstreamModels(upstream)) {
        if (upstream.serves(entry.id) && !seen.has(entry.id)) seen.set(entry.id, entry);
      }
    }
    const models = [...seen.values()];
    this.#modelList = { until: Date.now() + MODEL_LIST_TTL_MS, models };
    return models;
  }

  async close(): Promise<void> {
    await Promise.all(this.upstreams.map((upstream) => upstream.agent.close()));
  }
}

/** An upstream's own /models; an unreachable upstream lists nothing rather than failing the list. */
async function fetchUpstreamModels(upstream: Upstream): Promise<ModelEntry[]> {
  try {
    const response = await request(`${upstream.baseUrl}/models`, {
      dispatcher: upstream.agent,
      headers: upstream.credential ? { authorization: `Bearer ${upstream.credential}` } : {},
      headersTimeout: 5000,
      bodyTimeout: 5000,
    });
    if (response.statusCode !== 200) {
      await response.body.dump();
      return [];
    }
    const body = (await response.body.json()) as {
      data?: { id?: unknown; created?: unknown; owned_by?: unknown }[];
    };
    return (body.data ?? [])
      .filter((m) => typeof m.id === 'string')
      .map((m) => ({
        id: m.id as string,
        upstream: upstream.name,
        created: typeof m.created === 'number' ? m.created : 0,
        ownedBy: typeof m.owned_by === 'string' ? m.owned_by : upstream.name,
      }));
  } catch {
    return [];
  }
}
