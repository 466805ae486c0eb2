/**
 * Local token counts, for when the upstream reports no usage (a broken stream, a server that
 * omits it). o200k_base, as OpenAI's current models; for other models' tokenizers it is an
 * estimate, and records say so.
 */
import { encode } from 'gpt-tokenizer';

export function countTokens(text: string): number {
  return text.length === 0 ? 0 : encode(text).length;
}

type Part = string | { type?: string; text?: unknown; content?: unknown };

/** Text of message content: a string or an array of parts (only text parts count). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return (content as Part[])
    .map((part) =>
      typeof part === 'string' ? part : typeof part?.text === 'string' ? part.text : textOf(part?.content),
    )
    .join('');
}

/** The prompt of a chat, completion or responses request, counted as OpenAI's cookbook does for chats. */
export function countPromptTokens(body: Record<string, unknown> | undefined): number {
  if (!body) return 0;
  if (Array.isArray(body.messages)) {
    let total = 3; // every reply is primed with <|start|>assistant<|message|>
    for (const message of body.messages as { content?: unknown; name?: unknown }[]) {
      total += 3 + countTokens(textOf(message?.content));
      if (typeof message?.name === 'string') total += 1;
    }
    return total;
  }
  if (body.prompt !== undefined) return countTokens(textOf(body.prompt));
  if (body.input !== undefined) {
    if (typeof body.input === 'string' || Array.isArray(body.input)) {
      return Array.isArray(body.input)
        ? (body.input as unknown[]).reduce<number>(
            (sum, item) =>
              sum +
              countTokens(
                textOf(
                  typeof item === 'object' && item ? ((item as { content?: unknown }).content ?? item) : item,
                ),
              ),
            0,
          )
        : countTokens(body.input);
    }
  }
  return 0;
}
