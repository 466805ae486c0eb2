import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SecretBox } from './secret-box.ts';

const newBox = () => SecretBox.fromKey(randomBytes(32).toString('base64'));

describe('SecretBox', () => {
  it('opens what it sealed, for the same owner only', () => {
    const box = newBox();
    const sealed = box.seal('JBSWY3DPEHPK3PXP', 'user_1');
    expect(sealed).not.toContain('JBSWY3DPEHPK3PXP');
    expect(box.open(sealed, 'user_1')).toBe('JBSWY3DPEHPK3PXP');
    expect(() => box.open(sealed, 'user_2')).toThrow(/could not be decrypted/);
  });

  it('says which setting to check when another instance sealed it with another key', () => {
    const sealed = newBox().seal('JBSWY3DPEHPK3PXP', 'user_1');
    expect(() => newBox().open(sealed, 'user_1')).toThrow(/same KEYPORT_SECRET_KEY/);
  });
});
