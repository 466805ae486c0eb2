import { describe, expect, it } from 'vitest';
import { costInNanoUsd, NANO_USD_PER_CENT, PriceList } from './pricing.ts';

describe('PriceList', () => {
  const prices = new PriceList([
    { model: 'llama-*', input: 0.2, output: 0.6 },
    { model: 'gpt-4o', input: 1, output: 1 }, // the operator's own rate beats the default
  ]);

  it("uses the operator's prices first, by glob, first match wins", () => {
    expect(prices.priceOf('llama-3.1-8b')).toMatchObject({ input: 0.2, output: 0.6 });
    expect(prices.priceOf('gpt-4o')).toMatchObject({ input: 1, output: 1 });
  });

  it("knows OpenAI's list prices, dated snapshots included, and never mixes up model families", () => {
    expect(prices.priceOf('gpt-4o-mini')).toEqual({ input: 0.15, cachedInput: 0.075, output: 0.6 });
    expect(prices.priceOf('gpt-4o-mini-2024-07-18')).toEqual(prices.priceOf('gpt-4o-mini'));
    expect(prices.priceOf('text-embedding-3-small').input).toBe(0.02);
  });

  it('prices unknown models at 0 (self-hosted until the operator prices them)', () => {
    expect(prices.costOf('my-model', { inputTokens: 1e6, cachedTokens: 0, outputTokens: 1e6 })).toBe(0);
    expect(prices.costOf(null, { inputTokens: 5, cachedTokens: 0, outputTokens: 5 })).toBe(0);
  });

  it('costs in nano-USD: 1M gpt-4o-mini input tokens = 15 cents; cached tokens at their own price', () => {
    const mini = new PriceList();
    expect(mini.costOf('gpt-4o-mini', { inputTokens: 1e6, cachedTokens: 0, outputTokens: 0 })).toBe(
      15 * NANO_USD_PER_CENT,
    );
    // 1000 input of which 400 cached, 100 output at gpt-4o: 600×2500 + 400×1250 + 100×10000 nano-USD.
    expect(mini.costOf('gpt-4o', { inputTokens: 1000, cachedTokens: 400, outputTokens: 100 })).toBe(
      600 * 2500 + 400 * 1250 + 100 * 10_000,
    );
  });

  it('never counts more cached tokens than input tokens', () => {
    expect(
      costInNanoUsd(
        { input: 1, cachedInput: 0, output: 0 },
        { inputTokens: 10, cachedTokens: 50, outputTokens: 0 },
      ),
    ).toBe(0);
  });
});
