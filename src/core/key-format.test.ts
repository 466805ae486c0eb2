import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BASE62_ALPHABET } from './base62.ts';
import { generateKey, hashKey, KEY_KINDS, parseKey, redactKey } from './key-format.ts';

const prefixes = fc.stringMatching(/^[a-z][a-z0-9]{0,15}$/);
const kinds = fc.constantFrom(...KEY_KINDS);

describe('key format', () => {
  it('every generated key parses, with its prefix and kind', () => {
    fc.assert(
      fc.property(prefixes, kinds, (prefix, kind) => {
        const key = generateKey(prefix, kind);
        expect(key).toMatch(new RegExp(`^${prefix}_${kind}_[0-9A-Za-z]{46}$`));
        expect(parseKey(key)).toEqual({ prefix, kind });
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects every single-character change (substitution anywhere)', () => {
    fc.assert(
      fc.property(
        kinds,
        fc.nat(),
        fc.integer({ min: 1, max: BASE62_ALPHABET.length - 1 }),
        (kind, position, shift) => {
          const key = generateKey('kp', kind);
          const index = position % key.length;
          const original = key[index] as string;
          const alphabet = /[0-9A-Za-z]/.test(original) ? BASE62_ALPHABET : `${BASE62_ALPHABET}_`;
          const replacement = alphabet[(alphabet.indexOf(original) + shift) % alphabet.length] as string;
          fc.pre(replacement !== original);
          const changed = key.slice(0, index) + replacement + key.slice(index + 1);
          expect(parseKey(changed)).toBeNull();
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('rejects every single-character change, exhaustively for one key', () => {
    const key = generateKey('kp', 'proj');
    let tried = 0;
    for (let i = 0; i < key.length; i++) {
      for (const c of `${BASE62_ALPHABET}_`) {
        if (c === key[i]) continue;
        expect(parseKey(key.slice(0, i) + c + key.slice(i + 1))).toBeNull();
        tried++;
      }
    }
    expect(tried).toBe(key.length * 62);
  });

  it('rejects deletions, insertions and truncations', () => {
    fc.assert(
      fc.property(fc.nat(), fc.constantFrom(...BASE62_ALPHABET), (position, extra) => {
        const key = generateKey('kp', 'svc');
        const index = position % key.length;
        expect(parseKey(key.slice(0, index) + key.slice(index + 1))).toBeNull();
        expect(parseKey(key.slice(0, index) + extra + key.slice(index))).toBeNull();
        expect(parseKey(key.slice(0, index))).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });

  it('generates no two equal keys in 100k', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) seen.add(generateKey('kp', 'proj'));
    expect(seen.size).toBe(100_000);
  });

  it('uses every base62 character in the random part (no biased or missing symbols)', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      for (const c of generateKey('kp', 'proj').slice(8, 48)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    // 80k characters over 62 symbols: ≈1290 each; a biased generator (e.g. byte % 62) stays well within,
    // but a broken alphabet or a stuck generator would not.
    for (const count of counts.values()) expect(count).toBeGreaterThan(1000);
  });

  it('rejects garbage, other formats and OpenAI keys without throwing', () => {
    for (const value of [
      '',
      'kp',
      'kp_proj_',
      'sk-proj-abc',
      'Bearer kp_proj_x',
      `kp_user_${'a'.repeat(46)}`,
      'x'.repeat(10_000),
    ]) {
      expect(parseKey(value)).toBeNull();
    }
  });

  it('stores keys as SHA-256 hex and redacts to first 12 + … + last 4', () => {
    const key = generateKey('kp', 'proj');
    expect(hashKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashKey(key)).not.toContain(key.slice(8, 20));
    expect(redactKey(key)).toBe(`${key.slice(0, 12)}…${key.slice(-4)}`);
    expect(redactKey(key).startsWith('kp_proj_')).toBe(true);
  });

  it('shows little of a short token: a quarter of its start, an eighth of its end at most', () => {
    expect(redactKey('kp_proj_short')).toBe('kp_…t');
    expect(redactKey('hunter2')).toBe('h…');
    expect(redactKey('')).toBe('…');
    for (const token of ['a'.repeat(20), 'b'.repeat(31), 'c'.repeat(47)]) {
      expect(redactKey(token).length - 1).toBeLessThanOrEqual(token.length / 4 + token.length / 8);
    }
  });

  it('refuses an invalid prefix', () => {
    expect(() => generateKey('KP', 'proj')).toThrow();
    expect(() => generateKey('k_p', 'proj')).toThrow();
  });
});
