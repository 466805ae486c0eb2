/**
 * The gateway: every `/v1/…` path but `/v1/organization/…` is OpenAI's API, authenticated with a
 * Keyport key and proxied to an upstream that holds the real credential. Streams pass through
 * event by event; every request that reaches an upstream yields one usage event.
 */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { pipeline, Transform } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { request as upstreamRequest } from 'undici';
import { ApiError, badRequest } from '../core/errors.ts';
import { type RouteRule, ruleFor } from '../core/openai-routes.ts';
import type { Admission } from '../limits/enforcer.ts';
import type { Services } from '../services.ts';
import { uploadedAudioSeconds } from './audio-duration.ts';
import { authenticate, authorize, checkModel, type GatewayPrincipal, modelNotFound } from './authorize.ts';
import { headersForClient, headersForUpstream } from './http-headers.ts';
import { KEY_SELF_PATHS, keySelf } from './key-self.ts';
import { countPromptTokens, countTokens } from './token-count.ts';
import type { Upstream } from './upstreams.ts';
import { parseJson, SseUsageTap, type TokenUsage, unitsFrom, usageFrom } from './usage.ts';

interface GatewayBody {
  raw: Buffer;
  json: Record<string, unknown> | undefined;
  /** From a JSON body, or the `model` field of a multipart form. */
  model: string | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    gatewayRule: RouteRule;
    gatewayPrincipal: GatewayPrincipal;
    /** The path below /v1, without the query string. */
    gatewayPath: string;
    /**
     * A stream the gateway took over (hijacked): it logs and counts itself, with what happened to
     * it (the response hook would count a complete one again, and never sees a client leave).
     */
    gatewayStream: boolean;
  }
}

/** Registered with the `/v1` prefix. */
export function registerGateway(services: Services) {
  const { config, verifier, upstreams } = services;
  return async (app: FastifyInstance) => {
    app.decorateRequest('gatewayRule', null as never);
    app.decorateRequest('gatewayPrincipal', null as never);
    app.decorateRequest('gatewayPath', '');
    app.decorateRequest('gatewayStream', false);

    // Bodies stay raw (forwarded byte for byte unless we must change them); JSON is also parsed,
    // for the model and the stream flags. Anything else (multipart uploads, audio) passes as is.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, raw, done) => {
      const buffer = raw as Buffer;
      if (buffer.length === 0) return done(null, { raw: buffer, json: undefined, model: undefined });
      try {
        const json: unknown = JSON.parse(buffer.toString('utf8'));
        if (typeof json !== 'object' || json === null || Array.isArray(json)) {
          return done(badRequest('The request body must be a JSON object.'));
        }
        const model = (json as { model?: unknown }).model;
        done(null, { raw: buffer, json, model: typeof model === 'string' ? model : undefined });
      } catch {
        done(
          new ApiError(
            'invalid_json',
            'We could not parse the JSON body of your request. The body must be valid JSON.',
          ),
        );
      }
    });
    app.addContentTypeParser('*', { parseAs: 'buffer' }, async (request: FastifyRequest, raw: Buffer) => {
      const type = request.headers['content-type'] ?? '';
      if (type.startsWith('multipart/form-data'))
        return { raw, json: undefined, model: await multipartModel(request, raw) };
      // Many upstreams read a JSON body whatever its content type says (or with none): so does
      // the gateway, or its model would escape the allow-list, the limits and the price.
      const json = jsonObjectOf(raw);
      if (json) {
        const model = json.model;
        return { raw, json, model: typeof model === 'string' ? model : undefined };
      }
      return { raw, json: undefined, model: undefined };
    });

    // Authenticate before reading the body: a bad key costs no upload.
    app.addHook('onRequest', async (request) => {
      const path = pathOf(request);
      // The path is checked here and sent upstream as is: a dot segment (`/files/../chat/…`) or an
      // encoded one would be resolved upstream into another endpoint than the one authorized (or
      // out of /v1 altogether, with the upstream's credential).
      if (!safePath(request.method, path)) {
        throw new ApiError('not_found', `Invalid URL (${request.method} /v1${path})`);
      }
      request.gatewayPath = path;
      if (request.method === 'GET' && KEY_SELF_PATHS.has(path)) {
        // The key's own view needs no permission: any valid key may read itself.
        request.gatewayPrincipal = await authenticate(request, verifier);
        return;
      }
      const rule = ruleFor(request.method, path);
      if (!rule || path.startsWith('/organization')) {
        throw new ApiError('not_found', `Invalid URL (${request.method} /v1${path})`);
      }
      request.gatewayRule = rule;
      request.gatewayPrincipal = await authenticate(request, verifier);
      authorize(request.gatewayPrincipal, rule);
    });

    app.route({
      method: ['GET', 'POST', 'DELETE'],
      url: '/*',
      bodyLimit: config.gatewayBodyLimitBytes,
      handler: async (request, reply) => {
        const path = request.gatewayPath;
        if (request.method === 'GET' && KEY_SELF_PATHS.has(path)) return keySelf(request, services, path);
        if (request.method === 'GET' && (path === '/models' || path.startsWith('/models/'))) {
          return listOrRetrieveModel(request, path);
        }
        return proxy(request, reply, services, path);
      },
    });
  };

  async function listOrRetrieveModel(request: FastifyRequest, path: string) {
    const principal = request.gatewayPrincipal;
    const models = (await upstreams.listModels()).filter((model) => principal.key.allowsModel(model.id));
    const toObject = (m: (typeof models)[number]) => ({
      id: m.id,
      object: 'model',
      created: m.created,
      owned_by: m.ownedBy,
    });
    if (path === '/models') return { object: 'list', data: models.map(toObject) };
    const id = decodeURIComponent(path.slice('/models/'.length));
    const model = models.find((m) => m.id === id);
    if (!model) throw modelNotFound(id);
    return toObject(model);
  }
}

async function proxy(request: FastifyRequest, reply: FastifyReply, services: Services, path: string) {
  const rule = request.gatewayRule;
  const principal = request.gatewayPrincipal;
  const body = request.body as GatewayBody | undefined;
  const model = body?.model;
  // A key limited to some models cannot use an endpoint that takes one without naming it: the
  // upstream's default would escape the allow-list.
  if (model === undefined && (rule.metered || (rule.kind && principal.key.restrictsModels))) {
    throw badRequest('You must provide a model parameter.', 'model');
  }
  if (model === undefined && rule.modelElsewhere && principal.key.restrictsModels) {
    throw new ApiError(
      'permission_denied',
      `This key may only use some models, and ${request.method} /v1${path} runs models the request ` +
        'does not name (from an input file or an assistant), which Keyport cannot check. Name the model ' +
        'where the endpoint takes one, or use a key without a model allow-list.',
    );
  }
  if (model !== undefined) checkModel(principal, model);
  const upstream = services.upstreams.route(model);
  if (!upstream) {
    if (model !== undefined) throw modelNotFound(model);
    throw new ApiError('service_unavailable', 'No upstream model server is configured.');
  }

  // Credit (prepaid and trial plans), budgets, rate limits and concurrency: refused here with a
  // 429, or charged and settled at the end.
  const credit = services.creditGate.check(principal.organization.id);
  if (credit) await credit;
  const admission = await services.enforcer.admit(
    {
      organizationId: principal.organization.id,
      projectId: principal.project?.id ?? null,
      apiKeyId: principal.key.id,
    },
    model,
    () => estimateTokens(rule.metered, body?.json, services.config.defaultMaxOutputTokens),
    request.id,
  );
  if (admission) reply.headers(admission.headers);

  const streamed = body?.json?.stream === true;
  const usage = new UsageCapture(
    services,
    request,
    principal,
    upstream,
    model,
    streamed,
    performance.now(),
    admission,
  );
  try {
    return await forward(request, reply, path, rule, body, upstream, usage);
  } catch (error) {
    // Whatever failed after admission still settles it: a slot held by a request that ended in an
    // error would refuse the key's next requests for as long as the lease lives.
    usage.abandon(error instanceof ApiError ? error.status : 500);
    throw error;
  }
}

/** From the admitted request to the client's answer: the upstream call, and the usage record. */
async function forward(
  request: FastifyRequest,
  reply: FastifyReply,
  path: string,
  rule: RouteRule,
  body: GatewayBody | undefined,
  upstream: Upstream,
  usage: UsageCapture,
) {
  const streamed = usage.streamed;
  let outgoing = body?.raw;
  let dropUsageChunk = false;
  // Ask the upstream to report a stream's usage; if the client did not ask, its chunk is dropped.
  if (streamed && (rule.metered === 'chat' || rule.metered === 'completions') && body?.json) {
    const options = body.json.stream_options as { include_usage?: unknown } | undefined | null;
    if (options?.include_usage !== true) {
      dropUsageChunk = true;
      outgoing = withUsageAsked(body.json, options);
    }
  }

  const abort = new Cancellation();
  const onClientGone = () => {
    if (!reply.raw.writableFinished) abort.abort();
  };
  reply.raw.once('close', onClientGone);

  // The upstream call or its body failed: the client left (499, nothing to send) or the upstream did.
  const failed = (error: unknown): FastifyReply => {
    if (abort.aborted) {
      usage.record(499, undefined);
      return reply;
    }
    const failure = upstreamFailure(error, upstream);
    usage.record(failure.status, undefined);
    throw failure;
  };

  const query = request.url.indexOf('?') === -1 ? '' : request.url.slice(request.url.indexOf('?'));
  let response: Awaited<ReturnType<typeof upstreamRequest>>;
  try {
    response = await upstreamRequest(`${upstream.baseUrl}${path}${query}`, {
      method: request.method as 'GET' | 'POST' | 'DELETE',
      headers: headersForUpstream(request.headers, upstream.credential, request.id),
      body: request.method === 'GET' ? null : (outgoing ?? null),
      signal: abort,
      dispatcher: upstream.agent,
      headersTimeout: upstream.timeoutMs,
      bodyTimeout: upstream.timeoutMs,
    });
  } catch (error) {
    return failed(error);
  }
  usage.reachedUpstream = true;

  const contentType = String(response.headers['content-type'] ?? '');
  const headers = headersForClient(response.headers);
  if (usage.admission) Object.assign(headers, usage.admission.headers);

  if (contentType.includes('text/event-stream') && rule.metered) {
    return streamEvents(reply, response, headers, rule.metered, dropUsageChunk, usage, body, abort);
  }

  // Transcripts as text, SRT or VTT are small: read whole, so their length can be billed.
  const textTranscript = rule.kind === 'audio_transcriptions' && contentType.startsWith('text/');
  if (rule.metered || contentType.includes('application/json') || textTranscript) {
    let buffer: Buffer;
    try {
      buffer = Buffer.from(await response.body.arrayBuffer());
    } catch (error) {
      return failed(error);
    }
    // The upstream refusing its own credential is the operator's problem, not the client's key:
    // a 401 passed on would look like a bad Keyport key and show the upstream key's masked form.
    if (response.statusCode === 401 || response.statusCode === 403) {
      usage.record(502, undefined);
      throw new ApiError(
        'bad_gateway',
        `The upstream model server "${upstream.name}" refused Keyport's credential (${response.statusCode}); the operator must check it.`,
      );
    }
    if (response.statusCode >= 500 && !contentType.includes('json')) {
      // Its page (a proxy's HTML, a stack trace) stays behind; an overloaded or timed-out server is
      // still said to be one, with its retry-after, so that clients wait as long as it asked.
      const failure = nonJsonFailure(response.statusCode, upstream, response.headers['retry-after']);
      usage.record(failure.status, undefined);
      throw failure;
    }
    let tokens: TokenUsage | undefined;
    let units = 0;
    if (response.statusCode < 400 && (rule.metered || rule.kind)) {
      const parsed = parseJson(buffer.toString('utf8'));
      if (rule.metered) {
        tokens = usageFrom(rule.metered, parsed);
        if (!tokens) {
          usage.estimated = true;
          tokens = estimateFromBody(rule.metered, body, parsed);
        }
      } else if (rule.kind === 'moderations') {
        // OpenAI reports moderation input tokens; the response carries none, so they are counted here.
        usage.estimated = true;
        tokens = { inputTokens: countPromptTokens(body?.json), cachedTokens: 0, outputTokens: 0 };
      } else {
        const text = parsed === undefined ? buffer.toString('utf8') : undefined;
        units = unitsFrom(rule.kind, body?.json, parsed ?? text);
        // Read off SRT/VTT cue times: not the upstream's figure.
        if (text !== undefined) usage.estimated = true;
        // Plain text (or JSON without a duration) says nothing of the audio's length: the file does.
        if (units === 0 && rule.kind === 'audio_transcriptions' && body) {
          const seconds = await uploadedAudioSeconds(body.raw, String(request.headers['content-type'] ?? ''));
          if (seconds !== undefined) {
            units = Math.ceil(seconds);
            usage.estimated = true;
          }
        }
      }
    }
    // Recorded before the body is sent: a client that got its answer has a usage record.
    usage.record(response.statusCode, tokens, units);
    return reply.status(response.statusCode).headers(headers).send(buffer);
  }

  // Anything else (speech audio, file contents): streamed through untouched but for its last chunk,
  // held until the usage is recorded. 'close' also fires when the client goes away mid-body, which
  // must still end the request's concurrency lease.
  const units = response.statusCode < 400 ? unitsFrom(rule.kind, body?.json, undefined) : 0;
  // A body not read (streamed images): its units come from the request, so they are an estimate.
  if (rule.kind === 'images') usage.estimated = true;
  // The body breaking upstream (502) is told apart from the client leaving (499).
  let upstreamBroke = false;
  response.body.once('error', () => {
    upstreamBroke = true;
  });
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) usage.estimated = true;
    usage.record(
      reply.raw.writableFinished ? response.statusCode : upstreamBroke ? 502 : 499,
      undefined,
      units,
    );
  });
  const passed = holdLastChunk(() => usage.record(response.statusCode, undefined, units));
  pipeline(response.body, passed, () => {});
  return reply.status(response.statusCode).headers(headers).send(passed);
}

async function streamEvents(
  reply: FastifyReply,
  response: Awaited<ReturnType<typeof upstreamRequest>>,
  headers: Record<string, string | string[]>,
  metered: NonNullable<RouteRule['metered']>,
  dropUsageChunk: boolean,
  usage: UsageCapture,
  body: GatewayBody | undefined,
  aborted: Cancellation,
) {
  reply.hijack();
  reply.request.gatewayStream = true;
  const res = reply.raw;
  res.writeHead(response.statusCode, {
    ...headers,
    'x-request-id': String(reply.getHeader('x-request-id') ?? ''),
    'cache-control': 'no-cache',
  });
  res.flushHeaders();
  const tap = new SseUsageTap(metered, dropUsageChunk);
  let outcome: 'complete' | 'client-gone' | 'upstream-broke' = 'complete';
  try {
    for await (const chunk of response.body) {
      const out = tap.push(chunk as Buffer);
      if (out.length > 0 && !res.write(out)) await drained(res);
      if (res.destroyed) break;
    }
    const rest = tap.end();
    if (rest.length > 0) res.write(rest);
  } catch {
    outcome = aborted.aborted || res.destroyed ? 'client-gone' : 'upstream-broke';
  }
  if (res.destroyed && outcome === 'complete') outcome = 'client-gone';

  let tokens = tap.usage;
  // The upstream's own count, when its usage chunk came (it comes last): exact even if the stream
  // broke or the client left after it. Without it, what was sent is counted here.
  if (!tokens) {
    usage.estimated = true;
    tokens = {
      inputTokens: countPromptTokens(body?.json),
      cachedTokens: 0,
      outputTokens: countTokens(tap.outputText()),
    };
  }
  const status = outcome === 'client-gone' ? 499 : outcome === 'upstream-broke' ? 502 : response.statusCode;
  // Recorded before the stream's terminal event goes out: a client that saw the end has a record.
  usage.record(status, tokens);
  if (outcome === 'complete') {
    const terminal = tap.release();
    if (terminal.length > 0) res.write(terminal);
    res.end();
  } else {
    res.destroy(); // the client must see a broken stream as broken, not as a clean end
  }
  usage.log(status);
}

/**
 * Cancels the upstream request when the client goes away. undici accepts any emitter of `abort` as
 * a signal; an AbortController costs about 10 µs per request on Node 20, this a fraction of one.
 */
class Cancellation extends EventEmitter {
  aborted = false;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}

function drained(res: ServerResponse): Promise<void> {
  // Already gone: 'close' has fired and would never fire again.
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

const NO_TOKENS: TokenUsage = { inputTokens: 0, cachedTokens: 0, outputTokens: 0 };
const NO_COST = { input: 0, cached: 0, output: 0, units: 0, total: 0 };

/**
 * Passes a body through one chunk behind, so that its end can wait for `beforeEnd` (the usage
 * record): the client cannot have the whole body before the request is recorded.
 */
function holdLastChunk(beforeEnd: () => void): Transform {
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const previous = held;
      held = chunk;
      done(null, previous);
    },
    flush(done) {
      beforeEnd();
      done(null, held);
    },
  });
}

/** A streamed request's body, asking the upstream to report usage. */
function withUsageAsked(
  json: Record<string, unknown>,
  options: { include_usage?: unknown } | undefined | null,
): Buffer {
  try {
    return Buffer.from(
      JSON.stringify({ ...json, stream_options: { ...(options ?? {}), include_usage: true } }),
    );
  } catch (error) {
    // JSON.parse takes any depth; JSON.stringify recurses, and a body nested thousands deep overflows.
    if (error instanceof RangeError) throw badRequest('The request body is nested too deeply.');
    throw error;
  }
}

/** One usage event per request that reached an upstream. */
class UsageCapture {
  estimated = false;
  /** The upstream answered: from then on the request yields a record, even if it fails here. */
  reachedUpstream = false;
  #recorded = false;

  constructor(
    private readonly services: Services,
    private readonly request: FastifyRequest,
    private readonly principal: GatewayPrincipal,
    private readonly upstream: Upstream,
    private readonly model: string | undefined,
    readonly streamed: boolean,
    private readonly started: number,
    readonly admission: Admission | undefined,
  ) {}

  /**
   * After an error, unless recorded already: a request the upstream answered is recorded with the
   * error's status; one that never reached it is not billed, only settled (its slots freed, its
   * estimated tokens given back).
   */
  abandon(status: number): void {
    if (this.#recorded) return;
    if (this.reachedUpstream) {
      this.record(status, undefined);
      return;
    }
    this.#recorded = true;
    if (this.admission) this.services.enforcer.settle(this.admission, undefined, 0);
  }

  record(status: number, tokens: TokenUsage | undefined, units = 0): void {
    if (this.#recorded) return;
    this.#recorded = true;
    const { key, organization, project } = this.principal;
    const now = Date.now();
    const cost =
      tokens || units > 0
        ? this.services.prices.costOf(this.model, { ...(tokens ?? NO_TOKENS), units }, now)
        : NO_COST;
    if (this.admission) this.services.enforcer.settle(this.admission, tokens, cost.total);
    this.services.creditGate.spent(organization.id, cost.total);
    this.services.usage.record({
      requestId: this.request.id,
      createdAt: new Date(now),
      organizationId: organization.id,
      projectId: project?.id ?? null,
      apiKeyId: key.id,
      userId: key.ownerUserId,
      serviceAccountId: key.serviceAccountId,
      method: this.request.method,
      endpoint: `/v1${this.request.gatewayPath}`,
      model: this.model ?? null,
      upstream: this.upstream.name,
      kind: this.request.gatewayRule.kind ?? 'other',
      inputTokens: tokens?.inputTokens ?? 0,
      cachedTokens: tokens?.cachedTokens ?? 0,
      outputTokens: tokens?.outputTokens ?? 0,
      units,
      status,
      latencyMs: Math.round(performance.now() - this.started),
      clientIp: this.request.ip ?? null,
      streamed: this.streamed,
      estimated: this.estimated,
      costNanoUsd: cost.total,
      costInputNanoUsd: cost.input,
      costCachedNanoUsd: cost.cached,
      costOutputNanoUsd: cost.output,
      costUnitsNanoUsd: cost.units,
    });
  }

  /** Hijacked (streamed) replies: counted and logged here, not by the response hook. */
  log(status: number): void {
    this.services.responses.count(this.request.url, status);
    this.request.log.info(
      {
        method: this.request.method,
        path: `/v1${this.request.gatewayPath}`,
        status,
        ms: Math.round((performance.now() - this.started) * 10) / 10,
        streamed: true,
      },
      'request',
    );
  }
}

/**
 * Tokens a request may use, charged to token limits at admission (reconciled when it ends): the
 * prompt counted locally plus the most it may generate (`max_tokens` and its newer names, or the
 * configured default), times `n` choices.
 */
function estimateTokens(
  metered: RouteRule['metered'],
  json: Record<string, unknown> | undefined,
  defaultMaxOutputTokens: number,
): number {
  if (!json) return 0;
  const prompt = countPromptTokens(json);
  if (metered === 'embeddings' || !metered) return prompt;
  const max = [json.max_completion_tokens, json.max_tokens, json.max_output_tokens].find(
    (value): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0,
  );
  const choices = typeof json.n === 'number' && json.n > 1 ? Math.min(Math.floor(json.n), 128) : 1;
  return prompt + (max ?? defaultMaxOutputTokens) * choices;
}

function estimateFromBody(
  metered: NonNullable<RouteRule['metered']>,
  body: GatewayBody | undefined,
  parsed: unknown,
): TokenUsage {
  let output = '';
  const response = parsed as
    | { choices?: { message?: { content?: unknown }; text?: unknown }[]; output_text?: unknown }
    | undefined;
  for (const choice of response?.choices ?? []) {
    if (typeof choice?.message?.content === 'string') output += choice.message.content;
    else if (typeof choice?.text === 'string') output += choice.text;
  }
  if (metered === 'responses' && typeof response?.output_text === 'string') output += response.output_text;
  return {
    inputTokens: countPromptTokens(body?.json),
    cachedTokens: 0,
    outputTokens: metered === 'embeddings' ? 0 : countTokens(output),
  };
}

function nonJsonFailure(status: number, upstream: Upstream, retryAfter: unknown): ApiError {
  const headers: Record<string, string> =
    typeof retryAfter === 'string' && /^(\d{1,9}|[A-Za-z0-9 ,:]{1,40} GMT)$/.test(retryAfter)
      ? { 'retry-after': retryAfter }
      : {};
  const name = `The upstream model server "${upstream.name}"`;
  if (status === 503)
    return new ApiError(
      'service_unavailable',
      `${name} is overloaded or down (503). Try again shortly.`,
      null,
      headers,
    );
  if (status === 504)
    return new ApiError('gateway_timeout', `${name} timed out (504). Try again shortly.`, null, headers);
  return new ApiError('bad_gateway', `${name} returned an error (${status}).`, null, headers);
}

function upstreamFailure(error: unknown, upstream: Upstream): ApiError {
  const code = (error as { code?: string }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new ApiError(
      'gateway_timeout',
      `The upstream model server "${upstream.name}" did not answer in time.`,
    );
  }
  return new ApiError(
    'bad_gateway',
    `The upstream model server "${upstream.name}" could not be reached${code ? ` (${code})` : ''}. Try again shortly.`,
  );
}

/** The path below /v1, without the query string. */
/**
 * No `.`/`..` segment, literal or percent-encoded, no backslash; no encoded slash either, but in
 * the model ids the gateway itself answers (`GET /models/org%2Fmodel`).
 */
function safePath(method: string, path: string): boolean {
  if (/%2e|%5c|\\/i.test(path)) return false;
  if (/%2f/i.test(path) && !(method === 'GET' && path.startsWith('/models/'))) return false;
  return !path.split('/').some((segment) => segment === '.' || segment === '..');
}

function pathOf(request: FastifyRequest): string {
  const url = request.url;
  const end = url.indexOf('?');
  // `//` collapsed (a base URL ending in a slash): checked and forwarded the same.
  return (end === -1 ? url : url.slice(0, end)).slice('/v1'.length).replace(/\/{2,}/g, '/') || '/';
}

/** The body as a JSON object, if it is one (whatever its content type said). */
function jsonObjectOf(raw: Buffer): Record<string, unknown> | undefined {
  const first = raw.find((byte) => byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09);
  if (first !== 0x7b) return undefined; // '{'
  try {
    const json: unknown = JSON.parse(raw.toString('utf8'));
    return typeof json === 'object' && json !== null && !Array.isArray(json)
      ? (json as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The `model` field of a multipart form (audio transcriptions, image edits), parsed by undici. */
async function multipartModel(request: FastifyRequest, raw: Buffer): Promise<string | undefined> {
  const type = request.headers['content-type'];
  if (!type?.startsWith('multipart/form-data')) return undefined;
  try {
    const form = await new Response(raw, { headers: { 'content-type': type } }).formData();
    const models = form.getAll('model');
    // Upstreams disagree on which of two `model` fields counts: the one checked must be the only one.
    if (models.length > 1) throw badRequest('The form has more than one model field.', 'model');
    const model = models[0];
    return typeof model === 'string' ? model : undefined;
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw badRequest('We could not parse the multipart body of your request.');
  }
}
