/**
 * A deterministic fake of the OpenAI API on plain `node:http`: what the gateway proxies to when no
 * model server is configured, what the tests steer with `x-mock-*` request headers, and the baseline
 * the gateway benchmark measures against. The hot path does little beyond `JSON.parse`, a cached
 * token count and `JSON.stringify`, so the baseline measures HTTP, not the mock.
 *
 * Shapes follow the `openai` SDK's types (imported as types only, so they cost nothing at runtime and
 * `tsc` tells us when a shape drifts from the SDK's).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encode } from 'gpt-tokenizer';
import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { Completion, CompletionUsage } from 'openai/resources/completions';
import type { CreateEmbeddingResponse, Embedding } from 'openai/resources/embeddings';
import type { Model } from 'openai/resources/models';
import type {
  Response as ResponseObject,
  ResponseOutputMessage,
  ResponseOutputText,
  ResponseStreamEvent,
  ResponseUsage,
} from 'openai/resources/responses/responses';

export interface MockUpstreamOptions {
  /** Wait before the first byte of every response (default 0). */
  delayMs?: number;
  /** Pieces a streamed reply is split into (default 8). */
  chunkCount?: number;
  /** Wait between streamed pieces (default 0). */
  chunkDelayMs?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** Keep every request in `received` (default false). */
  recordRequests?: boolean;
}

export interface ReceivedRequest {
  method: string;
  /** As received, query string included. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; the raw text when it is not JSON; undefined when empty. */
  body: unknown;
}

export interface MockUpstreamStats {
  requests: number;
  streamsStarted: number;
  streamsCompleted: number;
  /** The client went away before the stream ended (not counted: `x-mock-break-after`). */
  streamsAborted: number;
}

export interface MockUpstream {
  /** `http://host:port`: no trailing slash, no `/v1`. */
  url: string;
  /** Every request, when `recordRequests` is on. */
  received: ReceivedRequest[];
  stats: MockUpstreamStats;
  close(): Promise<void>;
}

/** Listed by `GET /v1/models`; every other model name is served too. */
export const MOCK_MODELS: string[] = ['mock-gpt-4o', 'mock-gpt-4o-mini', 'mock-embedding-small'];

const LOREM =
  'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.';
const QUOTE_LENGTH = 40;
const DEFAULT_DIMENSIONS = 8;
const MAX_DIMENSIONS = 8192;
const FINGERPRINT = 'fp_mock';
/** Fixed, so model listings are byte-identical from run to run. */
const MODEL_CREATED = 1_700_000_000;

const modelObject = (id: string): Model => ({
  id,
  object: 'model',
  created: MODEL_CREATED,
  owned_by: 'keyport',
});
const MODEL_LIST_JSON = JSON.stringify({ object: 'list', data: MOCK_MODELS.map(modelObject) });

const JSON_TYPE = 'application/json';
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

/** A bounded cache of pure results keyed by text: a benchmark sends the same prompts over and over. */
class Memo<V> {
  readonly #values = new Map<string, V>();

  get(key: string, compute: () => V): V {
    const hit = this.#values.get(key);
    if (hit !== undefined) return hit;
    const value = compute();
    if (key.length <= 8192) {
      if (this.#values.size >= 1024) this.#values.clear();
      this.#values.set(key, value);
    }
    return value;
  }
}

// ---------------------------------------------------------------------------------------------------
// Server

interface Settings {
  delayMs: number;
  chunkCount: number;
  chunkDelayMs: number;
}

interface Context {
  settings: Settings;
  stats: MockUpstreamStats;
  received: ReceivedRequest[] | undefined;
  nextId: () => string;
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const settings: Settings = {
    delayMs: nonNegativeInteger('delayMs', options.delayMs ?? 0),
    chunkCount: Math.max(1, nonNegativeInteger('chunkCount', options.chunkCount ?? 8)),
    chunkDelayMs: nonNegativeInteger('chunkDelayMs', options.chunkDelayMs ?? 0),
  };
  const received: ReceivedRequest[] = [];
  const stats: MockUpstreamStats = { requests: 0, streamsStarted: 0, streamsCompleted: 0, streamsAborted: 0 };
  const context: Context = {
    settings,
    stats,
    received: options.recordRequests ? received : undefined,
    nextId: idGenerator(),
  };
  const server = createServer((req, res) => {
    handle(context, req, res).catch((error: unknown) => failed(res, error));
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`,
    received,
    stats,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Keep-alive sockets and streams in flight would otherwise hold close() open.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`mock upstream: ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

/** Unique per instance and cheap: a random prefix and a counter (24 hex digits). */
function idGenerator(): () => string {
  const prefix = randomBytes(8).toString('hex');
  let counter = 0;
  return () => prefix + (++counter).toString(16).padStart(8, '0');
}

async function handle(context: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  context.stats.requests++;
  res.setHeader('x-request-id', `req_mock${context.nextId()}`);
  const raw = req.method === 'GET' || req.method === 'HEAD' ? '' : await readBody(req);
  const body = parseJson(raw);
  context.received?.push({
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    headers: req.headers,
    body: body === INVALID_JSON ? raw : body,
  });

  const hooks = readHooks(req.headers, context.settings.delayMs);
  if (hooks instanceof HookError) return sendError(res, badRequest(hooks.message, null, null));
  if (hooks.delayMs > 0 && !(await waitUnlessClosed(res, hooks.delayMs))) return;
  if (hooks.status !== undefined) return sendError(res, forcedError(hooks.status));

  const url = req.url ?? '/';
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  if (req.method === 'GET') {
    if (path === '/v1/models') return sendJson(res, 200, MODEL_LIST_JSON);
    if (path.startsWith('/v1/models/') && path.length > '/v1/models/'.length) {
      return sendJson(res, 200, JSON.stringify(modelObject(decodePathSegment(path.slice(11)))));
    }
  }
  const endpoint = req.method === 'POST' ? ENDPOINTS.get(path) : undefined;
  if (!endpoint) return sendError(res, notFound(req.method ?? 'GET', path));
  if (body === INVALID_JSON) return sendError(res, INVALID_JSON_ERROR);
  const params = body === undefined ? {} : body;
  if (!isObject(params)) {
    return sendError(res, badRequest('The request body must be a JSON object.', null, null));
  }
  if (typeof params.model !== 'string' || params.model === '') {
    return sendError(res, badRequest('you must provide a model parameter', null, null));
  }
  if (hooks.breakAfter !== undefined && params.stream !== true) {
    res.destroy();
    return;
  }
  const reply = endpoint(context, params as Params, hooks);
  if (isApiError(reply)) return sendError(res, reply);
  if (typeof reply === 'string') return sendJson(res, 200, reply);
  return stream(context, res, reply, hooks.breakAfter);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () =>
      resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

const INVALID_JSON = Symbol('invalid JSON');

function parseJson(raw: string): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return INVALID_JSON;
  }
}

function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Resolves false, early, when the client goes away meanwhile. */
function waitUnlessClosed(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const onClose = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      res.off('close', onClose);
      resolve(true);
    }, ms);
    res.once('close', onClose);
  });
}

function sendJson(res: ServerResponse, status: number, json: string): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

function failed(res: ServerResponse, error: unknown): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendError(res, {
    status: 500,
    message: `Mock upstream failed: ${(error as Error).message}`,
    type: 'server_error',
    param: null,
    code: null,
  });
}

// ---------------------------------------------------------------------------------------------------
// Test hooks

interface Hooks {
  delayMs: number;
  status: number | undefined;
  breakAfter: number | undefined;
  noUsage: boolean;
}

class HookError {
  constructor(readonly message: string) {}
}

function readHooks(headers: IncomingHttpHeaders, defaultDelayMs: number): Hooks | HookError {
  const status = headers['x-mock-status'];
  const delay = headers['x-mock-delay-ms'];
  const breakAfter = headers['x-mock-break-after'];
  const noUsage = headers['x-mock-no-usage'];
  // The common case: a request that steers nothing.
  if (status === undefined && delay === undefined && breakAfter === undefined && noUsage === undefined) {
    return { delayMs: defaultDelayMs, status: undefined, breakAfter: undefined, noUsage: false };
  }
  const hooks: Hooks = {
    delayMs: defaultDelayMs,
    status: undefined,
    breakAfter: undefined,
    noUsage: noUsage === '1' || noUsage === 'true',
  };
  if (status !== undefined) {
    const code = headerInteger(status);
    if (code === undefined || code < 400 || code > 599) {
      return new HookError(
        `x-mock-status must be an HTTP error status (400-599), got ${JSON.stringify(status)}`,
      );
    }
    hooks.status = code;
  }
  if (delay !== undefined) {
    const ms = headerInteger(delay);
    if (ms === undefined) return new HookError(`x-mock-delay-ms must be a non-negative integer`);
    hooks.delayMs = ms;
  }
  if (breakAfter !== undefined) {
    // `done`: everything (the usage chunk included) but the closing `[DONE]`.
    const count = breakAfter === 'done' ? Number.POSITIVE_INFINITY : headerInteger(breakAfter);
    if (count === undefined)
      return new HookError(`x-mock-break-after must be a non-negative integer or "done"`);
    hooks.breakAfter = count;
  }
  return hooks;
}

function headerInteger(value: string | string[]): number | undefined {
  return typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : undefined;
}

// ---------------------------------------------------------------------------------------------------
// Errors, in OpenAI's shape

interface ApiError {
  status: number;
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

const isApiError = (value: unknown): value is ApiError =>
  typeof value === 'object' && value !== null && 'status' in value && 'message' in value;

function sendError(res: ServerResponse, error: ApiError): void {
  const { status, ...fields } = error;
  sendJson(res, status, JSON.stringify({ error: fields }));
}

const badRequest = (message: string, param: string | null, code: string | null): ApiError => ({
  status: 400,
  message,
  type: 'invalid_request_error',
  param,
  code,
});

const notFound = (method: string, path: string): ApiError => ({
  status: 404,
  message: `Invalid URL (${method} ${path})`,
  type: 'invalid_request_error',
  param: null,
  code: null,
});

const INVALID_JSON_ERROR = badRequest(
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
  null,
  null,
);

const missingParameter = (param: string): ApiError =>
  badRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');

function forcedError(status: number): ApiError {
  const message = `Mock upstream: status ${status} forced by x-mock-status`;
  if (status === 401) {
    return { status, message, type: 'invalid_request_error', param: null, code: 'invalid_api_key' };
  }
  if (status === 429) return { status, message, type: 'requests', param: null, code: 'rate_limit_exceeded' };
  if (status >= 500) return { status, message, type: 'server_error', param: null, code: null };
  return { status, message, type: 'invalid_request_error', param: null, code: null };
}

// ---------------------------------------------------------------------------------------------------
// Streaming

/** A streamed reply: `head` goes out with the first piece, `pieces` are the chunks, `tail` ends it. */
interface StreamPlan {
  head: string;
  pieces: string[];
  tail: string;
}

const sseEvent = (event: ResponseStreamEvent) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
const DONE = 'data: [DONE]\n\n';

/**
 * Writes the plan, `chunkDelayMs` apart. With `breakAfter` set, sends that many pieces and destroys the
 * socket: no tail, no `[DONE]`. A client that goes away first stops the stream and counts as aborted.
 */
function stream(
  context: Context,
  res: ServerResponse,
  plan: StreamPlan,
  breakAfter: number | undefined,
): void {
  const { stats, settings } = context;
  stats.streamsStarted++;
  res.writeHead(200, SSE_HEADERS);
  let state: 'streaming' | 'ended' | 'broken' = 'streaming';
  let timer: NodeJS.Timeout | undefined;
  res.once('close', () => {
    clearTimeout(timer);
    if (state === 'streaming') stats.streamsAborted++;
  });
  const end = () => {
    state = 'ended';
    stats.streamsCompleted++;
    res.end(plan.tail);
  };
  // Destroy once the pieces (or at least the headers) have reached the socket, so the client sees
  // them before the break.
  const breakOff = (last: string) => {
    state = 'broken';
    if (last === '') res.flushHeaders();
    res.write(last, () => res.destroy());
  };
  const count = breakAfter === undefined ? plan.pieces.length : Math.min(breakAfter, plan.pieces.length);
  // Broken just before `[DONE]`: the tail's usage chunk goes out first.
  const beforeDone =
    breakAfter === Number.POSITIVE_INFINITY ? plan.tail.slice(0, plan.tail.lastIndexOf(DONE)) : '';

  if (settings.chunkDelayMs === 0) {
    if (breakAfter === undefined) {
      state = 'ended';
      stats.streamsCompleted++;
      res.end(plan.head + plan.pieces.join('') + plan.tail);
    } else {
      breakOff(plan.head + plan.pieces.slice(0, count).join('') + beforeDone);
    }
    return;
  }
  let sent = 0;
  const next = () => {
    if (state !== 'streaming') return;
    const piece = (sent === 0 ? plan.head : '') + plan.pieces[sent];
    sent++;
    if (sent < count) {
      res.write(piece);
      timer = setTimeout(next, settings.chunkDelayMs);
    } else if (breakAfter !== undefined) {
      breakOff(piece + beforeDone);
    } else {
      res.write(piece);
      end();
    }
  };
  if (count === 0) {
    // Only reachable with x-mock-break-after: 0: the headers, then the break.
    breakOff(plan.head);
  } else {
    next();
  }
}

// ---------------------------------------------------------------------------------------------------
// Endpoints

type Params = Record<string, unknown> & { model: string };
type Endpoint = (context: Context, params: Params, hooks: Hooks) => string | StreamPlan | ApiError;

const ENDPOINTS = new Map<string, Endpoint>([
  ['/v1/chat/completions', chatCompletions],
  ['/v1/completions', completions],
  ['/v1/embeddings', embeddings],
  ['/v1/responses', responses],
]);

const now = () => Math.floor(Date.now() / 1000);

function includeUsageChunk(params: Params, hooks: Hooks): boolean {
  return !hooks.noUsage && isObject(params.stream_options) && params.stream_options.include_usage === true;
}

function chatCompletions(context: Context, params: Params, hooks: Hooks): string | StreamPlan | ApiError {
  const { messages } = params;
  if (!Array.isArray(messages)) return missingParameter('messages');
  if (messages.length === 0) {
    return badRequest(
      "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      'messages',
      'empty_array',
    );
  }
  const prompt = chatPrompt(messages);
  const text = replyTo(prompt.quote);
  const usage = completionUsage(countTokens(prompt.text), countTokens(text));
  const id = `chatcmpl-mock${context.nextId()}`;
  const created = now();
  const model = params.model;

  if (params.stream !== true) {
    const completion: ChatCompletion = {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      ...(hooks.noUsage ? {} : { usage }),
      system_fingerprint: FINGERPRINT,
    };
    return JSON.stringify(completion);
  }

  const envelope: ChatCompletionChunk = {
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    system_fingerprint: FINGERPRINT,
    choices: [],
  };
  return chunkedPlan(
    envelope,
    chatChoices(text, context.settings.chunkCount),
    includeUsageChunk(params, hooks) ? usage : undefined,
  );
}

function completions(context: Context, params: Params, hooks: Hooks): string | StreamPlan | ApiError {
  const prompt = completionPrompt(params.prompt);
  const text = replyTo(prompt.quote);
  const usage = completionUsage(prompt.tokens ?? countTokens(prompt.text), countTokens(text));
  const base = {
    id: `cmpl-mock${context.nextId()}`,
    object: 'text_completion',
    created: now(),
    model: params.model,
  };

  if (params.stream !== true) {
    const completion: Completion = {
      ...base,
      object: 'text_completion',
      choices: [{ text, index: 0, logprobs: null, finish_reason: 'stop' }],
      ...(hooks.noUsage ? {} : { usage }),
      system_fingerprint: FINGERPRINT,
    };
    return JSON.stringify(completion);
  }

  const envelope: Completion = {
    ...base,
    object: 'text_completion',
    system_fingerprint: FINGERPRINT,
    choices: [],
  };
  return chunkedPlan(
    envelope,
    completionChoices(text, context.settings.chunkCount),
    includeUsageChunk(params, hooks) ? usage : undefined,
  );
}

/**
 * A chunked reply (chat or text completion). The chunks of one stream differ only in `choices`: the
 * envelope is serialized once per stream, and the `choices` of a given reply once per process.
 * With `usage`, every chunk carries `usage: null` and a last one (`choices: []`) the usage, as OpenAI
 * sends them.
 */
function chunkedPlan(
  envelope: ChatCompletionChunk | Completion,
  choices: string[],
  usage: CompletionUsage | undefined,
): StreamPlan {
  // `choices: []` is the envelope's last key, so its JSON ends with `[]}`: splice the choices in.
  const open = `data: ${JSON.stringify(envelope).slice(0, -2)}`;
  const after = usage ? '],"usage":null}\n\n' : ']}\n\n';
  return {
    head: '',
    pieces: choices.map((choice) => open + choice + after),
    tail: (usage ? `${open}],"usage":${JSON.stringify(usage)}}\n\n` : '') + DONE,
  };
}

const chatChoiceCache = new Memo<string[]>();

/** The serialized choice of each chunk: role on the first, `stop` on the last. */
function chatChoices(text: string, count: number): string[] {
  return chatChoiceCache.get(`${count}:${text}`, () => {
    const pieces = splitReply(text, count);
    return pieces.map((content, i) => {
      const choice: ChatCompletionChunk.Choice = {
        index: 0,
        delta: i === 0 ? { role: 'assistant', content, refusal: null } : { content },
        logprobs: null,
        finish_reason: i === pieces.length - 1 ? 'stop' : null,
      };
      return JSON.stringify(choice);
    });
  });
}

const completionChoiceCache = new Memo<string[]>();

function completionChoices(text: string, count: number): string[] {
  return completionChoiceCache.get(`${count}:${text}`, () => {
    const pieces = splitReply(text, count);
    return pieces.map((piece, i) => {
      // The SDK types finish_reason as non-null; OpenAI sends null on every chunk but the last.
      const finish = (i === pieces.length - 1 ? 'stop' : null) as 'stop';
      const choice: Completion['choices'][number] = {
        text: piece,
        index: 0,
        logprobs: null,
        finish_reason: finish,
      };
      return JSON.stringify(choice);
    });
  });
}

/** The SDK types the decoded vector; on the wire it may be the base64 text. */
type WireEmbedding = Omit<Embedding, 'embedding'> & { embedding: number[] | string };
type WireEmbeddingResponse = Omit<CreateEmbeddingResponse, 'data'> & { data: WireEmbedding[] };

function embeddings(_context: Context, params: Params, hooks: Hooks): string | ApiError {
  const inputs = embeddingInputs(params.input);
  if (inputs === undefined) return missingParameter('input');
  let dimensions = DEFAULT_DIMENSIONS;
  if (params.dimensions !== undefined) {
    const value = params.dimensions;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_DIMENSIONS) {
      return badRequest(
        `Invalid 'dimensions': expected an integer between 1 and ${MAX_DIMENSIONS}.`,
        'dimensions',
        'invalid_value',
      );
    }
    dimensions = value;
  }
  const base64 = params.encoding_format === 'base64';
  let promptTokens = 0;
  const data = inputs.map((input, index) => {
    promptTokens += typeof input === 'string' ? countTokens(input) : input.length;
    const vector = embeddingVector(typeof input === 'string' ? input : input.join(','), dimensions);
    const embedding: WireEmbedding = {
      object: 'embedding',
      index,
      // base64 is what the SDK asks for by default: the float32 bytes, little-endian.
      embedding: base64 ? Buffer.from(vector.buffer).toString('base64') : Array.from(vector),
    };
    return embedding;
  });
  const response: WireEmbeddingResponse = {
    object: 'list',
    data,
    model: params.model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
  // The type makes usage required; x-mock-no-usage still drops it, to mimic servers that omit it.
  return JSON.stringify(hooks.noUsage ? { ...response, usage: undefined } : response);
}

function responses(context: Context, params: Params, hooks: Hooks): string | StreamPlan {
  const prompt = responsesPrompt(params.instructions, params.input);
  const text = replyTo(prompt.quote);
  const inputTokens = countTokens(prompt.text);
  const outputTokens = countTokens(text);
  const usage: ResponseUsage = {
    input_tokens: inputTokens,
    input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
    output_tokens: outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inputTokens + outputTokens,
  };
  const id = `resp_mock${context.nextId()}`;
  const messageId = `msg_mock${context.nextId()}`;
  const createdAt = now();
  const part = (partText: string): ResponseOutputText => ({
    type: 'output_text',
    annotations: [],
    logprobs: [],
    text: partText,
  });
  const message = (
    status: 'in_progress' | 'completed',
    content: ResponseOutputText[],
  ): ResponseOutputMessage => ({
    id: messageId,
    type: 'message',
    status,
    role: 'assistant',
    content,
  });
  // `output_text` is the SDK's convenience, computed client-side: OpenAI does not send it.
  const snapshot = (
    status: 'in_progress' | 'completed',
    output: ResponseOutputMessage[],
  ): Omit<ResponseObject, 'output_text'> => ({
    id,
    object: 'response',
    created_at: createdAt,
    status,
    background: false,
    completed_at: status === 'completed' ? now() : null,
    error: null,
    incomplete_details: null,
    instructions: typeof params.instructions === 'string' ? params.instructions : null,
    max_output_tokens: typeof params.max_output_tokens === 'number' ? params.max_output_tokens : null,
    model: params.model,
    output,
    parallel_tool_calls: true,
    previous_response_id:
      typeof params.previous_response_id === 'string' ? params.previous_response_id : null,
    reasoning: { effort: null, summary: null },
    temperature: typeof params.temperature === 'number' ? params.temperature : 1,
    text: { format: { type: 'text' }, verbosity: 'medium' },
    tool_choice: 'auto',
    tools: [],
    top_p: typeof params.top_p === 'number' ? params.top_p : 1,
    truncation: 'disabled',
    metadata: isObject(params.metadata) ? (params.metadata as Record<string, string>) : {},
    access_programs: null,
    ...(status === 'completed' && !hooks.noUsage ? { usage } : {}),
  });

  if (params.stream !== true) {
    return JSON.stringify(snapshot('completed', [message('completed', [part(text)])]));
  }

  // The event sequence OpenAI sends for a one-message text reply; no `[DONE]` on this API.
  let sequence = 0;
  const event = (fields: DistributiveOmit<ResponseStreamEvent, 'sequence_number'>) =>
    sseEvent({ ...fields, sequence_number: sequence++ } as ResponseStreamEvent);
  const item = { item_id: messageId, output_index: 0, content_index: 0 };
  const head =
    event({ type: 'response.created', response: snapshot('in_progress', []) as ResponseObject }) +
    event({ type: 'response.in_progress', response: snapshot('in_progress', []) as ResponseObject }) +
    event({ type: 'response.output_item.added', output_index: 0, item: message('in_progress', []) }) +
    event({ type: 'response.content_part.added', ...item, part: part('') });
  const pieces = splitReply(text, context.settings.chunkCount).map((delta) =>
    event({ type: 'response.output_text.delta', ...item, delta, logprobs: [] }),
  );
  const done = message('completed', [part(text)]);
  const tail =
    event({ type: 'response.output_text.done', ...item, text, logprobs: [] }) +
    event({ type: 'response.content_part.done', ...item, part: part(text) }) +
    event({ type: 'response.output_item.done', output_index: 0, item: done }) +
    event({ type: 'response.completed', response: snapshot('completed', [done]) as ResponseObject });
  return { head, pieces, tail };
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

// ---------------------------------------------------------------------------------------------------
// Prompts, replies, tokens, vectors

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `text` is what the prompt tokens are counted on; `quote` what the reply quotes (the last user turn). */
interface Prompt {
  text: string;
  quote: string;
  /** Set when the prompt came as token ids: their number. */
  tokens?: number;
}

/** A message's `content`: a string, or parts whose `text` counts (`text`, `input_text`, …). */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) {
    if (isObject(part) && typeof part.text === 'string') text += text ? `\n${part.text}` : part.text;
  }
  return text;
}

function messagesPrompt(messages: unknown[], leading: string[]): Prompt {
  const texts = leading;
  let quote: string | undefined;
  let lastText = '';
  for (const message of messages) {
    if (!isObject(message)) continue;
    const text = contentText(message.content);
    texts.push(text);
    lastText = text;
    if (message.role === 'user') quote = text;
  }
  return { text: texts.join('\n'), quote: quote ?? lastText };
}

const chatPrompt = (messages: unknown[]): Prompt => messagesPrompt(messages, []);

function responsesPrompt(instructions: unknown, input: unknown): Prompt {
  const leading = typeof instructions === 'string' ? [instructions] : [];
  if (typeof input === 'string') return { text: [...leading, input].join('\n'), quote: input };
  return messagesPrompt(Array.isArray(input) ? input : [], leading);
}

function completionPrompt(prompt: unknown): Prompt {
  if (typeof prompt === 'string') return { text: prompt, quote: prompt };
  if (Array.isArray(prompt)) {
    if (prompt.every((p) => typeof p === 'string')) {
      return { text: prompt.join('\n'), quote: prompt.at(-1) ?? '' };
    }
    // Token ids, as one list or a list of lists.
    const tokens = prompt.flat().length;
    return { text: '', quote: `${tokens} tokens`, tokens };
  }
  return { text: '', quote: '' };
}

function embeddingInputs(input: unknown): Array<string | number[]> | undefined {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((item) => typeof item === 'number')) return [input as number[]];
  return input.map((item) => (Array.isArray(item) ? (item as number[]) : String(item)));
}

function replyTo(quote: string): string {
  let end = Math.min(QUOTE_LENGTH, quote.length);
  // Never cut a surrogate pair in half.
  if (end < quote.length && /[\uD800-\uDBFF]/.test(quote.charAt(end - 1))) end--;
  return `Mock reply to "${quote.slice(0, end)}": ${LOREM}`;
}

const replyPieces = new Memo<string[]>();

/** `count` pieces of near-equal length, split on code points (never inside a surrogate pair). */
function splitReply(text: string, count: number): string[] {
  return replyPieces.get(`${count}:${text}`, () => {
    const chars = Array.from(text);
    const pieces: string[] = [];
    for (let i = 0; i < count; i++) {
      const from = Math.floor((i * chars.length) / count);
      const to = Math.floor(((i + 1) * chars.length) / count);
      pieces.push(chars.slice(from, to).join(''));
    }
    return pieces;
  });
}

function completionUsage(promptTokens: number, completionTokens: number): CompletionUsage {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

// User text may contain `<|endoftext|>` and the like: count it as text rather than throw.
const ENCODE_OPTIONS = { disallowedSpecial: new Set<string>() };
const tokenCounts = new Memo<number>();

/** o200k token count. */
function countTokens(text: string): number {
  return text.length === 0 ? 0 : tokenCounts.get(text, () => encode(text, ENCODE_OPTIONS).length);
}

/**
 * A unit vector seeded by the input's FNV-1a hash (mulberry32 stream), rounded to float32 so the
 * float and base64 encodings carry exactly the same numbers.
 */
function embeddingVector(input: string, dimensions: number): Float32Array {
  let seed = 0x811c9dc5;
  for (let i = 0; i < input.length; i++) seed = Math.imul(seed ^ input.charCodeAt(i), 0x01000193);
  const values = new Float64Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const value = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
    values[i] = value;
    norm += value * value;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  const vector = new Float32Array(dimensions);
  for (let i = 0; i < dimensions; i++) vector[i] = values[i]! * scale;
  return vector;
}
