/**
 * Redis for tests: the machine's server (KEYPORT_TEST_REDIS_URL; CI sets it) for shared-limit
 * suites, and throw-away `redis-server` processes of our own for tests that kill and restart one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { RedisLimiter, type RedisLimiterOptions } from '../../src/limits/redis-limiter.ts';

export const REDIS_URL = process.env.KEYPORT_TEST_REDIS_URL;

/** Keys of one test run live under their own prefix, deleted afterwards. */
export const randomRedisPrefix = () => `keyport-test:${randomBytes(6).toString('hex')}:`;

export async function deleteRedisKeys(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** A throw-away redis-server on 127.0.0.1 (nothing on disk), to kill and restart. */
export async function startRedisServer(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  for (let attempt = 0; attempt < 100; attempt++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return child;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server did not start on port ${port}`);
}

export async function killRedisServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/**
 * Redis limiters for a suite on the shared test Redis (or on the one `url` names when the suite's
 * hooks start: a server of the suite's own): each under a prefix of its own, closed and its keys
 * deleted after each test; `admin` reads Redis directly. Call inside the describe.
 */
export function redisLimiterFixture(url: () => string = () => REDIS_URL!) {
  let admin: Redis | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  beforeAll(() => {
    admin = new Redis(url());
  });
  afterAll(async () => {
    await admin?.quit();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const fixture = {
    get admin(): Redis {
      if (!admin) throw new Error('the Redis fixture is used outside its describe');
      return admin;
    },
    /** Runs after the current test, before the limiters opened earlier are closed. */
    afterTest(cleanup: () => Promise<void>): void {
      cleanups.push(cleanup);
    },
    /** Deletes the prefix's keys after the current test (for a limiter the test closes itself). */
    cleanPrefix(prefix: string): void {
      cleanups.push(() => deleteRedisKeys(fixture.admin, prefix));
    },
    /** The URL of the Redis this fixture's limiters use. */
    get url(): string {
      return url();
    },
    /** A ready limiter under `prefix`, closed and cleaned after the test. */
    async open(prefix: string, options: Partial<RedisLimiterOptions> = {}): Promise<RedisLimiter> {
      const limiter = new RedisLimiter({ url: url(), keyPrefix: prefix, ...options });
      cleanups.push(async () => {
        await limiter.close();
        await deleteRedisKeys(fixture.admin, prefix);
      });
      expect(await limiter.ready(5000)).toBe(true);
      return limiter;
    },
  };
  return fixture;
}
