/**
 * Keyport's secret key format (see shared/design/product.md, "Secret keys"):
 *
 *   {prefix}_{kind}_{random}{checksum}
 *   kp_proj_3nT0…(40 base62 from the CSPRNG: 238 bits)…(6 base62: CRC32 of everything before it)
 *
 * The checksum lets the gateway reject garbage and scanners confirm a match without a lookup,
 * as GitHub's token format does. Keys are stored only as SHA-256 of the whole string.
 */
import { hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { encodeBase62, randomBase62 } from './base62.ts';

export const KEY_KINDS = ['proj', 'svc', 'admin'] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

export const RANDOM_LENGTH = 40;
export const CHECKSUM_LENGTH = 6;
/** Longer than any key: a 16-character prefix, the longest kind and the body. */
export const MAX_KEY_LENGTH = 80;
/** A deployment's prefix: lower-case letters and digits, starting with a letter; no `_`, which separates parts. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,15}$/;
/** Finds candidate Keyport keys in text (URLs, files); confirm each with `parseKey`. */
export const KEY_PATTERN_IN_TEXT = /\b([a-z][a-z0-9]{0,15})_(proj|svc|admin)_([0-9A-Za-z]{46})\b/g;

export interface ParsedKey {
  prefix: string;
  kind: KeyKind;
}

export function checksumOf(text: string): string {
  return encodeBase62(crc32(text), CHECKSUM_LENGTH);
}

export function generateKey(prefix: string, kind: KeyKind): string {
  if (!PREFIX_PATTERN.test(prefix)) throw new Error(`invalid key prefix ${JSON.stringify(prefix)}`);
  const head = `${prefix}_${kind}_${randomBase62(RANDOM_LENGTH)}`;
  return head + checksumOf(head);
}

const KIND_SET: ReadonlySet<string> = new Set(KEY_KINDS);

/**
 * Parses and checks the checksum; `null` for anything that is not a well-formed Keyport key.
 * Written without a regular expression: it runs on every request, before any lookup.
 */
export function parseKey(key: string): ParsedKey | null {
  const bodyLength = RANDOM_LENGTH + CHECKSUM_LENGTH;
  if (key.length > MAX_KEY_LENGTH || key.length < bodyLength + 4) return null;
  const first = key.indexOf('_');
  const second = key.indexOf('_', first + 1);
  if (first < 1 || first > 16 || second === -1 || key.length - second - 1 !== bodyLength) return null;
  const prefix = key.slice(0, first);
  const kind = key.slice(first + 1, second);
  if (!KIND_SET.has(kind) || !isPrefix(prefix)) return null;
  const checksumAt = key.length - CHECKSUM_LENGTH;
  let given = 0;
  for (let i = second + 1; i < key.length; i++) {
    const digit = base62Digit(key.charCodeAt(i));
    if (digit < 0) return null;
    if (i >= checksumAt) given = given * 62 + digit;
  }
  if (crc32(key.slice(0, checksumAt)) !== given) return null;
  return { prefix, kind: kind as KeyKind };
}

/** The value of a base62 character (0-9, A-Z, a-z), or -1. */
function base62Digit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 90) return c - 55;
  if (c >= 97 && c <= 122) return c - 61;
  return -1;
}

function isPrefix(prefix: string): boolean {
  const c0 = prefix.charCodeAt(0);
  if (c0 < 97 || c0 > 122) return false;
  for (let i = 1; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 122))) return false;
  }
  return true;
}

/** SHA-256 (hex) of the whole key: the only form in which a key is ever stored. */
export function hashKey(key: string): string {
  return hash('sha256', key, 'hex');
}

/** `kp_proj_3nT0…abcd`: first 12 characters, an ellipsis, the last 4. */
export function redactKey(key: string): string {
  // A real key shows its first 12 characters (the prefix and kind, then 3-4 of its body) and last 4.
  // A short token (a mistyped key, some other secret pasted in) shows at most a quarter of its start
  // and an eighth of its end.
  const head = Math.min(12, Math.floor(key.length / 4));
  const tail = Math.min(4, Math.floor(key.length / 8));
  return `${key.slice(0, head)}…${tail > 0 ? key.slice(-tail) : ''}`;
}
