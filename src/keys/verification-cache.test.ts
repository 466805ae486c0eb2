import { describe, expect, it } from 'vitest';
import { VerificationCache } from './verification-cache.ts';

describe('VerificationCache', () => {
  it('expires entries after the TTL', () => {
    let now = 0;
    const cache = new VerificationCache<string>(1000, 10, () => now);
    cache.set('h1', 'v', 'k1');
    cache.set('h2', null, null);
    expect(cache.get('h1')).toBe('v');
    expect(cache.get('h2')).toBeNull();
    now = 999;
    expect(cache.get('h1')).toBe('v');
    now = 1000;
    expect(cache.get('h1')).toBeUndefined();
    expect(cache.get('h2')).toBeUndefined();
  });

  it('invalidates every secret of a key at once', () => {
    const cache = new VerificationCache<string>(60_000);
    cache.set('old', 'v', 'k1');
    cache.set('new', 'v', 'k1');
    cache.set('other', 'v', 'k2');
    cache.invalidateKey('k1');
    expect(cache.get('old')).toBeUndefined();
    expect(cache.get('new')).toBeUndefined();
    expect(cache.get('other')).toBe('v');
  });

  it('stays bounded, evicting the oldest entry', () => {
    const cache = new VerificationCache<number>(60_000, 3);
    for (let i = 0; i < 5; i++) cache.set(`h${i}`, i, `k${i}`);
    expect(cache.size).toBe(3);
    expect(cache.get('h0')).toBeUndefined();
    expect(cache.get('h4')).toBe(4);
  });

  it('caches nothing with a TTL of 0', () => {
    const cache = new VerificationCache<number>(0);
    cache.set('h', 1, 'k');
    expect(cache.get('h')).toBeUndefined();
  });
});
