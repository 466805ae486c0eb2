/**
 * Secrets Keyport must read back (a TOTP seed) are stored encrypted: AES-256-GCM with the
 * instance's secret key. The key comes from KEYPORT_SECRET_KEY (base64, 32 bytes; several
 * instances must share it) or, on one machine, a key file made once in the data directory.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/user-error.ts';

export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromKey(base64: string): SecretBox {
    const key = Buffer.from(base64, 'base64');
    if (key.length !== 32)
      throw new UserError('KEYPORT_SECRET_KEY: expected 32 bytes, base64-encoded (openssl rand -base64 32)');
    return new SecretBox(key);
  }

  /** The data directory's key file, made on first use (readable by its owner only). */
  static fromDataDir(dataDir: string): SecretBox {
    const file = path.join(dataDir, 'secret.key');
    if (!existsSync(file)) {
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
    }
    return SecretBox.fromKey(readFileSync(file, 'utf8').trim());
  }

  /** `v1.<iv>.<tag>.<ciphertext>`, base64url; `context` binds it to its owner (a user id). */
  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', iv, cipher.getAuthTag(), body]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
  }

  open(sealed: string, context: string): string {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || body === undefined) throw new Error('not a sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    try {
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
        'utf8',
      );
    } catch (cause) {
      // What the log says to the operator: the usual cause is instances with different keys.
      throw new Error(
        "a stored secret could not be decrypted with this instance's secret key: every instance must have the same KEYPORT_SECRET_KEY (or the one that sealed it)",
        { cause },
      );
    }
  }
}
