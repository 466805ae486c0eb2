/**
 * Local token counts, for when the upstream reports no usage (a broken stream, a server that
 * omits it). o200k_base, as OpenAI's current models; for other models' tokenizers it is an
 * estimate, and records say so.
 */
import { encode } from 'gpt-tokenizer';

export function countTokens(text: string): number {
  return text.length === 0 ? 0 : encode(text).length;
}

type Part = { type?: string; text?: unknown; content?: unknown };

/**
 * The text and token ids of content: a string, an array of token ids (what SDKs such as
 * LangChain send to embeddings), or arrays of parts, nested any way (only text parts count).
 * Walked with a stack of its own: a body nested 50,000 deep must be counted, not overflow.
 */
function contentOf(content: unknown): { text: string; ids: number } {
  let text = '';
  let ids = 0;
  const stack: unknown[] = [content];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === 'string') text += item;
    else if (typeof item === 'number') ids++;
    else if (Array.isArray(item)) for (let i = item.length - 1; i >= 0; i--) stack.push(item[i]);
    else if (typeof item === 'object' && item !== null) {
      const part = item as Part;
      if (typeof part.text === 'string') text += part.text;
      else if (part.content !== undefined) stack.push(part.content);
    }
  }
  return { text, ids };
}

/** Tokens of content (`contentOf`): its text counted, and each token id one. */
function countContent(content: unknown): number {
  if (typeof content === 'string') return countTokens(content);
  const { text, ids } = contentOf(content);
  return countTokens(text) + ids;
}

/** The prompt of a chat, completion or responses request, counted as OpenAI's cookbook does for chats. */
export function countPromptTokens(body: Record<string, unknown> | undefined): number {
  if (!body) return 0;
  if (Array.isArray(body.messages)) {
    let total = 3; // every reply is primed with <|start|>assistant<|message|>
    for (const message of body.messages as { content?: unknown; name?: unknown }[]) {
      total += 3 + countContent(message?.content);
      if (typeof message?.name === 'string') total += 1;
    }
    return total;
  }
  if (body.prompt !== undefined) return countContent(body.prompt);
  // Embeddings and responses: a string, token ids, or a list of strings, id arrays or items.
  if (body.input !== undefined) return countContent(body.input);
  return 0;
}
