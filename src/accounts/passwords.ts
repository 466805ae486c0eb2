/**
 * Passwords, as NIST SP 800-63B asks: at least 8 characters and up to 128 (any characters, no
 * composition rules), refused when they are among the most common passwords, and stored as
 * argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane) through @node-rs/argon2.
 */
import { hash, verify } from '@node-rs/argon2';
import { dictionary } from '@zxcvbn-ts/language-common';

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 128;

/** argon2id (the library's default algorithm), OWASP's minimum: m = 19 MiB, t = 2, p = 1. */
const ARGON2 = { memoryCost: 19_456, timeCost: 2, parallelism: 1, outputLen: 32 } as const;

let common: Set<string> | undefined;

/** The ~30,000 most common passwords (zxcvbn's list), lower-cased. */
function commonPasswords(): Set<string> {
  common ??= new Set(dictionary['passwords-common'].map((p) => p.toLowerCase()));
  return common;
}

/** Why a password is refused, or undefined when it is acceptable. */
export function passwordProblem(password: string, context: { email?: string } = {}): string | undefined {
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH) return `Use at least ${MIN_PASSWORD_LENGTH} characters.`;
  if (length > MAX_PASSWORD_LENGTH) return `Use at most ${MAX_PASSWORD_LENGTH} characters.`;
  const lower = password.toLowerCase();
  if (commonPasswords().has(lower)) return 'This password is one of the most common ones; choose another.';
  const local = context.email?.split('@')[0]?.toLowerCase();
  if (local && local.length >= 3 && lower === local) return 'Do not use your email address as your password.';
  return undefined;
}

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2);
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

/**
 * A hash of a password nobody has, verified against when the account does not exist, so that an
 * unknown email takes as long as a known one.
 */
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(`decoy-${Math.random()}`);
  return decoy;
}
