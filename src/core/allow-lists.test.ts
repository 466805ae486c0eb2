import { describe, expect, it } from 'vitest';
import {
  compileIpAllowList,
  compileModelAllowList,
  InvalidAllowListError,
  normalizeCidrs,
  normalizeModelPatterns,
} from './allow-lists.ts';

describe('model allow-lists', () => {
  it('an empty list allows every model', () => {
    expect(compileModelAllowList([])('anything')).toBe(true);
  });

  it('matches names and globs, including models with a slash', () => {
    const allows = compileModelAllowList(
      normalizeModelPatterns(['gpt-4o*', 'meta-llama/*', 'text-embedding-3-small']),
    );
    expect(allows('gpt-4o')).toBe(true);
    expect(allows('gpt-4o-mini')).toBe(true);
    expect(allows('meta-llama/Llama-3.1-8B-Instruct')).toBe(true);
    expect(allows('text-embedding-3-small')).toBe(true);
    expect(allows('gpt-4')).toBe(false);
    expect(allows('text-embedding-3-large')).toBe(false);
    expect(compileModelAllowList(['*'])('org/model')).toBe(true);
  });

  it('never grows by a pattern that starts with !: refused when saved, allowing nothing if stored', () => {
    expect(() => normalizeModelPatterns(['mock-gpt-4o*', '!mock-gpt-4o-mini'])).toThrow(
      /an allow-list cannot exclude models/,
    );
    // A list saved before this check: the `!` entry allows nothing.
    const stored = compileModelAllowList(['mock-gpt-4o*', '!mock-gpt-4o-mini']);
    expect(stored('gpt-5')).toBe(false);
    expect(stored('mock-gpt-4o-mini')).toBe(true); // by the first pattern
    expect(compileModelAllowList(['!mini'])('gpt-5')).toBe(false);
    expect(compileModelAllowList(['!mini'])('mini')).toBe(false);
  });

  it('refuses malformed patterns with a clear message', () => {
    for (const bad of ['gpt-[4', '', ' ', 'a b', 'x'.repeat(201), 'model;drop']) {
      expect(() => normalizeModelPatterns([bad])).toThrow(InvalidAllowListError);
    }
  });
});

describe('IP allow-lists', () => {
  it('normalizes addresses and CIDRs to canonical networks', () => {
    expect(normalizeCidrs(['10.1.2.3/8', '192.168.0.1', '2001:db8::1/32', '::1'])).toEqual([
      '10.0.0.0/8',
      '192.168.0.1/32',
      '2001:db8::/32',
      '::1/128',
    ]);
  });

  it('refuses bad CIDRs', () => {
    for (const bad of ['10.0.0.0/33', 'abc', '300.1.1.1', '2001:db8::/129', '10.0.0.0/-1', '']) {
      expect(() => normalizeCidrs([bad])).toThrow(InvalidAllowListError);
    }
  });

  it('matches IPv4, IPv6 and IPv4-mapped IPv6 addresses', () => {
    const allows = compileIpAllowList(normalizeCidrs(['10.0.0.0/8', '2001:db8::/32']));
    expect(allows('10.200.3.4')).toBe(true);
    expect(allows('::ffff:10.200.3.4')).toBe(true);
    expect(allows('11.0.0.1')).toBe(false);
    expect(allows('2001:db8:1::5')).toBe(true);
    expect(allows('2001:db9::1')).toBe(false);
    expect(allows('not an ip')).toBe(false);
    expect(compileIpAllowList([])('203.0.113.9')).toBe(true);
  });
});
