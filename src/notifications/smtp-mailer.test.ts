import { describe, expect, it } from 'vitest';
import { redactUrl } from './smtp-mailer.ts';

describe('redactUrl', () => {
  it('hides the password and query values, keeps what helps debugging', () => {
    expect(redactUrl('smtp://user:s3cret@mail.example.com:587')).toBe(
      'smtp://user:[redacted]@mail.example.com:587',
    );
    expect(redactUrl('smtps://user:p%40ss%2Fword@mail.example.com/?auth.pass=s3cret')).toBe(
      'smtps://user:[redacted]@mail.example.com/?auth.pass=redacted',
    );
    expect(redactUrl('smtp://mail.example.com:25')).toBe('smtp://mail.example.com:25');
  });

  it('never echoes a URL it cannot parse', () => {
    expect(redactUrl('smtp://user:s3cret@[not a host')).toBe('[unparsable URL]');
  });
});
