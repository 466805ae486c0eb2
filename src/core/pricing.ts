/**
 * Model prices and what a request costs. Prices are USD per 1M tokens (as OpenAI publishes them),
 * plus an optional price per unit for images, speech characters and transcribed seconds; costs are
 * integers in billionths of a dollar (nano-USD), so sums stay exact and a cent is 10^7.
 *
 * Rules are tried in order: the operator's (database rows, then the config file), then OpenAI's
 * list prices for well-known models (and their dated snapshots); anything else costs 0, the right
 * default for a self-hosted model until the operator prices it. A rule may take effect at a moment
 * (`effectiveFrom`): among the rules for one model, the latest one in effect wins, so a price
 * change applies from then on and never to what was already recorded.
 */
import picomatch from 'picomatch';

export interface ModelPrice {
  /** USD per 1M input tokens. */
  input: number;
  /** USD per 1M cached input tokens (defaults to `input`). */
  cachedInput?: number | null | undefined;
  /** USD per 1M output tokens. */
  output: number;
  /** USD per image, per character (speech) or per second (transcription). */
  unit?: number | null | undefined;
}

export interface PriceRule extends ModelPrice {
  /** A model name or glob. */
  model: string;
  /** Milliseconds since the epoch; absent: always. */
  effectiveFrom?: number | undefined;
  /** Where it comes from, for the price list: a database row id, `config` or `default`. */
  source?: string | undefined;
}

export interface TokenCounts {
  /** Includes the cached tokens, as OpenAI's usage does. */
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  /** Images, characters or seconds, for the endpoints that bill by them. */
  units?: number | undefined;
}

/** A request's cost by line item, nano-USD. */
export interface CostBreakdown {
  input: number;
  cached: number;
  output: number;
  units: number;
  total: number;
}

export const NANO_USD_PER_CENT = 10_000_000;
export const NANO_USD_PER_USD = 1_000_000_000;

/** OpenAI's standard-tier list prices (USD per 1M tokens; images per image, TTS per character, Whisper per second). */
export const DEFAULT_PRICES: Record<string, ModelPrice> = {
  'gpt-5': { input: 1.25, cachedInput: 0.125, output: 10 },
  'gpt-5-mini': { input: 0.25, cachedInput: 0.025, output: 2 },
  'gpt-5-nano': { input: 0.05, cachedInput: 0.005, output: 0.4 },
  'gpt-4.1': { input: 2, cachedInput: 0.5, output: 8 },
  'gpt-4.1-mini': { input: 0.4, cachedInput: 0.1, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, cachedInput: 0.025, output: 0.4 },
  'gpt-4o': { input: 2.5, cachedInput: 1.25, output: 10 },
  'gpt-4o-mini': { input: 0.15, cachedInput: 0.075, output: 0.6 },
  o1: { input: 15, cachedInput: 7.5, output: 60 },
  o3: { input: 2, cachedInput: 0.5, output: 8 },
  'o3-mini': { input: 1.1, cachedInput: 0.55, output: 4.4 },
  'o4-mini': { input: 1.1, cachedInput: 0.275, output: 4.4 },
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
  'omni-moderation-latest': { input: 0, output: 0 },
  'dall-e-3': { input: 0, output: 0, unit: 0.04 },
  'dall-e-2': { input: 0, output: 0, unit: 0.02 },
  'tts-1': { input: 0, output: 0, unit: 0.000015 },
  'tts-1-hd': { input: 0, output: 0, unit: 0.00003 },
  'whisper-1': { input: 0, output: 0, unit: 0.0001 },
};

export const FREE: ModelPrice = { input: 0, cachedInput: 0, output: 0, unit: 0 };
const DATED_SNAPSHOT = /-\d{4}-\d{2}-\d{2}$/;

/** `gpt-4o-2024-08-06` → `gpt-4o`: a dated snapshot belongs to its model (prices, rate limits). */
export function modelOfSnapshot(model: string): string {
  return model.replace(DATED_SNAPSHOT, '');
}

interface CompiledRule {
  rule: PriceRule;
  exact: boolean;
  matches: (model: string) => boolean;
}

/** The price of a model: resolved once per model, until the next rule for it takes effect. */
interface Resolved {
  rule: PriceRule | undefined;
  price: ModelPrice;
  /** When a later rule for this model takes effect (Infinity: never). */
  validUntil: number;
}

export class PriceList {
  readonly #rules: CompiledRule[];
  readonly #cache = new Map<string, Resolved>();

  /** `rules` in priority order: the operator's first. */
  constructor(rules: readonly PriceRule[] = []) {
    this.#rules = rules.map((rule) => ({
      rule,
      exact: !picomatch.scan(rule.model).isGlob,
      matches: picomatch(rule.model, { bash: true, dot: true }),
    }));
  }

  /** The rule that prices `model` at `at` (undefined: OpenAI's list price or free). */
  ruleFor(model: string, at: number): PriceRule | undefined {
    return this.#resolve(model, at).rule;
  }

  priceOf(model: string | null | undefined, at = Date.now()): ModelPrice {
    if (!model) return FREE;
    return this.#resolve(model, at).price;
  }

  /** nano-USD for one request, by line item. */
  costOf(model: string | null | undefined, tokens: TokenCounts, at = Date.now()): CostBreakdown {
    return costBreakdown(this.priceOf(model, at), tokens);
  }

  #resolve(model: string, at: number): Resolved {
    const cached = this.#cache.get(model);
    if (cached && at < cached.validUntil && (cached.rule?.effectiveFrom ?? 0) <= at) return cached;
    const resolved = this.#lookup(model, at);
    if (this.#cache.size > 10_000) this.#cache.clear(); // unbounded model names must not grow memory
    this.#cache.set(model, resolved);
    return resolved;
  }

  #lookup(model: string, at: number): Resolved {
    // Exact names before globs; among rules of the same rank, the latest in effect at `at`.
    let best: CompiledRule | undefined;
    let validUntil = Number.POSITIVE_INFINITY;
    for (const pass of [true, false]) {
      for (const candidate of this.#rules) {
        if (candidate.exact !== pass || !candidate.matches(model)) continue;
        const from = candidate.rule.effectiveFrom ?? 0;
        if (from > at) {
          validUntil = Math.min(validUntil, from);
          continue;
        }
        if (!best || from > (best.rule.effectiveFrom ?? 0)) best = candidate;
      }
      if (best) break;
    }
    if (best) return { rule: best.rule, price: best.rule, validUntil };
    const listed = DEFAULT_PRICES[model] ?? DEFAULT_PRICES[model.replace(DATED_SNAPSHOT, '')];
    return { rule: undefined, price: listed ?? FREE, validUntil };
  }
}

export function costBreakdown(price: ModelPrice, tokens: TokenCounts): CostBreakdown {
  const cachedTokens = Math.min(tokens.cachedTokens, tokens.inputTokens);
  // USD per 1M tokens × 1000 = nano-USD per token; USD per unit × 10^9 = nano-USD per unit.
  const input = Math.round((tokens.inputTokens - cachedTokens) * price.input * 1000);
  const cached = Math.round(cachedTokens * (price.cachedInput ?? price.input) * 1000);
  const output = Math.round(tokens.outputTokens * price.output * 1000);
  const units = Math.round((tokens.units ?? 0) * (price.unit ?? 0) * NANO_USD_PER_USD);
  return { input, cached, output, units, total: input + cached + output + units };
}

/** nano-USD in total for one request. */
export function costInNanoUsd(price: ModelPrice, tokens: TokenCounts): number {
  return costBreakdown(price, tokens).total;
}

/** Half-up rounding of nano-USD to whole cents. */
export function nanoToCents(nano: number): number {
  return Math.floor((nano + NANO_USD_PER_CENT / 2) / NANO_USD_PER_CENT);
}
