import { describe, expect, it } from 'vitest';
import { countPromptTokens, countTokens } from './token-count.ts';

/** `[[[…'hello'…]]]`, `depth` arrays deep. */
function nested(depth: number, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

describe('countPromptTokens', () => {
  it('counts token ids one each: an embeddings input of ids, of id arrays, a completion prompt of ids', () => {
    const ids = Array.from({ length: 500 }, (_, i) => i + 1);
    expect(countPromptTokens({ input: ids })).toBe(500);
    expect(countPromptTokens({ input: [ids.slice(0, 200), ids.slice(0, 300)] })).toBe(500);
    expect(countPromptTokens({ prompt: ids.slice(0, 7) })).toBe(7);
  });

  it('counts strings, lists of strings, text parts and items with content as before', () => {
    const hello = countTokens('Hello there');
    expect(countPromptTokens({ input: 'Hello there' })).toBe(hello);
    expect(countPromptTokens({ input: ['Hello there', 'Hello there'] })).toBe(2 * hello);
    expect(countPromptTokens({ input: [{ role: 'user', content: 'Hello there' }] })).toBe(hello);
    expect(
      countPromptTokens({
        input: [{ role: 'user', content: [{ type: 'input_text', text: 'Hello there' }] }],
      }),
    ).toBe(hello);
    // Chats: 3 to prime the reply, 3 per message, 1 per name.
    expect(
      countPromptTokens({
        messages: [
          { role: 'user', content: 'Hello there', name: 'ann' },
          { role: 'user', content: [{ type: 'text', text: 'Hello there' }, { type: 'image_url' }] },
        ],
      }),
    ).toBe(3 + 3 + hello + 1 + 3 + hello);
    expect(countPromptTokens({ messages: [{ role: 'user', content: null }] })).toBe(6);
  });

  it('counts content nested 50,000 deep without exhausting the stack', () => {
    const deep = nested(50_000, 'Hello there');
    expect(countPromptTokens({ messages: [{ role: 'user', content: deep }] })).toBe(
      3 + 3 + countTokens('Hello there'),
    );
    expect(countPromptTokens({ input: nested(50_000, 42) })).toBe(1);
  });
});
