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
/** A deployment's prefix: lower-case letters and digits, starting with a letter; no `_`, which separates parts. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,15}$/;
/** Matches any Keyport key, whatever its prefix; used by `parseKey` and by scanners. */
export const KEY_PATTERN = /^([a-z][a-z0-9]{0,15})_(proj|svc|admin)_([0-9A-Za-z]{40})([0-9A-Za-z]{6})$/;
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

/** Parses and checks the checksum; `null` for anything that is not a well-formed Keyport key. */
export function parseKey(key: string): ParsedKey | null {
  if (key.length > 80) return null;
  const match = KEY_PATTERN.exec(key);
  if (!match) return null;
  const [, prefix, kind, , checksum] = match as unknown as [string, string, KeyKind, string, string];
  if (checksumOf(key.slice(0, key.length - CHECKSUM_LENGTH)) !== checksum) return null;
  return { prefix, kind };
}

/** SHA-256 (hex) of the whole key: the only form in which a key is ever stored. */
export function hashKey(key: string): string {
  return hash('sha256', key, 'hex');
}

/** `kp_proj_3nT0…abcd`: first 12 characters, an ellipsis, the last 4. */
export function redactKey(key: string): string {
  return `${key.slice(0, 12)}…${key.slice(-4)}`;
}
