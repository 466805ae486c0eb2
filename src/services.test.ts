import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './services.ts';

describe('the log', () => {
  it('keeps a failed query’s text and code, not its values', () => {
    const lines: string[] = [];
    const logger = createLogger(
      { logLevel: 'info' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    // What Drizzle throws for a failing insert, its PostgreSQL error as the cause.
    const cause = Object.assign(new Error('duplicate key value violates unique constraint "users_email"'), {
      code: '23505',
      detail: 'Key (lower(email))=(a@b.c) already exists.',
    });
    const error = Object.assign(
      new Error('Failed query: insert into users values ($1, $2)\nparams: a@b.c,$argon2id$v=19$SECRETHASH', {
        cause,
      }),
      { query: 'insert into users values ($1, $2)', params: ['a@b.c', '$argon2id$v=19$SECRETHASH'] },
    );
    logger.error({ err: error }, 'request failed');
    const line = lines.join('');
    expect(line).toContain('insert into users values');
    expect(line).toContain('23505');
    expect(line).not.toContain('a@b.c');
    expect(line).not.toContain('SECRETHASH');
  });
});
