import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { lazyChildLogger } from './request-logger.ts';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level }, out), lines };
}

describe('lazyChildLogger', () => {
  it('writes lines bound to the request id, at the levels the parent writes', () => {
    const { logger, lines } = capture('info');
    const log = lazyChildLogger(logger, { reqId: 'req_1' }, {});
    log.info({ status: 200 }, 'request');
    log.debug('not written');
    log.error(new Error('boom'), 'failed');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ reqId: 'req_1', status: 200, msg: 'request', level: 30 });
    expect(lines[1]).toMatchObject({ reqId: 'req_1', msg: 'failed', level: 50 });
    expect((lines[1]!.err as { message: string }).message).toBe('boom');
  });

  it('builds no child logger until a line is really written', () => {
    const { logger } = capture('warn');
    const child = vi.spyOn(logger, 'child');
    const log = lazyChildLogger(logger, { reqId: 'req_2' }, {});
    log.info('skipped');
    log.debug('skipped');
    expect((log as unknown as pino.Logger).isLevelEnabled('info')).toBe(false);
    expect(child).not.toHaveBeenCalled();
    log.warn('written');
    log.warn('again');
    expect(child).toHaveBeenCalledTimes(1);
  });

  it('keeps the child loggers it makes bound to the request', () => {
    const { logger, lines } = capture('info');
    const log = lazyChildLogger(logger, { reqId: 'req_3' }, {});
    log.child({ part: 'upstream' }).info('nested');
    expect(lines[0]).toMatchObject({ reqId: 'req_3', part: 'upstream', msg: 'nested' });
  });
});
