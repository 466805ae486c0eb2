/**
 * Text PostgreSQL refuses, in a column as in JSON: NUL, and UTF-16 surrogates without their pair
 * (JavaScript strings may hold them; UTF-8 cannot). Checked where client text enters, and replaced
 * where it must be stored anyway.
 */

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what this must find
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');

export function hasUnstorableText(text: string): boolean {
  return UNSTORABLE.test(text);
}

/** The text with each NUL or unpaired surrogate replaced by U+FFFD. */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE_ALL, '\uFFFD');
}
