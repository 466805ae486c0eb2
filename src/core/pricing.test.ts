import { describe, expect, it } from 'vitest';
import { costInNanoUsd, NANO_USD_PER_CENT, nanoToCents, PriceList } from './pricing.ts';

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
    expect(prices.costOf('my-model', { inputTokens: 1e6, cachedTokens: 0, outputTokens: 1e6 }).total).toBe(0);
    expect(prices.costOf(null, { inputTokens: 5, cachedTokens: 0, outputTokens: 5 }).total).toBe(0);
  });

  it('costs in nano-USD: 1M gpt-4o-mini input tokens = 15 cents; cached tokens at their own price', () => {
    const mini = new PriceList();
    expect(mini.costOf('gpt-4o-mini', { inputTokens: 1e6, cachedTokens: 0, outputTokens: 0 }).total).toBe(
      15 * NANO_USD_PER_CENT,
    );
    // 1000 input of which 400 cached, 100 output at gpt-4o: 600×2500 + 400×1250 + 100×10000 nano-USD.
    expect(mini.costOf('gpt-4o', { inputTokens: 1000, cachedTokens: 400, outputTokens: 100 })).toEqual({
      input: 600 * 2500,
      cached: 400 * 1250,
      output: 100 * 10_000,
      units: 0,
      total: 600 * 2500 + 400 * 1250 + 100 * 10_000,
    });
  });

  it('never counts more cached tokens than input tokens', () => {
    expect(
      costInNanoUsd(
        { input: 1, cachedInput: 0, output: 0 },
        { inputTokens: 10, cachedTokens: 50, outputTokens: 0 },
      ),
    ).toBe(0);
  });

  it('prices images, speech characters and transcribed seconds per unit', () => {
    const list = new PriceList([{ model: 'sdxl', input: 0, output: 0, unit: 0.002 }]);
    expect(list.costOf('sdxl', { inputTokens: 0, cachedTokens: 0, outputTokens: 0, units: 3 }).units).toBe(
      6_000_000,
    );
    expect(
      list.costOf('dall-e-3', { inputTokens: 0, cachedTokens: 0, outputTokens: 0, units: 2 }).total,
    ).toBe(
      80_000_000, // $0.08
    );
  });

  it('an exact name beats a glob, whatever their order', () => {
    const list = new PriceList([
      { model: 'llama-*', input: 1, output: 1 },
      { model: 'llama-3-70b', input: 5, output: 5 },
    ]);
    expect(list.priceOf('llama-3-70b').input).toBe(5);
    expect(list.priceOf('llama-3-8b').input).toBe(1);
  });

  it('a price takes effect at its moment: the latest one in effect wins, and earlier moments keep theirs', () => {
    const t0 = Date.UTC(2026, 0, 1);
    const t1 = Date.UTC(2026, 5, 1);
    const list = new PriceList([
      { model: 'm', input: 2, output: 2, effectiveFrom: t1 },
      { model: 'm', input: 1, output: 1, effectiveFrom: t0 },
    ]);
    expect(list.priceOf('m', t0 - 1)).toEqual(expect.objectContaining({ input: 0, output: 0 })); // nothing yet
    expect(list.priceOf('m', t0).input).toBe(1);
    expect(list.priceOf('m', t1 - 1).input).toBe(1);
    // Resolved once and cached: the cache must still flip when the next price takes effect.
    expect(list.priceOf('m', t1).input).toBe(2);
    expect(list.priceOf('m', t0 + 5).input).toBe(1); // a late record of an earlier request
  });

  it('rounds nano-USD to cents half up', () => {
    expect(nanoToCents(4_999_999)).toBe(0);
    expect(nanoToCents(5_000_000)).toBe(1);
    expect(nanoToCents(123 * NANO_USD_PER_CENT)).toBe(123);
  });
});
