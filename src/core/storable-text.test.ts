import { describe, expect, it } from 'vitest';
import { hasUnstorableText, storableText } from './storable-text.ts';

describe('text PostgreSQL can store', () => {
  it('finds NUL and unpaired surrogates, and nothing else', () => {
    for (const bad of ['a\u0000b', 'x\ud800', '\udc00x', 'a\ud800b\udc00'])
      expect(hasUnstorableText(bad)).toBe(true);
    for (const good of ['', 'plain', 'tab\there', 'rocket 🚀', 'é中文'])
      expect(hasUnstorableText(good)).toBe(false);
  });

  it('replaces each of them with U+FFFD and keeps surrogate pairs', () => {
    expect(storableText('a\u0000b\u0000')).toBe('a\uFFFDb\uFFFD');
    expect(storableText('x\ud800 🚀 \udc00')).toBe('x\uFFFD 🚀 \uFFFD');
    // Checked twice in a row: the search keeps no state between calls.
    expect(hasUnstorableText('a\u0000')).toBe(true);
    expect(hasUnstorableText('a\u0000')).toBe(true);
  });
});
