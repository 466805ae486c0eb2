/**
 * TOTP (RFC 6238) through otpauth: SHA-1, 6 digits, 30-second steps, as every authenticator app
 * expects; a code is accepted for its step and one step either side (clock drift), and each step
 * only once (the caller stores the last step used). Recovery codes: ten single-use codes,
 * stored hashed.
 */
import { createHash, randomInt } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import QRCode from 'qrcode';

const PERIOD = 30;

export function newTotpSecret(): string {
  return new Secret({ size: 20 }).base32;
}

function totp(secret: string, label: string, issuer: string): TOTP {
  return new TOTP({
    issuer,
    label,
    algorithm: 'SHA1',
    digits: 6,
    period: PERIOD,
    secret: Secret.fromBase32(secret),
  });
}

/** The otpauth:// URI an authenticator app reads, and the same as a QR code (an SVG). */
export async function enrolment(secret: string, label: string, issuer: string) {
  const uri = totp(secret, label, issuer).toString();
  return { uri, qrSvg: await QRCode.toString(uri, { type: 'svg', margin: 1 }) };
}

/**
 * The time step a code is valid for (now, or one step before or after), or undefined. Steps at or
 * before `lastStep` are refused: a code works once.
 */
export function verifyTotp(
  secret: string,
  code: string,
  lastStep: number | null,
  now = Date.now(),
): number | undefined {
  if (!/^\d{6}$/.test(code)) return undefined;
  const delta = totp(secret, 'x', 'x').validate({ token: code, timestamp: now, window: 1 });
  if (delta === null) return undefined;
  const step = Math.floor(now / 1000 / PERIOD) + delta;
  if (lastStep !== null && step <= lastStep) return undefined;
  return step;
}

/** The current code (tests; a CLI helper). */
export function totpCode(secret: string, now = Date.now()): string {
  return totp(secret, 'x', 'x').generate({ timestamp: now });
}

/** Ten recovery codes like `7fk2-9qxm-3v8d`: shown once, stored as SHA-256. */
export function newRecoveryCodes(count = 10): string[] {
  const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789';
  return Array.from({ length: count }, () => {
    const chars = Array.from({ length: 12 }, () => alphabet[randomInt(alphabet.length)]).join('');
    return `${chars.slice(0, 4)}-${chars.slice(4, 8)}-${chars.slice(8, 12)}`;
  });
}

export function hashRecoveryCode(code: string): string {
  return createHash('sha256').update(code.trim().toLowerCase().replaceAll(' ', '')).digest('hex');
}
