/**
 * Usage as the upstream reports it, from a JSON body or from a stream's events, per endpoint family.
 */
import type { RouteRule } from '../core/openai-routes.ts';

export interface TokenUsage {
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
}

type Metered = NonNullable<RouteRule['metered']>;

const int = (value: unknown): number =>
  typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.round(value) : 0;

/** `usage` of a chat/completions/embeddings body, or of a Responses `response` object. */
export function usageFrom(metered: Metered, body: unknown): TokenUsage | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const usage = (body as { usage?: unknown }).usage;
  if (typeof usage !== 'object' || usage === null) return undefined;
  const u = usage as Record<string, unknown> & {
    prompt_tokens_details?: { cached_tokens?: unknown } | null;
    input_tokens_details?: { cached_tokens?: unknown } | null;
  };
  if (metered === 'responses') {
    return {
      inputTokens: int(u.input_tokens),
      cachedTokens: int(u.input_tokens_details?.cached_tokens),
      outputTokens: int(u.output_tokens),
    };
  }
  return {
    inputTokens: int(u.prompt_tokens),
    cachedTokens: int(u.prompt_tokens_details?.cached_tokens),
    outputTokens: metered === 'embeddings' ? 0 : int(u.completion_tokens),
  };
}

/**
 * Passes a server-sent event stream through event by event (never holding more than one partial
 * event), noting the usage it carries and, when the client did not ask for it, dropping the
 * usage-only chunk the gateway asked the upstream for.
 */
export class SseUsageTap {
  usage: TokenUsage | undefined;
  /** The `data:` payloads seen, kept so a broken stream's output can be counted locally. */
  readonly payloads: string[] = [];
  #decoder = new TextDecoder();
  #partial = '';
  /**
   * The stream's terminal event (`[DONE]`, or a Responses stream's `response.completed`), held
   * back until the usage is recorded: a client that has seen the end of the stream has a record.
   */
  #terminal = '';

  constructor(
    private readonly metered: Metered,
    private readonly dropUsageChunk: boolean,
  ) {}

  /** Bytes from the upstream → the text to send on (complete events only). */
  push(chunk: Uint8Array): string {
    this.#partial += this.#decoder.decode(chunk, { stream: true });
    let out = '';
    for (;;) {
      const end = eventEnd(this.#partial);
      if (end === -1) break;
      const event = this.#partial.slice(0, end);
      this.#partial = this.#partial.slice(end);
      out += this.#pass(event);
    }
    return out;
  }

  /** What remains when the upstream ends (an unterminated last event is passed on as is). */
  end(): string {
    const rest = this.#partial + this.#decoder.decode();
    this.#partial = '';
    return rest.length > 0 ? this.#pass(rest) : '';
  }

  /** The held terminal event, once the usage is recorded. */
  release(): string {
    const terminal = this.#terminal;
    this.#terminal = '';
    return terminal;
  }

  /** The event as the client should see it: as is, without the usage we asked for, or nothing. */
  #pass(event: string): string {
    const data = dataOf(event);
    if (!this.#keep(data)) return '';
    if (data !== undefined && isTerminal(this.metered, data)) {
      this.#terminal += event;
      return '';
    }
    // Asking for usage makes the upstream add `"usage":null` to every chunk; a client that did not
    // ask must see the chunks it would have got without us.
    return this.dropUsageChunk && event.includes('"usage"') ? event.replace(NULL_USAGE, '') : event;
  }

  #keep(data: string | undefined): boolean {
    if (data === undefined || data === '[DONE]') return true;
    this.payloads.push(data);
    if (this.metered === 'responses') {
      if (data.includes('"response.completed"') || data.includes('"response.incomplete"')) {
        const parsed = parseJson(data) as { response?: unknown } | undefined;
        this.usage = usageFrom('responses', parsed?.response) ?? this.usage;
      }
      return true;
    }
    if (!data.includes('"usage"')) return true;
    const parsed = parseJson(data) as { usage?: unknown; choices?: unknown[] } | undefined;
    const usage = usageFrom(this.metered, parsed);
    if (!usage) return true;
    this.usage = usage;
    const usageOnly = Array.isArray(parsed?.choices) && parsed.choices.length === 0;
    return !(usageOnly && this.dropUsageChunk);
  }

  /** The text the model produced so far, from the events seen (for local counting). */
  outputText(): string {
    let text = '';
    for (const data of this.payloads) {
      const parsed = parseJson(data) as
        | { choices?: { delta?: { content?: unknown }; text?: unknown }[]; type?: string; delta?: unknown }
        | undefined;
      if (!parsed) continue;
      if (this.metered === 'responses') {
        if (parsed.type === 'response.output_text.delta' && typeof parsed.delta === 'string')
          text += parsed.delta;
        continue;
      }
      for (const choice of parsed.choices ?? []) {
        if (typeof choice?.delta?.content === 'string') text += choice.delta.content;
        else if (typeof choice?.text === 'string') text += choice.text;
      }
    }
    return text;
  }
}

const NULL_USAGE = /,\s*"usage"\s*:\s*null(?=\s*[,}])/g;

function isTerminal(metered: Metered, data: string): boolean {
  if (metered === 'responses') return /"type"\s*:\s*"response\.(completed|incomplete|failed)"/.test(data);
  return data === '[DONE]';
}

/** Index just past the blank line that ends the first complete event, or -1. */
function eventEnd(text: string): number {
  const lf = text.indexOf('\n\n');
  const crlf = text.indexOf('\r\n\r\n');
  if (lf === -1 && crlf === -1) return -1;
  if (crlf !== -1 && (lf === -1 || crlf < lf)) return crlf + 4;
  return lf + 2;
}

function dataOf(event: string): string | undefined {
  let data: string | undefined;
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith('data:')) {
      const value = line.slice(line[5] === ' ' ? 6 : 5);
      data = data === undefined ? value : `${data}\n${value}`;
    }
  }
  return data;
}

/**
 * What the endpoints billed by the unit used: images made (the response's `data`), characters
 * spoken (the request's `input`), seconds transcribed (the response's `usage.seconds` or
 * `duration`). 0 when the response does not say (a transcription asked for as plain text).
 */
export function unitsFrom(
  kind: RouteRule['kind'],
  request: Record<string, unknown> | undefined,
  response: unknown,
): number {
  const body = (typeof response === 'object' && response !== null ? response : {}) as {
    data?: unknown;
    usage?: { seconds?: unknown } | null;
    duration?: unknown;
  };
  switch (kind) {
    case 'images':
      // Counted in the answer; for a streamed one (not read here), as many as were asked for.
      if (Array.isArray(body.data)) return body.data.length;
      return response === undefined ? Math.max(1, Math.floor(positive(request?.n)) || 1) : 0;
    case 'audio_speeches':
      return typeof request?.input === 'string' ? [...request.input].length : 0;
    case 'audio_transcriptions':
      if (typeof response === 'string') return Math.ceil(lastCueEnd(response));
      return Math.ceil(positive(body.usage?.seconds) || positive(body.duration));
    default:
      return 0;
  }
}

const positive = (value: unknown): number => (typeof value === 'number' && value > 0 ? value : 0);

/** The latest cue time in an SRT or VTT transcript (`00:01:02,500` / `00:01:02.500`), in seconds; 0 for plain text. */
export function lastCueEnd(transcript: string): number {
  let latest = 0;
  for (const m of transcript.matchAll(/(?:(\d{1,2}):)?(\d{2}):(\d{2})[,.](\d{3})/g)) {
    const seconds = Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
    if (seconds > latest) latest = seconds;
  }
  return latest;
}

/** JSON.parse that answers `undefined` for anything that is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
