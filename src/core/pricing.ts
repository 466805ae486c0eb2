/**
 * Model prices and what a request costs. Prices are USD per 1M tokens (as OpenAI publishes them);
 * costs are integers in billionths of a dollar (nano-USD), so sums stay exact and a cent is 10^7.
 *
 * The operator's prices (config `prices`, names or globs, first match wins) come first; then
 * OpenAI's list prices for well-known models (and their dated snapshots); anything else costs 0,
 * the right default for a self-hosted model until the operator prices it.
 */
import picomatch from 'picomatch';

export interface ModelPrice {
  /** USD per 1M input tokens. */
  input: number;
  /** USD per 1M cached input tokens (defaults to `input`). */
  cachedInput?: number | undefined;
  /** USD per 1M output tokens. */
  output: number;
}

export interface PriceRule extends ModelPrice {
  /** A model name or glob. */
  model: string;
}

export const NANO_USD_PER_CENT = 10_000_000;

/** OpenAI's standard-tier list prices (USD per 1M tokens). */
const DEFAULT_PRICES: Record<string, ModelPrice> = {
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
};

const FREE: ModelPrice = { input: 0, cachedInput: 0, output: 0 };
const DATED_SNAPSHOT = /-\d{4}-\d{2}-\d{2}$/;

export class PriceList {
  readonly #rules: { price: ModelPrice; matches: (model: string) => boolean }[];
  readonly #cache = new Map<string, ModelPrice>();

  constructor(rules: readonly PriceRule[] = []) {
    this.#rules = rules.map((rule) => ({
      price: rule,
      matches: picomatch(rule.model, { bash: true, dot: true }),
    }));
  }

  priceOf(model: string | null | undefined): ModelPrice {
    if (!model) return FREE;
    let price = this.#cache.get(model);
    if (price) return price;
    price =
      this.#rules.find((rule) => rule.matches(model))?.price ??
      DEFAULT_PRICES[model] ??
      DEFAULT_PRICES[model.replace(DATED_SNAPSHOT, '')] ??
      FREE;
    if (this.#cache.size > 10_000) this.#cache.clear(); // unbounded model names must not grow memory
    this.#cache.set(model, price);
    return price;
  }

  /** nano-USD for one request. `inputTokens` includes the cached ones, as OpenAI's usage does. */
  costOf(
    model: string | null | undefined,
    tokens: { inputTokens: number; cachedTokens: number; outputTokens: number },
  ): number {
    return costInNanoUsd(this.priceOf(model), tokens);
  }
}

export function costInNanoUsd(
  price: ModelPrice,
  tokens: { inputTokens: number; cachedTokens: number; outputTokens: number },
): number {
  const cached = Math.min(tokens.cachedTokens, tokens.inputTokens);
  // USD per 1M tokens × 1000 = nano-USD per token.
  return Math.round(
    (tokens.inputTokens - cached) * price.input * 1000 +
      cached * (price.cachedInput ?? price.input) * 1000 +
      tokens.outputTokens * price.output * 1000,
  );
}
